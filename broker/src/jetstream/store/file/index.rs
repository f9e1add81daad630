//! A block's index file (`msgs/<n>.idx`): the records a sealed block holds, so opening a stream
//! need not re-read its blocks; and the little-endian field readers the records share.

use super::{Loc, Recovered, TAG_DEL, TAG_MSG, TAG_MSG_S2, TAG_PURGE, TAG_STATE};

/// The per-block index: every record of a sealed block without the message contents, so a
/// restart reads indexes instead of whole blocks. `NIX1 | block length | records | crc32`.
pub(super) const INDEX_MAGIC: &[u8; 4] = b"NIX1";

pub(super) fn encode_index(block_len: u64, recs: &[Recovered]) -> Vec<u8> {
    let mut body = Vec::with_capacity(recs.len() * 48);
    for r in recs {
        encode_rec(&mut body, r);
    }
    finish_index(block_len, &body)
}

/// The index file of a block of `block_len` bytes from its encoded records.
pub(super) fn finish_index(block_len: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&block_len.to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Appends one record's index entry.
pub(super) fn encode_rec(out: &mut Vec<u8>, r: &Recovered) {
    match r {
        Recovered::Msg {
            seq,
            ts,
            subject,
            loc,
            ..
        } => encode_msg(out, *seq, *ts, subject, loc),
        Recovered::Delete(s) => encode_mark(out, TAG_DEL, *s),
        Recovered::Purge(s) => encode_mark(out, TAG_PURGE, *s),
        Recovered::State { first, last } => {
            out.push(TAG_STATE);
            out.extend_from_slice(&first.to_le_bytes());
            out.extend_from_slice(&last.to_le_bytes());
        }
    }
}

pub(super) fn encode_msg(out: &mut Vec<u8>, seq: u64, ts: i64, subject: &str, loc: &Loc) {
    out.push(if loc.packed > 0 { TAG_MSG_S2 } else { TAG_MSG });
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    out.extend_from_slice(&loc.off.to_le_bytes());
    out.extend_from_slice(&loc.subj_len.to_le_bytes());
    out.extend_from_slice(&loc.hdr_len.to_le_bytes());
    out.extend_from_slice(&loc.data_len.to_le_bytes());
    if loc.packed > 0 {
        out.extend_from_slice(&loc.packed.to_le_bytes());
    }
    out.extend_from_slice(subject.as_bytes());
}

pub(super) fn encode_mark(out: &mut Vec<u8>, tag: u8, seq: u64) {
    out.push(tag);
    out.extend_from_slice(&seq.to_le_bytes());
}

/// The records of an index, if it is intact and describes a block of `block_len` bytes.
pub(super) fn decode_index(
    block: u64,
    buf: &[u8],
    block_len: u64,
    sealed: bool,
) -> Option<Vec<Recovered>> {
    if buf.len() < 16 || &buf[..4] != INDEX_MAGIC {
        return None;
    }
    let body = &buf[..buf.len() - 4];
    if crc32fast::hash(body) != u32_at(buf, buf.len() - 4) || u64_at(buf, 4) != block_len {
        return None;
    }
    let mut out = Vec::new();
    let mut i = 12;
    while i < body.len() {
        let tag = body[i];
        i += 1;
        let need = |i: usize, n: usize| (i + n <= body.len()).then_some(());
        match tag {
            TAG_MSG | TAG_MSG_S2 => {
                let fixed = if tag == TAG_MSG_S2 { 38 } else { 34 };
                need(i, fixed)?;
                let (seq, ts, off) = (
                    u64_at(body, i),
                    u64_at(body, i + 8) as i64,
                    u64_at(body, i + 16),
                );
                let subj_len = u16_at(body, i + 24);
                let (hdr_len, data_len) = (u32_at(body, i + 26), u32_at(body, i + 30));
                let packed = if tag == TAG_MSG_S2 {
                    u32_at(body, i + 34)
                } else {
                    0
                };
                i += fixed;
                need(i, subj_len as usize)?;
                let subject = std::str::from_utf8(&body[i..i + subj_len as usize])
                    .ok()?
                    .to_string();
                i += subj_len as usize;
                out.push(Recovered::Msg {
                    seq,
                    ts,
                    subject,
                    size: super::super::file_size(
                        subj_len as usize,
                        hdr_len as usize,
                        data_len as usize,
                    ),
                    loc: Loc {
                        block,
                        off,
                        sealed,
                        subj_len,
                        hdr_len,
                        data_len,
                        packed,
                    },
                });
            }
            TAG_DEL | TAG_PURGE => {
                need(i, 8)?;
                let v = u64_at(body, i);
                i += 8;
                out.push(if tag == TAG_DEL {
                    Recovered::Delete(v)
                } else {
                    Recovered::Purge(v)
                });
            }
            TAG_STATE => {
                need(i, 16)?;
                out.push(Recovered::State {
                    first: u64_at(body, i),
                    last: u64_at(body, i + 8),
                });
                i += 16;
            }
            _ => return None,
        }
    }
    Some(out)
}

pub(super) fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes(b[i..i + 2].try_into().expect("2 bytes"))
}

pub(super) fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

pub(super) fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}
