//! nats.conf rendering: an ordered value tree, the user's overrides merged in, then text.

use std::fmt::Write;

use crate::crd::NatsCluster;

use super::{names, RenderError};
use crate::units::{parse_duration, parse_size};

/// Directory of the JetStream store (the `data` PVC).
pub const STORE_DIR: &str = "/data";
/// Directory of the account resolver (the `resolver` PVC).
pub const RESOLVER_DIR: &str = "/data/resolver";
/// Path of the broker's pid file.
pub const PID_FILE: &str = "/var/run/nats/nats.pid";
/// Where the operator JWT is mounted in operator mode.
pub const OPERATOR_JWT: &str = "/etc/nats/operator/operator.jwt";
/// The operator Secret's preload fragment, relative to nats.conf (includes are relative).
pub const PRELOAD_INCLUDE: &str = "operator/resolver-preload.conf";
/// Where listener certificates are mounted (`<dir>/<listener>/tls.crt`).
pub const TLS_DIR: &str = "/etc/nats/tls";

/// Top-level nats.conf keys the broker reloads live; they are left out of the restart checksum.
pub const RELOADABLE_KEYS: &[&str] = &[
    "tls",
    "debug",
    "trace",
    "trace_verbose",
    "logtime",
    "log_file",
    "max_connections",
    "max_payload",
    "max_control_line",
    "ping_interval",
    "ping_max",
    "write_deadline",
    "authorization",
];

/// A nats.conf value.
#[derive(Clone, Debug, PartialEq)]
pub enum ConfValue {
    /// A quoted string.
    Str(String),
    /// Written verbatim (a `$VARIABLE` reference).
    Raw(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// An array.
    List(Vec<ConfValue>),
    /// A block of keys in order.
    Map(ConfMap),
    /// `include "<path>"` (relative to nats.conf); its key is not written.
    Include(String),
}

/// An ordered block of keys.
pub type ConfMap = Vec<(String, ConfValue)>;

fn s(v: impl Into<String>) -> ConfValue {
    ConfValue::Str(v.into())
}

/// The configuration tree for a NatsCluster, with `spec.config` merged over it.
pub fn conf_tree(nc: &NatsCluster) -> Result<ConfMap, RenderError> {
    let spec = &nc.spec;
    let n = names(nc)?;
    let grace = &spec.lame_duck.grace_period;
    let duration = &spec.lame_duck.duration;
    parse_duration(grace).ok_or_else(|| RenderError::invalid("lameDuck.gracePeriod", grace))?;
    parse_duration(duration).ok_or_else(|| RenderError::invalid("lameDuck.duration", duration))?;

    let mut m: ConfMap = vec![
        ("server_name".into(), ConfValue::Raw("$SERVER_NAME".into())),
        ("port".into(), ConfValue::Int(spec.ports.client.into())),
        (
            "http_port".into(),
            ConfValue::Int(spec.ports.monitor.into()),
        ),
        ("pid_file".into(), s(PID_FILE)),
        ("lame_duck_on_sigterm".into(), ConfValue::Bool(true)),
        // The broker reloads itself when the kubelet refreshes the mounted ConfigMap or
        // certificate Secrets: reloadable changes need no restart and no signal.
        ("watch_config".into(), ConfValue::Bool(true)),
        ("lame_duck_grace_period".into(), s(grace.clone())),
        ("lame_duck_duration".into(), s(duration.clone())),
    ];

    let routes = (0..spec.replicas)
        .map(|i| {
            s(format!(
                "nats://{}-{i}.{}:{}",
                n.statefulset, n.headless, spec.ports.cluster
            ))
        })
        .collect();
    let mut cluster: ConfMap = vec![
        ("name".into(), s(n.statefulset.clone())),
        ("port".into(), ConfValue::Int(spec.ports.cluster.into())),
        ("no_advertise".into(), ConfValue::Bool(true)),
        ("routes".into(), ConfValue::List(routes)),
    ];

    if let Some(tls) = &spec.tls {
        let ca = tls.ca.as_ref().map(|c| format!("{TLS_DIR}/ca/{}", c.key));
        let block = |listener: &str, verify: bool| {
            let mut b: ConfMap = vec![
                (
                    "cert_file".into(),
                    s(format!("{TLS_DIR}/{listener}/tls.crt")),
                ),
                (
                    "key_file".into(),
                    s(format!("{TLS_DIR}/{listener}/tls.key")),
                ),
            ];
            if let Some(ca) = &ca {
                b.push(("ca_file".into(), s(ca.clone())));
            }
            if verify {
                b.push(("verify".into(), ConfValue::Bool(true)));
            }
            ConfValue::Map(b)
        };
        if let Some(c) = &tls.client {
            m.push(("tls".into(), block("client", c.verify)));
        }
        if let Some(c) = &tls.cluster {
            cluster.push(("tls".into(), block("cluster", c.verify)));
        }
    }
    m.push(("cluster".into(), ConfValue::Map(cluster)));

    if spec.jetstream.enabled {
        let size = &spec.jetstream.file_storage.size;
        let bytes = parse_size(size)
            .ok_or_else(|| RenderError::invalid("jetstream.fileStorage.size", size))?;
        let mut js: ConfMap = vec![
            ("store_dir".into(), s(STORE_DIR)),
            ("max_file_store".into(), ConfValue::Int(bytes)),
        ];
        if let Some(mem) = &spec.jetstream.memory_storage {
            let bytes = parse_size(&mem.max_size).ok_or_else(|| {
                RenderError::invalid("jetstream.memoryStorage.maxSize", &mem.max_size)
            })?;
            js.push(("max_memory_store".into(), ConfValue::Int(bytes)));
        }
        m.push(("jetstream".into(), ConfValue::Map(js)));
    }

    match (spec.auth.operator_mode, spec.resolver.enabled) {
        (true, true) => {
            m.push(("operator".into(), s(OPERATOR_JWT)));
            m.push((
                "system_account".into(),
                ConfValue::Raw("$SYSTEM_ACCOUNT".into()),
            ));
            m.push((
                "resolver".into(),
                ConfValue::Map(vec![
                    ("type".into(), s("full")),
                    ("dir".into(), s(RESOLVER_DIR)),
                    ("allow_delete".into(), ConfValue::Bool(true)),
                ]),
            ));
            // `resolver_preload: { <SYS>: <JWT> }` from the operator Secret: the system
            // account's JWT stays out of the ConfigMap.
            m.push((
                "resolver_preload".into(),
                ConfValue::Include(PRELOAD_INCLUDE.into()),
            ));
        }
        (false, false) => {}
        (true, false) => {
            return Err(RenderError::InvalidSpec(
                "auth.operatorMode needs resolver.enabled: true (accounts are pushed to the full resolver)"
                    .into(),
            ))
        }
        (false, true) => {
            return Err(RenderError::InvalidSpec(
                "resolver.enabled needs auth.operatorMode: true".into(),
            ))
        }
    }

    if let Some(extra) = &spec.config {
        for (k, v) in extra {
            merge(&mut m, k, from_json(v)?);
        }
    }
    Ok(m)
}

/// Deep-merge `value` at `key`: blocks merge key by key, anything else replaces.
fn merge(m: &mut ConfMap, key: &str, value: ConfValue) {
    let Some((_, old)) = m.iter_mut().find(|(k, _)| k == key) else {
        m.push((key.to_string(), value));
        return;
    };
    match (old, value) {
        (ConfValue::Map(old), ConfValue::Map(new)) => {
            for (k, v) in new {
                merge(old, &k, v);
            }
        }
        (old, value) => *old = value,
    }
}

fn is_var_ref(v: &str) -> bool {
    let mut b = v.bytes();
    b.next() == Some(b'$') && v.len() > 1 && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Convert a JSON override to a conf value; a string `$NAME` becomes a variable reference.
fn from_json(v: &serde_json::Value) -> Result<ConfValue, RenderError> {
    use serde_json::Value;
    Ok(match v {
        Value::Null => {
            return Err(RenderError::InvalidSpec(
                "config: null values are not allowed".into(),
            ))
        }
        Value::Bool(b) => ConfValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => ConfValue::Int(i),
            None => ConfValue::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(x) if is_var_ref(x) => ConfValue::Raw(x.clone()),
        Value::String(x) => ConfValue::Str(x.clone()),
        Value::Array(a) => ConfValue::List(a.iter().map(from_json).collect::<Result<_, _>>()?),
        Value::Object(o) => ConfValue::Map(
            o.iter()
                .map(|(k, v)| Ok((k.clone(), from_json(v)?)))
                .collect::<Result<_, RenderError>>()?,
        ),
    })
}

fn quote(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn key(out: &mut String, k: &str) {
    if !k.is_empty()
        && k.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.')
    {
        out.push_str(k);
    } else {
        quote(out, k);
    }
}

fn write_value(out: &mut String, v: &ConfValue, indent: usize) {
    match v {
        ConfValue::Str(x) => quote(out, x),
        ConfValue::Raw(x) => out.push_str(x),
        ConfValue::Int(i) => {
            let _ = write!(out, "{i}");
        }
        ConfValue::Float(f) => {
            let _ = write!(out, "{f:?}");
        }
        ConfValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        ConfValue::List(items) => {
            out.push_str("[\n");
            for item in items {
                out.push_str(&"  ".repeat(indent + 1));
                write_value(out, item, indent + 1);
                out.push('\n');
            }
            out.push_str(&"  ".repeat(indent));
            out.push(']');
        }
        ConfValue::Map(m) => {
            out.push_str("{\n");
            write_map(out, m, indent + 1);
            out.push_str(&"  ".repeat(indent));
            out.push('}');
        }
        ConfValue::Include(path) => {
            out.push_str("include ");
            quote(out, path);
        }
    }
}

fn write_map(out: &mut String, m: &ConfMap, indent: usize) {
    for (k, v) in m {
        out.push_str(&"  ".repeat(indent));
        if let ConfValue::Include(_) = v {
            write_value(out, v, indent);
            out.push('\n');
            continue;
        }
        key(out, k);
        out.push_str(": ");
        write_value(out, v, indent);
        out.push('\n');
    }
}

/// nats.conf text of a tree.
pub fn to_text(header: &str, m: &ConfMap) -> String {
    let mut out = String::new();
    for line in header.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    write_map(&mut out, m, 0);
    out
}

/// The part of the configuration the broker cannot reload, as text (hashed for the pod annotation).
pub fn restart_only_text(m: &ConfMap) -> String {
    let kept: ConfMap = m
        .iter()
        .filter(|(k, _)| !RELOADABLE_KEYS.contains(&k.to_ascii_lowercase().as_str()))
        .map(|(k, v)| match v {
            // The broker reloads `cluster.routes` (the rest of the block needs a restart), so
            // scaling, which only changes the routes, restarts no running pod: they pick
            // up the new routes through `watch_config`.
            ConfValue::Map(block) if k.eq_ignore_ascii_case("cluster") => (
                k.clone(),
                ConfValue::Map(
                    block
                        .iter()
                        .filter(|(bk, _)| !bk.eq_ignore_ascii_case("routes"))
                        .cloned()
                        .collect(),
                ),
            ),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    to_text("", &kept)
}
