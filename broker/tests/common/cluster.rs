//! In-process clusters: servers joined by routes on ephemeral ports, their route URLs, and
//! bounded waits for the routes to form.

use std::net::SocketAddr;
use std::time::Duration;

use natrix_broker::cluster::Cluster;
use natrix_broker::options::{ClusterOptions, Options};

use super::TestServer;

/// How long [`wait_routes`] waits.
const ROUTES_WAIT: Duration = Duration::from_secs(5);

/// Starts a server named `name` in cluster `test` on ephemeral ports, with `routes` as its
/// seeds.
pub async fn node(name: &str, routes: Vec<String>) -> TestServer {
    node_with(name, routes, |_| {}).await
}

/// [`node`] after `f` adjusts the options (the cluster block included).
pub async fn node_with(
    name: &str,
    routes: Vec<String>,
    f: impl FnOnce(&mut Options),
) -> TestServer {
    let name = name.to_string();
    TestServer::start_with(move |o| {
        o.server_name = Some(name);
        o.cluster = Some(ClusterOptions {
            name: Some("test".into()),
            host: "127.0.0.1".into(),
            port: -1,
            routes,
            ..ClusterOptions::default()
        });
        f(o);
    })
    .await
}

/// The address `s` listens on for routes.
pub fn route_addr(s: &TestServer) -> SocketAddr {
    Cluster::of(&s.server)
        .expect("clustered")
        .listen_addr
        .read()
        .expect("listening")
}

/// `nats-route://` URL of `s`'s route port.
pub fn route_url(s: &TestServer) -> String {
    format!("nats-route://{}", route_addr(s))
}

/// How many routes `s` has now.
pub fn num_routes(s: &TestServer) -> usize {
    Cluster::of(&s.server).expect("clustered").num_routes()
}

/// Waits (5 s at most) until every server has `n` routes.
pub async fn wait_routes(servers: &[&TestServer], n: usize) {
    wait_routes_within(servers, n, ROUTES_WAIT).await;
}

/// [`wait_routes`] bounded by `within`.
pub async fn wait_routes_within(servers: &[&TestServer], n: usize, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if servers.iter().all(|s| num_routes(s) == n) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let got: Vec<usize> = servers.iter().map(|s| num_routes(s)).collect();
    panic!("routes never reached {n}: {got:?}");
}
