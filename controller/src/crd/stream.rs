//! The `Stream` resource: a JetStream stream with NACK v1beta2 field parity.

// `printcolumn(type_ = ...)` repeats per column: not a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AccountRef, ClusterRef, CommonStatus, DURATION_PATTERN};

/// Pattern of a stream name: no whitespace, `.`, `*`, `>`, path separators.
pub const STREAM_NAME_PATTERN: &str = r"^[^.*>/\\\s]+$";

/// Desired state of a JetStream stream.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "natrix.io",
    version = "v1alpha1",
    kind = "Stream",
    namespaced,
    status = "StreamStatus",
    shortname = "nstr",
    category = "natrix",
    doc = "A JetStream stream",
    printcolumn(name = "Stream", type_ = "string", json_path = ".spec.name"),
    printcolumn(name = "Subjects", type_ = "string", json_path = ".spec.subjects"),
    printcolumn(name = "Storage", type_ = "string", json_path = ".spec.storage"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!has(self.mirror) || !has(self.subjects) || size(self.subjects) == 0").message("a mirror stream cannot have subjects"))]
#[x_kube(validation = Rule::new("!has(self.mirror) || !has(self.sources) || size(self.sources) == 0").message("a mirror stream cannot have sources"))]
#[x_kube(validation = Rule::new("has(self.accountRef) == has(oldSelf.accountRef) && (!has(self.accountRef) || self.accountRef == oldSelf.accountRef)").message("accountRef is immutable: the stream lives in that account; create a new Stream"))]
#[serde(rename_all = "camelCase")]
pub struct StreamSpec {
    /// The NatsCluster serving the stream (immutable).
    #[x_kube(validation = Rule::new("self == oldSelf").message("clusterRef is immutable: the stream lives in that cluster; create a new Stream"))]
    pub cluster_ref: ClusterRef,
    /// The Account owning the stream; the global account when unset (immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_ref: Option<AccountRef>,
    /// Stream name in JetStream (immutable).
    #[schemars(regex(pattern = STREAM_NAME_PATTERN), length(min = 1, max = 255))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("name is immutable"))]
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Subjects stored by the stream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// Retention policy.
    #[serde(default)]
    pub retention: Retention,
    /// Maximum consumers (-1: unlimited).
    #[serde(default = "minus_one")]
    #[schemars(range(min = -1))]
    pub max_consumers: i64,
    /// Maximum messages (-1: unlimited).
    #[serde(default = "minus_one")]
    #[schemars(range(min = -1))]
    pub max_msgs: i64,
    /// Maximum messages per subject (-1: unlimited).
    #[serde(default = "minus_one")]
    #[schemars(range(min = -1))]
    pub max_msgs_per_subject: i64,
    /// Maximum bytes (-1: unlimited).
    #[serde(default = "minus_one")]
    #[schemars(range(min = -1))]
    pub max_bytes: i64,
    /// Maximum age of a message, a duration such as `24h` (`1d` is rejected); unlimited when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub max_age: Option<String>,
    /// Maximum message size (-1: unlimited).
    #[serde(default = "minus_one")]
    #[schemars(range(min = -1))]
    pub max_msg_size: i64,
    /// Storage backend (immutable); file unless set.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage is immutable"))]
    pub storage: Storage,
    /// What to discard when a limit is reached.
    #[serde(default)]
    pub discard: Discard,
    /// Apply `discard: new` per subject.
    #[serde(default)]
    pub discard_per_subject: bool,
    /// Replicas.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: i32,
    /// Do not acknowledge publishes.
    #[serde(default)]
    pub no_ack: bool,
    /// Window for duplicate detection, a duration such as `2m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub duplicate_window: Option<String>,
    /// Placement of the stream's replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// Mirror another stream (excludes subjects and sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<StreamSource>,
    /// Source messages from other streams.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<StreamSource>,
    /// Transform subjects of stored messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_transform: Option<SubjectTransform>,
    /// Republish stored messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republish: Option<Republish>,
    /// Seal the stream (no more writes or deletes).
    #[serde(default)]
    pub sealed: bool,
    /// Refuse message deletes.
    #[serde(default)]
    pub deny_delete: bool,
    /// Refuse purges.
    #[serde(default)]
    pub deny_purge: bool,
    /// Allow `Nats-Rollup` headers.
    #[serde(default)]
    pub allow_rollup: bool,
    /// Allow direct gets.
    #[serde(default)]
    pub allow_direct: bool,
    /// Allow direct gets from mirrors.
    #[serde(default)]
    pub mirror_direct: bool,
    /// First sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub first_sequence: Option<u64>,
    /// Compression of file storage.
    #[serde(default)]
    pub compression: Compression,
    /// Stream metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Never delete the JetStream stream when this resource is deleted.
    #[serde(default)]
    pub prevent_delete: bool,
    /// Never update the JetStream stream after creation.
    #[serde(default)]
    pub prevent_update: bool,
}

fn minus_one() -> i64 {
    -1
}
fn one() -> i32 {
    1
}

/// Retention policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Keep messages up to the limits.
    #[default]
    Limits,
    /// Keep messages while a consumer is interested.
    Interest,
    /// Remove messages once acknowledged.
    Workqueue,
}

/// Storage backend.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// On disk (the default, unlike NACK's memory default).
    #[default]
    File,
    /// In memory.
    Memory,
}

/// Discard policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Discard {
    /// Drop the oldest messages.
    #[default]
    Old,
    /// Refuse new messages.
    New,
}

/// Compression of file storage.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// S2.
    S2,
}

/// Placement constraints.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// Cluster name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Server tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// A mirror or source.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamSource {
    /// Origin stream name.
    #[schemars(regex(pattern = STREAM_NAME_PATTERN))]
    pub name: String,
    /// Start at this sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_seq: Option<u64>,
    /// Start at this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    /// Only messages on this subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_subject: Option<String>,
    /// API prefix of another domain or account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_api_prefix: Option<String>,
    /// Delivery prefix of another domain or account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_deliver_prefix: Option<String>,
    /// Subject transforms applied to sourced messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_transforms: Vec<SubjectTransform>,
}

/// A subject transform.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectTransform {
    /// Source subject filter.
    pub source: String,
    /// Destination subject.
    pub dest: String,
}

/// Republish configuration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Republish {
    /// Source subject filter.
    pub source: String,
    /// Destination subject.
    pub destination: String,
    /// Republish headers only.
    #[serde(default)]
    pub headers_only: bool,
}

/// Observed state of a Stream.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamStatus {
    /// Generation and conditions.
    #[serde(flatten)]
    pub common: CommonStatus,
}
