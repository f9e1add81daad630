//! Batched `DIRECT.GET` (`batch`, `max_bytes`, `next_by_subj`, `multi_last`, `up_to_seq`):
//! the same messages, headers and end-of-batch statuses as the reference nats-server.

mod common;

use std::time::Duration;

use common::{proc, tempdir::TempDir};
use futures::StreamExt;
use serde_json::{json, Value};

/// One reply as comparable data: status, description, headers (the timestamp left out),
/// payload.
fn shape(m: &async_nats::Message) -> Value {
    let mut hdrs: Vec<(String, String)> = m
        .headers
        .iter()
        .flat_map(|h| h.iter())
        .filter(|(k, _)| k.to_string() != "Nats-Time-Stamp")
        .flat_map(|(k, vs)| {
            vs.iter()
                .map(|v| (k.to_string(), v.as_str().to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    hdrs.sort();
    json!({
        "status": m.status.map(|s| s.as_u16()),
        "description": m.description,
        "headers": hdrs,
        "payload": String::from_utf8_lossy(&m.payload),
    })
}

/// Sends one batched request and collects replies until an EOB or an error status.
async fn batch(nc: &async_nats::Client, body: Value) -> Vec<Value> {
    let inbox = nc.new_inbox();
    let mut sub = nc.subscribe(inbox.clone()).await.unwrap();
    nc.publish_with_reply("$JS.API.DIRECT.GET.D", inbox, body.to_string().into())
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
        let done = m.status.is_some();
        out.push(shape(&m));
        if done {
            break;
        }
    }
    out
}

#[tokio::test]
async fn direct_batches_match_reference() {
    let mut results = Vec::new();
    for reference in [true, false] {
        let dir = TempDir::new("dbatch");
        let (p, url) = proc::jetstream(reference, dir.path());
        let nc = async_nats::connect(&url).await.unwrap();
        let cfg = json!({"name": "D", "subjects": ["d.>"], "allow_direct": true});
        nc.request("$JS.API.STREAM.CREATE.D", cfg.to_string().into())
            .await
            .unwrap();
        for (i, s) in ["d.a", "d.b", "d.a", "d.c", "d.b"].iter().enumerate() {
            nc.request(s.to_string(), format!("m{}", i + 1).into())
                .await
                .unwrap();
        }
        let mut seen = Vec::new();
        for body in [
            json!({"seq": 2, "batch": 2}),
            json!({"seq": 1, "batch": 10, "next_by_subj": "d.a"}),
            json!({"multi_last": ["d.>"]}),
            json!({"multi_last": ["d.a", "d.b"], "up_to_seq": 3}),
            json!({"seq": 1, "batch": 3, "max_bytes": 10}),
            json!({"seq": 9, "batch": 2}),
            json!({"multi_last": ["x.>"]}),
        ] {
            seen.push(json!({"request": body, "replies": batch(&nc, body.clone()).await}));
        }
        results.push(seen);
        drop(nc);
        drop(p);
    }
    assert_eq!(
        serde_json::to_string_pretty(&results[1]).unwrap(),
        serde_json::to_string_pretty(&results[0]).unwrap()
    );
    // The first batch: two messages and the EOB.
    assert_eq!(results[1][0]["replies"].as_array().unwrap().len(), 3);
}
