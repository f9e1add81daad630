//! `natrix-bench` against an in-process Natrix: every mode runs, prints its one result line,
//! and reports no lost messages.

use std::path::PathBuf;
use std::process::Command;

use natrix_broker::options::{JetStreamOptions, Options};

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_runs_without_loss() {
    let server = natrix_broker::node::build(Options {
        host: "127.0.0.1".into(),
        port: -1,
        ..Options::default()
    })
    .expect("valid server options");
    natrix_broker::node::start(&server).await.unwrap();
    let addr = server.client_addr.read().unwrap();
    let url = format!("nats://{addr}");
    for (mode, msgs) in [
        ("pub", "20000"),
        ("pubsub", "20000"),
        ("fanout", "5000"),
        ("queue", "20000"),
        ("reqrep", "500"),
    ] {
        let url = url.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_natrix-bench"))
                .args([
                    mode, "--url", &url, "--msgs", msgs, "--size", "64", "--wait", "5",
                ])
                .output()
                .expect("run natrix-bench")
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{mode}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout.lines().last().unwrap_or_default();
        assert_eq!(field(line, "mode"), Some(mode), "{line}");
        if let Some(lost) = field(line, "lost") {
            assert_eq!(lost, "0", "{line}");
        }
        if mode == "reqrep" {
            assert_eq!(field(line, "errors"), Some("0"), "{line}");
            assert!(field(line, "p99_us").is_some(), "{line}");
        }
    }
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_messages_are_reported_not_waited_for() {
    let server = natrix_broker::node::build(Options {
        host: "127.0.0.1".into(),
        port: -1,
        ..Options::default()
    })
    .expect("valid server options");
    natrix_broker::node::start(&server).await.unwrap();
    let url = format!("nats://{}", server.client_addr.read().unwrap());
    // A one-message client buffer makes async-nats drop most deliveries.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_natrix-bench"))
            .args([
                "pubsub",
                "--url",
                &url,
                "--msgs",
                "50000",
                "--sub-capacity",
                "1",
                "--wait",
                "1",
            ])
            .output()
            .expect("run natrix-bench")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let lost: u64 = field(line, "lost")
        .and_then(|v| v.parse().ok())
        .expect(line);
    assert!(lost > 0, "{line}");
    server.shutdown();
}

/// A temporary JetStream store directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = std::env::temp_dir().join(format!(
            "natrix-bench-smoke-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_modes_store_and_fetch_every_message() {
    let dir = TempDir::new("js");
    let server = natrix_broker::node::build(Options {
        host: "127.0.0.1".into(),
        port: -1,
        jetstream: Some(JetStreamOptions {
            store_dir: dir.0.clone(),
            ..Default::default()
        }),
        ..Options::default()
    })
    .expect("valid server options");
    natrix_broker::node::start(&server).await.unwrap();
    let url = format!("nats://{}", server.client_addr.read().unwrap());
    let runs: [&[&str]; 4] = [
        &["jspub", "--msgs", "3000", "--window", "64"],
        // A window of one: every publish waits for its ack.
        &["jspub", "--msgs", "200", "--window", "1"],
        &["jsfetch", "--msgs", "3000", "--batch", "50"],
        &["jsfetch", "--msgs", "1000", "--ack", "none"],
    ];
    for run in runs {
        let mode = run[0];
        let msgs = run[2];
        let mut args: Vec<String> = run.iter().map(|s| s.to_string()).collect();
        args.extend(["--url", &url, "--size", "64", "--wait", "5"].map(String::from));
        let out = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_natrix-bench"))
                .args(&args)
                .output()
                .expect("run natrix-bench")
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{run:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout.lines().last().unwrap_or_default();
        assert_eq!(field(line, "mode"), Some(mode), "{line}");
        assert_eq!(field(line, "msgs"), Some(msgs), "{line}");
        assert_eq!(field(line, "lost"), Some("0"), "{line}");
        let rate: f64 = field(line, "rate")
            .and_then(|v| v.parse().ok())
            .expect(line);
        assert!(rate > 0.0, "{line}");
        if mode == "jspub" {
            assert_eq!(field(line, "stored"), Some(msgs), "{line}");
        } else {
            assert_eq!(field(line, "errors"), Some("0"), "{line}");
            if run.contains(&"none") {
                assert_eq!(field(line, "ack"), Some("none"), "{line}");
            } else {
                assert_eq!(field(line, "ack_pending"), Some("0"), "{line}");
            }
        }
    }
    server.shutdown();
}
