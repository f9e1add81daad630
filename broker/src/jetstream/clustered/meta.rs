//! The meta group's state: which streams exist in the cluster, on which servers, in which
//! Raft group. Every JetStream server of the cluster holds the same copy, built by applying
//! the meta log; the meta leader alone proposes changes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::jetstream::config::StreamConfig;

/// The meta group's name (nats-server's, in paths and on `$NRG` subjects).
pub const META_GROUP: &str = "_meta_";

/// Where one stream lives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StreamAssignment {
    pub account: String,
    pub config: StreamConfig,
    /// When it was created (unix nanos), the same on every replica.
    pub created: i64,
    /// Its Raft group (`S-R3F-…`); unused for one replica.
    pub group: String,
    /// The servers holding it, by name.
    pub peers: Vec<String>,
}

/// A change to the meta state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MetaOp {
    AddStream { sa: StreamAssignment },
    UpdateStream { sa: StreamAssignment },
    RemoveStream { account: String, stream: String },
}

/// One entry of the meta log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetaEntry {
    /// The meta leader that proposed it.
    pub proposer: u64,
    /// Where the requester waits for the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    #[serde(flatten)]
    pub op: MetaOp,
}

/// The applied meta state.
#[derive(Debug, Default)]
pub struct MetaState {
    /// Streams by (account, name).
    pub streams: BTreeMap<(String, String), StreamAssignment>,
}

impl MetaState {
    /// Applies one change.
    pub fn apply(&mut self, op: &MetaOp) {
        match op {
            MetaOp::AddStream { sa } | MetaOp::UpdateStream { sa } => {
                self.streams
                    .insert((sa.account.clone(), sa.config.name.clone()), sa.clone());
            }
            MetaOp::RemoveStream { account, stream } => {
                self.streams.remove(&(account.clone(), stream.clone()));
            }
        }
    }

    /// The assignment of `stream` in `account`.
    pub fn stream(&self, account: &str, stream: &str) -> Option<&StreamAssignment> {
        self.streams.get(&(account.to_string(), stream.to_string()))
    }

    /// The assignments of one account.
    pub fn account_streams<'a>(
        &'a self,
        account: &'a str,
    ) -> impl Iterator<Item = &'a StreamAssignment> + 'a {
        self.streams
            .values()
            .filter(move |sa| sa.account == account)
    }

    /// Chooses `replicas` servers among `candidates` for a new stream: the ones holding the
    /// fewest streams first (spreading assets), ties broken at random so that equal servers
    /// share the load. `None` when there are not enough.
    pub fn place(&self, candidates: &[String], replicas: usize) -> Option<Vec<String>> {
        if candidates.len() < replicas {
            return None;
        }
        let mut load: Vec<(usize, u64, &String)> = candidates
            .iter()
            .map(|c| {
                let n = self
                    .streams
                    .values()
                    .filter(|sa| sa.peers.contains(c))
                    .count();
                (n, fastrand::u64(..), c)
            })
            .collect();
        load.sort();
        Some(
            load.into_iter()
                .take(replicas)
                .map(|(_, _, c)| c.clone())
                .collect(),
        )
    }
}

/// A new stream group's name, as nats-server forms them (`S-R3F-` and 8 random characters).
pub fn group_name(replicas: i64, storage: crate::jetstream::config::Storage) -> String {
    const ALPHA: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let st = match storage {
        crate::jetstream::config::Storage::File => 'F',
        crate::jetstream::config::Storage::Memory => 'M',
    };
    let tail: String = (0..8)
        .map(|_| ALPHA[fastrand::usize(..ALPHA.len())] as char)
        .collect();
    format!("S-R{replicas}{st}-{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_spreads_and_refuses_too_few() {
        let mut st = MetaState::default();
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(st.place(&names, 4), None);
        let cfg: StreamConfig = serde_json::from_str(r#"{"name": "S"}"#).unwrap();
        st.apply(&MetaOp::AddStream {
            sa: StreamAssignment {
                account: "$G".into(),
                config: cfg,
                created: 0,
                group: "S-R1F-x".into(),
                peers: vec!["a".into()],
            },
        });
        let two = st.place(&names, 2).unwrap();
        assert!(!two.contains(&"a".to_string()), "{two:?}");
        let entry = MetaEntry {
            proposer: 1,
            reply: None,
            op: MetaOp::RemoveStream {
                account: "$G".into(),
                stream: "S".into(),
            },
        };
        let v = serde_json::to_value(&entry).unwrap();
        assert_eq!(v["op"], "remove_stream");
        let back: MetaEntry = serde_json::from_value(v).unwrap();
        st.apply(&back.op);
        assert!(st.streams.is_empty());
    }
}
