//! The read side of a connection: the read loop (parse → route), each protocol operation,
//! subscriptions and the permission checks on publish and subscribe.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Buf, BytesMut};

use tokio::net::TcpStream;

use super::client::{Client, ClientMeta};
use super::connect::{
    auth_violation, finish_connect, parse_connect, redact_connect, set_user, user_desc,
};
use super::deliver::{route_message, Origin, WakeList};
use super::subscription::{Subscription, Tally};
use super::transport::{self, ReadOutcome, Tls};
use super::Server;
use crate::accounts::Account;
use crate::auth::{AuthUser, Perms};
use crate::clock::unix_nanos;
use crate::protocol::client_wire::{parse, ClientOp, Limits, ParseError};
use crate::protocol::ClosedReason;
use crate::protocol::{encode_msg, Msg};
use crate::subject;
use crate::sublist::LocalCache;

/// The per-connection parse state that only the read loop touches.
pub(super) struct Reader {
    pub(super) limits: Limits,
    pub(super) cache: LocalCache<Subscription>,
    pub(super) wakes: WakeList,
    pub(super) meta: ClientMeta,
    pub(super) max_subs: usize,
    /// `-V`: log every operation received, as nats-server's `<<-` trace lines.
    pub(super) trace: bool,
    /// The account publishes are routed in.
    pub(super) account: Arc<Account>,
    /// `None` until CONNECT is accepted when auth is required.
    pub(super) user: Option<Arc<AuthUser>>,
    pub(super) perms: Option<Arc<Perms>>,
    /// Recent publish permission answers (nats-server keeps a similar cache).
    pub(super) pub_allowed: HashMap<Box<[u8]>, bool>,
    pub(super) nonce: Option<String>,
    /// The server's reload epoch this state was built for.
    pub(super) epoch: u64,
    /// An INFO for after the first PONG (the limits a JWT set, as nats-server's connect INFO).
    pub(super) connect_info: Option<Vec<u8>>,
}

/// Applies the server's and the authenticated user's limits (JWT account and user limits are
/// tighter than the server's when set).
pub(super) fn apply_limits(r: &mut Reader, opts: &crate::options::Options) {
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

pub(super) async fn read_loop(
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
pub(super) fn trace_in(client: &Client, op: &ClientOp<'_>, raw: &[u8]) {
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

/// Why a single operation failed in a way that closes the connection.
pub(super) type OpResult = Result<(), ParseError>;

pub(super) fn process_op(
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
            // A subject that is not UTF-8 matches no subscription.
            let delivered = std::str::from_utf8(subject).is_ok_and(|subject| {
                let msg = Msg {
                    subject,
                    reply,
                    headers,
                    payload,
                };
                let from = Origin {
                    client: Some(client),
                    echo: r.meta.echo,
                };
                route_message(server, &mut r.cache, &r.account, from, &msg, &mut r.wakes)
            });
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

/// Checks publish permissions through a small per-connection cache.
pub(super) fn publish_allowed(
    cache: &mut HashMap<Box<[u8]>, bool>,
    perms: &Perms,
    subject: &[u8],
) -> bool {
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

pub(super) fn process_sub(
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
pub(super) fn no_responders(client: &Client, reply: &[u8], subject: &[u8]) {
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
