//! The operator against a real Kubernetes API server (1.20 from ../shared/k8s, or $KUBECONFIG),
//! CRDs installed from crds/ and e2e/examples/ applied, in four tests that fail separately:
//! - `scenario`: the operator in-process; the children, owner references, conditions, pause and
//!   events of a NatsCluster; then a natrix-broker process standing in for the pods, and a
//!   Stream's create, update, drift correction, restore, verbatim errors, deletion (and
//!   preventDelete) through the JetStream API; an Account outside operator mode; the Lease;
//! - `the_binary`: natrix-controller as a child process (leader election, /healthz, /metrics,
//!   OTLP traces, SIGTERM);
//! - `pod_monitor`: `metrics.podMonitor` without and with the PodMonitor CRD;
//! - `rolling_upgrade_and_scale_down`: a health-gated rolling upgrade driven by the real
//!   StatefulSet controller, then the scale-down guard (only on a control plane of its own).
//!
//! Skipped (passes with a message) unless NATRIX_K8S_E2E=1. With it set:
//! - NATRIX_E2E_KUBECONFIG=<file> uses that cluster (each test works in its own namespace,
//!   one test at a time);
//! - otherwise each test starts etcd + kube-apiserver + kube-controller-manager of its own with
//!   start-test-cluster.sh from NATRIX_K8S_SCRIPTS (default ../shared/k8s next to the repo)
//!   and the binaries in NATRIX_K8S_BIN (default /var/cache/k8s-apiserver-build/bin, built by
//!   build-kube-apiserver.sh), on free ports in a temporary directory; skipped when they are missing.
//!
//! The natrix-broker binary must be built (`cargo build -p natrix-broker`), or set
//! NATRIX_BROKER_BIN; `the_binary` needs natrix-controller's (or NATRIX_CONTROLLER_BIN).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::stand_ins::{
    fake_kubelet, otlp_attr, otlp_collector, pod_monitor_crd, StatefulSetController,
};
use common::{
    cond, controller_bin, eventually, example, free_port, gone, http_get, install_crds,
    operator_rbac, owned_by, run_e2e, server_minor, show, Broker, Operator, Setup,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use natrix_controller::context::Settings;
use natrix_controller::crd::{NatsCluster, Stream};
use natrix_controller::leader::LeaseLock;
use natrix_controller::metrics::Metrics;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario() {
    run_e2e("scenario", "operator scenario e2e", run_scenario).await;
}

/// CRDs, a broker, the operator in-process; the scenario; the operator stopped.
async fn run_scenario(setup: &Setup) {
    let (client, ns, kubeconfig) = (&setup.client, setup.ns.as_str(), &setup.kubeconfig);
    install_crds(client).await;
    // The operator runs as the ServiceAccount of e2e/examples/operator-rbac.yaml: the
    // ClusterRole there is what it needs.
    let operator_client = operator_rbac(client, ns, kubeconfig).await;
    let broker = tokio::task::spawn_blocking(|| Broker::jetstream("js", &[]))
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::default());
    let (maddr, _srv) =
        natrix_controller::metrics::serve("127.0.0.1:0".parse().unwrap(), metrics.clone())
            .await
            .unwrap();
    let pdb_ar = natrix_controller::apply::pdb_resource(&operator_client).await;
    let settings = Settings {
        nats_urls: BTreeMap::from([(format!("{ns}/nats"), broker.url.clone())]),
        stream_resync: Duration::from_secs(2),
        ..Settings::default()
    };
    // Stops the operator even when the scenario panics.
    let operator = Operator::start(&operator_client, ns, settings, metrics).await;
    scenario_steps(client, ns, &broker, &pdb_ar, maddr).await;
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary() {
    run_e2e("binary", "operator binary e2e", run_binary).await;
}

/// The binary as a child process: flags, leader election with a Lease, /healthz and
/// /metrics on its own port, reconciling, and a SIGTERM that releases the Lease.
async fn run_binary(setup: &Setup) {
    let (client, ns, kubeconfig) = (&setup.client, setup.ns.as_str(), &setup.kubeconfig);
    install_crds(client).await;
    let port = free_port();
    let maddr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (otlp, exports) = otlp_collector().await;
    let mut child = Command::new(controller_bin())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp)
        .env("OTEL_SERVICE_NAME", "natrix-e2e")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--namespace", ns, "--metrics-addr", &maddr.to_string()])
        .args([
            "--leader-elect",
            "--lease-namespace",
            ns,
            "--identity",
            "e2e-binary",
        ])
        .args(["--lease-seconds", "6"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = child.id();
    let mut child = Kill(child);
    let logs = || log.lock().unwrap().join("\n");

    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), ns);
    eventually("the binary holds the Lease", || async {
        let l = leases
            .get_opt("natrix-controller")
            .await
            .map_err(|e| e.to_string())?;
        let holder = l.and_then(|l| l.spec).and_then(|s| s.holder_identity);
        (holder.as_deref() == Some("e2e-binary"))
            .then_some(())
            .ok_or_else(|| format!("holder {holder:?}; log:\n{}", logs()))
    })
    .await;
    eventually("/healthz and /metrics", || async {
        let h = tokio::time::timeout(Duration::from_secs(2), http_get(maddr, "/healthz"))
            .await
            .map_err(|_| "timeout".to_string())?;
        let m = http_get(maddr, "/metrics").await;
        (h.ends_with("ok") && m.contains("natrix_controller_leader 1"))
            .then_some(())
            .ok_or_else(|| format!("{h}\n{m}"))
    })
    .await;

    // It reconciles: a new NatsCluster gets its children.
    let ncs: Api<NatsCluster> = Api::namespaced(client.clone(), ns);
    let mut nc: NatsCluster = example("natscluster.yaml", ns);
    nc.metadata.name = Some("bin".into());
    ncs.create(&PostParams::default(), &nc).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    eventually("the binary's ConfigMap", || async {
        cms.get("bin-config")
            .await
            .map_err(|e| format!("{e}; log:\n{}", logs()))
    })
    .await;
    // Its reconcile reached the OTLP collector as a span naming the object.
    eventually(
        "the reconcile span of NatsCluster bin over OTLP",
        || async {
            let got = exports.lock().unwrap().clone();
            got.iter()
                .filter(|req| {
                    let res = &req["resourceSpans"][0]["resource"]["attributes"];
                    otlp_attr(res, "service.name") == Some("natrix-e2e")
                })
                .flat_map(|req| {
                    req["resourceSpans"][0]["scopeSpans"][0]["spans"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .find(|span| {
                    span["name"] == "reconcile NatsCluster"
                        && otlp_attr(&span["attributes"], "k8s.object.name") == Some("bin")
                        && otlp_attr(&span["attributes"], "k8s.namespace.name") == Some(ns)
                        && span["traceId"].as_str().is_some_and(|t| t.len() == 32)
                })
                .map(|_| ())
                .ok_or_else(|| format!("{} export request(s), none with it", got.len()))
        },
    )
    .await;

    // SIGTERM: exits 0 and releases the Lease.
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "no exit after SIGTERM; log:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}; log:\n{}", logs());
    let lease = leases.get("natrix-controller").await.unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity,
        None,
        "Lease not released"
    );
}

async fn nats_cluster_status(
    api: &Api<NatsCluster>,
) -> Result<(NatsCluster, Vec<Condition>), String> {
    let nc = api.get("nats").await.map_err(|e| e.to_string())?;
    let conds = nc
        .status
        .as_ref()
        .map(|s| s.common.conditions.clone())
        .unwrap_or_default();
    Ok((nc, conds))
}

async fn stream_ready(
    api: &Api<Stream>,
    name: &str,
    status: &str,
    reason: &str,
) -> Result<Condition, String> {
    let s = api.get(name).await.map_err(|e| e.to_string())?;
    let conds = s.status.map(|s| s.common.conditions).unwrap_or_default();
    match cond(&conds, "Ready") {
        Some(c) if c.status == status && c.reason == reason => Ok(c.clone()),
        _ => Err(show(&conds)),
    }
}

async fn scenario_steps(
    client: &Client,
    ns: &str,
    broker: &Broker,
    pdb_ar: &kube::core::ApiResource,
    maddr: std::net::SocketAddr,
) {
    let pp = PostParams::default();
    let ncs: Api<NatsCluster> = Api::namespaced(client.clone(), ns);
    let nc: NatsCluster = example("natscluster.yaml", ns);
    let nc = ncs.create(&pp, &nc).await.unwrap();
    let uid = nc.metadata.uid.clone().unwrap();

    // --- children ---
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = eventually("ConfigMap nats-config", || async {
        cms.get("nats-config").await.map_err(|e| e.to_string())
    })
    .await;
    let conf = &cm.data.as_ref().unwrap()["nats.conf"];
    assert!(conf.contains("jetstream"), "{conf}");
    assert!(owned_by(cm.owner_references(), &uid));

    let svcs: Api<Service> = Api::namespaced(client.clone(), ns);
    let headless = eventually("headless Service", || async {
        svcs.get("nats-headless").await.map_err(|e| e.to_string())
    })
    .await;
    let hs = headless.spec.as_ref().unwrap();
    assert_eq!(hs.cluster_ip.as_deref(), Some("None"));
    let ports = hs.ports.as_ref().unwrap();
    assert_eq!(ports.len(), 3);
    assert!(ports.iter().all(|p| p.protocol.as_deref() == Some("TCP")));
    assert!(owned_by(headless.owner_references(), &uid));
    let clientsvc = eventually("client Service", || async {
        svcs.get("nats").await.map_err(|e| e.to_string())
    })
    .await;
    let cp = clientsvc.spec.as_ref().unwrap().ports.clone().unwrap();
    assert_eq!(
        (cp.len(), cp[0].port, cp[0].protocol.as_deref()),
        (1, 4222, Some("TCP"))
    );
    assert!(owned_by(clientsvc.owner_references(), &uid));

    let stss: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let sts = eventually("StatefulSet", || async {
        stss.get("nats").await.map_err(|e| e.to_string())
    })
    .await;
    assert!(owned_by(sts.owner_references(), &uid));
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    let pod = spec.template.spec.as_ref().unwrap();
    let cports = pod.containers[0].ports.as_ref().unwrap();
    assert_eq!(cports.len(), 3);
    assert!(cports.iter().all(|p| p.protocol.as_deref() == Some("TCP")));
    assert_eq!(
        spec.volume_claim_templates.as_ref().unwrap()[0]
            .metadata
            .name
            .as_deref(),
        Some("data")
    );
    let managers: Vec<_> = sts
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.iter().any(|m| m == "natrix-controller"),
        "{managers:?}"
    );

    let pdbs: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, pdb_ar);
    let pdb = eventually("PodDisruptionBudget", || async {
        pdbs.get("nats").await.map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(pdb.data["spec"]["maxUnavailable"], 1);
    assert!(owned_by(pdb.owner_references(), &uid));
    let minor = server_minor(client).await;
    if minor < 21 {
        assert_eq!(pdb_ar.api_version, "policy/v1beta1");
    }

    // --- conditions: no kubelet, so the StatefulSet never reports: progressing, not ready ---
    let (nc, conds) = eventually("NatsCluster status", || async {
        let (nc, conds) = nats_cluster_status(&ncs).await?;
        match cond(&conds, "Progressing") {
            Some(c) if c.status == "True" => Ok((nc, conds)),
            _ => Err(show(&conds)),
        }
    })
    .await;
    let st = nc.status.as_ref().unwrap();
    assert_eq!(st.common.observed_generation, nc.metadata.generation);
    assert!(st.config_hash.is_some());
    assert_eq!(
        cond(&conds, "Ready").unwrap().status,
        "False",
        "{}",
        show(&conds)
    );
    assert_eq!(cond(&conds, "Ready").unwrap().reason, "RollingOut");
    assert_eq!(
        cond(&conds, "ReconciliationPaused").unwrap().status,
        "False"
    );
    assert_eq!(cond(&conds, "Degraded").unwrap().status, "False");

    // The StatefulSet reports all pods ready (as the StatefulSet controller would): Ready.
    let sts = stss.get("nats").await.unwrap();
    let gen = sts.metadata.generation.unwrap();
    stss.patch_status(
        "nats",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": {
            "observedGeneration": gen, "replicas": 3, "readyReplicas": 3, "currentReplicas": 3,
            "updatedReplicas": 3, "currentRevision": "nats-1", "updateRevision": "nats-1"}})),
    )
    .await
    .unwrap();
    eventually("NatsCluster Ready", || async {
        let (nc, conds) = nats_cluster_status(&ncs).await?;
        let ready = cond(&conds, "Ready")
            .is_some_and(|c| c.status == "True" && c.reason == "AllReplicasReady");
        let progressing = cond(&conds, "Progressing").is_some_and(|c| c.status == "False");
        let counted = nc.status.as_ref().and_then(|s| s.ready_replicas) == Some(3);
        (ready && progressing && counted)
            .then_some(())
            .ok_or_else(|| show(&conds))
    })
    .await;

    // A deleted child comes back.
    cms.delete("nats-config", &DeleteParams::default())
        .await
        .unwrap();
    eventually("ConfigMap restored", || async {
        let cm = cms.get("nats-config").await.map_err(|e| e.to_string())?;
        (cm.metadata.deletion_timestamp.is_none() && owned_by(cm.owner_references(), &uid))
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    })
    .await;

    // --- pause: only the paused condition is written ---
    ncs.patch(
        "nats",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"paused": true, "replicas": 5}})),
    )
    .await
    .unwrap();
    eventually("ReconciliationPaused", || async {
        let (_, conds) = nats_cluster_status(&ncs).await?;
        cond(&conds, "ReconciliationPaused")
            .filter(|c| c.status == "True" && c.reason == "SpecPaused")
            .map(|_| ())
            .ok_or_else(|| show(&conds))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stss.get("nats").await.unwrap().spec.unwrap().replicas,
        Some(3)
    );
    ncs.patch(
        "nats",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"paused": false}})),
    )
    .await
    .unwrap();
    eventually("resumed and scaled to 5", || async {
        let (_, conds) = nats_cluster_status(&ncs).await?;
        let sts = stss.get("nats").await.map_err(|e| e.to_string())?;
        let unpaused = cond(&conds, "ReconciliationPaused").is_some_and(|c| c.status == "False");
        (unpaused && sts.spec.unwrap().replicas == Some(5))
            .then_some(())
            .ok_or_else(|| show(&conds))
    })
    .await;

    // podDisruptionBudget.enabled: false deletes the PDB we made.
    ncs.patch(
        "nats",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"podDisruptionBudget": {"enabled": false}}})),
    )
    .await
    .unwrap();
    eventually("PDB deleted", || gone(&pdbs, "nats")).await;

    // Events for the decisions.
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    eventually("events", || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let reasons: Vec<String> = list
            .items
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("nats"))
            .filter_map(|e| e.reason.clone())
            .collect();
        [
            "Created",
            "Ready",
            "Paused",
            "Resumed",
            "PodDisruptionBudgetDeleted",
        ]
        .iter()
        .all(|r| reasons.iter().any(|x| x == r))
        .then_some(())
        .ok_or_else(|| format!("{reasons:?}"))
    })
    .await;

    // --- Stream ---
    let nats = async_nats::connect(&broker.url).await.unwrap();
    let js = async_nats::jetstream::new(nats);
    let streams: Api<Stream> = Api::namespaced(client.clone(), ns);
    let s: Stream = example("stream.yaml", ns);
    streams.create(&pp, &s).await.unwrap();
    eventually("Stream created", || async {
        stream_ready(&streams, "orders", "True", "Created").await
    })
    .await;
    let info = js.get_stream("ORDERS").await.unwrap().cached_info().clone();
    assert_eq!(info.config.subjects, vec!["orders.>"]);
    assert_eq!(info.config.max_messages, 100_000);
    assert_eq!(info.config.max_age, Duration::from_secs(86_400));
    assert_eq!(
        info.config.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    assert_eq!(
        info.config.description.as_deref(),
        Some("orders from the shop")
    );
    let s = streams.get("orders").await.unwrap();
    assert!(s.finalizers().iter().any(|f| f == "natrix.io/stream"));

    // Editing the CR updates the stream.
    streams
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"maxMsgs": 500, "subjects": ["orders.>", "returns.>"]}})),
        )
        .await
        .unwrap();
    let c = eventually("Stream updated", || async {
        stream_ready(&streams, "orders", "True", "Updated").await
    })
    .await;
    assert!(
        c.message.contains("max_msgs: server 100000, spec 500"),
        "{}",
        c.message
    );
    let info = js.get_stream("ORDERS").await.unwrap().cached_info().clone();
    assert_eq!(info.config.max_messages, 500);
    assert_eq!(info.config.subjects.len(), 2);

    // Changed behind the operator's back: put back at the next resync.
    let mut changed = info.config.clone();
    changed.max_messages = 7;
    js.update_stream(&changed).await.unwrap();
    let c = eventually("drift corrected", || async {
        stream_ready(&streams, "orders", "True", "DriftCorrected").await
    })
    .await;
    assert!(
        c.message.contains("max_msgs: server 7, spec 500"),
        "{}",
        c.message
    );
    assert_eq!(
        js.get_stream("ORDERS")
            .await
            .unwrap()
            .cached_info()
            .config
            .max_messages,
        500
    );

    // Deleted behind the operator's back: restored.
    js.delete_stream("ORDERS").await.unwrap();
    eventually("stream restored", || async {
        stream_ready(&streams, "orders", "True", "Restored").await
    })
    .await;
    assert_eq!(
        js.get_stream("ORDERS")
            .await
            .unwrap()
            .cached_info()
            .config
            .max_messages,
        500
    );

    // A JetStream API error lands verbatim in the condition.
    let mut clash: Stream = example("stream.yaml", ns);
    clash.metadata.name = Some("clash".into());
    clash.spec.name = "CLASH".into();
    streams.create(&pp, &clash).await.unwrap();
    let c = eventually("create error", || async {
        stream_ready(&streams, "clash", "False", "CreateFailed").await
    })
    .await;
    assert!(
        c.message
            .contains("subjects overlap with an existing stream")
            && c.message.contains("error code 10065"),
        "{}",
        c.message
    );
    streams
        .delete("clash", &DeleteParams::default())
        .await
        .unwrap();

    // preventDelete: the CR goes, the stream stays.
    let mut keep: Stream = example("stream.yaml", ns);
    keep.metadata.name = Some("keep".into());
    keep.spec.name = "KEEP".into();
    keep.spec.subjects = vec!["keep.>".into()];
    keep.spec.prevent_delete = true;
    streams.create(&pp, &keep).await.unwrap();
    eventually("KEEP created", || async {
        stream_ready(&streams, "keep", "True", "Created").await
    })
    .await;
    streams
        .delete("keep", &DeleteParams::default())
        .await
        .unwrap();

    // Deleting the CR deletes the stream, then the finalizer goes.
    streams
        .delete("orders", &DeleteParams::default())
        .await
        .unwrap();
    for name in ["orders", "keep", "clash"] {
        eventually(&format!("Stream {name} gone"), || async {
            match streams.get_opt(name).await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(s) => Err(format!("still there, finalizers {:?}", s.finalizers())),
            }
        })
        .await;
    }
    assert!(
        js.get_stream("ORDERS").await.is_err(),
        "ORDERS should be deleted"
    );
    assert!(
        js.get_stream("KEEP").await.is_ok(),
        "KEEP should be kept (preventDelete)"
    );

    // An Account of a cluster not in operator mode says what to change.
    let accounts: Api<natrix_controller::crd::Account> = Api::namespaced(client.clone(), ns);
    let acc: natrix_controller::crd::Account = serde_json::from_value(serde_json::json!({
        "apiVersion": "natrix.io/v1alpha1", "kind": "Account",
        "metadata": {"name": "team-a", "namespace": ns},
        "spec": {"clusterRef": {"name": "nats"}},
    }))
    .unwrap();
    accounts.create(&pp, &acc).await.unwrap();
    eventually("Account status", || async {
        let a = accounts.get("team-a").await.map_err(|e| e.to_string())?;
        let conds = a.status.map(|s| s.common.conditions).unwrap_or_default();
        cond(&conds, "Ready")
            .filter(|c| {
                c.status == "False"
                    && c.reason == "ClusterNotReady"
                    && c.message.contains("spec.auth.operatorMode")
            })
            .map(|_| ())
            .ok_or_else(|| show(&conds))
    })
    .await;

    // Metrics and health on the operator's own port.
    let m = http_get(maddr, "/metrics").await;
    for ctl in ["natscluster", "stream"] {
        let line = m
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "natrix_controller_reconciliations_total{{controller=\"{ctl}\"}}"
                ))
            })
            .unwrap_or_else(|| panic!("no {ctl} count in {m}"));
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n > 0, "{line}");
    }
    assert!(http_get(maddr, "/healthz").await.ends_with("ok"));

    // Leader election: one holder at a time; released, the other takes over.
    let a = LeaseLock::new(
        client.clone(),
        ns,
        "natrix-e2e",
        "a",
        Duration::from_secs(15),
    );
    let b = LeaseLock::new(
        client.clone(),
        ns,
        "natrix-e2e",
        "b",
        Duration::from_secs(15),
    );
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(!b.try_acquire_or_renew().await.unwrap());
    assert!(a.try_acquire_or_renew().await.unwrap());
    a.release().await.unwrap();
    assert!(b.try_acquire_or_renew().await.unwrap());
    assert!(!a.try_acquire_or_renew().await.unwrap());

    // Owner references at work: deleting the NatsCluster garbage-collects its children
    // (needs kube-controller-manager's garbage collector).
    ncs.delete("nats", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually("children garbage-collected", || async {
        let sts = stss.get_opt("nats").await.map_err(|e| e.to_string())?;
        let cm = cms
            .get_opt("nats-config")
            .await
            .map_err(|e| e.to_string())?;
        (sts.is_none() && cm.is_none())
            .then_some(())
            .ok_or_else(|| "still there".to_string())
    })
    .await;
}

fn partition(sts: &StatefulSet) -> Option<i32> {
    sts.spec
        .as_ref()?
        .update_strategy
        .as_ref()?
        .rolling_update
        .as_ref()?
        .partition
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_upgrade_and_scale_down() {
    run_e2e("roll", "operator rolling upgrade e2e", run_rolling).await;
}

/// A health-gated rolling upgrade driven by the real StatefulSet controller (pods made Ready
/// by the test, `/healthz` from real brokers, one per pod), then the scale-down guard.
async fn run_rolling(setup: &Setup) {
    let (client, ns, kubeconfig) = (&setup.client, setup.ns.as_str(), &setup.kubeconfig);
    // Needs the StatefulSet controller of our own control plane (pods are simulated).
    if !setup.owns_cluster() {
        eprintln!("SKIPPED rolling upgrade e2e: needs a control plane of its own");
        return;
    }
    let Some(_stsc) = StatefulSetController::start(kubeconfig) else {
        return;
    };
    install_crds(client).await;
    let operator_client = operator_rbac(client, ns, kubeconfig).await;
    // One broker per pod; `/healthz` of pod roll-i is broker i's.
    let mports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let start = |i: usize| {
        let m = mports[i];
        move || Broker::jetstream(&format!("roll{i}"), &["-m".into(), m.to_string()])
    };
    let mut brokers = Vec::new();
    for i in 0..3 {
        brokers.push(Some(tokio::task::spawn_blocking(start(i)).await.unwrap()));
    }
    let settings = Settings {
        nats_urls: BTreeMap::from([(
            format!("{ns}/roll"),
            brokers[0].as_ref().unwrap().url.clone(),
        )]),
        monitor_urls: (0..3)
            .map(|i| {
                (
                    format!("{ns}/roll-{i}"),
                    format!("http://127.0.0.1:{}", mports[i]),
                )
            })
            .collect(),
        cluster_resync: Duration::from_secs(3),
        rollout_poll: Duration::from_secs(1),
        stream_resync: Duration::from_secs(2),
        ..Settings::default()
    };
    let operator = Operator::start(&operator_client, ns, settings, Arc::default()).await;
    let (kubelet, became_ready) = fake_kubelet(client, ns, "roll");
    struct Abort(tokio::task::JoinHandle<()>);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _kubelet = Abort(kubelet);

    let ncs: Api<NatsCluster> = Api::namespaced(client.clone(), ns);
    let stss: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut nc: NatsCluster = example("natscluster.yaml", ns);
    nc.metadata.name = Some("roll".into());
    nc.spec.image.tag = Some("1.0.0".into());
    ncs.create(&PostParams::default(), &nc).await.unwrap();
    let status = |want_reason: &'static str| {
        let ncs = ncs.clone();
        async move {
            let nc = ncs.get("roll").await.map_err(|e| e.to_string())?;
            let conds = nc.status.map(|s| s.common.conditions).unwrap_or_default();
            match cond(&conds, "Ready") {
                Some(c) if c.reason == want_reason => Ok(conds),
                _ => Err(show(&conds)),
            }
        }
    };
    // The StatefulSet controller makes the pods, the fake kubelet makes them Ready.
    eventually("roll Ready with three pods", || status("AllReplicasReady")).await;
    let sts = stss.get("roll").await.unwrap();
    assert_eq!(partition(&sts), Some(0));
    let rev1 = sts.status.unwrap().update_revision.unwrap();

    // Broker 2 is down: roll-2, updated first, will not answer /healthz.
    brokers[2] = None;
    ncs.patch(
        "roll",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"image": {"tag": "2.0.0"}}})),
    )
    .await
    .unwrap();
    let waiting = eventually("waiting on roll-2's /healthz", || async {
        let nc = ncs.get("roll").await.map_err(|e| e.to_string())?;
        let conds = nc.status.map(|s| s.common.conditions).unwrap_or_default();
        match cond(&conds, "Progressing") {
            Some(c)
                if c.status == "True"
                    && c.reason == "RollingUpdate"
                    && c.message.contains("waiting for pod roll-2")
                    && c.message.contains("/healthz") =>
            {
                Ok(c.message.clone())
            }
            _ => Err(show(&conds)),
        }
    })
    .await;
    assert!(waiting.contains("partition 2"), "{waiting}");
    let sts = stss.get("roll").await.unwrap();
    let rev2 = sts.status.clone().unwrap().update_revision.unwrap();
    assert_ne!(rev1, rev2);
    // Held: nothing below roll-2 restarts while it is unhealthy.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(partition(&stss.get("roll").await.unwrap()), Some(2));
    for (pod, rev) in [("roll-0", &rev1), ("roll-1", &rev1), ("roll-2", &rev2)] {
        let p = pods.get(pod).await.unwrap();
        assert_eq!(
            p.labels().get("controller-revision-hash"),
            Some(rev),
            "{pod}"
        );
    }

    // Broker 2 back: the rollout goes on, one pod at a time, down to roll-0.
    brokers[2] = Some(tokio::task::spawn_blocking(start(2)).await.unwrap());
    eventually("rollout complete", || async {
        let sts = stss.get("roll").await.map_err(|e| e.to_string())?;
        let st = sts.status.clone().unwrap_or_default();
        let nc = ncs.get("roll").await.map_err(|e| e.to_string())?;
        let conds = nc.status.map(|s| s.common.conditions).unwrap_or_default();
        let done = partition(&sts) == Some(0)
            && st.current_revision.as_deref() == Some(rev2.as_str())
            && cond(&conds, "Progressing").is_some_and(|c| c.status == "False")
            && cond(&conds, "Ready").is_some_and(|c| c.status == "True");
        done.then_some(())
            .ok_or_else(|| format!("partition {:?}; {}", partition(&sts), show(&conds)))
    })
    .await;
    let order: Vec<String> = became_ready
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, r)| *r == rev2)
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(
        order,
        vec!["roll-2", "roll-1", "roll-0"],
        "pods updated in this order"
    );

    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    eventually("rolling update events", || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let mine: Vec<(String, String)> = list
            .items
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("roll"))
            .map(|e| {
                (
                    e.reason.clone().unwrap_or_default(),
                    e.note.clone().unwrap_or_default(),
                )
            })
            .collect();
        let at = |r: &str, note: &str| mine.iter().position(|(x, n)| x == r && n.contains(note));
        let order = [
            at("RollingUpdateStarted", "holding all 3 pods"),
            at("RollingUpdate", "restarting roll-2"),
            at("RollingUpdateWaiting", "waiting for pod roll-2"),
            at(
                "RollingUpdate",
                "roll-2 is Ready and healthy; restarting roll-1",
            ),
            at(
                "RollingUpdate",
                "roll-1 is Ready and healthy; restarting roll-0",
            ),
            at("RollingUpdateComplete", "complete"),
        ];
        let complete_once = mine
            .iter()
            .filter(|(x, _)| x == "RollingUpdateComplete")
            .count()
            == 1;
        (order.iter().all(Option::is_some) && order.is_sorted() && complete_once)
            .then_some(())
            .ok_or_else(|| format!("{mine:?}"))
    })
    .await;

    // --- scale-down guard: a Stream resource with 3 replicas keeps 3 servers ---
    let streams: Api<Stream> = Api::namespaced(client.clone(), ns);
    let mut wide: Stream = example("stream.yaml", ns);
    wide.metadata.name = Some("wide".into());
    wide.spec.cluster_ref.name = "roll".into();
    wide.spec.name = "WIDE".into();
    wide.spec.subjects = vec!["wide.>".into()];
    wide.spec.replicas = 3;
    streams.create(&PostParams::default(), &wide).await.unwrap();
    ncs.patch(
        "roll",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    let msg = eventually("ScaleDownBlocked", || async {
        let nc = ncs.get("roll").await.map_err(|e| e.to_string())?;
        let conds = nc.status.map(|s| s.common.conditions).unwrap_or_default();
        cond(&conds, "Degraded")
            .filter(|c| c.status == "True" && c.reason == "ScaleDownBlocked")
            .map(|c| c.message.clone())
            .ok_or_else(|| show(&conds))
    })
    .await;
    assert!(
        msg.contains("stream WIDE") && msg.contains("has 3 replicas"),
        "{msg}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sts = stss.get("roll").await.unwrap();
    assert_eq!(sts.spec.unwrap().replicas, Some(3));
    eventually("ScaleDownBlocked event", || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("ScaleDownBlocked")
                    && e.type_.as_deref() == Some("Warning")
                    && e.note.as_deref().is_some_and(|n| n.contains("WIDE"))
            })
            .then_some(())
            .ok_or_else(|| "no event".to_string())
    })
    .await;

    // The stream goes: the scale-down proceeds (the brokers list no stream above 1 replica).
    streams
        .delete("wide", &DeleteParams::default())
        .await
        .unwrap();
    eventually("scaled down to 1", || async {
        let sts = stss.get("roll").await.map_err(|e| e.to_string())?;
        let nc = ncs.get("roll").await.map_err(|e| e.to_string())?;
        let conds = nc.status.map(|s| s.common.conditions).unwrap_or_default();
        let unblocked = cond(&conds, "Degraded").is_some_and(|c| c.reason != "ScaleDownBlocked");
        (sts.spec.and_then(|s| s.replicas) == Some(1) && unblocked)
            .then_some(())
            .ok_or_else(|| show(&conds))
    })
    .await;

    ncs.delete("roll", &DeleteParams::default()).await.unwrap();
    eprintln!("rolling upgrade and scale-down guard checked (pods became Ready: {order:?})");
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_monitor() {
    run_e2e("podmon", "operator PodMonitor e2e", run_pod_monitor).await;
}

/// `metrics`: the pods' scrape annotations; `metrics.podMonitor` without the PodMonitor CRD
/// (Degraded PodMonitorUnavailable and a Warning event, the rest reconciled), then with a
/// minimal CRD installed (the PodMonitor applied, owned, selecting the pods), turned off
/// (deleted), and garbage-collected with its NatsCluster.
async fn run_pod_monitor(setup: &Setup) {
    let (client, ns, kubeconfig) = (&setup.client, setup.ns.as_str(), &setup.kubeconfig);
    // Garbage collection needs the kube-controller-manager of our own control plane.
    let gc = setup.owns_cluster();
    install_crds(client).await;
    let operator_client = operator_rbac(client, ns, kubeconfig).await;
    let settings = Settings {
        // The operator does not watch PodMonitors (their CRD may be missing): a short
        // resync notices the CRD installed below.
        cluster_resync: Duration::from_secs(2),
        ..Settings::default()
    };
    let operator = Operator::start(&operator_client, ns, settings, Arc::default()).await;

    let ncs: Api<NatsCluster> = Api::namespaced(client.clone(), ns);
    let stss: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pm_ar = natrix_controller::render::pod_monitor_resource();
    let pms: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &pm_ar);
    let crd_name = "podmonitors.monitoring.coreos.com";
    // Another run against the same cluster may have left the CRD.
    if crds.get_opt(crd_name).await.unwrap().is_some() {
        crds.delete(crd_name, &DeleteParams::default())
            .await
            .unwrap();
        eventually("the PodMonitor CRD gone", || gone(&crds, crd_name)).await;
    }

    let mut nc: NatsCluster = example("natscluster.yaml", ns);
    nc.metadata.name = Some("mon".into());
    nc.spec.ports.monitor = 8333;
    nc.spec.metrics.pod_monitor = true;
    let nc = ncs.create(&PostParams::default(), &nc).await.unwrap();
    let uid = nc.uid().unwrap();

    // No PodMonitor CRD: Degraded says what to do, the children are there all the same.
    let degraded = eventually("Degraded PodMonitorUnavailable", || async {
        let c = ncs.get("mon").await.map_err(|e| e.to_string())?;
        let conds = c.status.map(|s| s.common.conditions).unwrap_or_default();
        cond(&conds, "Degraded")
            .filter(|c| c.status == "True" && c.reason == "PodMonitorUnavailable")
            .cloned()
            .ok_or_else(|| show(&conds))
    })
    .await;
    assert!(
        degraded
            .message
            .contains("install the Prometheus Operator (or its PodMonitor CRD)"),
        "{}",
        degraded.message
    );
    assert!(degraded.message.contains(&format!("{ns}/mon")));
    let sts = stss.get("mon").await.unwrap();
    let ann = sts
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], "8333");
    assert_eq!(ann["prometheus.io/path"], "/metrics");
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let event_reasons = || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok::<Vec<(String, String)>, String>(
            list.items
                .iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("mon"))
                .map(|e| {
                    (
                        e.reason.clone().unwrap_or_default(),
                        e.type_.clone().unwrap_or_default(),
                    )
                })
                .collect(),
        )
    };
    eventually("a PodMonitorUnavailable Warning event", || async {
        let got = event_reasons().await?;
        got.iter()
            .any(|(r, t)| r == "PodMonitorUnavailable" && t == "Warning")
            .then_some(())
            .ok_or_else(|| format!("{got:?}"))
    })
    .await;

    // The CRD installed: the PodMonitor appears, owned by the cluster, selecting its pods.
    crds.create(&PostParams::default(), &pod_monitor_crd())
        .await
        .unwrap();
    let pm = eventually("PodMonitor mon", || async {
        pms.get_opt("mon")
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    assert!(owned_by(pm.owner_references(), &uid), "{pm:?}");
    let sel = sts_selector(&stss, "mon").await;
    assert_eq!(pm.data["spec"]["selector"]["matchLabels"], sel);
    assert_eq!(
        pm.data["spec"]["podMetricsEndpoints"],
        serde_json::json!([{"port": "monitor", "path": "/metrics"}])
    );
    eventually("Degraded clears", || async {
        let c = ncs.get("mon").await.map_err(|e| e.to_string())?;
        let conds = c.status.map(|s| s.common.conditions).unwrap_or_default();
        cond(&conds, "Degraded")
            .filter(|c| c.reason != "PodMonitorUnavailable")
            .map(|_| ())
            .ok_or_else(|| show(&conds))
    })
    .await;

    // Turned off: deleted.
    ncs.patch(
        "mon",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"metrics": {"podMonitor": false}}})),
    )
    .await
    .unwrap();
    eventually("PodMonitor deleted", || gone(&pms, "mon")).await;
    eventually("PodMonitorCreated and PodMonitorDeleted events", || async {
        let got = event_reasons().await?;
        ["PodMonitorCreated", "PodMonitorDeleted"]
            .iter()
            .all(|want| got.iter().any(|(r, _)| r == want))
            .then_some(())
            .ok_or_else(|| format!("{got:?}"))
    })
    .await;

    // Back on, then the NatsCluster deleted: the garbage collector takes the PodMonitor.
    ncs.patch(
        "mon",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"metrics": {"podMonitor": true}}})),
    )
    .await
    .unwrap();
    eventually("PodMonitor back", || async {
        pms.get_opt("mon")
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    operator.shutdown().await;
    ncs.delete("mon", &DeleteParams::foreground())
        .await
        .unwrap();
    if gc {
        eventually("PodMonitor garbage-collected", || gone(&pms, "mon")).await;
    }
    crds.delete(crd_name, &DeleteParams::default())
        .await
        .unwrap();
}

/// The `matchLabels` of a StatefulSet's selector, as JSON.
async fn sts_selector(stss: &Api<StatefulSet>, name: &str) -> serde_json::Value {
    let sts = stss.get(name).await.unwrap();
    serde_json::to_value(sts.spec.unwrap().selector.match_labels).unwrap()
}
