//! End-to-end clustering on the real `natrix-broker` binary: three processes on 127.0.0.1 joined
//! by routes with nats-server's `--cluster`/`--routes` flags, driven by async-nats.
//!
//! - a full mesh from one seed, as `/routez` shows it;
//! - messages reaching the other servers exactly once, and a queue group spread over all three;
//! - a client failing over to a gossiped URL after its server is killed with `kill -9`;
//! - lame duck mode (SIGUSR2) under a request/reply workload with an explicit retry policy.
//!
//! Every port is ephemeral (`-p -1`, `-m -1`, `--cluster nats://127.0.0.1:-1`, read back from the
//! log), every process is killed when its guard drops, and every wait is an upper bound only.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, Event};
use common::{http, proc::kill, tempdir::TempDir};
use futures::StreamExt;
use tokio::sync::mpsc;

mod common;

const NATRIX: &str = env!("CARGO_BIN_EXE_natrix-broker");

/// Upper bound for anything the tests wait for.
const WAIT: Duration = Duration::from_secs(20);

/// Cluster name shared by the three servers.
const CLUSTER: &str = "e2e";

/// A `natrix-broker` process in the cluster; killed (if still running) on drop.
struct Broker {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    client: SocketAddr,
    route: SocketAddr,
    http: SocketAddr,
    _dir: TempDir,
}

impl Broker {
    /// Starts `name` with `extra_conf` in a config file, listening on ephemeral ports for
    /// clients, monitoring and routes, with `seed` (a route URL) as its only route.
    async fn start(name: &str, seed: Option<&str>, extra_conf: &str) -> Broker {
        let dir = TempDir::new("cluster-e2e");
        let mut cmd = Command::new(NATRIX);
        if !extra_conf.is_empty() {
            let conf = dir.path().join("broker.conf");
            std::fs::write(&conf, extra_conf).unwrap();
            cmd.arg("-c").arg(&conf);
        }
        cmd.args(["-a", "127.0.0.1", "-p", "-1", "-m", "-1", "-n", name])
            .args([
                "--cluster",
                "nats://127.0.0.1:-1",
                "--cluster_name",
                CLUSTER,
            ]);
        if let Some(seed) = seed {
            cmd.args(["--routes", seed]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {NATRIX}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let mut b = Broker {
            name: name.to_string(),
            child,
            lines,
            client: "0.0.0.0:0".parse().unwrap(),
            route: "0.0.0.0:0".parse().unwrap(),
            http: "0.0.0.0:0".parse().unwrap(),
            _dir: dir,
        };
        b.wait_line("Server is ready").await;
        b.client = b.addr_after("Listening for client connections on ").await;
        b.route = b.addr_after("Listening for route connections on ").await;
        b.http = b.addr_after("Starting http monitor on ").await;
        b
    }

    /// Waits for a log line containing `needle` and returns it.
    async fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut exited = None;
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return l;
            }
            if let Some(st) = exited {
                panic!(
                    "{} exited ({st}) without {needle:?}: {:#?}",
                    self.name,
                    self.lines()
                );
            }
            if let Some(st) = self.child.try_wait().unwrap() {
                // One more look once the reader has drained the last lines.
                exited = Some(st);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no line with {needle:?} in {:#?}",
                self.name,
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The address logged after `prefix`.
    async fn addr_after(&mut self, prefix: &str) -> SocketAddr {
        let l = self.wait_line(prefix).await;
        let rest = &l[l.find(prefix).unwrap() + prefix.len()..];
        rest.trim()
            .trim_start_matches("nats://")
            .parse()
            .unwrap_or_else(|e| panic!("{}: address in {l:?}: {e}", self.name))
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn url(&self) -> String {
        format!("nats://{}", self.client)
    }

    fn route_url(&self) -> String {
        format!("nats://{}", self.route)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A monitoring document as JSON.
    async fn monitor(&self, path: &str) -> serde_json::Value {
        let addr = self.http;
        let path = path.to_string();
        let (status, body) = tokio::task::spawn_blocking(move || http::http_get(addr, &path))
            .await
            .unwrap();
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "{}: {status}: {body}",
            self.name
        );
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{}: {e}: {body}", self.name))
    }

    /// Waits (bounded) for the process to exit; its exit code.
    async fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT * 2;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{} did not exit; log: {:#?}", self.name, self.lines());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server ids of a `/routez` document's routes.
fn route_ids(routez: &serde_json::Value) -> BTreeSet<String> {
    routez["routes"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r["remote_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until every server's `/routez` lists exactly the two others.
async fn wait_full_mesh(servers: &[&Broker]) {
    let mut ids = Vec::new();
    for s in servers {
        ids.push(
            s.monitor("/varz").await["server_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let mut docs = Vec::new();
        for s in servers {
            docs.push(s.monitor("/routez").await);
        }
        let meshed = docs.iter().enumerate().all(|(i, d)| {
            let want: BTreeSet<String> = ids
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, id)| id.clone())
                .collect();
            d["num_routes"] == 2 && route_ids(d) == want
        });
        if meshed {
            return;
        }
        assert!(Instant::now() < deadline, "no full mesh: {docs:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts A, then B and C seeded with A's route URL only, and waits for the full mesh.
async fn cluster(extra_conf: &str) -> (Broker, Broker, Broker) {
    let a = Broker::start("A", None, extra_conf).await;
    let seed = a.route_url();
    let b = Broker::start("B", Some(&seed), extra_conf).await;
    let c = Broker::start("C", Some(&seed), extra_conf).await;
    wait_full_mesh(&[&a, &b, &c]).await;
    (a, b, c)
}

/// Connects to `url` only, forwarding the client's events to the returned channel.
async fn connect(url: &str) -> (Client, mpsc::UnboundedReceiver<Event>) {
    connect_with(ConnectOptions::new(), url).await
}

/// Connects to `url` only with `opts`, forwarding the client's events after the initial
/// `Connected` to the returned channel.
async fn connect_with(opts: ConnectOptions, url: &str) -> (Client, mpsc::UnboundedReceiver<Event>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let client = opts
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e);
            }
        })
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    let seen = wait_event(&mut rx, "connected").await;
    assert_eq!(seen, ["connected"], "events of the first connect");
    (client, rx)
}

/// Waits until a request from `from` to `subject` is answered, i.e. the responder's interest
/// reached the requester's server and the requester's inbox the responder's.
async fn wait_answered(from: &Client, subject: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = tokio::time::timeout(
            Duration::from_secs(1),
            from.request(subject.to_string(), "probe".into()),
        )
        .await;
        if let Ok(Ok(_)) = r {
            return;
        }
        assert!(Instant::now() < deadline, "{subject} never answered: {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Answers every request on `subject` (in `queue`, if any) with its payload.
async fn echo(client: &Client, subject: &str, queue: Option<&str>) {
    let mut sub = match queue {
        Some(q) => client
            .queue_subscribe(subject.to_string(), q.to_string())
            .await
            .unwrap(),
        None => client.subscribe(subject.to_string()).await.unwrap(),
    };
    client.flush().await.unwrap();
    let c = client.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(r) = m.reply {
                let _ = c.publish(r, m.payload).await;
            }
        }
    });
}

/// Waits for `want` among the events (others are skipped); the events seen on the way.
async fn wait_event(rx: &mut mpsc::UnboundedReceiver<Event>, want: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(e)) => {
                let s = e.to_string();
                seen.push(s.clone());
                if s == want {
                    return seen;
                }
            }
            other => panic!("no {want:?} event ({other:?}); seen {seen:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mesh_from_one_seed() {
    let (a, b, c) = cluster("").await;
    // B and C were given only A's URL: their route to each other came from gossip.
    for s in [&a, &b, &c] {
        let routez = s.monitor("/routez").await;
        assert_eq!(routez["num_routes"], 2, "{}: {routez:#}", s.name);
        let names: BTreeSet<&str> = routez["routes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["remote_name"].as_str())
            .collect();
        let want: BTreeSet<&str> = ["A", "B", "C"]
            .into_iter()
            .filter(|n| *n != s.name)
            .collect();
        assert_eq!(names, want, "{}: {routez:#}", s.name);
        let varz = s.monitor("/varz").await;
        assert_eq!(varz["cluster"]["name"], CLUSTER, "{}", s.name);
    }
    // Clients learn the other servers' client URLs.
    for s in [&a, &b, &c] {
        let (nc, _) = connect(&s.url()).await;
        let urls: BTreeSet<String> = nc.server_info().connect_urls.into_iter().collect();
        for o in [&a, &b, &c] {
            assert!(
                urls.contains(&o.client.to_string()),
                "{}: connect_urls {urls:?} lack {}",
                s.name,
                o.client
            );
        }
    }
}

/// Reads `sub` until `ends` distinct end markers (payloads starting with `END-`) arrived;
/// then until as many `FENCE-` markers, published after the ends, did: the payloads seen.
async fn collect(sub: &mut async_nats::Subscriber, ends: usize) -> Result<Vec<String>, String> {
    let mut got: Vec<String> = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut fences = 0;
    while fences < ends {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(m) = tokio::time::timeout(left, sub.next()).await else {
            let mut per: BTreeMap<String, usize> = BTreeMap::new();
            for p in &got {
                let k = p.split('-').next().unwrap_or_default();
                *per.entry(k.to_string()).or_default() += 1;
            }
            let markers: Vec<&String> = got.iter().filter(|p| p.contains("E-")).collect();
            return Err(format!(
                "markers never arrived; got {} messages: {per:?}, markers {markers:?}",
                got.len()
            ));
        };
        let m = m.expect("subscription open");
        let p = String::from_utf8(m.payload.to_vec()).unwrap();
        if p.starts_with("FENCE-") {
            fences += 1;
        }
        got.push(p);
    }
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_other_servers_once_and_queue_groups_once() {
    const N: usize = 200;
    let (a, b, c) = cluster("").await;
    let servers = [&a, &b, &c];
    let mut clients = Vec::new();
    for s in servers {
        clients.push(connect(&s.url()).await.0);
    }

    // Plain subscribers on every server, a queue member on every server, and a probe responder
    // subscribed last: route interest is sent in order, so once a probe is answered from every
    // other server, those servers also know about the earlier subscriptions.
    let mut subs = Vec::new();
    let mut members = Vec::new();
    for (s, nc) in servers.iter().zip(&clients) {
        subs.push(nc.subscribe("e2e.fanout").await.unwrap());
        members.push(
            nc.queue_subscribe("e2e.work", "workers".to_string())
                .await
                .unwrap(),
        );
        echo(nc, &format!("e2e.probe.{}", s.name), None).await;
    }
    for (i, nc) in clients.iter().enumerate() {
        for (j, s) in servers.iter().enumerate() {
            if i != j {
                wait_answered(nc, &format!("e2e.probe.{}", s.name)).await;
            }
        }
    }

    // Every server publishes N messages, then an end marker; every subscriber gets all 3N
    // exactly once. Fences published after the ends catch late duplicates of the markers.
    for (s, nc) in servers.iter().zip(&clients) {
        for i in 0..N {
            nc.publish("e2e.fanout", format!("{}-{i}", s.name).into())
                .await
                .unwrap();
        }
        nc.publish("e2e.fanout", format!("END-{}", s.name).into())
            .await
            .unwrap();
        nc.flush().await.unwrap();
    }
    for (s, nc) in servers.iter().zip(&clients) {
        nc.publish("e2e.fanout", format!("FENCE-{}", s.name).into())
            .await
            .unwrap();
        nc.flush().await.unwrap();
    }
    let mut want: Vec<String> = Vec::new();
    for s in servers {
        want.extend((0..N).map(|i| format!("{}-{i}", s.name)));
        want.push(format!("END-{}", s.name));
        want.push(format!("FENCE-{}", s.name));
    }
    want.sort();
    for (s, sub) in servers.iter().zip(subs.iter_mut()) {
        let mut got = match collect(sub, servers.len()).await {
            Ok(g) => g,
            Err(e) => panic!(
                "subscriber on {}: {e}; logs: {:#?}",
                s.name,
                servers.iter().map(|s| s.lines()).collect::<Vec<_>>()
            ),
        };
        got.sort();
        assert_eq!(got.len(), want.len(), "subscriber on {}", s.name);
        assert!(got == want, "subscriber on {} got other messages", s.name);
    }

    // The queue group: each message from any server reaches exactly one member.
    for (s, nc) in servers.iter().zip(&clients) {
        for i in 0..N {
            nc.publish("e2e.work", format!("{}-{i}", s.name).into())
                .await
                .unwrap();
        }
        nc.flush().await.unwrap();
    }
    let total = 3 * N;
    let got = Arc::new(Mutex::new(BTreeMap::<String, Vec<String>>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for (s, mut m) in servers.iter().zip(members) {
        let (got, count, name) = (got.clone(), count.clone(), s.name.clone());
        readers.push(tokio::spawn(async move {
            while let Some(msg) = m.next().await {
                let p = String::from_utf8(msg.payload.to_vec()).unwrap();
                got.lock().unwrap().entry(p).or_default().push(name.clone());
                count.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let deadline = Instant::now() + WAIT;
    while count.load(Ordering::SeqCst) < total {
        assert!(
            Instant::now() < deadline,
            "queue group got {} of {total}",
            count.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A round trip through every server after the last message: anything still on its way
    // (a duplicate) was sent before the answers and is counted by now, unless it took a
    // longer path; the count is checked again below.
    for (i, nc) in clients.iter().enumerate() {
        for (j, s) in servers.iter().enumerate() {
            if i != j {
                wait_answered(nc, &format!("e2e.probe.{}", s.name)).await;
            }
        }
    }
    for r in readers {
        r.abort();
    }
    let got = got.lock().unwrap();
    let dups: Vec<_> = got.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(dups.is_empty(), "delivered more than once: {dups:?}");
    assert_eq!(got.len(), total, "distinct messages");
    assert_eq!(count.load(Ordering::SeqCst), total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_fails_over_to_gossiped_url_after_kill_9() {
    let (a, mut b, c) = cluster("").await;
    // Only B's URL: A and C come from the connect_urls in B's INFO.
    let (nc, mut events) = connect(&b.url()).await;
    let urls = nc.server_info().connect_urls;
    for o in [&a, &c] {
        assert!(
            urls.contains(&o.client.to_string()),
            "connect_urls {urls:?} lack {}",
            o.client
        );
    }
    let mut sub = nc.subscribe("e2e.failover").await.unwrap();
    echo(&nc, "e2e.failover.svc", None).await;
    let (pa, _) = connect(&a.url()).await;
    let (pc, _) = connect(&c.url()).await;
    wait_answered(&pa, "e2e.failover.svc").await;
    pa.publish("e2e.failover", "before".into()).await.unwrap();
    pa.flush().await.unwrap();
    let m = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("message before the kill")
        .unwrap();
    assert_eq!(&m.payload[..], b"before");

    kill("KILL", b.pid());
    assert_eq!(b.wait_exit().await, None, "killed by a signal");
    let seen = wait_event(&mut events, "disconnected").await;
    let after = wait_event(&mut events, "connected").await;
    assert!(
        !seen.contains(&"connected".to_string()),
        "connected before disconnected: {seen:?} {after:?}"
    );
    let port = nc.server_info().port;
    assert!(
        port == a.client.port() || port == c.client.port(),
        "reconnected to port {port}, not A {} or C {}",
        a.client.port(),
        c.client.port()
    );

    // The subscription and the responder work again on the new server, from both others.
    for p in [&pa, &pc] {
        wait_answered(p, "e2e.failover.svc").await;
    }
    for (i, p) in [&pa, &pc].into_iter().enumerate() {
        p.publish("e2e.failover", format!("after-{i}").into())
            .await
            .unwrap();
        p.flush().await.unwrap();
        let m = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("message after the failover")
            .unwrap();
        assert_eq!(m.payload, format!("after-{i}").into_bytes());
    }
    // And the failed-over client publishes to the others.
    let mut on_c = pc.subscribe("e2e.back").await.unwrap();
    pc.flush().await.unwrap();
    echo(&pc, "e2e.back.probe", None).await;
    wait_answered(&nc, "e2e.back.probe").await;
    nc.publish("e2e.back", "hello".into()).await.unwrap();
    nc.flush().await.unwrap();
    let m = tokio::time::timeout(WAIT, on_c.next())
        .await
        .expect("message from the failed-over client")
        .unwrap();
    assert_eq!(&m.payload[..], b"hello");
}

/// What one requester saw.
#[derive(Debug, Default)]
struct Tally {
    /// Requests answered (each after at most [`ATTEMPTS`] attempts).
    ok: usize,
    /// Attempts that failed (timed out, no responders, or a wrong answer).
    failed_attempts: usize,
    /// Requests that failed every attempt.
    failed: usize,
    /// The errors of the failed attempts.
    errors: Vec<String>,
}

/// The retry policy: a request is tried up to this many times.
const ATTEMPTS: usize = 3;

/// Requests `e2e.ldm.svc` in a loop until `stop`, each up to [`ATTEMPTS`] times, checking the
/// echoed payload; `done` counts the answered requests of all requesters.
async fn requester(id: String, nc: Client, stop: Arc<AtomicBool>, done: Arc<AtomicUsize>) -> Tally {
    let mut t = Tally::default();
    let mut seq = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let payload = format!("{id}-{seq}");
        let mut ok = false;
        for _ in 0..ATTEMPTS {
            match nc.request("e2e.ldm.svc", payload.clone().into()).await {
                Ok(m) if m.payload == payload.as_bytes() => {
                    ok = true;
                    break;
                }
                Ok(m) => t
                    .errors
                    .push(format!("{payload}: wrong answer {:?}", m.payload)),
                Err(e) => t.errors.push(format!("{payload}: {e}")),
            }
            t.failed_attempts += 1;
        }
        if ok {
            t.ok += 1;
            done.fetch_add(1, Ordering::SeqCst);
        } else {
            t.failed += 1;
        }
        seq += 1;
    }
    t
}

/// Waits until `done` reaches `n`.
async fn wait_done(done: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + WAIT;
    while done.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "workload stuck at {} of {n} requests",
            done.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lame_duck_under_request_reply_load() {
    // 30 s is the smallest duration a config file accepts; with two clients on B the pause
    // between closes is at most a second.
    let (a, mut b, c) = cluster("lame_duck_duration: 30s\nlame_duck_grace_period: 500ms\n").await;

    // Responders on A and C in one queue group.
    let (ra, _) = connect(&a.url()).await;
    let (rc, _) = connect(&c.url()).await;
    echo(&ra, "e2e.ldm.svc", Some("svc")).await;
    echo(&rc, "e2e.ldm.svc", Some("svc")).await;

    // Two requesters on B, two on C, each given only its server's URL. A per-attempt timeout
    // (an upper bound) turns a request lost with B's connections into a failed attempt.
    let mut on_b = Vec::new();
    let mut on_c = Vec::new();
    for (i, s) in [&b, &b, &c, &c].into_iter().enumerate() {
        let opts = ConnectOptions::new().request_timeout(Some(Duration::from_secs(5)));
        let (nc, rx) = connect_with(opts, &s.url()).await;
        wait_answered(&nc, "e2e.ldm.svc").await;
        if i < 2 {
            on_b.push((format!("b{i}"), nc, rx));
        } else {
            on_c.push((format!("c{i}"), nc, rx));
        }
    }
    for (_, nc, _) in &on_b {
        let urls = nc.server_info().connect_urls;
        assert!(
            urls.contains(&a.client.to_string()) && urls.contains(&c.client.to_string()),
            "B's connect_urls {urls:?}"
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (id, nc, _) in on_b.iter().chain(on_c.iter()) {
        tasks.push((
            id.clone(),
            tokio::spawn(requester(
                id.clone(),
                nc.clone(),
                stop.clone(),
                done.clone(),
            )),
        ));
    }
    wait_done(&done, 200).await;

    kill("USR2", b.pid());
    b.wait_line("Entering lame duck mode, stop accepting new clients")
        .await;
    for (id, nc, events) in &mut on_b {
        let seen = wait_event(events, "lame duck mode detected").await;
        let mut rest = wait_event(events, "disconnected").await;
        rest.extend(wait_event(events, "connected").await);
        assert!(
            !seen
                .iter()
                .chain(&rest[..rest.len() - 1])
                .any(|e| e == "connected"),
            "{id}: events {seen:?} {rest:?}"
        );
        let port = nc.server_info().port;
        assert!(
            port == a.client.port() || port == c.client.port(),
            "{id} reconnected to port {port}, not A {} or C {}",
            a.client.port(),
            c.client.port()
        );
    }
    assert_eq!(b.wait_exit().await, Some(0), "B exits 0: {:#?}", b.lines());
    for l in [
        "Closing existing clients",
        "Initiating Shutdown...",
        "Server Exiting..",
    ] {
        b.wait_line(l).await;
    }

    // The workload goes on after the reconnects.
    let before = done.load(Ordering::SeqCst);
    wait_done(&done, before + 200).await;
    stop.store(true, Ordering::SeqCst);
    let mut tallies = BTreeMap::new();
    for (id, t) in tasks {
        tallies.insert(id, t.await.unwrap());
    }
    eprintln!("lame duck workload: {tallies:#?}");
    for (id, t) in &tallies {
        assert_eq!(t.failed, 0, "{id}: requests failed {ATTEMPTS} times: {t:?}");
        assert!(t.ok > 0, "{id}: {t:?}");
        if id.starts_with('c') {
            // C never went away: nothing of its clients' traffic may fail.
            assert_eq!(t.failed_attempts, 0, "{id}: {t:?}");
        } else {
            // Only the one request in flight when B closed the connection may be lost.
            assert!(t.failed_attempts <= 1, "{id}: {t:?}");
        }
    }
    for (_, nc, _) in on_c {
        assert_eq!(nc.server_info().port, c.client.port());
    }
    drop((ra, rc));
    drop((a, c));
}
