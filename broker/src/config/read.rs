//! Reading one config entry: typed values, Go's `host:port` and duration forms, and
//! nats-server's error words for each. Every part of the config mapping reads through these.

use std::time::Duration;

use super::duration::parse_go_duration;
use super::value::{Entry, Kind};
use super::ConfigError;

/// A bad value for the key of `e`, with nats-server's position and words.
pub(super) fn bad(e: &Entry, msg: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        pos: e.key_pos.clone(),
        key: e.key.clone(),
        msg: msg.into(),
    }
}

/// nats-server's error for a key it does not know.
pub(super) fn unknown(e: &Entry) -> ConfigError {
    ConfigError::UnknownField {
        pos: e.key_pos.clone(),
        key: e.key.clone(),
        prefix: "",
    }
}

/// A value of the wrong type for the key of `e`.
pub(super) fn type_err(e: &Entry, want: &str) -> ConfigError {
    bad(
        e,
        format!(
            "{}: expected {want}, got {}",
            e.key,
            e.value.kind.type_name()
        ),
    )
}

/// The string value of `e`.
pub(super) fn get_str(e: &Entry) -> Result<String, ConfigError> {
    match &e.value.kind {
        Kind::String(s) => Ok(s.clone()),
        _ => Err(type_err(e, "string")),
    }
}

/// The boolean value of `e`.
pub(super) fn get_bool(e: &Entry) -> Result<bool, ConfigError> {
    match &e.value.kind {
        Kind::Bool(b) => Ok(*b),
        _ => Err(type_err(e, "boolean")),
    }
}

/// The integer value of `e`.
pub(super) fn get_int(e: &Entry) -> Result<i64, ConfigError> {
    match &e.value.kind {
        Kind::Int(i) => Ok(*i),
        _ => Err(type_err(e, "integer")),
    }
}

/// The integer value of `e`, in `i32`.
pub(super) fn get_i32(e: &Entry) -> Result<i32, ConfigError> {
    let v = get_int(e)?;
    i32::try_from(v).map_err(|_| bad(e, format!("{} value {v} is out of range", e.key)))
}

/// Go's `net.SplitHostPort`.
pub(super) fn split_host_port(s: &str) -> Result<(String, String), String> {
    let missing = || format!("address {s}: missing port in address");
    let too_many = || format!("address {s}: too many colons in address");
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| format!("address {s}: missing ']' in address"))?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = after.strip_prefix(':').ok_or_else(missing)?;
        if port.contains(':') || port.contains('[') || port.contains(']') {
            return Err(too_many());
        }
        return Ok((host.to_string(), port.to_string()));
    }
    let i = s.rfind(':').ok_or_else(missing)?;
    let (host, port) = (&s[..i], &s[i + 1..]);
    if host.contains(':') {
        return Err(too_many());
    }
    if host.contains('[') || host.contains(']') || port.contains('[') || port.contains(']') {
        return Err(format!("address {s}: unexpected bracket in address"));
    }
    Ok((host.to_string(), port.to_string()))
}

/// nats-server's `parseListen`: a port, or "host:port" (host may be empty).
pub(super) fn parse_listen(e: &Entry) -> Result<(String, i32), ConfigError> {
    match &e.value.kind {
        Kind::Int(p) => {
            let p = i32::try_from(*p).map_err(|_| bad(e, format!("port {p} is out of range")))?;
            Ok((String::new(), p))
        }
        Kind::String(s) => {
            let (host, port) = split_host_port(s)
                .map_err(|_| bad(e, format!("could not parse address string {s:?}")))?;
            let port: i32 = port
                .parse()
                .map_err(|_| bad(e, format!("could not parse port {port:?}")))?;
            Ok((host, port))
        }
        k => Err(bad(
            e,
            format!("expected port or host:port, got {}", k.type_name()),
        )),
    }
}

/// nats-server's `parseDuration`: a Go duration string, or (deprecated) integer seconds.
pub(super) fn parse_duration(
    e: &Entry,
    warnings: &mut Vec<String>,
) -> Result<Duration, ConfigError> {
    match &e.value.kind {
        Kind::String(s) => {
            let ns = parse_go_duration(s)
                .map_err(|err| bad(e, format!("error parsing {}: {err}", e.key)))?;
            u64::try_from(ns)
                .map(Duration::from_nanos)
                .map_err(|_| bad(e, format!("{} can not be negative", e.key)))
        }
        Kind::Int(secs) => {
            warnings.push(format!(
                "{}: invalid use of field {:?}: {} should be converted to a duration",
                e.key_pos, e.key, e.key
            ));
            u64::try_from(*secs)
                .map(Duration::from_secs)
                .map_err(|_| bad(e, format!("{} can not be negative", e.key)))
        }
        _ => Err(type_err(e, "duration string")),
    }
}

/// A Go duration string, in nanoseconds.
pub(super) fn parse_string_duration(e: &Entry) -> Result<i128, ConfigError> {
    let s = get_str(e)?;
    parse_go_duration(&s).map_err(|err| bad(e, format!("error parsing {}: {err}", e.key)))
}

/// Nanoseconds as a `Duration` (negative is zero).
pub(super) fn nanos(ns: i128) -> Duration {
    Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

/// An `i32` value nats-server refuses as too big past `i32::MAX`.
pub(super) fn too_big_i32(e: &Entry) -> Result<i32, ConfigError> {
    let v = get_int(e)?;
    if v > i32::MAX as i64 {
        return Err(bad(e, format!("{} value is too big", e.key)));
    }
    i32::try_from(v).map_err(|_| bad(e, format!("{} value {v} is out of range", e.key)))
}
