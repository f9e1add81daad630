//! A stream's consumers: creating, updating, restoring and deleting them, their stored state,
//! and acknowledgements coming in.

use std::path::PathBuf;
use std::time::Instant;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{Meta, Stream};
use crate::clock::unix_nanos;
use crate::jetstream::config::Retention;
use crate::jetstream::consumer::{Consumer, ConsumerState, Ctx};
use crate::jetstream::consumer_config::ConsumerConfig;
use crate::jetstream::crypt;
use crate::jetstream::errors::ApiError;
use crate::server::Server;

impl Stream {
    pub(super) fn process_ack(
        &mut self,
        server: &Server,
        subject: &str,
        reply: Option<&str>,
        body: &[u8],
    ) {
        // $JS.ACK.<stream>.<consumer>.<dc>.<sseq>.<dseq>.<ts>.<pending> (v1), or the v2 form with
        // domain and account hash in front.
        let toks: Vec<&str> = subject.split('.').collect();
        let (consumer, sseq) = match toks.len() {
            9 => (toks[3], toks[5]),
            n if n >= 12 => (toks[5], toks[7]),
            _ => return,
        };
        let Ok(sseq) = sseq.parse::<u64>() else {
            return;
        };
        let acked = {
            let (mut ctx, consumers) = self.ctx(server);
            match consumers.get_mut(consumer) {
                Some(c) => c.ack(&mut ctx, sseq, body, reply),
                None => return,
            }
        };
        self.wake = true;
        self.retire(&acked);
    }

    /// Interest and work-queue retention: removes acknowledged messages nobody needs.
    pub(super) fn retire(&mut self, acked: &[u64]) {
        if self.cfg.retention == Retention::Limits || acked.is_empty() || self.snapshotting() {
            return;
        }
        let mut removed = Vec::new();
        for &seq in acked {
            let Some((subj, _, _)) = self.store.peek(seq) else {
                continue;
            };
            let subj = subj.clone();
            if !self.consumers.values().any(|c| c.needs(seq, &subj)) {
                self.remove_msg(seq);
                removed.push(seq);
            }
        }
        self.replicate_removal(removed);
    }

    pub(super) fn consumers_dir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join("obs"))
    }

    pub(super) fn consumer_persisted(&self, c: &ConsumerConfig) -> bool {
        self.dir.is_some() && !c.mem_storage
    }

    pub(super) fn restore_consumers(&mut self) {
        let Some(dir) = self.consumers_dir() else {
            return;
        };
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return;
        };
        for e in rd.flatten() {
            let path = e.path();
            let Ok(raw) = std::fs::read(path.join("meta.inf")) else {
                continue;
            };
            let was_plain = !crypt::is_sealed(&raw);
            let meta = crypt::open_bytes(self.key.as_deref(), raw, &path.join("meta.inf"))
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    serde_json::from_slice::<Meta<ConsumerConfig>>(&b).map_err(|e| e.to_string())
                });
            let meta = match meta {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(
                        "JetStream: unreadable consumer metadata in {}: {e}",
                        path.display()
                    );
                    continue;
                }
            };
            let name = e.file_name().to_string_lossy().into_owned();
            let state = crypt::read_file(self.key.as_deref(), &path.join("o.dat"))
                .ok()
                .and_then(|b| serde_json::from_slice::<ConsumerState>(&b).ok());
            let mut c = match state {
                Some(st) => Consumer::restore(name.clone(), meta.config, meta.created, st),
                None => Consumer::new(name.clone(), meta.config, &self.store, meta.created),
            };
            c.recount(&self.store);
            self.consumers.insert(name.clone(), c);
            if was_plain && self.key.is_some() {
                self.write_consumer_meta(&name);
            }
        }
    }

    pub(super) fn save_consumers(&mut self, all: bool) {
        self.last_state_save = Instant::now();
        let Some(dir) = self.consumers_dir() else {
            return;
        };
        let persisted: Vec<String> = self
            .consumers
            .iter()
            .filter(|(_, c)| (c.dirty || all) && self.consumer_persisted(&c.cfg))
            .map(|(n, _)| n.clone())
            .collect();
        for n in persisted {
            let c = self.consumers.get_mut(&n).expect("listed");
            c.dirty = false;
            let d = dir.join(&n);
            let body = serde_json::to_vec(&c.st).expect("state serializes");
            if let Err(e) = crypt::write_file(self.key.as_deref(), &d.join("o.dat"), &body) {
                tracing::error!(
                    "JetStream consumer '{} > {n}' state write failed: {e}",
                    self.name
                );
            }
        }
    }

    pub(super) fn create_consumer(
        &mut self,
        server: &Server,
        body: &[u8],
        subj_name: Option<String>,
        subj_filter: Option<String>,
        durable_api: bool,
    ) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        struct Req {
            #[serde(default)]
            stream_name: String,
            config: Option<ConsumerConfig>,
            #[serde(default)]
            action: String,
            /// Known to nats-server; ours fills defaults whether or not it is set.
            #[serde(default, rename = "pedantic")]
            _pedantic: bool,
        }
        if body.is_empty() {
            return Err(ApiError::invalid_json("unexpected end of JSON input"));
        }
        let req: Req = crate::jetstream::errors::from_json(body, self.shared.strict)?;
        if !matches!(req.action.as_str(), "" | "create" | "update") {
            return Err(ApiError::invalid_json(&format!(
                "unknown consumer action: {:?}",
                req.action
            )));
        }
        if !req.stream_name.is_empty() && req.stream_name != self.name {
            return Err(ApiError::stream_mismatch());
        }
        // No config at all is an empty one, as nats-server reads it.
        let mut cfg = match req.config {
            Some(c) => c,
            None => crate::jetstream::errors::from_json(b"{}", false)?,
        };
        // The subject's consumer name, else the configuration's, must not hold a path
        // separator; nats-server checks it before the durable name.
        if subj_name
            .as_deref()
            .or(cfg.name.as_deref())
            .is_some_and(|n| n.contains(['/', '\\']))
        {
            return Err(ApiError::consumer_name_contains_path_separators());
        }
        if durable_api {
            let name = subj_name.clone().unwrap_or_default();
            match cfg.durable_name.as_deref() {
                None | Some("") => return Err(ApiError::consumer_durable_name_not_set()),
                Some(d) if d != name => {
                    return Err(ApiError::consumer_durable_name_not_match_subject())
                }
                _ => {}
            }
            cfg.name = Some(name);
        } else if let Some(n) = &subj_name {
            if let Some(d) = cfg.durable_name.as_deref().filter(|d| !d.is_empty()) {
                if d != n {
                    return Err(ApiError::consumer_durable_name_not_match_subject());
                }
            }
            // The subject's name wins over the configuration's (nats-server).
            cfg.name = Some(n.clone());
        } else if cfg.durable_name.as_deref().is_some_and(|d| !d.is_empty()) {
            return Err(ApiError::consumer_ephemeral_with_durable_name());
        }
        if let Some(f) = &subj_filter {
            if cfg.filter_subject != *f || !cfg.filter_subjects.is_empty() {
                return Err(ApiError::consumer_create_filter_subject_mismatch());
            }
        }
        cfg.normalize(&self.cfg)?;
        let name = match cfg.the_name() {
            Some(n) => n.to_string(),
            None => random_name(),
        };
        // Durables carry their name twice; ephemerals only at the top level (as nats-server).
        if cfg.name.is_none() && cfg.durable_name.is_some() {
            cfg.name = cfg.durable_name.clone();
        }
        if let Some(existing) = self.consumers.get(&name) {
            // The same configuration again is fine whatever the action (nats-server).
            if existing.cfg == cfg {
                return Ok(self.created_response(server, &name));
            }
            if req.action == "create" {
                return Err(ApiError::consumer_already_exists());
            }
            if let Some(why) = refused_update(&existing.cfg, &cfg) {
                return Err(ApiError::consumer_create(why));
            }
            self.check_work_queue(&cfg, Some(&name))?;
            let c = self.consumers.get_mut(&name).expect("exists");
            c.reconfigure(cfg, &self.store);
            self.write_consumer_meta(&name);
            self.wake = true;
            return Ok(self.created_response(server, &name));
        }
        if req.action == "update" {
            return Err(ApiError::consumer_does_not_exist());
        }
        if self.cfg.max_consumers > 0 && self.consumers.len() as i64 >= self.cfg.max_consumers {
            return Err(ApiError::max_consumers());
        }
        self.shared.check_consumer_limit(&self.account.name)?;
        self.check_work_queue(&cfg, None)?;
        // nats-server makes the consumer's store here; a name the file system refuses (too
        // long) fails with its words.
        if let Some(d) = self.dir.as_ref().filter(|_| !cfg.mem_storage) {
            std::fs::create_dir_all(d.join("obs").join(&name))
                .map_err(|_| ApiError::consumer_create("error creating store for consumer"))?;
        }
        let created = unix_nanos();
        let c = Consumer::new(name.clone(), cfg, &self.store, created);
        self.consumers.insert(name.clone(), c);
        self.write_consumer_meta(&name);
        self.save_consumers(false);
        self.wake = true;
        crate::jetstream::advisory::consumer_action(
            server,
            &self.account,
            &mut self.sender,
            &self.name,
            &name,
            "create",
        );
        Ok(self.created_response(server, &name))
    }

    /// A work-queue stream hands each message to one consumer: filters must not overlap, and
    /// an unfiltered consumer must be alone. An update is checked for overlapping filters only
    /// (nats-server lets an update drop a consumer's filter).
    fn check_work_queue(
        &self,
        cfg: &ConsumerConfig,
        updating: Option<&str>,
    ) -> Result<(), ApiError> {
        if self.cfg.retention != Retention::WorkQueue {
            return Ok(());
        }
        let mine = cfg.filters();
        for (name, c) in &self.consumers {
            if Some(name.as_str()) == updating {
                continue;
            }
            let theirs = c.cfg.filters();
            if mine.is_empty() || theirs.is_empty() {
                if updating.is_some() {
                    continue;
                }
                return Err(ApiError::consumer_wq_multiple_unfiltered());
            }
            if mine.iter().any(|a| {
                theirs
                    .iter()
                    .any(|b| crate::jetstream::config::subjects_overlap(a, b))
            }) {
                return Err(ApiError::consumer_wq_consumer_not_unique());
            }
        }
        Ok(())
    }

    pub(super) fn write_consumer_meta(&mut self, name: &str) {
        let Some(c) = self.consumers.get_mut(name) else {
            return;
        };
        if self.dir.is_none() || c.cfg.mem_storage {
            return;
        }
        c.dirty = true;
        c.replicate = true;
        let Some(dir) = self.dir.as_ref().map(|d| d.join("obs").join(name)) else {
            return;
        };
        let meta = Meta {
            config: &c.cfg,
            created: c.created,
        };
        let key = self.key.as_deref();
        let r = std::fs::create_dir_all(&dir).and_then(|_| {
            crypt::write_file(
                key,
                &dir.join("meta.inf"),
                &serde_json::to_vec(&meta).expect("serializes"),
            )
        });
        if let Err(e) = r {
            tracing::error!(
                "JetStream consumer '{} > {name}' metadata write failed: {e}",
                self.name
            );
        }
    }

    /// A create/update answer: `push_bound` as of now, as nats-server reports it there too.
    pub(super) fn created_response(&mut self, server: &Server, name: &str) -> Value {
        let (mut ctx, consumers) = self.ctx(server);
        if let Some(c) = consumers.get_mut(name) {
            c.refresh_interest(&mut ctx);
        }
        self.consumer_response(name, "consumer_create_response")
    }

    pub(super) fn consumer_response(&self, name: &str, kind: &str) -> Value {
        let c = &self.consumers[name];
        let mut v = serde_json::to_value(c.info(&self.name)).expect("serializes");
        crate::jetstream::config::with_server_metadata(&mut v["config"]);
        v["type"] = json!(format!("io.nats.jetstream.api.v1.{kind}"));
        // A consumer of a standalone server reports no `cluster` (nats-server's
        // `clusterInfo` is nil without a Raft group).
        v
    }

    pub(super) fn delete_consumer(&mut self, server: &Server, name: &str) -> bool {
        let Some(mut c) = self.consumers.remove(name) else {
            return false;
        };
        crate::jetstream::advisory::consumer_action(
            server,
            &self.account,
            &mut self.sender,
            &self.name,
            name,
            "delete",
        );
        {
            let mut ctx = Ctx {
                server,
                account: &self.account,
                sender: &mut self.sender,
                store: &mut self.store,
                stream: &self.name,
            };
            c.deleted(&mut ctx);
        }
        if let Some(d) = self.consumers_dir() {
            let _ = std::fs::remove_dir_all(d.join(name));
        }
        // Interest retention: messages only this consumer held can go.
        if self.cfg.retention == Retention::Interest {
            let seqs = self.store.matching(">");
            self.retire(&seqs);
        }
        true
    }
}

/// A random consumer name, as nats-server makes them (8 base62 characters of a hash).
pub(super) fn random_name() -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| A[fastrand::usize(..A.len())] as char)
        .collect()
}

/// Why a consumer update is refused, in nats-server's words and order
/// (`checkNewConsumerConfig`); `None` when the changed fields may change.
pub(super) fn refused_update(old: &ConsumerConfig, new: &ConsumerConfig) -> Option<&'static str> {
    let why = if old.deliver_policy != new.deliver_policy {
        "deliver policy can not be updated"
    } else if old.opt_start_seq != new.opt_start_seq {
        "start sequence can not be updated"
    } else if old.opt_start_time != new.opt_start_time {
        "start time can not be updated"
    } else if old.ack_policy != new.ack_policy {
        "ack policy can not be updated"
    } else if old.replay_policy != new.replay_policy {
        "replay policy can not be updated"
    } else if old.idle_heartbeat != new.idle_heartbeat {
        "heart beats can not be updated"
    } else if old.flow_control != new.flow_control {
        "flow control can not be updated"
    } else if !old.is_push() && new.is_push() {
        "can not update pull consumer to push based"
    } else if old.is_push() && !new.is_push() {
        "can not update push consumer to pull based"
    } else if old.max_waiting != new.max_waiting {
        "max waiting can not be updated"
    } else {
        return None;
    };
    Some(why)
}
