//! The system account's request services: `$SYS.REQ.SERVER.PING` (statsz of every server),
//! `$SYS.REQ.SERVER.PING.<X>` and `$SYS.REQ.SERVER.<id>.<X>` (a monitoring document), and
//! `$SYS.REQ.ACCOUNT.<account>.<X>` (one account's view), answered as nats-server does:
//! `{"server": {...}, "data": {...}}` (`"statsz"` for a plain PING). A request body may
//! carry filters (`server_name`, `cluster`, `host`, `tags`); servers that do not match stay
//! silent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use serde_json::{json, Value};

use crate::monitor::connz::ConnzOptions;
use crate::monitor::subsz::SubszOptions;
use crate::monitor::util::Params;
use crate::protocol::Msg;
use crate::server::client::Client;
use crate::server::internal::InternalSender;
use crate::server::subscription::InternalHandler;
use crate::server::Server;

struct Req {
    subject: String,
    reply: String,
    body: Bytes,
}

/// Subscribes the request services in the system account and starts their thread.
pub fn start(server: &Arc<Server>) -> std::io::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel::<Req>();
    let tx = std::sync::Mutex::new(tx);
    let client = Client::internal(server.next_cid(), server.system_account.clone());
    let handler = InternalHandler(Arc::new(move |m: &Msg<'_>| {
        let (subject, reply, payload) = (m.subject, m.reply, m.payload);
        let Some(reply) = reply else { return };
        let req = Req {
            subject: subject.to_string(),
            reply: String::from_utf8_lossy(reply).into_owned(),
            body: Bytes::copy_from_slice(payload),
        };
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(req);
        }
    }));
    let id = server.server_id.clone();
    for subject in [
        "$SYS.REQ.SERVER.PING".to_string(),
        "$SYS.REQ.SERVER.PING.*".to_string(),
        format!("$SYS.REQ.SERVER.{id}.*"),
        "$SYS.REQ.ACCOUNT.*.*".to_string(),
    ] {
        client.subscribe_internal(server, &server.system_account, &subject, handler.clone());
    }
    let weak: Weak<Server> = Arc::downgrade(server);
    std::thread::Builder::new()
        .name("sys-requests".into())
        .spawn(move || {
            let mut sender = InternalSender::default();
            while let Ok(req) = rx.recv() {
                let Some(server) = weak.upgrade() else { break };
                if let Some(body) = answer(&server, &req) {
                    let sys = server.system_account.clone();
                    sender.send(&server, &sys, Msg::new(&req.reply, body.as_bytes()));
                    sender.flush(&server);
                }
            }
        })?;
    Ok(())
}

/// The `server` object every system answer carries.
pub fn server_info(server: &Server) -> Value {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut v = json!({
        "name": server.server_name,
        "host": server.options().host,
        "id": server.server_id,
        "ver": crate::server::VERSION,
        "jetstream": crate::jetstream::JetStream::of(server).is_some(),
        "flags": 0,
        "seq": SEQ.fetch_add(1, Ordering::Relaxed) + 1,
        "time": crate::log::rfc3339(std::time::SystemTime::now()),
    });
    if let Some(c) = server
        .options()
        .cluster
        .as_ref()
        .and_then(|c| c.name.clone())
    {
        v["cluster"] = json!(c);
    }
    v
}

/// Whether the request's filters select this server.
fn selected(server: &Server, filter: &Value) -> bool {
    let opts = server.options();
    let want = |k: &str| {
        filter
            .get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    };
    if want("server_name").is_some_and(|n| n != server.server_name) {
        return false;
    }
    if want("host").is_some_and(|h| h != opts.host) {
        return false;
    }
    if let Some(c) = want("cluster") {
        if opts.cluster.as_ref().and_then(|x| x.name.as_deref()) != Some(c) {
            return false;
        }
    }
    // No server tags are configured here: a request for tags matches nothing.
    if filter
        .get("tags")
        .and_then(|t| t.as_array())
        .is_some_and(|t| !t.is_empty())
    {
        return false;
    }
    true
}

/// Resident memory in bytes (Linux `/proc/self/statm`).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// `statsz`: the server's counters as nats-server's `ServerStats`.
pub fn statsz(server: &Server) -> Value {
    let s = &server.stats;
    let (in_msgs, in_bytes) = (
        s.in_msgs.load(Ordering::Relaxed),
        s.in_bytes.load(Ordering::Relaxed),
    );
    let (out_msgs, out_bytes) = (
        s.out_msgs.load(Ordering::Relaxed),
        s.out_bytes.load(Ordering::Relaxed),
    );
    let subs: u64 = server
        .accounts()
        .iter()
        .map(|a| a.num_subs.load(Ordering::Relaxed))
        .sum();
    let active_accounts = server
        .accounts()
        .iter()
        .filter(|a| a.num_connections.load(Ordering::Relaxed) > 0)
        .count();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    json!({
        "start": crate::log::rfc3339(server.start),
        "mem": rss(),
        "cores": cores,
        "cpu": 0,
        "connections": server.num_clients(),
        "total_connections": server.total_connections.load(Ordering::Relaxed),
        "active_accounts": active_accounts,
        "subscriptions": subs,
        "sent": {"msgs": out_msgs, "bytes": out_bytes},
        // Only clients are counted here (routes' traffic is not told apart).
        "sent_to_clients": {"msgs": out_msgs, "bytes": out_bytes},
        "received": {"msgs": in_msgs, "bytes": in_bytes},
        "received_from_clients": {"msgs": in_msgs, "bytes": in_bytes},
        "slow_consumers": server.slow_consumers.load(Ordering::Relaxed),
        "active_servers": 1 + crate::cluster::Cluster::of(server).map_or(0, |c| c.num_routes()),
        "gomaxprocs": cores,
    })
}

/// A JSON request body as monitoring query parameters (`subscriptions` → `subs`, ...).
fn params(body: &Value) -> Params {
    let mut p = Vec::new();
    if let Value::Object(m) = body {
        for (k, v) in m {
            let key = match k.as_str() {
                "subscriptions" => "subs",
                "subscriptions_detail" if v.as_bool() == Some(true) => {
                    p.push(("subs".to_string(), "detail".to_string()));
                    continue;
                }
                "account" => "acc",
                other => other,
            };
            let val = match v {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ => continue,
            };
            p.push((key.to_string(), val));
        }
    }
    Params(p)
}

fn data(server: &Server, kind: &str, body: &Value, account: Option<&str>) -> Option<Value> {
    let mut p = params(body);
    if let Some(a) = account {
        p.0.retain(|(k, _)| k != "acc");
        p.0.push(("acc".to_string(), a.to_string()));
    }
    let now = || crate::log::rfc3339(std::time::SystemTime::now());
    Some(match kind {
        "STATSZ" => statsz(server),
        "VARZ" => to_value(&server.varz(Default::default())),
        "CONNZ" => to_value(&server.connz(&ConnzOptions::from_params(&p).ok()?)),
        "SUBSZ" => to_value(&server.subsz(&SubszOptions::from_params(&p).ok()?)),
        "ROUTEZ" => to_value(&crate::monitor::routez_doc(server, false, false)),
        "ACCOUNTZ" => to_value(&server.accountz(p.get("acc"), now()).ok()?),
        "JSZ" => {
            let o = crate::monitor::jsz::JszOptions {
                account: account.map(str::to_string),
                accounts: body
                    .get("accounts")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                streams: body
                    .get("streams")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                consumers: body
                    .get("consumers")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                config: body.get("config").and_then(Value::as_bool).unwrap_or(false),
                ..Default::default()
            };
            crate::monitor::jsz::jsz(server, &o).unwrap_or_else(|| json!({"disabled": true}))
        }
        "HEALTHZ" => match crate::monitor::healthz_error(server) {
            None => json!({"status": "ok", "status_code": 200}),
            Some(e) => json!({"status": "unavailable", "status_code": 503, "error": e}),
        },
        _ => return None,
    })
}

/// A monitoring document as JSON.
fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

fn answer(server: &Server, req: &Req) -> Option<String> {
    let body: Value = if req.body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&req.body).unwrap_or(Value::Null)
    };
    let toks: Vec<&str> = req.subject.split('.').collect();
    let v = match toks.as_slice() {
        ["$SYS", "REQ", "SERVER", "PING"] => {
            if !selected(server, &body) {
                return None;
            }
            json!({"server": server_info(server), "statsz": statsz(server)})
        }
        ["$SYS", "REQ", "SERVER", "PING", kind] => {
            if !selected(server, &body) {
                return None;
            }
            json!({"server": server_info(server), "data": data(server, kind, &body, None)?})
        }
        ["$SYS", "REQ", "SERVER", _id, kind] => {
            json!({"server": server_info(server), "data": data(server, kind, &body, None)?})
        }
        ["$SYS", "REQ", "ACCOUNT", acc, kind] => {
            let kind = if *kind == "INFO" { "ACCOUNTZ" } else { kind };
            json!({"server": server_info(server), "data": data(server, kind, &body, Some(acc))?})
        }
        _ => return None,
    };
    Some(v.to_string())
}

/// Publishes `$SYS.ACCOUNT.<account>.CONNECT` or `.DISCONNECT` for a client connection, as
/// nats-server's `client_connect`/`client_disconnect` advisories (only when someone in the
/// system account listens).
pub fn client_event(
    server: &Server,
    c: &Client,
    disconnect: Option<crate::protocol::ClosedReason>,
) {
    let acc = c.account().name.clone();
    let kind = if disconnect.is_some() {
        "DISCONNECT"
    } else {
        "CONNECT"
    };
    let subject = format!("$SYS.ACCOUNT.{acc}.{kind}");
    if !server.system_account.sublist.has_interest(&subject) {
        return;
    }
    let now = crate::log::rfc3339(std::time::SystemTime::now());
    let mut client = c.event_info(server);
    let mut event = json!({
        "type": if disconnect.is_some() {
            "io.nats.server.advisory.v1.client_disconnect"
        } else {
            "io.nats.server.advisory.v1.client_connect"
        },
        "id": crate::auth::new_nonce(),
        "timestamp": now,
        "server": server_info(server),
    });
    if let Some(reason) = disconnect {
        client["stop"] = json!(now);
        let s = &c.stats;
        event["sent"] = json!({
            "msgs": s.out_msgs.load(Ordering::Relaxed),
            "bytes": s.out_bytes.load(Ordering::Relaxed),
        });
        event["received"] = json!({
            "msgs": s.in_msgs.load(Ordering::Relaxed),
            "bytes": s.in_bytes.load(Ordering::Relaxed),
        });
        event["reason"] = json!(reason.as_str());
    }
    event["client"] = client;
    let sys = server.system_account.clone();
    let mut sender = InternalSender::default();
    sender.send(
        server,
        &sys,
        Msg::new(&subject, event.to_string().as_bytes()),
    );
    sender.flush(server);
}

/// Publishes `$SYS.SERVER.<id>.STATSZ` every `every`, as nats-server's periodic statsz, and
/// at once when a route comes up.
pub fn spawn_statsz(server: &Arc<Server>, every: std::time::Duration) {
    let weak = Arc::downgrade(server);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            {
                let Some(server) = weak.upgrade() else { return };
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = server.statsz_now.notified() => {}
                    _ = server.wait_shutdown() => return,
                }
            }
            let Some(server) = weak.upgrade() else { return };
            if *server.shutdown.borrow() {
                return;
            }
            let subject = format!("$SYS.SERVER.{}.STATSZ", server.server_id);
            // Subscribers on other servers count: their interest is the cluster's to match.
            if !server.system_account.sublist.has_interest(&subject) && server.routes().is_none() {
                continue;
            }
            let body = json!({"server": server_info(&server), "statsz": statsz(&server)});
            let sys = server.system_account.clone();
            let mut sender = InternalSender::default();
            sender.send(
                &server,
                &sys,
                Msg::new(&subject, body.to_string().as_bytes()),
            );
            sender.flush(&server);
        }
    });
}
