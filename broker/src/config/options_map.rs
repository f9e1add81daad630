//! Mapping a parsed config tree onto [`Options`], key by key as nats-server's
//! `processConfigFileLine` does (case-insensitive keys, same aliases).

use std::path::PathBuf;

use super::read::{
    bad, get_bool, get_i32, get_int, get_str, nanos, parse_duration, parse_listen,
    parse_string_duration, too_big_i32, type_err, unknown,
};
use super::security::{self, SecurityState};
use super::value::{Kind, Map};
use super::ConfigError;
use crate::options::Options;

/// Top-level keys nats-server knows that this broker does not implement yet:
/// loading a file that sets one fails rather than silently ignoring it.
pub const NOT_SUPPORTED_KEYS: &[&str] = &[
    "account_resolver",
    "accounts_resolver",
    "connect_error_reports",
    "default_js_domain",
    "disable_sublist_cache",
    "feature_flags",
    "gateway",
    "leaf",
    "leafnodes",
    "log_max_num",
    "log_size_limit",
    "logfile_max_num",
    "logfile_size_limit",
    "logtime_utc",
    "mappings",
    "maps",
    "max_closed_clients",
    "max_sub_tokens",
    "max_subscription_tokens",
    "max_traced_msg_len",
    "mqtt",
    "no_fast_producer_stall",
    "no_sublist_cache",
    "no_system",
    "ocsp",
    "ocsp_cache",
    "prof_block_rate",
    "proxies",
    "proxy_protocol",
    "reconnect_error_reports",
    "remote_syslog",
    "resolver_pinned_accounts",
    "resolver_tls",
    "root",
    "roots",
    "server_tags",
    "syslog",
    "trace_headers",
    "websocket",
    "write_timeout",
    "ws",
];

/// Apply a parsed top-level map onto `opts`; returns warnings (deprecated forms, which
/// `-t` refuses). Unknown keys, known-but-unsupported keys and bad values are errors.
pub fn apply(map: &Map, opts: &mut Options) -> Result<Vec<String>, ConfigError> {
    let mut warnings = Vec::new();
    let mut http_host_set = false;
    let mut sec = SecurityState::default();
    let mut operator_entries = Vec::new();
    let mut store_dir = None;
    for e in &map.entries {
        let key = e.key.to_lowercase();
        match key.as_str() {
            "listen" => {
                let (host, port) = parse_listen(e)?;
                opts.host = if host.is_empty() {
                    "0.0.0.0".into()
                } else {
                    host
                };
                opts.port = port;
            }
            "client_advertise" => opts.client_advertise = Some(get_str(e)?),
            "port" => opts.port = get_i32(e)?,
            "server_name" => opts.server_name = Some(get_str(e)?),
            "host" | "net" => opts.host = get_str(e)?,
            "debug" => opts.debug = get_bool(e)?,
            "trace" => opts.trace = get_bool(e)?,
            "trace_verbose" => {
                opts.trace_verbose = get_bool(e)?;
                opts.trace = opts.trace_verbose;
            }
            "logtime" => opts.logtime = get_bool(e)?,
            "http" | "https" => {
                let (host, port) = parse_listen(e)?;
                if !host.is_empty() {
                    opts.http_host = host;
                    http_host_set = true;
                }
                if key == "http" {
                    opts.http_port = port;
                } else {
                    opts.https_port = port;
                }
            }
            "http_port" | "monitor_port" => opts.http_port = get_i32(e)?,
            "prof_port" => opts.prof_port = get_i32(e)?,
            "https_port" => opts.https_port = get_i32(e)?,
            "http_base_path" => opts.http_base_path = get_str(e)?,
            "logfile" | "log_file" => opts.log_file = Some(PathBuf::from(get_str(e)?)),
            "pidfile" | "pid_file" => opts.pid_file = Some(PathBuf::from(get_str(e)?)),
            "ports_file_dir" => opts.ports_file_dir = Some(PathBuf::from(get_str(e)?)),
            "max_control_line" => opts.max_control_line = too_big_i32(e)?,
            "max_payload" => opts.max_payload = too_big_i32(e)?,
            "max_pending" => opts.max_pending = get_int(e)?,
            "max_connections" | "max_conn" => opts.max_connections = get_i32(e)?,
            "max_subscriptions" | "max_subs" => opts.max_subscriptions = get_i32(e)?,
            "ping_interval" => opts.ping_interval = parse_duration(e, &mut warnings)?,
            "ping_max" => opts.ping_max = get_i32(e)?,
            "write_deadline" => opts.write_deadline = parse_duration(e, &mut warnings)?,
            "no_header_support" => opts.no_header_support = get_bool(e)?,
            "no_sys_acc" | "no_system_account" => opts.no_sys_acc = get_bool(e)?,
            "allow_non_tls" => opts.allow_non_tls = get_bool(e)?,
            "default_sentinel" => opts.default_sentinel = Some(get_str(e)?),
            "server_metadata" => {
                let Kind::Map(m) = &e.value.kind else {
                    return Err(type_err(e, "map"));
                };
                for f in &m.entries {
                    opts.server_metadata.insert(f.key.clone(), get_str(f)?);
                }
            }
            "authorization" => security::authorization(e, opts, &mut sec)?,
            "accounts" => super::accounts_block::accounts(e, opts, &mut sec)?,
            "system_account" | "system" => {
                let name = match &e.value.kind {
                    Kind::String(s) => s.clone(),
                    _ => return Err(bad(e, "system account name must be a string")),
                };
                opts.system_account = Some(name);
                sec.system_account_pos = Some(e.key_pos.clone());
            }
            "no_auth_user" => {
                opts.no_auth_user = Some(get_str(e)?);
                sec.no_auth_user_pos = Some(e.key_pos.clone());
            }
            "tls" => opts.tls = Some(super::tls_block::tls(e)?),
            "jetstream" => opts.jetstream = super::jetstream::server(e)?,
            "store_dir" | "storedir" => {
                // nats-server: a top-level store_dir sets the directory (and does not enable).
                let dir = get_str(e)?;
                store_dir = Some(dir);
            }
            "cluster" => opts.cluster = Some(super::cluster::cluster(e)?),
            "lame_duck_duration" => {
                let ns = parse_string_duration(e)?;
                if ns < 30_000_000_000 {
                    let s = get_str(e)?;
                    return Err(bad(
                        e,
                        format!("invalid lame_duck_duration of {s}, minimum is 30 seconds"),
                    ));
                }
                opts.lame_duck_duration = nanos(ns);
            }
            "lame_duck_on_sigterm" => opts.lame_duck_on_sigterm = get_bool(e)?,
            "watch_config" => {
                opts.watch_config = match &e.value.kind {
                    Kind::Bool(false) => None,
                    Kind::Bool(true) => Some(crate::options::WATCH_CONFIG_INTERVAL),
                    _ => {
                        let ns = parse_string_duration(e)?;
                        if ns < 100_000_000 {
                            return Err(bad(e, "watch_config interval must be at least 100ms"));
                        }
                        Some(nanos(ns))
                    }
                }
            }
            "lame_duck_grace_period" => {
                let ns = parse_string_duration(e)?;
                if ns < 0 {
                    return Err(bad(
                        e,
                        "invalid lame_duck_grace_period, needs to be positive",
                    ));
                }
                opts.lame_duck_grace_period = nanos(ns);
            }
            "operator" | "operators" | "root_operator" | "root_operators" | "resolver"
            | "resolver_preload" | "trusted" | "trusted_keys" => operator_entries.push(e),
            k if NOT_SUPPORTED_KEYS.contains(&k) => {
                return Err(ConfigError::Unsupported {
                    pos: e.key_pos.clone(),
                    key: e.key.clone(),
                })
            }
            _ => return Err(unknown(e)),
        }
    }
    if let (Some(js), Some(dir)) = (opts.jetstream.as_mut(), store_dir) {
        if js.store_dir == crate::options::JetStreamOptions::default().store_dir {
            js.store_dir = dir.into();
        }
    }
    super::operator::apply(&operator_entries, opts)?;
    super::whole_file::finish(opts, &sec)?;
    // nats-server: the monitoring host defaults to the client host.
    if !http_host_set {
        opts.http_host = opts.host.clone();
    }
    Ok(warnings)
}
