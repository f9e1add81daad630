//! The nats-resolver (`resolver: { type: full }`): account JWTs stored as `<dir>/<account>.jwt`
//! and managed through the system account: `$SYS.REQ.CLAIMS.UPDATE`,
//! `$SYS.REQ.ACCOUNT.<id>.CLAIMS.UPDATE`, `$SYS.REQ.ACCOUNT.<id>.CLAIMS.LOOKUP`,
//! `$SYS.REQ.CLAIMS.LIST` and `$SYS.REQ.CLAIMS.DELETE`. An accepted JWT is written and applied
//! live (new accounts can log in at once; revoked users are disconnected).
//!
//! Between clustered servers, as nats-server's `DirAccResolver`:
//! - every server subscribes the update subjects, so one push reaches (and is answered by)
//!   every server the system account's interest spans;
//! - a client of an account this server does not hold makes it ask the others
//!   (`$SYS.REQ.ACCOUNT.<id>.CLAIMS.LOOKUP`, waiting up to `timeout`); servers without the
//!   account answer with an empty message, so the lookup ends once all have said no;
//! - every `interval` the server sends the XOR of the SHA-256 of its stored files to
//!   `$SYS.REQ.CLAIMS.PACK` (queue group `responder`, so one server answers); a server whose
//!   hash differs answers with its JWTs, one `<account>|<jwt>` per message and an empty message
//!   last, and the requester keeps the valid ones that are newer than its own. When the queue
//!   group hands our own comparison back to us, it is sent again (up to three times a round).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::auth::jwt::{stored_jwts, verify_any};
use crate::options::FullResolverOptions;
use crate::protocol::Msg;
use crate::server::client::Client;
use crate::server::internal::InternalSender;
use crate::server::subscription::{InternalHandler, Subscription};
use crate::server::Server;

/// The update subjects every server subscribes (nats-server's old and new forms).
const UPDATE_SUBJECTS: [&str; 3] = [
    "$SYS.REQ.CLAIMS.UPDATE",
    "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE",
    "$SYS.ACCOUNT.*.CLAIMS.UPDATE",
];

/// Where stores are compared (nats-server's `accPackReqSubj`).
const PACK_SUBJECT: &str = "$SYS.REQ.CLAIMS.PACK";

/// Lookups waiting for answers, by their reply subject (unique per process).
type Waiters = HashMap<String, tokio::sync::mpsc::UnboundedSender<Bytes>>;
static WAITERS: LazyLock<parking_lot::Mutex<Waiters>> = LazyLock::new(Default::default);

/// Serializes changes to a store and the account refresh that follows them (the resolver
/// thread and lookups for connecting clients both store JWTs).
static APPLY: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// What the resolver thread works on.
enum Work {
    /// A request to one of the resolver's subjects.
    Req(Req),
    /// One message of another server's answer to our `$SYS.REQ.CLAIMS.PACK`.
    Pack(Bytes),
}

/// One request handed to the resolver thread.
struct Req {
    subject: String,
    reply: Option<String>,
    body: Bytes,
}

/// The prefix of this server's resolver inboxes in the system account.
fn inbox(server: &Server) -> String {
    format!("$SYS._INBOX.{}.resolver", server.server_id)
}

/// Subscribes the resolver's services in the system account and starts its thread.
pub fn start(server: &Arc<Server>, cfg: FullResolverOptions) -> std::io::Result<()> {
    std::fs::create_dir_all(&cfg.dir).map_err(|e| {
        std::io::Error::new(e.kind(), format!("resolver dir {}: {e}", cfg.dir.display()))
    })?;
    // As nats-server, preloaded accounts join the store (unless it holds a newer JWT).
    for (key, jwt) in &server.options().resolver_preload {
        let path = cfg.dir.join(format!("{key}.jwt"));
        let newer_stored = std::fs::read_to_string(&path)
            .ok()
            .and_then(|o| natrix_jwt::decode_as::<natrix_jwt::Account>(o.trim()).ok())
            .zip(natrix_jwt::decode_as::<natrix_jwt::Account>(jwt).ok())
            .is_some_and(|(old, new)| old.iat > new.iat);
        if !newer_stored {
            store(&path, jwt)?;
        }
    }
    let (tx, rx) = std::sync::mpsc::channel::<Work>();
    let client = Client::internal(server.next_cid(), server.system_account.clone());
    let tx = std::sync::Mutex::new(tx);
    let send = move |w: Work| {
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(w);
        }
    };
    let send = Arc::new(send);
    let to_thread = send.clone();
    let handler = InternalHandler(Arc::new(move |m: &Msg<'_>| {
        let (subject, reply, payload) = (m.subject, m.reply, m.payload);
        to_thread(Work::Req(Req {
            subject: subject.to_string(),
            reply: reply.map(|r| String::from_utf8_lossy(r).into_owned()),
            body: Bytes::copy_from_slice(payload),
        }));
    }));
    let cache = cfg.cache_ttl.is_some();
    // A cache serves nobody: it only takes updates for what it holds.
    let served: &[&str] = if cache {
        &[]
    } else {
        &[
            "$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP",
            "$SYS.REQ.CLAIMS.LIST",
            "$SYS.REQ.CLAIMS.DELETE",
        ]
    };
    for subject in UPDATE_SUBJECTS.into_iter().chain(served.iter().copied()) {
        client.subscribe_internal(server, &server.system_account, subject, handler.clone());
    }
    // One server of the cluster answers a store comparison.
    let pack = (!cache).then(|| {
        Arc::new(Subscription {
            client: client.clone(),
            account: server.system_account.clone(),
            deny: None,
            subject: PACK_SUBJECT.to_string(),
            queue: Some("responder".to_string()),
            sid: b"resolver-pack".to_vec().into(),
            max: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            internal: Some(handler),
        })
    });
    if let Some(pack) = &pack {
        server.add_sub(pack);
    }
    // Answers to our lookups and store comparisons.
    let prefix = inbox(server);
    let pack_reply = format!("{prefix}.pack");
    let answers = InternalHandler(Arc::new(move |m: &Msg<'_>| {
        let (subject, payload) = (m.subject, m.payload);
        let payload = Bytes::copy_from_slice(payload);
        if subject == pack_reply {
            send(Work::Pack(payload));
        } else if let Some(tx) = WAITERS.lock().get(subject) {
            let _ = tx.send(payload);
        }
    }));
    client.subscribe_internal(
        server,
        &server.system_account,
        &format!("{prefix}.>"),
        answers,
    );
    let weak: Weak<Server> = Arc::downgrade(server);
    std::thread::Builder::new()
        .name("resolver".into())
        .spawn(move || {
            let mut sender = InternalSender::default();
            let mut next_sync = Instant::now() + cfg.interval;
            // How often this round's comparison came back to us (the queue group picked our
            // own responder); it is sent again a few times so a peer answers this round.
            let mut own_picks = 0;
            loop {
                let wait = next_sync.saturating_duration_since(Instant::now());
                let work = match rx.recv_timeout(wait) {
                    Ok(w) => Some(w),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                };
                let Some(server) = weak.upgrade() else { break };
                if *server.shutdown.borrow() {
                    break;
                }
                match work {
                    Some(Work::Req(req)) if is_own_pack(&server, &req) => {
                        own_picks += 1;
                        if own_picks <= 3 {
                            request_pack(&server, &cfg, &mut sender);
                        }
                    }
                    Some(Work::Req(req)) => serve(&server, &cfg, &mut sender, req),
                    Some(Work::Pack(msg)) => merge(&server, &cfg, &msg),
                    None => match cfg.cache_ttl {
                        Some(ttl) => {
                            evict_expired(&cfg.dir, ttl);
                            next_sync = Instant::now()
                                + if ttl.is_zero() {
                                    Duration::from_secs(3600)
                                } else {
                                    (ttl / 2).max(Duration::from_secs(1))
                                };
                        }
                        None => {
                            own_picks = 0;
                            request_pack(&server, &cfg, &mut sender);
                            next_sync = Instant::now() + cfg.interval;
                        }
                    },
                }
                sender.flush(&server);
            }
        })?;
    Ok(())
}

/// Whether a request is our own store comparison (we only answer other servers').
fn is_own_pack(server: &Server, req: &Req) -> bool {
    req.subject == PACK_SUBJECT && req.reply.as_deref() == Some(&format!("{}.pack", inbox(server)))
}

/// The `<account>.jwt` files of a store, as stored (account, bytes).
fn stored_raw(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<(String, Vec<u8>)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let key = name.strip_suffix(".jwt")?.to_string();
            Some((key, std::fs::read(e.path()).ok()?))
        })
        .collect();
    v.sort();
    v
}

/// nats-server's store hash: the XOR of the SHA-256 of every stored JWT file.
fn store_hash(stored: &[(String, Vec<u8>)]) -> [u8; 32] {
    let mut hash = [0u8; 32];
    for (_, jwt) in stored {
        for (h, b) in hash.iter_mut().zip(Sha256::digest(jwt).iter()) {
            *h ^= b;
        }
    }
    hash
}

/// Every `interval`: asks one server of the cluster to compare stores.
fn request_pack(server: &Arc<Server>, cfg: &FullResolverOptions, sender: &mut InternalSender) {
    if crate::cluster::Cluster::of(server).is_none_or(|c| c.num_routes() == 0) {
        return;
    }
    let hash = store_hash(&stored_raw(&cfg.dir));
    let reply = format!("{}.pack", inbox(server));
    let sys = server.system_account.clone();
    sender.send(
        server,
        &sys,
        Msg::new(PACK_SUBJECT, &hash).with_reply(&reply),
    );
}

/// Answers a store comparison: nothing but the end marker when the hashes agree, else every
/// unexpired JWT, one `<account>|<jwt>` per message, then the empty end marker.
fn answer_pack(
    server: &Arc<Server>,
    cfg: &FullResolverOptions,
    sender: &mut InternalSender,
    reply: &str,
    theirs: &[u8],
) {
    let stored = stored_raw(&cfg.dir);
    let sys = server.system_account.clone();
    if store_hash(&stored)[..] != *theirs {
        let now = natrix_jwt::now();
        for (key, jwt) in &stored {
            let expired = std::str::from_utf8(jwt)
                .ok()
                .and_then(|j| natrix_jwt::decode_as::<natrix_jwt::Account>(j.trim()).ok())
                .is_some_and(|c| c.exp > 0 && c.exp < now);
            if expired {
                continue;
            }
            let mut msg = Vec::with_capacity(key.len() + 1 + jwt.len());
            msg.extend_from_slice(key.as_bytes());
            msg.push(b'|');
            msg.extend_from_slice(jwt);
            sender.send(server, &sys, Msg::new(reply, &msg));
        }
    }
    sender.send(server, &sys, Msg::new(reply, b""));
}

/// One message of another server's pack: keeps each valid JWT newer than ours.
fn merge(server: &Arc<Server>, cfg: &FullResolverOptions, msg: &[u8]) {
    if msg.is_empty() {
        tracing::debug!("resolver: store comparison finished");
        return;
    }
    for line in String::from_utf8_lossy(msg).split('\n') {
        if line.is_empty() {
            continue;
        }
        let Some((key, jwt)) = line.split_once('|') else {
            tracing::warn!("resolver: pack line without an account: {line:?}");
            continue;
        };
        match save_if_newer(server, cfg, key, jwt) {
            Ok(true) => tracing::info!("resolver: account {key} updated from another server"),
            Ok(false) => {}
            Err(e) => tracing::warn!("resolver: account {key} from another server: {e}"),
        }
    }
}

/// Stores a JWT another server sent unless ours is the same or newer (nats-server's
/// `saveIfNewer`), after checking it against the trusted operators; whether it was stored.
fn save_if_newer(
    server: &Arc<Server>,
    cfg: &FullResolverOptions,
    key: &str,
    jwt: &str,
) -> Result<bool, String> {
    if !is_account_key(key) {
        return Err("not a public account key".into());
    }
    let claims = verify_any(jwt, &operators(server))?;
    if claims.sub != key {
        return Err(format!("the JWT is for account {}", claims.sub));
    }
    let path = cfg.dir.join(format!("{key}.jwt"));
    let _guard = APPLY.lock();
    if let Some(old) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|o| natrix_jwt::decode_as::<natrix_jwt::Account>(o.trim()).ok())
    {
        if old.jti == claims.jti || old.iat > claims.iat {
            return Ok(false);
        }
    } else if cfg.limit > 0 && stored_jwts(&cfg.dir).len() as i64 >= cfg.limit {
        return Err("store is full".into());
    }
    store(&path, jwt).map_err(|e| format!("writing {}: {e}", path.display()))?;
    server.refresh_accounts()?;
    if let Some(js) = crate::jetstream::JetStream::of(server) {
        js.enable_from_claims(server, &claims);
    }
    Ok(true)
}

/// Whether `key` is a public account nkey (nats-server only fetches those).
fn is_account_key(key: &str) -> bool {
    key.starts_with('A') && nkeys::KeyPair::from_public_key(key).is_ok()
}

/// The account a CONNECT's user JWT belongs to (its `issuer_account`, else its issuer).
fn connect_account(user_jwt: &str) -> Option<String> {
    let claims = natrix_jwt::decode_as::<natrix_jwt::User>(user_jwt).ok()?;
    Some(if claims.nats.issuer_account.is_empty() {
        claims.iss
    } else {
        claims.nats.issuer_account
    })
}

/// Before a CONNECT is checked: when its user JWT names an account the store does not hold,
/// asks the other servers (`$SYS.REQ.ACCOUNT.<id>.CLAIMS.LOOKUP`) and waits up to the resolver
/// `timeout` for one that has it; a valid answer is stored and applied. As nats-server, the
/// lookup ends early once every server has answered that it does not have the account.
pub async fn fetch_missing(server: &Arc<Server>, user_jwt: Option<&str>) {
    let opts = server.options();
    let (Some(cfg), Some(user_jwt)) = (opts.full_resolver.clone(), user_jwt) else {
        return;
    };
    let Some(cluster) = crate::cluster::Cluster::of(server) else {
        return;
    };
    let Some(acc) = connect_account(user_jwt).filter(|a| is_account_key(a)) else {
        return;
    };
    if cfg.dir.join(format!("{acc}.jwt")).exists() {
        return;
    }
    let mut peers: Vec<String> = cluster.routes().iter().map(|r| r.remote_id()).collect();
    peers.sort();
    peers.dedup();
    if peers.is_empty() {
        return;
    }
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let reply = format!(
        "{}.lookup.{}",
        inbox(server),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    WAITERS.lock().insert(reply.clone(), tx);
    let sys = server.system_account.clone();
    let mut sender = InternalSender::default();
    let subject = format!("$SYS.REQ.ACCOUNT.{acc}.CLAIMS.LOOKUP");
    sender.send(server, &sys, Msg::new(&subject, b"").with_reply(&reply));
    sender.flush(server);
    let mut expected = peers.len();
    let deadline = tokio::time::Instant::now() + cfg.timeout;
    let mut found = None;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        let jwt = String::from_utf8_lossy(&msg).trim().to_string();
        if !jwt.is_empty() {
            match verify_any(&jwt, &operators(server)) {
                Ok(c) if c.sub == acc => {
                    found = Some(jwt);
                    break;
                }
                Ok(c) => tracing::warn!("resolver: lookup of {acc} answered with {}", c.sub),
                Err(e) => tracing::warn!("resolver: lookup of {acc} answered with a bad JWT: {e}"),
            }
        }
        expected -= 1;
        if expected == 0 {
            break;
        }
    }
    WAITERS.lock().remove(&reply);
    let Some(jwt) = found else {
        tracing::debug!("resolver: no server has account {acc}");
        return;
    };
    let me = server.clone();
    let stored = tokio::task::spawn_blocking(move || save_if_newer(&me, &cfg, &acc, &jwt)).await;
    match stored {
        Ok(Ok(_)) => tracing::info!("resolver: fetched an account from another server"),
        Ok(Err(e)) => tracing::warn!("resolver: storing a fetched account: {e}"),
        Err(e) => tracing::warn!("resolver: storing a fetched account: {e}"),
    }
}

/// nats-server's update/delete answer: `{"data": {...}}` or `{"error": {...}}`, with the
/// answering server described under `server`.
fn answer(server: &Server, acc: &str, message: &str, err: Option<String>) -> String {
    let mut v = match err {
        None if acc.is_empty() => json!({"data": {"code": 200, "message": message}}),
        None => json!({"data": {"code": 200, "account": acc, "message": message}}),
        Some(e) => {
            json!({"error": {"code": 500, "account": acc, "description": format!("{message} - {e}")}})
        }
    };
    v["server"] = super::sysreq::server_info(server);
    v.to_string()
}

fn serve(server: &Arc<Server>, cfg: &FullResolverOptions, sender: &mut InternalSender, req: Req) {
    let sys = server.system_account.clone();
    let toks: Vec<&str> = req.subject.split('.').collect();
    let body = String::from_utf8_lossy(&req.body).trim().to_string();
    // Our own lookups and store comparisons are for the other servers (nats-server's system
    // client does not receive its own messages either).
    let ours = req
        .reply
        .as_deref()
        .is_some_and(|r| r.starts_with(&format!("{}.", inbox(server))));
    if ours && matches!(toks.as_slice(), [.., "LOOKUP"] | [.., "PACK"]) {
        return;
    }
    let response: Option<String> = match toks.as_slice() {
        ["$SYS", "REQ", "CLAIMS", "UPDATE"] => Some(update(server, cfg, &body, None)),
        // The per-account form, and the older `$SYS.ACCOUNT.<id>.CLAIMS.UPDATE`.
        ["$SYS", "REQ", "ACCOUNT", id, "CLAIMS", "UPDATE"]
        | ["$SYS", "ACCOUNT", id, "CLAIMS", "UPDATE"] => Some(update(server, cfg, &body, Some(id))),
        ["$SYS", "REQ", "ACCOUNT", id, "CLAIMS", "LOOKUP"] => {
            let path = cfg.dir.join(format!("{id}.jwt"));
            let jwt = std::fs::read_to_string(path).ok().or_else(|| {
                server
                    .options()
                    .resolver_preload
                    .iter()
                    .find(|(k, _)| k == id)
                    .map(|(_, j)| j.clone())
            });
            // An unknown account gets an empty answer, so a server looking it up across
            // the cluster knows this one does not have it (as nats-server).
            Some(jwt.map(|j| j.trim().to_string()).unwrap_or_default())
        }
        ["$SYS", "REQ", "CLAIMS", "PACK"] => {
            if let Some(reply) = req.reply.as_deref() {
                answer_pack(server, cfg, sender, reply, &req.body);
            }
            None
        }
        ["$SYS", "REQ", "CLAIMS", "LIST"] => {
            let ids: Vec<String> = stored_jwts(&cfg.dir).into_iter().map(|(k, _)| k).collect();
            Some(json!({"data": ids}).to_string())
        }
        ["$SYS", "REQ", "CLAIMS", "DELETE"] => Some(delete(server, cfg, &body)),
        _ => None,
    };
    if let (Some(reply), Some(resp)) = (req.reply.as_deref(), response) {
        sender.send(server, &sys, Msg::new(reply, resp.as_bytes()));
    }
}

/// A cache resolver drops JWTs it has held for longer than `ttl` (by file time); the next
/// user of such an account makes the server fetch it again.
fn evict_expired(dir: &std::path::Path, ttl: Duration) {
    if ttl.is_zero() {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > ttl);
        if old && e.file_name().to_string_lossy().ends_with(".jwt") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Writes a JWT file atomically.
fn store(path: &std::path::Path, jwt: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, jwt)?;
    std::fs::rename(&tmp, path)
}

fn operators(server: &Server) -> Vec<natrix_jwt::OperatorClaims> {
    server.options().trusted_operator_claims()
}

/// Verifies, stores and applies an account JWT; the answer for the requester.
fn update(
    server: &Arc<Server>,
    cfg: &FullResolverOptions,
    jwt: &str,
    expect: Option<&str>,
) -> String {
    let claims = match verify_any(jwt, &operators(server)) {
        Ok(c) => c,
        Err(e) => {
            let acc = natrix_jwt::decode_as::<natrix_jwt::Account>(jwt)
                .map(|c| c.sub)
                .unwrap_or_default();
            return answer(server, &acc, "jwt update resulted in error", Some(e));
        }
    };
    let acc = claims.sub.clone();
    let errs = natrix_jwt::account_validation_errors(&claims);
    if !errs.is_empty() {
        return answer(
            server,
            &acc,
            "jwt validation failed",
            Some(format!("validation errors: [{}]", errs.join(" "))),
        );
    }
    if let Some(id) = expect {
        if id != acc {
            return answer(
                server,
                id,
                "jwt update resulted in error",
                Some("subject does not match jwt content".into()),
            );
        }
    }
    let path = cfg.dir.join(format!("{acc}.jwt"));
    let _guard = APPLY.lock();
    if cfg.cache_ttl.is_some() && !path.exists() {
        // nats-server's cache only refreshes what it holds.
        return answer(server, &acc, "jwt update cache skipped", None);
    }
    // Only a newer JWT replaces a stored one (as nats-server's directory store).
    if let Some(old) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|o| natrix_jwt::decode_as::<natrix_jwt::Account>(o.trim()).ok())
    {
        if old.iat > claims.iat {
            return answer(
                server,
                &acc,
                "jwt update resulted in error",
                Some("jwt is older than the one stored".into()),
            );
        }
    }
    if cfg.limit > 0 && !path.exists() && stored_jwts(&cfg.dir).len() as i64 >= cfg.limit {
        return answer(
            server,
            &acc,
            "jwt update resulted in error",
            Some("store is full".into()),
        );
    }
    if let Err(e) = store(&path, jwt) {
        return answer(
            server,
            &acc,
            "jwt update resulted in error",
            Some(e.to_string()),
        );
    }
    if let Err(e) = server.refresh_accounts() {
        return answer(server, &acc, "jwt update resulted in error", Some(e));
    }
    if let Some(js) = crate::jetstream::JetStream::of(server) {
        js.enable_from_claims(server, &claims);
    }
    tracing::info!("resolver: account {acc} updated");
    let done = if cfg.cache_ttl.is_some() {
        "jwt updated cache"
    } else {
        "jwt updated"
    };
    answer(server, &acc, done, None)
}

/// `$SYS.REQ.CLAIMS.DELETE`: an operator-signed JWT listing accounts in `data.accounts`.
fn delete(server: &Arc<Server>, cfg: &FullResolverOptions, jwt: &str) -> String {
    if !cfg.allow_delete {
        return answer(
            server,
            "",
            "delete accounts request",
            Some("not allowed".into()),
        );
    }
    // `decode` checks the signature against the issuer; the issuer must be an operator key.
    let claims = match natrix_jwt::decode(jwt) {
        Ok(natrix_jwt::Claims::Generic(c)) => c,
        Ok(_) => {
            return answer(
                server,
                "",
                "delete accounts request",
                Some("not a generic claims JWT".into()),
            )
        }
        Err(e) => return answer(server, "", "delete accounts request", Some(e.to_string())),
    };
    let ops = operators(server);
    let trusted = ops
        .iter()
        .any(|o| o.sub == claims.iss || o.nats.signing_keys.iter().any(|k| k == &claims.iss));
    if !trusted {
        return answer(
            server,
            "",
            "delete accounts request",
            Some("not signed by a trusted operator".into()),
        );
    }
    let accounts: Vec<String> = claims
        .nats
        .get("accounts")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let _guard = APPLY.lock();
    let mut n = 0;
    for a in &accounts {
        if std::fs::remove_file(cfg.dir.join(format!("{a}.jwt"))).is_ok() {
            n += 1;
        }
    }
    if let Err(e) = server.refresh_accounts() {
        return answer(server, "", "delete accounts request", Some(e));
    }
    answer(server, "", &format!("deleted {n} accounts"), None)
}
