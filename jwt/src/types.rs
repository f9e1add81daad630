//! Serde types of the nats-io/jwt v2 schema (field names as in the Go `json` tags).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Unknown JSON fields kept for round-tripping.
pub type Extra = Map<String, Value>;

/// `NoLimit` of nats-io/jwt.
pub const NO_LIMIT: i64 = -1;

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// The registered JWT fields shared by every claim kind (Go `ClaimsData`), plus the `nats` section.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct JwtClaims<T> {
    /// Audience.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub aud: String,
    /// Expiry (unix seconds, 0 = never).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub exp: i64,
    /// JWT id: base32 (no padding) of SHA-512/256 of the claims data.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    /// Issued at (unix seconds).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub iat: i64,
    /// Issuer public nkey.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub iss: String,
    /// Friendly name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Not before (unix seconds, 0 = always).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nbf: i64,
    /// Subject public nkey.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sub: String,
    /// The nats-specific section.
    #[serde(default)]
    pub nats: T,
    /// Unknown top-level fields (e.g. v1 `type`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Pub or sub permission: allow and deny subject lists.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Permission {
    /// Allowed subjects.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_vec"
    )]
    pub allow: Vec<String>,
    /// Denied subjects.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_vec"
    )]
    pub deny: Vec<String>,
}

impl Permission {
    /// True when neither allow nor deny is set.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// Response permission (`resp`): `ttl` is a Go `time.Duration` in nanoseconds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponsePermission {
    /// Max responses.
    #[serde(default)]
    pub max: i64,
    /// Time to live in nanoseconds.
    #[serde(default)]
    pub ttl: i64,
}

/// Pub/sub/resp permissions (Go `Permissions`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Publish permission.
    #[serde(default, rename = "pub", skip_serializing_if = "Permission::is_empty")]
    pub publish: Permission,
    /// Subscribe permission.
    #[serde(default, rename = "sub", skip_serializing_if = "Permission::is_empty")]
    pub subscribe: Permission,
    /// Response permission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp: Option<ResponsePermission>,
}

/// A time-of-day range ("HH:MM:SS").
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// Start time.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub start: String,
    /// End time.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub end: String,
}

fn null_vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// CIDR list: an array of strings or a comma separated string (Go `CIDRList`).
fn cidr_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum L {
        List(Vec<String>),
        Str(String),
        Null(()),
    }
    Ok(match L::deserialize(d)? {
        L::List(v) => v,
        L::Str(s) => {
            let mut out: Vec<String> = Vec::new();
            for p in s.to_lowercase().split(',') {
                let p = p.trim().to_string();
                if !p.is_empty() && !out.contains(&p) {
                    out.push(p);
                }
            }
            out
        }
        L::Null(()) => Vec::new(),
    })
}

/// Permissions and limits of a user, also the template of a scoped signing key
/// (Go `UserPermissionLimits`: Permissions + Limits + bearer_token + allowed_connection_types).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct UserPermissionLimits {
    /// Publish permission.
    #[serde(default, rename = "pub", skip_serializing_if = "Permission::is_empty")]
    pub publish: Permission,
    /// Subscribe permission.
    #[serde(default, rename = "sub", skip_serializing_if = "Permission::is_empty")]
    pub subscribe: Permission,
    /// Response permission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp: Option<ResponsePermission>,
    /// Allowed source CIDRs.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "cidr_list"
    )]
    pub src: Vec<String>,
    /// Allowed connect times.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_vec"
    )]
    pub times: Vec<TimeRange>,
    /// Time zone of `times` (`times_location`).
    #[serde(
        default,
        rename = "times_location",
        skip_serializing_if = "String::is_empty"
    )]
    pub locale: String,
    /// Max subscriptions (-1 unlimited).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub subs: i64,
    /// Max data bytes (-1 unlimited).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub data: i64,
    /// Max payload bytes (-1 unlimited).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub payload: i64,
    /// The JWT alone authenticates (no nonce signature).
    #[serde(default, skip_serializing_if = "is_false")]
    pub bearer_token: bool,
    /// Allowed connection types (STANDARD, WEBSOCKET, LEAFNODE, MQTT, ...).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_vec"
    )]
    pub allowed_connection_types: Vec<String>,
}

impl UserPermissionLimits {
    /// Go `NewUserClaims` defaults: subs/data/payload unlimited.
    pub fn unlimited() -> Self {
        UserPermissionLimits {
            subs: NO_LIMIT,
            data: NO_LIMIT,
            payload: NO_LIMIT,
            ..Default::default()
        }
    }

    /// True when nothing is set (required of users signed by a scoped key).
    pub fn is_empty(&self) -> bool {
        *self == UserPermissionLimits::default()
    }
}

/// The `nats` section of a user JWT.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct User {
    /// Permissions and limits.
    #[serde(flatten)]
    pub limits: UserPermissionLimits,
    /// Account public key when signed by an account signing key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer_account: String,
    /// Tags.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_vec"
    )]
    pub tags: Vec<String>,
    /// Claim type ("user").
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub claim_type: String,
    /// Claim version (2).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: i64,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A scoped signing key (`{"kind":"user_scope", ...}`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct UserScope {
    /// Always "user_scope".
    pub kind: String,
    /// The signing public key.
    pub key: String,
    /// Role name.
    #[serde(default)]
    pub role: String,
    /// Permissions and limits applied to users it signs.
    #[serde(default)]
    pub template: UserPermissionLimits,
    /// Description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// An account signing key: a plain public key or a scoped key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)] // few per account; boxing would complicate matching
pub enum SigningKey {
    /// Plain public key.
    Plain(String),
    /// Scoped key with a user template.
    Scoped(UserScope),
}

impl SigningKey {
    /// The public key.
    pub fn key(&self) -> &str {
        match self {
            SigningKey::Plain(k) => k,
            SigningKey::Scoped(s) => &s.key,
        }
    }
}

/// JetStream limits (one tier).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct JetStreamLimits {
    /// Max memory storage bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mem_storage: i64,
    /// Max disk storage bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub disk_storage: i64,
    /// Max streams.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub streams: i64,
    /// Max consumers.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consumer: i64,
    /// Max ack pending per consumer.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_ack_pending: i64,
    /// Max bytes of one memory stream.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mem_max_stream_bytes: i64,
    /// Max bytes of one disk stream.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub disk_max_stream_bytes: i64,
    /// Streams must set max_bytes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub max_bytes_required: bool,
}

/// Account limits (Go `OperatorLimits`: NatsLimits + AccountLimits + JetStreamLimits + tiers).
///
/// The JetStream fields are the embedded [`JetStreamLimits`], flattened as in Go's JSON.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct OperatorLimits {
    /// Max subscriptions.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub subs: i64,
    /// Max data bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub data: i64,
    /// Max payload.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub payload: i64,
    /// Max imports.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub imports: i64,
    /// Max exports.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub exports: i64,
    /// Wildcard exports allowed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub wildcards: bool,
    /// Bearer users are refused.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disallow_bearer: bool,
    /// Max client connections.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub conn: i64,
    /// Max leaf node connections.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub leaf: i64,
    /// JetStream limits of the account (Go embeds `JetStreamLimits` here).
    #[serde(flatten)]
    pub jetstream: JetStreamLimits,
    /// Per-tier JetStream limits (e.g. "R1", "R3").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tiered_limits: BTreeMap<String, JetStreamLimits>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl OperatorLimits {
    /// Go `NewAccountClaims` defaults: NATS and account limits unlimited, JetStream off.
    pub fn unlimited() -> Self {
        OperatorLimits {
            subs: NO_LIMIT,
            data: NO_LIMIT,
            payload: NO_LIMIT,
            imports: NO_LIMIT,
            exports: NO_LIMIT,
            wildcards: true,
            conn: NO_LIMIT,
            leaf: NO_LIMIT,
            ..Default::default()
        }
    }
}

/// An account import.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Import {
    /// Name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Subject in the exporting account.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subject: String,
    /// Exporting account public key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub account: String,
    /// Activation token.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// Deprecated remap target.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub to: String,
    /// Local subject.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_subject: String,
    /// "stream" or "service".
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub import_type: String,
    /// Share latency info.
    #[serde(default, skip_serializing_if = "is_false")]
    pub share: bool,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// An account export.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Export {
    /// Name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Exported subject.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subject: String,
    /// "stream" or "service".
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub export_type: String,
    /// Activation token required.
    #[serde(default, skip_serializing_if = "is_false")]
    pub token_req: bool,
    /// Revoked activations: public key -> unix seconds.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_map"
    )]
    pub revocations: BTreeMap<String, i64>,
    /// Service response type ("Singleton", "Stream", "Chunked").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub response_type: String,
    /// Service response threshold (ns).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub response_threshold: i64,
    /// Token position of the importing account in the subject.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub account_token_position: i64,
    /// Advertised.
    #[serde(default, skip_serializing_if = "is_false")]
    pub advertise: bool,
    /// Unknown fields (service_latency, description, info_url, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

fn null_map<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<BTreeMap<String, T>, D::Error> {
    Ok(Option::<BTreeMap<String, T>>::deserialize(d)?.unwrap_or_default())
}

/// One destination of a subject mapping.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct WeightedMapping {
    /// Destination subject.
    pub subject: String,
    /// Weight in percent (absent = 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u8>,
    /// Cluster scope.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Auth callout configuration (parsed, not acted on).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ExternalAuthorization {
    /// Users that bypass the callout (the callout service users).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_vec"
    )]
    pub auth_users: Vec<String>,
    /// Accounts the callout may place users in.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_vec"
    )]
    pub allowed_accounts: Vec<String>,
    /// Curve key for encrypting requests.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub xkey: String,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ExternalAuthorization {
    /// True when nothing is configured.
    pub fn is_empty(&self) -> bool {
        *self == ExternalAuthorization::default()
    }
}

/// Revocation key that revokes every user / activation issued up to its time.
pub const REVOKE_ALL: &str = "*";

/// The `nats` section of an account JWT.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Account {
    /// Imports.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_vec"
    )]
    pub imports: Vec<Import>,
    /// Exports.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_vec"
    )]
    pub exports: Vec<Export>,
    /// Limits.
    #[serde(default)]
    pub limits: OperatorLimits,
    /// Signing keys (plain or scoped).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_vec"
    )]
    pub signing_keys: Vec<SigningKey>,
    /// Revoked users: public key (or "*") -> unix seconds; revoked if issued at or before.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_map"
    )]
    pub revocations: BTreeMap<String, i64>,
    /// Default permissions of users without their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_permissions: Option<Permissions>,
    /// Subject mappings.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_map"
    )]
    pub mappings: BTreeMap<String, Vec<WeightedMapping>>,
    /// Auth callout.
    #[serde(default, skip_serializing_if = "ExternalAuthorization::is_empty")]
    pub authorization: ExternalAuthorization,
    /// Description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Info URL.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub info_url: String,
    /// Tags.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_vec"
    )]
    pub tags: Vec<String>,
    /// Claim type ("account").
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub claim_type: String,
    /// Claim version (2).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: i64,
    /// Unknown fields (trace, cluster_traffic, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

impl Account {
    /// True when `pubkey` issued at `iat` is revoked (by its own entry or by "*").
    pub fn is_revoked(&self, pubkey: &str, iat: i64) -> bool {
        [REVOKE_ALL, pubkey]
            .iter()
            .any(|k| self.revocations.get(*k).is_some_and(|&ts| ts >= iat))
    }

    /// The signing key entry for `key`, if listed.
    pub fn signing_key(&self, key: &str) -> Option<&SigningKey> {
        self.signing_keys.iter().find(|s| s.key() == key)
    }
}

/// The `nats` section of an operator JWT.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Operator {
    /// Operator signing keys.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_vec"
    )]
    pub signing_keys: Vec<String>,
    /// Account server URL.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub account_server_url: String,
    /// Operator service URLs.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_vec"
    )]
    pub operator_service_urls: Vec<String>,
    /// System account public key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub system_account: String,
    /// Minimum server version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub assert_server_version: String,
    /// Accounts must be signed by a signing key, not the operator identity key.
    #[serde(default, skip_serializing_if = "is_false")]
    pub strict_signing_key_usage: bool,
    /// Tags.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_vec"
    )]
    pub tags: Vec<String>,
    /// Claim type ("operator").
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub claim_type: String,
    /// Claim version (2).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: i64,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `nats` section of an activation JWT.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Activation {
    /// Imported subject.
    #[serde(default, rename = "subject", skip_serializing_if = "String::is_empty")]
    pub import_subject: String,
    /// "stream" or "service".
    #[serde(default, rename = "kind", skip_serializing_if = "String::is_empty")]
    pub import_type: String,
    /// Account public key when signed by an account signing key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer_account: String,
    /// Tags.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_vec"
    )]
    pub tags: Vec<String>,
    /// Claim type ("activation").
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub claim_type: String,
    /// Claim version (2).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: i64,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// User JWT claims.
pub type UserClaims = JwtClaims<User>;
/// Account JWT claims.
pub type AccountClaims = JwtClaims<Account>;
/// Operator JWT claims.
pub type OperatorClaims = JwtClaims<Operator>;
/// Activation JWT claims.
pub type ActivationClaims = JwtClaims<Activation>;
/// Claims of any other type (e.g. auth callout "authorization_request").
pub type GenericClaims = JwtClaims<Extra>;

impl UserClaims {
    /// New user claims for `subject` with Go's defaults (unlimited subs/data/payload).
    pub fn new(subject: impl Into<String>) -> Self {
        JwtClaims {
            sub: subject.into(),
            nats: User {
                limits: UserPermissionLimits::unlimited(),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

impl AccountClaims {
    /// New account claims for `subject` with Go's defaults (unlimited, JetStream off).
    pub fn new(subject: impl Into<String>) -> Self {
        JwtClaims {
            sub: subject.into(),
            nats: Account {
                limits: OperatorLimits::unlimited(),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

impl OperatorClaims {
    /// New operator claims for `subject`.
    pub fn new(subject: impl Into<String>) -> Self {
        JwtClaims {
            sub: subject.into(),
            ..Default::default()
        }
    }
}

impl ActivationClaims {
    /// New activation claims for importing account `subject`.
    pub fn new(subject: impl Into<String>) -> Self {
        JwtClaims {
            sub: subject.into(),
            ..Default::default()
        }
    }
}
