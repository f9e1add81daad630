//! JetStream end to end through async-nats's `jetstream` API: streams, publishing with acks
//! and de-duplication, pull and push consumers with acks and redelivery.

mod common;
mod monitor_common;

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use common::TestServer;
use futures::StreamExt;
use natrix_broker::options::JetStreamOptions;

/// A temporary store directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "natrix-js-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
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

async fn js_server(dir: &TempDir) -> TestServer {
    let d = dir.0.clone();
    TestServer::start_with(move |o| {
        o.jetstream = Some(JetStreamOptions {
            store_dir: d,
            ..Default::default()
        })
    })
    .await
}

#[tokio::test]
async fn stream_crud_and_publish_acks() {
    let dir = TempDir::new("crud");
    let s = js_server(&dir).await;
    let nc = async_nats::connect(s.url()).await.unwrap();
    let js = jetstream::new(nc);
    let mut st = js
        .create_stream(stream::Config {
            name: "ORDERS".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let info = st.info().await.unwrap();
    assert_eq!(info.config.max_messages, -1);
    assert_eq!(info.state.messages, 0);

    let ack = js
        .publish("orders.a", "one".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(
        (ack.stream.as_str(), ack.sequence, ack.duplicate),
        ("ORDERS", 1, false)
    );
    let ack = js
        .publish("orders.b", "two".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 2);
    // De-duplication by Nats-Msg-Id.
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", "m1");
    let a1 = js
        .publish_with_headers("orders.c", h.clone(), "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let a2 = js
        .publish_with_headers("orders.c", h, "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!((a1.sequence, a2.sequence, a2.duplicate), (3, 3, true));
    // Expected last sequence.
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Expected-Last-Sequence", "1");
    let err = js
        .publish_with_headers("orders.d", h, "y".into())
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("wrong last sequence: 3"), "{err}");

    let info = st.info().await.unwrap();
    assert_eq!((info.state.messages, info.state.last_sequence), (3, 3));
    let m = st.get_raw_message(2).await.unwrap();
    assert_eq!(
        (m.subject.as_str(), &m.payload[..]),
        ("orders.b", &b"two"[..])
    );
    let m = st
        .get_last_raw_message_by_subject("orders.a")
        .await
        .unwrap();
    assert_eq!(m.sequence, 1);
    assert!(st.delete_message(1).await.unwrap());
    assert_eq!(st.info().await.unwrap().state.messages, 2);
    let purged = st.purge().await.unwrap();
    assert_eq!(purged.purged, 2);

    let names: Vec<String> = js.stream_names().map(|n| n.unwrap()).collect().await;
    assert_eq!(names, vec!["ORDERS".to_string()]);
    // Overlapping subjects are refused.
    let err = js
        .create_stream(stream::Config {
            name: "OTHER".into(),
            subjects: vec!["orders.a".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("overlap"), "{err}");
    js.delete_stream("ORDERS").await.unwrap();
    assert!(js.get_stream("ORDERS").await.is_err());
}

#[tokio::test]
async fn pull_consumer_acks_and_redelivery() {
    let dir = TempDir::new("pull");
    let s = js_server(&dir).await;
    let nc = async_nats::connect(s.url()).await.unwrap();
    let js = jetstream::new(nc);
    let st = js
        .create_stream(stream::Config {
            name: "EV".into(),
            subjects: vec!["ev.*".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..10 {
        js.publish(format!("ev.{}", i % 2), format!("m{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let c = st
        .create_consumer(consumer::pull::Config {
            durable_name: Some("C".into()),
            ack_wait: Duration::from_millis(300),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = c.fetch().max_messages(4).messages().await.unwrap();
    let mut got = Vec::new();
    while let Some(m) = batch.next().await {
        let m = m.unwrap();
        got.push(String::from_utf8(m.payload.to_vec()).unwrap());
        if got.len() != 2 {
            m.ack().await.unwrap();
        }
    }
    assert_eq!(got, vec!["m0", "m1", "m2", "m3"]);
    // m1 was not acked: after ack_wait it comes back first, marked as redelivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut batch = c.fetch().max_messages(1).messages().await.unwrap();
    let m = batch.next().await.unwrap().unwrap();
    assert_eq!(&m.payload[..], b"m1");
    assert_eq!(m.info().unwrap().delivered, 2);
    m.double_ack().await.unwrap();
    let mut c = c;
    let info = c.info().await.unwrap();
    assert_eq!(info.num_pending, 6);
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.delivered.stream_sequence, 4);

    // Filtered ephemeral consumer over the rest, with the messages() stream.
    let c2 = st
        .create_consumer(consumer::pull::Config {
            filter_subject: "ev.1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = c2.messages().await.unwrap();
    for want in ["m1", "m3", "m5", "m7", "m9"] {
        let m = msgs.next().await.unwrap().unwrap();
        assert_eq!(std::str::from_utf8(&m.payload).unwrap(), want);
        m.ack().await.unwrap();
    }
}

#[tokio::test]
async fn push_consumer_delivers() {
    let dir = TempDir::new("push");
    let s = js_server(&dir).await;
    let nc = async_nats::connect(s.url()).await.unwrap();
    let js = jetstream::new(nc.clone());
    let st = js
        .create_stream(stream::Config {
            name: "P".into(),
            subjects: vec!["p.>".into()],
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..5 {
        js.publish("p.x", format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let c = st
        .create_consumer(consumer::push::Config {
            durable_name: Some("PC".into()),
            deliver_subject: nc.new_inbox(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = c.messages().await.unwrap();
    for i in 0..5 {
        let m = msgs.next().await.unwrap().unwrap();
        assert_eq!(m.subject.as_str(), "p.x");
        assert_eq!(std::str::from_utf8(&m.payload).unwrap(), i.to_string());
        m.ack().await.unwrap();
    }
    js.publish("p.y", "late".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let m = msgs.next().await.unwrap().unwrap();
    assert_eq!(&m.payload[..], b"late");
}

#[tokio::test]
async fn key_value_bucket() {
    let dir = TempDir::new("kv");
    let s = js_server(&dir).await;
    let nc = async_nats::connect(s.url()).await.unwrap();
    let js = jetstream::new(nc);
    let kv = js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "cfg".into(),
            history: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut watch = kv.watch("app.>").await.unwrap();
    let r1 = kv.put("app.color", "red".into()).await.unwrap();
    let r2 = kv.put("app.color", "blue".into()).await.unwrap();
    assert!(r2 > r1);
    assert_eq!(kv.get("app.color").await.unwrap().unwrap(), "blue");
    assert!(kv.get("app.missing").await.unwrap().is_none());
    let e = kv.entry("app.color").await.unwrap().unwrap();
    assert_eq!((e.revision, &e.value[..]), (r2, &b"blue"[..]));
    // Optimistic concurrency.
    assert!(kv.update("app.color", "green".into(), r1).await.is_err());
    let r3 = kv.update("app.color", "green".into(), r2).await.unwrap();
    assert!(kv.create("app.color", "x".into()).await.is_err());
    let w1 = watch.next().await.unwrap().unwrap();
    assert_eq!((w1.key.as_str(), &w1.value[..]), ("app.color", &b"red"[..]));
    // History keeps the last three.
    kv.put("app.color", "white".into()).await.unwrap();
    let hist: Vec<_> = kv
        .history("app.color")
        .await
        .unwrap()
        .map(|e| e.unwrap().value)
        .collect()
        .await;
    assert_eq!(hist, vec!["blue", "green", "white"]);
    let _ = r3;
    kv.delete("app.color").await.unwrap();
    assert!(kv.get("app.color").await.unwrap().is_none());
    kv.put("app.size", "L".into()).await.unwrap();
    let keys: Vec<String> = kv.keys().await.unwrap().map(|k| k.unwrap()).collect().await;
    assert_eq!(keys, vec!["app.size".to_string()]);
    kv.purge("app.size").await.unwrap();
    assert!(kv.get("app.size").await.unwrap().is_none());
    let st = kv.status().await.unwrap();
    assert_eq!(st.bucket(), "cfg");
}

#[tokio::test]
async fn object_store_large_object() {
    let dir = TempDir::new("obj");
    let s = js_server(&dir).await;
    let nc = async_nats::connect(s.url()).await.unwrap();
    let js = jetstream::new(nc);
    let store = js
        .create_object_store(async_nats::jetstream::object_store::Config {
            bucket: "files".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let info = store.put("big.bin", &mut &data[..]).await.unwrap();
    assert_eq!(info.size, data.len());
    assert!(info.chunks > 1);
    let mut obj = store.get("big.bin").await.unwrap();
    let mut back = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut obj, &mut back)
        .await
        .unwrap();
    assert_eq!(back, data);
    // Overwrite with a small one, then delete.
    store.put("big.bin", &mut &b"small"[..]).await.unwrap();
    let mut obj = store.get("big.bin").await.unwrap();
    let mut back = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut obj, &mut back)
        .await
        .unwrap();
    assert_eq!(back, b"small");
    store.delete("big.bin").await.unwrap();
    assert!(store.get("big.bin").await.is_err());
}

#[tokio::test]
async fn jsz_and_varz_report_streams_and_consumers() {
    let dir = TempDir::new("jsz");
    let d = dir.0.clone();
    let s = TestServer::start_with(move |o| {
        o.http_port = -1;
        o.jetstream = Some(JetStreamOptions {
            store_dir: d,
            ..Default::default()
        })
    })
    .await;
    let nc = async_nats::connect(s.url()).await.unwrap();
    let js = jetstream::new(nc);
    let st = js
        .create_stream(stream::Config {
            name: "M".into(),
            subjects: vec!["m.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    for _ in 0..3 {
        js.publish("m.x", "abc".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    st.create_consumer(consumer::pull::Config {
        durable_name: Some("MC".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let base = s.http();
    let jsz = monitor_common::get_json(&base, "/jsz").await;
    assert_eq!(jsz["streams"], 1);
    assert_eq!(jsz["consumers"], 1);
    assert_eq!(jsz["messages"], 3);
    assert!(jsz["storage"].as_u64().unwrap() > 0);
    assert!(jsz["config"]["store_dir"]
        .as_str()
        .unwrap()
        .ends_with("jetstream"));
    assert!(jsz.get("account_details").is_none());
    let jsz = monitor_common::get_json(&base, "/jsz?streams=true&consumers=true&config=true").await;
    let acc = &jsz["account_details"][0];
    assert_eq!(acc["name"], "$G");
    let sd = &acc["stream_detail"][0];
    assert_eq!(sd["name"], "M");
    assert_eq!(sd["state"]["messages"], 3);
    assert_eq!(sd["config"]["subjects"][0], "m.>");
    assert_eq!(sd["consumer_detail"][0]["name"], "MC");
    assert_eq!(sd["consumer_detail"][0]["num_pending"], 3);
    let varz = monitor_common::get_json(&base, "/varz").await;
    assert_eq!(varz["jetstream"]["stats"]["accounts"], 1);
    assert!(varz["jetstream"]["config"]["max_memory"].as_i64().unwrap() > 0);
}
