//! The security checks that need the whole file: duplicate users, the accounts that exports and
//! imports name, import authorization, `no_auth_user`, `system_account`, and the auth timeout
//! that follows the TLS timeout.

use std::collections::HashMap;
use std::time::Duration;

use super::accounts_block::import_authorized;
use super::security::{at, SecurityState};
use super::ConfigError;
use crate::options::{Export, Import, Options};

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
