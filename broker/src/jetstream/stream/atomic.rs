//! Atomic batch publishing (`allow_atomic`, `Nats-Batch-Id`): messages are staged per batch
//! until the one with `Nats-Batch-Commit`, then checked together and stored all or none, as
//! nats-server 2.12+ does.

use std::time::{Duration, Instant};

use serde_json::json;

use super::ingest::parse_ttl;
use super::Stream;
use crate::clock::unix_nanos;
use crate::jetstream::config::Discard;
use crate::jetstream::errors::ApiError;
use crate::jetstream::headers;
use crate::server::Server;

/// Most messages in one batch.
const MAX_BATCH_MSGS: u64 = 1000;
/// Most batches in flight on one stream.
const MAX_INFLIGHT: usize = 50;
/// A batch with no new message for this long is abandoned.
pub(super) const BATCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `Nats-Batch-Id`.
const MAX_ID_LEN: usize = 64;

/// A batch being staged.
#[derive(Debug)]
pub(super) struct AtomicBatch {
    msgs: Vec<Staged>,
    /// When the last message arrived.
    last: Instant,
}

#[derive(Debug)]
struct Staged {
    subject: String,
    hdr: Vec<u8>,
    data: Vec<u8>,
}

impl Stream {
    /// A message of an atomic batch (it has `Nats-Batch-Id`). Staged messages get an empty
    /// reply; the commit gets the pub ack for the whole batch, or the error that stopped it.
    pub(super) fn batch_msg(
        &mut self,
        server: &Server,
        subject: &str,
        reply: Option<String>,
        hdr: &[u8],
        data: &[u8],
    ) {
        match self.stage(subject, hdr, data) {
            Ok(None) => {
                if reply.is_some() {
                    self.reply_now(server, &reply, Vec::new());
                }
            }
            Ok(Some(id)) => self.commit(server, &id, reply),
            Err(e) => {
                let b = self.ack_err(e);
                self.reply_now(server, &reply, b);
            }
        }
    }

    /// Adds a message to its batch; `Some(id)` when it commits the batch.
    fn stage(
        &mut self,
        subject: &str,
        hdr: &[u8],
        data: &[u8],
    ) -> Result<Option<String>, ApiError> {
        let id = headers::get(hdr, "Nats-Batch-Id")
            .unwrap_or_default()
            .to_string();
        if !self.cfg.allow_atomic {
            return Err(ApiError::atomic_publish_disabled());
        }
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Err(ApiError::atomic_publish_invalid_batch_id());
        }
        let Some(seq) = headers::get(hdr, "Nats-Batch-Sequence") else {
            return Err(ApiError::atomic_publish_missing_seq());
        };
        let seq: u64 = match seq.trim().parse() {
            Ok(s) if s > 0 => s,
            _ => {
                self.atomic.remove(&id);
                return Err(ApiError::atomic_publish_incomplete_batch());
            }
        };
        let commit = match headers::get(hdr, "Nats-Batch-Commit") {
            None => None,
            Some("1") => Some(true),
            Some("eob") => Some(false),
            Some(_) => {
                self.atomic.remove(&id);
                return Err(ApiError::atomic_publish_invalid_batch_commit());
            }
        };
        // The end-of-batch marker is not stored, so it does not count toward the limit.
        let stored_seq = if commit == Some(false) { seq - 1 } else { seq };
        if stored_seq > MAX_BATCH_MSGS {
            self.atomic.remove(&id);
            return Err(ApiError::atomic_publish_too_large_batch(
                &MAX_BATCH_MSGS.to_string(),
            ));
        }
        if seq == 1 {
            if !self.atomic.contains_key(&id) && self.atomic.len() >= MAX_INFLIGHT {
                return Err(ApiError::atomic_publish_too_many_inflight());
            }
            self.atomic.insert(
                id.clone(),
                AtomicBatch {
                    msgs: Vec::new(),
                    last: Instant::now(),
                },
            );
        }
        let Some(batch) = self.atomic.get_mut(&id) else {
            return Err(ApiError::atomic_publish_incomplete_batch());
        };
        if batch.msgs.len() as u64 + 1 != seq && !(commit == Some(false) && seq == 1) {
            self.atomic.remove(&id);
            return Err(ApiError::atomic_publish_incomplete_batch());
        }
        batch.last = Instant::now();
        match commit {
            Some(false) => {
                // `eob`: the batch ends with the message before; it carries the commit.
                if let Some(last) = batch.msgs.last_mut() {
                    last.hdr = headers::with(&last.hdr, &[("Nats-Batch-Commit", "1".into())]);
                }
            }
            _ => batch.msgs.push(Staged {
                subject: subject.to_string(),
                hdr: hdr.to_vec(),
                data: data.to_vec(),
            }),
        }
        Ok(commit.map(|_| id))
    }

    /// Checks the staged batch against the stream as it would be after each message, then
    /// stores every message or none.
    fn commit(&mut self, server: &Server, id: &str, reply: Option<String>) {
        let Some(batch) = self.atomic.remove(id) else {
            let b = self.ack_err(ApiError::atomic_publish_incomplete_batch());
            return self.reply_now(server, &reply, b);
        };
        if batch.msgs.is_empty() {
            let b = self.ack_err(ApiError::atomic_publish_incomplete_batch());
            return self.reply_now(server, &reply, b);
        }
        if let Err(e) = self.check_batch(&batch.msgs) {
            let b = self.ack_err(e);
            return self.reply_now(server, &reply, b);
        }
        let count = batch.msgs.len();
        for m in &batch.msgs {
            self.store_msg(server, &m.subject, None, &m.hdr, &m.data);
        }
        let seq = self.store.state().last_seq;
        let mut v = json!({"stream": self.name, "seq": seq});
        if let Some(d) = &self.shared.domain {
            v["domain"] = json!(d);
        }
        v["batch"] = json!(id);
        v["count"] = json!(count);
        if let Some(r) = reply {
            if !self.cfg.no_ack {
                self.acks.push((r, v.to_string().into_bytes()));
            }
        }
    }

    /// What would make `process_msg` refuse one of the messages, found before any is stored:
    /// the consistency headers are checked against the stream plus the batch before them.
    fn check_batch(&mut self, msgs: &[Staged]) -> Result<(), ApiError> {
        if self.cfg.sealed {
            return Err(ApiError::sealed());
        }
        let st = self.store.state();
        if self.cfg.discard == Discard::New
            && self.cfg.max_msgs > 0
            && st.msgs + msgs.len() as u64 > self.cfg.max_msgs as u64
        {
            return Err(ApiError::stream_store_failed("maximum messages exceeded"));
        }
        let max_size = if self.cfg.max_msg_size > 0 {
            self.cfg.max_msg_size as usize
        } else {
            usize::MAX
        };
        self.expire_dedupe(unix_nanos());
        let mut ids = std::collections::HashSet::new();
        let mut written = std::collections::HashSet::new();
        for (i, m) in msgs.iter().enumerate() {
            let hdr = &m.hdr[..];
            if m.hdr.len() + m.data.len() > max_size {
                return Err(ApiError::stream_message_exceeds_maximum());
            }
            if headers::get(hdr, "Nats-Expected-Last-Msg-Id").is_some() {
                return Err(ApiError::atomic_publish_unsupported_header(
                    "Nats-Expected-Last-Msg-Id",
                ));
            }
            if let Some(id) = headers::get(hdr, "Nats-Msg-Id") {
                if !ids.insert(id.to_string()) || self.dedupe.contains_key(id) {
                    return Err(ApiError::atomic_publish_contains_duplicate_message());
                }
            }
            if let Some(s) = headers::get(hdr, "Nats-Expected-Stream") {
                if s != self.name {
                    return Err(ApiError::stream_not_match());
                }
            }
            if let Some(v) = headers::get(hdr, "Nats-Expected-Last-Sequence") {
                // Only the first message may expect a last sequence: the stream's own.
                if i > 0 {
                    return Err(ApiError::stream_wrong_last_sequence_constant());
                }
                let last = st.last_seq;
                if v.parse::<u64>().ok() != Some(last) {
                    return Err(ApiError::stream_wrong_last_sequence(&last.to_string()));
                }
            }
            if let Some(v) = headers::get(hdr, "Nats-Expected-Last-Subject-Sequence") {
                let filter = headers::get(hdr, "Nats-Expected-Last-Subject-Sequence-Subject")
                    .unwrap_or(&m.subject);
                // A subject this batch already wrote has no stored answer yet.
                if written.contains(filter) {
                    return Err(ApiError::stream_wrong_last_sequence_constant());
                }
                let last = self.store.last_for(filter).unwrap_or(0);
                if v.parse::<u64>().ok() != Some(last) {
                    return Err(ApiError::stream_wrong_last_sequence(&last.to_string()));
                }
            }
            if let Some(v) = headers::get(hdr, "Nats-TTL") {
                if !self.cfg.allow_msg_ttl {
                    return Err(ApiError::message_ttl_disabled());
                }
                if parse_ttl(v).is_none() {
                    return Err(ApiError::message_ttl_invalid());
                }
            }
            if let Some(r) = headers::get(hdr, "Nats-Rollup") {
                if !self.cfg.allow_rollup_hdrs {
                    return Err(ApiError::stream_rollup_failed("rollup not permitted"));
                }
                if !matches!(r, "sub" | "all") {
                    return Err(ApiError::stream_rollup_failed(&format!(
                        "rollup value invalid: {r:?}"
                    )));
                }
            }
            // (copies from sources arrive without batch headers: never sourced here)
            self.counter_increment(hdr, &m.data, false)?;
            written.insert(m.subject.as_str());
        }
        Ok(())
    }

    /// Drops batches that stopped short of their commit for too long.
    pub(super) fn expire_batches(&mut self, now: Instant) {
        self.atomic
            .retain(|_, b| now.duration_since(b.last) < BATCH_TIMEOUT);
    }

    /// When the oldest staged batch times out.
    pub(super) fn batches_deadline(&self) -> Option<Instant> {
        self.atomic.values().map(|b| b.last + BATCH_TIMEOUT).min()
    }
}
