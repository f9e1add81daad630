//! Lame duck mode, as nats-server's `lameDuckMode`: close the client listener, tell registered
//! clients with an INFO carrying `"ldm":true`, wait `lame_duck_grace_period`, then close the
//! clients spread over `lame_duck_duration` minus the grace period, and shut the server down.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Server;
use crate::protocol::ClosedReason;

/// Not in lame duck mode.
const RUNNING: u8 = 0;
/// Lame duck mode requested; the accept loop must drop its listener.
const ENTERED: u8 = 1;
/// The client listener is closed.
const LISTENER_CLOSED: u8 = 2;

/// How long to wait for the accept loop to drop the listener before going on anyway.
const ACCEPT_STOP_WAIT: Duration = Duration::from_secs(2);

/// A server's lame duck state, shared by the accept loop and [`Server::lame_duck_mode`].
#[derive(Debug)]
pub(crate) struct LameDuck {
    state: watch::Sender<u8>,
}

impl Default for LameDuck {
    fn default() -> Self {
        LameDuck {
            state: watch::channel(RUNNING).0,
        }
    }
}

impl LameDuck {
    /// Resolves once lame duck mode has started (the accept loop then stops).
    pub(crate) async fn entered(&self) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|s| *s >= ENTERED).await;
    }

    /// Called by the accept loop when it leaves because of lame duck mode: closes the listener.
    pub(crate) fn close_listener(&self, listener: TcpListener) {
        drop(listener);
        self.state.send_replace(LISTENER_CLOSED);
    }

    /// Moves to lame duck mode; false if it already was.
    fn enter(&self) -> bool {
        self.state.send_if_modified(|s| {
            if *s == RUNNING {
                *s = ENTERED;
                true
            } else {
                false
            }
        })
    }

    /// Waits (bounded) until the accept loop has closed the listener.
    async fn listener_closed(&self) {
        let mut rx = self.state.subscribe();
        let _ =
            tokio::time::timeout(ACCEPT_STOP_WAIT, rx.wait_for(|s| *s == LISTENER_CLOSED)).await;
    }
}

/// The pause after each closed client and how many clients to close per pause, as
/// nats-server computes them: `(duration - grace) / clients`, at most 1 s, at least 1 ns (then
/// closing in batches).
fn close_schedule(duration: Duration, grace: Duration, clients: usize) -> (Duration, usize) {
    let mut dur = duration.saturating_sub(grace).as_nanos();
    if dur == 0 {
        dur = Duration::from_secs(1).as_nanos();
    }
    let n = clients.max(1) as u128;
    let si = dur / n;
    if si < 1 {
        (Duration::from_nanos(1), (n / dur).max(1) as usize)
    } else {
        (Duration::from_nanos(si.min(1_000_000_000) as u64), 1)
    }
}

impl Server {
    /// Whether [`Server::shutdown`] has been called.
    pub fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Whether lame duck mode has started.
    pub fn is_lame_duck(&self) -> bool {
        *self.ldm.state.borrow() != RUNNING
    }

    /// Runs lame duck mode to its end (the server shut down); returns at once when the server
    /// is already in lame duck mode, shutting down, or not listening.
    pub async fn lame_duck_mode(self: &Arc<Self>) {
        if self.is_shut_down() || self.client_addr.read().is_none() || !self.ldm.enter() {
            return;
        }
        tracing::info!("Entering lame duck mode, stop accepting new clients");
        if let Some(c) = self.routes() {
            c.announce_lame_duck(self);
        }
        // Clustered JetStream first hands every leadership this server holds to a peer.
        if let Some(js) = self.jetstream_service().cloned() {
            let _ = tokio::task::spawn_blocking(move || js.lame_duck()).await;
        }
        // No client can connect once the accept loop has dropped the listener.
        self.ldm.listener_closed().await;
        if self.is_shut_down() {
            return;
        }
        let clients = self.clients();
        if clients.is_empty() {
            self.finish_lame_duck(&[]).await;
            return;
        }
        let opts = self.options();
        let grace = opts.lame_duck_grace_period;
        let (pause, batch) = close_schedule(opts.lame_duck_duration, grace, clients.len());
        drop(opts);
        self.send_ldm_info(&clients);

        // The grace period lets several servers enter lame duck mode before their clients
        // reconnect to each other.
        tokio::select! {
            _ = tokio::time::sleep(grace) => tracing::info!("Closing existing clients"),
            _ = self.wait_shutdown() => return,
        }
        for (i, c) in clients.iter().enumerate() {
            c.close(ClosedReason::ServerShutdown);
            if i == clients.len() - 1 {
                break;
            }
            if batch == 1 || i % batch == 0 {
                // A random pause between half the interval and the interval, as nats-server.
                let si = pause.as_nanos() as u64;
                let v = fastrand::u64(0..si.max(1)).max(si / 2);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_nanos(v)) => {}
                    _ = self.wait_shutdown() => return,
                }
            }
        }
        let cids: Vec<u64> = clients.iter().map(|c| c.cid).collect();
        self.finish_lame_duck(&cids).await;
    }

    /// `INFO {... "ldm":true}` to every client that takes asynchronous INFOs: CONNECT with
    /// `protocol` >= 1 and its first PONG sent, as nats-server's `sendAsyncInfoToClients`.
    fn send_ldm_info(&self, clients: &[Arc<super::Client>]) {
        let info = self.info.read().clone();
        for c in clients {
            let meta = c.meta.lock();
            let eligible = meta.protocol >= 1 && meta.first_pong_sent;
            drop(meta);
            if eligible && !c.is_closing() {
                c.send_proto(&info.encode_for(c.cid, &c.addr.ip().to_string(), true, None));
            }
        }
    }

    /// Waits (at most 2 s) until the evicted connections are filed, so their `Client connection
    /// closed` lines come first as with nats-server, then shuts the server down.
    async fn finish_lame_duck(&self, cids: &[u64]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while tokio::time::Instant::now() < deadline
            && cids.iter().any(|cid| self.clients.lock().contains_key(cid))
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if self.is_shut_down() {
            return;
        }
        tracing::info!("Initiating Shutdown...");
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_as_nats_server() {
        let s = Duration::from_secs;
        // Few clients over a long duration: at most a second between closes.
        assert_eq!(close_schedule(s(120), s(10), 10), (s(1), 1));
        // Many clients: the interval shrinks.
        assert_eq!(
            close_schedule(s(30), s(10), 100),
            (Duration::from_millis(200), 1)
        );
        // Grace period not below the duration: one second.
        assert_eq!(
            close_schedule(s(1), s(2), 4),
            (Duration::from_millis(250), 1)
        );
        // More clients than nanoseconds: batches.
        assert_eq!(
            close_schedule(Duration::from_nanos(10), Duration::ZERO, 100),
            (Duration::from_nanos(1), 10)
        );
    }
}
