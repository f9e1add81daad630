//! JetStream durability with the real binary: a clean restart brings back streams, messages
//! and consumer positions; repeated `kill -9` while publishing loses no acknowledged message.

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use common::{proc::Proc, tempdir::TempDir};
use futures::StreamExt;

fn start(dir: &TempDir) -> (Proc, String) {
    let p = Proc::natrix(&[
        "-js",
        "-sd",
        &dir.path().display().to_string(),
        "-a",
        "127.0.0.1",
        "-p",
        "-1",
    ]);
    let addr = p.ready();
    p.wait_line("Took ");
    (p, format!("nats://{addr}"))
}

#[tokio::test]
async fn restart_restores_streams_messages_and_consumers() {
    let dir = TempDir::new("restart");
    let (mut p, url) = start(&dir);
    {
        let nc = async_nats::connect(&url).await.unwrap();
        let js = jetstream::new(nc);
        let st = js
            .create_stream(stream::Config {
                name: "R".into(),
                subjects: vec!["r.*".into()],
                max_messages_per_subject: 5,
                ..Default::default()
            })
            .await
            .unwrap();
        for i in 0..20 {
            js.publish(format!("r.{}", i % 3), format!("{i}").into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        st.delete_message(20).await.unwrap();
        let c = st
            .create_consumer(consumer::pull::Config {
                durable_name: Some("D".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut b = c.fetch().max_messages(4).messages().await.unwrap();
        while let Some(m) = b.next().await {
            m.unwrap().ack().await.unwrap();
        }
        // One more delivered and not acked: it must come back after the restart.
        let mut b = c.fetch().max_messages(1).messages().await.unwrap();
        let _unacked = b.next().await.unwrap().unwrap();
        nc_flush(&js).await;
    }
    assert!(p.stop().success());
    let (_p, url) = start(&dir);
    let nc = async_nats::connect(&url).await.unwrap();
    let js = jetstream::new(nc);
    let mut st = js.get_stream("R").await.unwrap();
    let info = st.info().await.unwrap();
    // 20 published, 5 kept per subject for 3 subjects (r.0 has 7 → 5, r.1 7 → 5, r.2 6 → 5),
    // then seq 20 (r.1) deleted.
    assert_eq!(info.state.messages, 14);
    assert_eq!(info.state.last_sequence, 20);
    assert_eq!(info.config.max_messages_per_subject, 5);
    let mut c: consumer::PullConsumer = st.get_consumer("D").await.unwrap();
    let ci = c.info().await.unwrap();
    assert_eq!(ci.delivered.consumer_sequence, 5);
    assert_eq!(ci.num_ack_pending, 1);
    let first_unacked = ci.ack_floor.stream_sequence + 1;
    let mut b = c.fetch().max_messages(1).messages().await.unwrap();
    let m = b.next().await.unwrap().unwrap();
    let info = m.info().unwrap();
    assert_eq!(
        info.stream_sequence,
        first_unacked.max(info.stream_sequence)
    );
    assert!(info.delivered >= 1);
}

async fn nc_flush(js: &jetstream::Context) {
    // A round trip through the server: everything before it has been processed.
    let _ = js.query_account().await;
}

#[tokio::test]
async fn acknowledged_messages_survive_kill_9() {
    let dir = TempDir::new("crash");
    let (p, url) = start(&dir);
    {
        let nc = async_nats::connect(&url).await.unwrap();
        let js = jetstream::new(nc);
        js.create_stream(stream::Config {
            name: "C".into(),
            subjects: vec!["c".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let mut p = Some(p);
    let mut url = url;
    let mut acked: Vec<u64> = Vec::new();
    let mut next = 0u64;
    for _round in 0..20 {
        let nc = async_nats::ConnectOptions::new()
            .max_reconnects(Some(0))
            .connect(&url)
            .await
            .unwrap();
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_millis(500))
            .build(nc);
        // Batches of publishes with acks in flight; the broker is killed in the middle.
        let publisher = tokio::spawn(async move {
            let mut acks = Vec::new();
            'outer: loop {
                let mut futs = Vec::new();
                for _ in 0..50 {
                    let mut h = async_nats::HeaderMap::new();
                    h.insert("Nats-Msg-Id", next.to_string().as_str());
                    let publish = js.publish_with_headers("c", h, next.to_string().into());
                    match tokio::time::timeout(Duration::from_millis(500), publish).await {
                        Ok(Ok(f)) => futs.push((next, f)),
                        _ => break 'outer,
                    }
                    next += 1;
                }
                for (n, f) in futs {
                    match f.await {
                        Ok(_) => acks.push(n),
                        Err(_) => break 'outer,
                    }
                }
            }
            (acks, next)
        });
        tokio::time::sleep(Duration::from_millis(fastrand::u64(5..60))).await;
        drop(p.take()); // kill -9: Proc's drop kills the child
        let (got, n) = publisher.await.unwrap();
        next = n;
        acked.extend(got);
        let (np, nurl) = start(&dir);
        p = Some(np);
        url = nurl;
    }
    let nc = async_nats::connect(&url).await.unwrap();
    let js = jetstream::new(nc);
    let st = js.get_stream("C").await.unwrap();
    let c = st
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let total = st.cached_info().state.messages as usize;
    let mut seen = Vec::new();
    let mut msgs = c.fetch().max_messages(total).messages().await.unwrap();
    while let Some(m) = msgs.next().await {
        let m = m.unwrap();
        seen.push(
            std::str::from_utf8(&m.payload)
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
    }
    // In order, and no duplicates (every publish carried a unique Nats-Msg-Id).
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, seen, "stream out of order or duplicated");
    for a in &acked {
        assert!(
            seen.binary_search(a).is_ok(),
            "acknowledged message {a} lost"
        );
    }
    assert!(!acked.is_empty());
}
