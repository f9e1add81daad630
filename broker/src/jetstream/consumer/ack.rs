//! Acknowledgements (`+ACK`, `-NAK`, `+WPI`, `+NXT`, `+TERM`), the ack floor, redelivery on
//! ack wait and backoff, and the consumer's timers.

use std::time::{Duration, Instant};

use super::{parse_go_duration, Consumer, Ctx};
use crate::clock::unix_nanos;
use crate::jetstream::consumer_config::AckPolicy;
use crate::jetstream::headers;
use crate::protocol::Msg;

impl Consumer {
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
            crate::jetstream::advisory::publish(
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
        self.replicate = true;
        self.update_floor();
        if let Some(r) = reply {
            ctx.sender.send(ctx.server, ctx.account, Msg::new(r, b""));
        }
        acked
    }

    /// Whether this ack is sampled for the ack metric (`sample_freq`).
    pub(super) fn sampled(&self) -> bool {
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
    pub(super) fn ack_through(&mut self, seq: u64) -> Vec<u64> {
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

    pub(super) fn do_ack(&mut self, seq: u64) -> Vec<u64> {
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

    pub(super) fn update_floor(&mut self) {
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
                self.replicate = true;
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
                    .send(ctx.server, ctx.account, Msg::new(&ds, b"").with_headers(&h));
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
}
