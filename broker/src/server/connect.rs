//! CONNECT: parsing it, authenticating the user (off the async workers for bcrypt), binding
//! the connection to its account and permissions, expiry of credentials.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::client::{Client, ClientMeta};
use super::reader::{apply_limits, Reader};
use super::Server;
use crate::auth::{AuthUser, Presented};
use crate::protocol::info::ConnectInfo;
use crate::protocol::ClosedReason;

/// `CONNECT {...}` with `pass`, `auth_token` and `sig` replaced by `[REDACTED]`.
pub(super) fn redact_connect(json: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(json) {
        Ok(mut m) => {
            for key in ["pass", "auth_token", "sig"] {
                // As nats-server: only values actually given are replaced (null stays null).
                if let Some(v @ serde_json::Value::String(_)) = m.get_mut(key) {
                    *v = serde_json::Value::String("[REDACTED]".into());
                }
            }
            format!("CONNECT {}", serde_json::Value::Object(m))
        }
        Err(_) => "CONNECT [unparsable]".into(),
    }
}

/// Parses CONNECT and applies the checks that need no credentials; `None` when the connection
/// was closed for it.
pub(super) fn parse_connect(client: &Client, json: &[u8]) -> Option<ConnectInfo> {
    let ci: ConnectInfo = match serde_json::from_slice(json) {
        Ok(ci) => ci,
        Err(e) => {
            // nats-server closes on unparsable CONNECT JSON without an -ERR.
            tracing::error!("{} - {}", client.tag(), e);
            client.close(ClosedReason::ProtocolViolation);
            return None;
        }
    };
    if ci.protocol > 1 || ci.protocol < 0 {
        client.queue_proto(b"-ERR 'invalid client protocol'\r\n");
        client.close(ClosedReason::BadClientProtocolVersion);
        return None;
    }
    if ci.no_responders && !ci.headers {
        client.queue_proto(b"-ERR 'no responders requires headers support'\r\n");
        client.close(ClosedReason::NoRespondersRequiresHeaders);
        return None;
    }
    Some(ci)
}

/// Authenticates a CONNECT (bcrypt off the async workers) and applies it.
pub(super) async fn finish_connect(
    server: &Arc<Server>,
    client: &Arc<Client>,
    r: &mut Reader,
    ci: ConnectInfo,
) {
    // A user of an account this server has not got yet: the cluster's resolvers may have it.
    if let Some(h) = server.hooks() {
        h.fetch_account(server, ci.jwt.as_deref()).await;
    }
    let auth = server.authenticator();
    let user = if r.user.is_some() && !auth.required() {
        r.user.clone()
    } else {
        let cert_ids = client.cert_identities();
        let nonce = r.nonce.clone();
        let client_ip = Some(client.addr.ip());
        let check = move |ci: &ConnectInfo| {
            auth.authenticate(&Presented {
                connect: Some(ci),
                nonce: nonce.as_deref(),
                cert_identities: &cert_ids,
                client_ip,
            })
        };
        let expensive = server.authenticator().is_expensive(&Presented {
            connect: Some(&ci),
            ..Default::default()
        });
        let result = if expensive {
            let ci2 = ci.clone();
            tokio::task::spawn_blocking(move || check(&ci2))
                .await
                .unwrap_or(Err(crate::auth::AuthError::NoMatch))
        } else {
            check(&ci)
        };
        result.ok()
    };
    let Some(user) = user else {
        auth_violation(client);
        return;
    };
    *client.connect.lock() = Some(ci.clone());
    let meta = ClientMeta {
        name: ci.name.unwrap_or_default(),
        lang: ci.lang.unwrap_or_default(),
        version: ci.version.unwrap_or_default(),
        verbose: ci.verbose,
        pedantic: ci.pedantic,
        echo: ci.echo,
        headers: ci.headers,
        // nats-server only honours no_responders with headers.
        no_responders: ci.no_responders && ci.headers,
        connected: true,
        protocol: ci.protocol,
        first_pong_sent: r.meta.first_pong_sent,
    };
    set_user(server, client, r, user);
    client.headers.store(meta.headers, Ordering::Relaxed);
    *client.meta.lock() = meta.clone();
    r.meta = meta;
    if r.meta.verbose {
        client.queue_proto(b"+OK\r\n");
    }
    let limits = r.user.as_ref().map(|u| u.limits).unwrap_or_default();
    if limits.account_conns > 0
        && r.account.num_connections.load(Ordering::Relaxed) as i64 > limits.account_conns
    {
        tracing::error!(
            "{} - maximum account active connections exceeded",
            client.tag()
        );
        client.queue_proto(b"-ERR 'maximum account active connections exceeded'\r\n");
        client.close(ClosedReason::MaxAccountConnectionsExceeded);
        return;
    }
    // A JWT lowered the payload limit: tell the client, as nats-server's connect INFO does.
    let opts = server.options();
    if (r.limits.max_payload as i64) < opts.max_payload as i64 && r.meta.protocol >= 1 {
        let info = server.info_for(client.cid, &client.addr.ip().to_string(), None);
        let json = info
            .strip_prefix(b"INFO ")
            .and_then(|j| serde_json::from_slice::<serde_json::Value>(j.trim_ascii_end()).ok());
        if let Some(mut v) = json {
            v["max_payload"] = serde_json::json!(r.limits.max_payload);
            v["connect_info"] = serde_json::json!(true);
            v["remote_account"] = serde_json::json!(r.account.name);
            r.connect_info = Some(format!("INFO {v}\r\n").into_bytes());
        }
    }
    if let Some(h) = server.hooks() {
        h.client_event(server, client, None);
    }
}

/// Binds the connection to an authenticated user: its account, permissions and replies.
pub(super) fn set_user(
    server: &Arc<Server>,
    client: &Arc<Client>,
    r: &mut Reader,
    user: Arc<AuthUser>,
) {
    if !Arc::ptr_eq(&user.account, &r.account) {
        server.move_client(client, &r.account, &user.account);
        *client.account.write() = user.account.clone();
        r.account = user.account.clone();
        r.cache.clear();
    }
    client.track_replies.store(
        user.perms.as_ref().is_some_and(|p| p.responses.is_some()),
        Ordering::Relaxed,
    );
    *client.user.write() = Some(user.clone());
    if let Some(exp) = user.expires {
        expire_at(client, exp);
    }
    r.perms = user.perms.clone();
    r.pub_allowed.clear();
    r.user = Some(user);
    apply_limits(r, &server.options());
}

/// Disconnects the client when its credentials expire (`exp`, unix seconds), as nats-server
/// does: `-ERR 'User Authentication Expired'`, then close. Holds only a weak reference, so a
/// connection that closes first is left alone.
pub(super) fn expire_at(client: &Arc<Client>, exp: i64) {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(exp).unwrap_or(0));
    let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
    let weak = Arc::downgrade(client);
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        let Some(client) = weak.upgrade() else {
            return;
        };
        if client.is_closing() {
            return;
        }
        tracing::debug!("{} - user authentication expired", client.tag());
        client.send_proto(b"-ERR 'User Authentication Expired'\r\n");
        client.close(ClosedReason::AuthenticationExpired);
    });
}

/// The one answer every authentication failure gets, whatever failed.
pub(super) fn auth_violation(client: &Client) {
    tracing::error!("{} - authentication error", client.tag());
    client.queue_proto(b"-ERR 'Authorization Violation'\r\n");
    client.close(ClosedReason::AuthenticationViolation);
}

/// How violations name the user in logs, as nats-server does.
pub(super) fn user_desc(user: &Option<Arc<AuthUser>>) -> String {
    match user {
        Some(u) if !u.name.is_empty() => format!("User {:?}", u.name),
        _ => "Not Authorized".into(),
    }
}
