//! JetStream API errors: nats-server's `{"code", "err_code", "description"}` triples.

use serde::Serialize;

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
    temp_storage_failed => 10072, 500, "JetStream unable to open temp storage for restore";
}

catalog_with! {
    consumer_invalid_policy => 10094, 400, "{}";
    consumer_invalid_sampling => 10095, 400, "failed to parse consumer sampling configuration: {}";
    stream_purge_failed => 10110, 500, "{}";
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
