//! Clustered JetStream: the meta group (which streams exist and where), one Raft group per
//! replicated stream, and the runtime that drives them all from one thread over the routes.
//!
//! Every JetStream server of a cluster is a member of the meta group. Its leader answers the
//! account-level `$JS.API` requests and proposes stream assignments; each server applies the
//! meta log and starts the replicas assigned to it. A replicated stream's leader subscribes to
//! the stream's subjects, proposes each message to the stream's group and answers the
//! publisher once a quorum has stored it and it is applied; followers apply the same entries.

pub mod meta;
pub mod nrg;
pub mod replicas;
pub mod runtime;
pub mod stream_entry;

use std::collections::HashMap;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::raft::peer::peer_of;
use crate::raft::NodeId;
use crate::server::subscription::Subscription;
use meta::{MetaState, META_GROUP};

/// `/healthz` before the meta group has started here (nats-server's words).
pub const META_RECOVERING: &str = "JetStream is still recovering meta layer";

/// One tick of every group's clock.
pub const TICK: Duration = Duration::from_millis(50);
/// Ticks between a leader's heartbeats.
pub const HEARTBEAT_TICKS: u32 = 4;
/// Ticks without a leader before a member campaigns (randomised up to twice as many).
pub const ELECTION_TICKS: u32 = 30;

/// What the runtime thread is asked to do.
pub enum Event {
    /// Raft messages from a peer, for `group`.
    Inbound { group: String, payload: Bytes },
    /// A proposal for `group` (dropped unless this server leads it).
    Propose { group: String, data: Bytes },
    /// Hand leadership of `group` to `to`, or to the most current peer.
    Transfer { group: String, to: Option<NodeId> },
    /// Stop every group.
    Shutdown,
}

/// What others may read about a group without asking the runtime.
#[derive(Clone, Debug, Default)]
pub struct GroupView {
    pub leader: Option<NodeId>,
    pub term: u64,
    pub voters: Vec<NodeId>,
    /// When this server learnt of the current leader (unix nanos).
    pub leader_since: Option<i64>,
    pub committed: u64,
    pub applied: u64,
    pub last_index: u64,
    /// On the leader: how far each follower's log matches.
    pub matched: Vec<(NodeId, u64)>,
    /// How long ago (nanoseconds) each peer was last heard from.
    pub heard: Vec<(NodeId, i64)>,
    /// This member has a leader and has committed all it said was committed (or leads).
    pub current: bool,
}

/// This server's part in clustered JetStream.
pub struct Clustered {
    /// This server's member id in every group.
    pub me: NodeId,
    pub server_name: String,
    pub cluster_name: String,
    tx: Mutex<Sender<Event>>,
    /// The applied meta state.
    pub meta: RwLock<MetaState>,
    views: RwLock<HashMap<String, GroupView>>,
    /// Server names by member id, as learnt from routes and assignments.
    names: RwLock<HashMap<NodeId, String>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    sub: Mutex<Option<Arc<Subscription>>>,
}

impl std::fmt::Debug for Clustered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clustered")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl Clustered {
    /// A group's state as of the runtime's last turn.
    pub fn view(&self, group: &str) -> Option<GroupView> {
        self.views.read().get(group).cloned()
    }

    /// Whether this server leads the meta group.
    pub fn is_meta_leader(&self) -> bool {
        self.view(META_GROUP)
            .is_some_and(|v| v.leader == Some(self.me))
    }

    /// Whether this server leads `group`.
    pub fn is_leader(&self, group: &str) -> bool {
        self.view(group).is_some_and(|v| v.leader == Some(self.me))
    }

    /// The server name of member `id` (its peer id when the name is not known).
    pub fn name_of(&self, id: NodeId) -> String {
        self.names
            .read()
            .get(&id)
            .cloned()
            .unwrap_or_else(|| peer_of(id))
    }

    /// Remembers the name of the server with member id `id`.
    pub fn learn_name(&self, name: &str) -> NodeId {
        let id = crate::raft::peer::node_id(name);
        self.names
            .write()
            .entry(id)
            .or_insert_with(|| name.to_string());
        id
    }

    /// Queues a proposal for `group`.
    pub fn propose(&self, group: &str, data: Bytes) {
        let _ = self.tx.lock().send(Event::Propose {
            group: group.to_string(),
            data,
        });
    }

    /// Asks `group`'s leader (if it is this server) to hand leadership over.
    pub fn transfer(&self, group: &str, to: Option<NodeId>) {
        let _ = self.tx.lock().send(Event::Transfer {
            group: group.to_string(),
            to,
        });
    }

    /// Hands every group this server leads to its most current peer and waits (up to
    /// `within`) until none is led from here: leaving servers do not leave groups leaderless
    /// for an election timeout.
    pub fn hand_over(&self, within: Duration) {
        let led = |cl: &Clustered| -> Vec<String> {
            cl.views
                .read()
                .iter()
                .filter(|(_, v)| v.leader == Some(cl.me) && v.voters.len() > 1)
                .map(|(g, _)| g.clone())
                .collect()
        };
        let groups = led(self);
        if groups.is_empty() {
            return;
        }
        tracing::info!(
            "JetStream cluster handing over leadership of {} groups",
            groups.len()
        );
        for g in &groups {
            self.transfer(g, None);
        }
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline && !led(self).is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Why this server is not current with the meta group, if it is not.
    pub fn meta_unhealthy(&self) -> Option<String> {
        match self.view(META_GROUP) {
            Some(v) if v.leader.is_some() && v.current => None,
            Some(v) if v.leader.is_some() => {
                Some("JetStream is not current with the meta leader".into())
            }
            Some(_) => Some("JetStream has not established contact with a meta leader".into()),
            None => Some(META_RECOVERING.into()),
        }
    }

    /// The first stream replica held here that is not current, if any.
    pub fn replicas_unhealthy(&self) -> Option<String> {
        let meta = self.meta.read();
        for sa in meta.streams.values() {
            if sa.peers.len() < 2 || !sa.peers.contains(&self.server_name) {
                continue;
            }
            if !self.view(&sa.group).is_some_and(|v| v.current) {
                return Some(format!(
                    "JetStream stream '{} > {}' is not current",
                    sa.account, sa.config.name
                ));
            }
        }
        None
    }

    /// The `meta_cluster` object of `/jsz`, as nats-server shows it.
    pub fn meta_cluster_info(&self) -> serde_json::Value {
        let view = self.view(META_GROUP).unwrap_or_default();
        let size = view.voters.len().max(1);
        let mut v = serde_json::json!({
            "name": self.cluster_name,
            "cluster_size": size,
            "quorum_needed": size / 2 + 1,
            "pending": 0,
            "pending_requests": 0,
            "pending_infos": 0,
            "snapshot": {"pending_entries": 0, "pending_size": 0, "last_time": "0001-01-01T00:00:00Z"},
        });
        if let Some(l) = view.leader {
            v["leader"] = serde_json::json!(self.name_of(l));
            v["peer"] = serde_json::json!(peer_of(l));
        }
        {
            let mut replicas: Vec<(String, serde_json::Value)> = view
                .voters
                .iter()
                .filter(|p| **p != self.me)
                .map(|p| {
                    let heard = view.heard.iter().find(|(id, _)| id == p).map(|(_, t)| *t);
                    let matched = view
                        .matched
                        .iter()
                        .find(|(id, _)| id == p)
                        .map_or(0, |(_, m)| *m);
                    let name = self.name_of(*p);
                    // The leader knows how far each follower is; a follower knows the leader.
                    let current = if view.leader == Some(self.me) {
                        heard.is_some() && matched >= view.committed
                    } else {
                        view.leader == Some(*p) && view.current
                    };
                    let mut r = serde_json::json!({
                        "name": name,
                        "current": current,
                        "active": heard.unwrap_or(0),
                        "peer": peer_of(*p),
                    });
                    if heard.is_none() {
                        r["offline"] = serde_json::json!(true);
                    }
                    (name, r)
                })
                .collect();
            replicas.sort_by(|a, b| a.0.cmp(&b.0));
            if !replicas.is_empty() {
                v["replicas"] =
                    serde_json::Value::Array(replicas.into_iter().map(|(_, r)| r).collect());
            }
        }
        v
    }

    /// How many replicated streams this server holds a replica of (`/jsz` `ha_assets`).
    pub fn ha_assets(&self) -> usize {
        self.meta
            .read()
            .streams
            .values()
            .filter(|sa| sa.peers.len() > 1 && sa.peers.contains(&self.server_name))
            .count()
    }

    /// Stops the runtime (groups' logs are on disk).
    pub fn shutdown(&self) {
        let _ = self.tx.lock().send(Event::Shutdown);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }

    fn set_view(&self, group: &str, v: GroupView) {
        self.views.write().insert(group.to_string(), v);
    }

    fn drop_view(&self, group: &str) {
        self.views.write().remove(group);
    }
}

/// A replicated stream's way to its group: where its thread sends proposals.
#[derive(Clone, Debug)]
pub struct ReplicaLink {
    pub group: String,
    pub cl: Arc<Clustered>,
}
