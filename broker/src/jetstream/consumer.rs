//! A consumer of a stream: where it is in the stream, what it has delivered and not yet seen
//! acknowledged, the pull requests waiting on it, and how it delivers (push or pull).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::consumer_config::{ConsumerConfig, DeliverPolicy, ReplayPolicy};
use super::store::{filter_matches, Store};
use super::time::{parse_rfc3339, rfc3339_nanos};
use crate::accounts::Account;
use crate::clock::unix_nanos;
use crate::server::internal::InternalSender;
use crate::server::Server;

mod ack;
mod dispatch;
mod pull;

/// What a consumer needs from its stream while it works.
pub struct Ctx<'a> {
    pub server: &'a Server,
    pub account: &'a Account,
    pub sender: &'a mut InternalSender,
    pub store: &'a mut Store,
    pub stream: &'a str,
}

/// One delivered, not yet acknowledged message.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Pending {
    dseq: u64,
    /// Unix nanoseconds of the last delivery.
    ts: i64,
    #[serde(skip, default = "Instant::now")]
    deadline: Instant,
}

/// A waiting pull request (`$JS.API.CONSUMER.MSG.NEXT`).
#[derive(Debug)]
struct PullRequest {
    reply: String,
    batch: i64,
    max_bytes: i64,
    expires: Option<Instant>,
    no_wait: bool,
    heartbeat: Option<Duration>,
    last_sent: Instant,
    delivered: i64,
    /// The priority-group part of a JSON request (`None` for an empty or numeric body).
    prio: Option<Priority>,
}

/// What a pull request says about priority groups.
#[derive(Debug, Clone, Default)]
struct Priority {
    min_pending: i64,
    min_ack_pending: i64,
    /// The pin id the requester holds (pinned_client).
    id: String,
    /// 0 (first) to 9 (prioritized).
    priority: i64,
}

/// The pin of a pinned_client consumer.
#[derive(Debug, Clone)]
struct Pin {
    id: String,
    /// Unix nanoseconds when it was given.
    ts: i64,
    /// When it lapses unless the holder pulls again.
    deadline: Instant,
}

/// The body of a pull request.
#[derive(Debug, Default, Deserialize)]
struct NextRequest {
    #[serde(default)]
    batch: i64,
    #[serde(default)]
    expires: i64,
    #[serde(default)]
    no_wait: bool,
    #[serde(default)]
    max_bytes: i64,
    #[serde(default)]
    idle_heartbeat: i64,
    #[serde(default)]
    group: String,
    #[serde(default)]
    min_pending: i64,
    #[serde(default)]
    min_ack_pending: i64,
    #[serde(default)]
    id: String,
    #[serde(default)]
    priority: i64,
}

/// A consumer's position, persisted so a restart resumes exactly.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConsumerState {
    /// Next stream sequence to look at for a first delivery.
    pub next_sseq: u64,
    /// Last consumer sequence handed out.
    pub dseq: u64,
    /// Last stream sequence delivered for the first time.
    pub last_sseq: u64,
    pub ack_floor_sseq: u64,
    pub ack_floor_dseq: u64,
    /// Delivered and unacknowledged, by stream sequence.
    pending: BTreeMap<u64, Pending>,
    /// Delivery counts above one, by stream sequence.
    redelivered: HashMap<u64, u64>,
    /// `last_per_subject` starting messages not delivered yet.
    #[serde(default)]
    initial: VecDeque<u64>,
}

impl ConsumerState {
    /// nats-server's consumer state JSON (`delivered`, `ack_floor`, `pending`,
    /// `redelivered`) as a backup carries it, limited to stream sequences up to `last`.
    pub fn to_nats(&self, last: u64) -> serde_json::Value {
        let mut v = serde_json::json!({
            "delivered": {"consumer_seq": self.dseq, "stream_seq": self.last_sseq.min(last)},
            "ack_floor": {"consumer_seq": self.ack_floor_dseq, "stream_seq": self.ack_floor_sseq.min(last)},
        });
        let pending: serde_json::Map<String, serde_json::Value> = self
            .pending
            .range(..=last)
            .map(|(s, p)| {
                (
                    s.to_string(),
                    serde_json::json!({"Sequence": p.dseq, "Timestamp": p.ts}),
                )
            })
            .collect();
        if !pending.is_empty() {
            v["pending"] = serde_json::Value::Object(pending);
        }
        // nats-server counts redeliveries; we keep delivery counts.
        let redelivered: serde_json::Map<String, serde_json::Value> = self
            .redelivered
            .iter()
            .filter(|(s, dc)| **s <= last && **dc > 1)
            .map(|(s, dc)| (s.to_string(), serde_json::json!(dc - 1)))
            .collect();
        if !redelivered.is_empty() {
            v["redelivered"] = serde_json::Value::Object(redelivered);
        }
        v
    }

    /// The state from nats-server's consumer state JSON (see [`ConsumerState::to_nats`]).
    pub fn from_nats(v: &serde_json::Value) -> Result<ConsumerState, String> {
        let num = |a: &str, b: &str| v[a][b].as_u64().unwrap_or(0);
        if !v.is_object() {
            return Err("consumer state is not an object".into());
        }
        let mut st = ConsumerState {
            dseq: num("delivered", "consumer_seq"),
            last_sseq: num("delivered", "stream_seq"),
            ack_floor_dseq: num("ack_floor", "consumer_seq"),
            ack_floor_sseq: num("ack_floor", "stream_seq"),
            ..Default::default()
        };
        st.next_sseq = st.last_sseq + 1;
        let seq = |k: &str| {
            k.parse::<u64>()
                .map_err(|_| format!("bad sequence {k:?} in consumer state"))
        };
        if let Some(m) = v["pending"].as_object() {
            for (k, p) in m {
                let pending = Pending {
                    dseq: p["Sequence"].as_u64().unwrap_or(0),
                    ts: p["Timestamp"].as_i64().unwrap_or(0),
                    deadline: Instant::now(),
                };
                st.pending.insert(seq(k)?, pending);
            }
        }
        if let Some(m) = v["redelivered"].as_object() {
            for (k, n) in m {
                st.redelivered.insert(seq(k)?, n.as_u64().unwrap_or(0) + 1);
            }
        }
        Ok(st)
    }
}

/// A consumer.
#[derive(Debug)]
pub struct Consumer {
    pub name: String,
    pub cfg: ConsumerConfig,
    /// Unix nanoseconds.
    pub created: i64,
    filters: Vec<String>,
    pub st: ConsumerState,
    /// Stream sequences due for redelivery, in order.
    redeliver: BTreeSet<u64>,
    /// Ack deadlines of the pending messages not queued for redelivery, soonest first.
    deadlines: BTreeSet<(Instant, u64)>,
    waiting: VecDeque<PullRequest>,
    /// Messages not yet delivered that match the filters.
    num_pending: u64,
    /// Unix nanoseconds of the last delivery (`delivered.last_active`).
    last_delivered: i64,
    /// Unix nanoseconds of the last acknowledgement (`ack_floor.last_active`).
    last_acked: i64,
    last_sent: Instant,
    inactive_since: Option<Instant>,
    pub dirty: bool,
    /// Its position changed since the leader last replicated it.
    pub replicate: bool,
    /// Replay original: the last message's timestamp and when it went out; when the next is due.
    replay_last: Option<(i64, Instant)>,
    replay_due: Option<Instant>,
    /// Deliveries stop until this Unix time (nanoseconds); 0 is not paused.
    pub paused_until: i64,
    /// Flow control: the outstanding request's reply subject, and bytes pushed since the last.
    fc_pending: Option<String>,
    fc_bytes: usize,
    /// Bytes a push consumer may have outstanding before it waits for the flow-control
    /// answer: nats-server's window, which grows while the subscriber keeps up.
    fc_window: usize,
    fc_count: u64,
    /// A push consumer with nothing subscribed to its deliver subject: polled until someone is.
    no_interest: bool,
    /// pinned_client: who holds the pin.
    pin: Option<Pin>,
    /// A push consumer whose exact deliver subject has a subscriber (`push_bound`; nats-server
    /// does not count wildcard subscriptions here).
    push_bound: bool,
}

/// One entry of `priority_groups` in `CONSUMER.INFO`.
#[derive(Debug, Serialize)]
pub struct PriorityGroupState {
    pub group: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned_client_id: Option<String>,
    pub pinned_ts: String,
}

/// What `CONSUMER.INFO` reports about a sequence pair.
#[derive(Debug, Serialize)]
pub struct SeqInfo {
    pub consumer_seq: u64,
    pub stream_seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_active: Option<String>,
}

/// The `CONSUMER.INFO` body.
#[derive(Debug, Serialize)]
pub struct ConsumerInfo {
    pub stream_name: String,
    pub name: String,
    pub created: String,
    pub config: ConsumerConfig,
    pub delivered: SeqInfo,
    pub ack_floor: SeqInfo,
    pub num_ack_pending: u64,
    pub num_redelivered: u64,
    pub num_waiting: u64,
    pub num_pending: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_bound: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_remaining: Option<i64>,
    pub ts: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub priority_groups: Vec<PriorityGroupState>,
}

impl Consumer {
    /// A new consumer positioned by its deliver policy.
    pub fn new(name: String, cfg: ConsumerConfig, store: &Store, created: i64) -> Consumer {
        let filters = cfg.filters();
        let state = store.state();
        let mut st = ConsumerState::default();
        let first = state.first_seq.max(1);
        st.next_sseq = match cfg.deliver_policy {
            DeliverPolicy::All => first,
            DeliverPolicy::Last => {
                let last = if filters.is_empty() {
                    Some(state.last_seq)
                } else {
                    filters.iter().filter_map(|f| store.last_for(f)).max()
                };
                last.filter(|l| *l > 0).unwrap_or(state.last_seq + 1)
            }
            DeliverPolicy::New => state.last_seq + 1,
            DeliverPolicy::ByStartSequence => cfg.opt_start_seq.max(first),
            DeliverPolicy::ByStartTime => {
                let ts = cfg
                    .opt_start_time
                    .as_deref()
                    .and_then(parse_rfc3339)
                    .unwrap_or(0);
                store.seq_for_time(ts)
            }
            DeliverPolicy::LastPerSubject => {
                st.initial = store.last_per_subject(&filters).into();
                state.last_seq + 1
            }
        };
        // The sequences before the start count as acknowledged.
        st.ack_floor_sseq = st.next_sseq.saturating_sub(1);
        if let Some(f) = st.initial.front() {
            st.ack_floor_sseq = f.saturating_sub(1);
        }
        st.last_sseq = st.ack_floor_sseq;
        let mut c = Consumer::restore(name, cfg, created, st);
        c.recount(store);
        c
    }

    /// A consumer from persisted configuration and state.
    pub fn restore(name: String, cfg: ConsumerConfig, created: i64, st: ConsumerState) -> Consumer {
        let now = Instant::now();
        let paused_until = cfg
            .pause_until
            .as_deref()
            .and_then(parse_rfc3339)
            .unwrap_or(0);
        let ack_wait = Duration::from_nanos(cfg.ack_wait.max(0) as u64);
        let mut st = st;
        let mut deadlines = BTreeSet::new();
        for (s, p) in st.pending.iter_mut() {
            p.deadline = now + ack_wait;
            deadlines.insert((p.deadline, *s));
        }
        Consumer {
            deadlines,
            name,
            filters: cfg.filters(),
            cfg,
            created,
            st,
            redeliver: BTreeSet::new(),
            waiting: VecDeque::new(),
            num_pending: 0,
            last_delivered: 0,
            last_acked: 0,
            last_sent: now,
            inactive_since: Some(now),
            dirty: false,
            replicate: false,
            replay_last: None,
            replay_due: None,
            paused_until,
            fc_pending: None,
            fc_bytes: 0,
            fc_window: FLOW_CONTROL_WINDOW,
            fc_count: 0,
            no_interest: false,
            pin: None,
            push_bound: false,
        }
    }

    /// Recomputes the count of undelivered messages (after a purge or on load).
    pub fn recount(&mut self, store: &Store) {
        self.num_pending =
            self.st.initial.len() as u64 + store.count_from(self.st.next_sseq, &self.filters);
    }

    fn matches(&self, subject: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| filter_matches(subject, f))
    }

    /// A new message was stored.
    pub fn on_stored(&mut self, seq: u64, subject: &str) {
        if seq >= self.st.next_sseq && self.matches(subject) {
            self.num_pending += 1;
        }
    }

    /// A message left the stream (limits, delete, purge).
    pub fn on_removed(&mut self, seq: u64, subject: &str) {
        if seq >= self.st.next_sseq && self.matches(subject) {
            self.num_pending = self.num_pending.saturating_sub(1);
        }
        if self.remove_pending(seq).is_some() {
            self.dirty = true;
            self.replicate = true;
        }
        self.redeliver.remove(&seq);
        self.st.redelivered.remove(&seq);
    }

    /// Drops a pending delivery and its deadline.
    fn remove_pending(&mut self, seq: u64) -> Option<Pending> {
        let p = self.st.pending.remove(&seq)?;
        self.deadlines.remove(&(p.deadline, seq));
        Some(p)
    }

    /// Moves a pending delivery's deadline.
    fn set_deadline(&mut self, seq: u64, deadline: Instant) {
        if let Some(p) = self.st.pending.get_mut(&seq) {
            self.deadlines.remove(&(p.deadline, seq));
            p.deadline = deadline;
            self.deadlines.insert((deadline, seq));
        }
    }

    /// Whether this consumer still needs `seq` (interest retention).
    pub fn needs(&self, seq: u64, subject: &str) -> bool {
        if !self.matches(subject) {
            return false;
        }
        seq >= self.st.next_sseq
            || self.st.pending.contains_key(&seq)
            || self.st.initial.contains(&seq)
    }

    /// Whether it is a push consumer.
    pub fn is_push(&self) -> bool {
        self.cfg.is_push()
    }

    fn ack_wait_for(&self, deliveries: u64) -> Duration {
        let ns = if self.cfg.backoff.is_empty() {
            self.cfg.ack_wait
        } else {
            let i = (deliveries.max(1) - 1) as usize;
            self.cfg.backoff[i.min(self.cfg.backoff.len() - 1)]
        };
        Duration::from_nanos(ns.max(0) as u64)
    }

    /// Tells waiting pull requests the consumer is gone.
    pub fn deleted(&mut self, ctx: &mut Ctx<'_>) {
        let reqs: Vec<String> = self.waiting.drain(..).map(|r| r.reply).collect();
        for r in reqs {
            self.status(ctx, &r, 409, "Consumer Deleted", &[]);
        }
    }

    /// `CONSUMER.INFO`.
    pub fn info(&self, stream: &str) -> ConsumerInfo {
        let at = |t: i64| (t > 0).then(|| rfc3339_nanos(t));
        ConsumerInfo {
            stream_name: stream.to_string(),
            name: self.name.clone(),
            created: rfc3339_nanos(self.created),
            config: self.cfg.clone(),
            delivered: SeqInfo {
                consumer_seq: self.st.dseq,
                stream_seq: self.st.last_sseq,
                last_active: at(self.last_delivered),
            },
            ack_floor: SeqInfo {
                consumer_seq: self.st.ack_floor_dseq,
                stream_seq: self.st.ack_floor_sseq,
                last_active: at(self.last_acked),
            },
            num_ack_pending: self.st.pending.len() as u64,
            num_redelivered: self.st.redelivered.len() as u64,
            num_waiting: self.waiting.len() as u64,
            num_pending: self.num_pending,
            push_bound: self.push_bound.then_some(true),
            paused: (self.paused_until > unix_nanos()).then_some(true),
            pause_remaining: (self.paused_until > unix_nanos())
                .then(|| self.paused_until - unix_nanos()),
            ts: rfc3339_nanos(unix_nanos()),
            priority_groups: self
                .cfg
                .priority_groups
                .first()
                .map(|g| PriorityGroupState {
                    group: g.clone(),
                    pinned_client_id: self.pin.as_ref().map(|p| p.id.clone()),
                    pinned_ts: self.pin.as_ref().map_or_else(
                        || "0001-01-01T00:00:00Z".to_string(),
                        |p| rfc3339_nanos(p.ts),
                    ),
                })
                .into_iter()
                .collect(),
        }
    }

    /// `CONSUMER.RESET`: delivery starts again at stream sequence `seq` (0: just above the
    /// ack floor) with nothing pending, as nats-server's `resetStartingSeqLocked`; returns
    /// the sequence it starts at.
    pub fn reset(&mut self, seq: u64, store: &Store) -> Result<u64, super::errors::ApiError> {
        let invalid = super::errors::ApiError::consumer_invalid_reset;
        let seq = if seq == 0 {
            self.st.ack_floor_sseq + 1
        } else {
            match self.cfg.deliver_policy {
                DeliverPolicy::All => {}
                DeliverPolicy::ByStartSequence if seq < self.cfg.opt_start_seq => {
                    return Err(invalid("below start seq"));
                }
                DeliverPolicy::ByStartSequence => {}
                DeliverPolicy::ByStartTime => {
                    let ts = self
                        .cfg
                        .opt_start_time
                        .as_deref()
                        .and_then(parse_rfc3339)
                        .unwrap_or(0);
                    if seq < store.seq_for_time(ts) {
                        return Err(invalid("below start time"));
                    }
                }
                _ => return Err(invalid("not allowed")),
            }
            seq
        };
        self.st.pending.clear();
        self.st.redelivered.clear();
        self.st.initial.clear();
        self.redeliver.clear();
        self.deadlines.clear();
        self.st.next_sseq = seq;
        self.st.dseq = 0;
        self.st.last_sseq = seq - 1;
        self.st.ack_floor_sseq = seq - 1;
        self.st.ack_floor_dseq = 0;
        self.last_delivered = 0;
        self.last_acked = 0;
        self.recount(store);
        self.dirty = true;
        self.replicate = true;
        Ok(seq)
    }

    /// Takes an updated configuration (fields nats-server lets change): new filters are
    /// counted again from where the consumer is.
    pub fn reconfigure(&mut self, cfg: ConsumerConfig, store: &Store) {
        let refilter = cfg.filters() != self.filters;
        self.cfg = cfg;
        if refilter {
            self.filters = self.cfg.filters();
            self.recount(store);
        }
        self.dirty = true;
        self.replicate = true;
    }

    /// Whether deliveries follow the original timing (not supported: rejected at create).
    pub fn replay_original(&self) -> bool {
        self.cfg.replay_policy == ReplayPolicy::Original
    }
}

/// The first flow-control window of a push consumer (nats-server starts at 2 MiB too).
const FLOW_CONTROL_WINDOW: usize = 2 << 20;
/// The largest flow-control window.
const FLOW_CONTROL_MAX_WINDOW: usize = 32 << 20;

/// Go's `time.Duration.String()` for whole units used in error texts.
fn go_duration(ns: i64) -> String {
    let d = Duration::from_nanos(ns.max(0) as u64);
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:?}", d)
    }
}

fn parse_go_duration(s: &str) -> Option<i64> {
    crate::config::duration::parse_go_duration(s)
        .ok()
        .and_then(|v| i64::try_from(v).ok())
}
