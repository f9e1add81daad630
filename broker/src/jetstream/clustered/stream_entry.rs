//! What a replicated stream puts in its Raft log: each published message (with the time the
//! leader took it in, so every replica stores the same timestamp) and each stream-changing
//! API request. Every replica applies the same entries in the same order through the same
//! code, so de-duplication, expected-sequence checks, rollups, TTLs and limits agree.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// One replicated operation.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEntry {
    /// A message published to the stream.
    Msg {
        /// The member that proposed it: it alone answers the publisher.
        proposer: u64,
        ts: i64,
        subject: String,
        reply: Option<String>,
        hdr: Bytes,
        data: Bytes,
    },
    /// A stream API request that changes the stream or its consumers.
    Api {
        proposer: u64,
        op: ApiOp,
        reply: Option<String>,
        body: Bytes,
    },
    /// A consumer's position as its leader holds it (deliveries, acks, pending).
    ConsumerState {
        proposer: u64,
        name: String,
        state: Bytes,
    },
    /// Messages the leader removed because every consumer that needed them acknowledged
    /// them (work-queue and interest retention).
    Remove { proposer: u64, seqs: Vec<u64> },
}

/// The stream-changing API requests, with what their subjects carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiOp {
    Purge,
    MsgDelete,
    ConsumerCreate {
        name: Option<String>,
        filter: Option<String>,
        durable_api: bool,
    },
    ConsumerDelete(String),
    ConsumerPause(String),
    ConsumerUnpin(String),
    ConsumerReset {
        name: String,
        too_new: bool,
    },
}

const MSG: u8 = 1;
const API: u8 = 2;
const CONSUMER_STATE: u8 = 3;
const REMOVE: u8 = 4;

impl ApiOp {
    /// (code, name, filter, flag).
    fn parts(&self) -> (u8, Option<&str>, Option<&str>, bool) {
        match self {
            ApiOp::Purge => (1, None, None, false),
            ApiOp::MsgDelete => (2, None, None, false),
            ApiOp::ConsumerCreate {
                name,
                filter,
                durable_api,
            } => (3, name.as_deref(), filter.as_deref(), *durable_api),
            ApiOp::ConsumerDelete(n) => (4, Some(n), None, false),
            ApiOp::ConsumerPause(n) => (5, Some(n), None, false),
            ApiOp::ConsumerUnpin(n) => (6, Some(n), None, false),
            ApiOp::ConsumerReset { name, too_new } => (7, Some(name), None, *too_new),
        }
    }

    fn from_parts(
        code: u8,
        name: Option<String>,
        filter: Option<String>,
        flag: bool,
    ) -> Option<ApiOp> {
        Some(match code {
            1 => ApiOp::Purge,
            2 => ApiOp::MsgDelete,
            3 => ApiOp::ConsumerCreate {
                name,
                filter,
                durable_api: flag,
            },
            4 => ApiOp::ConsumerDelete(name?),
            5 => ApiOp::ConsumerPause(name?),
            6 => ApiOp::ConsumerUnpin(name?),
            7 => ApiOp::ConsumerReset {
                name: name?,
                too_new: flag,
            },
            _ => return None,
        })
    }
}

fn put_str(out: &mut BytesMut, s: &str) {
    out.put_u32(s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.extend_from_slice(b);
}

fn get_bytes(buf: &mut Bytes) -> Option<Bytes> {
    if buf.remaining() < 4 {
        return None;
    }
    let n = buf.get_u32() as usize;
    (n <= buf.remaining()).then(|| buf.split_to(n))
}

fn get_str(buf: &mut Bytes) -> Option<String> {
    String::from_utf8(get_bytes(buf)?.to_vec()).ok()
}

fn get_opt_str(buf: &mut Bytes) -> Option<Option<String>> {
    let s = get_str(buf)?;
    Some((!s.is_empty()).then_some(s))
}

impl StreamEntry {
    /// The entry's bytes in the log.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            StreamEntry::Msg {
                proposer,
                ts,
                subject,
                reply,
                hdr,
                data,
            } => {
                out.put_u8(MSG);
                out.put_u64(*proposer);
                out.put_i64(*ts);
                put_str(&mut out, subject);
                put_str(&mut out, reply.as_deref().unwrap_or(""));
                put_bytes(&mut out, hdr);
                put_bytes(&mut out, data);
            }
            StreamEntry::Api {
                proposer,
                op,
                reply,
                body,
            } => {
                out.put_u8(API);
                out.put_u64(*proposer);
                let (code, name, filter, flag) = op.parts();
                out.put_u8(code);
                put_str(&mut out, name.unwrap_or(""));
                put_str(&mut out, filter.unwrap_or(""));
                out.put_u8(flag as u8);
                put_str(&mut out, reply.as_deref().unwrap_or(""));
                put_bytes(&mut out, body);
            }
            StreamEntry::ConsumerState {
                proposer,
                name,
                state,
            } => {
                out.put_u8(CONSUMER_STATE);
                out.put_u64(*proposer);
                put_str(&mut out, name);
                put_bytes(&mut out, state);
            }
            StreamEntry::Remove { proposer, seqs } => {
                out.put_u8(REMOVE);
                out.put_u64(*proposer);
                out.put_u32(seqs.len() as u32);
                for s in seqs {
                    out.put_u64(*s);
                }
            }
        }
        out.freeze()
    }

    /// An entry from its bytes; `None` for bytes no version of this code wrote.
    pub fn decode(mut buf: Bytes) -> Option<StreamEntry> {
        if buf.remaining() < 9 {
            return None;
        }
        let kind = buf.get_u8();
        let proposer = buf.get_u64();
        match kind {
            MSG => {
                if buf.remaining() < 8 {
                    return None;
                }
                let ts = buf.get_i64();
                Some(StreamEntry::Msg {
                    proposer,
                    ts,
                    subject: get_str(&mut buf)?,
                    reply: get_opt_str(&mut buf)?,
                    hdr: get_bytes(&mut buf)?,
                    data: get_bytes(&mut buf)?,
                })
            }
            API => {
                if buf.remaining() < 1 {
                    return None;
                }
                let code = buf.get_u8();
                let name = get_opt_str(&mut buf)?;
                let filter = get_opt_str(&mut buf)?;
                if buf.remaining() < 1 {
                    return None;
                }
                let flag = buf.get_u8() != 0;
                Some(StreamEntry::Api {
                    proposer,
                    op: ApiOp::from_parts(code, name, filter, flag)?,
                    reply: get_opt_str(&mut buf)?,
                    body: get_bytes(&mut buf)?,
                })
            }
            CONSUMER_STATE => Some(StreamEntry::ConsumerState {
                proposer,
                name: get_str(&mut buf)?,
                state: get_bytes(&mut buf)?,
            }),
            REMOVE => {
                if buf.remaining() < 4 {
                    return None;
                }
                let n = buf.get_u32() as usize;
                if buf.remaining() < n * 8 {
                    return None;
                }
                let seqs = (0..n).map(|_| buf.get_u64()).collect();
                Some(StreamEntry::Remove { proposer, seqs })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damage_is_refused() {
        let m = StreamEntry::Msg {
            proposer: 7,
            ts: 1_700_000_000_000_000_000,
            subject: "orders.new".into(),
            reply: Some("_INBOX.x".into()),
            hdr: Bytes::from_static(b"NATS/1.0\r\nNats-Msg-Id: 1\r\n\r\n"),
            data: Bytes::from_static(b"hello"),
        };
        let b = m.encode();
        assert_eq!(StreamEntry::decode(b.clone()), Some(m));
        assert_eq!(StreamEntry::decode(b.slice(..b.len() - 1)), None);
        for op in [
            ApiOp::Purge,
            ApiOp::ConsumerCreate {
                name: Some("C".into()),
                filter: Some("a.>".into()),
                durable_api: true,
            },
            ApiOp::ConsumerReset {
                name: "C".into(),
                too_new: true,
            },
        ] {
            let a = StreamEntry::Api {
                proposer: 1,
                op,
                reply: None,
                body: Bytes::from_static(b"{}"),
            };
            assert_eq!(StreamEntry::decode(a.encode()), Some(a));
        }
        let r = StreamEntry::Remove {
            proposer: 2,
            seqs: vec![1, 5, 9],
        };
        assert_eq!(StreamEntry::decode(r.encode()), Some(r));
        let c = StreamEntry::ConsumerState {
            proposer: 2,
            name: "C".into(),
            state: Bytes::from_static(b"{}"),
        };
        assert_eq!(StreamEntry::decode(c.encode()), Some(c));
    }
}
