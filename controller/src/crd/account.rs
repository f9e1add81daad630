//! The `Account` resource: a JWT account pushed to a NatsCluster's resolver, with its users.

// `printcolumn(type_ = ...)` repeats per column: not a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ClusterRef, CommonStatus, DURATION_PATTERN, NAME_PATTERN, SIZE_PATTERN};

/// Desired state of a NATS account.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "natrix.io",
    version = "v1alpha1",
    kind = "Account",
    namespaced,
    status = "AccountStatus",
    shortname = "nacc",
    category = "natrix",
    doc = "A NATS account (JWT) and its users",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Key",
        type_ = "string",
        json_path = ".status.accountPublicKey",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!has(self.limits.imports) || self.limits.imports < 0 || (has(self.imports) ? size(self.imports) : 0) <= self.limits.imports").message("more imports than limits.imports: the brokers would refuse the account JWT; raise the limit or remove imports"))]
#[x_kube(validation = Rule::new("!has(self.limits.exports) || self.limits.exports < 0 || (has(self.exports) ? size(self.exports) : 0) <= self.limits.exports").message("more exports than limits.exports: the brokers would refuse the account JWT; raise the limit or remove exports"))]
#[serde(rename_all = "camelCase")]
pub struct AccountSpec {
    /// The NatsCluster this account lives in (immutable).
    #[x_kube(validation = Rule::new("self == oldSelf").message("clusterRef is immutable: the account's keys and JWT belong to that cluster's operator; create a new Account"))]
    pub cluster_ref: ClusterRef,
    /// Core NATS limits (-1 or unset: unlimited).
    #[serde(default)]
    pub limits: AccountLimits,
    /// JetStream limits; JetStream is disabled for the account when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jetstream: Option<JetStreamLimits>,
    /// Subjects this account exports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<Export>,
    /// Subjects this account imports from other accounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<Import>,
    /// Users; each gets a creds Secret `<account>-<user>-creds`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<User>,
}

/// Core NATS account limits.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountLimits {
    /// Maximum connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub conn: Option<i64>,
    /// Maximum subscriptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub subs: Option<i64>,
    /// Maximum bytes in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub data: Option<i64>,
    /// Maximum message payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub payload: Option<i64>,
    /// Maximum imports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub imports: Option<i64>,
    /// Maximum exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub exports: Option<i64>,
    /// Allow wildcard exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wildcards: Option<bool>,
}

/// JetStream account limits.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JetStreamLimits {
    /// Memory storage (a quantity such as `1Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SIZE_PATTERN))]
    pub mem_storage: Option<String>,
    /// File storage (a quantity such as `10Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SIZE_PATTERN))]
    pub disk_storage: Option<String>,
    /// Maximum streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub streams: Option<i64>,
    /// Maximum consumers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub consumers: Option<i64>,
    /// Maximum unacknowledged messages per consumer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub max_ack_pending: Option<i64>,
}

/// Kind of an export or import.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportType {
    /// A message stream.
    #[default]
    Stream,
    /// A request/reply service.
    Service,
}

/// An export.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Export {
    /// Exported subject (wildcards allowed).
    #[schemars(length(min = 1))]
    pub subject: String,
    /// Stream or service.
    #[serde(default, rename = "type")]
    pub kind: ExportType,
    /// Importers need an activation token.
    #[serde(default)]
    pub token_required: bool,
}

/// An import from another Account resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Import {
    /// The exporting Account resource (same namespace).
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub account: String,
    /// Subject as exported.
    #[schemars(length(min = 1))]
    pub subject: String,
    /// Local subject (defaults to the exported one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_subject: Option<String>,
    /// Stream or service.
    #[serde(default, rename = "type")]
    pub kind: ExportType,
}

/// A user of the account.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// User name (part of the creds Secret's name).
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// Publish and subscribe permissions; everything when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Permissions>,
    /// Lifetime of the user JWT (e.g. `720h`); no expiry when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub expiry: Option<String>,
}

/// Publish and subscribe permissions.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Permissions {
    /// Publish permission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<SubjectPermission>,
    /// Subscribe permission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<SubjectPermission>,
    /// Allow publishing to reply subjects of received requests.
    #[serde(default)]
    pub allow_responses: bool,
}

/// Allow and deny lists of subjects.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectPermission {
    /// Allowed subjects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Denied subjects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// Observed state of an Account.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountStatus {
    /// Generation and conditions.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The account's public nkey (`A...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_public_key: Option<String>,
    /// Hash of the last pushed account JWT claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims_hash: Option<String>,
    /// Result of the last push, per server name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub push_results: BTreeMap<String, PushResult>,
}

/// One server's answer to a claims push.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushResult {
    /// The server acknowledged the JWT.
    pub ok: bool,
    /// The server's message (error text on failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
