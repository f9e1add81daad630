//! Scaffolding shared by the operator e2e tests (operator.rs, operator_accounts.rs,
//! operator_steady.rs): the test control plane, the client and namespace, CRDs and RBAC, the
//! in-process operator, natrix-broker processes and waiting helpers. Each test uses a subset.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use natrix_controller::context::{Context, Settings};
use natrix_controller::metrics::Metrics;

pub mod stand_ins;

/// How long [`eventually`] waits.
pub const WAIT: Duration = Duration::from_secs(60);

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A test control plane (etcd + kube-apiserver + kube-controller-manager) started by
/// start-test-cluster.sh; stopped (and its directory removed) on drop.
pub struct TestCluster {
    scripts: PathBuf,
    dir: PathBuf,
    pub kubeconfig: PathBuf,
}

impl TestCluster {
    /// Starts one on free ports in `natrix-k8s-<tag>-<pid>` under the temporary directory.
    pub fn start(tag: &str, scripts: &Path, bin: &Path) -> TestCluster {
        let dir = std::env::temp_dir().join(format!("natrix-k8s-{tag}-{}", std::process::id()));
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
        // Give etcd a moment to exit before its data directory goes.
        std::thread::sleep(Duration::from_millis(500));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory of the Kubernetes binaries: NATRIX_K8S_BIN or the build-kube-apiserver.sh cache.
pub fn k8s_bin() -> PathBuf {
    std::env::var_os("NATRIX_K8S_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/k8s-apiserver-build/bin"))
}

/// The test's resources, whatever the outcome: the namespace is deleted at the end when the
/// cluster is not ours.
pub struct Setup {
    pub client: Client,
    pub ns: String,
    pub kubeconfig: PathBuf,
    cluster: Option<TestCluster>,
    /// This test's turn on a cluster that is not ours (see [`SHARED_CLUSTER`]).
    _turn: Option<tokio::sync::MutexGuard<'static, ()>>,
}

/// Taken by each test of a binary that works on a cluster it does not own: tests run in
/// parallel threads, and cluster-scoped objects (the operator's ClusterRoleBinding names one
/// namespace, the PodMonitor CRD comes and goes) would change under each other.
static SHARED_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Setup {
    /// Whether the test started the control plane itself (rather than NATRIX_E2E_KUBECONFIG's).
    pub fn owns_cluster(&self) -> bool {
        self.cluster.is_some()
    }
}

/// The kubeconfig to use and the cluster started for it, or None (with a SKIPPED message).
async fn kubeconfig_and_cluster(tag: &str) -> Option<(PathBuf, Option<TestCluster>)> {
    if let Some(k) = std::env::var_os("NATRIX_E2E_KUBECONFIG") {
        return Some((PathBuf::from(k), None));
    }
    let scripts = std::env::var_os("NATRIX_K8S_SCRIPTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/k8s"));
    let bin = k8s_bin();
    if !scripts.join("start-test-cluster.sh").exists() || !bin.join("kube-apiserver").exists() {
        eprintln!(
            "SKIPPED: no test cluster: need {}/start-test-cluster.sh and {}/kube-apiserver \
             (build it once with build-kube-apiserver.sh), or NATRIX_E2E_KUBECONFIG",
            scripts.display(),
            bin.display()
        );
        return None;
    }
    let tag = tag.to_string();
    let c = tokio::task::spawn_blocking(move || TestCluster::start(&tag, &scripts, &bin))
        .await
        .unwrap();
    Some((c.kubeconfig.clone(), Some(c)))
}

/// A client of the kubeconfig's cluster, as its user.
pub async fn kube_config(kubeconfig: &Path) -> kube::Config {
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap()
}

/// The client and a fresh namespace `natrix-<tag>-<pid>`, or None (with a SKIPPED message)
/// unless NATRIX_K8S_E2E=1 and a cluster is at hand.
pub async fn setup(tag: &str) -> Option<Setup> {
    if std::env::var("NATRIX_K8S_E2E").ok().as_deref() != Some("1") {
        eprintln!(
            "SKIPPED: set NATRIX_K8S_E2E=1 to run the operator e2e against a Kubernetes API \
             server (see the top of e2e/tests/operator.rs)"
        );
        return None;
    }
    let (kubeconfig, cluster) = kubeconfig_and_cluster(tag).await?;
    let turn = match cluster {
        Some(_) => None,
        None => Some(SHARED_CLUSTER.lock().await),
    };
    let config = kube_config(&kubeconfig).await;
    let kubeconfig = kubeconfig.canonicalize().unwrap_or(kubeconfig);
    let client = Client::try_from(config).unwrap();
    let ns = format!("natrix-{tag}-{}", std::process::id());
    let nsapi: Api<Namespace> = Api::all(client.clone());
    let mut n = Namespace::default();
    n.metadata.name = Some(ns.clone());
    nsapi.create(&PostParams::default(), &n).await.unwrap();
    Some(Setup {
        client,
        ns,
        kubeconfig,
        cluster,
        _turn: turn,
    })
}

/// Runs `scenario` on a [`setup`] (skipped without one), cleans up whatever the outcome, says
/// how long `what` took and passes its panic on.
pub async fn run_e2e<F>(tag: &str, what: &str, scenario: F)
where
    F: AsyncFnOnce(&Setup),
{
    let Some(setup) = setup(tag).await else {
        return;
    };
    let started = Instant::now();
    let result = std::panic::AssertUnwindSafe(scenario(&setup))
        .catch_unwind()
        .await;
    if !setup.owns_cluster() {
        let nsapi: Api<Namespace> = Api::all(setup.client.clone());
        let _ = nsapi.delete(&setup.ns, &DeleteParams::default()).await;
    }
    drop(setup);
    eprintln!("{what} took {:?}", started.elapsed());
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

/// Poll `f` until it returns Ok, panicking with its last error after WAIT.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
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

/// Ok once `name` is gone from `api`, else "still there" (for [`eventually`]).
pub async fn gone<K>(api: &Api<K>, name: &str) -> Result<(), String>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await.map_err(|e| e.to_string())? {
        None => Ok(()),
        Some(_) => Err("still there".to_string()),
    }
}

/// Whether `refs` has the controller reference of the NatsCluster `uid`.
pub fn owned_by(refs: &[OwnerReference], uid: &str) -> bool {
    refs.iter().any(|o| {
        o.uid == uid
            && o.kind == "NatsCluster"
            && o.api_version == "natrix.io/v1alpha1"
            && o.controller == Some(true)
    })
}

/// The response (status line, headers and body) to an HTTP/1.1 GET of `path` on `addr`.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// The condition of type `t`.
pub fn cond<'a>(conds: &'a [Condition], t: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == t)
}

/// Conditions on one line, for messages.
pub fn show(conds: &[Condition]) -> String {
    conds
        .iter()
        .map(|c| format!("{}={} {} ({})", c.type_, c.status, c.reason, c.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Secret's data as strings.
pub fn secret_data(s: &Secret) -> BTreeMap<String, String> {
    s.data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
        .collect()
}

/// An e2e/examples/ file as JSON, moved to namespace `ns`.
pub fn example_value(file: &str, ns: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(repo().join("e2e/examples").join(file)).unwrap();
    let mut v: serde_json::Value = serde_norway::from_str(&text).unwrap();
    v["metadata"]["namespace"] = ns.into();
    v
}

/// An e2e/examples/ file as a `T`, moved to namespace `ns`.
pub fn example<T: serde::de::DeserializeOwned>(file: &str, ns: &str) -> T {
    serde_json::from_value(example_value(file, ns)).unwrap()
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

/// The server's minor version, from gitVersion (`v1.20.2`; `minor` can be empty).
pub async fn server_minor(client: &Client) -> u32 {
    let info = client.apiserver_version().await.unwrap();
    let from_git = info
        .git_version
        .trim_start_matches('v')
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok());
    from_git
        .or_else(|| info.minor.trim_end_matches('+').parse().ok())
        .unwrap_or(99)
}

/// Applies the CRDs of crds/ and waits until they are established.
pub async fn install_crds(client: &Client) {
    let minor = server_minor(client).await;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for entry in std::fs::read_dir(repo().join("crds")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut v: serde_json::Value = serde_norway::from_str(&text).unwrap();
        if minor < 25 {
            // No CEL before 1.25: the field is unknown to the schema there.
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
            let ok = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            ok.then_some(())
                .ok_or_else(|| "not established".to_string())
        })
        .await;
    }
}

/// Applies e2e/examples/operator-rbac.yaml, its ServiceAccount in `ns`.
pub async fn apply_operator_rbac(client: &Client, ns: &str) {
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
}

/// Applies operator-rbac.yaml and returns a config impersonating its ServiceAccount.
pub async fn operator_config(client: &Client, ns: &str, kubeconfig: &Path) -> kube::Config {
    apply_operator_rbac(client, ns).await;
    let mut config = kube_config(kubeconfig).await;
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{ns}:natrix-controller"));
    config
}

/// Applies operator-rbac.yaml and returns a client impersonating its ServiceAccount.
pub async fn operator_rbac(client: &Client, ns: &str, kubeconfig: &Path) -> Client {
    Client::try_from(operator_config(client, ns, kubeconfig).await).unwrap()
}

/// The in-process operator watching `ns`; stopped on drop.
pub struct Operator {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Operator {
    /// Starts it with `client` (usually [`operator_rbac`]'s), `settings` and `metrics`.
    pub async fn start(
        client: &Client,
        ns: &str,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Operator {
        let pdb = natrix_controller::apply::pdb_resource(client).await;
        let ctx = Arc::new(Context::new(client.clone(), metrics, pdb, settings));
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

    /// Stops it and waits (at most 15 s) for it to end.
    pub async fn shutdown(mut self) {
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

/// The binary `name` (of package `name`) Cargo built next to this test, or the one in `var`.
pub fn built_bin(name: &str, var: &str) -> PathBuf {
    let bin = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap();
        exe.parent().unwrap().parent().unwrap().join(name)
    });
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p {name}` (or set {var})",
        bin.display()
    );
    bin
}

/// The natrix-broker binary Cargo built next to this test, or NATRIX_BROKER_BIN.
pub fn broker_bin() -> PathBuf {
    built_bin("natrix-broker", "NATRIX_BROKER_BIN")
}

/// The natrix-controller binary Cargo built next to this test, or NATRIX_CONTROLLER_BIN.
pub fn controller_bin() -> PathBuf {
    built_bin("natrix-controller", "NATRIX_CONTROLLER_BIN")
}

/// The operator Secret `nats-operator` (as strings) and the rendered `nats-config` nats.conf of
/// an operator-mode NatsCluster `nats`, once both exist.
pub async fn operator_secret_and_conf(
    secrets: &Api<Secret>,
    cms: &Api<ConfigMap>,
) -> (BTreeMap<String, String>, String) {
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
    (secret_data(&secret), conf)
}

/// The rendered nats.conf made local: no routes (one broker), no monitoring port, paths in `dir`.
pub fn local_conf(conf: &str, dir: &Path, port: Option<u16>) -> String {
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

/// A natrix-broker process on 127.0.0.1; killed on drop (its directory removed when it is its
/// own).
pub struct Broker {
    child: Child,
    pub url: String,
    pub port: u16,
    own_dir: Option<PathBuf>,
}

impl Broker {
    /// A broker with JetStream in its own store directory (`tag`), an ephemeral client port and
    /// extra flags.
    pub fn jetstream(tag: &str, extra: &[String]) -> Broker {
        let dir = std::env::temp_dir().join(format!("natrix-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cmd = Command::new(broker_bin());
        cmd.args(["-js", "-sd"])
            .arg(&dir)
            .args(["-a", "127.0.0.1", "-p", "-1"])
            .args(extra);
        let mut b = Broker::spawn(cmd, "");
        b.own_dir = Some(dir);
        b
    }

    /// A broker booted from the rendered nats.conf and the operator Secret's files, with an
    /// ephemeral (or given) client port and directories under `dir`.
    pub fn from_conf(
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
        let mut cmd = Command::new(broker_bin());
        cmd.arg("-c")
            .arg(dir.join("nats.conf"))
            .env("SERVER_NAME", "nats-0")
            .env("SYSTEM_ACCOUNT", &secret["system-account"]);
        Broker::spawn(cmd, &local)
    }

    /// Spawns `cmd` and waits for the client address it logs; `context` goes into the panic.
    fn spawn(mut cmd: Command, context: &str) -> Broker {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", cmd.get_program().to_string_lossy()));
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
                panic!("natrix-broker did not report its client port: {other:?}\n{context}");
            }
        };
        let port = addr.rsplit(':').next().unwrap().parse().unwrap();
        Broker {
            child,
            url: format!("nats://{addr}"),
            port,
            own_dir: None,
        }
    }

    /// Kills the process and waits for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.own_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
