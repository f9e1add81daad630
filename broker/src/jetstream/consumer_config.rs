//! A consumer's configuration as `$JS.API.CONSUMER.CREATE` takes it, with nats-server's
//! defaults and checks (`setConsumerConfigDefaults`, `checkConsumerCfg`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::{
    is_false, is_zero_i64, is_zero_u64, set_required_level, subjects_overlap, Retention,
    StreamConfig,
};
use super::errors::ApiError;
use crate::subject;

/// nats-server's check on a consumer's name or durable name (empty is none): no blank, `.`,
/// `*`, `>` or path separator. There is no length limit; a name too long for the file system
/// fails when the consumer's store is made.
fn valid_consumer_name(name: &str) -> bool {
    !name.contains([' ', '\t', '\r', '\n', '\x0c', '.', '*', '>', '\\', '/'])
}

/// `deliver_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeliverPolicy {
    #[default]
    All,
    Last,
    New,
    #[serde(rename = "by_start_sequence")]
    ByStartSequence,
    #[serde(rename = "by_start_time")]
    ByStartTime,
    #[serde(rename = "last_per_subject")]
    LastPerSubject,
}

/// `ack_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AckPolicy {
    /// The default when a request leaves `ack_policy` out, as Go's zero value in nats-server.
    #[default]
    None,
    All,
    Explicit,
    /// 2.14's acknowledgement by flow control (API level 4): a flow-control answer carrying
    /// `Nats-Last-Stream` acknowledges everything up to it; nothing is redelivered.
    #[serde(rename = "flow_control")]
    FlowControl,
}

/// `replay_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReplayPolicy {
    #[default]
    Instant,
    Original,
}

/// A consumer's configuration (`ConsumerConfig` in nats-server, fields in its order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ConsumerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub deliver_policy: DeliverPolicy,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub opt_start_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    #[serde(default)]
    pub ack_policy: AckPolicy,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub ack_wait: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_deliver: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backoff: Vec<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter_subject: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter_subjects: Vec<String>,
    #[serde(default)]
    pub replay_policy: ReplayPolicy,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub rate_limit_bps: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sample_freq: String,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_waiting: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_ack_pending: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub idle_heartbeat: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub flow_control: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub headers_only: bool,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_batch: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_expires: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_bytes: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_group: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub inactive_threshold: i64,
    #[serde(default)]
    pub num_replicas: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub mem_storage: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub direct: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_until: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priority_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "PriorityPolicy::is_none")]
    pub priority_policy: PriorityPolicy,
    /// How long a pinned client keeps its pin without pulling (nanoseconds).
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub priority_timeout: i64,
    /// `sourcing` (2.14): a consumer a stream sources through. Refused until durable
    /// sourcing is implemented.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sourcing: bool,
}

/// `priority_policy` of a pull consumer with priority groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PriorityPolicy {
    #[default]
    None,
    /// Requests with `min_pending`/`min_ack_pending` only get messages past those marks.
    Overflow,
    /// One client (the pin holder) gets everything until it stops pulling.
    PinnedClient,
    /// Requests with a lower `priority` number are served first.
    Prioritized,
}

impl PriorityPolicy {
    fn is_none(&self) -> bool {
        *self == PriorityPolicy::None
    }
}

impl<'de> Deserialize<'de> for PriorityPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "none" | "" => PriorityPolicy::None,
            "overflow" => PriorityPolicy::Overflow,
            "pinned_client" => PriorityPolicy::PinnedClient,
            "prioritized" => PriorityPolicy::Prioritized,
            _ => {
                return Err(serde::de::Error::custom(format!(
                    "unknown priority policy: {s:?}"
                )))
            }
        })
    }
}

/// Default `priority_timeout` of a pinned-client consumer: 2 minutes.
pub const DEFAULT_PINNED_TTL: i64 = 120_000_000_000;

/// Whether `g` is a valid priority group name (nats-server's `^[a-zA-Z0-9/_=-]{1,16}$`).
pub fn valid_group_name(g: &str) -> bool {
    (1..=16).contains(&g.len())
        && g.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'=' | b'-'))
}

/// nats-server's error for a bad priority group name.
pub fn invalid_group_name() -> ApiError {
    ApiError::consumer_invalid_group_name()
}

/// Default `ack_wait`: 30 seconds.
pub const DEFAULT_ACK_WAIT: i64 = 30_000_000_000;

/// Default `max_ack_pending`.
pub const DEFAULT_MAX_ACK_PENDING: i64 = 1000;

/// Default pull `max_waiting`.
pub const DEFAULT_MAX_WAITING: i64 = 512;

/// Default `inactive_threshold` of ephemeral consumers: 5 seconds.
pub const DEFAULT_INACTIVE_THRESHOLD: i64 = 5_000_000_000;

impl ConsumerConfig {
    /// The consumer's name: `name`, else `durable_name`.
    pub fn the_name(&self) -> Option<&str> {
        self.name
            .as_deref()
            .filter(|n| !n.is_empty())
            .or(self.durable_name.as_deref().filter(|n| !n.is_empty()))
    }

    /// Whether it is a push consumer.
    pub fn is_push(&self) -> bool {
        self.deliver_subject
            .as_deref()
            .is_some_and(|d| !d.is_empty())
    }

    /// The subject filters (`filter_subject` and `filter_subjects` together).
    pub fn filters(&self) -> Vec<String> {
        let mut v: Vec<String> = self.filter_subjects.clone();
        if !self.filter_subject.is_empty() {
            v.push(self.filter_subject.clone());
        }
        v.retain(|f| f != ">");
        v
    }

    /// Fills nats-server's defaults and checks the configuration (`setConsumerConfigDefaults`
    /// and `checkConsumerCfg`).
    pub fn normalize(&mut self, stream: &StreamConfig) -> Result<(), ApiError> {
        let paused = self.pause_until.as_deref().is_some_and(|p| !p.is_empty());
        let level = if self.ack_policy == AckPolicy::FlowControl {
            4
        } else {
            i32::from(paused || self.priority_policy != PriorityPolicy::None)
        };
        set_required_level(&mut self.metadata, level);
        // `checkConsumerCfg` begins with the name, then the durable name.
        if self
            .name
            .as_deref()
            .is_some_and(|n| !valid_consumer_name(n))
        {
            return Err(ApiError::stream_invalid_config(
                "consumer name can not contain '.', '*', '>', '\\', '/'",
            ));
        }
        if self
            .durable_name
            .as_deref()
            .is_some_and(|d| !valid_consumer_name(d))
        {
            return Err(ApiError::stream_invalid_config(
                "consumer durable name can not contain '.', '*', '>', '\\', '/'",
            ));
        }
        if self.priority_policy != PriorityPolicy::None {
            if self.is_push() {
                return Err(ApiError::consumer_push_with_priority_group());
            }
            if self.priority_groups.is_empty() {
                return Err(ApiError::consumer_priority_policy_without_group());
            }
            for g in &self.priority_groups {
                if g.is_empty() {
                    return Err(ApiError::consumer_empty_group_name());
                }
                if !valid_group_name(g) {
                    return Err(invalid_group_name());
                }
            }
            if self.priority_timeout < 0 {
                self.priority_timeout = 0;
            }
            if self.priority_policy == PriorityPolicy::PinnedClient && self.priority_timeout == 0 {
                self.priority_timeout = DEFAULT_PINNED_TTL;
            }
        } else {
            if !self.priority_groups.is_empty() {
                return Err(ApiError::consumer_priority_group_with_policy_none());
            }
            if self.priority_timeout > 0 {
                return Err(ApiError::consumer_pinned_ttl_without_priority_policy());
            }
        }
        if self.sourcing {
            return Err(ApiError::consumer_create(
                "sourcing consumers are not supported by this server yet",
            ));
        }
        if self.rate_limit_bps != 0 {
            return Err(ApiError::consumer_create(
                "rate_limit_bps is not supported by this server yet",
            ));
        }
        if let Some(p) = &self.pause_until {
            if super::time::parse_rfc3339(p).is_none() {
                return Err(ApiError::invalid_json("bad pause_until"));
            }
        }
        // nats-server's `checkConsumerCfg`: filters need not lie inside the stream's
        // subjects (such a filter simply matches nothing), but they must not overlap.
        if !self.filter_subject.is_empty() && !self.filter_subjects.is_empty() {
            return Err(ApiError::consumer_duplicate_filter_subjects());
        }
        if self.filter_subjects.iter().any(String::is_empty) {
            return Err(ApiError::consumer_empty_filter());
        }
        for f in self.filters() {
            if !subject::is_valid_subject(f.as_str()) {
                return Err(ApiError::stream_invalid_config("invalid subject"));
            }
        }
        for (i, a) in self.filter_subjects.iter().enumerate() {
            if self.filter_subjects[i + 1..]
                .iter()
                .any(|b| subjects_overlap(a, b))
            {
                return Err(ApiError::consumer_overlapping_subject_filters());
            }
        }
        if let Some(ds) = &self.deliver_subject {
            if ds.is_empty() {
                self.deliver_subject = None;
            } else if !subject::is_valid_literal_subject(ds.as_str()) {
                return Err(ApiError::consumer_deliver_to_wildcards());
            }
        }
        if self.deliver_group.as_deref().is_some_and(str::is_empty) {
            self.deliver_group = None;
        }
        let push = self.is_push();
        if self.ack_policy == AckPolicy::FlowControl {
            // 2.14's acknowledgement by flow control answers: its checks, in nats-server's
            // order, and the settings it forces.
            if !push {
                return Err(ApiError::consumer_ack_fc_requires_push());
            }
            if self.max_ack_pending < 0 {
                return Err(ApiError::consumer_ack_fc_requires_max_ack_pending());
            }
            if self.ack_wait != 0 || !self.backoff.is_empty() {
                return Err(ApiError::consumer_ack_fc_requires_no_ack_wait());
            }
            if self.max_deliver > 0 {
                return Err(ApiError::consumer_ack_fc_requires_no_max_deliver());
            }
            self.flow_control = true;
            self.idle_heartbeat = 1_000_000_000;
        }
        if self.ack_wait == 0
            && self.ack_policy != AckPolicy::None
            && self.ack_policy != AckPolicy::FlowControl
        {
            self.ack_wait = match self.backoff.first() {
                Some(b) => *b,
                None => DEFAULT_ACK_WAIT,
            };
        }
        if self.max_deliver == 0 {
            self.max_deliver = -1;
        }
        if !self.backoff.is_empty()
            && self.max_deliver != -1
            && self.max_deliver <= self.backoff.len() as i64
        {
            return Err(ApiError::consumer_max_deliver_backoff());
        }
        if self.ack_policy != AckPolicy::None && self.max_ack_pending == 0 {
            self.max_ack_pending = if stream.consumer_limits.max_ack_pending > 0 {
                stream.consumer_limits.max_ack_pending
            } else {
                DEFAULT_MAX_ACK_PENDING
            };
        }
        if self.ack_policy == AckPolicy::None {
            // Unlimited, and shown as absent (nats-server leaves it zero).
            self.max_ack_pending = 0;
        }
        if !push && self.max_waiting == 0 {
            self.max_waiting = DEFAULT_MAX_WAITING;
        }
        if push {
            // nats-server takes `max_batch` and `max_expires` on a push consumer (and keeps them).
            if self.max_waiting != 0 {
                return Err(ApiError::consumer_push_max_waiting());
            }
        } else {
            if self.idle_heartbeat != 0 {
                return Err(ApiError::consumer_hb_requires_push());
            }
            if self.flow_control {
                return Err(ApiError::consumer_fc_requires_push());
            }
        }
        if self.flow_control && self.idle_heartbeat == 0 {
            return Err(ApiError::consumer_with_flow_control_needs_heartbeats());
        }
        if self.num_replicas < 0 {
            return Err(ApiError::replicas_count_cannot_be_negative());
        }
        match self.deliver_policy {
            DeliverPolicy::ByStartSequence if self.opt_start_seq == 0 => {
                return Err(ApiError::consumer_invalid_policy("consumer delivery policy is deliver by start sequence, but optional start sequence is not set"))
            }
            DeliverPolicy::ByStartTime if self.opt_start_time.is_none() => {
                return Err(ApiError::consumer_invalid_policy("consumer delivery policy is deliver by start time, but optional start time is not set"))
            }
            DeliverPolicy::ByStartSequence | DeliverPolicy::ByStartTime => {}
            DeliverPolicy::LastPerSubject
                if self.filter_subject.is_empty() && self.filter_subjects.is_empty() =>
            {
                return Err(ApiError::consumer_invalid_policy("consumer delivery policy is deliver last per subject, but optional filter subject is not set"))
            }
            _ if self.opt_start_seq != 0 || self.opt_start_time.is_some() => {
                return Err(ApiError::consumer_invalid_policy("consumer delivery policy is deliver all, but optional start sequence is also set"))
            }
            _ => {}
        }
        if let Some(t) = &self.opt_start_time {
            if super::time::parse_rfc3339(t).is_none() {
                return Err(ApiError::invalid_json("bad opt_start_time"));
            }
        }
        if stream.retention == Retention::WorkQueue && self.ack_policy != AckPolicy::Explicit {
            return Err(if push {
                ApiError::consumer_wq_requires_explicit_ack()
            } else {
                ApiError::consumer_pull_requires_ack()
            });
        }
        let lim = &stream.consumer_limits;
        if self.inactive_threshold == 0 {
            // The stream's limit applies to durables too; the default only to ephemerals.
            if lim.inactive_threshold > 0 {
                self.inactive_threshold = lim.inactive_threshold;
            } else if self.durable_name.as_deref().is_none_or(str::is_empty) {
                self.inactive_threshold = DEFAULT_INACTIVE_THRESHOLD;
            }
        }
        if lim.inactive_threshold > 0 && self.inactive_threshold > lim.inactive_threshold {
            return Err(ApiError::consumer_inactive_threshold_excess(
                &crate::clock::go_duration(i128::from(lim.inactive_threshold)),
            ));
        }
        if lim.max_ack_pending > 0 && self.max_ack_pending > lim.max_ack_pending {
            return Err(ApiError::consumer_max_pending_ack_excess(
                &lim.max_ack_pending.to_string(),
            ));
        }
        if !self.sample_freq.is_empty() {
            // nats-server: one `%` trimmed, then Go's `strconv.Atoi`; a negative number fails
            // with a nil error, which Go prints as `<nil>`.
            let f = self
                .sample_freq
                .strip_suffix('%')
                .unwrap_or(&self.sample_freq);
            match f.parse::<i64>() {
                Ok(v) if v >= 0 => {}
                Ok(_) => return Err(ApiError::consumer_invalid_sampling("<nil>")),
                Err(e) => {
                    let why = match e.kind() {
                        std::num::IntErrorKind::PosOverflow
                        | std::num::IntErrorKind::NegOverflow => "value out of range",
                        _ => "invalid syntax",
                    };
                    return Err(ApiError::consumer_invalid_sampling(&format!(
                        "strconv.Atoi: parsing {f:?}: {why}"
                    )));
                }
            }
        }
        Ok(())
    }
}
