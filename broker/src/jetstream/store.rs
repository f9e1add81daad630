//! A stream's message store: the in-memory index every stream has, with the messages held in
//! memory (memory storage) or in append-only block files (file storage, see [`file`]).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::subject;

pub mod file;

/// One stored message.
#[derive(Debug, Clone)]
pub struct StoredMsg {
    pub seq: u64,
    /// Unix nanoseconds.
    pub ts: i64,
    pub subject: Arc<str>,
    pub hdr: Bytes,
    pub data: Bytes,
}

/// Where a message's bytes are.
#[derive(Debug, Clone)]
enum Loc {
    Mem { hdr: Bytes, data: Bytes },
    File(file::Loc),
}

#[derive(Debug, Clone)]
struct Entry {
    subject: Arc<str>,
    ts: i64,
    size: u64,
    loc: Loc,
}

/// Per-subject counts, for `max_msgs_per_subject` and last-by-subject lookups.
#[derive(Debug, Clone, Copy)]
pub struct SubjectState {
    pub msgs: u64,
    pub first: u64,
    pub last: u64,
}

/// The numbers `STREAM.INFO` reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreState {
    pub msgs: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub first_ts: i64,
    pub last_seq: u64,
    pub last_ts: i64,
    pub num_subjects: u64,
    pub num_deleted: u64,
}

/// Errors from the file backing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("store encryption error on {path}: {source}")]
    Crypt {
        path: String,
        #[source]
        source: super::crypt::CryptError,
    },
}

/// The message store of one stream.
#[derive(Debug)]
pub struct Store {
    msgs: BTreeMap<u64, Entry>,
    subjects: HashMap<Arc<str>, SubjectState>,
    first_seq: u64,
    last_seq: u64,
    last_ts: i64,
    bytes: u64,
    file: Option<file::FileBacking>,
    /// File storage: the newest messages' contents, so consumers that keep up read no disk.
    cache: HashMap<u64, (Bytes, Bytes)>,
    cache_order: std::collections::VecDeque<u64>,
    cache_bytes: usize,
}

/// How many bytes of recent messages a file store keeps in memory.
const CACHE_BYTES: usize = 32 << 20;

/// nats-server's accounting of a message's size in memory storage.
fn mem_size(subj: usize, hdr: usize, data: usize) -> u64 {
    (subj + hdr + data + 16) as u64
}

/// nats-server's accounting of a message's size in file storage.
fn file_size(subj: usize, hdr: usize, data: usize) -> u64 {
    if hdr == 0 {
        (22 + subj + data + 8) as u64
    } else {
        (22 + subj + 4 + hdr + data + 8) as u64
    }
}

impl Store {
    /// An empty memory store.
    pub fn memory() -> Store {
        Store {
            msgs: BTreeMap::new(),
            subjects: HashMap::new(),
            first_seq: 1,
            last_seq: 0,
            last_ts: 0,
            bytes: 0,
            file: None,
            cache: HashMap::new(),
            cache_order: std::collections::VecDeque::new(),
            cache_bytes: 0,
        }
    }

    /// Opens (or creates) a file store in `dir`, recovering what is there; a torn write at the
    /// end of a block is cut off.
    pub fn open_file(dir: &Path, sync_always: bool) -> Result<Store, StoreError> {
        Store::open_file_keyed(dir, sync_always, None)
    }

    /// [`Store::open_file`] for a stream encrypted with `key` (or not, with `None`): blocks
    /// written plain or under another cipher stay readable, new ones are sealed with it.
    pub fn open_file_keyed(
        dir: &Path,
        sync_always: bool,
        key: Option<Arc<super::crypt::StreamKey>>,
    ) -> Result<Store, StoreError> {
        let (backing, recovered) = file::FileBacking::open(dir, sync_always, key)?;
        let mut st = Store::memory();
        st.file = Some(backing);
        for r in recovered {
            match r {
                file::Recovered::State { last, .. } => {
                    st.last_seq = st.last_seq.max(last);
                }
                file::Recovered::Msg {
                    seq,
                    ts,
                    subject,
                    size,
                    loc,
                } => {
                    let subject: Arc<str> = match st.subjects.get_key_value(subject.as_str()) {
                        Some((k, _)) => k.clone(),
                        None => subject.into(),
                    };
                    st.insert(
                        seq,
                        Entry {
                            subject,
                            ts,
                            size,
                            loc: Loc::File(loc),
                        },
                    );
                    st.last_seq = st.last_seq.max(seq);
                    st.last_ts = ts;
                }
                file::Recovered::Delete(seq) => {
                    st.unindex(seq);
                    // The message itself may be gone (a sealed record erased in place).
                    st.last_seq = st.last_seq.max(seq);
                }
                file::Recovered::Purge(first) => {
                    let keep = st.msgs.split_off(&first);
                    let gone = std::mem::replace(&mut st.msgs, keep);
                    for (seq, e) in gone {
                        st.msgs.insert(seq, e);
                        st.unindex(seq);
                    }
                    st.last_seq = st.last_seq.max(first.saturating_sub(1));
                }
            }
        }
        st.fix_first();
        if let Some(f) = st.file.as_mut() {
            f.set_live(st.msgs.values().filter_map(|e| match &e.loc {
                Loc::File(l) => Some(l),
                Loc::Mem { .. } => None,
            }));
            f.trim_front()?;
            f.seal_new_writes(st.first_seq, st.last_seq)?;
        }
        Ok(st)
    }

    /// Starts the sequence at `first` (a new stream's `first_seq`).
    pub fn set_first_seq(&mut self, first: u64) -> Result<(), StoreError> {
        self.first_seq = first.max(1);
        self.last_seq = self.first_seq - 1;
        if let Some(f) = self.file.as_mut() {
            f.write_purge(self.first_seq)?;
        }
        Ok(())
    }

    fn insert(&mut self, seq: u64, e: Entry) {
        self.bytes += e.size;
        let ss = self
            .subjects
            .entry(e.subject.clone())
            .or_insert(SubjectState {
                msgs: 0,
                first: seq,
                last: seq,
            });
        ss.msgs += 1;
        ss.first = ss.first.min(seq);
        ss.last = ss.last.max(seq);
        self.msgs.insert(seq, e);
    }

    /// Keeps a copy of a new message, dropping the oldest copies past the budget.
    fn cache_put(&mut self, seq: u64, hdr: &[u8], data: &[u8]) {
        let size = hdr.len() + data.len();
        if size > CACHE_BYTES / 8 {
            return;
        }
        self.cache.insert(
            seq,
            (Bytes::copy_from_slice(hdr), Bytes::copy_from_slice(data)),
        );
        self.cache_order.push_back(seq);
        self.cache_bytes += size;
        // Deleted messages leave stale entries in the order; drop them now and then.
        if self.cache_order.len() > 2 * self.cache.len() + 1024 {
            let cache = &self.cache;
            self.cache_order.retain(|s| cache.contains_key(s));
        }
        while self.cache_bytes > CACHE_BYTES {
            let Some(old) = self.cache_order.pop_front() else {
                break;
            };
            if let Some((h, d)) = self.cache.remove(&old) {
                self.cache_bytes -= h.len() + d.len();
            }
        }
    }

    /// Removes `seq` from the index (not from the file); returns its entry.
    fn unindex(&mut self, seq: u64) -> Option<Entry> {
        if let Some((h, d)) = self.cache.remove(&seq) {
            self.cache_bytes -= h.len() + d.len();
        }
        let e = self.msgs.remove(&seq)?;
        self.bytes -= e.size;
        if let Some(ss) = self.subjects.get_mut(&e.subject) {
            ss.msgs -= 1;
            if ss.msgs == 0 {
                self.subjects.remove(&e.subject);
            } else if ss.first == seq {
                // The next message on this subject: scan forward (per-subject history is short).
                let subj = e.subject.clone();
                let next = self
                    .msgs
                    .range(seq + 1..)
                    .find(|(_, x)| x.subject == subj)
                    .map(|(s, _)| *s);
                if let (Some(n), Some(ss)) = (next, self.subjects.get_mut(&subj)) {
                    ss.first = n;
                }
            } else if ss.last == seq {
                let subj = e.subject.clone();
                let prev = self
                    .msgs
                    .range(..seq)
                    .rev()
                    .find(|(_, x)| x.subject == subj)
                    .map(|(s, _)| *s);
                if let (Some(p), Some(ss)) = (prev, self.subjects.get_mut(&subj)) {
                    ss.last = p;
                }
            }
        }
        self.fix_first();
        Some(e)
    }

    fn fix_first(&mut self) {
        self.first_seq = match self.msgs.keys().next() {
            Some(s) => *s,
            None => self.last_seq + 1,
        };
    }

    /// Appends a message; returns its sequence.
    pub fn store(
        &mut self,
        subject: &str,
        hdr: &[u8],
        data: &[u8],
        ts: i64,
    ) -> Result<u64, StoreError> {
        let seq = self.last_seq + 1;
        let subject: Arc<str> = match self.subjects.get_key_value(subject) {
            Some((k, _)) => k.clone(),
            None => subject.into(),
        };
        let (loc, size) = match self.file.as_mut() {
            None => (
                Loc::Mem {
                    hdr: Bytes::copy_from_slice(hdr),
                    data: Bytes::copy_from_slice(data),
                },
                mem_size(subject.len(), hdr.len(), data.len()),
            ),
            Some(f) => {
                let loc = Loc::File(f.append(seq, ts, &subject, hdr, data)?);
                self.cache_put(seq, hdr, data);
                (loc, file_size(subject.len(), hdr.len(), data.len()))
            }
        };
        self.last_seq = seq;
        self.last_ts = ts;
        if self.msgs.is_empty() {
            self.first_seq = seq;
        }
        self.insert(
            seq,
            Entry {
                subject,
                ts,
                size,
                loc,
            },
        );
        Ok(seq)
    }

    /// Takes up a sequence number without a message (a skipped sequence).
    pub fn skip(&mut self) -> Result<u64, StoreError> {
        self.last_seq += 1;
        if self.msgs.is_empty() {
            self.first_seq = self.last_seq + 1;
        }
        if let Some(f) = self.file.as_mut() {
            f.write_state(self.first_seq, self.last_seq)?;
        }
        Ok(self.last_seq)
    }

    /// Takes up every sequence up to `last` without messages (a mirror following its
    /// origin's numbering over a gap).
    pub fn skip_to(&mut self, last: u64) -> Result<(), StoreError> {
        if last <= self.last_seq {
            return Ok(());
        }
        self.last_seq = last;
        if self.msgs.is_empty() {
            self.first_seq = last + 1;
        }
        if let Some(f) = self.file.as_mut() {
            f.write_state(self.first_seq, self.last_seq)?;
        }
        Ok(())
    }

    /// The message at `seq`.
    pub fn get(&mut self, seq: u64) -> Option<StoredMsg> {
        let e = self.msgs.get(&seq)?;
        let (hdr, data) = match &e.loc {
            Loc::Mem { hdr, data } => (hdr.clone(), data.clone()),
            Loc::File(_) if self.cache.contains_key(&seq) => {
                let (h, d) = &self.cache[&seq];
                (h.clone(), d.clone())
            }
            Loc::File(l) => {
                let l = *l;
                match self.file.as_mut()?.read(&l) {
                    Ok(x) => x,
                    Err(err) => {
                        tracing::error!("JetStream read of message {seq} failed: {err}");
                        return None;
                    }
                }
            }
        };
        let e = self.msgs.get(&seq)?;
        Some(StoredMsg {
            seq,
            ts: e.ts,
            subject: e.subject.clone(),
            hdr,
            data,
        })
    }

    /// The subject and size of `seq` without reading the message.
    pub fn peek(&self, seq: u64) -> Option<(&Arc<str>, u64, i64)> {
        self.msgs.get(&seq).map(|e| (&e.subject, e.size, e.ts))
    }

    /// Removes one message; `false` if it is not there.
    pub fn remove(&mut self, seq: u64) -> Result<bool, StoreError> {
        self.remove_with(seq, false)
    }

    /// Removes one message and, with `erase`, overwrites its contents on disk first (the
    /// secure delete of `MSG.DELETE` without `no_erase`).
    pub fn remove_with(&mut self, seq: u64, erase: bool) -> Result<bool, StoreError> {
        let Some(e) = self.unindex(seq) else {
            return Ok(false);
        };
        if let (Some(f), Loc::File(l)) = (self.file.as_mut(), &e.loc) {
            if erase {
                f.erase(l)?;
            }
            f.write_delete(seq, l)?;
            f.trim_front()?;
            if f.is_sparse(l.block) {
                self.compact_blocks(vec![l.block])?;
            }
        }
        Ok(true)
    }

    /// Rewrites blocks that are mostly deleted messages, moving their live messages' places.
    fn compact_blocks(&mut self, blocks: Vec<u64>) -> Result<(), StoreError> {
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        for block in blocks {
            let msgs = &self.msgs;
            let moved = f.compact(block, |seq| {
                msgs.get(&seq)
                    .is_some_and(|e| matches!(&e.loc, Loc::File(l) if l.block == block))
            })?;
            for (seq, loc) in moved {
                if let Some(e) = self.msgs.get_mut(&seq) {
                    e.loc = Loc::File(loc);
                }
            }
        }
        Ok(())
    }

    /// Removes every message below `first` (a purge with `seq`, or everything when
    /// `first > last_seq`); returns how many went.
    pub fn purge_below(&mut self, first: u64) -> Result<u64, StoreError> {
        let keep = self.msgs.split_off(&first);
        let gone = std::mem::replace(&mut self.msgs, keep);
        let n = gone.len() as u64;
        for (seq, e) in gone {
            if let (Some(f), Loc::File(l)) = (self.file.as_mut(), &e.loc) {
                f.dec_live(l);
            }
            self.msgs.insert(seq, e);
            self.unindex(seq);
        }
        if first > self.last_seq {
            self.last_seq = first - 1;
        }
        self.fix_first();
        if let Some(f) = self.file.as_mut() {
            f.write_purge(self.first_seq)?;
            f.trim_front()?;
            let sparse = f.sparse_blocks();
            self.compact_blocks(sparse)?;
        }
        Ok(n)
    }

    /// Sequences of the messages matching `filter`, oldest first.
    pub fn matching(&self, filter: &str) -> Vec<u64> {
        self.msgs
            .iter()
            .filter(|(_, e)| filter_matches(&e.subject, filter))
            .map(|(s, _)| *s)
            .collect()
    }

    /// The first sequence at or after `from` whose subject matches one of `filters` (all
    /// when empty).
    pub fn next_matching(&self, from: u64, filters: &[String]) -> Option<u64> {
        if filters.is_empty() {
            return self.msgs.range(from..).next().map(|(s, _)| *s);
        }
        // A literal single filter: jump by subject state.
        if let [f] = filters {
            if !subject::subject_has_wildcard(f.as_str()) {
                let ss = self.subjects.get(f.as_str())?;
                if from > ss.last {
                    return None;
                }
                if from <= ss.first {
                    return Some(ss.first);
                }
            }
        }
        self.msgs
            .range(from..)
            .find(|(_, e)| filters.iter().any(|f| filter_matches(&e.subject, f)))
            .map(|(s, _)| *s)
    }

    /// How many messages at or after `from` match `filters`.
    pub fn count_from(&self, from: u64, filters: &[String]) -> u64 {
        if filters.is_empty() {
            return self.msgs.range(from..).count() as u64;
        }
        self.msgs
            .range(from..)
            .filter(|(_, e)| filters.iter().any(|f| filter_matches(&e.subject, f)))
            .count() as u64
    }

    /// The first sequence whose timestamp is at or after `ts`.
    pub fn seq_for_time(&self, ts: i64) -> u64 {
        self.msgs
            .iter()
            .find(|(_, e)| e.ts >= ts)
            .map_or(self.last_seq + 1, |(s, _)| *s)
    }

    /// The last message on a subject matching `filter`.
    pub fn last_for(&self, filter: &str) -> Option<u64> {
        if !subject::subject_has_wildcard(filter) {
            return self.subjects.get(filter).map(|s| s.last);
        }
        self.subjects
            .iter()
            .filter(|(s, _)| subject::matches(s.as_ref(), filter))
            .map(|(_, st)| st.last)
            .max()
    }

    /// The first message at or after `from` on a subject matching `filter`.
    pub fn first_for(&self, filter: &str, from: u64) -> Option<u64> {
        self.next_matching(from, &[filter.to_string()])
    }

    /// Per-subject state.
    pub fn subject_state(&self, subject: &str) -> Option<SubjectState> {
        self.subjects.get(subject).copied()
    }

    /// Subjects matching `filter` with their message counts.
    pub fn subjects_matching(&self, filter: &str) -> Vec<(Arc<str>, u64)> {
        self.subjects
            .iter()
            .filter(|(s, _)| subject::matches(s.as_ref(), filter))
            .map(|(s, st)| (s.clone(), st.msgs))
            .collect()
    }

    /// The last sequence per subject matching `filters` (for `last_per_subject`), sorted.
    pub fn last_per_subject(&self, filters: &[String]) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .subjects
            .iter()
            .filter(|(s, _)| {
                filters.is_empty()
                    || filters
                        .iter()
                        .any(|f| subject::matches(s.as_ref(), f.as_str()))
            })
            .map(|(_, st)| st.last)
            .collect();
        v.sort_unstable();
        v
    }

    /// The oldest message's sequence, if any.
    pub fn first_msg(&self) -> Option<(u64, i64)> {
        self.msgs.iter().next().map(|(s, e)| (*s, e.ts))
    }

    /// Interior deleted sequences (for `deleted_details`).
    pub fn deleted(&self) -> Vec<u64> {
        let mut out = Vec::new();
        let mut expect = self.first_seq;
        for s in self.msgs.keys() {
            out.extend(expect..*s);
            expect = s + 1;
        }
        out
    }

    /// Current totals.
    pub fn state(&self) -> StoreState {
        let msgs = self.msgs.len() as u64;
        let (first_seq, first_ts) = match self.msgs.iter().next() {
            Some((s, e)) => (*s, e.ts),
            None => (self.last_seq + 1, 0),
        };
        let num_deleted = if msgs == 0 {
            0
        } else {
            (self.last_seq - first_seq + 1) - msgs
        };
        StoreState {
            msgs,
            bytes: self.bytes,
            first_seq: if msgs == 0 && self.last_seq == 0 {
                0
            } else {
                first_seq
            },
            first_ts,
            last_seq: self.last_seq,
            last_ts: if self.last_seq == 0 { 0 } else { self.last_ts },
            num_subjects: self.subjects.len() as u64,
            num_deleted,
        }
    }

    /// Writes buffered appends to the file (before acknowledging them).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }

    /// Flushes and fsyncs.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        match self.file.as_mut() {
            Some(f) => f.sync(),
            None => Ok(()),
        }
    }

    /// Whether new messages go to disk S2-compressed (file stores; memory ignores it).
    pub fn set_compress(&mut self, on: bool) {
        if let Some(f) = self.file.as_mut() {
            f.set_compress(on);
        }
    }

    /// Whether this is file storage.
    pub fn is_file(&self) -> bool {
        self.file.is_some()
    }
}

/// A subject against a consumer or purge filter (empty or `>` matches all).
pub fn filter_matches(subj: &str, filter: &str) -> bool {
    filter.is_empty() || filter == ">" || subj == filter || subject::matches(subj, filter)
}
