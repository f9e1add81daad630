//! A consumer of a stream: where it is in the stream, what it has delivered and not yet seen
//! acknowledged, the pull requests waiting on it, and how it delivers (push or pull).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::config::{AckPolicy, ConsumerConfig, DeliverPolicy, PriorityPolicy, ReplayPolicy};
use super::headers;
use super::store::{filter_matches, Store};
use super::time::{parse_rfc3339, rfc3339_nanos};
use crate::accounts::Account;
use crate::clock::unix_nanos;
use crate::server::client::InternalSender;
use crate::server::Server;

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

    /// Queues a pull request; answers at once what cannot wait.
    pub fn add_request(&mut self, ctx: &mut Ctx<'_>, reply: &str, body: &[u8]) {
        self.inactive_since = None;
        let mut json = false;
        let req: NextRequest = if body.iter().all(u8::is_ascii_whitespace) {
            NextRequest {
                batch: 1,
                ..Default::default()
            }
        } else if let Ok(n) = std::str::from_utf8(body)
            .unwrap_or("")
            .trim()
            .parse::<i64>()
        {
            NextRequest {
                batch: n,
                ..Default::default()
            }
        } else {
            match super::errors::from_json::<NextRequest>(body, false) {
                Ok(r) => {
                    json = true;
                    r
                }
                Err(e) => {
                    let why = e
                        .description
                        .trim_start_matches("invalid JSON: ")
                        .to_string();
                    self.status(ctx, reply, 400, &format!("Bad Request - {why}"), &[]);
                    return;
                }
            }
        };
        // nats-server's `nextReqFromMsg`: a heartbeat needs an expiry at least twice as long.
        if req.idle_heartbeat > 0 && (req.expires <= 0 || req.idle_heartbeat > req.expires / 2) {
            self.status(
                ctx,
                reply,
                400,
                "Bad Request - heartbeat value too large",
                &[],
            );
            return;
        }
        let batch = req.batch.max(1);
        if self.is_push() {
            self.status(ctx, reply, 409, "Consumer is push based", &[]);
            return;
        }
        if self.cfg.max_batch > 0 && batch > self.cfg.max_batch {
            let t = format!("Exceeded MaxRequestBatch of {}", self.cfg.max_batch);
            self.status(ctx, reply, 409, &t, &[]);
            return;
        }
        if self.cfg.max_expires > 0 && req.expires > self.cfg.max_expires {
            let t = format!(
                "Exceeded MaxRequestExpires of {}",
                go_duration(self.cfg.max_expires)
            );
            self.status(ctx, reply, 409, &t, &[]);
            return;
        }
        if self.cfg.max_bytes > 0 && req.max_bytes > self.cfg.max_bytes {
            let t = format!("Exceeded MaxRequestMaxBytes of {}", self.cfg.max_bytes);
            self.status(ctx, reply, 409, &t, &[]);
            return;
        }
        let prio = if json {
            match self.check_priority(&req) {
                Ok(p) => Some(p),
                Err((code, text)) => {
                    self.status(ctx, reply, code, text, &[]);
                    return;
                }
            }
        } else {
            None
        };
        if self.waiting.len() as i64 >= self.cfg.max_waiting {
            self.status(ctx, reply, 409, "Exceeded MaxWaiting", &[]);
            return;
        }
        self.sweep_requests(ctx);
        let now = Instant::now();
        let available = self.num_pending + self.redeliver.len() as u64;
        // nats-server: a no_wait request with an expiry is never refused up front; it waits
        // for its first message (or its expiry), then ends at the end of the stream.
        if req.no_wait && req.expires <= 0 && available == 0 {
            self.status(ctx, reply, 404, "No Messages", &[]);
            return;
        }
        if req.no_wait && available > 0 {
            let owed: i64 = self.waiting.iter().map(|r| r.batch - r.delivered).sum();
            if (available as i64) < owed {
                self.status(ctx, reply, 408, "Requests Pending", &[]);
                return;
            }
        }
        let r = PullRequest {
            reply: reply.to_string(),
            batch,
            max_bytes: req.max_bytes,
            expires: (req.expires > 0).then(|| now + Duration::from_nanos(req.expires as u64)),
            no_wait: req.no_wait,
            heartbeat: (req.idle_heartbeat > 0)
                .then(|| Duration::from_nanos(req.idle_heartbeat as u64)),
            last_sent: now,
            delivered: 0,
            prio,
        };
        if self.cfg.priority_policy == PriorityPolicy::Prioritized {
            self.enqueue_by_priority(r);
        } else {
            self.waiting.push_back(r);
        }
    }

    /// nats-server's priority-group checks of a JSON pull request, in its order; a request
    /// with the current pin id renews the pin.
    fn check_priority(&mut self, req: &NextRequest) -> Result<Priority, (u16, &'static str)> {
        let policy = self.cfg.priority_policy;
        if (req.min_pending != 0 || req.min_ack_pending != 0) && policy != PriorityPolicy::Overflow
        {
            return Err((400, "Bad Request - Not a Overflow Priority consumer"));
        }
        if !req.id.is_empty() && policy != PriorityPolicy::PinnedClient {
            return Err((400, "Bad Request - Not a Pinned Client Priority consumer"));
        }
        if !(0..=9).contains(&req.priority) {
            return Err((400, "Bad Request - Priority must be between 0 and 9"));
        }
        if policy != PriorityPolicy::None {
            if req.group.is_empty() {
                return Err((400, "Bad Request - Priority Group missing"));
            }
            if !self.cfg.priority_groups.contains(&req.group) {
                return Err((400, "Bad Request - Invalid Priority Group"));
            }
            let ttl = self.pin_ttl();
            if let Some(pin) = &mut self.pin {
                if req.id == pin.id {
                    pin.deadline = Instant::now() + ttl;
                } else if !req.id.is_empty() {
                    return Err((423, "Nats-Pin-Id mismatch"));
                }
            }
        }
        Ok(Priority {
            min_pending: req.min_pending,
            min_ack_pending: req.min_ack_pending,
            id: req.id.clone(),
            priority: req.priority,
        })
    }

    fn pin_ttl(&self) -> Duration {
        Duration::from_nanos(self.cfg.priority_timeout.max(0) as u64)
    }

    /// prioritized: after the last request of the same or a better (lower) priority; a
    /// request without one (empty or numeric body) goes last.
    fn enqueue_by_priority(&mut self, r: PullRequest) {
        let p = r.prio.as_ref().map_or(i64::MAX, |p| p.priority);
        let at = self
            .waiting
            .iter()
            .position(|w| w.prio.as_ref().map_or(i64::MAX, |x| x.priority) > p)
            .unwrap_or(self.waiting.len());
        self.waiting.insert(at, r);
    }

    /// The waiting request the next message goes to, by the priority policy; `pending` is
    /// what the consumer has left to deliver, this message included. pinned_client hands
    /// out the pin here and turns away requests holding a stale one.
    fn pick_request(&mut self, ctx: &mut Ctx<'_>, pending: i64) -> Option<usize> {
        match self.cfg.priority_policy {
            PriorityPolicy::None | PriorityPolicy::Prioritized => {
                (!self.waiting.is_empty()).then_some(0)
            }
            PriorityPolicy::Overflow => {
                let ack_pending = self.st.pending.len() as i64;
                self.waiting.iter().position(|r| match &r.prio {
                    Some(p) if p.min_pending > 0 || p.min_ack_pending > 0 => {
                        (p.min_pending > 0 && p.min_pending <= pending)
                            || (p.min_ack_pending > 0 && p.min_ack_pending <= ack_pending)
                    }
                    _ => true,
                })
            }
            PriorityPolicy::PinnedClient => {
                let mut i = 0;
                while i < self.waiting.len() {
                    let id = self.waiting[i].prio.as_ref().map(|p| p.id.as_str());
                    match (&self.pin, id) {
                        // Nobody holds the pin: the first request without an id takes it
                        // (an empty or numeric body is served without one).
                        (None, None) => return Some(i),
                        (None, Some("")) => {
                            self.assign_pin(ctx, i);
                            return Some(i);
                        }
                        (Some(pin), Some(id)) if id == pin.id => return Some(i),
                        // Waits its turn while someone else holds the pin.
                        (Some(_), None | Some("")) => i += 1,
                        // Holds a pin that is no longer valid.
                        (_, Some(_)) => {
                            let r = self.waiting.remove(i).expect("index in range");
                            self.status(
                                ctx,
                                &r.reply,
                                423,
                                "Nats-Wrong-Pin-Id",
                                &[
                                    ("Nats-Pending-Messages", (r.batch - r.delivered).to_string()),
                                    ("Nats-Pending-Bytes", r.max_bytes.max(0).to_string()),
                                ],
                            );
                        }
                    }
                }
                None
            }
        }
    }

    fn assign_pin(&mut self, ctx: &mut Ctx<'_>, idx: usize) {
        let id = new_pin_id();
        let ts = unix_nanos();
        self.pin = Some(Pin {
            id: id.clone(),
            ts,
            deadline: Instant::now() + self.pin_ttl(),
        });
        if let Some(p) = self.waiting[idx].prio.as_mut() {
            p.id = id.clone();
        }
        let group = self
            .cfg
            .priority_groups
            .first()
            .cloned()
            .unwrap_or_default();
        super::advisory::publish(
            ctx.server,
            ctx.account,
            ctx.sender,
            &format!(
                "$JS.EVENT.ADVISORY.CONSUMER.PINNED.{}.{}",
                ctx.stream, self.name
            ),
            "io.nats.jetstream.advisory.v1.consumer_group_pinned",
            serde_json::json!({
                "account": ctx.account.name,
                "stream": ctx.stream,
                "consumer": self.name,
                "group": group,
                "pinned_id": id,
            }),
        );
    }

    /// Takes the pin away (`reason`: "admin" for the unpin API, "timeout" when it lapsed);
    /// the next request without an id gets a new one.
    pub fn unpin(&mut self, ctx: &mut Ctx<'_>, group: &str, reason: &str) {
        if self.pin.take().is_none() {
            return;
        }
        super::advisory::publish(
            ctx.server,
            ctx.account,
            ctx.sender,
            &format!(
                "$JS.EVENT.ADVISORY.CONSUMER.UNPINNED.{}.{}",
                ctx.stream, self.name
            ),
            "io.nats.jetstream.advisory.v1.consumer_group_unpinned",
            serde_json::json!({
                "account": ctx.account.name,
                "stream": ctx.stream,
                "consumer": self.name,
                "group": group,
                "reason": reason,
            }),
        );
    }

    fn status(&self, ctx: &mut Ctx<'_>, to: &str, code: u16, text: &str, extra: &[(&str, String)]) {
        let h = headers::status(code, text, extra);
        ctx.sender
            .send(ctx.server, ctx.account, to.as_bytes(), None, Some(&h), b"");
    }

    /// Delivers what it can: redeliveries first, then new messages, to the push subject or the
    /// waiting pull requests. Returns whether anything was sent.
    pub fn deliver(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let mut sent = false;
        let push = self.is_push();
        if self.paused_until > 0 {
            if self.paused_until > unix_nanos() {
                if !push {
                    self.end_no_wait(ctx);
                }
                return false;
            }
            self.paused_until = 0;
            self.cfg.pause_until = None;
        }
        if self.fc_stalled() {
            return false;
        }
        if !push {
            self.sweep_requests(ctx);
        }
        // Whether the loop below stopped because the stream ran dry (nats-server's "end of
        // stream"), which ends no_wait requests; a max_ack_pending stop leaves them waiting.
        let mut drained = false;
        if push {
            self.no_interest = !self.push_interest(ctx);
            if self.no_interest {
                return false;
            }
        }
        loop {
            if !push {
                self.drop_expired_front(ctx);
                if self.waiting.is_empty() {
                    drained = true;
                    break;
                }
            }
            // Pick the next sequence.
            let redelivery = self.redeliver.iter().next().copied();
            let (seq, is_new) = match redelivery {
                Some(s) => (s, false),
                None => {
                    if self.cfg.ack_policy != AckPolicy::None
                        && self.cfg.max_ack_pending > 0
                        && self.st.pending.len() as i64 >= self.cfg.max_ack_pending
                    {
                        // Acknowledged only by flow control: ask for it now.
                        if self.cfg.ack_policy == AckPolicy::FlowControl
                            && self.fc_pending.is_none()
                        {
                            let target = self.cfg.deliver_subject.clone().unwrap_or_default();
                            self.flow_control_request(ctx, &target);
                        }
                        break;
                    }
                    match self.next_new(ctx.store) {
                        Some(s) => (s, true),
                        None => {
                            drained = true;
                            break;
                        }
                    }
                }
            };
            if !is_new {
                self.redeliver.remove(&seq);
                if !self.st.pending.contains_key(&seq) {
                    continue;
                }
            }
            let Some(msg) = ctx.store.get(seq) else {
                if is_new {
                    self.advance_past(seq);
                }
                continue;
            };
            let dc = if is_new {
                1
            } else {
                self.st.redelivered.get(&seq).copied().unwrap_or(1) + 1
            };
            let dseq = self.st.dseq + 1;
            let pending_after = if is_new {
                self.num_pending.saturating_sub(1)
            } else {
                self.num_pending
            };
            let ack = format!(
                "$JS.ACK.{}.{}.{}.{}.{}.{}.{}",
                ctx.stream, self.name, dc, seq, dseq, msg.ts, pending_after
            );
            let hdr_buf;
            let (hdr, data): (Option<&[u8]>, &[u8]) = if self.cfg.headers_only {
                hdr_buf = headers::with(&msg.hdr, &[("Nats-Msg-Size", msg.data.len().to_string())]);
                (Some(&hdr_buf), b"")
            } else {
                ((!msg.hdr.is_empty()).then_some(&msg.hdr[..]), &msg.data[..])
            };
            // nats-server counts what the client sees, less the delivery subject.
            let size = msg.subject.len() + ack.len() + hdr.map_or(0, <[u8]>::len) + data.len();
            // Pull: the request it goes to, respecting max_bytes.
            let mut idx = 0;
            let target = if push {
                self.cfg.deliver_subject.clone().unwrap_or_default()
            } else {
                let pending = self.num_pending as i64 + i64::from(!is_new);
                let Some(i) = self.pick_request(ctx, pending) else {
                    // Nobody may take it now (overflow marks, someone else's pin).
                    if !is_new {
                        self.redeliver.insert(seq);
                    }
                    drained = true;
                    break;
                };
                idx = i;
                let req = &mut self.waiting[idx];
                if req.max_bytes > 0 && size as i64 > req.max_bytes {
                    let r = self.waiting.remove(idx).expect("picked");
                    self.status(
                        ctx,
                        &r.reply,
                        409,
                        "Message Size Exceeds MaxBytes",
                        &[
                            ("Nats-Pending-Messages", (r.batch - r.delivered).to_string()),
                            ("Nats-Pending-Bytes", r.max_bytes.to_string()),
                        ],
                    );
                    if !is_new {
                        self.redeliver.insert(seq);
                    }
                    continue;
                }
                req.reply.clone()
            };
            if is_new && self.replay_original() {
                // Keep the original spacing between messages.
                if let Some((last_ts, last_at)) = self.replay_last {
                    let due = last_at + Duration::from_nanos((msg.ts - last_ts).max(0) as u64);
                    if Instant::now() < due {
                        self.replay_due = Some(due);
                        break;
                    }
                }
                self.replay_due = None;
                self.replay_last = Some((msg.ts, Instant::now()));
            }
            if is_new {
                self.advance_past(seq);
            } else {
                self.st.redelivered.insert(seq, dc);
            }
            self.st.dseq = dseq;
            let now_ns = unix_nanos();
            // pinned_client: every message tells its holder the pin (not counted in
            // max_bytes, as in nats-server).
            let pinned_buf;
            let hdr = match self.pin.as_ref().filter(|_| !push) {
                Some(pin) if self.cfg.priority_policy == PriorityPolicy::PinnedClient => {
                    pinned_buf =
                        headers::with(hdr.unwrap_or(b""), &[("Nats-Pin-Id", pin.id.clone())]);
                    Some(&pinned_buf[..])
                }
                _ => hdr,
            };
            let took = ctx.sender.send_as(
                ctx.server,
                ctx.account,
                target.as_bytes(),
                msg.subject.as_bytes(),
                Some(ack.as_bytes()),
                hdr,
                data,
            );
            sent = true;
            self.last_sent = Instant::now();
            if push && self.cfg.flow_control {
                // One request outstanding, asked for at half the window; deliveries stop
                // when a whole window is out without its answer.
                self.fc_bytes += size;
                if self.fc_pending.is_none() && self.fc_bytes >= self.fc_window / 2 {
                    self.flow_control_request(ctx, &target);
                }
            }
            self.last_delivered = now_ns;
            self.dirty = true;
            if self.cfg.ack_policy == AckPolicy::None {
                self.st.ack_floor_sseq = seq;
                self.st.ack_floor_dseq = dseq;
            } else {
                let wait = self.ack_wait_for(dc);
                let deadline = Instant::now() + wait;
                if let Some(old) = self.st.pending.insert(
                    seq,
                    Pending {
                        dseq,
                        ts: now_ns,
                        deadline,
                    },
                ) {
                    self.deadlines.remove(&(old.deadline, seq));
                }
                // Flow-control acknowledgement never redelivers: no ack deadline.
                if self.cfg.ack_policy != AckPolicy::FlowControl {
                    self.deadlines.insert((deadline, seq));
                }
            }
            if !push {
                let req = &mut self.waiting[idx];
                req.delivered += 1;
                req.last_sent = Instant::now();
                let mut bytes_used_up = false;
                if req.max_bytes > 0 {
                    req.max_bytes -= size as i64;
                    // An exact fit ends the request without a status, as in nats-server.
                    bytes_used_up = req.max_bytes == 0;
                }
                if req.delivered < req.batch && !bytes_used_up && took {
                    // prioritized: round-robin within a priority level.
                    if self.cfg.priority_policy == PriorityPolicy::Prioritized {
                        let r = self.waiting.remove(idx).expect("picked");
                        self.enqueue_by_priority(r);
                    }
                } else {
                    let r = self.waiting.remove(idx).expect("picked");
                    if r.delivered >= r.batch && r.max_bytes > 0 {
                        self.status(
                            ctx,
                            &r.reply,
                            409,
                            "Batch Completed",
                            &[
                                ("Nats-Pending-Messages", "0".to_string()),
                                ("Nats-Pending-Bytes", r.max_bytes.to_string()),
                            ],
                        );
                    }
                }
            } else if !took || self.fc_stalled() {
                break;
            }
        }
        if !push && drained {
            self.end_no_wait(ctx);
        }
        sent
    }

    /// Asks a flow-controlled push subscriber to confirm it keeps up; deliveries wait for the
    /// answer on `$JS.FC.<stream>.<consumer>.<n>`.
    fn flow_control_request(&mut self, ctx: &mut Ctx<'_>, deliver: &str) {
        self.fc_count += 1;
        let reply = format!("$JS.FC.{}.{}.{}", ctx.stream, self.name, self.fc_count);
        let h = headers::status(100, "FlowControl Request", &[]);
        ctx.sender.send(
            ctx.server,
            ctx.account,
            deliver.as_bytes(),
            Some(reply.as_bytes()),
            Some(&h),
            b"",
        );
        self.fc_bytes = 0;
        self.fc_pending = Some(reply);
    }

    /// A flow-control answer with its headers: whether it released the consumer, and the
    /// sequences it acknowledged (a `flow_control` ack policy consumer takes
    /// `Nats-Last-Stream` as an ack of everything up to it).
    pub fn flow_control_answer(&mut self, subject: &str, hdr: &[u8]) -> (bool, Vec<u64>) {
        let mut acked = Vec::new();
        if self.cfg.ack_policy == AckPolicy::FlowControl && !hdr.is_empty() {
            if let Some(last) =
                headers::get(hdr, "Nats-Last-Stream").and_then(|v| v.trim().parse::<u64>().ok())
            {
                self.last_acked = unix_nanos();
                acked = self.ack_through(last);
                self.update_floor();
                self.dirty = true;
            }
        }
        (self.take_flow_control(subject), acked)
    }

    fn take_flow_control(&mut self, subject: &str) -> bool {
        if self.fc_pending.as_deref() == Some(subject) {
            // A subscriber that answered before it was stalled earns a larger window.
            if !self.fc_stalled() {
                self.fc_window = (self.fc_window * 2).min(FLOW_CONTROL_MAX_WINDOW);
            }
            self.fc_pending = None;
            return true;
        }
        false
    }

    /// Flow control holds deliveries: a window's worth is out and unanswered.
    fn fc_stalled(&self) -> bool {
        self.fc_pending.is_some() && self.fc_bytes >= self.fc_window / 2
    }

    /// The next undelivered sequence for this consumer.
    fn next_new(&mut self, store: &Store) -> Option<u64> {
        while let Some(&s) = self.st.initial.front() {
            if store.peek(s).is_some() {
                return Some(s);
            }
            self.st.initial.pop_front();
            self.num_pending = self.num_pending.saturating_sub(1);
        }
        store.next_matching(self.st.next_sseq, &self.filters)
    }

    fn advance_past(&mut self, seq: u64) {
        if self.st.initial.front() == Some(&seq) {
            self.st.initial.pop_front();
        } else {
            self.st.next_sseq = seq + 1;
        }
        self.st.last_sseq = self.st.last_sseq.max(seq);
        self.num_pending = self.num_pending.saturating_sub(1);
    }

    fn push_interest(&self, ctx: &Ctx<'_>) -> bool {
        let Some(ds) = self.cfg.deliver_subject.as_deref() else {
            return false;
        };
        ctx.account.has_interest(ds) || ctx.server.routes().is_some()
    }

    /// Ends expired requests (408) at the front of the queue; the loop in `deliver` calls
    /// this per message, so it stays O(1) unless something is due.
    fn drop_expired_front(&mut self, ctx: &mut Ctx<'_>) {
        let now = Instant::now();
        while let Some(r) = self.waiting.front() {
            if r.expires.is_some_and(|e| e <= now) {
                let r = self.waiting.pop_front().expect("front");
                self.timeout(ctx, &r);
            } else {
                break;
            }
        }
    }

    /// Brings what `CONSUMER.INFO` says about who is listening up to date: live pull
    /// requests, and whether a push consumer's deliver subject has a subscriber.
    pub fn refresh_interest(&mut self, ctx: &mut Ctx<'_>) {
        match self
            .cfg
            .deliver_subject
            .as_deref()
            .filter(|d| !d.is_empty())
        {
            Some(ds) => {
                let m = ctx.account.sublist.match_subject(ds);
                self.push_bound = m
                    .psubs
                    .iter()
                    .chain(m.qsubs.iter().flatten())
                    .any(|sub| sub.subject == ds);
            }
            None => self.sweep_requests(ctx),
        }
    }

    /// Walks every waiting request: ends the expired ones (408) and drops, silently, those
    /// whose requester has gone (no interest left in the reply subject), as nats-server does,
    /// so nothing is delivered into the void and `num_waiting` counts live requests.
    fn sweep_requests(&mut self, ctx: &mut Ctx<'_>) {
        if self.waiting.is_empty() {
            return;
        }
        let now = Instant::now();
        // In a cluster the requester may sit behind a route; replies to imported requests
        // (`_R_.`) are routed without a subscription here.
        let check_interest = ctx.server.routes().is_none();
        let mut keep = VecDeque::with_capacity(self.waiting.len());
        while let Some(r) = self.waiting.pop_front() {
            if r.expires.is_some_and(|e| e <= now) {
                self.timeout(ctx, &r);
            } else if check_interest
                && !r.reply.starts_with("_R_.")
                && !ctx.account.has_interest(&r.reply)
            {
                continue;
            } else {
                keep.push_back(r);
            }
        }
        self.waiting = keep;
    }

    fn timeout(&self, ctx: &mut Ctx<'_>, r: &PullRequest) {
        let left = r.batch - r.delivered;
        self.status(
            ctx,
            &r.reply,
            408,
            "Request Timeout",
            &[
                ("Nats-Pending-Messages", left.to_string()),
                ("Nats-Pending-Bytes", r.max_bytes.max(0).to_string()),
            ],
        );
    }

    /// The stream ran dry: no_wait requests end with 404, except one with an expiry that has
    /// had nothing yet (it waits for a first message or its expiry).
    fn end_no_wait(&mut self, ctx: &mut Ctx<'_>) {
        if !self.waiting.iter().any(|r| r.no_wait) {
            return;
        }
        let mut keep = VecDeque::new();
        while let Some(r) = self.waiting.pop_front() {
            if r.no_wait && (r.expires.is_none() || r.delivered > 0) {
                self.status(ctx, &r.reply, 404, "No Messages", &[]);
            } else {
                keep.push_back(r);
            }
        }
        self.waiting = keep;
    }

    /// Handles an acknowledgement for stream sequence `seq`; returns the sequences that are now
    /// acknowledged (for interest and work-queue retention).
    pub fn ack(
        &mut self,
        ctx: &mut Ctx<'_>,
        seq: u64,
        body: &[u8],
        reply: Option<&str>,
    ) -> Vec<u64> {
        // nats-server has no ack subscription for these: the answer goes nowhere.
        if self.cfg.ack_policy == AckPolicy::FlowControl {
            return Vec::new();
        }
        self.last_acked = unix_nanos();
        let body = std::str::from_utf8(body).unwrap_or("").trim();
        let (kind, arg) = match body.split_once(' ') {
            Some((k, a)) => (k, a.trim()),
            None => (body, ""),
        };
        let mut acked = Vec::new();
        let pending = self.st.pending.get(&seq).copied();
        let deliveries = self.st.redelivered.get(&seq).copied().unwrap_or(1);
        let me = self.name.clone();
        let event = |ctx: &mut Ctx<'_>, what: &str, kind: &str, extra: serde_json::Value| {
            let Some(p) = pending else { return };
            let mut body = serde_json::json!({
                "stream": ctx.stream,
                "consumer": me,
                "consumer_seq": p.dseq,
                "stream_seq": seq,
            });
            if let (serde_json::Value::Object(m), serde_json::Value::Object(e)) = (&mut body, extra)
            {
                m.extend(e);
            }
            super::advisory::publish(
                ctx.server,
                ctx.account,
                ctx.sender,
                &format!("$JS.EVENT.{what}.{}.{me}", ctx.stream),
                kind,
                body,
            );
        };
        match kind {
            "" | "+ACK" => {
                acked = self.do_ack(seq);
                if acked.contains(&seq) && self.sampled() {
                    let ack_time = pending.map_or(0, |p| unix_nanos() - p.ts);
                    event(
                        ctx,
                        "METRIC.CONSUMER.ACK",
                        "io.nats.jetstream.metric.v1.consumer_ack",
                        serde_json::json!({"ack_time": ack_time, "deliveries": deliveries}),
                    );
                }
            }
            "+NXT" => {
                acked = self.do_ack(seq);
                if let Some(r) = reply {
                    let b = if arg.is_empty() {
                        b"1".to_vec()
                    } else {
                        arg.as_bytes().to_vec()
                    };
                    self.add_request(ctx, r, &b);
                    return acked;
                }
            }
            "-NAK" if self.st.pending.contains_key(&seq) => {
                event(
                    ctx,
                    "ADVISORY.CONSUMER.MSG_NAKED",
                    "io.nats.jetstream.advisory.v1.nak",
                    serde_json::json!({"deliveries": deliveries}),
                );
                let delay = serde_json::from_str::<serde_json::Value>(arg)
                    .ok()
                    .and_then(|v| v.get("delay").and_then(|d| d.as_i64()))
                    .or_else(|| parse_go_duration(arg));
                match delay {
                    Some(d) if d > 0 => {
                        self.set_deadline(seq, Instant::now() + Duration::from_nanos(d as u64))
                    }
                    _ => {
                        let deadline = self.st.pending[&seq].deadline;
                        self.deadlines.remove(&(deadline, seq));
                        self.redeliver.insert(seq);
                    }
                }
            }
            "+WPI" if self.st.pending.contains_key(&seq) && !self.redeliver.contains(&seq) => {
                let dc = self.st.redelivered.get(&seq).copied().unwrap_or(1);
                let wait = self.ack_wait_for(dc);
                self.set_deadline(seq, Instant::now() + wait);
            }
            "+TERM" if pending.is_some() => {
                self.remove_pending(seq);
                event(
                    ctx,
                    "ADVISORY.CONSUMER.MSG_TERMINATED",
                    "io.nats.jetstream.advisory.v1.terminated",
                    serde_json::json!({"deliveries": deliveries, "reason": arg}),
                );
                self.st.redelivered.remove(&seq);
                self.redeliver.remove(&seq);
                acked.push(seq);
            }
            _ => {}
        }
        self.dirty = true;
        self.update_floor();
        if let Some(r) = reply {
            ctx.sender
                .send(ctx.server, ctx.account, r.as_bytes(), None, None, b"");
        }
        acked
    }

    /// Whether this ack is sampled for the ack metric (`sample_freq`).
    fn sampled(&self) -> bool {
        let f: u32 = self
            .cfg
            .sample_freq
            .trim_end_matches('%')
            .parse()
            .unwrap_or(0);
        f > 0 && fastrand::u32(0..100) < f
    }

    /// Takes every pending message up to stream sequence `seq` off the books (ack all, and a
    /// flow-control answer's `Nats-Last-Stream`); returns their sequences.
    fn ack_through(&mut self, seq: u64) -> Vec<u64> {
        let rest = self.st.pending.split_off(&(seq + 1));
        let done = std::mem::replace(&mut self.st.pending, rest);
        let mut acked = Vec::with_capacity(done.len());
        for (s, p) in done.iter() {
            self.deadlines.remove(&(p.deadline, *s));
            self.st.redelivered.remove(s);
            self.redeliver.remove(s);
            acked.push(*s);
        }
        acked
    }

    fn do_ack(&mut self, seq: u64) -> Vec<u64> {
        let mut acked = Vec::new();
        match self.cfg.ack_policy {
            AckPolicy::All => acked = self.ack_through(seq),
            _ => {
                if self.remove_pending(seq).is_some() {
                    self.st.redelivered.remove(&seq);
                    self.redeliver.remove(&seq);
                    acked.push(seq);
                }
            }
        }
        acked
    }

    fn update_floor(&mut self) {
        match self.st.pending.iter().next() {
            Some((s, p)) => {
                self.st.ack_floor_sseq = s - 1;
                self.st.ack_floor_dseq = p.dseq - 1;
            }
            None => {
                self.st.ack_floor_sseq = self.st.last_sseq;
                self.st.ack_floor_dseq = self.st.dseq;
            }
        }
    }

    /// Moves expired deliveries to redelivery, sends heartbeats, expires pull requests.
    /// Returns the sequences dropped after `max_deliver` with their delivery counts (they
    /// count as acknowledged).
    pub fn tick(&mut self, ctx: &mut Ctx<'_>, now: Instant) -> Vec<(u64, u64)> {
        let mut dropped = Vec::new();
        let max_deliver = self.cfg.max_deliver;
        let mut expired = Vec::new();
        while let Some(&(d, s)) = self.deadlines.iter().next() {
            if d > now {
                break;
            }
            self.deadlines.remove(&(d, s));
            expired.push(s);
        }
        for s in expired {
            let dc = self.st.redelivered.get(&s).copied().unwrap_or(1);
            if max_deliver > 0 && dc as i64 >= max_deliver {
                self.remove_pending(s);
                self.st.redelivered.remove(&s);
                dropped.push((s, dc));
                self.dirty = true;
            } else {
                self.redeliver.insert(s);
            }
        }
        if !dropped.is_empty() {
            self.update_floor();
        }
        // Pull requests: the pin lapsing, expiry, requesters gone, heartbeats.
        if self.pin.as_ref().is_some_and(|p| p.deadline <= now) {
            let group = self
                .cfg
                .priority_groups
                .first()
                .cloned()
                .unwrap_or_default();
            self.unpin(ctx, &group, "timeout");
        }
        self.sweep_requests(ctx);
        let mut beats = Vec::new();
        for r in self.waiting.iter_mut() {
            if let Some(hb) = r.heartbeat {
                if now.duration_since(r.last_sent) >= hb {
                    r.last_sent = now;
                    beats.push(r.reply.clone());
                }
            }
        }
        // Pull heartbeats carry the last delivered sequences as push heartbeats do.
        let last = [
            ("Nats-Last-Consumer", self.st.dseq.to_string()),
            ("Nats-Last-Stream", self.st.last_sseq.to_string()),
        ];
        for b in beats {
            self.status(ctx, &b, 100, "Idle Heartbeat", &last);
        }
        // Push: idle heartbeats.
        if self.is_push() && self.cfg.idle_heartbeat > 0 {
            let hb = Duration::from_nanos(self.cfg.idle_heartbeat as u64);
            if now.duration_since(self.last_sent) >= hb {
                self.last_sent = now;
                let ds = self.cfg.deliver_subject.clone().unwrap_or_default();
                let mut extra = vec![
                    ("Nats-Last-Consumer", self.st.dseq.to_string()),
                    ("Nats-Last-Stream", self.st.last_sseq.to_string()),
                ];
                if let Some(fc) = &self.fc_pending {
                    extra.push(("Nats-Consumer-Stalled", fc.clone()));
                }
                let h = headers::status(100, "Idle Heartbeat", &extra);
                ctx.sender
                    .send(ctx.server, ctx.account, ds.as_bytes(), None, Some(&h), b"");
            }
        }
        dropped
    }

    /// Whether an ephemeral consumer has been without interest for its inactive threshold.
    pub fn inactive(&mut self, ctx: &Ctx<'_>, now: Instant) -> bool {
        if self.cfg.inactive_threshold <= 0 {
            return false;
        }
        let active = if self.is_push() {
            self.push_interest(ctx)
        } else {
            !self.waiting.is_empty()
        };
        if active {
            self.inactive_since = None;
            return false;
        }
        let since = *self.inactive_since.get_or_insert(now);
        now.duration_since(since) >= Duration::from_nanos(self.cfg.inactive_threshold as u64)
    }

    /// The earliest time `tick` has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut min = |t: Instant| d = Some(d.map_or(t, |x: Instant| x.min(t)));
        if let Some((d, _)) = self.deadlines.iter().next() {
            min(*d);
        }
        if let Some(p) = &self.pin {
            min(p.deadline);
        }
        for r in &self.waiting {
            if let Some(e) = r.expires {
                min(e);
            }
            if let Some(hb) = r.heartbeat {
                min(r.last_sent + hb);
            }
        }
        if self.no_interest {
            min(Instant::now() + Duration::from_millis(50));
        }
        if let Some(d) = self.replay_due {
            min(d);
        }
        if self.paused_until > 0 {
            let left = (self.paused_until - unix_nanos()).max(0) as u64;
            min(Instant::now() + Duration::from_nanos(left));
        }
        if self.is_push() && self.cfg.idle_heartbeat > 0 {
            min(self.last_sent + Duration::from_nanos(self.cfg.idle_heartbeat as u64));
        }
        if self.cfg.inactive_threshold > 0 {
            let base = self.inactive_since.unwrap_or_else(Instant::now);
            min(base + Duration::from_nanos(self.cfg.inactive_threshold as u64));
        }
        d
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
        let invalid =
            |why: &str| super::errors::ApiError::new(10204, 400, &format!("invalid reset: {why}"));
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

/// A fresh pin id: 22 random alphanumerics, like nats-server's NUIDs.
fn new_pin_id() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..22)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}
