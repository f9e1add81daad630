//! `authorization`, `accounts`, `no_auth_user`, `system_account` and `tls`: nats-server's
//! `parseAuthorization`, `parseUsers`, `parseUserPermissions`, `parseAccounts` and `parseTLS`.
//!
//! Unknown keys inside the security blocks (except `tls`) are errors, as in nats-server: a
//! misspelt `pasword` or `publsh` must not quietly weaken authentication.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::duration::parse_go_duration;
use super::read::{bad, get_bool, get_str, type_err};
use super::value::{Entry, Kind, Map, Pos, Value};
use super::ConfigError;
use crate::options::{
    AccountConfig, Export, Import, Options, Permissions, ResponsePermission, ResponseType,
    SubjectPermission, TlsOptions, User,
};
use crate::subject::is_valid_subject;

/// nats-server's `DEFAULT_ALLOW_RESPONSE_EXPIRATION`.
const DEFAULT_RESPONSE_EXPIRES: Duration = Duration::from_secs(120);
/// nats-server's `TLS_TIMEOUT`.
const DEFAULT_TLS_TIMEOUT: Duration = Duration::from_secs(2);
/// nats-server's `DEFAULT_TLS_HANDSHAKE_FIRST_FALLBACK_DELAY`.
const DEFAULT_HANDSHAKE_FIRST_FALLBACK: Duration = Duration::from_millis(50);
/// The global account's reserved name.
const GLOBAL_ACCOUNT: &str = "$G";

/// What the cross-checks after the whole file need to know.
#[derive(Debug, Default)]
pub(super) struct SecurityState {
    /// `authorization { timeout }` (or top-level `auth_timeout`) was given.
    pub auth_timeout_set: bool,
    /// Index in `Options::users` of the `authorization { user, password }` single user.
    single_user: Option<usize>,
    /// Where each entry of `Options::users` was written (parallel to it).
    user_pos: Vec<Pos>,
    /// Where each import was written: (account, index in its imports, position).
    import_pos: Vec<(String, usize, Pos)>,
    /// Where each export was written: (account, index in its exports, position).
    export_pos: Vec<(String, usize, Pos)>,
    /// Where `accounts` was written.
    accounts_pos: Option<Pos>,
    /// Where `no_auth_user` was written.
    pub no_auth_user_pos: Option<Pos>,
    /// Where `system_account` was written.
    pub system_account_pos: Option<Pos>,
}

fn at(pos: &Pos, key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        pos: pos.clone(),
        key: key.to_string(),
        msg: msg.into(),
    }
}

fn unsupported(e: &Entry) -> ConfigError {
    ConfigError::Unsupported {
        pos: e.key_pos.clone(),
        key: e.key.clone(),
    }
}

/// nats-server names the key only; `_ctx` (the block) is kept for readers of the call sites.
fn unknown(e: &Entry, _ctx: &str) -> ConfigError {
    super::read::unknown(e)
}

fn as_map<'a>(e: &'a Entry, what: &str) -> Result<&'a Map, ConfigError> {
    match &e.value.kind {
        Kind::Map(m) => Ok(m),
        k => Err(bad(
            e,
            format!("expected {what} to be a map, got {}", k.type_name()),
        )),
    }
}

fn string_list(e: &Entry) -> Result<Vec<String>, ConfigError> {
    match &e.value.kind {
        Kind::String(s) => Ok(vec![s.clone()]),
        Kind::Array(a) => a
            .iter()
            .map(|v| match &v.kind {
                Kind::String(s) => Ok(s.clone()),
                k => Err(at(
                    &v.pos,
                    &e.key,
                    format!("{}: expected string, got {}", e.key, k.type_name()),
                )),
            })
            .collect(),
        k => Err(bad(
            e,
            format!(
                "{}: expected string or array of strings, got {}",
                e.key,
                k.type_name()
            ),
        )),
    }
}

/// `authorization { timeout }`: seconds (int or float) or a duration string.
fn auth_timeout(e: &Entry) -> Result<Duration, ConfigError> {
    let secs = match &e.value.kind {
        Kind::Int(i) => *i as f64,
        Kind::Float(f) => *f,
        Kind::String(s) => {
            let ns = parse_go_duration(s).map_err(|err| {
                bad(
                    e,
                    format!("error parsing authorization config, 'timeout' {err}"),
                )
            })?;
            ns as f64 / 1e9
        }
        _ => {
            return Err(bad(
                e,
                "error parsing authorization config, 'timeout' wrong type",
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| bad(e, format!("invalid timeout {secs}")))
}

/// `authorization { ... }` at the top level.
pub(super) fn authorization(
    e: &Entry,
    opts: &mut Options,
    st: &mut SecurityState,
) -> Result<(), ConfigError> {
    let m = as_map(e, "authorization")?;
    let mut user = None;
    let mut pass = None;
    let mut token = None;
    let mut users: Option<Vec<(User, Pos)>> = None;
    let mut default_perms = None;
    for f in &m.entries {
        match f.key.to_lowercase().as_str() {
            "user" | "username" => user = Some(get_str(f)?),
            "pass" | "password" => pass = Some(get_str(f)?),
            "token" => token = Some(get_str(f)?),
            "timeout" => {
                opts.auth_timeout = auth_timeout(f)?;
                st.auth_timeout_set = true;
            }
            "users" => users = Some(parse_users(f, None)?),
            "default_permission" | "default_permissions" | "permissions" => {
                default_perms = Some(permissions(f)?)
            }
            "auth_callout" | "auth_hook" => return Err(unsupported(f)),
            // Off is what this broker does; requiring a proxy is not implemented.
            "proxy_required" => {
                if get_bool(f)? {
                    return Err(unsupported(f));
                }
            }
            _ => return Err(unknown(f, "authorization")),
        }
    }
    if (user.is_some() || pass.is_some()) && token.is_some() {
        return Err(bad(e, "Cannot have a user/pass and token"));
    }
    if users.is_some() && user.is_some() {
        return Err(bad(e, "Can not have a single user/pass and a users array"));
    }
    if users.is_some() && token.is_some() {
        return Err(bad(e, "Can not have a token and a users array"));
    }
    if let Some(t) = token {
        opts.token = Some(t);
    }
    if user.is_some() {
        st.single_user = Some(opts.users.len());
        opts.users.push(User {
            username: user,
            password: pass,
            ..User::default()
        });
        st.user_pos.push(e.key_pos.clone());
    }
    for (mut u, pos) in users.unwrap_or_default() {
        if u.permissions.is_none() {
            u.permissions = default_perms.clone();
        }
        opts.users.push(u);
        st.user_pos.push(pos);
    }
    if default_perms.is_some() {
        opts.default_permissions = default_perms;
    }
    Ok(())
}

/// `users: [ {user, password, permissions} | {nkey, permissions} ... ]`.
fn parse_users(e: &Entry, account: Option<&str>) -> Result<Vec<(User, Pos)>, ConfigError> {
    let Kind::Array(items) = &e.value.kind else {
        return Err(bad(
            e,
            format!(
                "Expected users field to be an array, got {}",
                e.value.kind.type_name()
            ),
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Kind::Map(um) = &item.kind else {
            return Err(at(
                &item.pos,
                &e.key,
                format!(
                    "Expected user entry to be a map/struct, got {}",
                    item.kind.type_name()
                ),
            ));
        };
        let mut u = User {
            account: account.map(str::to_string),
            ..User::default()
        };
        for f in &um.entries {
            match f.key.to_lowercase().as_str() {
                "nkey" => u.nkey = Some(get_str(f)?),
                "user" | "username" => u.username = Some(get_str(f)?),
                "pass" | "password" => u.password = Some(get_str(f)?),
                "permission" | "permissions" | "authorization" => {
                    u.permissions = Some(permissions(f)?)
                }
                "allowed_connection_types" | "connection_types" | "clients" => {
                    return Err(unsupported(f))
                }
                "proxy_required" => {
                    if get_bool(f)? {
                        return Err(unsupported(f));
                    }
                }
                _ => return Err(unknown(f, "user entry")),
            }
        }
        let non_empty = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
        if let Some(nk) = u.nkey.as_deref().filter(|s| !s.is_empty()) {
            if let Err(why) = check_public_nkey(nk, b'U') {
                return Err(at(
                    &item.pos,
                    &e.key,
                    format!("Not a valid public nkey for a user: {nk:?} ({why})"),
                ));
            }
            if non_empty(&u.username) || non_empty(&u.password) {
                return Err(at(
                    &item.pos,
                    &e.key,
                    "Nkey users do not take usernames or passwords",
                ));
            }
        } else if !non_empty(&u.username) {
            return Err(at(&item.pos, &e.key, "User entry requires a user"));
        } else {
            u.nkey = None;
        }
        out.push((u, item.pos.clone()));
    }
    Ok(out)
}

/// nkeys' CRC-16 (XMODEM).
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Check a public nkey: 56 characters of base32 whose first is `prefix` (`U` user,
/// `A` account), with a valid checksum.
pub(crate) fn check_public_nkey(key: &str, prefix: u8) -> Result<(), String> {
    if key.len() != 56 {
        return Err(format!("must be 56 characters, got {}", key.len()));
    }
    if key.as_bytes()[0] != prefix {
        return Err(format!("must start with {:?}", prefix as char));
    }
    let mut bytes = Vec::with_capacity(35);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in key.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return Err(format!("{:?} is not a base32 character", c as char)),
        };
        acc = (acc << 5) | v as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    let (body, sum) = bytes.split_at(bytes.len() - 2);
    if crc16(body) != u16::from_le_bytes([sum[0], sum[1]]) {
        return Err("bad checksum".into());
    }
    Ok(())
}

/// nats-server's `checkPermSubjectArray`: a subject, or a subject and a queue group.
fn check_perm_subject(s: &str) -> Result<(), String> {
    if is_valid_subject(s) {
        return Ok(());
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    if fields.len() != 2 {
        return Err(format!("subject {s:?} is not a valid subject"));
    }
    if !is_valid_subject(fields[0]) {
        return Err(format!("subject {:?} is not a valid subject", fields[0]));
    }
    Ok(())
}

/// `parsePermSubjects`: a subject or an array of subjects.
fn perm_subjects(e: &Entry) -> Result<Vec<String>, ConfigError> {
    let subjects = match &e.value.kind {
        Kind::String(s) => vec![s.clone()],
        Kind::Array(a) => {
            let mut v = Vec::with_capacity(a.len());
            for x in a {
                match &x.kind {
                    Kind::String(s) => v.push(s.clone()),
                    _ => {
                        return Err(at(
                            &x.pos,
                            &e.key,
                            "Subject in permissions array cannot be cast to string",
                        ))
                    }
                }
            }
            v
        }
        k => {
            return Err(bad(
                e,
                format!(
                    "Expected subject permissions to be a subject, or array of subjects, got {}",
                    k.type_name()
                ),
            ))
        }
    };
    for s in &subjects {
        check_perm_subject(s).map_err(|m| bad(e, m))?;
    }
    Ok(subjects)
}

/// `parseVariablePermissions`: `{allow, deny}` or the old style (subject or list = allow).
pub(super) fn subject_permission(e: &Entry) -> Result<Option<SubjectPermission>, ConfigError> {
    let Kind::Map(m) = &e.value.kind else {
        return Ok(Some(SubjectPermission {
            allow: perm_subjects(e)?,
            deny: Vec::new(),
        }));
    };
    if m.is_empty() {
        return Ok(None);
    }
    let mut p = SubjectPermission::default();
    for f in &m.entries {
        match f.key.to_lowercase().as_str() {
            "allow" => p.allow = perm_subjects(f)?,
            "deny" => p.deny = perm_subjects(f)?,
            _ => {
                return Err(bad(
                    f,
                    format!(
                        "Unknown field name {:?} parsing subject permissions, only 'allow' or 'deny' are permitted",
                        f.key
                    ),
                ))
            }
        }
    }
    Ok(Some(p))
}

/// `allow_responses: true | {max, expires}`.
fn allow_responses(e: &Entry) -> Result<Option<ResponsePermission>, ConfigError> {
    let mut rp = ResponsePermission {
        max: 1,
        expires: DEFAULT_RESPONSE_EXPIRES,
    };
    let m = match &e.value.kind {
        Kind::Bool(true) => return Ok(Some(rp)),
        Kind::Bool(false) => return Ok(None),
        Kind::Map(m) => m,
        _ => {
            return Err(bad(
                e,
                "error parsing response permissions, expected a boolean or a map",
            ))
        }
    };
    for f in &m.entries {
        match f.key.to_lowercase().as_str() {
            "max" | "max_msgs" | "max_messages" | "max_responses" => {
                let Kind::Int(n) = f.value.kind else {
                    return Err(type_err(f, "integer"));
                };
                let n = i32::try_from(n)
                    .map_err(|_| bad(f, format!("{} value {n} is out of range", f.key)))?;
                // 0 keeps the default; negative means unlimited.
                if n != 0 {
                    rp.max = n;
                }
            }
            "expires" | "expiration" | "ttl" => {
                let Kind::String(s) = &f.value.kind else {
                    return Err(bad(f, "error parsing expires, not a duration string"));
                };
                let ns = parse_go_duration(s)
                    .map_err(|err| bad(f, format!("error parsing expires: {err}")))?;
                // 0 keeps the default; negative means no expiry.
                if ns < 0 {
                    rp.expires = Duration::ZERO;
                } else if ns > 0 {
                    rp.expires = Duration::from_nanos(ns as u64);
                }
            }
            _ => {
                return Err(bad(
                    f,
                    format!("Unknown field {:?} parsing permissions", f.key),
                ))
            }
        }
    }
    Ok(Some(rp))
}

/// `permissions { publish, subscribe, allow_responses }` (`import`/`export` are aliases).
fn permissions(e: &Entry) -> Result<Permissions, ConfigError> {
    let Kind::Map(m) = &e.value.kind else {
        return Err(bad(
            e,
            format!(
                "Expected permissions to be a map/struct, got {}",
                e.value.kind.type_name()
            ),
        ));
    };
    let mut p = Permissions::default();
    for f in &m.entries {
        match f.key.to_lowercase().as_str() {
            "pub" | "publish" | "import" => p.publish = subject_permission(f)?,
            "sub" | "subscribe" | "export" => p.subscribe = subject_permission(f)?,
            "publish_allow_responses" | "allow_responses" => {
                p.allow_responses = allow_responses(f)?
            }
            _ => {
                return Err(bad(
                    f,
                    format!("Unknown field {:?} parsing permissions", f.key),
                ))
            }
        }
    }
    Ok(p)
}

/// `accounts { NAME { users, exports, imports, default_permissions } }` or `accounts: [A, B]`.
pub(super) fn accounts(
    e: &Entry,
    opts: &mut Options,
    st: &mut SecurityState,
) -> Result<(), ConfigError> {
    st.accounts_pos = Some(e.key_pos.clone());
    match &e.value.kind {
        Kind::Array(names) => {
            for v in names {
                let Kind::String(name) = &v.kind else {
                    return Err(at(
                        &v.pos,
                        &e.key,
                        format!("expected account name, got {}", v.kind.type_name()),
                    ));
                };
                new_account(opts, name, &v.pos, &e.key)?;
            }
            Ok(())
        }
        Kind::Map(m) => {
            for a in &m.entries {
                let Kind::Map(am) = &a.value.kind else {
                    return Err(bad(a, "Expected map entries for accounts"));
                };
                new_account(opts, &a.key, &a.key_pos, &a.key)?;
                account_body(&a.key, am, opts, st)?;
            }
            Ok(())
        }
        k => Err(bad(
            e,
            format!(
                "expected accounts to be a map or an array, got {}",
                k.type_name()
            ),
        )),
    }
}

fn new_account(opts: &mut Options, name: &str, pos: &Pos, key: &str) -> Result<(), ConfigError> {
    if name == GLOBAL_ACCOUNT {
        return Err(at(pos, key, format!("{name:?} is a Reserved Account")));
    }
    if opts.accounts.iter().any(|a| a.name == name) {
        return Err(at(pos, key, format!("Duplicate Account Entry: {name}")));
    }
    opts.accounts.push(AccountConfig {
        name: name.to_string(),
        ..AccountConfig::default()
    });
    Ok(())
}

fn account_body(
    name: &str,
    m: &Map,
    opts: &mut Options,
    st: &mut SecurityState,
) -> Result<(), ConfigError> {
    let mut users = Vec::new();
    let mut default_perms = None;
    let mut exports = Vec::new();
    let mut imports = Vec::new();
    let mut js = None;
    for f in &m.entries {
        match f.key.to_lowercase().as_str() {
            "users" => users = parse_users(f, Some(name))?,
            "default_permissions" => default_perms = Some(permissions(f)?),
            "exports" => exports = list_of(f, "Exports", export)?,
            "imports" => imports = list_of(f, "Imports", import)?,
            "jetstream" => js = super::jetstream::account(f)?,
            // nats-server checks the key and keeps it as the account's identity; nothing in a
            // config-defined account's behaviour depends on it.
            "nkey" => {
                let nk = get_str(f)?;
                if check_public_nkey(&nk, b'A').is_err() {
                    return Err(bad(
                        f,
                        format!("Not a valid public nkey for an account: {nk:?}"),
                    ));
                }
            }
            "mappings" | "maps" | "limits" | "msg_trace" | "trace_dest" => {
                return Err(unsupported(f))
            }
            _ => return Err(unknown(f, "account")),
        }
    }
    // nats-server: a service import's local subject must be unique within the account.
    let mut svc_to: HashMap<&str, &Import> = HashMap::new();
    for (imp, pos) in &imports {
        if let Import::Service {
            account,
            subject,
            to,
        } = imp
        {
            let local = to.as_deref().unwrap_or(subject);
            if let Some(Import::Service {
                account: da,
                subject: ds,
                ..
            }) = svc_to.get(local)
            {
                return Err(at(
                    pos,
                    "imports",
                    format!(
                        "Duplicate service import subject {local:?}, previously used in import for account {da:?}, subject {ds:?}"
                    ),
                ));
            }
            let _ = account;
            svc_to.insert(local, imp);
        }
    }
    let acc = opts
        .accounts
        .iter_mut()
        .find(|a| a.name == name)
        .expect("account just added");
    acc.jetstream = js;
    for (x, pos) in exports {
        st.export_pos
            .push((name.to_string(), acc.exports.len(), pos.clone()));
        acc.exports.push(x);
    }
    for (x, pos) in imports {
        st.import_pos
            .push((name.to_string(), acc.imports.len(), pos.clone()));
        acc.imports.push(x);
    }
    for (mut u, pos) in users {
        if u.permissions.is_none() {
            u.permissions = default_perms.clone();
        }
        opts.users.push(u);
        st.user_pos.push(pos);
    }
    Ok(())
}

type ItemParser<T> = fn(&Entry, &Value, &Map) -> Result<Option<T>, ConfigError>;

fn list_of<T>(e: &Entry, what: &str, item: ItemParser<T>) -> Result<Vec<(T, Pos)>, ConfigError> {
    let Kind::Array(items) = &e.value.kind else {
        return Err(bad(
            e,
            format!(
                "{what} should be an array, got {}",
                e.value.kind.type_name()
            ),
        ));
    };
    let mut out = Vec::new();
    for v in items {
        let Kind::Map(m) = &v.kind else {
            return Err(at(
                &v.pos,
                &e.key,
                format!(
                    "{} Items should be a map with type entry, got {}",
                    &what[..what.len() - 1],
                    v.kind.type_name()
                ),
            ));
        };
        // An entry with neither `stream` nor `service` is ignored, as in nats-server.
        if let Some(x) = item(e, v, m)? {
            out.push((x, v.pos.clone()));
        }
    }
    Ok(out)
}

/// `{stream: subj, accounts: [..]}` or `{service: subj, accounts: [..], response_type: ..}`.
fn export(_list: &Entry, _v: &Value, m: &Map) -> Result<Option<Export>, ConfigError> {
    let mut stream: Option<String> = None;
    let mut service: Option<String> = None;
    let mut accounts = Vec::new();
    let mut rt: Option<(ResponseType, &Entry)> = None;
    for f in &m.entries {
        match f.key.to_lowercase().as_str() {
            "stream" => {
                let Kind::String(s) = &f.value.kind else {
                    return Err(bad(
                        f,
                        format!(
                            "Expected stream name to be string, got {}",
                            f.value.kind.type_name()
                        ),
                    ));
                };
                if service.is_some() {
                    return Err(bad(
                        f,
                        format!("Detected stream {s:?} but already saw a service"),
                    ));
                }
                stream = Some(s.clone());
            }
            "service" => {
                let Kind::String(s) = &f.value.kind else {
                    return Err(bad(
                        f,
                        format!(
                            "Expected service name to be string, got {}",
                            f.value.kind.type_name()
                        ),
                    ));
                };
                if stream.is_some() {
                    return Err(bad(
                        f,
                        format!("Detected service {s:?} but already saw a stream"),
                    ));
                }
                service = Some(s.clone());
            }
            "accounts" => accounts = string_list(f)?,
            "response" | "response_type" => {
                let Kind::String(s) = &f.value.kind else {
                    return Err(bad(
                        f,
                        format!(
                            "Expected response type to be string, got {}",
                            f.value.kind.type_name()
                        ),
                    ));
                };
                let t = match s.to_lowercase().as_str() {
                    "single" | "singleton" => ResponseType::Singleton,
                    "stream" => ResponseType::Stream,
                    "chunk" | "chunked" => ResponseType::Chunked,
                    _ => return Err(bad(f, format!("Unknown response type: {s:?}"))),
                };
                rt = Some((t, f));
            }
            "threshold"
            | "response_threshold"
            | "response_max_time"
            | "response_time"
            | "latency"
            | "account_token_position"
            | "advertise"
            | "allow_trace" => return Err(unsupported(f)),
            _ => return Err(unknown(f, "export")),
        }
    }
    if let (Some(_), Some((_, f))) = (&stream, &rt) {
        return Err(bad(f, "Detected response directive on non-service"));
    }
    Ok(if let Some(subject) = stream {
        Some(Export::Stream { subject, accounts })
    } else {
        service.map(|subject| Export::Service {
            subject,
            accounts,
            response_type: rt.map(|(t, _)| t).unwrap_or_default(),
        })
    })
}

/// `{account, subject}` inside an import.
fn import_source(f: &Entry) -> Result<(String, String), ConfigError> {
    let Kind::Map(m) = &f.value.kind else {
        let what = if f.key.eq_ignore_ascii_case("stream") {
            "Stream"
        } else {
            "Service"
        };
        return Err(bad(
            f,
            format!(
                "{what} entry should be an account map, got {}",
                f.value.kind.type_name()
            ),
        ));
    };
    let (mut account, mut subject) = (String::new(), String::new());
    for g in &m.entries {
        match g.key.to_lowercase().as_str() {
            "account" => account = get_str(g)?,
            "subject" => subject = get_str(g)?,
            _ => return Err(unknown(g, "import")),
        }
    }
    if account.is_empty() || subject.is_empty() {
        return Err(bad(f, "Expect an account name and a subject"));
    }
    Ok((account, subject))
}

/// `{stream: {account, subject}, prefix|to}` or `{service: {account, subject}, to}`.
fn import(_list: &Entry, _v: &Value, m: &Map) -> Result<Option<Import>, ConfigError> {
    let mut stream = None;
    let mut service = None;
    let mut prefix: Option<(String, &Entry)> = None;
    let mut to: Option<(String, &Entry)> = None;
    for f in &m.entries {
        match f.key.to_lowercase().as_str() {
            "stream" => {
                if service.is_some() {
                    return Err(bad(f, "Detected stream but already saw a service"));
                }
                stream = Some(import_source(f)?);
            }
            "service" => {
                if stream.is_some() {
                    return Err(bad(f, "Detected service but already saw a stream"));
                }
                service = Some(import_source(f)?);
            }
            "prefix" => prefix = Some((get_str(f)?, f)),
            "to" => to = Some((get_str(f)?, f)),
            "share" | "allow_trace" => {
                if get_bool(f)? {
                    return Err(unsupported(f));
                }
            }
            _ => return Err(unknown(f, "import")),
        }
    }
    let nonempty = |o: Option<(String, &Entry)>| o.map(|(s, _)| s).filter(|s| !s.is_empty());
    if let Some((account, subject)) = stream {
        if let (Some(_), Some((_, f))) = (&prefix, &to) {
            return Err(bad(
                f,
                "Stream import can not have a 'prefix' and a 'to' property",
            ));
        }
        return Ok(Some(Import::Stream {
            account,
            subject,
            to: nonempty(to),
            prefix: nonempty(prefix),
        }));
    }
    Ok(service.map(|(account, subject)| Import::Service {
        account,
        subject,
        to: nonempty(to),
    }))
}

/// Whether every subject matched by `sub` is matched by the export pattern `export`
/// (nats-server's `isSubsetMatch`).
fn is_subset_match(sub: &str, export: &str) -> bool {
    let s: Vec<&str> = sub.split('.').collect();
    let x: Vec<&str> = export.split('.').collect();
    for (i, xt) in x.iter().enumerate() {
        if *xt == ">" {
            return i < s.len();
        }
        let Some(st) = s.get(i) else { return false };
        if *st == ">" {
            return false;
        }
        if *xt == "*" {
            continue;
        }
        if *st == "*" || st != xt {
            return false;
        }
    }
    s.len() == x.len()
}

/// nats-server's stream/service import authorization: a matching export that is public or
/// lists the importing account.
fn import_authorized(exporter: &AccountConfig, importer: &str, sub: &str, stream: bool) -> bool {
    if !is_valid_subject(sub) {
        return false;
    }
    exporter.exports.iter().any(|x| {
        let (subject, accounts) = match (x, stream) {
            (Export::Stream { subject, accounts }, true) => (subject, accounts),
            (
                Export::Service {
                    subject, accounts, ..
                },
                false,
            ) => (subject, accounts),
            _ => return false,
        };
        is_subset_match(sub, subject)
            && (accounts.is_empty()
                || accounts.iter().any(|a| a == importer)
                || exporter.name == importer)
    })
}

/// Checks that need the whole file: duplicate users, import/export accounts, import
/// authorization, `no_auth_user`, `system_account`, and the auth timeout default with TLS.
pub(super) fn finish(opts: &mut Options, st: &SecurityState) -> Result<(), ConfigError> {
    let mut seen = HashMap::new();
    for (i, u) in opts.users.iter().enumerate() {
        let (key, what) = match (&u.nkey, &u.username) {
            (Some(nk), _) => (nk.as_str(), "nkey"),
            (None, Some(n)) => (n.as_str(), "user"),
            _ => continue,
        };
        if seen.insert((what, key), i).is_some() {
            let pos = st.user_pos.get(i).cloned().unwrap_or_default();
            return Err(at(
                &pos,
                "users",
                format!("Duplicate {what} {key:?} detected"),
            ));
        }
    }
    let names: Vec<&str> = opts.accounts.iter().map(|a| a.name.as_str()).collect();
    for (acc, idx, pos) in &st.export_pos {
        let a = opts.accounts.iter().find(|a| &a.name == acc).unwrap();
        let (accounts, kind) = match &a.exports[*idx] {
            Export::Stream { accounts, .. } => (accounts, "stream"),
            Export::Service { accounts, .. } => (accounts, "service"),
        };
        if let Some(missing) = accounts.iter().find(|n| !names.contains(&n.as_str())) {
            return Err(at(
                pos,
                "exports",
                format!("{missing:?} account not defined for {kind} export"),
            ));
        }
    }
    for (acc, idx, pos) in &st.import_pos {
        let a = opts.accounts.iter().find(|a| &a.name == acc).unwrap();
        let (from, subject, stream) = match &a.imports[*idx] {
            Import::Stream {
                account, subject, ..
            } => (account, subject, true),
            Import::Service {
                account, subject, ..
            } => (account, subject, false),
        };
        let kind = if stream { "stream" } else { "service" };
        let Some(exporter) = opts.accounts.iter().find(|x| &x.name == from) else {
            return Err(at(
                pos,
                "imports",
                format!("{from:?} account not defined for {kind} import"),
            ));
        };
        if !import_authorized(exporter, acc, subject, stream) {
            return Err(at(
                pos,
                "imports",
                format!("Error adding {kind} import {subject:?}: {kind} import not authorized"),
            ));
        }
    }
    if let (Some(name), Some(pos)) = (&opts.no_auth_user, &st.no_auth_user_pos) {
        let listed = opts
            .users
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != st.single_user);
        let mut any = false;
        let mut found = false;
        for (_, u) in listed {
            any = true;
            if u.username.as_deref() == Some(name) || u.nkey.as_deref() == Some(name) {
                found = true;
            }
        }
        if !any {
            return Err(at(
                pos,
                "no_auth_user",
                format!("no_auth_user: {name:?} present, but users/nkeys are not defined"),
            ));
        }
        if !found {
            return Err(at(
                pos,
                "no_auth_user",
                format!(
                    "no_auth_user: {name:?} not present as user or nkey in authorization block or account configuration"
                ),
            ));
        }
    }
    if let (Some(name), Some(pos)) = (&opts.system_account, &st.system_account_pos) {
        // In operator mode the system account is a public key resolved from the JWTs.
        if !opts.operator_mode() && !names.contains(&name.as_str()) {
            return Err(at(
                pos,
                "system_account",
                format!("error resolving system account {name:?}: account missing"),
            ));
        }
    }
    if let Some(tls) = &opts.tls {
        if !st.auth_timeout_set {
            // nats-server's getDefaultAuthTimeout: the TLS timeout plus one second.
            opts.auth_timeout = tls.timeout + Duration::from_secs(1);
        }
    }
    let _ = &st.accounts_pos;
    Ok(())
}

/// Client `tls` keys nats-server knows that this broker does not implement.
const TLS_NOT_SUPPORTED: &[&str] = &[
    "insecure",
    "verify_cert_and_check_known_urls",
    "connection_rate_limit",
    "pinned_certs",
    "cert_store",
    "cert_match",
    "cert_match_by",
    "ca_certs_match",
    "cert_match_skip_invalid",
    "ocsp_peer",
    "min_version",
];

/// Go's `crypto/tls` cipher suite names (what `nats-server --help_tls` lists).
const CIPHER_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_RSA_WITH_RC4_128_SHA",
];

/// The suites Go lists as insecure (`tls.InsecureCipherSuites`: RC4, 3DES, CBC with SHA-256,
/// and RSA key exchange), which nats-server takes only with `allow_insecure_cipher_suites`.
const INSECURE_CIPHER_SUITES: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_RSA_WITH_RC4_128_SHA",
];

/// Go's curve names (what `nats-server --help_tls` lists).
const CURVES: &[&str] = &[
    "X25519",
    "CurveP256",
    "CurveP384",
    "CurveP521",
    "SecP384r1MLKEM1024",
    "SecP256r1MLKEM768",
    "X25519MLKEM768",
];

fn tls_file(f: &Entry) -> Result<PathBuf, ConfigError> {
    match &f.value.kind {
        Kind::String(s) => Ok(PathBuf::from(s)),
        _ => Err(bad(
            f,
            format!(
                "error parsing tls config, expected '{}' to be filename",
                f.key
            ),
        )),
    }
}

fn tls_bool(f: &Entry) -> Result<bool, ConfigError> {
    match &f.value.kind {
        Kind::Bool(b) => Ok(*b),
        _ => Err(bad(
            f,
            format!(
                "error parsing tls config, expected '{}' to be a boolean",
                f.key
            ),
        )),
    }
}

fn tls_names(f: &Entry, known: &[&str], what: &str) -> Result<Vec<String>, ConfigError> {
    let Kind::Array(a) = &f.value.kind else {
        return Err(type_err(f, "array of strings"));
    };
    if a.is_empty() {
        return Err(bad(
            f,
            format!("error parsing tls config, '{}' cannot be empty", f.key),
        ));
    }
    a.iter()
        .map(|v| match &v.kind {
            Kind::String(s) if known.contains(&s.as_str()) => Ok(s.clone()),
            Kind::String(s) => Err(at(&v.pos, &f.key, format!("unrecognized {what} {s}"))),
            k => Err(at(
                &v.pos,
                &f.key,
                format!("{}: expected string, got {}", f.key, k.type_name()),
            )),
        })
        .collect()
}

/// nats-server loads the certificate and key while parsing (so `-t` fails on missing
/// files); check they can be read and hold PEM blocks of the right kind.
fn check_pem(f: &Entry, path: &PathBuf, marker: &str, what: &str) -> Result<(), ConfigError> {
    let text = std::fs::read(path)
        .map_err(|err| bad(f, format!("error reading {what} {}: {err}", path.display())))?;
    let text = String::from_utf8_lossy(&text);
    if !text.contains("-----BEGIN ") || !text.contains(marker) {
        return Err(bad(
            f,
            format!(
                "error parsing {what} {}: no PEM {marker} block",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// `tls { ... }` for client connections.
pub(super) fn tls(e: &Entry) -> Result<TlsOptions, ConfigError> {
    tls_block(e, false)
}

/// `cluster { tls { ... } }`: the client keys plus `insecure` (skip verifying the servers we
/// dial). `verify` is accepted but routes always verify both sides, and `handshake_first` is
/// accepted but routes are always TLS from the first byte, as in nats-server; `verify_and_map`
/// makes an accepted route's certificate name the cluster `authorization` user.
pub(super) fn cluster_tls(e: &Entry) -> Result<TlsOptions, ConfigError> {
    tls_block(e, true)
}

/// A `tls` block for client connections, or for routes when `cluster`.
fn tls_block(e: &Entry, cluster: bool) -> Result<TlsOptions, ConfigError> {
    let m = as_map(e, "tls")?;
    let mut t = TlsOptions {
        timeout: DEFAULT_TLS_TIMEOUT,
        ..TlsOptions::default()
    };
    let mut cert: Option<&Entry> = None;
    let mut key: Option<&Entry> = None;
    let mut ca: Option<&Entry> = None;
    let mut allow_insecure = false;
    for f in &m.entries {
        let k = f.key.to_lowercase();
        match k.as_str() {
            "cert_file" => {
                t.cert_file = tls_file(f)?;
                cert = Some(f);
            }
            "key_file" => {
                t.key_file = tls_file(f)?;
                key = Some(f);
            }
            "ca_file" => {
                t.ca_file = Some(tls_file(f)?);
                ca = Some(f);
            }
            "verify" => t.verify = tls_bool(f)?,
            "insecure" if cluster => t.insecure = tls_bool(f)?,
            "verify_and_map" => {
                let v = tls_bool(f)?;
                if v {
                    t.verify = true;
                }
                t.verify_and_map = v;
            }
            "certs" | "certificates" if !cluster => {
                let Kind::Array(list) = &f.value.kind else {
                    return Err(type_err(f, "array of {cert_file, key_file}"));
                };
                for v in list {
                    let Kind::Map(pair) = &v.kind else {
                        return Err(type_err(f, "array of {cert_file, key_file}"));
                    };
                    let (mut c, mut k) = (None, None);
                    for g in &pair.entries {
                        match g.key.to_lowercase().as_str() {
                            "cert_file" => c = Some((g, tls_file(g)?)),
                            "key_file" => k = Some((g, tls_file(g)?)),
                            _ => return Err(unknown(g, "tls certs")),
                        }
                    }
                    let (Some((cf, c)), Some((kf, k))) = (c, k) else {
                        return Err(bad(f, "error parsing certificates config: both 'cert_file' and 'key_file' are required"));
                    };
                    check_pem(cf, &c, "CERTIFICATE", "certificate")?;
                    check_pem(kf, &k, "PRIVATE KEY", "private key")?;
                    t.certs.push((c, k));
                }
            }
            "cipher_suites" => t.cipher_suites = tls_names(f, CIPHER_SUITES, "cipher")?,
            // Only a permission for the list above: rustls offers no insecure suite anyway.
            "allow_insecure_cipher_suites" => allow_insecure = get_bool(f)?,
            "curve_preferences" => t.curve_preferences = tls_names(f, CURVES, "curve preference")?,
            "timeout" => {
                let secs = match &f.value.kind {
                    Kind::Int(i) => *i as f64,
                    Kind::Float(x) => *x,
                    Kind::String(s) => {
                        parse_go_duration(s).map_err(|err| {
                            bad(f, format!("error parsing tls config, 'timeout' {err}"))
                        })? as f64
                            / 1e9
                    }
                    _ => return Err(bad(f, "error parsing tls config, 'timeout' wrong type")),
                };
                let d = Duration::try_from_secs_f64(secs)
                    .map_err(|_| bad(f, format!("invalid tls timeout {secs}")))?;
                // nats-server: 0 means the default.
                t.timeout = if d.is_zero() { DEFAULT_TLS_TIMEOUT } else { d };
            }
            "handshake_first" | "first" | "immediate" => match &f.value.kind {
                Kind::Bool(b) => t.handshake_first = *b,
                Kind::String(s) => match s.to_lowercase().as_str() {
                    "true" | "on" => t.handshake_first = true,
                    "false" | "off" => t.handshake_first = false,
                    "auto" | "auto_fallback" => {
                        t.handshake_first = true;
                        t.handshake_first_fallback = Some(DEFAULT_HANDSHAKE_FIRST_FALLBACK);
                    }
                    _ => match parse_go_duration(s) {
                        Ok(ns) if ns >= 0 => {
                            t.handshake_first = true;
                            t.handshake_first_fallback = Some(Duration::from_nanos(ns as u64));
                        }
                        _ => {
                            return Err(bad(f, format!("field {:?} value {s:?} is invalid", f.key)))
                        }
                    },
                },
                k => {
                    return Err(bad(
                        f,
                        format!(
                            "field {:?} should be a boolean or a string, got {}",
                            f.key,
                            k.type_name()
                        ),
                    ))
                }
            },
            k if TLS_NOT_SUPPORTED.contains(&k) && cluster => {
                return Err(ConfigError::Unsupported {
                    pos: f.key_pos.clone(),
                    key: format!("cluster.tls.{}", f.key),
                })
            }
            k if TLS_NOT_SUPPORTED.contains(&k) => return Err(unsupported(f)),
            _ => {
                return Err(ConfigError::UnknownField {
                    pos: f.key_pos.clone(),
                    key: f.key.clone(),
                    prefix: "error parsing tls config, ",
                })
            }
        }
    }
    let insecure: Vec<&str> = t
        .cipher_suites
        .iter()
        .map(String::as_str)
        .filter(|s| INSECURE_CIPHER_SUITES.contains(s))
        .collect();
    if !insecure.is_empty() && !allow_insecure {
        return Err(bad(
            e,
            format!(
                "insecure cipher suites configured without 'allow_insecure_cipher_suites' option set: {}",
                insecure.join(", ")
            ),
        ));
    }
    match (cert, key) {
        (Some(_), None) => return Err(bad(e, "missing 'key_file' in TLS configuration")),
        (None, Some(_)) => return Err(bad(e, "missing 'cert_file' in TLS configuration")),
        (Some(c), Some(k)) => {
            check_pem(c, &t.cert_file, "CERTIFICATE", "certificate")?;
            check_pem(k, &t.key_file, "PRIVATE KEY", "private key")?;
        }
        (None, None) => {}
    }
    if let (Some(f), Some(p)) = (ca, &t.ca_file) {
        check_pem(f, p, "CERTIFICATE", "ca_file")?;
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nkeys() {
        let good = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4";
        assert_eq!(check_public_nkey(good, b'U'), Ok(()));
        assert!(check_public_nkey(good, b'A').is_err());
        let mut bad = good.to_string();
        bad.replace_range(10..11, "A");
        assert!(check_public_nkey(&bad, b'U')
            .unwrap_err()
            .contains("checksum"));
        assert!(check_public_nkey("UABC", b'U').is_err());
        assert!(check_public_nkey(&good.replace('2', "1"), b'U').is_err());
    }

    #[test]
    fn subset_match() {
        assert!(is_subset_match("foo.bar", "foo.>"));
        assert!(is_subset_match("foo.*", "foo.>"));
        assert!(is_subset_match("foo.*", "foo.*"));
        assert!(!is_subset_match("foo.*", "foo.bar"));
        assert!(!is_subset_match("foo", "foo.>"));
        assert!(!is_subset_match("foo.>", "foo.*"));
        assert!(is_subset_match("foo.bar", "foo.bar"));
        assert!(!is_subset_match("foo.bar.baz", "foo.*"));
    }
}
