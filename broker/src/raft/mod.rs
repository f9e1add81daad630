//! Consensus for clustered JetStream: our own Raft, I/O-free.
//!
//! A [`Raft`] is one member of one group. It never touches a disk, a socket or a clock: the
//! runtime feeds it ticks ([`Raft::tick`]) and peers' messages ([`Raft::step`]), and collects a
//! [`Ready`]: what to persist (hard state and new entries), then what to send, then what to
//! apply. Nothing in a `Ready` may be sent before its hard state and entries are on disk; a
//! vote or an acknowledgement must never be given for state a crash could take back.
//!
//! It is Raft as in Ongaro's thesis with the parts a server fleet needs: pre-vote (a node cut
//! off and rejoining does not disturb a healthy leader), check-quorum with leader leases (a
//! leader that loses a majority steps down; followers hearing from a leader ignore
//! campaigns), leadership transfer (`TimeoutNow`, for stepdowns and lame duck mode), a no-op
//! entry at the start of each term (§5.4.2: a leader commits only entries of its own term) and
//! single-server membership changes (one at a time, effective once in the log, proposed only
//! after the leader has committed in its term: the thesis' fix for that algorithm's known bug).
//! Its safety is checked by a deterministic simulation (`broker/tests/raft_sim.rs`).
//!
//! Why our own rather than TiKV's `raft` crate: its only codec path builds `protoc` from C++
//! sources on every clean build (`protobuf-build` → `protobuf-src`), which the two-core CI
//! machine pays on every run; the algorithm is small, and the simulation is what earns trust.

pub mod codec;
pub mod driver;
pub mod message;
pub mod peer;
pub mod raft_log;
pub mod wal;

use std::collections::BTreeMap;

use bytes::Bytes;

pub use message::{Body, Entry, EntryKind, HardState, Index, Message, NodeId, Term};
use raft_log::Log;

/// A group member's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// This member.
    pub id: NodeId,
    /// The group's voters before any membership change in the log (this member among them,
    /// unless it is waiting to be added).
    pub peers: Vec<NodeId>,
    /// Ticks without a leader before campaigning; the real timeout is random in `[n, 2n)`.
    pub election_ticks: u32,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: u32,
    /// Most entries in one append message.
    pub max_append: usize,
    /// Seeds the election timeouts' randomness (a simulation replays a schedule from it).
    pub seed: u64,
    /// This member lost its log (its server's store was emptied) while the group went on: it
    /// grants no vote and does not campaign until it has caught up with a leader, so it can
    /// never help elect a leader that lacks entries it had acknowledged.
    pub abstain: bool,
}

/// Where a member stands in its term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks for pre-votes without raising its term.
    PreCandidate,
    /// Campaigns in a new term.
    Candidate,
    /// Leads the term.
    Leader,
}

/// A leader's view of one follower.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    /// The highest index known to match the leader's log.
    matched: Index,
    /// The next index to send.
    next: Index,
    /// Heard from since the last quorum check.
    active: bool,
}

/// What the runtime must do, in this order: persist `hard_state` and `entries` (an entry at
/// an index already stored replaces it and everything after), send `messages`, apply
/// `committed`. Then call [`Raft::advance`] with it.
#[derive(Debug, Default)]
pub struct Ready {
    /// The hard state to persist, when it changed.
    pub hard_state: Option<HardState>,
    /// Entries to persist.
    pub entries: Vec<Entry>,
    /// Messages to send once the above is durable.
    pub messages: Vec<Message>,
    /// Entries to hand to the state machine, in order.
    pub committed: Vec<Entry>,
}

impl Ready {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.committed.is_empty()
    }
}

/// Why a proposal was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader takes proposals; the hint names the leader if known.
    #[error("not the leader")]
    NotLeader(Option<NodeId>),
    /// The leader is handing its leadership over.
    #[error("leadership transfer in progress")]
    Transferring,
    /// A membership change waits: the previous one is not committed, or this leader has not
    /// committed an entry of its own term yet (both needed for one-at-a-time changes to be safe).
    #[error("a membership change is pending")]
    ChangePending,
    /// A leader does not remove itself: it hands its leadership over first.
    #[error("the leader cannot remove itself")]
    RemoveLeader,
}

/// One member of one Raft group.
pub struct Raft {
    cfg: Config,
    term: Term,
    vote: Option<NodeId>,
    role: Role,
    leader: Option<NodeId>,
    /// The highest commit index a leader of this term told this member about.
    leader_commit: Index,
    /// See [`Config::abstain`]; cleared once caught up.
    abstain: bool,
    log: Log,
    /// The voters as of the last membership entry in the log (committed or not).
    voters: Vec<NodeId>,
    /// The index and term of that entry (0, 0: none).
    conf: (Index, Term),
    progress: BTreeMap<NodeId, Progress>,
    votes: BTreeMap<NodeId, bool>,
    /// Ticks since the last election timeout reset (or, for a leader, the last quorum check).
    elapsed: u32,
    /// This round's randomized election timeout.
    timeout: u32,
    heartbeat_elapsed: u32,
    transferee: Option<NodeId>,
    rng: fastrand::Rng,
    msgs: Vec<Message>,
    persisted: HardState,
}

impl Raft {
    /// A member restored from what it persisted (nothing, the first time).
    pub fn new(cfg: Config, hs: HardState, entries: Vec<Entry>) -> Raft {
        let rng = fastrand::Rng::with_seed(cfg.seed ^ cfg.id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut r = Raft {
            term: hs.term,
            vote: hs.vote,
            role: Role::Follower,
            leader: None,
            leader_commit: 0,
            abstain: cfg.abstain,
            log: Log::restore(entries, hs.commit),
            voters: Vec::new(),
            conf: (0, 0),
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            elapsed: 0,
            timeout: cfg.election_ticks,
            heartbeat_elapsed: 0,
            transferee: None,
            rng,
            msgs: Vec::new(),
            persisted: hs,
            cfg,
        };
        r.reset_timeout();
        r.recompute_voters();
        r
    }

    /// The voters: the configured ones changed by every membership entry in the log, in order
    /// (an entry counts from the moment it is in the log, as in Ongaro's single-server changes).
    fn recompute_voters(&mut self) {
        let mut voters = self.cfg.peers.clone();
        let mut conf = (0, 0);
        for e in self.log.entries() {
            match e.kind {
                EntryKind::Normal => continue,
                EntryKind::AddPeer(p) if !voters.contains(&p) => voters.push(p),
                EntryKind::AddPeer(_) => {}
                EntryKind::RemovePeer(p) => voters.retain(|v| *v != p),
            }
            conf = (e.index, e.term);
        }
        voters.sort_unstable();
        self.voters = voters;
        self.conf = conf;
        if self.role == Role::Leader {
            let next = self.log.last_index() + 1;
            let others = self.others();
            self.progress.retain(|p, _| others.contains(p));
            for p in others {
                self.progress.entry(p).or_insert(Progress {
                    matched: 0,
                    next,
                    active: true,
                });
            }
        }
    }

    /// The group's voters as this member knows them.
    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    /// Whether this member is current: it leads, or it follows a leader and has committed
    /// everything that leader said was committed.
    pub fn is_current(&self) -> bool {
        match self.role {
            Role::Leader => true,
            _ => self.leader.is_some() && self.log.committed >= self.leader_commit,
        }
    }

    /// Whether this member still abstains (it lost its log and has not caught up).
    pub fn abstaining(&self) -> bool {
        self.abstain
    }

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// Where this member stands.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The leader this member knows of in its term.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The commit index.
    pub fn committed(&self) -> Index {
        self.log.committed
    }

    /// The last index in this member's log.
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }

    /// The term of the entry at `i`, if this member has it.
    pub fn term_at(&self, i: Index) -> Option<Term> {
        self.log.term(i)
    }

    /// A leader's view of how far `peer` matches its log (`None` when not leading).
    pub fn matched(&self, peer: NodeId) -> Option<Index> {
        if self.role != Role::Leader {
            return None;
        }
        if peer == self.cfg.id {
            return Some(self.log.stable);
        }
        self.progress.get(&peer).map(|p| p.matched)
    }

    fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    fn others(&self) -> Vec<NodeId> {
        self.voters
            .iter()
            .copied()
            .filter(|p| *p != self.cfg.id)
            .collect()
    }

    fn reset_timeout(&mut self) {
        let e = self.cfg.election_ticks.max(1);
        self.timeout = e + self.rng.u32(0..e);
        self.elapsed = 0;
    }

    fn send(&mut self, to: NodeId, term: Term, body: Body) {
        self.msgs.push(Message {
            from: self.cfg.id,
            to,
            term,
            body,
        });
    }

    /// A leader heard from recently: campaigns that are not transfers are ignored (the
    /// leader lease of check-quorum).
    fn in_lease(&self) -> bool {
        self.leader.is_some() && self.elapsed < self.cfg.election_ticks
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.transferee = None;
        self.votes.clear();
        self.reset_timeout();
    }

    /// Starts an election: with a pre-vote round first unless a leader asked for it.
    pub fn campaign(&mut self, transfer: bool) {
        if !self.voters.contains(&self.cfg.id) {
            return;
        }
        if transfer {
            self.start_election(true);
            return;
        }
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes.clear();
        self.votes.insert(self.cfg.id, true);
        self.reset_timeout();
        let (li, lt, t) = (self.log.last_index(), self.log.last_term(), self.term + 1);
        for p in self.others() {
            self.send(
                p,
                t,
                Body::PreVote {
                    last_index: li,
                    last_term: lt,
                },
            );
        }
        self.tally();
    }

    fn start_election(&mut self, transfer: bool) {
        self.term += 1;
        self.vote = Some(self.cfg.id);
        self.role = Role::Candidate;
        self.leader = None;
        self.transferee = None;
        self.votes.clear();
        self.votes.insert(self.cfg.id, true);
        self.reset_timeout();
        let (li, lt, t) = (self.log.last_index(), self.log.last_term(), self.term);
        for p in self.others() {
            self.send(
                p,
                t,
                Body::Vote {
                    last_index: li,
                    last_term: lt,
                    transfer,
                },
            );
        }
        self.tally();
    }

    /// Counts the votes of a (pre-)campaign and moves on when they decide it.
    fn tally(&mut self) {
        // Only the voters of this member's configuration count.
        let counted = self.votes.iter().filter(|(p, _)| self.voters.contains(p));
        let (yes, no) = counted.fold(
            (0, 0),
            |(y, n), (_, v)| if *v { (y + 1, n) } else { (y, n + 1) },
        );
        if yes >= self.quorum() {
            match self.role {
                Role::PreCandidate => self.start_election(false),
                Role::Candidate => self.become_leader(),
                _ => {}
            }
        } else if no >= self.quorum() {
            let term = self.term;
            self.become_follower(term, None);
        }
    }

    fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id);
        self.transferee = None;
        self.elapsed = 0;
        self.heartbeat_elapsed = 0;
        let next = self.log.last_index() + 1;
        self.progress = self
            .others()
            .into_iter()
            .map(|p| {
                (
                    p,
                    Progress {
                        matched: 0,
                        next,
                        active: true,
                    },
                )
            })
            .collect();
        // §5.4.2: entries of earlier terms commit only once one of this term does.
        self.log.push(self.term, EntryKind::Normal, Bytes::new());
        self.broadcast();
        self.maybe_commit();
    }

    fn broadcast(&mut self) {
        // By index: a heartbeat goes out every few ticks, without a list of peers each time.
        for i in 0..self.voters.len() {
            let p = self.voters[i];
            if p != self.cfg.id {
                self.send_append(p);
            }
        }
    }

    fn send_append(&mut self, to: NodeId) {
        let Some(pr) = self.progress.get(&to).copied() else {
            return;
        };
        let prev_index = pr.next - 1;
        let prev_term = self.log.term(prev_index).unwrap_or(0);
        let entries = self.log.slice(pr.next, self.cfg.max_append.max(1));
        let commit = self.log.committed;
        let term = self.term;
        self.send(
            to,
            term,
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            },
        );
    }

    /// Commits the highest index a quorum holds, if it is of this term.
    fn maybe_commit(&mut self) {
        let mut matched: Vec<Index> = self.progress.values().map(|p| p.matched).collect();
        matched.push(self.log.stable);
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let q = matched[self.quorum() - 1];
        if q > self.log.committed && self.log.term(q) == Some(self.term) {
            self.log.committed = q;
            self.broadcast();
        }
    }

    /// Advances time by one tick.
    pub fn tick(&mut self) {
        self.elapsed += 1;
        if self.role == Role::Leader {
            self.heartbeat_elapsed += 1;
            if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks.max(1) {
                self.heartbeat_elapsed = 0;
                self.broadcast();
            }
            if self.elapsed >= self.cfg.election_ticks {
                self.elapsed = 0;
                // A transfer that did not finish within an election timeout is given up.
                self.transferee = None;
                let active = 1 + self.progress.values().filter(|p| p.active).count();
                for p in self.progress.values_mut() {
                    p.active = false;
                }
                if active < self.quorum() {
                    let term = self.term;
                    self.become_follower(term, None);
                }
            }
        } else if self.elapsed >= self.timeout && !self.abstain {
            self.campaign(false);
        }
    }

    /// Proposes `data` for the log; returns the index it will have if committed.
    pub fn propose(&mut self, data: Bytes) -> Result<Index, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader(self.leader));
        }
        if self.transferee.is_some() {
            return Err(ProposeError::Transferring);
        }
        let i = self.log.push(self.term, EntryKind::Normal, data);
        self.broadcast();
        Ok(i)
    }

    /// Proposes a membership change (adding or removing one voter); it takes effect as soon
    /// as it is in the log. One change at a time, and only once this leader has committed an
    /// entry of its own term.
    pub fn propose_change(&mut self, change: EntryKind) -> Result<Index, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader(self.leader));
        }
        if self.transferee.is_some() {
            return Err(ProposeError::Transferring);
        }
        if change == EntryKind::RemovePeer(self.cfg.id) {
            return Err(ProposeError::RemoveLeader);
        }
        if self.conf.0 > self.log.committed || self.log.term(self.log.committed) != Some(self.term)
        {
            return Err(ProposeError::ChangePending);
        }
        let i = self.log.push(self.term, change, Bytes::new());
        self.recompute_voters();
        self.broadcast();
        self.maybe_commit();
        Ok(i)
    }

    /// Hands leadership to `to`: once it has the whole log it is told to campaign at once.
    pub fn transfer_leader(&mut self, to: NodeId) {
        if self.role != Role::Leader || to == self.cfg.id || !self.progress.contains_key(&to) {
            return;
        }
        self.transferee = Some(to);
        self.elapsed = 0;
        if self.progress[&to].matched == self.log.last_index() {
            let term = self.term;
            self.send(to, term, Body::TimeoutNow);
        } else {
            self.send_append(to);
        }
    }

    /// Takes one message from a peer.
    pub fn step(&mut self, m: Message) {
        if m.term > self.term {
            match m.body {
                // A pre-vote is for a term the sender has not entered yet.
                Body::PreVote { .. } => {}
                Body::PreVoteResp { reject: false } => {}
                Body::Vote {
                    transfer: false, ..
                } if self.in_lease() => return,
                Body::Append { .. } => self.become_follower(m.term, Some(m.from)),
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term {
            // Tell a stale leader or pre-candidate about the newer term.
            match m.body {
                Body::Append { .. } => {
                    let (t, li) = (self.term, self.log.last_index());
                    self.send(
                        m.from,
                        t,
                        Body::AppendResp {
                            reject: true,
                            index: li,
                        },
                    );
                }
                Body::PreVote { .. } => {
                    let t = self.term;
                    self.send(m.from, t, Body::PreVoteResp { reject: true });
                }
                _ => {}
            }
            return;
        }
        match m.body {
            Body::PreVote {
                last_index,
                last_term,
            } => {
                let grant = m.term > self.term
                    && !self.abstain
                    && !self.in_lease()
                    && self.log.is_up_to_date(last_index, last_term);
                let t = if grant { m.term } else { self.term };
                self.send(m.from, t, Body::PreVoteResp { reject: !grant });
            }
            Body::Vote {
                last_index,
                last_term,
                ..
            } => {
                let can =
                    self.vote == Some(m.from) || (self.vote.is_none() && self.leader.is_none());
                let grant = can && !self.abstain && self.log.is_up_to_date(last_index, last_term);
                if grant {
                    self.vote = Some(m.from);
                    self.reset_timeout();
                }
                let t = self.term;
                self.send(m.from, t, Body::VoteResp { reject: !grant });
            }
            Body::PreVoteResp { reject } => {
                if self.role == Role::PreCandidate && m.term == self.term + 1 {
                    self.votes.insert(m.from, !reject);
                    self.tally();
                }
            }
            Body::VoteResp { reject } => {
                if self.role == Role::Candidate {
                    self.votes.insert(m.from, !reject);
                    self.tally();
                }
            }
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                if self.role == Role::Leader {
                    // Two leaders in one term cannot happen; a message claiming it is ignored.
                    return;
                }
                if self.role != Role::Follower || self.leader != Some(m.from) {
                    self.become_follower(m.term, Some(m.from));
                }
                self.elapsed = 0;
                self.leader_commit = self.leader_commit.max(commit);
                let t = self.term;
                let changes = entries.iter().any(|e| e.kind != EntryKind::Normal);
                let accepted = self.log.accept(prev_index, prev_term, &entries);
                if changes || self.log.term(self.conf.0) != Some(self.conf.1) {
                    self.recompute_voters();
                }
                match accepted {
                    Some(last) => {
                        let c = commit.min(last);
                        if c > self.log.committed {
                            self.log.committed = c;
                        }
                        if self.leader_commit > 0 && self.log.committed >= self.leader_commit {
                            self.abstain = false;
                        }
                        self.send(
                            m.from,
                            t,
                            Body::AppendResp {
                                reject: false,
                                index: last,
                            },
                        );
                    }
                    None => {
                        let hint = prev_index.saturating_sub(1).min(self.log.last_index());
                        self.send(
                            m.from,
                            t,
                            Body::AppendResp {
                                reject: true,
                                index: hint,
                            },
                        );
                    }
                }
            }
            Body::AppendResp { reject, index } => {
                if self.role != Role::Leader {
                    return;
                }
                let last = self.log.last_index();
                let Some(pr) = self.progress.get_mut(&m.from) else {
                    return;
                };
                pr.active = true;
                // Only an answer that moves this follower on is answered with more entries: a
                // stale or repeated one would otherwise breed a duplicate each round trip (the
                // heartbeat resends anyway).
                if reject {
                    if index < pr.matched {
                        // The follower's log ends below what it acknowledged: it lost its log
                        // (its store was emptied) and starts over from where it ends. A stale
                        // refusal does the same, and the next answers move it back up.
                        pr.matched = index;
                        pr.next = index + 1;
                        self.send_append(m.from);
                        return;
                    }
                    let next = (index + 1)
                        .min(pr.next.saturating_sub(1))
                        .max(pr.matched + 1);
                    if next == pr.next {
                        return;
                    }
                    pr.next = next;
                    self.send_append(m.from);
                    return;
                }
                let advanced = index > pr.matched;
                if advanced {
                    pr.matched = index;
                }
                pr.next = pr.next.max(pr.matched + 1);
                let (matched, next) = (pr.matched, pr.next);
                self.maybe_commit();
                if self.transferee == Some(m.from) && matched == last {
                    let term = self.term;
                    self.send(m.from, term, Body::TimeoutNow);
                } else if advanced && next <= last {
                    self.send_append(m.from);
                }
            }
            Body::TimeoutNow => {
                if self.role != Role::Leader {
                    self.campaign(true);
                }
            }
        }
    }

    /// Whether [`Raft::ready`] has anything.
    pub fn has_ready(&self) -> bool {
        !self.msgs.is_empty()
            || !self.log.unstable().is_empty()
            || !self.log.to_apply().is_empty()
            || self.hard_state() != self.persisted
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }

    /// What to persist, send and apply now.
    pub fn ready(&mut self) -> Ready {
        let hs = self.hard_state();
        Ready {
            hard_state: (hs != self.persisted).then_some(hs),
            entries: self.log.unstable().to_vec(),
            messages: std::mem::take(&mut self.msgs),
            committed: self.log.to_apply().to_vec(),
        }
    }

    /// Records that `rd` was persisted and applied.
    pub fn advance(&mut self, rd: &Ready) {
        if let Some(hs) = rd.hard_state {
            self.persisted = hs;
        }
        if let Some(e) = rd.entries.last() {
            if self.log.term(e.index) == Some(e.term) {
                self.log.stable = self.log.stable.max(e.index);
            }
        }
        if let Some(e) = rd.committed.last() {
            self.log.applied = self.log.applied.max(e.index);
        }
        if self.role == Role::Leader {
            self.maybe_commit();
        }
    }
}
