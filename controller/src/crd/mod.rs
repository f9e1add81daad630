//! Custom resources of the `natrix.io/v1alpha1` API: NatsCluster, Account, Stream.

mod account;
#[cfg(test)]
mod cel_tests;
mod cluster;
mod stream;

pub use account::*;
pub use cluster::*;
pub use stream::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every Natrix resource.
pub const GROUP: &str = "natrix.io";
/// API version of every Natrix resource.
pub const VERSION: &str = "v1alpha1";

/// Condition type: the resource is in its desired state.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: the operator is moving the resource towards its desired state.
pub const CONDITION_PROGRESSING: &str = "Progressing";
/// Condition type: the resource works but not fully (e.g. a broker is down).
pub const CONDITION_DEGRADED: &str = "Degraded";
/// Condition type: `spec.paused` is set; the operator makes no writes.
pub const CONDITION_RECONCILIATION_PAUSED: &str = "ReconciliationPaused";

/// Pattern of a Kubernetes/Go duration such as `30s`, `1h30m` or `500ms` (no `d`: `24h` instead).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";
/// Pattern of a storage size: an integer with an optional Kubernetes quantity suffix.
pub const SIZE_PATTERN: &str = r"^[0-9]+(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$";
/// Pattern of a DNS-1123 label (names of Kubernetes objects we refer to).
pub const NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// Observed generation and conditions, shared by every resource's status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing, Degraded, ReconciliationPaused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A reference to a NatsCluster in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    /// Name of the NatsCluster.
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub name: String,
}

/// A reference to an Account in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountRef {
    /// Name of the Account resource.
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub name: String,
}

/// Every CRD with the file name `crdgen` writes it to.
pub fn all_crds() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("natsclusters.natrix.io.yaml", NatsCluster::crd()),
        ("accounts.natrix.io.yaml", Account::crd()),
        ("streams.natrix.io.yaml", Stream::crd()),
    ]
}

/// Serialize a CRD as the YAML `crdgen` writes.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_norway::Error> {
    serde_norway::to_string(crd)
}

/// Why the CRDs could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteCrdsError {
    /// Creating the directory or writing a file failed.
    #[error("writing CRDs: {0}")]
    Io(#[from] std::io::Error),
    /// Serializing a CRD failed.
    #[error("serializing a CRD: {0}")]
    Yaml(#[from] serde_norway::Error),
}

/// Write every CRD into `dir` (one file each); returns the paths written.
pub fn write_crds(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>, WriteCrdsError> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    for (file, crd) in all_crds() {
        let path = dir.join(file);
        std::fs::write(&path, crd_yaml(&crd)?)?;
        out.push(path);
    }
    Ok(out)
}
