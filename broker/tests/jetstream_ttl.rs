//! Per-message TTLs (`allow_msg_ttl`, the `Nats-TTL` header) against the reference
//! nats-server: the same acks and errors, messages gone after their TTL, kept with `never`,
//! and (natrix) TTLs still honoured after a restart.

mod common;

use std::time::{Duration, Instant};

use common::{
    js::{self, api},
    proc,
    tempdir::TempDir,
};
use serde_json::{json, Value};

/// Publishes `x` with `Nats-TTL: ttl` (when given); the stream's answer.
async fn publish(nc: &async_nats::Client, subject: &str, ttl: Option<&str>) -> Value {
    let hdrs: Vec<(&str, &str)> = ttl.map(|t| ("Nats-TTL", t)).into_iter().collect();
    js::publish(nc, subject, &hdrs, "x").await
}

async fn messages(nc: &async_nats::Client, stream: &str) -> u64 {
    api(nc, &format!("$JS.API.STREAM.INFO.{stream}"), json!({})).await["state"]["messages"]
        .as_u64()
        .unwrap()
}

/// Polls until the stream holds `n` messages (bounded), returning whether it got there.
async fn wait_messages(nc: &async_nats::Client, stream: &str, n: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if messages(nc, stream).await == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn message_ttls_match_reference() {
    let mut results = Vec::new();
    for reference in [true, false] {
        let dir = TempDir::new("ttl");
        let (_p, url) = proc::jetstream(reference, dir.path());
        let nc = async_nats::connect(&url).await.unwrap();
        let mut seen = Vec::new();
        let created = api(
            &nc,
            "$JS.API.STREAM.CREATE.T",
            json!({"name": "T", "subjects": ["t.>"], "allow_msg_ttl": true}),
        )
        .await;
        seen.push(json!(created["config"]["allow_msg_ttl"]));
        for ttl in ["1s", "2", "never", "0", "abc", "500ms", "-1", "1h"] {
            let mut ack = publish(&nc, "t.a", Some(ttl)).await;
            if let Value::Object(m) = &mut ack {
                m.remove("domain");
            }
            seen.push(json!({ "ttl": ttl, "ack": ack }));
        }
        api(
            &nc,
            "$JS.API.STREAM.CREATE.U",
            json!({"name": "U", "subjects": ["u.>"]}),
        )
        .await;
        seen.push(publish(&nc, "u.a", Some("1s")).await);
        // Both timed messages go; `never` and the hour stay.
        seen.push(json!(wait_messages(&nc, "T", 2).await));
        let kept = api(&nc, "$JS.API.STREAM.MSG.GET.T", json!({"seq": 3})).await;
        seen.push(json!(kept["message"]["seq"]));
        let gone = api(&nc, "$JS.API.STREAM.MSG.GET.T", json!({"seq": 1})).await;
        seen.push(gone["error"].clone());
        results.push(seen);
        drop(nc);
    }
    assert_eq!(results[0], results[1], "reference vs natrix");
    assert_eq!(results[1][results[1].len() - 3], json!(true));
}

#[tokio::test]
async fn ttls_survive_a_restart() {
    let dir = TempDir::new("ttl-restart");
    let (mut p, url) = proc::jetstream(false, dir.path());
    let nc = async_nats::connect(&url).await.unwrap();
    api(
        &nc,
        "$JS.API.STREAM.CREATE.R",
        json!({"name": "R", "subjects": ["r.>"], "allow_msg_ttl": true}),
    )
    .await;
    publish(&nc, "r.a", Some("2s")).await;
    publish(&nc, "r.b", None).await;
    drop(nc);
    p.stop();
    let (_p, url) = proc::jetstream(false, dir.path());
    let nc = async_nats::connect(&url).await.unwrap();
    assert!(
        wait_messages(&nc, "R", 1).await,
        "the TTL message expires after the restart"
    );
    let kept = api(&nc, "$JS.API.STREAM.MSG.GET.R", json!({"seq": 2})).await;
    assert_eq!(kept["message"]["subject"], "r.b");
}

/// Subject delete markers: the last message of a subject removed by `max_age` or its TTL
/// leaves a marker (reason, TTL, rollup headers, no body) that expires in turn; the
/// configuration rules and errors are nats-server's.
#[tokio::test]
async fn subject_delete_markers_match_reference() {
    let mut results = Vec::new();
    for reference in [true, false] {
        let dir = TempDir::new("markers");
        let (_p, url) = proc::jetstream(reference, dir.path());
        let nc = async_nats::connect(&url).await.unwrap();
        let mut seen = Vec::new();
        let created = api(
            &nc,
            "$JS.API.STREAM.CREATE.V",
            json!({"name": "V", "subjects": ["v.>"], "max_age": 1_500_000_000i64,
                   "subject_delete_marker_ttl": 3_000_000_000i64}),
        )
        .await;
        seen.push(json!([
            created["config"]["allow_msg_ttl"],
            created["config"]["allow_rollup_hdrs"]
        ]));
        publish(&nc, "v.a", None).await;
        publish(&nc, "v.b", None).await;
        publish(&nc, "v.b", None).await;
        publish(&nc, "v.c", Some("1s")).await;
        // Four messages on three subjects go; three markers take their place.
        let deadline = Instant::now() + Duration::from_secs(15);
        let state = loop {
            let s = api(&nc, "$JS.API.STREAM.INFO.V", json!({})).await["state"].clone();
            if s["first_seq"] == 5 && s["messages"] == 3 || Instant::now() > deadline {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        seen.push(json!([
            state["first_seq"],
            state["messages"],
            state["last_seq"]
        ]));
        let mut markers = Vec::new();
        for seq in 5..=7 {
            let m = api(&nc, "$JS.API.STREAM.MSG.GET.V", json!({ "seq": seq })).await;
            let hdrs = m["message"]["hdrs"]
                .as_str()
                .map(|h| {
                    String::from_utf8(data_encoding::BASE64.decode(h.as_bytes()).unwrap()).unwrap()
                })
                .unwrap_or_default();
            markers.push(json!([
                m["message"]["subject"],
                hdrs,
                m["message"].get("data")
            ]));
        }
        markers.sort_by_key(|v| v.to_string());
        seen.push(json!(markers));
        // The markers expire in turn and leave nothing.
        seen.push(json!(wait_messages(&nc, "V", 0).await));
        // Configuration rules.
        for cfg in [
            json!({"name": "Y", "subjects": ["y"], "subject_delete_marker_ttl": 500_000_000i64}),
            json!({"name": "Y", "subjects": ["y"], "subject_delete_marker_ttl": -5}),
            json!({"name": "Y", "mirror": {"name": "V"}, "subject_delete_marker_ttl": 2_000_000_000i64}),
        ] {
            seen.push(api(&nc, "$JS.API.STREAM.CREATE.Y", cfg).await["error"].clone());
        }
        api(
            &nc,
            "$JS.API.STREAM.CREATE.Q",
            json!({"name": "Q", "subjects": ["q"], "allow_msg_ttl": true}),
        )
        .await;
        seen.push(
            api(
                &nc,
                "$JS.API.STREAM.UPDATE.Q",
                json!({"name": "Q", "subjects": ["q"], "allow_msg_ttl": false}),
            )
            .await["error"]
                .clone(),
        );
        results.push(seen);
        drop(nc);
    }
    assert_eq!(results[0], results[1], "reference vs natrix");
    assert_eq!(results[1][1], json!([5, 3, 7]));
}
