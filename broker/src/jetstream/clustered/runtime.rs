//! The one thread that drives every Raft group of this server: it ticks them, feeds them their
//! peers' messages, persists and sends what they ask (one batch per group and peer per turn),
//! and applies what they commit — the meta log to the meta state and its assignments, a
//! stream's log to the stream's own thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};

use super::meta::{MetaEntry, MetaOp, StreamAssignment, META_GROUP};
use super::{nrg, Clustered, Event, GroupView, ReplicaLink, ELECTION_TICKS, HEARTBEAT_TICKS, TICK};
use crate::clock::unix_nanos;
use crate::jetstream::stream::{Cmd, StreamHandle};
use crate::jetstream::JetStream;
use crate::protocol::Msg;
use crate::raft::driver::Driver;
use crate::raft::peer::node_id;
use crate::raft::{Body, Config, Entry, EntryKind, Index, NodeId, Role};
use crate::server::internal::InternalSender;
use crate::server::subscription::InternalHandler;
use crate::server::Server;

/// The file in a group's directory naming its first voters (server names, one per line).
const PEERS_FILE: &str = "peers";
/// Marks a group member that lost its log and has not caught up since.
const ABSTAIN_FILE: &str = "abstain";
/// How long the set of known servers must stay the same before the meta group starts.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a new stream group's first peer waits before campaigning.
const FIRST_CAMPAIGN: std::time::Duration = std::time::Duration::from_millis(300);

/// What a group replicates.
enum Kind {
    Meta,
    Stream { account: String, stream: String },
}

struct Group {
    driver: Driver,
    kind: Kind,
    /// Entries up to here were applied before a restart: applied again without answers.
    replay_until: Index,
    leader: Option<NodeId>,
    leader_since: Option<i64>,
    /// A stream create's reply subject, answered by the group's first leader.
    pending_reply: Option<String>,
    /// A new group's first peer campaigns at this moment rather than after a timeout.
    campaign_at: Option<Instant>,
    /// When each peer was last heard from.
    heard: HashMap<NodeId, Instant>,
    /// It lost its log and has not caught up yet (see [`ABSTAIN_FILE`]).
    abstaining: bool,
}

/// The runtime thread's state.
struct Runtime {
    cl: Arc<Clustered>,
    server: Weak<Server>,
    js: Weak<JetStream>,
    /// `<store_dir>/jetstream/$SYS/_js_`.
    root: PathBuf,
    groups: HashMap<String, Group>,
    sender: InternalSender,
    out: HashMap<(String, NodeId), BytesMut>,
    /// The JetStream servers seen and since when that set has not changed.
    boot: Option<(Vec<String>, Instant)>,
    last_peer_check: Instant,
    /// A meta leader was heard before this server's meta group started.
    meta_leader_seen: bool,
    /// Streams assigned here while the meta log was catching up, started once it is current.
    deferred: Vec<(StreamAssignment, Option<String>)>,
}

/// Starts clustered JetStream for `js`: the runtime thread and the `$NRG` subscription.
pub fn start(server: &Arc<Server>, js: &Arc<JetStream>, cluster_name: &str) -> Arc<Clustered> {
    let (tx, rx) = std::sync::mpsc::channel();
    let me = node_id(&server.server_name);
    let cl = Arc::new(Clustered {
        me,
        server_name: server.server_name.clone(),
        cluster_name: cluster_name.to_string(),
        tx: Mutex::new(tx.clone()),
        meta: RwLock::new(Default::default()),
        views: RwLock::new(HashMap::new()),
        names: RwLock::new(HashMap::new()),
        thread: Mutex::new(None),
        sub: Mutex::new(None),
    });
    cl.learn_name(&server.server_name);
    let handler = {
        let tx = Mutex::new(tx);
        InternalHandler(Arc::new(move |m: &Msg<'_>| {
            if let Some(g) = nrg::group_of(m.subject) {
                let _ = tx.lock().send(Event::Inbound {
                    group: g.to_string(),
                    payload: Bytes::copy_from_slice(m.payload),
                });
            }
        }))
    };
    let sub =
        js.client
            .subscribe_internal(server, &server.system_account, &nrg::inbox(me), handler);
    *cl.sub.lock() = Some(sub);
    // `$JS.API.META.LEADER.STEPDOWN` in the system account: the meta leader hands over.
    let stepdown = {
        let weak = Arc::downgrade(&cl);
        let srv = Arc::downgrade(server);
        InternalHandler(Arc::new(move |m: &Msg<'_>| {
            let (Some(cl), Some(server)) = (weak.upgrade(), srv.upgrade()) else {
                return;
            };
            if !cl.is_meta_leader() {
                return;
            }
            let Some(reply) = m.reply.and_then(|r| std::str::from_utf8(r).ok()) else {
                return;
            };
            let body = match super::replicas::preferred_server(m.payload) {
                Ok(to) => {
                    cl.transfer(META_GROUP, to.map(|n| node_id(&n)));
                    serde_json::json!({"type": "io.nats.jetstream.api.v1.meta_leader_stepdown_response", "success": true})
                }
                Err(e) => crate::jetstream::errors::error_body("meta_leader_stepdown_response", e),
            };
            let mut sender = InternalSender::default();
            sender.send(
                &server,
                &server.system_account,
                Msg::new(reply, body.to_string().as_bytes()),
            );
            sender.flush(&server);
        }))
    };
    js.client.subscribe_internal(
        server,
        &server.system_account,
        "$JS.API.META.LEADER.STEPDOWN",
        stepdown,
    );
    let rt = Runtime {
        cl: cl.clone(),
        server: Arc::downgrade(server),
        js: Arc::downgrade(js),
        root: js.store_dir.join("$SYS").join("_js_"),
        groups: HashMap::new(),
        sender: InternalSender::default(),
        out: HashMap::new(),
        boot: None,
        last_peer_check: Instant::now(),
        meta_leader_seen: false,
        deferred: Vec::new(),
    };
    let t = std::thread::Builder::new()
        .name("js-raft".into())
        .spawn(move || rt.run(rx))
        .expect("spawn the Raft runtime");
    *cl.thread.lock() = Some(t);
    cl
}

fn group_config(me: NodeId, peers: Vec<NodeId>, abstain: bool) -> Config {
    Config {
        id: me,
        peers,
        election_ticks: ELECTION_TICKS,
        heartbeat_ticks: HEARTBEAT_TICKS,
        max_append: 512,
        seed: fastrand::u64(..),
        abstain,
    }
}

fn read_peers(dir: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(dir.join(PEERS_FILE)).ok()?;
    let v: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    (!v.is_empty()).then_some(v)
}

fn write_peers(dir: &Path, peers: &[String]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{PEERS_FILE}.tmp"));
    std::fs::write(&tmp, peers.join("\n"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(tmp, dir.join(PEERS_FILE))
}

impl Runtime {
    fn run(mut self, rx: Receiver<Event>) {
        let mut next_tick = Instant::now() + TICK;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Event::Shutdown) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(ev) => {
                    self.handle(ev);
                    let mut n = 0;
                    while let Ok(ev) = rx.try_recv() {
                        if matches!(ev, Event::Shutdown) {
                            return;
                        }
                        self.handle(ev);
                        n += 1;
                        if n >= 1024 {
                            break;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            let Some(server) = self.server.upgrade() else {
                return;
            };
            let ticked = Instant::now() >= next_tick;
            if ticked {
                next_tick = Instant::now() + TICK;
                let now = Instant::now();
                for g in self.groups.values_mut() {
                    g.driver.tick();
                    if g.campaign_at.is_some_and(|t| t <= now) {
                        g.campaign_at = None;
                        if g.driver.raft().leader().is_none() {
                            g.driver.campaign();
                        }
                    }
                }
                self.maybe_start_meta(&server);
                self.maybe_add_meta_peers(&server);
                if !self.deferred.is_empty() && self.meta_current() {
                    if let Some(js) = self.js.upgrade() {
                        for (sa, reply) in std::mem::take(&mut self.deferred) {
                            self.start_replica(&server, &js, &sa, reply, true);
                        }
                    }
                }
            }
            self.drive_all(&server, ticked);
            self.flush(&server);
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Inbound { group, payload } => {
                if group == META_GROUP && !self.groups.contains_key(META_GROUP) {
                    // A meta leader already runs: this server joins an existing cluster.
                    let msgs = nrg::unpack(payload.clone());
                    if msgs.iter().any(|m| matches!(m.body, Body::Append { .. })) {
                        self.meta_leader_seen = true;
                    }
                }
                if let Some(g) = self.groups.get_mut(&group) {
                    let now = Instant::now();
                    for m in nrg::unpack(payload) {
                        g.heard.insert(m.from, now);
                        g.driver.step(m);
                    }
                }
            }
            Event::Propose { group, data } => {
                if let Some(g) = self.groups.get_mut(&group) {
                    if let Err(e) = g.driver.propose(data) {
                        tracing::debug!("JetStream cluster: proposal to {group} dropped: {e}");
                    }
                }
            }
            Event::Transfer { group, to } => {
                if let Some(g) = self.groups.get_mut(&group) {
                    let raft = g.driver.raft();
                    if raft.role() != Role::Leader {
                        return;
                    }
                    let me = raft.id();
                    let target = to.or_else(|| {
                        raft.voters()
                            .iter()
                            .filter(|v| **v != me)
                            .max_by_key(|v| raft.matched(**v).unwrap_or(0))
                            .copied()
                    });
                    if let Some(t) = target {
                        g.driver.transfer_leader(t);
                    }
                }
            }
            Event::Shutdown => {}
        }
    }

    /// The JetStream servers this one can reach, itself included, sorted by name.
    fn known_servers(&self, server: &Server) -> Vec<String> {
        let mut v = vec![server.server_name.clone()];
        if let Some(c) = crate::cluster::Cluster::of(server) {
            for n in c.jetstream_peers() {
                if !n.is_empty() && !v.contains(&n) {
                    v.push(n);
                }
            }
        }
        v.sort();
        v
    }

    /// Starts the meta group: from its saved peers, or, the first time, once the expected
    /// number of JetStream servers (at least 2, and at least the configured routes, as
    /// nats-server) has been seen and stayed the same for a moment.
    fn maybe_start_meta(&mut self, server: &Server) {
        if self.groups.contains_key(META_GROUP) {
            return;
        }
        let dir = self.root.join(META_GROUP);
        let peers = match read_peers(&dir) {
            Some(p) => p,
            None => {
                let known = self.known_servers(server);
                let configured =
                    crate::cluster::Cluster::of(server).map_or(0, |c| c.configured_routes().len());
                let expected = configured.max(2);
                if known.len() < expected && !self.meta_leader_seen {
                    return;
                }
                match &self.boot {
                    // Joining a running cluster: no need to wait for the others.
                    _ if self.meta_leader_seen => {}
                    Some((set, since)) if *set == known && since.elapsed() >= SETTLE => {}
                    Some((set, _)) if *set == known => return,
                    _ => {
                        self.boot = Some((known, Instant::now()));
                        return;
                    }
                }
                tracing::info!(
                    "JetStream cluster bootstrapping the meta group with {}",
                    known.join(", ")
                );
                known
            }
        };
        let rejoin = self.meta_leader_seen;
        if let Err(e) = self.open_group(META_GROUP, Kind::Meta, &peers, None, rejoin) {
            tracing::error!("JetStream cluster: could not open the meta group: {e}");
        }
    }

    /// The meta leader adds JetStream servers that joined after the group started, one at a
    /// time.
    fn maybe_add_meta_peers(&mut self, server: &Server) {
        if self.last_peer_check.elapsed() < SETTLE {
            return;
        }
        self.last_peer_check = Instant::now();
        let known = self.known_servers(server);
        for n in &known {
            self.cl.learn_name(n);
        }
        let Some(g) = self.groups.get_mut(META_GROUP) else {
            return;
        };
        if g.driver.raft().role() != Role::Leader {
            return;
        }
        let voters = g.driver.raft().voters().to_vec();
        if let Some(new) = known
            .iter()
            .map(|n| node_id(n))
            .find(|id| !voters.contains(id))
        {
            match g.driver.propose_change(EntryKind::AddPeer(new)) {
                Ok(_) => tracing::info!(
                    "JetStream cluster adding {} to the meta group",
                    self.cl.name_of(new)
                ),
                Err(e) => tracing::debug!("JetStream cluster: adding a meta peer waits: {e}"),
            }
        }
    }

    fn open_group(
        &mut self,
        name: &str,
        kind: Kind,
        peers: &[String],
        pending_reply: Option<String>,
        rejoin: bool,
    ) -> Result<(), String> {
        let dir = self.root.join(name);
        let fresh = read_peers(&dir).is_none();
        if fresh {
            write_peers(&dir, peers).map_err(|e| e.to_string())?;
        }
        // A member whose log is gone while its group went on abstains until it has caught
        // up; the marker keeps it abstaining across restarts until then.
        let marker = dir.join(ABSTAIN_FILE);
        let abstain = marker.exists() || (fresh && rejoin);
        if abstain {
            tracing::warn!(
                "JetStream cluster group {name}: this server's log is gone; it votes again once caught up"
            );
            std::fs::write(&marker, b"").map_err(|e| e.to_string())?;
        }
        let ids: Vec<NodeId> = peers.iter().map(|p| self.cl.learn_name(p)).collect();
        let (driver, rec) = Driver::open(group_config(self.cl.me, ids, abstain), &dir)
            .map_err(|e| e.to_string())?;
        // A new stream group elects at once: its first peer campaigns without waiting out an
        // election timeout (the others wait theirs, so it normally wins unopposed).
        // The others need a moment to apply the assignment that creates their member.
        let fresh = rec.hard_state.term == 0 && rec.entries.is_empty();
        let campaign_at = (fresh
            && matches!(kind, Kind::Stream { .. })
            && peers.first() == Some(&self.cl.server_name))
        .then(|| Instant::now() + FIRST_CAMPAIGN);
        if rec.torn_bytes > 0 {
            tracing::warn!(
                "JetStream cluster group {name}: cut {} torn bytes from its log",
                rec.torn_bytes
            );
        }
        self.groups.insert(
            name.to_string(),
            Group {
                driver,
                kind,
                replay_until: rec.hard_state.commit,
                leader: None,
                leader_since: None,
                pending_reply,
                campaign_at,
                heard: HashMap::new(),
                abstaining: abstain,
            },
        );
        Ok(())
    }

    fn close_group(&mut self, name: &str, delete: bool) {
        self.groups.remove(name);
        self.cl.drop_view(name);
        if delete {
            let _ = std::fs::remove_dir_all(self.root.join(name));
        }
    }

    /// One turn: every group persists, sends and applies what it has ready.
    fn drive_all(&mut self, server: &Arc<Server>, refresh_views: bool) {
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for name in names {
            let mut committed: Vec<Entry> = Vec::new();
            let mut sends = Vec::new();
            let (leader_changed, replay_until) = {
                let Some(g) = self.groups.get_mut(&name) else {
                    continue;
                };
                if let Err(e) = g
                    .driver
                    .drive(|m| sends.push(m), |e| committed.push(e.clone()))
                {
                    tracing::error!("JetStream cluster group {name}: log write failed: {e}");
                }
                if g.abstaining && !g.driver.raft().abstaining() {
                    g.abstaining = false;
                    let _ = std::fs::remove_file(self.root.join(&name).join(ABSTAIN_FILE));
                    tracing::info!("JetStream cluster group {name}: caught up, voting again");
                }
                let leader = g.driver.raft().leader();
                let changed = leader != g.leader;
                if changed {
                    g.leader = leader;
                    g.leader_since = leader.map(|_| unix_nanos());
                }
                (changed, g.replay_until)
            };
            for m in sends {
                nrg::push(self.out.entry((name.clone(), m.to)).or_default(), &m);
            }
            if !committed.is_empty() {
                self.apply(server, &name, committed, replay_until);
            }
            if leader_changed || refresh_views {
                self.publish_view(&name);
            }
            if leader_changed {
                self.leader_changed(server, &name);
            }
        }
    }

    fn publish_view(&self, name: &str) {
        let Some(g) = self.groups.get(name) else {
            return;
        };
        let r = g.driver.raft();
        let matched = if r.role() == Role::Leader {
            r.voters()
                .iter()
                .filter(|v| **v != r.id())
                .map(|v| (*v, r.matched(*v).unwrap_or(0)))
                .collect()
        } else {
            Vec::new()
        };
        self.cl.set_view(
            name,
            GroupView {
                leader: r.leader(),
                term: r.term(),
                voters: r.voters().to_vec(),
                leader_since: g.leader_since,
                committed: r.committed(),
                applied: r.committed(),
                last_index: r.last_index(),
                matched,
                heard: g
                    .heard
                    .iter()
                    .map(|(p, t)| (*p, t.elapsed().as_nanos() as i64))
                    .collect(),
                current: r.is_current(),
            },
        );
    }

    fn flush(&mut self, server: &Server) {
        if self.out.is_empty() {
            return;
        }
        for ((group, to), batch) in self.out.drain() {
            let subject = nrg::subject(&group, to);
            self.sender
                .send(server, &server.system_account, Msg::new(&subject, &batch));
        }
        self.sender.flush(server);
    }

    fn apply(&mut self, server: &Arc<Server>, name: &str, entries: Vec<Entry>, replay: Index) {
        let Some(g) = self.groups.get(name) else {
            return;
        };
        match &g.kind {
            Kind::Meta => {
                for e in entries {
                    if e.kind != EntryKind::Normal || e.data.is_empty() {
                        continue;
                    }
                    match serde_json::from_slice::<MetaEntry>(&e.data) {
                        Ok(me) => self.apply_meta(server, me, e.index <= replay),
                        Err(err) => tracing::error!(
                            "JetStream cluster: meta entry {} could not be read: {err}",
                            e.index
                        ),
                    }
                }
            }
            Kind::Stream { account, stream } => {
                let entries: Vec<(Index, Bytes)> = entries
                    .into_iter()
                    .filter(|e| e.kind == EntryKind::Normal && !e.data.is_empty())
                    .map(|e| (e.index, e.data))
                    .collect();
                if entries.is_empty() {
                    return;
                }
                if let Some(h) = self.stream_handle(account, stream) {
                    h.send(Cmd::Replicated {
                        entries,
                        replay_until: replay,
                    });
                }
            }
        }
    }

    fn meta_current(&self) -> bool {
        self.groups
            .get(META_GROUP)
            .is_some_and(|g| g.driver.raft().is_current())
    }

    fn stream_handle(&self, account: &str, stream: &str) -> Option<Arc<StreamHandle>> {
        self.js.upgrade()?.account(account)?.stream(stream)
    }

    fn apply_meta(&mut self, server: &Arc<Server>, me: MetaEntry, replay: bool) {
        self.cl.meta.write().apply(&me.op);
        let answer = !replay && me.proposer == self.cl.me;
        let Some(js) = self.js.upgrade() else {
            return;
        };
        match me.op {
            MetaOp::AddStream { sa } => {
                let reply = me.reply.filter(|_| !replay);
                if sa.peers.contains(&self.cl.server_name) {
                    // Learnt while catching up with the meta leader (this server's store was
                    // emptied): the stream existed without this server's data; it starts,
                    // abstaining, once the meta log is current.
                    if !replay && !self.meta_current() {
                        self.deferred.push((sa, reply));
                    } else {
                        // Replayed from this server's own meta log: the stream's log should
                        // be here too; if it is not, it was lost.
                        self.start_replica(server, &js, &sa, reply, replay);
                    }
                }
            }
            MetaOp::UpdateStream { sa } => {
                let Some(h) = self.stream_handle(&sa.account, &sa.config.name) else {
                    return;
                };
                let is_leader = h.leader.load(Ordering::Relaxed);
                let reply = me.reply.filter(|_| !replay && is_leader);
                js.update_replica(server, &sa, &h, reply);
            }
            MetaOp::RemoveStream { account, stream } => {
                self.deferred
                    .retain(|(sa, _)| !(sa.account == account && sa.config.name == stream));
                if let Some(acc) = js.account(&account) {
                    let h = acc.streams.write().remove(&stream);
                    if let Some(h) = h {
                        for s in h.subs.lock().drain(..) {
                            server.remove_sub(&s);
                        }
                        h.stop(true);
                    }
                }
                let group = self
                    .groups
                    .iter()
                    .find(|(_, g)| matches!(&g.kind, Kind::Stream { account: a, stream: s } if *a == account && *s == stream))
                    .map(|(n, _)| n.clone());
                if let Some(group) = group {
                    self.close_group(&group, true);
                }
                if answer {
                    js.stream_removed(server, &account, &stream, me.reply.as_deref());
                }
            }
        }
    }

    fn start_replica(
        &mut self,
        server: &Arc<Server>,
        js: &Arc<JetStream>,
        sa: &StreamAssignment,
        reply: Option<String>,
        rejoin: bool,
    ) {
        let replicated = sa.peers.len() > 1;
        let link = replicated.then(|| ReplicaLink {
            group: sa.group.clone(),
            cl: self.cl.clone(),
        });
        let h = match js.start_replica(server, sa, link) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(
                    "JetStream cluster: stream '{} > {}' could not be started: {e:?}",
                    sa.account,
                    sa.config.name
                );
                return;
            }
        };
        if !replicated {
            js.set_stream_leader(server, &sa.account, &h, true);
            if let Some(r) = reply {
                h.send(Cmd::Created { reply: r });
            }
            return;
        }
        let kind = Kind::Stream {
            account: sa.account.clone(),
            stream: sa.config.name.clone(),
        };
        if let Err(e) = self.open_group(&sa.group, kind, &sa.peers, reply, rejoin) {
            tracing::error!(
                "JetStream cluster: group {} of stream '{} > {}' could not be opened: {e}",
                sa.group,
                sa.account,
                sa.config.name
            );
        }
    }

    fn leader_changed(&mut self, server: &Arc<Server>, name: &str) {
        let me = self.cl.me;
        let Some(g) = self.groups.get_mut(name) else {
            return;
        };
        let Some(leader) = g.leader else {
            return;
        };
        match &g.kind {
            Kind::Meta => {
                if leader == me {
                    tracing::info!("JetStream cluster new metadata leader");
                } else {
                    tracing::debug!(
                        "JetStream cluster meta leader is {}",
                        self.cl.name_of(leader)
                    );
                }
            }
            Kind::Stream { account, stream } => {
                let (account, stream) = (account.clone(), stream.clone());
                // Whoever leads first answers the create; the others forget it.
                let reply = g.pending_reply.take().filter(|_| leader == me);
                let Some(js) = self.js.upgrade() else {
                    return;
                };
                let Some(h) = js.account(&account).and_then(|a| a.stream(&stream)) else {
                    return;
                };
                js.set_stream_leader(server, &account, &h, leader == me);
                if leader == me {
                    tracing::info!(
                        "JetStream cluster new stream leader for '{account} > {stream}'"
                    );
                }
                if let Some(r) = reply {
                    h.send(Cmd::Created { reply: r });
                }
            }
        }
    }
}
