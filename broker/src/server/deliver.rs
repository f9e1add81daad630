//! Delivery: a published message matched in its account, carried across service and stream
//! imports, encoded into each subscriber's outbound buffer, and the connections woken once per
//! read batch.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::client::Client;
use super::internal::{DECLINED, PUBLISHER};
use super::subscription::{Subscription, Tally};
use super::Server;
use crate::accounts::Account;
use crate::protocol::encode_msg;
use crate::protocol::ClosedReason;
use crate::subject;
use crate::sublist::{LocalCache, MatchResult};

/// Connections woken during one read batch, each once at the end (write coalescing).
pub struct WakeList {
    pub(super) mark: u64,
    /// The producing connection's id (0 for internal producers).
    pub(super) owner: u64,
    /// Server-wide counts for this batch (deliveries are counted here, publishes by the reader).
    pub tally: Tally,
    pub(super) clients: Vec<Arc<Client>>,
    /// Connections past 75% of `max_pending`: the producer waits for them to drain.
    pub(super) stalled: Vec<Arc<Client>>,
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
pub(super) fn deliver(
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
pub(super) struct LocalMsg<'a> {
    pub(super) subject: &'a str,
    pub(super) wire_subject: &'a [u8],
    pub(super) reply: Option<&'a [u8]>,
    pub(super) headers: Option<&'a [u8]>,
    pub(super) payload: &'a [u8],
}

/// Matches a message in `account`, forwards it to the routes with interest and delivers it to
/// the local subscriptions.
#[inline]
pub(super) fn deliver_in_account(
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
pub(super) struct CrossMsg<'a> {
    subject: &'a str,
    reply: Option<&'a [u8]>,
    headers: Option<&'a [u8]>,
    payload: &'a [u8],
}

/// How many account hops a message may take (imports of imports), so a cycle of imports
/// cannot loop forever.
pub(super) const MAX_ACCOUNT_HOPS: u32 = 4;

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
    delivered |= deliver_forwards(
        server, account, subject, None, reply, headers, payload, wakes,
    );
    delivered
}

/// Delivers to the accounts that import `subject` as a stream (one hop, as nats-server's
/// delivery does), under the mapped subject or, with `wire`, under that one.
#[allow(clippy::too_many_arguments)]
pub(super) fn deliver_forwards(
    server: &Server,
    account: &Account,
    subject: &str,
    wire: Option<&[u8]>,
    reply: Option<&[u8]>,
    headers: Option<&[u8]>,
    payload: &[u8],
    wakes: &mut WakeList,
) -> bool {
    if !account.has_stream_forwards() {
        return false;
    }
    let mut delivered = false;
    let forwards = account.stream_forwards.match_subject(subject);
    for f in forwards.psubs.iter() {
        let mapped = f.map(subject);
        let result = f.target.sublist.match_subject(&mapped);
        delivered |= deliver_result(
            server,
            &result,
            None,
            true,
            wire.unwrap_or(mapped.as_bytes()),
            reply,
            headers,
            payload,
            wakes,
        );
    }
    delivered
}

/// Delivers a message published in `account` to the accounts that import it: stream imports,
/// the exporter of a service this account imports, and responses going back to importers.
pub(super) fn cross_accounts(
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
pub(super) fn deliver_in(
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
