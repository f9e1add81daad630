//! A replicated stream's side of its Raft group: the leader proposes what it takes in, every
//! replica applies the committed entries through the same code, and the store remembers which
//! entry it holds last so that a restart applies each entry exactly once.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde_json::{json, Value};

use super::{Op, Stream};
use crate::clock::unix_nanos;
use crate::jetstream::clustered::stream_entry::{ApiOp, StreamEntry};
use crate::jetstream::clustered::ReplicaLink;
use crate::jetstream::errors::ApiError;
use crate::jetstream::store::Store;
use crate::jetstream::time::rfc3339_nanos;
use crate::protocol::Msg;
use crate::server::Server;

/// The file beside a replicated file stream's messages: the last applied log index and the
/// store's last sequence after it, written once the store has written both.
const APPLIED_FILE: &str = "raft_applied";

/// A replicated stream's link to its group and how far it has applied the log.
pub(super) struct Replica {
    link: ReplicaLink,
    /// The last entry applied.
    applied: u64,
    /// Entries up to here are already in the store (from before a restart).
    skip_until: u64,
    /// `applied` moved since it was last written.
    dirty: bool,
}

impl Stream {
    fn applied_path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(APPLIED_FILE))
    }

    /// Joins the group: finds which entries the store already holds. When the store and the
    /// applied index disagree (a crash between writing one and the other), the store is
    /// emptied and rebuilt from the log, which holds every entry.
    pub(super) fn open_replica(&mut self, link: ReplicaLink) -> Result<Replica, ApiError> {
        let saved = self
            .applied_path()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| {
                let (i, s) = t.trim().split_once(' ')?;
                Some((i.parse::<u64>().ok()?, s.parse::<u64>().ok()?))
            });
        let last = self.store.state().last_seq;
        let skip_until = match saved {
            Some((index, seq)) if seq == last => index,
            None if last == 0 => 0,
            _ => {
                tracing::warn!(
                    "JetStream stream '{} > {}': store and log disagree (store at {last}, applied {saved:?}); rebuilding from the log",
                    self.account.name,
                    self.name
                );
                self.reset_store()?;
                0
            }
        };
        Ok(Replica {
            link,
            applied: skip_until,
            skip_until,
            dirty: false,
        })
    }

    fn reset_store(&mut self) -> Result<(), ApiError> {
        let Some(dir) = self.dir.clone() else {
            self.store = Store::memory();
            return Ok(());
        };
        let msgs = dir.join("msgs");
        let _ = std::fs::remove_dir_all(&msgs);
        let _ = std::fs::remove_file(dir.join(APPLIED_FILE));
        self.store = Store::open_file_keyed(&msgs, self.shared.sync_always, self.key.clone())
            .map_err(|e| ApiError::stream_create(&format!("could not reset the store: {e}")))?;
        Ok(())
    }

    /// Writes the applied index, once the store has written what it covers.
    pub(super) fn save_applied(&mut self) {
        let Some(r) = self.replica.as_mut() else {
            return;
        };
        if !r.dirty {
            return;
        }
        let Some(path) = self.dir.as_ref().map(|d| d.join(APPLIED_FILE)) else {
            r.dirty = false;
            return;
        };
        if self.store.flush().is_err() {
            return;
        }
        let text = format!("{} {}", r.applied, self.store.state().last_seq);
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, &path).is_ok() {
            r.dirty = false;
        }
    }

    /// The leader takes a message in: into the log, answered once applied.
    pub(super) fn propose_msg(
        &mut self,
        subject: String,
        reply: Option<String>,
        hdr: Bytes,
        data: Bytes,
    ) {
        let Some(r) = &self.replica else { return };
        let e = StreamEntry::Msg {
            proposer: r.link.cl.me,
            ts: unix_nanos(),
            subject,
            reply,
            hdr,
            data,
        };
        r.link.cl.propose(&r.link.group, e.encode());
    }

    /// The leader takes a stream-changing request in: into the log, answered once applied.
    pub(super) fn propose_api(&mut self, op: Op, reply: Option<String>, body: Bytes) {
        let Some(r) = &self.replica else { return };
        let Some(op) = to_entry(op) else { return };
        let e = StreamEntry::Api {
            proposer: r.link.cl.me,
            op,
            reply,
            body,
        };
        r.link.cl.propose(&r.link.group, e.encode());
    }

    /// Whether this server acts for the stream: it leads its group, or it is not replicated.
    pub(super) fn answers(&self) -> bool {
        self.replica.is_none()
            || self
                .handle
                .upgrade()
                .is_some_and(|h| h.leader.load(Ordering::Relaxed))
    }

    /// The leader hands its consumers' changed positions to the followers.
    pub(super) fn replicate_consumers(&mut self) {
        let Some(r) = &self.replica else { return };
        if !self.answers() {
            return;
        }
        for (name, c) in self.consumers.iter_mut().filter(|(_, c)| c.replicate) {
            c.replicate = false;
            let e = StreamEntry::ConsumerState {
                proposer: r.link.cl.me,
                name: name.clone(),
                state: serde_json::to_vec(&c.st).expect("state serializes").into(),
            };
            r.link.cl.propose(&r.link.group, e.encode());
        }
    }

    /// The leader tells the followers which acknowledged messages it removed.
    pub(super) fn replicate_removal(&mut self, seqs: Vec<u64>) {
        let Some(r) = &self.replica else { return };
        if seqs.is_empty() {
            return;
        }
        let e = StreamEntry::Remove {
            proposer: r.link.cl.me,
            seqs,
        };
        r.link.cl.propose(&r.link.group, e.encode());
    }

    /// Applies committed entries; the member that proposed one answers it.
    pub(super) fn apply_replicated(
        &mut self,
        server: &Server,
        entries: Vec<(u64, Bytes)>,
        replay_until: u64,
    ) {
        let Some(me) = self.replica.as_ref().map(|r| r.link.cl.me) else {
            return;
        };
        for (index, data) in entries {
            let r = self.replica.as_mut().expect("replicated");
            if index <= r.skip_until || index <= r.applied {
                continue;
            }
            r.applied = index;
            r.dirty = true;
            let live = index > replay_until;
            let answer = |proposer: u64| proposer == me && live;
            let Some(entry) = StreamEntry::decode(data) else {
                tracing::error!(
                    "JetStream stream '{} > {}': log entry {index} could not be read",
                    self.account.name,
                    self.name
                );
                continue;
            };
            // A replica that did not take the request in applies it silently: acks, API
            // answers, advisories and republished copies come from the proposer alone.
            let proposer = match &entry {
                StreamEntry::Msg { proposer, .. }
                | StreamEntry::Api { proposer, .. }
                | StreamEntry::ConsumerState { proposer, .. }
                | StreamEntry::Remove { proposer, .. } => *proposer,
            };
            self.sender.set_muted(!answer(proposer));
            match entry {
                StreamEntry::Msg {
                    ts,
                    subject,
                    reply,
                    hdr,
                    data,
                    ..
                } => {
                    // Acks wait for the store write (not through the muted sender).
                    let reply = reply.filter(|_| answer(proposer));
                    self.apply_ts = Some(ts);
                    self.process_msg(server, &subject, reply, &hdr, &data);
                    self.apply_ts = None;
                }
                StreamEntry::Api {
                    op, reply, body, ..
                } => {
                    let resp = self.api(server, from_entry(op), &body);
                    if let (Some(reply), Some(resp)) = (reply, resp) {
                        self.sender
                            .send(server, &self.account, Msg::new(&reply, resp.as_bytes()));
                    }
                }
                // The leader's own state and removals are already in place (live).
                StreamEntry::ConsumerState { name, state, .. } if !answer(proposer) => {
                    if let (Some(c), Ok(st)) = (
                        self.consumers.get_mut(&name),
                        serde_json::from_slice(&state),
                    ) {
                        c.st = st;
                        c.recount(&self.store);
                        c.dirty = true;
                    }
                }
                StreamEntry::Remove { seqs, .. } if !answer(proposer) => {
                    for seq in seqs {
                        self.remove_msg(seq);
                    }
                }
                StreamEntry::ConsumerState { .. } | StreamEntry::Remove { .. } => {}
            }
            self.sender.set_muted(false);
        }
    }
    /// Answers a create request (clustered: once the stream has a leader).
    pub(super) fn answer_created(&mut self, server: &Server, reply: &str) {
        let v = crate::jetstream::requests::create_response(
            self.info_value(&Default::default()),
            &[],
            true,
        );
        let body = v.to_string();
        self.sender
            .send(server, &self.account, Msg::new(reply, body.as_bytes()));
        crate::jetstream::advisory::stream_action(
            server,
            &self.account,
            &mut self.sender,
            &self.name,
            "create",
        );
    }

    /// The `cluster` block of the stream's info.
    pub(super) fn cluster_info(&self) -> Value {
        let Some(cl) = self.shared.clustered() else {
            return json!({"leader": self.shared.server_name});
        };
        let Some(r) = &self.replica else {
            return json!({"name": cl.cluster_name, "leader": cl.server_name});
        };
        let Some(view) = cl.view(&r.link.group) else {
            return json!({"name": cl.cluster_name, "raft_group": r.link.group});
        };
        let mut v = json!({"name": cl.cluster_name, "raft_group": r.link.group});
        if let Some(l) = view.leader {
            v["leader"] = json!(cl.name_of(l));
        }
        if let Some(t) = view.leader_since {
            v["leader_since"] = json!(rfc3339_nanos(t));
        }
        // Raft traffic goes through the system account, as nats-server says.
        v["system_account"] = json!(true);
        v["traffic_account"] = json!("$SYS");
        let mut replicas: Vec<(String, Value)> = view
            .voters
            .iter()
            .filter(|p| Some(**p) != view.leader)
            .map(|p| {
                let matched = view
                    .matched
                    .iter()
                    .find(|(id, _)| id == p)
                    .map_or(0, |(_, m)| *m);
                let heard = view.heard.iter().find(|(id, _)| id == p).map(|(_, t)| *t);
                let lag = view.last_index.saturating_sub(matched);
                let name = cl.name_of(*p);
                let mut r = json!({
                    "name": name,
                    "current": lag == 0 && heard.is_some(),
                    "active": heard.unwrap_or(0),
                    "peer": crate::raft::peer::peer_of(*p),
                });
                if heard.is_none() {
                    r["offline"] = json!(true);
                }
                if lag > 0 {
                    r["lag"] = json!(lag);
                }
                (name, r)
            })
            .collect();
        replicas.sort_by(|a, b| a.0.cmp(&b.0));
        let replicas: Vec<Value> = replicas.into_iter().map(|(_, r)| r).collect();
        if !replicas.is_empty() {
            v["replicas"] = Value::Array(replicas);
        }
        v
    }
}

/// Whether `op` changes the stream or its consumers (so it goes through the log).
pub(super) fn changes(op: &Op) -> bool {
    matches!(
        op,
        Op::Purge
            | Op::MsgDelete
            | Op::ConsumerCreate { .. }
            | Op::ConsumerDelete(_)
            | Op::ConsumerPause(_)
            | Op::ConsumerUnpin(_)
            | Op::ConsumerReset { .. }
    )
}

fn to_entry(op: Op) -> Option<ApiOp> {
    Some(match op {
        Op::Purge => ApiOp::Purge,
        Op::MsgDelete => ApiOp::MsgDelete,
        Op::ConsumerCreate {
            name,
            filter,
            durable_api,
        } => ApiOp::ConsumerCreate {
            name,
            filter,
            durable_api,
        },
        Op::ConsumerDelete(n) => ApiOp::ConsumerDelete(n),
        Op::ConsumerPause(n) => ApiOp::ConsumerPause(n),
        Op::ConsumerUnpin(n) => ApiOp::ConsumerUnpin(n),
        Op::ConsumerReset { name, too_new } => ApiOp::ConsumerReset { name, too_new },
        _ => return None,
    })
}

fn from_entry(op: ApiOp) -> Op {
    match op {
        ApiOp::Purge => Op::Purge,
        ApiOp::MsgDelete => Op::MsgDelete,
        ApiOp::ConsumerCreate {
            name,
            filter,
            durable_api,
        } => Op::ConsumerCreate {
            name,
            filter,
            durable_api,
        },
        ApiOp::ConsumerDelete(n) => Op::ConsumerDelete(n),
        ApiOp::ConsumerPause(n) => Op::ConsumerPause(n),
        ApiOp::ConsumerUnpin(n) => Op::ConsumerUnpin(n),
        ApiOp::ConsumerReset { name, too_new } => Op::ConsumerReset { name, too_new },
    }
}
