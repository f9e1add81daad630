//! Starting the in-process broker from nats.conf text, as the binary loads it with `-c`.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use natrix_broker::options::Options;

use super::TestServer;

/// Loads `body` as a config file (written to a temporary file) onto default options; panics on
/// errors, and on warnings unless `allow_warnings`.
pub fn load_conf(body: &str) -> Options {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "natrix-conf-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("nats.conf");
    std::fs::write(&file, body).expect("write config");
    let loaded = natrix_broker::config::load_file(&file);
    let _ = std::fs::remove_dir_all(&dir);
    let (opts, warnings) = loaded.unwrap_or_else(|e| panic!("config {body:?}: {e}"));
    assert!(
        warnings.is_empty(),
        "config {body:?}: warnings {warnings:?}"
    );
    opts
}

/// Starts an in-process broker with the options `body` configures, on 127.0.0.1 with an
/// ephemeral client port (and an ephemeral monitoring port when `http` is set).
pub async fn start_conf(body: &str, http: bool) -> TestServer {
    let loaded = load_conf(body);
    TestServer::start_with(move |o| {
        let (host, http_host) = (o.host.clone(), o.http_host.clone());
        *o = loaded;
        o.host = host;
        o.port = -1;
        o.http_host = http_host;
        o.http_port = if http { -1 } else { 0 };
        o.config_file = None;
    })
    .await
}
