//! The stream thread's side of message schedules (`allow_msg_schedules`): a `Nats-Schedule`
//! message is checked and kept (one per subject), and when it is due the stream publishes
//! its payload to the target subject in itself, as nats-server does.

use std::time::{Duration, Instant};

use super::ingest::parse_ttl;
use super::Stream;
use crate::clock::unix_nanos;
use crate::jetstream::config::subjects_overlap;
use crate::jetstream::cron::{self, Pattern, PatternError};
use crate::jetstream::errors::ApiError;
use crate::jetstream::headers;
use crate::server::Server;

/// A schedule message in the stream and when it fires next (Unix nanoseconds).
#[derive(Debug)]
pub(super) struct Scheduled {
    seq: u64,
    pattern: Pattern,
    next: i64,
}

/// `hdr` without the headers `drop` names (matched case-insensitively).
fn filtered(hdr: &[u8], drop: impl Fn(&str) -> bool) -> Vec<u8> {
    let text = String::from_utf8_lossy(hdr);
    let mut out = String::from("NATS/1.0\r\n");
    for line in text.split("\r\n").skip(1).filter(|l| !l.is_empty()) {
        let name = line.split_once(':').map_or(line, |(k, _)| k.trim());
        if !drop(&name.to_ascii_lowercase()) {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    out.into_bytes()
}

impl Stream {
    /// Checks the schedule headers of a message about to be stored. `Ok(Some(hdr))` is the
    /// header block to store instead (a schedule gets `Nats-Rollup: sub`: one per subject).
    pub(super) fn check_schedule(
        &self,
        subject: &str,
        hdr: &[u8],
    ) -> Result<Option<Vec<u8>>, ApiError> {
        if self.firing || hdr.is_empty() {
            return Ok(None);
        }
        let allowed = self.cfg.allow_msg_schedules;
        let disabled = ApiError::message_schedules_disabled;
        let bad_scheduler = ApiError::message_schedules_scheduler_invalid;
        match (
            headers::get(hdr, "Nats-Schedule-Next"),
            headers::get(hdr, "Nats-Scheduler"),
        ) {
            (Some(next), scheduler) => {
                if next != "purge" {
                    return Err(bad_scheduler());
                }
                if !allowed {
                    return Err(disabled());
                }
                let s = scheduler.unwrap_or("");
                if s.is_empty() || s == subject || !crate::subject::is_valid_literal_subject(s) {
                    return Err(bad_scheduler());
                }
            }
            (None, Some(_)) => return Err(bad_scheduler()),
            (None, None) => {}
        }
        let Some(pattern) = headers::get(hdr, "Nats-Schedule").filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let zone = headers::get(hdr, "Nats-Schedule-Time-Zone").unwrap_or("");
        match cron::parse(pattern, zone) {
            Ok(_) if !allowed => return Err(disabled()),
            Err(_) if !allowed => return Err(disabled()),
            Ok(_) => {}
            Err(PatternError::Invalid) => return Err(ApiError::message_schedules_pattern_invalid()),
            Err(PatternError::BadZone) => {
                return Err(ApiError::message_schedules_time_zone_invalid())
            }
        }
        if let Some(ttl) = headers::get(hdr, "Nats-Schedule-TTL") {
            if parse_ttl(ttl).is_none() {
                return Err(ApiError::message_schedules_ttl_invalid());
            }
            if !self.cfg.allow_msg_ttl {
                return Err(ApiError::message_ttl_disabled());
            }
        }
        let target = headers::get(hdr, "Nats-Schedule-Target").unwrap_or("");
        if target.is_empty()
            || !crate::subject::is_valid_literal_subject(target)
            || subjects_overlap(target, subject)
            || !self
                .cfg
                .subjects
                .iter()
                .any(|s| subjects_overlap(s, target))
        {
            return Err(ApiError::message_schedules_target_invalid());
        }
        if let Some(src) = headers::get(hdr, "Nats-Schedule-Source") {
            if !crate::subject::is_valid_literal_subject(src) {
                return Err(ApiError::message_schedules_source_invalid());
            }
        }
        match headers::get(hdr, "Nats-Rollup") {
            None => Ok(Some(headers::with(hdr, &[("Nats-Rollup", "sub".into())]))),
            Some("sub") => Ok(None),
            Some(_) => Err(ApiError::message_schedules_rollup_invalid()),
        }
    }

    /// After a message is stored: a schedule starts (or replaces the subject's last one);
    /// a `Nats-Schedule-Next: purge` message removes the schedule it names.
    pub(super) fn after_schedule_store(&mut self, subject: &str, seq: u64, hdr: &[u8], ts: i64) {
        if hdr.is_empty() || !self.cfg.allow_msg_schedules {
            return;
        }
        if headers::get(hdr, "Nats-Schedule-Next") == Some("purge") {
            if let Some(s) = headers::get(hdr, "Nats-Scheduler").map(str::to_string) {
                self.schedules.remove(&s);
                self.purge(&s, 0, 0);
            }
            return;
        }
        self.track_schedule(subject, seq, hdr, ts, ts);
    }

    fn track_schedule(&mut self, subject: &str, seq: u64, hdr: &[u8], ts: i64, now: i64) {
        let Some(p) = headers::get(hdr, "Nats-Schedule").filter(|p| !p.is_empty()) else {
            return;
        };
        let zone = headers::get(hdr, "Nats-Schedule-Time-Zone").unwrap_or("");
        let Ok(pattern) = cron::parse(p, zone) else {
            return;
        };
        let first = match &pattern {
            // A cron time missed while stopped is not made up.
            Pattern::Cron(c) => c.next_after(ts.max(now) - 1),
            _ => pattern.first(ts),
        };
        match first {
            Some(next) => {
                self.schedules
                    .insert(subject.to_string(), Scheduled { seq, pattern, next });
            }
            None => {
                self.schedules.remove(subject);
            }
        }
    }

    /// The schedule index after a restart: the last message of each subject that is a
    /// schedule.
    pub(super) fn rebuild_schedules(&mut self) {
        if !self.cfg.allow_msg_schedules {
            return;
        }
        let now = unix_nanos();
        let st = self.store.state();
        let mut seq = st.first_seq.max(1);
        while seq <= st.last_seq {
            if let Some(m) = self.store.get(seq) {
                let last = self.store.last_for(&m.subject) == Some(seq);
                if last && headers::get(&m.hdr, "Nats-Schedule").is_some() {
                    self.track_schedule(&m.subject, seq, &m.hdr, m.ts, now);
                }
            }
            seq += 1;
        }
    }

    /// When the next schedule is due.
    pub(super) fn schedules_deadline(&self) -> Option<Instant> {
        let next = self.schedules.values().map(|s| s.next).min()?;
        let left = (next - unix_nanos()).max(0) as u64;
        Some(Instant::now() + Duration::from_nanos(left))
    }

    /// Publishes every due schedule's message to its target.
    pub(super) fn fire_schedules(&mut self, server: &Server) {
        let now = unix_nanos();
        let due: Vec<String> = self
            .schedules
            .iter()
            .filter(|(_, s)| s.next <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for subject in due {
            self.fire(server, &subject, now);
        }
    }

    fn fire(&mut self, server: &Server, subject: &str, now: i64) {
        let Some(s) = self.schedules.get(subject) else {
            return;
        };
        let (seq, at) = (s.seq, s.next);
        let after = s.pattern.after(at, now);
        let next = after.map_or_else(|| "purge".to_string(), |n| s.pattern.format_next(n));
        // The schedule message may have been deleted, purged or replaced meanwhile.
        let m = match self.store.get(seq) {
            Some(m) if &*m.subject == subject => m,
            _ => {
                self.schedules.remove(subject);
                return;
            }
        };
        match after {
            Some(n) => {
                if let Some(s) = self.schedules.get_mut(subject) {
                    s.next = n;
                }
            }
            None => {
                self.schedules.remove(subject);
            }
        }
        let target = headers::get(&m.hdr, "Nats-Schedule-Target")
            .unwrap_or("")
            .to_string();
        let ttl = headers::get(&m.hdr, "Nats-Schedule-TTL").map(str::to_string);
        // With Nats-Schedule-Source the content is that subject's last message, when any.
        let source = headers::get(&m.hdr, "Nats-Schedule-Source")
            .and_then(|src| self.store.last_for(src))
            .and_then(|s| self.store.get(s));
        let (hdr, data) = match &source {
            Some(sm) => (&sm.hdr, &sm.data),
            None => (&m.hdr, &m.data),
        };
        let mut hdr = filtered(hdr, |k| {
            k.starts_with("nats-schedule")
                || k.starts_with("nats-expected-")
                || matches!(k, "nats-msg-id" | "nats-ttl" | "nats-rollup")
        });
        let mut extra = vec![
            ("Nats-Scheduler", subject.to_string()),
            ("Nats-Schedule-Next", next),
        ];
        if let Some(t) = ttl {
            extra.push(("Nats-TTL", t));
        }
        hdr = headers::with(&hdr, &extra);
        let data = data.clone();
        self.firing = true;
        self.store_msg(server, &target, None, &hdr, &data);
        self.firing = false;
    }
}
