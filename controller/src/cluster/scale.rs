//! The scale-down guard: `replicas` never goes below the replica count of a stream.

use futures::TryStreamExt;

/// A stream and its replica count, and where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamReplicas {
    /// Stream name.
    pub stream: String,
    /// Its replicas (`num_replicas`, or the Stream resource's `spec.replicas`).
    pub replicas: i64,
    /// Where it was found: `Stream resource ns/name`, `account A`, ...
    pub source: String,
}

/// What the guard decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Apply these replicas.
    Allow(i32),
    /// Keep the current replicas: a stream needs more servers, or the streams could not be
    /// listed. The message names the stream and what to do.
    Blocked {
        /// Replicas the StatefulSet keeps.
        keep: i32,
        /// Why, for the condition and the event.
        message: String,
    },
}

impl Scale {
    /// The replicas to apply.
    pub fn replicas(&self) -> i32 {
        match self {
            Scale::Allow(r) => *r,
            Scale::Blocked { keep, .. } => *keep,
        }
    }
}

/// Whether going from `current` (the StatefulSet's replicas, if it exists) to `desired`
/// needs the streams checked.
pub fn needs_check(desired: i32, current: Option<i32>) -> bool {
    current.is_some_and(|c| desired < c)
}

/// Decide the replicas to apply; `streams` is only read when scaling down.
pub fn decide(
    desired: i32,
    current: Option<i32>,
    streams: Option<&Result<Vec<StreamReplicas>, String>>,
) -> Scale {
    let Some(cur) = current.filter(|c| desired < *c) else {
        return Scale::Allow(desired);
    };
    match streams {
        None => Scale::Blocked {
            keep: cur,
            message: format!(
                "scaling down from {cur} to {desired} replicas waits: the streams have not been \
                 checked yet"
            ),
        },
        Some(Err(e)) => Scale::Blocked {
            keep: cur,
            message: format!(
                "scaling down from {cur} to {desired} replicas is refused: the streams' replica \
                 counts could not be listed ({e}); the StatefulSet keeps {cur} replicas until \
                 they can"
            ),
        },
        Some(Ok(list)) => {
            // The highest replica count; on a tie, the first by name for a stable message.
            let top = list
                .iter()
                .filter(|s| s.replicas > i64::from(desired))
                .max_by(|a, b| a.replicas.cmp(&b.replicas).then(b.stream.cmp(&a.stream)));
            match top {
                Some(s) => Scale::Blocked {
                    keep: cur,
                    message: format!(
                        "scaling down from {cur} to {desired} replicas is refused: stream {} \
                         ({}) has {} replicas; lower its replicas first, or set spec.replicas \
                         to at least {}. The StatefulSet keeps {cur} replicas",
                        s.stream, s.source, s.replicas, s.replicas
                    ),
                },
                None => Scale::Allow(desired),
            }
        }
    }
}

/// Every stream the JetStream API of one account lists (`$JS.API.STREAM.LIST`, paged),
/// with its replicas; `source` says which account.
pub async fn list_streams(
    client: async_nats::Client,
    source: &str,
    timeout: std::time::Duration,
) -> Result<Vec<StreamReplicas>, String> {
    let mut js = async_nats::jetstream::new(client);
    js.set_timeout(timeout);
    let fut = async {
        js.streams()
            .map_ok(|info| StreamReplicas {
                stream: info.config.name.clone(),
                replicas: i64::try_from(info.config.num_replicas).unwrap_or(i64::MAX),
                source: source.to_string(),
            })
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| format!("$JS.API.STREAM.LIST in {source}: {e}"))
    };
    tokio::time::timeout(timeout * 4, fut)
        .await
        .map_err(|_| format!("$JS.API.STREAM.LIST in {source}: no answer within {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, r: i64) -> StreamReplicas {
        StreamReplicas {
            stream: name.into(),
            replicas: r,
            source: "the server".into(),
        }
    }

    #[test]
    fn scaling_up_or_creating_is_never_checked() {
        assert!(!needs_check(3, None));
        assert!(!needs_check(3, Some(3)));
        assert!(!needs_check(5, Some(3)));
        assert!(needs_check(1, Some(3)));
        assert_eq!(decide(5, Some(3), None), Scale::Allow(5));
        assert_eq!(decide(3, None, None), Scale::Allow(3));
        assert_eq!(decide(3, Some(3), None), Scale::Allow(3));
    }

    #[test]
    fn scaling_below_a_stream_is_refused() {
        let streams = Ok(vec![s("A", 1), s("ORDERS", 3), s("B", 3), s("C", 2)]);
        let d = decide(2, Some(5), Some(&streams));
        assert_eq!(d.replicas(), 5);
        match d {
            Scale::Blocked { keep, message } => {
                assert_eq!(keep, 5);
                assert!(
                    message.contains("stream B (the server) has 3 replicas"),
                    "{message}"
                );
                assert!(message.contains("from 5 to 2"), "{message}");
                assert!(message.contains("at least 3"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // Down to the highest replica count is fine.
        assert_eq!(decide(3, Some(5), Some(&streams)), Scale::Allow(3));
        assert_eq!(
            decide(1, Some(3), Some(&Ok(vec![s("A", 1)]))),
            Scale::Allow(1)
        );
        assert_eq!(decide(1, Some(3), Some(&Ok(vec![]))), Scale::Allow(1));
    }

    #[test]
    fn unknown_streams_keep_the_replicas() {
        let d = decide(1, Some(3), Some(&Err("no responders".into())));
        match &d {
            Scale::Blocked { keep: 3, message } => {
                assert!(message.contains("no responders"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(decide(1, Some(3), None).replicas(), 3);
    }
}
