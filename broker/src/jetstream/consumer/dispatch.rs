//! Delivering: the next messages to send, to a push subject or a waiting pull request, with
//! flow control, heartbeats and the interest checks of push consumers.

use std::time::{Duration, Instant};

use super::{Consumer, Ctx, Pending, FLOW_CONTROL_MAX_WINDOW};
use crate::clock::unix_nanos;
use crate::jetstream::consumer_config::{AckPolicy, PriorityPolicy};
use crate::jetstream::headers;
use crate::jetstream::store::Store;
use crate::protocol::Msg;

impl Consumer {
    pub(super) fn status(
        &self,
        ctx: &mut Ctx<'_>,
        to: &str,
        code: u16,
        text: &str,
        extra: &[(&str, String)],
    ) {
        let h = headers::status(code, text, extra);
        ctx.sender
            .send(ctx.server, ctx.account, Msg::new(to, b"").with_headers(&h));
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
                &target,
                Msg {
                    subject: &msg.subject,
                    reply: Some(ack.as_bytes()),
                    headers: hdr,
                    payload: data,
                },
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
            self.replicate = true;
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
    pub(super) fn flow_control_request(&mut self, ctx: &mut Ctx<'_>, deliver: &str) {
        self.fc_count += 1;
        let reply = format!("$JS.FC.{}.{}.{}", ctx.stream, self.name, self.fc_count);
        let h = headers::status(100, "FlowControl Request", &[]);
        ctx.sender.send(
            ctx.server,
            ctx.account,
            Msg {
                subject: deliver,
                reply: Some(reply.as_bytes()),
                headers: Some(&h),
                payload: b"",
            },
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
                self.replicate = true;
            }
        }
        (self.take_flow_control(subject), acked)
    }

    pub(super) fn take_flow_control(&mut self, subject: &str) -> bool {
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
    pub(super) fn fc_stalled(&self) -> bool {
        self.fc_pending.is_some() && self.fc_bytes >= self.fc_window / 2
    }

    /// The next undelivered sequence for this consumer.
    pub(super) fn next_new(&mut self, store: &Store) -> Option<u64> {
        while let Some(&s) = self.st.initial.front() {
            if store.peek(s).is_some() {
                return Some(s);
            }
            self.st.initial.pop_front();
            self.num_pending = self.num_pending.saturating_sub(1);
        }
        store.next_matching(self.st.next_sseq, &self.filters)
    }

    pub(super) fn advance_past(&mut self, seq: u64) {
        if self.st.initial.front() == Some(&seq) {
            self.st.initial.pop_front();
        } else {
            self.st.next_sseq = seq + 1;
        }
        self.st.last_sseq = self.st.last_sseq.max(seq);
        self.num_pending = self.num_pending.saturating_sub(1);
    }

    pub(super) fn push_interest(&self, ctx: &Ctx<'_>) -> bool {
        let Some(ds) = self.cfg.deliver_subject.as_deref() else {
            return false;
        };
        ctx.account.has_interest(ds) || ctx.server.routes().is_some()
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
}
