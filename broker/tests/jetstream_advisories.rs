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
    // A waiting pull (not no-wait): under load the first request must not come back empty.
    let mut b = once
        .batch()
        .max_messages(1)
        .expires(Duration::from_secs(10))
        .messages()
        .await
        .unwrap();
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
    // Until the stream's deletion is announced (the last action; bounded under load), then
    // whatever else is still on its way.
    let mut wait = Duration::from_secs(15);
    while let Ok(Some(e)) = tokio::time::timeout(wait, events.next()).await {
        if e.subject.as_str() == "$JS.EVENT.ADVISORY.STREAM.DELETED.S" {
            wait = Duration::from_millis(500);
        }
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

/// Runs `scenario` against a JetStream-enabled nats-server and natrix; asserts the same
/// observations and returns them.
async fn same_on_both<F, Fut>(tag: &str, scenario: F) -> Vec<Value>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Vec<Value>>,
{
    let dir = std::env::temp_dir().join(format!("natrix-{tag}-{}", std::process::id()));
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
    let mut want = scenario(format!("nats://{}", reference.addr)).await;
    let got = scenario(ours.url()).await;
    if got != want {
        // nats-server itself, under a loaded machine, has once left its last advisory out
        // (STREAM.DELETED never came within 15 s); the reference gets one more run on a
        // fresh server before a difference counts. Natrix gets no second chance.
        let dir2 = dir.join("ref2");
        let again = RefServer::start(None, &["-js", "-sd", dir2.to_str().unwrap()]);
        want = scenario(format!("nats://{}", again.addr)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        serde_json::to_string_pretty(&got).unwrap(),
        serde_json::to_string_pretty(&want).unwrap()
    );
    want
}

#[tokio::test]
async fn advisories_match_reference() {
    let want = same_on_both("adv", |url| async move { scenario(&url).await }).await;
    assert!(want.len() >= 8, "{want:?}");
}

/// What an API audit says, without ids, times and the response's own times.
async fn audit_scenario(url: &str) -> Vec<Value> {
    let nc = async_nats::ConnectOptions::new()
        .name("auditor")
        .connect(url)
        .await
        .unwrap();
    let mut events = nc.subscribe("$JS.EVENT.ADVISORY.API").await.unwrap();
    common::sync(&nc).await;
    let req = |subject: &'static str, body: &'static str| {
        let nc = nc.clone();
        async move {
            nc.request(subject, body.into()).await.unwrap();
        }
    };
    // Answered by the API thread, then by the stream's own thread.
    req(
        "$JS.API.STREAM.CREATE.A",
        r#"{"name":"A","subjects":["a"]}"#,
    )
    .await;
    req("$JS.API.STREAM.INFO.NOPE", "").await;
    req("$JS.API.STREAM.INFO.A", "").await;
    req(
        "$JS.API.CONSUMER.CREATE.A",
        r#"{"stream_name":"A","config":{"durable_name":"D","ack_policy":"explicit"}}"#,
    )
    .await;
    req("$JS.API.STREAM.DELETE.A", "").await;
    let mut out = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), events.next()).await {
        let v: Value = serde_json::from_slice(&e.payload).unwrap();
        let resp: Value = serde_json::from_str(v["response"].as_str().unwrap()).unwrap();
        // `rtt` appears once the server has measured one (it asks on the first event).
        let mut client: Vec<String> = v["client"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "rtt")
            .cloned()
            .collect();
        client.sort();
        out.push(serde_json::json!({
            "type": v["type"],
            "subject": v["subject"],
            "request": v["request"],
            "response_type": resp["type"],
            "response_error": resp["error"],
            "has_id": v["id"].is_string(),
            "has_server": v["server"].is_string(),
            "client_keys": client,
            "client_name": v["client"]["name"],
            "client_acc": v["client"]["acc"],
            "client_kind": v["client"]["kind"],
            "rtt_known": v["client"]["rtt"].as_i64().is_some_and(|r| r > 0),
        }));
    }
    // nats-server publishes some audits after later ones: compare in subject order, and
    // whether a round trip is known only for the last request.
    let last_has_rtt = out
        .iter()
        .find(|e| e["subject"] == "$JS.API.STREAM.DELETE.A")
        .map(|e| e["rtt_known"].clone());
    for e in out.iter_mut() {
        e.as_object_mut().unwrap().remove("rtt_known");
    }
    out.sort_by_key(|e| e["subject"].as_str().unwrap_or_default().to_string());
    out.push(serde_json::json!({ "last_has_rtt": last_has_rtt }));
    out
}

#[tokio::test]
async fn api_audit_matches_reference() {
    let want = same_on_both("audit", |url| async move { audit_scenario(&url).await }).await;
    assert_eq!(want.len(), 6, "{want:?}");
}
