//! NATS JWTs (nats-io/jwt v2): claims, encode, decode, chain verification and creds files.

mod creds;
#[cfg(test)]
mod tests;
mod types;
mod verify;

use std::time::{SystemTime, UNIX_EPOCH};

use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use nkeys::KeyPair;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512_256};

pub use creds::{format_user_creds, parse_creds, parse_decorated_jwt, parse_decorated_nkey};
pub use types::*;
pub use verify::{
    account_validation_errors, expand_template, verify_account, verify_account_at,
    verify_activation, verify_activation_at, verify_user, verify_user_at, VerifiedUser,
};

/// Header `typ`.
pub const TOKEN_TYPE_JWT: &str = "JWT";
/// Header `alg` written by nats-io/jwt v2.
pub const ALGORITHM_NKEY: &str = "ed25519-nkey";
/// Header `alg` of v1 tokens (signature over the payload segment only).
pub const ALGORITHM_NKEY_OLD: &str = "ed25519";

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The token is not three base64url segments of JSON.
    #[error("invalid JWT: {0}")]
    Malformed(String),
    /// The header is not a NATS JWT header.
    #[error("unsupported JWT header: typ {typ:?} alg {alg:?}")]
    Header {
        /// `typ` found.
        typ: String,
        /// `alg` found.
        alg: String,
    },
    /// Claims JSON does not match the schema.
    #[error("invalid claims: {0}")]
    Json(#[from] serde_json::Error),
    /// The issuer key is of the wrong kind for the claim type.
    #[error("issuer {iss:?} cannot sign {kind} claims")]
    IssuerPrefix {
        /// Issuer found.
        iss: String,
        /// Claim kind.
        kind: &'static str,
    },
    /// Signature verification failed.
    #[error("claim failed signature verification")]
    Signature,
    /// Expected a different claim type.
    #[error("expected {expected} claims, found {found:?}")]
    WrongType {
        /// Expected type.
        expected: &'static str,
        /// Found type.
        found: String,
    },
    /// `exp` has passed.
    #[error("claim is expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("claim is not yet valid")]
    NotYetValid,
    /// The subject is missing or not a key of the right kind.
    #[error("invalid subject {0:?}")]
    Subject(String),
    /// Chain: the issuer is neither the parent identity nor one of its signing keys.
    #[error("issuer {0:?} is not trusted")]
    UntrustedIssuer(String),
    /// Chain: `issuer_account` does not name the account.
    #[error("issuer_account {found:?} does not match account {expected:?}")]
    IssuerAccount {
        /// Account expected.
        expected: String,
        /// issuer_account found.
        found: String,
    },
    /// Chain: the subject was revoked.
    #[error("{0} has been revoked")]
    Revoked(String),
    /// A user signed by a scoped key carries its own permissions/limits.
    #[error("scoped users require no permissions or limits set")]
    ScopedWithPermissions,
    /// A scope template could not be expanded.
    #[error("template: {0}")]
    Template(String),
    /// Creds file problems.
    #[error("creds: {0}")]
    Creds(String),
    /// nkeys errors.
    #[error("nkey: {0}")]
    Nkey(#[from] nkeys::error::Error),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// JWT header.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Token type ("JWT").
    #[serde(default)]
    pub typ: String,
    /// Algorithm ("ed25519-nkey", or "ed25519" for v1).
    #[serde(default)]
    pub alg: String,
}

/// Which nkey kinds (public key prefix letter) may issue a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// 'O'.
    Operator,
    /// 'A'.
    Account,
    /// 'U'.
    User,
}

impl KeyKind {
    /// True when `key` is a valid public key of this kind.
    pub fn matches(self, key: &str) -> bool {
        let first = match self {
            KeyKind::Operator => 'O',
            KeyKind::Account => 'A',
            KeyKind::User => 'U',
        };
        key.starts_with(first) && nkeys::KeyPair::from_public_key(key).is_ok()
    }
}

/// A `nats` section type: knows its claim type and issuer kinds.
pub trait NatsSection: Serialize + DeserializeOwned + Default + Clone {
    /// The `nats.type` value.
    const TYPE: &'static str;
    /// Key kinds allowed as issuer (empty = any).
    const ISSUERS: &'static [KeyKind];
    /// Sets `type` and `version` (2) before encoding.
    fn set_generic(&mut self);
    /// The `type` field as decoded.
    fn claim_type(&self) -> &str;
}

macro_rules! section {
    ($t:ty, $name:literal, $($k:ident),*) => {
        impl NatsSection for $t {
            const TYPE: &'static str = $name;
            const ISSUERS: &'static [KeyKind] = &[$(KeyKind::$k),*];
            fn set_generic(&mut self) {
                self.claim_type = $name.to_string();
                self.version = 2;
            }
            fn claim_type(&self) -> &str {
                &self.claim_type
            }
        }
    };
}
section!(Operator, "operator", Operator);
section!(Account, "account", Operator);
section!(User, "user", Account);
section!(Activation, "activation", Account);

impl NatsSection for Extra {
    const TYPE: &'static str = "generic";
    const ISSUERS: &'static [KeyKind] = &[];
    fn set_generic(&mut self) {
        self.entry("version").or_insert(2.into());
        self.entry("type").or_insert("generic".into());
    }
    fn claim_type(&self) -> &str {
        self.get("type").and_then(|v| v.as_str()).unwrap_or("")
    }
}

/// Current unix time in seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Go's json.Marshal escapes `<`, `>`, `&`, U+2028 and U+2029; mirror it so the jti matches.
fn go_json_escape(s: String) -> String {
    if !s.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return s;
    }
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

impl<T: NatsSection> JwtClaims<T> {
    /// The jti nats computes: base32 (no padding) of SHA-512/256 of the registered claims JSON with jti empty.
    pub fn hash(&self) -> String {
        #[derive(Serialize)]
        struct Data<'a> {
            #[serde(skip_serializing_if = "str::is_empty")]
            aud: &'a str,
            #[serde(skip_serializing_if = "is_zero")]
            exp: i64,
            #[serde(skip_serializing_if = "is_zero")]
            iat: i64,
            #[serde(skip_serializing_if = "str::is_empty")]
            iss: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            name: &'a str,
            #[serde(skip_serializing_if = "is_zero")]
            nbf: i64,
            #[serde(skip_serializing_if = "str::is_empty")]
            sub: &'a str,
        }
        fn is_zero(v: &i64) -> bool {
            *v == 0
        }
        let d = Data {
            aud: &self.aud,
            exp: self.exp,
            iat: self.iat,
            iss: &self.iss,
            name: &self.name,
            nbf: self.nbf,
            sub: &self.sub,
        };
        let json = go_json_escape(serde_json::to_string(&d).unwrap_or_default());
        BASE32_NOPAD.encode(&Sha512_256::digest(json.as_bytes()))
    }

    /// Checks `exp` and `nbf` against `now` (unix seconds).
    pub fn validate(&self, now: i64) -> Result<()> {
        if self.exp > 0 && now > self.exp {
            return Err(Error::Expired);
        }
        if self.nbf > 0 && self.nbf > now {
            return Err(Error::NotYetValid);
        }
        Ok(())
    }

    /// Encodes and signs with `kp` (issued now); see [`encode_at`].
    pub fn encode(&self, kp: &KeyPair) -> Result<String> {
        encode_at(self, kp, now())
    }
}

/// Encodes and signs `claims` with `kp`, as nats-io/jwt v2 does (iss = signer, iat = now, jti = hash).
pub fn encode<T: NatsSection>(claims: &JwtClaims<T>, kp: &KeyPair) -> Result<String> {
    encode_at(claims, kp, now())
}

/// [`encode`] with an explicit `iat`.
pub fn encode_at<T: NatsSection>(claims: &JwtClaims<T>, kp: &KeyPair, iat: i64) -> Result<String> {
    if claims.sub.is_empty() {
        return Err(Error::Subject(String::new()));
    }
    let iss = kp.public_key();
    if !T::ISSUERS.is_empty() && !T::ISSUERS.iter().any(|k| k.matches(&iss)) {
        return Err(Error::IssuerPrefix { iss, kind: T::TYPE });
    }
    let mut c = claims.clone();
    c.iss = iss;
    c.iat = iat;
    c.jti = String::new();
    c.jti = c.hash();
    c.nats.set_generic();
    let header = Header {
        typ: TOKEN_TYPE_JWT.into(),
        alg: ALGORITHM_NKEY.into(),
    };
    let h = BASE64URL_NOPAD.encode(serde_json::to_string(&header)?.as_bytes());
    let p = BASE64URL_NOPAD.encode(go_json_escape(serde_json::to_string(&c)?).as_bytes());
    let to_sign = format!("{h}.{p}");
    let sig = kp.sign(to_sign.as_bytes())?;
    Ok(format!("{to_sign}.{}", BASE64URL_NOPAD.encode(&sig)))
}

/// Decoded claims of any kind (by `nats.type`).
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // short-lived decode result
pub enum Claims {
    /// Operator.
    Operator(OperatorClaims),
    /// Account.
    Account(AccountClaims),
    /// User.
    User(UserClaims),
    /// Activation.
    Activation(ActivationClaims),
    /// Any other type.
    Generic(GenericClaims),
}

impl Claims {
    /// The claim type name.
    pub fn claim_type(&self) -> &str {
        match self {
            Claims::Operator(_) => "operator",
            Claims::Account(_) => "account",
            Claims::User(_) => "user",
            Claims::Activation(_) => "activation",
            Claims::Generic(g) => {
                let t = g.nats.claim_type();
                if t.is_empty() {
                    "generic"
                } else {
                    t
                }
            }
        }
    }

    /// Subject.
    pub fn subject(&self) -> &str {
        match self {
            Claims::Operator(c) => &c.sub,
            Claims::Account(c) => &c.sub,
            Claims::User(c) => &c.sub,
            Claims::Activation(c) => &c.sub,
            Claims::Generic(c) => &c.sub,
        }
    }

    /// Issuer.
    pub fn issuer(&self) -> &str {
        match self {
            Claims::Operator(c) => &c.iss,
            Claims::Account(c) => &c.iss,
            Claims::User(c) => &c.iss,
            Claims::Activation(c) => &c.iss,
            Claims::Generic(c) => &c.iss,
        }
    }

    /// Checks `exp`/`nbf` against `now`.
    pub fn validate(&self, now: i64) -> Result<()> {
        match self {
            Claims::Operator(c) => c.validate(now),
            Claims::Account(c) => c.validate(now),
            Claims::User(c) => c.validate(now),
            Claims::Activation(c) => c.validate(now),
            Claims::Generic(c) => c.validate(now),
        }
    }
}

struct Parts {
    header: Header,
    payload: serde_json::Value,
    signed: Vec<u8>,
    sig: Vec<u8>,
}

fn split(token: &str) -> Result<Parts> {
    let token = token.trim();
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(Error::Malformed("expected 3 chunks".into()));
    };
    let b64 = |s: &str| {
        BASE64URL_NOPAD
            .decode(s.trim_end_matches('=').as_bytes())
            .map_err(|e| Error::Malformed(e.to_string()))
    };
    let header: Header = serde_json::from_slice(&b64(h)?)?;
    let alg = header.alg.to_ascii_lowercase();
    if !header.typ.eq_ignore_ascii_case(TOKEN_TYPE_JWT)
        || (alg != ALGORITHM_NKEY && alg != ALGORITHM_NKEY_OLD)
    {
        return Err(Error::Header {
            typ: header.typ,
            alg: header.alg,
        });
    }
    let payload = serde_json::from_slice(&b64(p)?)?;
    let sig = b64(s)?;
    // v1 ("ed25519") signs the payload segment only; v2 signs "header.payload".
    let signed = if alg == ALGORITHM_NKEY_OLD {
        p.as_bytes().to_vec()
    } else {
        token.as_bytes()[..h.len() + 1 + p.len()].to_vec()
    };
    Ok(Parts {
        header,
        payload,
        signed,
        sig,
    })
}

fn check_sig(iss: &str, parts: &Parts) -> Result<()> {
    let kp = KeyPair::from_public_key(iss).map_err(|_| Error::Signature)?;
    kp.verify(&parts.signed, &parts.sig)
        .map_err(|_| Error::Signature)
}

fn finish<T: NatsSection>(parts: &Parts) -> Result<JwtClaims<T>> {
    let c: JwtClaims<T> = serde_json::from_value(parts.payload.clone())?;
    if !T::ISSUERS.is_empty() && !T::ISSUERS.iter().any(|k| k.matches(&c.iss)) {
        return Err(Error::IssuerPrefix {
            iss: c.iss,
            kind: T::TYPE,
        });
    }
    check_sig(&c.iss, parts)?;
    Ok(c)
}

/// The claim type of a payload: `nats.type`, else the v1 top-level `type`.
fn payload_type(v: &serde_json::Value) -> String {
    v.get("nats")
        .and_then(|n| n.get("type"))
        .and_then(|t| t.as_str())
        .or_else(|| v.get("type").and_then(|t| t.as_str()))
        .unwrap_or("generic")
        .to_string()
}

/// Decodes a token of any kind and verifies its signature against `iss` (and the issuer kind).
/// Does not check `exp`/`nbf`: call [`Claims::validate`].
pub fn decode(token: &str) -> Result<Claims> {
    let parts = split(token)?;
    let _ = &parts.header;
    Ok(match payload_type(&parts.payload).as_str() {
        "operator" => Claims::Operator(finish(&parts)?),
        "account" => Claims::Account(finish(&parts)?),
        "user" => Claims::User(finish(&parts)?),
        "activation" => Claims::Activation(finish(&parts)?),
        _ => Claims::Generic(finish(&parts)?),
    })
}

/// Decodes a token that must be of type `T` (signature and issuer kind verified).
pub fn decode_as<T: NatsSection>(token: &str) -> Result<JwtClaims<T>> {
    let parts = split(token)?;
    let found = payload_type(&parts.payload);
    if found != T::TYPE {
        return Err(Error::WrongType {
            expected: T::TYPE,
            found,
        });
    }
    finish(&parts)
}

/// Decodes the header only.
pub fn decode_header(token: &str) -> Result<Header> {
    Ok(split(token)?.header)
}
