//! A client connection: its shared state, its life from accept to close, and the write loop
//! (outbound queue → socket). The read side is in `reader.rs`, CONNECT in `connect.rs`,
//! delivery in `deliver.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Mutex, RwLock};

use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::outbound::{FlushError, Outbound};
use super::reader::read_loop;
use super::subscription::{Counters, InternalHandler, Subscription};
use super::transport::{self};
use super::Server;
use crate::accounts::Account;
use crate::auth::{AuthUser, Presented};
use crate::clock::unix_nanos;
use crate::protocol::info::ConnectInfo;
use crate::protocol::ClosedReason;

/// What CONNECT told us, plus monitoring metadata that changes rarely.
#[derive(Debug, Default, Clone)]
pub struct ClientMeta {
    pub name: String,
    pub lang: String,
    pub version: String,
    pub verbose: bool,
    pub pedantic: bool,
    pub echo: bool,
    pub headers: bool,
    pub no_responders: bool,
    pub connected: bool,
    /// CONNECT's `protocol` (1: the client takes asynchronous INFOs).
    pub protocol: i32,
    /// The first PONG after CONNECT has gone out; only then are asynchronous INFOs sent.
    pub first_pong_sent: bool,
}

/// Remaining uses and expiry of one `allow_responses` reply subject.
pub(super) type ReplyGrant = (u32, Option<Instant>);

/// The part of a connection other tasks touch: its outbound queue, subscriptions and counters.
#[derive(Debug)]
pub struct Client {
    pub cid: u64,
    pub addr: SocketAddr,
    pub start: SystemTime,
    pub(super) account: RwLock<Arc<Account>>,
    /// Who authenticated on this connection, once CONNECT is accepted.
    pub(super) user: RwLock<Option<Arc<AuthUser>>>,
    /// Reply subjects this client may answer under `allow_responses`: remaining uses, deadline.
    pub(super) responses: Mutex<HashMap<Box<[u8]>, ReplyGrant>>,
    /// Whether deliveries to this client record reply subjects (it has `allow_responses`).
    pub(super) track_replies: AtomicBool,
    /// Names from the verified client certificate, for `verify_and_map`.
    pub(super) cert_ids: Vec<String>,
    /// The accepted CONNECT and the INFO nonce, to re-check the credentials on config reload.
    pub(super) connect: Mutex<Option<ConnectInfo>>,
    pub(super) nonce: Option<String>,
    pub stats: Counters,
    /// Unix nanoseconds of the last protocol activity.
    pub last_activity: AtomicI64,
    /// Round-trip time of the first PING, in nanoseconds.
    pub rtt_nanos: AtomicI64,
    pub meta: Mutex<ClientMeta>,
    pub subs: Mutex<HashMap<Box<[u8]>, Arc<Subscription>>>,
    pub(crate) out: Outbound,
    /// Wakes the read loop when the connection is closed from elsewhere.
    pub(super) stop: Notify,
    pub(super) closing: AtomicBool,
    pub(super) reason: Mutex<Option<ClosedReason>>,
    pub(super) pings_out: AtomicU32,
    pub(super) headers: AtomicBool,
    pub(super) max_pending: usize,
}

/// `ip:port - cid:N`, the prefix nats-server puts on every log line about a connection.
pub struct ClientTag<'a>(&'a Client);

impl std::fmt::Display for ClientTag<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{} - cid:{}",
            self.0.addr.ip(),
            self.0.addr.port(),
            self.0.cid
        )
    }
}

impl Client {
    /// The log prefix for this connection.
    pub fn tag(&self) -> ClientTag<'_> {
        ClientTag(self)
    }

    /// The account the connection belongs to.
    pub fn account(&self) -> Arc<Account> {
        self.account.read().clone()
    }

    /// The authenticated user's name, if auth is configured.
    pub fn user_name(&self) -> Option<String> {
        self.user
            .read()
            .as_ref()
            .map(|u| u.name.clone())
            .filter(|n| !n.is_empty())
    }

    /// The user the connection authenticated as, once it has.
    pub fn auth_user(&self) -> Option<Arc<AuthUser>> {
        self.user.read().clone()
    }

    /// Candidate user names from the client certificate (`verify_and_map`).
    pub fn cert_identities(&self) -> Vec<String> {
        self.cert_ids.clone()
    }

    /// Bytes queued and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.out.pending()
    }

    /// Why the connection closed, once it has.
    pub fn closed_reason(&self) -> Option<ClosedReason> {
        *self.reason.lock()
    }

    /// Whether the client asked for headers in CONNECT.
    #[inline]
    pub fn supports_headers(&self) -> bool {
        self.headers.load(Ordering::Relaxed)
    }

    /// Queues raw protocol bytes and wakes the writer.
    pub fn send_proto(&self, bytes: &[u8]) {
        self.out.queue(bytes);
        self.out.wake.notify_one();
    }

    /// Queues raw protocol bytes for the connection's own read loop, which flushes at the end
    /// of its batch.
    pub(super) fn queue_proto(&self, bytes: &[u8]) {
        self.out.queue(bytes);
    }

    /// Records a reply subject this client may publish to once under `allow_responses`.
    pub(super) fn allow_reply(&self, reply: &[u8]) {
        let Some((max, expires)) = self
            .user
            .read()
            .as_ref()
            .and_then(|u| u.perms.as_ref()?.responses)
        else {
            return;
        };
        let deadline = (!expires.is_zero()).then(|| Instant::now() + expires);
        let mut map = self.responses.lock();
        // Keep the map bounded the way nats-server prunes its reply map.
        if map.len() > 10_000 {
            let now = Instant::now();
            map.retain(|_, (_, d)| d.is_none_or(|d| d > now));
        }
        map.insert(reply.into(), (max, deadline));
    }

    /// Uses one `allow_responses` grant for `subject`, if there is one.
    pub(super) fn take_reply_grant(&self, subject: &[u8]) -> bool {
        let mut map = self.responses.lock();
        let Some((left, deadline)) = map.get_mut(subject) else {
            return false;
        };
        if deadline.is_some_and(|d| d <= Instant::now()) {
            map.remove(subject);
            return false;
        }
        *left -= 1;
        if *left == 0 {
            map.remove(subject);
        }
        true
    }

    /// Starts closing the connection; the first reason given wins.
    pub fn close(&self, reason: ClosedReason) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        *self.reason.lock() = Some(reason);
        self.out.close();
        self.stop.notify_one();
    }

    /// Whether `close` has been called.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    pub(super) fn touch(&self) {
        self.last_activity.store(unix_nanos(), Ordering::Relaxed);
    }

    /// Re-checks the connection's credentials against reloaded authentication rules. On
    /// success (same account) the connection takes the new user and permissions, which its read
    /// loop picks up at the next reload epoch; `false` means they no longer authenticate.
    /// Connections that have not authenticated yet pass.
    pub(crate) fn reauthenticate(&self, auth: &crate::auth::Authenticator) -> bool {
        let Some(old) = self.user.read().clone() else {
            return true;
        };
        let connect = self.connect.lock().clone();
        let presented = Presented {
            connect: connect.as_ref(),
            nonce: self.nonce.as_deref(),
            cert_identities: &self.cert_ids,
            client_ip: Some(self.addr.ip()),
        };
        match auth.authenticate(&presented) {
            Ok(u) if Arc::ptr_eq(&u.account, &old.account) => {
                self.track_replies.store(
                    u.perms.as_ref().is_some_and(|p| p.responses.is_some()),
                    Ordering::Relaxed,
                );
                *self.user.write() = Some(u);
                true
            }
            _ => false,
        }
    }
}

impl Client {
    /// The server's own connection for internal subscriptions (JetStream): never registered,
    /// never written to; deliveries to its subscriptions go to their handlers.
    pub fn internal(cid: u64, account: Arc<Account>) -> Arc<Client> {
        Arc::new(Client {
            cid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            start: SystemTime::now(),
            account: RwLock::new(account),
            user: RwLock::new(None),
            responses: Mutex::new(HashMap::new()),
            cert_ids: Vec::new(),
            connect: Mutex::new(None),
            nonce: None,
            track_replies: AtomicBool::new(false),
            stats: Counters::default(),
            last_activity: AtomicI64::new(unix_nanos()),
            rtt_nanos: AtomicI64::new(0),
            meta: Mutex::new(ClientMeta::default()),
            subs: Mutex::new(HashMap::new()),
            out: Outbound::detached(),
            stop: Notify::new(),
            closing: AtomicBool::new(false),
            reason: Mutex::new(None),
            pings_out: AtomicU32::new(0),
            headers: AtomicBool::new(true),
            max_pending: usize::MAX,
        })
    }
}

impl Client {
    /// Subscribes `handler` to `subject` in `account` on this internal connection (JetStream,
    /// the resolver, the system services); the sid is the connection's next one.
    pub fn subscribe_internal(
        self: &Arc<Self>,
        server: &Server,
        account: &Arc<Account>,
        subject: &str,
        handler: InternalHandler,
    ) -> Arc<Subscription> {
        // Unique for the process: internal subscriptions come and go (streams are deleted).
        static NEXT_SID: AtomicU64 = AtomicU64::new(1);
        let n = NEXT_SID.fetch_add(1, Ordering::Relaxed);
        let sid: Box<[u8]> = format!("i{n}").into_bytes().into();
        let sub = Arc::new(Subscription {
            client: self.clone(),
            account: account.clone(),
            deny: None,
            subject: subject.to_string(),
            queue: None,
            sid: sid.clone(),
            max: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            internal: Some(handler),
        });
        self.subs.lock().insert(sid, sub.clone());
        server.add_sub(&sub);
        sub
    }
}

/// Runs one client connection to completion.
pub async fn run_client(server: Arc<Server>, stream: TcpStream, addr: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let sock = Arc::new(stream);
    let opts = server.options();
    let cid = server.next_cid();
    let auth = server.authenticator();
    let nonce = auth.needs_nonce().then(crate::auth::new_nonce);
    let info = server.info_for(cid, &addr.ip().to_string(), nonce.as_deref());
    // TLS: INFO in the clear first (clients read tls_required from it), then the handshake;
    // or the handshake first when configured.
    let mut info_sent = false;
    let mut cert_ids = Vec::new();
    let tls = match server.tls_config() {
        None => None,
        Some(setup) => {
            let mut handshake_first = setup.handshake_first;
            if let Some(wait) = setup.fallback {
                // nats-server's fallback: a client that has not started TLS by then is an
                // ordinary one, waiting for INFO.
                let mut first = [0u8; 1];
                if tokio::time::timeout(wait, sock.peek(&mut first))
                    .await
                    .is_err()
                {
                    handshake_first = false;
                }
            }
            if !handshake_first {
                if transport::write_raw(&sock, &info).await.is_err() {
                    return;
                }
                info_sent = true;
            }
            let timeout = setup.timeout;
            let mut plain = false;
            if setup.optional && !handshake_first {
                // nats-server's allow_non_tls: a TLS record (0x16) starts the handshake;
                // anything else, or nothing within the TLS timeout, is a plain client.
                let mut first = [0u8; 1];
                plain = !matches!(
                    tokio::time::timeout(timeout, sock.peek(&mut first)).await,
                    Ok(Ok(1..)) if first[0] == 0x16
                );
            }
            (!plain).then_some((setup.config, timeout))
        }
    };
    let tls = match tls {
        None => None,
        Some((config, timeout)) => {
            let mut conn = match rustls::ServerConnection::new(config) {
                Ok(c) => rustls::Connection::Server(c),
                Err(e) => {
                    tracing::error!(
                        "{}:{} - cid:{} - TLS setup error: {e}",
                        addr.ip(),
                        addr.port(),
                        cid
                    );
                    return;
                }
            };
            match tokio::time::timeout(timeout, transport::handshake(&sock, &mut conn)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(
                        "{}:{} - cid:{} - TLS handshake error: {e}",
                        addr.ip(),
                        addr.port(),
                        cid
                    );
                    return;
                }
                Err(_) => {
                    tracing::error!(
                        "{}:{} - cid:{} - TLS handshake timeout",
                        addr.ip(),
                        addr.port(),
                        cid
                    );
                    return;
                }
            }
            if let Some(cert) = conn.peer_certificates().and_then(|c| c.first()) {
                cert_ids = crate::auth::tls_map::cert_identities(cert);
                // nats-server also matches configured DNs in any RDN order.
                let names = auth.usernames();
                if let Some(u) =
                    crate::auth::tls_map::map_user(cert, names.iter().map(String::as_str))
                {
                    cert_ids.insert(0, u.to_string());
                }
            }
            conn.set_buffer_limit(Some(opts.max_pending.max(1) as usize));
            Some(Arc::new(Mutex::new(conn)))
        }
    };
    // Without required auth the connection's identity is known before CONNECT.
    let pre_user = if auth.required() {
        None
    } else {
        auth.authenticate(&Presented::default()).ok()
    };
    let account = pre_user
        .as_ref()
        .map_or_else(|| server.global_account(), |u| u.account.clone());
    let client = Arc::new(Client {
        cid,
        addr,
        start: SystemTime::now(),
        account: RwLock::new(account),
        user: RwLock::new(pre_user.clone()),
        responses: Mutex::new(HashMap::new()),
        cert_ids,
        connect: Mutex::new(None),
        nonce: nonce.clone(),
        track_replies: AtomicBool::new(
            pre_user
                .as_ref()
                .is_some_and(|u| u.perms.as_ref().is_some_and(|p| p.responses.is_some())),
        ),
        stats: Counters::default(),
        last_activity: AtomicI64::new(unix_nanos()),
        rtt_nanos: AtomicI64::new(0),
        meta: Mutex::new(ClientMeta {
            echo: true,
            ..Default::default()
        }),
        subs: Mutex::new(HashMap::new()),
        out: Outbound::new(sock.clone(), tls.clone()),
        stop: Notify::new(),
        closing: AtomicBool::new(false),
        reason: Mutex::new(None),
        pings_out: AtomicU32::new(0),
        headers: AtomicBool::new(false),
        max_pending: opts.max_pending.max(1) as usize,
    });

    if !info_sent {
        client.send_proto(&info);
    }

    if !server.register_client(&client) {
        tracing::error!("{} - cid:{} - maximum connections exceeded", addr, cid);
        client.send_proto(b"-ERR 'maximum connections exceeded'\r\n");
        client.close(ClosedReason::MaxConnectionsExceeded);
        write_loop(server.clone(), client.clone()).await;
        server.record_closed(&client);
        return;
    }
    tracing::debug!(
        "{}:{} - cid:{} - Client connection created",
        addr.ip(),
        addr.port(),
        cid
    );

    let writer = tokio::spawn(write_loop(server.clone(), client.clone()));
    read_loop(&server, &client, &sock, tls.as_ref(), pre_user, nonce).await;
    drop(sock);
    client.close(ClosedReason::ClientClosed);
    let _ = writer.await;
    server.remove_client(&client);
}

/// The write loop's settings: ping interval, maximum outstanding pings, write deadline.
pub(super) fn write_settings(server: &Server) -> (Duration, u32, Duration) {
    let o = server.options();
    let ping_interval = if o.ping_interval.is_zero() {
        Duration::from_secs(120)
    } else {
        o.ping_interval
    };
    (ping_interval, o.ping_max.max(0) as u32, o.write_deadline)
}

pub(super) async fn write_loop(server: Arc<Server>, client: Arc<Client>) {
    let mut epoch = server.reload_epoch.load(Ordering::Acquire);
    let (mut ping_interval, mut ping_max, mut write_deadline) = write_settings(&server);
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    loop {
        tokio::select! {
            _ = client.out.wake.notified() => {}
            _ = ping.tick() => {
                if !client.is_closing() {
                    send_ping(&server, &client, ping_max);
                }
            }
        }
        let now = server.reload_epoch.load(Ordering::Acquire);
        if now != epoch {
            epoch = now;
            let old_interval = ping_interval;
            (ping_interval, ping_max, write_deadline) = write_settings(&server);
            if ping_interval != old_interval {
                ping = tokio::time::interval_at(
                    tokio::time::Instant::now() + ping_interval,
                    ping_interval,
                );
            }
        }
        // A closing connection gets a short grace to flush its last words (e.g. -ERR).
        let deadline = if client.is_closing() {
            write_deadline.min(Duration::from_secs(1))
        } else {
            write_deadline
        };
        match client.out.drain(deadline).await {
            Ok(false) => {}
            Ok(true) => return,
            Err(FlushError::Deadline) => {
                server.slow_consumer(&client, ClosedReason::SlowConsumerWriteDeadline);
                client.out.release();
                return;
            }
            Err(FlushError::Io) => {
                client.close(ClosedReason::WriteError);
                client.out.release();
                return;
            }
        }
    }
}

pub(super) fn send_ping(server: &Server, client: &Client, ping_max: u32) {
    let outstanding = client.pings_out.fetch_add(1, Ordering::Relaxed) + 1;
    if outstanding > ping_max {
        tracing::debug!("{} - Stale Client Connection - Closing", client.tag());
        client.send_proto(b"-ERR 'Stale Connection'\r\n");
        server.stale_connections.fetch_add(1, Ordering::Relaxed);
        client.close(ClosedReason::StaleConnection);
        return;
    }
    if client.rtt_nanos.load(Ordering::Relaxed) == 0 {
        client.rtt_nanos.store(-unix_nanos(), Ordering::Relaxed);
    }
    client.send_proto(b"PING\r\n");
}

impl Client {
    /// The `client` block of nats-server's events and advisories (`ClientInfo`).
    pub fn event_info(&self, server: &Server) -> serde_json::Value {
        let c = self;
        let meta = c.meta.lock().clone();
        let mut v = serde_json::json!({
            "start": crate::log::rfc3339(c.start),
            "host": c.addr.ip().to_string(),
            "id": c.cid,
            "acc": c.account().name,
        });
        if let Some(u) = c.user_name().filter(|u| !u.is_empty()) {
            v["user"] = serde_json::json!(u);
        }
        v["name"] = serde_json::json!(meta.name);
        v["lang"] = serde_json::json!(meta.lang);
        v["ver"] = serde_json::json!(meta.version);
        let rtt = c.rtt_nanos.load(Ordering::Relaxed);
        if rtt > 0 {
            v["rtt"] = serde_json::json!(rtt);
        } else if rtt == 0
            && !meta.lang.is_empty()
            && c.rtt_nanos
                .compare_exchange(0, -unix_nanos(), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // nats-server's getRTT: a real client without a round trip yet gets a PING, so
            // later events carry one.
            c.send_proto(b"PING\r\n");
        }
        v["server"] = serde_json::json!(server.server_name);
        v["kind"] = serde_json::json!("Client");
        v["client_type"] = serde_json::json!("nats");
        v
    }
}
