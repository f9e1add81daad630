//! A stream taking a message: the publish checks (expected sequences, message ids, TTLs,
//! counters, rollups), storing it, the acknowledgement, and what follows a store (republish,
//! limits, consumers woken).

use std::collections::BTreeMap;

use serde_json::json;

use super::{fast_batch, Stream};
use crate::clock::unix_nanos;
use crate::jetstream::config::{Discard, Retention};
use crate::jetstream::counter::BigInt;
use crate::jetstream::errors::ApiError;
use crate::jetstream::headers;
use crate::jetstream::time::rfc3339_nanos;
use crate::protocol::Msg;
use crate::server::Server;

impl Stream {
    pub(super) fn ack_ok(&self, seq: u64, duplicate: bool) -> Vec<u8> {
        self.ack_with(seq, duplicate, None)
    }

    /// A pub ack; `val` is a counter stream's new total.
    pub(super) fn ack_with(&self, seq: u64, duplicate: bool, val: Option<&str>) -> Vec<u8> {
        let mut v = json!({"stream": self.name, "seq": seq});
        if let Some(d) = &self.shared.domain {
            v["domain"] = json!(d);
        }
        if duplicate {
            v["duplicate"] = json!(true);
        }
        if let Some(val) = val {
            v["val"] = json!(val);
        }
        v.to_string().into_bytes()
    }

    pub(super) fn ack_err(&self, err: ApiError) -> Vec<u8> {
        json!({"error": err, "stream": self.name, "seq": 0})
            .to_string()
            .into_bytes()
    }

    pub(super) fn reply_now(&mut self, server: &Server, reply: &Option<String>, body: Vec<u8>) {
        if reply.as_deref() == Some(fast_batch::CAPTURE) {
            self.capture = Some(Some(body));
            return;
        }
        if let Some(r) = reply {
            if !self.cfg.no_ack {
                self.sender.send(server, &self.account, Msg::new(r, &body));
            }
        }
    }

    /// A message published to the stream (or copied from a source): staged when it is part
    /// of an atomic batch, stored otherwise.
    pub(super) fn process_msg(
        &mut self,
        server: &Server,
        subject: &str,
        reply: Option<String>,
        hdr: &[u8],
        data: &[u8],
    ) {
        if let Some(r) = reply.as_deref().filter(|r| r.ends_with(".$FI")) {
            if self.fast_batch_msg(server, subject, r, hdr, data) {
                return;
            }
        }
        if !hdr.is_empty() && headers::get(hdr, "Nats-Batch-Id").is_some() {
            return self.batch_msg(server, subject, reply, hdr, data);
        }
        self.store_msg(server, subject, reply, hdr, data)
    }

    /// Checks a message's headers against the stream, stores it and answers the publisher.
    pub(super) fn store_msg(
        &mut self,
        server: &Server,
        subject: &str,
        reply: Option<String>,
        hdr: &[u8],
        data: &[u8],
    ) {
        if self.cfg.sealed {
            let b = self.ack_err(ApiError::sealed());
            return self.reply_now(server, &reply, b);
        }
        let transformed = self
            .cfg
            .subject_transform
            .as_ref()
            .and_then(|t| crate::transform::apply(&t.src, &t.dest, subject));
        let subject = transformed.as_deref().unwrap_or(subject);
        let max_size = if self.cfg.max_msg_size > 0 {
            self.cfg.max_msg_size as usize
        } else {
            usize::MAX
        };
        if hdr.len() + data.len() > max_size {
            let b = self.ack_err(ApiError::stream_message_exceeds_maximum());
            return self.reply_now(server, &reply, b);
        }
        // A copy from a source: stored whatever its TTL, rollup and counter headers say; they
        // only take effect where this stream allows them (as in nats-server).
        let sourced = !hdr.is_empty() && headers::get(hdr, "Nats-Stream-Source").is_some();
        let incr = match self.counter_increment(hdr, data, sourced) {
            Ok(i) => i,
            Err(e) => {
                let b = self.ack_err(e);
                return self.reply_now(server, &reply, b);
            }
        };
        let scheduled;
        let hdr = match self.check_schedule(subject, hdr) {
            Ok(Some(h)) => {
                scheduled = h;
                &scheduled[..]
            }
            Ok(None) => hdr,
            Err(e) => {
                let b = self.ack_err(e);
                return self.reply_now(server, &reply, b);
            }
        };
        // A replicated entry carries its leader's time, so every replica stores the same.
        let now = self.apply_ts.unwrap_or_else(unix_nanos);
        let mut msg_id = None;
        let mut rollup = None;
        let mut ttl = None;
        if !hdr.is_empty() {
            if let Some(v) = headers::get(hdr, "Nats-TTL") {
                match (self.cfg.allow_msg_ttl, parse_ttl(v)) {
                    (true, Some(t)) => ttl = t,
                    _ if sourced => {}
                    (false, _) => {
                        let b = self.ack_err(ApiError::message_ttl_disabled());
                        return self.reply_now(server, &reply, b);
                    }
                    (true, None) => {
                        let b = self.ack_err(ApiError::message_ttl_invalid());
                        return self.reply_now(server, &reply, b);
                    }
                }
            }
            if let Some(s) = headers::get(hdr, "Nats-Expected-Stream") {
                if s != self.name {
                    let b = self.ack_err(ApiError::stream_not_match());
                    return self.reply_now(server, &reply, b);
                }
            }
            if let Some(id) = headers::get(hdr, "Nats-Msg-Id") {
                self.expire_dedupe(now);
                if let Some(&seq) = self.dedupe.get(id) {
                    let b = self.ack_ok(seq, true);
                    return self.reply_now(server, &reply, b);
                }
                msg_id = Some(id.to_string());
            }
            if let Some(v) = headers::get(hdr, "Nats-Expected-Last-Sequence") {
                let want: u64 = v.parse().unwrap_or(u64::MAX);
                let last = self.store.state().last_seq;
                if want != last {
                    let b = self.ack_err(ApiError::stream_wrong_last_sequence(&last.to_string()));
                    return self.reply_now(server, &reply, b);
                }
            }
            if let Some(v) = headers::get(hdr, "Nats-Expected-Last-Subject-Sequence") {
                let want: u64 = v.parse().unwrap_or(u64::MAX);
                let filter = headers::get(hdr, "Nats-Expected-Last-Subject-Sequence-Subject")
                    .unwrap_or(subject);
                let last = self.store.last_for(filter).unwrap_or(0);
                if want != last {
                    let b = self.ack_err(ApiError::stream_wrong_last_sequence(&last.to_string()));
                    return self.reply_now(server, &reply, b);
                }
            }
            if let Some(v) = headers::get(hdr, "Nats-Expected-Last-Msg-Id") {
                let last = self.last_msg_id.clone().unwrap_or_default();
                if v != last {
                    let b = self.ack_err(ApiError::stream_wrong_last_msg_id(&last));
                    return self.reply_now(server, &reply, b);
                }
            }
            if let Some(r) =
                headers::get(hdr, "Nats-Rollup").filter(|_| !sourced || self.cfg.allow_rollup_hdrs)
            {
                // A configuration no longer takes both (nats-server), but one stored before
                // may have them.
                if !self.cfg.allow_rollup_hdrs || self.cfg.deny_purge {
                    let b = self.ack_err(ApiError::stream_rollup_failed("rollup not permitted"));
                    return self.reply_now(server, &reply, b);
                }
                match r {
                    "sub" => rollup = Some(false),
                    "all" => rollup = Some(true),
                    _ => {
                        let b = self.ack_err(ApiError::stream_rollup_failed(&format!(
                            "rollup value invalid: {r:?}"
                        )));
                        return self.reply_now(server, &reply, b);
                    }
                }
            }
        }
        let counted;
        let (hdr, data, val) = match incr {
            Some(incr) if self.cfg.allow_msg_counter => {
                match self.count(subject, hdr, data, incr) {
                    Ok(c) => {
                        counted = c;
                        (&counted.0[..], &counted.1[..], Some(counted.2.as_str()))
                    }
                    Err(e) => {
                        let b = self.ack_err(e);
                        return self.reply_now(server, &reply, b);
                    }
                }
            }
            _ => (hdr, data, None),
        };
        if hdr.len() + data.len() > max_size {
            let b = self.ack_err(ApiError::stream_message_exceeds_maximum());
            return self.reply_now(server, &reply, b);
        }
        // Discard new: reject instead of making room.
        let size = if self.store.is_file() {
            (22 + subject.len() + data.len() + 8 + if hdr.is_empty() { 0 } else { 4 + hdr.len() })
                as u64
        } else {
            (subject.len() + hdr.len() + data.len() + 16) as u64
        };
        let st = self.store.state();
        if self.cfg.discard == Discard::New {
            if self.cfg.max_msgs > 0 && st.msgs >= self.cfg.max_msgs as u64 {
                let b = self.ack_err(ApiError::stream_store_failed("maximum messages exceeded"));
                return self.reply_now(server, &reply, b);
            }
            if self.cfg.max_bytes > 0 && st.bytes + size > self.cfg.max_bytes as u64 {
                let b = self.ack_err(ApiError::stream_store_failed("maximum bytes exceeded"));
                return self.reply_now(server, &reply, b);
            }
            if self.cfg.discard_new_per_subject && self.cfg.max_msgs_per_subject > 0 {
                if let Some(ss) = self.store.subject_state(subject) {
                    if ss.msgs >= self.cfg.max_msgs_per_subject as u64 {
                        let b = self.ack_err(ApiError::stream_store_failed(
                            "maximum messages per subject exceeded",
                        ));
                        return self.reply_now(server, &reply, b);
                    }
                }
            }
        }
        if let Err(e) = self
            .shared
            .check_storage(&self.cfg, &self.account.name, size)
        {
            let b = self.ack_err(e);
            return self.reply_now(server, &reply, b);
        }
        // Interest retention with nobody interested: the sequence is used, nothing is kept.
        if self.cfg.retention == Retention::Interest
            && !self
                .consumers
                .values()
                .any(|c| c.needs(self.store.state().last_seq + 1, subject))
        {
            let seq = match self.store.skip() {
                Ok(s) => s,
                Err(e) => {
                    let b = self.ack_err(ApiError::stream_store_failed(&e.to_string()));
                    return self.reply_now(server, &reply, b);
                }
            };
            if let Some(r) = reply {
                if !self.cfg.no_ack {
                    let b = self.ack_ok(seq, false);
                    self.acks.push((r, b));
                }
            }
            return;
        }
        let prev_on_subject = self.store.subject_state(subject).map_or(0, |s| s.last);
        let seq = match self.store.store(subject, hdr, data, now) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(
                    "JetStream stream '{} > {}' store failed: {e}",
                    self.account.name,
                    self.name
                );
                let b = self.ack_err(ApiError::stream_store_failed(&e.to_string()));
                return self.reply_now(server, &reply, b);
            }
        };
        if let Some(id) = &msg_id {
            self.dedupe.insert(id.clone(), seq);
            self.dedupe_order.push_back((now, id.clone()));
        }
        if let Some(t) = ttl {
            self.ttls.insert((now.saturating_add(t), seq));
        }
        self.last_msg_id = msg_id;
        // Limits.
        if let Some(all) = rollup {
            let victims: Vec<u64> = if all {
                self.store
                    .matching(">")
                    .into_iter()
                    .filter(|s| *s < seq)
                    .collect()
            } else {
                self.store
                    .matching(subject)
                    .into_iter()
                    .filter(|s| *s < seq)
                    .collect()
            };
            for v in victims {
                self.remove_msg(v);
            }
        }
        self.after_store(server, (seq, prev_on_subject), subject, hdr, data, now);
        self.after_schedule_store(subject, seq, hdr, now);
        if let Some(r) = reply {
            if !self.cfg.no_ack {
                let b = self.ack_with(seq, false, val);
                self.acks.push((r, b));
            }
        }
        self.wake = true;
    }

    /// The `Nats-Incr` of a message, checked as nats-server checks it: parsed on any stream,
    /// refused where counters are off (unless sourced in), required where they are on, and
    /// never with a payload or with headers that would make the total depend on order.
    pub(super) fn counter_increment(
        &self,
        hdr: &[u8],
        data: &[u8],
        sourced: bool,
    ) -> Result<Option<BigInt>, ApiError> {
        let invalid = || ApiError::message_incr_invalid();
        let raw = if hdr.is_empty() {
            None
        } else {
            headers::get(hdr, "Nats-Incr").filter(|v| !v.is_empty())
        };
        let incr = match raw {
            None => None,
            Some(v) => Some(BigInt::parse(v).ok_or_else(invalid)?),
        };
        match &incr {
            Some(_) if !sourced && !self.cfg.allow_msg_counter => {
                Err(ApiError::message_incr_disabled())
            }
            Some(_) if !sourced => {
                if !data.is_empty() {
                    return Err(ApiError::message_incr_payload());
                }
                const ORDERED: [&str; 6] = [
                    "Nats-Rollup",
                    "Nats-Expected-Stream",
                    "Nats-Expected-Last-Msg-Id",
                    "Nats-Expected-Last-Subject-Sequence-Subject",
                    "Nats-Expected-Last-Sequence",
                    "Nats-Expected-Last-Subject-Sequence",
                ];
                if ORDERED.iter().any(|h| headers::get(hdr, h).is_some()) {
                    return Err(invalid());
                }
                Ok(incr)
            }
            None if self.cfg.allow_msg_counter => Err(ApiError::message_incr_missing()),
            _ => Ok(incr),
        }
    }

    /// A counter message as stored: the headers as sent (a sourced total becomes the
    /// difference it makes, recorded per origin in `Nats-Counter-Sources`), the body
    /// `{"val":"<new total>"}`, and the new total.
    pub(super) fn count(
        &mut self,
        subject: &str,
        hdr: &[u8],
        data: &[u8],
        incr: BigInt,
    ) -> Result<(Vec<u8>, Vec<u8>, String), ApiError> {
        let broken = || ApiError::message_counter_broken();
        type Sources = BTreeMap<String, BTreeMap<String, String>>;
        let last = self.store.last_for(subject).and_then(|s| self.store.get(s));
        let (total, mut sources) = match &last {
            None => (BigInt::zero(), Sources::new()),
            Some(m) => {
                let total = counter_value(&m.data).ok_or_else(broken)?;
                let sources: Sources = match headers::get(&m.hdr, "Nats-Counter-Sources") {
                    None => Sources::new(),
                    Some(v) => serde_json::from_str(v).map_err(|_| broken())?,
                };
                (total, sources)
            }
        };
        let mut hdr = hdr.to_vec();
        let mut incr = incr;
        if let Some(src) = headers::get(&hdr, "Nats-Stream-Source") {
            // A sourced message carries its origin's total: what it adds here is the change
            // since the last total seen from that origin subject, so a lost or repeated
            // message still ends at the right sum.
            let fields: Vec<&str> = src.split(' ').collect();
            let origin = fields[0].to_string();
            let origin_subject = fields.get(4).copied().unwrap_or(subject).to_string();
            let sourced = counter_value(data).ok_or_else(broken)?;
            let seen = sources
                .get(&origin)
                .and_then(|m| m.get(&origin_subject))
                .map(|v| BigInt::parse(v).ok_or_else(broken))
                .transpose()?
                .unwrap_or_else(BigInt::zero);
            incr = sourced.add(&seen.neg());
            sources
                .entry(origin)
                .or_default()
                .insert(origin_subject, sourced.to_string());
            hdr = headers::without(&hdr, "Nats-Incr");
            hdr = headers::with(&hdr, &[("Nats-Incr", incr.to_string())]);
        }
        if !sources.is_empty() {
            let v = serde_json::to_string(&sources).expect("serializes");
            hdr = headers::without(&hdr, "Nats-Counter-Sources");
            hdr = headers::with(&hdr, &[("Nats-Counter-Sources", v)]);
        }
        let total = total.add(&incr).to_string();
        let body = json!({ "val": total }).to_string().into_bytes();
        Ok((hdr, body, total))
    }

    /// What follows storing a message: consumers learn of it, limits apply, it is
    /// republished.
    pub(super) fn after_store(
        &mut self,
        server: &Server,
        (seq, prev_on_subject): (u64, u64),
        subject: &str,
        hdr: &[u8],
        data: &[u8],
        ts: i64,
    ) {
        for c in self.consumers.values_mut() {
            c.on_stored(seq, subject);
        }
        self.enforce_limits(subject);
        self.republish(server, (seq, prev_on_subject), ts, subject, hdr, data);
        self.wake = true;
    }

    /// `republish`: a copy of the stored message on the destination subject, with the stream
    /// headers nats-server adds.
    pub(super) fn republish(
        &mut self,
        server: &Server,
        (seq, prev_on_subject): (u64, u64),
        ts: i64,
        subject: &str,
        hdr: &[u8],
        data: &[u8],
    ) {
        let Some(r) = &self.cfg.republish else { return };
        let Some(dest) = crate::transform::apply(&r.src, &r.dest, subject) else {
            return;
        };
        let mut extra = vec![
            ("Nats-Stream", self.name.clone()),
            ("Nats-Subject", subject.to_string()),
            ("Nats-Sequence", seq.to_string()),
            ("Nats-Time-Stamp", rfc3339_nanos(ts)),
            ("Nats-Last-Sequence", prev_on_subject.to_string()),
        ];
        let body: &[u8] = if r.headers_only {
            extra.push(("Nats-Msg-Size", data.len().to_string()));
            b""
        } else {
            data
        };
        let h = headers::with(hdr, &extra);
        self.sender.send(
            server,
            &self.account,
            Msg::new(&dest, body).with_headers(&h),
        );
    }
}

/// A `Nats-TTL` value as nats-server reads it: `never` (`Some(None)`), whole seconds, or a Go
/// duration of at least one second (`Some(Some(nanos))`); anything else is invalid (`None`).
pub(super) fn parse_ttl(v: &str) -> Option<Option<i64>> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("never") {
        return Some(None);
    }
    let nanos: i128 = match v.parse::<i64>() {
        Ok(secs) => i128::from(secs) * 1_000_000_000,
        Err(_) => crate::config::duration::parse_go_duration(v).ok()?,
    };
    (nanos >= 1_000_000_000).then(|| Some(i64::try_from(nanos).unwrap_or(i64::MAX)))
}

/// The total in a counter message's body, `{"val":"<decimal>"}`.
pub(super) fn counter_value(body: &[u8]) -> Option<BigInt> {
    #[derive(serde::Deserialize)]
    struct Counter {
        val: String,
    }
    let c: Counter = serde_json::from_slice(body).ok()?;
    BigInt::parse(&c.val)
}
