//! One route connection: handshake, read loop (interest and messages), write loop (pings and
//! the outbound queue).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Buf, BytesMut};
use parking_lot::{Mutex, RwLock};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::{Cluster, RouteInfo};
use crate::clock::unix_nanos;
use crate::protocol::route_wire::{parse, RouteOp};
use crate::protocol::{ClosedReason, Msg};
use crate::server::deliver::{Origin, WakeList};
use crate::server::outbound::{FlushError, Outbound};
use crate::server::subscription::{Counters, Tally};
use crate::server::Server;
use crate::sublist::{MatchResult, Sublist};

/// How a route we dialed was configured.
#[derive(Debug, Clone)]
pub struct Solicited {
    /// `host:port` dialed.
    pub url: String,
    /// From `routes` (redialed forever) rather than gossip.
    pub configured: bool,
}

/// One remote subscription (or queue group with its weight) on a route.
#[derive(Debug)]
pub struct RemoteSub {
    /// Queue weight: the number of members on the remote server.
    pub weight: AtomicI32,
    /// Messages forwarded to the route on behalf of this subscription.
    pub msgs: AtomicU64,
}

/// What the remote server told us about itself.
#[derive(Debug, Default, Clone)]
struct Remote {
    id: String,
    name: String,
    client_urls: Vec<String>,
    jetstream: bool,
}

/// Remote interest of one account: the index and the entries by (subject, queue).
type AccountInterest = (
    Arc<Sublist<RemoteSub>>,
    HashMap<(String, Option<String>), Arc<RemoteSub>>,
);

/// A connection to another server of the cluster.
#[derive(Debug)]
pub struct Route {
    /// Route id (nats-server's `rid`).
    pub rid: u64,
    /// The peer's address.
    pub addr: SocketAddr,
    /// Our side's address.
    pub local_addr: Option<SocketAddr>,
    pub start: SystemTime,
    /// Set when we dialed it.
    pub solicited: Option<Solicited>,
    remote: RwLock<Remote>,
    interest: RwLock<HashMap<String, AccountInterest>>,
    pub stats: Counters,
    pub last_activity: AtomicI64,
    out: Outbound,
    stop: Notify,
    closing: AtomicBool,
    reason: Mutex<Option<ClosedReason>>,
    pings_out: AtomicU32,
    /// Set once an accepted route's CONNECT passed `authorization`.
    authed: AtomicBool,
    /// What an accepted route's CONNECT presented (`user`, `pass`), checked again when the
    /// authorization is reloaded.
    creds: Mutex<Option<(String, String)>>,
    /// The certificate an accepted TLS route presented (for `verify_and_map`).
    peer_cert: Option<rustls::pki_types::CertificateDer<'static>>,
    /// Round-trip time of the last PING/PONG, and when the outstanding PING went (ns).
    rtt: AtomicI64,
    ping_sent: AtomicI64,
}

/// Tells a route that failed authentication and closes it (nats-server's wording).
pub(super) fn auth_violation(route: &Route) {
    tracing::error!(
        "{}:{} - rid:{} - authentication error",
        route.addr.ip(),
        route.addr.port(),
        route.rid
    );
    route.send(b"-ERR 'Authorization Violation'\r\n");
    route.close(ClosedReason::AuthenticationViolation);
}

/// What we present when dialing `host_port`: the credentials in its configured URL, else the
/// cluster's `authorization`.
fn route_credentials(cluster: &Cluster, host_port: &str) -> (Option<String>, Option<String>) {
    for url in &cluster.configured_routes() {
        if crate::config::cluster::route_host_port(url).as_deref() != Some(host_port) {
            continue;
        }
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        if let Some((userinfo, _)) = rest.rsplit_once('@') {
            let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            return (Some(u.to_string()), Some(p.to_string()));
        }
    }
    match cluster.auth() {
        Some(a) => (Some(a.user), Some(a.password)),
        None => (None, None),
    }
}

impl Route {
    /// Whether this accepted route's CONNECT matches `auth`.
    /// With `verify_and_map` the route's certificate must name the user instead.
    pub(super) fn presented(&self, auth: &crate::options::RouteAuth, map_cert: bool) -> bool {
        if map_cert {
            return self.peer_cert.as_ref().is_some_and(|c| {
                crate::auth::tls_map::map_user(c, std::iter::once(auth.user.as_str())).is_some()
            });
        }
        self.creds
            .lock()
            .as_ref()
            .is_some_and(|(u, p)| *u == auth.user && crate::auth::secret_matches(&auth.password, p))
    }

    /// Sends a PING, timing the round trip (for `/routez` `rtt`).
    fn ping(&self) {
        let _ = self.ping_sent.compare_exchange(
            0,
            crate::clock::unix_nanos(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.send(b"PING\r\n");
    }

    /// Whether the accepted route presented valid credentials.
    fn authed(&self) -> bool {
        self.authed.load(Ordering::Relaxed)
    }

    /// The remote server's id (empty before its INFO).
    pub fn remote_id(&self) -> String {
        self.remote.read().id.clone()
    }

    /// The remote server's name.
    pub fn remote_name(&self) -> String {
        self.remote.read().name.clone()
    }

    /// Whether the remote server runs JetStream.
    pub fn remote_jetstream(&self) -> bool {
        self.remote.read().jetstream
    }

    /// The remote server's client URLs.
    pub fn client_urls(&self) -> Vec<String> {
        self.remote.read().client_urls.clone()
    }

    /// Queues protocol bytes and wakes the writer.
    pub fn send(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.out.queue(bytes);
        self.out.wake.notify_one();
    }

    /// Queues one encoded message, counting it.
    pub(super) fn send_msg(&self, bytes: &[u8], size: usize) {
        self.stats.out_msgs.fetch_add(1, Ordering::Relaxed);
        self.stats
            .out_bytes
            .fetch_add(size as u64, Ordering::Relaxed);
        self.send(bytes);
    }

    /// Starts closing the route; the first reason wins.
    pub fn close(&self, reason: ClosedReason) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        *self.reason.lock() = Some(reason);
        self.out.close();
        self.stop.notify_one();
    }

    /// The remote interest matching `subject` in `account`, if it has any there.
    pub fn matches(&self, account: &str, subject: &str) -> Option<Arc<MatchResult<RemoteSub>>> {
        let map = self.interest.read();
        let (sl, _) = map.get(account)?;
        Some(sl.match_subject(subject))
    }

    /// Number of remote subscriptions held for this route.
    pub fn num_subs(&self) -> usize {
        self.interest.read().values().map(|(_, m)| m.len()).sum()
    }

    fn add_interest(&self, account: &str, subject: &str, queue: Option<&str>, weight: i32) {
        let mut map = self.interest.write();
        let (sl, subs) = map
            .entry(account.to_string())
            .or_insert_with(|| (Arc::new(Sublist::new()), HashMap::new()));
        let key = (subject.to_string(), queue.map(str::to_string));
        if let Some(s) = subs.get(&key) {
            s.weight.store(weight, Ordering::Relaxed);
            return;
        }
        let s = Arc::new(RemoteSub {
            weight: AtomicI32::new(weight),
            msgs: AtomicU64::new(0),
        });
        if sl.insert(subject, queue, s.clone()).is_ok() {
            subs.insert(key, s);
        }
    }

    fn remove_interest(&self, account: &str, subject: &str, queue: Option<&str>) {
        let mut map = self.interest.write();
        let Some((sl, subs)) = map.get_mut(account) else {
            return;
        };
        let key = (subject.to_string(), queue.map(str::to_string));
        if let Some(s) = subs.remove(&key) {
            sl.remove(subject, queue, &s);
        }
    }

    /// `/routez` entry for this route: with `subs` the remote subjects, with `detail` the
    /// remote subscriptions in detail (as nats-server's `subscriptions_list_detail`).
    pub fn routez(&self, subs: bool, detail: bool) -> serde_json::Value {
        use crate::clock::{go_duration, since, uptime};
        let now = SystemTime::now();
        let last = crate::clock::from_unix_nanos(self.last_activity.load(Ordering::Relaxed));
        let mut v = serde_json::json!({
            "rid": self.rid,
            "remote_id": self.remote_id(),
            "remote_name": self.remote_name(),
            "did_solicit": self.solicited.is_some(),
            "is_configured": self.solicited.as_ref().is_some_and(|s| s.configured),
            "ip": self.addr.ip().to_string(),
            "port": self.addr.port(),
            "start": chrono_like(self.start),
            "last_activity": chrono_like(last),
            "rtt": crate::clock::rtt_string(self.rtt.load(Ordering::Relaxed)),
            "uptime": uptime(since(self.start, now)),
            "idle": go_duration(since(last, now).as_nanos() as i128),
            "pending_size": self.out.pending(),
            "in_msgs": self.stats.in_msgs.load(Ordering::Relaxed),
            "out_msgs": self.stats.out_msgs.load(Ordering::Relaxed),
            "in_bytes": self.stats.in_bytes.load(Ordering::Relaxed),
            "out_bytes": self.stats.out_bytes.load(Ordering::Relaxed),
            "subscriptions": self.num_subs(),
        });
        if subs || detail {
            // (account, subject, queue, msgs) of every remote subscription, sorted.
            let mut entries: Vec<(String, String, Option<String>, u64)> = self
                .interest
                .read()
                .iter()
                .flat_map(|(acc, (_, m))| {
                    m.iter()
                        .map(|((s, q), rs)| {
                            let msgs = rs.msgs.load(Ordering::Relaxed);
                            (acc.clone(), s.clone(), q.clone(), msgs)
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            entries.sort();
            // nats-server omits an empty list (`omitempty`).
            if !entries.is_empty() {
                if detail {
                    let list: Vec<serde_json::Value> = entries
                        .iter()
                        .map(|(acc, subject, queue, msgs)| {
                            route_sub_detail(self.rid, acc, subject, queue.as_deref(), *msgs)
                        })
                        .collect();
                    v["subscriptions_list_detail"] = serde_json::Value::Array(list);
                } else {
                    let list: Vec<&str> = entries.iter().map(|e| e.1.as_str()).collect();
                    v["subscriptions_list"] = serde_json::json!(list);
                }
            }
        }
        v
    }
}

/// One remote subscription as nats-server's `SubDetail` for a route: no account field, the
/// sid is the route's subscription key (`R <account> <subject>[ <queue>]`) and `cid` the rid.
fn route_sub_detail(
    rid: u64,
    account: &str,
    subject: &str,
    queue: Option<&str>,
    msgs: u64,
) -> serde_json::Value {
    let mut d = serde_json::Map::new();
    d.insert("subject".into(), subject.into());
    let sid = match queue {
        Some(q) => {
            d.insert("qgroup".into(), q.into());
            format!("R {account} {subject} {q}")
        }
        None => format!("R {account} {subject}"),
    };
    d.insert("sid".into(), sid.into());
    d.insert("msgs".into(), msgs.into());
    d.insert("cid".into(), rid.into());
    serde_json::Value::Object(d)
}

/// RFC 3339 time with nanoseconds, as Go prints `time.Time` in JSON.
fn chrono_like(t: SystemTime) -> String {
    crate::log::rfc3339(t)
}

/// Runs one route connection to completion (accepted when `solicited` is `None`).
pub(super) async fn run(
    server: Arc<Server>,
    cluster: Arc<Cluster>,
    stream: TcpStream,
    addr: SocketAddr,
    solicited: Option<Solicited>,
) {
    let _ = stream.set_nodelay(true);
    let local_addr = stream.local_addr().ok();
    let sock = Arc::new(stream);
    let rid = cluster.next_rid.fetch_add(1, Ordering::Relaxed) + 1;
    let (ip, port) = (addr.ip(), addr.port());
    let tls = match cluster.tls() {
        None => None,
        Some(rt) => {
            let side = if solicited.is_some() {
                "client"
            } else {
                "server"
            };
            tracing::debug!("{ip}:{port} - rid:{rid} - Starting TLS route {side} handshake");
            match tls_handshake(&cluster, rt, &sock, solicited.as_ref()).await {
                Ok(conn) => Some(conn),
                Err(e) => {
                    tracing::error!("{ip}:{port} - rid:{rid} - TLS route handshake error: {e}");
                    tracing::info!(
                        "{ip}:{port} - rid:{rid} - Router connection closed: {}",
                        ClosedReason::TlsHandshakeError.as_str()
                    );
                    return;
                }
            }
        }
    };
    let route = Arc::new(Route {
        rid,
        addr,
        local_addr,
        start: SystemTime::now(),
        solicited,
        remote: RwLock::new(Remote::default()),
        interest: RwLock::new(HashMap::new()),
        stats: Counters::default(),
        last_activity: AtomicI64::new(unix_nanos()),
        out: Outbound::new(sock.clone(), tls.clone()),
        stop: Notify::new(),
        closing: AtomicBool::new(false),
        reason: Mutex::new(None),
        pings_out: AtomicU32::new(0),
        authed: AtomicBool::new(false),
        creds: Mutex::new(None),
        peer_cert: tls.as_ref().and_then(|t| {
            t.lock()
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.clone().into_owned())
        }),
        rtt: AtomicI64::new(0),
        ping_sent: AtomicI64::new(0),
    });
    if route.solicited.is_none() {
        route.send(&info_line(&cluster.route_info(&server, local_addr)));
    }
    tracing::info!("{ip}:{port} - rid:{rid} - Route connection created");
    let writer = tokio::spawn(write_loop(server.clone(), route.clone()));
    let registered = read_loop(&server, &cluster, &route, &sock, tls.as_ref()).await;
    route.close(ClosedReason::ClientClosed);
    let _ = writer.await;
    if registered {
        cluster.unregister(&server, &route);
    }
    let reason = route.closed_reason().unwrap_or(ClosedReason::ClientClosed);
    tracing::info!(
        "{ip}:{port} - rid:{rid} - Router connection closed: {} - Remote: {}",
        reason.as_str(),
        route.remote_name()
    );
}

/// Runs the TLS handshake of a route, right after the TCP connection as nats-server does: the
/// client side when we dialed (verifying the server against the dialed host, or the
/// remembered route name for an IP), the server side when we accepted.
async fn tls_handshake(
    cluster: &Cluster,
    rt: &crate::server::tls::RouteTls,
    sock: &TcpStream,
    solicited: Option<&Solicited>,
) -> std::io::Result<crate::server::transport::Tls> {
    use std::io::{Error, ErrorKind};
    let mut name = None;
    let mut conn = match solicited {
        Some(s) => {
            let host = s.url.rsplit_once(':').map_or(s.url.as_str(), |(h, _)| h);
            let n = cluster.tls_server_name(host);
            let server_name = rustls::pki_types::ServerName::try_from(n.clone())
                .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("{n:?}: {e}")))?;
            name = Some(n);
            rustls::ClientConnection::new(rt.client.clone(), server_name)
                .map(rustls::Connection::Client)
        }
        None => rustls::ServerConnection::new(rt.server.clone()).map(rustls::Connection::Server),
    }
    .map_err(|e| Error::new(ErrorKind::InvalidData, e))?;
    let res = match tokio::time::timeout(
        rt.timeout,
        crate::server::transport::handshake(sock, &mut conn),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(Error::new(ErrorKind::TimedOut, "timeout")),
    };
    if let Err(e) = res {
        if let Some(n) = name.filter(|_| crate::server::tls::is_name_mismatch(&e)) {
            cluster.tls_name_failed(&n);
        }
        return Err(e);
    }
    // The write loop drains each chunk fully, so the session needs no limit of its own.
    conn.set_buffer_limit(None);
    Ok(Arc::new(Mutex::new(conn)))
}

impl Route {
    fn closed_reason(&self) -> Option<ClosedReason> {
        *self.reason.lock()
    }
}

pub(crate) fn info_line(info: &RouteInfo) -> Vec<u8> {
    let mut out = b"INFO ".to_vec();
    serde_json::to_writer(&mut out, info).expect("INFO serializes");
    out.extend_from_slice(b" \r\n");
    out
}

/// Reads and handles route operations; returns whether the route was registered.
async fn read_loop(
    server: &Arc<Server>,
    cluster: &Arc<Cluster>,
    route: &Arc<Route>,
    sock: &TcpStream,
    tls: Option<&crate::server::transport::Tls>,
) -> bool {
    let max_payload = server.options().max_payload.max(0) as usize;
    let mut registered = false;
    let mut buf = BytesMut::with_capacity(32 * 1024);
    // The owner tags this reader's batches in the consumers' queues, so it must differ from
    // every other producer's: with 0 for every route, two routes delivering to one client in
    // batches with equal counts each took the other's flush for their own, and the message
    // stayed queued until the next one. Clients own their cid; routes take the upper half.
    let mut wakes = WakeList::new(ROUTE_OWNER | (route.rid & 0x7fff_ffff));
    loop {
        buf.reserve(32 * 1024);
        tokio::select! {
            biased;
            _ = route.stop.notified() => return registered,
            _ = server.wait_shutdown() => {
                route.close(ClosedReason::ServerShutdown);
                return registered;
            }
            res = crate::server::transport::read(sock, tls, &mut buf, 64 * 1024) => match res {
                Ok(crate::server::transport::ReadOutcome::Data) => {}
                Ok(crate::server::transport::ReadOutcome::TlsWantsWrite) => {
                    // TLS records to send back (e.g. a key update): the writer sends them.
                    route.out.wake.notify_one();
                    continue;
                }
                _ => return registered,
            },
        }
        route.last_activity.store(unix_nanos(), Ordering::Relaxed);
        let mut used = 0;
        loop {
            match parse(&buf[used..], max_payload) {
                Ok(Some((op, n))) => {
                    used += n;
                    if !handle(server, cluster, route, op, &mut registered, &mut wakes) {
                        wakes.flush();
                        return registered;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(
                        "{}:{} - rid:{} - {e}",
                        route.addr.ip(),
                        route.addr.port(),
                        route.rid
                    );
                    route.close(ClosedReason::ParseError);
                    return registered;
                }
            }
        }
        wakes.flush();
        let tally = std::mem::take(&mut wakes.tally);
        if !tally.is_empty() {
            server.stats.add(&tally);
        }
        buf.advance(used);
    }
}

/// Handles one operation; false when the route must close.
fn handle(
    server: &Arc<Server>,
    cluster: &Arc<Cluster>,
    route: &Arc<Route>,
    op: RouteOp<'_>,
    registered: &mut bool,
    wakes: &mut WakeList,
) -> bool {
    match op {
        RouteOp::Info(json) => {
            let Ok(mut info) = serde_json::from_slice::<RouteInfo>(json) else {
                route.close(ClosedReason::ProtocolViolation);
                return false;
            };
            if *registered {
                if info.server_id == route.remote_id() {
                    // A server in lame duck mode keeps its route but not its client URLs.
                    route.remote.write().client_urls = if info.lame_duck_mode {
                        Vec::new()
                    } else {
                        info.connect_urls
                    };
                    cluster.urls_changed(server);
                } else {
                    cluster.implicit_route(server, &info);
                }
                return true;
            }
            if info.ip.is_empty() && info.port != 0 {
                info.ip = format!(
                    "nats-route://{}/",
                    super::join_host_port(&route.addr.ip().to_string(), info.port)
                );
            }
            if info.server_id == server.server_id {
                tracing::debug!(
                    "{}:{} - rid:{} - Detected route to self, ignoring {:?}",
                    route.addr.ip(),
                    route.addr.port(),
                    route.rid,
                    route
                        .solicited
                        .as_ref()
                        .map(|s| s.url.as_str())
                        .unwrap_or("")
                );
                if let Some(s) = &route.solicited {
                    cluster.self_urls.lock().insert(s.url.clone());
                }
                route.close(ClosedReason::ClientClosed);
                return false;
            }
            if cluster.name_configured
                && !info.cluster_dynamic
                && !info.cluster.is_empty()
                && info.cluster != cluster.name
            {
                tracing::error!(
                    "{}:{} - rid:{} - Rejecting connection, cluster name {:?} does not match {:?}",
                    route.addr.ip(),
                    route.addr.port(),
                    route.rid,
                    info.cluster,
                    cluster.name
                );
                route.close(ClosedReason::ClusterNameConflict);
                return false;
            }
            if route.solicited.is_none() && cluster.auth().is_some() && !route.authed() {
                // Authentication is required and no accepted CONNECT came first.
                auth_violation(route);
                return false;
            }
            if let Some(s) = &route.solicited {
                let (user, pass) = route_credentials(cluster, &s.url);
                let connect = serde_json::json!({
                    "echo": false,
                    "verbose": false,
                    "pedantic": false,
                    "tls_required": cluster.tls.is_some(),
                    "headers": true,
                    "name": server.server_id,
                    "cluster": cluster.name,
                    "dynamic": !cluster.name_configured,
                    "user": user,
                    "pass": pass,
                });
                let mut out = format!("CONNECT {connect}\r\n").into_bytes();
                out.extend_from_slice(&info_line(&cluster.route_info(server, route.local_addr)));
                route.send(&out);
            }
            {
                let mut r = route.remote.write();
                r.id = info.server_id.clone();
                r.name = info.server_name.clone();
                r.client_urls = info.connect_urls.clone();
                r.jetstream = info.jetstream;
            }
            tracing::debug!(
                "{}:{} - rid:{} - Registering remote route {:?}",
                route.addr.ip(),
                route.addr.port(),
                route.rid,
                info.server_id
            );
            if !cluster.register(server, route, &info) {
                return false;
            }
            *registered = true;
            // The first round trip gives `/routez` its RTT, as nats-server does.
            route.ping();
        }
        RouteOp::Connect(json) => {
            #[derive(serde::Deserialize)]
            struct Creds {
                #[serde(default)]
                user: String,
                #[serde(default)]
                pass: String,
            }
            let creds = serde_json::from_slice::<Creds>(json).ok();
            *route.creds.lock() = creds.as_ref().map(|c| (c.user.clone(), c.pass.clone()));
            if let Some(auth) = cluster.auth() {
                if !route.presented(&auth, cluster.maps_certs()) {
                    auth_violation(route);
                    return false;
                }
                route.authed.store(true, Ordering::Relaxed);
            }
        }
        RouteOp::Ping => route.send(b"PONG\r\n"),
        RouteOp::Pong => {
            route.pings_out.store(0, Ordering::Relaxed);
            let sent = route.ping_sent.swap(0, Ordering::Relaxed);
            if sent > 0 {
                let now = crate::clock::unix_nanos();
                route.rtt.store((now - sent).max(1), Ordering::Relaxed);
            }
        }
        RouteOp::Err(e) => {
            tracing::error!(
                "{}:{} - rid:{} - Route Error {}",
                route.addr.ip(),
                route.addr.port(),
                route.rid,
                String::from_utf8_lossy(e)
            );
        }
        RouteOp::Sub {
            account,
            subject,
            queue,
            weight,
        } => {
            if let (Ok(a), Ok(s)) = (std::str::from_utf8(account), std::str::from_utf8(subject)) {
                let q = queue.and_then(|q| std::str::from_utf8(q).ok());
                if cluster.can_export(s, q) {
                    route.add_interest(a, s, q, weight);
                } else {
                    tracing::debug!(
                        "{}:{} - rid:{} - Subscription to {s:?} denied by the export permissions",
                        route.addr.ip(),
                        route.addr.port(),
                        route.rid
                    );
                }
            }
        }
        RouteOp::Unsub {
            account,
            subject,
            queue,
        } => {
            if let (Ok(a), Ok(s)) = (std::str::from_utf8(account), std::str::from_utf8(subject)) {
                let q = queue.and_then(|q| std::str::from_utf8(q).ok());
                route.remove_interest(a, s, q);
            }
        }
        RouteOp::Msg {
            account,
            subject,
            reply,
            queues,
            headers,
            payload,
        } => {
            let size = payload.len() + headers.map_or(0, |h| h.len());
            route.stats.in_msgs.fetch_add(1, Ordering::Relaxed);
            route
                .stats
                .in_bytes
                .fetch_add(size as u64, Ordering::Relaxed);
            wakes.tally.in_msgs += 1;
            wakes.tally.in_bytes += size as u64;
            let acc = std::str::from_utf8(account)
                .ok()
                .and_then(|a| server.account(a));
            let Some(acc) = acc else {
                return true;
            };
            let before = wakes.tally;
            // A subject that is not UTF-8 matches no subscription.
            if let Ok(subject) = std::str::from_utf8(subject) {
                // `<reply>@<deliver subject>`: a JetStream delivery, routed by the deliver
                // subject and shown with the stored one (nats-server's convention).
                let (reply, route_by) =
                    match reply.and_then(|r| r.iter().rposition(|b| *b == b'@').map(|i| (r, i))) {
                        Some((r, i)) => (Some(&r[..i]), std::str::from_utf8(&r[i + 1..]).ok()),
                        None => (reply, None),
                    };
                let msg = Msg {
                    subject,
                    reply,
                    headers,
                    payload,
                };
                deliver_routed(
                    server,
                    &acc,
                    route_by.unwrap_or(subject),
                    &msg,
                    &queues,
                    wakes,
                );
            }
            acc.stats.add(&Tally {
                in_msgs: 1,
                in_bytes: size as u64,
                out_msgs: wakes.tally.out_msgs - before.out_msgs,
                out_bytes: wakes.tally.out_bytes - before.out_bytes,
            });
        }
        RouteOp::Ignored => {}
    }
    true
}

/// Delivers a routed message to local plain subscribers and, for each queue group the sender
/// named, one local member.
fn deliver_routed(
    server: &Server,
    account: &crate::accounts::Account,
    route_by: &str,
    msg: &Msg<'_>,
    queues: &[&[u8]],
    wakes: &mut WakeList,
) {
    if account.has_stream_forwards() || account.has_response_routes() {
        crate::server::deliver::routed_cross_accounts(server, account, msg, wakes);
    }
    let result = account.sublist.match_subject(route_by);
    if result.is_empty() {
        return;
    }
    let mut m = MatchResult {
        psubs: result.psubs.clone(),
        ..MatchResult::default()
    };
    for q in queues {
        if let Some(i) = result.qnames.iter().position(|n| n.as_bytes() == *q) {
            m.qsubs.push(result.qsubs[i].clone());
            m.qnames.push(result.qnames[i].clone());
        }
    }
    crate::server::deliver::deliver_result(server, &m, Origin::SERVER, msg, wakes);
}

/// The bit marking a route reader's [`WakeList`] owner apart from client ids.
const ROUTE_OWNER: u64 = 1 << 31;

async fn write_loop(server: Arc<Server>, route: Arc<Route>) {
    let (ping_interval, ping_max, write_deadline) = {
        let o = server.options();
        (o.ping_interval, o.ping_max.max(0) as u32, o.write_deadline)
    };
    let ping_interval = if ping_interval.is_zero() {
        Duration::from_secs(120)
    } else {
        ping_interval
    };
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    loop {
        tokio::select! {
            _ = route.out.wake.notified() => {}
            _ = ping.tick() => {
                if !route.closing.load(Ordering::Acquire) {
                    if route.pings_out.fetch_add(1, Ordering::Relaxed) + 1 > ping_max {
                        route.close(ClosedReason::StaleConnection);
                    } else {
                        route.ping();
                    }
                }
            }
        }
        let deadline = if route.closing.load(Ordering::Acquire) {
            write_deadline.min(Duration::from_secs(1))
        } else {
            write_deadline
        };
        match route.out.drain(deadline).await {
            Ok(false) => {}
            Ok(true) => return,
            Err(FlushError::Deadline) => {
                route.close(ClosedReason::SlowConsumerWriteDeadline);
                route.out.release();
                return;
            }
            Err(FlushError::Io) => {
                route.close(ClosedReason::WriteError);
                route.out.release();
                return;
            }
        }
    }
}
