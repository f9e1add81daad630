//! The JetStream API against Natrix and the reference nats-server: the same requests, the
//! same answers (response types, error codes and descriptions, configs with defaults filled,
//! stream state, pub acks, pull statuses and ack subjects), timestamps and ids aside.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{tempdir::TempDir, RefServer, TestServer};
use natrix_broker::options::JetStreamOptions;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One message as received: subject, reply, header block, payload.
#[derive(Debug, Clone, PartialEq)]
struct Msg {
    subject: String,
    reply: Option<String>,
    hdr: String,
    payload: String,
}

/// A minimal client that reads whole MSG/HMSG frames.
struct Conn {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    n: u64,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Conn {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut c = Conn {
            r: BufReader::new(r),
            w,
            n: 0,
        };
        let mut info = String::new();
        c.r.read_line(&mut info).await.unwrap();
        c.w.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"protocol\":1}\r\nSUB _INBOX.> 1\r\nPING\r\n")
            .await
            .unwrap();
        let mut l = String::new();
        c.r.read_line(&mut l).await.unwrap();
        assert_eq!(l, "PONG\r\n");
        c
    }

    async fn publish(&mut self, subject: &str, reply: Option<&str>, hdr: &str, body: &str) {
        let reply = reply.map(|r| format!(" {r}")).unwrap_or_default();
        let frame = if hdr.is_empty() {
            format!("PUB {subject}{reply} {}\r\n{body}\r\n", body.len())
        } else {
            format!(
                "HPUB {subject}{reply} {} {}\r\n{hdr}{body}\r\n",
                hdr.len(),
                hdr.len() + body.len()
            )
        };
        self.w.write_all(frame.as_bytes()).await.unwrap();
    }

    /// The next message, or `None` after `wait` without one.
    async fn next(&mut self, wait: Duration) -> Option<Msg> {
        loop {
            let mut line = String::new();
            match tokio::time::timeout(wait, self.r.read_line(&mut line)).await {
                Err(_) => return None,
                Ok(r) => {
                    r.unwrap();
                }
            }
            let parts: Vec<&str> = line.trim_end().split(' ').collect();
            match parts[0] {
                "PING" => self.w.write_all(b"PONG\r\n").await.unwrap(),
                "MSG" => {
                    let (reply, len) = match parts.len() {
                        5 => (Some(parts[3].to_string()), parts[4]),
                        _ => (None, parts[3]),
                    };
                    let mut buf = vec![0; len.parse::<usize>().unwrap() + 2];
                    self.r.read_exact(&mut buf).await.unwrap();
                    buf.truncate(buf.len() - 2);
                    return Some(Msg {
                        subject: parts[1].into(),
                        reply,
                        hdr: String::new(),
                        payload: String::from_utf8(buf).unwrap(),
                    });
                }
                "HMSG" => {
                    let (reply, hl, tl) = match parts.len() {
                        6 => (Some(parts[3].to_string()), parts[4], parts[5]),
                        _ => (None, parts[3], parts[4]),
                    };
                    let hl: usize = hl.parse().unwrap();
                    let mut buf = vec![0; tl.parse::<usize>().unwrap() + 2];
                    self.r.read_exact(&mut buf).await.unwrap();
                    buf.truncate(buf.len() - 2);
                    let payload = buf.split_off(hl);
                    return Some(Msg {
                        subject: parts[1].into(),
                        reply,
                        hdr: String::from_utf8(buf).unwrap(),
                        payload: String::from_utf8(payload).unwrap(),
                    });
                }
                _ => {}
            }
        }
    }

    /// A request on a fresh inbox; the answer, if one comes within a second.
    async fn request(&mut self, subject: &str, hdr: &str, body: &str) -> Option<Msg> {
        self.n += 1;
        let inbox = format!("_INBOX.t.{}", self.n);
        self.publish(subject, Some(&inbox), hdr, body).await;
        let m = self.next(Duration::from_secs(1)).await?;
        assert_eq!(m.subject, inbox, "answer on the request's inbox");
        Some(m)
    }

    /// A JSON API request, normalized for comparison.
    async fn api(&mut self, subject: &str, body: &str) -> Value {
        match self.request(subject, "", body).await {
            Some(m) => normalize(serde_json::from_str(&m.payload).unwrap_or(Value::Null)),
            None => Value::String("no answer".into()),
        }
    }
}

/// Drops what legitimately differs between servers: times, ids, versions, metadata.
fn normalize(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for k in [
                    "created",
                    "ts",
                    "now",
                    "first_ts",
                    "last_ts",
                    "last_active",
                    "time",
                    "metadata",
                    "cluster",
                    "server_id",
                    "level",
                ] {
                    m.remove(k);
                }
                // Ephemeral consumer names are random.
                if m.contains_key("stream_name")
                    && m.get("config")
                        .is_some_and(|c| c.get("durable_name").is_none())
                {
                    m.remove("name");
                }
                m.values_mut().for_each(walk);
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// The scenario, run against one server; returns every observation in order.
async fn scenario(addr: SocketAddr) -> Vec<(String, Value)> {
    let mut c = Conn::connect(addr).await;
    let mut out: Vec<(String, Value)> = Vec::new();
    macro_rules! api {
        ($label:expr, $subj:expr, $body:expr) => {{
            let v = c.api($subj, $body).await;
            out.push(($label.to_string(), v.clone()));
            v
        }};
    }
    api!("info", "$JS.API.INFO", "");
    api!(
        "create",
        "$JS.API.STREAM.CREATE.ORDERS",
        r#"{"name":"ORDERS","subjects":["orders.>"],"storage":"file","retention":"limits"}"#
    );
    api!(
        "create minimal",
        "$JS.API.STREAM.CREATE.S2",
        r#"{"name":"S2"}"#
    );
    api!(
        "create memory",
        "$JS.API.STREAM.CREATE.MEM",
        r#"{"name":"MEM","subjects":["mem.>"],"storage":"memory","max_msgs":2,"discard":"new","max_msg_size":10}"#
    );
    api!(
        "create again",
        "$JS.API.STREAM.CREATE.ORDERS",
        r#"{"name":"ORDERS","subjects":["orders.>"],"storage":"file","retention":"limits"}"#
    );
    api!(
        "name mismatch",
        "$JS.API.STREAM.CREATE.FOO",
        r#"{"name":"BAR","subjects":["bar.>"]}"#
    );
    api!(
        "different config",
        "$JS.API.STREAM.CREATE.ORDERS",
        r#"{"name":"ORDERS","subjects":["orders.>"],"max_msgs":10}"#
    );
    api!("empty body", "$JS.API.STREAM.CREATE.X", "");
    api!(
        "overlap",
        "$JS.API.STREAM.CREATE.OV",
        r#"{"name":"OV","subjects":["orders.a"]}"#
    );
    api!(
        "all subjects",
        "$JS.API.STREAM.CREATE.OV",
        r#"{"name":"OV","subjects":[">"]}"#
    );
    api!(
        "api subjects",
        "$JS.API.STREAM.CREATE.OV",
        r#"{"name":"OV","subjects":["$JS.API.>"]}"#
    );
    api!(
        "replicas",
        "$JS.API.STREAM.CREATE.R3",
        r#"{"name":"R3","num_replicas":3}"#
    );
    api!(
        "invalid subject",
        "$JS.API.STREAM.CREATE.IS",
        r#"{"name":"IS","subjects":["a..b"]}"#
    );
    api!("info missing", "$JS.API.STREAM.INFO.NOPE", "");
    api!("delete missing", "$JS.API.STREAM.DELETE.NOPE", "");
    api!(
        "consumer info missing",
        "$JS.API.CONSUMER.INFO.ORDERS.NOPE",
        ""
    );
    api!(
        "update storage",
        "$JS.API.STREAM.UPDATE.ORDERS",
        r#"{"name":"ORDERS","subjects":["orders.>"],"storage":"memory"}"#
    );

    // Publishing.
    for (label, subj, hdr, body) in [
        ("pub 1", "orders.a", "", "one"),
        (
            "pub 2",
            "orders.b",
            "NATS/1.0\r\nNats-Msg-Id: m2\r\n\r\n",
            "two",
        ),
        (
            "pub dup",
            "orders.b",
            "NATS/1.0\r\nNats-Msg-Id: m2\r\n\r\n",
            "two",
        ),
        ("pub 3", "orders.a", "", "three"),
        (
            "wrong last seq",
            "orders.a",
            "NATS/1.0\r\nNats-Expected-Last-Sequence: 1\r\n\r\n",
            "x",
        ),
        (
            "wrong stream",
            "orders.a",
            "NATS/1.0\r\nNats-Expected-Stream: FOO\r\n\r\n",
            "x",
        ),
        (
            "wrong last msg id",
            "orders.a",
            "NATS/1.0\r\nNats-Expected-Last-Msg-Id: nope\r\n\r\n",
            "x",
        ),
        (
            "wrong last subject seq",
            "orders.a",
            "NATS/1.0\r\nNats-Expected-Last-Subject-Sequence: 99\r\n\r\n",
            "x",
        ),
        (
            "right last seq",
            "orders.c",
            "NATS/1.0\r\nNats-Expected-Last-Sequence: 3\r\n\r\n",
            "four",
        ),
        (
            "rollup refused",
            "orders.a",
            "NATS/1.0\r\nNats-Rollup: sub\r\n\r\n",
            "x",
        ),
        (
            "ttl refused",
            "orders.a",
            "NATS/1.0\r\nNats-TTL: 5s\r\n\r\n",
            "x",
        ),
        ("mem 1", "mem.a", "", "1"),
        ("mem 2", "mem.a", "", "2"),
        ("mem full", "mem.a", "", "3"),
        ("mem too big", "mem.b", "", "0123456789abc"),
    ] {
        let v = match c.request(subj, hdr, body).await {
            Some(m) => serde_json::from_str(&m.payload).unwrap(),
            None => Value::String("no answer".into()),
        };
        out.push((label.into(), v));
    }
    api!("stream info", "$JS.API.STREAM.INFO.ORDERS", "");
    api!(
        "subjects filter",
        "$JS.API.STREAM.INFO.ORDERS",
        r#"{"subjects_filter":">"}"#
    );
    api!(
        "msg delete",
        "$JS.API.STREAM.MSG.DELETE.ORDERS",
        r#"{"seq":2}"#
    );
    api!(
        "msg delete again",
        "$JS.API.STREAM.MSG.DELETE.ORDERS",
        r#"{"seq":2}"#
    );
    api!(
        "msg delete eof",
        "$JS.API.STREAM.MSG.DELETE.ORDERS",
        r#"{"seq":99}"#
    );
    api!(
        "deleted details",
        "$JS.API.STREAM.INFO.ORDERS",
        r#"{"deleted_details":true}"#
    );
    api!("msg get", "$JS.API.STREAM.MSG.GET.ORDERS", r#"{"seq":1}"#);
    api!(
        "msg get last",
        "$JS.API.STREAM.MSG.GET.ORDERS",
        r#"{"last_by_subj":"orders.a"}"#
    );
    api!(
        "msg get missing",
        "$JS.API.STREAM.MSG.GET.ORDERS",
        r#"{"seq":2}"#
    );
    api!("names", "$JS.API.STREAM.NAMES", "");
    api!(
        "names filtered",
        "$JS.API.STREAM.NAMES",
        r#"{"subject":"mem.x"}"#
    );

    // Consumers.
    api!(
        "filter mismatch",
        "$JS.API.CONSUMER.CREATE.ORDERS.C1.orders.a",
        r#"{"stream_name":"ORDERS","config":{"durable_name":"C1","ack_policy":"explicit"}}"#
    );
    api!(
        "consumer create",
        "$JS.API.CONSUMER.CREATE.ORDERS.C1.orders.a",
        r#"{"stream_name":"ORDERS","config":{"durable_name":"C1","ack_policy":"explicit","filter_subject":"orders.a"}}"#
    );
    api!(
        "durable create",
        "$JS.API.CONSUMER.DURABLE.CREATE.ORDERS.C2",
        r#"{"stream_name":"ORDERS","config":{"durable_name":"C2","ack_policy":"all","deliver_policy":"last"}}"#
    );
    api!(
        "ephemeral",
        "$JS.API.CONSUMER.CREATE.ORDERS",
        r#"{"stream_name":"ORDERS","config":{"ack_policy":"none","deliver_policy":"new"}}"#
    );
    // Consumer actions and updates: the same config again is fine even with "create"; what
    // may not change is refused with nats-server's reason.
    let upd = |extra: &str, action: &str| {
        format!(
            r#"{{"stream_name":"ORDERS","action":"{action}","config":{{"durable_name":"UP","ack_policy":"explicit","filter_subject":"orders.a"{extra}}}}}"#
        )
    };
    for (label, extra, action) in [
        ("consumer create", "", "create"),
        ("consumer create again, same", "", "create"),
        (
            "consumer create again, different",
            r#","description":"x""#,
            "create",
        ),
        (
            "consumer update",
            r#","description":"x","max_deliver":5"#,
            "update",
        ),
        ("consumer update ack policy", r#","ack_policy":"none""#, ""),
        (
            "consumer update deliver policy",
            r#","deliver_policy":"new""#,
            "",
        ),
        (
            "consumer update pull to push",
            r#","deliver_subject":"x.y""#,
            "",
        ),
        ("consumer update max waiting", r#","max_waiting":7"#, ""),
        ("consumer bad action", "", "bogus"),
    ] {
        let v = c
            .api("$JS.API.CONSUMER.CREATE.ORDERS.UP", &upd(extra, action))
            .await;
        out.push((
            label.to_string(),
            v.get("error")
                .cloned()
                .unwrap_or_else(|| v["config"].clone()),
        ));
    }
    c.api("$JS.API.CONSUMER.DELETE.ORDERS.UP", "").await;
    // push_bound: only a subscription on the exact deliver subject binds a push consumer
    // (this connection's `_INBOX.>` does not).
    c.w.write_all(b"SUB push.lit 9\r\n").await.unwrap();
    for (name, deliver) in [
        ("PB", "_INBOX.pb"),
        ("PL", "push.lit"),
        ("PU", "nobody.listens"),
    ] {
        let body = format!(
            r#"{{"stream_name":"ORDERS","config":{{"durable_name":"{name}","deliver_subject":"{deliver}","deliver_policy":"new","filter_subject":"orders.none"}}}}"#
        );
        c.api(&format!("$JS.API.CONSUMER.CREATE.ORDERS.{name}"), &body)
            .await;
        let v = c
            .api(&format!("$JS.API.CONSUMER.INFO.ORDERS.{name}"), "")
            .await;
        out.push((format!("push_bound {name}"), v["push_bound"].clone()));
        c.api(&format!("$JS.API.CONSUMER.DELETE.ORDERS.{name}"), "")
            .await;
    }
    api!(
        "last per subject without a filter",
        "$JS.API.CONSUMER.CREATE.ORDERS",
        r#"{"stream_name":"ORDERS","config":{"deliver_policy":"last_per_subject"}}"#
    );
    // The ephemeral's name is random: keep the durables' names and the count.
    let mut names = c.api("$JS.API.CONSUMER.NAMES.ORDERS", "").await;
    if let Some(Value::Array(a)) = names.get_mut("consumers") {
        a.retain(|n| n == "C1" || n == "C2");
    }
    out.push(("consumer names".into(), names));
    // Pull two messages: original subjects, ack subjects as nats-server writes them.
    c.n += 1;
    let inbox = format!("_INBOX.t.{}", c.n);
    c.publish(
        "$JS.API.CONSUMER.MSG.NEXT.ORDERS.C1",
        Some(&inbox),
        "",
        r#"{"batch":2}"#,
    )
    .await;
    let mut acks = Vec::new();
    for i in 0..2 {
        let m = c
            .next(Duration::from_secs(1))
            .await
            .expect("pulled message");
        let reply = m.reply.clone().unwrap_or_default();
        let toks: Vec<&str> = reply.split('.').collect();
        // $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>
        let shape = format!(
            "{} {} {}.{}",
            m.subject,
            m.payload,
            toks[..7].join("."),
            toks[8]
        );
        out.push((format!("pulled {i}"), Value::String(shape)));
        acks.push(reply);
    }
    let r = c
        .request(
            "$JS.API.CONSUMER.MSG.NEXT.ORDERS.C1",
            "",
            r#"{"batch":1,"no_wait":true}"#,
        )
        .await;
    out.push((
        "no wait".into(),
        Value::String(r.map(|m| m.hdr).unwrap_or_default()),
    ));
    let r = c
        .request(
            "$JS.API.CONSUMER.MSG.NEXT.ORDERS.NOPE",
            "",
            r#"{"batch":1}"#,
        )
        .await;
    out.push((
        "next missing consumer".into(),
        Value::String(r.map(|m| m.hdr).unwrap_or_default()),
    ));
    let r = c
        .request("$JS.API.CONSUMER.MSG.NEXT.ORDERS.C1", "", "{bad")
        .await;
    out.push((
        "next bad json".into(),
        Value::String(
            r.map(|m| m.hdr.split(" - ").next().unwrap_or("").to_string())
                .unwrap_or_default(),
        ),
    ));
    // Ack the first with a reply (double ack), leave the second pending.
    let r = c.request(&acks[0], "", "+ACK").await;
    out.push((
        "double ack".into(),
        Value::String(r.map(|m| m.payload).unwrap_or("none".into())),
    ));
    api!("consumer info", "$JS.API.CONSUMER.INFO.ORDERS.C1", "");
    api!(
        "purge filtered",
        "$JS.API.STREAM.PURGE.ORDERS",
        r#"{"filter":"orders.c"}"#
    );
    api!("purge keep", "$JS.API.STREAM.PURGE.ORDERS", r#"{"keep":1}"#);
    api!("purge all", "$JS.API.STREAM.PURGE.ORDERS", "");
    api!("after purge", "$JS.API.STREAM.INFO.ORDERS", "");
    api!("consumer delete", "$JS.API.CONSUMER.DELETE.ORDERS.C2", "");
    api!(
        "consumer delete missing",
        "$JS.API.CONSUMER.DELETE.ORDERS.C2",
        ""
    );
    api!("stream delete", "$JS.API.STREAM.DELETE.S2", "");
    let unknown = c.request("$JS.API.NOPE.NOPE", "", "").await;
    out.push(("unknown api".into(), Value::Bool(unknown.is_some())));
    out
}

#[tokio::test]
async fn jetstream_api_matches_reference() {
    let dir = std::env::temp_dir().join(format!("natrix-jsdiff-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ref_dir = dir.join("ref");
    let our_dir = dir.join("ours");
    let reference = RefServer::start(None, &["-js", "-sd", ref_dir.to_str().unwrap()]);
    let d = our_dir.clone();
    let ours = TestServer::start_with(move |o| {
        o.jetstream = Some(JetStreamOptions {
            store_dir: d,
            ..Default::default()
        })
    })
    .await;
    let want = scenario(reference.addr).await;
    let got = scenario(ours.addr).await;
    let _ = std::fs::remove_dir_all(&dir);
    let mut diffs = Vec::new();
    for ((label, w), (_, g)) in want.iter().zip(got.iter()) {
        if w != g {
            diffs.push(format!("{label}:\n  reference: {w}\n  natrix:    {g}"));
        }
    }
    assert_eq!(want.len(), got.len());
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

impl Conn {
    /// Sends a pull request on a fresh inbox and gathers what answers it until `quiet` passes
    /// without a message: payloads, or the status header block. Data is acked when `ack`.
    async fn pull(
        &mut self,
        consumer: &str,
        body: &str,
        ack: bool,
        quiet: Duration,
    ) -> Vec<String> {
        self.n += 1;
        let inbox = format!("_INBOX.pull.{}", self.n);
        let next = format!("$JS.API.CONSUMER.MSG.NEXT.S.{consumer}");
        self.publish(&next, Some(&inbox), "", body).await;
        // Data arrives under its stream subject with this consumer's ack reply; statuses
        // arrive on the inbox itself.
        let acks = format!("$JS.ACK.S.{consumer}.");
        let mut got = Vec::new();
        while let Some(m) = self.next(quiet).await {
            match &m.reply {
                Some(r) if r.starts_with(&acks) => {
                    got.push(m.payload.clone());
                    if ack {
                        self.publish(r, None, "", "+ACK").await;
                    }
                }
                None if m.subject == inbox => got.push(m.hdr.clone()),
                _ => {}
            }
        }
        got
    }
}

/// Every way a pull request can end: no_wait with and without an expiry, max_bytes cut-offs
/// and exact fits, a completed batch with bytes left, requests pending, max_ack_pending.
async fn pull_endings(addr: SocketAddr) -> Vec<(String, Vec<String>)> {
    let mut c = Conn::connect(addr).await;
    let quiet = Duration::from_millis(700);
    c.api(
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.>"],"storage":"memory"}"#,
    )
    .await;
    for i in 0..6 {
        c.request("s.x", "", &format!("m{i}"))
            .await
            .expect("pub ack");
    }
    let consumers = [
        ("A", r#""ack_policy":"explicit""#),
        ("B", r#""ack_policy":"explicit""#),
        ("C", r#""ack_policy":"explicit","filter_subject":"s.late""#),
        ("D", r#""ack_policy":"explicit","filter_subject":"s.none""#),
        ("E", r#""ack_policy":"explicit""#),
        ("F", r#""ack_policy":"explicit""#),
        ("G", r#""ack_policy":"explicit""#),
        ("H", r#""ack_policy":"explicit""#),
        ("I", r#""ack_policy":"explicit","max_ack_pending":1"#),
        ("J", r#""ack_policy":"explicit","max_ack_pending":2"#),
        ("K", r#""ack_policy":"explicit","filter_subject":"s.k""#),
    ];
    for (name, cfg) in consumers {
        let v = c
            .api(
                &format!("$JS.API.CONSUMER.CREATE.S.{name}"),
                &format!(r#"{{"stream_name":"S","config":{{"durable_name":"{name}",{cfg}}}}}"#),
            )
            .await;
        assert!(v.get("error").is_none(), "{name}: {v}");
    }
    let mut out = Vec::new();
    let cases: [(&str, &str, &str, bool); 8] = [
        (
            "no_wait, fewer than the batch",
            "A",
            r#"{"batch":10,"no_wait":true}"#,
            true,
        ),
        (
            "no_wait with expires, fewer than the batch",
            "B",
            r#"{"batch":10,"no_wait":true,"expires":500000000}"#,
            true,
        ),
        (
            "no_wait with expires, nothing comes",
            "D",
            r#"{"batch":10,"no_wait":true,"expires":300000000}"#,
            true,
        ),
        (
            "batch completed, bytes left",
            "E",
            r#"{"batch":2,"max_bytes":1000}"#,
            true,
        ),
        (
            "max_bytes exact fit",
            "F",
            r#"{"batch":5,"max_bytes":44}"#,
            true,
        ),
        (
            "first message too big",
            "G",
            r#"{"batch":5,"max_bytes":10}"#,
            true,
        ),
        (
            "max_bytes cut-off with no_wait",
            "H",
            r#"{"batch":5,"max_bytes":100,"no_wait":true}"#,
            true,
        ),
        (
            "max_ack_pending holds a no_wait",
            "J",
            r#"{"batch":5,"no_wait":true}"#,
            false,
        ),
    ];
    for (label, consumer, body, ack) in cases {
        out.push((label.to_string(), c.pull(consumer, body, ack, quiet).await));
    }
    // A no_wait request with an expiry waits for its first message, then ends at once.
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut p = Conn::connect(addr).await;
        p.request("s.late", "", "late").await.expect("pub ack");
    });
    out.push((
        "no_wait with expires, a message comes".into(),
        c.pull(
            "C",
            r#"{"batch":10,"no_wait":true,"expires":2000000000}"#,
            true,
            quiet,
        )
        .await,
    ));
    late.await.unwrap();
    // One message out and unacked holds I at max_ack_pending with 9 still owed; a no_wait
    // request for what is available is then refused as "Requests Pending".
    out.push((
        "held request".into(),
        c.pull("I", r#"{"batch":10,"expires":3000000000}"#, false, quiet)
            .await,
    ));
    // A requester that has gone: its request no longer counts in num_waiting, and the next
    // message goes to the next live request instead of into the void.
    c.w.write_all(b"SUB gone.1 2\r\n").await.unwrap();
    c.publish(
        "$JS.API.CONSUMER.MSG.NEXT.S.K",
        Some("gone.1"),
        "",
        r#"{"batch":1,"expires":5000000000}"#,
    )
    .await;
    // nats-server queues pull requests to the consumer asynchronously.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = |v: Value| vec![v["num_waiting"].to_string()];
    out.push((
        "num_waiting while the requester waits".into(),
        waiting(c.api("$JS.API.CONSUMER.INFO.S.K", "").await),
    ));
    c.w.write_all(b"UNSUB 2\r\n").await.unwrap();
    out.push((
        "num_waiting after the requester left".into(),
        waiting(c.api("$JS.API.CONSUMER.INFO.S.K", "").await),
    ));
    c.request("s.k", "", "k1").await.expect("pub ack");
    out.push((
        "the next request after a requester left".into(),
        c.pull("K", r#"{"batch":1,"expires":1000000000}"#, true, quiet)
            .await,
    ));
    out.push((
        "requests pending".into(),
        c.pull("I", r#"{"batch":1,"no_wait":true}"#, true, quiet)
            .await,
    ));
    // An update that changes the filter: the consumer counts and delivers by the new one.
    c.request("s.uf", "", "u1").await.expect("pub ack");
    for filter in ["s.zzz", "s.uf"] {
        let body = format!(
            r#"{{"stream_name":"S","config":{{"durable_name":"UF","ack_policy":"explicit","filter_subject":"{filter}"}}}}"#
        );
        let v = c.api("$JS.API.CONSUMER.CREATE.S.UF", &body).await;
        out.push((
            format!("filter {filter}: num_pending"),
            vec![v["num_pending"].to_string()],
        ));
    }
    out.push((
        "pull after the filter changed".into(),
        c.pull("UF", r#"{"batch":5,"no_wait":true}"#, true, quiet)
            .await,
    ));
    out
}

#[tokio::test]
async fn pull_request_endings_match_reference() {
    let (ref_dir, our_dir) = (TempDir::new("pull-ref"), TempDir::new("pull-ours"));
    let reference = RefServer::start(None, &["-js", "-sd", ref_dir.path().to_str().unwrap()]);
    let store_dir = our_dir.path().to_path_buf();
    let ours = TestServer::start_with(move |o| {
        o.jetstream = Some(JetStreamOptions {
            store_dir,
            ..Default::default()
        })
    })
    .await;
    let (want, got) = tokio::join!(pull_endings(reference.addr), pull_endings(ours.addr));
    assert_eq!(want.len(), got.len());
    let diffs: Vec<String> = want
        .iter()
        .zip(&got)
        .filter(|(w, g)| w != g)
        .map(|((label, w), (_, g))| format!("{label}:\n  reference: {w:?}\n  natrix:    {g:?}"))
        .collect();
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
