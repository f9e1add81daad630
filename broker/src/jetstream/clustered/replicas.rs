//! Clustered JetStream seen from the API: which server answers which request (the meta leader
//! for the account's requests, the stream's leader for the stream's), the meta leader's
//! create, update, delete, names and list from the assignments, and the replicas' lifecycle
//! as the meta log is applied.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::meta::{group_name, MetaEntry, MetaOp, StreamAssignment, META_GROUP};
use super::{Clustered, ReplicaLink};
use crate::jetstream::account::JsAccount;
use crate::jetstream::config::Storage;
use crate::jetstream::errors::{self, ApiError};
use crate::jetstream::requests::{check_overlap_with, create_response, list_entry, ListReq};
use crate::jetstream::stream::{self, Cmd, StreamHandle};
use crate::jetstream::{advisory, JetStream};
use crate::protocol::Msg;
use crate::server::internal::InternalSender;
use crate::server::Server;

/// The stream a stream-level API request names, if it is one.
fn stream_of<'a>(toks: &[&'a str]) -> Option<&'a str> {
    match toks {
        ["STREAM", "INFO" | "PURGE" | "SNAPSHOT", s] => Some(s),
        ["STREAM", "MSG", "GET" | "DELETE", s] => Some(s),
        ["STREAM", "LEADER", "STEPDOWN", s] => Some(s),
        ["CONSUMER", "DURABLE", "CREATE", s, ..] => Some(s),
        ["CONSUMER", "LEADER", "STEPDOWN", s, ..] => Some(s),
        ["CONSUMER", "MSG", "NEXT", s, ..] => Some(s),
        ["CONSUMER", _, s, ..] => Some(s),
        _ => None,
    }
}

impl JetStream {
    /// Whether this server answers `api` (every server receives every request): the stream's
    /// leader for a stream's requests, the meta leader for the rest and for streams that do
    /// not exist.
    pub(crate) fn responds(&self, cl: &Clustered, acc: &JsAccount, api: &str) -> bool {
        let toks: Vec<&str> = api.split('.').collect();
        // Creating a stream that exists is answered by its leader, with the stream as it is.
        if let ["STREAM", "CREATE", s] = toks.as_slice() {
            if cl.meta.read().stream(&acc.name, s).is_some() {
                return acc
                    .stream(s)
                    .is_some_and(|h| h.leader.load(Ordering::Relaxed));
            }
        }
        match stream_of(&toks) {
            Some(s) => match acc.stream(s) {
                Some(h) => h.leader.load(Ordering::Relaxed),
                None => cl.is_meta_leader() && cl.meta.read().stream(&acc.name, s).is_none(),
            },
            None => cl.is_meta_leader(),
        }
    }

    /// The meta leader's part of the account-level requests; `None` for the others.
    pub(crate) fn dispatch_clustered(
        self: &Arc<Self>,
        server: &Arc<Server>,
        cl: &Arc<Clustered>,
        acc: &Arc<JsAccount>,
        api: &str,
        body: &[u8],
        reply: &str,
    ) -> Option<Result<Option<Value>, (&'static str, ApiError)>> {
        let toks: Vec<&str> = api.split('.').collect();
        Some(match toks.as_slice() {
            ["STREAM", "CREATE", name] => self
                .create_clustered(server, cl, acc, name, body, reply)
                .map_err(|e| ("stream_create_response", e)),
            ["STREAM", "UPDATE", name] => self
                .update_clustered(server, cl, acc, name, body, reply)
                .map_err(|e| ("stream_update_response", e)),
            ["STREAM", "DELETE", name] => {
                if cl.meta.read().stream(&acc.name, name).is_none() {
                    return Some(Err((
                        "stream_delete_response",
                        ApiError::stream_not_found(),
                    )));
                }
                propose(
                    cl,
                    reply,
                    MetaOp::RemoveStream {
                        account: acc.name.clone(),
                        stream: name.to_string(),
                    },
                );
                Ok(None)
            }
            ["STREAM", "NAMES"] | ["STREAM", "LIST"] => self.list_clustered(cl, acc, &toks, body),
            ["STREAM", "LEADER", "STEPDOWN", name] => {
                let sa = cl.meta.read().stream(&acc.name, name).cloned();
                match sa {
                    Some(sa) => {
                        let leader = cl
                            .view(&sa.group)
                            .and_then(|v| v.leader)
                            .map(|l| cl.name_of(l));
                        let to = match preferred(body, &sa.peers, leader.as_deref()) {
                            Ok(to) => to,
                            Err(e) => return Some(Err(("stream_leader_stepdown_response", e))),
                        };
                        // One replica: nothing to hand over, and nats-server says success.
                        if sa.peers.len() > 1 {
                            cl.transfer(&sa.group, to.map(|n| crate::raft::peer::node_id(&n)));
                        }
                        Ok(Some(json!({
                            "type": "io.nats.jetstream.api.v1.stream_leader_stepdown_response",
                            "success": true,
                        })))
                    }
                    None => Err((
                        "stream_leader_stepdown_response",
                        ApiError::stream_not_found(),
                    )),
                }
            }
            ["INFO"] => {
                let mut v = self.account_info(acc);
                v["streams"] = json!(cl.meta.read().account_streams(&acc.name).count());
                Ok(Some(v))
            }
            _ => return None,
        })
    }

    fn create_clustered(
        self: &Arc<Self>,
        server: &Arc<Server>,
        cl: &Arc<Clustered>,
        acc: &Arc<JsAccount>,
        name: &str,
        body: &[u8],
        reply: &str,
    ) -> Result<Option<Value>, ApiError> {
        let cfg =
            Self::parse_stream_config(name, body, server.options().max_payload, self.strict, true)?;
        if cfg.num_replicas > 1
            && (cfg.mirror.is_some() || cfg.sources.as_ref().is_some_and(|s| !s.is_empty()))
        {
            // Said loudly rather than copied on every replica independently.
            return Err(ApiError::stream_create(
                "replicated mirrors and sources are not supported yet",
            ));
        }
        let meta = cl.meta.read();
        if let Some(sa) = meta.stream(&acc.name, name) {
            if sa.config != cfg {
                return Err(ApiError::stream_name_exists());
            }
            // The same create again: the stream as this server holds it, or as assigned.
            let mut v = match acc.stream(name).and_then(|h| h.info()) {
                Some(v) => v,
                None => json!({
                    "config": sa.config,
                    "created": crate::jetstream::time::rfc3339_nanos(sa.created),
                    "state": {"messages": 0, "bytes": 0, "first_seq": 0, "last_seq": 0, "consumer_count": 0},
                    "cluster": {"name": cl.cluster_name, "raft_group": sa.group},
                }),
            };
            v = create_response(v, &[], false);
            // nats-server's meta leader answers: it knows since when only if it also leads
            // the stream.
            if !cl.is_meta_leader() {
                if let Some(c) = v["cluster"].as_object_mut() {
                    c.remove("leader_since");
                }
            }
            return Ok(Some(v));
        }
        check_overlap_with(
            &cfg,
            meta.account_streams(&acc.name).map(|sa| sa.config.clone()),
        )?;
        let count = meta.account_streams(&acc.name).count() as i64;
        if acc.limits.max_streams >= 0 && count >= acc.limits.max_streams {
            return Err(ApiError::max_streams());
        }
        self.check_max_bytes(acc, &cfg)?;
        let candidates = candidates(server);
        let peers = meta
            .place(&candidates, cfg.num_replicas.max(1) as usize)
            .ok_or_else(ApiError::no_suitable_peers)?;
        drop(meta);
        let sa = StreamAssignment {
            account: acc.name.clone(),
            group: group_name(cfg.num_replicas.max(1), cfg.storage),
            config: cfg,
            created: crate::clock::unix_nanos(),
            peers,
        };
        propose(cl, reply, MetaOp::AddStream { sa });
        Ok(None)
    }

    fn update_clustered(
        self: &Arc<Self>,
        server: &Arc<Server>,
        cl: &Arc<Clustered>,
        acc: &Arc<JsAccount>,
        name: &str,
        body: &[u8],
        reply: &str,
    ) -> Result<Option<Value>, ApiError> {
        let cfg =
            Self::parse_stream_config(name, body, server.options().max_payload, self.strict, true)?;
        let meta = cl.meta.read();
        let sa = meta
            .stream(&acc.name, name)
            .ok_or_else(ApiError::stream_not_found)?;
        if cfg.num_replicas.max(1) as usize != sa.peers.len() {
            // Moving data between servers comes with replica changes (not yet).
            return Err(ApiError::stream_update(
                "changing the number of replicas is not supported yet",
            ));
        }
        check_overlap_with(
            &cfg,
            meta.account_streams(&acc.name).map(|sa| sa.config.clone()),
        )?;
        let sa = StreamAssignment {
            config: cfg,
            ..sa.clone()
        };
        drop(meta);
        propose(cl, reply, MetaOp::UpdateStream { sa });
        Ok(None)
    }

    fn list_clustered(
        &self,
        cl: &Clustered,
        acc: &JsAccount,
        toks: &[&str],
        body: &[u8],
    ) -> Result<Option<Value>, (&'static str, ApiError)> {
        let list = toks[1] == "LIST";
        let kind = if list {
            "stream_list_response"
        } else {
            "stream_names_response"
        };
        let l: ListReq = errors::parse_opt(body, self.strict).map_err(|e| (kind, e))?;
        let meta = cl.meta.read();
        let all: Vec<&StreamAssignment> = meta
            .account_streams(&acc.name)
            .filter(|sa| {
                l.subject.is_empty()
                    || sa
                        .config
                        .subjects
                        .iter()
                        .any(|s| crate::jetstream::config::subjects_overlap(s, &l.subject))
            })
            .collect();
        let total = all.len();
        let limit = if list { 256 } else { 1024 };
        let page: Vec<&StreamAssignment> = all.into_iter().skip(l.offset).take(limit).collect();
        if !list {
            let names: Vec<&str> = page.iter().map(|sa| sa.config.name.as_str()).collect();
            let names = if names.is_empty() {
                Value::Null
            } else {
                json!(names)
            };
            return Ok(Some(json!({
                "type": "io.nats.jetstream.api.v1.stream_names_response",
                "total": total, "offset": l.offset, "limit": limit, "streams": names,
            })));
        }
        // The infos this server holds itself; the others are named as missing.
        let mut infos = Vec::new();
        let mut missing = Vec::new();
        for sa in page {
            match acc.stream(&sa.config.name).and_then(|h| h.info()) {
                Some(v) => infos.push(list_entry(v)),
                None => missing.push(sa.config.name.clone()),
            }
        }
        let missing = if missing.is_empty() {
            Value::Null
        } else {
            json!(missing)
        };
        Ok(Some(json!({
            "type": "io.nats.jetstream.api.v1.stream_list_response",
            "total": total, "offset": l.offset, "limit": limit, "streams": infos, "missing": missing,
        })))
    }

    /// Starts this server's replica of an assigned stream (its files are kept from before a
    /// restart); it answers for the stream once [`JetStream::set_stream_leader`] says so.
    pub(crate) fn start_replica(
        self: &Arc<Self>,
        server: &Arc<Server>,
        sa: &StreamAssignment,
        replica: Option<ReplicaLink>,
    ) -> Result<Arc<StreamHandle>, ApiError> {
        let acc = self.account(&sa.account).ok_or_else(|| {
            ApiError::stream_create("JetStream is not enabled for the account here")
        })?;
        if let Some(h) = acc.stream(&sa.config.name) {
            return Ok(h);
        }
        let dir = (sa.config.storage == Storage::File).then(|| acc.dir.join(&sa.config.name));
        let fresh = dir.as_ref().is_none_or(|d| !d.join("meta.inf").exists());
        let h = stream::spawn(stream::Spawn {
            cfg: sa.config.clone(),
            created: sa.created,
            dir,
            server: Arc::downgrade(server),
            account: acc.account.clone(),
            shared: self.clone(),
            fresh,
            replica,
        })?;
        acc.streams.write().insert(h.name.clone(), h.clone());
        if !fresh {
            tracing::info!(
                "  Restored {} messages for stream '{} > {}'",
                h.msgs.load(Ordering::Relaxed),
                acc.name,
                h.name
            );
        }
        Ok(h)
    }

    /// This server now answers for the stream, or no longer does: it takes the stream's
    /// subjects in only while it does.
    pub(crate) fn set_stream_leader(
        &self,
        server: &Arc<Server>,
        account: &str,
        h: &Arc<StreamHandle>,
        leader: bool,
    ) {
        h.leader.store(leader, Ordering::Relaxed);
        let Some(acc) = self.account(account) else {
            return;
        };
        if leader {
            self.subscribe_stream(server, &acc, h);
        } else {
            for s in h.subs.lock().drain(..) {
                server.remove_sub(&s);
            }
        }
    }

    /// An assigned stream's new configuration; its leader answers the update.
    pub(crate) fn update_replica(
        &self,
        server: &Arc<Server>,
        sa: &StreamAssignment,
        h: &Arc<StreamHandle>,
        reply: Option<String>,
    ) {
        let subjects_changed = h.cfg.read().subjects != sa.config.subjects;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        h.send(Cmd::Update {
            cfg: Box::new(sa.config.clone()),
            done: tx,
        });
        let r = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| Err(ApiError::stream_update("stream did not answer")));
        let leader = h.leader.load(Ordering::Relaxed);
        if subjects_changed && leader {
            if let Some(acc) = self.account(&sa.account) {
                self.subscribe_stream(server, &acc, h);
            }
        }
        let Some(reply) = reply else { return };
        let Some(acc) = self.account(&sa.account) else {
            return;
        };
        let body = match r {
            Ok(v) => v,
            Err(e) => errors::error_body("stream_update_response", e),
        };
        let mut sender = InternalSender::default();
        sender.send(
            server,
            &acc.account,
            Msg::new(&reply, body.to_string().as_bytes()),
        );
        advisory::stream_action(server, &acc.account, &mut sender, &sa.config.name, "modify");
        sender.flush(server);
    }

    /// The meta leader answers a delete once it is applied.
    pub(crate) fn stream_removed(
        &self,
        server: &Arc<Server>,
        account: &str,
        stream: &str,
        reply: Option<&str>,
    ) {
        let Some(acc) = self.account(account) else {
            return;
        };
        let mut sender = InternalSender::default();
        if let Some(r) = reply {
            let body =
                json!({"type": "io.nats.jetstream.api.v1.stream_delete_response", "success": true});
            sender.send(
                server,
                &acc.account,
                Msg::new(r, body.to_string().as_bytes()),
            );
        }
        advisory::stream_action(server, &acc.account, &mut sender, stream, "delete");
        sender.flush(server);
    }
}

/// The JetStream servers a new stream may be placed on: this one and those routed to.
fn candidates(server: &Server) -> Vec<String> {
    let mut v = vec![server.server_name.clone()];
    if let Some(c) = crate::cluster::Cluster::of(server) {
        v.extend(c.jetstream_peers().into_iter().filter(|n| !n.is_empty()));
    }
    v.sort();
    v.dedup();
    v
}

fn propose(cl: &Clustered, reply: &str, op: MetaOp) {
    let entry = MetaEntry {
        proposer: cl.me,
        reply: Some(reply.to_string()),
        op,
    };
    cl.propose(
        META_GROUP,
        serde_json::to_vec(&entry)
            .expect("meta entries serialize")
            .into(),
    );
}

/// The `placement.preferred` server of a stepdown request: one holding a replica that does
/// not lead already (nats-server's 10005 otherwise).
fn preferred(
    body: &[u8],
    peers: &[String],
    leader: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let Some(p) = preferred_server(body)? else {
        return Ok(None);
    };
    if !peers.contains(&p) {
        return Err(ApiError::placement_refused(&format!(
            "preferred server \"{p}\" not known"
        )));
    }
    if leader == Some(p.as_str()) {
        return Err(ApiError::placement_refused(&format!(
            "preferred server \"{p}\" is already leader"
        )));
    }
    Ok(Some(p))
}

/// The `placement.preferred` server of a meta stepdown request, if any.
pub(crate) fn preferred_server(body: &[u8]) -> Result<Option<String>, ApiError> {
    #[derive(Deserialize, Default)]
    struct Placement {
        #[serde(default)]
        preferred: Option<String>,
    }
    #[derive(Deserialize, Default)]
    struct Req {
        #[serde(default)]
        placement: Option<Placement>,
    }
    let r: Req = errors::parse_opt(body, false)?;
    Ok(r.placement
        .and_then(|p| p.preferred)
        .filter(|p| !p.is_empty()))
}
