//! Core NATS clustering over routes: the route listener, seed and gossiped (implicit) routes,
//! interest propagation (`RS+`/`RS-`) and message forwarding (`RMSG`/`HMSG`), as nats-server.
//!
//! Every server connects to every other (full mesh, learnt by gossip from one seed). A message
//! published here goes at most once to each route that has matching interest; a message that
//! arrives over a route is delivered to local clients only, never forwarded again. Queue groups
//! spread over servers get each message once: the publishing server picks the local group or
//! one route by weight, and names the queue in `RMSG` so the remote delivers to its member.
//!
//! With `cluster { tls { ... } }` every route is TLS from its first byte, as nats-server's:
//! the dialer starts the handshake right after connecting, before any INFO, and each side
//! verifies the other's certificate against `ca_file`. A route whose handshake fails closes
//! with `TLS Handshake Failure`, so a TLS server and a plaintext one never form a route.

mod forward;
pub mod route;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};

use crate::options::ClusterOptions;
use crate::protocol::route_wire::{encode_sub, encode_unsub};
use crate::server::Server;
pub use route::Route;

/// How long to wait between attempts to dial a route (nats-server's `DEFAULT_ROUTE_CONNECT`).
const ROUTE_CONNECT_DELAY: Duration = Duration::from_secs(1);

/// The INFO a route sends (and gossips about other servers).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RouteInfo {
    pub server_id: String,
    #[serde(default)]
    pub server_name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub proto: i32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub go: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub headers: bool,
    #[serde(default)]
    pub max_payload: i32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    /// The sender's cluster name was generated, not configured: it yields to ours.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster_dynamic: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    /// Routes to the sender are TLS (nats-server sets it with `tls_verify`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    /// The sender entered lame duck mode: its client URLs leave `connect_urls`.
    #[serde(default, rename = "ldm", skip_serializing_if = "std::ops::Not::not")]
    pub lame_duck_mode: bool,
    /// The URL other servers connect to for routes (`nats-route://host:port/`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ip: String,
    /// The sender runs JetStream: it is a member of the JetStream meta group.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub jetstream: bool,
}

/// One local interest sent to routes: (account, subject, queue).
type InterestKey = (String, String, Option<String>);

/// The cluster side of a server.
pub struct Cluster {
    opts: ClusterOptions,
    /// Route interest held for imports (see [`Cluster::set_import_interest`]).
    import_interest: Mutex<Vec<(String, String)>>,
    /// `authorization` for routes: reloadable, so kept apart from `opts`.
    auth: RwLock<Option<crate::options::RouteAuth>>,
    /// The cluster name: configured, or generated (then a peer's name is accepted).
    pub name: String,
    name_configured: bool,
    /// Route listener address once bound.
    pub listen_addr: RwLock<Option<SocketAddr>>,
    /// Registered routes, one per remote server (copy-on-write for the publish path).
    routes: RwLock<Arc<Vec<Arc<Route>>>>,
    next_rid: AtomicU64,
    /// Local interest by (account, subject, queue): number of local subscriptions.
    local: Mutex<HashMap<InterestKey, i32>>,
    /// Route URLs (`host:port`) being dialed now.
    dialing: Mutex<HashSet<String>>,
    /// Route URLs found to lead back to this server.
    self_urls: Mutex<HashSet<String>>,
    /// Which server a route URL led to last time.
    url_ids: Mutex<HashMap<String, String>>,
    /// An address of ours the peers reached us on (for wildcard listen hosts).
    local_ip: RwLock<Option<IpAddr>>,
    /// The configured route URLs (they change on config reload).
    configured: RwLock<Vec<String>>,
    /// Route URLs (`host:port`) a reload removed: their dial loops stop.
    removed: Mutex<HashSet<String>>,
    /// Route TLS, when `cluster { tls }` is configured.
    tls: Option<crate::server::tls::RouteTls>,
    /// The name to verify when dialing a route by IP address: the first host name among the
    /// configured routes (nats-server's `routeTLSName`); forgotten when a certificate does not
    /// match it.
    tls_name: Mutex<Option<String>>,
    /// `permissions { import, export }`, compiled: import as publish, export as subscribe.
    perms: Option<crate::auth::permissions::Perms>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("name", &self.name).finish()
    }
}

impl Cluster {
    /// The server's cluster, when it is clustered.
    pub fn of(server: &Server) -> Option<Arc<Cluster>> {
        server.routes()?.clone().as_any().downcast().ok()
    }

    /// The cluster state for these options (nothing is bound until [`Cluster::start`]); fails
    /// when the route TLS configuration cannot be built.
    pub fn new(opts: ClusterOptions) -> Result<Arc<Cluster>, crate::server::tls::TlsError> {
        let tls = match &opts.tls {
            Some(t) => {
                crate::server::tls::install_crypto_provider();
                Some(crate::server::tls::route_tls(t)?)
            }
            None => None,
        };
        let (name, name_configured) = match opts.name.clone().filter(|n| !n.is_empty()) {
            Some(n) => (n, true),
            None => (
                nkeys::KeyPair::new_server().public_key()[..22].to_string(),
                false,
            ),
        };
        let opts_routes = opts.routes.clone();
        Ok(Arc::new(Cluster {
            auth: RwLock::new(opts.auth.clone()),
            import_interest: Mutex::new(Vec::new()),
            name,
            name_configured,
            listen_addr: RwLock::new(None),
            routes: RwLock::new(Arc::new(Vec::new())),
            next_rid: AtomicU64::new(0),
            local: Mutex::new(HashMap::new()),
            dialing: Mutex::new(HashSet::new()),
            self_urls: Mutex::new(HashSet::new()),
            url_ids: Mutex::new(HashMap::new()),
            local_ip: RwLock::new(None),
            configured: RwLock::new(opts_routes),
            removed: Mutex::new(HashSet::new()),
            tls,
            tls_name: Mutex::new(None),
            perms: opts
                .permissions
                .as_ref()
                .map(crate::auth::permissions::Perms::compile),
            opts,
        }))
    }

    /// Route TLS, when configured.
    pub fn tls(&self) -> Option<&crate::server::tls::RouteTls> {
        self.tls.as_ref()
    }

    /// Remembers the first host name among `urls` for dialing routes by IP (unless one is
    /// already remembered), as nats-server's `saveRouteTLSName`.
    fn save_tls_name(&self, urls: &[String]) {
        if self.tls.is_none() {
            return;
        }
        let mut name = self.tls_name.lock();
        if name.is_some() {
            return;
        }
        *name = urls
            .iter()
            .filter_map(|u| crate::config::cluster::route_host_port(u))
            .filter_map(|hp| hp.rsplit_once(':').map(|(h, _)| h.to_string()))
            .find(|h| {
                h.trim_matches(|c| c == '[' || c == ']')
                    .parse::<IpAddr>()
                    .is_err()
            });
    }

    /// The TLS server name for dialing `host`: the host itself, or the remembered route name
    /// when `host` is an IP address.
    fn tls_server_name(&self, host: &str) -> String {
        let bare = host.trim_matches(|c| c == '[' || c == ']');
        if bare.parse::<IpAddr>().is_ok() {
            if let Some(n) = self.tls_name.lock().clone() {
                return n;
            }
        }
        bare.to_string()
    }

    /// A dial verified against `name` failed on the certificate's names: stop using `name`
    /// for IP addresses if it was the remembered one.
    fn tls_name_failed(&self, name: &str) {
        let mut n = self.tls_name.lock();
        if n.as_deref() == Some(name) {
            *n = None;
        }
    }

    /// The options the cluster runs with.
    pub fn options(&self) -> &ClusterOptions {
        &self.opts
    }

    /// Registered routes.
    pub fn routes(&self) -> Vec<Arc<Route>> {
        self.routes.read().as_ref().clone()
    }

    /// The names of the servers routed to that run JetStream.
    pub fn jetstream_peers(&self) -> Vec<String> {
        self.routes
            .read()
            .iter()
            .filter(|r| r.remote_jetstream())
            .map(|r| r.remote_name())
            .collect()
    }

    /// Number of registered routes.
    pub fn num_routes(&self) -> usize {
        self.routes.read().len()
    }

    /// Binds the route listener and dials the configured routes.
    pub async fn start(self: &Arc<Self>, server: &Arc<Server>) -> std::io::Result<()> {
        let port = if self.opts.port < 0 {
            0
        } else {
            self.opts.port as u16
        };
        let host = if self.opts.host.is_empty() {
            "0.0.0.0"
        } else {
            self.opts.host.as_str()
        };
        let listener = TcpListener::bind((host, port)).await?;
        let addr = listener.local_addr()?;
        *self.listen_addr.write() = Some(addr);
        let name = self.name.clone();
        server.update_info(|i| i.cluster = Some(name));
        tracing::info!("Cluster name is {}", self.name);
        tracing::info!(
            "Listening for route connections on {}:{}",
            host,
            addr.port()
        );
        if self.opts.tls.as_ref().is_some_and(|t| t.insecure) {
            tracing::warn!("TLS certificate chain and hostname of solicited routes will not be verified. DO NOT USE IN PRODUCTION!");
        }
        self.save_tls_name(&self.configured_routes());
        let (me, srv) = (self.clone(), server.clone());
        tokio::spawn(async move { me.accept_loop(srv, listener).await });
        for url in self.configured_routes() {
            match crate::config::cluster::route_host_port(&url) {
                Some(hp) => self.dial(server, hp, true),
                None => tracing::error!("Error parsing route URL {url:?}"),
            }
        }
        Ok(())
    }

    /// The configured route URLs.
    pub fn configured_routes(&self) -> Vec<String> {
        self.configured.read().clone()
    }

    /// Applies a reloaded `routes` list: new URLs are dialed, removed ones stop being redialed
    /// and their routes are closed (as nats-server's route reload).
    pub fn set_routes(self: &Arc<Self>, server: &Arc<Server>, urls: Vec<String>) {
        let hps = |v: &[String]| -> HashSet<String> {
            v.iter()
                .filter_map(|u| crate::config::cluster::route_host_port(u))
                .collect()
        };
        let old = hps(&self.configured.read());
        let new = hps(&urls);
        self.save_tls_name(&urls);
        *self.configured.write() = urls;
        for hp in new.difference(&old) {
            self.removed.lock().remove(hp);
            tracing::info!("Adding route {hp}");
            self.dial(server, hp.clone(), true);
        }
        for hp in old.difference(&new) {
            tracing::info!("Removing route {hp}");
            self.removed.lock().insert(hp.clone());
            for r in self.routes.read().iter() {
                if r.solicited
                    .as_ref()
                    .is_some_and(|s| s.configured && &s.url == hp)
                {
                    r.close(crate::protocol::ClosedReason::ClientClosed);
                }
            }
        }
    }

    async fn accept_loop(self: Arc<Self>, server: Arc<Server>, listener: TcpListener) {
        loop {
            tokio::select! {
                res = listener.accept() => match res {
                    Ok((stream, addr)) => {
                        let (me, srv) = (self.clone(), server.clone());
                        tokio::spawn(async move { route::run(srv, me, stream, addr, None).await });
                    }
                    Err(e) => {
                        tracing::error!("Error accepting route connection: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                _ = server.wait_shutdown() => return,
            }
        }
    }

    /// Dials `host:port` in the background: forever for configured routes, a few times for
    /// gossiped ones; redials a configured route when it is lost.
    fn dial(self: &Arc<Self>, server: &Arc<Server>, hp: String, configured: bool) {
        if !self.dialing.lock().insert(hp.clone()) {
            return;
        }
        let (me, srv) = (self.clone(), server.clone());
        tokio::spawn(async move {
            let mut failures = 0i32;
            loop {
                if me.self_urls.lock().contains(&hp) {
                    break;
                }
                if configured && me.removed.lock().contains(&hp) {
                    break;
                }
                let known = me.url_ids.lock().get(&hp).cloned();
                if known.as_deref().is_some_and(|id| me.has_route(id)) {
                    if !configured {
                        break;
                    }
                } else {
                    let conn = tokio::select! {
                        c = TcpStream::connect(hp.as_str()) => Some(c),
                        _ = srv.wait_shutdown() => None,
                    };
                    match conn {
                        None => break,
                        Some(Ok(stream)) => {
                            failures = 0;
                            let addr = stream
                                .peer_addr()
                                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                            let sol = route::Solicited {
                                url: hp.clone(),
                                configured,
                            };
                            route::run(srv.clone(), me.clone(), stream, addr, Some(sol)).await;
                        }
                        Some(Err(e)) => {
                            failures += 1;
                            tracing::debug!("Error trying to connect to route {hp}: {e}");
                        }
                    }
                }
                if !configured && failures > me.opts.connect_retries.max(0) {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(ROUTE_CONNECT_DELAY) => {}
                    _ = srv.wait_shutdown() => break,
                }
            }
            me.dialing.lock().remove(&hp);
        });
    }

    fn has_route(&self, server_id: &str) -> bool {
        self.routes
            .read()
            .iter()
            .any(|r| r.remote_id() == server_id)
    }

    /// The INFO this server sends on a route whose local address is `local`.
    fn route_info(&self, server: &Server, local: Option<SocketAddr>) -> RouteInfo {
        let sinfo = server.info();
        let listen = *self.listen_addr.read();
        let (host, port) = match self.opts.advertise.as_deref() {
            Some(a) => match a.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().unwrap_or(0)),
                None => (a.to_string(), listen.map_or(0, |l| l.port())),
            },
            None => {
                let h = if is_wildcard(&self.opts.host) {
                    local.map(|l| l.ip().to_string()).unwrap_or_default()
                } else {
                    self.opts.host.clone()
                };
                (h, listen.map_or(0, |l| l.port()))
            }
        };
        let ip = if host.is_empty() {
            String::new()
        } else {
            format!("nats-route://{}/", join_host_port(&host, port))
        };
        RouteInfo {
            server_id: server.server_id.clone(),
            server_name: server.server_name.clone(),
            version: sinfo.version.clone(),
            proto: 1,
            go: sinfo.go.clone(),
            host,
            port,
            headers: true,
            max_payload: sinfo.max_payload,
            cluster: self.name.clone(),
            cluster_dynamic: !self.name_configured,
            connect_urls: if self.opts.no_advertise {
                Vec::new()
            } else {
                self.own_client_urls(server, local.map(|l| l.ip()))
            },
            auth_required: self.auth.read().is_some(),
            tls_required: self.tls.is_some(),
            tls_verify: self.tls.is_some(),
            lame_duck_mode: false,
            ip,
            jetstream: server.options().jetstream.is_some(),
        }
    }

    /// This server's client URLs (`host:port`) as told to other servers and to clients.
    fn own_client_urls(&self, server: &Server, local: Option<IpAddr>) -> Vec<String> {
        let opts = server.options();
        if let Some(a) = &opts.client_advertise {
            return vec![a.clone()];
        }
        let Some(addr) = *server.client_addr.read() else {
            return Vec::new();
        };
        let host = if is_wildcard(&opts.host) {
            // Every address of the host, as nats-server; without procfs, the address the
            // routes reach us on.
            let all = crate::server::interfaces::global_unicast_addrs();
            if !all.is_empty() {
                return all
                    .iter()
                    .map(|ip| join_host_port(&ip.to_string(), addr.port()))
                    .collect();
            }
            match local.or(*self.local_ip.read()) {
                Some(ip) => ip.to_string(),
                None => return Vec::new(),
            }
        } else {
            opts.host.clone()
        };
        vec![join_host_port(&host, addr.port())]
    }

    /// The route `authorization` in force.
    pub fn auth(&self) -> Option<crate::options::RouteAuth> {
        self.auth.read().clone()
    }

    /// Reload: new route `authorization`. Accepted routes whose CONNECT no longer passes are
    /// closed with an authorization violation, as nats-server's `reloadAuthorization` does.
    pub fn set_auth(&self, auth: Option<crate::options::RouteAuth>) {
        *self.auth.write() = auth.clone();
        let Some(auth) = auth else { return };
        let routes = self.routes.read().clone();
        for r in routes.iter().filter(|r| r.solicited.is_none()) {
            if !r.presented(&auth, self.maps_certs()) {
                route::auth_violation(r);
            }
        }
    }

    /// Registers a route after its INFO: self and duplicate detection, interest, gossip.
    /// Returns false when the route must close.
    fn register(&self, server: &Arc<Server>, r: &Arc<Route>, info: &RouteInfo) -> bool {
        if let Some(sol) = &r.solicited {
            self.url_ids
                .lock()
                .insert(sol.url.clone(), info.server_id.clone());
        }
        if self.local_ip.read().is_none() {
            *self.local_ip.write() = r.local_addr.map(|a| a.ip());
        }
        let local = self.local.lock();
        let mut routes = self.routes.write();
        if let Some(i) = routes.iter().position(|x| x.remote_id() == info.server_id) {
            // Duplicate: both sides keep the connection dialed by the smaller server id.
            let existing = routes[i].clone();
            let solicitor = |x: &Route| {
                if x.solicited.is_some() {
                    server.server_id.clone()
                } else {
                    info.server_id.clone()
                }
            };
            let (old_s, new_s) = (solicitor(&existing), solicitor(r));
            if new_s >= old_s {
                drop(routes);
                drop(local);
                r.close(crate::protocol::ClosedReason::DuplicateRoute);
                return false;
            }
            let mut v = routes.as_ref().clone();
            v.remove(i);
            *routes = Arc::new(v);
            existing.close(crate::protocol::ClosedReason::DuplicateRoute);
        }
        let mut v = routes.as_ref().clone();
        v.push(r.clone());
        *routes = Arc::new(v);
        drop(routes);
        // Every local interest, while holding `local` so no change slips between.
        let mut batch = Vec::new();
        for ((acc, subj, q), n) in local.iter() {
            encode_sub(&mut batch, acc, subj, q.as_deref().map(|q| (q, *n)));
        }
        r.send(&batch);
        drop(local);
        // Gossip the newcomer to the other routes so they connect to it (full mesh).
        if !info.ip.is_empty() {
            let mut line = b"INFO ".to_vec();
            serde_json::to_writer(&mut line, info).expect("INFO serializes");
            line.extend_from_slice(b"\r\n");
            for other in self.routes.read().iter() {
                if !Arc::ptr_eq(other, r) {
                    other.send(&line);
                }
            }
        }
        self.urls_changed(server);
        server.statsz_now.notify_one();
        true
    }

    /// Forgets a closed route (if it is the registered one for its server).
    fn unregister(&self, server: &Arc<Server>, r: &Arc<Route>) {
        let mut routes = self.routes.write();
        if let Some(i) = routes.iter().position(|x| Arc::ptr_eq(x, r)) {
            let mut v = routes.as_ref().clone();
            v.remove(i);
            *routes = Arc::new(v);
            drop(routes);
            self.urls_changed(server);
        }
    }

    /// A gossiped INFO about another server: connect to it unless we already are.
    fn implicit_route(self: &Arc<Self>, server: &Arc<Server>, info: &RouteInfo) {
        if info.server_id == server.server_id || self.has_route(&info.server_id) {
            return;
        }
        if let Some(hp) = crate::config::cluster::route_host_port(&info.ip) {
            self.dial(server, hp, false);
        }
    }

    fn urls_changed(&self, server: &Arc<Server>) {
        if self.opts.no_advertise {
            return;
        }
        let mut urls = self.own_client_urls(server, None);
        for r in self.routes.read().iter() {
            for u in r.client_urls() {
                if !urls.contains(&u) {
                    urls.push(u);
                }
            }
        }
        if server.info().connect_urls == urls {
            return;
        }
        server.update_info(|i| i.connect_urls = urls);
        for c in server.clients() {
            let meta = c.meta.lock().clone();
            // Only clients that take asynchronous INFOs, as nats-server.
            if meta.connected && meta.protocol >= 1 && meta.first_pong_sent && !c.is_closing() {
                c.send_proto(&server.info_for(c.cid, &c.addr.ip().to_string(), None));
            }
        }
    }

    /// `tls { verify_and_map }`: an accepted route is the cluster user its certificate names.
    pub(super) fn maps_certs(&self) -> bool {
        self.opts.tls.as_ref().is_some_and(|t| t.verify_and_map)
    }

    /// Whether routes may send us messages on `subject` (`import`): interest outside it is
    /// never announced, as nats-server's `canImport`.
    fn can_import(&self, subject: &str) -> bool {
        self.perms.as_ref().is_none_or(|p| p.can_publish(subject))
    }

    /// Whether a route may subscribe to `subject` here (`export`, nats-server's `canExport`).
    pub(crate) fn can_export(&self, subject: &str, queue: Option<&str>) -> bool {
        self.perms
            .as_ref()
            .is_none_or(|p| p.can_subscribe(subject, queue))
    }

    /// Whether a message on the literal `subject` may go to routes (an `export` deny entry
    /// stops it even under an allowed wildcard interest).
    fn export_denies(&self, subject: &str) -> bool {
        self.perms.as_ref().is_some_and(|p| p.sub_denied(subject))
    }

    fn interest_added(&self, account: &str, subject: &str, queue: Option<String>) {
        if !self.can_import(subject) {
            return;
        }
        let key = (account.to_string(), subject.to_string(), queue);
        let mut local = self.local.lock();
        let queue = key.2.clone();
        let n = local.entry(key).or_insert(0);
        *n += 1;
        if *n == 1 || queue.is_some() {
            let mut line = Vec::new();
            encode_sub(
                &mut line,
                account,
                subject,
                queue.as_deref().map(|q| (q, *n)),
            );
            self.broadcast(&line);
        }
    }

    fn interest_removed(&self, account: &str, subject: &str, queue: Option<String>) {
        if !self.can_import(subject) {
            return;
        }
        let key = (account.to_string(), subject.to_string(), queue);
        let mut local = self.local.lock();
        let Some(n) = local.get_mut(&key) else {
            return;
        };
        *n -= 1;
        let mut line = Vec::new();
        if *n <= 0 {
            local.remove(&key);
            encode_unsub(&mut line, &key.0, &key.1, key.2.as_deref());
        } else if let Some(q) = &key.2 {
            encode_sub(&mut line, &key.0, &key.1, Some((q, *n)));
        } else {
            return;
        }
        self.broadcast(&line);
    }

    fn broadcast(&self, line: &[u8]) {
        for r in self.routes.read().iter() {
            r.send(line);
        }
    }

    /// `/routez` data.
    pub fn routez(&self, subs: bool, detail: bool) -> Vec<serde_json::Value> {
        self.routes()
            .iter()
            .map(|r| r.routez(subs, detail))
            .collect()
    }

    /// `/varz` `cluster` section, with nats-server's keys (false TLS flags are omitted, as Go's
    /// `omitempty`; the auth timeout is the TLS timeout plus a second with TLS).
    pub fn varz(&self) -> serde_json::Value {
        let addr = *self.listen_addr.read();
        let tls_timeout = self.tls.as_ref().map_or(2.0, |t| t.timeout.as_secs_f64());
        let auth_timeout = if self.tls.is_some() {
            tls_timeout + 1.0
        } else {
            2.0
        };
        let secs =
            |x: f64| crate::clock::go_float(&x, serde_json::value::Serializer).unwrap_or_default();
        let mut v = serde_json::json!({
            "name": self.name,
            "addr": if self.opts.host.is_empty() { "0.0.0.0" } else { self.opts.host.as_str() },
            "cluster_port": addr.map_or(0, |a| a.port()),
            "auth_timeout": secs(auth_timeout),
            "tls_timeout": secs(tls_timeout),
        });
        let urls: Vec<String> = self
            .configured_routes()
            .iter()
            .filter_map(|u| crate::config::cluster::route_host_port(u))
            .collect();
        if !urls.is_empty() {
            v["urls"] = urls.into();
        }
        if let Some(t) = &self.opts.tls {
            v["tls_required"] = true.into();
            v["tls_verify"] = true.into();
            if let Some(na) = crate::server::tls::cert_not_after(&t.cert_file) {
                v["tls_cert_not_after"] = na.into();
            }
        }
        v["pool_size"] = 1.into();
        v
    }

    /// Closes every route (server shutdown).
    pub fn shutdown(&self) {
        for r in self.routes() {
            r.close(crate::protocol::ClosedReason::ServerShutdown);
        }
    }
}

fn is_wildcard(h: &str) -> bool {
    matches!(h, "" | "0.0.0.0" | "::" | "[::]")
}

fn join_host_port(h: &str, p: u16) -> String {
    if h.contains(':') && !h.starts_with('[') {
        format!("[{h}]:{p}")
    } else {
        format!("{h}:{p}")
    }
}
