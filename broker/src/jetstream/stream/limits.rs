//! A stream's limits and removals: max messages, bytes, age and per subject, discard policy,
//! message TTLs, the duplicate window, purges.

use std::collections::HashMap;

use super::ingest::parse_ttl;
use super::Stream;
use crate::clock::unix_nanos;
use crate::jetstream::config::Discard;
use crate::jetstream::headers;
use crate::server::Server;

impl Stream {
    pub(super) fn enforce_limits(&mut self, subject: &str) {
        if self.snapshotting() {
            return;
        }
        if self.cfg.max_msgs_per_subject > 0 {
            while let Some(ss) = self.store.subject_state(subject) {
                if ss.msgs <= self.cfg.max_msgs_per_subject as u64 {
                    break;
                }
                self.remove_msg(ss.first);
            }
        }
        if self.cfg.discard == Discard::Old {
            if self.cfg.max_msgs > 0 {
                while self.store.state().msgs > self.cfg.max_msgs as u64 {
                    let Some((s, _)) = self.store.first_msg() else {
                        break;
                    };
                    self.remove_msg(s);
                }
            }
            if self.cfg.max_bytes > 0 {
                while self.store.state().bytes > self.cfg.max_bytes as u64 {
                    let Some((s, _)) = self.store.first_msg() else {
                        break;
                    };
                    self.remove_msg(s);
                }
            }
        }
    }

    /// Removes a message whose age or TTL ran out; with `subject_delete_marker_ttl`, the last
    /// message of a subject leaves a marker behind (`Nats-Marker-Reason: MaxAge`, a TTL of
    /// its own, `Nats-Rollup: sub`, no body), as nats-server does. A marker leaves none.
    pub(super) fn remove_expired(&mut self, server: &Server, seq: u64) {
        let Some(subject) = self.store.peek(seq).map(|(s, _, _)| s.clone()) else {
            return;
        };
        let was_marker = self.markers.remove(&seq);
        if !self.remove_msg(seq) {
            return;
        }
        let ttl = self.cfg.subject_delete_marker_ttl;
        if ttl <= 0 || was_marker || self.store.subject_state(&subject).is_some() {
            return;
        }
        let hdr = headers::with(
            b"",
            &[
                ("Nats-Marker-Reason", "MaxAge".to_string()),
                ("Nats-TTL", crate::clock::go_duration(i128::from(ttl))),
                ("Nats-Rollup", "sub".to_string()),
            ],
        );
        let now = unix_nanos();
        match self.store.store(&subject, &hdr, b"", now) {
            Ok(m) => {
                self.markers.insert(m);
                self.ttls.insert((now.saturating_add(ttl), m));
                self.after_store(server, (m, 0), &subject, &hdr, b"", now);
            }
            Err(e) => tracing::error!(
                "JetStream stream '{} > {}' could not store a delete marker: {e}",
                self.account.name,
                self.name
            ),
        }
    }

    pub(super) fn remove_msg(&mut self, seq: u64) -> bool {
        self.remove_msg_with(seq, false)
    }

    /// Removes a message; `erase` also overwrites its contents on disk.
    pub(super) fn remove_msg_with(&mut self, seq: u64, erase: bool) -> bool {
        let subject = match self.store.peek(seq) {
            Some((s, _, _)) => s.clone(),
            None => return false,
        };
        match self.store.remove_with(seq, erase) {
            Ok(true) => {
                for c in self.consumers.values_mut() {
                    c.on_removed(seq, &subject);
                }
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::error!(
                    "JetStream stream '{} > {}' delete failed: {e}",
                    self.account.name,
                    self.name
                );
                false
            }
        }
    }

    pub(super) fn expire_dedupe(&mut self, now: i64) {
        let cutoff = now - self.cfg.duplicate_window;
        while let Some((ts, _)) = self.dedupe_order.front() {
            if *ts > cutoff {
                break;
            }
            let (_, id) = self.dedupe_order.pop_front().expect("front");
            self.dedupe.remove(&id);
        }
    }

    /// After a restart: the message ids inside the duplicate window.
    /// The TTL index after a restart: every message's `Nats-TTL` read back (only for
    /// streams that allow TTLs).
    pub(super) fn rebuild_ttls(&mut self) {
        if !self.cfg.allow_msg_ttl {
            return;
        }
        let st = self.store.state();
        let mut seq = st.first_seq.max(1);
        while seq <= st.last_seq {
            if let Some(m) = self.store.get(seq) {
                if let Some(Some(Some(t))) = headers::get(&m.hdr, "Nats-TTL").map(parse_ttl) {
                    self.ttls.insert((m.ts.saturating_add(t), seq));
                }
                if headers::get(&m.hdr, "Nats-Marker-Reason").is_some() {
                    self.markers.insert(seq);
                }
            }
            seq += 1;
        }
    }

    pub(super) fn rebuild_dedupe(&mut self) {
        let cutoff = unix_nanos() - self.cfg.duplicate_window;
        let st = self.store.state();
        let mut found = Vec::new();
        let mut seq = st.last_seq;
        while seq >= st.first_seq && seq > 0 {
            match self.store.peek(seq) {
                Some((_, _, ts)) if ts <= cutoff => break,
                Some(_) => {
                    if let Some(m) = self.store.get(seq) {
                        if let Some(id) = headers::get(&m.hdr, "Nats-Msg-Id") {
                            found.push((m.ts, id.to_string(), seq));
                        }
                    }
                }
                None => {}
            }
            seq -= 1;
        }
        found.reverse();
        for (ts, id, seq) in found {
            self.dedupe.insert(id.clone(), seq);
            self.last_msg_id = Some(id.clone());
            self.dedupe_order.push_back((ts, id));
        }
    }

    pub(super) fn purge(&mut self, filter: &str, seq: u64, keep: u64) -> u64 {
        let st = self.store.state();
        let victims: Vec<u64> = if filter.is_empty() || filter == ">" {
            if seq == 0 && keep == 0 {
                // Everything: one purge mark instead of a tombstone per message.
                let n = st.msgs;
                let all: Vec<(u64, std::sync::Arc<str>)> = self
                    .store
                    .matching(">")
                    .into_iter()
                    .filter_map(|s| self.store.peek(s).map(|(subj, _, _)| (s, subj.clone())))
                    .collect();
                if let Err(e) = self.store.purge_below(st.last_seq + 1) {
                    tracing::error!("JetStream purge of '{}' failed: {e}", self.name);
                }
                for (s, subj) in all {
                    for c in self.consumers.values_mut() {
                        c.on_removed(s, &subj);
                    }
                }
                self.after_purge();
                return n;
            }
            let all = self.store.matching(">");
            if seq > 0 {
                all.into_iter().filter(|s| *s < seq).collect()
            } else {
                let n = all.len().saturating_sub(keep as usize);
                all[..n].to_vec()
            }
        } else {
            let all = self.store.matching(filter);
            if seq > 0 {
                all.into_iter().filter(|s| *s < seq).collect()
            } else if keep > 0 {
                // Keep the newest `keep` per subject matching the filter.
                let mut per: HashMap<std::sync::Arc<str>, Vec<u64>> = HashMap::new();
                for s in all {
                    if let Some((subj, _, _)) = self.store.peek(s) {
                        per.entry(subj.clone()).or_default().push(s);
                    }
                }
                let mut v = Vec::new();
                for (_, seqs) in per {
                    let n = seqs.len().saturating_sub(keep as usize);
                    v.extend_from_slice(&seqs[..n]);
                }
                v.sort_unstable();
                v
            } else {
                all
            }
        };
        let n = victims.len() as u64;
        for s in victims {
            self.remove_msg(s);
        }
        self.after_purge();
        n
    }

    pub(super) fn after_purge(&mut self) {
        let first = self.store.state().first_seq;
        for c in self.consumers.values_mut() {
            // Consumers skip what was purged.
            if c.st.next_sseq < first {
                c.st.next_sseq = first;
            }
            if c.st.ack_floor_sseq < first.saturating_sub(1) {
                c.st.ack_floor_sseq = first.saturating_sub(1);
            }
            c.recount(&self.store);
            c.dirty = true;
            c.replicate = true;
        }
    }
}
