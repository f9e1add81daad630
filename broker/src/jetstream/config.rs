//! Stream configurations as the JetStream API carries them (nats-server's JSON: durations in
//! nanoseconds, times in RFC 3339), with nats-server's defaults and checks; consumers' are in
//! `consumer_config.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::errors::ApiError;
use crate::subject;

/// `{"src": .., "dest": ..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectTransform {
    #[serde(default)]
    pub src: String,
    pub dest: String,
}

/// `republish`: `{"src", "dest", "headers_only"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Republish {
    #[serde(default)]
    pub src: String,
    pub dest: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub headers_only: bool,
}

/// Where a subject transform sits in a stream's configuration, which picks nats-server's
/// API errors for it.
#[derive(Clone, Copy)]
enum TransformAt {
    Stream,
    Source,
    Mirror,
}

/// A stream, source or mirror transform's check, as nats-server's `checkStreamCfg`: an invalid
/// source subject, then `ValidateMapping`'s verdict on the destination. A destination
/// nats-server takes but `crate::transform` cannot map (a function other than `wildcard`)
/// is refused as an invalid destination, with our words.
fn validate_transform(at: TransformAt, src: &str, dest: &str) -> Result<(), ApiError> {
    type Error = fn(&str) -> ApiError;
    let (bad_src, bad_dest): (Error, Error) = match at {
        TransformAt::Stream => (
            ApiError::stream_transform_invalid_source,
            ApiError::stream_transform_invalid_destination,
        ),
        TransformAt::Source => (
            ApiError::source_invalid_subject_filter,
            ApiError::source_invalid_transform_destination,
        ),
        TransformAt::Mirror => (
            ApiError::mirror_invalid_subject_filter,
            ApiError::mirror_invalid_transform_destination,
        ),
    };
    if !src.is_empty() && !subject::is_valid_subject(src) {
        return Err(bad_src(&format!("invalid subject {src}")));
    }
    if let Some(e) = crate::transform::mapping::mapping_error(src, dest) {
        return Err(bad_dest(&e));
    }
    crate::transform::check(src, dest).map_err(|e| bad_dest(&e.to_string()))
}

pub(super) fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
pub(super) fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
pub(super) fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}
pub(super) fn is_false(v: &bool) -> bool {
    !*v
}

/// `retention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    #[default]
    Limits,
    Interest,
    #[serde(rename = "workqueue")]
    WorkQueue,
}

/// `discard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Discard {
    #[default]
    Old,
    New,
}

/// `storage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    #[default]
    File,
    Memory,
}

/// `consumer_limits` of a stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsumerLimits {
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub inactive_threshold: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_ack_pending: i64,
}

/// A stream's configuration (`StreamConfig` in nats-server, fields in its order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamConfig {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    #[serde(default)]
    pub retention: Retention,
    #[serde(default)]
    pub max_consumers: i64,
    #[serde(default)]
    pub max_msgs: i64,
    #[serde(default)]
    pub max_bytes: i64,
    #[serde(default)]
    pub max_age: i64,
    #[serde(default)]
    pub max_msgs_per_subject: i64,
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub max_msg_size: i32,
    #[serde(default)]
    pub discard: Discard,
    #[serde(default)]
    pub storage: Storage,
    #[serde(default)]
    pub num_replicas: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_ack: bool,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub duplicate_window: i64,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub first_seq: u64,
    #[serde(default)]
    pub allow_direct: bool,
    #[serde(default)]
    pub mirror_direct: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub discard_new_per_subject: bool,
    #[serde(default)]
    pub sealed: bool,
    #[serde(default)]
    pub deny_delete: bool,
    #[serde(default)]
    pub deny_purge: bool,
    #[serde(default)]
    pub allow_rollup_hdrs: bool,
    #[serde(default)]
    pub consumer_limits: ConsumerLimits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<StreamSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<StreamSource>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_transform: Option<SubjectTransform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republish: Option<Republish>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<serde_json::Value>,
    #[serde(default)]
    pub allow_msg_ttl: bool,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub subject_delete_marker_ttl: i64,
    /// Counter stream: every message adds its `Nats-Incr` to the subject's total.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_msg_counter: bool,
    /// Atomic batch publishing: `Nats-Batch-Id` messages are stored all or none at commit.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_atomic: bool,
    /// Scheduled messages: a `Nats-Schedule` message publishes to its target when due.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_msg_schedules: bool,
    /// Fast (non-atomic) batch publishing: `$FI` reply subjects, paced by flow acks.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_batched: bool,
    /// `persist_mode` (2.12): `async` lets nats-server buffer writes. Ours writes every message
    /// as in the default mode (never less durable); the setting is kept, shown and checked.
    #[serde(default, skip_serializing_if = "PersistMode::is_default")]
    pub persist_mode: PersistMode,
    /// `pedantic` of a create/update request (never stored or shown). Like nats-server without
    /// it, defaults are filled in rather than the request refused.
    #[serde(default, skip_serializing)]
    pub pedantic: bool,
}

/// `persist_mode` of a stream: `default` (or empty) and `async`, as nats-server spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PersistMode {
    #[default]
    Default,
    Async,
}

impl PersistMode {
    fn is_default(&self) -> bool {
        *self == PersistMode::Default
    }
}

impl Serialize for PersistMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            PersistMode::Default => "default",
            PersistMode::Async => "async",
        })
    }
}

impl<'de> Deserialize<'de> for PersistMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        match v.as_str() {
            Some("" | "default") => Ok(PersistMode::Default),
            Some("async") => Ok(PersistMode::Async),
            // Go's words for a value its UnmarshalJSON refuses.
            _ => Err(serde::de::Error::custom(format!(
                "can not unmarshal {:?}",
                v.to_string()
            ))),
        }
    }
}

/// `external` of a mirror or source: the origin's API prefix and the deliver prefix its
/// messages come back on (another account or JetStream domain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct External {
    #[serde(default)]
    pub api: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deliver: String,
}

/// `mirror` or one entry of `sources` (`StreamSource` in nats-server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StreamSource {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub opt_start_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter_subject: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_transforms: Vec<SubjectTransform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<External>,
    /// `consumer { name, deliver_subject }` (2.14): read through a durable consumer on the
    /// origin (with the `flow_control` ack policy) instead of one made for the purpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<SourceConsumer>,
}

/// `consumer` of a mirror or source: the origin's durable consumer and where it delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SourceConsumer {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deliver_subject: String,
}

impl StreamSource {
    /// The name that tells two sources of one stream apart (nats-server's `iname`): the
    /// stream's name, and a hash of the external API prefix when there is one.
    pub fn iname(&self) -> String {
        let mut n = match self.external.as_ref().filter(|e| !e.api.is_empty()) {
            Some(e) => format!("{}:{}", self.name, short_hash(&e.api)),
            None => self.name.clone(),
        };
        // Through a durable consumer, the same origin is another source (nats-server).
        if let Some(c) = &self.consumer {
            n.push_str(":C=");
            n.push_str(&short_hash(&c.name));
        }
        n
    }

    /// The subject filters the consumer on the origin uses.
    pub fn filters(&self) -> Vec<String> {
        if self.subject_transforms.is_empty() {
            if self.filter_subject.is_empty() {
                return Vec::new();
            }
            return vec![self.filter_subject.clone()];
        }
        self.subject_transforms
            .iter()
            .map(|t| {
                if t.src.is_empty() {
                    ">".into()
                } else {
                    t.src.clone()
                }
            })
            .collect()
    }

    /// The pairs that identify this source's messages in `Nats-Stream-Source` headers.
    pub fn header_keys(&self) -> Vec<(String, String)> {
        if self.subject_transforms.is_empty() {
            let f = if self.filter_subject.is_empty() {
                ">".to_string()
            } else {
                self.filter_subject.clone()
            };
            return vec![(f, ">".into())];
        }
        self.subject_transforms
            .iter()
            .map(|t| {
                let src = if t.src.is_empty() { ">" } else { &t.src };
                (src.to_string(), t.dest.clone())
            })
            .collect()
    }

    fn check(&self, mirror: bool, own: &str) -> Result<(), ApiError> {
        if !valid_name(&self.name) {
            return Err(if mirror {
                ApiError::mirror_invalid_stream_name()
            } else {
                ApiError::source_invalid_stream_name()
            });
        }
        if self.name == own && self.external.is_none() {
            return Err(ApiError::stream_invalid_config("detected cycle"));
        }
        if mirror && !self.filter_subject.is_empty() && !self.subject_transforms.is_empty() {
            return Err(ApiError::mirror_multiple_filters_not_allowed());
        }
        if !self.filter_subject.is_empty() && !subject::is_valid_subject(&self.filter_subject) {
            return Err(ApiError::stream_invalid_config("invalid subject filter"));
        }
        let at = if mirror {
            TransformAt::Mirror
        } else {
            TransformAt::Source
        };
        for t in &self.subject_transforms {
            validate_transform(at, &t.src, &t.dest)?;
        }
        if let Some(t) = &self.opt_start_time {
            if super::time::parse_rfc3339(t).is_none() {
                return Err(ApiError::invalid_json("invalid start time"));
            }
        }
        Ok(())
    }
}

/// nats-server's `getHash`: the first 8 bytes of SHA-256, each as a base-62 digit.
pub fn short_hash(s: &str) -> String {
    use sha2::Digest;
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let d = sha2::Sha256::digest(s.as_bytes());
    d[..8]
        .iter()
        .map(|b| DIGITS[(*b % 62) as usize] as char)
        .collect()
}

/// How a file stream stores its messages (`compression`): as they are, or S2-compressed.
/// Memory streams accept the setting and keep messages as they are, as nats-server does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    S2,
}

impl Serialize for Compression {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            Compression::None => "none",
            Compression::S2 => "s2",
        })
    }
}

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // nats-server knows exactly these two spellings; anything else (even "" or "S2")
        // is an invalid request.
        match String::deserialize(d)?.as_str() {
            "none" => Ok(Compression::None),
            "s2" => Ok(Compression::S2),
            _ => Err(serde::de::Error::custom("unknown compression algorithm")),
        }
    }
}

/// Default duplicate window: two minutes.
const DEFAULT_DUPLICATE_WINDOW: i64 = 120_000_000_000;

/// The most replicas a stream can have (nats-server's `StreamMaxReplicas`).
pub const MAX_REPLICAS: i64 = 5;

/// The shortest `max_age` nats-server takes (100ms), in nanoseconds; 0 means no limit.
const MIN_MAX_AGE: i64 = 100_000_000;

/// Whether `name` is a valid stream or consumer name (no whitespace, `.`, `*`, `>`, path
/// separators).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.chars().any(|c| {
            c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_control()
        })
}

/// Whether two subject patterns can match a common subject.
pub fn subjects_overlap(a: &str, b: &str) -> bool {
    let ta: Vec<&str> = a.split('.').collect();
    let tb: Vec<&str> = b.split('.').collect();
    let mut i = 0;
    loop {
        match (ta.get(i), tb.get(i)) {
            (Some(&">"), Some(_)) | (Some(_), Some(&">")) => return true,
            (Some(x), Some(y)) => {
                if *x != "*" && *y != "*" && x != y {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
        i += 1;
    }
}

impl StreamConfig {
    /// The mirror's and sources' `external` prefixes, after their other checks, as nats-server
    /// has them: every deliver prefix, then every API prefix.
    fn check_external_prefixes(&self) -> Result<(), ApiError> {
        let externals: Vec<&External> = self
            .mirror
            .iter()
            .chain(self.sources.iter().flatten())
            .filter_map(|s| s.external.as_ref())
            .collect();
        for e in externals.iter().filter(|e| !e.deliver.is_empty()) {
            if !subject::is_valid_publish_subject(&e.deliver) {
                return Err(ApiError::stream_invalid_external_delivery_subj(&e.deliver));
            }
        }
        for e in externals.iter().filter(|e| !e.api.is_empty()) {
            if !subject::is_valid_publish_subject(&e.api) {
                return Err(ApiError::stream_invalid_config(&format!(
                    "stream external api prefix {:?} must be a valid subject without wildcards",
                    e.api
                )));
            }
            // nats-server's `SubjectsCollide` with a literal is equality here.
            if e.api == "$JS.API" {
                return Err(ApiError::stream_external_api_overlap(&e.api, "$JS.API"));
            }
        }
        Ok(())
    }

    /// Fills nats-server's defaults and checks the configuration (`checkStreamCfg`).
    pub fn normalize(&mut self, max_payload: i32) -> Result<(), ApiError> {
        if !valid_name(&self.name) {
            return Err(ApiError::stream_invalid_config("invalid stream name"));
        }
        if self.num_replicas > MAX_REPLICAS {
            return Err(ApiError::stream_invalid_config(&format!(
                "maximum replicas is {MAX_REPLICAS}"
            )));
        }
        let level = if self.allow_batched {
            4
        } else if self.allow_msg_counter
            || self.allow_atomic
            || self.allow_msg_schedules
            || self.persist_mode == PersistMode::Async
        {
            2
        } else if self.allow_msg_ttl || self.subject_delete_marker_ttl > 0 {
            1
        } else {
            0
        };
        set_required_level(&mut self.metadata, level);
        if let Some(d) = &self.description {
            if d.len() > 4096 {
                return Err(ApiError::stream_invalid_config(
                    "stream description is too long, maximum allowed is 4096",
                ));
            }
        }
        if self.sources.as_ref().is_some_and(|s| s.is_empty()) {
            self.sources = None;
        }
        if let Some(m) = &self.mirror {
            if !self.subjects.is_empty() {
                return Err(ApiError::mirror_with_subjects());
            }
            if self.sources.is_some() {
                return Err(ApiError::mirror_with_sources());
            }
            if self.first_seq > 0 {
                return Err(ApiError::mirror_with_first_seq());
            }
            m.check(true, &self.name)?;
        }
        if let Some(srcs) = &self.sources {
            let mut seen = std::collections::HashSet::new();
            for s in srcs {
                s.check(false, &self.name)?;
                for k in s.header_keys() {
                    if !seen.insert((s.iname(), k)) {
                        return Err(ApiError::source_duplicate_detected());
                    }
                }
            }
        }
        self.check_external_prefixes()?;
        self.placement = None;
        if let Some(t) = &self.subject_transform {
            validate_transform(TransformAt::Stream, &t.src, &t.dest)?;
        }
        if let Some(r) = &self.republish {
            // Republishing into the stream's own subjects would loop.
            if self
                .subjects
                .iter()
                .any(|s| subjects_overlap(s, &r.dest.replace("{{", "*").replace("}}", "")))
            {
                return Err(ApiError::stream_invalid_config(
                    "stream configuration for republish destination forms a cycle",
                ));
            }
            // nats-server builds the transform (no `ValidateMapping`), after the cycle check.
            let src = if r.src.is_empty() { ">" } else { &r.src };
            if crate::transform::mapping::transform_error(src, &r.dest).is_some()
                || crate::transform::check(src, &r.dest).is_err()
            {
                return Err(ApiError::stream_invalid_config(&format!(
                    "stream configuration for republish with transform from '{src}' to '{}' not valid",
                    r.dest
                )));
            }
        }
        if self.allow_msg_counter {
            if self.mirror.is_some() {
                return Err(ApiError::mirror_with_counters());
            }
            let why = if self.discard == Discard::New {
                Some("counter stream cannot use discard new")
            } else if self.allow_msg_ttl {
                Some("counter stream cannot use message TTLs")
            } else if self.allow_msg_schedules {
                Some("counter stream cannot use message schedules")
            } else if self.retention != Retention::Limits {
                Some("counter stream can only use limits retention")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ApiError::stream_invalid_config(why));
            }
        }
        if self.allow_atomic && self.mirror.is_some() {
            return Err(ApiError::mirror_with_atomic_publish());
        }
        // Accepted and ignored would be worse than refused: a client relying on them would
        // silently lose their guarantees.
        if self.allow_msg_schedules {
            if self.mirror.is_some() {
                return Err(ApiError::mirror_with_msg_schedules());
            }
            if self.sources.as_ref().is_some_and(|s| !s.is_empty()) {
                return Err(ApiError::source_with_msg_schedules());
            }
            if self.discard == Discard::New {
                return Err(ApiError::stream_invalid_config(
                    "message scheduling cannot use discard new",
                ));
            }
            // A schedule is one message per subject, replaced by rollup.
            self.allow_rollup_hdrs = true;
            self.deny_purge = false;
        }
        if self.allow_batched && self.mirror.is_some() {
            return Err(ApiError::mirror_with_batch_publish());
        }
        // Durable sourcing: the consumer decides where to start and what to deliver.
        let consumer_ok = |c: &SourceConsumer, src: &StreamSource| {
            valid_name(&c.name)
                && !c.deliver_subject.is_empty()
                && crate::subject::is_valid_literal_subject(c.deliver_subject.as_str())
                && src.opt_start_seq == 0
                && src.opt_start_time.is_none()
                && src.filter_subject.is_empty()
        };
        if let Some(m) = &self.mirror {
            if m.consumer.as_ref().is_some_and(|c| !consumer_ok(c, m)) {
                return Err(ApiError::mirror_durable_consumer_cfg_invalid());
            }
        }
        let mut durable = std::collections::HashSet::new();
        for s in self.sources.iter().flatten() {
            if let Some(c) = &s.consumer {
                if !consumer_ok(c, s) {
                    return Err(ApiError::source_durable_consumer_cfg_invalid());
                }
                if !durable.insert((s.iname(), c.name.clone())) {
                    return Err(ApiError::source_durable_consumer_duplicate_detected());
                }
            }
        }
        if self.subject_delete_marker_ttl != 0 {
            let why = if self.mirror.is_some() {
                Some("subject delete markers forbidden on mirrors")
            } else if self.subject_delete_marker_ttl < 0 {
                Some("subject delete marker TTL must not be negative")
            } else if self.subject_delete_marker_ttl < 1_000_000_000 {
                Some("subject delete marker TTL must be at least 1 second")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ApiError::stream_invalid_config(why));
            }
            // Markers are TTL'd rollup messages: both are implied, and purges (nats-server).
            self.allow_msg_ttl = true;
            self.allow_rollup_hdrs = true;
            self.deny_purge = false;
        }
        if self.num_replicas == 0 {
            self.num_replicas = 1;
        }
        if self.persist_mode == PersistMode::Async {
            if self.storage != Storage::File {
                return Err(ApiError::stream_invalid_config(
                    "async persist mode is only supported on file storage",
                ));
            }
            if self.num_replicas > 1 {
                return Err(ApiError::stream_invalid_config(
                    "async persist mode is not supported on replicated streams",
                ));
            }
        }
        if self.num_replicas < 0 {
            return Err(ApiError::replicas_count_cannot_be_negative());
        }
        if self.max_msgs == 0 {
            self.max_msgs = -1;
        }
        if self.max_bytes == 0 {
            self.max_bytes = -1;
        }
        if self.max_msgs_per_subject == 0 {
            self.max_msgs_per_subject = -1;
        }
        if self.max_msg_size == 0 {
            self.max_msg_size = -1;
        }
        if self.max_consumers == 0 {
            self.max_consumers = -1;
        }
        if self.max_age < 0 {
            return Err(ApiError::stream_invalid_config("max age needs to be >= 0"));
        }
        if self.max_age != 0 && self.max_age < MIN_MAX_AGE {
            return Err(ApiError::stream_invalid_config(
                "max age needs to be >= 100ms",
            ));
        }
        if self.duplicate_window < 0 {
            return Err(ApiError::stream_invalid_config(
                "duplicates window can not be negative",
            ));
        }
        if self.mirror.is_some() {
            // A mirror does not de-duplicate: nats-server leaves the window unset.
            self.duplicate_window = 0;
        } else if self.duplicate_window == 0 {
            self.duplicate_window = if self.max_age != 0 && self.max_age < DEFAULT_DUPLICATE_WINDOW
            {
                self.max_age
            } else {
                DEFAULT_DUPLICATE_WINDOW
            };
        }
        if self.max_age != 0 && self.duplicate_window > self.max_age {
            return Err(ApiError::stream_invalid_config(
                "duplicates window can not be larger then max age",
            ));
        }
        if self.max_msg_size > 0 && self.max_msg_size > max_payload {
            return Err(ApiError::stream_invalid_config(
                "max message size can not be larger than max payload",
            ));
        }
        if self.deny_purge && self.allow_rollup_hdrs {
            return Err(ApiError::stream_invalid_config(
                "roll-ups require the purge permission",
            ));
        }
        if self.discard_new_per_subject
            && (self.discard != Discard::New || self.max_msgs_per_subject <= 0)
        {
            return Err(ApiError::stream_invalid_config(
                "discard new per subject requires discard new policy to be set",
            ));
        }
        if self.subjects.is_empty() && self.mirror.is_none() && self.sources.is_none() {
            self.subjects.push(self.name.clone());
        }
        // nats-server's order: each subject in turn is valid, does not capture everything or
        // JetStream's and the system's namespaces without no_ack, and overlaps none after it.
        for (i, s) in self.subjects.iter().enumerate() {
            if !subject::is_valid_subject(s.as_str()) {
                return Err(ApiError::stream_invalid_config("invalid subject"));
            }
            if s == ">" {
                if !self.no_ack {
                    return Err(ApiError::stream_invalid_config(
                        "capturing all subjects requires no-ack to be true",
                    ));
                }
                if self.num_replicas > 1 {
                    return Err(ApiError::stream_invalid_config(
                        "capturing all subjects requires replicas of 1",
                    ));
                }
            }
            if !self.no_ack {
                let js = ["$JS.>", "$JSC.>", "$NRG.>"]
                    .iter()
                    .any(|ns| subjects_overlap(s, ns));
                if js && !subject::is_subset_match(s, "$JS.EVENT.>") {
                    return Err(ApiError::stream_invalid_config(
                        "subjects that overlap with jetstream api require no-ack to be true",
                    ));
                }
                if subjects_overlap(s, "$SYS.>") && !subject::is_subset_match(s, "$SYS.ACCOUNT.>") {
                    return Err(ApiError::stream_invalid_config(
                        "subjects that overlap with system api require no-ack to be true",
                    ));
                }
            }
            if let Some(t) = self.subjects[i + 1..]
                .iter()
                .find(|t| subjects_overlap(t, s))
            {
                return Err(ApiError::stream_invalid_config(&format!(
                    "subject {s:?} overlaps with {t:?}"
                )));
            }
        }
        Ok(())
    }
}

/// The metadata key naming the API level a stream or consumer configuration needs.
pub const REQUIRED_LEVEL_KEY: &str = "_nats.req.level";

/// nats-server's own metadata: a client's values for its keys are dropped, and the API level
/// the configuration needs is recorded (it is stored with the config).
pub(super) fn set_required_level(metadata: &mut Option<BTreeMap<String, String>>, level: i32) {
    let m = metadata.get_or_insert_with(BTreeMap::new);
    for k in [REQUIRED_LEVEL_KEY, "_nats.level", "_nats.ver"] {
        m.remove(k);
    }
    m.insert(REQUIRED_LEVEL_KEY.to_string(), level.to_string());
}

/// Adds what a create, update or info answer shows besides the stored metadata: the
/// server's API level and version (`_nats.level`, `_nats.ver`).
pub fn with_server_metadata(config: &mut serde_json::Value) {
    if let Some(m) = config
        .get_mut("metadata")
        .and_then(serde_json::Value::as_object_mut)
    {
        m.insert(
            "_nats.level".into(),
            crate::server::API_LEVEL.to_string().into(),
        );
        m.insert(
            "_nats.ver".into(),
            crate::server::VERSION.to_string().into(),
        );
    }
}

/// nats-server's answer when a stream would not fit in what is left of `storage`.
pub(crate) fn insufficient(storage: Storage) -> ApiError {
    match storage {
        Storage::Memory => ApiError::memory_resources_exceeded(),
        Storage::File => ApiError::storage_resources_exceeded(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_hash_is_nats_servers() {
        // What nats-server 2.15 writes for an external source with api `$JS.A.API`.
        assert_eq!(short_hash("$JS.A.API"), "z0zeNTHp");
    }

    #[test]
    fn overlap() {
        assert!(subjects_overlap("a.>", "a.b"));
        assert!(subjects_overlap("a.*", "a.b"));
        assert!(!subjects_overlap("a.*", "a.b.c"));
        assert!(subjects_overlap("*.b", "a.*"));
        assert!(!subjects_overlap("a", "b"));
        assert!(subjects_overlap(">", "x.y"));
    }

    #[test]
    fn stream_defaults() {
        let mut c: StreamConfig = serde_json::from_str(r#"{"name":"S"}"#).unwrap();
        c.normalize(1 << 20).unwrap();
        assert_eq!(c.subjects, vec!["S".to_string()]);
        assert_eq!((c.max_msgs, c.max_bytes, c.num_replicas), (-1, -1, 1));
        assert_eq!(c.duplicate_window, 120_000_000_000);
    }
}
