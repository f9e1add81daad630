//! Client connections: the shared per-connection state, the read loop (parse → route) and the
//! write loop (outbound queue → socket).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, BytesMut};
use parking_lot::{Mutex, RwLock};

use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::outbound::{FlushError, Outbound};
use super::transport::{self, ReadOutcome, Tls};
use super::Server;
use crate::accounts::Account;
use crate::auth::{AuthUser, Perms, Presented};
use crate::clock::unix_nanos;
use crate::protocol::client::{parse, ClientOp, Limits, ParseError};
use crate::protocol::encode_msg;
use crate::protocol::info::ConnectInfo;
use crate::protocol::ClosedReason;
use crate::subject;
use crate::sublist::{LocalCache, MatchResult};

/// One subscription: what the sublist stores and deliveries are made to.
#[derive(Debug)]
pub struct Subscription {
    pub client: Arc<Client>,
    /// The account whose sublist holds it.
    pub account: Arc<Account>,
    /// Deny subjects filtered out of deliveries: an allowed wildcard subscription that
    /// overlaps the user's subscribe deny list (nats-server's deny-on-delivery).
    pub deny: Option<Box<[String]>>,
    pub subject: String,
    pub queue: Option<String>,
    pub sid: Box<[u8]>,
    /// Auto-unsubscribe after this many deliveries; 0 means no limit.
    pub max: AtomicU64,
    pub delivered: AtomicU64,
    /// Set for the server's own subscriptions (JetStream): messages go to this function, called
    /// on the publisher's task, instead of a socket.
    pub internal: Option<InternalHandler>,
}

/// What an internal subscription does with a message: `(subject, reply, headers, payload)`.
/// It runs on the publisher's task, so it only hands the message on.
#[derive(Clone)]
pub struct InternalHandler(pub Arc<InternalFn>);

/// The function behind an [`InternalHandler`].
pub type InternalFn = dyn Fn(&[u8], Option<&[u8]>, Option<&[u8]>, &[u8]) + Send + Sync;

impl std::fmt::Debug for InternalHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InternalHandler")
    }
}

/// Message and byte counters, shared by connections, accounts and the server.
#[derive(Debug, Default)]
pub struct Counters {
    pub in_msgs: AtomicU64,
    pub in_bytes: AtomicU64,
    pub out_msgs: AtomicU64,
    pub out_bytes: AtomicU64,
}

impl Counters {
    #[inline]
    fn add_out(&self, bytes: usize) {
        self.out_msgs.fetch_add(1, Ordering::Relaxed);
        self.out_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Adds counts gathered locally during one batch.
    #[inline]
    pub fn add(&self, t: &Tally) {
        if t.in_msgs > 0 {
            self.in_msgs.fetch_add(t.in_msgs, Ordering::Relaxed);
            self.in_bytes.fetch_add(t.in_bytes, Ordering::Relaxed);
        }
        if t.out_msgs > 0 {
            self.out_msgs.fetch_add(t.out_msgs, Ordering::Relaxed);
            self.out_bytes.fetch_add(t.out_bytes, Ordering::Relaxed);
        }
    }
}

/// Counts kept in plain integers during a read batch and added to the shared counters once at
/// its end, so a message costs no atomic operations on server-wide cache lines.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
}

impl Tally {
    /// Whether nothing was counted.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.in_msgs == 0 && self.out_msgs == 0
    }
}

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
type ReplyGrant = (u32, Option<Instant>);

/// The part of a connection other tasks touch: its outbound queue, subscriptions and counters.
#[derive(Debug)]
pub struct Client {
    pub cid: u64,
    pub addr: SocketAddr,
    pub start: SystemTime,
    account: RwLock<Arc<Account>>,
    /// Who authenticated on this connection, once CONNECT is accepted.
    user: RwLock<Option<Arc<AuthUser>>>,
    /// Reply subjects this client may answer under `allow_responses`: remaining uses, deadline.
    responses: Mutex<HashMap<Box<[u8]>, ReplyGrant>>,
    /// Whether deliveries to this client record reply subjects (it has `allow_responses`).
    track_replies: AtomicBool,
    /// Names from the verified client certificate, for `verify_and_map`.
    cert_ids: Vec<String>,
    /// The accepted CONNECT and the INFO nonce, to re-check the credentials on config reload.
    connect: Mutex<Option<ConnectInfo>>,
    nonce: Option<String>,
    pub stats: Counters,
    /// Unix nanoseconds of the last protocol activity.
    pub last_activity: AtomicI64,
    /// Round-trip time of the first PING, in nanoseconds.
    pub rtt_nanos: AtomicI64,
    pub meta: Mutex<ClientMeta>,
    pub subs: Mutex<HashMap<Box<[u8]>, Arc<Subscription>>>,
    pub(crate) out: Outbound,
    /// Wakes the read loop when the connection is closed from elsewhere.
    stop: Notify,
    closing: AtomicBool,
    reason: Mutex<Option<ClosedReason>>,
    pings_out: AtomicU32,
    headers: AtomicBool,
    max_pending: usize,
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
    fn queue_proto(&self, bytes: &[u8]) {
        self.out.queue(bytes);
    }

    /// Records a reply subject this client may publish to once under `allow_responses`.
    fn allow_reply(&self, reply: &[u8]) {
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
    fn take_reply_grant(&self, subject: &[u8]) -> bool {
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

    fn touch(&self) {
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

/// Publishes from inside the server (JetStream acks, API responses, consumer deliveries):
/// routes like a client publish and batches the flushes until [`InternalSender::flush`].
pub struct InternalSender {
    cache: LocalCache<Subscription>,
    wakes: WakeList,
}

/// Ids for internal producers' wake lists, in a range of their own (below the route owners'
/// `1 << 31` and far above client ids), so two internal producers never share batch marks.
static INTERNAL_OWNER: std::sync::atomic::AtomicU64 = AtomicU64::new(3 << 29);

impl Default for InternalSender {
    fn default() -> Self {
        let owner = INTERNAL_OWNER.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
        InternalSender {
            cache: LocalCache::new(),
            wakes: WakeList::new(owner),
        }
    }
}

impl InternalSender {
    /// Routes one message in `account`; returns whether anyone took it.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        server: &Server,
        account: &Account,
        subject: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> bool {
        route_message(
            server,
            &mut self.cache,
            account,
            None,
            true,
            subject,
            reply,
            headers,
            payload,
            &mut self.wakes,
        )
    }

    /// Routes a message by `route_subject` but shows subscribers `wire_subject` (JetStream
    /// deliveries keep the stored subject while they go to a deliver or reply subject).
    #[allow(clippy::too_many_arguments)]
    pub fn send_as(
        &mut self,
        server: &Server,
        account: &Account,
        route_subject: &[u8],
        wire_subject: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> bool {
        let Ok(subj) = std::str::from_utf8(route_subject) else {
            return false;
        };
        let msg = LocalMsg {
            subject: subj,
            wire_subject,
            reply,
            headers,
            payload,
        };
        let mut delivered = deliver_in_account(
            server,
            &mut self.cache,
            account,
            None,
            true,
            &msg,
            &mut self.wakes,
        );
        // A deliver subject exported to another account (a cross-account mirror or
        // source, or a consumer shared by export): the importer's subscribers get it, still
        // showing the stored subject. One hop, as nats-server's delivery does.
        if account.has_stream_forwards() {
            let forwards = account.stream_forwards.match_subject(subj);
            for f in forwards.psubs.iter() {
                let mapped = f.map(subj);
                let result = f.target.sublist.match_subject(&mapped);
                delivered |= deliver_result(
                    server,
                    &result,
                    None,
                    true,
                    wire_subject,
                    reply,
                    headers,
                    payload,
                    &mut self.wakes,
                );
            }
        }
        delivered
    }

    /// Counts and flushes everything sent since the last flush.
    pub fn flush(&mut self, server: &Server) {
        let tally = std::mem::take(&mut self.wakes.tally);
        if !tally.is_empty() {
            server.stats.add(&tally);
        }
        self.wakes.flush();
        // Internal producers never wait for slow consumers; those are cut at max_pending.
        self.wakes.stalled.clear();
    }
}

thread_local! {
    /// The connection whose message is being delivered on this thread (0: the server's own).
    static PUBLISHER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Set by an internal handler that does not answer the message it was handed.
    static DECLINED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Called by an internal handler that does not take the message it was handed, so the
/// message counts as undelivered there: a requester then gets the no-responders status, as
/// from nats-server, which has no subscription for it (a direct get of a stream that does
/// not serve direct gets).
pub fn decline_delivery() {
    DECLINED.with(|d| d.set(true));
}

/// The id of the client whose message an internal handler is being called with (0 when the
/// server itself published): who asked, for the JetStream API audit.
pub fn publisher_cid() -> u64 {
    PUBLISHER.with(|p| p.get())
}

/// Connections woken during one read batch, each once at the end (write coalescing).
pub struct WakeList {
    mark: u64,
    /// The producing connection's id (0 for internal producers).
    owner: u64,
    /// Server-wide counts for this batch (deliveries are counted here, publishes by the reader).
    pub tally: Tally,
    clients: Vec<Arc<Client>>,
    /// Connections past 75% of `max_pending`: the producer waits for them to drain.
    stalled: Vec<Arc<Client>>,
}

impl WakeList {
    /// An empty list for the producer with connection id `owner`.
    pub fn new(owner: u64) -> Self {
        WakeList {
            // Unique per producer and batch: the id in the low bits, the batch count above
            // (starting at one: a fresh connection's mark is zero).
            mark: owner.wrapping_add(1 << 32),
            owner,
            tally: Tally::default(),
            clients: Vec::new(),
            stalled: Vec::new(),
        }
    }

    /// Flushes every connection fed in this batch, once each.
    pub fn flush(&mut self) {
        for c in self.clients.drain(..) {
            if c.out.try_flush().is_err() {
                c.close(ClosedReason::WriteError);
            }
        }
        self.mark = self.mark.wrapping_add(1 << 32);
    }

    /// Whether a consumer asked this producer to slow down.
    pub fn has_stalls(&self) -> bool {
        !self.stalled.is_empty()
    }

    /// Waits (bounded by `max_wait`) for stalled consumers to drain below 75% of `max_pending`,
    /// which pushes back on this producer through TCP instead of dropping the consumer.
    pub async fn wait_stalled(&mut self, max_wait: Duration) {
        let until = tokio::time::Instant::now() + max_wait;
        for c in self.stalled.drain(..) {
            loop {
                let drained = c.out.drained.notified();
                tokio::pin!(drained);
                drained.as_mut().enable();
                if c.is_closing() || c.out.pending() <= c.max_pending / 4 * 3 {
                    break;
                }
                if tokio::time::timeout_at(until, drained).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Sends one message to one subscription; returns whether it was delivered.
#[inline]
fn deliver(
    server: &Server,
    sub: &Arc<Subscription>,
    subject: &[u8],
    reply: Option<&[u8]>,
    headers: Option<&[u8]>,
    payload: &[u8],
    wakes: &mut WakeList,
) -> bool {
    let max = sub.max.load(Ordering::Relaxed);
    if max > 0 {
        let n = sub.delivered.fetch_add(1, Ordering::Relaxed) + 1;
        if n > max {
            return false;
        }
        if n == max {
            server.remove_sub(sub);
        }
    } else {
        sub.delivered.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(deny) = &sub.deny {
        if let Ok(s) = std::str::from_utf8(subject) {
            if deny.iter().any(|d| subject::matches(s, d)) {
                return false;
            }
        }
    }
    if let Some(h) = &sub.internal {
        DECLINED.with(|d| d.set(false));
        (h.0)(subject, reply, headers, payload);
        return !DECLINED.with(|d| d.replace(false));
    }
    let client = &sub.client;
    if let Some(r) = reply {
        if client.track_replies.load(Ordering::Relaxed) {
            client.allow_reply(r);
        }
    }
    let hdr = if client.supports_headers() {
        headers
    } else {
        None
    };
    let size = payload.len() + hdr.map_or(0, |h| h.len());
    let Some((pending, first)) = client.out.append(wakes.mark, |buf| {
        encode_msg(buf, subject, &sub.sid, reply, hdr, payload)
    }) else {
        return false;
    };
    if first {
        wakes.clients.push(client.clone());
    }
    let over = pending > client.max_pending;
    // A connection that reads its own echo is never waited on by itself: it would deadlock on
    // a client that writes everything before it reads.
    if !over
        && pending > client.max_pending / 4 * 3
        && wakes.owner != client.cid
        && !wakes.stalled.iter().any(|c| c.cid == client.cid)
    {
        wakes.stalled.push(client.clone());
    }
    client.stats.add_out(size);
    wakes.tally.out_msgs += 1;
    wakes.tally.out_bytes += size as u64;
    if over {
        server.slow_consumer(client, ClosedReason::SlowConsumerPendingBytes);
    }
    true
}

/// Routes one published message through `account` to every matching subscription.
#[allow(clippy::too_many_arguments)]
pub fn route_message(
    server: &Server,
    cache: &mut LocalCache<Subscription>,
    account: &Account,
    sender: Option<&Client>,
    echo: bool,
    subject: &[u8],
    reply: Option<&[u8]>,
    headers: Option<&[u8]>,
    payload: &[u8],
    wakes: &mut WakeList,
) -> bool {
    let Ok(subj) = std::str::from_utf8(subject) else {
        return false;
    };
    let local = LocalMsg {
        subject: subj,
        wire_subject: subject,
        reply,
        headers,
        payload,
    };
    let mut delivered = deliver_in_account(server, cache, account, sender, echo, &local, wakes);
    if account.has_stream_forwards()
        || account.has_service_imports()
        || account.has_response_routes()
    {
        let msg = CrossMsg {
            subject: subj,
            reply,
            headers,
            payload,
        };
        delivered |= cross_accounts(server, account, sender, echo, &msg, wakes, 0);
    }
    delivered
}

/// A message delivered in its own account: matched by `subject`, shown to subscribers as
/// `wire_subject` (the same, except for JetStream deliveries).
struct LocalMsg<'a> {
    subject: &'a str,
    wire_subject: &'a [u8],
    reply: Option<&'a [u8]>,
    headers: Option<&'a [u8]>,
    payload: &'a [u8],
}

/// Matches a message in `account`, forwards it to the routes with interest and delivers it to
/// the local subscriptions.
#[inline]
fn deliver_in_account(
    server: &Server,
    cache: &mut LocalCache<Subscription>,
    account: &Account,
    sender: Option<&Client>,
    echo: bool,
    m: &LocalMsg<'_>,
    wakes: &mut WakeList,
) -> bool {
    let result = cache.get_ref(m.subject, &account.sublist);
    let (forwarded, filtered) = match server.routes() {
        Some(c) => c.forward(account, m.subject, m.reply, m.headers, m.payload, result),
        None => (false, None),
    };
    let result = filtered.as_ref().unwrap_or(result);
    forwarded
        | deliver_result(
            server,
            result,
            sender,
            echo,
            m.wire_subject,
            m.reply,
            m.headers,
            m.payload,
            wakes,
        )
}

/// A message on its way across accounts.
struct CrossMsg<'a> {
    subject: &'a str,
    reply: Option<&'a [u8]>,
    headers: Option<&'a [u8]>,
    payload: &'a [u8],
}

/// How many account hops a message may take (imports of imports), so a cycle of imports
/// cannot loop forever.
const MAX_ACCOUNT_HOPS: u32 = 4;

/// A message that came over a route in `account`, already delivered to local subscribers:
/// the stream imports and service responses of this server take it further, locally (every
/// server wires the same imports, so they are never forwarded again).
pub(crate) fn routed_cross_accounts(
    server: &Server,
    account: &Account,
    subject: &str,
    reply: Option<&[u8]>,
    headers: Option<&[u8]>,
    payload: &[u8],
    wakes: &mut WakeList,
) -> bool {
    let mut delivered = false;
    if account.has_response_routes() {
        if let Some(route) = account.take_response_route(subject) {
            let result = route
                .target
                .sublist
                .match_subject(std::str::from_utf8(&route.reply).unwrap_or_default());
            delivered |= deliver_result(
                server,
                &result,
                None,
                true,
                &route.reply,
                reply,
                headers,
                payload,
                wakes,
            );
        }
    }
    if account.has_stream_forwards() {
        let forwards = account.stream_forwards.match_subject(subject);
        for f in forwards.psubs.iter() {
            let mapped = f.map(subject);
            let result = f.target.sublist.match_subject(&mapped);
            delivered |= deliver_result(
                server,
                &result,
                None,
                true,
                mapped.as_bytes(),
                reply,
                headers,
                payload,
                wakes,
            );
        }
    }
    delivered
}

/// Delivers a message published in `account` to the accounts that import it: stream imports,
/// the exporter of a service this account imports, and responses going back to importers.
fn cross_accounts(
    server: &Server,
    account: &Account,
    sender: Option<&Client>,
    echo: bool,
    msg: &CrossMsg<'_>,
    wakes: &mut WakeList,
    hops: u32,
) -> bool {
    if hops >= MAX_ACCOUNT_HOPS {
        return false;
    }
    let mut delivered = false;
    // A response from a service responder goes back to the requester's account, under the
    // reply subject the requester chose.
    if account.has_response_routes() {
        if let Some(route) = account.take_response_route(msg.subject) {
            let reply = String::from_utf8_lossy(&route.reply).into_owned();
            let back = CrossMsg {
                subject: &reply,
                ..*msg
            };
            delivered |= deliver_in(server, &route.target, sender, echo, &back, wakes, hops + 1);
        }
    }
    if account.has_stream_forwards() {
        let forwards = account.stream_forwards.match_subject(msg.subject);
        for f in forwards.psubs.iter() {
            let mapped = f.map(msg.subject);
            let fwd = CrossMsg {
                subject: &mapped,
                ..*msg
            };
            delivered |= deliver_in(server, &f.target, sender, echo, &fwd, wakes, hops + 1);
        }
    }
    if account.has_service_imports() {
        let imports = account.service_imports.match_subject(msg.subject);
        for si in imports.psubs.iter() {
            let mapped = si.map(msg.subject);
            // The responder answers on a reply subject of the exporter's; it leads back here.
            let reply = msg.reply.and_then(|r| {
                let me = si.importer.upgrade()?;
                Some(si.exporter.add_response_route(Account::response_route(
                    me,
                    r,
                    si.response_type,
                )))
            });
            let req = CrossMsg {
                subject: &mapped,
                reply: reply.as_deref().map(str::as_bytes),
                ..*msg
            };
            // The responder may be on another server: the request travels the routes in the
            // exporter's account (queue groups decided cluster-wide, as for a publish).
            let result = si.exporter.sublist.match_subject(&mapped);
            let (forwarded, filtered) = match server.routes() {
                Some(c) => c.forward(
                    &si.exporter,
                    &mapped,
                    req.reply,
                    req.headers,
                    req.payload,
                    &result,
                ),
                None => (false, None),
            };
            delivered |= forwarded
                | deliver_result(
                    server,
                    filtered.as_ref().unwrap_or(&result),
                    sender,
                    echo,
                    mapped.as_bytes(),
                    req.reply,
                    req.headers,
                    req.payload,
                    wakes,
                );
            delivered |= cross_accounts(server, &si.exporter, sender, echo, &req, wakes, hops + 1);
        }
    }
    delivered
}

/// Delivers in another account, then follows that account's own imports.
fn deliver_in(
    server: &Server,
    account: &Account,
    sender: Option<&Client>,
    echo: bool,
    msg: &CrossMsg<'_>,
    wakes: &mut WakeList,
    hops: u32,
) -> bool {
    let result = account.sublist.match_subject(msg.subject);
    let subject = msg.subject.as_bytes();
    let mut delivered = deliver_result(
        server,
        &result,
        sender,
        echo,
        subject,
        msg.reply,
        msg.headers,
        msg.payload,
        wakes,
    );
    delivered |= cross_accounts(server, account, sender, echo, msg, wakes, hops);
    delivered
}

/// Delivers to every plain subscription and one member of each queue group of a match.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn deliver_result(
    server: &Server,
    result: &MatchResult<Subscription>,
    sender: Option<&Client>,
    echo: bool,
    subject: &[u8],
    reply: Option<&[u8]>,
    headers: Option<&[u8]>,
    payload: &[u8],
    wakes: &mut WakeList,
) -> bool {
    let mut delivered = false;
    let sender_cid = sender.map_or(0, |c| c.cid);
    PUBLISHER.with(|p| p.set(sender_cid));
    for sub in result.psubs.iter() {
        if !echo && sub.client.cid == sender_cid {
            continue;
        }
        delivered |= deliver(server, sub, subject, reply, headers, payload, wakes);
    }
    for group in result.qsubs.iter() {
        if group.is_empty() {
            continue;
        }
        // Random start, then the next member that takes it (skipping closed or exhausted ones).
        let start = fastrand::usize(..group.len());
        for i in 0..group.len() {
            let sub = &group[(start + i) % group.len()];
            if !echo && sub.client.cid == sender_cid {
                continue;
            }
            if deliver(server, sub, subject, reply, headers, payload, wakes) {
                delivered = true;
                break;
            }
        }
    }
    delivered
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

/// The per-connection parse state that only the read loop touches.
struct Reader {
    limits: Limits,
    cache: LocalCache<Subscription>,
    wakes: WakeList,
    meta: ClientMeta,
    max_subs: usize,
    /// `-V`: log every operation received, as nats-server's `<<-` trace lines.
    trace: bool,
    /// The account publishes are routed in.
    account: Arc<Account>,
    /// `None` until CONNECT is accepted when auth is required.
    user: Option<Arc<AuthUser>>,
    perms: Option<Arc<Perms>>,
    /// Recent publish permission answers (nats-server keeps a similar cache).
    pub_allowed: HashMap<Box<[u8]>, bool>,
    nonce: Option<String>,
    /// The server's reload epoch this state was built for.
    epoch: u64,
    /// An INFO for after the first PONG (the limits a JWT set, as nats-server's connect INFO).
    connect_info: Option<Vec<u8>>,
}

/// Applies the server's and the authenticated user's limits (JWT account and user limits are
/// tighter than the server's when set).
fn apply_limits(r: &mut Reader, opts: &crate::options::Options) {
    let jwt = r.user.as_ref().map(|u| u.limits).unwrap_or_default();
    let tighter = |server: i64, jwt: i64| match (server > 0, jwt > 0) {
        (true, true) => server.min(jwt),
        (true, false) => server,
        (false, true) => jwt,
        (false, false) => 0,
    };
    r.limits.max_payload = tighter(opts.max_payload.max(0) as i64, jwt.max_payload) as usize;
    r.max_subs = tighter(opts.max_subscriptions.max(0) as i64, jwt.max_subs) as usize;
}

impl Reader {
    /// Takes reloaded options and the connection's (re-checked) user and permissions.
    fn reload(&mut self, server: &Arc<Server>, client: &Arc<Client>) {
        let opts = server.options();
        self.limits = Limits {
            max_control_line: opts.max_control_line.max(1) as usize,
            max_payload: opts.max_payload.max(0) as usize,
        };
        self.trace = opts.trace;
        if self.user.is_none() {
            return;
        }
        let Some(user) = client.user.read().clone() else {
            return;
        };
        self.perms = user.perms.clone();
        self.user = Some(user);
        self.pub_allowed.clear();
        apply_limits(self, &opts);
    }
}

async fn read_loop(
    server: &Arc<Server>,
    client: &Arc<Client>,
    sock: &TcpStream,
    tls: Option<&Tls>,
    user: Option<Arc<AuthUser>>,
    nonce: Option<String>,
) {
    let epoch = server.reload_epoch.load(Ordering::Acquire);
    let opts = server.options();
    let mut r = Reader {
        limits: Limits {
            max_control_line: opts.max_control_line.max(1) as usize,
            max_payload: opts.max_payload.max(0) as usize,
        },
        cache: LocalCache::new(),
        wakes: WakeList::new(client.cid),
        // Until CONNECT arrives nats-server applies its defaults: verbose, pedantic, echo.
        meta: ClientMeta {
            echo: true,
            verbose: true,
            pedantic: true,
            ..Default::default()
        },
        max_subs: opts.max_subscriptions.max(0) as usize,
        trace: opts.trace,
        account: client.account(),
        perms: user.as_ref().and_then(|u| u.perms.clone()),
        user,
        pub_allowed: HashMap::new(),
        nonce,
        epoch,
        connect_info: None,
    };
    let stall_wait = opts.write_deadline;
    // Clients must authenticate within auth_timeout when auth is required.
    let auth_deadline = r
        .user
        .is_none()
        .then(|| tokio::time::Instant::now() + opts.auth_timeout);
    drop(opts);
    // The read size starts at 512 bytes, doubles while reads fill it (up to 64 KiB) and halves
    // after repeated short reads, as nats-server's read loop does.
    let mut read_size = 512usize;
    let mut short_reads = 0u32;
    let mut buf = BytesMut::with_capacity(read_size);
    loop {
        buf.reserve(read_size);
        let before = buf.len();
        let n = loop {
            let auth_timer = async {
                match auth_deadline {
                    Some(d) if r.user.is_none() => tokio::time::sleep_until(d).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = client.stop.notified() => return,
                _ = auth_timer => {
                    tracing::debug!(
                        "{} - Authentication Timeout",
                        client.tag()
                    );
                    client.send_proto(b"-ERR 'Authentication Timeout'\r\n");
                    client.close(ClosedReason::AuthenticationTimeout);
                    return;
                }
                // Read at most `read_size` so a fast publisher cannot grow one batch without
                // bound.
                res = transport::read(sock, tls, &mut buf, read_size) => match res {
                    Ok(ReadOutcome::Data) => break buf.len() - before,
                    Ok(ReadOutcome::TlsWantsWrite) => {
                        if client.out.try_flush().is_err() {
                            return;
                        }
                        continue;
                    }
                    Ok(ReadOutcome::Eof) | Err(_) => return,
                },
            }
        };
        // One load per read batch: a config reload changed limits or permissions.
        let epoch = server.reload_epoch.load(Ordering::Acquire);
        if epoch != r.epoch {
            r.epoch = epoch;
            r.reload(server, client);
        }
        if n == read_size && read_size < 64 * 1024 {
            read_size *= 2;
            short_reads = 0;
        } else if n < read_size / 2 && read_size > 512 {
            short_reads += 1;
            if short_reads > 2 {
                read_size /= 2;
                short_reads = 0;
            }
        }
        let mut used = 0;
        let res = 'batch: loop {
            let mut connect = None;
            let res = loop {
                match parse(&buf[used..], &r.limits) {
                    Ok(Some((op, n))) => {
                        if r.trace {
                            trace_in(client, &op, &buf[used..used + n]);
                        }
                        used += n;
                        if let ClientOp::Connect(json) = op {
                            connect = parse_connect(client, json);
                            if connect.is_some() {
                                break Ok(());
                            }
                        } else {
                            if r.user.is_none() {
                                // nats-server: nothing but CONNECT before authentication,
                                // unless a no_auth_user lets the session start without one.
                                match server.authenticator().no_auth_user() {
                                    Some(u) => set_user(server, client, &mut r, u),
                                    None => {
                                        auth_violation(client);
                                        break Ok(());
                                    }
                                }
                            }
                            if let Err(e) = process_op(server, client, &mut r, op) {
                                break Err(e);
                            }
                        }
                        if client.is_closing() {
                            break Ok(());
                        }
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            match connect {
                // Authentication may need bcrypt: done here, between parse steps, off the
                // async workers when it is expensive.
                Some(ci) => {
                    r.wakes.flush();
                    finish_connect(server, client, &mut r, ci).await;
                    if client.is_closing() {
                        break 'batch Ok(());
                    }
                }
                None => break 'batch res,
            }
        };
        // Counters first, so a client that has its messages also sees them counted.
        let tally = std::mem::take(&mut r.wakes.tally);
        if !tally.is_empty() {
            // Every delivery so far stays inside the publisher's account.
            server.stats.add(&tally);
            r.account.stats.add(&tally);
            client.stats.add(&Tally {
                out_msgs: 0,
                out_bytes: 0,
                ..tally
            });
        }
        r.wakes.flush();
        if client.out.try_flush().is_err() {
            client.close(ClosedReason::WriteError);
        }
        if r.wakes.has_stalls() {
            r.wakes.wait_stalled(stall_wait).await;
        }
        match res {
            Ok(()) => {}
            Err(e) => {
                tracing::error!(
                    "{} - Client parser ERROR, state=0, i=0: proto='{}'",
                    client.tag(),
                    e
                );
                let text = e.err_text();
                if !text.is_empty() {
                    client.send_proto(text.as_bytes());
                }
                client.close(e.closed_reason());
                return;
            }
        }
        if client.is_closing() {
            return;
        }
        buf.advance(used);
        client.touch();
    }
}

/// Logs one received operation the way nats-server traces it.
fn trace_in(client: &Client, op: &ClientOp<'_>, raw: &[u8]) {
    let line_end = memchr::memchr(b'\n', raw).unwrap_or(raw.len());
    let line = String::from_utf8_lossy(&raw[..line_end]);
    let line = line.trim_end_matches('\r');
    // Secrets never reach the log: CONNECT is traced with them redacted, as nats-server does.
    let redacted;
    let line = if let ClientOp::Connect(json) = op {
        redacted = redact_connect(json);
        redacted.as_str()
    } else {
        line
    };
    let tag = client.tag();
    tracing::trace!("{tag} - \"<<- [{line}]\"");
    if let ClientOp::Pub {
        headers, payload, ..
    } = op
    {
        let mut all = headers.unwrap_or_default().to_vec();
        all.extend_from_slice(payload);
        tracing::trace!(
            "{tag} - \"<<- MSG_PAYLOAD: [{:?}]\"",
            String::from_utf8_lossy(&all)
        );
    }
}

/// `CONNECT {...}` with `pass`, `auth_token` and `sig` replaced by `[REDACTED]`.
fn redact_connect(json: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(json) {
        Ok(mut m) => {
            for key in ["pass", "auth_token", "sig"] {
                // As nats-server: only values actually given are replaced (null stays null).
                if let Some(v @ serde_json::Value::String(_)) = m.get_mut(key) {
                    *v = serde_json::Value::String("[REDACTED]".into());
                }
            }
            format!("CONNECT {}", serde_json::Value::Object(m))
        }
        Err(_) => "CONNECT [unparsable]".into(),
    }
}

/// Why a single operation failed in a way that closes the connection.
type OpResult = Result<(), ParseError>;

fn process_op(
    server: &Arc<Server>,
    client: &Arc<Client>,
    r: &mut Reader,
    op: ClientOp<'_>,
) -> OpResult {
    match op {
        ClientOp::Pub {
            subject,
            reply,
            headers,
            payload,
        } => {
            let size = payload.len() + headers.map_or(0, |h| h.len());
            r.wakes.tally.in_msgs += 1;
            r.wakes.tally.in_bytes += size as u64;
            if headers.is_some() && !r.meta.headers {
                client.queue_proto(b"-ERR 'Headers Not Supported'\r\n");
                client.close(ClosedReason::ProtocolViolation);
                return Ok(());
            }
            if r.meta.pedantic && !subject::is_valid_literal_subject(subject) {
                client.queue_proto(b"-ERR 'Invalid Publish Subject'\r\n");
                if r.meta.verbose {
                    client.queue_proto(b"+OK\r\n");
                }
                return Ok(());
            }
            if let Some(perms) = &r.perms {
                if !publish_allowed(&mut r.pub_allowed, perms, subject)
                    && !client.take_reply_grant(subject)
                {
                    let s = String::from_utf8_lossy(subject);
                    tracing::error!(
                        "{} - Publish Violation - {}, Subject {:?}",
                        client.tag(),
                        user_desc(&r.user),
                        s
                    );
                    client.queue_proto(
                        format!("-ERR 'Permissions Violation for Publish to \"{s}\"'\r\n")
                            .as_bytes(),
                    );
                    return Ok(());
                }
            }
            // nats-server acknowledges before it delivers.
            if r.meta.verbose {
                client.queue_proto(b"+OK\r\n");
            }
            let delivered = route_message(
                server,
                &mut r.cache,
                &r.account,
                Some(client),
                r.meta.echo,
                subject,
                reply,
                headers,
                payload,
                &mut r.wakes,
            );
            if !delivered && r.meta.no_responders {
                if let Some(reply) = reply {
                    no_responders(client, reply, subject);
                }
            }
        }
        ClientOp::Sub {
            subject,
            queue,
            sid,
        } => process_sub(server, client, r, subject, queue, sid),
        ClientOp::Unsub { sid, max } => {
            let sub = client.subs.lock().get(sid).cloned();
            if let Some(sub) = sub {
                match max {
                    Some(max) if max > 0 && sub.delivered.load(Ordering::Relaxed) < max => {
                        sub.max.store(max, Ordering::Relaxed);
                    }
                    _ => server.remove_sub(&sub),
                }
            }
            if r.meta.verbose {
                client.queue_proto(b"+OK\r\n");
            }
        }
        ClientOp::Ping => {
            client.queue_proto(b"PONG\r\n");
            if r.meta.connected && !r.meta.first_pong_sent {
                r.meta.first_pong_sent = true;
                client.meta.lock().first_pong_sent = true;
                if let Some(info) = r.connect_info.take() {
                    client.queue_proto(&info);
                }
            }
        }
        ClientOp::Pong => {
            client.pings_out.store(0, Ordering::Relaxed);
            let rtt = client.rtt_nanos.load(Ordering::Relaxed);
            if rtt < 0 {
                // A PING was sent at -rtt; record the first round trip.
                client
                    .rtt_nanos
                    .store(unix_nanos() + rtt, Ordering::Relaxed);
            }
        }
        ClientOp::Connect(_) => {}
        ClientOp::ClientError => {
            // nats-server drops a client that reports an error to it.
            client.close(ClosedReason::ParseError);
        }
        ClientOp::Ignored => {}
    }
    Ok(())
}

/// Parses CONNECT and applies the checks that need no credentials; `None` when the connection
/// was closed for it.
fn parse_connect(client: &Client, json: &[u8]) -> Option<ConnectInfo> {
    let ci: ConnectInfo = match serde_json::from_slice(json) {
        Ok(ci) => ci,
        Err(e) => {
            // nats-server closes on unparsable CONNECT JSON without an -ERR.
            tracing::error!("{} - {}", client.tag(), e);
            client.close(ClosedReason::ProtocolViolation);
            return None;
        }
    };
    if ci.protocol > 1 || ci.protocol < 0 {
        client.queue_proto(b"-ERR 'invalid client protocol'\r\n");
        client.close(ClosedReason::BadClientProtocolVersion);
        return None;
    }
    if ci.no_responders && !ci.headers {
        client.queue_proto(b"-ERR 'no responders requires headers support'\r\n");
        client.close(ClosedReason::NoRespondersRequiresHeaders);
        return None;
    }
    Some(ci)
}

/// Authenticates a CONNECT (bcrypt off the async workers) and applies it.
async fn finish_connect(
    server: &Arc<Server>,
    client: &Arc<Client>,
    r: &mut Reader,
    ci: ConnectInfo,
) {
    // A user of an account this server has not got yet: the cluster's resolvers may have it.
    if let Some(h) = server.hooks() {
        h.fetch_account(server, ci.jwt.as_deref()).await;
    }
    let auth = server.authenticator();
    let user = if r.user.is_some() && !auth.required() {
        r.user.clone()
    } else {
        let cert_ids = client.cert_identities();
        let nonce = r.nonce.clone();
        let client_ip = Some(client.addr.ip());
        let check = move |ci: &ConnectInfo| {
            auth.authenticate(&Presented {
                connect: Some(ci),
                nonce: nonce.as_deref(),
                cert_identities: &cert_ids,
                client_ip,
            })
        };
        let expensive = server.authenticator().is_expensive(&Presented {
            connect: Some(&ci),
            ..Default::default()
        });
        let result = if expensive {
            let ci2 = ci.clone();
            tokio::task::spawn_blocking(move || check(&ci2))
                .await
                .unwrap_or(Err(crate::auth::AuthError::NoMatch))
        } else {
            check(&ci)
        };
        result.ok()
    };
    let Some(user) = user else {
        auth_violation(client);
        return;
    };
    *client.connect.lock() = Some(ci.clone());
    let meta = ClientMeta {
        name: ci.name.unwrap_or_default(),
        lang: ci.lang.unwrap_or_default(),
        version: ci.version.unwrap_or_default(),
        verbose: ci.verbose,
        pedantic: ci.pedantic,
        echo: ci.echo,
        headers: ci.headers,
        // nats-server only honours no_responders with headers.
        no_responders: ci.no_responders && ci.headers,
        connected: true,
        protocol: ci.protocol,
        first_pong_sent: r.meta.first_pong_sent,
    };
    set_user(server, client, r, user);
    client.headers.store(meta.headers, Ordering::Relaxed);
    *client.meta.lock() = meta.clone();
    r.meta = meta;
    if r.meta.verbose {
        client.queue_proto(b"+OK\r\n");
    }
    let limits = r.user.as_ref().map(|u| u.limits).unwrap_or_default();
    if limits.account_conns > 0
        && r.account.num_connections.load(Ordering::Relaxed) as i64 > limits.account_conns
    {
        tracing::error!(
            "{} - maximum account active connections exceeded",
            client.tag()
        );
        client.queue_proto(b"-ERR 'maximum account active connections exceeded'\r\n");
        client.close(ClosedReason::MaxAccountConnectionsExceeded);
        return;
    }
    // A JWT lowered the payload limit: tell the client, as nats-server's connect INFO does.
    let opts = server.options();
    if (r.limits.max_payload as i64) < opts.max_payload as i64 && r.meta.protocol >= 1 {
        let info = server.info_for(client.cid, &client.addr.ip().to_string(), None);
        let json = info
            .strip_prefix(b"INFO ")
            .and_then(|j| serde_json::from_slice::<serde_json::Value>(j.trim_ascii_end()).ok());
        if let Some(mut v) = json {
            v["max_payload"] = serde_json::json!(r.limits.max_payload);
            v["connect_info"] = serde_json::json!(true);
            v["remote_account"] = serde_json::json!(r.account.name);
            r.connect_info = Some(format!("INFO {v}\r\n").into_bytes());
        }
    }
    if let Some(h) = server.hooks() {
        h.client_event(server, client, None);
    }
}

/// Binds the connection to an authenticated user: its account, permissions and replies.
fn set_user(server: &Arc<Server>, client: &Arc<Client>, r: &mut Reader, user: Arc<AuthUser>) {
    if !Arc::ptr_eq(&user.account, &r.account) {
        server.move_client(client, &r.account, &user.account);
        *client.account.write() = user.account.clone();
        r.account = user.account.clone();
        r.cache.clear();
    }
    client.track_replies.store(
        user.perms.as_ref().is_some_and(|p| p.responses.is_some()),
        Ordering::Relaxed,
    );
    *client.user.write() = Some(user.clone());
    if let Some(exp) = user.expires {
        expire_at(client, exp);
    }
    r.perms = user.perms.clone();
    r.pub_allowed.clear();
    r.user = Some(user);
    apply_limits(r, &server.options());
}

/// Disconnects the client when its credentials expire (`exp`, unix seconds), as nats-server
/// does: `-ERR 'User Authentication Expired'`, then close. Holds only a weak reference, so a
/// connection that closes first is left alone.
fn expire_at(client: &Arc<Client>, exp: i64) {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(exp).unwrap_or(0));
    let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
    let weak = Arc::downgrade(client);
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        let Some(client) = weak.upgrade() else {
            return;
        };
        if client.is_closing() {
            return;
        }
        tracing::debug!("{} - user authentication expired", client.tag());
        client.send_proto(b"-ERR 'User Authentication Expired'\r\n");
        client.close(ClosedReason::AuthenticationExpired);
    });
}

/// The one answer every authentication failure gets, whatever failed.
fn auth_violation(client: &Client) {
    tracing::error!("{} - authentication error", client.tag());
    client.queue_proto(b"-ERR 'Authorization Violation'\r\n");
    client.close(ClosedReason::AuthenticationViolation);
}

/// Checks publish permissions through a small per-connection cache.
fn publish_allowed(cache: &mut HashMap<Box<[u8]>, bool>, perms: &Perms, subject: &[u8]) -> bool {
    if let Some(&ok) = cache.get(subject) {
        return ok;
    }
    let ok = std::str::from_utf8(subject).is_ok_and(|s| perms.can_publish(s));
    if cache.len() >= 128 {
        cache.clear();
    }
    cache.insert(subject.into(), ok);
    ok
}

/// How violations name the user in logs, as nats-server does.
fn user_desc(user: &Option<Arc<AuthUser>>) -> String {
    match user {
        Some(u) if !u.name.is_empty() => format!("User {:?}", u.name),
        _ => "Not Authorized".into(),
    }
}

fn process_sub(
    server: &Arc<Server>,
    client: &Arc<Client>,
    r: &mut Reader,
    subject: &[u8],
    queue: Option<&[u8]>,
    sid: &[u8],
) {
    let valid = std::str::from_utf8(subject).is_ok()
        && subject::is_valid_subject(subject)
        && queue.is_none_or(|q| std::str::from_utf8(q).is_ok() && subject::is_valid_queue_name(q));
    if !valid {
        if queue.is_some() && subject::is_valid_subject(subject) {
            client.queue_proto(b"-ERR 'Invalid Queue Name'\r\n");
        } else {
            client.queue_proto(b"-ERR 'Invalid Subject'\r\n");
        }
        return;
    }
    let subject_str = String::from_utf8_lossy(subject).into_owned();
    let queue_str = queue.map(|q| String::from_utf8_lossy(q).into_owned());
    let mut deny = None;
    if let Some(perms) = &r.perms {
        if !perms.can_subscribe(&subject_str, queue_str.as_deref()) {
            let tag = client.tag();
            let text = match &queue_str {
                Some(q) => format!("Permissions Violation for Subscription to \"{subject_str}\" using queue \"{q}\""),
                None => format!("Permissions Violation for Subscription to \"{subject_str}\""),
            };
            tracing::error!(
                "{tag} - Subscription Violation - {}, Subject {:?}, SID {}",
                user_desc(&r.user),
                subject_str,
                String::from_utf8_lossy(sid)
            );
            client.queue_proto(format!("-ERR '{text}'\r\n").as_bytes());
            return;
        }
        let filter = perms.deny_filter_for(&subject_str);
        if !filter.is_empty() {
            deny = Some(filter.into_boxed_slice());
        }
    }
    {
        let subs = client.subs.lock();
        if subs.contains_key(sid) {
            // nats-server treats a repeated sid as a no-op.
            drop(subs);
            if r.meta.verbose {
                client.queue_proto(b"+OK\r\n");
            }
            return;
        }
        if r.max_subs > 0 && subs.len() >= r.max_subs {
            drop(subs);
            tracing::error!("{} - maximum subscriptions exceeded", client.tag());
            client.queue_proto(b"-ERR 'maximum subscriptions exceeded'\r\n");
            return;
        }
    }
    let sub = Arc::new(Subscription {
        client: client.clone(),
        account: r.account.clone(),
        deny,
        subject: subject_str,
        queue: queue_str,
        sid: sid.into(),
        max: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        internal: None,
    });
    client.subs.lock().insert(sid.into(), sub.clone());
    server.add_sub(&sub);
    if r.meta.verbose {
        client.queue_proto(b"+OK\r\n");
    }
}

/// The 503 status nats-server sends to a requester when nothing is subscribed.
fn no_responders(client: &Client, reply: &[u8], subject: &[u8]) {
    let subs = client.subs.lock();
    let Ok(reply_str) = std::str::from_utf8(reply) else {
        return;
    };
    let sid = subs
        .values()
        .find(|s| s.queue.is_none() && subject::matches(reply_str, &s.subject))
        .map(|s| s.sid.clone());
    drop(subs);
    if let Some(sid) = sid {
        let mut hdr = Vec::with_capacity(40 + subject.len());
        hdr.extend_from_slice(b"NATS/1.0 503\r\nNats-Subject: ");
        hdr.extend_from_slice(subject);
        hdr.extend_from_slice(b"\r\n\r\n");
        let mut b = BytesMut::new();
        encode_msg(&mut b, reply, &sid, None, Some(&hdr), b"");
        client.queue_proto(&b);
    }
}

/// The write loop's settings: ping interval, maximum outstanding pings, write deadline.
fn write_settings(server: &Server) -> (Duration, u32, Duration) {
    let o = server.options();
    let ping_interval = if o.ping_interval.is_zero() {
        Duration::from_secs(120)
    } else {
        o.ping_interval
    };
    (ping_interval, o.ping_max.max(0) as u32, o.write_deadline)
}

async fn write_loop(server: Arc<Server>, client: Arc<Client>) {
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

fn send_ping(server: &Server, client: &Client, ping_max: u32) {
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
