//! Atomic batch publishing (`allow_atomic`, `Nats-Batch-Id`) against the reference
//! nats-server: staged replies, the commit's pub ack, all-or-nothing on a failed check, the
//! refusals and limits, what is stored, and sources copying without the batch headers.

mod common;

use std::time::{Duration, Instant};

use common::{
    js::{api, publish, stored},
    jsdiff::{find, on_both},
};
use serde_json::{json, Value};

/// Stream state and each stored message's subject, payload and sorted headers.
async fn contents(nc: &async_nats::Client, stream: &str) -> Value {
    let info = api(nc, &format!("$JS.API.STREAM.INFO.{stream}"), json!({})).await;
    let (first, last) = (
        info["state"]["first_seq"].as_u64().unwrap(),
        info["state"]["last_seq"].as_u64().unwrap(),
    );
    let mut msgs = Vec::new();
    for seq in first..=last {
        let m = stored(nc, stream, json!({ "seq": seq })).await;
        if m.get("seq").is_some() {
            msgs.push(json!([m["seq"], m["subject"], m["data"], m["hdrs"]]));
        }
    }
    json!({"messages": info["state"]["messages"], "last_seq": last, "stored": msgs})
}

async fn scenario(nc: &async_nats::Client) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let b =
        |id: &'static str, seq: &'static str| [("Nats-Batch-Id", id), ("Nats-Batch-Sequence", seq)];
    let v = api(
        nc,
        "$JS.API.STREAM.CREATE.A",
        json!({"name": "A", "subjects": ["a.>"], "allow_atomic": true}),
    )
    .await;
    out.push(("create".into(), v["config"]["allow_atomic"].clone()));
    api(
        nc,
        "$JS.API.STREAM.CREATE.B",
        json!({"name": "B", "subjects": ["b.>"]}),
    )
    .await;
    let v = api(
        nc,
        "$JS.API.STREAM.CREATE.M",
        json!({"name": "M", "mirror": {"name": "A"}, "allow_atomic": true}),
    )
    .await;
    out.push(("mirror refused".into(), v["error"].clone()));

    // A batch of three, committed.
    out.push((
        "first".into(),
        publish(nc, "a.1", &b("b1", "1"), "x1").await,
    ));
    out.push((
        "second".into(),
        publish(nc, "a.2", &b("b1", "2"), "x2").await,
    ));
    let mut commit = b("b1", "3").to_vec();
    commit.push(("Nats-Batch-Commit", "1"));
    out.push(("commit".into(), publish(nc, "a.3", &commit, "x3").await));

    // Refusals.
    let long = "x".repeat(65);
    for (label, subject, hdrs) in [
        (
            "stream without allow_atomic",
            "b.1",
            vec![("Nats-Batch-Id", "p"), ("Nats-Batch-Sequence", "1")],
        ),
        ("no sequence", "a.1", vec![("Nats-Batch-Id", "q")]),
        (
            "id too long",
            "a.1",
            vec![
                ("Nats-Batch-Id", long.as_str()),
                ("Nats-Batch-Sequence", "1"),
            ],
        ),
        (
            "starts at 2",
            "a.1",
            vec![("Nats-Batch-Id", "r"), ("Nats-Batch-Sequence", "2")],
        ),
        (
            "bad commit value",
            "a.1",
            vec![
                ("Nats-Batch-Id", "s"),
                ("Nats-Batch-Sequence", "1"),
                ("Nats-Batch-Commit", "yes"),
            ],
        ),
    ] {
        out.push((
            format!("refused: {label}"),
            publish(nc, subject, &hdrs, "z").await,
        ));
    }
    // A gap abandons the batch: its later messages are refused too.
    out.push(("gap 1".into(), publish(nc, "a.1", &b("g", "1"), "g1").await));
    out.push(("gap 3".into(), publish(nc, "a.1", &b("g", "3"), "g3").await));
    out.push((
        "after the gap".into(),
        publish(nc, "a.1", &b("g", "4"), "g4").await,
    ));

    // A failed check at commit stores nothing of the batch.
    let mut bad = b("e", "1").to_vec();
    bad.push(("Nats-Expected-Last-Sequence", "99"));
    out.push((
        "expectation staged".into(),
        publish(nc, "a.1", &bad, "e1").await,
    ));
    let mut c = b("e", "2").to_vec();
    c.push(("Nats-Batch-Commit", "1"));
    out.push((
        "expectation fails at commit".into(),
        publish(nc, "a.1", &c, "e2").await,
    ));
    let mut d1 = b("d", "1").to_vec();
    d1.push(("Nats-Msg-Id", "same"));
    out.push(("msg id staged".into(), publish(nc, "a.1", &d1, "d1").await));
    let mut d2 = b("d", "2").to_vec();
    d2.extend([("Nats-Msg-Id", "same"), ("Nats-Batch-Commit", "1")]);
    out.push((
        "duplicate msg id".into(),
        publish(nc, "a.1", &d2, "d2").await,
    ));
    // Only a batch's first message may expect a last sequence.
    let mut ok1 = b("k", "1").to_vec();
    ok1.push(("Nats-Expected-Last-Sequence", "3"));
    out.push(("expected 3".into(), publish(nc, "a.4", &ok1, "k1").await));
    let mut ok2 = b("k", "2").to_vec();
    ok2.extend([
        ("Nats-Expected-Last-Sequence", "4"),
        ("Nats-Batch-Commit", "1"),
    ]);
    out.push((
        "expected on a later message".into(),
        publish(nc, "a.5", &ok2, "k2").await,
    ));
    let mut ok3 = b("j", "1").to_vec();
    ok3.extend([
        ("Nats-Expected-Last-Sequence", "3"),
        ("Nats-Batch-Commit", "1"),
    ]);
    out.push((
        "expected on the first commits".into(),
        publish(nc, "a.5", &ok3, "j1").await,
    ));

    // `eob` commits without storing the marker; the previous message carries the commit.
    out.push(("eob 1".into(), publish(nc, "a.6", &b("o", "1"), "o1").await));
    let mut eob = b("o", "2").to_vec();
    eob.push(("Nats-Batch-Commit", "eob"));
    out.push(("eob commit".into(), publish(nc, "a.6", &eob, "").await));
    out.push(("stored".into(), contents(nc, "A").await));

    // Limits: 1000 messages per batch, 50 batches in flight.
    let h = |seq: String| {
        let mut m = async_nats::HeaderMap::new();
        m.insert("Nats-Batch-Id", "big");
        m.insert("Nats-Batch-Sequence", seq.as_str());
        m
    };
    for i in 1..=1001 {
        nc.publish_with_headers("a.big", h(i.to_string()), "b".into())
            .await
            .unwrap();
    }
    let mut last = h("1002".into());
    last.insert("Nats-Batch-Commit", "1");
    let m = nc
        .request_with_headers("a.big", last, "b".into())
        .await
        .unwrap();
    out.push((
        "too large".into(),
        serde_json::from_slice(&m.payload).unwrap(),
    ));
    for i in 0..50 {
        let id = format!("open{i}");
        let mut m = async_nats::HeaderMap::new();
        m.insert("Nats-Batch-Id", id.as_str());
        m.insert("Nats-Batch-Sequence", "1");
        nc.publish_with_headers("a.open", m, "o".into())
            .await
            .unwrap();
    }
    out.push((
        "too many in flight".into(),
        publish(nc, "a.open", &b("one-more", "1"), "o").await,
    ));
    out.push((
        "nothing of them stored".into(),
        contents(nc, "A").await["messages"].clone(),
    ));

    // A source copies committed messages without the batch headers.
    api(
        nc,
        "$JS.API.STREAM.CREATE.S",
        json!({"name": "S", "sources": [{"name": "A"}]}),
    )
    .await;
    let want = contents(nc, "A").await["messages"].clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut copied = Value::Null;
    while Instant::now() < deadline {
        copied = contents(nc, "S").await;
        if copied["messages"] == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Drop Nats-Stream-Source (it names the server) and keep the rest.
    if let Some(list) = copied["stored"].as_array_mut() {
        for m in list {
            if let Some(h) = m[3].as_array_mut() {
                h.retain(|x| !x.as_str().unwrap_or("").starts_with("Nats-Stream-Source"));
            }
        }
    }
    out.push(("sourced copies".into(), copied));
    out
}

#[tokio::test]
async fn atomic_batches_match_reference() {
    let want = on_both("atomic", |nc| async move { scenario(&nc).await }).await;
    assert_eq!(find(&want, "commit")["count"], json!(3));
}
