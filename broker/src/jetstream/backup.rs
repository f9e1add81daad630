//! Stream backups and restores (`$JS.API.STREAM.SNAPSHOT.<stream>`,
//! `$JS.API.STREAM.RESTORE.<stream>`) with nats-server 2.15's protocol and archive, so a
//! backup from either server restores on the other.
//!
//! Backup: the answer carries the stream's config and state; then the archive
//! ([`super::archive`], an S2 stream written with `minlz`) goes to the request's
//! `deliver_subject` in chunks (default 128 KiB, 1 KiB..1 MiB), each full chunk with a reply
//! subject `$JS.SNAPSHOT.ACK.<stream>.<id>.<size>.<index>` the receiver answers; at most
//! `window_size / chunk_size` chunks (default window 8 MiB, 1 KiB..32 MiB) wait for an answer,
//! and five seconds without one ends the backup (`408 No Flow Response`). An empty message
//! ends the transfer: status `204` when a full chunk went out, none otherwise, `408 No
//! Interest` or `500 <error>` on failure. The stream keeps running meanwhile; its limits and
//! retention wait until the backup ends, so nothing in the backed-up range is evicted.
//!
//! Restore: the answer names `$JS.SNAPSHOT.RESTORE.<stream>.<id>`, where the client sends the
//! archive in chunks, each with a reply subject (answered empty), and an empty chunk last; the
//! answer to that is a `stream_create_response`. Upload is staged in
//! `<store_dir>/jetstream/_restore`, five seconds without a chunk abandons it.
//!
//! Offline restore: a directory `<store_dir>/jetstream/<account>/restore/<any name>/` holding
//! `backup.json` (the backup's API answer, or just a stream config) and `stream.tar.s2` (the
//! archive) — the layout `nats stream backup` writes — is restored when the broker starts, and
//! removed once restored.

use std::io::Write;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::archive::{self};
use super::errors::ApiError;
use super::stream::snapshot::{SnapCmd, SnapStart};
use super::stream::{Cmd, StreamHandle};
use super::time::rfc3339_nanos;
use super::{advisory, JetStream, JsAccount};
use crate::clock::unix_nanos;
use crate::protocol::Msg;
use crate::server::internal::InternalSender;
use crate::server::subscription::InternalHandler;
use crate::server::Server;

/// How long without progress ends a transfer.
pub(super) const STALL: Duration = Duration::from_secs(5);
/// How long a backup waits for someone to listen on its deliver subject.
const INTEREST_WAIT: Duration = Duration::from_secs(2);

/// The `SNAPSHOT` request.
#[derive(Debug, Default, Deserialize)]
struct SnapshotReq {
    #[serde(default)]
    deliver_subject: String,
    #[serde(default)]
    no_consumers: bool,
    #[serde(default)]
    chunk_size: i64,
    #[serde(default)]
    window_size: i64,
    /// `jsck`: check the messages before sending them. Every message is read (and its
    /// record checked) as it is archived, and an unreadable one ends the snapshot with an
    /// error, so there is nothing to do first.
    #[serde(default, rename = "jsck")]
    _check_msgs: bool,
}

/// A random identifier like nats-server's NUIDs (22 base62 characters).
pub(super) fn nuid() -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..22)
        .map(|_| A[fastrand::usize(..A.len())] as char)
        .collect()
}

/// The requester's client info for advisories.
pub(super) fn client_info(server: &Server, acc: &JsAccount, cid: u64) -> Value {
    match server.client(cid) {
        Some(c) => c.event_info(server),
        None => json!({"acc": acc.name, "server": server.server_name}),
    }
}

pub(super) fn send(
    server: &Server,
    acc: &JsAccount,
    subject: &str,
    hdr: Option<&[u8]>,
    reply: Option<&str>,
    body: &[u8],
) {
    let mut s = InternalSender::default();
    s.send(
        server,
        &acc.account,
        Msg {
            subject,
            reply: reply.map(str::as_bytes),
            headers: hdr,
            payload: body,
        },
    );
    s.flush(server);
}

pub(super) fn publish_advisory(
    js: &JetStream,
    server: &Server,
    acc: &JsAccount,
    subject: &str,
    kind: &str,
    mut body: Value,
) {
    if let Some(d) = &js.domain {
        body["domain"] = json!(d);
    }
    let mut s = InternalSender::default();
    advisory::publish(server, &acc.account, &mut s, subject, kind, body);
    s.flush(server);
}

/// `STREAM.SNAPSHOT.<stream>`: validates the request and starts the backup on its own thread.
pub(super) fn snapshot_request(
    js: &Arc<JetStream>,
    server: &Arc<Server>,
    acc: &Arc<JsAccount>,
    name: &str,
    reply: &str,
    body: &Bytes,
    publisher: u64,
) -> Result<Option<Value>, (&'static str, ApiError)> {
    const KIND: &str = "stream_snapshot_response";
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err((KIND, ApiError::bad_request()));
    }
    let h = acc
        .stream(name)
        .ok_or((KIND, ApiError::stream_not_found()))?;
    let req: SnapshotReq = super::errors::from_json(body, js.strict).map_err(|e| (KIND, e))?;
    if !crate::subject::is_valid_publish_subject(&req.deliver_subject) {
        return Err((KIND, ApiError::snapshot_deliver_subject_invalid()));
    }
    let (js, server, acc) = (js.clone(), server.clone(), acc.clone());
    let reply = reply.to_string();
    let spawned = std::thread::Builder::new()
        .name(format!("js-snap-{name}"))
        .spawn(move || run_snapshot(&js, &server, &acc, &h, &reply, req, publisher));
    match spawned {
        Ok(_) => Ok(None),
        Err(e) => Err((KIND, ApiError::stream_snapshot(&e.to_string()))),
    }
}

/// Ends the stream's backup when dropped.
struct EndGuard<'a>(&'a StreamHandle);

impl Drop for EndGuard<'_> {
    fn drop(&mut self) {
        self.0.send(Cmd::Snapshot(SnapCmd::End));
    }
}

/// How a backup transfer ended.
enum Outcome {
    Ok { full_chunks: bool },
    NoInterest,
    NoFlow,
    Failed(String),
}

fn run_snapshot(
    js: &Arc<JetStream>,
    server: &Arc<Server>,
    acc: &Arc<JsAccount>,
    h: &Arc<StreamHandle>,
    reply: &str,
    req: SnapshotReq,
    publisher: u64,
) {
    let started = unix_nanos();
    let name = h.name.clone();
    tracing::info!("Starting snapshot for stream '{} > {name}'", acc.name);
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    h.send(Cmd::Snapshot(SnapCmd::Start {
        no_consumers: req.no_consumers,
        done: tx,
    }));
    let Ok(start) = rx.recv_timeout(Duration::from_secs(10)) else {
        let e = ApiError::stream_snapshot("stream did not answer");
        let body = super::errors::error_body("stream_snapshot_response", e).to_string();
        send(server, acc, reply, None, None, body.as_bytes());
        return;
    };
    let _end = EndGuard(h);
    let answer = json!({
        "type": "io.nats.jetstream.api.v1.stream_snapshot_response",
        "config": start.config,
        "state": start.state,
    });
    send(
        server,
        acc,
        reply,
        None,
        None,
        answer.to_string().as_bytes(),
    );
    let client = client_info(server, acc, publisher);
    publish_advisory(
        js,
        server,
        acc,
        &format!("$JS.EVENT.ADVISORY.STREAM.SNAPSHOT_CREATE.{name}"),
        "io.nats.jetstream.advisory.v1.snapshot_create",
        json!({"stream": name, "state": start.state, "client": client}),
    );
    let outcome = transfer(js, server, acc, h, &req, &start);
    let deliver = req.deliver_subject.as_str();
    let (hdr, error): (Option<String>, Option<String>) = match &outcome {
        Outcome::Ok { full_chunks: true } => (Some("NATS/1.0 204\r\n\r\n".into()), None),
        Outcome::Ok { full_chunks: false } => (None, None),
        Outcome::NoInterest => (
            Some("NATS/1.0 408 No Interest\r\n\r\n".into()),
            Some("no interest".into()),
        ),
        Outcome::NoFlow => (
            Some("NATS/1.0 408 No Flow Response\r\n\r\n".into()),
            Some("no flow response".into()),
        ),
        Outcome::Failed(e) => (Some(format!("NATS/1.0 500 {e}\r\n\r\n")), Some(e.clone())),
    };
    send(
        server,
        acc,
        deliver,
        hdr.as_deref().map(str::as_bytes),
        None,
        b"",
    );
    let ended = unix_nanos();
    let mut body = json!({
        "stream": name,
        "start": rfc3339_nanos(started),
        "end": rfc3339_nanos(ended),
        "client": client,
    });
    match &error {
        Some(e) => {
            body["error"] = json!(e);
            tracing::warn!("Snapshot of stream '{} > {name}' failed: {e}", acc.name);
        }
        None => tracing::info!(
            "Completed snapshot of {} for stream '{} > {name}' in {:?}",
            super::friendly_bytes(start.state["bytes"].as_i64().unwrap_or(0)),
            acc.name,
            Duration::from_nanos((ended - started).max(0) as u64)
        ),
    }
    publish_advisory(
        js,
        server,
        acc,
        &format!("$JS.EVENT.ADVISORY.STREAM.SNAPSHOT_COMPLETE.{name}"),
        "io.nats.jetstream.advisory.v1.snapshot_complete",
        body,
    );
}

/// Sends the archive in flow-controlled chunks.
fn transfer(
    js: &JetStream,
    server: &Arc<Server>,
    acc: &Arc<JsAccount>,
    h: &Arc<StreamHandle>,
    req: &SnapshotReq,
    start: &SnapStart,
) -> Outcome {
    let deliver = req.deliver_subject.as_str();
    let chunk = match req.chunk_size {
        0 => 128 << 10,
        n => n.clamp(1 << 10, 1 << 20) as usize,
    };
    let window = match req.window_size {
        0 => 8 << 20,
        n => n.clamp(1 << 10, 32 << 20) as usize,
    }
    .max(chunk);
    let max_out = (window / chunk).max(1);
    let waited = Instant::now();
    while !acc.account.has_interest(deliver) {
        if waited.elapsed() >= INTEREST_WAIT {
            return Outcome::NoInterest;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let ack_subject = format!("$JS.SNAPSHOT.ACK.{}.{}", h.name, nuid());
    let (ack_tx, ack_rx) = std::sync::mpsc::channel::<()>();
    let ack_tx = parking_lot::Mutex::new(ack_tx);
    let handler = InternalHandler(Arc::new(move |_m: &Msg<'_>| {
        let _ = ack_tx.lock().send(());
    }));
    let sub = js.subscribe(server, &acc.account, &format!("{ack_subject}.>"), handler);
    let mut t = Transfer {
        server,
        acc,
        deliver,
        ack_subject: &ack_subject,
        acks: &ack_rx,
        chunk,
        max_out,
        out: 0,
        index: 0,
        // 64 KiB blocks: chunks go out as the archive is written, not per megabyte.
        enc: minlz::Writer::with_block_size(Vec::new(), 64 << 10),
        last_sent: Instant::now(),
    };
    let r = t.run(h, start);
    server.remove_sub(&sub);
    r
}

struct Transfer<'a> {
    server: &'a Arc<Server>,
    acc: &'a Arc<JsAccount>,
    deliver: &'a str,
    ack_subject: &'a str,
    acks: &'a Receiver<()>,
    chunk: usize,
    max_out: usize,
    /// Full chunks not acknowledged yet.
    out: usize,
    index: u64,
    /// The compressed archive not sent yet.
    enc: minlz::Writer<Vec<u8>>,
    last_sent: Instant,
}

impl Transfer<'_> {
    fn run(&mut self, h: &StreamHandle, start: &SnapStart) -> Outcome {
        let now = unix_nanos();
        let mut buf = archive::MAGIC.to_vec();
        let state = start.archived.to_string();
        archive::write_entry(&mut buf, archive::STATE, now, 0, b"", state.as_bytes());
        for (name, v) in &start.consumers {
            let entry = format!("{}{name}", archive::CONSUMER_PREFIX);
            archive::write_entry(&mut buf, &entry, now, 0, b"", v.to_string().as_bytes());
        }
        if let Some(o) = self.push(&buf) {
            return o;
        }
        let mut from = start.first_seq.max(1);
        while start.last_seq > 0 && from <= start.last_seq {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            h.send(Cmd::Snapshot(SnapCmd::Read {
                from,
                to: start.last_seq,
                done: tx,
            }));
            let Ok(msgs) = rx.recv_timeout(Duration::from_secs(10)) else {
                return Outcome::Failed("stream did not answer".into());
            };
            let Some(last) = msgs.last().map(|m| m.seq) else {
                break;
            };
            buf.clear();
            for m in &msgs {
                archive::write_entry(&mut buf, &m.subject, m.ts, m.seq, &m.hdr, &m.data);
            }
            if let Some(o) = self.push(&buf) {
                return o;
            }
            from = last + 1;
        }
        buf.clear();
        archive::write_sentinel(&mut buf);
        if let Some(o) = self.push(&buf) {
            return o;
        }
        if let Err(e) = self.enc.flush() {
            return Outcome::Failed(e.to_string());
        }
        if let Some(o) = self.send_full_chunks() {
            return o;
        }
        let rest = self.take(usize::MAX);
        if !rest.is_empty() {
            send(self.server, self.acc, self.deliver, None, None, &rest);
        }
        Outcome::Ok {
            full_chunks: self.index > 0,
        }
    }

    /// Adds archive bytes, sending the full chunks they make.
    fn push(&mut self, bytes: &[u8]) -> Option<Outcome> {
        if let Err(e) = self.enc.write_all(bytes) {
            return Some(Outcome::Failed(e.to_string()));
        }
        self.send_full_chunks()
    }

    /// Up to `max` bytes of the compressed archive, taken from the front.
    fn take(&mut self, max: usize) -> Vec<u8> {
        let out = self.enc.get_mut();
        out.drain(..max.min(out.len())).collect()
    }

    fn send_full_chunks(&mut self) -> Option<Outcome> {
        while self.enc.get_ref().len() >= self.chunk {
            // Acknowledged chunks free the window.
            while self.acks.try_recv().is_ok() {
                self.out = self.out.saturating_sub(1);
            }
            while self.out >= self.max_out {
                let left = STALL.saturating_sub(self.last_sent.elapsed());
                match self.acks.recv_timeout(left) {
                    Ok(()) => self.out -= 1,
                    Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                        return Some(Outcome::NoFlow)
                    }
                }
            }
            if !self.acc.account.has_interest(self.deliver) {
                return Some(Outcome::NoInterest);
            }
            let data = self.take(self.chunk);
            self.index += 1;
            let reply = format!("{}.{}.{}", self.ack_subject, data.len(), self.index);
            send(
                self.server,
                self.acc,
                self.deliver,
                None,
                Some(&reply),
                &data,
            );
            self.out += 1;
            self.last_sent = Instant::now();
        }
        None
    }
}
