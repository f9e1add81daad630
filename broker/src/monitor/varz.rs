//! `/varz`: server identity, options and counters, in nats-server 2.15's field order.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use serde::Serialize;

use super::proc;
use crate::clock::{go_float, since, uptime};
use crate::log::rfc3339;
use crate::server::tls::cert_not_after;
use crate::server::Server;

/// An object with no fields set (`cluster`, `gateway`, ... while those are not configured).
#[derive(Debug, Default, Serialize)]
pub struct Empty {}

/// Per-kind counters (`slow_consumer_stats`, `stale_connection_stats`).
#[derive(Debug, Default, Serialize)]
pub struct KindStats {
    pub clients: u64,
    pub routes: u64,
    pub gateways: u64,
    pub leafs: u64,
}

/// `disk_io_wait_stats`: JetStream storage waits (always zero without JetStream).
#[derive(Debug, Default, Serialize)]
pub struct DiskIoWaitStats {
    pub waiters: u64,
    pub waits: u64,
    pub wait_time: i64,
    pub max_wait_time: i64,
}

/// The `/varz` document.
#[derive(Debug, Serialize)]
pub struct Varz {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    pub go: String,
    pub host: String,
    pub port: u16,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
    pub max_connections: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub max_subscriptions: i32,
    /// Nanoseconds, as Go marshals a `time.Duration`.
    pub ping_interval: i64,
    pub ping_max: i32,
    pub http_host: String,
    pub http_port: i32,
    pub http_base_path: String,
    pub https_port: i32,
    /// Seconds.
    #[serde(serialize_with = "go_float")]
    pub auth_timeout: f64,
    pub max_control_line: i32,
    pub max_payload: i32,
    pub max_pending: i64,
    pub cluster: serde_json::Value,
    pub gateway: Empty,
    pub leaf: Empty,
    pub mqtt: Empty,
    pub websocket: Empty,
    pub jetstream: serde_json::Value,
    /// Seconds.
    #[serde(serialize_with = "go_float")]
    pub tls_timeout: f64,
    /// Nanoseconds.
    pub write_deadline: i64,
    pub start: String,
    pub now: String,
    pub uptime: String,
    pub mem: i64,
    pub cores: usize,
    pub gomaxprocs: usize,
    #[serde(serialize_with = "go_float")]
    pub cpu: f64,
    pub connections: usize,
    pub total_connections: u64,
    pub routes: usize,
    pub remotes: usize,
    pub leafnodes: usize,
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub in_client_msgs: u64,
    pub in_client_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
    pub out_client_msgs: u64,
    pub out_client_bytes: u64,
    pub slow_consumers: u64,
    pub stale_connections: u64,
    pub stalled_clients: u64,
    pub subscriptions: u64,
    pub http_req_stats: BTreeMap<String, u64>,
    pub config_load_time: String,
    pub config_digest: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    pub feature_flags: Empty,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub system_account: String,
    pub slow_consumer_stats: KindStats,
    pub stale_connection_stats: KindStats,
    pub disk_io_wait_stats: DiskIoWaitStats,
    /// Expiry of the client TLS certificate, when TLS is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_not_after: Option<String>,
}

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

/// nats-server's default TLS handshake timeout in seconds (reported while TLS is not configured).
const DEFAULT_TLS_TIMEOUT: f64 = 2.0;

impl Server {
    /// The `/varz` document; `http_req_stats` is supplied by the monitoring server.
    pub fn varz(&self, http_req_stats: BTreeMap<String, u64>) -> Varz {
        let opts = self.options();
        let info = self.info();
        let now = SystemTime::now();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let subscriptions = self
            .accounts()
            .iter()
            .map(|a| a.sublist.count() as u64)
            .sum();
        let https_port = self
            .https_addr
            .read()
            .map_or(opts.https_port, |a| i32::from(a.port()));
        let tls = opts.tls.as_ref();
        let http_port = self
            .http_addr
            .read()
            .map_or(opts.http_port, |a| i32::from(a.port()));
        let stale = self.stale_connections.load(Ordering::Relaxed);
        let in_msgs = self.stats.in_msgs.load(Ordering::Relaxed);
        let in_bytes = self.stats.in_bytes.load(Ordering::Relaxed);
        let out_msgs = self.stats.out_msgs.load(Ordering::Relaxed);
        let out_bytes = self.stats.out_bytes.load(Ordering::Relaxed);
        Varz {
            server_id: self.server_id.clone(),
            server_name: self.server_name.clone(),
            version: info.version.clone(),
            proto: info.proto,
            git_commit: info.git_commit.clone(),
            go: info.go.clone(),
            host: info.host.clone(),
            port: info.port,
            auth_required: info.auth_required.unwrap_or(false),
            tls_required: info.tls_required.unwrap_or(tls.is_some()),
            tls_verify: info
                .tls_verify
                .unwrap_or(tls.is_some_and(|t| t.verify || t.verify_and_map)),
            connect_urls: info.connect_urls.clone(),
            max_connections: opts.max_connections,
            max_subscriptions: opts.max_subscriptions,
            ping_interval: opts.ping_interval.as_nanos() as i64,
            ping_max: opts.ping_max,
            http_host: opts.http_host.clone(),
            http_port,
            http_base_path: opts.http_base_path.clone(),
            https_port,
            auth_timeout: opts.auth_timeout.as_secs_f64(),
            max_control_line: opts.max_control_line,
            max_payload: opts.max_payload,
            max_pending: opts.max_pending,
            cluster: crate::cluster::Cluster::of(self)
                .map_or_else(|| serde_json::json!({}), |c| c.varz()),
            gateway: Empty {},
            leaf: Empty {},
            mqtt: Empty {},
            websocket: Empty {},
            jetstream: super::jsz::varz_section(self),
            tls_timeout: tls.map_or(DEFAULT_TLS_TIMEOUT, |t| t.timeout.as_secs_f64()),
            write_deadline: opts.write_deadline.as_nanos() as i64,
            start: rfc3339(self.start),
            now: rfc3339(now),
            uptime: uptime(since(self.start, now)),
            mem: proc::rss_bytes(),
            cores,
            gomaxprocs: cores,
            cpu: proc::pcpu(),
            connections: self.num_clients(),
            total_connections: self.total_connections.load(Ordering::Relaxed),
            routes: crate::cluster::Cluster::of(self).map_or(0, |c| c.num_routes()),
            remotes: crate::cluster::Cluster::of(self).map_or(0, |c| c.num_routes()),
            leafnodes: 0,
            in_msgs,
            in_bytes,
            in_client_msgs: in_msgs,
            in_client_bytes: in_bytes,
            out_msgs,
            out_bytes,
            out_client_msgs: out_msgs,
            out_client_bytes: out_bytes,
            slow_consumers: self.slow_consumers.load(Ordering::Relaxed),
            stale_connections: stale,
            stalled_clients: 0,
            subscriptions,
            http_req_stats,
            config_load_time: rfc3339(*self.config_load_time.read()),
            config_digest: String::new(),
            feature_flags: Empty {},
            system_account: if opts.no_sys_acc && opts.system_account.is_none() {
                String::new()
            } else {
                self.system_account.name.clone()
            },
            metadata: opts.server_metadata.clone(),
            slow_consumer_stats: KindStats {
                clients: self.slow_consumer_stats.clients.load(Ordering::Relaxed),
                routes: self.slow_consumer_stats.routes.load(Ordering::Relaxed),
                gateways: self.slow_consumer_stats.gateways.load(Ordering::Relaxed),
                leafs: self.slow_consumer_stats.leafs.load(Ordering::Relaxed),
            },
            stale_connection_stats: KindStats {
                clients: stale,
                ..KindStats::default()
            },
            disk_io_wait_stats: DiskIoWaitStats::default(),
            tls_cert_not_after: tls.and_then(|t| cert_not_after(&t.cert_file)),
        }
    }
}
