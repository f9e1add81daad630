//! Stream restores (`$JS.API.STREAM.RESTORE.<stream>`), uploaded in chunks and staged on disk, and
//! offline restores of `nats stream backup` directories at startup; see `backup.rs` for the
//! protocol both share.

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::archive::{self, ArchiveError, Entry};
use super::backup::{client_info, nuid, publish_advisory, send, STALL};
use super::config::{Storage, StreamConfig};
use super::consumer::ConsumerState;
use super::consumer_config::ConsumerConfig;
use super::errors::ApiError;
use super::stream::snapshot::SnapCmd;
use super::stream::{self, Cmd, StreamHandle};
use super::time::rfc3339_nanos;
use super::{JetStream, JsAccount};
use crate::clock::unix_nanos;
use crate::protocol::Msg;
use crate::server::subscription::InternalHandler;
use crate::server::Server;

/// Messages handed to a restoring stream per step.
pub(super) const RESTORE_BATCH: usize = 1024;

/// Errors of a restore, as the final answer reports them (`restore failed: ...`).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Archive(#[from] ArchiveError),
    #[error("{0}")]
    Invalid(String),
    #[error("stream name already in use, cannot restore")]
    Exists,
    #[error("{0}")]
    Stream(String),
}

/// The `RESTORE` request.
#[derive(Debug, Deserialize)]
pub(super) struct RestoreReq {
    config: Value,
    /// The backup's stream state, as the nats CLI sends it from `backup.json`; the archive
    /// itself carries the state that is restored.
    #[serde(default, rename = "state")]
    _state: Option<Value>,
}

pub(super) fn restore_error(e: ApiError) -> Value {
    json!({"type": "io.nats.jetstream.api.v1.stream_restore_response", "error": e, "deliver_subject": ""})
}

/// `STREAM.RESTORE.<stream>`: checks the request, subscribes the upload subject and stages the
/// chunks on a thread of its own, which restores the stream after the last one.
pub(super) fn restore_request(
    js: &Arc<JetStream>,
    server: &Arc<Server>,
    acc: &Arc<JsAccount>,
    name: &str,
    body: &Bytes,
    publisher: u64,
) -> Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return restore_error(ApiError::bad_request());
    }
    let req: RestoreReq = match super::errors::from_json(body, js.strict) {
        Ok(r) => r,
        Err(e) => return restore_error(e),
    };
    let cfg = match restore_config(server, name, req.config) {
        Ok(c) => c,
        Err(e) => return restore_error(e),
    };
    if acc.stream(&cfg.name).is_some() {
        return restore_error(ApiError::stream_name_exist_restore_failed());
    }
    let dir = js.store_dir.join("_restore");
    let path = dir.join(format!("js-restore-{}", nuid()));
    let file = std::fs::create_dir_all(&dir).and_then(|_| std::fs::File::create(&path));
    let file = match file {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("JetStream restore staging in {} failed: {e}", dir.display());
            return restore_error(ApiError::temp_storage_failed());
        }
    };
    let client = client_info(server, acc, publisher);
    let started = unix_nanos();
    publish_advisory(
        js,
        server,
        acc,
        &format!("$JS.EVENT.ADVISORY.STREAM.RESTORE_CREATE.{}", cfg.name),
        "io.nats.jetstream.advisory.v1.restore_create",
        json!({"stream": cfg.name, "client": client}),
    );
    tracing::info!("Starting restore for stream '{} > {}'", acc.name, cfg.name);
    let deliver = format!("$JS.SNAPSHOT.RESTORE.{}.{}", cfg.name, nuid());
    let (tx, rx) = std::sync::mpsc::channel::<(Option<String>, Vec<u8>)>();
    let tx = parking_lot::Mutex::new(tx);
    let handler = InternalHandler(Arc::new(move |m: &Msg<'_>| {
        let (reply, payload) = (m.reply, m.payload);
        let reply = reply.map(|r| String::from_utf8_lossy(r).into_owned());
        let _ = tx.lock().send((reply, payload.to_vec()));
    }));
    let sub = js.subscribe(server, &acc.account, &deliver, handler);
    let (js2, server2, acc2) = (js.clone(), server.clone(), acc.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("js-restore-{}", cfg.name))
        .spawn(move || {
            let staged = stage(&server2, &acc2, file, &rx);
            server2.remove_sub(&sub);
            let (reply, total, r) = match staged {
                Staged::Done { reply, total } => {
                    let r = std::fs::File::open(&path)
                        .map_err(|e| RestoreError::Stream(e.to_string()))
                        .and_then(|f| restore_archive(&js2, &server2, &acc2, cfg.clone(), f));
                    (Some(reply), total, r)
                }
                Staged::Failed { reply, total, err } => {
                    (reply, total, Err(RestoreError::Invalid(err)))
                }
            };
            let _ = std::fs::remove_file(&path);
            let ended = unix_nanos();
            publish_advisory(
                &js2,
                &server2,
                &acc2,
                &format!("$JS.EVENT.ADVISORY.STREAM.RESTORE_COMPLETE.{}", cfg.name),
                "io.nats.jetstream.advisory.v1.restore_complete",
                json!({
                    "stream": cfg.name,
                    "start": rfc3339_nanos(started),
                    "end": rfc3339_nanos(ended),
                    "bytes": total,
                    "client": client,
                }),
            );
            let answer = match r {
                Ok(v) => {
                    tracing::info!(
                        "Completed restore of {} for stream '{} > {}'",
                        super::friendly_bytes(total as i64),
                        acc2.name,
                        cfg.name
                    );
                    v
                }
                Err(e) => {
                    tracing::warn!(
                        "Restore failed for stream '{} > {}': {e}",
                        acc2.name,
                        cfg.name
                    );
                    let e = match e {
                        RestoreError::Exists => ApiError::stream_name_exist_restore_failed(),
                        e => ApiError::stream_restore(&e.to_string()),
                    };
                    super::errors::error_body("stream_create_response", e)
                }
            };
            if let Some(r) = reply {
                send(
                    &server2,
                    &acc2,
                    &r,
                    None,
                    None,
                    answer.to_string().as_bytes(),
                );
            }
        });
    if let Err(e) = spawned {
        return restore_error(ApiError::stream_restore(&e.to_string()));
    }
    json!({"type": "io.nats.jetstream.api.v1.stream_restore_response", "deliver_subject": deliver})
}

/// The restore request's config, named after the subject when it has no name, validated as a
/// create would.
pub(super) fn restore_config(
    server: &Server,
    name: &str,
    mut v: Value,
) -> Result<StreamConfig, ApiError> {
    if v.get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        v["name"] = json!(name);
    }
    let body = serde_json::to_vec(&v).map_err(|e| ApiError::invalid_json(&e.to_string()))?;
    JetStream::parse_stream_config(
        v["name"].as_str().unwrap_or(name),
        &body,
        server.options().max_payload,
        // A backup's configuration may come from a newer server: its extra fields are kept
        // out of the way rather than refused.
        false,
        false,
    )
}

pub(super) enum Staged {
    Done {
        reply: String,
        total: usize,
    },
    Failed {
        reply: Option<String>,
        total: usize,
        err: String,
    },
}

/// Writes uploaded chunks to `file`, answering each, until the empty one.
pub(super) fn stage(
    server: &Server,
    acc: &JsAccount,
    file: std::fs::File,
    rx: &Receiver<(Option<String>, Vec<u8>)>,
) -> Staged {
    let mut w = std::io::BufWriter::new(file);
    let mut total = 0;
    loop {
        let (reply, chunk) = match rx.recv_timeout(STALL) {
            Ok(c) => c,
            Err(_) => {
                return Staged::Failed {
                    reply: None,
                    total,
                    err: "restore is stalled".into(),
                }
            }
        };
        let Some(reply) = reply else {
            return Staged::Failed {
                reply: None,
                total,
                err: "restore requires reply subject for each chunk".into(),
            };
        };
        if chunk.is_empty() {
            if let Err(e) = w.flush() {
                return Staged::Failed {
                    reply: Some(reply),
                    total,
                    err: e.to_string(),
                };
            }
            return Staged::Done { reply, total };
        }
        total += chunk.len();
        if let Err(e) = w.write_all(&chunk) {
            send(
                server,
                acc,
                &reply,
                None,
                None,
                b"-ERR 'storage failure during restore'",
            );
            return Staged::Failed {
                reply: None,
                total,
                err: e.to_string(),
            };
        }
        send(server, acc, &reply, None, None, b"");
    }
}

/// The `state.json` fields a restore uses.
#[derive(Debug, Deserialize)]
pub(super) struct ArchivedState {
    #[serde(default)]
    messages: u64,
    #[serde(default)]
    first_seq: u64,
    #[serde(default)]
    last_seq: u64,
    #[serde(default)]
    consumer_count: i64,
}

/// Creates stream `cfg` from an S2-compressed archive: messages at their sequences, gaps and
/// trailing deletes kept, consumers at their positions. The stream becomes visible (and
/// takes publishes) only once complete; on failure nothing is left behind.
pub fn restore_archive(
    js: &Arc<JetStream>,
    server: &Arc<Server>,
    acc: &Arc<JsAccount>,
    cfg: StreamConfig,
    input: impl Read,
) -> Result<Value, RestoreError> {
    let mut r = archive::Reader::new(BufReader::new(archive::S2Reader::new(BufReader::new(
        input,
    ))))?;
    let e = r.next_entry()?;
    if e.name != archive::STATE {
        return Err(RestoreError::Invalid(format!(
            "expected {} first",
            archive::STATE
        )));
    }
    let st: ArchivedState = serde_json::from_slice(&e.data)
        .map_err(|e| RestoreError::Invalid(format!("invalid stream state: {e}")))?;
    if st.consumer_count < 0 {
        return Err(RestoreError::Invalid("negative consumer count".into()));
    }
    let consistent = if st.messages == 0 {
        (st.first_seq == 0 && st.last_seq == 0) || st.first_seq == st.last_seq + 1
    } else {
        st.first_seq >= 1 && st.first_seq <= st.last_seq
    };
    if !consistent {
        return Err(RestoreError::Invalid("inconsistent stream state".into()));
    }
    let mut consumers = Vec::new();
    for _ in 0..st.consumer_count {
        let e = r.next_entry()?;
        let Some(name) = e.name.strip_prefix(archive::CONSUMER_PREFIX) else {
            return Err(RestoreError::Invalid(format!(
                "unexpected entry {:?}",
                e.name
            )));
        };
        let v: Value = serde_json::from_slice(&e.data)
            .map_err(|e| RestoreError::Invalid(format!("invalid consumer {name}: {e}")))?;
        if !v["config"].is_object() || !v["state"].is_object() {
            return Err(RestoreError::Invalid(format!(
                "consumer {name} without config or state"
            )));
        }
        let ccfg: ConsumerConfig = serde_json::from_value(v["config"].clone())
            .map_err(|e| RestoreError::Invalid(format!("invalid consumer {name}: {e}")))?;
        let cst = ConsumerState::from_nats(&v["state"]).map_err(RestoreError::Invalid)?;
        consumers.push((name.to_string(), ccfg, cst));
    }
    if acc.stream(&cfg.name).is_some() {
        return Err(RestoreError::Exists);
    }
    JetStream::check_overlap(acc, &cfg).map_err(|e| RestoreError::Stream(e.description.clone()))?;
    let dir = (cfg.storage == Storage::File).then(|| acc.dir.join(&cfg.name));
    if let Some(d) = &dir {
        let _ = std::fs::remove_dir_all(d);
    }
    let name = cfg.name.clone();
    let max_payload = server.options().max_payload.max(0) as usize;
    let max_msg = cfg.max_msg_size;
    let h = stream::spawn(stream::Spawn {
        cfg,
        created: unix_nanos(),
        dir,
        server: Arc::downgrade(server),
        account: acc.account.clone(),
        shared: js.clone(),
        fresh: true,
        replica: None,
    })
    .map_err(|e| RestoreError::Stream(e.description.clone()))?;
    let fill = || -> Result<Value, RestoreError> {
        let mut prev = st.first_seq.saturating_sub(1);
        let mut batch = Vec::new();
        loop {
            let e = r.next_entry()?;
            if e.is_sentinel() {
                break;
            }
            if e.seq == 0 || e.seq <= prev || e.seq > st.last_seq {
                return Err(RestoreError::Invalid(format!(
                    "message sequence {} out of order",
                    e.seq
                )));
            }
            let size = e.hdr.len() + e.data.len();
            if size > max_payload || (max_msg > 0 && size > max_msg as usize) {
                return Err(RestoreError::Invalid(format!(
                    "message {} too large",
                    e.seq
                )));
            }
            prev = e.seq;
            batch.push(e);
            if batch.len() >= RESTORE_BATCH {
                apply(&h, std::mem::take(&mut batch))?;
            }
        }
        if !batch.is_empty() {
            apply(&h, batch)?;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        h.send(Cmd::Snapshot(SnapCmd::RestoreFinish {
            last_seq: st.last_seq,
            consumers,
            done: tx,
        }));
        rx.recv_timeout(Duration::from_secs(30))
            .map_err(|_| RestoreError::Stream("stream did not answer".into()))?
            .map_err(RestoreError::Stream)
    };
    let result = fill();
    let v = match result {
        Ok(v) => v,
        Err(e) => {
            h.stop(true);
            return Err(e);
        }
    };
    // Visible now, unless someone created the name meanwhile.
    {
        let mut streams = acc.streams.write();
        if streams.contains_key(&name) {
            drop(streams);
            h.stop(false);
            return Err(RestoreError::Exists);
        }
        streams.insert(name, h.clone());
    }
    js.subscribe_stream(server, acc, &h);
    Ok(v)
}

pub(super) fn apply(h: &StreamHandle, msgs: Vec<Entry>) -> Result<(), RestoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    h.send(Cmd::Snapshot(SnapCmd::Restore { msgs, done: tx }));
    rx.recv_timeout(Duration::from_secs(30))
        .map_err(|_| RestoreError::Stream("stream did not answer".into()))?
        .map_err(RestoreError::Stream)
}

/// The offline restore directory of an account.
pub fn offline_dir(js: &JetStream, account: &str) -> PathBuf {
    js.store_dir.join(account).join("restore")
}

/// Restores every backup placed under the account's `restore/` directory (see the module
/// docs); returns the errors of those that could not be restored (left in place).
pub(super) fn restore_offline(
    js: &Arc<JetStream>,
    server: &Arc<Server>,
    acc: &Arc<JsAccount>,
) -> Vec<String> {
    let mut errors = Vec::new();
    let Ok(rd) = std::fs::read_dir(offline_dir(js, &acc.name)) else {
        return errors;
    };
    let mut dirs: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        match restore_dir(js, server, acc, &d) {
            Ok(name) => {
                tracing::info!(
                    "Restored stream '{} > {name}' from {}",
                    acc.name,
                    d.display()
                );
                if let Err(e) = std::fs::remove_dir_all(&d) {
                    tracing::warn!("Could not remove {}: {e}", d.display());
                }
            }
            Err(e) => errors.push(format!(
                "JetStream offline restore of {} for account '{}' failed: {e}",
                d.display(),
                acc.name
            )),
        }
    }
    errors
}

pub(super) fn restore_dir(
    js: &Arc<JetStream>,
    server: &Arc<Server>,
    acc: &Arc<JsAccount>,
    d: &Path,
) -> Result<String, String> {
    let meta = std::fs::read(d.join("backup.json")).map_err(|e| format!("backup.json: {e}"))?;
    let v: Value = serde_json::from_slice(&meta).map_err(|e| format!("backup.json: {e}"))?;
    let cfg = if v["config"].is_object() {
        v["config"].clone()
    } else {
        v
    };
    let name = cfg["name"].as_str().unwrap_or_default().to_string();
    let cfg = restore_config(server, &name, cfg).map_err(|e| e.description.clone())?;
    let f =
        std::fs::File::open(d.join("stream.tar.s2")).map_err(|e| format!("stream.tar.s2: {e}"))?;
    restore_archive(js, server, acc, cfg, f).map_err(|e| e.to_string())?;
    Ok(name)
}
