//! The stream thread's side of backups and restores ([`crate::jetstream::backup`]): the
//! state and consumers a backup starts with, messages handed out in bounded batches (so the
//! thread is never held for long), retention paused while a backup runs, and a restored
//! stream filled with its messages and consumers before anyone can see it.

use std::sync::mpsc::SyncSender;

use serde_json::{json, Value};

use super::api::InfoReq;
use super::Stream;
use crate::clock::unix_nanos;
use crate::jetstream::config::Retention;
use crate::jetstream::consumer::{Consumer, ConsumerState};
use crate::jetstream::consumer_config::ConsumerConfig;
use crate::jetstream::time::rfc3339_nanos;

use crate::jetstream::archive::Entry;
use crate::jetstream::store::StoredMsg;

/// What a stream's thread does for a backup or a restore.
pub enum SnapCmd {
    /// A backup begins: its config, state and consumers (retention pauses until `End`).
    Start {
        no_consumers: bool,
        done: SyncSender<SnapStart>,
    },
    /// Messages from `from` up to `to`, a bounded batch.
    Read {
        from: u64,
        to: u64,
        done: SyncSender<Vec<StoredMsg>>,
    },
    /// A backup ended.
    End,
    /// Restore: store these messages at their sequences.
    Restore {
        msgs: Vec<Entry>,
        done: SyncSender<Result<(), String>>,
    },
    /// Restore: sequences through `last_seq` taken, consumers in place; answers the stream's
    /// `stream_create_response`.
    RestoreFinish {
        last_seq: u64,
        consumers: Vec<(String, ConsumerConfig, ConsumerState)>,
        done: SyncSender<Result<Value, String>>,
    },
}

/// What a backup starts with.
#[derive(Debug)]
pub struct SnapStart {
    pub config: Value,
    /// The state the API answer reports.
    pub state: Value,
    /// The state the archive carries (its consumer count is the consumers included).
    pub archived: Value,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Consumer name and `{"config", "state"}`.
    pub consumers: Vec<(String, Value)>,
}

/// The most message bytes one batch for a backup carries.
const BATCH_BYTES: usize = 1 << 20;

impl Stream {
    /// Whether a backup is running (retention waits for it).
    pub(super) fn snapshotting(&self) -> bool {
        self.snapshots > 0
    }

    pub(super) fn snapshot_cmd(&mut self, cmd: SnapCmd) {
        match cmd {
            SnapCmd::Start { no_consumers, done } => {
                self.snapshots += 1;
                let st = self.store.state();
                let consumers: Vec<(String, Value)> = if no_consumers {
                    Vec::new()
                } else {
                    self.visible_consumers()
                        .map(|(n, c)| {
                            (
                                n.clone(),
                                json!({"config": c.cfg, "state": c.st.to_nats(st.last_seq)}),
                            )
                        })
                        .collect()
                };
                let mut state = self.state_value(&st, &InfoReq::default());
                // The response reports the stream's consumers, the archive those it carries.
                let archived = {
                    let mut s = state.clone();
                    s["consumer_count"] = json!(consumers.len());
                    s
                };
                if no_consumers {
                    state["consumer_count"] = json!(self.visible_consumers().count());
                }
                let _ = done.send(SnapStart {
                    config: serde_json::to_value(&self.cfg).expect("config serializes"),
                    state,
                    archived,
                    first_seq: st.first_seq,
                    last_seq: st.last_seq,
                    consumers,
                });
            }
            SnapCmd::Read { from, to, done } => {
                let mut out = Vec::new();
                let mut bytes = 0;
                let mut seq = from;
                while bytes < BATCH_BYTES {
                    let Some(s) = self.store.next_matching(seq, &[]).filter(|s| *s <= to) else {
                        break;
                    };
                    if let Some(m) = self.store.get(s) {
                        bytes += m.subject.len() + m.hdr.len() + m.data.len();
                        out.push(m);
                    }
                    seq = s + 1;
                }
                let _ = done.send(out);
            }
            SnapCmd::End => {
                self.snapshots = self.snapshots.saturating_sub(1);
                if self.snapshots == 0 {
                    self.catch_up_retention();
                }
            }
            SnapCmd::Restore { msgs, done } => {
                let mut r = Ok(());
                for m in msgs {
                    let last = self.store.state().last_seq;
                    if m.seq <= last {
                        r = Err(format!("message sequence {} out of order", m.seq));
                        break;
                    }
                    let stored = self
                        .store
                        .skip_to(m.seq - 1)
                        .and_then(|_| self.store.store(&m.name, &m.hdr, &m.data, m.ts));
                    match stored {
                        Ok(s) if s == m.seq => {}
                        Ok(s) => {
                            r = Err(format!("message stored at {s}, expected {}", m.seq));
                            break;
                        }
                        Err(e) => {
                            r = Err(e.to_string());
                            break;
                        }
                    }
                }
                let _ = done.send(r);
            }
            SnapCmd::RestoreFinish {
                last_seq,
                consumers,
                done,
            } => {
                let r = self.finish_restore(last_seq, consumers);
                let _ = done.send(r);
            }
        }
    }

    fn finish_restore(
        &mut self,
        last_seq: u64,
        consumers: Vec<(String, ConsumerConfig, ConsumerState)>,
    ) -> Result<Value, String> {
        self.store.skip_to(last_seq).map_err(|e| e.to_string())?;
        self.store.sync().map_err(|e| e.to_string())?;
        let now = unix_nanos();
        for (name, mut cfg, st) in consumers {
            if cfg.name.as_deref().is_none_or(str::is_empty) {
                cfg.name = Some(name.clone());
            }
            let mut c = Consumer::restore(name.clone(), cfg, now, st);
            c.recount(&self.store);
            c.dirty = true;
            c.replicate = true;
            self.consumers.insert(name.clone(), c);
            self.write_consumer_meta(&name);
        }
        self.save_consumers(true);
        self.rebuild_dedupe();
        self.catch_up_retention();
        self.publish_numbers();
        let st = self.store.state();
        Ok(json!({
            "type": "io.nats.jetstream.api.v1.stream_create_response",
            "config": self.cfg,
            "created": rfc3339_nanos(self.created),
            "state": self.state_value(&st, &InfoReq::default()),
            "ts": rfc3339_nanos(unix_nanos()),
        }))
    }

    /// Applies the limits and retention a backup held back.
    fn catch_up_retention(&mut self) {
        if self.cfg.max_age > 0 {
            let cutoff = unix_nanos() - self.cfg.max_age;
            while let Some((seq, ts)) = self.store.first_msg() {
                if ts > cutoff {
                    break;
                }
                self.remove_msg(seq);
            }
        }
        if self.cfg.max_msgs_per_subject > 0 {
            for (subject, _) in self.store.subjects_matching(">") {
                self.enforce_limits(&subject);
            }
        } else {
            self.enforce_limits("");
        }
        if self.cfg.retention != Retention::Limits {
            let all = self.store.matching(">");
            self.retire(&all);
        }
        self.after_purge();
        self.wake = true;
    }
}
