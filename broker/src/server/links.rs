//! What the layers above hand the server when the node is built: the cluster's routes (where a
//! local message or interest also goes), the system layer's hooks (events, account lookups)
//! and the services it only keeps and stops (JetStream). The server calls them without knowing
//! those layers; `as_any` lets a layer above find its own type again (`Cluster::of`,
//! `JetStream::of`).

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::client::Client;
use super::subscription::Subscription;
use super::Server;
use crate::accounts::Account;
use crate::protocol::ClosedReason;
use crate::protocol::Msg;
use crate::sublist::MatchResult;

/// What connections need from the cluster.
pub trait Routes: Send + Sync {
    /// Forwards a locally published message to the routes with interest in `route_by`;
    /// returns whether anything was forwarded, and the local match without the queue groups
    /// handed to a route (when there are any). When `route_by` is not the message's subject
    /// (a JetStream delivery), the remote is told both, as nats-server tells it.
    fn forward(
        &self,
        account: &Account,
        route_by: &str,
        msg: &Msg<'_>,
        local: &MatchResult<Subscription>,
    ) -> (bool, Option<MatchResult<Subscription>>);
    /// A local subscription was added.
    fn sub_added(&self, sub: &Subscription);
    /// A local subscription went away.
    fn sub_removed(&self, sub: &Subscription);
    /// `(account, subject)` interest this server's imports need from the other servers.
    fn set_import_interest(&self, keys: Vec<(String, String)>);
    /// This server entered lame duck mode.
    fn announce_lame_duck(&self, server: &Server);
    /// The implementation, for the layers above that know its type.
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// An account lookup running before a CONNECT is checked.
pub type Lookup<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What the system layer does at moments only the server sees.
pub trait SystemHooks: Send + Sync {
    /// A client finished connecting (`closed` is `None`) or closed.
    fn client_event(&self, server: &Server, c: &Client, closed: Option<ClosedReason>);
    /// Before a CONNECT is checked: fetches the account its user JWT names when this server
    /// does not hold it.
    fn fetch_account<'a>(
        &'a self,
        server: &'a Arc<Server>,
        user_jwt: Option<&'a str>,
    ) -> Lookup<'a>;
}

/// A service the server keeps and stops with itself (JetStream).
pub trait Service: Send + Sync {
    /// The server is shutting down.
    fn shutdown(&self);
    /// The server entered lame duck mode: hand over what it leads (may block a few seconds).
    fn lame_duck(&self) {}
    /// The implementation, for the layers above that know its type.
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}
