//! The `jetstream` block, server-wide and per account, as nats-server's `parseJetStream` and
//! `parseJetStreamForAccount` read it.

use super::read::{bad, get_bool, get_int, get_str, nanos, type_err};
use super::value::{Entry, Kind};
use super::ConfigError;
use crate::options::{JetStreamOptions, JsAccountLimits, JsCipher, JsEncryption};

/// A size: an integer (suffixes already applied by the parser) or a string like `"1GB"`.
fn size(e: &Entry, v: &Kind) -> Result<i64, ConfigError> {
    match v {
        Kind::Int(i) => Ok(*i),
        Kind::String(s) => parse_size(s).ok_or_else(|| bad(e, format!("invalid size {s:?}"))),
        _ => Err(type_err(e, "size")),
    }
}

/// `"512MB"`, `"1G"`, `"100"`: bytes with an optional 1024-based suffix (as nats-server's
/// `getStorageSize`, where K/M/G/T all mean powers of 1024).
fn parse_size(s: &str) -> Option<i64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let num: i64 = s[..digits].parse().ok()?;
    let mult: i64 = match s[digits..].trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" => 1 << 10,
        "M" | "MB" => 1 << 20,
        "G" | "GB" => 1 << 30,
        "T" | "TB" => 1 << 40,
        _ => return None,
    };
    num.checked_mul(mult)
}

/// The top-level `jetstream` entry: `enabled`/`disabled`, a boolean, or a map.
pub(super) fn server(e: &Entry) -> Result<Option<JetStreamOptions>, ConfigError> {
    let mut js = JetStreamOptions::default();
    match &e.value.kind {
        Kind::Bool(b) => Ok(b.then_some(js)),
        Kind::String(s) => match s.to_ascii_lowercase().as_str() {
            "enabled" | "enable" | "true" => Ok(Some(js)),
            "disabled" | "disable" | "false" => Ok(None),
            _ => Err(bad(
                e,
                format!("Expected 'enabled' or 'disabled' for string value, got '{s}'"),
            )),
        },
        Kind::Map(m) => {
            let mut enabled = true;
            let mut cipher: Option<(&Entry, JsCipher)> = None;
            let mut key: Option<(&Entry, String)> = None;
            let mut prev_key: Option<(&Entry, String)> = None;
            for f in &m.entries {
                match f.key.to_lowercase().as_str() {
                    "store_dir" | "storedir" | "store" => js.store_dir = get_str(f)?.into(),
                    "max_memory_store" | "max_mem_store" | "max_mem" => {
                        js.max_memory = size(f, &f.value.kind)?
                    }
                    "max_file_store" | "max_file" => js.max_file = size(f, &f.value.kind)?,
                    "domain" => js.domain = Some(get_str(f)?).filter(|d| !d.is_empty()),
                    "enable" | "enabled" => enabled = get_bool(f)?,
                    "sync_interval" | "sync" => {
                        let s = get_str(f)?;
                        if s.eq_ignore_ascii_case("always") {
                            js.sync_always = true;
                        } else {
                            let ns = super::duration::parse_go_duration(&s).map_err(|err| {
                                bad(f, format!("error parsing sync_interval: {err}"))
                            })?;
                            js.sync_interval = nanos(ns);
                        }
                    }
                    "strict" => js.strict = get_bool(f)?,
                    "cipher" => {
                        let c = get_str(f)?;
                        cipher = Some((
                            f,
                            match c.to_ascii_lowercase().as_str() {
                                "chacha" | "chachapoly" => JsCipher::ChaChaPoly,
                                "aes" => JsCipher::Aes,
                                _ => return Err(bad(f, format!("Unknown cipher type: {c:?}"))),
                            },
                        ));
                    }
                    "key" | "ek" | "encryption_key" => key = Some((f, get_str(f)?)),
                    "prev_key" | "prev_ek" | "prev_encryption_key" => {
                        prev_key = Some((f, get_str(f)?))
                    }
                    "max_outstanding_catchup"
                    | "unique_tag"
                    | "extension_hint"
                    | "info_queue_limit"
                    | "meta_compact"
                    | "meta_compact_size"
                    | "meta_compact_sync"
                    | "limits"
                    | "max_buffered_msgs"
                    | "max_buffered_size"
                    | "request_queue_limit"
                    | "tpm" => {
                        return Err(ConfigError::Unsupported {
                            pos: f.key_pos.clone(),
                            key: format!("jetstream.{}", f.key),
                        })
                    }
                    _ => return Err(super::read::unknown(f)),
                }
            }
            if let (Some((f, _)), None) = (&prev_key, &key) {
                return Err(bad(f, "jetstream prev_key needs a key"));
            }
            js.encryption = match (key, cipher) {
                (Some((f, k)), _) if k.is_empty() => {
                    return Err(bad(f, "jetstream key must not be empty"))
                }
                (Some((_, key)), c) => Some(JsEncryption {
                    cipher: c.map_or(JsCipher::ChaChaPoly, |(_, c)| c),
                    key,
                    prev_key: match prev_key.take() {
                        Some((f, p)) if p.is_empty() => {
                            return Err(bad(f, "jetstream prev_key must not be empty"))
                        }
                        p => p.map(|(_, p)| p),
                    },
                }),
                (None, Some((f, _))) => return Err(bad(f, "jetstream cipher needs a key")),
                (None, None) => None,
            };
            Ok(enabled.then_some(js))
        }
        _ => Err(type_err(e, "map, boolean or 'enabled'")),
    }
}

/// An account's `jetstream` entry: `enabled`/`disabled` or a map of limits.
pub(super) fn account(e: &Entry) -> Result<Option<JsAccountLimits>, ConfigError> {
    let mut l = JsAccountLimits::default();
    match &e.value.kind {
        Kind::Bool(b) => Ok(b.then_some(l)),
        Kind::String(s) => match s.to_ascii_lowercase().as_str() {
            "enabled" | "enable" | "true" => Ok(Some(l)),
            "disabled" | "disable" | "false" => Ok(None),
            _ => Err(bad(
                e,
                format!("Expected 'enabled' or 'disabled' for string value, got '{s}'"),
            )),
        },
        Kind::Map(m) => {
            for f in &m.entries {
                match f.key.to_lowercase().as_str() {
                    // nats-server's `parseJetStreamForAccount` names.
                    "max_memory" | "max_mem" | "mem" | "memory" => {
                        l.max_memory = size(f, &f.value.kind)?
                    }
                    "max_file" | "max_store" | "max_disk" | "store" | "disk" => {
                        l.max_store = size(f, &f.value.kind)?
                    }
                    "max_streams" | "streams" => l.max_streams = get_int(f)?,
                    "max_consumers" | "consumers" => l.max_consumers = get_int(f)?,
                    "max_bytes_required"
                    | "max_stream_bytes"
                    | "max_bytes"
                    | "mem_max_stream_bytes"
                    | "memory_max_stream_bytes"
                    | "disk_max_stream_bytes"
                    | "store_max_stream_bytes"
                    | "max_ack_pending"
                    | "cluster_traffic" => {
                        return Err(ConfigError::Unsupported {
                            pos: f.key_pos.clone(),
                            key: format!("jetstream.{}", f.key),
                        })
                    }
                    _ => return Err(super::read::unknown(f)),
                }
            }
            Ok(Some(l))
        }
        _ => Err(type_err(e, "map or 'enabled'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("x"), None);
    }
}
