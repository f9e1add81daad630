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

use super::config::{Compression, Retention, Storage, StreamConfig};
use super::consumer::{Consumer, Ctx};
use super::consumer_config::AckPolicy;
use super::crypt;
use super::errors::ApiError;
use super::headers;
use super::store::Store;
use super::JetStream as JsShared;
use crate::accounts::Account;
use crate::clock::unix_nanos;
use crate::protocol::Msg;
use crate::server::internal::InternalSender;
use crate::server::subscription::Subscription;
use crate::server::Server;

mod api;
mod atomic;
mod consumers;
mod direct;
mod fast_batch;
mod ingest;
mod limits;
mod replicated;
mod schedule;
pub mod snapshot;
mod source;
use api::InfoReq;
use consumers::random_name;
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
    /// Committed entries of the stream's Raft group, in log order; those up to
    /// `replay_until` were applied before a restart (applied again, answered never).
    Replicated {
        entries: Vec<(u64, Bytes)>,
        replay_until: u64,
    },
    /// The stream was created (clustered): answer the create request on `reply`.
    Created { reply: String },
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
    /// This server answers for the stream: it is the leader of its group, or the stream is
    /// not replicated.
    pub leader: std::sync::atomic::AtomicBool,
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
    /// Set for a replicated stream: its Raft group.
    pub replica: Option<super::clustered::ReplicaLink>,
}

/// A stream's files could not be set up: logged with the cause, answered with nats-server's
/// words (10049 "error creating store for stream").
fn store_failed(stream: &str, what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::error!("JetStream stream '{stream}': {what}: {e}");
    ApiError::stream_create("error creating store for stream")
}

/// Opens the store, restores consumers and starts the thread.
pub fn spawn(s: Spawn) -> Result<Arc<StreamHandle>, ApiError> {
    let mut key = None;
    let mut store = match &s.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| store_failed(&s.cfg.name, "could not create stream directory", e))?;
            key = crypt::stream_key(dir, &s.cfg.name, s.shared.encryption.as_ref())
                .map_err(|e| store_failed(&s.cfg.name, "could not set up the stream key", e))?;
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
                .map_err(|e| store_failed(&s.cfg.name, "could not write stream metadata", e))?;
            }
            Store::open_file_keyed(&dir.join("msgs"), s.shared.sync_always, key.clone())
                .map_err(|e| store_failed(&s.cfg.name, "could not open the stream store", e))?
        }
        None => Store::memory(),
    };
    store.set_compress(s.cfg.compression == Compression::S2);
    if s.fresh && s.cfg.first_seq > 1 {
        store
            .set_first_seq(s.cfg.first_seq)
            .map_err(|e| ApiError::stream_create(&e.to_string()))?;
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
        leader: std::sync::atomic::AtomicBool::new(s.replica.is_none()),
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
        replica: None,
        apply_ts: None,
    };
    if let Some(link) = s.replica {
        stream.replica = Some(stream.open_replica(link)?);
    }
    stream.start_origins();
    stream.restore_consumers();
    stream.rebuild_dedupe();
    stream.rebuild_ttls();
    stream.rebuild_schedules();
    stream.publish_numbers();
    let t = std::thread::Builder::new()
        .name(format!("js-{}", stream.name))
        .spawn(move || stream.run(rx))
        .map_err(|e| ApiError::stream_create(&format!("could not start stream: {e}")))?;
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
    /// Set for a replicated stream.
    replica: Option<replicated::Replica>,
    /// While a replicated entry is applied: the time its leader took it in.
    apply_ts: Option<i64>,
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
                self.sender
                    .send(server, &self.account, Msg::new(&reply, body.as_bytes()));
            }
        }
        // The applied index is written once what it covers is in the store's files.
        self.save_applied();
        for (reply, body) in std::mem::take(&mut self.acks) {
            self.sender
                .send(server, &self.account, Msg::new(&reply, &body));
        }
        self.timers(server);
        // A follower's consumers wait: their leader delivers.
        if self.wake && self.answers() {
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
            self.replicate_consumers();
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
        if !self.answers() {
            return;
        }
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
            if self.replica.is_some() {
                // Every replica deletes it, in log order.
                self.propose_api(Op::ConsumerDelete(name), None, Bytes::new());
            } else {
                self.delete_consumer(server, &name);
            }
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
            } if self.replica.is_some() => self.propose_msg(subject, reply, hdr, data),
            Cmd::Msg {
                subject,
                reply,
                hdr,
                data,
            } => self.process_msg(server, &subject, reply, &hdr, &data),
            Cmd::Api {
                op, reply, body, ..
            } if self.replica.is_some() && replicated::changes(&op) => {
                self.propose_api(op, reply, body)
            }
            Cmd::Replicated {
                entries,
                replay_until,
            } => self.apply_replicated(server, entries, replay_until),
            Cmd::Created { reply } => self.answer_created(server, &reply),
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
                    self.sender
                        .send(server, &self.account, Msg::new(&r, resp.as_bytes()));
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
                        ctx.sender.send(
                            server,
                            ctx.account,
                            Msg::new(&reply, b"").with_headers(&h),
                        );
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

    // ----- acks and retention -----

    // ----- consumers -----

    // ----- stream API -----
}
