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
    /// A stream API request that changes the stream (purge, message delete).
    Api {
        proposer: u64,
        op: ApiOp,
        reply: Option<String>,
        body: Bytes,
    },
}

/// The stream-changing API requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiOp {
    Purge,
    MsgDelete,
}

const MSG: u8 = 1;
const API: u8 = 2;

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
                out.put_u8(match op {
                    ApiOp::Purge => 1,
                    ApiOp::MsgDelete => 2,
                });
                put_str(&mut out, reply.as_deref().unwrap_or(""));
                put_bytes(&mut out, body);
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
                let op = match buf.get_u8() {
                    1 => ApiOp::Purge,
                    2 => ApiOp::MsgDelete,
                    _ => return None,
                };
                Some(StreamEntry::Api {
                    proposer,
                    op,
                    reply: get_opt_str(&mut buf)?,
                    body: get_bytes(&mut buf)?,
                })
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
        let a = StreamEntry::Api {
            proposer: 1,
            op: ApiOp::Purge,
            reply: None,
            body: Bytes::from_static(b"{}"),
        };
        assert_eq!(StreamEntry::decode(a.encode()), Some(a));
    }
}
