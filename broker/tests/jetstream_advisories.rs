//! JetStream advisories and the ack metric against the reference nats-server: the same
//! actions, the same `$JS.EVENT.*` subjects, types and fields (ids, times and the API audit
//! aside).

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream, AckKind};
use common::{RefServer, TestServer};
use futures::StreamExt as _;
use natrix_broker::options::JetStreamOptions;
use serde_json::Value;

async fn scenario(url: &str) -> Vec<Value> {
    let nc = async_nats::connect(url).await.unwrap();
    let mut events = nc.subscribe("$JS.EVENT.>").await.unwrap();
    common::sync(&nc).await;
    let js = jetstream::new(nc.clone());
    let mut cfg = stream::Config {
        name: "S".into(),
        subjects: vec!["s".into()],
        ..Default::default()
    };
    let st = js.create_stream(cfg.clone()).await.unwrap();
    cfg.max_messages = 100;
    js.update_stream(cfg).await.unwrap();
    let once = st
        .create_consumer(consumer::pull::Config {
            durable_name: Some("ONCE".into()),
            max_deliver: 1,
            ack_wait: Duration::from_millis(300),
            ..Default::default()
        })
        .await
        .unwrap();
    js.publish("s", "m1".into()).await.unwrap().await.unwrap();
    let mut b = once.fetch().max_messages(1).messages().await.unwrap();
    let _never_acked = b.next().await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let c = st
        .create_consumer(consumer::pull::Config {
            durable_name: Some("C".into()),
            sample_frequency: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    js.publish("s", "m2".into()).await.unwrap().await.unwrap();
    let mut msgs = c.messages().await.unwrap();
    let m = msgs.next().await.unwrap().unwrap();
    m.ack_with(AckKind::Nak(None)).await.unwrap();
    let m = msgs.next().await.unwrap().unwrap();
    m.double_ack().await.unwrap();
    let m = msgs.next().await.unwrap().unwrap();
    m.ack_with(AckKind::Term).await.unwrap();
    drop(msgs);
    common::sync(&nc).await;
    js.delete_consumer_from_stream("C", "S").await.unwrap();
    js.delete_stream("S").await.unwrap();
    common::sync(&nc).await;
    let mut out = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), events.next()).await {
        if e.subject.as_str() == "$JS.EVENT.ADVISORY.API" {
            continue;
        }
        let v: Value = serde_json::from_slice(&e.payload).unwrap();
        let mut keep = serde_json::json!({"subject": e.subject.as_str()});
        for k in [
            "type",
            "stream",
            "consumer",
            "action",
            "stream_seq",
            "consumer_seq",
            "deliveries",
        ] {
            if let Some(x) = v.get(k) {
                keep[k] = x.clone();
            }
        }
        keep["has_id"] = Value::Bool(v["id"].is_string());
        if v.get("ack_time").is_some() {
            keep["has_ack_time"] = Value::Bool(true);
        }
        out.push(keep);
    }
    out
}

#[tokio::test]
async fn advisories_match_reference() {
    let dir = std::env::temp_dir().join(format!("natrix-adv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let reference = RefServer::start(None, &["-js", "-sd", dir.join("ref").to_str().unwrap()]);
    let d = dir.join("ours");
    let ours = TestServer::start_with(move |o| {
        o.jetstream = Some(JetStreamOptions {
            store_dir: d,
            ..Default::default()
        })
    })
    .await;
    let want = scenario(&format!("nats://{}", reference.addr)).await;
    let got = scenario(&ours.url()).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        serde_json::to_string_pretty(&got).unwrap(),
        serde_json::to_string_pretty(&want).unwrap()
    );
    assert!(want.len() >= 8, "{want:?}");
}
