//! Steady state against a real Kubernetes API server (same skip rules and environment as
//! operator.rs): the examples (NatsCluster in operator mode, Account, Stream) applied, a
//! natrix-broker booted from the rendered config, every resource Ready; then the operator,
//! resyncing every few seconds, must make no write request (POST, PUT, PATCH, DELETE: Events
//! included) to the API server for a minute. Its client counts them with a tower layer. After
//! the quiet minute, out-of-band edits of its children are still put back (drift correction).
//!
//! Skipped (passes with a message) unless NATRIX_K8S_E2E=1; needs `cargo build -p natrix-broker`
//! (or NATRIX_BROKER_BIN).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use common::{cond, eventually, example, example_value, free_port, install_crds};
use common::{operator_config, operator_secret_and_conf, run_e2e, show, Broker, Operator, Setup};
use futures::FutureExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::client::{Body, ClientBuilder};
use kube::Client;
use natrix_controller::context::Settings;
use natrix_controller::crd::{Account, NatsCluster, Stream};
use natrix_controller::metrics::Metrics;

/// How long the operator must stay quiet.
const QUIET: Duration = Duration::from_secs(60);

/// One write request of the operator's client.
#[derive(Clone, Debug)]
struct Write {
    at: Instant,
    method: String,
    /// Path and query (a PATCH's fieldManager is in the query).
    uri: String,
    content_type: String,
    /// The start of the request body.
    body: String,
}

impl std::fmt::Display for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} [{}] {}",
            self.method, self.uri, self.content_type, self.body
        )
    }
}

/// Every write request (POST, PUT, PATCH, DELETE) made through a client built with this
/// layer, in order.
#[derive(Clone, Default)]
struct Writes(Arc<Mutex<Vec<Write>>>);

impl Writes {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn since(&self, i: usize) -> Vec<Write> {
        self.0.lock().unwrap()[i..].to_vec()
    }

    fn last_at(&self) -> Option<Instant> {
        self.0.lock().unwrap().last().map(|w| w.at)
    }
}

/// Writes grouped by method and path: how many, and the first one in full.
fn summary(writes: &[Write]) -> String {
    let mut groups: Vec<(String, usize, &Write)> = Vec::new();
    for w in writes {
        let key = format!("{} {}", w.method, w.uri);
        match groups.iter_mut().find(|(k, _, _)| *k == key) {
            Some(g) => g.1 += 1,
            None => groups.push((key, 1, w)),
        }
    }
    groups
        .iter()
        .map(|(_, n, w)| format!("  {n}x {w}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl<S> tower::Layer<S> for Writes {
    type Service = CountWrites<S>;

    fn layer(&self, inner: S) -> CountWrites<S> {
        CountWrites {
            inner,
            log: self.clone(),
        }
    }
}

/// The service of [`Writes`]: records, then passes the request on.
#[derive(Clone)]
struct CountWrites<S> {
    inner: S,
    log: Writes,
}

impl<S> tower::Service<http::Request<Body>> for CountWrites<S>
where
    S: tower::Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> S::Future {
        let m = req.method();
        if !(m == http::Method::GET || m == http::Method::HEAD || m == http::Method::OPTIONS) {
            // kube's request bodies are in memory: a clone is read at once.
            let body = req
                .body()
                .try_clone()
                .and_then(|b| b.collect_bytes().now_or_never())
                .and_then(Result::ok)
                .map(|b| String::from_utf8_lossy(&b).chars().take(400).collect())
                .unwrap_or_default();
            let content_type = req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            self.log.0.lock().unwrap().push(Write {
                at: Instant::now(),
                method: m.to_string(),
                uri: req
                    .uri()
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                content_type,
                body,
            });
        }
        self.inner.call(req)
    }
}

async fn ready<K>(api: &Api<K>, name: &str) -> Result<(), String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let o = api.get(name).await.map_err(|e| e.to_string())?;
    let v = serde_json::to_value(&o).map_err(|e| e.to_string())?;
    let conds: Vec<Condition> =
        serde_json::from_value(v["status"]["conditions"].clone()).unwrap_or_default();
    let fresh = v["status"]["observedGeneration"] == v["metadata"]["generation"];
    match cond(&conds, "Ready") {
        Some(c) if c.status == "True" && fresh => Ok(()),
        _ => Err(format!("{name}: {}", show(&conds))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_writes_in_steady_state() {
    run_e2e(
        "steady",
        "operator steady-state e2e",
        async |setup: &Setup| scenario(&setup.client, &setup.ns, &setup.kubeconfig).await,
    )
    .await;
}

async fn scenario(client: &Client, ns: &str, kubeconfig: &Path) {
    install_crds(client).await;
    let writes = Writes::default();
    let op_client = ClientBuilder::try_from(operator_config(client, ns, kubeconfig).await)
        .unwrap()
        .with_layer(&writes)
        .build();
    let pp = PostParams::default();
    let ncs: Api<NatsCluster> = Api::namespaced(client.clone(), ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let stss: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let accounts: Api<Account> = Api::namespaced(client.clone(), ns);
    let streams: Api<Stream> = Api::namespaced(client.clone(), ns);

    // The operator, resyncing every few seconds, pointed at the broker started below.
    let port = free_port();
    let metrics = Arc::new(Metrics::default());
    let settings = Settings {
        nats_urls: BTreeMap::from([(format!("{ns}/nats"), format!("nats://127.0.0.1:{port}"))]),
        cluster_resync: Duration::from_secs(5),
        stream_resync: Duration::from_secs(2),
        account_resync: Duration::from_secs(2),
        ..Settings::default()
    };
    let operator = Operator::start(&op_client, ns, settings.clone(), metrics.clone()).await;

    // The examples: the NatsCluster (in operator mode, for Accounts), the Account, the Stream
    // (in that account).
    let mut nc = example_value("natscluster.yaml", ns);
    nc["spec"]["auth"] = serde_json::json!({"operatorMode": true});
    nc["spec"]["resolver"] = serde_json::json!({"enabled": true});
    let nc: NatsCluster = serde_json::from_value(nc).unwrap();
    ncs.create(&pp, &nc).await.unwrap();
    let (op_secret, conf) = operator_secret_and_conf(&secrets, &cms).await;
    let dir = std::env::temp_dir().join(format!("natrix-steady-broker-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let broker = tokio::task::spawn_blocking({
        let (conf, s, d) = (conf.clone(), op_secret.clone(), dir.clone());
        move || Broker::from_conf(&conf, &s, &d, Some(port))
    })
    .await
    .unwrap();
    assert_eq!(broker.url, format!("nats://127.0.0.1:{port}"));

    // No kubelet: the StatefulSet reports its pods ready, as the StatefulSet controller would.
    let sts = eventually("StatefulSet nats", || async {
        stss.get("nats").await.map_err(|e| e.to_string())
    })
    .await;
    stss.patch_status(
        "nats",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": {
            "observedGeneration": sts.metadata.generation.unwrap(), "replicas": 3,
            "readyReplicas": 3, "currentReplicas": 3, "updatedReplicas": 3,
            "currentRevision": "nats-1", "updateRevision": "nats-1"}})),
    )
    .await
    .unwrap();

    let a: Account = example("account.yaml", ns);
    accounts.create(&pp, &a).await.unwrap();
    let mut s = example_value("stream.yaml", ns);
    s["spec"]["accountRef"] = serde_json::json!({"name": "team-a"});
    let s: Stream = serde_json::from_value(s).unwrap();
    streams.create(&pp, &s).await.unwrap();

    eventually("everything Ready", || async {
        ready(&ncs, "nats").await?;
        ready(&accounts, "team-a").await?;
        ready(&streams, "orders").await
    })
    .await;

    // Settle: the writes that make things Ready (a last status, the Ready events) end; at most
    // 20 s, after which the quiet minute shows whatever goes on.
    let settle = Instant::now() + Duration::from_secs(20);
    while Instant::now() < settle
        && writes
            .last_at()
            .is_some_and(|t| t.elapsed() < Duration::from_secs(4))
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // --- the quiet minute ---
    let from = writes.len();
    let counts = |c| metrics.counts(c).reconciles;
    let before = ["natscluster", "account", "stream"].map(counts);
    tokio::time::sleep(QUIET).await;
    let after = ["natscluster", "account", "stream"].map(counts);
    let during = writes.since(from);
    eprintln!(
        "steady state: {} write(s) before the quiet minute, {} during it; reconciles during it \
         (natscluster, account, stream): {:?}",
        from,
        during.len(),
        [
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2]
        ]
    );
    assert!(
        during.is_empty(),
        "the operator wrote {} time(s) in {QUIET:?} of steady state:\n{}",
        during.len(),
        summary(&during)
    );
    // The quiet is not idleness: every controller resynced several times.
    for (i, c) in ["natscluster", "account", "stream"].iter().enumerate() {
        assert!(
            after[i] - before[i] >= 5,
            "{c}: only {} reconciles in {QUIET:?}",
            after[i] - before[i]
        );
    }
    ready(&ncs, "nats").await.unwrap();
    ready(&accounts, "team-a").await.unwrap();
    ready(&streams, "orders").await.unwrap();

    // --- restarted (nothing remembered), the operator finds everything as it would make it ---
    operator.shutdown().await;
    let from = writes.len();
    let before = counts("natscluster");
    let operator = Operator::start(&op_client, ns, settings.clone(), metrics.clone()).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let during = writes.since(from);
    assert!(
        during.is_empty(),
        "the restarted operator wrote {} time(s):\n{}",
        during.len(),
        summary(&during)
    );
    assert!(
        counts("natscluster") > before,
        "no reconcile after the restart"
    );

    // --- drift correction still happens: out-of-band edits of children are put back ---
    let want = cms.get("nats-config").await.unwrap().data.unwrap()["nats.conf"].clone();
    cms.patch(
        "nats-config",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"nats.conf": "# edited by hand\n"}})),
    )
    .await
    .unwrap();
    stss.patch(
        "nats",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    eventually("ConfigMap and StatefulSet put back", || async {
        let cm = cms.get("nats-config").await.map_err(|e| e.to_string())?;
        let sts = stss.get("nats").await.map_err(|e| e.to_string())?;
        let conf_back = cm.data.unwrap_or_default().get("nats.conf") == Some(&want);
        let replicas = sts.spec.and_then(|s| s.replicas);
        (conf_back && replicas == Some(3))
            .then_some(())
            .ok_or_else(|| format!("conf put back: {conf_back}; replicas {replicas:?}"))
    })
    .await;
    let fixes: Vec<String> = writes
        .since(from)
        .iter()
        .filter(|w| w.method == "PATCH")
        .map(|w| w.uri.clone())
        .collect();
    assert!(
        fixes.iter().any(|u| u.contains("/configmaps/nats-config"))
            && fixes.iter().any(|u| u.contains("/statefulsets/nats")),
        "{fixes:?}"
    );

    operator.shutdown().await;
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
