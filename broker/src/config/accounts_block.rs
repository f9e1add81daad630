//! `accounts`: each account's users, exports and imports (nats-server's `parseAccounts`), and
//! whether an import is authorized by its exporter.

use super::ConfigError;
use std::collections::HashMap;

use super::read::{bad, get_bool, get_str};
use super::security::{
    at, check_public_nkey, parse_users, permissions, string_list, unknown, unsupported,
    SecurityState,
};
use super::value::{Entry, Kind, Map, Pos, Value};
use crate::options::{AccountConfig, Export, Import, Options, ResponseType};
use crate::subject::is_subset_match;
use crate::subject::is_valid_subject;

/// The global account's reserved name.
pub(super) const GLOBAL_ACCOUNT: &str = "$G";

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

pub(super) fn new_account(
    opts: &mut Options,
    name: &str,
    pos: &Pos,
    key: &str,
) -> Result<(), ConfigError> {
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

pub(super) fn account_body(
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

pub(super) type ItemParser<T> = fn(&Entry, &Value, &Map) -> Result<Option<T>, ConfigError>;

pub(super) fn list_of<T>(
    e: &Entry,
    what: &str,
    item: ItemParser<T>,
) -> Result<Vec<(T, Pos)>, ConfigError> {
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
pub(super) fn export(_list: &Entry, _v: &Value, m: &Map) -> Result<Option<Export>, ConfigError> {
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
pub(super) fn import_source(f: &Entry) -> Result<(String, String), ConfigError> {
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
pub(super) fn import(_list: &Entry, _v: &Value, m: &Map) -> Result<Option<Import>, ConfigError> {
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

/// nats-server's stream/service import authorization: a matching export that is public or
/// lists the importing account.
pub(super) fn import_authorized(
    exporter: &AccountConfig,
    importer: &str,
    sub: &str,
    stream: bool,
) -> bool {
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
