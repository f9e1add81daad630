//! The subscription index.
//!
//! A [`Sublist`] maps subjects (with `*` and `>` wildcards) to subscription
//! handles (`Arc<S>`, identified by pointer) and answers "who is interested in
//! this literal subject" ([`Sublist::match_subject`]). It is a trie with, at
//! each level, a map of literal tokens plus one `*` and one `>` child, like
//! nats-server's `server/sublist.go`.
//!
//! Concurrency: the trie sits behind a `parking_lot::RwLock` (many matchers,
//! rare writers). Results are cached per literal subject (up to 1024 entries,
//! swept to 256) and kept exact on every insert/remove, so a cache hit is a
//! read lock, one hash lookup and an `Arc` clone. A generation counter
//! ([`Sublist::genid`]) is bumped on every change so per-connection caches
//! ([`LocalCache`]) can check themselves without touching the shared cache.
//!
//! Lock order is always trie, then cache: a matcher keeps the trie read lock
//! while it stores its result, and writers update the cache while holding
//! the trie write lock, so the cache never holds a stale result.

mod hash;
mod local_cache;

pub use local_cache::LocalCache;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use hash::{FastMap, Seeded};

use crate::subject::{matches, subject_is_literal, tokenize};

/// Maximum number of cached results before a sweep (as nats-server).
pub const CACHE_MAX: usize = 1024;
/// Number of cached results left after a sweep (as nats-server).
pub const CACHE_SWEEP: usize = 256;
/// Default number of entries held by a [`LocalCache`].
pub const LOCAL_CACHE_MAX: usize = 32;

/// Subscriber sets larger than this get a pointer index for O(1) removal.
const INDEX_MIN: usize = 32;
/// Tokens kept on the stack while matching; longer subjects spill to the heap.
const STACK_TOKENS: usize = 32;

/// Errors from [`Sublist::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SublistError {
    /// Empty token, or a token after `>`.
    #[error("sublist: invalid subject")]
    InvalidSubject,
    /// Empty queue group name.
    #[error("sublist: invalid queue name")]
    InvalidQueue,
}

// ---------------------------------------------------------------------------
// Hashing: a small seeded folded-multiply hash (much cheaper than SipHash for
// short subject tokens; the per-instance random seed keeps collisions from
// being precomputed).

// ---------------------------------------------------------------------------
// Results.

/// The subscriptions interested in one literal subject.
#[derive(Debug)]
pub struct MatchResult<S: ?Sized> {
    /// Plain subscriptions: each gets a copy of the message.
    pub psubs: Vec<Arc<S>>,
    /// Queue subscriptions, one `Vec` per queue group: each group gets one copy.
    pub qsubs: Vec<Vec<Arc<S>>>,
    /// The queue group names, parallel to `qsubs`.
    pub qnames: Vec<Arc<str>>,
}

impl<S: ?Sized> Default for MatchResult<S> {
    fn default() -> Self {
        MatchResult {
            psubs: Vec::new(),
            qsubs: Vec::new(),
            qnames: Vec::new(),
        }
    }
}

impl<S: ?Sized> Clone for MatchResult<S> {
    fn clone(&self) -> Self {
        MatchResult {
            psubs: self.psubs.clone(),
            qsubs: self.qsubs.clone(),
            qnames: self.qnames.clone(),
        }
    }
}

impl<S: ?Sized> MatchResult<S> {
    /// Returns true if nobody is interested.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.psubs.is_empty() && self.qsubs.is_empty()
    }

    /// Number of deliveries a message gets: one per plain sub plus one per queue group.
    #[inline]
    pub fn fanout(&self) -> usize {
        self.psubs.len() + self.qsubs.len()
    }

    fn add_queue_subs<'a>(&mut self, name: &Arc<str>, subs: impl Iterator<Item = &'a Arc<S>>)
    where
        S: 'a,
    {
        let slot = match self.qnames.iter().position(|n| **n == **name) {
            Some(i) => i,
            None => {
                self.qnames.push(name.clone());
                self.qsubs.push(Vec::new());
                self.qsubs.len() - 1
            }
        };
        self.qsubs[slot].extend(subs.cloned());
    }

    fn with_added(&self, queue: Option<&Arc<str>>, sub: &Arc<S>) -> Self {
        let mut r = self.clone();
        match queue {
            None => r.psubs.push(sub.clone()),
            Some(q) => r.add_queue_subs(q, std::iter::once(sub)),
        }
        r
    }
}

// ---------------------------------------------------------------------------
// Trie.

#[inline]
fn ptr_key<S: ?Sized>(a: &Arc<S>) -> usize {
    Arc::as_ptr(a) as *const () as usize
}

/// A set of subscriptions kept as a `Vec` for fast iteration, with a pointer
/// index once it grows large.
struct SubSet<S: ?Sized> {
    list: Vec<Arc<S>>,
    index: Option<FastMap<usize, usize>>,
}

impl<S: ?Sized> SubSet<S> {
    fn new() -> Self {
        SubSet {
            list: Vec::new(),
            index: None,
        }
    }

    fn position(&self, sub: &Arc<S>) -> Option<usize> {
        let k = ptr_key(sub);
        match &self.index {
            Some(ix) => ix.get(&k).copied(),
            None => self.list.iter().position(|s| ptr_key(s) == k),
        }
    }

    fn insert(&mut self, sub: Arc<S>, hs: Seeded) -> bool {
        if self.position(&sub).is_some() {
            return false;
        }
        if let Some(ix) = &mut self.index {
            ix.insert(ptr_key(&sub), self.list.len());
        }
        self.list.push(sub);
        if self.index.is_none() && self.list.len() > INDEX_MIN {
            let mut ix = FastMap::with_capacity_and_hasher(self.list.len() * 2, hs);
            for (i, s) in self.list.iter().enumerate() {
                ix.insert(ptr_key(s), i);
            }
            self.index = Some(ix);
        }
        true
    }

    fn remove(&mut self, sub: &Arc<S>) -> bool {
        let Some(i) = self.position(sub) else {
            return false;
        };
        self.list.swap_remove(i);
        if let Some(ix) = &mut self.index {
            ix.remove(&ptr_key(sub));
            if i < self.list.len() {
                ix.insert(ptr_key(&self.list[i]), i);
            }
            if self.list.len() < INDEX_MIN / 2 {
                self.index = None;
            }
        }
        if self.list.capacity() > 64 && self.list.len() < self.list.capacity() / 4 {
            self.list.shrink_to(self.list.len() * 2);
        }
        true
    }
}

struct QGroup<S: ?Sized> {
    name: Arc<str>,
    subs: SubSet<S>,
}

struct Node<S: ?Sized> {
    next: Option<Box<Level<S>>>,
    psubs: SubSet<S>,
    qsubs: Vec<QGroup<S>>,
}

impl<S: ?Sized> Node<S> {
    fn new() -> Self {
        Node {
            next: None,
            psubs: SubSet::new(),
            qsubs: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.psubs.list.is_empty() && self.qsubs.is_empty() && self.next.is_none()
    }

    fn add_to_result(&self, r: &mut MatchResult<S>) {
        r.psubs.extend(self.psubs.list.iter().cloned());
        for g in &self.qsubs {
            r.add_queue_subs(&g.name, g.subs.list.iter());
        }
    }

    fn collect_all(&self, out: &mut Vec<Arc<S>>) {
        out.extend(self.psubs.list.iter().cloned());
        for g in &self.qsubs {
            out.extend(g.subs.list.iter().cloned());
        }
        if let Some(next) = &self.next {
            next.collect_all(out);
        }
    }

    fn remove_sub(&mut self, queue: Option<&str>, sub: &Arc<S>) -> bool {
        match queue {
            None => self.psubs.remove(sub),
            Some(q) => {
                let Some(gi) = self.qsubs.iter().position(|g| &*g.name == q) else {
                    return false;
                };
                let removed = self.qsubs[gi].subs.remove(sub);
                if self.qsubs[gi].subs.list.is_empty() {
                    self.qsubs.swap_remove(gi);
                }
                removed
            }
        }
    }
}

struct Level<S: ?Sized> {
    nodes: FastMap<Box<str>, Node<S>>,
    pwc: Option<Box<Node<S>>>,
    fwc: Option<Box<Node<S>>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tok {
    Pwc,
    Fwc,
    Lit,
}

#[inline]
fn classify(t: &str) -> Tok {
    match t.as_bytes() {
        [b'*'] => Tok::Pwc,
        [b'>'] => Tok::Fwc,
        _ => Tok::Lit,
    }
}

impl<S: ?Sized> Level<S> {
    fn new(hs: Seeded) -> Self {
        Level {
            nodes: FastMap::with_hasher(hs),
            pwc: None,
            fwc: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.pwc.is_none() && self.fwc.is_none()
    }

    fn child_or_insert(&mut self, t: &str) -> &mut Node<S> {
        match classify(t) {
            Tok::Pwc => self.pwc.get_or_insert_with(|| Box::new(Node::new())),
            Tok::Fwc => self.fwc.get_or_insert_with(|| Box::new(Node::new())),
            Tok::Lit => {
                if !self.nodes.contains_key(t) {
                    self.nodes.insert(t.into(), Node::new());
                }
                self.nodes.get_mut(t).expect("just inserted")
            }
        }
    }

    fn node_for_insert(&mut self, toks: &[&str], hs: Seeded) -> &mut Node<S> {
        let (t, rest) = toks.split_first().expect("at least one token");
        let node = self.child_or_insert(t);
        if rest.is_empty() {
            node
        } else {
            node.next
                .get_or_insert_with(|| Box::new(Level::new(hs)))
                .node_for_insert(rest, hs)
        }
    }

    /// Removes `sub` below this level, pruning nodes left empty.
    fn remove(&mut self, toks: &[&str], queue: Option<&str>, sub: &Arc<S>) -> bool {
        let (t, rest) = toks.split_first().expect("at least one token");
        let kind = classify(t);
        let node = match kind {
            Tok::Pwc => self.pwc.as_deref_mut(),
            Tok::Fwc => self.fwc.as_deref_mut(),
            Tok::Lit => self.nodes.get_mut(*t),
        };
        let Some(node) = node else {
            return false;
        };
        let removed = if rest.is_empty() {
            node.remove_sub(queue, sub)
        } else {
            match node.next.as_deref_mut() {
                Some(next) => {
                    let r = next.remove(rest, queue, sub);
                    if next.is_empty() {
                        node.next = None;
                    }
                    r
                }
                None => false,
            }
        };
        if removed && node.is_empty() {
            match kind {
                Tok::Pwc => self.pwc = None,
                Tok::Fwc => self.fwc = None,
                Tok::Lit => {
                    self.nodes.remove(*t);
                    let cap = self.nodes.capacity();
                    if cap > 64 && self.nodes.len() < cap / 4 {
                        self.nodes.shrink_to_fit();
                    }
                }
            }
        }
        removed
    }

    /// Adds every subscription matching the literal `toks` to `r` (nats-server's `matchLevel`).
    fn match_into(&self, toks: &[&str], r: &mut MatchResult<S>) {
        let mut level = Some(self);
        let mut n: Option<&Node<S>> = None;
        let mut pwc: Option<&Node<S>> = None;
        for (i, t) in toks.iter().enumerate() {
            let Some(l) = level else {
                return;
            };
            if let Some(f) = &l.fwc {
                f.add_to_result(r);
            }
            pwc = l.pwc.as_deref();
            if let Some(p) = pwc {
                if let Some(next) = &p.next {
                    if i + 1 < toks.len() {
                        next.match_into(&toks[i + 1..], r);
                    }
                }
            }
            n = l.nodes.get(*t);
            level = n.and_then(|n| n.next.as_deref());
        }
        if let Some(n) = n {
            n.add_to_result(r);
        }
        if let Some(p) = pwc {
            p.add_to_result(r);
        }
    }

    fn collect_all(&self, out: &mut Vec<Arc<S>>) {
        for n in self.nodes.values() {
            n.collect_all(out);
        }
        if let Some(n) = &self.pwc {
            n.collect_all(out);
        }
        if let Some(n) = &self.fwc {
            n.collect_all(out);
        }
    }
}

/// Splits `subject` into tokens (on the stack when short) and calls `f`;
/// returns `None` if the subject is empty or has an empty token.
#[inline]
fn with_tokens<R>(subject: &str, f: impl FnOnce(&[&str]) -> R) -> Option<R> {
    if subject.is_empty() {
        return None;
    }
    let mut arr: [&str; STACK_TOKENS] = [""; STACK_TOKENS];
    let mut n = 0;
    let mut heap: Vec<&str> = Vec::new();
    for t in tokenize(subject) {
        if t.is_empty() {
            return None;
        }
        if n < STACK_TOKENS {
            arr[n] = t;
            n += 1;
        } else {
            if heap.is_empty() {
                heap.extend_from_slice(&arr);
            }
            heap.push(t);
        }
    }
    Some(if heap.is_empty() {
        f(&arr[..n])
    } else {
        f(&heap)
    })
}

/// Tokens valid for a subscription: no empty token, nothing after `>`.
fn valid_sub_tokens(toks: &[&str]) -> bool {
    toks.iter()
        .position(|t| classify(t) == Tok::Fwc)
        .is_none_or(|i| i + 1 == toks.len())
}

// ---------------------------------------------------------------------------
// Sublist.

struct Trie<S: ?Sized> {
    root: Level<S>,
    count: usize,
    inserts: u64,
    removes: u64,
}

type ResultCache<S> = FastMap<Box<str>, Arc<MatchResult<S>>>;

/// The subscription index: a wildcard trie with an exact result cache.
pub struct Sublist<S: ?Sized> {
    trie: RwLock<Trie<S>>,
    cache: RwLock<ResultCache<S>>,
    cache_enabled: bool,
    genid: AtomicU64,
    misses: AtomicU64,
    cache_hits: AtomicU64,
    empty: Arc<MatchResult<S>>,
    hs: Seeded,
}

impl<S: ?Sized> fmt::Debug for Sublist<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sublist")
            .field("count", &self.count())
            .field("genid", &self.genid())
            .field("cache_enabled", &self.cache_enabled)
            .finish_non_exhaustive()
    }
}

impl<S: ?Sized> Default for Sublist<S> {
    fn default() -> Self {
        Self::new()
    }
}

/// Counters for `/subsz` (field names as nats-server's `SublistStats` JSON).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SublistStats {
    /// Number of subscriptions.
    #[serde(rename = "num_subscriptions")]
    pub num_subs: u32,
    /// Number of cached match results.
    pub num_cache: u32,
    /// Total inserts.
    pub num_inserts: u64,
    /// Total removes.
    pub num_removes: u64,
    /// Total match calls.
    pub num_matches: u64,
    /// Fraction of matches answered by the cache.
    pub cache_hit_rate: f64,
    /// Largest fanout among cached results.
    pub max_fanout: u32,
    /// Average fanout among cached results.
    pub avg_fanout: f64,
    #[serde(skip)]
    tot_fanout: u64,
    #[serde(skip)]
    cache_cnt: u64,
}

impl SublistStats {
    /// Accumulates another sublist's stats into this one, as nats-server does across accounts
    /// (hit rates are summed: divide by the number of sublists afterwards).
    pub fn add(&mut self, other: &SublistStats) {
        self.num_subs += other.num_subs;
        self.num_cache += other.num_cache;
        self.num_inserts += other.num_inserts;
        self.num_removes += other.num_removes;
        self.num_matches += other.num_matches;
        self.cache_hit_rate += other.cache_hit_rate;
        self.max_fanout = self.max_fanout.max(other.max_fanout);
        self.tot_fanout += other.tot_fanout;
        self.cache_cnt += other.cache_cnt;
        if self.cache_cnt > 0 {
            self.avg_fanout = self.tot_fanout as f64 / self.cache_cnt as f64;
        }
    }
}

impl<S: ?Sized> Sublist<S> {
    /// Creates an empty sublist with the result cache enabled.
    pub fn new() -> Self {
        Self::with_cache(true)
    }

    /// Creates an empty sublist without the result cache (for very high churn).
    pub fn without_cache() -> Self {
        Self::with_cache(false)
    }

    /// Creates an empty sublist, with or without the result cache.
    pub fn with_cache(enabled: bool) -> Self {
        let hs = Seeded::random();
        Sublist {
            trie: RwLock::new(Trie {
                root: Level::new(hs),
                count: 0,
                inserts: 0,
                removes: 0,
            }),
            cache: RwLock::new(FastMap::with_hasher(hs)),
            cache_enabled: enabled,
            genid: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            empty: Arc::new(MatchResult::default()),
            hs,
        }
    }

    /// Returns true if the result cache is enabled.
    pub fn cache_enabled(&self) -> bool {
        self.cache_enabled
    }

    /// The generation id, bumped after every change to the set of subscriptions.
    #[inline]
    pub fn genid(&self) -> u64 {
        self.genid.load(Ordering::Acquire)
    }

    /// Number of subscriptions.
    pub fn count(&self) -> usize {
        self.trie.read().count
    }

    /// Number of cached match results.
    pub fn cache_count(&self) -> usize {
        self.cache.read().len()
    }

    /// Adds `sub` under `subject` (wildcards allowed), in queue group `queue` if given.
    ///
    /// Inserting the same `Arc` (by pointer) twice under the same subject and
    /// queue is a no-op.
    pub fn insert(
        &self,
        subject: &str,
        queue: Option<&str>,
        sub: Arc<S>,
    ) -> Result<(), SublistError> {
        if queue.is_some_and(str::is_empty) {
            return Err(SublistError::InvalidQueue);
        }
        let hs = self.hs;
        with_tokens(subject, |toks| {
            if !valid_sub_tokens(toks) {
                return Err(SublistError::InvalidSubject);
            }
            let mut trie = self.trie.write();
            let node = trie.root.node_for_insert(toks, hs);
            let (added, qname) = match queue {
                None => (node.psubs.insert(sub.clone(), hs), None),
                Some(q) => {
                    let gi = match node.qsubs.iter().position(|g| &*g.name == q) {
                        Some(gi) => gi,
                        None => {
                            node.qsubs.push(QGroup {
                                name: q.into(),
                                subs: SubSet::new(),
                            });
                            node.qsubs.len() - 1
                        }
                    };
                    let g = &mut node.qsubs[gi];
                    (g.subs.insert(sub.clone(), hs), Some(g.name.clone()))
                }
            };
            if !added {
                return Ok(());
            }
            trie.count += 1;
            trie.inserts += 1;
            if self.cache_enabled {
                self.add_to_cache(subject, qname.as_ref(), &sub);
            }
            self.genid.fetch_add(1, Ordering::Release);
            Ok(())
        })
        .unwrap_or(Err(SublistError::InvalidSubject))
    }

    /// Brings cached results up to date after an insert. Trie write lock held.
    fn add_to_cache(&self, subject: &str, queue: Option<&Arc<str>>, sub: &Arc<S>) {
        let mut cache = self.cache.write();
        if subject_is_literal(subject) {
            if let Some(r) = cache.get_mut(subject) {
                *r = Arc::new(r.with_added(queue, sub));
            }
            return;
        }
        for (key, r) in cache.iter_mut() {
            if matches(&**key, subject) {
                *r = Arc::new(r.with_added(queue, sub));
            }
        }
    }

    /// Drops cached results a change to `subject` affects. Trie write lock held.
    fn remove_from_cache(cache: &mut ResultCache<S>, subject: &str) {
        if subject_is_literal(subject) {
            cache.remove(subject);
        } else {
            cache.retain(|key, _| !matches(&**key, subject));
        }
    }

    /// Removes `sub` from `subject` / `queue`; returns false if it was not there.
    pub fn remove(&self, subject: &str, queue: Option<&str>, sub: &Arc<S>) -> bool {
        with_tokens(subject, |toks| {
            let mut trie = self.trie.write();
            if !trie.root.remove(toks, queue, sub) {
                return false;
            }
            trie.count -= 1;
            trie.removes += 1;
            if self.cache_enabled {
                Self::remove_from_cache(&mut self.cache.write(), subject);
            }
            self.genid.fetch_add(1, Ordering::Release);
            true
        })
        .unwrap_or(false)
    }

    /// Removes many subscriptions under one lock (e.g. a closing connection);
    /// returns how many were found and removed.
    pub fn remove_batch<'a, I>(&self, subs: I) -> usize
    where
        I: IntoIterator<Item = (&'a str, Option<&'a str>, &'a Arc<S>)>,
        S: 'a,
    {
        let mut trie = self.trie.write();
        let mut removed = 0usize;
        let mut touched: Vec<&'a str> = Vec::new();
        let mut overflow = false;
        for (subject, queue, sub) in subs {
            let ok =
                with_tokens(subject, |toks| trie.root.remove(toks, queue, sub)).unwrap_or(false);
            if ok {
                removed += 1;
                if !overflow {
                    touched.push(subject);
                    overflow = touched.len() > 16;
                }
            }
        }
        if removed == 0 {
            return 0;
        }
        trie.count -= removed;
        trie.removes += removed as u64;
        if self.cache_enabled {
            let mut cache = self.cache.write();
            if overflow {
                *cache = FastMap::with_hasher(self.hs);
            } else {
                for s in touched {
                    Self::remove_from_cache(&mut cache, s);
                }
            }
        }
        self.genid.fetch_add(1, Ordering::Release);
        removed
    }

    /// Returns the subscriptions interested in the literal `subject`.
    ///
    /// A subject with an empty token matches nothing. Wildcard tokens in
    /// `subject` only match wildcard subscriptions (as nats-server).
    pub fn match_subject(&self, subject: &str) -> Arc<MatchResult<S>> {
        if self.cache_enabled {
            if let Some(r) = self.cache.read().get(subject) {
                self.cache_hits.fetch_add(1, Ordering::Relaxed);
                return r.clone();
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        with_tokens(subject, |toks| {
            let trie = self.trie.read();
            let mut r = MatchResult::default();
            trie.root.match_into(toks, &mut r);
            let r = if r.is_empty() {
                self.empty.clone()
            } else {
                Arc::new(r)
            };
            if self.cache_enabled {
                let mut cache = self.cache.write();
                cache.insert(subject.into(), r.clone());
                if cache.len() > CACHE_MAX {
                    let mut excess = cache.len() - CACHE_SWEEP;
                    cache.retain(|_, _| {
                        if excess > 0 {
                            excess -= 1;
                            false
                        } else {
                            true
                        }
                    });
                }
            }
            drop(trie);
            r
        })
        .unwrap_or_else(|| self.empty.clone())
    }

    /// Returns true if any subscription matches the literal `subject`.
    pub fn has_interest(&self, subject: &str) -> bool {
        !self.match_subject(subject).is_empty()
    }

    /// Returns every subscription (for monitoring, e.g. `/subsz?subs=1`).
    pub fn all(&self) -> Vec<Arc<S>> {
        let trie = self.trie.read();
        let mut out = Vec::with_capacity(trie.count);
        trie.root.collect_all(&mut out);
        out
    }

    /// Returns the counters for `/subsz`.
    pub fn stats(&self) -> SublistStats {
        let (num_subs, num_inserts, num_removes) = {
            let t = self.trie.read();
            (t.count, t.inserts, t.removes)
        };
        let hits = self.cache_hits.load(Ordering::Relaxed);
        let num_matches = hits + self.misses.load(Ordering::Relaxed);
        let mut st = SublistStats {
            num_subs: num_subs.min(u32::MAX as usize) as u32,
            num_inserts,
            num_removes,
            num_matches,
            cache_hit_rate: if num_matches > 0 {
                hits as f64 / num_matches as f64
            } else {
                0.0
            },
            ..SublistStats::default()
        };
        let cache = self.cache.read();
        let mut max = 0usize;
        let mut tot = 0u64;
        for r in cache.values() {
            let f = r.fanout();
            tot += f as u64;
            max = max.max(f);
        }
        st.num_cache = cache.len() as u32;
        st.cache_cnt = cache.len() as u64;
        st.tot_fanout = tot;
        st.max_fanout = max.min(u32::MAX as usize) as u32;
        if tot > 0 {
            st.avg_fanout = tot as f64 / cache.len() as f64;
        }
        st
    }
}

// ---------------------------------------------------------------------------
// Per-connection cache.

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    type Sl = Sublist<u32>;

    fn sub(id: u32) -> Arc<u32> {
        Arc::new(id)
    }

    fn ids(r: &MatchResult<u32>) -> BTreeSet<u32> {
        r.psubs.iter().map(|s| **s).collect()
    }

    fn qids(r: &MatchResult<u32>) -> BTreeSet<(String, BTreeSet<u32>)> {
        r.qnames
            .iter()
            .zip(&r.qsubs)
            .map(|(n, v)| (n.to_string(), v.iter().map(|s| **s).collect()))
            .collect()
    }

    fn set(v: &[u32]) -> BTreeSet<u32> {
        v.iter().copied().collect()
    }

    #[test]
    fn literal_and_wildcards() {
        let sl = Sl::new();
        let subs: Vec<(&str, Arc<u32>)> = [
            "foo",
            "foo.bar",
            "foo.*",
            "foo.>",
            ">",
            "*.*",
            "*",
            "foo.bar.baz",
            "*.bar",
            "foo.*.baz",
            "*.>",
        ]
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, sub(i as u32)))
        .collect();
        for (s, a) in &subs {
            sl.insert(s, None, a.clone()).unwrap();
        }
        assert_eq!(sl.count(), subs.len());
        // foo: "foo", ">", "*"
        assert_eq!(ids(&sl.match_subject("foo")), set(&[0, 4, 6]));
        // foo.bar: foo.bar, foo.*, foo.>, >, *.*, *.bar, *.>
        assert_eq!(
            ids(&sl.match_subject("foo.bar")),
            set(&[1, 2, 3, 4, 5, 8, 10])
        );
        // foo.bar.baz: foo.>, >, foo.bar.baz, foo.*.baz, *.>
        assert_eq!(
            ids(&sl.match_subject("foo.bar.baz")),
            set(&[3, 4, 7, 9, 10])
        );
        // bar: >, *
        assert_eq!(ids(&sl.match_subject("bar")), set(&[4, 6]));
        // a.b.c.d: >, *.>
        assert_eq!(ids(&sl.match_subject("a.b.c.d")), set(&[4, 10]));
        // invalid publish subjects match nothing
        assert!(sl.match_subject("").is_empty());
        assert!(sl.match_subject("foo..bar").is_empty());
        assert!(sl.match_subject(".foo").is_empty());
        assert!(sl.match_subject("foo.").is_empty());
    }

    #[test]
    fn wildcard_semantics() {
        let sl = Sl::new();
        sl.insert("foo.*", None, sub(1)).unwrap();
        assert_eq!(ids(&sl.match_subject("foo.bar")), set(&[1]));
        assert!(sl.match_subject("foo.bar.baz").is_empty());
        assert!(sl.match_subject("foo").is_empty());
        let sl = Sl::new();
        sl.insert("foo.>", None, sub(2)).unwrap();
        assert_eq!(ids(&sl.match_subject("foo.bar.baz")), set(&[2]));
        assert_eq!(ids(&sl.match_subject("foo.bar")), set(&[2]));
        assert!(sl.match_subject("foo").is_empty());
        let sl = Sl::new();
        sl.insert(">", None, sub(3)).unwrap();
        for s in ["a", "a.b", "a.b.c.d.e.f", "$SYS.x"] {
            assert_eq!(ids(&sl.match_subject(s)), set(&[3]), "{s}");
        }
        let sl = Sl::new();
        sl.insert("*.*", None, sub(4)).unwrap();
        assert_eq!(ids(&sl.match_subject("a.b")), set(&[4]));
        assert!(sl.match_subject("a").is_empty());
        assert!(sl.match_subject("a.b.c").is_empty());
    }

    #[test]
    fn long_subjects_spill_to_heap() {
        let sl = Sl::new();
        let long: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
        let subj = long.join(".");
        sl.insert(&subj, None, sub(1)).unwrap();
        sl.insert("t0.>", None, sub(2)).unwrap();
        assert_eq!(ids(&sl.match_subject(&subj)), set(&[1, 2]));
        assert!(sl.remove(
            &subj,
            None,
            &sl.all().into_iter().find(|s| **s == 1).unwrap()
        ));
    }

    #[test]
    fn invalid_inserts() {
        let sl = Sl::new();
        for s in [
            "",
            ".",
            "foo.",
            ".foo",
            "foo..bar",
            "foo.>.bar",
            ">.>",
            ">.a",
        ] {
            assert_eq!(
                sl.insert(s, None, sub(1)),
                Err(SublistError::InvalidSubject),
                "{s:?}"
            );
        }
        assert_eq!(
            sl.insert("foo", Some(""), sub(1)),
            Err(SublistError::InvalidQueue)
        );
        assert_eq!(sl.count(), 0);
        assert_eq!(sl.genid(), 0);
    }

    #[test]
    fn queue_grouping() {
        let sl = Sl::new();
        sl.insert("foo.bar", Some("g1"), sub(1)).unwrap();
        sl.insert("foo.bar", Some("g1"), sub(2)).unwrap();
        sl.insert("foo.*", Some("g1"), sub(3)).unwrap();
        sl.insert("foo.>", Some("g2"), sub(4)).unwrap();
        sl.insert("foo.bar", None, sub(5)).unwrap();
        let r = sl.match_subject("foo.bar");
        assert_eq!(ids(&r), set(&[5]));
        let want: BTreeSet<_> = [
            ("g1".to_string(), set(&[1, 2, 3])),
            ("g2".to_string(), set(&[4])),
        ]
        .into_iter()
        .collect();
        assert_eq!(qids(&r), want);
        assert_eq!(r.fanout(), 3);
        // Same Arc in a group twice is a no-op.
        let s6 = sub(6);
        sl.insert("foo.bar", Some("g3"), s6.clone()).unwrap();
        let g = sl.genid();
        sl.insert("foo.bar", Some("g3"), s6.clone()).unwrap();
        assert_eq!(sl.genid(), g);
        assert_eq!(sl.count(), 6);
        // Removing with the wrong queue fails.
        assert!(!sl.remove("foo.bar", Some("g1"), &s6));
        assert!(!sl.remove("foo.bar", None, &s6));
        assert!(sl.remove("foo.bar", Some("g3"), &s6));
        assert_eq!(qids(&sl.match_subject("foo.bar")), want);
    }

    #[test]
    fn cache_stays_exact() {
        let sl = Sl::new();
        let a = sub(1);
        sl.insert("foo.bar", None, a.clone()).unwrap();
        assert_eq!(ids(&sl.match_subject("foo.bar")), set(&[1]));
        assert!(sl.match_subject("foo.baz").is_empty());
        assert_eq!(sl.cache_count(), 2);
        // Wildcard insert updates both entries.
        let w = sub(2);
        sl.insert("foo.*", None, w.clone()).unwrap();
        assert_eq!(ids(&sl.match_subject("foo.bar")), set(&[1, 2]));
        assert_eq!(ids(&sl.match_subject("foo.baz")), set(&[2]));
        // Literal insert updates its entry.
        let b = sub(3);
        sl.insert("foo.baz", Some("q"), b.clone()).unwrap();
        assert_eq!(qids(&sl.match_subject("foo.baz")).len(), 1);
        // Removes invalidate.
        assert!(sl.remove("foo.*", None, &w));
        assert_eq!(ids(&sl.match_subject("foo.bar")), set(&[1]));
        assert!(ids(&sl.match_subject("foo.baz")).is_empty());
        assert!(sl.remove("foo.bar", None, &a));
        assert!(sl.match_subject("foo.bar").is_empty());
        assert!(sl.remove("foo.baz", Some("q"), &b));
        assert!(sl.match_subject("foo.baz").is_empty());
        assert_eq!(sl.count(), 0);
        let st = sl.stats();
        assert_eq!(st.num_inserts, 3);
        assert_eq!(st.num_removes, 3);
        assert_eq!(st.num_matches, 9);
        assert!(st.cache_hit_rate > 0.0);
    }

    #[test]
    fn cache_is_bounded() {
        let sl = Sl::new();
        sl.insert(">", None, sub(1)).unwrap();
        for i in 0..(CACHE_MAX + 1) {
            sl.match_subject(&format!("s.{i}"));
        }
        assert!(sl.cache_count() <= CACHE_SWEEP + 1, "{}", sl.cache_count());
        for i in 0..3000 {
            assert_eq!(sl.match_subject(&format!("s.{i}")).psubs.len(), 1);
            assert!(sl.cache_count() <= CACHE_MAX);
        }
        let st = sl.stats();
        assert_eq!(st.max_fanout, 1);
        assert_eq!(st.avg_fanout, 1.0);
    }

    #[test]
    fn prunes_empty_nodes() {
        let sl = Sl::new();
        let subs: Vec<_> = (0..100).map(sub).collect();
        for (i, s) in subs.iter().enumerate() {
            let subj = format!("a.b{}.c.{}", i % 7, if i % 3 == 0 { "*" } else { ">" });
            sl.insert(&subj, None, s.clone()).unwrap();
        }
        for (i, s) in subs.iter().enumerate() {
            let subj = format!("a.b{}.c.{}", i % 7, if i % 3 == 0 { "*" } else { ">" });
            assert!(sl.remove(&subj, None, s));
            assert!(!sl.remove(&subj, None, s));
        }
        assert!(sl.trie.read().root.is_empty());
        assert_eq!(sl.count(), 0);
    }

    #[test]
    fn large_node_index() {
        let sl = Sl::new();
        let subs: Vec<_> = (0..500).map(sub).collect();
        for s in &subs {
            sl.insert("hot", None, s.clone()).unwrap();
            sl.insert("hot", Some("q"), s.clone()).unwrap();
        }
        assert_eq!(sl.count(), 1000);
        for s in subs.iter().step_by(2) {
            assert!(sl.remove("hot", None, s));
            assert!(sl.remove("hot", Some("q"), s));
        }
        let r = sl.match_subject("hot");
        let want: BTreeSet<u32> = (0..500).filter(|i| i % 2 == 1).collect();
        assert_eq!(ids(&r), want);
        assert_eq!(
            r.qsubs[0].iter().map(|s| **s).collect::<BTreeSet<_>>(),
            want
        );
        let n = sl.remove_batch(subs.iter().map(|s| ("hot", None, s)));
        assert_eq!(n, 250);
        assert!(ids(&sl.match_subject("hot")).is_empty());
        assert_eq!(sl.count(), 250);
        let n = sl.remove_batch(subs.iter().map(|s| ("hot", Some("q"), s)));
        assert_eq!(n, 250);
        assert!(sl.match_subject("hot").is_empty());
        assert!(sl.trie.read().root.is_empty());
    }

    #[test]
    fn remove_batch_and_all() {
        let sl = Sl::new();
        let subs: Vec<_> = (0..10).map(sub).collect();
        for (i, s) in subs.iter().enumerate() {
            sl.insert(if i % 2 == 0 { "x.y" } else { "x.*" }, None, s.clone())
                .unwrap();
        }
        assert_eq!(sl.match_subject("x.y").psubs.len(), 10);
        let mut all: Vec<u32> = sl.all().iter().map(|s| **s).collect();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        let g = sl.genid();
        let batch: Vec<(&str, Option<&str>, &Arc<u32>)> = subs
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| ("x.*", None, s))
            .collect();
        assert_eq!(sl.remove_batch(batch), 5);
        assert_eq!(sl.genid(), g + 1);
        assert_eq!(ids(&sl.match_subject("x.y")), set(&[0, 2, 4, 6, 8]));
        assert_eq!(sl.remove_batch(std::iter::empty()), 0);
    }

    #[test]
    fn local_cache_follows_genid() {
        let sl = Sl::new();
        let mut lc = LocalCache::new();
        assert!(lc.get("a.b", &sl).is_empty());
        sl.insert("a.*", None, sub(1)).unwrap();
        assert_eq!(ids(&lc.get("a.b", &sl)), set(&[1]));
        assert_eq!(lc.len(), 1);
        for i in 0..100 {
            assert_eq!(ids(&lc.get(&format!("a.{i}"), &sl)), set(&[1]));
            assert!(lc.len() <= LOCAL_CACHE_MAX);
        }
        assert_eq!(lc.capacity(), LOCAL_CACHE_MAX);
        let s2 = sub(2);
        sl.insert("a.b", None, s2.clone()).unwrap();
        assert_eq!(ids(lc.get_ref("a.b", &sl)), set(&[1, 2]));
        sl.remove("a.b", None, &s2);
        assert_eq!(ids(&lc.get("a.b", &sl)), set(&[1]));
    }

    #[test]
    fn no_cache_mode() {
        let sl = Sl::without_cache();
        sl.insert("a.>", None, sub(1)).unwrap();
        assert_eq!(ids(&sl.match_subject("a.b")), set(&[1]));
        assert_eq!(sl.cache_count(), 0);
        assert_eq!(sl.stats().cache_hit_rate, 0.0);
    }

    #[test]
    fn stats_json_names() {
        let sl = Sl::new();
        sl.insert("a", None, sub(1)).unwrap();
        sl.match_subject("a");
        let v = serde_json::to_value(sl.stats()).unwrap();
        for k in [
            "num_subscriptions",
            "num_cache",
            "num_inserts",
            "num_removes",
            "num_matches",
            "cache_hit_rate",
            "max_fanout",
            "avg_fanout",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(v.as_object().unwrap().len(), 8);
        let mut tot = SublistStats::default();
        tot.add(&sl.stats());
        tot.add(&sl.stats());
        assert_eq!(tot.num_subs, 2);
        assert_eq!(tot.avg_fanout, 1.0);
    }

    #[test]
    fn concurrent_match_and_churn() {
        let sl = Arc::new(Sl::new());
        let stable = sub(0);
        sl.insert("s.>", None, stable.clone()).unwrap();
        std::thread::scope(|sc| {
            for t in 0..2 {
                let sl = &sl;
                let stable = &stable;
                sc.spawn(move || {
                    let mut lc = LocalCache::new();
                    for i in 0..20_000u32 {
                        let s = format!("s.{}", (i + t) % 50);
                        let r = lc.get(&s, sl);
                        assert!(r.psubs.iter().any(|p| Arc::ptr_eq(p, stable)));
                    }
                });
            }
            let sl = &sl;
            sc.spawn(move || {
                for i in 0..5_000u32 {
                    let s = sub(i + 1);
                    let subj = format!("s.{}", i % 50);
                    sl.insert(&subj, None, s.clone()).unwrap();
                    assert!(sl
                        .match_subject(&subj)
                        .psubs
                        .iter()
                        .any(|p| Arc::ptr_eq(p, &s)));
                    assert!(sl.remove(&subj, None, &s));
                    assert!(!sl
                        .match_subject(&subj)
                        .psubs
                        .iter()
                        .any(|p| Arc::ptr_eq(p, &s)));
                }
            });
        });
        assert_eq!(sl.count(), 1);
    }
}
