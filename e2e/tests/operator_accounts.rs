//! Operator mode against a real Kubernetes API server (same skip rules and environment as
//! operator.rs): a NatsCluster with `auth.operatorMode` gets its operator Secret; a
//! natrix-broker process is booted from the rendered ConfigMap's nats.conf and that Secret;
//! an Account is signed and pushed to it (Ready, per-server results), its user's creds Secret
//! logs in and works inside the account only, a Stream with accountRef is created in that
//! account, edits re-push (a limit; a removed user is revoked and disconnected), a broker that
//! lost its resolver directory converges, and deleting the Account deletes it from the resolver.
//!
//! Skipped (passes with a message) unless NATRIX_K8S_E2E=1; needs `cargo build -p natrix-broker`
//! (or NATRIX_BROKER_BIN).

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use natrix_controller::context::{Context, Settings};
use natrix_controller::crd::{Account, NatsCluster, Stream};
use natrix_controller::metrics::Metrics;

const WAIT: Duration = Duration::from_secs(60);

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
        let dir = std::env::temp_dir().join(format!("natrix-k8s-acc-{}", std::process::id()));
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

/// Apply operator-rbac.yaml and return a client impersonating its ServiceAccount.
async fn operator_rbac(client: &Client, ns: &str, kubeconfig: &Path) -> Client {
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
    Client::try_from(config).unwrap()
}

/// A natrix-broker process booted from the rendered nats.conf and the operator Secret's files,
/// with 127.0.0.1, an ephemeral (or given) client port and directories under `dir`.
struct Broker {
    child: Child,
    url: String,
    port: u16,
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
        let port = addr.rsplit(':').next().unwrap().parse().unwrap();
        Broker {
            child,
            url: format!("nats://{addr}"),
            port,
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

/// The in-process operator; stopped on drop.
struct Operator {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Operator {
    async fn start(client: Client, ns: &str, settings: Settings) -> Operator {
        let pdb = natrix_controller::apply::pdb_resource(&client).await;
        let ctx = Arc::new(Context::new(
            client,
            Arc::new(Metrics::default()),
            pdb,
            settings,
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
                .expect("the operator stops")
                .unwrap();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn secret_data(s: &Secret) -> BTreeMap<String, String> {
    s.data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
        .collect()
}

async fn connect(url: &str, creds: &str) -> Result<async_nats::Client, String> {
    let opts = async_nats::ConnectOptions::with_credentials(creds)
        .map_err(|e| e.to_string())?
        .max_reconnects(Some(0));
    match tokio::time::timeout(Duration::from_secs(5), opts.connect(url)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("timeout".into()),
    }
}

async fn account_ready(
    api: &Api<Account>,
    name: &str,
    hash_not: Option<&str>,
) -> Result<Account, String> {
    let a = api.get(name).await.map_err(|e| e.to_string())?;
    let st = a.status.clone().unwrap_or_default();
    let conds = &st.common.conditions;
    let ready = cond(conds, "Ready").is_some_and(|c| c.status == "True");
    let fresh = st.common.observed_generation == a.metadata.generation;
    let new_hash = hash_not.is_none_or(|h| st.claims_hash.as_deref() != Some(h));
    if ready && fresh && new_hash {
        Ok(a)
    } else {
        Err(format!("{} {:?}", show(conds), st.push_results))
    }
}

/// The account JWT the broker's resolver stored (`<dir>/<account>.jwt`, the resolver PVC in a
/// pod), if any.
fn stored_jwt(dir: &Path, account: &str) -> Option<String> {
    std::fs::read_to_string(dir.join("resolver").join(format!("{account}.jwt")))
        .ok()
        .map(|s| s.trim().to_string())
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
    let ns = format!("natrix-acc-{}", std::process::id());
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

/// e2e/examples/account.yaml is a valid Account whose users become creds Secrets.
#[test]
fn the_account_example_parses() {
    let text = std::fs::read_to_string(repo().join("e2e/examples/account.yaml")).unwrap();
    let a: Account = serde_norway::from_str(&text).unwrap();
    assert_eq!(a.spec.cluster_ref.name, "nats");
    assert_eq!(a.spec.users[0].name, "app");
    let claims =
        natrix_controller::auth::account_claims("team-a", "AKEY", &a.spec, &BTreeMap::new())
            .unwrap();
    assert!(claims.nats.limits.jetstream.disk_storage > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_in_operator_mode() {
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
    eprintln!("operator accounts e2e took {:?}", started.elapsed());
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

async fn scenario(client: &Client, ns: &str, kubeconfig: &Path) {
    install_crds(client).await;
    let op_client = operator_rbac(client, ns, kubeconfig).await;
    let pp = PostParams::default();
    let ncs: Api<NatsCluster> = Api::namespaced(client.clone(), ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let accounts: Api<Account> = Api::namespaced(client.clone(), ns);
    let streams: Api<Stream> = Api::namespaced(client.clone(), ns);

    // 1. The cluster in operator mode: the operator Secret, and the config that uses it.
    let first = Operator::start(op_client.clone(), ns, Settings::default()).await;
    let nc: NatsCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "natrix.io/v1alpha1", "kind": "NatsCluster",
        "metadata": {"name": "nats", "namespace": ns},
        "spec": {"replicas": 1, "jetstream": {"enabled": true},
                 "resolver": {"enabled": true}, "auth": {"operatorMode": true}},
    }))
    .unwrap();
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
    let op_secret = secret_data(&secret);
    for key in [
        "operator.seed",
        "signing-key.seed",
        "operator.jwt",
        "system-account",
        "system-account.seed",
        "system-account.jwt",
        "system-user.creds",
        "resolver-preload.conf",
    ] {
        assert!(op_secret.contains_key(key), "operator Secret lacks {key}");
    }
    assert!(op_secret["operator.seed"].starts_with("SO"));
    assert!(
        conf.contains("resolver: {") && conf.contains("type: \"full\""),
        "{conf}"
    );
    assert!(
        conf.contains("include \"operator/resolver-preload.conf\""),
        "{conf}"
    );
    // Created once: the NatsCluster is reconciled again and the Secret stays as it was.
    ncs.patch(
        "nats",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"lameDuck": {"gracePeriod": "11s"}}})),
    )
    .await
    .unwrap();
    eventually("the edit rendered", || async {
        let cm = cms.get("nats-config").await.map_err(|e| e.to_string())?;
        cm.data.unwrap()["nats.conf"]
            .contains("11s")
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    assert_eq!(
        secret_data(&secrets.get("nats-operator").await.unwrap()),
        op_secret,
        "the operator Secret must never be rewritten"
    );
    first.shutdown().await;

    // 2. A broker booted from that config, and the operator pointed at it.
    let dir = std::env::temp_dir().join(format!("natrix-acc-broker-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let conf = cms.get("nats-config").await.unwrap().data.unwrap()["nats.conf"].clone();
    let mut broker = tokio::task::spawn_blocking({
        let (conf, s, d) = (conf.clone(), op_secret.clone(), dir.clone());
        move || Broker::start(&conf, &s, &d, None)
    })
    .await
    .unwrap();
    let url = broker.url.clone();
    let settings = Settings {
        nats_urls: BTreeMap::from([(format!("{ns}/nats"), url.clone())]),
        stream_resync: Duration::from_secs(2),
        account_resync: Duration::from_secs(2),
        ..Settings::default()
    };
    let operator = Operator::start(op_client.clone(), ns, settings).await;
    connect(&url, &op_secret["system-user.creds"])
        .await
        .expect("the system user logs in");

    // 3. Accounts: team-a with two users, team-b to check isolation.
    for (name, users) in [("team-a", vec!["app", "tmp"]), ("team-b", vec![])] {
        let users: Vec<_> = users
            .iter()
            .map(|u| serde_json::json!({"name": u}))
            .collect();
        let a: Account = serde_json::from_value(serde_json::json!({
            "apiVersion": "natrix.io/v1alpha1", "kind": "Account",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterRef": {"name": "nats"}, "limits": {"conn": 10},
                     "jetstream": {"memStorage": "10Mi", "diskStorage": "100Mi", "streams": 5},
                     "users": users},
        }))
        .unwrap();
        accounts.create(&pp, &a).await.unwrap();
    }
    let a = eventually("team-a Ready", || account_ready(&accounts, "team-a", None)).await;
    eventually("team-b Ready", || account_ready(&accounts, "team-b", None)).await;
    let st = a.status.clone().unwrap();
    let akey = st.account_public_key.clone().unwrap();
    assert!(akey.starts_with('A'), "{akey}");
    assert_eq!(st.push_results.len(), 1, "{:?}", st.push_results);
    assert!(st.push_results[&url].ok, "{:?}", st.push_results);
    assert_eq!(
        st.push_results[&url].message.as_deref(),
        Some("jwt updated")
    );
    assert!(a.finalizers().iter().any(|f| f == "natrix.io/account"));
    let jwt = stored_jwt(&dir, &akey).expect("team-a's JWT in the resolver directory");
    let sys = connect(&url, &op_secret["system-user.creds"])
        .await
        .unwrap();
    let looked_up = sys
        .request(format!("$SYS.REQ.ACCOUNT.{akey}.CLAIMS.LOOKUP"), "".into())
        .await
        .expect("the resolver answers a lookup");
    assert_eq!(
        String::from_utf8_lossy(&looked_up.payload),
        jwt,
        "lookup and directory agree"
    );
    let claims: natrix_jwt::AccountClaims = natrix_jwt::decode_as(&jwt).unwrap();
    assert_eq!(claims.nats.limits.conn, 10);
    assert_eq!(claims.nats.limits.jetstream.disk_storage, 100 << 20);

    // 4. The user's creds work, inside team-a only.
    let app_creds =
        secret_data(&secrets.get("team-a-app-creds").await.unwrap())["user.creds"].clone();
    let app = connect(&url, &app_creds).await.expect("app logs in");
    let b_creds =
        secret_data(&secrets.get("team-b-operator-creds").await.unwrap())["user.creds"].clone();
    let b = connect(&url, &b_creds)
        .await
        .expect("team-b's operator user logs in");
    let mut sub = app.subscribe("greet").await.unwrap();
    let mut b_sub = b.subscribe("greet").await.unwrap();
    app.flush().await.unwrap();
    b.flush().await.unwrap();
    app.publish("greet", "hi".into()).await.unwrap();
    app.flush().await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("app receives its own account's message")
        .unwrap();
    assert_eq!(&m.payload[..], b"hi");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), b_sub.next())
            .await
            .is_err(),
        "team-b must not see team-a's messages"
    );

    // 5. A Stream in team-a (not in team-b).
    let s: Stream = serde_json::from_value(serde_json::json!({
        "apiVersion": "natrix.io/v1alpha1", "kind": "Stream",
        "metadata": {"name": "orders", "namespace": ns},
        "spec": {"clusterRef": {"name": "nats"}, "accountRef": {"name": "team-a"},
                 "name": "ORDERS", "subjects": ["orders.>"]},
    }))
    .unwrap();
    streams.create(&pp, &s).await.unwrap();
    eventually("Stream orders Ready", || async {
        let s = streams.get("orders").await.map_err(|e| e.to_string())?;
        let conds = s.status.map(|s| s.common.conditions).unwrap_or_default();
        cond(&conds, "Ready")
            .filter(|c| c.status == "True")
            .map(|_| ())
            .ok_or_else(|| show(&conds))
    })
    .await;
    // Without accountRef there is no account to act in: the Stream says so.
    let mut s2 = s.clone();
    s2.metadata.name = Some("no-account".into());
    s2.spec.account_ref = None;
    s2.spec.name = "NOACC".into();
    s2.spec.subjects = vec!["noacc.>".into()];
    streams.create(&pp, &s2).await.unwrap();
    eventually("Stream no-account explains", || async {
        let s = streams.get("no-account").await.map_err(|e| e.to_string())?;
        let conds = s.status.map(|s| s.common.conditions).unwrap_or_default();
        cond(&conds, "Ready")
            .filter(|c| c.reason == "AccountNotReady" && c.message.contains("spec.accountRef"))
            .map(|_| ())
            .ok_or_else(|| show(&conds))
    })
    .await;
    streams
        .delete("no-account", &DeleteParams::default())
        .await
        .unwrap();
    let js_a = async_nats::jetstream::new(app.clone());
    js_a.get_stream("ORDERS").await.expect("ORDERS in team-a");
    js_a.publish("orders.1", "x".into())
        .await
        .unwrap()
        .await
        .expect("team-a's user publishes into ORDERS");
    let js_b = async_nats::jetstream::new(b.clone());
    assert!(
        js_b.get_stream("ORDERS").await.is_err(),
        "ORDERS must not exist in team-b"
    );

    // 6. Edits re-push: a limit, then a removed user (revoked and disconnected).
    let tmp_creds =
        secret_data(&secrets.get("team-a-tmp-creds").await.unwrap())["user.creds"].clone();
    let tmp = connect(&url, &tmp_creds).await.expect("tmp logs in");
    let old_hash = st.claims_hash.clone().unwrap();
    accounts
        .patch(
            "team-a",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"limits": {"conn": 20}}})),
        )
        .await
        .unwrap();
    let a = eventually("team-a re-pushed", || {
        account_ready(&accounts, "team-a", Some(&old_hash))
    })
    .await;
    let claims: natrix_jwt::AccountClaims =
        natrix_jwt::decode_as(&stored_jwt(&dir, &akey).unwrap()).unwrap();
    assert_eq!(claims.nats.limits.conn, 20);
    let hash2 = a.status.unwrap().claims_hash.unwrap();
    accounts
        .patch(
            "team-a",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"users": [{"name": "app"}]}})),
        )
        .await
        .unwrap();
    eventually("team-a re-pushed without tmp", || {
        account_ready(&accounts, "team-a", Some(&hash2))
    })
    .await;
    eventually("tmp disconnected", || async {
        (tmp.connection_state() != async_nats::connection::State::Connected)
            .then_some(())
            .ok_or_else(|| "still connected".to_string())
    })
    .await;
    assert!(connect(&url, &tmp_creds).await.is_err(), "tmp is revoked");
    assert!(secrets.get_opt("team-a-tmp-creds").await.unwrap().is_none());
    assert_eq!(
        app.connection_state(),
        async_nats::connection::State::Connected,
        "app is not revoked"
    );

    // 7. A broker that lost its resolver directory gets the account back on the next resync.
    let port = broker.port;
    broker.stop();
    std::fs::remove_dir_all(dir.join("resolver")).unwrap();
    let broker = tokio::task::spawn_blocking({
        let (conf, s, d) = (conf.clone(), op_secret.clone(), dir.clone());
        move || Broker::start(&conf, &s, &d, Some(port))
    })
    .await
    .unwrap();
    assert_eq!(broker.url, url);
    let app = eventually("app logs in again after the re-push", || async {
        connect(&url, &app_creds).await
    })
    .await;
    assert!(stored_jwt(&dir, &akey).is_some(), "team-a pushed again");

    // 8. Deleting the Stream, then the Account: the account is deleted from the resolver.
    streams
        .delete("orders", &DeleteParams::default())
        .await
        .unwrap();
    eventually("Stream orders gone", || async {
        match streams.get_opt("orders").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        }
    })
    .await;
    accounts
        .delete("team-a", &DeleteParams::default())
        .await
        .unwrap();
    eventually("Account team-a gone", || async {
        match accounts
            .get_opt("team-a")
            .await
            .map_err(|e| e.to_string())?
        {
            None => Ok(()),
            Some(a) => Err(format!("finalizers {:?}", a.finalizers())),
        }
    })
    .await;
    eventually("app can no longer log in", || async {
        match connect(&url, &app_creds).await {
            Ok(_) => Err("still logs in".to_string()),
            Err(_) => Ok(()),
        }
    })
    .await;
    assert!(
        stored_jwt(&dir, &akey).is_none(),
        "the resolver still has team-a"
    );
    drop(app);

    // A broker that refuses deletes (allow_delete off): recorded, and the Account still goes.
    let port = broker.port;
    drop(broker);
    let strict = conf.replace("allow_delete: true", "allow_delete: false");
    assert_ne!(strict, conf);
    let broker = tokio::task::spawn_blocking({
        let (s, d) = (op_secret.clone(), dir.clone());
        move || Broker::start(&strict, &s, &d, Some(port))
    })
    .await
    .unwrap();
    let bkey = accounts
        .get("team-b")
        .await
        .unwrap()
        .status
        .unwrap()
        .account_public_key
        .unwrap();
    eventually("team-b pushed to the restarted broker", || async {
        connect(&url, &b_creds).await.map(|_| ())
    })
    .await;
    accounts
        .delete("team-b", &DeleteParams::default())
        .await
        .unwrap();
    eventually("Account team-b gone despite the refusal", || async {
        match accounts
            .get_opt("team-b")
            .await
            .map_err(|e| e.to_string())?
        {
            None => Ok(()),
            Some(a) => Err(format!("finalizers {:?}", a.finalizers())),
        }
    })
    .await;
    assert!(
        stored_jwt(&dir, &bkey).is_some(),
        "the refusing broker keeps team-b"
    );

    let refused = eventually("the DeleteRefused event", || async {
        let evs = Api::<Event>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        evs.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("DeleteRefused"))
            .and_then(|e| e.note)
            .ok_or_else(|| "none yet".to_string())
    })
    .await;
    assert!(
        refused.contains(&bkey) && refused.contains("code 500"),
        "the broker's refusal, verbatim: {refused}"
    );

    // Nothing secret in events or statuses.
    let mut seeds: Vec<String> = op_secret
        .iter()
        .filter(|(k, _)| k.ends_with(".seed") || k.ends_with(".creds"))
        .map(|(_, v)| v.clone())
        .collect();
    for s in secrets.list(&ListParams::default()).await.unwrap() {
        for (k, v) in secret_data(&s) {
            if k.ends_with(".seed") {
                seeds.push(v);
            }
        }
    }
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let evs = events.list(&ListParams::default()).await.unwrap();
    let mut text = serde_json::to_string(&evs.items).unwrap();
    text.push_str(
        &serde_json::to_string(&accounts.list(&ListParams::default()).await.unwrap().items)
            .unwrap(),
    );
    text.push_str(
        &serde_json::to_string(&cms.list(&ListParams::default()).await.unwrap().items).unwrap(),
    );
    for s in &seeds {
        let s = s.trim();
        assert!(
            !text.contains(s),
            "a seed leaked into events/status/ConfigMaps"
        );
    }
    for reason in [
        "OperatorKeysCreated",
        "Pushed",
        "UserRemoved",
        "Deleted",
        "DeleteRefused",
    ] {
        assert!(
            evs.items
                .iter()
                .any(|e| e.reason.as_deref() == Some(reason)),
            "no {reason} event"
        );
    }

    operator.shutdown().await;
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
