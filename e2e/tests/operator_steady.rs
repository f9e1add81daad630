//! Steady state against a real Kubernetes API server (same skip rules and environment as
//! operator.rs): the examples (NatsCluster in operator mode, Account, Stream) applied, a
//! natrix-broker booted from the rendered config, every resource Ready; then the operator,
//! resyncing every few seconds, must make no write request (POST, PUT, PATCH, DELETE: Events
//! included) to the API server for a minute. Its client counts them with a tower layer. After
//! the quiet minute, out-of-band edits of its children are still put back (drift correction).
//!
//! Skipped (passes with a message) unless NATRIX_K8S_E2E=1; needs `cargo build -p natrix-broker`
//! (or NATRIX_BROKER_BIN).

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::FutureExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::client::{Body, ClientBuilder};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use natrix_controller::context::{Context, Settings};
use natrix_controller::crd::{Account, NatsCluster, Stream};
use natrix_controller::metrics::Metrics;

const WAIT: Duration = Duration::from_secs(60);
/// How long the operator must stay quiet.
const QUIET: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// etcd + kube-apiserver + kube-controller-manager from start-test-cluster.sh; stopped on drop.
struct TestCluster {
    scripts: PathBuf,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl TestCluster {
    fn start(scripts: &Path, bin: &Path) -> TestCluster {
        let dir = std::env::temp_dir().join(format!("natrix-k8s-steady-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ports: Vec<u16> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect::<Vec<_>>()
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        let c = TestCluster {
            scripts: scripts.to_path_buf(),
            kubeconfig: dir.join("kubeconfig"),
            dir,
        };
        let out = Command::new("bash")
            .arg(scripts.join("start-test-cluster.sh"))
            .env("D", &c.dir)
            .env("BIN", bin)
            .env("PORT", ports[0].to_string())
            .env("ETCD_PORT", ports[1].to_string())
            .env("ETCD_PEER_PORT", ports[2].to_string())
            .stdin(Stdio::null())
            .output()
            .expect("run start-test-cluster.sh");
        assert!(
            out.status.success(),
            "start-test-cluster.sh failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        c
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(self.scripts.join("stop-test-cluster.sh"))
            .env("D", &self.dir)
            .status();
        std::thread::sleep(Duration::from_millis(500));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("timed out waiting for {what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

fn cond<'a>(conds: &'a [Condition], t: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == t)
}

fn show(conds: &[Condition]) -> String {
    conds
        .iter()
        .map(|c| format!("{}={} {} ({})", c.type_, c.status, c.reason, c.message))
        .collect::<Vec<_>>()
        .join("; ")
}

fn strip_cel(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.remove("x-kubernetes-validations");
            m.values_mut().for_each(strip_cel);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_cel),
        _ => {}
    }
}

async fn install_crds(client: &Client) {
    let info = client.apiserver_version().await.unwrap();
    let minor: u32 = info
        .git_version
        .trim_start_matches('v')
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(99);
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for entry in std::fs::read_dir(repo().join("crds")).unwrap() {
        let path = entry.unwrap().path();
        let mut v: serde_json::Value =
            serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if minor < 25 {
            strip_cel(&mut v);
        }
        let crd: CustomResourceDefinition = serde_json::from_value(v).unwrap();
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply("natrix-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("installing {}: {e}", path.display()));
        names.push(name);
    }
    for name in names {
        eventually(&format!("CRD {name} established"), || async {
            let crd = api.get(&name).await.map_err(|e| e.to_string())?;
            crd.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
                .ok_or_else(|| "not established".to_string())
        })
        .await;
    }
}

/// Apply operator-rbac.yaml and return a config impersonating its ServiceAccount.
async fn operator_config(client: &Client, ns: &str, kubeconfig: &Path) -> kube::Config {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    use serde::Deserialize;
    let text = std::fs::read_to_string(repo().join("e2e/examples/operator-rbac.yaml")).unwrap();
    let apply = PatchParams::apply("natrix-e2e").force();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let mut v = serde_json::Value::deserialize(doc).unwrap();
        let name = v["metadata"]["name"].as_str().unwrap().to_string();
        match v["kind"].as_str().unwrap() {
            "ServiceAccount" => {
                v["metadata"]["namespace"] = ns.into();
                let sa: ServiceAccount = serde_json::from_value(v).unwrap();
                let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
                api.patch(&name, &apply, &Patch::Apply(&sa)).await.unwrap();
            }
            "ClusterRole" => {
                let r: ClusterRole = serde_json::from_value(v).unwrap();
                let api: Api<ClusterRole> = Api::all(client.clone());
                api.patch(&name, &apply, &Patch::Apply(&r)).await.unwrap();
            }
            "ClusterRoleBinding" => {
                v["subjects"][0]["namespace"] = ns.into();
                let b: ClusterRoleBinding = serde_json::from_value(v).unwrap();
                let api: Api<ClusterRoleBinding> = Api::all(client.clone());
                api.patch(&name, &apply, &Patch::Apply(&b)).await.unwrap();
            }
            k => panic!("unexpected {k} in operator-rbac.yaml"),
        }
    }
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{ns}:natrix-controller"));
    config
}

/// A natrix-broker process booted from the rendered nats.conf and the operator Secret's files,
/// with 127.0.0.1, an ephemeral (or given) client port and directories under `dir`.
struct Broker {
    child: Child,
    url: String,
}

fn broker_bin() -> PathBuf {
    let bin = std::env::var_os("NATRIX_BROKER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().unwrap();
            exe.parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("natrix-broker")
        });
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p natrix-broker` (or set NATRIX_BROKER_BIN)",
        bin.display()
    );
    bin
}

/// The rendered nats.conf made local: no routes (one broker), no monitoring port, paths in `dir`.
fn local_conf(conf: &str, dir: &Path, port: Option<u16>) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in conf.lines() {
        if skipping {
            skipping = line != "}";
            continue;
        }
        if line.starts_with("cluster: {") {
            skipping = true;
            continue;
        }
        if line.starts_with("http_port:") {
            continue;
        }
        if line.starts_with("port: ") {
            let p = port.map(|p| p as i64).unwrap_or(-1);
            out.push_str(&format!("host: \"127.0.0.1\"\nport: {p}\n"));
            continue;
        }
        let d = dir.display();
        let line = line
            .replace(
                "\"/etc/nats/operator/operator.jwt\"",
                &format!("\"{d}/operator/operator.jwt\""),
            )
            .replace("\"/var/run/nats/nats.pid\"", &format!("\"{d}/nats.pid\""))
            .replace("\"/data/resolver\"", &format!("\"{d}/resolver\""))
            .replace("\"/data\"", &format!("\"{d}/js\""));
        out.push_str(&line);
        out.push('\n');
    }
    out
}

impl Broker {
    fn start(
        conf: &str,
        secret: &BTreeMap<String, String>,
        dir: &Path,
        port: Option<u16>,
    ) -> Broker {
        std::fs::create_dir_all(dir.join("operator")).unwrap();
        for key in ["operator.jwt", "resolver-preload.conf"] {
            std::fs::write(dir.join("operator").join(key), &secret[key]).unwrap();
        }
        let local = local_conf(conf, dir, port);
        for gone in ["/etc/nats", "/data", "/var/run"] {
            assert!(!local.contains(&format!("\"{gone}")), "{local}");
        }
        std::fs::write(dir.join("nats.conf"), &local).unwrap();
        let mut child = Command::new(broker_bin())
            .arg("-c")
            .arg(dir.join("nats.conf"))
            .env("SERVER_NAME", "nats-0")
            .env("SYSTEM_ACCOUNT", &secret["system-account"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            const NEEDLE: &str = "Listening for client connections on ";
            let mut log = Vec::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find(NEEDLE) {
                    let _ = tx.send(Ok(line[i + NEEDLE.len()..].trim().to_string()));
                }
                log.push(line);
            }
            let _ = tx.send(Err(log.join("\n")));
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(a)) => a,
            other => {
                let _ = child.kill();
                panic!("natrix-broker did not report its client port: {other:?}\n{local}");
            }
        };
        Broker {
            child,
            url: format!("nats://{addr}"),
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

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

struct Setup {
    client: Client,
    ns: String,
    kubeconfig: PathBuf,
    _cluster: Option<TestCluster>,
}

async fn setup() -> Option<Setup> {
    if std::env::var("NATRIX_K8S_E2E").ok().as_deref() != Some("1") {
        eprintln!(
            "SKIPPED: set NATRIX_K8S_E2E=1 to run the operator e2e against a Kubernetes API \
             server (see the top of e2e/tests/operator.rs)"
        );
        return None;
    }
    let (kubeconfig, cluster) = match std::env::var_os("NATRIX_E2E_KUBECONFIG") {
        Some(k) => (PathBuf::from(k), None),
        None => {
            let scripts = std::env::var_os("NATRIX_K8S_SCRIPTS")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo().join("../shared/k8s"));
            let bin = std::env::var_os("NATRIX_K8S_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/var/cache/k8s-apiserver-build/bin"));
            if !scripts.join("start-test-cluster.sh").exists()
                || !bin.join("kube-apiserver").exists()
            {
                eprintln!(
                    "SKIPPED: no test cluster: need {}/start-test-cluster.sh and {}/kube-apiserver",
                    scripts.display(),
                    bin.display()
                );
                return None;
            }
            let c = tokio::task::spawn_blocking(move || TestCluster::start(&scripts, &bin))
                .await
                .unwrap();
            (c.kubeconfig.clone(), Some(c))
        }
    };
    let kc = Kubeconfig::read_from(&kubeconfig).unwrap();
    let kubeconfig = kubeconfig.canonicalize().unwrap_or(kubeconfig);
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let ns = format!("natrix-steady-{}", std::process::id());
    let nsapi: Api<Namespace> = Api::all(client.clone());
    let mut n = Namespace::default();
    n.metadata.name = Some(ns.clone());
    nsapi.create(&PostParams::default(), &n).await.unwrap();
    Some(Setup {
        client,
        ns,
        kubeconfig,
        _cluster: cluster,
    })
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn example(file: &str, ns: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(repo().join("e2e/examples").join(file)).unwrap();
    let mut v: serde_json::Value = serde_norway::from_str(&text).unwrap();
    v["metadata"]["namespace"] = ns.into();
    v
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

/// The in-process operator; stopped on drop.
struct Operator {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Operator {
    async fn start(client: &Client, ns: &str, settings: &Settings, metrics: &Arc<Metrics>) -> Self {
        let pdb = natrix_controller::apply::pdb_resource(client).await;
        let ctx = Arc::new(Context::new(
            client.clone(),
            metrics.clone(),
            pdb,
            settings.clone(),
        ));
        let (stop, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(natrix_controller::operator::run(
            ctx,
            vec![ns.to_string()],
            rx,
        ));
        Operator {
            stop,
            task: Some(task),
        }
    }

    async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), t)
                .await
                .expect("the operator stops on shutdown")
                .unwrap();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_writes_in_steady_state() {
    let Some(setup) = setup().await else {
        return;
    };
    let started = Instant::now();
    let result =
        std::panic::AssertUnwindSafe(scenario(&setup.client, &setup.ns, &setup.kubeconfig))
            .catch_unwind()
            .await;
    if setup._cluster.is_none() {
        let nsapi: Api<Namespace> = Api::all(setup.client.clone());
        let _ = nsapi.delete(&setup.ns, &DeleteParams::default()).await;
    }
    drop(setup);
    eprintln!("operator steady-state e2e took {:?}", started.elapsed());
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
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
    let operator = Operator::start(&op_client, ns, &settings, &metrics).await;

    // The examples: the NatsCluster (in operator mode, for Accounts), the Account, the Stream
    // (in that account).
    let mut nc = example("natscluster.yaml", ns);
    nc["spec"]["auth"] = serde_json::json!({"operatorMode": true});
    nc["spec"]["resolver"] = serde_json::json!({"enabled": true});
    let nc: NatsCluster = serde_json::from_value(nc).unwrap();
    ncs.create(&pp, &nc).await.unwrap();
    let secret = eventually("Secret nats-operator", || async {
        secrets
            .get("nats-operator")
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    let conf = eventually("ConfigMap nats-config", || async {
        let cm = cms.get("nats-config").await.map_err(|e| e.to_string())?;
        Ok::<_, String>(cm.data.unwrap()["nats.conf"].clone())
    })
    .await;
    let op_secret: BTreeMap<String, String> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
        .collect();
    let dir = std::env::temp_dir().join(format!("natrix-steady-broker-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let broker = tokio::task::spawn_blocking({
        let (conf, s, d) = (conf.clone(), op_secret.clone(), dir.clone());
        move || Broker::start(&conf, &s, &d, Some(port))
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

    let a: Account = serde_json::from_value(example("account.yaml", ns)).unwrap();
    accounts.create(&pp, &a).await.unwrap();
    let mut s = example("stream.yaml", ns);
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
    let operator = Operator::start(&op_client, ns, &settings, &metrics).await;
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
