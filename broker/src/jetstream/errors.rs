//! JetStream API errors: nats-server's `{"code", "err_code", "description"}` triples.

use serde::Serialize;
use serde_json::{json, Value};

/// One API error as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    pub code: u16,
    pub err_code: u16,
    pub description: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (err_code {})", self.description, self.err_code)
    }
}

/// nats-server's API errors (its `server/errors.json`) as named constructors: each line holds
/// the constructor, `err_code`, HTTP-like status and nats-server's text, so a code or a word
/// cannot drift at a call site. A `{}` in the text takes the constructor's argument.
macro_rules! catalog {
    ($($name:ident => $err_code:literal, $code:literal, $text:literal;)*) => {
        impl ApiError {
            $(
                #[doc = concat!("`", stringify!($err_code), "`: ", $text)]
                pub fn $name() -> ApiError {
                    ApiError::new($err_code, $code, $text)
                }
            )*
        }
    };
}

/// [`catalog!`] for the texts that carry a detail.
macro_rules! catalog_with {
    ($($name:ident => $err_code:literal, $code:literal, $text:literal;)*) => {
        impl ApiError {
            $(
                #[doc = concat!("`", stringify!($err_code), "`: ", $text)]
                pub fn $name(detail: &str) -> ApiError {
                    ApiError::new($err_code, $code, &format!($text, detail))
                }
            )*
        }
    };
}

catalog! {
    consumer_deliver_to_wildcards => 10079, 400, "consumer deliver subject has wildcards";
    consumer_push_max_waiting => 10080, 400, "consumer in push mode can not set max waiting";
    consumer_pull_requires_ack => 10084, 400, "consumer in pull mode requires explicit ack policy on workqueue stream";
    consumer_hb_requires_push => 10088, 400, "consumer idle heartbeat requires a push based consumer";
    consumer_fc_requires_push => 10089, 400, "consumer flow control requires a push based consumer";
    consumer_wq_requires_explicit_ack => 10098, 400, "workqueue stream requires explicit ack";
    consumer_with_flow_control_needs_heartbeats => 10108, 400, "consumer with flow control also needs heartbeats";
    replicas_count_cannot_be_negative => 10133, 400, "replicas count cannot be negative";
    stream_wrong_last_sequence_constant => 10164, 400, "wrong last sequence";
    atomic_publish_disabled => 10174, 400, "atomic publish is disabled";
    atomic_publish_missing_seq => 10175, 400, "atomic publish sequence is missing";
    atomic_publish_incomplete_batch => 10176, 400, "atomic publish batch is incomplete";
    atomic_publish_invalid_batch_id => 10179, 400, "atomic publish batch ID is invalid";
    atomic_publish_invalid_batch_commit => 10200, 400, "atomic publish batch commit is invalid";
    atomic_publish_contains_duplicate_message => 10201, 400, "atomic publish batch contains duplicate message id";
    atomic_publish_too_many_inflight => 10210, 429, "atomic publish too many inflight";
    temp_storage_failed => 10072, 500, "JetStream unable to open temp storage for restore";
    account_resources_exceeded => 10002, 400, "resource limits exceeded for account";
    snapshot_deliver_subject_invalid => 10015, 400, "deliver subject not valid";
    consumer_durable_name_not_match_subject => 10017, 400, "consumer name in subject does not match durable name in request";
    consumer_durable_name_not_set => 10018, 400, "consumer expected to be durable but a durable name was not set";
    consumer_ephemeral_with_durable_name => 10020, 400, "consumer expected to be ephemeral but a durable name was set in request";
    memory_resources_exceeded => 10028, 500, "insufficient memory resources available";
    mirror_with_sources => 10031, 400, "stream mirrors can not also contain other sources";
    mirror_with_subjects => 10034, 400, "stream mirrors can not contain subjects";
    storage_resources_exceeded => 10047, 500, "insufficient storage resources available";
    stream_message_exceeds_maximum => 10054, 400, "message size exceeds maximum allowed";
    stream_mirror_not_updatable => 10055, 400, "stream mirror configuration can not be updated";
    stream_not_match => 10060, 400, "expected stream does not match";
    stream_replicas_not_supported => 10074, 500, "replicas > 1 not supported in non-clustered mode";
    insufficient_resources => 10023, 503, "insufficient resources";
    no_suitable_peers => 10005, 400, "no suitable peers for placement";
    cluster_not_available => 10008, 503, "JetStream system temporarily unavailable";
    consumer_max_deliver_backoff => 10116, 400, "max deliver is required to be > length of backoff values";
    stream_name_exist_restore_failed => 10130, 400, "stream name already in use, cannot restore";
    consumer_create_filter_subject_mismatch => 10131, 400, "Consumer create request did not match filtered subject from create subject";
    consumer_duplicate_filter_subjects => 10136, 400, "consumer cannot have both FilterSubject and FilterSubjects specified";
    consumer_overlapping_subject_filters => 10138, 400, "consumer subject filters cannot overlap";
    consumer_empty_filter => 10139, 400, "consumer filter in FilterSubjects cannot be empty";
    source_duplicate_detected => 10140, 400, "duplicate source configuration detected";
    source_invalid_stream_name => 10141, 400, "sourced stream name is invalid";
    mirror_invalid_stream_name => 10142, 400, "mirrored stream name is invalid";
    mirror_with_first_seq => 10143, 400, "stream mirrors can not have first sequence configured";
    consumer_already_exists => 10148, 400, "consumer already exists";
    consumer_does_not_exist => 10149, 400, "consumer does not exist";
    mirror_multiple_filters_not_allowed => 10150, 400, "mirror with multiple subject transforms cannot also have a single subject filter";
    consumer_priority_policy_without_group => 10159, 400, "Setting PriorityPolicy requires at least one PriorityGroup to be set";
    consumer_invalid_priority_group => 10160, 400, "Provided priority group does not exist for this consumer";
    consumer_empty_group_name => 10161, 400, "Group name cannot be an empty string";
    consumer_invalid_group_name => 10162, 400, "Valid priority group name must match A-Z, a-z, 0-9, -_/=)+ and may not exceed 16 characters";
    message_ttl_invalid => 10165, 400, "invalid per-message TTL";
    message_ttl_disabled => 10166, 400, "per-message TTL is disabled";
    message_incr_disabled => 10168, 400, "message counters is disabled";
    message_incr_missing => 10169, 400, "message counter increment is missing";
    message_incr_payload => 10170, 400, "message counter has payload";
    message_incr_invalid => 10171, 400, "message counter increment is invalid";
    message_counter_broken => 10172, 400, "message counter is broken";
    mirror_with_counters => 10173, 400, "stream mirrors can not also calculate counters";
    consumer_push_with_priority_group => 10178, 400, "priority groups can not be used with push consumers";
    mirror_with_msg_schedules => 10186, 400, "stream mirrors can not also schedule messages";
    source_with_msg_schedules => 10187, 400, "stream source can not also schedule messages";
    consumer_priority_group_with_policy_none => 10196, 400, "consumer can not have priority groups when policy is none";
    consumer_pinned_ttl_without_priority_policy => 10197, 400, "PinnedTTL cannot be set when PriorityPolicy is none";
    mirror_with_atomic_publish => 10198, 400, "stream mirrors can not also use atomic publishing";
    batch_publish_disabled => 10205, 400, "batch publish is disabled";
    batch_publish_invalid_pattern => 10206, 400, "batch publish pattern is invalid";
    batch_publish_invalid_batch_id => 10207, 400, "batch publish ID is invalid";
    batch_publish_unknown_batch_id => 10208, 400, "batch publish ID unknown";
    mirror_with_batch_publish => 10209, 400, "stream mirrors can not also use batch publishing";
    batch_publish_too_many_inflight => 10211, 429, "batch publish too many inflight";
    mirror_durable_consumer_cfg_invalid => 10213, 400, "stream mirror consumer config is invalid";
    mirror_consumer_requires_ack_fc => 10214, 400, "stream mirror consumer requires flow control ack policy";
    source_durable_consumer_cfg_invalid => 10215, 400, "stream source consumer config is invalid";
    source_durable_consumer_duplicate_detected => 10216, 400, "duplicate stream source consumer detected";
    source_consumer_requires_ack_fc => 10217, 400, "stream source consumer requires flow control ack policy";
    consumer_wq_multiple_unfiltered => 10099, 400, "multiple non-filtered consumers not allowed on workqueue stream";
    consumer_name_contains_path_separators => 10127, 400, "Consumer name can not contain path separators";
    consumer_wq_consumer_not_unique => 10100, 400, "filtered consumer not unique on workqueue stream";
    message_schedules_disabled => 10188, 400, "message schedules is disabled";
    message_schedules_pattern_invalid => 10189, 400, "message schedules pattern is invalid";
    message_schedules_target_invalid => 10190, 400, "message schedules target is invalid";
    message_schedules_ttl_invalid => 10191, 400, "message schedules invalid per-message TTL";
    message_schedules_rollup_invalid => 10192, 400, "message schedules invalid rollup";
    message_schedules_source_invalid => 10203, 400, "message schedules source is invalid";
    message_schedules_scheduler_invalid => 10212, 400, "message schedules invalid scheduler";
    message_schedules_time_zone_invalid => 10223, 400, "message schedules time zone is invalid";
    consumer_ack_fc_requires_push => 10218, 400, "flow control ack policy requires a push based consumer";
    consumer_ack_fc_requires_max_ack_pending => 10220, 400, "flow control ack policy requires max ack pending";
    consumer_ack_fc_requires_no_ack_wait => 10221, 400, "flow control ack policy requires unset ack wait";
    consumer_ack_fc_requires_no_max_deliver => 10222, 400, "flow control ack policy requires unset max deliver";
}

catalog_with! {
    atomic_publish_unsupported_header => 10177, 400, "atomic publish unsupported header used: {}";
    atomic_publish_too_large_batch => 10199, 400, "atomic publish batch is too large: {}";
    stream_wrong_last_msg_id => 10070, 400, "wrong last msg ID: {}";
    stream_wrong_last_sequence => 10071, 400, "wrong last sequence: {}";
    consumer_invalid_policy => 10094, 400, "{}";
    consumer_invalid_sampling => 10095, 400, "failed to parse consumer sampling configuration: {}";
    stream_purge_failed => 10110, 500, "{}";
    stream_rollup_failed => 10111, 500, "{}";
    stream_invalid_external_delivery_subj => 10024, 400, "stream external delivery prefix {} must not contain wildcards";
    sequence_not_found => 10043, 400, "sequence {} not found";
    stream_create => 10049, 500, "{}";
    placement_refused => 10005, 400, "{}";
    stream_msg_delete_failed => 10057, 500, "{}";
    stream_restore => 10062, 500, "restore failed: {}";
    stream_snapshot => 10064, 500, "snapshot failed: {}";
    stream_update => 10069, 500, "{}";
    consumer_max_pending_ack_excess => 10121, 400, "consumer max ack pending exceeds system limit of {}";
    consumer_inactive_threshold_excess => 10153, 400, "consumer inactive threshold exceeds system limit of {}";
    consumer_invalid_reset => 10204, 400, "invalid reset: {}";
    source_invalid_subject_filter => 10145, 400, "source transform source: {}";
    source_invalid_transform_destination => 10146, 400, "source transform: {}";
    mirror_invalid_subject_filter => 10151, 400, "mirror transform source: {}";
    mirror_invalid_transform_destination => 10154, 400, "mirror transform: {}";
    stream_transform_invalid_source => 10155, 400, "stream transform source: {}";
    stream_transform_invalid_destination => 10156, 400, "stream transform: {}";
}

impl ApiError {
    /// An error with nats-server's `err_code`, HTTP-like `code` and description.
    pub fn new(err_code: u16, code: u16, description: &str) -> ApiError {
        ApiError {
            code,
            err_code,
            description: description.to_string(),
        }
    }

    pub fn stream_not_found() -> ApiError {
        Self::new(10059, 404, "stream not found")
    }
    pub fn consumer_not_found() -> ApiError {
        Self::new(10014, 404, "consumer not found")
    }
    pub fn no_message_found() -> ApiError {
        Self::new(10037, 404, "no message found")
    }
    pub fn bad_request() -> ApiError {
        Self::new(10003, 400, "bad request")
    }
    pub fn invalid_json(err: &str) -> ApiError {
        Self::new(10025, 400, &format!("invalid JSON: {err}"))
    }
    pub fn stream_invalid_config(err: &str) -> ApiError {
        Self::new(10052, 500, err)
    }
    pub fn stream_name_exists() -> ApiError {
        Self::new(
            10058,
            400,
            "stream name already in use with a different configuration",
        )
    }
    pub fn stream_mismatch() -> ApiError {
        Self::new(10056, 400, "stream name in subject does not match request")
    }
    pub fn subject_overlap() -> ApiError {
        Self::new(10065, 400, "subjects overlap with an existing stream")
    }
    pub fn not_enabled_for_account() -> ApiError {
        Self::new(10039, 503, "JetStream not enabled for account")
    }
    pub fn consumer_create(err: &str) -> ApiError {
        Self::new(10012, 500, err)
    }
    pub fn max_streams() -> ApiError {
        Self::new(10027, 400, "maximum number of streams reached")
    }
    pub fn max_consumers() -> ApiError {
        Self::new(10026, 400, "maximum consumers limit reached")
    }
    pub fn not_empty_request() -> ApiError {
        Self::new(10038, 400, "expected an empty request payload")
    }
    pub fn stream_store_failed(err: &str) -> ApiError {
        Self::new(10077, 503, err)
    }
    /// A request asked (`Nats-Required-Api-Level`) for a newer JetStream API level.
    pub fn api_level_required() -> ApiError {
        Self::new(10185, 412, "JetStream minimum api level required")
    }
    /// A cluster-only request (leader step-down, peers, moves) on a server without
    /// JetStream clustering.
    pub fn clustering_required() -> ApiError {
        Self::new(10010, 503, "JetStream clustering support required")
    }
    /// `10021`: stream external api prefix {prefix} must not overlap with {subject}
    pub fn stream_external_api_overlap(prefix: &str, subject: &str) -> ApiError {
        Self::new(
            10021,
            400,
            &format!("stream external api prefix {prefix} must not overlap with {subject}"),
        )
    }
    pub fn sealed() -> ApiError {
        Self::new(10109, 400, "invalid operation on sealed stream")
    }
}

/// Parses an API body as Go does: `null` means the zero value, so null fields are dropped
/// before typed parsing. `strict` (`jetstream { strict }`, on by default as in nats-server
/// 2.12+) refuses a field the request type does not have, with Go's words.
pub fn from_json<T: serde::de::DeserializeOwned>(body: &[u8], strict: bool) -> Result<T, ApiError> {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.retain(|_, x| !x.is_null());
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(&e.to_string()))?;
    if v.is_null() {
        // Go leaves the target untouched for `null`.
        v = serde_json::Value::Object(Default::default());
    }
    strip(&mut v);
    if !strict {
        return serde_json::from_value(v).map_err(|e| ApiError::invalid_json(&e.to_string()));
    }
    let mut unknown = None;
    let parsed: Result<T, _> = serde_ignored::deserialize(v, |path| {
        if unknown.is_none() {
            unknown = Some(match path {
                serde_ignored::Path::Map { key, .. } => key.clone(),
                other => other.to_string(),
            });
        }
    });
    let parsed = parsed.map_err(|e| ApiError::invalid_json(&e.to_string()))?;
    match unknown {
        Some(field) => Err(ApiError::invalid_json(&format!(
            "json: unknown field {field:?}"
        ))),
        None => Ok(parsed),
    }
}

/// Parses an optional JSON body (empty means defaults).
pub fn parse_opt<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    strict: bool,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    from_json(body, strict)
}

/// An API error response: the type, the error, and the paging fields some types always carry.
pub(crate) fn error_body(kind: &str, e: ApiError) -> Value {
    let mut v = json!({"type": format!("io.nats.jetstream.api.v1.{kind}"), "error": e});
    if kind == "stream_info_response" {
        v["total"] = json!(0);
        v["offset"] = json!(0);
        v["limit"] = json!(0);
    }
    v
}
