//! Reading a block back at startup: every record in order, stopping at a torn tail.

use super::index::{u16_at, u32_at, u64_at};
use super::{
    Loc, Recovered, HEAD, MSG_FIXED, SEALED_EXTRA, TAG_DEL, TAG_ERASED, TAG_MSG, TAG_MSG_S2,
    TAG_PURGE, TAG_SEALED, TAG_STATE,
};
use crate::jetstream::crypt::{BlockCipher, CryptError, BLOCK_HEADER, NONCE, TAG};

/// Replays one block's records into `out` (and their byte ranges into `spans`); returns the
/// length of the valid prefix. A sealed block's records are opened with `cipher`; one that
/// is intact but does not authenticate is an error, not a torn write.
pub(super) fn replay(
    block: u64,
    buf: &[u8],
    cipher: Option<&BlockCipher>,
    out: &mut Vec<Recovered>,
    mut spans: Option<&mut Vec<(usize, usize)>>,
) -> Result<usize, CryptError> {
    let mut i = if cipher.is_some() { BLOCK_HEADER } else { 0 };
    let mut plain = Vec::new();
    while i + HEAD <= buf.len() {
        let tag = buf[i];
        let len = u32_at(buf, i + 1) as usize;
        let end = i + HEAD + len + 4;
        if end > buf.len() {
            break;
        }
        let crc = crc32fast::hash(&buf[i..i + HEAD + len]);
        if crc != u32_at(buf, i + HEAD + len) {
            break;
        }
        let (tag, body, off) = match (cipher, tag) {
            (None, _) => (
                tag,
                &buf[i + HEAD..i + HEAD + len],
                (i + HEAD + MSG_FIXED) as u64,
            ),
            (Some(_), TAG_ERASED) => {
                i = end;
                continue;
            }
            (Some(c), TAG_SEALED) if len >= SEALED_EXTRA => {
                let nonce: [u8; NONCE] = buf[i + HEAD..i + HEAD + NONCE].try_into().expect("nonce");
                let ct_end = i + HEAD + len - TAG;
                plain.clear();
                plain.extend_from_slice(&buf[i + HEAD + NONCE..ct_end]);
                if !c.aead.open(&nonce, &mut plain, &buf[ct_end..ct_end + TAG]) {
                    return Err(CryptError::Open(format!(
                        "the record at offset {i} of block {block}"
                    )));
                }
                (plain[0], &plain[1..], i as u64)
            }
            (Some(_), _) => break,
        };
        let len = body.len();
        let rec = match tag {
            TAG_MSG | TAG_MSG_S2 if len >= MSG_FIXED => {
                let subj_len = u16_at(body, 16) as usize;
                let hdr_len = u32_at(body, 18);
                let data_len = u32_at(body, 22);
                let packed = if tag == TAG_MSG_S2 {
                    // A compressed body is whatever follows the subject, and never empty.
                    match len.checked_sub(MSG_FIXED + subj_len) {
                        Some(p) if p > 0 => p as u32,
                        _ => break,
                    }
                } else {
                    if MSG_FIXED + subj_len + hdr_len as usize + data_len as usize != len {
                        break;
                    }
                    0
                };
                let Ok(subject) = std::str::from_utf8(&body[MSG_FIXED..MSG_FIXED + subj_len])
                else {
                    break;
                };
                Recovered::Msg {
                    seq: u64_at(body, 0),
                    ts: u64_at(body, 8) as i64,
                    subject: subject.to_string(),
                    size: super::super::file_size(subj_len, hdr_len as usize, data_len as usize),
                    loc: Loc {
                        block,
                        off,
                        sealed: cipher.is_some(),
                        subj_len: subj_len as u16,
                        hdr_len,
                        data_len,
                        packed,
                    },
                }
            }
            TAG_DEL if len == 8 => Recovered::Delete(u64_at(body, 0)),
            TAG_PURGE if len == 8 => Recovered::Purge(u64_at(body, 0)),
            TAG_STATE if len == 16 => Recovered::State {
                first: u64_at(body, 0),
                last: u64_at(body, 8),
            },
            _ => break,
        };
        out.push(rec);
        if let Some(sp) = spans.as_deref_mut() {
            sp.push((i, end));
        }
        i = end;
    }
    Ok(i)
}
