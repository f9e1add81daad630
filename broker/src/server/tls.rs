//! TLS building blocks: the process-wide crypto provider and the rustls server configuration
//! built from a `tls { ... }` block the way nats-server's `GenTLSConfig` builds Go's.
//!
//! Behaviour matched with nats-server:
//! - `verify` and `verify_and_map` both require a client certificate signed by a `ca_file`
//!   root (Go's `RequireAndVerifyClientCert`); without them no certificate is requested,
//!   even when `ca_file` is set (Go only fills `ClientCAs` then).
//! - `cipher_suites` takes nats-server's names. Go applies the list to TLS 1.2 only and
//!   always enables every TLS 1.3 suite; we do the same unless the list names TLS 1.3
//!   suites, in which case only those are enabled for TLS 1.3. A protocol version left
//!   without suites is disabled.
//! - `curve_preferences` takes `X25519`, `CurveP256`, `CurveP384` (and `CurveP521`, which
//!   *ring* cannot do: an error). Empty lists mean the provider's defaults, which are the
//!   same set nats-server uses minus P-521.
//! - TLS 1.2 is the minimum, as in nats-server; no ALPN.
//!
//! Differences: rustls has no CBC, RC4, 3DES or static-RSA suites, so those names are
//! rejected as unsupported rather than silently accepted; `verify` without `ca_file` (Go
//! would fall back to the system roots) is an error.
//!
//! Routes (`cluster { tls { ... } }`), as nats-server's `getTLSConfig`: both sides always
//! verify each other (Go forces `RequireAndVerifyClientCert` whatever `verify` says, and
//! mirrors `ca_file` into the roots it dials with), so `ca_file` is required here; `insecure`
//! skips the verification of the server certificate when dialing (chain and name; the
//! handshake signature is still checked), never that of an accepted route.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::ring as ring_provider;
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    SupportedCipherSuite, SupportedProtocolVersion,
};

use crate::options::TlsOptions;

/// Why a TLS configuration could not be built; every message names the offending file or value.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("error reading certificate file {}: {source}", path.display())]
    CertFile {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("no certificates found in certificate file {}", path.display())]
    NoCertificates { path: PathBuf },
    #[error("error reading private key file {}: {source}", path.display())]
    KeyFile {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("certificate {} and private key {} cannot be used together: {source}", cert.display(), key.display())]
    KeyPair {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("error reading ca_file {}: {source}", path.display())]
    CaFile {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("failed to parse root ca certificate in ca_file {}", path.display())]
    NoCaCertificates { path: PathBuf },
    #[error("verify and verify_and_map require ca_file (system roots are not used)")]
    VerifyWithoutCa,
    #[error(
        "ca_file is required: routes verify each other's certificates (system roots are not used)"
    )]
    RouteWithoutCa,
    #[error("server certificate verifier for ca_file {}: {source}", path.display())]
    ServerVerifier {
        path: PathBuf,
        source: rustls::client::VerifierBuilderError,
    },
    #[error("unrecognized cipher {0}")]
    UnknownCipher(String),
    #[error(
        "cipher {0} is not supported (only ECDHE AES-GCM/ChaCha20 suites and TLS 1.3 suites are)"
    )]
    UnsupportedCipher(String),
    #[error("unrecognized curve preference {0}")]
    UnknownCurve(String),
    #[error("curve preference {0} is not supported (only X25519, CurveP256 and CurveP384 are)")]
    UnsupportedCurve(String),
    #[error("client certificate verifier for ca_file {}: {source}", path.display())]
    Verifier {
        path: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Installs *ring* as the process-wide rustls provider; safe to call any number of times.
pub fn install_crypto_provider() {
    // Err means a provider is already installed: only ring is compiled in, so it is ring.
    let _ = ring_provider::default_provider().install_default();
}

/// nats-server's cipher names (`server/ciphersuites.go`) and the ring suite for each, if any.
fn cipher_table() -> [(&'static str, Option<SupportedCipherSuite>); 26] {
    use ring_provider::cipher_suite as cs;
    [
        ("TLS_RSA_WITH_RC4_128_SHA", None),
        ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", None),
        ("TLS_RSA_WITH_AES_128_CBC_SHA", None),
        ("TLS_RSA_WITH_AES_128_CBC_SHA256", None),
        ("TLS_RSA_WITH_AES_256_CBC_SHA", None),
        ("TLS_RSA_WITH_AES_256_GCM_SHA384", None),
        ("TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", None),
        ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", None),
        ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", None),
        ("TLS_ECDHE_RSA_WITH_RC4_128_SHA", None),
        ("TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", None),
        ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", None),
        ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", None),
        ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", None),
        ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", None),
        (
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            Some(cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            Some(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            Some(cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            Some(cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            Some(cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
            Some(cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
        ),
        // Go's aliases with the hash spelled out.
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            Some(cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            Some(cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
        ),
        ("TLS_AES_128_GCM_SHA256", Some(cs::TLS13_AES_128_GCM_SHA256)),
        ("TLS_AES_256_GCM_SHA384", Some(cs::TLS13_AES_256_GCM_SHA384)),
        (
            "TLS_CHACHA20_POLY1305_SHA256",
            Some(cs::TLS13_CHACHA20_POLY1305_SHA256),
        ),
    ]
}

/// nats-server's curve names (`curvePreferenceMap`) and the ring group for each, if any.
fn curve(name: &str) -> Option<Option<&'static dyn SupportedKxGroup>> {
    use ring_provider::kx_group as kx;
    Some(match name {
        "X25519" => Some(kx::X25519),
        "CurveP256" => Some(kx::SECP256R1),
        "CurveP384" => Some(kx::SECP384R1),
        "CurveP521" => None,
        _ => return None,
    })
}

/// Maps nats-server cipher names to ring suites, in the order given.
pub fn cipher_suites(names: &[String]) -> Result<Vec<SupportedCipherSuite>, TlsError> {
    let table = cipher_table();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let suite = match table.iter().find(|(n, _)| *n == name.as_str()) {
            None => return Err(TlsError::UnknownCipher(name.clone())),
            Some((_, None)) => return Err(TlsError::UnsupportedCipher(name.clone())),
            Some((_, Some(s))) => *s,
        };
        if !out.contains(&suite) {
            out.push(suite);
        }
    }
    Ok(out)
}

/// Maps nats-server curve names to ring key-exchange groups, in the order given.
pub fn kx_groups(names: &[String]) -> Result<Vec<&'static dyn SupportedKxGroup>, TlsError> {
    let mut out: Vec<&'static dyn SupportedKxGroup> = Vec::with_capacity(names.len());
    for name in names {
        let group = match curve(name) {
            None => return Err(TlsError::UnknownCurve(name.clone())),
            Some(None) => return Err(TlsError::UnsupportedCurve(name.clone())),
            Some(Some(g)) => g,
        };
        if !out.iter().any(|g| g.name() == group.name()) {
            out.push(group);
        }
    }
    Ok(out)
}

/// The ring provider narrowed to the configured cipher suites and curves.
fn provider_for(opts: &TlsOptions) -> Result<CryptoProvider, TlsError> {
    let mut provider = ring_provider::default_provider();
    if !opts.cipher_suites.is_empty() {
        let mut suites = cipher_suites(&opts.cipher_suites)?;
        // Go ignores the list for TLS 1.3; keep every TLS 1.3 suite unless some are named.
        if !suites.iter().any(|s| s.tls13().is_some()) {
            suites.extend(
                ring_provider::ALL_CIPHER_SUITES
                    .iter()
                    .filter(|s| s.tls13().is_some()),
            );
        }
        provider.cipher_suites = suites;
    }
    if !opts.curve_preferences.is_empty() {
        provider.kx_groups = kx_groups(&opts.curve_preferences)?;
    }
    Ok(provider)
}

/// The protocol versions that have at least one suite (TLS 1.2 at the lowest).
fn versions_for(provider: &CryptoProvider) -> Vec<&'static SupportedProtocolVersion> {
    let mut versions = Vec::new();
    if provider.cipher_suites.iter().any(|s| s.tls13().is_some()) {
        versions.push(&rustls::version::TLS13);
    }
    if provider.cipher_suites.iter().any(|s| s.tls13().is_none()) {
        versions.push(&rustls::version::TLS12);
    }
    versions
}

/// Reads every certificate in a PEM file.
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |source| TlsError::CertFile {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 RSA or SEC1 EC) in a PEM file.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::KeyFile {
        path: path.to_owned(),
        source,
    })
}

/// Reads the trusted roots for client certificates from `ca_file`.
fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let err = |source| TlsError::CaFile {
        path: path.to_owned(),
        source,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(err)? {
        roots
            .add(cert.map_err(err)?)
            .map_err(|_| TlsError::NoCaCertificates {
                path: path.to_owned(),
            })?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCaCertificates {
            path: path.to_owned(),
        });
    }
    Ok(roots)
}

/// Builds the server configuration for client connections from a `tls { ... }` block.
pub fn server_config(opts: &TlsOptions) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(opts, opts.verify || opts.verify_and_map)
}

/// The server configuration, requiring a client certificate signed by `ca_file` when `verify`.
fn server_config_with(opts: &TlsOptions, verify: bool) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(provider_for(opts)?);
    // Read ca_file even when it is not used for verification: a broken file is still an error
    // in nats-server.
    let roots = match &opts.ca_file {
        Some(path) => Some((path, load_roots(path)?)),
        None => None,
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions_for(&provider))?;
    let builder = match (verify, roots) {
        (false, _) => builder.with_no_client_auth(),
        (true, None) => return Err(TlsError::VerifyWithoutCa),
        (true, Some((path, roots))) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|source| TlsError::Verifier {
                        path: path.clone(),
                        source,
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut pairs: Vec<(&Path, &Path)> = Vec::new();
    if !opts.cert_file.as_os_str().is_empty() {
        pairs.push((&opts.cert_file, &opts.key_file));
    }
    pairs.extend(opts.certs.iter().map(|(c, k)| (c.as_path(), k.as_path())));
    if pairs.len() <= 1 {
        let (cert, key) = pairs
            .first()
            .copied()
            .unwrap_or((&opts.cert_file, &opts.key_file));
        let config = builder
            .with_single_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|source| TlsError::KeyPair {
                cert: cert.to_owned(),
                key: key.to_owned(),
                source,
            })?;
        return Ok(Arc::new(config));
    }
    let mut keys = Vec::new();
    for (cert, key) in pairs {
        let certified =
            rustls::sign::CertifiedKey::from_der(load_certs(cert)?, load_key(key)?, &provider)
                .map_err(|source| TlsError::KeyPair {
                    cert: cert.to_owned(),
                    key: key.to_owned(),
                    source,
                })?;
        let names = cert_dns_names(&certified.cert[0]);
        keys.push((names, Arc::new(certified)));
    }
    Ok(Arc::new(
        builder.with_cert_resolver(Arc::new(BySni { keys })),
    ))
}

/// `tls { certs }`: the pair whose certificate names the host a client asks for (exactly or
/// by a `*.` wildcard), else the first, as Go's `crypto/tls` picks among `Certificates`.
#[derive(Debug)]
struct BySni {
    keys: Vec<(Vec<String>, Arc<rustls::sign::CertifiedKey>)>,
}

impl rustls::server::ResolvesServerCert for BySni {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let wanted = hello.server_name().map(str::to_ascii_lowercase);
        let hit = wanted.and_then(|w| {
            self.keys.iter().find(|(names, _)| {
                names.iter().any(|n| {
                    *n == w
                        || n.strip_prefix("*.").is_some_and(|rest| {
                            w.split_once('.').is_some_and(|(_, tail)| tail == rest)
                        })
                })
            })
        });
        hit.or(self.keys.first()).map(|(_, k)| k.clone())
    }
}

/// The DNS names a certificate is for: its subject alternative names, else its common name.
fn cert_dns_names(der: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    names
}

/// Both ends of route TLS, built from `cluster { tls { ... } }`.
#[derive(Debug, Clone)]
pub struct RouteTls {
    /// For accepted routes: our certificate, and the dialer's verified against `ca_file`.
    pub server: Arc<ServerConfig>,
    /// For dialed routes: our certificate as the client one, and the server's verified
    /// against `ca_file` (unless `insecure`).
    pub client: Arc<ClientConfig>,
    /// Handshake timeout.
    pub timeout: std::time::Duration,
}

/// Builds the route TLS configurations; both sides always verify the other, as nats-server.
pub fn route_tls(opts: &TlsOptions) -> Result<RouteTls, TlsError> {
    let Some(ca_file) = &opts.ca_file else {
        return Err(TlsError::RouteWithoutCa);
    };
    let server = server_config_with(opts, true)?;
    let provider = Arc::new(provider_for(opts)?);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions_for(&provider))?;
    let builder = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(InsecureServerVerifier(provider.clone())))
    } else {
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(load_roots(ca_file)?),
            provider.clone(),
        )
        .build()
        .map_err(|source| TlsError::ServerVerifier {
            path: ca_file.clone(),
            source,
        })?;
        builder.with_webpki_verifier(verifier)
    };
    let client = builder
        .with_client_auth_cert(load_certs(&opts.cert_file)?, load_key(&opts.key_file)?)
        .map_err(|source| TlsError::KeyPair {
            cert: opts.cert_file.clone(),
            key: opts.key_file.clone(),
            source,
        })?;
    let timeout = if opts.timeout.is_zero() {
        std::time::Duration::from_secs(2)
    } else {
        opts.timeout
    };
    Ok(RouteTls {
        server,
        client: Arc::new(client),
        timeout,
    })
}

/// `insecure`: accepts any server certificate (Go's `InsecureSkipVerify`), still checking
/// that the peer holds the key of the certificate it sent.
#[derive(Debug)]
struct InsecureServerVerifier(Arc<CryptoProvider>);

impl ServerCertVerifier for InsecureServerVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Whether a handshake failed because the server certificate does not name the host dialed.
pub fn is_name_mismatch(err: &std::io::Error) -> bool {
    use rustls::CertificateError as C;
    matches!(
        err.get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. }
        ))
    )
}

/// The `notAfter` time of the first certificate in a PEM file, as Go's RFC 3339.
pub fn cert_not_after(path: &Path) -> Option<String> {
    use std::time::SystemTime;
    let der = CertificateDer::pem_file_iter(path).ok()?.next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let secs = cert.validity().not_after.timestamp();
    let t = if secs >= 0 {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64)
    } else {
        SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(secs.unsigned_abs())
    };
    Some(crate::log::rfc3339(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cipher_names() {
        let s = cipher_suites(&names(&[
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
            "TLS_AES_128_GCM_SHA256",
        ]))
        .unwrap();
        assert_eq!(s.len(), 3);
        let err = cipher_suites(&names(&["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cipher TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA is not supported (only ECDHE AES-GCM/ChaCha20 suites and TLS 1.3 suites are)"
        );
        let err = cipher_suites(&names(&["TLS_BOGUS"])).unwrap_err();
        assert_eq!(err.to_string(), "unrecognized cipher TLS_BOGUS");
    }

    #[test]
    fn curve_names() {
        assert_eq!(
            kx_groups(&names(&["CurveP384", "X25519"])).unwrap().len(),
            2
        );
        assert_eq!(
            kx_groups(&names(&["CurveP521"])).unwrap_err().to_string(),
            "curve preference CurveP521 is not supported (only X25519, CurveP256 and CurveP384 are)"
        );
        assert_eq!(
            kx_groups(&names(&["P256"])).unwrap_err().to_string(),
            "unrecognized curve preference P256"
        );
    }

    #[test]
    fn tls12_only_list_keeps_tls13() {
        let opts = TlsOptions {
            cipher_suites: names(&["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]),
            ..Default::default()
        };
        let p = provider_for(&opts).unwrap();
        assert_eq!(
            p.cipher_suites
                .iter()
                .filter(|s| s.tls13().is_some())
                .count(),
            3
        );
        assert_eq!(versions_for(&p).len(), 2);
        let opts = TlsOptions {
            cipher_suites: names(&["TLS_AES_256_GCM_SHA384"]),
            ..Default::default()
        };
        let p = provider_for(&opts).unwrap();
        assert_eq!(p.cipher_suites.len(), 1);
        assert_eq!(versions_for(&p), vec![&rustls::version::TLS13]);
    }
}
