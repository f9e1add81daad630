//! Core NATS behaviour seen through the official Rust client, async-nats.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::{sync, Raw, TestServer};
use futures::StreamExt;

async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("message within 5s")
        .expect("subscription open")
}

async fn nothing(sub: &mut async_nats::Subscriber) {
    let r = tokio::time::timeout(Duration::from_millis(200), sub.next()).await;
    assert!(r.is_err(), "unexpected message: {:?}", r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_subscribe_and_wildcards() {
    let s = TestServer::start().await;
    let nc = async_nats::connect(s.url()).await.unwrap();
    let mut exact = nc.subscribe("orders.eu.new").await.unwrap();
    let mut star = nc.subscribe("orders.*.new").await.unwrap();
    let mut gt = nc.subscribe("orders.>").await.unwrap();
    let mut other = nc.subscribe("orders.*").await.unwrap();
    sync(&nc).await;

    nc.publish("orders.eu.new", Bytes::from_static(b"1"))
        .await
        .unwrap();
    nc.publish("orders.us.paid", Bytes::from_static(b"2"))
        .await
        .unwrap();
    sync(&nc).await;

    assert_eq!(next(&mut exact).await.payload, "1");
    assert_eq!(next(&mut star).await.payload, "1");
    let a = next(&mut gt).await;
    let b = next(&mut gt).await;
    assert_eq!(
        (a.subject.as_str(), b.subject.as_str()),
        ("orders.eu.new", "orders.us.paid")
    );
    nothing(&mut exact).await;
    nothing(&mut other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_group_spreads_and_delivers_once() {
    let s = TestServer::start().await;
    let nc = async_nats::connect(s.url()).await.unwrap();
    let mut members = Vec::new();
    for _ in 0..3 {
        let c = async_nats::connect(s.url()).await.unwrap();
        let sub = c.queue_subscribe("work", "workers".into()).await.unwrap();
        sync(&c).await;
        members.push((c, sub));
    }
    let mut plain = nc.subscribe("work").await.unwrap();
    sync(&nc).await;
    let n = 300;
    for i in 0..n {
        nc.publish("work", format!("{i}").into()).await.unwrap();
    }
    sync(&nc).await;
    let mut counts = Vec::new();
    let mut seen = HashMap::new();
    for (_, sub) in members.iter_mut() {
        let mut count = 0;
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
            *seen.entry(m.payload.clone()).or_insert(0) += 1;
            count += 1;
        }
        counts.push(count);
    }
    assert_eq!(
        counts.iter().sum::<i32>(),
        n,
        "every message to exactly one member: {counts:?}"
    );
    assert!(seen.values().all(|&v| v == 1));
    assert!(
        counts.iter().all(|&c| c > 0),
        "random choice reaches every member: {counts:?}"
    );
    for _ in 0..n {
        next(&mut plain).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_reply_and_headers() {
    let s = TestServer::start().await;
    let nc = async_nats::connect(s.url()).await.unwrap();
    let mut svc = nc.subscribe("svc.echo").await.unwrap();
    let responder = nc.clone();
    tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            let mut h = async_nats::HeaderMap::new();
            h.insert(
                "X-Seen",
                m.headers
                    .as_ref()
                    .and_then(|h| h.get("X-In"))
                    .map(|v| v.as_str())
                    .unwrap_or("none"),
            );
            responder
                .publish_with_headers(m.reply.unwrap(), h, m.payload)
                .await
                .unwrap();
        }
    });
    let mut h = async_nats::HeaderMap::new();
    h.insert("X-In", "abc");
    let resp = nc
        .send_request(
            "svc.echo",
            async_nats::Request::new().payload("ping".into()).headers(h),
        )
        .await
        .unwrap();
    assert_eq!(resp.payload, "ping");
    assert_eq!(resp.headers.unwrap().get("X-Seen").unwrap().as_str(), "abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_responders_is_reported() {
    let s = TestServer::start().await;
    let nc = async_nats::connect(s.url()).await.unwrap();
    let err = nc.request("nobody.home", "x".into()).await.unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_after_max() {
    let s = TestServer::start().await;
    let nc = async_nats::connect(s.url()).await.unwrap();
    let mut sub = nc.subscribe("limited").await.unwrap();
    sub.unsubscribe_after(2).await.unwrap();
    sync(&nc).await;
    for _ in 0..5 {
        nc.publish("limited", "m".into()).await.unwrap();
    }
    sync(&nc).await;
    next(&mut sub).await;
    next(&mut sub).await;
    let end = tokio::time::timeout(Duration::from_secs(2), sub.next())
        .await
        .unwrap();
    assert!(end.is_none(), "subscription ends after max");
    // The server dropped it too.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(s.server.global_account().sublist.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_off_suppresses_own_messages() {
    let s = TestServer::start().await;
    let nc = async_nats::ConnectOptions::new()
        .no_echo()
        .connect(s.url())
        .await
        .unwrap();
    let other = async_nats::connect(s.url()).await.unwrap();
    let mut mine = nc.subscribe("e").await.unwrap();
    let mut theirs = other.subscribe("e").await.unwrap();
    nc.flush().await.unwrap();
    sync(&other).await;
    nc.publish("e", "x".into()).await.unwrap();
    nc.flush().await.unwrap();
    next(&mut theirs).await;
    nothing(&mut mine).await;
    other.publish("e", "y".into()).await.unwrap();
    sync(&other).await;
    assert_eq!(next(&mut mine).await.payload, "y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_track_messages_and_bytes() {
    let s = TestServer::start().await;
    let nc = async_nats::connect(s.url()).await.unwrap();
    let mut sub = nc.subscribe("c").await.unwrap();
    nc.flush().await.unwrap();
    for _ in 0..10 {
        nc.publish("c", Bytes::from_static(b"12345")).await.unwrap();
    }
    nc.flush().await.unwrap();
    for _ in 0..10 {
        next(&mut sub).await;
    }
    use std::sync::atomic::Ordering::Relaxed;
    // Counters are added once per read batch; a delivery can overtake them (e.g. when the
    // subscriber's write task sends it), so wait for them within an upper bound.
    for _ in 0..100 {
        if s.server.stats.out_msgs.load(Relaxed) == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.server.stats.in_msgs.load(Relaxed), 10);
    assert_eq!(s.server.stats.in_bytes.load(Relaxed), 50);
    assert_eq!(s.server.stats.out_msgs.load(Relaxed), 10);
    assert_eq!(s.server.stats.out_bytes.load(Relaxed), 50);
    let c = &s.server.clients()[0];
    assert_eq!(c.stats.in_msgs.load(Relaxed), 10);
    assert_eq!(c.stats.out_msgs.load(Relaxed), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_disconnected_and_counted() {
    let s = TestServer::start_with(|o| {
        o.max_pending = 64 * 1024;
        o.write_deadline = Duration::from_secs(2);
    })
    .await;
    // A subscriber that never reads.
    let mut stuck = Raw::connect_with(s.addr, r#"{"verbose":false}"#).await;
    stuck.send("SUB flood 1\r\nPING\r\n").await;
    assert_eq!(stuck.line().await.as_deref(), Some("PONG"));
    let nc = async_nats::connect(s.url()).await.unwrap();
    let payload = Bytes::from(vec![b'x'; 8 * 1024]);
    for _ in 0..2000 {
        nc.publish("flood", payload.clone()).await.unwrap();
    }
    sync(&nc).await;
    let mut closed = false;
    for _ in 0..100 {
        if s.server
            .slow_consumers
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
        {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed, "slow consumer detected");
    assert!(stuck.is_closed().await, "slow consumer connection closed");
    // The closed-connection record is written once the connection's tasks have ended, which
    // can be just after the socket closes.
    let mut recorded = false;
    for _ in 0..100 {
        recorded = s
            .server
            .closed_clients()
            .iter()
            .any(|c| c.reason.as_str().starts_with("Slow Consumer"));
        if recorded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(recorded, "closed connection recorded as a slow consumer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_connection_is_closed_after_ping_max() {
    let s = TestServer::start_with(|o| {
        o.ping_interval = Duration::from_millis(100);
        o.ping_max = 2;
    })
    .await;
    let mut raw = Raw::connect_with(s.addr, r#"{"verbose":false}"#).await;
    // Never answer PINGs.
    assert_eq!(raw.line().await.as_deref(), Some("PING"));
    assert_eq!(raw.line().await.as_deref(), Some("PING"));
    assert_eq!(raw.line().await.as_deref(), Some("-ERR 'Stale Connection'"));
    assert!(raw.is_closed().await);
    // A client that answers stays.
    let mut ok = Raw::connect_with(s.addr, r#"{"verbose":false}"#).await;
    for _ in 0..4 {
        assert_eq!(ok.line().await.as_deref(), Some("PING"));
        ok.send("PONG\r\n").await;
    }
    ok.send("PING\r\n").await;
    let mut l = ok.line().await.unwrap();
    while l == "PING" {
        ok.send("PONG\r\n").await;
        l = ok.line().await.unwrap();
    }
    assert_eq!(l, "PONG");
}
