//! Operator mode: clients present a user JWT issued by a trusted account and sign the INFO
//! nonce with the user's key; accounts come from the operator-signed account JWTs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use natrix_jwt::{AccountClaims, UserPermissionLimits};

use super::{decode_sig, AuthError, AuthUser, Perms, Presented};
use crate::accounts::Account;
use crate::options::{Options, Permissions, ResponsePermission, SubjectPermission};

/// Verifies every `resolver_preload` account JWT against the trusted operators.
pub fn load_accounts(opts: &Options) -> Result<Vec<AccountClaims>, AuthError> {
    let operators = opts.trusted_operator_claims();
    let mut out = Vec::new();
    // The nats-resolver's stored JWTs come first; a preload of the same account overrides them
    // only if the store has nothing newer (checked below by issue time).
    let mut stored: Vec<AccountClaims> = Vec::new();
    if let Some(r) = &opts.full_resolver {
        for (key, jwt) in stored_jwts(&r.dir) {
            match verify_any(&jwt, &operators) {
                Ok(c) if c.sub == key => stored.push(c),
                Ok(c) => tracing::warn!("resolver: {key}.jwt holds account {}; ignored", c.sub),
                Err(e) => tracing::warn!("resolver: {key}.jwt is not valid: {e}; ignored"),
            }
        }
    }
    for (key, jwt) in &opts.resolver_preload {
        let fail = |msg: String| AuthError::AccountJwt(key.clone(), msg);
        let mut last = String::from("no trusted operator");
        let mut found = None;
        for op in &operators {
            match natrix_jwt::verify_account(jwt, op) {
                Ok(c) => {
                    found = Some(c);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        let claims = found.ok_or_else(|| fail(last))?;
        let errs = natrix_jwt::account_validation_errors(&claims);
        if !errs.is_empty() {
            return Err(fail(format!("validation errors: [{}]", errs.join(" "))));
        }
        if &claims.sub != key {
            return Err(fail(format!("subject {:?} does not match", claims.sub)));
        }
        out.push(claims);
    }
    for c in stored {
        match out.iter_mut().find(|p| p.sub == c.sub) {
            Some(p) if p.iat < c.iat => *p = c,
            Some(_) => {}
            None => out.push(c),
        }
    }
    Ok(out)
}

/// Verifies an account JWT against any trusted operator.
pub fn verify_any(
    jwt: &str,
    operators: &[natrix_jwt::OperatorClaims],
) -> Result<AccountClaims, String> {
    let mut last = String::from("no trusted operator");
    for op in operators {
        match natrix_jwt::verify_account(jwt, op) {
            Ok(c) => return Ok(c),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// The `<account>.jwt` files of a resolver directory: (account, JWT).
pub fn stored_jwts(dir: &std::path::Path) -> Vec<(String, String)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<(String, String)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let key = name.strip_suffix(".jwt")?.to_string();
            let jwt = std::fs::read_to_string(e.path()).ok()?;
            Some((key, jwt.trim().to_string()))
        })
        .collect();
    v.sort();
    v
}

/// The accounts user JWTs may name, with their claims.
#[derive(Debug)]
pub struct JwtAuth {
    accounts: HashMap<String, (Arc<Account>, AccountClaims)>,
    /// `default_sentinel`: the bearer user JWT of a client that presents none.
    default_sentinel: Option<String>,
}

impl JwtAuth {
    /// Operator-mode authentication, or `None` when no operator is trusted.
    pub fn new(
        opts: &Options,
        accounts: &HashMap<String, Arc<Account>>,
    ) -> Result<Option<JwtAuth>, AuthError> {
        if !opts.operator_mode() {
            if opts.default_sentinel.is_some() {
                return Err(AuthError::DefaultSentinel(
                    "default sentinel requires operators and accounts",
                ));
            }
            return Ok(None);
        }
        if let Some(s) = &opts.default_sentinel {
            let claims = natrix_jwt::decode_as::<natrix_jwt::User>(s)
                .map_err(|_| AuthError::DefaultSentinel("default sentinel JWT not valid"))?;
            if !claims.nats.limits.bearer_token {
                return Err(AuthError::DefaultSentinel(
                    "default sentinel must be a bearer token",
                ));
            }
        }
        let mut map = HashMap::new();
        for c in load_accounts(opts)? {
            let acc = accounts
                .get(&c.sub)
                .cloned()
                .unwrap_or_else(|| Arc::new(Account::new(&c.sub)));
            map.insert(c.sub.clone(), (acc, c));
        }
        Ok(Some(JwtAuth {
            accounts: map,
            default_sentinel: opts.default_sentinel.clone(),
        }))
    }

    /// Checks the CONNECT's user JWT and nonce signature; binds the client to its account.
    pub fn authenticate(&self, p: &Presented<'_>) -> Result<Arc<AuthUser>, AuthError> {
        let ci = p.connect.ok_or(AuthError::NoMatch)?;
        let jwt = ci
            .jwt
            .as_deref()
            .filter(|j| !j.is_empty())
            .or(self.default_sentinel.as_deref())
            .ok_or(AuthError::NoMatch)?;
        let claims =
            natrix_jwt::decode_as::<natrix_jwt::User>(jwt).map_err(|_| AuthError::NoMatch)?;
        let acct = if claims.nats.issuer_account.is_empty() {
            &claims.iss
        } else {
            &claims.nats.issuer_account
        };
        let (account, acl) = self.accounts.get(acct).ok_or(AuthError::NoMatch)?;
        if acl.validate(natrix_jwt::now()).is_err() {
            return Err(AuthError::NoMatch);
        }
        let v = natrix_jwt::verify_user(jwt, acl, acct).map_err(|_| AuthError::NoMatch)?;
        connection_allowed(&v.permissions, acl, p.client_ip, natrix_jwt::now())?;
        if !v.permissions.bearer_token {
            let (Some(nonce), Some(sig)) = (p.nonce, ci.sig.as_deref()) else {
                return Err(AuthError::NoMatch);
            };
            let sig = decode_sig(sig).ok_or(AuthError::NoMatch)?;
            let kp =
                nkeys::KeyPair::from_public_key(&v.claims.sub).map_err(|_| AuthError::NoMatch)?;
            kp.verify(nonce.as_bytes(), &sig)
                .map_err(|_| AuthError::NoMatch)?;
        }
        Ok(Arc::new(AuthUser {
            name: v.claims.sub.clone(),
            password: None,
            account: account.clone(),
            perms: permissions(&v.permissions).map(|p| Arc::new(Perms::compile(&p))),
            expires: (v.claims.exp > 0).then_some(v.claims.exp),
            limits: {
                // 0 and -1 (NoLimit) both mean no limit.
                let tighter = |a: i64, u: i64| match (a > 0, u > 0) {
                    (true, true) => a.min(u),
                    (true, false) => a,
                    (false, true) => u,
                    (false, false) => 0,
                };
                let al = &acl.nats.limits;
                super::JwtLimits {
                    max_subs: tighter(al.subs, v.permissions.subs),
                    max_payload: tighter(al.payload, v.permissions.payload),
                    account_conns: al.conn.max(0),
                }
            },
        }))
    }
}

/// The user JWT's connection rules, as nats-server applies them at CONNECT: an account that
/// disallows bearer tokens refuses bearer users, `allowed_connection_types` must include
/// STANDARD (the only kind this server accepts), the client address must be in a `src`
/// network, and now must be inside a `times` range (UTC; other locations are refused).
fn connection_allowed(
    l: &UserPermissionLimits,
    account: &AccountClaims,
    ip: Option<std::net::IpAddr>,
    now: i64,
) -> Result<(), AuthError> {
    if l.bearer_token && account.nats.limits.disallow_bearer {
        return Err(AuthError::NoMatch);
    }
    if !l.allowed_connection_types.is_empty()
        && !l
            .allowed_connection_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case("STANDARD"))
    {
        return Err(AuthError::NoMatch);
    }
    if !l.src.is_empty() {
        let ip = ip.ok_or(AuthError::NoMatch)?;
        if !l.src.iter().any(|c| cidr_contains(c, ip)) {
            return Err(AuthError::NoMatch);
        }
    }
    if !l.times.is_empty() {
        if !l.locale.is_empty() && !matches!(l.locale.as_str(), "UTC" | "Etc/UTC" | "Local") {
            tracing::warn!(
                "user JWT time ranges in location {:?} are not supported (UTC only); refused",
                l.locale
            );
            return Err(AuthError::NoMatch);
        }
        let secs_of_day = now.rem_euclid(86_400);
        let parse = |s: &str| -> Option<i64> {
            let mut it = s.trim().split(':').map(|p| p.parse::<i64>().ok());
            let (h, m, s) = (it.next()??, it.next()??, it.next().unwrap_or(Some(0))?);
            Some(h * 3600 + m * 60 + s)
        };
        let inside = l
            .times
            .iter()
            .any(|r| match (parse(&r.start), parse(&r.end)) {
                (Some(a), Some(b)) if a <= b => (a..=b).contains(&secs_of_day),
                // A range past midnight.
                (Some(a), Some(b)) => secs_of_day >= a || secs_of_day <= b,
                _ => false,
            });
        if !inside {
            return Err(AuthError::NoMatch);
        }
    }
    Ok(())
}

/// Whether `cidr` (`a.b.c.d/n`, an IPv6 network, or a bare address) contains `ip`.
fn cidr_contains(cidr: &str, ip: std::net::IpAddr) -> bool {
    let (net, bits) = match cidr.trim().split_once('/') {
        Some((n, b)) => (n, b.parse::<u32>().ok()),
        None => (cidr.trim(), None),
    };
    let Ok(net) = net.parse::<std::net::IpAddr>() else {
        return false;
    };
    match (net, ip) {
        (std::net::IpAddr::V4(n), std::net::IpAddr::V4(i)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (std::net::IpAddr::V6(n), std::net::IpAddr::V6(i)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

fn subject_permission(p: &natrix_jwt::Permission) -> Option<SubjectPermission> {
    (!p.allow.is_empty() || !p.deny.is_empty()).then(|| SubjectPermission {
        allow: p.allow.clone(),
        deny: p.deny.clone(),
    })
}

/// A user JWT's permissions as configured permissions (`None`: everything allowed).
pub fn permissions(l: &UserPermissionLimits) -> Option<Permissions> {
    let p = Permissions {
        publish: subject_permission(&l.publish),
        subscribe: subject_permission(&l.subscribe),
        allow_responses: l.resp.as_ref().map(|r| ResponsePermission {
            max: i32::try_from(r.max).unwrap_or(i32::MAX),
            expires: Duration::from_nanos(u64::try_from(r.ttl).unwrap_or(0)),
        }),
    };
    (p != Permissions::default()).then_some(p)
}

/// Account JWTs' exports and imports as config accounts, so they are wired like `accounts {}`
/// blocks. An import counts only when its exporter exports a subject covering it, and (for
/// exports that require a token) carries a valid activation token for the importer.
pub fn jwt_account_configs(claims: &[AccountClaims]) -> Vec<crate::options::AccountConfig> {
    use crate::options::{AccountConfig, Export, Import, ResponseType};
    let by_key: HashMap<&str, &AccountClaims> =
        claims.iter().map(|c| (c.sub.as_str(), c)).collect();
    let response_type = |s: &str| match s.to_ascii_lowercase().as_str() {
        "stream" => ResponseType::Stream,
        "chunked" => ResponseType::Chunked,
        _ => ResponseType::Singleton,
    };
    let covers =
        |export: &str, subject: &str| export == subject || crate::subject::matches(subject, export);
    claims
        .iter()
        .map(|c| {
            let exports = c
                .nats
                .exports
                .iter()
                .map(|e| {
                    if e.export_type == "service" {
                        Export::Service {
                            subject: e.subject.clone(),
                            accounts: Vec::new(),
                            response_type: response_type(&e.response_type),
                        }
                    } else {
                        Export::Stream {
                            subject: e.subject.clone(),
                            accounts: Vec::new(),
                        }
                    }
                })
                .collect();
            let imports = c
                .nats
                .imports
                .iter()
                .filter_map(|i| {
                    let exporter = by_key.get(i.account.as_str())?;
                    let service = i.import_type == "service";
                    let export = exporter.nats.exports.iter().find(|e| {
                        (e.export_type == "service") == service && covers(&e.subject, &i.subject)
                    });
                    let Some(export) = export else {
                        tracing::warn!(
                            "account {}: import of {:?} from {} has no matching export; ignored",
                            c.sub,
                            i.subject,
                            i.account
                        );
                        return None;
                    };
                    if export.token_req
                        && natrix_jwt::verify_activation(&i.token, exporter, &i.account, &c.sub)
                            .is_err()
                    {
                        tracing::warn!(
                            "account {}: import of {:?} from {} has no valid activation token; ignored",
                            c.sub,
                            i.subject,
                            i.account
                        );
                        return None;
                    }
                    let local = [&i.local_subject, &i.to]
                        .into_iter()
                        .find(|s| !s.is_empty())
                        .cloned();
                    Some(if service {
                        Import::Service {
                            account: i.account.clone(),
                            subject: i.subject.clone(),
                            to: local,
                        }
                    } else if !i.local_subject.is_empty() {
                        Import::Stream {
                            account: i.account.clone(),
                            subject: i.subject.clone(),
                            to: Some(i.local_subject.clone()),
                            prefix: None,
                        }
                    } else {
                        // The older `to` of a stream import is a prefix.
                        Import::Stream {
                            account: i.account.clone(),
                            subject: i.subject.clone(),
                            to: None,
                            prefix: Some(i.to.clone()).filter(|t| !t.is_empty()),
                        }
                    })
                })
                .collect();
            AccountConfig {
                name: c.sub.clone(),
                exports,
                imports,
                jetstream: None,
            }
        })
        .collect()
}
