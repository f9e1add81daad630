//! Counter streams (`allow_msg_counter`) against the reference nats-server: the same config
//! checks, acks with the running total (beyond 64 bits), the same refusals, the stored
//! message, and totals aggregated from sourced counter streams.

mod common;

use std::time::{Duration, Instant};

use common::{
    js::{api, publish, stored},
    jsdiff::{find, on_both},
};
use serde_json::{json, Value};

/// Only what a create/update answer decides: the error, or the counter setting kept.
fn outcome(v: &Value) -> Value {
    match v.get("error") {
        Some(e) => e.clone(),
        None => json!({"allow_msg_counter": v["config"]["allow_msg_counter"]}),
    }
}

/// The last message on `subject`: its body and headers, decoded.
async fn last(nc: &async_nats::Client, stream: &str, subject: &str) -> Value {
    let v = stored(nc, stream, json!({ "last_by_subj": subject })).await;
    if v.get("seq").is_none() {
        return v;
    }
    json!({ "seq": v["seq"], "data": v["data"], "hdrs": v["hdrs"] })
}

async fn scenario(nc: &async_nats::Client) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let create = |name: &str, extra: Value| {
        let mut cfg = json!({"name": name, "subjects": [format!("{}.>", name.to_lowercase())]});
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        cfg
    };
    // Configurations counters refuse, and the one they take.
    for (label, name, extra) in [
        (
            "discard new",
            "BAD1",
            json!({"allow_msg_counter": true, "discard": "new"}),
        ),
        (
            "with message TTLs",
            "BAD2",
            json!({"allow_msg_counter": true, "allow_msg_ttl": true}),
        ),
        (
            "workqueue",
            "BAD3",
            json!({"allow_msg_counter": true, "retention": "workqueue"}),
        ),
        ("counter", "CNT", json!({"allow_msg_counter": true})),
        ("plain", "PLAIN", json!({})),
    ] {
        let v = api(
            nc,
            &format!("$JS.API.STREAM.CREATE.{name}"),
            create(name, extra),
        )
        .await;
        out.push((format!("create {label}"), outcome(&v)));
    }
    let v = api(
        nc,
        "$JS.API.STREAM.CREATE.MIR",
        json!({"name": "MIR", "mirror": {"name": "CNT"}, "allow_msg_counter": true}),
    )
    .await;
    out.push(("create mirror counter".into(), outcome(&v)));
    let v = api(nc, "$JS.API.STREAM.UPDATE.CNT", create("CNT", json!({}))).await;
    out.push(("update turns counting off".into(), outcome(&v)));

    // Increments, beyond 64 bits and back.
    for (i, incr) in [
        "5",
        "+10",
        "-2",
        "18446744073709551615",
        "-18446744073709551600",
        "0",
    ]
    .into_iter()
    .enumerate()
    {
        let v = publish(nc, "cnt.a", &[("Nats-Incr", incr)], "").await;
        out.push((format!("incr {i} {incr}"), v));
    }
    // The same message id twice: the second is a duplicate and adds nothing.
    for label in ["incr with msg id", "duplicate incr"] {
        let v = publish(
            nc,
            "cnt.b",
            &[("Nats-Incr", "7"), ("Nats-Msg-Id", "m1")],
            "",
        )
        .await;
        out.push((label.into(), v));
    }
    out.push(("stored a".into(), last(nc, "CNT", "cnt.a").await));
    out.push(("stored b".into(), last(nc, "CNT", "cnt.b").await));

    // Refusals.
    for (label, subject, hdrs, body) in [
        ("no increment", "cnt.a", vec![], ""),
        ("not a number", "cnt.a", vec![("Nats-Incr", "1.5")], ""),
        ("hex", "cnt.a", vec![("Nats-Incr", "0x10")], ""),
        ("with a payload", "cnt.a", vec![("Nats-Incr", "1")], "x"),
        (
            "with a rollup",
            "cnt.a",
            vec![("Nats-Incr", "1"), ("Nats-Rollup", "sub")],
            "",
        ),
        (
            "with an expected last sequence",
            "cnt.a",
            vec![("Nats-Incr", "1"), ("Nats-Expected-Last-Sequence", "8")],
            "",
        ),
        (
            "with an expected stream",
            "cnt.a",
            vec![("Nats-Incr", "1"), ("Nats-Expected-Stream", "CNT")],
            "",
        ),
        ("on a plain stream", "plain.a", vec![("Nats-Incr", "1")], ""),
        (
            "bad increment on a plain stream",
            "plain.a",
            vec![("Nats-Incr", "x")],
            "",
        ),
    ] {
        let v = publish(nc, subject, &hdrs, body).await;
        out.push((format!("refused: {label}"), v));
    }
    out.push(("a unchanged".into(), last(nc, "CNT", "cnt.a").await));

    // Sourced counters add up: the aggregate keeps each origin's last total.
    for name in ["CA", "CB"] {
        let v = api(
            nc,
            &format!("$JS.API.STREAM.CREATE.{name}"),
            create(name, json!({"allow_msg_counter": true})),
        )
        .await;
        assert!(v.get("error").is_none(), "{v}");
    }
    publish(nc, "ca.x", &[("Nats-Incr", "3")], "").await;
    publish(nc, "cb.x", &[("Nats-Incr", "4")], "").await;
    let v = api(
        nc,
        "$JS.API.STREAM.CREATE.AGG",
        json!({
            "name": "AGG",
            "allow_msg_counter": true,
            "sources": [
                {"name": "CA", "subject_transforms": [{"src": "ca.>", "dest": "agg.>"}]},
                {"name": "CB", "subject_transforms": [{"src": "cb.>", "dest": "agg.>"}]}
            ]
        }),
    )
    .await;
    out.push(("create aggregate".into(), outcome(&v)));
    publish(nc, "ca.x", &[("Nats-Incr", "10")], "").await;
    publish(nc, "cb.x", &[("Nats-Incr", "-1")], "").await;
    // (3 + 10) + (4 - 1) once all four sourced messages are in.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut agg = Value::Null;
    while Instant::now() < deadline {
        agg = last(nc, "AGG", "agg.x").await;
        if agg["seq"] == json!(4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The sources header's order follows arrival; compare the parsed totals.
    let data = agg["data"].clone();
    let sources: Value = agg["hdrs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h.as_str()?.strip_prefix("Nats-Counter-Sources: "))
        .map(|v| serde_json::from_str(v).unwrap())
        .next()
        .unwrap_or(Value::Null);
    out.push((
        "aggregate total".into(),
        json!({"data": data, "sources": sources}),
    ));
    out
}

#[tokio::test]
async fn counters_match_reference() {
    let want = on_both("counters", |nc| async move { scenario(&nc).await }).await;
    // The scenario really counted: 5 + 10 - 2 + (2^64 - 1) - (2^64 - 16) + 0 = 28.
    assert_eq!(find(&want, "stored a")["data"], json!(r#"{"val":"28"}"#));
}
