//! A connection's own small cache of match results, checked against the sublist's generation.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use super::hash::Seeded;
use super::{MatchResult, Sublist, LOCAL_CACHE_MAX};

pub(super) struct Slot<S: ?Sized> {
    hash: u64,
    key: Box<str>,
    val: Arc<MatchResult<S>>,
}

/// Two slots and which one to replace next.
pub(super) struct Set<S: ?Sized> {
    ways: [Option<Slot<S>>; 2],
    victim: u8,
}

/// A small per-connection cache of match results, valid for one [`Sublist::genid`].
///
/// Not shared: a connection task owns one and consults it before the
/// sublist. It is a two-way set-associative table (one hash per lookup, no
/// allocation on a hit); when the sublist's generation moves on, everything
/// is dropped.
pub struct LocalCache<S: ?Sized> {
    genid: u64,
    len: usize,
    hs: Seeded,
    sets: Box<[Set<S>]>,
}

impl<S: ?Sized> fmt::Debug for LocalCache<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCache")
            .field("genid", &self.genid)
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl<S: ?Sized> Default for LocalCache<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: ?Sized> LocalCache<S> {
    /// Creates a cache holding up to [`LOCAL_CACHE_MAX`] subjects.
    pub fn new() -> Self {
        Self::with_max(LOCAL_CACHE_MAX)
    }

    /// Creates a cache holding up to `max` subjects (rounded up to a power of two, at least 2).
    pub fn with_max(max: usize) -> Self {
        let nsets = max.div_ceil(2).max(1).next_power_of_two();
        LocalCache {
            genid: u64::MAX,
            len: 0,
            hs: Seeded::random(),
            sets: (0..nsets)
                .map(|_| Set {
                    ways: [None, None],
                    victim: 0,
                })
                .collect(),
        }
    }

    /// Maximum number of cached subjects.
    pub fn capacity(&self) -> usize {
        self.sets.len() * 2
    }

    /// Number of cached subjects.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns true if nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        if self.len > 0 {
            for set in self.sets.iter_mut() {
                set.ways = [None, None];
            }
            self.len = 0;
        }
    }

    /// Returns the match result for `subject`, from this cache if still valid, else from `sl`.
    #[inline]
    pub fn get(&mut self, subject: &str, sl: &Sublist<S>) -> Arc<MatchResult<S>> {
        self.get_ref(subject, sl).clone()
    }

    /// Like [`LocalCache::get`] but borrows the result, saving the shared refcount update.
    #[inline]
    pub fn get_ref(&mut self, subject: &str, sl: &Sublist<S>) -> &Arc<MatchResult<S>> {
        // Read the generation before matching: a result computed during a
        // concurrent change is stored under the older generation and is
        // dropped on the next call.
        let g = sl.genid();
        if g != self.genid {
            self.clear();
            self.genid = g;
        }
        let hash = self.hs.hash_one(subject);
        let mask = self.sets.len() - 1;
        let set = &mut self.sets[(hash as usize) & mask];
        let hit = set.ways.iter().position(|w| {
            w.as_ref()
                .is_some_and(|w| w.hash == hash && &*w.key == subject)
        });
        let way = match hit {
            Some(w) => {
                set.victim = (w ^ 1) as u8;
                w
            }
            None => {
                let w = set
                    .ways
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or(set.victim as usize);
                if set.ways[w].is_none() {
                    self.len += 1;
                }
                set.ways[w] = Some(Slot {
                    hash,
                    key: subject.into(),
                    val: sl.match_subject(subject),
                });
                set.victim = (w ^ 1) as u8;
                w
            }
        };
        &set.ways[way].as_ref().expect("filled").val
    }
}
