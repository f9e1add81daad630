//! `/metrics`: Prometheus text format 0.0.4 under prometheus-nats-exporter's `-prefix=nats`
//! names, checked with a strict hand-written parser and against the JSON endpoints.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use common::{
    certs, conf,
    http::{get, get_json, https_get, wait_json},
    tempdir, Raw, TestServer,
};
use serde_json::Value;

/// The series the NATS Grafana dashboard for the Helm chart's exporter sidecar queries
/// (prometheus-nats-exporter `walkthrough/grafana-nats-dash-helm.json`).
const DASHBOARD_METRICS: &[&str] = &[
    "nats_varz_cpu",
    "nats_varz_mem",
    "nats_varz_in_bytes",
    "nats_varz_in_msgs",
    "nats_varz_out_bytes",
    "nats_varz_out_msgs",
    "nats_varz_connections",
    "nats_varz_subscriptions",
    "nats_varz_slow_consumers",
];

/// The exporter's core series (`-varz -connz -routez -subz -healthz -accstatz -leafz`) that a
/// server without clustering, gateways or JetStream produces.
const EXPORTER_METRICS: &[&str] = &[
    "nats_varz_connections",
    "nats_varz_total_connections",
    "nats_varz_subscriptions",
    "nats_varz_in_msgs",
    "nats_varz_out_msgs",
    "nats_varz_in_bytes",
    "nats_varz_out_bytes",
    "nats_varz_in_client_msgs",
    "nats_varz_out_client_bytes",
    "nats_varz_slow_consumers",
    "nats_varz_slow_consumer_stats_clients",
    "nats_varz_stale_connections",
    "nats_varz_stale_connection_stats_routes",
    "nats_varz_stalled_clients",
    "nats_varz_disk_io_wait_stats_waits",
    "nats_varz_mem",
    "nats_varz_cpu",
    "nats_varz_cores",
    "nats_varz_gomaxprocs",
    "nats_varz_routes",
    "nats_varz_remotes",
    "nats_varz_leafnodes",
    "nats_varz_max_connections",
    "nats_varz_max_payload",
    "nats_varz_max_pending",
    "nats_varz_max_control_line",
    "nats_varz_ping_max",
    "nats_varz_ping_interval",
    "nats_varz_write_deadline",
    "nats_varz_auth_timeout",
    "nats_varz_tls_timeout",
    "nats_varz_port",
    "nats_varz_http_port",
    "nats_varz_https_port",
    "nats_varz_proto",
    "nats_varz_start",
    "nats_varz_config_load_time",
    "nats_varz_server_id",
    "nats_varz_server_name",
    "nats_varz_version",
    "nats_varz_http_req_stats_metrics",
    "nats_connz_num_connections",
    "nats_connz_total",
    "nats_connz_offset",
    "nats_connz_limit",
    "nats_connz_pending_bytes",
    "nats_connz_subscriptions",
    "nats_connz_in_msgs",
    "nats_connz_out_msgs",
    "nats_connz_in_bytes",
    "nats_connz_out_bytes",
    "nats_routez_num_routes",
    "nats_routez_server_id",
    "nats_routez_server_name",
    "nats_subsz_num_subscriptions",
    "nats_subsz_num_cache",
    "nats_subsz_num_inserts",
    "nats_subsz_num_removes",
    "nats_subsz_num_matches",
    "nats_subsz_cache_hit_rate",
    "nats_subsz_max_fanout",
    "nats_subsz_avg_fanout",
    "nats_subsz_total",
    "nats_subsz_offset",
    "nats_subsz_limit",
    "nats_subsz_server_id",
    "nats_healthz_status",
    "nats_healthz_status_value",
    "nats_accstatz_current_connections",
    "nats_accstatz_total_connections",
    "nats_accstatz_subscriptions",
    "nats_accstatz_leaf_nodes",
    "nats_accstatz_sent_messages",
    "nats_accstatz_sent_bytes",
    "nats_accstatz_received_messages",
    "nats_accstatz_received_bytes",
    "nats_accstatz_slow_consumers",
    "nats_leafz_conn_nodes_total",
];

/// One parsed family.
#[derive(Debug, Default)]
struct Family {
    help: Option<String>,
    kind: Option<String>,
    samples: Vec<(BTreeMap<String, String>, f64)>,
}

/// A parsed exposition.
#[derive(Debug)]
struct Scrape {
    families: BTreeMap<String, Family>,
}

impl Scrape {
    /// The value of the one sample of `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let fam = self
            .families
            .get(name)
            .unwrap_or_else(|| panic!("no family {name}"));
        let hits: Vec<f64> = fam
            .samples
            .iter()
            .filter(|(l, _)| {
                labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(|s| s.as_str()) == Some(*v))
            })
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(hits.len(), 1, "{name}{labels:?}: {fam:?}");
        hits[0]
    }

    /// The value of a server-level series, compared with a JSON number.
    fn json_eq(&self, name: &str, json: &Value) {
        let want = json
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: {json} is not a number"));
        assert_eq!(self.value(name, &[]), want, "{name}");
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse().map_err(|e| format!("value {s:?}: {e}")),
    }
}

/// Parses `{name="value",...}` starting after `{`; returns the labels and the rest after `}`.
fn parse_labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').ok_or("label without =")?;
        let name = &s[..eq];
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        s = s[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (_, '\n') => return Err("raw line feed in label value".into()),
                (_, c) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("duplicate label {name}"));
        }
        s = &s[end + 1..];
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("expected , or }".into());
        }
    }
}

/// A strict parser of text format 0.0.4: every line is a HELP, a TYPE or a sample; HELP and
/// TYPE at most once per family and before its samples; a family's lines are contiguous.
fn parse(text: &str) -> Scrape {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut closed: Vec<String> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let fail = |e: String| -> ! { panic!("line {}: {e}: {line:?}", n + 1) };
        let name;
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let keyword = parts.next().unwrap_or_default();
            name = parts.next().unwrap_or_default().to_string();
            let arg = parts.next().unwrap_or_else(|| fail("no text".into()));
            if !is_metric_name(&name) {
                fail(format!("bad name {name:?}"));
            }
            let fam = families.entry(name.clone()).or_default();
            match keyword {
                "HELP" => {
                    let mut help = String::new();
                    let mut chars = arg.chars();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => match chars.next() {
                                Some('\\') => help.push('\\'),
                                Some('n') => help.push('\n'),
                                other => fail(format!("bad HELP escape {other:?}")),
                            },
                            c => help.push(c),
                        }
                    }
                    if fam.help.replace(help).is_some() {
                        fail("second HELP".into());
                    }
                }
                "TYPE" => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg) {
                        fail(format!("bad type {arg}"));
                    }
                    if !fam.samples.is_empty() {
                        fail("TYPE after samples".into());
                    }
                    if fam.kind.replace(arg.to_string()).is_some() {
                        fail("second TYPE".into());
                    }
                }
                _ => fail("unknown comment".into()),
            }
        } else {
            let end = line
                .find(['{', ' '])
                .unwrap_or_else(|| fail("no value".into()));
            name = line[..end].to_string();
            if !is_metric_name(&name) {
                fail(format!("bad name {name:?}"));
            }
            let (labels, rest) = if line[end..].starts_with('{') {
                parse_labels(&line[end + 1..]).unwrap_or_else(|e| fail(e))
            } else {
                (BTreeMap::new(), &line[end..])
            };
            let rest = rest
                .strip_prefix(' ')
                .unwrap_or_else(|| fail("no space".into()));
            let mut fields = rest.split(' ');
            let value = parse_value(fields.next().unwrap_or_default()).unwrap_or_else(|e| fail(e));
            if let Some(ts) = fields.next() {
                ts.parse::<i64>()
                    .unwrap_or_else(|e| fail(format!("timestamp: {e}")));
            }
            if fields.next().is_some() {
                fail("trailing text".into());
            }
            let fam = families.entry(name.clone()).or_default();
            if fam.samples.iter().any(|(l, _)| *l == labels) {
                fail("duplicate series".into());
            }
            fam.samples.push((labels, value));
        }
        if current.as_deref() != Some(name.as_str()) {
            if closed.contains(&name) {
                panic!("line {}: family {name} is not contiguous", n + 1);
            }
            if let Some(prev) = current.replace(name.clone()) {
                closed.push(prev);
            }
        }
    }
    Scrape { families }
}

/// GETs `path`, checks the status and content type, and parses the body.
async fn scrape(base: &str, path: &str) -> Scrape {
    let r = get(base, path).await;
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let s = parse(&r.body);
    check_well_formed(&s);
    s
}

/// Every family has HELP and TYPE and samples; every sample carries the same `server_id`.
fn check_well_formed(s: &Scrape) {
    let mut ids = std::collections::BTreeSet::new();
    for (name, f) in &s.families {
        assert!(name.starts_with("nats_"), "{name}");
        assert!(f.help.is_some(), "{name} has no HELP");
        assert!(f.kind.is_some(), "{name} has no TYPE");
        assert!(!f.samples.is_empty(), "{name} has no samples");
        for (labels, _) in &f.samples {
            ids.insert(labels.get("server_id").cloned().expect("server_id label"));
        }
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
}

/// A raw client named `name` that subscribes to `subs` and waits for its PONG.
async fn client(ts: &TestServer, name: &str, subs: &[&str]) -> Raw {
    let mut raw = Raw::connect_with(
        ts.addr,
        &format!(r#"{{"verbose":false,"name":"{name}","lang":"test","version":"1"}}"#),
    )
    .await;
    for (i, s) in subs.iter().enumerate() {
        raw.send(&format!("SUB {s} {}\r\n", i + 1)).await;
    }
    ping(&mut raw).await;
    raw
}

/// Sends PING and reads (deliveries included) until PONG.
async fn ping(raw: &mut Raw) {
    raw.send("PING\r\n").await;
    raw.until_pong().await;
}

#[tokio::test]
async fn metrics_parse_and_match_varz_connz_subsz() {
    let ts = TestServer::start_with(|o| o.http_port = -1).await;
    let base = ts.http();
    let mut sub = client(&ts, "sub", &["foo", "bar.*"]).await;
    let mut publisher = client(&ts, "pub", &[]).await;
    for i in 0..5 {
        publisher
            .send(&format!("PUB foo {}\r\nhello{i}\r\n", 6))
            .await;
    }
    publisher.send("PUB bar.x 2\r\nhi\r\n").await;
    ping(&mut publisher).await;
    ping(&mut sub).await;
    // The first /connz PINGs clients without an RTT; let those writes drain first.
    wait_json(&base, "/connz", |c| {
        c["connections"]
            .as_array()
            .is_some_and(|a| a.iter().all(|c| c["pending_bytes"] == 0))
    })
    .await;

    let m = scrape(&base, "/metrics").await;
    let varz = get_json(&base, "/varz").await;
    let connz = get_json(&base, "/connz").await;
    let subsz = get_json(&base, "/subsz").await;

    let id = ts.server.server_id.as_str();
    assert_eq!(m.value("nats_varz_connections", &[("server_id", id)]), 2.0);
    for name in DASHBOARD_METRICS.iter().chain(EXPORTER_METRICS) {
        assert!(m.families.contains_key(*name), "missing {name}");
    }

    // Counters are quiet now, so they equal the JSON documents read after the scrape.
    for field in [
        "connections",
        "total_connections",
        "subscriptions",
        "in_msgs",
        "out_msgs",
        "in_bytes",
        "out_bytes",
        "in_client_msgs",
        "out_client_bytes",
        "slow_consumers",
        "stale_connections",
        "routes",
        "remotes",
        "leafnodes",
        "max_connections",
        "max_payload",
        "max_pending",
        "ping_max",
        "ping_interval",
        "write_deadline",
        "auth_timeout",
        "tls_timeout",
        "cores",
        "gomaxprocs",
        "port",
        "http_port",
        "proto",
    ] {
        m.json_eq(&format!("nats_varz_{field}"), &varz[field]);
    }
    m.json_eq(
        "nats_varz_slow_consumer_stats_clients",
        &varz["slow_consumer_stats"]["clients"],
    );
    assert_eq!(varz["in_msgs"], 6);
    assert_eq!(varz["out_msgs"], 6);
    assert!(m.value("nats_varz_mem", &[]) > 0.0);
    assert!(m.value("nats_varz_cpu", &[]) >= 0.0);
    let start_ms = ts
        .server
        .start
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    assert_eq!(m.value("nats_varz_start", &[]), start_ms);
    assert!(m.value("nats_varz_config_load_time", &[]) >= start_ms - 1000.0);
    assert_eq!(m.value("nats_varz_server_id", &[("value", id)]), 1.0);
    assert_eq!(
        m.value(
            "nats_varz_server_name",
            &[("value", varz["server_name"].as_str().unwrap())]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "nats_varz_version",
            &[("value", varz["version"].as_str().unwrap())]
        ),
        1.0
    );
    // The scrape counts itself, as /varz does.
    assert_eq!(m.value("nats_varz_http_req_stats_metrics", &[]), 1.0);
    assert_eq!(varz["http_req_stats"]["/metrics"], 1);
    // Strings that are not labels, booleans and arrays are not exported.
    for absent in [
        "nats_varz_now",
        "nats_varz_uptime",
        "nats_varz_host",
        "nats_varz_go",
    ] {
        assert!(!m.families.contains_key(absent), "{absent}");
    }

    // connz: the page header and sums over the connections.
    let conns = connz["connections"].as_array().unwrap();
    let sum = |k: &str| conns.iter().map(|c| c[k].as_f64().unwrap()).sum::<f64>();
    m.json_eq("nats_connz_num_connections", &connz["num_connections"]);
    m.json_eq("nats_connz_total", &connz["total"]);
    m.json_eq("nats_connz_offset", &connz["offset"]);
    m.json_eq("nats_connz_limit", &connz["limit"]);
    for k in [
        "pending_bytes",
        "subscriptions",
        "in_msgs",
        "out_msgs",
        "in_bytes",
        "out_bytes",
    ] {
        assert_eq!(
            m.value(&format!("nats_connz_{k}"), &[]),
            sum(k),
            "connz {k}"
        );
    }
    assert_eq!(m.value("nats_connz_in_msgs", &[]), 6.0);
    assert_eq!(m.value("nats_connz_subscriptions", &[]), 2.0);
    let kind = |n: &str| m.families[n].kind.clone().unwrap();
    for n in [
        "nats_connz_in_msgs",
        "nats_connz_out_msgs",
        "nats_connz_in_bytes",
        "nats_connz_out_bytes",
    ] {
        assert_eq!(kind(n), "counter", "{n}");
    }
    for n in [
        "nats_varz_in_msgs",
        "nats_connz_total",
        "nats_subsz_num_subscriptions",
    ] {
        assert_eq!(kind(n), "gauge", "{n}");
    }
    // HELP is the field name, as the exporter writes it.
    assert_eq!(
        m.families["nats_varz_connections"].help.as_deref(),
        Some("connections")
    );
    assert_eq!(
        m.families["nats_varz_slow_consumer_stats_clients"]
            .help
            .as_deref(),
        Some("slow_consumer_stats_clients")
    );

    // subsz, routez, healthz, leafz.
    for k in [
        "num_subscriptions",
        "num_cache",
        "num_inserts",
        "num_removes",
        "max_fanout",
        "total",
        "offset",
        "limit",
    ] {
        m.json_eq(&format!("nats_subsz_{k}"), &subsz[k]);
    }
    let internal = ts
        .server
        .system_account
        .num_subs
        .load(std::sync::atomic::Ordering::Relaxed) as f64;
    assert_eq!(m.value("nats_subsz_num_subscriptions", &[]), 2.0 + internal);
    assert_eq!(m.value("nats_routez_num_routes", &[]), 0.0);
    assert_eq!(m.value("nats_routez_server_id", &[("value", id)]), 1.0);
    assert_eq!(m.value("nats_healthz_status", &[]), 0.0);
    assert_eq!(
        m.value("nats_healthz_status_value", &[("value", "ok")]),
        1.0
    );
    assert_eq!(m.value("nats_leafz_conn_nodes_total", &[]), 0.0);
    // The global account, unused system account included as with `unused=1`.
    assert_eq!(
        m.value(
            "nats_accstatz_received_messages",
            &[
                ("account", "$G"),
                ("account_id", "$G"),
                ("account_name", "$G")
            ]
        ),
        6.0
    );

    // A second scrape sees the first one counted.
    let m2 = scrape(&base, "/metrics").await;
    assert_eq!(m2.value("nats_varz_http_req_stats_metrics", &[]), 2.0);
    drop(publisher);
    drop(sub);
}

/// Accounts, one with a name that needs escaping in a label value.
const ACCOUNTS: &str = r#"
accounts {
  A { users: [{user: a, password: a}] }
  'we"ird\acc': { users: [{user: w, password: w}] }
  idle { users: [{user: i, password: i}] }
}
"#;

const WEIRD: &str = "we\"ird\\acc";

#[tokio::test]
async fn accstatz_series_per_account_with_escaped_labels() {
    let ts = conf::start_conf(ACCOUNTS, true).await;
    let base = ts.http();
    let connect = |user: &str| format!(r#"{{"verbose":false,"user":"{user}","pass":"{user}"}}"#);
    let mut wsub = Raw::connect_with(ts.addr, &connect("w")).await;
    wsub.send("SUB x 1\r\n").await;
    ping(&mut wsub).await;
    let mut wpub = Raw::connect_with(ts.addr, &connect("w")).await;
    wpub.send("PUB x 3\r\nabc\r\nPUB x 1\r\nd\r\n").await;
    ping(&mut wpub).await;
    ping(&mut wsub).await;
    let mut a = Raw::connect_with(ts.addr, &connect("a")).await;
    a.send("PUB y 2\r\nzz\r\n").await;
    ping(&mut a).await;

    let r = get(&base, "/metrics").await;
    assert!(
        r.body.contains(r#"account="we\"ird\\acc""#),
        "escaped label:\n{}",
        r.body
    );
    let m = parse(&r.body);
    check_well_formed(&m);
    let accstatz = get_json(&base, "/accstatz?unused=1").await;
    let accounts = accstatz["account_statz"].as_array().unwrap();
    assert!(accounts.iter().any(|a| a["acc"] == WEIRD), "{accstatz}");
    for acc in accounts {
        let name = acc["acc"].as_str().unwrap();
        let labels = [
            ("account", name),
            ("account_id", name),
            ("account_name", acc["name"].as_str().unwrap()),
        ];
        for (metric, json) in [
            ("current_connections", &acc["conns"]),
            ("total_connections", &acc["total_conns"]),
            ("subscriptions", &acc["num_subscriptions"]),
            ("leaf_nodes", &acc["leafnodes"]),
            ("sent_messages", &acc["sent"]["msgs"]),
            ("sent_bytes", &acc["sent"]["bytes"]),
            ("received_messages", &acc["received"]["msgs"]),
            ("received_bytes", &acc["received"]["bytes"]),
            ("slow_consumers", &acc["slow_consumers"]),
        ] {
            assert_eq!(
                m.value(&format!("nats_accstatz_{metric}"), &labels),
                json.as_f64().unwrap(),
                "{metric} of {name}"
            );
        }
    }
    let weird = [("account", WEIRD)];
    assert_eq!(m.value("nats_accstatz_current_connections", &weird), 2.0);
    assert_eq!(m.value("nats_accstatz_received_messages", &weird), 2.0);
    assert_eq!(m.value("nats_accstatz_received_bytes", &weird), 4.0);
    assert_eq!(m.value("nats_accstatz_sent_messages", &weird), 2.0);
    assert_eq!(m.value("nats_accstatz_subscriptions", &weird), 1.0);
    assert_eq!(
        m.value("nats_accstatz_received_messages", &[("account", "A")]),
        1.0
    );
    assert_eq!(
        m.value("nats_accstatz_current_connections", &[("account", "idle")]),
        0.0
    );
}

#[tokio::test]
async fn metrics_under_base_path_and_on_the_index_page() {
    let ts = TestServer::start_with(|o| {
        o.http_port = -1;
        o.http_base_path = "/nats/".into();
    })
    .await;
    let base = ts.http();
    assert_eq!(get(&base, "/metrics").await.status, 404);
    let m = scrape(&base, "/nats/metrics").await;
    assert_eq!(m.value("nats_varz_http_req_stats_metrics", &[]), 1.0);
    let index = get(&base, "/nats").await;
    assert!(index.body.contains("href=./nats/metrics"), "{}", index.body);
    // The JSONP argument does not wrap text.
    let r = get(&base, "/nats/metrics?callback=cb").await;
    assert!(r.body.starts_with("# HELP "), "{}", r.body);

    let plain = TestServer::start_with(|o| o.http_port = -1).await;
    let index = get(&plain.http(), "/").await;
    assert!(index.body.contains("href=./metrics"), "{}", index.body);
    assert!(index.body.contains("href=./healthz class=last"));
}

#[tokio::test]
async fn metrics_over_https() {
    let ca = certs::Ca::new("Natrix Metrics CA");
    let server = ca.server();
    let dir = tempdir::TempDir::new("metrics");
    dir.write("server.pem", &server.cert_pem);
    dir.write("server-key.pem", &server.key_pem);
    let tls = natrix_broker::options::TlsOptions {
        cert_file: dir.path().join("server.pem"),
        key_file: dir.path().join("server-key.pem"),
        timeout: Duration::from_secs(2),
        ..natrix_broker::options::TlsOptions::default()
    };
    let ts = TestServer::start_with(move |o| {
        o.tls = Some(tls);
        o.https_port = -1;
    })
    .await;
    let addr = ts.server.https_addr.read().expect("https bound");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    let r = https_get(Arc::new(cfg), addr, "/metrics").await;
    let (status, ctype, body) = (
        r.status,
        r.header("content-type").unwrap_or_default(),
        r.body.as_str(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    let m = parse(body);
    check_well_formed(&m);
    assert_eq!(m.value("nats_varz_https_port", &[]), f64::from(addr.port()));
    assert_eq!(m.value("nats_varz_tls_timeout", &[]), 2.0);
}
