//! A whole broker: builds the core server from its options and hands it what the layers above
//! provide (the cluster's routes, the system layer's hooks), then starts everything in
//! nats-server's order — system services, JetStream, the client port, monitoring, routes,
//! and last the accept loop.

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::jetstream::JetStream;
use crate::options::Options;
use crate::server::{Server, ServerError};
use crate::system::{resolver, sysreq};

/// Builds the server and connects the layers above it; nothing listens yet.
pub fn build(opts: Options) -> Result<Arc<Server>, ServerError> {
    let cluster = opts
        .cluster
        .clone()
        .map(Cluster::new)
        .transpose()
        .map_err(ServerError::ClusterTls)?;
    let server = Server::try_new(opts)?;
    if let Some(c) = cluster {
        server.set_routes(c);
    }
    server.set_hooks(Arc::new(crate::system::Hooks));
    Ok(server)
}

/// Starts the server built by [`build`]; returns once every listener is bound.
pub async fn start(server: &Arc<Server>) -> std::io::Result<()> {
    let opts = server.options();
    sysreq::start(server)?;
    sysreq::spawn_statsz(server, Duration::from_secs(30));
    if let Some(r) = &opts.full_resolver {
        resolver::start(server, r.clone())?;
    }
    if let Some(js_opts) = &opts.jetstream {
        if server.jetstream_service().is_none() {
            let js = JetStream::start(server, js_opts)
                .map_err(|e| std::io::Error::other(format!("Can't start JetStream: {e}")))?;
            server.set_jetstream(js);
        }
    }
    let listener = server.listen().await?;
    crate::monitor::start(server).await?;
    server.announce_listening()?;
    if let Some(c) = Cluster::of(server) {
        c.start(server).await?;
    }
    server.accept(listener);
    Ok(())
}
