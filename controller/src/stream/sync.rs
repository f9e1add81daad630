//! Bring one JetStream stream to its spec through the JetStream API (no Kubernetes here).

use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamError, GetStreamErrorKind};
use async_nats::jetstream::stream::Config;
use async_nats::jetstream::{self, ErrorCode};

use super::config::diff;

/// What `sync` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The stream did not exist and was created.
    Created,
    /// The stream had existed (the caller said so) but was gone; it was created again.
    Restored,
    /// The server's configuration already matched the spec.
    InSync,
    /// The server's configuration differed in these fields and was updated.
    Updated(Vec<String>),
    /// The server's configuration differs in these fields; `preventUpdate` kept it.
    UpdatePrevented(Vec<String>),
}

/// Why `sync` or `delete` failed; the message is what the server or client said.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// The JetStream API answered with an error (its description and codes verbatim).
    #[error("{action} stream {stream}: {message}")]
    Api {
        /// create, update, look up or delete.
        action: &'static str,
        /// Stream name.
        stream: String,
        /// The server's error, as async-nats formats it.
        message: String,
    },
    /// No answer (no JetStream, timeout, connection).
    #[error("{action} stream {stream}: {message}")]
    Unavailable {
        /// create, update, look up or delete.
        action: &'static str,
        /// Stream name.
        stream: String,
        /// What the client reported.
        message: String,
    },
}

impl SyncError {
    /// Condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            SyncError::Api {
                action: "create", ..
            } => "CreateFailed",
            SyncError::Api {
                action: "update", ..
            } => "UpdateFailed",
            SyncError::Api {
                action: "delete", ..
            } => "DeleteFailed",
            SyncError::Api { .. } => "JetStreamError",
            SyncError::Unavailable { .. } => "JetStreamUnavailable",
        }
    }
}

fn create_err(
    action: &'static str,
    stream: &str,
    e: async_nats::jetstream::context::CreateStreamError,
) -> SyncError {
    let stream = stream.to_string();
    match e.kind() {
        CreateStreamErrorKind::JetStream(js) => SyncError::Api {
            action,
            stream,
            message: js.to_string(),
        },
        _ => SyncError::Unavailable {
            action,
            stream,
            message: e.to_string(),
        },
    }
}

fn get_err(action: &'static str, stream: &str, e: GetStreamError) -> SyncError {
    let stream = stream.to_string();
    match e.kind() {
        GetStreamErrorKind::JetStream(js) => SyncError::Api {
            action,
            stream,
            message: js.to_string(),
        },
        _ => SyncError::Unavailable {
            action,
            stream,
            message: e.to_string(),
        },
    }
}

fn is_not_found(e: &GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(js) if js.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Create the stream if missing, update it where it differs from `desired` (unless
/// `prevent_update`); `existed` says whether it was seen before (missing then is a restore).
pub async fn sync(
    js: &jetstream::Context,
    desired: &Config,
    existed: bool,
    prevent_update: bool,
) -> Result<Outcome, SyncError> {
    let name = desired.name.as_str();
    match js.get_stream(name).await {
        Ok(stream) => {
            let fields = diff(desired, &stream.cached_info().config);
            if fields.is_empty() {
                Ok(Outcome::InSync)
            } else if prevent_update {
                Ok(Outcome::UpdatePrevented(fields))
            } else {
                let mut update = desired.clone();
                // Only settable at creation; sending a different value is an error.
                update.first_sequence = stream.cached_info().config.first_sequence;
                js.update_stream(&update)
                    .await
                    .map_err(|e| create_err("update", name, e))?;
                Ok(Outcome::Updated(fields))
            }
        }
        Err(e) if is_not_found(&e) => {
            js.create_stream(desired.clone())
                .await
                .map_err(|e| create_err("create", name, e))?;
            Ok(if existed {
                Outcome::Restored
            } else {
                Outcome::Created
            })
        }
        Err(e) => Err(get_err("look up", name, e)),
    }
}

/// Delete the stream; a stream that is already gone is not an error. Returns whether it existed.
pub async fn delete(js: &jetstream::Context, name: &str) -> Result<bool, SyncError> {
    match js.delete_stream(name).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(get_err("delete", name, e)),
    }
}
