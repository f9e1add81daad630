//! Operator mode: `operator`, `resolver: MEMORY` and `resolver_preload`.

use super::read::{bad, get_str};
use super::value::{Entry, Kind, Value};
use super::ConfigError;
use crate::options::Options;

fn unsupported(e: &Entry) -> ConfigError {
    ConfigError::Unsupported {
        pos: e.key_pos.clone(),
        key: e.key.clone(),
    }
}

/// One `operator` value: the JWT itself, or a file holding it (plain or decorated).
fn operator_jwt(e: &Entry, s: &str) -> Result<String, ConfigError> {
    let s = s.trim();
    let jwt = if s.starts_with("eyJ") && s.matches('.').count() == 2 {
        s.to_string()
    } else {
        let contents = std::fs::read_to_string(s)
            .map_err(|err| bad(e, format!("error reading operator JWT {s:?}: {err}")))?;
        natrix_jwt::parse_decorated_jwt(&contents)
            .trim()
            .to_string()
    };
    natrix_jwt::decode_as::<natrix_jwt::Operator>(&jwt)
        .map_err(|err| bad(e, format!("error parsing operator JWT: {err}")))?;
    Ok(jwt)
}

/// Applies the operator-mode entries (collected from the top level) onto `opts`.
pub(super) fn apply(entries: &[&Entry], opts: &mut Options) -> Result<(), ConfigError> {
    let mut preload = None;
    for e in entries {
        match e.key.to_lowercase().as_str() {
            "operator" | "operators" | "root_operator" | "root_operators" => match &e.value.kind {
                Kind::String(s) => opts.trusted_operators.push(operator_jwt(e, s)?),
                Kind::Array(items) => {
                    for v in items {
                        let Kind::String(s) = &v.kind else {
                            return Err(bad(e, "operator must be a string"));
                        };
                        opts.trusted_operators.push(operator_jwt(e, s)?);
                    }
                }
                _ => return Err(unsupported(e)),
            },
            "resolver" => match &e.value.kind {
                Kind::String(s) if s.eq_ignore_ascii_case("MEMORY") => opts.memory_resolver = true,
                Kind::Map(m) => opts.full_resolver = Some(full_resolver(e, m)?),
                _ => return Err(unsupported(e)),
            },
            "resolver_preload" => preload = Some(*e),
            "trusted" | "trusted_keys" => {
                let values: Vec<&Value> = match &e.value.kind {
                    Kind::Array(items) => items.iter().collect(),
                    _ => vec![&e.value],
                };
                for v in values {
                    let Kind::String(k) = &v.kind else {
                        return Err(bad(e, "trusted keys must be strings"));
                    };
                    let valid = k.starts_with('O') && nkeys::KeyPair::from_public_key(k).is_ok();
                    if !valid {
                        return Err(ConfigError::Value {
                            pos: v.pos.clone(),
                            key: e.key.clone(),
                            msg: format!(
                                "trust key {k:?} required to be a valid public operator nkey"
                            ),
                        });
                    }
                    opts.trusted_keys.push(k.clone());
                }
            }
            _ => return Err(unsupported(e)),
        }
    }
    if let Some(e) = preload {
        // URL resolvers are not implemented; preloads go with the memory and full resolvers.
        if !opts.memory_resolver && opts.full_resolver.is_none() {
            return Err(unsupported(e));
        }
        let Kind::Map(m) = &e.value.kind else {
            return Err(bad(e, "resolver_preload should be a map"));
        };
        for a in &m.entries {
            let jwt = get_str(a)?;
            opts.resolver_preload
                .push((a.key.clone(), jwt.trim().to_string()));
        }
    }
    let has_resolver = opts.memory_resolver || opts.full_resolver.is_some();
    if has_resolver && !opts.operator_mode() {
        if let Some(e) = entries.first() {
            return Err(bad(e, "resolver requires an operator"));
        }
    }
    if opts.operator_mode() && !has_resolver {
        if let Some(e) = entries.first() {
            return Err(bad(
                e,
                "operator mode requires a resolver (MEMORY or { type: full })",
            ));
        }
    }
    Ok(())
}

/// A resolver `interval` or `timeout`: a positive Go duration string.
fn resolver_duration(e: &Entry) -> Result<std::time::Duration, ConfigError> {
    let s = get_str(e)?;
    let ns = super::duration::parse_go_duration(&s)
        .map_err(|err| bad(e, format!("error parsing {}: {err}", e.key)))?;
    match u64::try_from(ns) {
        Ok(ns) if ns > 0 => Ok(std::time::Duration::from_nanos(ns)),
        _ => Err(bad(e, format!("{} must be positive", e.key))),
    }
}

/// `resolver: { type: full, dir, allow_delete, interval, limit, timeout }`.
fn full_resolver(
    e: &Entry,
    m: &super::value::Map,
) -> Result<crate::options::FullResolverOptions, ConfigError> {
    let mut r = crate::options::FullResolverOptions {
        dir: std::path::PathBuf::from("."),
        allow_delete: false,
        limit: 1000,
        // nats-server's defaults: a sync every minute, lookups wait 1.9 s.
        interval: std::time::Duration::from_secs(60),
        timeout: std::time::Duration::from_millis(1900),
        cache_ttl: None,
    };
    let mut kind = None;
    let mut ttl = None;
    let mut full_only = None;
    for f in &m.entries {
        match f.key.to_lowercase().as_str() {
            "type" => kind = Some(get_str(f)?.to_lowercase()),
            "dir" => r.dir = get_str(f)?.into(),
            "allow_delete" => {
                r.allow_delete = super::read::get_bool(f)?;
                full_only = Some(f);
            }
            "limit" => r.limit = super::read::get_int(f)?,
            "interval" => {
                r.interval = resolver_duration(f)?;
                full_only = Some(f);
            }
            "ttl" => ttl = Some((f, resolver_duration(f)?)),
            "timeout" => r.timeout = resolver_duration(f)?,
            _ => return Err(unsupported(f)),
        }
    }
    match kind.as_deref() {
        Some("full") => {
            if let Some((f, _)) = ttl {
                return Err(bad(f, "ttl only applies to resolver type cache"));
            }
            Ok(r)
        }
        Some("cache") => {
            if let Some(f) = full_only {
                return Err(bad(
                    f,
                    format!("{} only applies to resolver type full", f.key),
                ));
            }
            r.cache_ttl = Some(ttl.map_or(std::time::Duration::ZERO, |(_, t)| t));
            Ok(r)
        }
        Some(other) => Err(bad(e, format!("unsupported resolver type {other:?}"))),
        None => Err(bad(e, "resolver type is required")),
    }
}
