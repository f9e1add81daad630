//! Internal clients: how the server's own services (JetStream, `$SYS`, the resolver) publish,
//! batched per thread, and the publisher a delivery is made for.

use std::sync::atomic::{AtomicU64, Ordering};

use super::deliver::{deliver_forwards, deliver_in_account, route_message, Origin, WakeList};
use super::subscription::Subscription;
use super::Server;
use crate::accounts::Account;
use crate::protocol::Msg;
use crate::sublist::LocalCache;

/// Publishes from inside the server (JetStream acks, API responses, consumer deliveries):
/// routes like a client publish and batches the flushes until [`InternalSender::flush`].
pub struct InternalSender {
    cache: LocalCache<Subscription>,
    wakes: WakeList,
    /// Sends nothing while set (a replica applying what its leader already answered).
    muted: bool,
}

/// Ids for internal producers' wake lists, in a range of their own (below the route owners'
/// `1 << 31` and far above client ids), so two internal producers never share batch marks.
pub(super) static INTERNAL_OWNER: std::sync::atomic::AtomicU64 = AtomicU64::new(3 << 29);

impl Default for InternalSender {
    fn default() -> Self {
        let owner = INTERNAL_OWNER.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
        InternalSender {
            cache: LocalCache::new(),
            wakes: WakeList::new(owner),
            muted: false,
        }
    }
}

impl InternalSender {
    /// While `on`, messages go nowhere (and count as taken by nobody).
    pub fn set_muted(&mut self, on: bool) {
        self.muted = on;
    }

    /// Routes one message in `account`; returns whether anyone took it.
    pub fn send(&mut self, server: &Server, account: &Account, msg: Msg<'_>) -> bool {
        if self.muted {
            return false;
        }
        route_message(
            server,
            &mut self.cache,
            account,
            Origin::SERVER,
            &msg,
            &mut self.wakes,
        )
    }

    /// Routes a message by `route_by` but shows subscribers `msg`'s subject (JetStream
    /// deliveries keep the stored subject while they go to a deliver or reply subject).
    pub fn send_as(
        &mut self,
        server: &Server,
        account: &Account,
        route_by: &str,
        msg: Msg<'_>,
    ) -> bool {
        if self.muted {
            return false;
        }
        let mut delivered = deliver_in_account(
            server,
            &mut self.cache,
            account,
            Origin::SERVER,
            route_by,
            &msg,
            &mut self.wakes,
        );
        // A deliver subject exported to another account (a cross-account mirror or
        // source, or a consumer shared by export): the importer's subscribers get it, still
        // showing the stored subject. One hop, as nats-server's delivery does.
        delivered |= deliver_forwards(server, account, route_by, &msg, true, &mut self.wakes);
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
    pub(super) static PUBLISHER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Set by an internal handler that does not answer the message it was handed.
    pub(super) static DECLINED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
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
