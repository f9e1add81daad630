//! JetStream: persistent streams and consumers behind the `$JS.API` subjects.
//!
//! Requests arrive on internal subscriptions (`$JS.API.>` and `$JS.ACK.>` in every account
//! with JetStream, plus each stream's subjects). Account-level requests (create, list, ...)
//! are served by one API thread; everything about one stream goes to that stream's own thread
//! ([`stream`]), which owns its store ([`store`]) and consumers ([`consumer`]).

pub mod advisory;
pub mod archive;
pub mod backup;
pub mod config;
pub mod consumer;
pub mod counter;
pub mod cron;
pub mod crypt;
pub mod errors;
pub mod headers;
pub mod store;
pub mod stream;
pub mod time;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::accounts::Account;
use crate::options::{JetStreamOptions, JsAccountLimits};
use crate::server::client::Client;
use crate::server::internal::InternalSender;
use crate::server::subscription::{InternalHandler, Subscription};
use crate::server::{Server, API_LEVEL};
use config::{Storage, StreamConfig};
use errors::ApiError;
use stream::{Cmd, Op, StreamHandle};

/// An API error response: the type, the error, and the paging fields some types always carry.
pub(crate) fn error_body(kind: &str, e: ApiError) -> Value {
    let mut v = json!({"type": format!("io.nats.jetstream.api.v1.{kind}"), "error": e});
    if kind == "stream_info_response" {
        v["total"] = json!(0);
        v["offset"] = json!(0);
        v["limit"] = json!(0);
    }
    v
}

/// One account's JetStream: its limits, streams and API counters.
#[derive(Debug)]
pub struct JsAccount {
    pub name: String,
    pub account: Arc<Account>,
    pub limits: JsAccountLimits,
    /// `<store_dir>/jetstream/<account>/streams`.
    dir: PathBuf,
    pub streams: RwLock<BTreeMap<String, Arc<StreamHandle>>>,
    subs: Mutex<Vec<Arc<Subscription>>>,
    pub api_total: AtomicU64,
    pub api_errors: AtomicU64,
}

impl JsAccount {
    /// A stream by name.
    pub fn stream(&self, name: &str) -> Option<Arc<StreamHandle>> {
        self.streams.read().get(name).cloned()
    }

    /// Bytes held in streams of `storage`.
    pub fn usage(&self, storage: Storage) -> u64 {
        self.streams
            .read()
            .values()
            .filter(|s| s.storage() == storage)
            .map(|s| s.bytes.load(Ordering::Relaxed))
            .sum()
    }

    /// Consumers across the account's streams.
    pub fn consumer_count(&self) -> u64 {
        self.streams
            .read()
            .values()
            .map(|s| s.consumers.load(Ordering::Relaxed))
            .sum()
    }
}

/// An API request handed to the API thread.
struct ApiReq {
    acc: Arc<JsAccount>,
    subject: String,
    reply: Option<String>,
    body: Bytes,
    /// The connection that sent it (for the API audit).
    publisher: u64,
    /// It carried a `Nats-Required-Api-Level` above ours (or not a number).
    too_new: bool,
}

/// The server's JetStream.
#[derive(Debug)]
pub struct JetStream {
    server: Weak<Server>,
    pub server_name: String,
    pub domain: Option<String>,
    pub sync_interval: Duration,
    pub sync_always: bool,
    /// `strict`: API requests with fields nats-server does not know are refused.
    pub strict: bool,
    /// `<store_dir>/jetstream`.
    pub store_dir: PathBuf,
    /// Server-wide memory and file storage limits (bytes); reloadable.
    max_memory: AtomicI64,
    max_store: AtomicI64,
    /// `cipher` and `key`: file streams are encrypted at rest.
    pub encryption: Option<crypt::MasterKey>,
    accounts: RwLock<HashMap<String, Arc<JsAccount>>>,
    pub(crate) client: Arc<Client>,
    api_tx: Mutex<Option<Sender<ApiReq>>>,
    api_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Streams that could not be recovered at start, for `/healthz`.
    failed: Mutex<Vec<String>>,
}

/// Total system memory from `/proc/meminfo` (Linux), for the default memory limit.
fn system_memory() -> Option<i64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// nats-server's `friendlyBytes`.
pub fn friendly_bytes(b: i64) -> String {
    let f = b as f64;
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if b < 1024 {
        return format!("{b} B");
    }
    let exp = ((f.ln() / 1024f64.ln()) as usize).min(6);
    format!("{:.2} {}B", f / 1024f64.powi(exp as i32), UNITS[exp - 1])
}

/// The effective server memory limit for `max_mem` (negative: 75% of system memory).
fn effective_max_memory(configured: i64) -> i64 {
    if configured < 0 {
        system_memory().map_or(1 << 30, |m| m / 4 * 3)
    } else {
        configured
    }
}

/// The effective server file storage limit for `max_file` (negative: 1 TiB).
fn effective_max_store(configured: i64) -> i64 {
    if configured < 0 {
        1 << 40
    } else {
        configured
    }
}

impl crate::server::links::Service for JetStream {
    fn shutdown(&self) {
        JetStream::shutdown(self)
    }
    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

impl JetStream {
    /// The server's JetStream, when it is enabled and started.
    pub fn of(server: &Server) -> Option<Arc<JetStream>> {
        server.jetstream_service()?.clone().as_any().downcast().ok()
    }

    /// The server-wide memory storage limit.
    pub fn max_memory(&self) -> i64 {
        self.max_memory.load(Ordering::Relaxed)
    }

    /// The server-wide file storage limit.
    pub fn max_store(&self) -> i64 {
        self.max_store.load(Ordering::Relaxed)
    }

    /// Reload: new server-wide limits, logged as nats-server logs them. New writes are
    /// checked against them; nothing stored is removed.
    pub fn set_limits(&self, max_memory: i64, max_file: i64) {
        let (mem, file) = (
            effective_max_memory(max_memory),
            effective_max_store(max_file),
        );
        if self.max_memory.swap(mem, Ordering::Relaxed) != mem {
            tracing::info!(
                "Reloaded: JetStream max_mem_store = {}",
                friendly_bytes(mem)
            );
        }
        if self.max_store.swap(file, Ordering::Relaxed) != file {
            tracing::info!(
                "Reloaded: JetStream max_file_store = {}",
                friendly_bytes(file)
            );
        }
    }

    /// Starts JetStream: the store directory, the banner, the enabled accounts and their
    /// recovered streams.
    pub fn start(server: &Arc<Server>, opts: &JetStreamOptions) -> Result<Arc<JetStream>, String> {
        let store_dir = opts.store_dir.join("jetstream");
        std::fs::create_dir_all(&store_dir)
            .map_err(|e| format!("could not create storage directory - {e}"))?;
        let max_memory = effective_max_memory(opts.max_memory);
        let max_store = effective_max_store(opts.max_file);
        let client = Client::internal(server.next_cid(), server.system_account.clone());
        let (tx, rx) = std::sync::mpsc::channel::<ApiReq>();
        let js = Arc::new(JetStream {
            server: Arc::downgrade(server),
            server_name: server.server_name.clone(),
            domain: opts.domain.clone(),
            sync_interval: opts.sync_interval,
            sync_always: opts.sync_always,
            strict: opts.strict,
            store_dir: store_dir.clone(),
            max_memory: AtomicI64::new(max_memory),
            max_store: AtomicI64::new(max_store),
            encryption: opts.encryption.as_ref().map(crypt::MasterKey::new),
            accounts: RwLock::new(HashMap::new()),
            client,
            api_tx: Mutex::new(Some(tx)),
            api_thread: Mutex::new(None),
            failed: Mutex::new(Vec::new()),
        });
        tracing::info!("Starting JetStream");
        for line in [
            "    _ ___ _____ ___ _____ ___ ___   _   __  __",
            " _ | | __|_   _/ __|_   _| _ \\ __| /_\\ |  \\/  |",
            "| || | _|  | | \\__ \\ | | |   / _| / _ \\| |\\/| |",
            " \\__/|___| |_| |___/ |_| |_|_\\___/_/ \\_\\_|  |_|",
            "",
            "         https://docs.nats.io/jetstream",
            "",
            "---------------- JETSTREAM ----------------",
        ] {
            tracing::info!("{line}");
        }
        tracing::info!("  Strict:          {}", opts.strict);
        tracing::info!("  Max Memory:      {}", friendly_bytes(max_memory));
        tracing::info!("  Max Storage:     {}", friendly_bytes(max_store));
        tracing::info!("  Store Directory: \"{}\"", store_dir.display());
        if let Some(e) = &js.encryption {
            tracing::info!("  Encryption:      {}", e.cipher().name());
        }
        if let Some(d) = &opts.domain {
            tracing::info!("  Domain:          {d}");
        }
        tracing::info!("  API Level:       {API_LEVEL}");
        tracing::info!("-------------------------------------------");
        let started = std::time::Instant::now();
        let worker = js.clone();
        let t = std::thread::Builder::new()
            .name("js-api".into())
            .spawn(move || {
                let mut sender = InternalSender::default();
                while let Ok(req) = rx.recv() {
                    let Some(server) = worker.server.upgrade() else {
                        break;
                    };
                    worker.serve(&server, &mut sender, req);
                    sender.flush(&server);
                }
            })
            .map_err(|e| e.to_string())?;
        *js.api_thread.lock() = Some(t);
        let sopts = server.options();
        let enabled: Vec<(String, JsAccountLimits)> = if sopts.operator_mode() {
            // Operator mode: accounts whose JWT grants JetStream storage.
            crate::auth::jwt::load_accounts(&sopts)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|c| {
                    let js = &c.nats.limits.jetstream;
                    if js.mem_storage == 0 && js.disk_storage == 0 {
                        return None;
                    }
                    // In JWTs 0 streams/consumers means no limit was set.
                    let unset = |v: i64| if v == 0 { -1 } else { v };
                    Some((
                        c.sub.clone(),
                        JsAccountLimits {
                            max_memory: js.mem_storage,
                            max_store: js.disk_storage,
                            max_streams: unset(js.streams),
                            max_consumers: unset(js.consumer),
                        },
                    ))
                })
                .collect()
        } else if sopts.accounts.is_empty() {
            vec![("$G".to_string(), JsAccountLimits::default())]
        } else {
            sopts
                .accounts
                .iter()
                .filter_map(|a| Some((a.name.clone(), a.jetstream?)))
                .collect()
        };
        for (name, limits) in enabled {
            if let Some(acc) = server.account(&name) {
                js.enable_account(server, acc, limits)?;
            }
        }
        tracing::info!("Took {:?} to start JetStream", started.elapsed());
        Ok(js)
    }

    /// Subscribes `handler` to `subject` in `account` as the server itself.
    fn subscribe(
        &self,
        server: &Server,
        account: &Arc<Account>,
        subject: &str,
        handler: InternalHandler,
    ) -> Arc<Subscription> {
        self.client
            .subscribe_internal(server, account, subject, handler)
    }

    /// Turns JetStream on for `account` and recovers its streams from disk.
    fn enable_account(
        self: &Arc<Self>,
        server: &Arc<Server>,
        account: Arc<Account>,
        limits: JsAccountLimits,
    ) -> Result<(), String> {
        let dir = self.store_dir.join(&account.name).join("streams");
        let acc = Arc::new(JsAccount {
            name: account.name.clone(),
            account: account.clone(),
            limits,
            dir: dir.clone(),
            streams: RwLock::new(BTreeMap::new()),
            subs: Mutex::new(Vec::new()),
            api_total: AtomicU64::new(0),
            api_errors: AtomicU64::new(0),
        });
        // With a domain, `$JS.<domain>.API.>` reaches the same API (clients that name the
        // domain use it).
        let domain_prefix = self.domain.as_ref().map(|d| format!("$JS.{d}.API."));
        let api = {
            let weak = Arc::downgrade(&acc);
            let tx = self.api_tx.lock().clone();
            let domain_prefix = domain_prefix.clone();
            InternalHandler(Arc::new(move |subject, reply, hdr, payload| {
                let (Some(acc), Some(tx)) = (weak.upgrade(), tx.as_ref()) else {
                    return;
                };
                let too_new = hdr.is_some_and(requires_newer_api);
                let Ok(subject) = std::str::from_utf8(subject) else {
                    return;
                };
                let local;
                let subject = match domain_prefix
                    .as_deref()
                    .and_then(|p| subject.strip_prefix(p))
                {
                    Some(rest) => {
                        local = format!("$JS.API.{rest}");
                        local.as_str()
                    }
                    None => subject,
                };
                let reply = reply
                    .and_then(|r| std::str::from_utf8(r).ok())
                    .map(str::to_string);
                // The hot paths skip the API thread.
                if let Some(rest) = subject.strip_prefix("$JS.API.CONSUMER.MSG.NEXT.") {
                    if let (Some((stream, consumer)), Some(reply)) = (rest.split_once('.'), reply) {
                        acc.api_total.fetch_add(1, Ordering::Relaxed);
                        // A missing stream reaches its thread as a missing consumer would not:
                        // hand it to the API thread, which answers as nats-server (503).
                        if let Some(h) = acc.stream(stream) {
                            h.send(Cmd::Next {
                                consumer: consumer.to_string(),
                                reply,
                                body: Bytes::copy_from_slice(payload),
                            });
                            return;
                        }
                        let _ = tx.send(ApiReq {
                            acc,
                            subject: subject.to_string(),
                            reply: Some(reply),
                            body: Bytes::new(),
                            publisher: crate::server::internal::publisher_cid(),
                            too_new,
                        });
                    }
                    return;
                }
                if let Some(rest) = subject.strip_prefix("$JS.API.DIRECT.GET.") {
                    let (stream, subj) = match rest.split_once('.') {
                        Some((s, subj)) => (s, Some(subj.to_string())),
                        None => (rest, None),
                    };
                    match acc.stream(stream) {
                        Some(h) if h.cfg.read().allow_direct => {
                            if let Some(reply) = reply {
                                acc.api_total.fetch_add(1, Ordering::Relaxed);
                                h.send(Cmd::DirectGet {
                                    reply,
                                    body: Bytes::copy_from_slice(payload),
                                    subject: subj,
                                });
                            }
                        }
                        // nats-server subscribes direct gets per stream that allows them:
                        // for any other name there is no responder.
                        _ => crate::server::internal::decline_delivery(),
                    }
                    return;
                }
                let _ = tx.send(ApiReq {
                    acc,
                    subject: subject.to_string(),
                    reply,
                    body: Bytes::copy_from_slice(payload),
                    publisher: crate::server::internal::publisher_cid(),
                    too_new,
                });
            }))
        };
        let ack = {
            let weak = Arc::downgrade(&acc);
            InternalHandler(Arc::new(move |subject, reply, _hdr, payload| {
                let Some(acc) = weak.upgrade() else { return };
                let Ok(subject) = std::str::from_utf8(subject) else {
                    return;
                };
                let toks: Vec<&str> = subject.splitn(6, '.').collect();
                let stream = match subject.split('.').count() {
                    9 => toks.get(2),
                    n if n >= 12 => toks.get(4),
                    _ => None,
                };
                let Some(h) = stream.and_then(|s| acc.stream(s)) else {
                    return;
                };
                h.send(Cmd::Ack {
                    subject: subject.to_string(),
                    reply: reply
                        .and_then(|r| std::str::from_utf8(r).ok())
                        .map(str::to_string),
                    body: Bytes::copy_from_slice(payload),
                });
            }))
        };
        {
            let mut subs = acc.subs.lock();
            subs.push(self.subscribe(server, &account, "$JS.API.>", api.clone()));
            if let Some(p) = &domain_prefix {
                subs.push(self.subscribe(server, &account, &format!("{p}>"), api));
            }
            subs.push(self.subscribe(server, &account, "$JS.ACK.>", ack));
            let weak = Arc::downgrade(&acc);
            let fc = InternalHandler(Arc::new(move |subject, _reply, hdr, _payload| {
                let Some(acc) = weak.upgrade() else { return };
                let Ok(subject) = std::str::from_utf8(subject) else {
                    return;
                };
                // $JS.FC.<stream>.<consumer>.<n>
                if let Some(h) = subject.split('.').nth(2).and_then(|s| acc.stream(s)) {
                    h.send(Cmd::FlowControl {
                        subject: subject.to_string(),
                        hdr: hdr.map(Bytes::copy_from_slice).unwrap_or_default(),
                    });
                }
            }));
            subs.push(self.subscribe(server, &account, "$JS.FC.>", fc));
        }
        self.accounts.write().insert(acc.name.clone(), acc.clone());
        // Recover.
        if let Ok(rd) = std::fs::read_dir(&dir) {
            let mut dirs: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            dirs.sort();
            for d in dirs {
                let Ok(meta) = std::fs::read(d.join("meta.inf")) else {
                    continue;
                };
                #[derive(Deserialize)]
                struct Meta {
                    config: StreamConfig,
                    created: i64,
                }
                // Encrypted streams: the key file opens with the configured key, or the
                // stream stays down (and is reported) while everything else runs.
                let name = d.file_name().map(|n| n.to_string_lossy().into_owned());
                let name = name.unwrap_or_default();
                let meta: Result<Meta, String> =
                    crypt::stream_key(&d, &name, self.encryption.as_ref())
                        .and_then(|k| crypt::open_bytes(k.as_deref(), meta, &d.join("meta.inf")))
                        .map_err(|e| e.to_string())
                        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
                let meta: Meta = match meta {
                    Ok(m) => m,
                    Err(e) => {
                        let msg = format!(
                            "JetStream stream '{} > {name}' in {} could not be recovered: {e}",
                            acc.name,
                            d.display()
                        );
                        tracing::error!("{msg}");
                        self.failed.lock().push(msg);
                        continue;
                    }
                };
                match self.start_stream(server, &acc, meta.config, meta.created, false) {
                    Ok(h) => {
                        let st_msgs = h.msgs.load(Ordering::Relaxed);
                        tracing::info!(
                            "  Restored {} messages for stream '{} > {}'",
                            st_msgs,
                            acc.name,
                            h.name
                        );
                    }
                    Err(e) => {
                        let msg = format!(
                            "JetStream stream '{} > {name}' in {} could not be recovered: {e}",
                            acc.name,
                            d.display()
                        );
                        tracing::error!("{msg}");
                        self.failed.lock().push(msg);
                    }
                }
            }
        }
        // Backups placed in `restore/` while the broker was down.
        for msg in backup::restore_offline(self, server, &acc) {
            tracing::error!("{msg}");
            self.failed.lock().push(msg);
        }
        Ok(())
    }

    fn start_stream(
        self: &Arc<Self>,
        server: &Arc<Server>,
        acc: &Arc<JsAccount>,
        cfg: StreamConfig,
        created: i64,
        fresh: bool,
    ) -> Result<Arc<StreamHandle>, ApiError> {
        let dir = (cfg.storage == Storage::File).then(|| acc.dir.join(&cfg.name));
        let h = stream::spawn(stream::Spawn {
            cfg,
            created,
            dir,
            server: Arc::downgrade(server),
            account: acc.account.clone(),
            shared: self.clone(),
            fresh,
        })?;
        self.subscribe_stream(server, acc, &h);
        acc.streams.write().insert(h.name.clone(), h.clone());
        Ok(h)
    }

    fn subscribe_stream(&self, server: &Server, acc: &JsAccount, h: &Arc<StreamHandle>) {
        let subjects = h.cfg.read().subjects.clone();
        let mut subs = Vec::new();
        for s in subjects {
            let weak = Arc::downgrade(h);
            let handler = InternalHandler(Arc::new(move |subject, reply, hdr, payload| {
                let Some(h) = weak.upgrade() else { return };
                h.send(Cmd::Msg {
                    subject: String::from_utf8_lossy(subject).into_owned(),
                    reply: reply.map(|r| String::from_utf8_lossy(r).into_owned()),
                    hdr: hdr.map(Bytes::copy_from_slice).unwrap_or_default(),
                    data: Bytes::copy_from_slice(payload),
                });
            }));
            subs.push(self.subscribe(server, &acc.account, &s, handler));
        }
        let old = std::mem::replace(&mut *h.subs.lock(), subs);
        for s in old {
            server.remove_sub(&s);
        }
    }

    /// Stops every stream (state written, files kept).
    pub fn shutdown(&self) {
        let accounts: Vec<Arc<JsAccount>> = self.accounts.read().values().cloned().collect();
        for acc in accounts {
            let streams: Vec<Arc<StreamHandle>> = acc.streams.read().values().cloned().collect();
            for h in streams {
                h.stop(false);
            }
        }
        self.api_tx.lock().take();
    }

    /// The first problem that makes JetStream unhealthy: a stream that could not be
    /// recovered, or whose thread is no longer running.
    pub fn unhealthy(&self) -> Option<String> {
        if let Some(f) = self.failed.lock().first() {
            return Some(f.clone());
        }
        for acc in self.accounts() {
            for h in acc.streams.read().values() {
                if !h.running() {
                    return Some(format!(
                        "JetStream stream '{} > {}' is not current",
                        acc.name, h.name
                    ));
                }
            }
        }
        None
    }

    /// Turns JetStream on for an account whose (new) JWT grants storage, if it is not yet.
    pub fn enable_from_claims(
        self: &Arc<Self>,
        server: &Arc<Server>,
        c: &natrix_jwt::AccountClaims,
    ) {
        let js = &c.nats.limits.jetstream;
        if (js.mem_storage == 0 && js.disk_storage == 0) || self.account(&c.sub).is_some() {
            return;
        }
        let unset = |v: i64| if v == 0 { -1 } else { v };
        let limits = JsAccountLimits {
            max_memory: js.mem_storage,
            max_store: js.disk_storage,
            max_streams: unset(js.streams),
            max_consumers: unset(js.consumer),
        };
        if let Some(acc) = server.account(&c.sub) {
            if let Err(e) = self.enable_account(server, acc, limits) {
                tracing::error!("JetStream: could not enable account {}: {e}", c.sub);
            }
        }
    }

    /// An account's JetStream, if enabled.
    pub fn account(&self, name: &str) -> Option<Arc<JsAccount>> {
        self.accounts.read().get(name).cloned()
    }

    /// Every JetStream-enabled account.
    pub fn accounts(&self) -> Vec<Arc<JsAccount>> {
        let mut v: Vec<Arc<JsAccount>> = self.accounts.read().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Bytes used server-wide by `storage`.
    pub fn usage(&self, storage: Storage) -> u64 {
        self.accounts
            .read()
            .values()
            .map(|a| a.usage(storage))
            .sum()
    }

    /// Whether `size` more bytes fit the account's and the server's limits.
    pub fn check_storage(
        &self,
        cfg: &StreamConfig,
        account: &str,
        size: u64,
    ) -> Result<(), ApiError> {
        let Some(acc) = self.account(account) else {
            return Ok(());
        };
        let (acc_limit, server_limit) = match cfg.storage {
            Storage::Memory => (acc.limits.max_memory, self.max_memory()),
            Storage::File => (acc.limits.max_store, self.max_store()),
        };
        let used = acc.usage(cfg.storage);
        if acc_limit >= 0 && used + size > acc_limit as u64 {
            return Err(ApiError::account_resources_exceeded());
        }
        if server_limit >= 0 && self.usage(cfg.storage) + size > server_limit as u64 {
            return Err(insufficient(cfg.storage));
        }
        Ok(())
    }

    /// Whether the account may have one more consumer.
    pub fn check_consumer_limit(&self, account: &str) -> Result<(), ApiError> {
        let Some(acc) = self.account(account) else {
            return Ok(());
        };
        if acc.limits.max_consumers >= 0 && acc.consumer_count() as i64 >= acc.limits.max_consumers
        {
            return Err(ApiError::max_consumers());
        }
        Ok(())
    }

    /// The `$JS.API.INFO` body for an account.
    pub fn account_info(&self, acc: &JsAccount) -> Value {
        let streams = acc.streams.read().len();
        let mut v = json!({
            "type": "io.nats.jetstream.api.v1.account_info_response",
            "memory": acc.usage(Storage::Memory),
            "storage": acc.usage(Storage::File),
            "reserved_memory": 0,
            "reserved_storage": 0,
            "streams": streams,
            "consumers": acc.consumer_count(),
            "limits": {
                "max_memory": acc.limits.max_memory,
                "max_storage": acc.limits.max_store,
                "max_streams": acc.limits.max_streams,
                "max_consumers": acc.limits.max_consumers,
                "max_ack_pending": -1,
                "memory_max_stream_bytes": -1,
                "storage_max_stream_bytes": -1,
                "max_bytes_required": false,
            },
            "api": {
                "level": API_LEVEL,
                "total": acc.api_total.load(Ordering::Relaxed),
                "errors": acc.api_errors.load(Ordering::Relaxed),
            },
        });
        if let Some(d) = &self.domain {
            v["domain"] = json!(d);
        }
        v
    }

    /// Serves one account-level API request on the API thread.
    fn serve(self: &Arc<Self>, server: &Arc<Server>, sender: &mut InternalSender, req: ApiReq) {
        let Some(reply) = req.reply.clone() else {
            return;
        };
        let acc = req.acc.clone();
        let api = req.subject.strip_prefix("$JS.API.").unwrap_or("");
        let audit = advisory::Audit::new(
            server,
            &acc.account,
            req.publisher,
            &req.subject,
            &req.body,
            self.domain.as_ref(),
        );
        let result = match (cluster_only_kind(api), response_kind(api)) {
            // Without a cluster these are refused before anything else, the level too.
            (Some(kind), _) => Err((kind, ApiError::clustering_required())),
            // nats-server refuses before looking at the request.
            (None, Some(kind)) if req.too_new => Err((kind, ApiError::api_level_required())),
            _ => self.dispatch(
                server,
                &acc,
                api,
                &reply,
                &req.body,
                &audit,
                req.publisher,
                req.too_new,
            ),
        };
        // Counted once answered, as nats-server (an INFO does not count itself).
        acc.api_total.fetch_add(1, Ordering::Relaxed);
        let body = match result {
            Ok(None) => return,
            Ok(Some(v)) => v,
            Err((kind, e)) => {
                acc.api_errors.fetch_add(1, Ordering::Relaxed);
                error_body(kind, e)
            }
        };
        let body = body.to_string();
        sender.send(
            server,
            &acc.account,
            reply.as_bytes(),
            None,
            None,
            body.as_bytes(),
        );
        if let Some(a) = &audit {
            advisory::api_audit(server, &acc.account, sender, a, &body);
        }
    }

    /// Routes an API request: account-level ones are answered here (`Ok(Some)`), stream-level
    /// ones are handed to the stream, which answers itself (`Ok(None)`).
    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        self: &Arc<Self>,
        server: &Arc<Server>,
        acc: &Arc<JsAccount>,
        api: &str,
        reply: &str,
        body: &Bytes,
        audit: &Option<Box<advisory::Audit>>,
        publisher: u64,
        too_new: bool,
    ) -> Result<Option<Value>, (&'static str, ApiError)> {
        let toks: Vec<&str> = api.split('.').collect();
        let forward = |stream: &str,
                       op: Op,
                       kind: &'static str|
         -> Result<Option<Value>, (&'static str, ApiError)> {
            match acc.stream(stream) {
                Some(h) => {
                    h.send(Cmd::Api {
                        op,
                        reply: Some(reply.to_string()),
                        body: body.clone(),
                        audit: audit.clone(),
                    });
                    Ok(None)
                }
                None => Err((kind, ApiError::stream_not_found())),
            }
        };
        match toks.as_slice() {
            ["INFO"] => Ok(Some(self.account_info(acc))),
            ["CONSUMER", "MSG", "NEXT", ..] => {
                let h = headers::with(
                    b"NATS/1.0 503\r\n\r\n",
                    &[("Nats-Subject", format!("$JS.API.{api}"))],
                );
                let mut sender = InternalSender::default();
                sender.send(server, &acc.account, reply.as_bytes(), None, Some(&h), b"");
                sender.flush(server);
                Ok(None)
            }
            ["STREAM", "CREATE", name] => {
                let existed = acc.stream(name).is_some();
                let r = self.create_stream(server, acc, name, body);
                if r.is_ok() && !existed {
                    let mut sender = InternalSender::default();
                    advisory::stream_action(server, &acc.account, &mut sender, name, "create");
                    sender.flush(server);
                }
                r.map(Some).map_err(|e| ("stream_create_response", e))
            }
            ["STREAM", "UPDATE", name] => {
                let r = self.update_stream(server, acc, name, body);
                if r.is_ok() {
                    let mut sender = InternalSender::default();
                    advisory::stream_action(server, &acc.account, &mut sender, name, "modify");
                    sender.flush(server);
                }
                r.map(Some).map_err(|e| ("stream_update_response", e))
            }
            ["STREAM", "DELETE", name] => {
                let h = acc.streams.write().remove(*name);
                match h {
                    Some(h) => {
                        for s in h.subs.lock().drain(..) {
                            server.remove_sub(&s);
                        }
                        h.stop(true);
                        let mut sender = InternalSender::default();
                        advisory::stream_action(server, &acc.account, &mut sender, name, "delete");
                        sender.flush(server);
                        Ok(Some(
                            json!({"type": "io.nats.jetstream.api.v1.stream_delete_response", "success": true}),
                        ))
                    }
                    None => Err(("stream_delete_response", ApiError::stream_not_found())),
                }
            }
            ["STREAM", "INFO", name] => forward(name, Op::Info, "stream_info_response"),
            ["STREAM", "SNAPSHOT", name] => {
                backup::snapshot_request(self, server, acc, name, reply, body, publisher)
            }
            ["STREAM", "RESTORE", name] => Ok(Some(backup::restore_request(
                self, server, acc, name, body, publisher,
            ))),
            ["STREAM", "PURGE", name] => forward(name, Op::Purge, "stream_purge_response"),
            ["STREAM", "MSG", "GET", name] => forward(name, Op::MsgGet, "stream_msg_get_response"),
            ["STREAM", "MSG", "DELETE", name] => {
                forward(name, Op::MsgDelete, "stream_msg_delete_response")
            }
            ["STREAM", "NAMES"] | ["STREAM", "LIST"] => {
                let list = toks[1] == "LIST";
                #[derive(Deserialize, Default)]
                struct L {
                    #[serde(default)]
                    offset: usize,
                    #[serde(default)]
                    subject: String,
                }
                let kind = if list {
                    "stream_list_response"
                } else {
                    "stream_names_response"
                };
                let l: L = errors::parse_opt(body, self.strict).map_err(|e| (kind, e))?;
                let all: Vec<Arc<StreamHandle>> = acc
                    .streams
                    .read()
                    .values()
                    .filter(|h| {
                        l.subject.is_empty()
                            || h.cfg
                                .read()
                                .subjects
                                .iter()
                                .any(|s| config::subjects_overlap(s, &l.subject))
                    })
                    .cloned()
                    .collect();
                let total = all.len();
                let limit = if list { 256 } else { 1024 };
                let page: Vec<Arc<StreamHandle>> =
                    all.into_iter().skip(l.offset).take(limit).collect();
                if list {
                    let infos: Vec<Value> = page
                        .iter()
                        .filter_map(|h| h.info())
                        .map(|mut v| {
                            if let Value::Object(m) = &mut v {
                                m.remove("type");
                                m.remove("total");
                                m.remove("offset");
                                m.remove("limit");
                            }
                            // A list shows the stored metadata only, as nats-server's.
                            if let Some(md) = v["config"]["metadata"].as_object_mut() {
                                md.remove("_nats.level");
                                md.remove("_nats.ver");
                            }
                            v
                        })
                        .collect();
                    Ok(Some(
                        json!({"type": "io.nats.jetstream.api.v1.stream_list_response", "total": total, "offset": l.offset, "limit": limit, "streams": infos, "missing": null}),
                    ))
                } else {
                    let names: Vec<&str> = page.iter().map(|h| h.name.as_str()).collect();
                    let names = if names.is_empty() {
                        Value::Null
                    } else {
                        json!(names)
                    };
                    Ok(Some(
                        json!({"type": "io.nats.jetstream.api.v1.stream_names_response", "total": total, "offset": l.offset, "limit": limit, "streams": names}),
                    ))
                }
            }
            ["CONSUMER", "CREATE", stream] => forward(
                stream,
                Op::ConsumerCreate {
                    name: None,
                    filter: None,
                    durable_api: false,
                },
                "consumer_create_response",
            ),
            ["CONSUMER", "CREATE", stream, name, filter @ ..] => forward(
                stream,
                Op::ConsumerCreate {
                    name: Some(name.to_string()),
                    filter: (!filter.is_empty()).then(|| filter.join(".")),
                    durable_api: false,
                },
                "consumer_create_response",
            ),
            ["CONSUMER", "DURABLE", "CREATE", stream, name] => forward(
                stream,
                Op::ConsumerCreate {
                    name: Some(name.to_string()),
                    filter: None,
                    durable_api: true,
                },
                "consumer_create_response",
            ),
            ["CONSUMER", "INFO", stream, name] => forward(
                stream,
                Op::ConsumerInfo(name.to_string()),
                "consumer_info_response",
            ),
            ["CONSUMER", "PAUSE", stream, name] => forward(
                stream,
                Op::ConsumerPause(name.to_string()),
                "consumer_pause_response",
            ),
            // Answered by the consumer itself in nats-server: nothing when there is none.
            ["CONSUMER", "RESET", stream, _] if acc.stream(stream).is_none() => Ok(None),
            ["CONSUMER", "RESET", stream, name] => forward(
                stream,
                Op::ConsumerReset {
                    name: name.to_string(),
                    too_new,
                },
                "consumer_reset_response",
            ),
            ["CONSUMER", "UNPIN", stream, name] => forward(
                stream,
                Op::ConsumerUnpin(name.to_string()),
                "consumer_unpin_response",
            ),
            ["CONSUMER", "DELETE", stream, name] => forward(
                stream,
                Op::ConsumerDelete(name.to_string()),
                "consumer_delete_response",
            ),
            ["CONSUMER", "NAMES", stream] => {
                forward(stream, Op::ConsumerNames, "consumer_names_response")
            }
            ["CONSUMER", "LIST", stream] => {
                forward(stream, Op::ConsumerList, "consumer_list_response")
            }
            // nats-server has no subscription for unknown API subjects: no answer at all.
            _ => Ok(None),
        }
    }

    fn parse_stream_config(
        name: &str,
        body: &[u8],
        max_payload: i32,
        strict: bool,
    ) -> Result<StreamConfig, ApiError> {
        // An empty body is `{}`, whose empty name does not match the subject's.
        let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            body
        };
        let cfg: StreamConfig = errors::from_json(body, strict)?;
        let mut cfg = cfg;
        if cfg.name != name {
            return Err(ApiError::stream_mismatch());
        }
        cfg.normalize(max_payload)?;
        Ok(cfg)
    }

    fn check_overlap(acc: &JsAccount, cfg: &StreamConfig) -> Result<(), ApiError> {
        for h in acc.streams.read().values() {
            if h.name == cfg.name {
                continue;
            }
            let other = h.cfg.read();
            if cfg.subjects.iter().any(|a| {
                other
                    .subjects
                    .iter()
                    .any(|b| config::subjects_overlap(a, b))
            }) {
                return Err(ApiError::subject_overlap());
            }
        }
        Ok(())
    }

    fn create_stream(
        self: &Arc<Self>,
        server: &Arc<Server>,
        acc: &Arc<JsAccount>,
        name: &str,
        body: &[u8],
    ) -> Result<Value, ApiError> {
        let cfg = Self::parse_stream_config(name, body, server.options().max_payload, self.strict)?;
        if let Some(h) = acc.stream(name) {
            if *h.cfg.read() == cfg {
                // Idempotent: the same answer as the first create.
                let mut v = h.info().ok_or_else(ApiError::stream_not_found)?;
                v["type"] = json!("io.nats.jetstream.api.v1.stream_create_response");
                if let Value::Object(m) = &mut v {
                    for k in ["total", "offset", "limit", "cluster"] {
                        m.remove(k);
                    }
                }
                v["did_create"] = json!(true);
                return Ok(v);
            }
            return Err(ApiError::stream_name_exists());
        }
        Self::check_overlap(acc, &cfg)?;
        if acc.limits.max_streams >= 0 && acc.streams.read().len() as i64 >= acc.limits.max_streams
        {
            return Err(ApiError::max_streams());
        }
        let (acc_limit, server_limit) = match cfg.storage {
            Storage::Memory => (acc.limits.max_memory, self.max_memory()),
            Storage::File => (acc.limits.max_store, self.max_store()),
        };
        if cfg.max_bytes > 0
            && ((acc_limit >= 0 && cfg.max_bytes > acc_limit) || cfg.max_bytes > server_limit)
        {
            return Err(insufficient(cfg.storage));
        }
        let h = self.start_stream(server, acc, cfg, crate::clock::unix_nanos(), true)?;
        let mut v = h.info().ok_or_else(ApiError::stream_not_found)?;
        v["type"] = json!("io.nats.jetstream.api.v1.stream_create_response");
        if let Value::Object(m) = &mut v {
            for k in ["total", "offset", "limit", "cluster"] {
                m.remove(k);
            }
        }
        v["did_create"] = json!(true);
        Ok(v)
    }

    fn update_stream(
        self: &Arc<Self>,
        server: &Arc<Server>,
        acc: &Arc<JsAccount>,
        name: &str,
        body: &[u8],
    ) -> Result<Value, ApiError> {
        let cfg = Self::parse_stream_config(name, body, server.options().max_payload, self.strict)?;
        let h = acc.stream(name).ok_or_else(ApiError::stream_not_found)?;
        Self::check_overlap(acc, &cfg)?;
        let subjects_changed = h.cfg.read().subjects != cfg.subjects;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        h.send(Cmd::Update {
            cfg: Box::new(cfg),
            done: tx,
        });
        let v = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| ApiError::new(10069, 500, "stream did not answer"))??;
        if subjects_changed {
            self.subscribe_stream(server, acc, &h);
        }
        Ok(v)
    }
}

/// nats-server's answer when a stream would not fit in what is left of `storage`.
fn insufficient(storage: Storage) -> ApiError {
    match storage {
        Storage::Memory => ApiError::memory_resources_exceeded(),
        Storage::File => ApiError::storage_resources_exceeded(),
    }
}

/// Whether an API request's headers ask for a JetStream API level above ours with
/// `Nats-Required-Api-Level` (a value that is not a number counts as above, as in
/// nats-server; a plain publish is not checked, there either).
pub(crate) fn requires_newer_api(hdr: &[u8]) -> bool {
    headers::get(hdr, "Nats-Required-Api-Level")
        .is_some_and(|v| v.trim().parse::<i64>().map_or(true, |l| l > API_LEVEL))
}

/// The response type of an API request (`STREAM.CREATE.S` → `stream_create_response`), for
/// the requests whose answers name one.
fn response_kind(api: &str) -> Option<&'static str> {
    let t: Vec<&str> = api.split('.').collect();
    Some(match t.as_slice() {
        ["INFO"] => "account_info_response",
        ["STREAM", "CREATE", ..] => "stream_create_response",
        ["STREAM", "UPDATE", ..] => "stream_update_response",
        ["STREAM", "DELETE", ..] => "stream_delete_response",
        ["STREAM", "INFO", ..] => "stream_info_response",
        ["STREAM", "PURGE", ..] => "stream_purge_response",
        ["STREAM", "NAMES"] => "stream_names_response",
        ["STREAM", "LIST"] => "stream_list_response",
        ["STREAM", "MSG", "GET", ..] => "stream_msg_get_response",
        ["STREAM", "MSG", "DELETE", ..] => "stream_msg_delete_response",
        ["STREAM", "SNAPSHOT", ..] => "stream_snapshot_response",
        ["STREAM", "RESTORE", ..] => "stream_restore_response",
        ["CONSUMER", "CREATE", ..] | ["CONSUMER", "DURABLE", "CREATE", ..] => {
            "consumer_create_response"
        }
        ["CONSUMER", "INFO", ..] => "consumer_info_response",
        ["CONSUMER", "DELETE", ..] => "consumer_delete_response",
        ["CONSUMER", "NAMES", ..] => "consumer_names_response",
        ["CONSUMER", "LIST", ..] => "consumer_list_response",
        ["CONSUMER", "PAUSE", ..] => "consumer_pause_response",
        ["CONSUMER", "UNPIN", ..] => "consumer_unpin_response",
        _ => return None,
    })
}

/// The response type of a request about one stream or consumer that only a JetStream cluster
/// serves (leader step-down, peers, moves); a standalone server refuses them.
fn cluster_only_kind(api: &str) -> Option<&'static str> {
    let t: Vec<&str> = api.split('.').collect();
    Some(match t.as_slice() {
        ["STREAM", "LEADER", "STEPDOWN", _] => "stream_leader_stepdown_response",
        ["STREAM", "PEER", "REMOVE", _] => "stream_remove_peer_response",
        ["STREAM", "PEER", "EVACUATE", _] => "stream_evacuate_peer_response",
        ["STREAM", "CANCEL_MOVE", _] => "stream_cancel_move_response",
        ["CONSUMER", "LEADER", "STEPDOWN", _, _] => "consumer_leader_stepdown_response",
        ["CONSUMER", "PEER", "REMOVE", _, _] => "consumer_remove_peer_response",
        ["CONSUMER", "PEER", "EVACUATE", _, _] => "consumer_evacuate_peer_response",
        _ => return None,
    })
}
