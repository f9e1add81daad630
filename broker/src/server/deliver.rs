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
use crate::protocol::ClosedReason;
use crate::protocol::{encode_msg, Msg};
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
    msg: &Msg<'_>,
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
        if deny.iter().any(|d| subject::matches(msg.subject, d)) {
            return false;
        }
    }
    if let Some(h) = &sub.internal {
        DECLINED.with(|d| d.set(false));
        (h.0)(msg);
        return !DECLINED.with(|d| d.replace(false));
    }
    let Msg {
        subject,
        reply,
        headers,
        payload,
    } = *msg;
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
        encode_msg(buf, subject.as_bytes(), &sub.sid, reply, hdr, payload)
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

/// Who published a message, and whether they see it themselves (`echo`).
#[derive(Clone, Copy)]
pub struct Origin<'a> {
    /// The publishing connection; `None` for the server's own messages.
    pub client: Option<&'a Client>,
    /// Whether the publisher's own subscriptions get the message.
    pub echo: bool,
}

impl Origin<'_> {
    /// The server itself, which sees its own messages.
    pub const SERVER: Origin<'static> = Origin {
        client: None,
        echo: true,
    };
}

/// Routes one published message through `account` to every matching subscription.
pub fn route_message(
    server: &Server,
    cache: &mut LocalCache<Subscription>,
    account: &Account,
    from: Origin<'_>,
    msg: &Msg<'_>,
    wakes: &mut WakeList,
) -> bool {
    let mut delivered = deliver_in_account(server, cache, account, from, msg.subject, msg, wakes);
    if account.has_stream_forwards()
        || account.has_service_imports()
        || account.has_response_routes()
    {
        delivered |= cross_accounts(server, account, from, msg, wakes, 0);
    }
    delivered
}

/// Matches a message in `account` by `route_by`, forwards it to the routes with interest and
/// delivers it to the local subscriptions, who see `msg` (the same subject, except for
/// JetStream deliveries).
#[inline]
pub(super) fn deliver_in_account(
    server: &Server,
    cache: &mut LocalCache<Subscription>,
    account: &Account,
    from: Origin<'_>,
    route_by: &str,
    msg: &Msg<'_>,
    wakes: &mut WakeList,
) -> bool {
    let result = cache.get_ref(route_by, &account.sublist);
    let (forwarded, filtered) = match server.routes() {
        Some(c) => c.forward(account, route_by, msg, result),
        None => (false, None),
    };
    let result = filtered.as_ref().unwrap_or(result);
    forwarded | deliver_result(server, result, from, msg, wakes)
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
    msg: &Msg<'_>,
    wakes: &mut WakeList,
) -> bool {
    let mut delivered = false;
    if account.has_response_routes() {
        if let Some(route) = account.take_response_route(msg.subject) {
            let reply = std::str::from_utf8(&route.reply).unwrap_or_default();
            let result = route.target.sublist.match_subject(reply);
            let back = Msg {
                subject: reply,
                ..*msg
            };
            delivered |= deliver_result(server, &result, Origin::SERVER, &back, wakes);
        }
    }
    delivered |= deliver_forwards(server, account, msg.subject, msg, false, wakes);
    delivered
}

/// Delivers to the accounts that import `route_by` as a stream (one hop, as nats-server's
/// delivery does), under the mapped subject or, with `keep_subject`, under `msg`'s own.
pub(super) fn deliver_forwards(
    server: &Server,
    account: &Account,
    route_by: &str,
    msg: &Msg<'_>,
    keep_subject: bool,
    wakes: &mut WakeList,
) -> bool {
    if !account.has_stream_forwards() {
        return false;
    }
    let mut delivered = false;
    let forwards = account.stream_forwards.match_subject(route_by);
    for f in forwards.psubs.iter() {
        let mapped = f.map(route_by);
        let result = f.target.sublist.match_subject(&mapped);
        let shown = Msg {
            subject: if keep_subject { msg.subject } else { &mapped },
            ..*msg
        };
        delivered |= deliver_result(server, &result, Origin::SERVER, &shown, wakes);
    }
    delivered
}

/// Delivers a message published in `account` to the accounts that import it: stream imports,
/// the exporter of a service this account imports, and responses going back to importers.
pub(super) fn cross_accounts(
    server: &Server,
    account: &Account,
    from: Origin<'_>,
    msg: &Msg<'_>,
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
            let back = Msg {
                subject: &reply,
                ..*msg
            };
            delivered |= deliver_in(server, &route.target, from, &back, wakes, hops + 1);
        }
    }
    if account.has_stream_forwards() {
        let forwards = account.stream_forwards.match_subject(msg.subject);
        for f in forwards.psubs.iter() {
            let mapped = f.map(msg.subject);
            let fwd = Msg {
                subject: &mapped,
                ..*msg
            };
            delivered |= deliver_in(server, &f.target, from, &fwd, wakes, hops + 1);
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
            let req = Msg {
                subject: &mapped,
                reply: reply.as_deref().map(str::as_bytes),
                ..*msg
            };
            // The responder may be on another server: the request travels the routes in the
            // exporter's account (queue groups decided cluster-wide, as for a publish).
            let result = si.exporter.sublist.match_subject(&mapped);
            let (forwarded, filtered) = match server.routes() {
                Some(c) => c.forward(&si.exporter, req.subject, &req, &result),
                None => (false, None),
            };
            delivered |= forwarded
                | deliver_result(
                    server,
                    filtered.as_ref().unwrap_or(&result),
                    from,
                    &req,
                    wakes,
                );
            delivered |= cross_accounts(server, &si.exporter, from, &req, wakes, hops + 1);
        }
    }
    delivered
}

/// Delivers in another account, then follows that account's own imports.
pub(super) fn deliver_in(
    server: &Server,
    account: &Account,
    from: Origin<'_>,
    msg: &Msg<'_>,
    wakes: &mut WakeList,
    hops: u32,
) -> bool {
    let result = account.sublist.match_subject(msg.subject);
    let mut delivered = deliver_result(server, &result, from, msg, wakes);
    delivered |= cross_accounts(server, account, from, msg, wakes, hops);
    delivered
}

/// Delivers to every plain subscription and one member of each queue group of a match.
#[inline]
pub(crate) fn deliver_result(
    server: &Server,
    result: &MatchResult<Subscription>,
    from: Origin<'_>,
    msg: &Msg<'_>,
    wakes: &mut WakeList,
) -> bool {
    let mut delivered = false;
    let echo = from.echo;
    let sender_cid = from.client.map_or(0, |c| c.cid);
    PUBLISHER.with(|p| p.set(sender_cid));
    for sub in result.psubs.iter() {
        if !echo && sub.client.cid == sender_cid {
            continue;
        }
        delivered |= deliver(server, sub, msg, wakes);
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
            if deliver(server, sub, msg, wakes) {
                delivered = true;
                break;
            }
        }
    }
    delivered
}
