//! Sublist benchmarks: matching with cache hits, cache misses, through a
//! `LocalCache`, and insert/remove churn, over ~10k mixed subscriptions.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use natrix_broker::sublist::{LocalCache, Sublist};

const REGIONS: usize = 10;
const SERVICES: usize = 100;
const OPS: usize = 10;

/// ~10k subscriptions: literal `svc.rN.sM.opK` (with some queue subs),
/// plus `*` and `>` wildcards at several depths.
fn populate(sl: &Sublist<u64>) -> Vec<(String, Option<String>, Arc<u64>)> {
    let mut subs = Vec::new();
    let mut id = 0u64;
    let mut add = |subject: String, queue: Option<String>| {
        id += 1;
        let s = Arc::new(id);
        sl.insert(&subject, queue.as_deref(), s.clone()).unwrap();
        subs.push((subject, queue, s));
    };
    for r in 0..REGIONS {
        for s in 0..SERVICES {
            for o in 0..OPS / 2 {
                add(format!("svc.r{r}.s{s}.op{o}"), None);
            }
            add(format!("svc.r{r}.s{s}.op0"), Some("workers".into()));
            add(format!("svc.r{r}.s{s}.op1"), Some("workers".into()));
            add(format!("svc.r{r}.s{s}.*"), None);
            add(format!("svc.r{r}.s{s}.>"), None);
        }
        for o in 0..OPS {
            add(format!("svc.r{r}.*.op{o}"), None);
            add(format!("svc.*.*.op{o}"), None);
        }
        add(format!("svc.r{r}.>"), None);
    }
    add(">".into(), None);
    add("svc.>".into(), Some("audit".into()));
    subs
}

fn subjects(n: usize, seed: u64) -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|_| {
            format!(
                "svc.r{}.s{}.op{}",
                rng.usize(..REGIONS),
                rng.usize(..SERVICES),
                rng.usize(..OPS)
            )
        })
        .collect()
}

fn unique_subjects(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "svc.r{}.s{}.op{}.u{i}",
                i % REGIONS,
                (i / REGIONS) % SERVICES,
                i % OPS
            )
        })
        .collect()
}

fn bench_match(c: &mut Criterion) {
    let sl = Sublist::new();
    let subs = populate(&sl);
    eprintln!("sublist: {} subscriptions", subs.len());
    let mut g = c.benchmark_group("match");
    g.throughput(Throughput::Elements(1));

    // Cache hits: 512 hot subjects, all cached.
    let hot = subjects(512, 1);
    for s in &hot {
        sl.match_subject(s);
    }
    let mut i = 0;
    g.bench_function("cache_hit", |b| {
        b.iter(|| {
            i = (i + 1) & 511;
            black_box(sl.match_subject(black_box(&hot[i])))
        })
    });

    // Cache misses: far more unique subjects than the cache holds.
    let cold = unique_subjects(200_000);
    let mut i = 0;
    g.bench_function("cache_miss", |b| {
        b.iter(|| {
            i = (i + 1) % cold.len();
            black_box(sl.match_subject(black_box(&cold[i])))
        })
    });

    // Trie walk only, no shared cache.
    let nc = Sublist::without_cache();
    populate(&nc);
    let mut i = 0;
    g.bench_function("no_cache", |b| {
        b.iter(|| {
            i = (i + 1) & 511;
            black_box(nc.match_subject(black_box(&hot[i])))
        })
    });

    // Per-connection cache in front: a connection publishing to 16 subjects.
    let mut lc = LocalCache::new();
    let mut i = 0;
    g.bench_function("local_cache_get_ref", |b| {
        b.iter(|| {
            i = (i + 1) & 15;
            black_box(lc.get_ref(black_box(&hot[i]), &sl).fanout())
        })
    });
    let mut i = 0;
    g.bench_function("local_cache_get", |b| {
        b.iter(|| {
            i = (i + 1) & 15;
            black_box(lc.get(black_box(&hot[i]), &sl))
        })
    });
    g.finish();
}

fn bench_churn(c: &mut Criterion) {
    let sl = Arc::new(Sublist::new());
    let subs = populate(&sl);
    let hot = subjects(512, 2);
    for s in &hot {
        sl.match_subject(s);
    }
    let mut g = c.benchmark_group("churn");
    g.throughput(Throughput::Elements(1));

    // One insert + one remove of a literal and of a wildcard subscription.
    let mut i = 0usize;
    g.bench_function("insert_remove_literal", |b| {
        b.iter(|| {
            i = (i + 1) % subs.len();
            let (subject, queue, s) = &subs[i];
            sl.remove(subject, queue.as_deref(), s);
            sl.insert(subject, queue.as_deref(), s.clone()).unwrap();
        })
    });
    let extra = Arc::new(0u64);
    let mut i = 0usize;
    g.bench_function("insert_remove_wildcard", |b| {
        b.iter(|| {
            i = (i + 1) % REGIONS;
            let subject = ["svc.r0.*.op3", "svc.r1.>", "svc.*.s7.*"][i % 3];
            sl.insert(subject, None, extra.clone()).unwrap();
            sl.remove(subject, None, &extra);
        })
    });

    // Matching (cache hits where possible) while another thread churns.
    let stop = Arc::new(AtomicBool::new(false));
    let churner = {
        let sl = sl.clone();
        let stop = stop.clone();
        let subs = subs.clone();
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i = (i + 1) % subs.len();
                let (subject, queue, s) = &subs[i];
                sl.remove(subject, queue.as_deref(), s);
                sl.insert(subject, queue.as_deref(), s.clone()).unwrap();
                // Roughly 1 change per ~20us.
                for _ in 0..200 {
                    std::hint::spin_loop();
                }
            }
        })
    };
    let mut i = 0usize;
    g.bench_function("match_during_churn", |b| {
        b.iter(|| {
            i = (i + 1) & 511;
            black_box(sl.match_subject(black_box(&hot[i])))
        })
    });
    let mut lc = LocalCache::new();
    let mut i = 0usize;
    g.bench_function("local_cache_during_churn", |b| {
        b.iter(|| {
            i = (i + 1) & 15;
            black_box(lc.get_ref(black_box(&hot[i]), &sl).fanout())
        })
    });
    stop.store(true, Ordering::Relaxed);
    churner.join().unwrap();
    g.finish();
    let st = sl.stats();
    eprintln!(
        "stats: subs={} cache={} hit_rate={:.3} max_fanout={} avg_fanout={:.1}",
        st.num_subs, st.num_cache, st.cache_hit_rate, st.max_fanout, st.avg_fanout
    );
}

criterion_group!(benches, bench_match, bench_churn);
criterion_main!(benches);
