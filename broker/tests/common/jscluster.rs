//! A JetStream cluster of real processes on 127.0.0.1 (natrix-broker or the reference
//! nats-server): every server has a name, a store directory and routes to all (itself
//! included, as a Kubernetes StatefulSet's config lists them), on ports picked up front so a
//! restarted server comes back where its clients and peers expect it.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::proc::{kill, Proc};
use super::tempdir::TempDir;

/// One server of the cluster.
pub struct JsNode {
    pub name: String,
    pub conf: PathBuf,
    pub client: SocketAddr,
    pub http: SocketAddr,
    pub proc: Option<Proc>,
}

/// The cluster; every process is killed when it drops.
pub struct JsCluster {
    pub nodes: Vec<JsNode>,
    pub reference: bool,
    pub dir: TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

impl JsCluster {
    /// Starts `n` servers (`n1`, `n2`, …) in cluster `jsc` and waits until each is ready.
    pub fn start(reference: bool, n: usize) -> JsCluster {
        JsCluster::start_with(reference, n, "")
    }

    /// [`JsCluster::start`] with `extra` appended to every server's configuration.
    pub fn start_with(reference: bool, n: usize, extra: &str) -> JsCluster {
        let mut c = JsCluster::configure(reference, n, extra);
        for i in 0..n {
            c.spawn(i);
        }
        for n in &c.nodes {
            n.proc.as_ref().unwrap().ready();
        }
        c
    }

    /// The cluster's configuration and store directories, no server started yet.
    pub fn configure(reference: bool, n: usize, extra: &str) -> JsCluster {
        let dir = TempDir::new(if reference { "jsc-ref" } else { "jsc" });
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let route_list: Vec<String> = routes
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect();
        let mut nodes = Vec::new();
        for (i, rport) in routes.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let client: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let store = dir.path().join(&name);
            let conf = dir.path().join(format!("{name}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "server_name: {name}\nlisten: \"{client}\"\nhttp: \"{http}\"\n\
                     jetstream {{ store_dir: \"{}\" }}\n\
                     cluster {{ name: jsc, listen: \"127.0.0.1:{rport}\", routes: [{}] }}\n{extra}\n",
                    store.display(),
                    route_list.join(", ")
                ),
            )
            .unwrap();
            nodes.push(JsNode {
                name,
                conf,
                client,
                http,
                proc: None,
            });
        }
        JsCluster {
            nodes,
            reference,
            dir,
        }
    }

    fn spawn(&mut self, i: usize) {
        let conf = self.nodes[i].conf.display().to_string();
        let args = ["-c", conf.as_str()];
        let p = if self.reference {
            Proc::reference(&args)
        } else {
            Proc::natrix(&args)
        };
        self.nodes[i].proc = Some(p);
    }

    /// The client URL of server `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://{}", self.nodes[i].client)
    }

    /// Every server's client URL, comma-separated (for a client that fails over).
    pub fn urls(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index of the server called `name`.
    pub fn index_of(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or_else(|| panic!("no server {name}"))
    }

    /// `kill -9` server `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(p) = self.nodes[i].proc.take() {
            kill("KILL", p.pid());
            drop(p);
        }
    }

    /// Stops server `i` as Kubernetes does (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].proc.take() {
            p.stop();
        }
    }

    /// Starts server `i` (stopped or killed) with its configuration and store; waits until
    /// it is ready.
    pub fn start_node(&mut self, i: usize) {
        self.spawn(i);
        self.nodes[i].proc.as_ref().unwrap().ready();
    }

    /// Starts server `i` again with its configuration and store; waits until it is ready.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.nodes[i].proc.as_ref().unwrap().ready();
    }

    /// Server `i`'s log so far.
    pub fn lines(&self, i: usize) -> Vec<String> {
        self.nodes[i]
            .proc
            .as_ref()
            .map(|p| p.lines())
            .unwrap_or_default()
    }
}

/// A JetStream API request that retries (up to `within`) while nobody answers (no meta or
/// stream leader yet) or the answer is "temporarily unavailable".
pub async fn api_retry(
    nc: &async_nats::Client,
    subject: &str,
    body: Value,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    let payload = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).unwrap()
    };
    loop {
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            nc.request(subject.to_string(), payload.clone().into()),
        )
        .await;
        if let Ok(Ok(m)) = r {
            if !m.payload.is_empty() {
                let v: Value = serde_json::from_slice(&m.payload).unwrap_or(json!({}));
                if v["error"]["err_code"] != json!(10008) {
                    return v;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no answer to {subject} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
