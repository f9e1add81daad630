//! `/jsz` and the `jetstream` section of `/varz` for a server with JetStream, shaped as
//! nats-server's.

use serde_json::{json, Value};

use crate::jetstream::config::Storage;
use crate::jetstream::JetStream;
use crate::server::Server;

/// `/jsz` query options.
#[derive(Debug, Default, Clone)]
pub struct JszOptions {
    pub account: Option<String>,
    pub accounts: bool,
    pub streams: bool,
    pub consumers: bool,
    pub config: bool,
    pub offset: usize,
    pub limit: usize,
}

fn config(js: &JetStream) -> Value {
    let mut c = json!({
        "max_memory": js.max_memory(),
        "max_storage": js.max_store(),
        "store_dir": js.store_dir.display().to_string(),
        "sync_interval": js.sync_interval.as_nanos() as u64,
        "strict": true,
    });
    if js.sync_always {
        c["sync_always"] = json!(true);
    }
    if let Some(d) = &js.domain {
        c["domain"] = json!(d);
    }
    c
}

fn api(js: &JetStream) -> Value {
    let (total, errors) = js.accounts().iter().fold((0, 0), |(t, e), a| {
        (
            t + a.api_total.load(std::sync::atomic::Ordering::Relaxed),
            e + a.api_errors.load(std::sync::atomic::Ordering::Relaxed),
        )
    });
    json!({"level": crate::server::API_LEVEL, "total": total, "errors": errors})
}

/// The `jetstream` object of `/varz` (`{}` without JetStream).
pub fn varz_section(s: &Server) -> Value {
    let Some(js) = crate::jetstream::JetStream::of(s) else {
        return json!({});
    };
    json!({
        "config": config(&js),
        "stats": {
            "memory": js.usage(Storage::Memory),
            "storage": js.usage(Storage::File),
            "reserved_memory": 0,
            "reserved_storage": 0,
            "accounts": js.accounts().len(),
            "ha_assets": 0,
            "api": api(&js),
        },
        "limits": {},
    })
}

/// The `/jsz` document, or `None` when JetStream is off (the caller serves the disabled form).
/// Stream details ask each stream's thread, so call it off the async workers.
pub fn jsz(s: &Server, o: &JszOptions) -> Option<Value> {
    let js = crate::jetstream::JetStream::of(s)?;
    let accounts = js.accounts();
    let (mut streams, mut consumers, mut messages, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    for a in &accounts {
        for h in a.streams.read().values() {
            streams += 1;
            consumers += h.consumers.load(std::sync::atomic::Ordering::Relaxed);
            messages += h.msgs.load(std::sync::atomic::Ordering::Relaxed);
            bytes += h.bytes.load(std::sync::atomic::Ordering::Relaxed);
        }
    }
    let mut doc = json!({
        "memory": js.usage(Storage::Memory),
        "storage": js.usage(Storage::File),
        "reserved_memory": 0,
        "reserved_storage": 0,
        "accounts": accounts.len(),
        "ha_assets": 0,
        "api": api(&js),
        "server_id": s.server_id,
        "now": crate::log::rfc3339(std::time::SystemTime::now()),
        "config": config(&js),
        "limits": {},
        "streams": streams,
        "consumers": consumers,
        "messages": messages,
        "bytes": bytes,
    });
    if let Some(cl) = js.clustered() {
        doc["meta_cluster"] = cl.meta_cluster_info();
        doc["ha_assets"] = json!(cl.ha_assets());
    }
    let want_details = o.accounts || o.streams || o.consumers || o.account.is_some();
    if want_details {
        let limit = if o.limit == 0 { 1024 } else { o.limit };
        let details: Vec<Value> = accounts
            .iter()
            .filter(|a| o.account.as_deref().is_none_or(|n| n == a.name))
            .skip(o.offset)
            .take(limit)
            .map(|a| {
                let mut d = json!({
                    "name": a.name,
                    "id": a.name,
                    "memory": a.usage(Storage::Memory),
                    "storage": a.usage(Storage::File),
                    "reserved_memory": u64::MAX,
                    "reserved_storage": u64::MAX,
                    "accounts": 0,
                    "ha_assets": 0,
                    "api": {
                        "level": 0,
                        "total": a.api_total.load(std::sync::atomic::Ordering::Relaxed),
                        "errors": a.api_errors.load(std::sync::atomic::Ordering::Relaxed),
                    },
                });
                if o.streams || o.consumers {
                    let handles: Vec<_> = a.streams.read().values().cloned().collect();
                    let list: Vec<Value> = handles
                        .iter()
                        .filter_map(|h| h.detail())
                        .map(|(info, cons)| {
                            let mut sd = json!({
                                "name": info["config"]["name"],
                                "created": info["created"],
                                "cluster": info["cluster"],
                            });
                            if o.config {
                                sd["config"] = info["config"].clone();
                            }
                            sd["state"] = info["state"].clone();
                            if o.consumers && !cons.is_empty() {
                                let cons: Vec<Value> = cons
                                    .into_iter()
                                    .map(|mut c| {
                                        if !o.config {
                                            if let Value::Object(m) = &mut c {
                                                m.remove("config");
                                            }
                                        }
                                        c
                                    })
                                    .collect();
                                sd["consumer_detail"] = json!(cons);
                            }
                            sd
                        })
                        .collect();
                    if !list.is_empty() {
                        d["stream_detail"] = json!(list);
                    }
                }
                d
            })
            .collect();
        doc["account_details"] = json!(details);
    }
    doc["total"] = json!(accounts.len());
    Some(doc)
}
