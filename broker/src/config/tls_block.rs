//! `tls` blocks (client and cluster): nats-server's `parseTLS`, with the keys this broker does
//! not implement refused by name.

use super::ConfigError;
use std::path::PathBuf;
use std::time::Duration;

use super::duration::parse_go_duration;
use super::read::{bad, get_bool, type_err};
use super::security::{as_map, at, unknown, unsupported};
use super::value::{Entry, Kind};
use crate::options::TlsOptions;

/// nats-server's `TLS_TIMEOUT`.
pub(super) const DEFAULT_TLS_TIMEOUT: Duration = Duration::from_secs(2);

/// nats-server's `DEFAULT_TLS_HANDSHAKE_FIRST_FALLBACK_DELAY`.
pub(super) const DEFAULT_HANDSHAKE_FIRST_FALLBACK: Duration = Duration::from_millis(50);

/// Client `tls` keys nats-server knows that this broker does not implement.
pub(super) const TLS_NOT_SUPPORTED: &[&str] = &[
    "insecure",
    "verify_cert_and_check_known_urls",
    "connection_rate_limit",
    "pinned_certs",
    "cert_store",
    "cert_match",
    "cert_match_by",
    "ca_certs_match",
    "cert_match_skip_invalid",
    "ocsp_peer",
    "min_version",
];

/// Go's `crypto/tls` cipher suite names (what `nats-server --help_tls` lists).
pub(super) const CIPHER_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_RSA_WITH_RC4_128_SHA",
];

/// The suites Go lists as insecure (`tls.InsecureCipherSuites`: RC4, 3DES, CBC with SHA-256,
/// and RSA key exchange), which nats-server takes only with `allow_insecure_cipher_suites`.
pub(super) const INSECURE_CIPHER_SUITES: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_RSA_WITH_RC4_128_SHA",
];

/// Go's curve names (what `nats-server --help_tls` lists).
pub(super) const CURVES: &[&str] = &[
    "X25519",
    "CurveP256",
    "CurveP384",
    "CurveP521",
    "SecP384r1MLKEM1024",
    "SecP256r1MLKEM768",
    "X25519MLKEM768",
];

pub(super) fn tls_file(f: &Entry) -> Result<PathBuf, ConfigError> {
    match &f.value.kind {
        Kind::String(s) => Ok(PathBuf::from(s)),
        _ => Err(bad(
            f,
            format!(
                "error parsing tls config, expected '{}' to be filename",
                f.key
            ),
        )),
    }
}

pub(super) fn tls_bool(f: &Entry) -> Result<bool, ConfigError> {
    match &f.value.kind {
        Kind::Bool(b) => Ok(*b),
        _ => Err(bad(
            f,
            format!(
                "error parsing tls config, expected '{}' to be a boolean",
                f.key
            ),
        )),
    }
}

pub(super) fn tls_names(f: &Entry, known: &[&str], what: &str) -> Result<Vec<String>, ConfigError> {
    let Kind::Array(a) = &f.value.kind else {
        return Err(type_err(f, "array of strings"));
    };
    if a.is_empty() {
        return Err(bad(
            f,
            format!("error parsing tls config, '{}' cannot be empty", f.key),
        ));
    }
    a.iter()
        .map(|v| match &v.kind {
            Kind::String(s) if known.contains(&s.as_str()) => Ok(s.clone()),
            Kind::String(s) => Err(at(&v.pos, &f.key, format!("unrecognized {what} {s}"))),
            k => Err(at(
                &v.pos,
                &f.key,
                format!("{}: expected string, got {}", f.key, k.type_name()),
            )),
        })
        .collect()
}

/// nats-server loads the certificate and key while parsing (so `-t` fails on missing
/// files); check they can be read and hold PEM blocks of the right kind.
pub(super) fn check_pem(
    f: &Entry,
    path: &PathBuf,
    marker: &str,
    what: &str,
) -> Result<(), ConfigError> {
    let text = std::fs::read(path)
        .map_err(|err| bad(f, format!("error reading {what} {}: {err}", path.display())))?;
    let text = String::from_utf8_lossy(&text);
    if !text.contains("-----BEGIN ") || !text.contains(marker) {
        return Err(bad(
            f,
            format!(
                "error parsing {what} {}: no PEM {marker} block",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// `tls { ... }` for client connections.
pub(super) fn tls(e: &Entry) -> Result<TlsOptions, ConfigError> {
    tls_block(e, false)
}

/// `cluster { tls { ... } }`: the client keys plus `insecure` (skip verifying the servers we
/// dial). `verify` is accepted but routes always verify both sides, and `handshake_first` is
/// accepted but routes are always TLS from the first byte, as in nats-server; `verify_and_map`
/// makes an accepted route's certificate name the cluster `authorization` user.
pub(super) fn cluster_tls(e: &Entry) -> Result<TlsOptions, ConfigError> {
    tls_block(e, true)
}

/// A `tls` block for client connections, or for routes when `cluster`.
pub(super) fn tls_block(e: &Entry, cluster: bool) -> Result<TlsOptions, ConfigError> {
    let m = as_map(e, "tls")?;
    let mut t = TlsOptions {
        timeout: DEFAULT_TLS_TIMEOUT,
        ..TlsOptions::default()
    };
    let mut cert: Option<&Entry> = None;
    let mut key: Option<&Entry> = None;
    let mut ca: Option<&Entry> = None;
    let mut allow_insecure = false;
    for f in &m.entries {
        let k = f.key.to_lowercase();
        match k.as_str() {
            "cert_file" => {
                t.cert_file = tls_file(f)?;
                cert = Some(f);
            }
            "key_file" => {
                t.key_file = tls_file(f)?;
                key = Some(f);
            }
            "ca_file" => {
                t.ca_file = Some(tls_file(f)?);
                ca = Some(f);
            }
            "verify" => t.verify = tls_bool(f)?,
            "insecure" if cluster => t.insecure = tls_bool(f)?,
            "verify_and_map" => {
                let v = tls_bool(f)?;
                if v {
                    t.verify = true;
                }
                t.verify_and_map = v;
            }
            "certs" | "certificates" if !cluster => {
                let Kind::Array(list) = &f.value.kind else {
                    return Err(type_err(f, "array of {cert_file, key_file}"));
                };
                for v in list {
                    let Kind::Map(pair) = &v.kind else {
                        return Err(type_err(f, "array of {cert_file, key_file}"));
                    };
                    let (mut c, mut k) = (None, None);
                    for g in &pair.entries {
                        match g.key.to_lowercase().as_str() {
                            "cert_file" => c = Some((g, tls_file(g)?)),
                            "key_file" => k = Some((g, tls_file(g)?)),
                            _ => return Err(unknown(g, "tls certs")),
                        }
                    }
                    let (Some((cf, c)), Some((kf, k))) = (c, k) else {
                        return Err(bad(f, "error parsing certificates config: both 'cert_file' and 'key_file' are required"));
                    };
                    check_pem(cf, &c, "CERTIFICATE", "certificate")?;
                    check_pem(kf, &k, "PRIVATE KEY", "private key")?;
                    t.certs.push((c, k));
                }
            }
            "cipher_suites" => t.cipher_suites = tls_names(f, CIPHER_SUITES, "cipher")?,
            // Only a permission for the list above: rustls offers no insecure suite anyway.
            "allow_insecure_cipher_suites" => allow_insecure = get_bool(f)?,
            "curve_preferences" => t.curve_preferences = tls_names(f, CURVES, "curve preference")?,
            "timeout" => {
                let secs = match &f.value.kind {
                    Kind::Int(i) => *i as f64,
                    Kind::Float(x) => *x,
                    Kind::String(s) => {
                        parse_go_duration(s).map_err(|err| {
                            bad(f, format!("error parsing tls config, 'timeout' {err}"))
                        })? as f64
                            / 1e9
                    }
                    _ => return Err(bad(f, "error parsing tls config, 'timeout' wrong type")),
                };
                let d = Duration::try_from_secs_f64(secs)
                    .map_err(|_| bad(f, format!("invalid tls timeout {secs}")))?;
                // nats-server: 0 means the default.
                t.timeout = if d.is_zero() { DEFAULT_TLS_TIMEOUT } else { d };
            }
            "handshake_first" | "first" | "immediate" => match &f.value.kind {
                Kind::Bool(b) => t.handshake_first = *b,
                Kind::String(s) => match s.to_lowercase().as_str() {
                    "true" | "on" => t.handshake_first = true,
                    "false" | "off" => t.handshake_first = false,
                    "auto" | "auto_fallback" => {
                        t.handshake_first = true;
                        t.handshake_first_fallback = Some(DEFAULT_HANDSHAKE_FIRST_FALLBACK);
                    }
                    _ => match parse_go_duration(s) {
                        Ok(ns) if ns >= 0 => {
                            t.handshake_first = true;
                            t.handshake_first_fallback = Some(Duration::from_nanos(ns as u64));
                        }
                        _ => {
                            return Err(bad(f, format!("field {:?} value {s:?} is invalid", f.key)))
                        }
                    },
                },
                k => {
                    return Err(bad(
                        f,
                        format!(
                            "field {:?} should be a boolean or a string, got {}",
                            f.key,
                            k.type_name()
                        ),
                    ))
                }
            },
            k if TLS_NOT_SUPPORTED.contains(&k) && cluster => {
                return Err(ConfigError::Unsupported {
                    pos: f.key_pos.clone(),
                    key: format!("cluster.tls.{}", f.key),
                })
            }
            k if TLS_NOT_SUPPORTED.contains(&k) => return Err(unsupported(f)),
            _ => {
                return Err(ConfigError::UnknownField {
                    pos: f.key_pos.clone(),
                    key: f.key.clone(),
                    prefix: "error parsing tls config, ",
                })
            }
        }
    }
    let insecure: Vec<&str> = t
        .cipher_suites
        .iter()
        .map(String::as_str)
        .filter(|s| INSECURE_CIPHER_SUITES.contains(s))
        .collect();
    if !insecure.is_empty() && !allow_insecure {
        return Err(bad(
            e,
            format!(
                "insecure cipher suites configured without 'allow_insecure_cipher_suites' option set: {}",
                insecure.join(", ")
            ),
        ));
    }
    match (cert, key) {
        (Some(_), None) => return Err(bad(e, "missing 'key_file' in TLS configuration")),
        (None, Some(_)) => return Err(bad(e, "missing 'cert_file' in TLS configuration")),
        (Some(c), Some(k)) => {
            check_pem(c, &t.cert_file, "CERTIFICATE", "certificate")?;
            check_pem(k, &t.key_file, "PRIVATE KEY", "private key")?;
        }
        (None, None) => {}
    }
    if let (Some(f), Some(p)) = (ca, &t.ca_file) {
        check_pem(f, p, "CERTIFICATE", "ca_file")?;
    }
    Ok(t)
}
