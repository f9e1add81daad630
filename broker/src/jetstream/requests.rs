//! The `$JS.API` requests: each one's answer kind, its dispatch to the account, stream or consumer
//! that answers it, and stream create/update checks that need the whole account.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::account::{ApiReq, JsAccount};
use super::config::insufficient;
use super::config::{Storage, StreamConfig};
use super::errors::error_body;
use super::errors::ApiError;
use super::stream::{Cmd, Op, StreamHandle};
use super::{advisory, backup, config, errors, headers, restore, JetStream};
use crate::protocol::Msg;
use crate::server::internal::InternalSender;
use crate::server::Server;

impl JetStream {
    /// Serves one account-level API request on the API thread.
    pub(super) fn serve(
        self: &Arc<Self>,
        server: &Arc<Server>,
        sender: &mut InternalSender,
        req: ApiReq,
    ) {
        let Some(reply) = req.reply.clone() else {
            return;
        };
        let acc = req.acc.clone();
        let api = req.subject.strip_prefix("$JS.API.").unwrap_or("");
        // Clustered, every server receives every request and one answers it.
        if let Some(cl) = self.clustered() {
            if !self.responds(cl, &acc, api) {
                return;
            }
        }
        let audit = advisory::Audit::new(
            server,
            &acc.account,
            req.publisher,
            &req.subject,
            &req.body,
            self.domain.as_ref(),
        );
        let result = match (cluster_only_kind(api), response_kind(api)) {
            // Without a cluster these are refused before anything else, the level too.
            (Some(kind), _) if self.clustered().is_none() => {
                Err((kind, ApiError::clustering_required()))
            }
            // nats-server refuses before looking at the request.
            (None, Some(kind)) if req.too_new => Err((kind, ApiError::api_level_required())),
            _ => self.dispatch(server, &req, api, &reply, &audit),
        };
        // Counted once answered, as nats-server (an INFO does not count itself).
        acc.api_total.fetch_add(1, Ordering::Relaxed);
        let body = match result {
            Ok(None) => return,
            Ok(Some(v)) => v,
            Err((kind, e)) => {
                acc.api_errors.fetch_add(1, Ordering::Relaxed);
                error_body(kind, e)
            }
        };
        let body = body.to_string();
        sender.send(server, &acc.account, Msg::new(&reply, body.as_bytes()));
        if let Some(a) = &audit {
            advisory::api_audit(server, &acc.account, sender, a, &body);
        }
    }

    /// Routes an API request: account-level ones are answered here (`Ok(Some)`), stream-level
    /// ones are handed to the stream, which answers itself (`Ok(None)`).
    pub(super) fn dispatch(
        self: &Arc<Self>,
        server: &Arc<Server>,
        req: &ApiReq,
        api: &str,
        reply: &str,
        audit: &Option<Box<advisory::Audit>>,
    ) -> Result<Option<Value>, (&'static str, ApiError)> {
        let ApiReq {
            acc,
            body,
            publisher,
            too_new,
            ..
        } = req;
        let (publisher, too_new) = (*publisher, *too_new);
        if let Some(cl) = self.clustered().cloned() {
            if let Some(r) = self.dispatch_clustered(server, &cl, acc, api, body, reply) {
                return r;
            }
        }
        let toks: Vec<&str> = api.split('.').collect();
        let forward = |stream: &str,
                       op: Op,
                       kind: &'static str|
         -> Result<Option<Value>, (&'static str, ApiError)> {
            match acc.stream(stream) {
                Some(h) => {
                    h.send(Cmd::Api {
                        op,
                        reply: Some(reply.to_string()),
                        body: body.clone(),
                        audit: audit.clone(),
                    });
                    Ok(None)
                }
                None => Err((kind, ApiError::stream_not_found())),
            }
        };
        match toks.as_slice() {
            ["INFO"] => Ok(Some(self.account_info(acc))),
            ["CONSUMER", "MSG", "NEXT", ..] => {
                let h = headers::with(
                    b"NATS/1.0 503\r\n\r\n",
                    &[("Nats-Subject", format!("$JS.API.{api}"))],
                );
                let mut sender = InternalSender::default();
                sender.send(server, &acc.account, Msg::new(reply, b"").with_headers(&h));
                sender.flush(server);
                Ok(None)
            }
            ["STREAM", "CREATE", name] => {
                let existed = acc.stream(name).is_some();
                let r = self.create_stream(server, acc, name, body);
                if r.is_ok() && !existed {
                    let mut sender = InternalSender::default();
                    advisory::stream_action(server, &acc.account, &mut sender, name, "create");
                    sender.flush(server);
                }
                r.map(Some).map_err(|e| ("stream_create_response", e))
            }
            ["STREAM", "UPDATE", name] => {
                let r = self.update_stream(server, acc, name, body);
                if r.is_ok() {
                    let mut sender = InternalSender::default();
                    advisory::stream_action(server, &acc.account, &mut sender, name, "modify");
                    sender.flush(server);
                }
                r.map(Some).map_err(|e| ("stream_update_response", e))
            }
            ["STREAM", "DELETE", _] | ["CONSUMER", "DELETE", _, _] if !is_empty_request(body) => {
                let kind = response_kind(api).unwrap_or("error_response");
                Err((kind, ApiError::not_empty_request()))
            }
            ["STREAM", "DELETE", name] => {
                let h = acc.streams.write().remove(*name);
                match h {
                    Some(h) => {
                        for s in h.subs.lock().drain(..) {
                            server.remove_sub(&s);
                        }
                        h.stop(true);
                        let mut sender = InternalSender::default();
                        advisory::stream_action(server, &acc.account, &mut sender, name, "delete");
                        sender.flush(server);
                        Ok(Some(
                            json!({"type": "io.nats.jetstream.api.v1.stream_delete_response", "success": true}),
                        ))
                    }
                    None => Err(("stream_delete_response", ApiError::stream_not_found())),
                }
            }
            ["STREAM", "INFO", name] => forward(name, Op::Info, "stream_info_response"),
            ["STREAM", "SNAPSHOT", name] => {
                backup::snapshot_request(self, server, acc, name, reply, body, publisher)
            }
            ["STREAM", "RESTORE", name] => Ok(Some(restore::restore_request(
                self, server, acc, name, body, publisher,
            ))),
            ["STREAM", "PURGE", name] => forward(name, Op::Purge, "stream_purge_response"),
            ["STREAM", "MSG", "GET", name] => forward(name, Op::MsgGet, "stream_msg_get_response"),
            ["STREAM", "MSG", "DELETE", name] => {
                forward(name, Op::MsgDelete, "stream_msg_delete_response")
            }
            ["STREAM", "NAMES"] | ["STREAM", "LIST"] => {
                let list = toks[1] == "LIST";
                let kind = if list {
                    "stream_list_response"
                } else {
                    "stream_names_response"
                };
                let l: ListReq = errors::parse_opt(body, self.strict).map_err(|e| (kind, e))?;
                let all: Vec<Arc<StreamHandle>> = acc
                    .streams
                    .read()
                    .values()
                    .filter(|h| {
                        l.subject.is_empty()
                            || h.cfg
                                .read()
                                .subjects
                                .iter()
                                .any(|s| config::subjects_overlap(s, &l.subject))
                    })
                    .cloned()
                    .collect();
                let total = all.len();
                let limit = if list { 256 } else { 1024 };
                let page: Vec<Arc<StreamHandle>> =
                    all.into_iter().skip(l.offset).take(limit).collect();
                if list {
                    let infos: Vec<Value> = page
                        .iter()
                        .filter_map(|h| h.info())
                        .map(list_entry)
                        .collect();
                    Ok(Some(
                        json!({"type": "io.nats.jetstream.api.v1.stream_list_response", "total": total, "offset": l.offset, "limit": limit, "streams": infos, "missing": null}),
                    ))
                } else {
                    let names: Vec<&str> = page.iter().map(|h| h.name.as_str()).collect();
                    let names = if names.is_empty() {
                        Value::Null
                    } else {
                        json!(names)
                    };
                    Ok(Some(
                        json!({"type": "io.nats.jetstream.api.v1.stream_names_response", "total": total, "offset": l.offset, "limit": limit, "streams": names}),
                    ))
                }
            }
            ["CONSUMER", "CREATE", stream] => forward(
                stream,
                Op::ConsumerCreate {
                    name: None,
                    filter: None,
                    durable_api: false,
                },
                "consumer_create_response",
            ),
            ["CONSUMER", "CREATE", stream, name, filter @ ..] => forward(
                stream,
                Op::ConsumerCreate {
                    name: Some(name.to_string()),
                    filter: (!filter.is_empty()).then(|| filter.join(".")),
                    durable_api: false,
                },
                "consumer_create_response",
            ),
            ["CONSUMER", "DURABLE", "CREATE", stream, name] => forward(
                stream,
                Op::ConsumerCreate {
                    name: Some(name.to_string()),
                    filter: None,
                    durable_api: true,
                },
                "consumer_create_response",
            ),
            ["CONSUMER", "INFO", stream, name] => forward(
                stream,
                Op::ConsumerInfo(name.to_string()),
                "consumer_info_response",
            ),
            ["CONSUMER", "PAUSE", stream, name] => forward(
                stream,
                Op::ConsumerPause(name.to_string()),
                "consumer_pause_response",
            ),
            // Answered by the consumer itself in nats-server: nothing when there is none.
            ["CONSUMER", "RESET", stream, _] if acc.stream(stream).is_none() => Ok(None),
            ["CONSUMER", "RESET", stream, name] => forward(
                stream,
                Op::ConsumerReset {
                    name: name.to_string(),
                    too_new,
                },
                "consumer_reset_response",
            ),
            ["CONSUMER", "UNPIN", stream, name] => forward(
                stream,
                Op::ConsumerUnpin(name.to_string()),
                "consumer_unpin_response",
            ),
            ["CONSUMER", "DELETE", stream, name] => forward(
                stream,
                Op::ConsumerDelete(name.to_string()),
                "consumer_delete_response",
            ),
            ["CONSUMER", "NAMES", stream] => {
                forward(stream, Op::ConsumerNames, "consumer_names_response")
            }
            ["CONSUMER", "LIST", stream] => {
                forward(stream, Op::ConsumerList, "consumer_list_response")
            }
            // nats-server has no subscription for unknown API subjects: no answer at all.
            _ => Ok(None),
        }
    }

    pub(super) fn parse_stream_config(
        name: &str,
        body: &[u8],
        max_payload: i32,
        strict: bool,
        clustered: bool,
    ) -> Result<StreamConfig, ApiError> {
        // An empty body is `{}`, whose empty name does not match the subject's.
        let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            body
        };
        let cfg: StreamConfig = errors::from_json(body, strict)?;
        let mut cfg = cfg;
        if cfg.name != name {
            return Err(ApiError::stream_mismatch());
        }
        cfg.normalize(max_payload)?;
        if cfg.num_replicas > 1 && !clustered {
            return Err(ApiError::stream_replicas_not_supported());
        }
        Ok(cfg)
    }

    pub(super) fn check_overlap(acc: &JsAccount, cfg: &StreamConfig) -> Result<(), ApiError> {
        let streams = acc.streams.read();
        check_overlap_with(cfg, streams.values().map(|h| h.cfg.read().clone()))
    }

    pub(super) fn create_stream(
        self: &Arc<Self>,
        server: &Arc<Server>,
        acc: &Arc<JsAccount>,
        name: &str,
        body: &[u8],
    ) -> Result<Value, ApiError> {
        let cfg = Self::parse_stream_config(
            name,
            body,
            server.options().max_payload,
            self.strict,
            false,
        )?;
        if let Some(h) = acc.stream(name) {
            if *h.cfg.read() == cfg {
                // Idempotent: the same answer as the first create.
                let v = h.info().ok_or_else(ApiError::stream_not_found)?;
                return Ok(create_response(v, &["cluster"], true));
            }
            return Err(ApiError::stream_name_exists());
        }
        Self::check_overlap(acc, &cfg)?;
        if acc.limits.max_streams >= 0 && acc.streams.read().len() as i64 >= acc.limits.max_streams
        {
            return Err(ApiError::max_streams());
        }
        self.check_max_bytes(acc, &cfg)?;
        let h = self.start_stream(server, acc, cfg, crate::clock::unix_nanos(), true)?;
        let v = h.info().ok_or_else(ApiError::stream_not_found)?;
        Ok(create_response(v, &["cluster"], true))
    }

    /// Refuses a stream whose `max_bytes` exceeds the account's or the server's storage.
    pub(super) fn check_max_bytes(
        &self,
        acc: &JsAccount,
        cfg: &StreamConfig,
    ) -> Result<(), ApiError> {
        let (acc_limit, server_limit) = match cfg.storage {
            Storage::Memory => (acc.limits.max_memory, self.max_memory()),
            Storage::File => (acc.limits.max_store, self.max_store()),
        };
        if cfg.max_bytes > 0
            && ((acc_limit >= 0 && cfg.max_bytes > acc_limit) || cfg.max_bytes > server_limit)
        {
            return Err(insufficient(cfg.storage));
        }
        Ok(())
    }

    pub(super) fn update_stream(
        self: &Arc<Self>,
        server: &Arc<Server>,
        acc: &Arc<JsAccount>,
        name: &str,
        body: &[u8],
    ) -> Result<Value, ApiError> {
        let cfg = Self::parse_stream_config(
            name,
            body,
            server.options().max_payload,
            self.strict,
            false,
        )?;
        let h = acc.stream(name).ok_or_else(ApiError::stream_not_found)?;
        Self::check_overlap(acc, &cfg)?;
        let subjects_changed = h.cfg.read().subjects != cfg.subjects;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        h.send(Cmd::Update {
            cfg: Box::new(cfg),
            done: tx,
        });
        let v = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| ApiError::stream_update("stream did not answer"))??;
        if subjects_changed {
            self.subscribe_stream(server, acc, &h);
        }
        Ok(v)
    }
}

/// A stream's info as the answer to a create: typed so, without paging fields and `drop`,
/// with `did_create` when the request created it.
pub(super) fn create_response(mut v: Value, drop: &[&str], did_create: bool) -> Value {
    v["type"] = json!("io.nats.jetstream.api.v1.stream_create_response");
    if let Value::Object(m) = &mut v {
        for k in ["total", "offset", "limit"].iter().chain(drop) {
            m.remove(*k);
        }
    }
    if did_create {
        v["did_create"] = json!(true);
    }
    v
}

/// The body of `STREAM.NAMES` and `STREAM.LIST`.
#[derive(Deserialize, Default)]
pub(super) struct ListReq {
    #[serde(default)]
    pub offset: usize,
    /// Only streams whose subjects overlap this one.
    #[serde(default)]
    pub subject: String,
}

/// A stream's info as one entry of `STREAM.LIST`: no type or paging fields, and only the
/// stored metadata, as nats-server's.
pub(super) fn list_entry(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        for k in ["type", "total", "offset", "limit"] {
            m.remove(k);
        }
    }
    if let Some(md) = v["config"]["metadata"].as_object_mut() {
        md.remove("_nats.level");
        md.remove("_nats.ver");
    }
    v
}

/// Refuses `cfg` when its subjects overlap those of another of `others`.
pub(super) fn check_overlap_with(
    cfg: &StreamConfig,
    others: impl Iterator<Item = StreamConfig>,
) -> Result<(), ApiError> {
    for other in others {
        if other.name == cfg.name {
            continue;
        }
        if cfg.subjects.iter().any(|a| {
            other
                .subjects
                .iter()
                .any(|b| config::subjects_overlap(a, b))
        }) {
            return Err(ApiError::subject_overlap());
        }
    }
    Ok(())
}

/// The response type of an API request (`STREAM.CREATE.S` → `stream_create_response`), for
/// the requests whose answers name one.
pub(super) fn response_kind(api: &str) -> Option<&'static str> {
    let t: Vec<&str> = api.split('.').collect();
    Some(match t.as_slice() {
        ["INFO"] => "account_info_response",
        ["STREAM", "CREATE", ..] => "stream_create_response",
        ["STREAM", "UPDATE", ..] => "stream_update_response",
        ["STREAM", "DELETE", ..] => "stream_delete_response",
        ["STREAM", "INFO", ..] => "stream_info_response",
        ["STREAM", "PURGE", ..] => "stream_purge_response",
        ["STREAM", "NAMES"] => "stream_names_response",
        ["STREAM", "LIST"] => "stream_list_response",
        ["STREAM", "MSG", "GET", ..] => "stream_msg_get_response",
        ["STREAM", "MSG", "DELETE", ..] => "stream_msg_delete_response",
        ["STREAM", "SNAPSHOT", ..] => "stream_snapshot_response",
        ["STREAM", "RESTORE", ..] => "stream_restore_response",
        ["CONSUMER", "CREATE", ..] | ["CONSUMER", "DURABLE", "CREATE", ..] => {
            "consumer_create_response"
        }
        ["CONSUMER", "INFO", ..] => "consumer_info_response",
        ["CONSUMER", "DELETE", ..] => "consumer_delete_response",
        ["CONSUMER", "NAMES", ..] => "consumer_names_response",
        ["CONSUMER", "LIST", ..] => "consumer_list_response",
        ["CONSUMER", "PAUSE", ..] => "consumer_pause_response",
        ["CONSUMER", "UNPIN", ..] => "consumer_unpin_response",
        _ => return None,
    })
}

/// The response type of a request about one stream or consumer that only a JetStream cluster
/// serves (leader step-down, peers, moves); a standalone server refuses them.
pub(super) fn cluster_only_kind(api: &str) -> Option<&'static str> {
    let t: Vec<&str> = api.split('.').collect();
    Some(match t.as_slice() {
        ["STREAM", "LEADER", "STEPDOWN", _] => "stream_leader_stepdown_response",
        ["STREAM", "PEER", "REMOVE", _] => "stream_remove_peer_response",
        ["STREAM", "PEER", "EVACUATE", _] => "stream_evacuate_peer_response",
        ["STREAM", "CANCEL_MOVE", _] => "stream_cancel_move_response",
        ["CONSUMER", "LEADER", "STEPDOWN", _, _] => "consumer_leader_stepdown_response",
        ["CONSUMER", "PEER", "REMOVE", _, _] => "consumer_remove_peer_response",
        ["CONSUMER", "PEER", "EVACUATE", _, _] => "consumer_evacuate_peer_response",
        _ => return None,
    })
}

/// nats-server's `isEmptyRequest`: no payload, `{}`, or JSON that is an empty object.
fn is_empty_request(body: &[u8]) -> bool {
    body.is_empty()
        || body == b"{}"
        || serde_json::from_slice::<serde_json::Map<String, Value>>(body)
            .is_ok_and(|m| m.is_empty())
}
