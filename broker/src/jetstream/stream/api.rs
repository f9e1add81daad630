//! The JetStream API requests a stream answers itself: info, update, purge, message get and
//! delete, consumer requests.

use serde::Deserialize;
use serde_json::{json, Value};

use super::direct::GetReq;
use super::source::Origin;
use super::{Meta, Op, Stream};
use crate::clock::unix_nanos;
use crate::jetstream::config::{Compression, StreamConfig};
use crate::jetstream::consumer::Consumer;
use crate::jetstream::crypt;
use crate::jetstream::errors::parse_opt;
use crate::jetstream::errors::ApiError;
use crate::jetstream::store::StoreState;
use crate::jetstream::time::rfc3339_nanos;
use crate::server::Server;

/// Subjects per page of a stream info's `state.subjects` (nats-server's `JSMaxSubjectDetails`).
const SUBJECTS_PAGE: usize = 100_000;

impl Stream {
    pub(super) fn update(&mut self, cfg: StreamConfig) -> Result<(), ApiError> {
        let old = &self.cfg;
        // Changes nats-server refuses on update.
        let refused = [
            (
                cfg.storage != old.storage,
                "stream configuration update can not change storage type",
            ),
            (
                cfg.retention != old.retention,
                "stream configuration update can not change retention policy",
            ),
            (
                cfg.persist_mode != old.persist_mode,
                "stream configuration update can not change persist mode",
            ),
            (
                cfg.allow_msg_counter != old.allow_msg_counter,
                "stream configuration update can not change message counter setting",
            ),
            (
                old.allow_msg_schedules && !cfg.allow_msg_schedules,
                "message schedules can not be disabled",
            ),
            (
                old.sealed && !cfg.sealed,
                "stream configuration update can not unseal a sealed stream",
            ),
            (
                old.deny_delete && !cfg.deny_delete,
                "stream configuration update can not cancel deny message deletes",
            ),
            (
                old.deny_purge && !cfg.deny_purge,
                "stream configuration update can not cancel deny purge",
            ),
            (
                old.allow_msg_ttl && !cfg.allow_msg_ttl,
                "message TTL status can not be disabled",
            ),
        ];
        if let Some((_, why)) = refused.iter().find(|(bad, _)| *bad) {
            return Err(ApiError::stream_invalid_config(why));
        }
        // A mirror can be promoted to a plain stream (mirror removed), not changed or added.
        if cfg.mirror.is_some() && cfg.mirror != old.mirror {
            return Err(ApiError::stream_mirror_not_updatable());
        }
        // New consumer limits must hold for the consumers there are (nats-server names them).
        let lim = &cfg.consumer_limits;
        if *lim != old.consumer_limits {
            let violators: Vec<&str> = self
                .consumers
                .iter()
                .filter(|(_, c)| {
                    (lim.max_ack_pending > 0 && c.cfg.max_ack_pending > lim.max_ack_pending)
                        || (lim.inactive_threshold > 0
                            && c.cfg.inactive_threshold > lim.inactive_threshold)
                })
                .map(|(n, _)| n.as_str())
                .collect();
            if !violators.is_empty() {
                return Err(ApiError::stream_update(&format!(
                    "change to limits violates consumers: {}",
                    violators.join(", ")
                )));
            }
        }
        if !cfg.allow_batched {
            self.fast.clear();
        }
        if !cfg.allow_atomic {
            // Batches in flight can no longer commit.
            self.atomic.clear();
        }
        self.store.set_compress(cfg.compression == Compression::S2);
        self.cfg = cfg;
        if let Some(d) = &self.dir {
            let meta = Meta {
                config: &self.cfg,
                created: self.created,
            };
            crypt::write_file(
                self.key.as_deref(),
                &d.join("meta.inf"),
                &serde_json::to_vec(&meta).expect("serializes"),
            )
            .map_err(|e| ApiError::stream_update(&e.to_string()))?;
        }
        if let Some(h) = self.handle.upgrade() {
            *h.cfg.write() = self.cfg.clone();
        }
        // Tighter limits apply at once.
        if let Some((_, subj, _)) = self
            .store
            .first_msg()
            .and_then(|(s, _)| self.store.peek(s).map(|(a, b, c)| (s, a.clone(), (b, c))))
        {
            self.enforce_limits(&subj);
        }
        if self.cfg.max_msgs_per_subject > 0 {
            let subjects: Vec<std::sync::Arc<str>> = self
                .store
                .subjects_matching(">")
                .into_iter()
                .map(|(s, _)| s)
                .collect();
            for s in subjects {
                self.enforce_limits(&s);
            }
        }
        Ok(())
    }

    pub(super) fn state_value(&self, st: &StoreState, req: &InfoReq) -> Value {
        let mut s = json!({
            "messages": st.msgs,
            "bytes": st.bytes,
            "first_seq": st.first_seq,
            "first_ts": rfc3339_nanos(st.first_ts),
            "last_seq": st.last_seq,
            "last_ts": rfc3339_nanos(st.last_ts),
        });
        if st.num_subjects > 0 {
            s["num_subjects"] = json!(st.num_subjects);
        }
        if st.num_deleted > 0 {
            s["num_deleted"] = json!(st.num_deleted);
            if req.deleted_details {
                s["deleted"] = json!(self.store.deleted());
            }
        }
        s["consumer_count"] = json!(self.visible_consumers().count());
        s
    }

    /// Consumers users see: not the `direct` ones other streams' mirrors and sources use.
    pub(super) fn visible_consumers(&self) -> impl Iterator<Item = (&String, &Consumer)> {
        self.consumers.iter().filter(|(_, c)| !c.cfg.direct)
    }

    pub(super) fn info_value(&self, req: &InfoReq) -> Value {
        let st = self.store.state();
        let mut v = json!({
            "type": "io.nats.jetstream.api.v1.stream_info_response",
            "total": 0, "offset": 0, "limit": 0,
            "config": self.cfg,
            "created": rfc3339_nanos(self.created),
            "state": self.state_value(&st, req),
            "cluster": self.cluster_info(),
        });
        crate::jetstream::config::with_server_metadata(&mut v["config"]);
        if let Some(f) = req.subjects_filter.as_deref().filter(|f| !f.is_empty()) {
            self.subjects_page(&mut v, f, req.offset.max(0) as usize);
        }
        if let Some(m) = self.origins.iter().find(|o| o.mirror) {
            v["mirror"] = m.info();
        }
        let sources: Vec<Value> = self
            .origins
            .iter()
            .filter(|o| !o.mirror)
            .map(Origin::info)
            .collect();
        if !sources.is_empty() {
            v["sources"] = Value::Array(sources);
        }
        v["ts"] = json!(rfc3339_nanos(unix_nanos()));
        v
    }

    /// One page of `state.subjects` for a `subjects_filter`, as nats-server pages it: the
    /// matching subjects sorted as strings, at most [`SUBJECTS_PAGE`] from `offset`, with
    /// `total`, `offset` and `limit` beside them (all zero when nothing matches).
    pub(super) fn subjects_page(&self, v: &mut Value, filter: &str, offset: usize) {
        let mut all = self.store.subjects_matching(filter);
        if all.is_empty() {
            return;
        }
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let total = all.len();
        let page: serde_json::Map<String, Value> = all
            .into_iter()
            .skip(offset)
            .take(SUBJECTS_PAGE)
            .map(|(k, n)| (k.to_string(), json!(n)))
            .collect();
        if !page.is_empty() {
            v["state"]["subjects"] = Value::Object(page);
        }
        v["total"] = json!(total);
        v["offset"] = json!(offset);
        v["limit"] = json!(SUBJECTS_PAGE);
    }

    pub(super) fn api(&mut self, server: &Server, op: Op, body: &[u8]) -> Option<String> {
        let r = self.api_inner(server, op, body);
        Some(match r {
            Ok(None) => return None,
            Ok(Some(v)) => v.to_string(),
            Err((kind, e)) => crate::jetstream::errors::error_body(kind, e).to_string(),
        })
    }

    pub(super) fn api_inner(
        &mut self,
        server: &Server,
        op: Op,
        body: &[u8],
    ) -> Result<Option<Value>, (&'static str, ApiError)> {
        match op {
            Op::Info => {
                let req: InfoReq =
                    parse_opt(body, self.shared.strict).map_err(|e| ("stream_info_response", e))?;
                Ok(Some(self.info_value(&req)))
            }
            Op::Purge => {
                const K: &str = "stream_purge_response";
                if self.cfg.sealed {
                    return Err((K, ApiError::sealed()));
                }
                if self.cfg.deny_purge {
                    return Err((
                        K,
                        ApiError::stream_purge_failed("stream purge not permitted"),
                    ));
                }
                #[derive(Deserialize, Default)]
                struct P {
                    #[serde(default)]
                    filter: String,
                    #[serde(default)]
                    seq: u64,
                    #[serde(default)]
                    keep: u64,
                }
                let p: P = parse_opt(body, self.shared.strict).map_err(|e| (K, e))?;
                if p.seq > 0 && p.keep > 0 {
                    return Err((K, ApiError::bad_request()));
                }
                let n = self.purge(&p.filter, p.seq, p.keep);
                Ok(Some(
                    json!({"type": "io.nats.jetstream.api.v1.stream_purge_response", "success": true, "purged": n}),
                ))
            }
            Op::MsgDelete => {
                const K: &str = "stream_msg_delete_response";
                if self.cfg.sealed {
                    return Err((K, ApiError::sealed()));
                }
                if self.cfg.deny_delete {
                    return Err((
                        K,
                        ApiError::stream_msg_delete_failed("message delete not permitted"),
                    ));
                }
                #[derive(Deserialize)]
                struct D {
                    seq: u64,
                    #[serde(default)]
                    no_erase: bool,
                }
                let d: D = crate::jetstream::errors::from_json(body, self.shared.strict)
                    .map_err(|e| (K, e))?;
                if self.remove_msg_with(d.seq, !d.no_erase) {
                    Ok(Some(
                        json!({"type": "io.nats.jetstream.api.v1.stream_msg_delete_response", "success": true}),
                    ))
                } else if d.seq > self.store.state().last_seq {
                    Err((K, ApiError::stream_msg_delete_failed("stream store EOF")))
                } else {
                    Err((K, ApiError::sequence_not_found(&d.seq.to_string())))
                }
            }
            Op::MsgGet => {
                const K: &str = "stream_msg_get_response";
                let req: GetReq = crate::jetstream::errors::from_json(body, self.shared.strict)
                    .map_err(|e| (K, e))?;
                let seq = self.find(&req).map_err(|e| (K, e))?;
                let m = self
                    .store
                    .get(seq)
                    .ok_or((K, ApiError::no_message_found()))?;
                use data_encoding::BASE64;
                let mut msg = json!({"subject": &*m.subject, "seq": m.seq});
                if !m.hdr.is_empty() && !req.no_hdr {
                    msg["hdrs"] = json!(BASE64.encode(&m.hdr));
                }
                if !m.data.is_empty() {
                    msg["data"] = json!(BASE64.encode(&m.data));
                }
                msg["time"] = json!(rfc3339_nanos(m.ts));
                Ok(Some(
                    json!({"type": "io.nats.jetstream.api.v1.stream_msg_get_response", "message": msg}),
                ))
            }
            Op::ConsumerCreate {
                name,
                filter,
                durable_api,
            } => self
                .create_consumer(server, body, name, filter, durable_api)
                .map(Some)
                .map_err(|e| ("consumer_create_response", e)),
            Op::ConsumerInfo(name) => {
                let (mut ctx, consumers) = self.ctx(server);
                let Some(c) = consumers.get_mut(&name) else {
                    return Err(("consumer_info_response", ApiError::consumer_not_found()));
                };
                c.refresh_interest(&mut ctx);
                Ok(Some(
                    self.consumer_response(&name, "consumer_info_response"),
                ))
            }
            Op::ConsumerPause(name) => {
                const K: &str = "consumer_pause_response";
                #[derive(Deserialize, Default)]
                struct P {
                    #[serde(default)]
                    pause_until: Option<String>,
                }
                let p: P = parse_opt(body, self.shared.strict).map_err(|e| (K, e))?;
                let until = match p.pause_until.as_deref() {
                    None | Some("") => 0,
                    Some(t) => crate::jetstream::time::parse_rfc3339(t)
                        .ok_or((K, ApiError::invalid_json("bad pause_until")))?,
                };
                let Some(c) = self.consumers.get_mut(&name) else {
                    return Err((K, ApiError::consumer_not_found()));
                };
                let now = unix_nanos();
                let paused = until > now;
                c.paused_until = if paused { until } else { 0 };
                c.cfg.pause_until = paused.then(|| rfc3339_nanos(until));
                self.write_consumer_meta(&name);
                self.wake = true;
                let mut v = json!({
                    "type": "io.nats.jetstream.api.v1.consumer_pause_response",
                    "paused": paused,
                    "pause_until": rfc3339_nanos(until),
                });
                if paused {
                    v["pause_remaining"] = json!(until - now);
                }
                Ok(Some(v))
            }
            Op::ConsumerReset { name, too_new } => {
                // nats-server's consumer answers this itself: no consumer, no answer. Errors
                // carry `reset_seq` too, and the body is read leniently.
                let refused = |e: ApiError| json!({"type": "io.nats.jetstream.api.v1.consumer_reset_response", "error": e, "reset_seq": 0});
                if !self.consumers.contains_key(&name) {
                    return Ok(None);
                }
                if too_new {
                    return Ok(Some(refused(ApiError::api_level_required())));
                }
                #[derive(Deserialize, Default)]
                struct R {
                    #[serde(default)]
                    seq: u64,
                }
                let r: R = match parse_opt(body, false) {
                    Ok(r) => r,
                    Err(e) => return Ok(Some(refused(e))),
                };
                let c = self.consumers.get_mut(&name).expect("checked above");
                match c.reset(r.seq, &self.store) {
                    Err(e) => Ok(Some(refused(e))),
                    Ok(seq) => {
                        self.write_consumer_meta(&name);
                        self.wake = true;
                        let mut v = self.consumer_response(&name, "consumer_reset_response");
                        v["reset_seq"] = json!(seq);
                        Ok(Some(v))
                    }
                }
            }
            Op::ConsumerUnpin(name) => {
                const K: &str = "consumer_unpin_response";
                #[derive(Deserialize, Default)]
                struct U {
                    #[serde(default)]
                    group: String,
                }
                // nats-server reads UNPIN leniently, strict mode or not.
                let u: U = parse_opt(body, false).map_err(|e| (K, e))?;
                if u.group.is_empty() {
                    return Err((K, ApiError::invalid_json("consumer group not specified")));
                }
                if !crate::jetstream::consumer_config::valid_group_name(&u.group) {
                    return Err((K, crate::jetstream::consumer_config::invalid_group_name()));
                }
                let (mut ctx, consumers) = self.ctx(server);
                let Some(c) = consumers.get_mut(&name) else {
                    return Err((K, ApiError::consumer_not_found()));
                };
                if !c.cfg.priority_groups.contains(&u.group) {
                    return Err((K, ApiError::consumer_invalid_priority_group()));
                }
                c.unpin(&mut ctx, &u.group, "admin");
                self.wake = true;
                Ok(Some(
                    json!({"type": "io.nats.jetstream.api.v1.consumer_unpin_response"}),
                ))
            }
            Op::ConsumerDelete(name) => {
                if self.delete_consumer(server, &name) {
                    Ok(Some(
                        json!({"type": "io.nats.jetstream.api.v1.consumer_delete_response", "success": true}),
                    ))
                } else {
                    Err(("consumer_delete_response", ApiError::consumer_not_found()))
                }
            }
            Op::ConsumerNames | Op::ConsumerList => {
                let list = matches!(op, Op::ConsumerList);
                #[derive(Deserialize, Default)]
                struct L {
                    #[serde(default)]
                    offset: usize,
                }
                let l: L = parse_opt(body, false).unwrap_or_default();
                let total = self.visible_consumers().count();
                let limit = if list { 256 } else { 1024 };
                let names: Vec<&String> = self
                    .visible_consumers()
                    .map(|(n, _)| n)
                    .skip(l.offset)
                    .take(limit)
                    .collect();
                if list {
                    let infos: Vec<Value> = names
                        .iter()
                        .map(|n| {
                            let mut v = self.consumer_response(n, "x");
                            if let Value::Object(m) = &mut v {
                                m.remove("type");
                            }
                            v
                        })
                        .collect();
                    Ok(Some(
                        json!({"type": "io.nats.jetstream.api.v1.consumer_list_response", "total": total, "offset": l.offset, "limit": limit, "consumers": infos}),
                    ))
                } else {
                    Ok(Some(
                        json!({"type": "io.nats.jetstream.api.v1.consumer_names_response", "total": total, "offset": l.offset, "limit": limit, "consumers": names}),
                    ))
                }
            }
        }
    }
}

/// `STREAM.INFO` options.
#[derive(Debug, Default, Deserialize)]
pub struct InfoReq {
    #[serde(default)]
    pub deleted_details: bool,
    #[serde(default)]
    pub subjects_filter: Option<String>,
    /// Where the subjects page starts (nats-server takes a negative one as 0).
    #[serde(default)]
    pub offset: i64,
}
