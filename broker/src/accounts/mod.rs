//! Accounts: isolated subject spaces, each with its own subscription index and counters.

use std::sync::atomic::AtomicU64;

use crate::server::client::{Counters, Subscription};
use crate::sublist::Sublist;

/// One account; `$G` is the global account every client lands in when no auth is configured.
#[derive(Debug)]
pub struct Account {
    pub name: String,
    pub sublist: Sublist<Subscription>,
    pub stats: Counters,
    pub num_connections: AtomicU64,
    pub num_subs: AtomicU64,
}

impl Account {
    /// An empty account.
    pub fn new(name: &str) -> Account {
        Account {
            name: name.to_string(),
            sublist: Sublist::new(),
            stats: Counters::default(),
            num_connections: AtomicU64::new(0),
            num_subs: AtomicU64::new(0),
        }
    }
}
