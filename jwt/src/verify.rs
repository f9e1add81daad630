//! Chain of trust: operator -> account -> user.

use crate::{
    decode_as, now, Account, AccountClaims, ActivationClaims, Error, KeyKind, OperatorClaims,
    Permission, Result, SigningKey, UserClaims, UserPermissionLimits, REVOKE_ALL,
};

/// A user JWT that passed [`verify_user`], with its effective permissions and limits.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedUser {
    /// The decoded user claims.
    pub claims: UserClaims,
    /// Effective permissions/limits: the scope template (expanded) for scoped signing keys,
    /// else the user's own, with the account's `default_permissions` when it has none.
    pub permissions: UserPermissionLimits,
    /// The account signing key that issued it (None when the account identity key did).
    pub signing_key: Option<String>,
    /// The scope role when the signing key is scoped.
    pub role: Option<String>,
}

/// Verifies a user JWT against its account (now); see [`verify_user_at`].
pub fn verify_user(
    user_jwt: &str,
    account: &AccountClaims,
    account_public_key: &str,
) -> Result<VerifiedUser> {
    verify_user_at(user_jwt, account, account_public_key, now())
}

/// Verifies a user JWT: signature, issued by the account or one of its signing keys
/// (then `issuer_account` must name the account), time validity, revocations ("*" too),
/// and the scope of a scoped signing key.
pub fn verify_user_at(
    user_jwt: &str,
    account: &AccountClaims,
    account_public_key: &str,
    now: i64,
) -> Result<VerifiedUser> {
    let claims: UserClaims = decode_as(user_jwt)?;
    if !KeyKind::User.matches(&claims.sub) {
        return Err(Error::Subject(claims.sub));
    }
    if !account.sub.is_empty() && account.sub != account_public_key {
        return Err(Error::Subject(account.sub.clone()));
    }
    let ia = &claims.nats.issuer_account;
    if !ia.is_empty() && ia != account_public_key {
        return Err(Error::IssuerAccount {
            expected: account_public_key.to_string(),
            found: ia.clone(),
        });
    }
    let mut signing_key = None;
    let mut scope = None;
    if claims.iss != account_public_key {
        let Some(sk) = account.nats.signing_key(&claims.iss) else {
            return Err(Error::UntrustedIssuer(claims.iss));
        };
        if ia.is_empty() {
            return Err(Error::IssuerAccount {
                expected: account_public_key.to_string(),
                found: String::new(),
            });
        }
        signing_key = Some(claims.iss.clone());
        if let SigningKey::Scoped(s) = sk {
            scope = Some(s.clone());
        }
    }
    claims.validate(now)?;
    if account.nats.is_revoked(&claims.sub, claims.iat) {
        return Err(Error::Revoked(claims.sub));
    }
    let (permissions, role) = match scope {
        Some(s) => {
            if !claims.nats.limits.is_empty() {
                return Err(Error::ScopedWithPermissions);
            }
            (
                expand_template(&s.template, &claims, account)?,
                Some(s.role),
            )
        }
        None => {
            let mut p = claims.nats.limits.clone();
            apply_defaults(&mut p, &account.nats);
            (p, None)
        }
    };
    Ok(VerifiedUser {
        claims,
        permissions,
        signing_key,
        role,
    })
}

fn apply_defaults(p: &mut UserPermissionLimits, account: &Account) {
    if p.publish.is_empty() && p.subscribe.is_empty() && p.resp.is_none() {
        if let Some(d) = &account.default_permissions {
            p.publish = d.publish.clone();
            p.subscribe = d.subscribe.clone();
            p.resp = d.resp.clone();
        }
    }
}

/// The blocking validation errors of an account JWT's contents that nats-io/jwt reports
/// (`vr.AddError`), in its words: more imports or exports than its limits allow. The imports
/// one appears twice, as Go's validation adds it twice.
pub fn account_validation_errors(claims: &AccountClaims) -> Vec<&'static str> {
    let mut errs = Vec::new();
    let l = &claims.nats.limits;
    if l.imports >= 0 && claims.nats.imports.len() as i64 > l.imports {
        errs.push("the account contains more imports than allowed by the operator");
        errs.push("the account contains more imports than allowed by the operator");
    }
    if l.exports >= 0 && claims.nats.exports.len() as i64 > l.exports {
        errs.push("the account contains more exports than allowed by the operator");
    }
    errs
}

/// Verifies an account JWT against the operator (now); see [`verify_account_at`].
pub fn verify_account(account_jwt: &str, operator: &OperatorClaims) -> Result<AccountClaims> {
    verify_account_at(account_jwt, operator, now())
}

/// Verifies an account JWT: signature, issued by the operator or one of its signing keys
/// (only signing keys under `strict_signing_key_usage`), and time validity.
pub fn verify_account_at(
    account_jwt: &str,
    operator: &OperatorClaims,
    now: i64,
) -> Result<AccountClaims> {
    let claims: AccountClaims = decode_as(account_jwt)?;
    if !KeyKind::Account.matches(&claims.sub) {
        return Err(Error::Subject(claims.sub));
    }
    let by_identity = claims.iss == operator.sub && !operator.nats.strict_signing_key_usage;
    let by_signing_key = operator.nats.signing_keys.contains(&claims.iss);
    if !by_identity && !by_signing_key {
        return Err(Error::UntrustedIssuer(claims.iss));
    }
    claims.validate(now)?;
    Ok(claims)
}

fn tag_values<'a>(tags: &'a [String], key: &str) -> Vec<&'a str> {
    let key = key.trim().to_lowercase();
    tags.iter()
        .filter_map(|t| {
            let (k, v) = t.split_once(':')?;
            (k.trim().to_lowercase() == key).then_some(v)
        })
        .collect()
}

/// Values one `{{fn(arg)}}` stands for.
fn template_values(expr: &str, user: &UserClaims, account: &AccountClaims) -> Result<Vec<String>> {
    let e = expr.trim();
    let (f, arg) = e
        .strip_suffix(')')
        .and_then(|e| e.split_once('('))
        .ok_or_else(|| Error::Template(format!("invalid expression {{{{{e}}}}}")))?;
    let arg = arg.trim().trim_matches('"');
    let one = |s: &str| Ok(vec![s.to_string()]);
    let vals: Vec<String> = match f.trim().to_lowercase().as_str() {
        "name" => return one(&user.name),
        "subject" => return one(&user.sub),
        "account-name" => return one(&account.name),
        "account-subject" => return one(&account.sub),
        "tag" => tag_values(&user.nats.tags, arg)
            .into_iter()
            .map(String::from)
            .collect(),
        "account-tag" => tag_values(&account.nats.tags, arg)
            .into_iter()
            .map(String::from)
            .collect(),
        other => return Err(Error::Template(format!("unknown function {other}"))),
    };
    if vals.is_empty() {
        return Err(Error::Template(format!("no value for {{{{{e}}}}}")));
    }
    Ok(vals)
}

fn expand_subject(s: &str, user: &UserClaims, account: &AccountClaims) -> Result<Vec<String>> {
    let mut out = vec![String::new()];
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let lit = &rest[..start];
        let vals = template_values(&rest[start + 2..start + len], user, account)?;
        out = out
            .iter()
            .flat_map(|p| vals.iter().map(move |v| format!("{p}{lit}{v}")))
            .collect();
        rest = &rest[start + len + 2..];
    }
    Ok(out.into_iter().map(|p| p + rest).collect())
}

fn expand_list(l: &[String], user: &UserClaims, account: &AccountClaims) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for s in l {
        for e in expand_subject(s, user, account)? {
            if !out.contains(&e) {
                out.push(e);
            }
        }
    }
    Ok(out)
}

fn expand_permission(p: &Permission, user: &UserClaims, acc: &AccountClaims) -> Result<Permission> {
    Ok(Permission {
        allow: expand_list(&p.allow, user, acc)?,
        deny: expand_list(&p.deny, user, acc)?,
    })
}

/// Expands a scope template's subjects: `{{name()}}`, `{{subject()}}`, `{{tag(k)}}`,
/// `{{account-name()}}`, `{{account-subject()}}`, `{{account-tag(k)}}` (tags are `k:v`).
pub fn expand_template(
    template: &UserPermissionLimits,
    user: &UserClaims,
    account: &AccountClaims,
) -> Result<UserPermissionLimits> {
    let mut t = template.clone();
    t.publish = expand_permission(&template.publish, user, account)?;
    t.subscribe = expand_permission(&template.subscribe, user, account)?;
    Ok(t)
}

/// Verifies an activation token (now); see [`verify_activation_at`].
pub fn verify_activation(
    token: &str,
    exporter: &AccountClaims,
    exporter_public_key: &str,
    importer_public_key: &str,
) -> Result<ActivationClaims> {
    verify_activation_at(
        token,
        exporter,
        exporter_public_key,
        importer_public_key,
        now(),
    )
}

/// Verifies an activation token: subject is the importing account, issued by the exporting
/// account or one of its signing keys (then `issuer_account` must name it), time validity,
/// and the revocations of the export it activates ("*" too).
pub fn verify_activation_at(
    token: &str,
    exporter: &AccountClaims,
    exporter_public_key: &str,
    importer_public_key: &str,
    now: i64,
) -> Result<ActivationClaims> {
    let claims: ActivationClaims = decode_as(token)?;
    if claims.sub != importer_public_key {
        return Err(Error::Subject(claims.sub));
    }
    let ia = &claims.nats.issuer_account;
    if !ia.is_empty() && ia != exporter_public_key {
        return Err(Error::IssuerAccount {
            expected: exporter_public_key.to_string(),
            found: ia.clone(),
        });
    }
    if claims.iss != exporter_public_key {
        if exporter.nats.signing_key(&claims.iss).is_none() {
            return Err(Error::UntrustedIssuer(claims.iss));
        }
        if ia.is_empty() {
            return Err(Error::IssuerAccount {
                expected: exporter_public_key.to_string(),
                found: String::new(),
            });
        }
    }
    claims.validate(now)?;
    let revoked = exporter
        .nats
        .exports
        .iter()
        .filter(|e| e.subject == claims.nats.import_subject)
        .any(|e| {
            [REVOKE_ALL, importer_public_key]
                .iter()
                .any(|k| e.revocations.get(*k).is_some_and(|&ts| ts >= claims.iat))
        });
    if revoked {
        return Err(Error::Revoked(claims.sub));
    }
    Ok(claims)
}
