//! `authorization`, `no_auth_user` and `system_account`: nats-server's `parseAuthorization`,
//! `parseUsers` and `parseUserPermissions`. Accounts are in `accounts_block.rs`, `tls` blocks in
//! `tls_block.rs`, the checks that need the whole file in `whole_file.rs`.
//!
//! Unknown keys inside the security blocks (except `tls`) are errors, as in nats-server: a
//! misspelt `pasword` or `publsh` must not quietly weaken authentication.

use std::time::Duration;

use super::duration::parse_go_duration;
use super::read::{bad, get_bool, get_str, type_err};
use super::value::{Entry, Kind, Map, Pos};
use super::ConfigError;
use crate::options::{Options, Permissions, ResponsePermission, SubjectPermission, User};
use crate::subject::is_valid_subject;

/// nats-server's `DEFAULT_ALLOW_RESPONSE_EXPIRATION`.
const DEFAULT_RESPONSE_EXPIRES: Duration = Duration::from_secs(120);

/// What the cross-checks after the whole file need to know.
#[derive(Debug, Default)]
pub(super) struct SecurityState {
    /// `authorization { timeout }` (or top-level `auth_timeout`) was given.
    pub auth_timeout_set: bool,
    /// Index in `Options::users` of the `authorization { user, password }` single user.
    pub single_user: Option<usize>,
    /// Where each entry of `Options::users` was written (parallel to it).
    pub user_pos: Vec<Pos>,
    /// Where each import was written: (account, index in its imports, position).
    pub import_pos: Vec<(String, usize, Pos)>,
    /// Where each export was written: (account, index in its exports, position).
    pub export_pos: Vec<(String, usize, Pos)>,
    /// Where `accounts` was written.
    pub accounts_pos: Option<Pos>,
    /// Where `no_auth_user` was written.
    pub no_auth_user_pos: Option<Pos>,
    /// Where `system_account` was written.
    pub system_account_pos: Option<Pos>,
}

pub(super) fn at(pos: &Pos, key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        pos: pos.clone(),
        key: key.to_string(),
        msg: msg.into(),
    }
}

pub(super) fn unsupported(e: &Entry) -> ConfigError {
    ConfigError::Unsupported {
        pos: e.key_pos.clone(),
        key: e.key.clone(),
    }
}

/// nats-server names the key only; `_ctx` (the block) is kept for readers of the call sites.
pub(super) fn unknown(e: &Entry, _ctx: &str) -> ConfigError {
    super::read::unknown(e)
}

pub(super) fn as_map<'a>(e: &'a Entry, what: &str) -> Result<&'a Map, ConfigError> {
    match &e.value.kind {
        Kind::Map(m) => Ok(m),
        k => Err(bad(
            e,
            format!("expected {what} to be a map, got {}", k.type_name()),
        )),
    }
}

pub(super) fn string_list(e: &Entry) -> Result<Vec<String>, ConfigError> {
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
pub(super) fn parse_users(
    e: &Entry,
    account: Option<&str>,
) -> Result<Vec<(User, Pos)>, ConfigError> {
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
pub(super) fn check_perm_subject(s: &str) -> Result<(), String> {
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
pub(super) fn perm_subjects(e: &Entry) -> Result<Vec<String>, ConfigError> {
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
pub(super) fn allow_responses(e: &Entry) -> Result<Option<ResponsePermission>, ConfigError> {
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
pub(super) fn permissions(e: &Entry) -> Result<Permissions, ConfigError> {
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
}
