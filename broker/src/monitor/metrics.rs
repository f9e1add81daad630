//! `/metrics`: Prometheus text exposition (format 0.0.4) with the series prometheus-nats-exporter
//! produces as the nats Helm chart runs it (`-prefix=nats -use_internal_server_id`), so its
//! dashboards and alerts work without the sidecar.
//!
//! The families follow the exporter's collectors, fed from the same documents the JSON endpoints
//! serve:
//! - `nats_varz_*`, `nats_subsz_*`, `nats_routez_*`: its generic collector. Every number of the
//!   document becomes a gauge named after the field, nested objects flattened with `_`
//!   (`slow_consumer_stats_clients`, `http_req_stats_varz`); the strings `server_id`,
//!   `server_name`, `version` (and `name`, `domain`, `leader`) become `{value="..."} 1`; the times
//!   `start` and `config_load_time` are Unix milliseconds; booleans, arrays and other strings are
//!   not exported.
//! - `nats_connz_*`: the default page's `num_connections`, `total`, `offset`, `limit`, and the sums
//!   of `pending_bytes`, `subscriptions` (gauges) and `in_msgs`, `out_msgs`, `in_bytes`,
//!   `out_bytes` (counters, the only counters the exporter declares).
//! - `nats_healthz_status` (0 when healthy) and `nats_healthz_status_value{value="ok"}` (1).
//! - `nats_accstatz_*`: per account of `/accstatz?unused=1`, labelled `account`, `account_id`
//!   (both the account) and `account_name`.
//! - `nats_leafz_conn_nodes_total`.
//!
//! Every series carries `server_id` (the server's id, as `-use_internal_server_id` gives), HELP is
//! the field name, as the exporter writes it. JetStream families (`nats_server_*`,
//! `nats_account_*`, `nats_stream_*`, `nats_consumer_*`, with the labels `server_id`,
//! `server_name`, `cluster`, `domain`, `meta_leader`, `is_meta_leader`) will come from `/jsz` in
//! [`Exposition::jetstream`]; the `jetstream` object of `/varz` is flattened automatically.
//!
//! Differences from the exporter: the connz sums cover every open connection rather than the
//! first 1024; no `go_*`/`process_*`/`promhttp_*` series (they describe the exporter process).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};

use super::connz::DEFAULT_CONN_LIST_SIZE;
use super::subsz::SubszOptions;
use crate::server::Server;

/// The metric name prefix (prometheus-nats-exporter's `-prefix=nats`).
pub const NAMESPACE: &str = "nats";

/// The content type of Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// String fields the generic collector exports (as `{value="..."} 1`, or times as milliseconds).
const LABEL_KEYS: [&str; 8] = [
    "server_id",
    "server_name",
    "version",
    "domain",
    "leader",
    "name",
    "start",
    "config_load_time",
];

/// Flattened names the generic collector drops.
const SKIP_FQN: [&str; 9] = [
    "leaf",
    "trusted_operators_claim",
    "cluster_tls_timeout",
    "cluster_cluster_port",
    "cluster_auth_timeout",
    "gateway_port",
    "gateway_auth_timeout",
    "gateway_tls_timeout",
    "gateway_connect_retries",
];

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// A value that goes up and down (everything the exporter exports but four connz sums).
    Gauge,
    /// A monotonically increasing value.
    Counter,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Gauge => "gauge",
            MetricType::Counter => "counter",
        }
    }
}

/// A sample value, kept exact for integers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    /// An unsigned integer.
    U(u64),
    /// A signed integer.
    I(i64),
    /// A float (`NaN`, `+Inf` and `-Inf` written as Prometheus spells them).
    F(f64),
}

impl From<u64> for Num {
    fn from(v: u64) -> Num {
        Num::U(v)
    }
}

impl From<usize> for Num {
    fn from(v: usize) -> Num {
        Num::U(v as u64)
    }
}

impl From<i64> for Num {
    fn from(v: i64) -> Num {
        Num::I(v)
    }
}

impl From<f64> for Num {
    fn from(v: f64) -> Num {
        Num::F(v)
    }
}

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Num::U(v) => write!(f, "{v}"),
            Num::I(v) => write!(f, "{v}"),
            Num::F(v) if v.is_nan() => f.write_str("NaN"),
            Num::F(v) if v.is_infinite() => f.write_str(if v > 0.0 { "+Inf" } else { "-Inf" }),
            Num::F(v) => write!(f, "{v}"),
        }
    }
}

/// A family's metadata and its rendered sample lines.
struct Family {
    help: String,
    kind: MetricType,
    samples: String,
}

/// The metric families of one scrape, written sorted by name as client_golang does.
pub struct Exposition {
    server_id: String,
    families: BTreeMap<String, Family>,
}

impl Exposition {
    /// An empty exposition whose series are labelled with `server_id`.
    pub fn new(server_id: &str) -> Exposition {
        Exposition {
            server_id: server_id.to_string(),
            families: BTreeMap::new(),
        }
    }

    /// Adds a sample of `nats_<endpoint>_<field>` labelled `server_id` plus `labels`; the first
    /// HELP and type given for a family are kept.
    pub fn sample(
        &mut self,
        endpoint: &str,
        field: &str,
        help: &str,
        kind: MetricType,
        labels: &[(&str, &str)],
        value: Num,
    ) {
        let name = format!("{NAMESPACE}_{endpoint}_{field}");
        let mut all: Vec<(&str, &str)> = Vec::with_capacity(labels.len() + 1);
        all.push(("server_id", &self.server_id));
        all.extend_from_slice(labels);
        all.sort_by(|a, b| a.0.cmp(b.0));
        let family = self.families.entry(name.clone()).or_insert_with(|| Family {
            help: help.to_string(),
            kind,
            samples: String::new(),
        });
        let out = &mut family.samples;
        out.push_str(&name);
        out.push('{');
        for (i, (k, v)) in all.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_label_value(out, v);
            out.push('"');
        }
        let _ = writeln!(out, "}} {value}");
    }

    /// A gauge whose HELP is its field name, as the exporter's.
    pub fn gauge(&mut self, endpoint: &str, field: &str, labels: &[(&str, &str)], value: Num) {
        self.sample(endpoint, field, field, MetricType::Gauge, labels, value);
    }

    /// The exporter's generic collector over a JSON document: numbers anywhere in it (nested
    /// objects flattened), the label strings, and the times `times` maps a flattened name to.
    pub fn document<T: Serialize>(
        &mut self,
        endpoint: &str,
        doc: &T,
        times: &dyn Fn(&str) -> Option<SystemTime>,
    ) {
        if let Ok(Value::Object(map)) = serde_json::to_value(doc) {
            self.object(endpoint, &mut Vec::new(), &map, times);
        }
    }

    fn object(
        &mut self,
        endpoint: &str,
        path: &mut Vec<String>,
        map: &Map<String, Value>,
        times: &dyn Fn(&str) -> Option<SystemTime>,
    ) {
        for (key, value) in map {
            path.push(key.clone());
            let fqn = fq_name(path);
            if !SKIP_FQN.contains(&fqn.as_str()) && !fqn.is_empty() {
                match value {
                    Value::Number(n) => {
                        let v = if let Some(u) = n.as_u64() {
                            Num::U(u)
                        } else if let Some(i) = n.as_i64() {
                            Num::I(i)
                        } else {
                            Num::F(n.as_f64().unwrap_or(f64::NAN))
                        };
                        self.gauge(endpoint, &fqn, &[], v);
                    }
                    Value::String(s) if LABEL_KEYS.contains(&key.as_str()) => match times(&fqn) {
                        Some(t) => self.gauge(endpoint, &fqn, &[], Num::I(unix_millis(t))),
                        None => self.gauge(endpoint, &fqn, &[("value", s)], Num::U(1)),
                    },
                    Value::Object(inner) => self.object(endpoint, path, inner, times),
                    _ => {}
                }
            }
            path.pop();
        }
    }

    /// The varz families: the `/varz` document through the generic collector.
    pub fn varz(&mut self, s: &Server, http_req_stats: BTreeMap<String, u64>) {
        let doc = s.varz(http_req_stats);
        let start = s.start;
        let loaded = *s.config_load_time.read();
        self.document("varz", &doc, &|fqn| match fqn {
            "start" => Some(start),
            "config_load_time" => Some(loaded),
            _ => None,
        });
    }

    /// The connz families: the default page's header and the traffic sums.
    pub fn connz(&mut self, s: &Server) {
        let t = s.connz_totals();
        let page = t.connections.min(DEFAULT_CONN_LIST_SIZE as usize);
        self.gauge("connz", "num_connections", &[], page.into());
        self.gauge("connz", "total", &[], t.connections.into());
        self.gauge("connz", "offset", &[], Num::U(0));
        self.gauge("connz", "limit", &[], DEFAULT_CONN_LIST_SIZE.into());
        self.gauge("connz", "pending_bytes", &[], t.pending_bytes.into());
        self.gauge("connz", "subscriptions", &[], t.subscriptions.into());
        for (field, v) in [
            ("in_msgs", t.in_msgs),
            ("out_msgs", t.out_msgs),
            ("in_bytes", t.in_bytes),
            ("out_bytes", t.out_bytes),
        ] {
            self.sample("connz", field, field, MetricType::Counter, &[], v.into());
        }
    }

    /// The routez families: the `/routez` document through the generic collector.
    pub fn routez(&mut self, s: &Server) {
        self.document("routez", &super::routez_doc(s, false, false), &|_| None);
    }

    /// The subsz families: the default `/subsz` document through the generic collector.
    pub fn subsz(&mut self, s: &Server) {
        let opts = SubszOptions {
            limit: super::subsz::DEFAULT_SUB_LIST_SIZE,
            ..SubszOptions::default()
        };
        self.document("subsz", &s.subsz(&opts), &|_| None);
    }

    /// The healthz families: `status` (0 when ok, 1 otherwise) and `status_value`.
    pub fn healthz(&mut self, s: &Server) {
        let status = super::healthz_status(s);
        let ok = status == "ok";
        self.sample(
            "healthz",
            "status",
            "status",
            MetricType::Gauge,
            &[],
            Num::U(u64::from(!ok)),
        );
        self.sample(
            "healthz",
            "status_value",
            "status",
            MetricType::Gauge,
            &[("value", status)],
            Num::U(u64::from(ok)),
        );
    }

    /// The accstatz families: every account's counters (`/accstatz?unused=1`).
    pub fn accstatz(&mut self, s: &Server) {
        let doc = s.accstatz(true, String::new());
        for a in &doc.account_statz {
            let labels = [
                ("account", a.acc.as_str()),
                ("account_id", a.acc.as_str()),
                ("account_name", a.name.as_str()),
            ];
            for (field, v) in [
                ("current_connections", a.conns),
                ("total_connections", a.total_conns),
                ("subscriptions", a.num_subscriptions),
                ("leaf_nodes", a.leafnodes),
                ("sent_messages", a.sent.msgs),
                ("sent_bytes", a.sent.bytes),
                ("received_messages", a.received.msgs),
                ("received_bytes", a.received.bytes),
                ("slow_consumers", a.slow_consumers),
            ] {
                self.gauge("accstatz", field, &labels, v.into());
            }
        }
    }

    /// The leafz family the exporter always emits: the number of leaf node connections.
    pub fn leafz(&mut self, s: &Server) {
        let doc = super::leafz_doc(s);
        self.sample(
            "leafz",
            "conn_nodes_total",
            "nodes_total",
            MetricType::Gauge,
            &[],
            doc.leafnodes.into(),
        );
    }

    /// The JetStream families of the exporter's `-jsz=all` (`/jsz?consumers=true&config=true`):
    /// `nats_server_*`, `nats_stream_*` and `nats_consumer_*`; none without JetStream.
    pub fn jetstream(&mut self, s: &Server) {
        let opts = super::jsz::JszOptions {
            consumers: true,
            config: true,
            ..Default::default()
        };
        let Some(doc) = super::jsz::jsz(s, &opts) else {
            return;
        };
        let domain = doc["config"]["domain"].as_str().unwrap_or("").to_string();
        let server = [
            ("server_name", s.server_name.clone()),
            ("cluster", String::new()),
            ("domain", domain),
            ("meta_leader", String::new()),
            ("is_meta_leader", "true".to_string()),
        ];
        let n = |v: &Value| Num::U(v.as_u64().unwrap_or(0));
        let server_labels: Vec<(&str, &str)> =
            server.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for (field, help, v) in [
            ("jetstream_disabled", "JetStream disabled or not", Num::U(0)),
            (
                "max_memory",
                "JetStream Max Memory",
                n(&doc["config"]["max_memory"]),
            ),
            (
                "max_storage",
                "JetStream Max Storage",
                n(&doc["config"]["max_storage"]),
            ),
            (
                "total_streams",
                "Total number of streams in JetStream",
                n(&doc["streams"]),
            ),
            (
                "total_consumers",
                "Total number of consumers in JetStream",
                n(&doc["consumers"]),
            ),
            (
                "total_messages",
                "Total number of stored messages in JetStream",
                n(&doc["messages"]),
            ),
            (
                "total_message_bytes",
                "Total number of bytes stored in JetStream",
                n(&doc["bytes"]),
            ),
        ] {
            self.sample("server", field, help, MetricType::Gauge, &server_labels, v);
        }
        let empty = Vec::new();
        for acc in doc["account_details"].as_array().unwrap_or(&empty) {
            let account = acc["name"].as_str().unwrap_or("").to_string();
            for st in acc["stream_detail"].as_array().unwrap_or(&empty) {
                let mut labels = server_labels.clone();
                let name = st["name"].as_str().unwrap_or("");
                labels.extend([
                    ("account", account.as_str()),
                    ("account_id", account.as_str()),
                    ("stream_name", name),
                    ("stream_leader", s.server_name.as_str()),
                    ("is_stream_leader", "true"),
                ]);
                let state = &st["state"];
                for (field, help, key) in [
                    (
                        "total_messages",
                        "Total number of messages from a stream",
                        "messages",
                    ),
                    ("total_bytes", "Total stored bytes from a stream", "bytes"),
                    ("first_seq", "First sequence from a stream", "first_seq"),
                    ("last_seq", "Last sequence from a stream", "last_seq"),
                    (
                        "consumer_count",
                        "Total number of consumers from a stream",
                        "consumer_count",
                    ),
                ] {
                    self.sample(
                        "stream",
                        field,
                        help,
                        MetricType::Gauge,
                        &labels,
                        n(&state[key]),
                    );
                }
                for c in st["consumer_detail"].as_array().unwrap_or(&empty) {
                    let mut cl = labels.clone();
                    let created = c["created"].as_str().unwrap_or("");
                    cl.extend([
                        ("consumer_name", c["name"].as_str().unwrap_or("")),
                        ("consumer_leader", s.server_name.as_str()),
                        ("is_consumer_leader", "true"),
                        (
                            "consumer_desc",
                            c["config"]["description"].as_str().unwrap_or(""),
                        ),
                        ("consumer_created", created),
                    ]);
                    for (field, help, v) in [
                        (
                            "delivered_consumer_seq",
                            "Latest sequence number of a stream consumer",
                            &c["delivered"]["consumer_seq"],
                        ),
                        (
                            "delivered_stream_seq",
                            "Latest sequence number of a stream",
                            &c["delivered"]["stream_seq"],
                        ),
                        (
                            "num_ack_pending",
                            "Number of pending acks from a consumer",
                            &c["num_ack_pending"],
                        ),
                        (
                            "num_redelivered",
                            "Number of redelivered messages from a consumer",
                            &c["num_redelivered"],
                        ),
                        (
                            "num_waiting",
                            "Number of inflight fetch requests from a pull consumer",
                            &c["num_waiting"],
                        ),
                        (
                            "num_pending",
                            "Number of pending messages from a consumer",
                            &c["num_pending"],
                        ),
                        (
                            "ack_floor_stream_seq",
                            "Number of ack floor stream seq from a consumer",
                            &c["ack_floor"]["stream_seq"],
                        ),
                        (
                            "ack_floor_consumer_seq",
                            "Number of ack floor consumer seq from a consumer",
                            &c["ack_floor"]["consumer_seq"],
                        ),
                    ] {
                        self.sample("consumer", field, help, MetricType::Gauge, &cl, n(v));
                    }
                }
            }
        }
    }

    /// The text format: `# HELP`, `# TYPE` and the samples of each family, by name.
    pub fn render(&self) -> String {
        let len = self
            .families
            .iter()
            .map(|(n, f)| 2 * n.len() + f.help.len() + f.samples.len() + 24)
            .sum();
        let mut out = String::with_capacity(len);
        for (name, f) in &self.families {
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            escape_help(&mut out, &f.help);
            out.push_str("\n# TYPE ");
            out.push_str(name);
            out.push(' ');
            out.push_str(f.kind.as_str());
            out.push('\n');
            out.push_str(&f.samples);
        }
        out
    }
}

/// The `/metrics` body; `http_req_stats` is the monitoring server's request counts.
pub fn render(s: &Server, http_req_stats: BTreeMap<String, u64>) -> String {
    let mut e = Exposition::new(&s.server_id);
    e.varz(s, http_req_stats);
    e.connz(s);
    e.routez(s);
    e.subsz(s);
    e.healthz(s);
    e.accstatz(s);
    e.leafz(s);
    e.jetstream(s);
    e.render()
}

/// The exporter's `fqName`: the path joined with `_`, `/` as `_`, outer `_` trimmed and runs of
/// `_` collapsed (`http_req_stats` + `/varz` gives `http_req_stats_varz`); any other character
/// a metric name cannot hold also becomes `_`.
fn fq_name(path: &[String]) -> String {
    let joined = path.join("_");
    let mut out = String::with_capacity(joined.len());
    for ch in joined.chars() {
        let ch = if ch.is_ascii_alphanumeric() { ch } else { '_' };
        if ch == '_' && (out.is_empty() || out.ends_with('_')) {
            continue;
        }
        out.push(ch);
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Milliseconds since the Unix epoch (negative before it).
fn unix_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Appends a label value with `\`, `"` and line feeds escaped.
pub fn escape_label_value(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends HELP text with `\` and line feeds escaped.
fn escape_help(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fq(parts: &[&str]) -> String {
        fq_name(&parts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn names_flatten_as_the_exporter() {
        assert_eq!(fq(&["connections"]), "connections");
        assert_eq!(fq(&["http_req_stats", "/varz"]), "http_req_stats_varz");
        assert_eq!(fq(&["http_req_stats", "/"]), "http_req_stats");
        assert_eq!(
            fq(&["slow_consumer_stats", "clients"]),
            "slow_consumer_stats_clients"
        );
        assert_eq!(
            fq(&["jetstream", "config", "max_memory"]),
            "jetstream_config_max_memory"
        );
        assert_eq!(fq(&["a-b.c"]), "a_b_c");
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut s = String::new();
        escape_label_value(&mut s, "a\"b\\c\nd");
        assert_eq!(s, r#"a\"b\\c\nd"#);
        let mut s = String::new();
        escape_help(&mut s, "x\"y\\z\n");
        assert_eq!(s, r#"x"y\\z\n"#);
    }

    #[test]
    fn values_are_written_as_prometheus_reads_them() {
        assert_eq!(Num::U(u64::MAX).to_string(), "18446744073709551615");
        assert_eq!(Num::I(-3).to_string(), "-3");
        assert_eq!(Num::F(0.5).to_string(), "0.5");
        assert_eq!(Num::F(f64::NAN).to_string(), "NaN");
        assert_eq!(Num::F(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Num::F(f64::NEG_INFINITY).to_string(), "-Inf");
    }

    #[test]
    fn families_are_sorted_with_help_and_type() {
        let mut e = Exposition::new("S1");
        e.gauge("varz", "mem", &[], Num::U(7));
        e.sample(
            "connz",
            "in_msgs",
            "in_msgs",
            MetricType::Counter,
            &[],
            Num::U(2),
        );
        e.gauge(
            "accstatz",
            "subscriptions",
            &[("account", "A\"")],
            Num::U(1),
        );
        e.gauge("accstatz", "subscriptions", &[("account", "B")], Num::U(2));
        assert_eq!(
            e.render(),
            "# HELP nats_accstatz_subscriptions subscriptions\n\
             # TYPE nats_accstatz_subscriptions gauge\n\
             nats_accstatz_subscriptions{account=\"A\\\"\",server_id=\"S1\"} 1\n\
             nats_accstatz_subscriptions{account=\"B\",server_id=\"S1\"} 2\n\
             # HELP nats_connz_in_msgs in_msgs\n\
             # TYPE nats_connz_in_msgs counter\n\
             nats_connz_in_msgs{server_id=\"S1\"} 2\n\
             # HELP nats_varz_mem mem\n\
             # TYPE nats_varz_mem gauge\n\
             nats_varz_mem{server_id=\"S1\"} 7\n"
        );
    }

    #[test]
    fn documents_export_numbers_label_strings_and_times() {
        let doc = serde_json::json!({
            "server_id": "S1",
            "version": "2.15.0",
            "now": "2024-01-01T00:00:00Z",
            "start": "2024-01-01T00:00:00Z",
            "auth_required": true,
            "connect_urls": ["a"],
            "cpu": 0.25,
            "connections": 3,
            "leaf": {"port": 1},
            "cluster": {"name": "east", "tls_timeout": 2, "pool_size": 3},
            "http_req_stats": {"/varz": 4},
        });
        let mut e = Exposition::new("S1");
        e.document("varz", &doc, &|f| {
            (f == "start").then(|| UNIX_EPOCH + std::time::Duration::from_millis(1234))
        });
        let text = e.render();
        for line in [
            "nats_varz_server_id{server_id=\"S1\",value=\"S1\"} 1",
            "nats_varz_version{server_id=\"S1\",value=\"2.15.0\"} 1",
            "nats_varz_start{server_id=\"S1\"} 1234",
            "nats_varz_cpu{server_id=\"S1\"} 0.25",
            "nats_varz_connections{server_id=\"S1\"} 3",
            "nats_varz_cluster_name{server_id=\"S1\",value=\"east\"} 1",
            "nats_varz_cluster_pool_size{server_id=\"S1\"} 3",
            "nats_varz_http_req_stats_varz{server_id=\"S1\"} 4",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        for absent in [
            "now",
            "auth_required",
            "connect_urls",
            "leaf",
            "cluster_tls_timeout",
        ] {
            assert!(
                !text.contains(&format!("nats_varz_{absent}{{")),
                "{absent} in\n{text}"
            );
        }
    }
}
