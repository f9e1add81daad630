//! Property tests: the sublist (with its result cache and a `LocalCache`)
//! against a naive matcher over a `Vec`, under random interleaved inserts,
//! removes, batch removes and matches.

use std::collections::BTreeSet;
use std::sync::Arc;

use natrix_broker::subject;
use natrix_broker::sublist::{LocalCache, MatchResult, Sublist};
use proptest::prelude::*;

/// Independent reference matcher: `*` one token, trailing `>` one or more.
fn naive_match(literal: &str, pattern: &str) -> bool {
    let l: Vec<&str> = literal.split('.').collect();
    let p: Vec<&str> = pattern.split('.').collect();
    for (i, pt) in p.iter().enumerate() {
        if *pt == ">" && i == p.len() - 1 {
            return l.len() > i;
        }
        let Some(lt) = l.get(i) else { return false };
        if *pt != "*" && pt != lt {
            return false;
        }
    }
    l.len() == p.len()
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just("c"), Just("dd")].prop_map(String::from)
}

fn literal() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 1..=4).prop_map(|t| t.join("."))
}

fn pattern() -> impl Strategy<Value = String> {
    let tok = prop_oneof![3 => token(), 1 => Just("*".to_string())];
    (prop::collection::vec(tok, 0..=4), any::<bool>()).prop_filter_map(
        "non-empty",
        |(mut t, fwc)| {
            if fwc {
                t.push(">".into());
            }
            (!t.is_empty()).then(|| t.join("."))
        },
    )
}

#[derive(Debug, Clone)]
enum Op {
    Insert(String, Option<u8>),
    Reinsert(usize),
    Remove(usize),
    RemoveWrong(usize, String),
    Match(String),
    Batch(Vec<usize>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (pattern(), prop::option::of(0u8..3)).prop_map(|(p, q)| Op::Insert(p, q)),
        1 => any::<usize>().prop_map(Op::Reinsert),
        3 => any::<usize>().prop_map(Op::Remove),
        1 => (any::<usize>(), pattern()).prop_map(|(i, p)| Op::RemoveWrong(i, p)),
        8 => literal().prop_map(Op::Match),
        1 => prop::collection::vec(any::<usize>(), 0..6).prop_map(Op::Batch),
    ]
}

struct Entry {
    pattern: String,
    queue: Option<String>,
    sub: Arc<u32>,
}

type Psubs = Vec<u32>;
type Qsubs = BTreeSet<(String, Vec<u32>)>;

fn expected(model: &[Entry], lit: &str) -> (Psubs, Qsubs) {
    let mut p = Vec::new();
    let mut q: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    for e in model.iter().filter(|e| naive_match(lit, &e.pattern)) {
        match &e.queue {
            None => p.push(*e.sub),
            Some(name) => q.entry(name.clone()).or_default().push(*e.sub),
        }
    }
    p.sort_unstable();
    let q = q
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_unstable();
            (k, v)
        })
        .collect();
    (p, q)
}

fn actual(r: &MatchResult<u32>) -> (Psubs, Qsubs) {
    assert_eq!(r.qnames.len(), r.qsubs.len());
    let mut p: Vec<u32> = r.psubs.iter().map(|s| **s).collect();
    p.sort_unstable();
    let names: BTreeSet<&str> = r.qnames.iter().map(|n| &**n).collect();
    assert_eq!(names.len(), r.qnames.len(), "queue group listed twice");
    let q = r
        .qnames
        .iter()
        .zip(&r.qsubs)
        .map(|(n, v)| {
            assert!(!v.is_empty(), "empty queue group in result");
            let mut v: Vec<u32> = v.iter().map(|s| **s).collect();
            v.sort_unstable();
            (n.to_string(), v)
        })
        .collect();
    (p, q)
}

fn check(sl: &Sublist<u32>, lc: &mut LocalCache<u32>, model: &[Entry], lit: &str) {
    let want = expected(model, lit);
    assert_eq!(actual(&sl.match_subject(lit)), want, "match {lit:?}");
    // Second call is served by the shared cache.
    assert_eq!(actual(&sl.match_subject(lit)), want, "cached match {lit:?}");
    assert_eq!(actual(&lc.get(lit, sl)), want, "local cache {lit:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn matches_agrees_with_naive(lit in literal(), pat in pattern()) {
        prop_assert_eq!(subject::matches(&lit, &pat), naive_match(&lit, &pat));
        prop_assert!(subject::is_valid_subject(&pat));
        prop_assert!(subject::is_valid_publish_subject(&lit));
        prop_assert_eq!(subject::subject_has_wildcard(&pat), pat.split('.').any(|t| t == "*" || t == ">"));
    }

    #[test]
    fn sublist_agrees_with_naive(ops in prop::collection::vec(op(), 1..250), cache in prop::bool::weighted(0.85)) {
        let sl: Sublist<u32> = Sublist::with_cache(cache);
        let mut lc = LocalCache::with_max(8);
        let mut model: Vec<Entry> = Vec::new();
        let mut next_id = 0u32;
        let mut probes: Vec<String> = vec!["a".into(), "a.b".into(), "b.c.dd".into()];
        for op in ops {
            match op {
                Op::Insert(pattern, q) => {
                    next_id += 1;
                    let sub = Arc::new(next_id);
                    let queue = q.map(|q| format!("q{q}"));
                    sl.insert(&pattern, queue.as_deref(), sub.clone()).unwrap();
                    model.push(Entry { pattern, queue, sub });
                }
                Op::Reinsert(i) if !model.is_empty() => {
                    let e = &model[i % model.len()];
                    let g = sl.genid();
                    sl.insert(&e.pattern, e.queue.as_deref(), e.sub.clone()).unwrap();
                    prop_assert_eq!(sl.genid(), g, "duplicate insert must be a no-op");
                }
                Op::Remove(i) if !model.is_empty() => {
                    let e = model.swap_remove(i % model.len());
                    prop_assert!(sl.remove(&e.pattern, e.queue.as_deref(), &e.sub));
                    prop_assert!(!sl.remove(&e.pattern, e.queue.as_deref(), &e.sub));
                }
                Op::RemoveWrong(i, pattern) if !model.is_empty() => {
                    let e = &model[i % model.len()];
                    let same = pattern == e.pattern;
                    if !same {
                        prop_assert!(!sl.remove(&pattern, e.queue.as_deref(), &e.sub));
                    }
                    let other_q = match &e.queue { None => Some("q0"), Some(_) => None };
                    prop_assert!(!sl.remove(&e.pattern, other_q, &e.sub));
                }
                Op::Match(lit) => {
                    check(&sl, &mut lc, &model, &lit);
                    if probes.len() < 64 {
                        probes.push(lit);
                    }
                }
                Op::Batch(idx) if !model.is_empty() => {
                    let mut picked: Vec<usize> = idx.iter().map(|i| i % model.len()).collect();
                    picked.sort_unstable();
                    picked.dedup();
                    let gone: Vec<Entry> = picked.iter().rev().map(|&i| model.swap_remove(i)).collect();
                    let n = sl.remove_batch(gone.iter().map(|e| (e.pattern.as_str(), e.queue.as_deref(), &e.sub)));
                    prop_assert_eq!(n, gone.len());
                }
                _ => {}
            }
            prop_assert_eq!(sl.count(), model.len());
            // Re-check a couple of previously matched subjects so cached results are exercised.
            for lit in probes.iter().rev().take(2) {
                check(&sl, &mut lc, &model, lit);
            }
        }
        for lit in &probes {
            check(&sl, &mut lc, &model, lit);
        }
        let mut all: Vec<u32> = sl.all().iter().map(|s| **s).collect();
        all.sort_unstable();
        let mut want: Vec<u32> = model.iter().map(|e| *e.sub).collect();
        want.sort_unstable();
        prop_assert_eq!(all, want);
        // Remove everything: the trie must be empty and match nothing.
        let n = sl.remove_batch(model.iter().map(|e| (e.pattern.as_str(), e.queue.as_deref(), &e.sub)));
        prop_assert_eq!(n, model.len());
        prop_assert_eq!(sl.count(), 0);
        for lit in &probes {
            prop_assert!(sl.match_subject(lit).is_empty());
        }
    }
}
