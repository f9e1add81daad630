//! JetStream advisories and metrics (`$JS.EVENT.ADVISORY.*`, `$JS.EVENT.METRIC.*`), published
//! in the stream's account with nats-server's `type` strings and fields.

use serde_json::{json, Value};

use super::time::rfc3339_nanos;
use crate::accounts::Account;
use crate::server::client::{unix_nanos, InternalSender};
use crate::server::Server;

/// Publishes `body` (given `type` and the common `id`/`timestamp`) on `subject`, if anyone
/// listens.
pub fn publish(
    server: &Server,
    account: &Account,
    sender: &mut InternalSender,
    subject: &str,
    kind: &str,
    mut body: Value,
) {
    if !account.has_interest(subject) && server.cluster().is_none() {
        return;
    }
    let mut v = json!({
        "type": kind,
        "id": crate::auth::new_nonce(),
        "timestamp": rfc3339_nanos(unix_nanos()),
    });
    if let (Value::Object(m), Value::Object(b)) = (&mut v, &mut body) {
        m.append(b);
    }
    sender.send(
        server,
        account,
        subject.as_bytes(),
        None,
        None,
        v.to_string().as_bytes(),
    );
}

/// `STREAM.CREATED|UPDATED|DELETED.<stream>`.
pub fn stream_action(
    server: &Server,
    account: &Account,
    sender: &mut InternalSender,
    stream: &str,
    action: &str,
) {
    let verb = match action {
        "create" => "CREATED",
        "modify" => "UPDATED",
        _ => "DELETED",
    };
    publish(
        server,
        account,
        sender,
        &format!("$JS.EVENT.ADVISORY.STREAM.{verb}.{stream}"),
        "io.nats.jetstream.advisory.v1.stream_action",
        json!({"stream": stream, "action": action}),
    );
}

/// `CONSUMER.CREATED|DELETED.<stream>.<consumer>`.
pub fn consumer_action(
    server: &Server,
    account: &Account,
    sender: &mut InternalSender,
    stream: &str,
    consumer: &str,
    action: &str,
) {
    let verb = if action == "create" {
        "CREATED"
    } else {
        "DELETED"
    };
    publish(
        server,
        account,
        sender,
        &format!("$JS.EVENT.ADVISORY.CONSUMER.{verb}.{stream}.{consumer}"),
        "io.nats.jetstream.advisory.v1.consumer_action",
        json!({"stream": stream, "consumer": consumer, "action": action}),
    );
}
