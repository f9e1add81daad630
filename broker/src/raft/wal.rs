//! A Raft member's durable state: one append-only file of checksummed records, the hard state
//! and the log entries as a [`Ready`] hands them over, synced before the `Ready`'s messages go.
//!
//! Record: `len u32 | crc32 u32 | kind u8 | body`, little endian; the CRC covers kind and body.
//! An entry record whose index is at or below the last one replaces the log from there (a
//! follower's conflicting suffix), so a replay rebuilds exactly the log the member acknowledged.
//!
//! Opening replays the file. A record cut short at the end is a write that never completed
//! (it was not synced, so nothing acknowledged it) and is cut off. A record that fails its
//! checksum with intact records after it is damage, not a torn write: opening fails and names
//! the offset, because a member that forgot entries it acknowledged must not vote or count
//! toward a quorum as if it held them.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::codec::{kind_code, kind_of};
use super::message::{Entry, HardState};
use super::Ready;

const KIND_STATE: u8 = 1;
const KIND_ENTRY: u8 = 2;
/// `len` and `crc`.
const HEAD: usize = 8;
/// An entry record's fixed fields: term, index, kind, peer.
const ENTRY_FIXED: usize = 8 + 8 + 1 + 8;

/// The WAL's file name in a group's directory.
pub const WAL_FILE: &str = "raft.wal";

/// Why the WAL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The file system said no.
    #[error("raft log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A record in the middle of the file is damaged.
    #[error("raft log {path}: record at offset {offset} is corrupt ({why})")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// What a member persisted, as found on opening.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The last hard state written.
    pub hard_state: HardState,
    /// The log, from index 1.
    pub entries: Vec<Entry>,
    /// Bytes cut from the end (a torn final write).
    pub torn_bytes: u64,
}

/// An open WAL, positioned at its end.
pub struct Wal {
    path: PathBuf,
    file: File,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Wal {
    /// Opens (or creates) the WAL in `dir` and replays it.
    pub fn open(dir: &Path) -> Result<(Wal, Recovered), WalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(WAL_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).map_err(io(&path))?;
        let (rec, valid) = replay(&path, &buf)?;
        if valid < buf.len() {
            file.set_len(valid as u64).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
        }
        let rec = Recovered {
            torn_bytes: (buf.len() - valid) as u64,
            ..rec
        };
        Ok((Wal { path, file }, rec))
    }

    /// Writes what `rd` asks to persist and syncs it; the `Ready`'s messages may go after.
    pub fn write(&mut self, rd: &Ready) -> Result<(), WalError> {
        if rd.hard_state.is_none() && rd.entries.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        if let Some(hs) = rd.hard_state {
            let start = begin(&mut out, KIND_STATE);
            out.extend_from_slice(&hs.term.to_le_bytes());
            out.extend_from_slice(&hs.vote.unwrap_or(0).to_le_bytes());
            out.push(hs.vote.is_some() as u8);
            out.extend_from_slice(&hs.commit.to_le_bytes());
            finish(&mut out, start);
        }
        for e in &rd.entries {
            let start = begin(&mut out, KIND_ENTRY);
            out.extend_from_slice(&e.term.to_le_bytes());
            out.extend_from_slice(&e.index.to_le_bytes());
            let (kind, peer) = kind_code(e.kind);
            out.push(kind);
            out.extend_from_slice(&peer.to_le_bytes());
            out.extend_from_slice(&e.data);
            finish(&mut out, start);
        }
        self.file.write_all(&out).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))
    }
}

/// Starts a record in `out` (its length and checksum filled in by [`finish`]); returns where.
fn begin(out: &mut Vec<u8>, kind: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; HEAD]);
    out.push(kind);
    start
}

/// Writes the length and checksum of the record that starts at `start` and ends `out`.
fn finish(out: &mut [u8], start: usize) {
    let body = &out[start + HEAD..];
    let (len, crc) = (body.len() as u32, crc32fast::hash(body));
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + HEAD].copy_from_slice(&crc.to_le_bytes());
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

/// Replays `buf`; returns what it holds and the length of its valid prefix.
fn replay(path: &Path, buf: &[u8]) -> Result<(Recovered, usize), WalError> {
    let mut rec = Recovered::default();
    let mut at = 0;
    while at < buf.len() {
        let corrupt = |why| WalError::Corrupt {
            path: path.to_path_buf(),
            offset: at as u64,
            why,
        };
        if buf.len() - at < HEAD {
            break; // torn header
        }
        let len = u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(buf[at + 4..at + 8].try_into().expect("4 bytes"));
        let end = at + HEAD + len;
        if len == 0 || end > buf.len() {
            // Runs past the end: torn, unless a damaged length hides good records behind it.
            if len == 0 || rest_has_records(buf, at + 1) {
                return Err(corrupt("bad length"));
            }
            break;
        }
        let body = &buf[at + HEAD..end];
        if crc32fast::hash(body) != crc {
            if end == buf.len() {
                break; // the last record, half written
            }
            return Err(corrupt("checksum mismatch"));
        }
        let (kind, body) = (body[0], &body[1..]);
        match kind {
            KIND_STATE if body.len() == 25 => {
                rec.hard_state = HardState {
                    term: u64_at(body, 0),
                    vote: (body[16] != 0).then(|| u64_at(body, 8)),
                    commit: u64_at(body, 17),
                };
            }
            KIND_ENTRY if body.len() >= ENTRY_FIXED => {
                let (term, index) = (u64_at(body, 0), u64_at(body, 8));
                let Some(kind) = kind_of(body[16], u64_at(body, 17)) else {
                    return Err(corrupt("unknown entry kind"));
                };
                let last = rec.entries.last().map_or(0, |e| e.index);
                if index == 0 || index > last + 1 {
                    return Err(corrupt("entry out of sequence"));
                }
                rec.entries.truncate(index as usize - 1);
                rec.entries.push(Entry {
                    term,
                    index,
                    kind,
                    data: Bytes::copy_from_slice(&body[ENTRY_FIXED..]),
                });
            }
            _ => return Err(corrupt("unknown record")),
        }
        at = end;
    }
    Ok((rec, at))
}

/// Whether a valid record starts anywhere after `from` (so what came before it was damage).
fn rest_has_records(buf: &[u8], from: usize) -> bool {
    (from..buf.len().saturating_sub(HEAD)).any(|i| {
        let len = u32::from_le_bytes(buf[i..i + 4].try_into().expect("4 bytes")) as usize;
        let end = i + HEAD + len;
        len > 0
            && end <= buf.len()
            && crc32fast::hash(&buf[i + HEAD..end])
                == u32::from_le_bytes(buf[i + 4..i + 8].try_into().expect("4 bytes"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("natrix-wal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn entry(term: u64, index: u64, data: &str) -> Entry {
        Entry {
            term,
            index,
            kind: super::super::message::EntryKind::Normal,
            data: Bytes::copy_from_slice(data.as_bytes()),
        }
    }

    fn ready(hs: Option<HardState>, entries: Vec<Entry>) -> Ready {
        Ready {
            hard_state: hs,
            entries,
            ..Ready::default()
        }
    }

    #[test]
    fn replays_state_entries_and_overwrites() {
        let d = dir("replay");
        let (mut w, rec) = Wal::open(&d).unwrap();
        assert_eq!(rec, Recovered::default());
        let hs = HardState {
            term: 2,
            vote: Some(3),
            commit: 1,
        };
        w.write(&ready(
            Some(hs),
            vec![entry(1, 1, "a"), entry(2, 2, "b"), entry(2, 3, "c")],
        ))
        .unwrap();
        // A new leader replaces index 3 onwards.
        let hs2 = HardState {
            term: 3,
            vote: None,
            commit: 2,
        };
        w.write(&ready(Some(hs2), vec![entry(3, 3, "C"), entry(3, 4, "D")]))
            .unwrap();
        drop(w);
        let (_, rec) = Wal::open(&d).unwrap();
        assert_eq!(rec.hard_state, hs2);
        assert_eq!(
            rec.entries,
            vec![
                entry(1, 1, "a"),
                entry(2, 2, "b"),
                entry(3, 3, "C"),
                entry(3, 4, "D")
            ]
        );
        assert_eq!(rec.torn_bytes, 0);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_torn_tail_is_cut_and_damage_in_the_middle_is_refused() {
        let d = dir("torn");
        let (mut w, _) = Wal::open(&d).unwrap();
        w.write(&ready(None, vec![entry(1, 1, "one"), entry(1, 2, "two")]))
            .unwrap();
        drop(w);
        let path = d.join(WAL_FILE);
        let full = std::fs::read(&path).unwrap();
        // Every cut inside the last record leaves the first.
        let first_len = HEAD + 1 + ENTRY_FIXED + 3;
        for cut in first_len..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let (_, rec) = Wal::open(&d).unwrap();
            assert_eq!(rec.entries, vec![entry(1, 1, "one")], "cut at {cut}");
            assert_eq!(rec.torn_bytes, (cut - first_len) as u64);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), first_len as u64);
        }
        // A flipped bit in the first record, with the second intact behind it.
        for i in [0, 5, HEAD + 3, first_len - 1] {
            let mut bad = full.clone();
            bad[i] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            match Wal::open(&d) {
                Err(WalError::Corrupt { offset: 0, .. }) => {}
                Err(e) => panic!("byte {i}: {e}"),
                Ok((_, rec)) => panic!("byte {i}: opened with {:?}", rec.entries),
            }
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
