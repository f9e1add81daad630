//! Errors of the reconcilers.

use crate::render::RenderError;

/// Why a reconcile failed (the controller retries with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Applying one child object failed.
    #[error("applying {kind} {name}: {source}")]
    Apply {
        /// Kind of the child.
        kind: &'static str,
        /// Name of the child.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// The NatsCluster's spec cannot be rendered.
    #[error("invalid NatsCluster spec: {0}")]
    Render(#[from] RenderError),
    /// A Stream spec cannot be turned into a JetStream configuration.
    #[error("invalid Stream spec: {0}")]
    StreamSpec(String),
    /// Connecting to the NATS cluster failed.
    #[error("connecting to {url}: {message}")]
    Connect {
        /// The URL tried.
        url: String,
        /// What async-nats reported.
        message: String,
    },
    /// A JetStream API call failed (message as the server sent it).
    #[error("{0}")]
    JetStream(String),
    /// Making or reading operator-mode keys and JWTs failed (never includes a seed).
    #[error("operator keys: {0}")]
    Auth(String),
    /// (De)serializing an object failed.
    #[error("serializing: {0}")]
    Serde(#[from] serde_json::Error),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// The object lacks metadata the reconciler needs.
    #[error("object has no metadata.{0}")]
    MissingMetadata(&'static str),
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    /// The apply or cleanup error itself, or what went wrong around it.
    fn from(e: kube::runtime::finalizer::Error<Error>) -> Error {
        match e {
            kube::runtime::finalizer::Error::ApplyFailed(e)
            | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
            other => Error::Finalizer(other.to_string()),
        }
    }
}

/// Result of the reconcilers.
pub type Result<T, E = Error> = std::result::Result<T, E>;
