//! Criterion benches for the client protocol parser.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use natrix_broker::protocol::client_wire::{parse, ClientOp, Limits};

const LIMITS: Limits = Limits {
    max_control_line: 4096,
    max_payload: 1024 * 1024,
};

/// A read buffer holding `n` PUBs of `size` bytes, as a fast publisher sends them.
fn pubs(n: usize, size: usize) -> Vec<u8> {
    let payload = vec![b'x'; size];
    let mut buf = Vec::new();
    for i in 0..n {
        buf.extend_from_slice(
            format!("PUB orders.eu.{} _INBOX.abc.{} {}\r\n", i % 16, i, size).as_bytes(),
        );
        buf.extend_from_slice(&payload);
        buf.extend_from_slice(b"\r\n");
    }
    buf
}

/// Parses every operation in `buf`; returns how many were PUBs.
fn parse_all(buf: &[u8]) -> usize {
    let mut used = 0;
    let mut n = 0;
    while let Ok(Some((op, len))) = parse(&buf[used..], &LIMITS) {
        if matches!(op, ClientOp::Pub { .. }) {
            n += 1;
        }
        used += len;
    }
    n
}

fn bench_parser(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_pub_batch");
    for size in [16usize, 1024] {
        let buf = pubs(1000, size);
        g.throughput(Throughput::Elements(1000));
        g.bench_with_input(BenchmarkId::from_parameter(size), &buf, |b, buf| {
            b.iter(|| assert_eq!(parse_all(std::hint::black_box(buf)), 1000))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("parse_one");
    let cases: [(&str, &[u8]); 4] = [
        ("ping", b"PING\r\n"),
        ("sub", b"SUB orders.*.new workers 42\r\n"),
        (
            "hpub",
            b"HPUB foo.bar reply 22 27\r\nNATS/1.0\r\nA: bcdef\r\n\r\nhello\r\n",
        ),
        ("partial", b"PUB foo.bar 1000\r\nxxxx"),
    ];
    for (name, input) in cases {
        g.bench_function(name, |b| {
            b.iter(|| parse(std::hint::black_box(input), &LIMITS))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_parser);
criterion_main!(benches);
