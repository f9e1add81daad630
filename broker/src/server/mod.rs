//! The server: listeners, the set of live and closed connections, server-wide counters.

pub mod client;
mod connect;
pub mod deliver;
pub mod interfaces;
pub mod internal;
mod lame_duck;
pub mod links;
pub mod outbound;
mod reader;
pub mod subscription;
pub mod tls;
pub mod transport;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::accounts::Account;
use crate::auth::{AuthError, Authenticator};
use crate::options::Options;
use crate::protocol::info::Info;
use crate::protocol::ClosedReason;
use client::Client;
use links::{Routes, Service, SystemHooks};
use subscription::{Counters, Subscription};

/// The version we report; clients gate features on it, so it tracks the nats-server release
/// whose JetStream API level we have (2.15; see `API_LEVEL`).
pub const VERSION: &str = "2.15.0";
/// The JetStream API level we implement: nats-server 2.15's level 5. Level 4 (2.14) brought
/// fast batches, the `flow_control` ack policy, durable sourcing and consumer reset; 2.15
/// requires level 5 of no stream or consumer feature a standalone server offers (its
/// `_nats.req.level` stays at 4 or below), so the level is reported as 2.15 reports it.
pub const API_LEVEL: i64 = 5;
/// Our own build tag, reported where nats-server reports its Go version.
pub const GO_VERSION: &str = concat!("natrix-", env!("CARGO_PKG_VERSION"));

/// How many closed connections `/connz?state=closed` remembers.
pub const MAX_CLOSED_CLIENTS: usize = 10_000;

/// A connection kept for `/connz?state=closed`, frozen at close time.
#[derive(Debug, Clone)]
pub struct ClosedClient {
    pub client: Arc<Client>,
    pub stop: SystemTime,
    pub reason: ClosedReason,
    /// The subscriptions it had when it closed, sorted by subject.
    pub subs: Vec<Arc<Subscription>>,
    pub meta: client::ClientMeta,
}

/// Slow consumer counts by connection kind, as `/varz` `slow_consumer_stats`.
#[derive(Debug, Default, Serialize)]
pub struct SlowConsumerStats {
    pub clients: AtomicU64,
    pub routes: AtomicU64,
    pub gateways: AtomicU64,
    pub leafs: AtomicU64,
}

/// Client TLS: the rustls config, whether the handshake comes before INFO, its timeout.
#[derive(Clone)]
pub struct TlsSetup {
    /// The rustls configuration.
    pub config: Arc<rustls::ServerConfig>,
    /// `handshake_first`: the client starts TLS before the server says anything.
    pub handshake_first: bool,
    /// `handshake_first: auto` or a duration: a client silent this long gets the plain INFO
    /// and goes on the ordinary TLS-after-INFO way.
    pub fallback: Option<Duration>,
    /// `tls { timeout }`: the handshake's time limit.
    pub timeout: Duration,
    /// `allow_non_tls`: a client whose first byte is not a TLS record stays plain.
    pub optional: bool,
}

/// The running broker, shared by every connection task and the monitoring server.
pub struct Server {
    pub(crate) opts: RwLock<Arc<Options>>,
    info: RwLock<Info>,
    pub server_id: String,
    pub server_name: String,
    pub start: SystemTime,
    pub config_load_time: RwLock<SystemTime>,
    pub stats: Counters,
    pub slow_consumers: AtomicU64,
    pub slow_consumer_stats: SlowConsumerStats,
    /// Connections closed for not answering PINGs.
    pub stale_connections: AtomicU64,
    pub total_connections: AtomicU64,
    next_cid: AtomicU64,
    pub(crate) global: Arc<Account>,
    pub(crate) accounts: RwLock<HashMap<String, Arc<Account>>>,
    /// The system account (`system_account`, or `$SYS`).
    pub system_account: Arc<Account>,
    pub(crate) auth: RwLock<Arc<Authenticator>>,
    /// Client TLS: the rustls config, whether the handshake comes before INFO, its timeout.
    pub(crate) tls: RwLock<Option<TlsSetup>>,
    /// Bumped by every applied config reload; connections compare it once per read batch and
    /// then re-read their limits and permissions.
    pub(crate) reload_epoch: AtomicU64,
    clients: Mutex<HashMap<u64, Arc<Client>>>,
    closed: Mutex<VecDeque<ClosedClient>>,
    /// Client listener address once bound.
    pub client_addr: RwLock<Option<SocketAddr>>,
    /// Monitoring listener address once bound.
    pub http_addr: RwLock<Option<SocketAddr>>,
    /// HTTPS monitoring listener address once bound.
    pub https_addr: RwLock<Option<SocketAddr>>,
    /// JetStream, once started.
    jetstream: OnceLock<Arc<dyn Service>>,
    pub(crate) shutdown: watch::Sender<bool>,
    /// A route came up: publish STATSZ now, so peers (nats-server's resolver among them)
    /// learn of this server without waiting for the 30 s tick.
    pub(crate) statsz_now: tokio::sync::Notify,
    /// Routes to the other servers of the cluster, when `cluster` is configured.
    routes: OnceLock<Arc<dyn Routes>>,
    /// The system layer's hooks, once the node has set them.
    hooks: OnceLock<Arc<dyn SystemHooks>>,
    /// Lame duck mode state.
    ldm: lame_duck::LameDuck,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("server_id", &self.server_id)
            .finish()
    }
}

impl Server {
    /// Builds the core server from options, or says what in them is inconsistent; nothing
    /// listens yet. A whole broker is built and started by `crate::node`.
    pub fn try_new(opts: Options) -> Result<Arc<Server>, ServerError> {
        let server_id = nkeys::KeyPair::new_server().public_key();
        let server_name = opts
            .server_name
            .clone()
            .unwrap_or_else(|| server_id.clone());
        let mut info = Info {
            server_id: server_id.clone(),
            server_name: server_name.clone(),
            version: VERSION.into(),
            proto: 1,
            git_commit: None,
            go: GO_VERSION.into(),
            host: opts.host.clone(),
            port: opts.port.max(0) as u16,
            headers: !opts.no_header_support,
            max_payload: opts.max_payload,
            // nats-server sends its JetStream API level whether or not JetStream is on.
            api_lvl: API_LEVEL as i32,
            ..Default::default()
        };
        let global = Arc::new(Account::new("$G"));
        let mut accounts = HashMap::new();
        accounts.insert("$G".to_string(), global.clone());
        for a in &opts.accounts {
            accounts
                .entry(a.name.clone())
                .or_insert_with(|| Arc::new(Account::new(&a.name)));
        }
        for c in crate::auth::jwt::load_accounts(&opts)? {
            accounts
                .entry(c.sub.clone())
                .or_insert_with(|| Arc::new(Account::new(&c.sub)));
        }
        let sys_name = opts.system_account.clone().unwrap_or_else(|| "$SYS".into());
        // `no_sys_acc` without a configured system account: nats-server has no system account
        // then. The internal services still get an account to live in, but it is not
        // registered, so no client can reach it and monitoring does not list it.
        let system_account = if opts.no_sys_acc && opts.system_account.is_none() {
            Arc::new(Account::new(&sys_name))
        } else {
            accounts
                .entry(sys_name.clone())
                .or_insert_with(|| Arc::new(Account::new(&sys_name)))
                .clone()
        };
        wire_all_imports(&opts, &accounts);
        let auth = Authenticator::new(&opts, &accounts, global.clone())?;
        if auth.advertise_required() {
            info.auth_required = Some(true);
        }
        let tls = tls_setup(&opts, &mut info)?;
        let now = SystemTime::now();
        if let Some(c) = &opts.cluster {
            info.cluster = Some(c.name.clone().unwrap_or_default()).filter(|n| !n.is_empty());
        }
        Ok(Arc::new(Server {
            opts: RwLock::new(Arc::new(opts)),
            info: RwLock::new(info),
            server_id,
            server_name,
            start: now,
            config_load_time: RwLock::new(now),
            stats: Counters::default(),
            slow_consumers: AtomicU64::new(0),
            slow_consumer_stats: SlowConsumerStats::default(),
            stale_connections: AtomicU64::new(0),
            total_connections: AtomicU64::new(0),
            next_cid: AtomicU64::new(0),
            global,
            accounts: RwLock::new(accounts),
            system_account,
            auth: RwLock::new(Arc::new(auth)),
            tls: RwLock::new(tls),
            reload_epoch: AtomicU64::new(0),
            clients: Mutex::new(HashMap::new()),
            closed: Mutex::new(VecDeque::new()),
            client_addr: RwLock::new(None),
            http_addr: RwLock::new(None),
            https_addr: RwLock::new(None),
            jetstream: OnceLock::new(),
            shutdown: watch::channel(false).0,
            statsz_now: tokio::sync::Notify::new(),
            routes: OnceLock::new(),
            hooks: OnceLock::new(),
            ldm: lame_duck::LameDuck::default(),
        }))
    }

    /// JetStream, once the node started it.
    pub fn jetstream_service(&self) -> Option<&Arc<dyn Service>> {
        self.jetstream.get()
    }

    /// Keeps JetStream (started by the node) and tells clients it is there.
    pub fn set_jetstream(&self, js: Arc<dyn Service>) {
        if self.jetstream.set(js).is_ok() {
            self.info.write().jetstream = Some(true);
        }
    }

    /// The cluster's routes, when clustered.
    pub fn routes(&self) -> Option<&Arc<dyn Routes>> {
        self.routes.get()
    }

    /// Connects the cluster's routes (once, when the node is built).
    pub fn set_routes(&self, routes: Arc<dyn Routes>) {
        let _ = self.routes.set(routes);
    }

    /// Hands the server the system layer's hooks (once, when the node is built).
    pub fn set_hooks(&self, hooks: Arc<dyn SystemHooks>) {
        let _ = self.hooks.set(hooks);
    }

    /// The system layer's hooks, when set.
    pub(crate) fn hooks(&self) -> Option<&Arc<dyn SystemHooks>> {
        self.hooks.get()
    }

    /// Client TLS settings, when TLS is configured.
    pub fn tls_config(&self) -> Option<TlsSetup> {
        self.tls.read().clone()
    }

    /// Changes the INFO sent to new clients (cluster `connect_urls`).
    pub(crate) fn update_info(&self, f: impl FnOnce(&mut Info)) {
        f(&mut self.info.write());
    }

    /// The authentication rules in force.
    pub fn authenticator(&self) -> Arc<Authenticator> {
        self.auth.read().clone()
    }

    /// An account by name.
    pub fn account(&self, name: &str) -> Option<Arc<Account>> {
        self.accounts.read().get(name).cloned()
    }

    /// Moves a connection's account membership after it authenticated.
    pub(crate) fn move_client(&self, _c: &Client, from: &Account, to: &Account) {
        from.num_connections.fetch_sub(1, Ordering::Relaxed);
        to.num_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// The options in force.
    pub fn options(&self) -> Arc<Options> {
        self.opts.read().clone()
    }

    /// The global account `$G`.
    pub fn global_account(&self) -> Arc<Account> {
        self.global.clone()
    }

    /// Every account, by name.
    pub fn accounts(&self) -> Vec<Arc<Account>> {
        self.accounts.read().values().cloned().collect()
    }

    /// A new connection id.
    pub fn next_cid(&self) -> u64 {
        self.next_cid.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The INFO line for a new client.
    pub fn info_for(&self, cid: u64, ip: &str, nonce: Option<&str>) -> Vec<u8> {
        self.info.read().encode_for(cid, ip, false, nonce)
    }

    /// A copy of the server INFO (for monitoring).
    pub fn info(&self) -> Info {
        self.info.read().clone()
    }

    /// Live connections.
    pub fn clients(&self) -> Vec<Arc<Client>> {
        self.clients.lock().values().cloned().collect()
    }

    /// Tells the cluster which exporters' subjects this server's imports need (see
    /// [`crate::cluster::Cluster::set_import_interest`]).
    pub(crate) fn refresh_import_interest(&self) {
        let Some(c) = self.routes() else { return };
        let mut keys = Vec::new();
        for a in self.accounts.read().values() {
            for f in a.stream_forwards.all() {
                keys.push((a.name.clone(), f.subject.clone()));
            }
            for si in a.service_imports.all() {
                keys.push((
                    si.exporter.name.clone(),
                    format!("{}>", crate::accounts::response_prefix()),
                ));
            }
        }
        c.set_import_interest(keys);
    }

    /// The live connection with id `cid`.
    pub fn client(&self, cid: u64) -> Option<Arc<Client>> {
        self.clients.lock().get(&cid).cloned()
    }

    /// Number of live connections.
    pub fn num_clients(&self) -> usize {
        self.clients.lock().len()
    }

    /// Closed connections, oldest first.
    pub fn closed_clients(&self) -> Vec<ClosedClient> {
        self.closed.lock().iter().cloned().collect()
    }

    /// Adds a connection unless `max_connections` is reached.
    pub(crate) fn register_client(&self, c: &Arc<Client>) -> bool {
        let max = self.options().max_connections;
        let mut clients = self.clients.lock();
        if max > 0 && clients.len() >= max as usize {
            return false;
        }
        clients.insert(c.cid, c.clone());
        self.total_connections.fetch_add(1, Ordering::Relaxed);
        c.account().num_connections.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Removes a finished connection: its subscriptions, its registration, and files it as closed.
    pub(crate) fn remove_client(&self, c: &Arc<Client>) {
        let subs: Vec<Arc<Subscription>> = c.subs.lock().drain().map(|(_, s)| s).collect();
        for s in &subs {
            if s.account.sublist.remove(&s.subject, s.queue.as_deref(), s) {
                s.account.num_subs.fetch_sub(1, Ordering::Relaxed);
                if let Some(c) = self.routes() {
                    c.sub_removed(s);
                }
            }
        }
        if self.clients.lock().remove(&c.cid).is_some() {
            c.account().num_connections.fetch_sub(1, Ordering::Relaxed);
        }
        let reason = c.closed_reason().unwrap_or(ClosedReason::ClientClosed);
        if let Some(h) = self.hooks().filter(|_| c.meta.lock().connected) {
            h.client_event(self, c, Some(reason));
        }
        tracing::debug!(
            "{} - Client connection closed: {}",
            c.tag(),
            reason.as_str()
        );
        let mut subjects = subs;
        subjects.sort_by(|a, b| a.subject.cmp(&b.subject));
        self.push_closed(ClosedClient {
            client: c.clone(),
            stop: SystemTime::now(),
            reason,
            subs: subjects,
            meta: c.meta.lock().clone(),
        });
    }

    /// Files a connection that never registered (e.g. over `max_connections`).
    pub(crate) fn record_closed(&self, c: &Arc<Client>) {
        self.push_closed(ClosedClient {
            client: c.clone(),
            stop: SystemTime::now(),
            reason: c.closed_reason().unwrap_or(ClosedReason::ClientClosed),
            subs: Vec::new(),
            meta: c.meta.lock().clone(),
        });
    }

    fn push_closed(&self, cc: ClosedClient) {
        let mut closed = self.closed.lock();
        if closed.len() >= MAX_CLOSED_CLIENTS {
            closed.pop_front();
        }
        closed.push_back(cc);
    }

    /// Adds a subscription to its account's sublist.
    pub(crate) fn add_sub(&self, sub: &Arc<Subscription>) {
        let acc = &sub.account;
        if acc
            .sublist
            .insert(&sub.subject, sub.queue.as_deref(), sub.clone())
            .is_ok()
        {
            acc.num_subs.fetch_add(1, Ordering::Relaxed);
            if let Some(c) = self.routes() {
                c.sub_added(sub);
            }
        }
    }

    /// Removes a subscription from its account and its connection.
    pub(crate) fn remove_sub(&self, sub: &Arc<Subscription>) {
        let acc = &sub.account;
        if acc.sublist.remove(&sub.subject, sub.queue.as_deref(), sub) {
            acc.num_subs.fetch_sub(1, Ordering::Relaxed);
            if let Some(c) = self.routes() {
                c.sub_removed(sub);
            }
        }
        let mut subs = sub.client.subs.lock();
        if subs.get(&sub.sid).is_some_and(|s| Arc::ptr_eq(s, sub)) {
            subs.remove(&sub.sid);
        }
    }

    /// Closes a connection that cannot keep up, logging and counting it as nats-server does.
    pub(crate) fn slow_consumer(&self, c: &Client, reason: ClosedReason) {
        if c.is_closing() {
            return;
        }
        let opts = self.options();
        match reason {
            ClosedReason::SlowConsumerWriteDeadline => tracing::info!(
                "{} - Slow Consumer Detected: WriteDeadline of {:?} exceeded with {} chunks of {} total bytes.",
                c.tag(),
                opts.write_deadline,
                1,
                c.pending_bytes()
            ),
            _ => tracing::info!(
                "{} - Slow Consumer Detected: MaxPending of {} Exceeded",
                c.tag(),
                opts.max_pending
            ),
        }
        self.slow_consumers.fetch_add(1, Ordering::Relaxed);
        self.slow_consumer_stats
            .clients
            .fetch_add(1, Ordering::Relaxed);
        c.close(reason);
    }

    /// Asks every task to stop.
    pub fn shutdown(&self) {
        // send_replace: the flag must stick even when nobody is waiting yet.
        let first = !self.shutdown.send_replace(true);
        if first {
            if let Some(js) = self.jetstream.get() {
                js.shutdown();
            }
        }
        for c in self.clients() {
            c.close(ClosedReason::ServerShutdown);
        }
    }

    /// Resolves once [`Server::shutdown`] has been called.
    pub async fn wait_shutdown(&self) {
        let mut rx = self.shutdown.subscribe();
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Binds the client port and puts the address in INFO; the accept loop starts with
    /// [`Server::accept`].
    pub async fn listen(self: &Arc<Self>) -> std::io::Result<TcpListener> {
        let opts = self.options();
        let port = if opts.port < 0 { 0 } else { opts.port as u16 };
        let listener = TcpListener::bind((opts.host.as_str(), port)).await?;
        let addr = listener.local_addr()?;
        *self.client_addr.write() = Some(addr);
        {
            let mut info = self.info.write();
            info.port = addr.port();
            // nats-server shows the advertised address to clients.
            if let Some((host, port)) = opts.client_advertise.as_deref().map(split_host_port) {
                info.host = host;
                info.port = port.unwrap_or(addr.port());
            }
        }
        Ok(listener)
    }

    /// Says where clients connect (the log line and the ports file nats-server writes).
    pub fn announce_listening(&self) -> std::io::Result<()> {
        let opts = self.options();
        let addr = self
            .client_addr
            .read()
            .unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
        tracing::info!(
            "Listening for client connections on {}:{}",
            host_str(&opts.host),
            addr.port()
        );
        if let Some(dir) = &opts.ports_file_dir {
            self.write_ports_file(dir)?;
        }
        Ok(())
    }

    /// Starts taking clients on `listener` (from [`Server::listen`]).
    pub fn accept(self: &Arc<Self>, listener: TcpListener) {
        self.refresh_import_interest();
        let me = self.clone();
        tokio::spawn(async move { me.accept_loop(listener).await });
        tracing::info!("Server is ready");
    }

    fn write_ports_file(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let exe = std::env::args()
            .next()
            .and_then(|a| {
                std::path::Path::new(&a)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "natrix-broker".into());
        let path = dir.join(format!("{}_{}.ports", exe, std::process::id()));
        let ports = self.ports();
        std::fs::write(path, serde_json::to_vec(&ports).unwrap_or_default())
    }

    /// The URLs the server listens on, as nats-server's `.ports` file and `/varz`.
    pub fn ports(&self) -> serde_json::Value {
        let opts = self.options();
        let mut v = serde_json::Map::new();
        if let Some(a) = *self.client_addr.read() {
            let host = advertise_host(&opts.host);
            v.insert(
                "nats".into(),
                serde_json::json!([format!("nats://{}:{}", host, a.port())]),
            );
        }
        if let Some(a) = *self.http_addr.read() {
            let host = advertise_host(&opts.http_host);
            v.insert(
                "monitoring".into(),
                serde_json::json!([format!("http://{}:{}", host, a.port())]),
            );
        }
        if let Some(a) = *self.https_addr.read() {
            let host = advertise_host(&opts.http_host);
            v.insert(
                "monitoring".into(),
                serde_json::json!([format!("https://{}:{}", host, a.port())]),
            );
        }
        serde_json::Value::Object(v)
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            tokio::select! {
                res = listener.accept() => match res {
                    Ok((stream, addr)) => {
                        let me = self.clone();
                        tokio::spawn(async move { client::run_client(me, stream, addr).await });
                    }
                    Err(e) => {
                        tracing::error!("Error accepting client connection: {}", e);
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                },
                _ = self.wait_shutdown() => return,
                _ = self.ldm.entered() => return self.ldm.close_listener(listener),
            }
        }
    }
}

/// Why a server cannot be built from its options.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Tls(#[from] crate::server::tls::TlsError),
    /// The route TLS of `cluster { tls }` cannot be built.
    #[error("cluster tls: {0}")]
    ClusterTls(#[source] crate::server::tls::TlsError),
}

/// Builds the client TLS setup from the options and sets INFO's TLS fields to match.
pub(crate) fn tls_setup(opts: &Options, info: &mut Info) -> Result<Option<TlsSetup>, ServerError> {
    let Some(t) = &opts.tls else {
        info.tls_required = None;
        info.tls_available = None;
        info.tls_verify = None;
        return Ok(None);
    };
    crate::server::tls::install_crypto_provider();
    let config = crate::server::tls::server_config(t)?;
    if opts.allow_non_tls {
        info.tls_required = None;
        info.tls_available = Some(true);
    } else {
        info.tls_required = Some(true);
        info.tls_available = None;
    }
    info.tls_verify = (t.verify || t.verify_and_map).then_some(true);
    let timeout = if t.timeout.is_zero() {
        Duration::from_secs(2)
    } else {
        t.timeout
    };
    Ok(Some(TlsSetup {
        config,
        handshake_first: t.handshake_first,
        fallback: t.handshake_first_fallback.filter(|_| t.handshake_first),
        timeout,
        optional: opts.allow_non_tls,
    }))
}

/// Connects every configured import to its exporting account (the config loader has already
/// checked that each import is allowed by an export).
/// Wires the config accounts' and the account JWTs' imports (after clearing old ones).
pub(crate) fn wire_all_imports(opts: &Options, accounts: &HashMap<String, Arc<Account>>) {
    for a in accounts.values() {
        a.clear_imports();
    }
    let mut all = opts.clone();
    if opts.operator_mode() {
        if let Ok(claims) = crate::auth::jwt::load_accounts(opts) {
            all.accounts
                .extend(crate::auth::jwt::jwt_account_configs(&claims));
        }
    }
    wire_imports(&all, accounts);
}

fn wire_imports(opts: &Options, accounts: &HashMap<String, Arc<Account>>) {
    use crate::accounts::{ServiceImport, StreamForward};
    use crate::options::{Export, Import};
    for cfg in &opts.accounts {
        let Some(importer) = accounts.get(&cfg.name) else {
            continue;
        };
        for import in &cfg.imports {
            match import {
                Import::Stream {
                    account,
                    subject,
                    to,
                    prefix,
                } => {
                    if let Some(exporter) = accounts.get(account) {
                        exporter.add_stream_forward(StreamForward {
                            target: importer.clone(),
                            subject: subject.clone(),
                            to: to.clone(),
                            prefix: prefix.clone(),
                        });
                    }
                }
                Import::Service {
                    account,
                    subject,
                    to,
                } => {
                    let Some(exporter) = accounts.get(account) else {
                        continue;
                    };
                    let response_type = opts
                        .accounts
                        .iter()
                        .find(|a| &a.name == account)
                        .and_then(|a| {
                            a.exports.iter().find_map(|e| match e {
                                Export::Service {
                                    subject: s,
                                    response_type,
                                    ..
                                } if crate::subject::matches(subject, s) || s == subject => {
                                    Some(*response_type)
                                }
                                _ => None,
                            })
                        })
                        .unwrap_or_default();
                    importer.add_service_import(ServiceImport {
                        exporter: exporter.clone(),
                        importer: Arc::downgrade(importer),
                        local: to.clone().unwrap_or_else(|| subject.clone()),
                        remote: subject.clone(),
                        response_type,
                    });
                }
            }
        }
    }
}

/// Splits `host[:port]` (IPv6 in brackets) for `client_advertise`.
fn split_host_port(s: &str) -> (String, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, p)) = rest.split_once(']') {
            return (
                h.to_string(),
                p.strip_prefix(':').and_then(|p| p.parse().ok()),
            );
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().ok()),
        _ => (s.to_string(), None),
    }
}

/// A listen host as nats-server logs it (`0.0.0.0` for all interfaces).
pub fn host_str(h: &str) -> &str {
    if h.is_empty() {
        "0.0.0.0"
    } else {
        h
    }
}

/// The host to put in URLs: a wildcard listen address is reported as a routable local one.
fn advertise_host(h: &str) -> String {
    match h {
        "" | "0.0.0.0" => "127.0.0.1".into(),
        "::" | "[::]" => "[::1]".into(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.into(),
    }
}
