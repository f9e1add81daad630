//! Operator (JWT) mode, pure: the keys and JWTs of a NatsCluster's operator Secret, account and
//! user JWTs from Account specs, and the resolver's delete request. No API calls; nothing here
//! logs, so seeds only ever go into Secrets.

use std::collections::BTreeMap;

use natrix_jwt::{
    encode, format_user_creds, AccountClaims, GenericClaims, OperatorClaims, Permission,
    ResponsePermission, UserClaims, NO_LIMIT,
};
use nkeys::KeyPair;
use sha2::{Digest, Sha256};

use crate::crd::{AccountSpec, ExportType, User};
use crate::units::{parse_duration, parse_size};

/// Operator Secret key: the operator identity seed (`SO...`).
pub const OPERATOR_SEED_KEY: &str = "operator.seed";
/// Operator Secret key: the operator signing key seed, which signs account JWTs.
pub const SIGNING_SEED_KEY: &str = "signing-key.seed";
/// Operator Secret key: the operator JWT (mounted in the pods).
pub const OPERATOR_JWT_KEY: &str = "operator.jwt";
/// Operator Secret key: the system account's public key (`$SYSTEM_ACCOUNT` in the pods).
pub const SYSTEM_ACCOUNT_KEY: &str = "system-account";
/// Operator Secret key: the system account seed.
pub const SYSTEM_ACCOUNT_SEED_KEY: &str = "system-account.seed";
/// Operator Secret key: the system account JWT.
pub const SYSTEM_ACCOUNT_JWT_KEY: &str = "system-account.jwt";
/// Operator Secret key: creds of the system account user the operator pushes JWTs with.
pub const SYSTEM_USER_CREDS_KEY: &str = "system-user.creds";
/// Operator Secret key: nats.conf fragment with `resolver_preload` of the system account.
pub const PRELOAD_KEY: &str = "resolver-preload.conf";
/// Account Secret key: the account seed (`SA...`).
pub const ACCOUNT_SEED_KEY: &str = "account.seed";
/// Creds Secret key: the creds file (JWT and seed) a NATS client loads.
pub const CREDS_KEY: &str = "user.creds";
/// Creds Secret key: the user's seed (kept so the JWT can be re-issued with the same key).
pub const USER_SEED_KEY: &str = "user.seed";
/// Creds Secret key: the user's public key.
pub const USER_PUBLIC_KEY: &str = "user.pub";
/// Name of the user the operator creates in every Account for itself (`<account>-operator-creds`).
pub const OPERATOR_USER: &str = "operator";

/// Why keys or JWTs could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A seed is malformed or a key of the wrong kind.
    #[error("{what}: {message}")]
    Key {
        /// Which key.
        what: String,
        /// What nkeys said.
        message: String,
    },
    /// Encoding a JWT failed.
    #[error("signing a JWT: {0}")]
    Jwt(#[from] natrix_jwt::Error),
    /// A Secret lacks a key or holds something that is not UTF-8.
    #[error("Secret {secret} has no valid {key:?} entry")]
    MissingKey {
        /// Secret name.
        secret: String,
        /// The key.
        key: &'static str,
    },
    /// A field of the Account spec has a value the schema should have refused.
    #[error("spec.{field}: invalid value {value:?}")]
    InvalidSpec {
        /// The field.
        field: String,
        /// Its value.
        value: String,
    },
}

fn key_err(what: &str, e: nkeys::error::Error) -> AuthError {
    AuthError::Key {
        what: what.to_string(),
        message: e.to_string(),
    }
}

fn seed(kp: &KeyPair, what: &str) -> Result<String, AuthError> {
    kp.seed().map_err(|e| key_err(what, e))
}

/// Creds file of a new user of `account` with the given claims (issued now).
fn creds(account: &KeyPair, user: &KeyPair, mut claims: UserClaims) -> Result<String, AuthError> {
    claims.sub = user.public_key();
    let jwt = encode(&claims, account)?;
    Ok(format_user_creds(&jwt, &seed(user, "user seed")?)?)
}

/// The contents of a new operator Secret: operator and signing keys, the operator JWT, the
/// system account (named `system_account_name`), a system user's creds and the preload fragment.
pub fn new_operator_secret(
    cluster: &str,
    system_account_name: &str,
) -> Result<BTreeMap<String, String>, AuthError> {
    let op = KeyPair::new_operator();
    let signing = KeyPair::new_operator();
    let sys = KeyPair::new_account();
    let mut oc = OperatorClaims::new(op.public_key());
    oc.name = cluster.to_string();
    oc.nats.signing_keys = vec![signing.public_key()];
    oc.nats.system_account = sys.public_key();
    let op_jwt = encode(&oc, &op)?;
    let mut sc = AccountClaims::new(sys.public_key());
    sc.name = system_account_name.to_string();
    let sys_jwt = encode(&sc, &signing)?;
    let mut uc = UserClaims::new("");
    uc.name = "natrix-controller".into();
    let sys_creds = creds(&sys, &KeyPair::new_user(), uc)?;
    Ok(BTreeMap::from([
        (OPERATOR_SEED_KEY.into(), seed(&op, "operator seed")?),
        (SIGNING_SEED_KEY.into(), seed(&signing, "signing key seed")?),
        (OPERATOR_JWT_KEY.into(), op_jwt),
        (SYSTEM_ACCOUNT_KEY.into(), sys.public_key()),
        (SYSTEM_ACCOUNT_SEED_KEY.into(), seed(&sys, "system account seed")?),
        (SYSTEM_ACCOUNT_JWT_KEY.into(), sys_jwt.clone()),
        (SYSTEM_USER_CREDS_KEY.into(), sys_creds),
        (
            PRELOAD_KEY.into(),
            format!(
                "# The system account, so the resolver knows it before any push.\nresolver_preload: {{\n  {}: \"{sys_jwt}\"\n}}\n",
                sys.public_key()
            ),
        ),
    ]))
}

/// What the Account reconciler needs from a NatsCluster's operator Secret.
pub struct OperatorKeys {
    /// Operator identity key (signs delete requests).
    pub operator: KeyPair,
    /// Operator signing key (signs account JWTs).
    pub signing: KeyPair,
    /// Creds of the system account user.
    pub system_user_creds: String,
    /// Public key of the system account.
    pub system_account: String,
}

/// Read `key` of a Secret's data as UTF-8.
pub fn secret_str<'a>(
    secret: &str,
    data: &'a BTreeMap<String, Vec<u8>>,
    key: &'static str,
) -> Result<&'a str, AuthError> {
    data.get(key)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AuthError::MissingKey {
            secret: secret.to_string(),
            key,
        })
}

/// A key pair from a seed stored under `key` in a Secret.
pub fn secret_seed(
    secret: &str,
    data: &BTreeMap<String, Vec<u8>>,
    key: &'static str,
) -> Result<KeyPair, AuthError> {
    KeyPair::from_seed(secret_str(secret, data, key)?)
        .map_err(|e| key_err(&format!("Secret {secret} {key}"), e))
}

impl OperatorKeys {
    /// Parse the operator Secret `secret` (its decoded data).
    pub fn from_secret(
        secret: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<OperatorKeys, AuthError> {
        Ok(OperatorKeys {
            operator: secret_seed(secret, data, OPERATOR_SEED_KEY)?,
            signing: secret_seed(secret, data, SIGNING_SEED_KEY)?,
            system_user_creds: secret_str(secret, data, SYSTEM_USER_CREDS_KEY)?.to_string(),
            system_account: secret_str(secret, data, SYSTEM_ACCOUNT_KEY)?.to_string(),
        })
    }
}

fn limit(v: Option<i64>) -> i64 {
    v.unwrap_or(NO_LIMIT)
}

fn size(field: &str, v: &Option<String>) -> Result<i64, AuthError> {
    match v {
        None => Ok(NO_LIMIT),
        Some(s) => parse_size(s).ok_or_else(|| AuthError::InvalidSpec {
            field: field.to_string(),
            value: s.clone(),
        }),
    }
}

fn kind(k: ExportType) -> String {
    match k {
        ExportType::Stream => "stream".into(),
        ExportType::Service => "service".into(),
    }
}

/// The account claims for an Account spec (not yet signed: `iat` and `jti` empty).
/// `exporters` maps the Account resources named in `spec.imports` to their public keys.
pub fn account_claims(
    name: &str,
    account_public_key: &str,
    spec: &AccountSpec,
    exporters: &BTreeMap<String, String>,
) -> Result<AccountClaims, AuthError> {
    let mut c = AccountClaims::new(account_public_key);
    c.name = name.to_string();
    let l = &spec.limits;
    let lim = &mut c.nats.limits;
    lim.conn = limit(l.conn);
    lim.subs = limit(l.subs);
    lim.data = limit(l.data);
    lim.payload = limit(l.payload);
    lim.imports = limit(l.imports);
    lim.exports = limit(l.exports);
    lim.wildcards = l.wildcards.unwrap_or(true);
    if let Some(js) = &spec.jetstream {
        lim.jetstream.mem_storage = size("jetstream.memStorage", &js.mem_storage)?;
        lim.jetstream.disk_storage = size("jetstream.diskStorage", &js.disk_storage)?;
        lim.jetstream.streams = limit(js.streams);
        lim.jetstream.consumer = limit(js.consumers);
        lim.jetstream.max_ack_pending = limit(js.max_ack_pending);
    }
    c.nats.exports = spec
        .exports
        .iter()
        .map(|e| natrix_jwt::Export {
            name: e.subject.clone(),
            subject: e.subject.clone(),
            export_type: kind(e.kind),
            token_req: e.token_required,
            ..Default::default()
        })
        .collect();
    c.nats.imports = spec
        .imports
        .iter()
        .map(|i| {
            let account =
                exporters
                    .get(&i.account)
                    .cloned()
                    .ok_or_else(|| AuthError::InvalidSpec {
                        field: "imports[].account".into(),
                        value: i.account.clone(),
                    })?;
            Ok(natrix_jwt::Import {
                name: i.subject.clone(),
                subject: i.subject.clone(),
                account,
                local_subject: i.local_subject.clone().unwrap_or_default(),
                import_type: kind(i.kind),
                ..Default::default()
            })
        })
        .collect::<Result<_, AuthError>>()?;
    Ok(c)
}

/// sha256 (hex) of the claims as JSON: equal for equal specs, whenever they are signed.
pub fn claims_hash(c: &AccountClaims) -> String {
    let json = serde_json::to_vec(c).unwrap_or_default();
    Sha256::digest(&json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// sha256 (hex) of a user spec, to notice when its JWT must be issued again.
pub fn user_hash(u: &User) -> String {
    let json = serde_json::to_vec(u).unwrap_or_default();
    Sha256::digest(&json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn permission(p: &Option<crate::crd::SubjectPermission>) -> Permission {
    p.as_ref()
        .map(|p| Permission {
            allow: p.allow.clone(),
            deny: p.deny.clone(),
        })
        .unwrap_or_default()
}

/// The user claims of a spec user (subject set by the caller); `now` is unix seconds.
pub fn user_claims(u: &User, now: i64) -> Result<UserClaims, AuthError> {
    let mut c = UserClaims::new("");
    c.name = u.name.clone();
    if let Some(p) = &u.permissions {
        c.nats.limits.publish = permission(&p.publish);
        c.nats.limits.subscribe = permission(&p.subscribe);
        if p.allow_responses {
            c.nats.limits.resp = Some(ResponsePermission { max: 1, ttl: 0 });
        }
    }
    if let Some(e) = &u.expiry {
        let secs = parse_duration(e).ok_or_else(|| AuthError::InvalidSpec {
            field: format!("users[{}].expiry", u.name),
            value: e.clone(),
        })?;
        c.exp = now + secs.ceil() as i64;
    }
    Ok(c)
}

/// A creds Secret's data for `user` (a fresh key unless `user_seed` is given) of `account`.
pub fn user_creds_data(
    account: &KeyPair,
    claims: UserClaims,
    user_seed: Option<&str>,
) -> Result<BTreeMap<String, String>, AuthError> {
    let user = match user_seed {
        Some(s) => KeyPair::from_seed(s).map_err(|e| key_err("user seed", e))?,
        None => KeyPair::new_user(),
    };
    Ok(BTreeMap::from([
        (CREDS_KEY.into(), creds(account, &user, claims)?),
        (USER_SEED_KEY.into(), seed(&user, "user seed")?),
        (USER_PUBLIC_KEY.into(), user.public_key()),
    ]))
}

/// A new account key: its seed and public key.
pub fn new_account_key() -> Result<(String, String), AuthError> {
    let kp = KeyPair::new_account();
    Ok((seed(&kp, "account seed")?, kp.public_key()))
}

/// The `$SYS.REQ.CLAIMS.DELETE` payload: a generic JWT signed by the operator identity key
/// listing `accounts`.
pub fn delete_request(operator: &KeyPair, accounts: &[String]) -> Result<String, AuthError> {
    let mut c = GenericClaims {
        sub: operator.public_key(),
        ..Default::default()
    };
    c.nats
        .insert("accounts".into(), serde_json::json!(accounts).clone());
    Ok(encode(&c, operator)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use natrix_jwt::{decode_as, verify_account};

    fn data(m: &BTreeMap<String, String>) -> BTreeMap<String, Vec<u8>> {
        m.iter()
            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn operator_secret_is_consistent() {
        let m = new_operator_secret("nats", "SYS").unwrap();
        let keys = OperatorKeys::from_secret("nats-operator", &data(&m)).unwrap();
        let op: OperatorClaims = decode_as(&m[OPERATOR_JWT_KEY]).unwrap();
        assert_eq!(op.sub, keys.operator.public_key());
        assert_eq!(op.nats.signing_keys, vec![keys.signing.public_key()]);
        assert_eq!(op.nats.system_account, m[SYSTEM_ACCOUNT_KEY]);
        let sys = verify_account(&m[SYSTEM_ACCOUNT_JWT_KEY], &op).unwrap();
        assert_eq!(sys.sub, keys.system_account);
        assert_eq!(sys.name, "SYS");
        let (jwt, _) = natrix_jwt::parse_creds(&keys.system_user_creds).unwrap();
        let u: UserClaims = decode_as(&jwt).unwrap();
        assert_eq!(u.iss, keys.system_account);
        assert!(m[PRELOAD_KEY].contains(&m[SYSTEM_ACCOUNT_JWT_KEY]));
        let mut broken = data(&m);
        broken.remove(SIGNING_SEED_KEY);
        let e = OperatorKeys::from_secret("nats-operator", &broken)
            .err()
            .unwrap();
        assert!(e.to_string().contains("signing-key.seed"), "{e}");
    }

    #[test]
    fn account_claims_carry_the_spec() {
        let spec: AccountSpec = serde_json::from_value(serde_json::json!({
            "clusterRef": {"name": "nats"},
            "limits": {"conn": 10, "subs": 100, "payload": 1024, "wildcards": false},
            "jetstream": {"memStorage": "1Mi", "diskStorage": "1G", "streams": 3,
                          "consumers": 7, "maxAckPending": 50},
            "exports": [{"subject": "svc.>", "type": "service"}],
            "imports": [{"account": "other", "subject": "events.>", "localSubject": "ext.>"}],
        }))
        .unwrap();
        let other = KeyPair::new_account().public_key();
        let exporters = BTreeMap::from([("other".to_string(), other.clone())]);
        let c = account_claims("app", "AKEY", &spec, &exporters).unwrap();
        let l = &c.nats.limits;
        assert_eq!((l.conn, l.subs, l.data, l.payload), (10, 100, -1, 1024));
        assert!(!l.wildcards);
        assert_eq!(l.jetstream.mem_storage, 1 << 20);
        assert_eq!(l.jetstream.disk_storage, 1_000_000_000);
        assert_eq!(
            (
                l.jetstream.streams,
                l.jetstream.consumer,
                l.jetstream.max_ack_pending
            ),
            (3, 7, 50)
        );
        assert_eq!(c.nats.exports[0].export_type, "service");
        assert_eq!(c.nats.imports[0].account, other);
        assert_eq!(c.nats.imports[0].local_subject, "ext.>");
        let h = claims_hash(&c);
        assert_eq!(
            h,
            claims_hash(&account_claims("app", "AKEY", &spec, &exporters).unwrap())
        );
        let mut spec2 = spec.clone();
        spec2.limits.conn = Some(11);
        assert_ne!(
            h,
            claims_hash(&account_claims("app", "AKEY", &spec2, &exporters).unwrap())
        );
        let e = account_claims("app", "AKEY", &spec, &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("other"), "{e}");
        // No jetstream block: JetStream stays off.
        let mut plain = spec;
        plain.jetstream = None;
        let c = account_claims("app", "AKEY", &plain, &exporters).unwrap();
        assert_eq!(c.nats.limits.jetstream.mem_storage, 0);
        assert_eq!(c.nats.limits.jetstream.disk_storage, 0);
    }

    #[test]
    fn user_claims_carry_permissions_and_expiry() {
        let u: User = serde_json::from_value(serde_json::json!({
            "name": "app",
            "permissions": {"publish": {"allow": ["a.>"]}, "subscribe": {"deny": ["b"]},
                            "allowResponses": true},
            "expiry": "1h",
        }))
        .unwrap();
        let c = user_claims(&u, 1000).unwrap();
        assert_eq!(c.exp, 4600);
        assert_eq!(c.nats.limits.publish.allow, vec!["a.>"]);
        assert_eq!(c.nats.limits.subscribe.deny, vec!["b"]);
        assert_eq!(c.nats.limits.resp.as_ref().unwrap().max, 1);
        let acc = KeyPair::new_account();
        let d = user_creds_data(&acc, c.clone(), None).unwrap();
        let (jwt, kp) = natrix_jwt::parse_creds(&d[CREDS_KEY]).unwrap();
        assert_eq!(kp.public_key(), d[USER_PUBLIC_KEY]);
        let uc: UserClaims = decode_as(&jwt).unwrap();
        assert_eq!(uc.iss, acc.public_key());
        // Re-issued with the stored seed: same user key.
        let again = user_creds_data(&acc, c, Some(&d[USER_SEED_KEY])).unwrap();
        assert_eq!(again[USER_PUBLIC_KEY], d[USER_PUBLIC_KEY]);
    }

    #[test]
    fn delete_request_lists_the_accounts() {
        let op = KeyPair::new_operator();
        let jwt = delete_request(&op, &["AONE".into()]).unwrap();
        let c: GenericClaims = decode_as(&jwt).unwrap();
        assert_eq!(c.iss, op.public_key());
        assert_eq!(c.nats["accounts"], serde_json::json!(["AONE"]));
    }
}
