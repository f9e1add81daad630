//! Mapping nats.conf keys onto Options, and the property test that printed
//! trees parse back to themselves.

use std::path::PathBuf;
use std::time::Duration;

use natrix_broker::config::{apply, load_file, parse_str, to_conf_string, ConfigError, Kind, Map};
use natrix_broker::options::Options;
use proptest::prelude::*;

fn load(s: &str) -> Result<(Options, Vec<String>), ConfigError> {
    let m = parse_str(s, "nats.conf")?;
    let mut o = Options::default();
    let w = apply(&m, &mut o)?;
    Ok((o, w))
}

fn opts(s: &str) -> Options {
    let (o, w) = load(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    assert!(w.is_empty(), "{s:?}: unexpected warnings {w:?}");
    o
}

fn err(s: &str) -> String {
    load(s).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn all_supported_keys() {
    let o = opts(concat!(
        "listen: 127.0.0.1:4333\n",
        "client_advertise: \"nats.example:4222\"\n",
        "http: 0.0.0.0:8222\n",
        "https_port: 8443\n",
        "http_base_path: /mon\n",
        "server_name: srv-1\n",
        "max_payload: 2MB\n",
        "max_pending: 128MB\n",
        "max_control_line: 8KB\n",
        "max_connections: 100\n",
        "max_subscriptions: 1000\n",
        "ping_interval: \"30s\"\n",
        "ping_max: 5\n",
        "write_deadline: \"2s\"\n",
        "authorization { timeout: 1.5 }\n",
        "debug: true\n",
        "trace: true\n",
        "logtime: false\n",
        "log_file: /tmp/n.log\n",
        "pid_file: /tmp/n.pid\n",
        "ports_file_dir: /tmp\n",
        "no_header_support: true\n",
        "lame_duck_duration: \"1m\"\n",
        "lame_duck_grace_period: \"5s\"\n",
    ));
    assert_eq!(o.host, "127.0.0.1");
    assert_eq!(o.port, 4333);
    assert_eq!(o.client_advertise.as_deref(), Some("nats.example:4222"));
    assert_eq!(o.http_host, "0.0.0.0");
    assert_eq!(o.http_port, 8222);
    assert_eq!(o.https_port, 8443);
    assert_eq!(o.http_base_path, "/mon");
    assert_eq!(o.server_name.as_deref(), Some("srv-1"));
    assert_eq!(o.max_payload, 2 * 1024 * 1024);
    assert_eq!(o.max_pending, 128 * 1024 * 1024);
    assert_eq!(o.max_control_line, 8 * 1024);
    assert_eq!(o.max_connections, 100);
    assert_eq!(o.max_subscriptions, 1000);
    assert_eq!(o.ping_interval, Duration::from_secs(30));
    assert_eq!(o.ping_max, 5);
    assert_eq!(o.write_deadline, Duration::from_secs(2));
    assert_eq!(o.auth_timeout, Duration::from_millis(1500));
    assert!(o.debug && o.trace && !o.logtime && o.no_header_support);
    assert_eq!(o.log_file, Some(PathBuf::from("/tmp/n.log")));
    assert_eq!(o.pid_file, Some(PathBuf::from("/tmp/n.pid")));
    assert_eq!(o.ports_file_dir, Some(PathBuf::from("/tmp")));
    assert_eq!(o.lame_duck_duration, Duration::from_secs(60));
    assert_eq!(o.lame_duck_grace_period, Duration::from_secs(5));
}

#[test]
fn aliases_and_case() {
    let o = opts("NET: 10.0.0.1\nPort: 1\nmonitor_port: 2\nmax_conn: 3\nmax_subs: 4\nlogfile: l\npidfile: p\ntrace_verbose: true");
    assert_eq!(o.host, "10.0.0.1");
    assert_eq!(
        o.http_host, "10.0.0.1",
        "monitoring host follows the client host"
    );
    assert_eq!(
        (o.port, o.http_port, o.max_connections, o.max_subscriptions),
        (1, 2, 3, 4)
    );
    assert_eq!(o.log_file, Some(PathBuf::from("l")));
    assert_eq!(o.pid_file, Some(PathBuf::from("p")));
    assert!(o.trace && o.trace_verbose);
    assert_eq!(opts("host: h").host, "h");
}

#[test]
fn listen_forms() {
    assert_eq!(opts("listen: 4333").port, 4333);
    let o = opts("listen: \":4444\"");
    assert_eq!((o.host.as_str(), o.port), ("0.0.0.0", 4444));
    let o = opts("listen \"[::1]:4555\"");
    assert_eq!((o.host.as_str(), o.port), ("::1", 4555));
    let o = opts("https: 127.0.0.1:8443");
    assert_eq!((o.http_host.as_str(), o.https_port), ("127.0.0.1", 8443));
    assert_eq!(opts("http: 8222").http_port, 8222);
    assert_eq!(opts("port: -1").port, -1);
    assert!(err("listen: \"4222\"").contains("could not parse address string"));
    assert!(err("listen: \"h:x\"").contains("could not parse port"));
    assert!(err("listen: true").contains("expected port or host:port, got boolean"));
}

#[test]
fn durations() {
    assert_eq!(
        opts("ping_interval: 1h").ping_interval,
        Duration::from_secs(3600)
    );
    assert_eq!(
        opts("write_deadline: 500ms").write_deadline,
        Duration::from_millis(500)
    );
    // Integer seconds are accepted with a warning, as in nats-server.
    let (o, w) = load("ping_interval: 30").unwrap();
    assert_eq!(o.ping_interval, Duration::from_secs(30));
    assert_eq!(
        w,
        vec![
            "nats.conf:1:1: invalid use of field \"ping_interval\": ping_interval should be converted to a duration"
                .to_string()
        ]
    );
    assert!(
        err("ping_interval: \"3d\"").contains("error parsing ping_interval: time: unknown unit")
    );
    assert!(err("lame_duck_duration: \"10s\"").contains("minimum is 30 seconds"));
    assert!(err("lame_duck_grace_period: \"-1s\"").contains("needs to be positive"));
}

#[test]
fn bad_types_and_ranges() {
    assert_eq!(
        err("\n  port: \"x\""),
        "nats.conf:2:3: port: expected integer, got string"
    );
    assert!(err("debug: 1").contains("debug: expected boolean, got integer"));
    assert!(err("server_name: 1").contains("expected string"));
    assert!(err("max_payload: 8GB").contains("max_payload value is too big"));
    assert!(err("max_connections: 5000000000").contains("out of range"));
    // nats-server knows auth_timeout only inside `authorization`.
    assert!(err("auth_timeout: 1").contains("unknown field \"auth_timeout\""));
    assert!(err("monitoring_port: 1").contains("1:1: unknown field \"monitoring_port\""));
    assert!(err("cluster { port: 1, bogus: 1 }").contains("unknown field \"bogus\""));
    assert!(err("tls { bogus: 1 }").contains("error parsing tls config, unknown field \"bogus\""));
}

#[test]
fn unsupported_keys_fail_with_position() {
    for k in [
        "leafnodes",
        "gateway",
        "websocket",
        "mqtt",
        "operator",
        "resolver_preload",
        "syslog",
        "remote_syslog",
        "logfile_size_limit",
    ] {
        let e = err(&format!("port: 1\n  {k}: {{}}\n"));
        assert_eq!(
            e,
            format!("nats.conf:2:3: \"{k}\" is not supported yet"),
            "{k}"
        );
    }
    // Route features not implemented yet fail loudly inside `cluster`.
    for k in ["pool_size", "compression"] {
        let e = err(&format!("port: 1\ncluster {{\n  {k}: {{}}\n}}\n"));
        assert_eq!(
            e,
            format!("nats.conf:3:3: \"cluster.{k}\" is not supported yet"),
            "{k}"
        );
    }
    // The cache resolver takes `ttl`, not the full resolver's `interval`/`allow_delete`.
    assert!(err("resolver: { type: cache, dir: d, allow_delete: true }")
        .contains("allow_delete only applies to resolver type full"));
    assert!(err("resolver: { type: full, dir: d, ttl: \"1h\" }")
        .contains("ttl only applies to resolver type cache"));
    // JetStream settings this broker does not implement fail the same way.
    assert_eq!(
        err("JetStream: {\n  unique_tag: az\n}"),
        "nats.conf:2:3: \"jetstream.unique_tag\" is not supported yet"
    );
    let (o, _) =
        load("jetstream: { store_dir: \"/data\", max_mem: 1GB, sync_interval: always }").unwrap();
    let js = o.jetstream.expect("enabled");
    assert_eq!(js.store_dir, std::path::PathBuf::from("/data"));
    assert_eq!(js.max_memory, 1 << 30);
    assert!(js.sync_always);
    assert!(load("jetstream: disabled").unwrap().0.jetstream.is_none());
}

#[test]
fn unknown_keys_fail() {
    // As nats-server, at startup too: a misspelt key is never silently dropped.
    assert_eq!(
        err("port: 5\nfoo_bar: 1\n"),
        "nats.conf:2:1: unknown field \"foo_bar\""
    );
    // Keys only used as variables are not reported.
    let (o, w) = load("P: 6\nport: $P").unwrap();
    assert_eq!(o.port, 6);
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn load_file_reads_and_records_path() {
    let dir = std::env::temp_dir().join(format!("natrix-cfg-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("n.conf");
    std::fs::write(&f, "port: 7777\nping_interval: 5\n").unwrap();
    let (o, w) = load_file(&f).unwrap();
    assert_eq!(o.port, 7777);
    assert_eq!(o.config_file, Some(f.clone()));
    assert_eq!(w.len(), 1);
    std::fs::write(&f, "# nothing\n").unwrap();
    assert!(matches!(load_file(&f), Err(ConfigError::Empty { .. })));
    assert!(matches!(
        load_file(dir.join("missing.conf")),
        Err(ConfigError::Io { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- property test: print a random tree, parse it back ----

fn key() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z_][a-z0-9_]{0,8}", "[a-zA-Z0-9 ._:=/#{}\\[\\]-]{0,10}",]
        .prop_filter("include is a keyword", |k| k.to_lowercase() != "include")
}

fn leaf() -> impl Strategy<Value = Kind> {
    prop_oneof![
        any::<bool>().prop_map(Kind::Bool),
        any::<i64>().prop_map(Kind::Int),
        (-1.0e12f64..1.0e12).prop_map(Kind::Float),
        any::<String>().prop_map(|s| Kind::String(s.replace('\0', ""))),
        "[ -~]{0,12}".prop_map(Kind::String),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5)
                .prop_map(|v| Kind::Array(v.into_iter().map(val).collect())),
            prop::collection::vec((key(), inner), 0..5).prop_map(|v| Kind::Map(map(v))),
        ]
    })
}

fn val(kind: Kind) -> natrix_broker::config::Value {
    natrix_broker::config::Value {
        kind,
        pos: Default::default(),
    }
}

fn map(entries: Vec<(String, Kind)>) -> Map {
    let mut m = Map::default();
    for (k, v) in entries {
        m.insert(k, Default::default(), val(v));
    }
    m
}

/// The tree without positions, for comparing.
fn strip(k: &Kind) -> Kind {
    match k {
        Kind::Array(a) => Kind::Array(a.iter().map(|v| val(strip(&v.kind))).collect()),
        Kind::Map(m) => Kind::Map(map(m
            .entries
            .iter()
            .map(|e| (e.key.clone(), strip(&e.value.kind)))
            .collect())),
        k => k.clone(),
    }
}

proptest! {
    #[test]
    fn printed_trees_parse_back(entries in prop::collection::vec((key(), kind()), 0..6)) {
        let tree = map(entries);
        let text = to_conf_string(&tree);
        let parsed = parse_str(&text, "prop.conf")
            .map_err(|e| TestCaseError::fail(format!("{e}\n---\n{text}")))?;
        prop_assert_eq!(strip(&Kind::Map(parsed)), strip(&Kind::Map(tree)), "text:\n{}", text);
    }
}
