//! The nats-resolver (`resolver: { type: full }`): account JWTs stored as `<dir>/<account>.jwt`
//! and managed through the system account: `$SYS.REQ.CLAIMS.UPDATE`,
//! `$SYS.REQ.ACCOUNT.<id>.CLAIMS.UPDATE`, `$SYS.REQ.ACCOUNT.<id>.CLAIMS.LOOKUP`,
//! `$SYS.REQ.CLAIMS.LIST` and `$SYS.REQ.CLAIMS.DELETE`. An accepted JWT is written, applied
//! live (new accounts can log in at once; revoked users are disconnected) and announced on
//! `$SYS.ACCOUNT.<id>.CLAIMS.UPDATE`.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use serde_json::json;

use super::client::{Client, InternalHandler, InternalSender};
use super::Server;
use crate::auth::jwt::{stored_jwts, verify_any};
use crate::options::FullResolverOptions;

/// One request handed to the resolver thread.
struct Req {
    subject: String,
    reply: Option<String>,
    body: Bytes,
}

/// Subscribes the resolver's services in the system account and starts its thread.
pub fn start(server: &Arc<Server>, cfg: FullResolverOptions) -> std::io::Result<()> {
    std::fs::create_dir_all(&cfg.dir)?;
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
    let (tx, rx) = std::sync::mpsc::channel::<Req>();
    let client = Client::internal(server.next_cid(), server.system_account.clone());
    let tx = std::sync::Mutex::new(tx);
    let handler = InternalHandler(Arc::new(move |subject, reply, _hdr, payload| {
        let req = Req {
            subject: String::from_utf8_lossy(subject).into_owned(),
            reply: reply.map(|r| String::from_utf8_lossy(r).into_owned()),
            body: Bytes::copy_from_slice(payload),
        };
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(req);
        }
    }));
    for subject in [
        "$SYS.REQ.CLAIMS.UPDATE",
        "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE",
        "$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP",
        "$SYS.REQ.CLAIMS.LIST",
        "$SYS.REQ.CLAIMS.DELETE",
        "$SYS.ACCOUNT.*.CLAIMS.UPDATE",
    ] {
        client.subscribe_internal(server, &server.system_account, subject, handler.clone());
    }
    if server.cluster().is_some() {
        tracing::warn!(
            "resolver: account JWTs are not exchanged between clustered servers; push them to every server"
        );
    }
    let weak: Weak<Server> = Arc::downgrade(server);
    std::thread::Builder::new()
        .name("resolver".into())
        .spawn(move || {
            let mut sender = InternalSender::default();
            while let Ok(req) = rx.recv() {
                let Some(server) = weak.upgrade() else { break };
                serve(&server, &cfg, &mut sender, req);
                sender.flush(&server);
            }
        })?;
    Ok(())
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
            // Unknown accounts get no answer, as nats-server's lookups time out.
            jwt.map(|j| j.trim().to_string())
        }
        ["$SYS", "REQ", "CLAIMS", "LIST"] => {
            let ids: Vec<String> = stored_jwts(&cfg.dir).into_iter().map(|(k, _)| k).collect();
            Some(json!({"data": ids}).to_string())
        }
        ["$SYS", "REQ", "CLAIMS", "DELETE"] => Some(delete(server, cfg, &body)),
        _ => None,
    };
    if let (Some(reply), Some(resp)) = (req.reply.as_deref(), response) {
        sender.send(server, &sys, reply.as_bytes(), None, None, resp.as_bytes());
    }
}

/// Writes a JWT file atomically.
fn store(path: &std::path::Path, jwt: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, jwt)?;
    std::fs::rename(&tmp, path)
}

fn operators(server: &Server) -> Vec<natrix_jwt::OperatorClaims> {
    server
        .options()
        .trusted_operators
        .iter()
        .filter_map(|t| natrix_jwt::decode_as::<natrix_jwt::Operator>(t).ok())
        .collect()
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
    if let Some(js) = server.jetstream() {
        js.enable_from_claims(server, &claims);
    }
    tracing::info!("resolver: account {acc} updated");
    answer(server, &acc, "jwt updated", None)
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
