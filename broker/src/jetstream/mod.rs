//! JetStream: persistent streams and consumers behind the `$JS.API` subjects.
//!
//! Requests arrive on internal subscriptions (`$JS.API.>` and `$JS.ACK.>` in every account
//! with JetStream, plus each stream's subjects). Account-level requests (create, list, ...)
//! are served by one API thread; everything about one stream goes to that stream's own thread
//! ([`stream`]), which owns its store ([`store`]) and consumers ([`consumer`]).

pub mod account;
pub mod advisory;
pub mod archive;
pub mod backup;
pub mod clustered;
pub mod config;
pub mod consumer;
pub mod consumer_config;
pub mod counter;
pub mod cron;
pub mod crypt;
pub mod errors;
pub mod headers;
pub mod requests;
pub mod restore;
pub mod store;
pub mod stream;
pub mod time;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::accounts::Account;
use crate::options::{JetStreamOptions, JsAccountLimits};
use crate::protocol::Msg;
use crate::server::client::Client;
use crate::server::internal::InternalSender;
use crate::server::subscription::{InternalHandler, Subscription};
use crate::server::{Server, API_LEVEL};
use account::ApiReq;
pub use account::JsAccount;
use config::{Storage, StreamConfig};
use errors::ApiError;
use stream::{Cmd, StreamHandle};

/// How much of JetStream `/healthz` looks at (`js-enabled-only`, `js-server-only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthScope {
    /// That it is enabled (`js-enabled-only`), or the server itself (`js-server-only`,
    /// which nats-server answers without looking at the cluster).
    Enabled,
    /// In a cluster, the contact with the meta leader (`js-meta-only`).
    Meta,
    /// Everything, every stream replica included.
    Full,
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
    /// Set when the server is part of a cluster: JetStream is clustered.
    clustered: OnceLock<Arc<clustered::Clustered>>,
}

/// How long a server leaving the cluster waits for its leaderships to move to peers.
const HAND_OVER: Duration = Duration::from_secs(3);

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
    fn lame_duck(&self) {
        if let Some(cl) = self.clustered.get() {
            cl.hand_over(HAND_OVER);
        }
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
            clustered: OnceLock::new(),
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
        if let Some(c) = crate::cluster::Cluster::of(server) {
            let cl = clustered::runtime::start(server, &js, &c.name);
            let _ = js.clustered.set(cl);
        }
        tracing::info!("Took {:?} to start JetStream", started.elapsed());
        Ok(js)
    }

    /// Clustered JetStream, when the server is part of a cluster.
    pub fn clustered(&self) -> Option<&Arc<clustered::Clustered>> {
        self.clustered.get()
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
            replica: None,
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
            let handler = InternalHandler(Arc::new(move |m: &Msg<'_>| {
                let (subject, reply, hdr, payload) = (m.subject, m.reply, m.headers, m.payload);
                let Some(h) = weak.upgrade() else { return };
                h.send(Cmd::Msg {
                    subject: subject.to_string(),
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
        if let Some(cl) = self.clustered.get() {
            cl.hand_over(HAND_OVER);
            cl.shutdown();
        }
        let accounts: Vec<Arc<JsAccount>> = self.accounts.read().values().cloned().collect();
        for acc in accounts {
            let streams: Vec<Arc<StreamHandle>> = acc.streams.read().values().cloned().collect();
            for h in streams {
                h.stop(false);
            }
        }
        self.api_tx.lock().take();
    }

    /// The first problem that makes JetStream unhealthy: (clustered) no contact with a meta
    /// leader or not caught up with it, a stream that could not be recovered, or whose
    /// thread is no longer running, or (clustered) whose replica here is not current.
    pub fn unhealthy(&self, scope: HealthScope) -> Option<String> {
        if scope == HealthScope::Enabled {
            return None;
        }
        if let Some(cl) = self.clustered.get() {
            if let Some(e) = cl.meta_unhealthy() {
                return Some(e);
            }
            if scope == HealthScope::Meta {
                return None;
            }
            if let Some(e) = cl.replicas_unhealthy() {
                return Some(e);
            }
        }
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

    /// Bytes used server-wide by `storage`.
    pub fn usage(&self, storage: Storage) -> u64 {
        self.accounts
            .read()
            .values()
            .map(|a| a.usage(storage))
            .sum()
    }
}
