//! JetStream from an async-nats client, as plain requests: the API, publishing to a stream
//! (its answer as JSON, or asserted to be an ack), and reading a stored message back.
//! Publishing over the raw protocol stays with the raw clients (`common::Raw`,
//! jetstream_differential.rs's `Conn`).

use async_nats::HeaderMap;
use bytes::Bytes;
use serde_json::Value;

/// A JetStream API request; the JSON answer.
pub async fn api(nc: &async_nats::Client, subject: &str, body: Value) -> Value {
    let m = nc
        .request(subject.to_string(), body.to_string().into())
        .await
        .unwrap_or_else(|e| panic!("{subject}: {e}"));
    serde_json::from_slice(&m.payload).unwrap()
}

/// Publishes `body` with `hdrs` as a request; the answer parsed as JSON (`""` when it is
/// empty, as an atomic batch's staged messages are answered).
pub async fn publish(
    nc: &async_nats::Client,
    subject: &str,
    hdrs: &[(&str, &str)],
    body: &str,
) -> Value {
    let m = nc
        .request_with_headers(subject.to_string(), headers(hdrs), body.to_string().into())
        .await
        .unwrap();
    if m.payload.is_empty() {
        return Value::String(String::new());
    }
    serde_json::from_slice(&m.payload).unwrap()
}

/// Publishes `data` as a request, with `hdrs` when given (else a plain message), and asserts
/// the stream acknowledged it with a sequence; the ack.
pub async fn publish_acked(
    nc: &async_nats::Client,
    subject: &str,
    hdrs: Option<HeaderMap>,
    data: Bytes,
) -> Value {
    let m = match hdrs {
        Some(h) => nc
            .request_with_headers(subject.to_string(), h, data)
            .await
            .unwrap(),
        None => nc.request(subject.to_string(), data).await.unwrap(),
    };
    let v: Value = serde_json::from_slice(&m.payload).unwrap();
    assert!(v["seq"].as_u64().is_some(), "publish ack: {v}");
    v
}

/// A header map of `pairs`, in order.
pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, *v);
    }
    h
}

/// The message at `seq` (or `last_by_subj`, with `by`) of `stream`: `{seq, subject, data,
/// hdrs}` with the headers decoded and sorted (clients do not keep the order they were set
/// in); the API error when there is none.
pub async fn stored(nc: &async_nats::Client, stream: &str, by: Value) -> Value {
    let v = api(nc, &format!("$JS.API.STREAM.MSG.GET.{stream}"), by).await;
    let Some(m) = v.get("message") else {
        return v["error"].clone();
    };
    let text = |k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .map(|s| {
                String::from_utf8(data_encoding::BASE64.decode(s.as_bytes()).unwrap()).unwrap()
            })
            .unwrap_or_default()
    };
    let mut hdrs: Vec<String> = text("hdrs")
        .split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    hdrs.sort();
    serde_json::json!({"seq": m["seq"], "subject": m["subject"], "data": text("data"), "hdrs": hdrs})
}
