//! The system layer: what runs on top of a working server — the `$SYS` requests and events
//! (`sysreq`), the full account resolver (`resolver`), configuration reload (`reload`) and the
//! config file watcher (`config_watch`).

pub mod config_watch;
pub mod reload;
pub mod resolver;
pub mod sysreq;

use std::sync::Arc;

use crate::protocol::ClosedReason;
use crate::server::client::Client;
use crate::server::links::{Lookup, SystemHooks};
use crate::server::Server;

/// The system layer's hooks into the server: connect and disconnect events on `$SYS`, and
/// the resolver's account lookup before a CONNECT is checked.
pub struct Hooks;

impl SystemHooks for Hooks {
    fn client_event(&self, server: &Server, c: &Client, closed: Option<ClosedReason>) {
        sysreq::client_event(server, c, closed);
    }

    fn fetch_account<'a>(
        &'a self,
        server: &'a Arc<Server>,
        user_jwt: Option<&'a str>,
    ) -> Lookup<'a> {
        Box::pin(resolver::fetch_missing(server, user_jwt))
    }
}
