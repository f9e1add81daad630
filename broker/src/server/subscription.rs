//! Subscriptions (what the sublist stores and deliveries go to), internal handlers, and the
//! message and byte counters connections, accounts and routes keep.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::client::Client;
use crate::accounts::Account;
use crate::protocol::Msg;

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

/// What an internal subscription does with a message. It runs on the publisher's task, so it
/// only hands the message on.
#[derive(Clone)]
pub struct InternalHandler(pub Arc<InternalFn>);

/// The function behind an [`InternalHandler`].
pub type InternalFn = dyn Fn(&Msg<'_>) + Send + Sync;

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
    pub(super) fn add_out(&self, bytes: usize) {
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
