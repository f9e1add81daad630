//! A stream: its own thread owns the store, the consumers and the de-duplication window, and
//! takes everything (publishes, API requests, acks, pull requests) from one queue, so no locks
//! guard stream state. Each turn of the loop takes a batch from the queue, applies it, writes
//! the store (group commit), then sends the publish acks and the consumer deliveries.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::config::{
    AckPolicy, Compression, ConsumerConfig, Discard, Retention, Storage, StreamConfig,
};
use super::consumer::{Consumer, ConsumerState, Ctx};
use super::counter::BigInt;
use super::crypt;
use super::errors::ApiError;
use super::headers;
use super::store::{Store, StoreState};
use super::time::rfc3339_nanos;
use super::JetStream as JsShared;
use crate::accounts::Account;
use crate::clock::unix_nanos;
use crate::server::client::{InternalSender, Subscription};
use crate::server::Server;

mod atomic;
mod fast_batch;
mod schedule;
pub mod snapshot;
mod source;
use source::{Origin, OriginEvent};

/// What a stream's thread is asked to do.
pub enum Cmd {
    /// A message published on one of the stream's subjects.
    Msg {
        subject: String,
        reply: Option<String>,
        hdr: Bytes,
        data: Bytes,
    },
    /// A stream-level API request; the stream answers on `reply`.
    Api {
        op: Op,
        reply: Option<String>,
        body: Bytes,
        /// Set when someone listens to the API audit advisory.
        audit: Option<Box<super::advisory::Audit>>,
    },
    /// A message on `$JS.ACK.<stream>.<consumer>....`.
    Ack {
        subject: String,
        reply: Option<String>,
        body: Bytes,
    },
    /// A flow-control answer (`$JS.FC.<stream>.<consumer>.<n>`).
    FlowControl { subject: String, hdr: Bytes },
    /// A pull request.
    Next {
        consumer: String,
        reply: String,
        body: Bytes,
    },
    /// `DIRECT.GET`, with the last-by-subject form's subject.
    DirectGet {
        reply: String,
        body: Bytes,
        subject: Option<String>,
    },
    /// A new configuration, already validated against the account.
    Update {
        cfg: Box<StreamConfig>,
        done: SyncSender<Result<Value, ApiError>>,
    },
    /// The stream's info (for `STREAM.LIST`).
    Info { done: SyncSender<Value> },
    /// The stream's info and its consumers' infos (for `/jsz`).
    Detail {
        done: SyncSender<(Value, Vec<Value>)>,
    },
    /// Something for the mirror or source at `idx` (from consumer `generation`).
    Origin {
        idx: usize,
        generation: u64,
        event: OriginEvent,
    },
    /// Stop the thread; with `delete`, remove the stream's files.
    Stop { delete: bool, done: SyncSender<()> },
    /// A step of a backup or a restore.
    Snapshot(snapshot::SnapCmd),
}

/// Stream-level API operations.
#[derive(Debug)]
pub enum Op {
    Info,
    Purge,
    MsgGet,
    MsgDelete,
    /// `CONSUMER.CREATE` / `DURABLE.CREATE`: the name and filter from the subject.
    ConsumerCreate {
        name: Option<String>,
        filter: Option<String>,
        durable_api: bool,
    },
    ConsumerInfo(String),
    /// `CONSUMER.PAUSE`.
    ConsumerPause(String),
    /// `CONSUMER.UNPIN`.
    ConsumerUnpin(String),
    /// `CONSUMER.RESET`.
    /// `CONSUMER.RESET`; `too_new`: the request asked for a newer API level.
    ConsumerReset {
        name: String,
        too_new: bool,
    },
    ConsumerDelete(String),
    ConsumerList,
    ConsumerNames,
}

/// The shared face of a stream: its queue and the numbers others read without asking it.
#[derive(Debug)]
pub struct StreamHandle {
    pub name: String,
    pub tx: Mutex<Sender<Cmd>>,
    pub cfg: RwLock<StreamConfig>,
    pub created: i64,
    pub subs: Mutex<Vec<Arc<Subscription>>>,
    pub msgs: AtomicU64,
    pub bytes: AtomicU64,
    pub consumers: AtomicU64,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl StreamHandle {
    /// Queues a command (dropped if the stream has stopped).
    pub fn send(&self, cmd: Cmd) {
        let _ = self.tx.lock().send(cmd);
    }

    /// Stops the thread and waits for it.
    pub fn stop(&self, delete: bool) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.send(Cmd::Stop { delete, done: tx });
        let _ = rx.recv_timeout(Duration::from_secs(10));
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }

    /// Whether the stream's thread is running.
    pub fn running(&self) -> bool {
        self.thread
            .lock()
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// Asks the stream for its info.
    pub fn info(&self) -> Option<Value> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.send(Cmd::Info { done: tx });
        rx.recv_timeout(Duration::from_secs(5)).ok()
    }

    /// Asks the stream for its info and its consumers' infos.
    pub fn detail(&self) -> Option<(Value, Vec<Value>)> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.send(Cmd::Detail { done: tx });
        rx.recv_timeout(Duration::from_secs(5)).ok()
    }

    /// Storage type.
    pub fn storage(&self) -> Storage {
        self.cfg.read().storage
    }
}

/// `meta.inf` of a stream or consumer.
#[derive(Serialize, Deserialize)]
struct Meta<C> {
    config: C,
    created: i64,
}

/// Everything a stream thread starts with.
pub struct Spawn {
    pub cfg: StreamConfig,
    pub created: i64,
    /// `None` for memory storage.
    pub dir: Option<PathBuf>,
    pub server: Weak<Server>,
    pub account: Arc<Account>,
    pub shared: Arc<JsShared>,
    /// Whether this is a new stream (files and first sequence to be set up).
    pub fresh: bool,
}

/// Opens the store, restores consumers and starts the thread.
pub fn spawn(s: Spawn) -> Result<Arc<StreamHandle>, ApiError> {
    let mut key = None;
    let mut store = match &s.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| {
                ApiError::new(
                    10049,
                    500,
                    &format!("could not create stream directory: {e}"),
                )
            })?;
            key = crypt::stream_key(dir, &s.cfg.name, s.shared.encryption.as_ref())
                .map_err(|e| ApiError::new(10049, 500, &e.to_string()))?;
            // Metadata written before encryption was enabled is sealed now.
            let plain_meta = key.is_some()
                && std::fs::read(dir.join("meta.inf")).is_ok_and(|b| !crypt::is_sealed(&b));
            if s.fresh || plain_meta {
                let meta = Meta {
                    config: &s.cfg,
                    created: s.created,
                };
                crypt::write_file(
                    key.as_deref(),
                    &dir.join("meta.inf"),
                    &serde_json::to_vec(&meta).expect("config serializes"),
                )
                .map_err(|e| {
                    ApiError::new(10049, 500, &format!("could not write stream metadata: {e}"))
                })?;
            }
            Store::open_file_keyed(&dir.join("msgs"), s.shared.sync_always, key.clone())
                .map_err(|e| ApiError::new(10049, 500, &e.to_string()))?
        }
        None => Store::memory(),
    };
    store.set_compress(s.cfg.compression == Compression::S2);
    if s.fresh && s.cfg.first_seq > 1 {
        store
            .set_first_seq(s.cfg.first_seq)
            .map_err(|e| ApiError::new(10049, 500, &e.to_string()))?;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = Arc::new(StreamHandle {
        name: s.cfg.name.clone(),
        tx: Mutex::new(tx),
        cfg: RwLock::new(s.cfg.clone()),
        created: s.created,
        subs: Mutex::new(Vec::new()),
        msgs: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        consumers: AtomicU64::new(0),
        thread: Mutex::new(None),
    });
    let mut stream = Stream {
        name: s.cfg.name.clone(),
        cfg: s.cfg,
        created: s.created,
        dir: s.dir,
        key,
        store,
        consumers: BTreeMap::new(),
        dedupe: HashMap::new(),
        dedupe_order: VecDeque::new(),
        last_msg_id: None,
        server: s.server,
        account: s.account,
        shared: s.shared,
        handle: Arc::downgrade(&handle),
        sender: InternalSender::default(),
        acks: Vec::new(),
        last_sync: Instant::now(),
        last_state_save: Instant::now(),
        wake: false,
        origins: Vec::new(),
        ttls: std::collections::BTreeSet::new(),
        markers: std::collections::HashSet::new(),
        snapshots: 0,
        atomic: HashMap::new(),
        fast: HashMap::new(),
        capture: None,
        schedules: BTreeMap::new(),
        firing: false,
    };
    stream.start_origins();
    stream.restore_consumers();
    stream.rebuild_dedupe();
    stream.rebuild_ttls();
    stream.rebuild_schedules();
    stream.publish_numbers();
    let t = std::thread::Builder::new()
        .name(format!("js-{}", stream.name))
        .spawn(move || stream.run(rx))
        .map_err(|e| ApiError::new(10049, 500, &format!("could not start stream: {e}")))?;
    *handle.thread.lock() = Some(t);
    Ok(handle)
}

struct Stream {
    name: String,
    cfg: StreamConfig,
    created: i64,
    dir: Option<PathBuf>,
    /// The key of an encrypted file stream.
    key: Option<Arc<crypt::StreamKey>>,
    store: Store,
    consumers: BTreeMap<String, Consumer>,
    /// `Nats-Msg-Id` → sequence, inside the duplicate window.
    dedupe: HashMap<String, u64>,
    dedupe_order: VecDeque<(i64, String)>,
    last_msg_id: Option<String>,
    server: Weak<Server>,
    account: Arc<Account>,
    shared: Arc<JsShared>,
    handle: Weak<StreamHandle>,
    sender: InternalSender,
    /// Publish acks waiting for the store to be written.
    acks: Vec<(String, Vec<u8>)>,
    last_sync: Instant,
    last_state_save: Instant,
    /// New messages or requests: consumers should try to deliver.
    wake: bool,
    /// The mirror or the sources this stream copies from.
    origins: Vec<Origin>,
    /// Messages with a `Nats-TTL`: (expiry in unix nanos, sequence), earliest first.
    ttls: std::collections::BTreeSet<(i64, u64)>,
    /// Subject delete markers held (exempt from `max_age`; their own TTL removes them).
    markers: std::collections::HashSet<u64>,
    /// Backups running (limits and retention wait while any is).
    snapshots: u32,
    /// Atomic batches being staged, by `Nats-Batch-Id`.
    atomic: HashMap<String, atomic::AtomicBatch>,
    /// Fast batches in flight, by batch id.
    fast: HashMap<String, fast_batch::FastBatch>,
    /// While a fast batch message is stored: its answer, kept instead of sent.
    capture: Option<Option<Vec<u8>>>,
    /// Message schedules by subject.
    schedules: BTreeMap<String, schedule::Scheduled>,
    /// A schedule's message is being stored (its scheduler headers are the stream's own).
    firing: bool,
}

/// How often dirty consumer state is written to disk.
const STATE_SAVE_INTERVAL: Duration = Duration::from_millis(100);

impl Stream {
    fn run(mut self, rx: Receiver<Cmd>) {
        loop {
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(1));
            let first = match rx.recv_timeout(timeout) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return self.close(false, None),
            };
            let Some(server) = self.server.upgrade() else {
                return self.close(false, None);
            };
            let mut next = first;
            let mut n = 0;
            while let Some(cmd) = next.take() {
                if let Cmd::Stop { delete, done } = cmd {
                    self.finish_batch(&server);
                    return self.close(delete, Some(done));
                }
                self.handle(&server, cmd);
                n += 1;
                if n >= 4096 {
                    break;
                }
                next = rx.try_recv().ok();
            }
            self.finish_batch(&server);
        }
    }

    /// Group commit: write the batch, then acknowledge it, then deliver.
    fn finish_batch(&mut self, server: &Server) {
        self.publish_numbers();
        if let Err(e) = self.store.flush() {
            tracing::error!(
                "JetStream stream '{} > {}' write failed: {e}",
                self.account.name,
                self.name
            );
            let err = ApiError::stream_store_failed(&e.to_string());
            for (reply, _) in std::mem::take(&mut self.acks) {
                let body = json!({"error": err}).to_string();
                self.sender.send(
                    server,
                    &self.account,
                    reply.as_bytes(),
                    None,
                    None,
                    body.as_bytes(),
                );
            }
        }
        for (reply, body) in std::mem::take(&mut self.acks) {
            self.sender
                .send(server, &self.account, reply.as_bytes(), None, None, &body);
        }
        self.timers(server);
        if self.wake {
            self.wake = false;
            self.deliver_all(server);
        }
        self.sender.flush(server);
        if self.last_sync.elapsed() >= self.shared.sync_interval {
            self.last_sync = Instant::now();
            if let Err(e) = self.store.sync() {
                tracing::error!(
                    "JetStream stream '{} > {}' sync failed: {e}",
                    self.account.name,
                    self.name
                );
            }
        }
        if self.last_state_save.elapsed() >= STATE_SAVE_INTERVAL {
            self.save_consumers(false);
        }
        self.publish_numbers();
    }

    fn publish_numbers(&self) {
        if let Some(h) = self.handle.upgrade() {
            let st = self.store.state();
            h.msgs.store(st.msgs, Ordering::Relaxed);
            h.bytes.store(st.bytes, Ordering::Relaxed);
            h.consumers
                .store(self.consumers.len() as u64, Ordering::Relaxed);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut d = Some(self.last_sync + self.shared.sync_interval);
        let mut min = |t: Instant| d = Some(d.map_or(t, |x: Instant| x.min(t)));
        if let Some(t) = self.origins_deadline() {
            min(t);
        }
        if let Some(&(at, _)) = self.ttls.first() {
            let left = (at - unix_nanos()).max(0) as u64;
            min(Instant::now() + Duration::from_nanos(left));
        }
        if let Some(t) = self.batches_deadline() {
            min(t);
        }
        if let Some(t) = self.fast_batches_deadline() {
            min(t);
        }
        if let Some(t) = self.schedules_deadline() {
            min(t);
        }
        for c in self.consumers.values() {
            if let Some(t) = c.next_deadline() {
                min(t);
            }
            if c.dirty {
                min(self.last_state_save + STATE_SAVE_INTERVAL);
            }
        }
        if self.cfg.max_age > 0 && !self.snapshotting() {
            if let Some((_, ts)) = self.store.first_msg() {
                let age = unix_nanos() - ts;
                let left = (self.cfg.max_age - age).max(0) as u64;
                min(Instant::now() + Duration::from_nanos(left));
            }
        }
        d
    }

    fn ctx<'a>(&'a mut self, server: &'a Server) -> (Ctx<'a>, &'a mut BTreeMap<String, Consumer>) {
        (
            Ctx {
                server,
                account: &self.account,
                sender: &mut self.sender,
                store: &mut self.store,
                stream: &self.name,
            },
            &mut self.consumers,
        )
    }

    fn deliver_all(&mut self, server: &Server) {
        let mut acked = Vec::new();
        {
            let no_ack_cons = {
                let (mut ctx, consumers) = self.ctx(server);
                let mut v = Vec::new();
                for c in consumers.values_mut() {
                    let before = c.st.last_sseq;
                    c.deliver(&mut ctx);
                    if c.cfg.ack_policy == AckPolicy::None && c.st.last_sseq > before {
                        v.push((before + 1, c.st.last_sseq));
                    }
                }
                v
            };
            if self.cfg.retention != Retention::Limits {
                for (from, to) in no_ack_cons {
                    acked.extend(from..=to);
                }
            }
        }
        self.retire(&acked);
    }

    fn timers(&mut self, server: &Server) {
        if !self.origins.is_empty() {
            self.origin_timers(server);
        }
        let now = Instant::now();
        if !self.atomic.is_empty() {
            self.expire_batches(now);
        }
        if !self.fast.is_empty() {
            self.expire_fast_batches(now);
        }
        if !self.schedules.is_empty() {
            self.fire_schedules(server);
        }
        // Per-message TTLs.
        let wall = unix_nanos();
        while !self.snapshotting() {
            let Some(&(at, seq)) = self.ttls.first() else {
                break;
            };
            if at > wall {
                break;
            }
            self.ttls.pop_first();
            self.remove_expired(server, seq);
        }
        // max_age.
        if self.cfg.max_age > 0 && !self.snapshotting() {
            let cutoff = unix_nanos() - self.cfg.max_age;
            let mut next = self.store.first_msg().map(|(s, _)| s);
            while let Some(seq) = next {
                match self.store.peek(seq) {
                    Some((_, _, ts)) if ts <= cutoff => {}
                    _ => break,
                }
                next = self.store.next_matching(seq + 1, &[]);
                if !self.markers.contains(&seq) {
                    self.remove_expired(server, seq);
                }
            }
        }
        let mut dropped = Vec::new();
        let mut gone = Vec::new();
        {
            let (mut ctx, consumers) = self.ctx(server);
            for (name, c) in consumers.iter_mut() {
                if c.next_deadline().is_some_and(|d| d <= now) {
                    let gave_up = c.tick(&mut ctx, now);
                    for (seq, deliveries) in &gave_up {
                        super::advisory::publish(
                            ctx.server,
                            ctx.account,
                            ctx.sender,
                            &format!(
                                "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{name}",
                                ctx.stream
                            ),
                            "io.nats.jetstream.advisory.v1.max_deliver",
                            serde_json::json!({"stream": ctx.stream, "consumer": name, "stream_seq": seq, "deliveries": deliveries}),
                        );
                    }
                    dropped.extend(gave_up.into_iter().map(|(s, _)| s));
                }
                if c.cfg.durable_name.as_deref().is_none_or(str::is_empty) && c.inactive(&ctx, now)
                {
                    gone.push(name.clone());
                }
            }
        }
        for name in gone {
            tracing::debug!(
                "JetStream deleting inactive consumer '{} > {} > {name}'",
                self.account.name,
                self.name
            );
            self.delete_consumer(server, &name);
        }
        if !dropped.is_empty() {
            self.wake = true;
            if self.cfg.retention != Retention::Limits {
                self.retire(&dropped);
            }
        }
        // Redeliveries may be due.
        if self
            .consumers
            .values()
            .any(|c| c.next_deadline().is_some_and(|d| d <= now))
        {
            self.wake = true;
        }
        self.wake = true;
    }

    fn handle(&mut self, server: &Server, cmd: Cmd) {
        match cmd {
            Cmd::Msg {
                subject,
                reply,
                hdr,
                data,
            } => self.process_msg(server, &subject, reply, &hdr, &data),
            Cmd::Api {
                op,
                reply,
                body,
                audit,
            } => {
                let resp = self.api(server, op, &body);
                // Counts others read (jsz, account info) are current before the answer.
                self.publish_numbers();
                if let (Some(r), Some(resp)) = (reply, resp) {
                    self.sender.send(
                        server,
                        &self.account,
                        r.as_bytes(),
                        None,
                        None,
                        resp.as_bytes(),
                    );
                    if let Some(a) = &audit {
                        super::advisory::api_audit(
                            server,
                            &self.account,
                            &mut self.sender,
                            a,
                            &resp,
                        );
                    }
                }
            }
            Cmd::Ack {
                subject,
                reply,
                body,
            } => self.process_ack(server, &subject, reply.as_deref(), &body),
            Cmd::Next {
                consumer,
                reply,
                body,
            } => {
                let (mut ctx, consumers) = self.ctx(server);
                match consumers.get_mut(&consumer) {
                    Some(c) => c.add_request(&mut ctx, &reply, &body),
                    None => {
                        // nats-server has no subscription for a missing consumer: the
                        // requester gets the core no-responders status.
                        let subj = format!("$JS.API.CONSUMER.MSG.NEXT.{}.{consumer}", ctx.stream);
                        let h = headers::with(b"NATS/1.0 503\r\n\r\n", &[("Nats-Subject", subj)]);
                        ctx.sender
                            .send(server, ctx.account, reply.as_bytes(), None, Some(&h), b"");
                    }
                }
                self.wake = true;
            }
            Cmd::FlowControl { subject, hdr } => {
                let consumer = subject.split('.').nth(3).unwrap_or("");
                if let Some(c) = self.consumers.get_mut(consumer) {
                    let (released, acked) = c.flow_control_answer(&subject, &hdr);
                    if released || !acked.is_empty() {
                        self.wake = true;
                    }
                    self.retire(&acked);
                }
            }
            Cmd::DirectGet {
                reply,
                body,
                subject,
            } => self.direct_get(server, &reply, &body, subject),
            Cmd::Update { cfg, done } => {
                let r = self.update(*cfg).map(|_| {
                    self.update_origins(server);
                    let mut v = self.info_value(&InfoReq::default());
                    v["type"] = json!("io.nats.jetstream.api.v1.stream_update_response");
                    v
                });
                let _ = done.send(r);
            }
            Cmd::Origin {
                idx,
                generation,
                event,
            } => self.origin_event(server, idx, generation, event),
            Cmd::Info { done } => {
                let _ = done.send(self.info_value(&Default::default()));
            }
            Cmd::Detail { done } => {
                let consumers = self
                    .consumers
                    .values()
                    .map(|c| serde_json::to_value(c.info(&self.name)).expect("serializes"))
                    .collect();
                let _ = done.send((self.info_value(&Default::default()), consumers));
            }
            Cmd::Snapshot(c) => self.snapshot_cmd(c),
            Cmd::Stop { .. } => {}
        }
    }

    fn close(mut self, delete: bool, done: Option<SyncSender<()>>) {
        if let Some(server) = self.server.upgrade() {
            self.stop_origins(&server);
            let names: Vec<String> = self.consumers.keys().cloned().collect();
            if delete {
                let (mut ctx, consumers) = self.ctx(&server);
                for n in names {
                    if let Some(c) = consumers.get_mut(&n) {
                        c.deleted(&mut ctx);
                        super::advisory::consumer_action(
                            ctx.server,
                            ctx.account,
                            ctx.sender,
                            ctx.stream,
                            &n,
                            "delete",
                        );
                    }
                }
                self.sender.flush(&server);
            }
        }
        if delete {
            if let Some(d) = &self.dir {
                let _ = std::fs::remove_dir_all(d);
            }
        } else {
            let _ = self.store.sync();
            self.save_consumers(true);
        }
        if let Some(d) = done {
            let _ = d.send(());
        }
    }

    // ----- publishing -----

    fn ack_ok(&self, seq: u64, duplicate: bool) -> Vec<u8> {
        self.ack_with(seq, duplicate, None)
    }

    /// A pub ack; `val` is a counter stream's new total.
    fn ack_with(&self, seq: u64, duplicate: bool, val: Option<&str>) -> Vec<u8> {
        let mut v = json!({"stream": self.name, "seq": seq});
        if let Some(d) = &self.shared.domain {
            v["domain"] = json!(d);
        }
        if duplicate {
            v["duplicate"] = json!(true);
        }
        if let Some(val) = val {
            v["val"] = json!(val);
        }
        v.to_string().into_bytes()
    }

    fn ack_err(&self, err: ApiError) -> Vec<u8> {
        json!({"error": err, "stream": self.name, "seq": 0})
            .to_string()
            .into_bytes()
    }

    fn reply_now(&mut self, server: &Server, reply: &Option<String>, body: Vec<u8>) {
        if reply.as_deref() == Some(fast_batch::CAPTURE) {
            self.capture = Some(Some(body));
            return;
        }
        if let Some(r) = reply {
            if !self.cfg.no_ack {
                self.sender
                    .send(server, &self.account, r.as_bytes(), None, None, &body);
            }
        }
    }

    /// A message published to the stream (or copied from a source): staged when it is part
    /// of an atomic batch, stored otherwise.
    fn process_msg(
        &mut self,
        server: &Server,
        subject: &str,
        reply: Option<String>,
        hdr: &[u8],
        data: &[u8],
    ) {
        if let Some(r) = reply.as_deref().filter(|r| r.ends_with(".$FI")) {
            if self.fast_batch_msg(server, subject, r, hdr, data) {
                return;
            }
        }
        if !hdr.is_empty() && headers::get(hdr, "Nats-Batch-Id").is_some() {
            return self.batch_msg(server, subject, reply, hdr, data);
        }
        self.store_msg(server, subject, reply, hdr, data)
    }

    /// Checks a message's headers against the stream, stores it and answers the publisher.
    fn store_msg(
        &mut self,
        server: &Server,
        subject: &str,
        reply: Option<String>,
        hdr: &[u8],
        data: &[u8],
    ) {
        if self.cfg.sealed {
            let b = self.ack_err(ApiError::sealed());
            return self.reply_now(server, &reply, b);
        }
        let transformed = self
            .cfg
            .subject_transform
            .as_ref()
            .and_then(|t| crate::transform::apply(&t.src, &t.dest, subject));
        let subject = transformed.as_deref().unwrap_or(subject);
        let max_size = if self.cfg.max_msg_size > 0 {
            self.cfg.max_msg_size as usize
        } else {
            usize::MAX
        };
        if hdr.len() + data.len() > max_size {
            let b = self.ack_err(ApiError::new(
                10054,
                400,
                "message size exceeds maximum allowed",
            ));
            return self.reply_now(server, &reply, b);
        }
        // A copy from a source: stored whatever its TTL, rollup and counter headers say; they
        // only take effect where this stream allows them (as in nats-server).
        let sourced = !hdr.is_empty() && headers::get(hdr, "Nats-Stream-Source").is_some();
        let incr = match self.counter_increment(hdr, data, sourced) {
            Ok(i) => i,
            Err(e) => {
                let b = self.ack_err(e);
                return self.reply_now(server, &reply, b);
            }
        };
        let scheduled;
        let hdr = match self.check_schedule(subject, hdr) {
            Ok(Some(h)) => {
                scheduled = h;
                &scheduled[..]
            }
            Ok(None) => hdr,
            Err(e) => {
                let b = self.ack_err(e);
                return self.reply_now(server, &reply, b);
            }
        };
        let now = unix_nanos();
        let mut msg_id = None;
        let mut rollup = None;
        let mut ttl = None;
        if !hdr.is_empty() {
            if let Some(v) = headers::get(hdr, "Nats-TTL") {
                match (self.cfg.allow_msg_ttl, parse_ttl(v)) {
                    (true, Some(t)) => ttl = t,
                    _ if sourced => {}
                    (false, _) => {
                        let b =
                            self.ack_err(ApiError::new(10166, 400, "per-message TTL is disabled"));
                        return self.reply_now(server, &reply, b);
                    }
                    (true, None) => {
                        let b = self.ack_err(ApiError::new(10165, 400, "invalid per-message TTL"));
                        return self.reply_now(server, &reply, b);
                    }
                }
            }
            if let Some(s) = headers::get(hdr, "Nats-Expected-Stream") {
                if s != self.name {
                    let b =
                        self.ack_err(ApiError::new(10060, 400, "expected stream does not match"));
                    return self.reply_now(server, &reply, b);
                }
            }
            if let Some(id) = headers::get(hdr, "Nats-Msg-Id") {
                self.expire_dedupe(now);
                if let Some(&seq) = self.dedupe.get(id) {
                    let b = self.ack_ok(seq, true);
                    return self.reply_now(server, &reply, b);
                }
                msg_id = Some(id.to_string());
            }
            if let Some(v) = headers::get(hdr, "Nats-Expected-Last-Sequence") {
                let want: u64 = v.parse().unwrap_or(u64::MAX);
                let last = self.store.state().last_seq;
                if want != last {
                    let b = self.ack_err(ApiError::new(
                        10071,
                        400,
                        &format!("wrong last sequence: {last}"),
                    ));
                    return self.reply_now(server, &reply, b);
                }
            }
            if let Some(v) = headers::get(hdr, "Nats-Expected-Last-Subject-Sequence") {
                let want: u64 = v.parse().unwrap_or(u64::MAX);
                let filter = headers::get(hdr, "Nats-Expected-Last-Subject-Sequence-Subject")
                    .unwrap_or(subject);
                let last = self.store.last_for(filter).unwrap_or(0);
                if want != last {
                    let b = self.ack_err(ApiError::new(
                        10071,
                        400,
                        &format!("wrong last sequence: {last}"),
                    ));
                    return self.reply_now(server, &reply, b);
                }
            }
            if let Some(v) = headers::get(hdr, "Nats-Expected-Last-Msg-Id") {
                let last = self.last_msg_id.clone().unwrap_or_default();
                if v != last {
                    let b = self.ack_err(ApiError::new(
                        10070,
                        400,
                        &format!("wrong last msg ID: {last}"),
                    ));
                    return self.reply_now(server, &reply, b);
                }
            }
            if let Some(r) =
                headers::get(hdr, "Nats-Rollup").filter(|_| !sourced || self.cfg.allow_rollup_hdrs)
            {
                if !self.cfg.allow_rollup_hdrs {
                    let b = self.ack_err(ApiError::new(10111, 500, "rollup not permitted"));
                    return self.reply_now(server, &reply, b);
                }
                match r {
                    "sub" => rollup = Some(false),
                    "all" => {
                        if self.cfg.deny_purge {
                            let b = self.ack_err(ApiError::new(
                                10111,
                                500,
                                "roll-ups not permitted with deny purge",
                            ));
                            return self.reply_now(server, &reply, b);
                        }
                        rollup = Some(true)
                    }
                    _ => {
                        let b = self.ack_err(ApiError::new(
                            10111,
                            500,
                            &format!("rollup value invalid: {r:?}"),
                        ));
                        return self.reply_now(server, &reply, b);
                    }
                }
            }
        }
        let counted;
        let (hdr, data, val) = match incr {
            Some(incr) if self.cfg.allow_msg_counter => {
                match self.count(subject, hdr, data, incr) {
                    Ok(c) => {
                        counted = c;
                        (&counted.0[..], &counted.1[..], Some(counted.2.as_str()))
                    }
                    Err(e) => {
                        let b = self.ack_err(e);
                        return self.reply_now(server, &reply, b);
                    }
                }
            }
            _ => (hdr, data, None),
        };
        if hdr.len() + data.len() > max_size {
            let b = self.ack_err(ApiError::new(
                10054,
                400,
                "message size exceeds maximum allowed",
            ));
            return self.reply_now(server, &reply, b);
        }
        // Discard new: reject instead of making room.
        let size = if self.store.is_file() {
            (22 + subject.len() + data.len() + 8 + if hdr.is_empty() { 0 } else { 4 + hdr.len() })
                as u64
        } else {
            (subject.len() + hdr.len() + data.len() + 16) as u64
        };
        let st = self.store.state();
        if self.cfg.discard == Discard::New {
            if self.cfg.max_msgs > 0 && st.msgs >= self.cfg.max_msgs as u64 {
                let b = self.ack_err(ApiError::stream_store_failed("maximum messages exceeded"));
                return self.reply_now(server, &reply, b);
            }
            if self.cfg.max_bytes > 0 && st.bytes + size > self.cfg.max_bytes as u64 {
                let b = self.ack_err(ApiError::stream_store_failed("maximum bytes exceeded"));
                return self.reply_now(server, &reply, b);
            }
            if self.cfg.discard_new_per_subject && self.cfg.max_msgs_per_subject > 0 {
                if let Some(ss) = self.store.subject_state(subject) {
                    if ss.msgs >= self.cfg.max_msgs_per_subject as u64 {
                        let b = self.ack_err(ApiError::stream_store_failed(
                            "maximum messages per subject exceeded",
                        ));
                        return self.reply_now(server, &reply, b);
                    }
                }
            }
        }
        if let Err(e) = self
            .shared
            .check_storage(&self.cfg, &self.account.name, size)
        {
            let b = self.ack_err(e);
            return self.reply_now(server, &reply, b);
        }
        // Interest retention with nobody interested: the sequence is used, nothing is kept.
        if self.cfg.retention == Retention::Interest
            && !self
                .consumers
                .values()
                .any(|c| c.needs(self.store.state().last_seq + 1, subject))
        {
            let seq = match self.store.skip() {
                Ok(s) => s,
                Err(e) => {
                    let b = self.ack_err(ApiError::stream_store_failed(&e.to_string()));
                    return self.reply_now(server, &reply, b);
                }
            };
            if let Some(r) = reply {
                if !self.cfg.no_ack {
                    let b = self.ack_ok(seq, false);
                    self.acks.push((r, b));
                }
            }
            return;
        }
        let prev_on_subject = self.store.subject_state(subject).map_or(0, |s| s.last);
        let seq = match self.store.store(subject, hdr, data, now) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(
                    "JetStream stream '{} > {}' store failed: {e}",
                    self.account.name,
                    self.name
                );
                let b = self.ack_err(ApiError::stream_store_failed(&e.to_string()));
                return self.reply_now(server, &reply, b);
            }
        };
        if let Some(id) = &msg_id {
            self.dedupe.insert(id.clone(), seq);
            self.dedupe_order.push_back((now, id.clone()));
        }
        if let Some(t) = ttl {
            self.ttls.insert((now.saturating_add(t), seq));
        }
        self.last_msg_id = msg_id;
        // Limits.
        if let Some(all) = rollup {
            let victims: Vec<u64> = if all {
                self.store
                    .matching(">")
                    .into_iter()
                    .filter(|s| *s < seq)
                    .collect()
            } else {
                self.store
                    .matching(subject)
                    .into_iter()
                    .filter(|s| *s < seq)
                    .collect()
            };
            for v in victims {
                self.remove_msg(v);
            }
        }
        self.after_store(server, (seq, prev_on_subject), subject, hdr, data, now);
        self.after_schedule_store(subject, seq, hdr, now);
        if let Some(r) = reply {
            if !self.cfg.no_ack {
                let b = self.ack_with(seq, false, val);
                self.acks.push((r, b));
            }
        }
        self.wake = true;
    }

    /// The `Nats-Incr` of a message, checked as nats-server checks it: parsed on any stream,
    /// refused where counters are off (unless sourced in), required where they are on, and
    /// never with a payload or with headers that would make the total depend on order.
    fn counter_increment(
        &self,
        hdr: &[u8],
        data: &[u8],
        sourced: bool,
    ) -> Result<Option<BigInt>, ApiError> {
        let invalid = || ApiError::new(10171, 400, "message counter increment is invalid");
        let raw = if hdr.is_empty() {
            None
        } else {
            headers::get(hdr, "Nats-Incr").filter(|v| !v.is_empty())
        };
        let incr = match raw {
            None => None,
            Some(v) => Some(BigInt::parse(v).ok_or_else(invalid)?),
        };
        match &incr {
            Some(_) if !sourced && !self.cfg.allow_msg_counter => {
                Err(ApiError::new(10168, 400, "message counters is disabled"))
            }
            Some(_) if !sourced => {
                if !data.is_empty() {
                    return Err(ApiError::new(10170, 400, "message counter has payload"));
                }
                const ORDERED: [&str; 6] = [
                    "Nats-Rollup",
                    "Nats-Expected-Stream",
                    "Nats-Expected-Last-Msg-Id",
                    "Nats-Expected-Last-Subject-Sequence-Subject",
                    "Nats-Expected-Last-Sequence",
                    "Nats-Expected-Last-Subject-Sequence",
                ];
                if ORDERED.iter().any(|h| headers::get(hdr, h).is_some()) {
                    return Err(invalid());
                }
                Ok(incr)
            }
            None if self.cfg.allow_msg_counter => Err(ApiError::new(
                10169,
                400,
                "message counter increment is missing",
            )),
            _ => Ok(incr),
        }
    }

    /// A counter message as stored: the headers as sent (a sourced total becomes the
    /// difference it makes, recorded per origin in `Nats-Counter-Sources`), the body
    /// `{"val":"<new total>"}`, and the new total.
    fn count(
        &mut self,
        subject: &str,
        hdr: &[u8],
        data: &[u8],
        incr: BigInt,
    ) -> Result<(Vec<u8>, Vec<u8>, String), ApiError> {
        let broken = || ApiError::new(10172, 400, "message counter is broken");
        type Sources = BTreeMap<String, BTreeMap<String, String>>;
        let last = self.store.last_for(subject).and_then(|s| self.store.get(s));
        let (total, mut sources) = match &last {
            None => (BigInt::zero(), Sources::new()),
            Some(m) => {
                let total = counter_value(&m.data).ok_or_else(broken)?;
                let sources: Sources = match headers::get(&m.hdr, "Nats-Counter-Sources") {
                    None => Sources::new(),
                    Some(v) => serde_json::from_str(v).map_err(|_| broken())?,
                };
                (total, sources)
            }
        };
        let mut hdr = hdr.to_vec();
        let mut incr = incr;
        if let Some(src) = headers::get(&hdr, "Nats-Stream-Source") {
            // A sourced message carries its origin's total: what it adds here is the change
            // since the last total seen from that origin subject, so a lost or repeated
            // message still ends at the right sum.
            let fields: Vec<&str> = src.split(' ').collect();
            let origin = fields[0].to_string();
            let origin_subject = fields.get(4).copied().unwrap_or(subject).to_string();
            let sourced = counter_value(data).ok_or_else(broken)?;
            let seen = sources
                .get(&origin)
                .and_then(|m| m.get(&origin_subject))
                .map(|v| BigInt::parse(v).ok_or_else(broken))
                .transpose()?
                .unwrap_or_else(BigInt::zero);
            incr = sourced.add(&seen.neg());
            sources
                .entry(origin)
                .or_default()
                .insert(origin_subject, sourced.to_string());
            hdr = headers::without(&hdr, "Nats-Incr");
            hdr = headers::with(&hdr, &[("Nats-Incr", incr.to_string())]);
        }
        if !sources.is_empty() {
            let v = serde_json::to_string(&sources).expect("serializes");
            hdr = headers::without(&hdr, "Nats-Counter-Sources");
            hdr = headers::with(&hdr, &[("Nats-Counter-Sources", v)]);
        }
        let total = total.add(&incr).to_string();
        let body = json!({ "val": total }).to_string().into_bytes();
        Ok((hdr, body, total))
    }

    /// What follows storing a message: consumers learn of it, limits apply, it is
    /// republished.
    fn after_store(
        &mut self,
        server: &Server,
        (seq, prev_on_subject): (u64, u64),
        subject: &str,
        hdr: &[u8],
        data: &[u8],
        ts: i64,
    ) {
        for c in self.consumers.values_mut() {
            c.on_stored(seq, subject);
        }
        self.enforce_limits(subject);
        self.republish(server, (seq, prev_on_subject), ts, subject, hdr, data);
        self.wake = true;
    }

    /// `republish`: a copy of the stored message on the destination subject, with the stream
    /// headers nats-server adds.
    fn republish(
        &mut self,
        server: &Server,
        (seq, prev_on_subject): (u64, u64),
        ts: i64,
        subject: &str,
        hdr: &[u8],
        data: &[u8],
    ) {
        let Some(r) = &self.cfg.republish else { return };
        let Some(dest) = crate::transform::apply(&r.src, &r.dest, subject) else {
            return;
        };
        let mut extra = vec![
            ("Nats-Stream", self.name.clone()),
            ("Nats-Subject", subject.to_string()),
            ("Nats-Sequence", seq.to_string()),
            ("Nats-Time-Stamp", rfc3339_nanos(ts)),
            ("Nats-Last-Sequence", prev_on_subject.to_string()),
        ];
        let body: &[u8] = if r.headers_only {
            extra.push(("Nats-Msg-Size", data.len().to_string()));
            b""
        } else {
            data
        };
        let h = headers::with(hdr, &extra);
        self.sender
            .send(server, &self.account, dest.as_bytes(), None, Some(&h), body);
    }

    fn enforce_limits(&mut self, subject: &str) {
        if self.snapshotting() {
            return;
        }
        if self.cfg.max_msgs_per_subject > 0 {
            while let Some(ss) = self.store.subject_state(subject) {
                if ss.msgs <= self.cfg.max_msgs_per_subject as u64 {
                    break;
                }
                self.remove_msg(ss.first);
            }
        }
        if self.cfg.discard == Discard::Old {
            if self.cfg.max_msgs > 0 {
                while self.store.state().msgs > self.cfg.max_msgs as u64 {
                    let Some((s, _)) = self.store.first_msg() else {
                        break;
                    };
                    self.remove_msg(s);
                }
            }
            if self.cfg.max_bytes > 0 {
                while self.store.state().bytes > self.cfg.max_bytes as u64 {
                    let Some((s, _)) = self.store.first_msg() else {
                        break;
                    };
                    self.remove_msg(s);
                }
            }
        }
    }

    /// Removes a message whose age or TTL ran out; with `subject_delete_marker_ttl`, the last
    /// message of a subject leaves a marker behind (`Nats-Marker-Reason: MaxAge`, a TTL of
    /// its own, `Nats-Rollup: sub`, no body), as nats-server does. A marker leaves none.
    fn remove_expired(&mut self, server: &Server, seq: u64) {
        let Some(subject) = self.store.peek(seq).map(|(s, _, _)| s.clone()) else {
            return;
        };
        let was_marker = self.markers.remove(&seq);
        if !self.remove_msg(seq) {
            return;
        }
        let ttl = self.cfg.subject_delete_marker_ttl;
        if ttl <= 0 || was_marker || self.store.subject_state(&subject).is_some() {
            return;
        }
        let hdr = headers::with(
            b"",
            &[
                ("Nats-Marker-Reason", "MaxAge".to_string()),
                ("Nats-TTL", crate::clock::go_duration(i128::from(ttl))),
                ("Nats-Rollup", "sub".to_string()),
            ],
        );
        let now = unix_nanos();
        match self.store.store(&subject, &hdr, b"", now) {
            Ok(m) => {
                self.markers.insert(m);
                self.ttls.insert((now.saturating_add(ttl), m));
                self.after_store(server, (m, 0), &subject, &hdr, b"", now);
            }
            Err(e) => tracing::error!(
                "JetStream stream '{} > {}' could not store a delete marker: {e}",
                self.account.name,
                self.name
            ),
        }
    }

    fn remove_msg(&mut self, seq: u64) -> bool {
        self.remove_msg_with(seq, false)
    }

    /// Removes a message; `erase` also overwrites its contents on disk.
    fn remove_msg_with(&mut self, seq: u64, erase: bool) -> bool {
        let subject = match self.store.peek(seq) {
            Some((s, _, _)) => s.clone(),
            None => return false,
        };
        match self.store.remove_with(seq, erase) {
            Ok(true) => {
                for c in self.consumers.values_mut() {
                    c.on_removed(seq, &subject);
                }
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::error!(
                    "JetStream stream '{} > {}' delete failed: {e}",
                    self.account.name,
                    self.name
                );
                false
            }
        }
    }

    fn expire_dedupe(&mut self, now: i64) {
        let cutoff = now - self.cfg.duplicate_window;
        while let Some((ts, _)) = self.dedupe_order.front() {
            if *ts > cutoff {
                break;
            }
            let (_, id) = self.dedupe_order.pop_front().expect("front");
            self.dedupe.remove(&id);
        }
    }

    /// After a restart: the message ids inside the duplicate window.
    /// The TTL index after a restart: every message's `Nats-TTL` read back (only for
    /// streams that allow TTLs).
    fn rebuild_ttls(&mut self) {
        if !self.cfg.allow_msg_ttl {
            return;
        }
        let st = self.store.state();
        let mut seq = st.first_seq.max(1);
        while seq <= st.last_seq {
            if let Some(m) = self.store.get(seq) {
                if let Some(Some(Some(t))) = headers::get(&m.hdr, "Nats-TTL").map(parse_ttl) {
                    self.ttls.insert((m.ts.saturating_add(t), seq));
                }
                if headers::get(&m.hdr, "Nats-Marker-Reason").is_some() {
                    self.markers.insert(seq);
                }
            }
            seq += 1;
        }
    }

    fn rebuild_dedupe(&mut self) {
        let cutoff = unix_nanos() - self.cfg.duplicate_window;
        let st = self.store.state();
        let mut found = Vec::new();
        let mut seq = st.last_seq;
        while seq >= st.first_seq && seq > 0 {
            match self.store.peek(seq) {
                Some((_, _, ts)) if ts <= cutoff => break,
                Some(_) => {
                    if let Some(m) = self.store.get(seq) {
                        if let Some(id) = headers::get(&m.hdr, "Nats-Msg-Id") {
                            found.push((m.ts, id.to_string(), seq));
                        }
                    }
                }
                None => {}
            }
            seq -= 1;
        }
        found.reverse();
        for (ts, id, seq) in found {
            self.dedupe.insert(id.clone(), seq);
            self.last_msg_id = Some(id.clone());
            self.dedupe_order.push_back((ts, id));
        }
    }

    // ----- acks and retention -----

    fn process_ack(&mut self, server: &Server, subject: &str, reply: Option<&str>, body: &[u8]) {
        // $JS.ACK.<stream>.<consumer>.<dc>.<sseq>.<dseq>.<ts>.<pending> (v1), or the v2 form with
        // domain and account hash in front.
        let toks: Vec<&str> = subject.split('.').collect();
        let (consumer, sseq) = match toks.len() {
            9 => (toks[3], toks[5]),
            n if n >= 12 => (toks[5], toks[7]),
            _ => return,
        };
        let Ok(sseq) = sseq.parse::<u64>() else {
            return;
        };
        let acked = {
            let (mut ctx, consumers) = self.ctx(server);
            match consumers.get_mut(consumer) {
                Some(c) => c.ack(&mut ctx, sseq, body, reply),
                None => return,
            }
        };
        self.wake = true;
        self.retire(&acked);
    }

    /// Interest and work-queue retention: removes acknowledged messages nobody needs.
    fn retire(&mut self, acked: &[u64]) {
        if self.cfg.retention == Retention::Limits || acked.is_empty() || self.snapshotting() {
            return;
        }
        for &seq in acked {
            let Some((subj, _, _)) = self.store.peek(seq) else {
                continue;
            };
            let subj = subj.clone();
            if !self.consumers.values().any(|c| c.needs(seq, &subj)) {
                self.remove_msg(seq);
            }
        }
    }

    // ----- consumers -----

    fn consumers_dir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join("obs"))
    }

    fn consumer_persisted(&self, c: &ConsumerConfig) -> bool {
        self.dir.is_some() && !c.mem_storage
    }

    fn restore_consumers(&mut self) {
        let Some(dir) = self.consumers_dir() else {
            return;
        };
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return;
        };
        for e in rd.flatten() {
            let path = e.path();
            let Ok(raw) = std::fs::read(path.join("meta.inf")) else {
                continue;
            };
            let was_plain = !crypt::is_sealed(&raw);
            let meta = crypt::open_bytes(self.key.as_deref(), raw, &path.join("meta.inf"))
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    serde_json::from_slice::<Meta<ConsumerConfig>>(&b).map_err(|e| e.to_string())
                });
            let meta = match meta {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(
                        "JetStream: unreadable consumer metadata in {}: {e}",
                        path.display()
                    );
                    continue;
                }
            };
            let name = e.file_name().to_string_lossy().into_owned();
            let state = crypt::read_file(self.key.as_deref(), &path.join("o.dat"))
                .ok()
                .and_then(|b| serde_json::from_slice::<ConsumerState>(&b).ok());
            let mut c = match state {
                Some(st) => Consumer::restore(name.clone(), meta.config, meta.created, st),
                None => Consumer::new(name.clone(), meta.config, &self.store, meta.created),
            };
            c.recount(&self.store);
            self.consumers.insert(name.clone(), c);
            if was_plain && self.key.is_some() {
                self.write_consumer_meta(&name);
            }
        }
    }

    fn save_consumers(&mut self, all: bool) {
        self.last_state_save = Instant::now();
        let Some(dir) = self.consumers_dir() else {
            return;
        };
        let persisted: Vec<String> = self
            .consumers
            .iter()
            .filter(|(_, c)| (c.dirty || all) && self.consumer_persisted(&c.cfg))
            .map(|(n, _)| n.clone())
            .collect();
        for n in persisted {
            let c = self.consumers.get_mut(&n).expect("listed");
            c.dirty = false;
            let d = dir.join(&n);
            let body = serde_json::to_vec(&c.st).expect("state serializes");
            if let Err(e) = crypt::write_file(self.key.as_deref(), &d.join("o.dat"), &body) {
                tracing::error!(
                    "JetStream consumer '{} > {n}' state write failed: {e}",
                    self.name
                );
            }
        }
    }

    fn create_consumer(
        &mut self,
        server: &Server,
        body: &[u8],
        subj_name: Option<String>,
        subj_filter: Option<String>,
        durable_api: bool,
    ) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        struct Req {
            #[serde(default)]
            stream_name: String,
            config: Option<ConsumerConfig>,
            #[serde(default)]
            action: String,
            /// Known to nats-server; ours fills defaults whether or not it is set.
            #[serde(default, rename = "pedantic")]
            _pedantic: bool,
        }
        if body.is_empty() {
            return Err(ApiError::new(
                10025,
                400,
                "invalid JSON: unexpected end of JSON input",
            ));
        }
        let req: Req = super::errors::from_json(body, self.shared.strict)?;
        if !matches!(req.action.as_str(), "" | "create" | "update") {
            return Err(ApiError::invalid_json(&format!(
                "unknown consumer action: {:?}",
                req.action
            )));
        }
        if !req.stream_name.is_empty() && req.stream_name != self.name {
            return Err(ApiError::stream_mismatch());
        }
        let mut cfg = req
            .config
            .ok_or_else(|| ApiError::new(10003, 400, "consumer config required"))?;
        if durable_api {
            let name = subj_name.clone().unwrap_or_default();
            match cfg.durable_name.as_deref() {
                None | Some("") => {
                    return Err(ApiError::new(
                        10018,
                        400,
                        "consumer expected to be durable but a durable name was not set",
                    ))
                }
                Some(d) if d != name => {
                    return Err(ApiError::new(
                        10017,
                        400,
                        "consumer name in subject does not match durable name in request",
                    ))
                }
                _ => {}
            }
        } else if let Some(n) = &subj_name {
            if let Some(d) = cfg.durable_name.as_deref().filter(|d| !d.is_empty()) {
                if d != n {
                    return Err(ApiError::new(
                        10017,
                        400,
                        "consumer name in subject does not match durable name in request",
                    ));
                }
            }
            if let Some(cn) = cfg.name.as_deref().filter(|d| !d.is_empty()) {
                if cn != n {
                    return Err(ApiError::new(
                        10017,
                        400,
                        "consumer name in subject does not match durable name in request",
                    ));
                }
            }
            if cfg.name.as_deref().is_none_or(str::is_empty) {
                cfg.name = Some(n.clone());
            }
        } else if cfg.durable_name.as_deref().is_some_and(|d| !d.is_empty()) {
            return Err(ApiError::new(
                10020,
                400,
                "consumer expected to be ephemeral but a durable name was set in request",
            ));
        }
        if let Some(f) = &subj_filter {
            if cfg.filter_subject != *f || !cfg.filter_subjects.is_empty() {
                return Err(ApiError::new(
                    10131,
                    400,
                    "Consumer create request did not match filtered subject from create subject",
                ));
            }
        }
        cfg.normalize(&self.cfg)?;
        let name = match cfg.the_name() {
            Some(n) => n.to_string(),
            None => random_name(),
        };
        // Durables carry their name twice; ephemerals only at the top level (as nats-server).
        if cfg.name.is_none() && cfg.durable_name.is_some() {
            cfg.name = cfg.durable_name.clone();
        }
        if let Some(existing) = self.consumers.get(&name) {
            // The same configuration again is fine whatever the action (nats-server).
            if existing.cfg == cfg {
                return Ok(self.created_response(server, &name));
            }
            if req.action == "create" {
                return Err(ApiError::new(10148, 400, "consumer already exists"));
            }
            if let Some(why) = refused_update(&existing.cfg, &cfg) {
                return Err(ApiError::new(10012, 500, why));
            }
            let c = self.consumers.get_mut(&name).expect("exists");
            c.reconfigure(cfg, &self.store);
            self.write_consumer_meta(&name);
            self.wake = true;
            return Ok(self.created_response(server, &name));
        }
        if req.action == "update" {
            return Err(ApiError::new(10149, 400, "consumer does not exist"));
        }
        if self.cfg.max_consumers > 0 && self.consumers.len() as i64 >= self.cfg.max_consumers {
            return Err(ApiError::max_consumers());
        }
        self.shared.check_consumer_limit(&self.account.name)?;
        if self.cfg.retention == Retention::WorkQueue {
            let mine = cfg.filters();
            for c in self.consumers.values() {
                let theirs = c.cfg.filters();
                if mine.is_empty() || theirs.is_empty() {
                    return Err(ApiError::new(
                        10099,
                        400,
                        "multiple non-filtered consumers not allowed on workqueue stream",
                    ));
                }
                if mine
                    .iter()
                    .any(|a| theirs.iter().any(|b| super::config::subjects_overlap(a, b)))
                {
                    return Err(ApiError::new(
                        10100,
                        400,
                        "filtered consumer not unique on workqueue stream",
                    ));
                }
            }
        }
        let created = unix_nanos();
        let c = Consumer::new(name.clone(), cfg, &self.store, created);
        self.consumers.insert(name.clone(), c);
        self.write_consumer_meta(&name);
        self.save_consumers(false);
        self.wake = true;
        super::advisory::consumer_action(
            server,
            &self.account,
            &mut self.sender,
            &self.name,
            &name,
            "create",
        );
        Ok(self.created_response(server, &name))
    }

    fn write_consumer_meta(&mut self, name: &str) {
        let Some(c) = self.consumers.get_mut(name) else {
            return;
        };
        if self.dir.is_none() || c.cfg.mem_storage {
            return;
        }
        c.dirty = true;
        let Some(dir) = self.dir.as_ref().map(|d| d.join("obs").join(name)) else {
            return;
        };
        let meta = Meta {
            config: &c.cfg,
            created: c.created,
        };
        let key = self.key.as_deref();
        let r = std::fs::create_dir_all(&dir).and_then(|_| {
            crypt::write_file(
                key,
                &dir.join("meta.inf"),
                &serde_json::to_vec(&meta).expect("serializes"),
            )
        });
        if let Err(e) = r {
            tracing::error!(
                "JetStream consumer '{} > {name}' metadata write failed: {e}",
                self.name
            );
        }
    }

    /// A create/update answer: `push_bound` as of now, as nats-server reports it there too.
    fn created_response(&mut self, server: &Server, name: &str) -> Value {
        let (mut ctx, consumers) = self.ctx(server);
        if let Some(c) = consumers.get_mut(name) {
            c.refresh_interest(&mut ctx);
        }
        self.consumer_response(name, "consumer_create_response")
    }

    fn consumer_response(&self, name: &str, kind: &str) -> Value {
        let c = &self.consumers[name];
        let mut v = serde_json::to_value(c.info(&self.name)).expect("serializes");
        super::config::with_server_metadata(&mut v["config"]);
        v["type"] = json!(format!("io.nats.jetstream.api.v1.{kind}"));
        // A consumer of a standalone server reports no `cluster` (nats-server's
        // `clusterInfo` is nil without a Raft group).
        v
    }

    fn delete_consumer(&mut self, server: &Server, name: &str) -> bool {
        let Some(mut c) = self.consumers.remove(name) else {
            return false;
        };
        super::advisory::consumer_action(
            server,
            &self.account,
            &mut self.sender,
            &self.name,
            name,
            "delete",
        );
        {
            let mut ctx = Ctx {
                server,
                account: &self.account,
                sender: &mut self.sender,
                store: &mut self.store,
                stream: &self.name,
            };
            c.deleted(&mut ctx);
        }
        if let Some(d) = self.consumers_dir() {
            let _ = std::fs::remove_dir_all(d.join(name));
        }
        // Interest retention: messages only this consumer held can go.
        if self.cfg.retention == Retention::Interest {
            let seqs = self.store.matching(">");
            self.retire(&seqs);
        }
        true
    }

    // ----- stream API -----

    fn update(&mut self, cfg: StreamConfig) -> Result<(), ApiError> {
        let old = &self.cfg;
        // Changes nats-server refuses on update.
        let refused = [
            (
                cfg.storage != old.storage,
                "stream configuration update can not change storage type",
            ),
            (
                cfg.retention != old.retention,
                "stream configuration update can not change retention policy",
            ),
            (
                cfg.persist_mode != old.persist_mode,
                "stream configuration update can not change persist mode",
            ),
            (
                cfg.allow_msg_counter != old.allow_msg_counter,
                "stream configuration update can not change message counter setting",
            ),
            (
                old.allow_msg_schedules && !cfg.allow_msg_schedules,
                "message schedules can not be disabled",
            ),
            (
                old.sealed && !cfg.sealed,
                "stream configuration update can not unseal a sealed stream",
            ),
            (
                old.deny_delete && !cfg.deny_delete,
                "stream configuration update can not cancel deny message deletes",
            ),
            (
                old.deny_purge && !cfg.deny_purge,
                "stream configuration update can not cancel deny purge",
            ),
            (
                old.allow_msg_ttl && !cfg.allow_msg_ttl,
                "message TTL status can not be disabled",
            ),
        ];
        if let Some((_, why)) = refused.iter().find(|(bad, _)| *bad) {
            return Err(ApiError::stream_invalid_config(why));
        }
        // A mirror can be promoted to a plain stream (mirror removed), not changed or added.
        if cfg.mirror.is_some() && cfg.mirror != old.mirror {
            return Err(ApiError::new(
                10055,
                400,
                "stream mirror configuration can not be updated",
            ));
        }
        // New consumer limits must hold for the consumers there are (nats-server names them).
        let lim = &cfg.consumer_limits;
        if *lim != old.consumer_limits {
            let violators: Vec<&str> = self
                .consumers
                .iter()
                .filter(|(_, c)| {
                    (lim.max_ack_pending > 0 && c.cfg.max_ack_pending > lim.max_ack_pending)
                        || (lim.inactive_threshold > 0
                            && c.cfg.inactive_threshold > lim.inactive_threshold)
                })
                .map(|(n, _)| n.as_str())
                .collect();
            if !violators.is_empty() {
                return Err(ApiError::new(
                    10069,
                    500,
                    &format!(
                        "change to limits violates consumers: {}",
                        violators.join(", ")
                    ),
                ));
            }
        }
        if !cfg.allow_batched {
            self.fast.clear();
        }
        if !cfg.allow_atomic {
            // Batches in flight can no longer commit.
            self.atomic.clear();
        }
        self.store.set_compress(cfg.compression == Compression::S2);
        self.cfg = cfg;
        if let Some(d) = &self.dir {
            let meta = Meta {
                config: &self.cfg,
                created: self.created,
            };
            crypt::write_file(
                self.key.as_deref(),
                &d.join("meta.inf"),
                &serde_json::to_vec(&meta).expect("serializes"),
            )
            .map_err(|e| ApiError::new(10069, 500, &e.to_string()))?;
        }
        if let Some(h) = self.handle.upgrade() {
            *h.cfg.write() = self.cfg.clone();
        }
        // Tighter limits apply at once.
        if let Some((_, subj, _)) = self
            .store
            .first_msg()
            .and_then(|(s, _)| self.store.peek(s).map(|(a, b, c)| (s, a.clone(), (b, c))))
        {
            self.enforce_limits(&subj);
        }
        if self.cfg.max_msgs_per_subject > 0 {
            let subjects: Vec<std::sync::Arc<str>> = self
                .store
                .subjects_matching(">")
                .into_iter()
                .map(|(s, _)| s)
                .collect();
            for s in subjects {
                self.enforce_limits(&s);
            }
        }
        Ok(())
    }

    fn state_value(&self, st: &StoreState, req: &InfoReq) -> Value {
        let mut s = json!({
            "messages": st.msgs,
            "bytes": st.bytes,
            "first_seq": st.first_seq,
            "first_ts": rfc3339_nanos(st.first_ts),
            "last_seq": st.last_seq,
            "last_ts": rfc3339_nanos(st.last_ts),
        });
        if st.num_subjects > 0 {
            s["num_subjects"] = json!(st.num_subjects);
        }
        if st.num_deleted > 0 {
            s["num_deleted"] = json!(st.num_deleted);
            if req.deleted_details {
                s["deleted"] = json!(self.store.deleted());
            }
        }
        s["consumer_count"] = json!(self.visible_consumers().count());
        s
    }

    /// Consumers users see: not the `direct` ones other streams' mirrors and sources use.
    fn visible_consumers(&self) -> impl Iterator<Item = (&String, &Consumer)> {
        self.consumers.iter().filter(|(_, c)| !c.cfg.direct)
    }

    fn info_value(&self, req: &InfoReq) -> Value {
        let st = self.store.state();
        let mut v = json!({
            "type": "io.nats.jetstream.api.v1.stream_info_response",
            "total": 0, "offset": 0, "limit": 0,
            "config": self.cfg,
            "created": rfc3339_nanos(self.created),
            "state": self.state_value(&st, req),
            "cluster": {"leader": self.shared.server_name},
        });
        super::config::with_server_metadata(&mut v["config"]);
        if let Some(f) = req.subjects_filter.as_deref().filter(|f| !f.is_empty()) {
            self.subjects_page(&mut v, f, req.offset.max(0) as usize);
        }
        if let Some(m) = self.origins.iter().find(|o| o.mirror) {
            v["mirror"] = m.info();
        }
        let sources: Vec<Value> = self
            .origins
            .iter()
            .filter(|o| !o.mirror)
            .map(Origin::info)
            .collect();
        if !sources.is_empty() {
            v["sources"] = Value::Array(sources);
        }
        v["ts"] = json!(rfc3339_nanos(unix_nanos()));
        v
    }

    /// One page of `state.subjects` for a `subjects_filter`, as nats-server pages it: the
    /// matching subjects sorted as strings, at most [`SUBJECTS_PAGE`] from `offset`, with
    /// `total`, `offset` and `limit` beside them (all zero when nothing matches).
    fn subjects_page(&self, v: &mut Value, filter: &str, offset: usize) {
        let mut all = self.store.subjects_matching(filter);
        if all.is_empty() {
            return;
        }
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let total = all.len();
        let page: serde_json::Map<String, Value> = all
            .into_iter()
            .skip(offset)
            .take(SUBJECTS_PAGE)
            .map(|(k, n)| (k.to_string(), json!(n)))
            .collect();
        if !page.is_empty() {
            v["state"]["subjects"] = Value::Object(page);
        }
        v["total"] = json!(total);
        v["offset"] = json!(offset);
        v["limit"] = json!(SUBJECTS_PAGE);
    }

    fn api(&mut self, server: &Server, op: Op, body: &[u8]) -> Option<String> {
        let r = self.api_inner(server, op, body);
        Some(match r {
            Ok(None) => return None,
            Ok(Some(v)) => v.to_string(),
            Err((kind, e)) => super::error_body(kind, e).to_string(),
        })
    }

    fn api_inner(
        &mut self,
        server: &Server,
        op: Op,
        body: &[u8],
    ) -> Result<Option<Value>, (&'static str, ApiError)> {
        match op {
            Op::Info => {
                let req: InfoReq =
                    parse_opt(body, self.shared.strict).map_err(|e| ("stream_info_response", e))?;
                Ok(Some(self.info_value(&req)))
            }
            Op::Purge => {
                const K: &str = "stream_purge_response";
                if self.cfg.sealed {
                    return Err((K, ApiError::sealed()));
                }
                if self.cfg.deny_purge {
                    return Err((K, ApiError::new(10083, 400, "stream purge not permitted")));
                }
                #[derive(Deserialize, Default)]
                struct P {
                    #[serde(default)]
                    filter: String,
                    #[serde(default)]
                    seq: u64,
                    #[serde(default)]
                    keep: u64,
                }
                let p: P = parse_opt(body, self.shared.strict).map_err(|e| (K, e))?;
                if p.seq > 0 && p.keep > 0 {
                    return Err((K, ApiError::new(10003, 400, "bad request")));
                }
                let n = self.purge(&p.filter, p.seq, p.keep);
                Ok(Some(
                    json!({"type": "io.nats.jetstream.api.v1.stream_purge_response", "success": true, "purged": n}),
                ))
            }
            Op::MsgDelete => {
                const K: &str = "stream_msg_delete_response";
                if self.cfg.sealed {
                    return Err((K, ApiError::sealed()));
                }
                if self.cfg.deny_delete {
                    return Err((K, ApiError::new(10057, 500, "message delete not permitted")));
                }
                #[derive(Deserialize)]
                struct D {
                    seq: u64,
                    #[serde(default)]
                    no_erase: bool,
                }
                let d: D =
                    super::errors::from_json(body, self.shared.strict).map_err(|e| (K, e))?;
                if self.remove_msg_with(d.seq, !d.no_erase) {
                    Ok(Some(
                        json!({"type": "io.nats.jetstream.api.v1.stream_msg_delete_response", "success": true}),
                    ))
                } else if d.seq > self.store.state().last_seq {
                    Err((K, ApiError::new(10057, 500, "stream store EOF")))
                } else {
                    Err((
                        K,
                        ApiError::new(10043, 400, &format!("sequence {} not found", d.seq)),
                    ))
                }
            }
            Op::MsgGet => {
                const K: &str = "stream_msg_get_response";
                let req: GetReq =
                    super::errors::from_json(body, self.shared.strict).map_err(|e| (K, e))?;
                let seq = self.find(&req).map_err(|e| (K, e))?;
                let m = self
                    .store
                    .get(seq)
                    .ok_or((K, ApiError::no_message_found()))?;
                use data_encoding::BASE64;
                let mut msg = json!({"subject": &*m.subject, "seq": m.seq});
                if !m.hdr.is_empty() && !req.no_hdr {
                    msg["hdrs"] = json!(BASE64.encode(&m.hdr));
                }
                if !m.data.is_empty() {
                    msg["data"] = json!(BASE64.encode(&m.data));
                }
                msg["time"] = json!(rfc3339_nanos(m.ts));
                Ok(Some(
                    json!({"type": "io.nats.jetstream.api.v1.stream_msg_get_response", "message": msg}),
                ))
            }
            Op::ConsumerCreate {
                name,
                filter,
                durable_api,
            } => self
                .create_consumer(server, body, name, filter, durable_api)
                .map(Some)
                .map_err(|e| ("consumer_create_response", e)),
            Op::ConsumerInfo(name) => {
                let (mut ctx, consumers) = self.ctx(server);
                let Some(c) = consumers.get_mut(&name) else {
                    return Err(("consumer_info_response", ApiError::consumer_not_found()));
                };
                c.refresh_interest(&mut ctx);
                Ok(Some(
                    self.consumer_response(&name, "consumer_info_response"),
                ))
            }
            Op::ConsumerPause(name) => {
                const K: &str = "consumer_pause_response";
                #[derive(Deserialize, Default)]
                struct P {
                    #[serde(default)]
                    pause_until: Option<String>,
                }
                let p: P = parse_opt(body, self.shared.strict).map_err(|e| (K, e))?;
                let until = match p.pause_until.as_deref() {
                    None | Some("") => 0,
                    Some(t) => super::time::parse_rfc3339(t)
                        .ok_or((K, ApiError::invalid_json("bad pause_until")))?,
                };
                let Some(c) = self.consumers.get_mut(&name) else {
                    return Err((K, ApiError::consumer_not_found()));
                };
                let now = unix_nanos();
                let paused = until > now;
                c.paused_until = if paused { until } else { 0 };
                c.cfg.pause_until = paused.then(|| rfc3339_nanos(until));
                self.write_consumer_meta(&name);
                self.wake = true;
                let mut v = json!({
                    "type": "io.nats.jetstream.api.v1.consumer_pause_response",
                    "paused": paused,
                    "pause_until": rfc3339_nanos(until),
                });
                if paused {
                    v["pause_remaining"] = json!(until - now);
                }
                Ok(Some(v))
            }
            Op::ConsumerReset { name, too_new } => {
                // nats-server's consumer answers this itself: no consumer, no answer. Errors
                // carry `reset_seq` too, and the body is read leniently.
                let refused = |e: ApiError| json!({"type": "io.nats.jetstream.api.v1.consumer_reset_response", "error": e, "reset_seq": 0});
                if !self.consumers.contains_key(&name) {
                    return Ok(None);
                }
                if too_new {
                    return Ok(Some(refused(ApiError::api_level_required())));
                }
                #[derive(Deserialize, Default)]
                struct R {
                    #[serde(default)]
                    seq: u64,
                }
                let r: R = match parse_opt(body, false) {
                    Ok(r) => r,
                    Err(e) => return Ok(Some(refused(e))),
                };
                let c = self.consumers.get_mut(&name).expect("checked above");
                match c.reset(r.seq, &self.store) {
                    Err(e) => Ok(Some(refused(e))),
                    Ok(seq) => {
                        self.write_consumer_meta(&name);
                        self.wake = true;
                        let mut v = self.consumer_response(&name, "consumer_reset_response");
                        v["reset_seq"] = json!(seq);
                        Ok(Some(v))
                    }
                }
            }
            Op::ConsumerUnpin(name) => {
                const K: &str = "consumer_unpin_response";
                #[derive(Deserialize, Default)]
                struct U {
                    #[serde(default)]
                    group: String,
                }
                // nats-server reads UNPIN leniently, strict mode or not.
                let u: U = parse_opt(body, false).map_err(|e| (K, e))?;
                if u.group.is_empty() {
                    return Err((K, ApiError::invalid_json("consumer group not specified")));
                }
                if !super::config::valid_group_name(&u.group) {
                    return Err((K, super::config::invalid_group_name()));
                }
                let (mut ctx, consumers) = self.ctx(server);
                let Some(c) = consumers.get_mut(&name) else {
                    return Err((K, ApiError::consumer_not_found()));
                };
                if !c.cfg.priority_groups.contains(&u.group) {
                    return Err((
                        K,
                        ApiError::new(
                            10160,
                            400,
                            "Provided priority group does not exist for this consumer",
                        ),
                    ));
                }
                c.unpin(&mut ctx, &u.group, "admin");
                self.wake = true;
                Ok(Some(
                    json!({"type": "io.nats.jetstream.api.v1.consumer_unpin_response"}),
                ))
            }
            Op::ConsumerDelete(name) => {
                if self.delete_consumer(server, &name) {
                    Ok(Some(
                        json!({"type": "io.nats.jetstream.api.v1.consumer_delete_response", "success": true}),
                    ))
                } else {
                    Err(("consumer_delete_response", ApiError::consumer_not_found()))
                }
            }
            Op::ConsumerNames | Op::ConsumerList => {
                let list = matches!(op, Op::ConsumerList);
                #[derive(Deserialize, Default)]
                struct L {
                    #[serde(default)]
                    offset: usize,
                }
                let l: L = parse_opt(body, false).unwrap_or_default();
                let total = self.visible_consumers().count();
                let limit = if list { 256 } else { 1024 };
                let names: Vec<&String> = self
                    .visible_consumers()
                    .map(|(n, _)| n)
                    .skip(l.offset)
                    .take(limit)
                    .collect();
                if list {
                    let infos: Vec<Value> = names
                        .iter()
                        .map(|n| {
                            let mut v = self.consumer_response(n, "x");
                            if let Value::Object(m) = &mut v {
                                m.remove("type");
                            }
                            v
                        })
                        .collect();
                    Ok(Some(
                        json!({"type": "io.nats.jetstream.api.v1.consumer_list_response", "total": total, "offset": l.offset, "limit": limit, "consumers": infos}),
                    ))
                } else {
                    Ok(Some(
                        json!({"type": "io.nats.jetstream.api.v1.consumer_names_response", "total": total, "offset": l.offset, "limit": limit, "consumers": names}),
                    ))
                }
            }
        }
    }

    /// `DIRECT.GET`: the message with `Nats-Stream`, `Nats-Subject`, `Nats-Sequence` and
    /// `Nats-Time-Stamp` headers, or a 404 status.
    pub fn direct_get(&mut self, server: &Server, reply: &str, body: &[u8], subj: Option<String>) {
        // nats-server's `processDirectGetRequest` refusals, in its order.
        let req = match subj {
            Some(s) => Ok(GetReq {
                last_by_subj: Some(s),
                ..Default::default()
            }),
            None if body.is_empty() => Err("Empty Request"),
            None => match super::errors::from_json::<GetReq>(body, false) {
                Err(_) => Err("Malformed Request"),
                Ok(r)
                    if r.seq == 0
                        && r.last_by_subj.as_deref().is_none_or(str::is_empty)
                        && r.next_by_subj.as_deref().is_none_or(str::is_empty)
                        && r.multi_last.is_empty()
                        && r.start_time.is_none() =>
                {
                    Err("Empty Request")
                }
                Ok(r) => Ok(r),
            },
        };
        let req = match req {
            Ok(r) => r,
            Err(why) => {
                let h = headers::status(408, why, &[]);
                self.sender
                    .send(server, &self.account, reply.as_bytes(), None, Some(&h), b"");
                return;
            }
        };
        if req.batch > 0 || !req.multi_last.is_empty() {
            return self.direct_batch(server, reply, &req);
        }
        let found = self.find(&req).ok().and_then(|s| self.store.get(s));
        match found {
            None => {
                let h = headers::status(404, "Message Not Found", &[]);
                self.sender
                    .send(server, &self.account, reply.as_bytes(), None, Some(&h), b"");
            }
            Some(m) => self.send_direct(server, reply, &m, req.no_hdr, Vec::new()),
        }
    }

    /// One direct-get answer: the message with `Nats-Stream`, `-Subject`, `-Sequence`,
    /// `-Time-Stamp` and `extra` added to its headers, or bare with `no_hdr`.
    fn send_direct(
        &mut self,
        server: &Server,
        reply: &str,
        m: &super::store::StoredMsg,
        no_hdr: bool,
        extra: Vec<(&str, String)>,
    ) {
        let h = (!no_hdr).then(|| {
            let mut fields = vec![
                ("Nats-Stream", self.name.clone()),
                ("Nats-Subject", m.subject.to_string()),
                ("Nats-Sequence", m.seq.to_string()),
                ("Nats-Time-Stamp", rfc3339_nanos(m.ts)),
            ];
            fields.extend(extra);
            headers::with(&m.hdr, &fields)
        });
        self.sender.send_as(
            server,
            &self.account,
            reply.as_bytes(),
            reply.as_bytes(),
            None,
            h.as_deref(),
            &m.data,
        );
    }

    /// Batched `DIRECT.GET` (`batch`, `multi_last`), as nats-server 2.11+: every message with
    /// `Nats-Num-Pending` (left after it) and `Nats-Last-Sequence` (the one sent before), then
    /// a `204 EOB` status with the same counts (and `Nats-UpTo-Sequence` for `multi_last`).
    fn direct_batch(&mut self, server: &Server, reply: &str, req: &GetReq) {
        let time = |t: &Option<String>| t.as_deref().and_then(super::time::parse_rfc3339);
        let last = self.store.state().last_seq;
        // The messages to send, each with how many would still follow it.
        let (seqs, up_to): (Vec<(u64, u64)>, Option<u64>) = if !req.multi_last.is_empty() {
            let up_to = if req.up_to_seq > 0 {
                req.up_to_seq.min(last)
            } else if let Some(t) = time(&req.up_to_time) {
                self.store.seq_for_time(t).saturating_sub(1)
            } else {
                last
            };
            let mut seqs = if up_to >= last {
                self.store.last_per_subject(&req.multi_last)
            } else {
                // The last message per subject as of `up_to`: read backwards from there.
                let mut seen = std::collections::HashSet::new();
                let mut v = Vec::new();
                let mut s = up_to;
                while s >= 1 {
                    if let Some((subj, _, _)) = self.store.peek(s) {
                        let wanted = req
                            .multi_last
                            .iter()
                            .any(|f| crate::subject::matches(subj.as_ref(), f.as_str()));
                        if wanted && seen.insert(subj.clone()) {
                            v.push(s);
                        }
                    }
                    s -= 1;
                }
                v.sort_unstable();
                v
            };
            if req.batch > 0 {
                seqs.truncate(req.batch);
            }
            let n = seqs.len() as u64;
            let with_pending = seqs
                .into_iter()
                .enumerate()
                .map(|(i, s)| (s, n - 1 - i as u64))
                .collect();
            (with_pending, Some(up_to))
        } else {
            let filters: Vec<String> = req.next_by_subj.iter().cloned().collect();
            let mut from = match time(&req.start_time) {
                Some(t) => self.store.seq_for_time(t),
                None => req.seq.max(1),
            };
            let mut v = Vec::new();
            while v.len() < req.batch {
                let Some(s) = self.store.next_matching(from, &filters) else {
                    break;
                };
                v.push((s, 0));
                from = s + 1;
            }
            for (s, pending) in v.iter_mut() {
                *pending = self.store.count_from(*s + 1, &filters);
            }
            (v, None)
        };
        if seqs.is_empty() {
            let text = if up_to.is_some() {
                "No Results"
            } else {
                "Message Not Found"
            };
            let h = headers::status(404, text, &[]);
            self.sender
                .send(server, &self.account, reply.as_bytes(), None, Some(&h), b"");
            return;
        }
        let (mut prev, mut pending, mut bytes) = (0u64, 0u64, 0usize);
        for (seq, left) in seqs {
            let Some(m) = self.store.get(seq) else {
                continue;
            };
            let extra = vec![
                ("Nats-Num-Pending", left.to_string()),
                ("Nats-Last-Sequence", prev.to_string()),
            ];
            self.send_direct(server, reply, &m, req.no_hdr, extra);
            prev = seq;
            pending = left;
            bytes += m.subject.len() + m.hdr.len() + m.data.len();
            if req.max_bytes > 0 && bytes >= req.max_bytes {
                break;
            }
        }
        let mut extra = vec![
            ("Nats-Num-Pending", pending.to_string()),
            ("Nats-Last-Sequence", prev.to_string()),
        ];
        if let Some(u) = up_to {
            extra.push(("Nats-UpTo-Sequence", u.to_string()));
        }
        let h = headers::status(204, "EOB", &extra);
        self.sender
            .send(server, &self.account, reply.as_bytes(), None, Some(&h), b"");
    }

    fn find(&self, req: &GetReq) -> Result<u64, ApiError> {
        if let Some(s) = req.last_by_subj.as_deref().filter(|s| !s.is_empty()) {
            return self
                .store
                .last_for(s)
                .ok_or_else(ApiError::no_message_found);
        }
        if let Some(s) = req.next_by_subj.as_deref().filter(|s| !s.is_empty()) {
            return self
                .store
                .first_for(s, req.seq.max(1))
                .ok_or_else(ApiError::no_message_found);
        }
        if req.seq == 0 {
            return Err(ApiError::bad_request());
        }
        if self.store.peek(req.seq).is_none() {
            return Err(ApiError::no_message_found());
        }
        Ok(req.seq)
    }

    fn purge(&mut self, filter: &str, seq: u64, keep: u64) -> u64 {
        let st = self.store.state();
        let victims: Vec<u64> = if filter.is_empty() || filter == ">" {
            if seq == 0 && keep == 0 {
                // Everything: one purge mark instead of a tombstone per message.
                let n = st.msgs;
                let all: Vec<(u64, std::sync::Arc<str>)> = self
                    .store
                    .matching(">")
                    .into_iter()
                    .filter_map(|s| self.store.peek(s).map(|(subj, _, _)| (s, subj.clone())))
                    .collect();
                if let Err(e) = self.store.purge_below(st.last_seq + 1) {
                    tracing::error!("JetStream purge of '{}' failed: {e}", self.name);
                }
                for (s, subj) in all {
                    for c in self.consumers.values_mut() {
                        c.on_removed(s, &subj);
                    }
                }
                self.after_purge();
                return n;
            }
            let all = self.store.matching(">");
            if seq > 0 {
                all.into_iter().filter(|s| *s < seq).collect()
            } else {
                let n = all.len().saturating_sub(keep as usize);
                all[..n].to_vec()
            }
        } else {
            let all = self.store.matching(filter);
            if seq > 0 {
                all.into_iter().filter(|s| *s < seq).collect()
            } else if keep > 0 {
                // Keep the newest `keep` per subject matching the filter.
                let mut per: HashMap<std::sync::Arc<str>, Vec<u64>> = HashMap::new();
                for s in all {
                    if let Some((subj, _, _)) = self.store.peek(s) {
                        per.entry(subj.clone()).or_default().push(s);
                    }
                }
                let mut v = Vec::new();
                for (_, seqs) in per {
                    let n = seqs.len().saturating_sub(keep as usize);
                    v.extend_from_slice(&seqs[..n]);
                }
                v.sort_unstable();
                v
            } else {
                all
            }
        };
        let n = victims.len() as u64;
        for s in victims {
            self.remove_msg(s);
        }
        self.after_purge();
        n
    }

    fn after_purge(&mut self) {
        let first = self.store.state().first_seq;
        for c in self.consumers.values_mut() {
            // Consumers skip what was purged.
            if c.st.next_sseq < first {
                c.st.next_sseq = first;
            }
            if c.st.ack_floor_sseq < first.saturating_sub(1) {
                c.st.ack_floor_sseq = first.saturating_sub(1);
            }
            c.recount(&self.store);
            c.dirty = true;
        }
    }
}

/// `STREAM.INFO` options.
#[derive(Debug, Default, Deserialize)]
pub struct InfoReq {
    #[serde(default)]
    pub deleted_details: bool,
    #[serde(default)]
    pub subjects_filter: Option<String>,
    /// Where the subjects page starts (nats-server takes a negative one as 0).
    #[serde(default)]
    pub offset: i64,
}

/// Subjects per page of a stream info's `state.subjects` (nats-server's `JSMaxSubjectDetails`).
const SUBJECTS_PAGE: usize = 100_000;

/// `STREAM.MSG.GET` / `DIRECT.GET` request.
#[derive(Debug, Default, Deserialize)]
pub struct GetReq {
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub last_by_subj: Option<String>,
    #[serde(default)]
    pub next_by_subj: Option<String>,
    /// Batched direct gets (`DIRECT.GET` only): at most this many messages, then an EOB.
    #[serde(default)]
    pub batch: usize,
    /// Stop a batch once this many bytes went out.
    #[serde(default)]
    pub max_bytes: usize,
    /// The last message of every subject matching these filters.
    #[serde(default)]
    pub multi_last: Vec<String>,
    /// `multi_last` as of this sequence.
    #[serde(default)]
    pub up_to_seq: u64,
    /// `multi_last` as of this time.
    #[serde(default)]
    pub up_to_time: Option<String>,
    /// A batch from the first message at or after this time.
    #[serde(default)]
    pub start_time: Option<String>,
    /// The message without headers: `hdrs` left out of `MSG.GET`, and direct gets sent as
    /// plain messages (a batch's `EOB` keeps its own).
    #[serde(default)]
    pub no_hdr: bool,
}

/// Parses an optional JSON body (empty means defaults).
pub(crate) fn parse_opt<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    strict: bool,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    super::errors::from_json(body, strict)
}

/// A `Nats-TTL` value as nats-server reads it: `never` (`Some(None)`), whole seconds, or a Go
/// duration of at least one second (`Some(Some(nanos))`); anything else is invalid (`None`).
fn parse_ttl(v: &str) -> Option<Option<i64>> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("never") {
        return Some(None);
    }
    let nanos: i128 = match v.parse::<i64>() {
        Ok(secs) => i128::from(secs) * 1_000_000_000,
        Err(_) => crate::config::duration::parse_go_duration(v).ok()?,
    };
    (nanos >= 1_000_000_000).then(|| Some(i64::try_from(nanos).unwrap_or(i64::MAX)))
}

/// A random consumer name, as nats-server makes them (8 base62 characters of a hash).
fn random_name() -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| A[fastrand::usize(..A.len())] as char)
        .collect()
}

/// The total in a counter message's body, `{"val":"<decimal>"}`.
fn counter_value(body: &[u8]) -> Option<BigInt> {
    #[derive(serde::Deserialize)]
    struct Counter {
        val: String,
    }
    let c: Counter = serde_json::from_slice(body).ok()?;
    BigInt::parse(&c.val)
}

/// Why a consumer update is refused, in nats-server's words and order
/// (`checkNewConsumerConfig`); `None` when the changed fields may change.
fn refused_update(old: &ConsumerConfig, new: &ConsumerConfig) -> Option<&'static str> {
    let why = if old.deliver_policy != new.deliver_policy {
        "deliver policy can not be updated"
    } else if old.opt_start_seq != new.opt_start_seq {
        "start sequence can not be updated"
    } else if old.opt_start_time != new.opt_start_time {
        "start time can not be updated"
    } else if old.ack_policy != new.ack_policy {
        "ack policy can not be updated"
    } else if old.replay_policy != new.replay_policy {
        "replay policy can not be updated"
    } else if old.idle_heartbeat != new.idle_heartbeat {
        "heart beats can not be updated"
    } else if old.flow_control != new.flow_control {
        "flow control can not be updated"
    } else if !old.is_push() && new.is_push() {
        "can not update pull consumer to push based"
    } else if old.is_push() && !new.is_push() {
        "can not update push consumer to pull based"
    } else if old.max_waiting != new.max_waiting {
        "max waiting can not be updated"
    } else {
        return None;
    };
    Some(why)
}
