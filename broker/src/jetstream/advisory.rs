//! JetStream advisories and metrics (`$JS.EVENT.ADVISORY.*`, `$JS.EVENT.METRIC.*`), published
//! in the stream's account with nats-server's `type` strings and fields.

use serde_json::{json, Value};

use super::time::rfc3339_nanos;
use crate::accounts::Account;
use crate::clock::unix_nanos;
use crate::protocol::Msg;
use crate::server::internal::InternalSender;
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
    if !account.has_interest(subject) && crate::cluster::Cluster::of(server).is_none() {
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
    sender.send(server, account, Msg::new(subject, v.to_string().as_bytes()));
}

/// The subject of the JetStream API audit advisory.
pub const API_AUDIT: &str = "$JS.EVENT.ADVISORY.API";

/// What the API audit says about a request besides the response: who asked, on which
/// subject, with what body.
#[derive(Debug, Clone)]
pub struct Audit {
    pub client: Value,
    pub subject: String,
    pub request: bytes::Bytes,
    pub domain: Option<String>,
}

impl Audit {
    /// The audit record for a request from connection `cid` (0 or gone: only the account
    /// is known), or `None` when nobody listens to `$JS.EVENT.ADVISORY.API`.
    pub fn new(
        server: &Server,
        account: &Account,
        cid: u64,
        subject: &str,
        request: &bytes::Bytes,
        domain: Option<&String>,
    ) -> Option<Box<Audit>> {
        if !account.has_interest(API_AUDIT) && crate::cluster::Cluster::of(server).is_none() {
            return None;
        }
        let client = match server.client(cid) {
            Some(c) => c.event_info(server),
            None => json!({"acc": account.name, "server": server.server_name}),
        };
        Some(Box::new(Audit {
            client,
            subject: subject.to_string(),
            request: request.clone(),
            domain: domain.cloned(),
        }))
    }
}

/// `$JS.EVENT.ADVISORY.API` (`api_audit`): a request and the response it got.
pub fn api_audit(
    server: &Server,
    account: &Account,
    sender: &mut InternalSender,
    audit: &Audit,
    response: &str,
) {
    let mut body = json!({
        "server": server.server_name,
        "client": audit.client,
        "subject": audit.subject,
        "response": response,
    });
    if !audit.request.is_empty() {
        body["request"] = json!(String::from_utf8_lossy(&audit.request));
    }
    if let Some(d) = &audit.domain {
        body["domain"] = json!(d);
    }
    publish(
        server,
        account,
        sender,
        API_AUDIT,
        "io.nats.jetstream.advisory.v1.api_audit",
        body,
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
