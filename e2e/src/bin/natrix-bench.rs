//! `natrix-bench`: a small NATS load generator built on `async-nats`.
//!
//! Runs one scenario (pub, pubsub, fanout, queue, reqrep, and the JetStream modes jspub and
//! jsfetch) against a NATS-compatible server and prints exactly one machine-parsable
//! `key=value` result line on stdout. Diagnostics go to stderr. Every wait is bounded:
//! messages that never arrive are reported as `lost=K`, never as a hang.

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::{self, stream};
use async_nats::{Client, ConnectOptions, Event, Subject, Subscriber};
use bytes::Bytes;
use futures::StreamExt;

const USAGE: &str = "\
usage: natrix-bench <pub|pubsub|fanout|queue|reqrep|jspub|jsfetch> [options]

options:
  --url URL               server URL (default nats://127.0.0.1:4222)
  --size BYTES            payload size (default 16)
  --msgs N                messages (requests for reqrep) to send
                          (default 1000000; reqrep 50000; jspub, jsfetch 200000)
  --pubs N                publishers, pub mode only (default 1)
  --subs N                subscribers for fanout / queue members for queue (default 4)
  --concurrency C         concurrent requesters for reqrep (default 1)
  --duration-limit SECS   stop publishing after this long (default 120)
  --wait SECS             give up on missing messages after this long without progress (default 3)
  --sub-capacity N        client-side per-subscription buffer (default 1048576)
  --subject S             subject prefix (default bench.<pid>)

JetStream modes (the stream is file storage on <prefix>.<mode>, deleted before and after):
  jspub                   publish with asynchronous acks, --window acks in flight
  jsfetch                 store --msgs messages (not timed), then time fetching them all
                          through a durable pull consumer
  --stream NAME           stream name (default BENCH)
  --window W              jspub (and jsfetch's setup): publish acks in flight (default 256)
  --batch B               jsfetch: messages per fetch request (default 100)
  --ack explicit|none     jsfetch: consumer ack policy (default explicit; each message is
                          acked without waiting for a confirmation)

output: one line of key=value pairs, e.g.
  mode=pubsub size=16 msgs=1000000 pub_rate=... sub_rate=... mb_s=... lost=0 elapsed=...
";

/// The scenario to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Pub,
    PubSub,
    Fanout,
    Queue,
    ReqRep,
    JsPub,
    JsFetch,
}

impl Mode {
    fn parse(s: &str) -> Result<Mode> {
        Ok(match s {
            "pub" => Mode::Pub,
            "pubsub" => Mode::PubSub,
            "fanout" => Mode::Fanout,
            "queue" => Mode::Queue,
            "reqrep" => Mode::ReqRep,
            "jspub" => Mode::JsPub,
            "jsfetch" => Mode::JsFetch,
            other => bail!("unknown mode {other:?}"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Pub => "pub",
            Mode::PubSub => "pubsub",
            Mode::Fanout => "fanout",
            Mode::Queue => "queue",
            Mode::ReqRep => "reqrep",
            Mode::JsPub => "jspub",
            Mode::JsFetch => "jsfetch",
        }
    }
}

/// Parsed command line.
#[derive(Clone, Debug)]
struct Args {
    mode: Mode,
    url: String,
    size: usize,
    msgs: u64,
    pubs: usize,
    subs: usize,
    concurrency: usize,
    duration_limit: Duration,
    wait: Duration,
    sub_capacity: usize,
    subject: String,
    stream: String,
    window: usize,
    batch: usize,
    /// jsfetch: explicit acks (true) or AckNone.
    explicit_ack: bool,
}

impl Args {
    fn parse(argv: &[String]) -> Result<Option<Args>> {
        let mut mode = None;
        let mut url = "nats://127.0.0.1:4222".to_string();
        let mut size = 16usize;
        let mut msgs = None;
        let mut pubs = 1usize;
        let mut subs = 4usize;
        let mut concurrency = 1usize;
        let mut duration_limit = 120.0f64;
        let mut wait = 3.0f64;
        let mut sub_capacity = 1usize << 20;
        let mut subject = format!("bench.{}", std::process::id());
        let mut stream = "BENCH".to_string();
        let mut window = 256usize;
        let mut batch = 100usize;
        let mut explicit_ack = true;

        let mut it = argv.iter();
        while let Some(arg) = it.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(None);
            }
            if !arg.starts_with("--") {
                if mode.is_some() {
                    bail!("unexpected argument {arg:?}");
                }
                mode = Some(Mode::parse(arg)?);
                continue;
            }
            let (key, value) = match arg.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => {
                    let v = it
                        .next()
                        .ok_or_else(|| anyhow!("flag {arg} needs a value"))?;
                    (arg.clone(), v.clone())
                }
            };
            let bad = |e: &dyn std::fmt::Display| anyhow!("bad value {value:?} for {key}: {e}");
            match key.as_str() {
                "--url" => url = value.clone(),
                "--size" => size = value.parse().map_err(|e| bad(&e))?,
                "--msgs" => msgs = Some(value.parse().map_err(|e| bad(&e))?),
                "--pubs" => pubs = value.parse().map_err(|e| bad(&e))?,
                "--subs" => subs = value.parse().map_err(|e| bad(&e))?,
                "--concurrency" => concurrency = value.parse().map_err(|e| bad(&e))?,
                "--duration-limit" => duration_limit = value.parse().map_err(|e| bad(&e))?,
                "--wait" => wait = value.parse().map_err(|e| bad(&e))?,
                "--sub-capacity" => sub_capacity = value.parse().map_err(|e| bad(&e))?,
                "--subject" => subject = value.clone(),
                "--stream" => stream = value.clone(),
                "--window" => window = value.parse().map_err(|e| bad(&e))?,
                "--batch" => batch = value.parse().map_err(|e| bad(&e))?,
                "--ack" => {
                    explicit_ack = match value.as_str() {
                        "explicit" => true,
                        "none" => false,
                        _ => bail!("bad value {value:?} for --ack: expected explicit or none"),
                    }
                }
                _ => bail!("unknown flag {key}"),
            }
        }
        let mode = mode.ok_or_else(|| anyhow!("missing mode"))?;
        let msgs = msgs.unwrap_or(match mode {
            Mode::ReqRep => 50_000,
            Mode::JsPub | Mode::JsFetch => 200_000,
            _ => 1_000_000,
        });
        if msgs == 0
            || pubs == 0
            || subs == 0
            || concurrency == 0
            || sub_capacity == 0
            || window == 0
            || batch == 0
        {
            bail!(
                "--msgs, --pubs, --subs, --concurrency, --sub-capacity, --window and --batch \
                 must be positive"
            );
        }
        if !(duration_limit > 0.0 && wait > 0.0 && duration_limit.is_finite() && wait.is_finite()) {
            bail!("--duration-limit and --wait must be positive");
        }
        Ok(Some(Args {
            mode,
            url,
            size,
            msgs,
            pubs,
            subs,
            concurrency,
            duration_limit: Duration::from_secs_f64(duration_limit),
            wait: Duration::from_secs_f64(wait),
            sub_capacity,
            subject,
            stream,
            window,
            batch,
            explicit_ack,
        }))
    }
}

/// Client-side connection events worth reporting (drops and reconnects).
#[derive(Default)]
struct EventCounters {
    slow: AtomicU64,
    disconnects: AtomicU64,
}

/// Shared context of one run: arguments, time base, event counters.
struct Bench {
    args: Args,
    payload: Bytes,
    events: Arc<EventCounters>,
    /// Time origin for subscriber timestamps.
    base: Instant,
    /// Publishing stops at this instant.
    deadline: Instant,
}

impl Bench {
    async fn connect(&self, name: &str) -> Result<Client> {
        let events = self.events.clone();
        ConnectOptions::new()
            .name(format!("natrix-bench-{name}"))
            .client_capacity(64 * 1024)
            .subscription_capacity(self.args.sub_capacity)
            .read_buffer_capacity(u16::MAX)
            .request_timeout(Some(Duration::from_secs(5)))
            .connection_timeout(Duration::from_secs(5))
            .event_callback(move |ev| {
                let events = events.clone();
                async move {
                    match ev {
                        Event::SlowConsumer(_) => {
                            events.slow.fetch_add(1, Ordering::Relaxed);
                        }
                        Event::Disconnected => {
                            events.disconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        Event::ServerError(e) => eprintln!("natrix-bench: server error: {e}"),
                        _ => {}
                    }
                }
            })
            .connect(self.args.url.as_str())
            .await
            .with_context(|| format!("connecting to {}", self.args.url))
    }

    fn subject(&self) -> Subject {
        Subject::from(format!("{}.{}", self.args.subject, self.args.mode.name()))
    }

    /// How long a round trip may take: whatever is left of the run plus the idle wait.
    fn barrier_timeout(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now()) + self.args.wait + self.args.wait
    }

    /// Publishes up to `n` messages on `client`, flushes, and waits until the server has
    /// processed all of them. Returns how many were published (fewer if the duration limit hit).
    async fn publish_loop(&self, client: &Client, subject: Subject, n: u64) -> Result<u64> {
        let mut sent = 0u64;
        while sent < n {
            client
                .publish(subject.clone(), self.payload.clone())
                .await
                .context("publish")?;
            sent += 1;
            if sent & 1023 == 0 && Instant::now() >= self.deadline {
                eprintln!("natrix-bench: duration limit reached after {sent} messages");
                break;
            }
        }
        client.flush().await.context("flush")?;
        round_trip(client, self.barrier_timeout()).await?;
        Ok(sent)
    }

    /// Subscribes on its own connection and confirms the server registered the interest.
    async fn subscriber(&self, name: &str, queue: Option<&str>) -> Result<(Client, Subscriber)> {
        let client = self.connect(name).await?;
        let sub = match queue {
            Some(q) => {
                client
                    .queue_subscribe(self.subject(), q.to_string())
                    .await?
            }
            None => client.subscribe(self.subject()).await?,
        };
        round_trip(&client, Duration::from_secs(10)).await?;
        Ok((client, sub))
    }

    /// A JetStream context on `client` that allows `--window` publish acks in flight and bounds
    /// every API request and publish ack by `JS_TIMEOUT`.
    fn jetstream(&self, client: Client) -> jetstream::Context {
        jetstream::ContextBuilder::new()
            .timeout(JS_TIMEOUT)
            .max_ack_inflight(self.args.window)
            .build(client)
    }

    /// Deletes any leftover stream named `--stream` and creates it empty, file storage, on
    /// `subject()`.
    async fn fresh_stream(&self, js: &jetstream::Context) -> Result<()> {
        // Not-found is the normal case; anything else shows up when creating.
        let _ = js.delete_stream(&self.args.stream).await;
        js.create_stream(stream::Config {
            name: self.args.stream.clone(),
            subjects: vec![self.subject().to_string()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating stream {}", self.args.stream))?;
        Ok(())
    }

    /// Deletes the bench stream; a failure is only reported.
    async fn drop_stream(&self, js: &jetstream::Context) {
        if let Err(e) = js.delete_stream(&self.args.stream).await {
            eprintln!("natrix-bench: deleting stream {}: {e}", self.args.stream);
        }
    }

    /// Publishes up to `n` messages to JetStream keeping at most `--window` acks in flight: once
    /// the window is full, the oldest ack is awaited before the next publish. Stops early at the
    /// duration limit or on the first ack timeout (the server stopped answering). Returns
    /// (published, acknowledged).
    async fn js_publish_window(&self, js: &jetstream::Context, n: u64) -> Result<(u64, u64)> {
        let window = self.args.window;
        let subject = self.subject();
        let mut inflight: VecDeque<PublishAckFuture> = VecDeque::with_capacity(window);
        let mut sent = 0u64;
        let mut acked = 0u64;
        let mut errors = 0u64;
        let mut note = |r: Result<_, jetstream::context::PublishError>, errors: &mut u64| match r {
            Ok(_) => {
                acked += 1;
                true
            }
            Err(e) => {
                *errors += 1;
                if *errors <= 3 {
                    eprintln!("natrix-bench: publish ack failed: {e}");
                }
                e.kind() != PublishErrorKind::TimedOut
            }
        };
        while sent < n {
            if inflight.len() >= window {
                let oldest = inflight.pop_front().expect("window is not empty");
                if !note(oldest.await, &mut errors) {
                    eprintln!(
                        "natrix-bench: publish ack timed out after {sent} messages; stopping"
                    );
                    break;
                }
            }
            let ack = js
                .publish(subject.clone(), self.payload.clone())
                .await
                .context("jetstream publish")?;
            inflight.push_back(ack);
            sent += 1;
            if sent & 1023 == 0 && Instant::now() >= self.deadline {
                eprintln!("natrix-bench: duration limit reached after {sent} messages");
                break;
            }
        }
        // Await the rest together so that, if the server went quiet, their timeouts overlap.
        let rest = futures::future::join_all(inflight.into_iter().map(IntoFuture::into_future));
        for r in rest.await {
            note(r, &mut errors);
        }
        Ok((sent, acked))
    }
}

/// Bound on JetStream API requests and publish acks.
const JS_TIMEOUT: Duration = Duration::from_secs(10);

/// Server-side barrier: publishes to a private inbox on `client` and waits for the echo.
/// A server processes one connection's operations in order, so when the echo arrives,
/// everything sent before it (subscriptions, publishes) has been processed.
async fn round_trip(client: &Client, limit: Duration) -> Result<()> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await?;
    client.publish(inbox, Bytes::new()).await?;
    client.flush().await?;
    match tokio::time::timeout(limit, sub.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => bail!("barrier subscription closed"),
        Err(_) => bail!("server did not answer a round trip within {limit:?}"),
    }
}

/// What one counting subscriber has seen so far (times are ns since `Bench::base`).
struct SubStats {
    count: AtomicU64,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
}

impl SubStats {
    fn new() -> Arc<SubStats> {
        Arc::new(SubStats {
            count: AtomicU64::new(0),
            first_ns: AtomicU64::new(u64::MAX),
            last_ns: AtomicU64::new(0),
        })
    }
}

/// Counts messages from `sub` into `stats` until the subscription ends or the task is aborted.
async fn count_messages(mut sub: Subscriber, stats: Arc<SubStats>, base: Instant) {
    let mut n = 0u64;
    while let Some(_msg) = sub.next().await {
        let t = base.elapsed().as_nanos() as u64;
        if n == 0 {
            stats.first_ns.store(t, Ordering::Relaxed);
        }
        n += 1;
        stats.last_ns.store(t, Ordering::Relaxed);
        stats.count.store(n, Ordering::Release);
    }
}

/// Aggregate over a set of subscribers.
struct Received {
    total: u64,
    per_sub: Vec<u64>,
    /// Seconds from the first message (any subscriber) to the last one.
    span: f64,
}

fn total_count(stats: &[Arc<SubStats>]) -> u64 {
    stats.iter().map(|s| s.count.load(Ordering::Acquire)).sum()
}

/// Waits until `expected` messages arrived in total, or nothing arrived for `idle`.
async fn wait_for(stats: &[Arc<SubStats>], expected: u64, idle: Duration) -> Received {
    let mut last_total = total_count(stats);
    let mut last_progress = Instant::now();
    loop {
        let total = total_count(stats);
        if total >= expected {
            break;
        }
        if total != last_total {
            last_total = total;
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= idle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let per_sub: Vec<u64> = stats
        .iter()
        .map(|s| s.count.load(Ordering::Acquire))
        .collect();
    let first = stats
        .iter()
        .map(|s| s.first_ns.load(Ordering::Relaxed))
        .min()
        .unwrap_or(u64::MAX);
    let last = stats
        .iter()
        .map(|s| s.last_ns.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let span = if first == u64::MAX || last <= first {
        0.0
    } else {
        (last - first) as f64 / 1e9
    };
    Received {
        total: per_sub.iter().sum(),
        per_sub,
        span,
    }
}

fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

fn mb_s(n: u64, size: usize, secs: f64) -> f64 {
    rate(n, secs) * size as f64 / 1e6
}

/// pub: N publishers on their own connections blast `msgs` in total.
async fn run_pub(b: &Bench) -> Result<String> {
    let a = &b.args;
    let mut clients = Vec::with_capacity(a.pubs);
    for i in 0..a.pubs {
        clients.push(b.connect(&format!("pub{i}")).await?);
    }
    let per = a.msgs / a.pubs as u64;
    let extra = a.msgs % a.pubs as u64;
    let start = Instant::now();
    let results = futures::future::join_all(clients.iter().enumerate().map(|(i, c)| {
        let n = per + u64::from((i as u64) < extra);
        b.publish_loop(c, b.subject(), n)
    }))
    .await;
    let elapsed = start.elapsed().as_secs_f64();
    let mut sent = 0;
    for r in results {
        sent += r?;
    }
    Ok(format!(
        "mode=pub size={} msgs={} pubs={} rate={:.0} mb_s={:.2} elapsed={:.3}",
        a.size,
        sent,
        a.pubs,
        rate(sent, elapsed),
        mb_s(sent, a.size, elapsed),
        elapsed
    ))
}

/// pubsub / fanout / queue: one publisher, `nsubs` subscribers (optionally a queue group).
async fn run_sub_modes(b: &Bench) -> Result<String> {
    let a = &b.args;
    let (nsubs, queue) = match a.mode {
        Mode::PubSub => (1, None),
        Mode::Fanout => (a.subs, None),
        Mode::Queue => (a.subs, Some("bench-q")),
        _ => unreachable!("not a subscriber mode"),
    };
    let mut stats = Vec::with_capacity(nsubs);
    let mut tasks = Vec::with_capacity(nsubs);
    let mut sub_clients = Vec::with_capacity(nsubs);
    for i in 0..nsubs {
        let (client, sub) = b.subscriber(&format!("sub{i}"), queue).await?;
        let s = SubStats::new();
        tasks.push(tokio::spawn(count_messages(sub, s.clone(), b.base)));
        stats.push(s);
        sub_clients.push(client);
    }
    let publisher = b.connect("pub").await?;

    let start = Instant::now();
    let sent = b.publish_loop(&publisher, b.subject(), a.msgs).await?;
    let pub_elapsed = start.elapsed().as_secs_f64();
    let expected = if queue.is_some() {
        sent
    } else {
        sent * nsubs as u64
    };
    let got = wait_for(&stats, expected, a.wait).await;
    let elapsed = start.elapsed().as_secs_f64();
    for t in &tasks {
        t.abort();
    }
    let lost = expected.saturating_sub(got.total);
    let slow = b.events.slow.load(Ordering::Relaxed);
    let disc = b.events.disconnects.load(Ordering::Relaxed);
    let pub_rate = rate(sent, pub_elapsed);
    let sub_rate = rate(got.total, got.span);
    let mb = mb_s(got.total, a.size, got.span);
    let line = match a.mode {
        Mode::PubSub => format!(
            "mode=pubsub size={} msgs={} pub_rate={:.0} sub_rate={:.0} mb_s={:.2} lost={} \
             slow={} disc={} elapsed={:.3}",
            a.size, sent, pub_rate, sub_rate, mb, lost, slow, disc, elapsed
        ),
        Mode::Fanout => format!(
            "mode=fanout size={} msgs={} subs={} pub_rate={:.0} rate={:.0} mb_s={:.2} lost={} \
             slow={} disc={} elapsed={:.3}",
            a.size, sent, nsubs, pub_rate, sub_rate, mb, lost, slow, disc, elapsed
        ),
        _ => format!(
            "mode=queue size={} msgs={} subs={} pub_rate={:.0} rate={:.0} mb_s={:.2} min={} \
             max={} lost={} slow={} disc={} elapsed={:.3}",
            a.size,
            sent,
            nsubs,
            pub_rate,
            sub_rate,
            mb,
            got.per_sub.iter().min().copied().unwrap_or(0),
            got.per_sub.iter().max().copied().unwrap_or(0),
            lost,
            slow,
            disc,
            elapsed
        ),
    };
    drop(sub_clients);
    Ok(line)
}

/// Nearest-rank percentile of sorted `v` (`p` in 0..=1), in microseconds.
fn percentile_us(v: &[u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1] as f64 / 1e3
}

/// reqrep: one responder, `concurrency` requesters doing sequential requests.
async fn run_reqrep(b: &Bench) -> Result<String> {
    let a = &b.args;
    let (responder, mut sub) = b.subscriber("rep", None).await?;
    let reply_payload = b.payload.clone();
    let rep_client = responder.clone();
    let rep_task = tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply {
                if rep_client
                    .publish(reply, reply_payload.clone())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    });

    let requester = b.connect("req").await?;
    // Warm up: set up the response inbox and let both sides settle.
    for _ in 0..100 {
        requester
            .request(b.subject(), b.payload.clone())
            .await
            .context("warm-up request")?;
    }

    let c = a.concurrency as u64;
    let per = a.msgs / c;
    let extra = a.msgs % c;
    let start = Instant::now();
    let workers = (0..c).map(|i| {
        let client = requester.clone();
        let subject = b.subject();
        let payload = b.payload.clone();
        let deadline = b.deadline;
        let n = per + u64::from(i < extra);
        tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n as usize);
            let mut errors = 0u64;
            for _ in 0..n {
                let t0 = Instant::now();
                match client.request(subject.clone(), payload.clone()).await {
                    Ok(_) => lat.push(t0.elapsed().as_nanos() as u64),
                    Err(e) => {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!("natrix-bench: request failed: {e}");
                        }
                    }
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            (lat, errors)
        })
    });
    let results = futures::future::join_all(workers).await;
    let elapsed = start.elapsed().as_secs_f64();
    rep_task.abort();

    let mut lat = Vec::with_capacity(a.msgs as usize);
    let mut errors = 0;
    for r in results {
        let (l, e) = r.context("requester task")?;
        lat.extend(l);
        errors += e;
    }
    lat.sort_unstable();
    let ok = lat.len() as u64;
    Ok(format!(
        "mode=reqrep size={} msgs={} concurrency={} req_s={:.0} p50_us={:.1} p99_us={:.1} \
         p999_us={:.1} max_us={:.1} errors={} elapsed={:.3}",
        a.size,
        ok,
        a.concurrency,
        rate(ok, elapsed),
        percentile_us(&lat, 0.50),
        percentile_us(&lat, 0.99),
        percentile_us(&lat, 0.999),
        lat.last().map_or(0.0, |&v| v as f64 / 1e3),
        errors,
        elapsed
    ))
}

/// Number of messages in the bench stream, if the server says.
async fn stored_messages(js: &jetstream::Context, name: &str) -> Option<u64> {
    let mut st = js.get_stream(name).await.ok()?;
    st.info().await.ok().map(|i| i.state.messages)
}

/// jspub: one publisher, asynchronous publish acks with `--window` in flight, into a fresh
/// file-storage stream. The time covers publishing and receiving every ack.
async fn run_jspub(b: &Bench) -> Result<String> {
    let a = &b.args;
    let client = b.connect("jspub").await?;
    let js = b.jetstream(client.clone());
    b.fresh_stream(&js).await?;

    let start = Instant::now();
    let published = b.js_publish_window(&js, a.msgs).await;
    let elapsed = start.elapsed().as_secs_f64();
    let stored = stored_messages(&js, &a.stream).await;
    b.drop_stream(&js).await;
    let (sent, acked) = published?;
    let disc = b.events.disconnects.load(Ordering::Relaxed);
    Ok(format!(
        "mode=jspub size={} msgs={} window={} rate={:.0} mb_s={:.2} lost={} stored={} disc={} \
         elapsed={:.3}",
        a.size,
        sent,
        a.window,
        rate(acked, elapsed),
        mb_s(acked, a.size, elapsed),
        sent - acked,
        stored.map_or("n/a".to_string(), |n| n.to_string()),
        disc,
        elapsed
    ))
}

/// jsfetch: stores `--msgs` messages (not timed), then times one durable pull consumer fetching
/// them all in batches of `--batch`, acking each message (fire and forget) unless `--ack none`.
async fn run_jsfetch(b: &Bench) -> Result<String> {
    let client = b.connect("jsfetch").await?;
    let js = b.jetstream(client.clone());
    b.fresh_stream(&js).await?;
    let result = fetch_all(b, &client, &js).await;
    b.drop_stream(&js).await;
    result
}

async fn fetch_all(b: &Bench, client: &Client, js: &jetstream::Context) -> Result<String> {
    let a = &b.args;
    let (sent, acked) = b.js_publish_window(js, a.msgs).await?;
    if acked < sent {
        bail!("preparing the stream: only {acked} of {sent} publishes were acknowledged");
    }
    let consumer: PullConsumer = js
        .get_stream(&a.stream)
        .await
        .context("looking up the stream")?
        .create_consumer(pull::Config {
            durable_name: Some("BENCH_C".to_string()),
            ack_policy: if a.explicit_ack {
                AckPolicy::Explicit
            } else {
                AckPolicy::None
            },
            ..Default::default()
        })
        .await
        .context("creating the pull consumer")?;

    let start = Instant::now();
    let mut received = 0u64;
    let mut errors = 0u64;
    let mut last_progress = Instant::now();
    'fetching: while received < sent {
        if Instant::now() >= b.deadline {
            eprintln!("natrix-bench: duration limit reached after {received} messages");
            break;
        }
        let mut batch = consumer
            .fetch()
            .max_messages(a.batch)
            .messages()
            .await
            .context("fetch request")?;
        let before = received;
        loop {
            match tokio::time::timeout(a.wait, batch.next()).await {
                Ok(Some(Ok(msg))) => {
                    if a.explicit_ack {
                        msg.ack().await.map_err(|e| anyhow!("ack: {e}"))?;
                    }
                    received += 1;
                }
                Ok(Some(Err(e))) => {
                    errors += 1;
                    if errors <= 3 {
                        eprintln!("natrix-bench: fetch failed: {e}");
                    }
                    break;
                }
                Ok(None) => break,
                Err(_) => {
                    eprintln!(
                        "natrix-bench: a fetch neither delivered nor ended within {:?} after \
                         {received} messages",
                        a.wait
                    );
                    break 'fetching;
                }
            }
        }
        if received > before {
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= a.wait {
            eprintln!(
                "natrix-bench: no messages for {:?} after {received} of {sent}",
                a.wait
            );
            break;
        } else {
            // Nothing available right now (e.g. acks still in flight): do not spin.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    client.flush().await.context("flush")?;
    let elapsed = start.elapsed().as_secs_f64();

    // Not timed: wait until the server has processed the acks.
    let mut ack_pending = None;
    if a.explicit_ack {
        let give_up = Instant::now() + a.wait;
        loop {
            match consumer.get_info().await {
                Ok(info) => {
                    ack_pending = Some(info.num_ack_pending);
                    if info.num_ack_pending == 0 || Instant::now() >= give_up {
                        break;
                    }
                }
                Err(e) => {
                    eprintln!("natrix-bench: consumer info: {e}");
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let disc = b.events.disconnects.load(Ordering::Relaxed);
    Ok(format!(
        "mode=jsfetch size={} msgs={} batch={} ack={} rate={:.0} mb_s={:.2} lost={} \
         ack_pending={} errors={} disc={} elapsed={:.3}",
        a.size,
        received,
        a.batch,
        if a.explicit_ack { "explicit" } else { "none" },
        rate(received, elapsed),
        mb_s(received, a.size, elapsed),
        sent.saturating_sub(received),
        ack_pending.map_or("n/a".to_string(), |n| n.to_string()),
        errors,
        disc,
        elapsed
    ))
}

async fn run(args: Args) -> Result<String> {
    let now = Instant::now();
    let bench = Bench {
        payload: Bytes::from(vec![b'x'; args.size]),
        events: Arc::new(EventCounters::default()),
        base: now,
        deadline: now + args.duration_limit,
        args,
    };
    match bench.args.mode {
        Mode::Pub => run_pub(&bench).await,
        Mode::PubSub | Mode::Fanout | Mode::Queue => run_sub_modes(&bench).await,
        Mode::ReqRep => run_reqrep(&bench).await,
        Mode::JsPub => run_jspub(&bench).await,
        Mode::JsFetch => run_jsfetch(&bench).await,
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match Args::parse(&argv) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("natrix-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("natrix-bench: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Last-resort bound on the whole run (e.g. a server that stops reading mid-run, which can
    // block the publisher on a full client buffer).
    let limit = args.duration_limit + args.wait * 2 + Duration::from_secs(15);
    let result = runtime.block_on(async move {
        tokio::time::timeout(limit, run(args))
            .await
            .unwrap_or_else(|_| Err(anyhow!("run did not finish within {limit:?}")))
    });
    // Do not wait for lingering connection tasks.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("natrix-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
