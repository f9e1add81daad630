//! JetStream per account: its streams, limits and usage, enabling it (from the config or an
//! account JWT), and `$JS.API.INFO`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use serde_json::{json, Value};

use super::config::insufficient;
use super::config::{Storage, StreamConfig};
use super::errors::ApiError;
use super::headers::requires_newer_api;
use super::stream::{Cmd, StreamHandle};
use super::{crypt, restore, JetStream};
use crate::accounts::Account;
use crate::options::JsAccountLimits;
use crate::protocol::Msg;
use crate::server::subscription::{InternalHandler, Subscription};
use crate::server::{Server, API_LEVEL};

impl JetStream {
    /// Turns JetStream on for `account` and recovers its streams from disk.
    pub(super) fn enable_account(
        self: &Arc<Self>,
        server: &Arc<Server>,
        account: Arc<Account>,
        limits: JsAccountLimits,
    ) -> Result<(), String> {
        let dir = self.store_dir.join(&account.name).join("streams");
        let acc = Arc::new(JsAccount {
            name: account.name.clone(),
            account: account.clone(),
            limits,
            dir: dir.clone(),
            streams: RwLock::new(BTreeMap::new()),
            subs: Mutex::new(Vec::new()),
            api_total: AtomicU64::new(0),
            api_errors: AtomicU64::new(0),
        });
        // With a domain, `$JS.<domain>.API.>` reaches the same API (clients that name the
        // domain use it).
        let domain_prefix = self.domain.as_ref().map(|d| format!("$JS.{d}.API."));
        let api = {
            let weak = Arc::downgrade(&acc);
            let tx = self.api_tx.lock().clone();
            let domain_prefix = domain_prefix.clone();
            InternalHandler(Arc::new(move |m: &Msg<'_>| {
                let (subject, reply, hdr, payload) = (m.subject, m.reply, m.headers, m.payload);
                let (Some(acc), Some(tx)) = (weak.upgrade(), tx.as_ref()) else {
                    return;
                };
                let too_new = hdr.is_some_and(requires_newer_api);
                let local;
                let subject = match domain_prefix
                    .as_deref()
                    .and_then(|p| subject.strip_prefix(p))
                {
                    Some(rest) => {
                        local = format!("$JS.API.{rest}");
                        local.as_str()
                    }
                    None => subject,
                };
                let reply = reply
                    .and_then(|r| std::str::from_utf8(r).ok())
                    .map(str::to_string);
                // The hot paths skip the API thread.
                if let Some(rest) = subject.strip_prefix("$JS.API.CONSUMER.MSG.NEXT.") {
                    if let (Some((stream, consumer)), Some(reply)) = (rest.split_once('.'), reply) {
                        acc.api_total.fetch_add(1, Ordering::Relaxed);
                        // A missing stream reaches its thread as a missing consumer would not:
                        // hand it to the API thread, which answers as nats-server (503).
                        if let Some(h) = acc.stream(stream) {
                            // Clustered, the stream's leader answers.
                            if !h.leader.load(Ordering::Relaxed) {
                                return;
                            }
                            h.send(Cmd::Next {
                                consumer: consumer.to_string(),
                                reply,
                                body: Bytes::copy_from_slice(payload),
                            });
                            return;
                        }
                        let _ = tx.send(ApiReq {
                            acc,
                            subject: subject.to_string(),
                            reply: Some(reply),
                            body: Bytes::new(),
                            publisher: crate::server::internal::publisher_cid(),
                            too_new,
                        });
                    }
                    return;
                }
                if let Some(rest) = subject.strip_prefix("$JS.API.DIRECT.GET.") {
                    let (stream, subj) = match rest.split_once('.') {
                        Some((s, subj)) => (s, Some(subj.to_string())),
                        None => (rest, None),
                    };
                    match acc.stream(stream) {
                        Some(h) if !h.leader.load(Ordering::Relaxed) => {}
                        Some(h) if h.cfg.read().allow_direct => {
                            if let Some(reply) = reply {
                                acc.api_total.fetch_add(1, Ordering::Relaxed);
                                h.send(Cmd::DirectGet {
                                    reply,
                                    body: Bytes::copy_from_slice(payload),
                                    subject: subj,
                                });
                            }
                        }
                        // nats-server subscribes direct gets per stream that allows them:
                        // for any other name there is no responder.
                        _ => crate::server::internal::decline_delivery(),
                    }
                    return;
                }
                let _ = tx.send(ApiReq {
                    acc,
                    subject: subject.to_string(),
                    reply,
                    body: Bytes::copy_from_slice(payload),
                    publisher: crate::server::internal::publisher_cid(),
                    too_new,
                });
            }))
        };
        let ack = {
            let weak = Arc::downgrade(&acc);
            InternalHandler(Arc::new(move |m: &Msg<'_>| {
                let (subject, reply, payload) = (m.subject, m.reply, m.payload);
                let Some(acc) = weak.upgrade() else { return };
                let toks: Vec<&str> = subject.splitn(6, '.').collect();
                let stream = match subject.split('.').count() {
                    9 => toks.get(2),
                    n if n >= 12 => toks.get(4),
                    _ => None,
                };
                let Some(h) = stream.and_then(|s| acc.stream(s)) else {
                    return;
                };
                if !h.leader.load(Ordering::Relaxed) {
                    return;
                }
                h.send(Cmd::Ack {
                    subject: subject.to_string(),
                    reply: reply
                        .and_then(|r| std::str::from_utf8(r).ok())
                        .map(str::to_string),
                    body: Bytes::copy_from_slice(payload),
                });
            }))
        };
        {
            let mut subs = acc.subs.lock();
            subs.push(self.subscribe(server, &account, "$JS.API.>", api.clone()));
            if let Some(p) = &domain_prefix {
                subs.push(self.subscribe(server, &account, &format!("{p}>"), api));
            }
            subs.push(self.subscribe(server, &account, "$JS.ACK.>", ack));
            let weak = Arc::downgrade(&acc);
            let fc = InternalHandler(Arc::new(move |m: &Msg<'_>| {
                let (subject, hdr) = (m.subject, m.headers);
                let Some(acc) = weak.upgrade() else { return };
                // $JS.FC.<stream>.<consumer>.<n>
                let h = subject.split('.').nth(2).and_then(|s| acc.stream(s));
                if let Some(h) = h.filter(|h| h.leader.load(Ordering::Relaxed)) {
                    h.send(Cmd::FlowControl {
                        subject: subject.to_string(),
                        hdr: hdr.map(Bytes::copy_from_slice).unwrap_or_default(),
                    });
                }
            }));
            subs.push(self.subscribe(server, &account, "$JS.FC.>", fc));
        }
        self.accounts.write().insert(acc.name.clone(), acc.clone());
        // Recover. Clustered, the meta log says which streams this server holds: they start
        // as it is applied.
        let recovered = if crate::cluster::Cluster::of(server).is_some() {
            Err(std::io::Error::other("clustered"))
        } else {
            std::fs::read_dir(&dir)
        };
        if let Ok(rd) = recovered {
            let mut dirs: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            dirs.sort();
            for d in dirs {
                let Ok(meta) = std::fs::read(d.join("meta.inf")) else {
                    continue;
                };
                #[derive(Deserialize)]
                struct Meta {
                    config: StreamConfig,
                    created: i64,
                }
                // Encrypted streams: the key file opens with the configured key, or the
                // stream stays down (and is reported) while everything else runs.
                let name = d.file_name().map(|n| n.to_string_lossy().into_owned());
                let name = name.unwrap_or_default();
                let meta: Result<Meta, String> =
                    crypt::stream_key(&d, &name, self.encryption.as_ref())
                        .and_then(|k| crypt::open_bytes(k.as_deref(), meta, &d.join("meta.inf")))
                        .map_err(|e| e.to_string())
                        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
                let meta: Meta = match meta {
                    Ok(m) => m,
                    Err(e) => {
                        let msg = format!(
                            "JetStream stream '{} > {name}' in {} could not be recovered: {e}",
                            acc.name,
                            d.display()
                        );
                        tracing::error!("{msg}");
                        self.failed.lock().push(msg);
                        continue;
                    }
                };
                match self.start_stream(server, &acc, meta.config, meta.created, false) {
                    Ok(h) => {
                        let st_msgs = h.msgs.load(Ordering::Relaxed);
                        tracing::info!(
                            "  Restored {} messages for stream '{} > {}'",
                            st_msgs,
                            acc.name,
                            h.name
                        );
                    }
                    Err(e) => {
                        let msg = format!(
                            "JetStream stream '{} > {name}' in {} could not be recovered: {e}",
                            acc.name,
                            d.display()
                        );
                        tracing::error!("{msg}");
                        self.failed.lock().push(msg);
                    }
                }
            }
        }
        // Backups placed in `restore/` while the broker was down.
        for msg in restore::restore_offline(self, server, &acc) {
            tracing::error!("{msg}");
            self.failed.lock().push(msg);
        }
        Ok(())
    }

    /// Turns JetStream on for an account whose (new) JWT grants storage, if it is not yet.
    pub fn enable_from_claims(
        self: &Arc<Self>,
        server: &Arc<Server>,
        c: &natrix_jwt::AccountClaims,
    ) {
        let js = &c.nats.limits.jetstream;
        if (js.mem_storage == 0 && js.disk_storage == 0) || self.account(&c.sub).is_some() {
            return;
        }
        let unset = |v: i64| if v == 0 { -1 } else { v };
        let limits = JsAccountLimits {
            max_memory: js.mem_storage,
            max_store: js.disk_storage,
            max_streams: unset(js.streams),
            max_consumers: unset(js.consumer),
        };
        if let Some(acc) = server.account(&c.sub) {
            if let Err(e) = self.enable_account(server, acc, limits) {
                tracing::error!("JetStream: could not enable account {}: {e}", c.sub);
            }
        }
    }

    /// An account's JetStream, if enabled.
    pub fn account(&self, name: &str) -> Option<Arc<JsAccount>> {
        self.accounts.read().get(name).cloned()
    }

    /// Every JetStream-enabled account.
    pub fn accounts(&self) -> Vec<Arc<JsAccount>> {
        let mut v: Vec<Arc<JsAccount>> = self.accounts.read().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Whether `size` more bytes fit the account's and the server's limits.
    pub fn check_storage(
        &self,
        cfg: &StreamConfig,
        account: &str,
        size: u64,
    ) -> Result<(), ApiError> {
        let Some(acc) = self.account(account) else {
            return Ok(());
        };
        let (acc_limit, server_limit) = match cfg.storage {
            Storage::Memory => (acc.limits.max_memory, self.max_memory()),
            Storage::File => (acc.limits.max_store, self.max_store()),
        };
        let used = acc.usage(cfg.storage);
        if acc_limit >= 0 && used + size > acc_limit as u64 {
            return Err(ApiError::account_resources_exceeded());
        }
        if server_limit >= 0 && self.usage(cfg.storage) + size > server_limit as u64 {
            return Err(insufficient(cfg.storage));
        }
        Ok(())
    }

    /// Whether the account may have one more consumer.
    pub fn check_consumer_limit(&self, account: &str) -> Result<(), ApiError> {
        let Some(acc) = self.account(account) else {
            return Ok(());
        };
        if acc.limits.max_consumers >= 0 && acc.consumer_count() as i64 >= acc.limits.max_consumers
        {
            return Err(ApiError::max_consumers());
        }
        Ok(())
    }

    /// The `$JS.API.INFO` body for an account.
    pub fn account_info(&self, acc: &JsAccount) -> Value {
        let streams = acc.streams.read().len();
        let mut v = json!({
            "type": "io.nats.jetstream.api.v1.account_info_response",
            "memory": acc.usage(Storage::Memory),
            "storage": acc.usage(Storage::File),
            "reserved_memory": 0,
            "reserved_storage": 0,
            "streams": streams,
            "consumers": acc.consumer_count(),
            "limits": {
                "max_memory": acc.limits.max_memory,
                "max_storage": acc.limits.max_store,
                "max_streams": acc.limits.max_streams,
                "max_consumers": acc.limits.max_consumers,
                "max_ack_pending": -1,
                "memory_max_stream_bytes": -1,
                "storage_max_stream_bytes": -1,
                "max_bytes_required": false,
            },
            "api": {
                "level": API_LEVEL,
                "total": acc.api_total.load(Ordering::Relaxed),
                "errors": acc.api_errors.load(Ordering::Relaxed),
            },
        });
        if let Some(d) = &self.domain {
            v["domain"] = json!(d);
        }
        v
    }
}

/// One account's JetStream: its limits, streams and API counters.
#[derive(Debug)]
pub struct JsAccount {
    pub name: String,
    pub account: Arc<Account>,
    pub limits: JsAccountLimits,
    /// `<store_dir>/jetstream/<account>/streams`.
    pub(super) dir: PathBuf,
    pub streams: RwLock<BTreeMap<String, Arc<StreamHandle>>>,
    pub(super) subs: Mutex<Vec<Arc<Subscription>>>,
    pub api_total: AtomicU64,
    pub api_errors: AtomicU64,
}

impl JsAccount {
    /// A stream by name.
    pub fn stream(&self, name: &str) -> Option<Arc<StreamHandle>> {
        self.streams.read().get(name).cloned()
    }

    /// Bytes held in streams of `storage`.
    pub fn usage(&self, storage: Storage) -> u64 {
        self.streams
            .read()
            .values()
            .filter(|s| s.storage() == storage)
            .map(|s| s.bytes.load(Ordering::Relaxed))
            .sum()
    }

    /// Consumers across the account's streams.
    pub fn consumer_count(&self) -> u64 {
        self.streams
            .read()
            .values()
            .map(|s| s.consumers.load(Ordering::Relaxed))
            .sum()
    }
}

/// An API request handed to the API thread.
pub(super) struct ApiReq {
    pub(super) acc: Arc<JsAccount>,
    pub(super) subject: String,
    pub(super) reply: Option<String>,
    pub(super) body: Bytes,
    /// The connection that sent it (for the API audit).
    pub(super) publisher: u64,
    /// It carried a `Nats-Required-Api-Level` above ours (or not a number).
    pub(super) too_new: bool,
}
