//! Limits against the reference nats-server and Natrix with the same configuration: the bytes a
//! client receives and whether the server closes the connection must be the same.
//! (`max_connections`, `max_subscriptions`, `max_payload`, `max_control_line`, `ping_max`.)

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{compare_exchanges, exchange, RefServer, TestServer};
use natrix_broker::options::Options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long to listen for more bytes on a connection the server keeps open.
const QUIET: Duration = Duration::from_millis(300);
/// Upper bound for waiting on a connection the server is expected to close by itself.
const UNTIL_CLOSED: Duration = Duration::from_secs(5);

/// Starts both servers: the reference with `conf`, Natrix with `set` applied to its options.
async fn both(conf: &str, set: impl FnOnce(&mut Options)) -> (RefServer, TestServer) {
    let reference = RefServer::start(Some(conf), &[]);
    let natrix = TestServer::start_with(set).await;
    (reference, natrix)
}

/// Reads the INFO line of a fresh connection and returns its JSON.
async fn read_info(stream: &mut TcpStream) -> serde_json::Value {
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    while !got.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(UNTIL_CLOSED, stream.read(&mut tmp))
            .await
            .expect("INFO in time")
            .expect("read");
        assert!(n > 0, "closed before INFO");
        got.extend_from_slice(&tmp[..n]);
    }
    let line = String::from_utf8_lossy(&got).into_owned();
    let line = line.split("\r\n").next().unwrap();
    let json = line
        .strip_prefix("INFO ")
        .unwrap_or_else(|| panic!("not INFO: {line:?}"));
    serde_json::from_str(json.trim_end()).expect("INFO JSON")
}

/// Everything a connection receives until the server closes it (bounded by `wait`), with the
/// INFO line's JSON replaced by `{}` so servers can be compared; and whether it was closed.
async fn read_all_raw(stream: &mut TcpStream, wait: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut tmp = [0u8; 65536];
    let deadline = tokio::time::Instant::now() + wait;
    let closed = loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&tmp[..n]),
            Err(_) => break false,
        }
    };
    let text = String::from_utf8_lossy(&got).into_owned();
    let text = text
        .split_inclusive("\r\n")
        .map(|l| {
            if l.starts_with("INFO {") {
                "INFO {} \r\n"
            } else {
                l
            }
        })
        .collect();
    (text, closed)
}

/// Connects, reads INFO, and completes a CONNECT/PING round trip so the server has fully
/// registered the client.
async fn connected(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    read_info(&mut s).await;
    s.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
        .await
        .expect("write");
    let mut got = Vec::new();
    let mut tmp = [0u8; 1024];
    while !got.ends_with(b"PONG\r\n") {
        let n = tokio::time::timeout(UNTIL_CLOSED, s.read(&mut tmp))
            .await
            .expect("PONG in time")
            .expect("read");
        assert!(n > 0, "closed before PONG");
        got.extend_from_slice(&tmp[..n]);
    }
    s
}

/// A second client over `max_connections` sees INFO, then the -ERR, then EOF.
async fn over_max_connections(addr: SocketAddr) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    read_all_raw(&mut s, UNTIL_CLOSED).await
}

/// After the one allowed client leaves, a new client gets in (retried: the server notices the
/// close asynchronously).
async fn slot_frees_up(addr: SocketAddr) -> bool {
    let deadline = tokio::time::Instant::now() + UNTIL_CLOSED;
    while tokio::time::Instant::now() < deadline {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        read_info(&mut s).await;
        let _ = s
            .write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
            .await;
        let (got, closed) = read_all_raw(&mut s, QUIET).await;
        if got == "PONG\r\n" && !closed {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_matches_reference() {
    let (reference, natrix) = both("max_connections: 1\n", |o| o.max_connections = 1).await;
    let mut results = Vec::new();
    for addr in [reference.addr, natrix.addr] {
        let first = connected(addr).await;
        let second = over_max_connections(addr).await;
        // The first client is unaffected.
        let mut first = first;
        first.write_all(b"PING\r\n").await.expect("write");
        let (after, closed) = read_all_raw(&mut first, QUIET).await;
        drop(first);
        let freed = slot_frees_up(addr).await;
        results.push((second, after, closed, freed));
    }
    assert_eq!(
        results[0].0,
        (
            "INFO {} \r\n-ERR 'maximum connections exceeded'\r\n".to_string(),
            true
        ),
        "reference"
    );
    assert_eq!(results[0], results[1], "reference vs natrix");
    assert_eq!(results[1].1, "PONG\r\n");
    assert!(results[1].3, "a slot frees up when the first client leaves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_subscriptions_matches_reference() {
    let (reference, natrix) = both("max_subscriptions: 2\n", |o| o.max_subscriptions = 2).await;
    let scenarios = [
        (
            "verbose_third_and_fourth_sub_rejected",
            vec![b"CONNECT {\"verbose\":true}\r\nSUB a 1\r\nSUB b 2\r\nSUB c 3\r\nSUB d 4\r\nPING\r\n"
                .to_vec()],
        ),
        (
            "rejected_sub_gets_nothing_connection_stays",
            vec![b"CONNECT {\"verbose\":false}\r\nSUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPUB c 1\r\nx\r\nPUB a 1\r\ny\r\nPING\r\n"
                .to_vec()],
        ),
        (
            "unsub_frees_a_slot",
            vec![b"CONNECT {\"verbose\":false}\r\nSUB a 1\r\nSUB b 2\r\nUNSUB 1\r\nSUB c 3\r\nSUB d 4\r\nPUB c 1\r\nx\r\nPING\r\n"
                .to_vec()],
        ),
        (
            "queue_subs_count",
            vec![b"CONNECT {\"verbose\":false}\r\nSUB a q 1\r\nSUB a q 2\r\nSUB a q 3\r\nPING\r\n"
                .to_vec()],
        ),
    ];
    compare_exchanges(reference.addr, natrix.addr, &scenarios, QUIET).await;
    let (want, _) = exchange(reference.addr, &[&scenarios[0].1[0]], QUIET).await;
    assert_eq!(
        want,
        "+OK\r\n+OK\r\n+OK\r\n-ERR 'maximum subscriptions exceeded'\r\n-ERR 'maximum subscriptions exceeded'\r\nPONG\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_payload_matches_reference() {
    let (reference, natrix) = both("max_payload: 100\n", |o| o.max_payload = 100).await;
    for addr in [reference.addr, natrix.addr] {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(read_info(&mut s).await["max_payload"], 100, "{addr}");
    }
    let x100 = "x".repeat(100);
    let hdr = "NATS/1.0\r\n\r\n";
    let scenarios = [
        (
            "exactly_100",
            vec![format!(
                "CONNECT {{\"verbose\":false}}\r\nSUB foo 1\r\nPUB foo 100\r\n{x100}\r\nPING\r\n"
            )
            .into_bytes()],
        ),
        (
            "101_before_payload",
            vec![b"CONNECT {\"verbose\":false}\r\nPUB foo 101\r\n".to_vec()],
        ),
        (
            "101_with_payload",
            vec![format!("CONNECT {{\"verbose\":false}}\r\nPUB foo 101\r\n{x100}x\r\nPING\r\n")
                .into_bytes()],
        ),
        (
            "verbose_101",
            vec![b"CONNECT {\"verbose\":true}\r\nPUB foo 101\r\n".to_vec()],
        ),
        (
            "hpub_exactly_100",
            vec![format!(
                "CONNECT {{\"verbose\":false,\"headers\":true}}\r\nSUB foo 1\r\nHPUB foo 12 100\r\n{hdr}{}\r\nPING\r\n",
                "y".repeat(88)
            )
            .into_bytes()],
        ),
        (
            "hpub_total_101",
            vec![b"CONNECT {\"verbose\":false,\"headers\":true}\r\nHPUB foo 12 101\r\n".to_vec()],
        ),
    ];
    compare_exchanges(reference.addr, natrix.addr, &scenarios, QUIET).await;
    let (want, closed) = exchange(reference.addr, &[&scenarios[1].1[0]], QUIET).await;
    assert_eq!(
        (want.as_str(), closed),
        ("-ERR 'Maximum Payload Violation'\r\n", true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_control_line_matches_reference() {
    let (reference, natrix) = both("max_control_line: 64\n", |o| o.max_control_line = 64).await;
    let connect = b"CONNECT {\"verbose\":false}\r\n".to_vec();
    // `SUB <subject> 1` lines of an exact length, CRLF not counted.
    let sub_of_len = |n: usize| format!("SUB {} 1", "a".repeat(n - 6)).into_bytes();
    let mut scenarios: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
    for n in [61, 63, 64, 65, 66, 75] {
        let mut line = sub_of_len(n);
        line.extend_from_slice(b"\r\nPING\r\n");
        scenarios.push((format!("sub_line_{n}"), vec![connect.clone(), line]));
        // The same line with no CRLF yet: over-long partial lines are cut early.
        scenarios.push((
            format!("sub_line_{n}_no_crlf"),
            vec![connect.clone(), sub_of_len(n)],
        ));
    }
    scenarios.push((
        "partial_pub_no_crlf".into(),
        vec![
            connect.clone(),
            format!("PUB {}", "b".repeat(200)).into_bytes(),
        ],
    ));
    for (name, line) in [
        (
            "sub_inner_blanks_count",
            format!("SUB {}       1\r\nPING\r\n", "a".repeat(58)),
        ),
        (
            "ping_trailing_blanks_ignored",
            format!("PING{}\r\n", " ".repeat(80)),
        ),
        ("unsub_long", format!("UNSUB {}\r\n", "1".repeat(70))),
        (
            "pub_long_subject",
            format!("PUB {} 1\r\nx\r\nPING\r\n", "p".repeat(70)),
        ),
    ] {
        scenarios.push((name.into(), vec![connect.clone(), line.into_bytes()]));
    }
    scenarios.push((
        "long_connect".into(),
        vec![format!(
            "CONNECT {{\"verbose\":false,\"name\":\"{}\"}}\r\nPING\r\n",
            "n".repeat(80)
        )
        .into_bytes()],
    ));
    scenarios.push((
        "byte_by_byte_over_limit".into(),
        format!("SUB {} 1\r\n", "c".repeat(70))
            .into_bytes()
            .chunks(1)
            .map(|c| c.to_vec())
            .collect(),
    ));
    let scenarios: Vec<(&str, Vec<Vec<u8>>)> = scenarios
        .iter()
        .map(|(n, c)| (n.as_str(), c.clone()))
        .collect();
    compare_exchanges(reference.addr, natrix.addr, &scenarios, QUIET).await;
    let (want, closed) = exchange(reference.addr, &[&connect, &sub_of_len(75)], QUIET).await;
    assert_eq!(
        (want.as_str(), closed),
        ("-ERR 'maximum control line exceeded'\r\n", true)
    );
}

/// A client that never answers PING: the lines it receives until the server closes it.
async fn never_pongs(addr: SocketAddr, first: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    read_info(&mut s).await;
    if !first.is_empty() {
        s.write_all(first).await.expect("write");
    }
    read_all_raw(&mut s, UNTIL_CLOSED).await
}

/// A client that answers each PING with PONG for `rounds` PINGs: stays connected.
async fn answers_pongs(addr: SocketAddr, rounds: usize) -> (usize, bool) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    read_info(&mut s).await;
    s.write_all(b"CONNECT {\"verbose\":false}\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let mut tmp = [0u8; 1024];
    let mut pings = 0;
    while pings < rounds {
        match tokio::time::timeout(UNTIL_CLOSED, s.read(&mut tmp)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&tmp[..n]),
            _ => return (pings, false),
        }
        while let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = buf.drain(..i + 2).collect();
            if line == b"PING\r\n" {
                pings += 1;
                s.write_all(b"PONG\r\n").await.expect("write");
            } else {
                return (pings, false);
            }
        }
    }
    (pings, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_connection_matches_reference() {
    let (reference, natrix) = both("ping_interval: \"200ms\"\nping_max: 1\n", |o| {
        o.ping_interval = Duration::from_millis(200);
        o.ping_max = 1;
    })
    .await;
    let mut diffs = Vec::new();
    for (name, first) in [
        ("no_connect", &b""[..]),
        ("connected", &b"CONNECT {\"verbose\":false}\r\n"[..]),
        (
            "connected_then_ping",
            &b"CONNECT {\"verbose\":false}\r\nPING\r\n"[..],
        ),
    ] {
        let want = never_pongs(reference.addr, first).await;
        let got = never_pongs(natrix.addr, first).await;
        if want != got {
            diffs.push(format!(
                "{name}:\n  reference: {want:?}\n  natrix:    {got:?}"
            ));
        }
        if name == "connected" {
            assert_eq!(
                want,
                ("PING\r\n-ERR 'Stale Connection'\r\n".to_string(), true),
                "reference"
            );
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    // A client that answers keeps being pinged and is never cut.
    assert_eq!(answers_pongs(reference.addr, 4).await, (4, true));
    assert_eq!(answers_pongs(natrix.addr, 4).await, (4, true));
}
