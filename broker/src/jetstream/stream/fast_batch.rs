//! Fast batch publishing (`allow_batched`, nats-server 2.14): each message is stored as it
//! comes, its reply subject `<inbox>.<id>.<flow>.<gap>.<seq>.<op>.$FI` carries the batch's
//! state, and the server paces the publisher with flow acks, as nats-server's
//! `jetstream_batching.go` does (ADR-50).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::Stream;
use crate::jetstream::errors::ApiError;
use crate::server::Server;

/// A batch with no new message for this long is dropped without a word.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Most fast batches in flight on one stream.
const MAX_INFLIGHT: usize = 1000;
/// Longest batch id.
const MAX_ID_LEN: usize = 64;
/// The most messages one flow ack may cover, shared among the batches in flight.
const MAX_ACK_MSGS: u64 = 500;

/// One fast batch in flight.
#[derive(Debug)]
pub(super) struct FastBatch {
    /// The publisher's limit for messages per flow ack.
    flow: u64,
    /// `fail`: a gap or an error ends the batch; `ok`: it goes on.
    gap_fail: bool,
    /// The last batch sequence taken (stored, or skipped as a duplicate).
    lseq: u64,
    /// The batch sequence the last flow ack named.
    fseq: u64,
    /// Messages per flow ack now.
    ack_msgs: u64,
    /// The stream sequence of the last message stored.
    last_stream_seq: u64,
    /// When the last message arrived.
    last: Instant,
}

/// What a `$FI` reply subject says.
struct Frame<'a> {
    id: &'a str,
    flow: u64,
    gap_fail: bool,
    seq: u64,
    op: u8,
}

/// Reads `<inbox>.<id>.<flow>.<gap>.<seq>.<op>.$FI` from the right (the inbox may hold dots);
/// `None` when it is not a fast batch reply, `Some(Err)` when it is one that does not parse.
fn frame(reply: &str) -> Option<Result<Frame<'_>, ApiError>> {
    let rest = reply.strip_suffix(".$FI")?;
    let mut t = rest.rsplitn(6, '.');
    let (op, seq, gap, flow, id) = (t.next(), t.next(), t.next(), t.next(), t.next());
    let invalid = || ApiError::batch_publish_invalid_pattern();
    let parsed = (|| {
        let op: u8 = op?.parse().ok()?;
        let seq: u64 = seq?.parse().ok().filter(|s| *s != 0 && *s != u64::MAX)?;
        let gap_fail = match gap? {
            "fail" => true,
            "ok" => false,
            _ => return None,
        };
        let flow: i64 = flow?.parse().ok()?;
        let flow = if flow <= 0 {
            10
        } else {
            flow.min(65_535) as u64
        };
        let id = id.filter(|i| !i.is_empty())?;
        Some(Frame {
            id,
            flow,
            gap_fail,
            seq,
            op,
        })
    })();
    Some(parsed.ok_or_else(invalid))
}

/// How one message of a batch fared in the store.
enum Outcome {
    Stored(u64),
    Duplicate,
    Refused(Vec<u8>),
}

impl Stream {
    /// A message whose reply ends in `.$FI`: part of a fast batch when the stream allows them.
    /// Returns false when the reply is not a fast batch reply (the message is an ordinary one).
    pub(super) fn fast_batch_msg(
        &mut self,
        server: &Server,
        subject: &str,
        reply: &str,
        hdr: &[u8],
        data: &[u8],
    ) -> bool {
        let Some(frame) = frame(reply) else {
            return false;
        };
        // Every answer goes out in order, after what was stored before it is written.
        let refuse = |s: &mut Self, e: ApiError| {
            let b = s.ack_err(e);
            s.acks.push((reply.to_string(), b));
        };
        if self.cfg.sealed {
            refuse(self, ApiError::sealed());
            return true;
        }
        if !self.cfg.allow_batched {
            refuse(self, ApiError::batch_publish_disabled());
            return true;
        }
        let f = match frame {
            Ok(f) => f,
            Err(e) => {
                refuse(self, e);
                return true;
            }
        };
        if f.id.len() > MAX_ID_LEN {
            refuse(self, ApiError::batch_publish_invalid_batch_id());
            return true;
        }
        let known = self.fast.contains_key(f.id);
        let invalid = || ApiError::batch_publish_invalid_pattern();
        match f.op {
            0 if f.seq != 1 => {
                refuse(self, invalid());
                return true;
            }
            0 | 2 if f.seq == 1 => {
                if !known && self.fast.len() >= MAX_INFLIGHT {
                    refuse(self, ApiError::batch_publish_too_many_inflight());
                    return true;
                }
                self.start_fast_batch(reply, &f);
            }
            1 | 3 | 4 if f.seq == 1 => {
                refuse(self, invalid());
                return true;
            }
            1..=4 if !known => {
                refuse(self, ApiError::batch_publish_unknown_batch_id());
                return true;
            }
            1..=4 => {}
            _ => {
                refuse(self, invalid());
                return true;
            }
        }
        let id = f.id.to_string();
        let b = self.fast.get_mut(&id).expect("started or known");
        b.last = Instant::now();
        let expected = b.lseq + 1;
        if f.op == 4 {
            // A ping: the last flow ack again, or the gap it shows.
            let (fseq, am, gap_fail) = (b.fseq, b.ack_msgs, b.gap_fail);
            if f.seq >= expected {
                let gap = json!({"type": "gap", "last_seq": expected, "seq": f.seq + 1});
                self.fast_reply(reply, gap);
                if gap_fail {
                    self.fast_commit(&id, reply, expected - 1);
                }
                return true;
            }
            self.fast_reply(reply, json!({"type": "ack", "seq": fseq, "msgs": am}));
            return true;
        }
        if f.seq < expected {
            // Already taken (a resend): nothing to do.
            return true;
        }
        if f.seq > expected {
            let gap_fail = b.gap_fail;
            let gap = json!({"type": "gap", "last_seq": expected, "seq": f.seq});
            self.fast_reply(reply, gap);
            if gap_fail {
                self.fast_commit(&id, reply, expected - 1);
                return true;
            }
        }
        if f.op == 3 {
            // End of batch: the marker is not stored; the batch is what came before it.
            let count = self.fast[&id].lseq;
            self.fast_commit(&id, reply, count);
            return true;
        }
        match self.store_batched(server, subject, hdr, data) {
            Outcome::Refused(body) => {
                let gap_fail = self.fast[&id].gap_fail;
                if f.seq == 1 {
                    // The first message: its error, as a plain publish would get it.
                    self.fast.remove(&id);
                    self.acks.push((reply.to_string(), body));
                    return true;
                }
                let error = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error").cloned())
                    .unwrap_or(Value::Null);
                self.fast_reply(reply, json!({"type": "err", "seq": f.seq, "error": error}));
                if gap_fail || f.op == 2 {
                    self.fast_commit(&id, reply, f.seq - 1);
                    return true;
                }
                // `ok` mode: the batch goes on past the refused message.
                let b = self.fast.get_mut(&id).expect("in flight");
                b.lseq = f.seq;
            }
            Outcome::Stored(seq) => {
                let b = self.fast.get_mut(&id).expect("in flight");
                b.lseq = f.seq;
                b.last_stream_seq = seq;
            }
            Outcome::Duplicate => {
                let b = self.fast.get_mut(&id).expect("in flight");
                b.lseq = f.seq;
            }
        }
        if f.op == 2 {
            self.fast_commit(&id, reply, f.seq);
            return true;
        }
        self.fast_flow(&id, reply);
        true
    }

    /// A new batch: its first flow ack tells the publisher how many messages to send per ack.
    fn start_fast_batch(&mut self, reply: &str, f: &Frame<'_>) {
        let alone = self.fast.is_empty() || (self.fast.len() == 1 && self.fast.contains_key(f.id));
        let ack_msgs = if alone { f.flow.min(MAX_ACK_MSGS) } else { 1 };
        self.fast.insert(
            f.id.to_string(),
            FastBatch {
                flow: f.flow,
                gap_fail: f.gap_fail,
                lseq: 0,
                fseq: 0,
                ack_msgs,
                last_stream_seq: self.store.state().last_seq,
                last: Instant::now(),
            },
        );
        if f.op == 0 {
            self.fast_reply(reply, json!({"type": "ack", "seq": 0, "msgs": ack_msgs}));
        }
    }

    /// Stores one batch message as a publish would be stored, keeping its answer to itself.
    fn store_batched(
        &mut self,
        server: &Server,
        subject: &str,
        hdr: &[u8],
        data: &[u8],
    ) -> Outcome {
        self.capture = Some(None);
        self.store_msg(server, subject, Some(CAPTURE.to_string()), hdr, data);
        let answered = self.capture.take().flatten().or_else(|| {
            let i = self.acks.iter().rposition(|(r, _)| r == CAPTURE)?;
            Some(self.acks.remove(i).1)
        });
        let Some(body) = answered else {
            // No answer at all: a no_ack stream stored it.
            return Outcome::Stored(self.store.state().last_seq);
        };
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if v.get("error").is_some() {
            Outcome::Refused(body)
        } else if v.get("duplicate").is_some() {
            Outcome::Duplicate
        } else {
            Outcome::Stored(v["seq"].as_u64().unwrap_or(0))
        }
    }

    /// Sends a flow ack when the persisted messages passed the next multiple of the ack size,
    /// growing or shrinking the size toward its share of [`MAX_ACK_MSGS`].
    fn fast_flow(&mut self, id: &str, reply: &str) {
        let inflight = self.fast.len() as u64;
        let b = self.fast.get_mut(id).expect("in flight");
        if b.lseq < b.fseq + b.ack_msgs {
            return;
        }
        let steps = (b.lseq - b.fseq) / b.ack_msgs;
        b.fseq += steps * b.ack_msgs;
        let max = (MAX_ACK_MSGS / inflight.max(1)).max(1).min(b.flow);
        if b.ack_msgs < max {
            b.ack_msgs = (b.ack_msgs * 2).min(max);
        } else if b.ack_msgs > max {
            b.ack_msgs = (b.ack_msgs / 2).max(max);
        }
        let ack = json!({"type": "ack", "seq": b.fseq, "msgs": b.ack_msgs});
        self.fast_reply(reply, ack);
    }

    /// Ends batch `id` with its pub ack: the last stream sequence and `count` messages.
    fn fast_commit(&mut self, id: &str, reply: &str, count: u64) {
        let Some(b) = self.fast.remove(id) else {
            return;
        };
        let mut v = json!({"stream": self.name, "seq": b.last_stream_seq});
        if let Some(d) = &self.shared.domain {
            v["domain"] = json!(d);
        }
        v["batch"] = json!(id);
        v["count"] = json!(count);
        self.fast_reply(reply, v);
    }

    /// An answer to a batch message, sent once what came before it is written.
    fn fast_reply(&mut self, reply: &str, v: Value) {
        self.acks
            .push((reply.to_string(), v.to_string().into_bytes()));
    }

    /// Drops fast batches that went quiet for too long (nats-server says nothing either).
    pub(super) fn expire_fast_batches(&mut self, now: Instant) {
        self.fast
            .retain(|_, b| now.duration_since(b.last) < TIMEOUT);
    }

    /// When the quietest fast batch times out.
    pub(super) fn fast_batches_deadline(&self) -> Option<Instant> {
        self.fast.values().map(|b| b.last + TIMEOUT).min()
    }
}

/// The reply a batch message is stored under, so its answer is kept rather than sent.
pub(super) const CAPTURE: &str = "\u{0}fast-batch";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_subjects() {
        let f = frame("_INBOX.a.b.id1.0.fail.1.0.$FI").unwrap().unwrap();
        assert_eq!(
            (f.id, f.flow, f.gap_fail, f.seq, f.op),
            ("id1", 10, true, 1, 0)
        );
        let f = frame("id2.100000.ok.7.1.$FI").unwrap().unwrap();
        assert_eq!(
            (f.id, f.flow, f.gap_fail, f.seq, f.op),
            ("id2", 65_535, false, 7, 1)
        );
        assert!(frame("_INBOX.x").is_none());
        assert!(frame("i.1.maybe.1.0.$FI").unwrap().is_err());
        assert!(frame("i.1.ok.0.0.$FI").unwrap().is_err());
    }
}
