//! The `NatsCluster` resource: a StatefulSet of natrix-broker pods and everything around it.

// `printcolumn(type_ = ...)` repeats per column: not a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{CommonStatus, DURATION_PATTERN, NAME_PATTERN, SIZE_PATTERN};

/// Desired state of a NATS cluster run by natrix-broker.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "natrix.io",
    version = "v1alpha1",
    kind = "NatsCluster",
    namespaced,
    status = "NatsClusterStatus",
    shortname = "nc",
    shortname = "natsc",
    category = "natrix",
    doc = "A NATS cluster of natrix-broker servers",
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.auth.operatorMode == self.resolver.enabled").message("auth.operatorMode and resolver.enabled go together: operator mode pushes the accounts to the full resolver; set both or neither"))]
#[x_kube(validation = Rule::new("!self.metrics.podMonitor || self.metrics.enabled").message("metrics.podMonitor needs metrics.enabled: true"))]
#[x_kube(validation = Rule::new("self.ports.client != self.ports.cluster && self.ports.client != self.ports.monitor && self.ports.cluster != self.ports.monitor").message("ports.client, ports.cluster and ports.monitor must be three different ports"))]
#[serde(rename_all = "camelCase")]
pub struct NatsClusterSpec {
    /// Number of servers (pods).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 15))]
    pub replicas: i32,
    /// Container image of natrix-broker.
    #[serde(default)]
    pub image: ImageSpec,
    /// Secrets for pulling the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Listener ports.
    #[serde(default)]
    pub ports: PortsSpec,
    /// JetStream persistence.
    #[serde(default)]
    pub jetstream: JetStreamSpec,
    /// The full account resolver (JWT accounts stored on a PVC); requires `auth.operatorMode`.
    #[serde(default)]
    pub resolver: ResolverSpec,
    /// TLS per listener from Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Authentication: operator (JWT) mode and the system account.
    #[serde(default)]
    pub auth: AuthSpec,
    /// Lame duck mode on pod termination.
    #[serde(default)]
    pub lame_duck: LameDuckSpec,
    /// Resources of the broker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Pod template overrides.
    #[serde(default)]
    pub pod: PodOverrides,
    /// The PodDisruptionBudget.
    #[serde(default)]
    pub pod_disruption_budget: PdbSpec,
    /// Prometheus metrics of the brokers (`/metrics` on the monitor port).
    #[serde(default)]
    pub metrics: MetricsSpec,
    /// Stop all writes by the operator to this cluster's objects.
    #[serde(default)]
    pub paused: bool,
    /// Extra nats.conf keys, deep-merged over the rendered configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::crd::cluster::free_form_object")]
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
}

fn default_replicas() -> i32 {
    3
}

/// Schema of a free-form object (kept as is by the API server).
pub(crate) fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Container image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Image repository.
    #[serde(default = "default_repository")]
    #[schemars(length(min = 1))]
    pub repository: String,
    /// Image tag; the operator's own version when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Pull policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
}

impl Default for ImageSpec {
    fn default() -> Self {
        Self {
            repository: default_repository(),
            tag: None,
            pull_policy: None,
        }
    }
}

fn default_repository() -> String {
    "ghcr.io/natrix-io/natrix".into()
}

/// Image pull policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull when absent.
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Listener ports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortsSpec {
    /// Client port.
    #[serde(default = "default_client_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub client: i32,
    /// Cluster (route) port.
    #[serde(default = "default_cluster_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub cluster: i32,
    /// HTTP monitoring port (probes, /varz, /metrics).
    #[serde(default = "default_monitor_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub monitor: i32,
}

impl Default for PortsSpec {
    fn default() -> Self {
        Self {
            client: default_client_port(),
            cluster: default_cluster_port(),
            monitor: default_monitor_port(),
        }
    }
}

fn default_client_port() -> i32 {
    4222
}
fn default_cluster_port() -> i32 {
    6222
}
fn default_monitor_port() -> i32 {
    8222
}

/// JetStream settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.enabled == oldSelf.enabled").message("jetstream.enabled is immutable: it adds or removes the StatefulSet's data volume claim, and volumeClaimTemplates cannot change; create a new NatsCluster"))]
#[x_kube(validation = Rule::new("!self.enabled || self.fileStorage == oldSelf.fileStorage").message("jetstream.fileStorage (size, storageClassName) is immutable: the StatefulSet's volumeClaimTemplates cannot change; resize the data-<pod> PVCs themselves if their StorageClass allows it"))]
#[serde(rename_all = "camelCase")]
pub struct JetStreamSpec {
    /// Enable JetStream.
    #[serde(default)]
    pub enabled: bool,
    /// File storage on a PVC mounted at /data.
    #[serde(default)]
    pub file_storage: StorageSpec,
    /// Memory storage limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_storage: Option<MemoryStorageSpec>,
}

/// A PVC.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of the volume (a Kubernetes quantity such as `10Gi`).
    #[serde(default = "default_js_size")]
    #[schemars(regex(pattern = SIZE_PATTERN))]
    pub size: String,
    /// Storage class; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_js_size(),
            storage_class_name: None,
        }
    }
}

fn default_js_size() -> String {
    "10Gi".into()
}

/// Memory storage limit.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStorageSpec {
    /// Maximum memory for memory-backed streams (a quantity such as `1Gi`).
    #[schemars(regex(pattern = SIZE_PATTERN))]
    pub max_size: String,
}

/// The full account resolver.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.enabled == oldSelf.enabled").message("resolver.enabled is immutable: it adds or removes the StatefulSet's resolver volume claim, and volumeClaimTemplates cannot change; create a new NatsCluster"))]
#[x_kube(validation = Rule::new("!self.enabled || self.storage == oldSelf.storage").message("resolver.storage (size, storageClassName) is immutable: the StatefulSet's volumeClaimTemplates cannot change; resize the resolver-<pod> PVCs themselves if their StorageClass allows it"))]
#[serde(rename_all = "camelCase")]
pub struct ResolverSpec {
    /// Enable the full resolver.
    #[serde(default)]
    pub enabled: bool,
    /// The resolver PVC, mounted at /data/resolver.
    #[serde(default = "default_resolver_storage")]
    pub storage: StorageSpec,
}

impl Default for ResolverSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            storage: default_resolver_storage(),
        }
    }
}

fn default_resolver_storage() -> StorageSpec {
    StorageSpec {
        size: "1Gi".into(),
        storage_class_name: None,
    }
}

/// TLS per listener.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// TLS for clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ListenerTls>,
    /// TLS for routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ListenerTls>,
    /// CA bundle used to verify peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<SecretKeyRef>,
}

/// A listener's certificate from a `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    /// Secret holding `tls.crt` and `tls.key`.
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub secret_name: String,
    /// Require and verify client certificates.
    #[serde(default)]
    pub verify: bool,
}

/// A key in a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub secret_name: String,
    /// Key in the Secret.
    #[serde(default = "default_ca_key")]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca.crt".into()
}

/// Authentication.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.operatorMode == oldSelf.operatorMode").message("auth.operatorMode is immutable: the operator keys, the accounts and the brokers' resolver exist for one mode; create a new NatsCluster"))]
#[x_kube(validation = Rule::new("!self.operatorMode || self.systemAccount == oldSelf.systemAccount").message("auth.systemAccount is immutable in operator mode: the system account was generated once, under this name, in Secret <cluster>-operator"))]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Operator (JWT) mode: the operator generates the operator keys and signs Accounts.
    #[serde(default)]
    pub operator_mode: bool,
    /// Name of the system account.
    #[serde(default = "default_system_account")]
    pub system_account: String,
    /// How the operator itself logs in to the client port (Streams, the scale-down guard) when
    /// the cluster is not in operator mode but its `config` requires users or `tls.client`
    /// verifies client certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_client: Option<OperatorClientSpec>,
}

impl Default for AuthSpec {
    fn default() -> Self {
        Self {
            operator_mode: false,
            system_account: default_system_account(),
            operator_client: None,
        }
    }
}

/// The operator's login and client certificate on the client port, from Secrets in the
/// cluster's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatorClientSpec {
    /// Secret with the login: `username` and `password` (a `kubernetes.io/basic-auth`
    /// Secret), or `token`, or `nkey` (a user seed), or `user.creds` (a creds file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub credentials_secret_name: Option<String>,
    /// `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`) with the client certificate the
    /// operator presents; needed when `tls.client.verify` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub tls_secret_name: Option<String>,
}

fn default_system_account() -> String {
    "SYS".into()
}

/// Lame duck mode: on SIGTERM the broker stops accepting and drains its clients.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LameDuckSpec {
    /// Wait before the first client is evicted.
    #[serde(default = "default_grace")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub grace_period: String,
    /// Time over which clients are evicted.
    #[serde(default = "default_ldm_duration")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub duration: String,
}

impl Default for LameDuckSpec {
    fn default() -> Self {
        Self {
            grace_period: default_grace(),
            duration: default_ldm_duration(),
        }
    }
}

fn default_grace() -> String {
    "10s".into()
}
fn default_ldm_duration() -> String {
    "30s".into()
}

/// Overrides of the broker pod template.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Extra pod labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Tolerations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Topology spread constraints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Service account of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

/// The PodDisruptionBudget.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PdbSpec {
    /// Create a PodDisruptionBudget.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Pods that may be down at once.
    #[serde(default = "default_max_unavailable")]
    #[schemars(range(min = 1))]
    pub max_unavailable: i32,
}

impl Default for PdbSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            max_unavailable: default_max_unavailable(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_max_unavailable() -> i32 {
    1
}

/// Prometheus metrics: the brokers serve them at `/metrics` on the monitor port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// Annotate the pods for scraping (`prometheus.io/scrape`, `prometheus.io/port`, `prometheus.io/path`).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Server-side apply a Prometheus Operator PodMonitor (`monitoring.coreos.com/v1`) for the
    /// pods; needs `enabled` and the PodMonitor CRD.
    #[serde(default)]
    pub pod_monitor: bool,
}

impl Default for MetricsSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            pod_monitor: false,
        }
    }
}

/// Observed state of a NatsCluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NatsClusterStatus {
    /// Generation and conditions.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Pods created by the StatefulSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Pods passing their readiness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Checksum of the rendered nats.conf last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// The pod a rolling update waits on and since when (for `--rollout-deadline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_wait: Option<RolloutWait>,
}

/// The pod a rolling update waits on, and since when.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutWait {
    /// Pod name.
    pub pod: String,
    /// When the rollout started waiting on it.
    pub since: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}
