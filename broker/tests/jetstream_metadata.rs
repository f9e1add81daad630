//! nats-server's own `_nats.*` metadata on streams and consumers, against the reference: the
//! stored `_nats.req.level` each configuration needs, a client's `_nats.*` keys replaced, and
//! `_nats.level`/`_nats.ver` shown in create and info answers but not in lists (their values
//! are the server's own: only their presence is compared).

mod common;

use common::{
    js::api,
    jsdiff::{find, on_both},
};
use serde_json::{json, Value};

/// The metadata with the server's level and version reduced to their presence.
fn shape(config: &Value) -> Value {
    let mut m = config["metadata"].clone();
    if let Some(o) = m.as_object_mut() {
        for k in ["_nats.level", "_nats.ver"] {
            if o.contains_key(k) {
                o.insert(k.into(), json!("<server's>"));
            }
        }
    }
    m
}

async fn scenario(nc: &async_nats::Client) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (name, extra) in [
        ("A", json!({})),
        ("T", json!({"allow_msg_ttl": true})),
        ("D", json!({"subject_delete_marker_ttl": 1_000_000_000})),
        ("C", json!({"allow_msg_counter": true})),
        ("B", json!({"allow_atomic": true})),
        ("S", json!({"allow_msg_schedules": true})),
        (
            "M",
            json!({"metadata": {"x": "y", "_nats.req.level": "9", "_nats.other": "z"}}),
        ),
    ] {
        let mut cfg = json!({"name": name, "subjects": [format!("{}.>", name.to_lowercase())]});
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        let v = api(nc, &format!("$JS.API.STREAM.CREATE.{name}"), cfg).await;
        out.push((format!("stream {name}"), shape(&v["config"])));
    }
    for (name, extra) in [
        ("c0", json!({})),
        ("c1", json!({"pause_until": "2099-01-01T00:00:00Z"})),
        (
            "c2",
            json!({"priority_groups": ["g"], "priority_policy": "overflow"}),
        ),
        (
            "c3",
            json!({"priority_groups": ["g"], "priority_policy": "prioritized"}),
        ),
    ] {
        let mut cfg = json!({"durable_name": name});
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        let v = api(
            nc,
            &format!("$JS.API.CONSUMER.CREATE.A.{name}"),
            json!({"stream_name": "A", "config": cfg}),
        )
        .await;
        out.push((format!("consumer {name}"), shape(&v["config"])));
    }
    let v = api(nc, "$JS.API.STREAM.INFO.C", json!({})).await;
    out.push(("stream info".into(), shape(&v["config"])));
    let v = api(nc, "$JS.API.CONSUMER.INFO.A.c1", json!({})).await;
    out.push(("consumer info".into(), shape(&v["config"])));
    let v = api(nc, "$JS.API.STREAM.LIST", json!({})).await;
    let mut listed: Vec<(String, Value)> = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["config"]["name"].as_str().unwrap().to_string(),
                shape(&s["config"]),
            )
        })
        .collect();
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    out.push(("stream list".into(), json!(listed)));
    // An update that sends back what info showed keeps the stored level.
    let mut cfg = api(nc, "$JS.API.STREAM.INFO.T", json!({})).await["config"].clone();
    cfg["description"] = json!("updated");
    let v = api(nc, "$JS.API.STREAM.UPDATE.T", cfg).await;
    out.push(("update with info's metadata".into(), shape(&v["config"])));
    out
}

#[tokio::test]
async fn server_metadata_matches_reference() {
    let want = on_both("metadata", |nc| async move { scenario(&nc).await }).await;
    assert_eq!(find(&want, "stream C")["_nats.req.level"], json!("2"));
}
