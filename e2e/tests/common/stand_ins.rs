//! Stand-ins for what the test control plane lacks: the StatefulSet controller, a kubelet
//! making pods Ready, an OTLP collector, and the Prometheus Operator's PodMonitor CRD.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};

use super::k8s_bin;

/// A string attribute of an OTLP JSON attribute list.
pub fn otlp_attr<'a>(attrs: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    attrs.as_array()?.iter().find(|a| a["key"] == key)?["value"]["stringValue"].as_str()
}

/// A minimal OTLP/HTTP collector on 127.0.0.1 (HTTP/1.1 keep-alive, `Content-Length` bodies):
/// its base URL and every JSON body POSTed to `/v1/traces`.
pub async fn otlp_collector() -> (String, Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut s = tokio::io::BufReader::new(s);
                loop {
                    let (mut path, mut len, mut line) = (String::new(), 0usize, String::new());
                    loop {
                        line.clear();
                        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if path.is_empty() {
                            path = l.split_whitespace().nth(1).unwrap_or_default().into();
                        } else if let Some((k, v)) = l.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; len];
                    if s.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    if path == "/v1/traces" {
                        if let Ok(v) = serde_json::from_slice(&body) {
                            sink.lock().unwrap().push(v);
                        }
                    }
                    let ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
                    if s.get_mut().write_all(ok.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), got)
}

/// kube-controller-manager running only the StatefulSet controller (the shared test
/// control plane runs garbage collection and service accounts only); killed on drop.
pub struct StatefulSetController(Child);

impl StatefulSetController {
    /// Starts it on `kubeconfig`'s cluster; None (with a SKIPPED message) without the binary.
    pub fn start(kubeconfig: &Path) -> Option<StatefulSetController> {
        let bin = k8s_bin().join("kube-controller-manager");
        if !bin.exists() {
            eprintln!(
                "SKIPPED rolling upgrade e2e: no {} (the StatefulSet controller)",
                bin.display()
            );
            return None;
        }
        let log = kubeconfig.with_file_name("statefulset-controller.log");
        let child = Command::new(bin)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args([
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--port=0",
                "--controllers=statefulset",
                "--leader-elect=false",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Some(StatefulSetController(child))
    }
}

impl Drop for StatefulSetController {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (pod, revision) of the pods the fake kubelet made Ready, in order.
pub type BecameReady = Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// Stands in for the kubelet: every pod of `instance` that is not Ready becomes Running and
/// Ready; returns (pod, revision) in the order they became Ready.
pub fn fake_kubelet(
    client: &Client,
    ns: &str,
    instance: &str,
) -> (tokio::task::JoinHandle<()>, BecameReady) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = seen.clone();
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/instance={instance}"));
    let task = tokio::spawn(async move {
        loop {
            if let Ok(list) = pods.list(&lp).await {
                for p in list.items {
                    let ready = p
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| {
                            c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                    if ready || p.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    let name = p.name_any();
                    let rev = p.labels().get("controller-revision-hash").cloned();
                    let patch = serde_json::json!({"status": {
                        "phase": "Running", "podIP": "127.0.0.1",
                        "conditions": [{"type": "Ready", "status": "True"}]}});
                    if pods
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                        .await
                        .is_ok()
                    {
                        seen.lock().unwrap().push((name, rev.unwrap_or_default()));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    (task, out)
}

/// A minimal `monitoring.coreos.com/v1` PodMonitor CRD (the Prometheus Operator's group,
/// version, kind and plural; a schema keeping every field).
pub fn pod_monitor_crd() -> CustomResourceDefinition {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "podmonitors.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"kind": "PodMonitor", "listKind": "PodMonitorList",
                      "plural": "podmonitors", "singular": "podmonitor"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {
                              "type": "object",
                              "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))
    .unwrap()
}
