//! Raft messages on the wire between servers: a compact little-endian encoding, and a decoder
//! that refuses anything malformed (short, overlong, unknown kind, trailing bytes) without
//! panicking or allocating more than the input could hold.

use bytes::{BufMut, Bytes, BytesMut};

use super::message::{Body, Entry, EntryKind, Message, NodeId};

/// The encoding's version byte; a peer speaking another one is refused, not misread.
const VERSION: u8 = 1;

/// Fixed bytes of one entry: term, index, kind, peer, data length.
const ENTRY_HEAD: usize = 8 + 8 + 1 + 8 + 4;

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The input ended inside the message.
    #[error("raft message truncated")]
    Truncated,
    /// The version byte is not ours.
    #[error("raft message version {0} not supported")]
    Version(u8),
    /// The kind byte names no message.
    #[error("raft message kind {0} unknown")]
    Kind(u8),
    /// An entry's kind byte names no kind.
    #[error("raft entry kind unknown")]
    EntryKind,
    /// Bytes after the message.
    #[error("raft message has {0} trailing bytes")]
    Trailing(usize),
}

const PRE_VOTE: u8 = 1;
const PRE_VOTE_RESP: u8 = 2;
const VOTE: u8 = 3;
const VOTE_RESP: u8 = 4;
const APPEND: u8 = 5;
const APPEND_RESP: u8 = 6;
const TIMEOUT_NOW: u8 = 7;

/// An entry kind as its byte and peer id (0 when it has none).
pub fn kind_code(kind: EntryKind) -> (u8, NodeId) {
    match kind {
        EntryKind::Normal => (0, 0),
        EntryKind::AddPeer(p) => (1, p),
        EntryKind::RemovePeer(p) => (2, p),
    }
}

/// The entry kind of a byte and peer id, if it names one.
pub fn kind_of(code: u8, peer: NodeId) -> Option<EntryKind> {
    match code {
        0 => Some(EntryKind::Normal),
        1 => Some(EntryKind::AddPeer(peer)),
        2 => Some(EntryKind::RemovePeer(peer)),
        _ => None,
    }
}

/// Appends `m`'s encoding to `out`.
pub fn encode(m: &Message, out: &mut BytesMut) {
    out.put_u8(VERSION);
    out.put_u64_le(m.from);
    out.put_u64_le(m.to);
    out.put_u64_le(m.term);
    match &m.body {
        Body::PreVote {
            last_index,
            last_term,
        } => {
            out.put_u8(PRE_VOTE);
            out.put_u64_le(*last_index);
            out.put_u64_le(*last_term);
        }
        Body::PreVoteResp { reject } => {
            out.put_u8(PRE_VOTE_RESP);
            out.put_u8(*reject as u8);
        }
        Body::Vote {
            last_index,
            last_term,
            transfer,
        } => {
            out.put_u8(VOTE);
            out.put_u64_le(*last_index);
            out.put_u64_le(*last_term);
            out.put_u8(*transfer as u8);
        }
        Body::VoteResp { reject } => {
            out.put_u8(VOTE_RESP);
            out.put_u8(*reject as u8);
        }
        Body::Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => {
            out.put_u8(APPEND);
            out.put_u64_le(*prev_index);
            out.put_u64_le(*prev_term);
            out.put_u64_le(*commit);
            out.put_u32_le(entries.len() as u32);
            for e in entries {
                out.put_u64_le(e.term);
                out.put_u64_le(e.index);
                let (kind, peer) = kind_code(e.kind);
                out.put_u8(kind);
                out.put_u64_le(peer);
                out.put_u32_le(e.data.len() as u32);
                out.put_slice(&e.data);
            }
        }
        Body::AppendResp { reject, index } => {
            out.put_u8(APPEND_RESP);
            out.put_u8(*reject as u8);
            out.put_u64_le(*index);
        }
        Body::TimeoutNow => out.put_u8(TIMEOUT_NOW),
    }
}

/// Reads fields off the front of a buffer, failing on a short one.
struct Reader {
    buf: Bytes,
}

impl Reader {
    fn take(&mut self, n: usize) -> Result<Bytes, CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::Truncated);
        }
        Ok(self.buf.split_to(n))
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn bool(&mut self) -> Result<bool, CodecError> {
        Ok(self.u8()? != 0)
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b[..].try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, CodecError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b[..].try_into().expect("8 bytes")))
    }
}

/// Decodes one message that fills `buf` exactly. Entry data share `buf`'s memory.
pub fn decode(buf: Bytes) -> Result<Message, CodecError> {
    let mut r = Reader { buf };
    let version = r.u8()?;
    if version != VERSION {
        return Err(CodecError::Version(version));
    }
    let from = r.u64()?;
    let to = r.u64()?;
    let term = r.u64()?;
    let body = match r.u8()? {
        PRE_VOTE => Body::PreVote {
            last_index: r.u64()?,
            last_term: r.u64()?,
        },
        PRE_VOTE_RESP => Body::PreVoteResp { reject: r.bool()? },
        VOTE => Body::Vote {
            last_index: r.u64()?,
            last_term: r.u64()?,
            transfer: r.bool()?,
        },
        VOTE_RESP => Body::VoteResp { reject: r.bool()? },
        APPEND => {
            let prev_index = r.u64()?;
            let prev_term = r.u64()?;
            let commit = r.u64()?;
            let n = r.u32()? as usize;
            // Every entry takes at least its fixed part: a count the rest cannot hold is a
            // lie, refused before anything is allocated for it.
            if n > r.buf.len() / ENTRY_HEAD {
                return Err(CodecError::Truncated);
            }
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                let term = r.u64()?;
                let index = r.u64()?;
                let kind = kind_of(r.u8()?, r.u64()?).ok_or(CodecError::EntryKind)?;
                let len = r.u32()? as usize;
                let data = r.take(len)?;
                entries.push(Entry {
                    term,
                    index,
                    kind,
                    data,
                });
            }
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            }
        }
        APPEND_RESP => Body::AppendResp {
            reject: r.bool()?,
            index: r.u64()?,
        },
        TIMEOUT_NOW => Body::TimeoutNow,
        k => return Err(CodecError::Kind(k)),
    };
    if !r.buf.is_empty() {
        return Err(CodecError::Trailing(r.buf.len()));
    }
    Ok(Message {
        from,
        to,
        term,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Message> {
        let entries = vec![
            Entry {
                term: 3,
                index: 7,
                kind: EntryKind::Normal,
                data: Bytes::new(),
            },
            Entry {
                term: 3,
                index: 8,
                kind: EntryKind::AddPeer(9),
                data: Bytes::from_static(b"payload"),
            },
            Entry {
                term: 3,
                index: 9,
                kind: EntryKind::RemovePeer(2),
                data: Bytes::new(),
            },
        ];
        [
            Body::PreVote {
                last_index: 9,
                last_term: 2,
            },
            Body::PreVoteResp { reject: true },
            Body::Vote {
                last_index: u64::MAX,
                last_term: 1,
                transfer: true,
            },
            Body::VoteResp { reject: false },
            Body::Append {
                prev_index: 6,
                prev_term: 2,
                entries,
                commit: 5,
            },
            Body::Append {
                prev_index: 0,
                prev_term: 0,
                entries: Vec::new(),
                commit: 0,
            },
            Body::AppendResp {
                reject: true,
                index: 4,
            },
            Body::TimeoutNow,
        ]
        .into_iter()
        .map(|body| Message {
            from: 1,
            to: 0xDEAD_BEEF,
            term: 42,
            body,
        })
        .collect()
    }

    fn encoded(m: &Message) -> Bytes {
        let mut b = BytesMut::new();
        encode(m, &mut b);
        b.freeze()
    }

    #[test]
    fn every_kind_round_trips() {
        for m in samples() {
            assert_eq!(decode(encoded(&m)).unwrap(), m);
        }
    }

    #[test]
    fn malformed_input_is_refused_without_panicking() {
        for m in samples() {
            let full = encoded(&m);
            for cut in 0..full.len() {
                assert!(decode(full.slice(..cut)).is_err(), "{m:?} cut at {cut}");
            }
            let mut long = BytesMut::from(&full[..]);
            long.put_u8(0);
            assert_eq!(decode(long.freeze()), Err(CodecError::Trailing(1)));
        }
        let mut v = encoded(&samples()[0]).to_vec();
        v[0] = 9;
        assert_eq!(decode(Bytes::from(v)), Err(CodecError::Version(9)));
        let mut v = encoded(&samples()[0]).to_vec();
        v[25] = 200;
        assert_eq!(decode(Bytes::from(v)), Err(CodecError::Kind(200)));
        // An entry count far beyond the input.
        let mut v = encoded(&samples()[5]).to_vec();
        let n = v.len() - 4;
        v[n..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(Bytes::from(v)), Err(CodecError::Truncated));
        // Random bytes: an answer, never a panic.
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..20_000 {
            let len = rng.usize(0..80);
            let mut v: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if !v.is_empty() {
                v[0] = VERSION;
            }
            let _ = decode(Bytes::from(v));
        }
    }
}
