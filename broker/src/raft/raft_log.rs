//! A node's copy of the log: what it holds, how far that is on disk, committed and applied.

use bytes::Bytes;

use super::message::{Entry, EntryKind, Index, Term};

/// The log in memory, from index 1. `stable` marks what the owner has persisted; everything
/// after it goes out in the next [`super::Ready`].
#[derive(Debug, Default)]
pub struct Log {
    entries: Vec<Entry>,
    /// The highest index known to be committed.
    pub committed: Index,
    /// The highest index handed to the state machine.
    pub applied: Index,
    /// The highest index persisted by the owner.
    pub stable: Index,
}

impl Log {
    /// A log restored from what was persisted (`entries` from index 1, in order).
    pub fn restore(entries: Vec<Entry>, committed: Index) -> Log {
        let stable = entries.last().map_or(0, |e| e.index);
        Log {
            committed: committed.min(stable),
            applied: 0,
            stable,
            entries,
        }
    }

    /// The index of the last entry (0 when empty).
    pub fn last_index(&self) -> Index {
        self.entries.last().map_or(0, |e| e.index)
    }

    /// The term of the last entry (0 when empty).
    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(0, |e| e.term)
    }

    /// The term of the entry at `i`; index 0 has term 0; `None` past the end.
    pub fn term(&self, i: Index) -> Option<Term> {
        if i == 0 {
            return Some(0);
        }
        self.entries.get(i as usize - 1).map(|e| e.term)
    }

    /// Up to `max` entries from `from` on.
    pub fn slice(&self, from: Index, max: usize) -> Vec<Entry> {
        let start = (from.max(1) - 1) as usize;
        self.entries.iter().skip(start).take(max).cloned().collect()
    }

    /// Appends a new entry as leader; returns its index.
    pub fn push(&mut self, term: Term, kind: EntryKind, data: Bytes) -> Index {
        let index = self.last_index() + 1;
        self.entries.push(Entry {
            term,
            index,
            kind,
            data,
        });
        index
    }

    /// Every entry, from index 1.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// A follower takes `entries` after `(prev_index, prev_term)`: `None` when its log has no
    /// such entry, else the index of the last entry it now shares with the leader. An entry
    /// that conflicts (same index, other term) cuts the log there; committed entries never
    /// conflict (the leader has them all).
    pub fn accept(
        &mut self,
        prev_index: Index,
        prev_term: Term,
        entries: &[Entry],
    ) -> Option<Index> {
        if self.term(prev_index) != Some(prev_term) {
            return None;
        }
        for e in entries {
            match self.term(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    assert!(
                        e.index > self.committed,
                        "raft: a leader contradicts committed entry {}",
                        e.index
                    );
                    self.entries.truncate(e.index as usize - 1);
                    self.stable = self.stable.min(e.index - 1);
                    self.entries.push(e.clone());
                }
                None => self.entries.push(e.clone()),
            }
        }
        Some(prev_index + entries.len() as u64)
    }

    /// What is not yet on disk.
    pub fn unstable(&self) -> &[Entry] {
        &self.entries[self.stable as usize..]
    }

    /// Whether a candidate whose log ends at `(last_index, last_term)` is at least as up to
    /// date as this one (§5.4.1).
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// Entries committed but not yet handed to the state machine (and already on disk here).
    pub fn to_apply(&self) -> &[Entry] {
        let upto = self.committed.min(self.stable);
        if upto <= self.applied {
            return &[];
        }
        &self.entries[self.applied as usize..upto as usize]
    }
}
