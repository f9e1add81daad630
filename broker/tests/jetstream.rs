//! JetStream end to end through async-nats's `jetstream` API: streams, publishing with acks
//! and de-duplication, pull and push consumers with acks and redelivery.

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use common::{conf, http, tempdir::TempDir, TestServer};
use futures::StreamExt;
use natrix_broker::options::JetStreamOptions;

async fn js_server(dir: &TempDir) -> TestServer {
    let d = dir.path().to_path_buf();
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
    let d = dir.path().to_path_buf();
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
    let jsz = http::get_json(&base, "/jsz").await;
    assert_eq!(jsz["streams"], 1);
    assert_eq!(jsz["consumers"], 1);
    assert_eq!(jsz["messages"], 3);
    assert!(jsz["storage"].as_u64().unwrap() > 0);
    assert!(jsz["config"]["store_dir"]
        .as_str()
        .unwrap()
        .ends_with("jetstream"));
    assert!(jsz.get("account_details").is_none());
    let jsz = http::get_json(&base, "/jsz?streams=true&consumers=true&config=true").await;
    let acc = &jsz["account_details"][0];
    assert_eq!(acc["name"], "$G");
    let sd = &acc["stream_detail"][0];
    assert_eq!(sd["name"], "M");
    assert_eq!(sd["state"]["messages"], 3);
    assert_eq!(sd["config"]["subjects"][0], "m.>");
    assert_eq!(sd["consumer_detail"][0]["name"], "MC");
    assert_eq!(sd["consumer_detail"][0]["num_pending"], 3);
    let varz = http::get_json(&base, "/varz").await;
    assert_eq!(varz["jetstream"]["stats"]["accounts"], 1);
    // The exporter's JetStream families on /metrics.
    let metrics = http::get(&base, "/metrics").await.body;
    let line = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
            .to_string()
    };
    assert!(line("nats_server_total_streams{").ends_with(" 1"));
    let l = line("nats_stream_total_messages{");
    assert!(l.contains("stream_name=\"M\"") && l.ends_with(" 3"), "{l}");
    let l = line("nats_consumer_num_pending{");
    assert!(
        l.contains("consumer_name=\"MC\"") && l.ends_with(" 3"),
        "{l}"
    );
    assert!(varz["jetstream"]["config"]["max_memory"].as_i64().unwrap() > 0);
}

async fn stream_with(js: &jetstream::Context, cfg: stream::Config) -> stream::Stream {
    js.create_stream(cfg).await.unwrap()
}

async fn publish(js: &jetstream::Context, subject: &str, body: &str) -> Result<u64, String> {
    match js
        .publish(subject.to_string(), body.to_string().into())
        .await
    {
        Ok(f) => f.await.map(|a| a.sequence).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test]
async fn limits_are_enforced() {
    let dir = TempDir::new("limits");
    let s = js_server(&dir).await;
    let js = jetstream::new(async_nats::connect(s.url()).await.unwrap());
    // max_msgs with discard old: the oldest go.
    let mut st = stream_with(
        &js,
        stream::Config {
            name: "MM".into(),
            subjects: vec!["mm".into()],
            max_messages: 3,
            ..Default::default()
        },
    )
    .await;
    for i in 0..5 {
        publish(&js, "mm", &i.to_string()).await.unwrap();
    }
    let i = st.info().await.unwrap();
    assert_eq!(
        (
            i.state.messages,
            i.state.first_sequence,
            i.state.last_sequence
        ),
        (3, 3, 5)
    );
    // max_msgs with discard new: refused with nats-server's error.
    stream_with(
        &js,
        stream::Config {
            name: "MN".into(),
            subjects: vec!["mn".into()],
            max_messages: 2,
            discard: stream::DiscardPolicy::New,
            storage: stream::StorageType::Memory,
            ..Default::default()
        },
    )
    .await;
    publish(&js, "mn", "1").await.unwrap();
    publish(&js, "mn", "2").await.unwrap();
    let err = publish(&js, "mn", "3").await.unwrap_err();
    assert!(err.contains("maximum messages exceeded"), "{err}");
    // max_bytes (discard old) keeps the total under the limit.
    let mut st = stream_with(
        &js,
        stream::Config {
            name: "MB".into(),
            subjects: vec!["mb".into()],
            max_bytes: 300,
            ..Default::default()
        },
    )
    .await;
    for _ in 0..10 {
        publish(&js, "mb", &"x".repeat(50)).await.unwrap();
    }
    let i = st.info().await.unwrap();
    assert!(
        i.state.bytes <= 300 && i.state.messages < 10,
        "{:?}",
        i.state
    );
    // Per subject.
    let mut st = stream_with(
        &js,
        stream::Config {
            name: "PS".into(),
            subjects: vec!["ps.*".into()],
            max_messages_per_subject: 2,
            ..Default::default()
        },
    )
    .await;
    for i in 0..6 {
        publish(&js, &format!("ps.{}", i % 2), "v").await.unwrap();
    }
    publish(&js, "ps.x", "v").await.unwrap();
    assert_eq!(st.info().await.unwrap().state.messages, 5);
    // Message size.
    stream_with(
        &js,
        stream::Config {
            name: "SZ".into(),
            subjects: vec!["sz".into()],
            max_message_size: 8,
            ..Default::default()
        },
    )
    .await;
    let err = publish(&js, "sz", "0123456789").await.unwrap_err();
    assert!(
        err.contains("message size exceeds maximum allowed"),
        "{err}"
    );
    // Age: messages expire.
    let mut st = stream_with(
        &js,
        stream::Config {
            name: "AGE".into(),
            subjects: vec!["age".into()],
            max_age: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;
    publish(&js, "age", "old").await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let i = st.info().await.unwrap();
    assert_eq!((i.state.messages, i.state.last_sequence), (0, 1));
}

#[tokio::test]
async fn work_queue_and_interest_retention() {
    let dir = TempDir::new("retention");
    let s = js_server(&dir).await;
    let js = jetstream::new(async_nats::connect(s.url()).await.unwrap());
    let mut wq = stream_with(
        &js,
        stream::Config {
            name: "WQ".into(),
            subjects: vec!["wq.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        },
    )
    .await;
    for i in 0..4 {
        publish(&js, "wq.job", &i.to_string()).await.unwrap();
    }
    let c = wq
        .create_consumer(consumer::pull::Config {
            durable_name: Some("W".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    // A second unfiltered consumer is refused on a work queue.
    let err = wq
        .create_consumer(consumer::pull::Config {
            durable_name: Some("W2".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("multiple non-filtered consumers"),
        "{err}"
    );
    let mut b = c.fetch().max_messages(3).messages().await.unwrap();
    while let Some(m) = b.next().await {
        m.unwrap().double_ack().await.unwrap();
    }
    assert_eq!(wq.info().await.unwrap().state.messages, 1);

    let mut it = stream_with(
        &js,
        stream::Config {
            name: "IN".into(),
            subjects: vec!["in.>".into()],
            retention: stream::RetentionPolicy::Interest,
            ..Default::default()
        },
    )
    .await;
    // Nobody interested: acknowledged, not kept.
    assert_eq!(publish(&js, "in.a", "lost").await.unwrap(), 1);
    assert_eq!(it.info().await.unwrap().state.messages, 0);
    let c1 = it
        .create_consumer(consumer::pull::Config {
            durable_name: Some("I1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let c2 = it
        .create_consumer(consumer::pull::Config {
            durable_name: Some("I2".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    publish(&js, "in.a", "kept").await.unwrap();
    for c in [&c1, &c2] {
        assert_eq!(it.info().await.unwrap().state.messages, 1);
        let mut b = c.fetch().max_messages(1).messages().await.unwrap();
        b.next().await.unwrap().unwrap().double_ack().await.unwrap();
    }
    // Both acknowledged: gone.
    assert_eq!(it.info().await.unwrap().state.messages, 0);
}

#[tokio::test]
async fn max_deliver_backoff_and_nak() {
    let dir = TempDir::new("redeliver");
    let s = js_server(&dir).await;
    let js = jetstream::new(async_nats::connect(s.url()).await.unwrap());
    let st = stream_with(
        &js,
        stream::Config {
            name: "RD".into(),
            subjects: vec!["rd".into()],
            ..Default::default()
        },
    )
    .await;
    publish(&js, "rd", "m").await.unwrap();
    let c = st
        .create_consumer(consumer::pull::Config {
            durable_name: Some("R".into()),
            max_deliver: 3,
            backoff: vec![Duration::from_millis(100), Duration::from_millis(200)],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    let mut msgs = c.messages().await.unwrap();
    // Never acked: delivered three times (backoff 100 ms, then 200 ms), then given up.
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(1200), msgs.next()).await {
        let m = m.unwrap();
        deliveries.push(m.info().unwrap().delivered);
    }
    assert_eq!(deliveries, vec![1, 2, 3]);
    // NAK: redelivered at once; NAK with delay: after the delay.
    publish(&js, "rd", "n").await.unwrap();
    let m = msgs.next().await.unwrap().unwrap();
    assert_eq!(&m.payload[..], b"n");
    m.ack_with(jetstream::AckKind::Nak(None)).await.unwrap();
    let m = msgs.next().await.unwrap().unwrap();
    assert_eq!(m.info().unwrap().delivered, 2);
    // NAK with a delay: held back (a plain NAK came back at once above), then redelivered.
    m.ack_with(jetstream::AckKind::Nak(Some(Duration::from_secs(60))))
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), msgs.next())
            .await
            .is_err(),
        "a delayed NAK is not redelivered at once"
    );
    m.ack_with(jetstream::AckKind::Nak(Some(Duration::from_millis(50))))
        .await
        .unwrap();
    let m = msgs.next().await.unwrap().unwrap();
    assert_eq!(m.info().unwrap().delivered, 3);
    m.ack_with(jetstream::AckKind::Term).await.unwrap();
}

#[tokio::test]
async fn subject_transform_and_republish() {
    let dir = TempDir::new("transform");
    let s = js_server(&dir).await;
    let nc = async_nats::connect(s.url()).await.unwrap();
    let js = jetstream::new(nc.clone());
    let mut repub = nc.subscribe("repub.>").await.unwrap();
    let cfg = stream::Config {
        name: "T".into(),
        subjects: vec!["in.*.*".into()],
        subject_transform: Some(stream::SubjectTransform {
            source: "in.*.*".into(),
            destination: "stored.{{wildcard(2)}}.$1".into(),
        }),
        republish: Some(stream::Republish {
            source: "stored.>".into(),
            destination: "repub.>".into(),
            headers_only: false,
        }),
        storage: stream::StorageType::Memory,
        ..Default::default()
    };
    let st = js.create_stream(cfg).await.unwrap();
    publish(&js, "in.a.b", "first").await.unwrap();
    publish(&js, "in.a.b", "second").await.unwrap();
    let m = st.get_raw_message(1).await.unwrap();
    assert_eq!(m.subject.as_str(), "stored.b.a");
    let r = repub.next().await.unwrap();
    assert_eq!(r.subject.as_str(), "repub.b.a");
    let h = r.headers.unwrap();
    assert_eq!(h.get("Nats-Stream").unwrap().as_str(), "T");
    assert_eq!(h.get("Nats-Sequence").unwrap().as_str(), "1");
    assert_eq!(h.get("Nats-Last-Sequence").unwrap().as_str(), "0");
    let r = repub.next().await.unwrap();
    assert_eq!(&r.payload[..], b"second");
    assert_eq!(
        r.headers
            .unwrap()
            .get("Nats-Last-Sequence")
            .unwrap()
            .as_str(),
        "1"
    );
    // A republish destination inside the stream's subjects would loop: refused.
    let bad = stream::Config {
        name: "LOOP".into(),
        subjects: vec!["loop.>".into()],
        republish: Some(stream::Republish {
            source: ">".into(),
            destination: "loop.x.>".into(),
            headers_only: false,
        }),
        ..Default::default()
    };
    assert!(js.create_stream(bad).await.is_err());
}

#[tokio::test]
async fn replay_original_pause_and_flow_control() {
    let dir = TempDir::new("replay");
    let s = js_server(&dir).await;
    let nc = async_nats::connect(s.url()).await.unwrap();
    let js = jetstream::new(nc.clone());
    let st = stream_with(
        &js,
        stream::Config {
            name: "RP".into(),
            subjects: vec!["rp".into()],
            ..Default::default()
        },
    )
    .await;
    publish(&js, "rp", "a").await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    publish(&js, "rp", "b").await.unwrap();
    // Replay original keeps the 400 ms gap; instant replay does not.
    let c = st
        .create_consumer(consumer::pull::Config {
            replay_policy: consumer::ReplayPolicy::Original,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = c.messages().await.unwrap();
    msgs.next().await.unwrap().unwrap().ack().await.unwrap();
    let t = std::time::Instant::now();
    msgs.next().await.unwrap().unwrap().ack().await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );

    // Paused consumers deliver nothing until resumed.
    let mut p = st
        .create_consumer(consumer::pull::Config {
            durable_name: Some("PZ".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let until = time::OffsetDateTime::now_utc() + time::Duration::seconds(60);
    let r = st.pause_consumer("PZ", until).await.unwrap();
    assert!(r.paused);
    assert!(p.info().await.unwrap().paused);
    let mut b = p
        .fetch()
        .max_messages(1)
        .expires(Duration::from_millis(300))
        .messages()
        .await
        .unwrap();
    assert!(b.next().await.is_none());
    st.resume_consumer("PZ").await.unwrap();
    let mut b = p.fetch().max_messages(1).messages().await.unwrap();
    assert_eq!(&b.next().await.unwrap().unwrap().payload[..], b"a");

    // Flow control: a push consumer waits for each flow-control answer; the ordered consumer
    // answers them, so a stream larger than many windows arrives whole.
    let big = stream_with(
        &js,
        stream::Config {
            name: "FC".into(),
            subjects: vec!["fc".into()],
            ..Default::default()
        },
    )
    .await;
    let chunk = vec![7u8; 64 * 1024];
    for _ in 0..40 {
        js.publish("fc", chunk.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let oc = big
        .create_consumer(consumer::push::OrderedConfig {
            deliver_subject: nc.new_inbox(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = oc.messages().await.unwrap();
    for _ in 0..40 {
        let m = tokio::time::timeout(Duration::from_secs(5), msgs.next())
            .await
            .expect("flow control released")
            .unwrap()
            .unwrap();
        assert_eq!(m.payload.len(), chunk.len());
    }
}

#[tokio::test]
async fn healthz_reports_streams_that_cannot_be_recovered() {
    let dir = TempDir::new("health");
    // A stream directory whose metadata is unreadable.
    let bad = dir.path().join("jetstream/$G/streams/BROKEN");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("meta.inf"), b"{not json").unwrap();
    let d = dir.path().to_path_buf();
    let s = TestServer::start_with(move |o| {
        o.http_port = -1;
        o.jetstream = Some(JetStreamOptions {
            store_dir: d,
            ..Default::default()
        })
    })
    .await;
    let r = http::get(&s.http(), "/healthz").await;
    assert_eq!(r.status, 503);
    let v = r.json();
    assert_eq!(v["status"], "unavailable");
    assert!(v["error"].as_str().unwrap().contains("BROKEN"), "{v}");
    // Core NATS keeps working.
    let nc = async_nats::connect(s.url()).await.unwrap();
    nc.publish("x", "y".into()).await.unwrap();
    nc.flush().await.unwrap();
}

#[tokio::test]
async fn account_limits_from_config() {
    let dir = TempDir::new("acclimits");
    let conf = format!(
        r#"
        listen: "127.0.0.1:-1"
        jetstream {{ store_dir: "{}" }}
        accounts {{
            A: {{ jetstream: {{ max_streams: 1, max_consumers: 1, max_mem: 1KB }}, users: [{{user: a, password: a}}] }}
            B: {{ users: [{{user: b, password: b}}] }}
        }}
        "#,
        dir.path().display()
    );
    let s = conf::start_conf(&conf, false).await;
    let a = jetstream::new(
        async_nats::ConnectOptions::with_user_and_password("a".into(), "a".into())
            .connect(s.url())
            .await
            .unwrap(),
    );
    let info = a.query_account().await.unwrap();
    assert_eq!(info.limits.max_streams, Some(1));
    let st = stream_with(
        &a,
        stream::Config {
            name: "ONE".into(),
            subjects: vec!["one".into()],
            storage: stream::StorageType::Memory,
            ..Default::default()
        },
    )
    .await;
    let err = a
        .create_stream(stream::Config {
            name: "TWO".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("maximum number of streams reached"),
        "{err}"
    );
    st.create_consumer(consumer::pull::Config::default())
        .await
        .unwrap();
    let err = st
        .create_consumer(consumer::pull::Config::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("maximum consumers limit reached"),
        "{err}"
    );
    // Memory limit of the account: 1 KiB.
    publish(&a, "one", &"x".repeat(600)).await.unwrap();
    let err = publish(&a, "one", &"x".repeat(600)).await.unwrap_err();
    assert!(
        err.contains("resource limits exceeded for account"),
        "{err}"
    );
    // Account B has no JetStream: the API has no responders.
    let b = jetstream::new(
        async_nats::ConnectOptions::with_user_and_password("b".into(), "b".into())
            .connect(s.url())
            .await
            .unwrap(),
    );
    assert!(b.query_account().await.is_err());
}

#[tokio::test]
async fn domain_api_prefix() {
    let dir = TempDir::new("domain");
    let d = dir.path().to_path_buf();
    let s = TestServer::start_with(move |o| {
        o.jetstream = Some(JetStreamOptions {
            store_dir: d,
            domain: Some("hub".into()),
            ..Default::default()
        })
    })
    .await;
    let nc = async_nats::connect(s.url()).await.unwrap();
    // A client that names the domain uses $JS.hub.API.
    let js = jetstream::with_domain(nc.clone(), "hub");
    js.create_stream(stream::Config {
        name: "D".into(),
        subjects: vec!["d".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let ack = js.publish("d", "x".into()).await.unwrap().await.unwrap();
    assert_eq!(ack.domain, "hub");
    // The plain prefix sees the same stream.
    let mut st = jetstream::new(nc).get_stream("D").await.unwrap();
    assert_eq!(st.info().await.unwrap().state.messages, 1);
}
