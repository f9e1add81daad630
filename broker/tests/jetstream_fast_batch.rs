//! Fast batch publishing (`allow_batched`, nats-server 2.14) against the reference: the same
//! `$FI` reply subjects on both servers, the same flow acks, gaps, errors and commits, and
//! the same messages stored.

mod common;

use std::time::Duration;

use common::{js::api, jsdiff::on_both};
use futures::StreamExt;
use serde_json::{json, Value};

/// One message of a batch: its batch sequence, its op, and a header to send with it.
type Frame<'a> = (u64, u8, Option<(&'a str, &'a str)>);

/// Sends the frames `(batch seq, op)` of batch `id` to `subject`, each with its `$FI` reply,
/// and returns every answer (in order) until the server goes quiet.
async fn batch(
    nc: &async_nats::Client,
    subject: &str,
    id: &str,
    flow: u32,
    gap: &str,
    frames: &[Frame<'_>],
) -> Value {
    let mut sub = nc.subscribe(format!("fb.{id}.>")).await.unwrap();
    for (seq, op, header) in frames {
        let reply = format!("fb.{id}.{id}.{flow}.{gap}.{seq}.{op}.$FI");
        match header {
            Some((k, v)) => {
                let mut h = async_nats::HeaderMap::new();
                h.insert(*k, *v);
                nc.publish_with_reply_and_headers(
                    subject.to_string(),
                    reply,
                    h,
                    format!("m{seq}").into(),
                )
                .await
                .unwrap();
            }
            None => nc
                .publish_with_reply(subject.to_string(), reply, format!("m{seq}").into())
                .await
                .unwrap(),
        }
    }
    nc.flush().await.unwrap();
    let mut got = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(700), sub.next()).await {
        got.push(serde_json::from_slice::<Value>(&m.payload).unwrap_or(json!("not json")));
    }
    json!(got)
}

#[tokio::test]
async fn fast_batches_match_reference() {
    on_both("fast-batch", |nc| async move {
        let mut out = Vec::new();
        let v = api(
            &nc,
            "$JS.API.STREAM.CREATE.FB",
            json!({"name": "FB", "subjects": ["fb.>"], "allow_batched": true}),
        )
        .await;
        out.push((
            "required level".into(),
            v["config"]["metadata"]["_nats.req.level"].clone(),
        ));
        let v = api(
            &nc,
            "$JS.API.STREAM.CREATE.M",
            json!({"name": "M", "mirror": {"name": "FB"}, "allow_batched": true}),
        )
        .await;
        out.push(("mirror with batches".into(), v["error"].clone()));
        api(
            &nc,
            "$JS.API.STREAM.CREATE.NB",
            json!({"name": "NB", "subjects": ["nb.>"]}),
        )
        .await;

        // Flow acks every `flow` messages, then the commit's pub ack.
        let mut frames = vec![(1, 0, None)];
        frames.extend((2..7).map(|s| (s, 1, None)));
        frames.push((7, 2, None));
        out.push((
            "flow 3".into(),
            batch(&nc, "fb.a", "b1", 3, "fail", &frames).await,
        ));
        // A gap in fail mode ends the batch with what came before it.
        let frames = [(1, 0, None), (2, 1, None), (4, 1, None)];
        out.push((
            "gap, fail".into(),
            batch(&nc, "fb.b", "b2", 10, "fail", &frames).await,
        ));
        out.push((
            "after the failed batch".into(),
            batch(&nc, "fb.b", "b2", 10, "fail", &[(5, 1, None)]).await,
        ));
        // In ok mode the batch goes on.
        let frames = [(1, 0, None), (2, 1, None), (4, 1, None), (5, 2, None)];
        out.push((
            "gap, ok".into(),
            batch(&nc, "fb.c", "b3", 10, "ok", &frames).await,
        ));
        // End of batch: the marker is not stored.
        let frames = [(1, 0, None), (2, 1, None), (3, 3, None)];
        out.push((
            "end of batch".into(),
            batch(&nc, "fb.d", "b4", 10, "fail", &frames).await,
        ));
        // Pings: the last flow ack again, then a gap they reveal.
        let frames = [(1, 0, None), (2, 1, None), (2, 4, None), (5, 4, None)];
        out.push((
            "pings".into(),
            batch(&nc, "fb.e", "b5", 10, "fail", &frames).await,
        ));
        // A message the stream refuses, in fail mode.
        let frames = [
            (1, 0, None),
            (2, 1, Some(("Nats-Expected-Last-Sequence", "1"))),
            (3, 2, None),
        ];
        out.push((
            "refused message".into(),
            batch(&nc, "fb.f", "b6", 10, "fail", &frames).await,
        ));
        // Refusals.
        out.push((
            "not allowed".into(),
            batch(&nc, "nb.a", "b7", 10, "fail", &[(1, 0, None)]).await,
        ));
        out.push((
            "bad gap mode".into(),
            batch(&nc, "fb.g", "b8", 10, "maybe", &[(1, 0, None)]).await,
        ));
        out.push((
            "start after one".into(),
            batch(&nc, "fb.g", "b9", 10, "fail", &[(2, 0, None)]).await,
        ));
        out.push((
            "unknown batch".into(),
            batch(&nc, "fb.g", "b10", 10, "fail", &[(2, 1, None)]).await,
        ));
        let long = "x".repeat(65);
        out.push((
            "long id".into(),
            batch(&nc, "fb.g", &long, 10, "fail", &[(1, 0, None)]).await,
        ));
        let v = api(
            &nc,
            "$JS.API.STREAM.INFO.FB",
            json!({"subjects_filter": ">"}),
        )
        .await;
        out.push((
            "stored".into(),
            json!([v["state"]["messages"], v["state"]["subjects"]]),
        ));
        out
    })
    .await;
}
