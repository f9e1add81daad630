//! Direct gets (`$JS.API.DIRECT.GET`): single messages and batches answered straight from the
//! store, as nats-server sends them.

use serde::Deserialize;

use super::Stream;
use crate::jetstream::errors::ApiError;
use crate::jetstream::headers;
use crate::jetstream::time::rfc3339_nanos;
use crate::protocol::Msg;
use crate::server::Server;

impl Stream {
    /// `DIRECT.GET`: the message with `Nats-Stream`, `Nats-Subject`, `Nats-Sequence` and
    /// `Nats-Time-Stamp` headers, or a 404 status.
    pub fn direct_get(&mut self, server: &Server, reply: &str, body: &[u8], subj: Option<String>) {
        // nats-server's `processDirectGetRequest` refusals, in its order.
        let req = match subj {
            Some(s) => Ok(GetReq {
                last_by_subj: Some(s),
                ..Default::default()
            }),
            None if body.is_empty() => Err("Empty Request"),
            None => match crate::jetstream::errors::from_json::<GetReq>(body, false) {
                Err(_) => Err("Malformed Request"),
                Ok(r)
                    if r.seq == 0
                        && r.last_by_subj.as_deref().is_none_or(str::is_empty)
                        && r.next_by_subj.as_deref().is_none_or(str::is_empty)
                        && r.multi_last.is_empty()
                        && r.start_time.is_none() =>
                {
                    Err("Empty Request")
                }
                Ok(r) => Ok(r),
            },
        };
        let req = match req {
            Ok(r) => r,
            Err(why) => {
                let h = headers::status(408, why, &[]);
                self.sender
                    .send(server, &self.account, Msg::new(reply, b"").with_headers(&h));
                return;
            }
        };
        if req.batch > 0 || !req.multi_last.is_empty() {
            return self.direct_batch(server, reply, &req);
        }
        let found = self.find(&req).ok().and_then(|s| self.store.get(s));
        match found {
            None => {
                let h = headers::status(404, "Message Not Found", &[]);
                self.sender
                    .send(server, &self.account, Msg::new(reply, b"").with_headers(&h));
            }
            Some(m) => self.send_direct(server, reply, &m, req.no_hdr, Vec::new()),
        }
    }

    /// One direct-get answer: the message with `Nats-Stream`, `-Subject`, `-Sequence`,
    /// `-Time-Stamp` and `extra` added to its headers, or bare with `no_hdr`.
    pub(super) fn send_direct(
        &mut self,
        server: &Server,
        reply: &str,
        m: &crate::jetstream::store::StoredMsg,
        no_hdr: bool,
        extra: Vec<(&str, String)>,
    ) {
        let h = (!no_hdr).then(|| {
            let mut fields = vec![
                ("Nats-Stream", self.name.clone()),
                ("Nats-Subject", m.subject.to_string()),
                ("Nats-Sequence", m.seq.to_string()),
                ("Nats-Time-Stamp", rfc3339_nanos(m.ts)),
            ];
            fields.extend(extra);
            headers::with(&m.hdr, &fields)
        });
        self.sender.send_as(
            server,
            &self.account,
            reply,
            Msg {
                subject: reply,
                reply: None,
                headers: h.as_deref(),
                payload: &m.data,
            },
        );
    }

    /// Batched `DIRECT.GET` (`batch`, `multi_last`), as nats-server 2.11+: every message with
    /// `Nats-Num-Pending` (left after it) and `Nats-Last-Sequence` (the one sent before), then
    /// a `204 EOB` status with the same counts (and `Nats-UpTo-Sequence` for `multi_last`).
    pub(super) fn direct_batch(&mut self, server: &Server, reply: &str, req: &GetReq) {
        let time =
            |t: &Option<String>| t.as_deref().and_then(crate::jetstream::time::parse_rfc3339);
        let last = self.store.state().last_seq;
        // The messages to send, each with how many would still follow it.
        let (seqs, up_to): (Vec<(u64, u64)>, Option<u64>) = if !req.multi_last.is_empty() {
            let up_to = if req.up_to_seq > 0 {
                req.up_to_seq.min(last)
            } else if let Some(t) = time(&req.up_to_time) {
                self.store.seq_for_time(t).saturating_sub(1)
            } else {
                last
            };
            let mut seqs = if up_to >= last {
                self.store.last_per_subject(&req.multi_last)
            } else {
                // The last message per subject as of `up_to`: read backwards from there.
                let mut seen = std::collections::HashSet::new();
                let mut v = Vec::new();
                let mut s = up_to;
                while s >= 1 {
                    if let Some((subj, _, _)) = self.store.peek(s) {
                        let wanted = req
                            .multi_last
                            .iter()
                            .any(|f| crate::subject::matches(subj.as_ref(), f.as_str()));
                        if wanted && seen.insert(subj.clone()) {
                            v.push(s);
                        }
                    }
                    s -= 1;
                }
                v.sort_unstable();
                v
            };
            if req.batch > 0 {
                seqs.truncate(req.batch);
            }
            let n = seqs.len() as u64;
            let with_pending = seqs
                .into_iter()
                .enumerate()
                .map(|(i, s)| (s, n - 1 - i as u64))
                .collect();
            (with_pending, Some(up_to))
        } else {
            let filters: Vec<String> = req.next_by_subj.iter().cloned().collect();
            let mut from = match time(&req.start_time) {
                Some(t) => self.store.seq_for_time(t),
                None => req.seq.max(1),
            };
            let mut v = Vec::new();
            while v.len() < req.batch {
                let Some(s) = self.store.next_matching(from, &filters) else {
                    break;
                };
                v.push((s, 0));
                from = s + 1;
            }
            for (s, pending) in v.iter_mut() {
                *pending = self.store.count_from(*s + 1, &filters);
            }
            (v, None)
        };
        if seqs.is_empty() {
            let text = if up_to.is_some() {
                "No Results"
            } else {
                "Message Not Found"
            };
            let h = headers::status(404, text, &[]);
            self.sender
                .send(server, &self.account, Msg::new(reply, b"").with_headers(&h));
            return;
        }
        let (mut prev, mut pending, mut bytes) = (0u64, 0u64, 0usize);
        for (seq, left) in seqs {
            let Some(m) = self.store.get(seq) else {
                continue;
            };
            let extra = vec![
                ("Nats-Num-Pending", left.to_string()),
                ("Nats-Last-Sequence", prev.to_string()),
            ];
            self.send_direct(server, reply, &m, req.no_hdr, extra);
            prev = seq;
            pending = left;
            bytes += m.subject.len() + m.hdr.len() + m.data.len();
            if req.max_bytes > 0 && bytes >= req.max_bytes {
                break;
            }
        }
        let mut extra = vec![
            ("Nats-Num-Pending", pending.to_string()),
            ("Nats-Last-Sequence", prev.to_string()),
        ];
        if let Some(u) = up_to {
            extra.push(("Nats-UpTo-Sequence", u.to_string()));
        }
        let h = headers::status(204, "EOB", &extra);
        self.sender
            .send(server, &self.account, Msg::new(reply, b"").with_headers(&h));
    }

    pub(super) fn find(&self, req: &GetReq) -> Result<u64, ApiError> {
        if let Some(s) = req.last_by_subj.as_deref().filter(|s| !s.is_empty()) {
            return self
                .store
                .last_for(s)
                .ok_or_else(ApiError::no_message_found);
        }
        if let Some(s) = req.next_by_subj.as_deref().filter(|s| !s.is_empty()) {
            return self
                .store
                .first_for(s, req.seq.max(1))
                .ok_or_else(ApiError::no_message_found);
        }
        if req.seq == 0 {
            return Err(ApiError::bad_request());
        }
        if self.store.peek(req.seq).is_none() {
            return Err(ApiError::no_message_found());
        }
        Ok(req.seq)
    }
}

/// `STREAM.MSG.GET` / `DIRECT.GET` request.
#[derive(Debug, Default, Deserialize)]
pub struct GetReq {
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub last_by_subj: Option<String>,
    #[serde(default)]
    pub next_by_subj: Option<String>,
    /// Batched direct gets (`DIRECT.GET` only): at most this many messages, then an EOB.
    #[serde(default)]
    pub batch: usize,
    /// Stop a batch once this many bytes went out.
    #[serde(default)]
    pub max_bytes: usize,
    /// The last message of every subject matching these filters.
    #[serde(default)]
    pub multi_last: Vec<String>,
    /// `multi_last` as of this sequence.
    #[serde(default)]
    pub up_to_seq: u64,
    /// `multi_last` as of this time.
    #[serde(default)]
    pub up_to_time: Option<String>,
    /// A batch from the first message at or after this time.
    #[serde(default)]
    pub start_time: Option<String>,
    /// The message without headers: `hdrs` left out of `MSG.GET`, and direct gets sent as
    /// plain messages (a batch's `EOB` keeps its own).
    #[serde(default)]
    pub no_hdr: bool,
}
