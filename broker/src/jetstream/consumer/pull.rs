//! Pull requests (`$JS.API.CONSUMER.MSG.NEXT`): their checks, the waiting queue, priority
//! groups (overflow, pinned client, prioritized), expiry, heartbeats and `no_wait` ends.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{go_duration, Consumer, Ctx, NextRequest, Pin, Priority, PullRequest};
use crate::clock::unix_nanos;
use crate::jetstream::consumer_config::PriorityPolicy;

impl Consumer {
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
            match crate::jetstream::errors::from_json::<NextRequest>(body, false) {
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
    pub(super) fn check_priority(
        &mut self,
        req: &NextRequest,
    ) -> Result<Priority, (u16, &'static str)> {
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

    pub(super) fn pin_ttl(&self) -> Duration {
        Duration::from_nanos(self.cfg.priority_timeout.max(0) as u64)
    }

    /// prioritized: after the last request of the same or a better (lower) priority; a
    /// request without one (empty or numeric body) goes last.
    pub(super) fn enqueue_by_priority(&mut self, r: PullRequest) {
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
    pub(super) fn pick_request(&mut self, ctx: &mut Ctx<'_>, pending: i64) -> Option<usize> {
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

    pub(super) fn assign_pin(&mut self, ctx: &mut Ctx<'_>, idx: usize) {
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
        crate::jetstream::advisory::publish(
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
        crate::jetstream::advisory::publish(
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

    /// Ends expired requests (408) at the front of the queue; the loop in `deliver` calls
    /// this per message, so it stays O(1) unless something is due.
    pub(super) fn drop_expired_front(&mut self, ctx: &mut Ctx<'_>) {
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

    /// Walks every waiting request: ends the expired ones (408) and drops, silently, those
    /// whose requester has gone (no interest left in the reply subject), as nats-server does,
    /// so nothing is delivered into the void and `num_waiting` counts live requests.
    pub(super) fn sweep_requests(&mut self, ctx: &mut Ctx<'_>) {
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

    pub(super) fn timeout(&self, ctx: &mut Ctx<'_>, r: &PullRequest) {
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
    pub(super) fn end_no_wait(&mut self, ctx: &mut Ctx<'_>) {
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
}

/// A fresh pin id: 22 random alphanumerics, like nats-server's NUIDs.
pub(super) fn new_pin_id() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..22)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}
