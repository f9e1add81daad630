//! Mirrors and sources: the stream copies another stream's messages through an ephemeral,
//! flow-controlled push consumer it creates on the origin with the JetStream API, as
//! nats-server does. The consumer's deliveries carry the origin sequence in their ack reply
//! subject; a mirror keeps those sequences, a source appends and stamps `Nats-Stream-Source`.
//! Going through the API (rather than reaching into the origin stream) is what makes
//! `external` origins in other accounts and domains work the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::{Cmd, Stream};
use crate::accounts::Account;
use crate::clock::unix_nanos;
use crate::jetstream::config::{short_hash, StreamSource};
use crate::jetstream::errors::ApiError;
use crate::jetstream::headers;
use crate::protocol::Msg;
use crate::server::internal::InternalSender;
use crate::server::subscription::{InternalHandler, Subscription};
use crate::server::Server;

/// The origin consumer's heartbeat; three missed ones restart it.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a consumer-create request may go unanswered before it is sent again.
const CREATE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait between attempts while the origin is missing.
const MAX_RETRY: Duration = Duration::from_secs(5);
/// How long the origin's durable consumer may take to answer a reset (nats-server's
/// `srcConsumerWaitTime`); a missing one never answers.
const DURABLE_WAIT: Duration = Duration::from_secs(30);

/// What arrived for one origin.
#[derive(Debug)]
pub enum OriginEvent {
    /// A delivery (or a status message) from the origin's consumer.
    Msg {
        reply: Option<String>,
        subject: String,
        hdr: Bytes,
        data: Bytes,
    },
    /// The answer to the consumer-create request.
    Created(Bytes),
}

/// A running mirror or source.
pub struct Origin {
    pub cfg: StreamSource,
    pub mirror: bool,
    iname: String,
    /// Bumped for each consumer; events of older ones are ignored.
    generation: u64,
    subs: Vec<Arc<Subscription>>,
    /// The consumer on the origin once it answered.
    consumer: Option<String>,
    /// Last origin sequence taken in.
    sseq: u64,
    /// Last delivery sequence of the current consumer.
    dseq: u64,
    lag: u64,
    last_active: Option<Instant>,
    requested: Option<Instant>,
    retry_at: Instant,
    failures: u32,
    error: Option<ApiError>,
    /// A durable consumer's delivery handler, subscribed once its reset answer came.
    on_deliver: Option<InternalHandler>,
}

impl Origin {
    fn new(cfg: StreamSource, mirror: bool) -> Origin {
        Origin {
            iname: cfg.iname(),
            cfg,
            mirror,
            generation: 0,
            subs: Vec::new(),
            consumer: None,
            sseq: 0,
            dseq: 0,
            lag: 0,
            last_active: None,
            requested: None,
            retry_at: Instant::now(),
            failures: 0,
            error: None,
            on_deliver: None,
        }
    }

    /// The JetStream API prefix the origin answers on.
    fn api(&self) -> String {
        match self.cfg.external.as_ref().filter(|e| !e.api.is_empty()) {
            Some(e) => e.api.trim_end_matches('.').to_string(),
            None => "$JS.API".into(),
        }
    }

    /// `mirror` / one `sources` entry of stream info.
    pub fn info(&self) -> Value {
        let mut v = json!({"name": self.cfg.name, "lag": self.lag});
        if !self.mirror && self.sseq > 0 {
            v["seq"] = json!(self.sseq);
        }
        v["active"] = match self.last_active {
            Some(t) => json!(t.elapsed().as_nanos() as u64),
            None => json!(-1),
        };
        if !self.cfg.filter_subject.is_empty() {
            v["filter_subject"] = json!(self.cfg.filter_subject);
        }
        if !self.cfg.subject_transforms.is_empty() {
            v["subject_transforms"] = json!(self.cfg.subject_transforms);
        }
        if let Some(e) = &self.cfg.external {
            v["external"] = json!(e);
        }
        if let Some(e) = &self.error {
            v["error"] = json!(e);
        }
        v
    }

    /// Drops the origin's subscriptions and deletes its consumer on the origin.
    fn cancel(&mut self, server: &Server, account: &Account, sender: &mut InternalSender) {
        for s in self.subs.drain(..) {
            server.remove_sub(&s);
        }
        // A durable consumer belongs to the origin's owner: it is never deleted from here.
        if let Some(c) = self.consumer.take().filter(|_| self.cfg.consumer.is_none()) {
            let subj = format!("{}.CONSUMER.DELETE.{}.{c}", self.api(), self.cfg.name);
            sender.send(server, account, Msg::new(&subj, b""));
        }
        self.requested = None;
        self.last_active = None;
    }

    fn next_deadline(&self) -> Instant {
        match (&self.consumer, self.requested, self.last_active) {
            (Some(_), _, Some(t)) => t + 3 * HEARTBEAT,
            (None, Some(t), _) if self.cfg.consumer.is_some() => t + DURABLE_WAIT,
            (None, Some(t), _) => t + CREATE_TIMEOUT,
            _ => self.retry_at,
        }
    }
}

/// The ack reply's `(stream seq, delivery seq, timestamp, pending)`: the 9-token form
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>` or the newer one
/// with domain and account hash in front (and a random token at the end).
pub fn parse_ack_reply(reply: &str) -> Option<(u64, u64, i64, u64)> {
    let t: Vec<&str> = reply.split('.').collect();
    if t.len() < 9 || t[0] != "$JS" || t[1] != "ACK" {
        return None;
    }
    let b = if t.len() == 9 { 5 } else { 7 };
    if t.len() < b + 4 {
        return None;
    }
    Some((
        t[b].parse().ok()?,
        t[b + 1].parse().ok()?,
        t[b + 2].parse().ok()?,
        t[b + 3].parse().ok()?,
    ))
}

/// The `Nats-Stream-Source` value nats-server writes:
/// `<iname> <origin seq> <filter> <transform dest> <original subject> <ident>`.
fn source_header(
    iname: &str,
    sseq: u64,
    key: &(String, String),
    subject: &str,
    ident: &str,
) -> String {
    format!("{iname} {sseq} {} {} {subject} {ident}", key.0, key.1)
}

/// The fields of a `Nats-Stream-Source` value: `(iname, seq, filter, dest)`; the legacy form
/// (an ack reply) has no filter.
fn parse_source_header(v: &str) -> Option<(String, u64, String, String)> {
    let parts: Vec<&str> = v.split(' ').collect();
    if parts.len() == 1 {
        let t: Vec<&str> = v.split('.').collect();
        if t.len() == 9 && t[0] == "$JS" {
            return Some((t[2].to_string(), t[5].parse().ok()?, ">".into(), ">".into()));
        }
        return None;
    }
    let seq = parts.get(1)?.parse().ok()?;
    let filter = parts.get(2).unwrap_or(&">").to_string();
    let dest = parts.get(3).unwrap_or(&">").to_string();
    Some((parts[0].to_string(), seq, filter, dest))
}

impl Stream {
    /// Builds the origins of the configuration and finds where each left off.
    pub(super) fn start_origins(&mut self) {
        let mut origins = Vec::new();
        if let Some(m) = &self.cfg.mirror {
            origins.push(Origin::new(m.clone(), true));
        }
        for s in self.cfg.sources.iter().flatten() {
            origins.push(Origin::new(s.clone(), false));
        }
        if origins.iter().any(|o| !o.mirror) {
            self.resume_sources(&mut origins);
        }
        self.origins = origins;
    }

    /// Sources resume after the last message each one brought in, found by reading the
    /// stream backwards for their `Nats-Stream-Source` headers.
    fn resume_sources(&mut self, origins: &mut [Origin]) {
        let st = self.store.state();
        let mut missing: usize = origins.iter().filter(|o| !o.mirror && o.sseq == 0).count();
        let mut seq = st.last_seq;
        while missing > 0 && seq >= st.first_seq && seq > 0 {
            if let Some(m) = self.store.get(seq) {
                if let Some((iname, sseq, filter, dest)) =
                    headers::get(&m.hdr, "Nats-Stream-Source").and_then(parse_source_header)
                {
                    for o in origins.iter_mut().filter(|o| !o.mirror && o.sseq == 0) {
                        if o.iname == iname
                            && o.cfg
                                .header_keys()
                                .iter()
                                .any(|k| k.0 == filter && k.1 == dest)
                        {
                            o.sseq = sseq;
                            missing -= 1;
                        }
                    }
                }
            }
            seq -= 1;
        }
    }

    /// A new configuration: origins that stayed keep their consumer, the others stop or start.
    pub(super) fn update_origins(&mut self, server: &Server) {
        let mut wanted: Vec<(StreamSource, bool)> = Vec::new();
        if let Some(m) = &self.cfg.mirror {
            wanted.push((m.clone(), true));
        }
        for s in self.cfg.sources.iter().flatten() {
            wanted.push((s.clone(), false));
        }
        let old = std::mem::take(&mut self.origins);
        let mut kept = Vec::new();
        let mut added = Vec::new();
        for o in old {
            if wanted.iter().any(|(c, m)| *c == o.cfg && *m == o.mirror) {
                kept.push(o);
            } else {
                let mut o = o;
                o.cancel(server, &self.account, &mut self.sender);
            }
        }
        for (c, m) in wanted {
            if !kept.iter().any(|o| o.cfg == c && o.mirror == m) {
                added.push(Origin::new(c, m));
            }
        }
        if !added.is_empty() {
            self.resume_sources(&mut added);
        }
        kept.extend(added);
        self.origins = kept;
    }

    /// Stops every origin (the stream is stopping).
    pub(super) fn stop_origins(&mut self, server: &Server) {
        for o in self.origins.iter_mut() {
            o.cancel(server, &self.account, &mut self.sender);
        }
        self.origins.clear();
        self.sender.flush(server);
    }

    /// Starts, restarts or retries origin consumers whose time has come.
    pub(super) fn origin_timers(&mut self, server: &Server) {
        let now = Instant::now();
        for i in 0..self.origins.len() {
            if self.origins[i].next_deadline() > now {
                continue;
            }
            self.origins[i].cancel(server, &self.account, &mut self.sender);
            self.create_origin_consumer(server, i);
        }
    }

    /// The earliest time an origin needs attention.
    pub(super) fn origins_deadline(&self) -> Option<Instant> {
        self.origins.iter().map(Origin::next_deadline).min()
    }

    /// Asks the origin for a consumer that starts after what this stream already holds.
    fn create_origin_consumer(&mut self, server: &Server, idx: usize) {
        let o = &mut self.origins[idx];
        o.generation += 1;
        o.dseq = 0;
        let token = super::random_name();
        let deliver = match o.cfg.external.as_ref().filter(|e| !e.deliver.is_empty()) {
            Some(e) => format!("{}.{token}", e.deliver.trim_end_matches('.')),
            None => format!("$JS.S.{token}"),
        };
        let reply = format!("$JS.S.R.{token}");
        let Some(handle) = self.handle.upgrade() else {
            return;
        };
        let weak = Arc::downgrade(&handle);
        let generation = o.generation;
        let on_msg = InternalHandler(Arc::new({
            let weak = weak.clone();
            move |m: &Msg<'_>| {
                let (subject, reply, hdr, payload) = (m.subject, m.reply, m.headers, m.payload);
                let Some(h) = weak.upgrade() else { return };
                h.send(Cmd::Origin {
                    idx,
                    generation,
                    event: OriginEvent::Msg {
                        subject: subject.to_string(),
                        reply: reply.map(|r| String::from_utf8_lossy(r).into_owned()),
                        hdr: Bytes::copy_from_slice(hdr.unwrap_or_default()),
                        data: Bytes::copy_from_slice(payload),
                    },
                });
            }
        }));
        let on_created = InternalHandler(Arc::new(move |m: &Msg<'_>| {
            let payload = m.payload;
            let Some(h) = weak.upgrade() else { return };
            h.send(Cmd::Origin {
                idx,
                generation,
                event: OriginEvent::Created(Bytes::copy_from_slice(payload)),
            });
        }));
        let js = &self.shared.client;
        if let Some(c) = &o.cfg.consumer {
            // Through the origin's durable consumer: reset it to just above its ack floor
            // (what this stream acknowledged with its flow-control answers) and take what
            // it delivers.
            // Its deliveries are taken only once the reset showed the consumer fits.
            o.on_deliver = Some(on_msg);
            o.subs
                .push(js.subscribe_internal(server, &self.account, &reply, on_created));
            let subj = format!("{}.CONSUMER.RESET.{}.{}", o.api(), o.cfg.name, c.name);
            o.requested = Some(Instant::now());
            self.sender.send(
                server,
                &self.account,
                Msg::new(&subj, b"").with_reply(&reply),
            );
            return;
        }
        o.subs
            .push(js.subscribe_internal(server, &self.account, &deliver, on_msg));
        o.subs
            .push(js.subscribe_internal(server, &self.account, &reply, on_created));

        // Where to start: after what is held; else the configured start.
        let held = if o.mirror {
            self.store.state().last_seq
        } else {
            o.sseq
        };
        let mut cfg = json!({
            "deliver_subject": deliver,
            "ack_policy": "none",
            "ack_wait": 22 * 3600 * 1_000_000_000i64,
            "max_deliver": 1,
            "idle_heartbeat": HEARTBEAT.as_nanos() as i64,
            "flow_control": true,
            "direct": true,
            "inactive_threshold": (5 * HEARTBEAT).as_nanos() as i64,
            "num_replicas": 1,
            "mem_storage": true,
        });
        if held > 0 {
            cfg["deliver_policy"] = json!("by_start_sequence");
            cfg["opt_start_seq"] = json!(held + 1);
        } else if o.cfg.opt_start_seq > 0 {
            cfg["deliver_policy"] = json!("by_start_sequence");
            cfg["opt_start_seq"] = json!(o.cfg.opt_start_seq);
        } else if let Some(t) = &o.cfg.opt_start_time {
            cfg["deliver_policy"] = json!("by_start_time");
            cfg["opt_start_time"] = json!(t);
        } else {
            cfg["deliver_policy"] = json!("all");
        }
        match o.cfg.filters().as_slice() {
            [] => {}
            [one] => cfg["filter_subject"] = json!(one),
            many => cfg["filter_subjects"] = json!(many),
        }
        let body = json!({"stream_name": o.cfg.name, "config": cfg}).to_string();
        let subj = format!("{}.CONSUMER.CREATE.{}", o.api(), o.cfg.name);
        o.requested = Some(Instant::now());
        self.sender.send(
            server,
            &self.account,
            Msg::new(&subj, body.as_bytes()).with_reply(&reply),
        );
    }

    /// One event for origin `idx`.
    pub(super) fn origin_event(
        &mut self,
        server: &Server,
        idx: usize,
        generation: u64,
        event: OriginEvent,
    ) {
        let Some(o) = self.origins.get_mut(idx) else {
            return;
        };
        if o.generation != generation {
            return;
        }
        match event {
            OriginEvent::Created(body) => {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                o.requested = None;
                let wrong_policy = o.cfg.consumer.is_some()
                    && v.get("name").is_some()
                    && v["config"]["ack_policy"] != json!("flow_control");
                if wrong_policy {
                    o.error = Some(if o.mirror {
                        ApiError::mirror_consumer_requires_ack_fc()
                    } else {
                        ApiError::source_consumer_requires_ack_fc()
                    });
                    o.failures += 1;
                    o.retry_at = Instant::now() + (HEARTBEAT * o.failures).min(MAX_RETRY);
                    o.cancel(server, &self.account, &mut self.sender);
                    return;
                }
                if let Some(name) = v.get("name").and_then(Value::as_str) {
                    if let (Some(c), Some(on_msg)) = (&o.cfg.consumer, o.on_deliver.take()) {
                        o.subs.push(self.shared.client.subscribe_internal(
                            server,
                            &self.account,
                            &c.deliver_subject,
                            on_msg,
                        ));
                    }
                    o.consumer = Some(name.to_string());
                    o.error = None;
                    o.failures = 0;
                    o.last_active = Some(Instant::now());
                    return;
                }
                let err = v
                    .get("error")
                    .and_then(|e| {
                        // The upstream's own error, passed on as it came on the wire.
                        Some(ApiError::new(
                            e.get("err_code")?.as_u64()? as u16,
                            e.get("code")?.as_u64()? as u16,
                            e.get("description")?.as_str()?,
                        ))
                    })
                    .unwrap_or_else(ApiError::bad_request);
                o.error = Some(err);
                o.failures += 1;
                o.retry_at = Instant::now() + (HEARTBEAT * o.failures).min(MAX_RETRY);
                o.cancel(server, &self.account, &mut self.sender);
            }
            OriginEvent::Msg {
                reply,
                subject,
                hdr,
                data,
            } => {
                o.last_active = Some(Instant::now());
                if hdr.starts_with(b"NATS/1.0 100") {
                    // Flow control asks for an answer on the reply; a stalled heartbeat names
                    // the subject to answer on.
                    let answer = reply.or_else(|| {
                        headers::get(&hdr, "Nats-Consumer-Stalled").map(str::to_string)
                    });
                    if let Some(r) = answer {
                        // A durable consumer takes the answer as an ack of what came in.
                        let acks = o.cfg.consumer.is_some().then(|| {
                            headers::with(
                                b"NATS/1.0\r\n\r\n",
                                &[
                                    ("Nats-Last-Consumer", o.dseq.to_string()),
                                    ("Nats-Last-Stream", o.sseq.to_string()),
                                ],
                            )
                        });
                        self.sender.send(
                            server,
                            &self.account,
                            Msg {
                                subject: &r,
                                reply: None,
                                headers: acks.as_deref(),
                                payload: b"",
                            },
                        );
                    }
                    return;
                }
                let Some((sseq, dseq, ts, pending)) = reply.as_deref().and_then(parse_ack_reply)
                else {
                    return;
                };
                if dseq <= o.dseq {
                    return;
                }
                if dseq != o.dseq + 1 {
                    // A delivery was lost: start over after what we hold.
                    o.retry_at = Instant::now();
                    o.consumer.take();
                    o.last_active = None;
                    return;
                }
                o.dseq = dseq;
                o.lag = pending;
                let hdr = strip_origin_headers(hdr);
                if o.mirror {
                    self.take_mirrored(server, sseq, ts, &subject, &hdr, &data);
                    if let Some(o) = self.origins.get_mut(idx) {
                        o.sseq = sseq;
                    }
                } else if sseq > o.sseq {
                    o.sseq = sseq;
                    let (dest, key) = transform_for(&o.cfg, &subject);
                    let value = source_header(
                        &o.iname,
                        sseq,
                        &key,
                        &subject,
                        &short_hash(&self.shared.server_name),
                    );
                    let hdr = headers::without(&hdr, "Nats-Stream-Source");
                    let hdr = headers::with(&hdr, &[("Nats-Stream-Source", value)]);
                    self.process_msg(server, &dest, None, &hdr, &data);
                }
            }
        }
    }

    /// A mirrored message keeps its origin sequence and timestamp: gaps are skipped over.
    fn take_mirrored(
        &mut self,
        server: &Server,
        sseq: u64,
        ts: i64,
        subject: &str,
        hdr: &[u8],
        data: &[u8],
    ) {
        let last = self.store.state().last_seq;
        if sseq <= last {
            return;
        }
        let ts = if ts > 0 { ts } else { unix_nanos() };
        let size = (subject.len() + hdr.len() + data.len() + 16) as u64;
        if let Err(e) = self
            .shared
            .check_storage(&self.cfg, &self.account.name, size)
        {
            if let Some(o) = self.origins.iter_mut().find(|o| o.mirror) {
                o.error = Some(e);
            }
            return;
        }
        let prev = self.store.subject_state(subject).map_or(0, |s| s.last);
        let stored = self
            .store
            .skip_to(sseq - 1)
            .and_then(|_| self.store.store(subject, hdr, data, ts));
        match stored {
            Ok(seq) => self.after_store(server, (seq, prev), subject, hdr, data, ts),
            Err(e) => tracing::error!(
                "JetStream mirror '{} > {}' store failed: {e}",
                self.account.name,
                self.name
            ),
        }
    }
}

/// The subject a sourced message is stored under, and the (filter, dest) pair of its header.
fn transform_for(cfg: &StreamSource, subject: &str) -> (String, (String, String)) {
    for t in &cfg.subject_transforms {
        let src = if t.src.is_empty() { ">" } else { &t.src };
        if crate::jetstream::store::filter_matches(subject, src) {
            let dest = crate::transform::apply(src, &t.dest, subject)
                .unwrap_or_else(|| subject.to_string());
            return (dest, (src.to_string(), t.dest.clone()));
        }
    }
    let filter = if cfg.filter_subject.is_empty() {
        ">".to_string()
    } else {
        cfg.filter_subject.clone()
    };
    (subject.to_string(), (filter, ">".into()))
}

/// Headers a copy does not keep: an origin's atomic batch arrives committed, and the
/// consistency checks were the origin's to make (nats-server drops them too).
const ORIGIN_ONLY_HEADERS: [&str; 8] = [
    "Nats-Batch-Id",
    "Nats-Batch-Sequence",
    "Nats-Batch-Commit",
    "Nats-Expected-Stream",
    "Nats-Expected-Last-Sequence",
    "Nats-Expected-Last-Subject-Sequence",
    "Nats-Expected-Last-Subject-Sequence-Subject",
    "Nats-Expected-Last-Msg-Id",
];

/// `hdr` without [`ORIGIN_ONLY_HEADERS`]; no header block at all when nothing else is left.
fn strip_origin_headers(hdr: Bytes) -> Bytes {
    if hdr.is_empty()
        || !ORIGIN_ONLY_HEADERS
            .iter()
            .any(|k| headers::get(&hdr, k).is_some())
    {
        return hdr;
    }
    let mut h = hdr.to_vec();
    for k in ORIGIN_ONLY_HEADERS {
        h = headers::without(&h, k);
    }
    if h == b"NATS/1.0\r\n\r\n" {
        h.clear();
    }
    Bytes::from(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_replies() {
        assert_eq!(
            parse_ack_reply("$JS.ACK.ORDERS.c1.1.42.7.1700000000000000000.3"),
            Some((42, 7, 1_700_000_000_000_000_000, 3))
        );
        assert_eq!(
            parse_ack_reply("$JS.ACK.hub.ACCHASH.ORDERS.c1.1.42.7.1700.3.xyz"),
            Some((42, 7, 1700, 3))
        );
        assert_eq!(parse_ack_reply("$JS.ACK.ORDERS.c1"), None);
        assert_eq!(parse_ack_reply("foo.bar.1.2.3.4.5.6.7"), None);
    }

    #[test]
    fn source_headers_round_trip() {
        let v = source_header(
            "ORDERS",
            2,
            &("orders.*".into(), "t.{{wildcard(1)}}".into()),
            "orders.x",
            "9mhttm0U",
        );
        assert_eq!(v, "ORDERS 2 orders.* t.{{wildcard(1)}} orders.x 9mhttm0U");
        assert_eq!(
            parse_source_header(&v),
            Some((
                "ORDERS".into(),
                2,
                "orders.*".into(),
                "t.{{wildcard(1)}}".into()
            ))
        );
        assert_eq!(
            parse_source_header("$JS.ACK.ORDERS.c.1.9.9.1.0"),
            Some(("ORDERS".into(), 9, ">".into(), ">".into()))
        );
    }

    #[test]
    fn transforms_pick_the_first_match() {
        let cfg: StreamSource = serde_json::from_value(json!({
            "name": "O",
            "subject_transforms": [{"src": "a.*", "dest": "x.{{wildcard(1)}}"}, {"src": "b.>", "dest": "b.>"}]
        }))
        .unwrap();
        assert_eq!(
            transform_for(&cfg, "a.1"),
            ("x.1".into(), ("a.*".into(), "x.{{wildcard(1)}}".into()))
        );
        assert_eq!(transform_for(&cfg, "b.2.3").0, "b.2.3");
    }
}
