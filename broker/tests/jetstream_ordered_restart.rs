//! An ordered push consumer (async-nats) across a restart of the server, on natrix and on the
//! reference nats-server: it goes on delivering every message once, in order, after the
//! server comes back on the same port and store.

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, consumer::push::OrderedConfig, stream};
use common::{proc::Proc, tempdir::TempDir};
use futures::StreamExt;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn start(reference: bool, port: u16, dir: &TempDir) -> Proc {
    let sd = dir.path().display().to_string();
    let p = port.to_string();
    let args = ["-js", "-sd", &sd, "-a", "127.0.0.1", "-p", &p];
    let proc = if reference {
        Proc::reference(&args)
    } else {
        Proc::natrix(&args)
    };
    proc.ready();
    proc
}

/// Publishes `range` to `orders.<n>` with acknowledgement, retrying while the server is away.
async fn publish(js: &jetstream::Context, range: std::ops::RangeInclusive<u32>) {
    for i in range {
        for attempt in 0.. {
            let sent = async {
                js.publish(format!("orders.{i}"), i.to_string().into())
                    .await?
                    .await
                    .map(|_| ())
                    .map_err(|e| e.into())
            };
            let r: Result<(), Box<dyn std::error::Error + Send + Sync>> = sent.await;
            if r.is_ok() {
                break;
            }
            assert!(attempt < 100, "publishing {i}: {r:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The next delivered payload, as a number (`None` after 30 s without one). Errors the
/// client reports while the server is away (it re-creates the consumer) are passed over.
async fn next(msgs: &mut async_nats::jetstream::consumer::push::Ordered) -> Option<u32> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, msgs.next()).await {
            Ok(Some(Ok(m))) => return Some(String::from_utf8_lossy(&m.payload).parse().unwrap()),
            Ok(Some(Err(e))) => eprintln!("ordered consumer: {e}"),
            _ => return None,
        }
    }
}

/// The payloads the ordered consumer delivered, across a restart after the 30th.
async fn run(reference: bool) -> Vec<u32> {
    let dir = TempDir::new("ordered-restart");
    let port = free_port();
    let mut server = start(reference, port, &dir);
    let nc = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    let js = jetstream::new(nc.clone());
    let s = js
        .create_stream(stream::Config {
            name: "ORDERS".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    publish(&js, 1..=100).await;
    let consumer = s
        .create_consumer(OrderedConfig {
            deliver_subject: nc.new_inbox(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = consumer.messages().await.unwrap();
    let mut got = Vec::new();
    while got.len() < 30 {
        got.push(next(&mut msgs).await.expect("first 30"));
    }
    server.stop();
    let _server = start(reference, port, &dir);
    publish(&js, 101..=200).await;
    while got.len() < 200 {
        match next(&mut msgs).await {
            Some(v) => got.push(v),
            None => break,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_consumer_delivers_everything_across_a_restart() {
    let want = run(true).await;
    let got = run(false).await;
    let in_order = |v: &[u32]| v.iter().copied().eq(1..=v.len() as u32);
    println!(
        "figure: ordered-restart natrix_received={} natrix_in_order={} reference_received={} reference_in_order={}",
        got.len(),
        in_order(&got),
        want.len(),
        in_order(&want)
    );
    assert_eq!(want, (1..=200).collect::<Vec<_>>(), "reference");
    assert_eq!(got, want, "natrix delivers what nats-server delivers");
}
