//! Authentication (token, user/password, nkey, TLS certificate mapping, `no_auth_user`) and
//! the per-user permissions that authorization checks.

pub mod jwt;
pub mod permissions;
pub mod tls_map;

use std::collections::HashMap;
use std::sync::Arc;

use crate::accounts::Account;
use crate::options::Options;
use crate::protocol::info::ConnectInfo;
pub use permissions::Perms;

/// A user a connection authenticated as, resolved to its account and compiled permissions.
#[derive(Debug)]
pub struct AuthUser {
    /// The name `/connz?auth=1` shows: username, nkey, or the certificate identity.
    pub name: String,
    password: Option<String>,
    pub account: Arc<Account>,
    pub perms: Option<Arc<Perms>>,
    /// When the credentials expire (unix seconds): a user JWT's `exp`.
    pub expires: Option<i64>,
    /// Limits from the account and user JWTs (operator mode); 0 means none.
    pub limits: JwtLimits,
}

/// Per-connection limits that JWTs set: the tighter of the account's and the user's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JwtLimits {
    /// Subscriptions per connection.
    pub max_subs: i64,
    /// Largest payload.
    pub max_payload: i64,
    /// Connections of the whole account.
    pub account_conns: i64,
}

/// Credentials presented by a client, gathered before checking them.
#[derive(Debug, Default)]
pub struct Presented<'a> {
    pub connect: Option<&'a ConnectInfo>,
    /// The nonce sent in INFO, if any.
    pub nonce: Option<&'a str>,
    /// Candidate names from the client certificate (verify_and_map), in match order.
    pub cert_identities: &'a [String],
    /// The client's address (user JWT `src` networks).
    pub client_ip: Option<std::net::IpAddr>,
}

/// Everything needed to decide who a client is; built once from the options.
#[derive(Debug)]
pub struct Authenticator {
    by_name: HashMap<String, Arc<AuthUser>>,
    by_nkey: HashMap<String, Arc<AuthUser>>,
    token: Option<String>,
    no_auth_user: Option<Arc<AuthUser>>,
    tls_map: bool,
    required: bool,
    global: Arc<Account>,
    jwt: Option<jwt::JwtAuth>,
}

/// Why authentication failed; never shown to the client (every failure looks the same).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials matched")]
    NoMatch,
    #[error("unknown account {0:?}")]
    UnknownAccount(String),
    #[error("no_auth_user {0:?} is not a configured user")]
    UnknownNoAuthUser(String),
    #[error("account JWT {0:?}: {1}")]
    AccountJwt(String, String),
    /// `default_sentinel` is unusable (nats-server's words).
    #[error("{0}")]
    DefaultSentinel(&'static str),
}

impl Authenticator {
    /// Compiles users and permissions; `accounts` maps account names to accounts.
    pub fn new(
        opts: &Options,
        accounts: &HashMap<String, Arc<Account>>,
        global: Arc<Account>,
    ) -> Result<Authenticator, AuthError> {
        let mut by_name = HashMap::new();
        let mut by_nkey = HashMap::new();
        let default_perms = opts
            .default_permissions
            .as_ref()
            .map(|p| Arc::new(Perms::compile(p)));
        for u in &opts.users {
            let account = match &u.account {
                Some(a) => accounts
                    .get(a)
                    .cloned()
                    .ok_or_else(|| AuthError::UnknownAccount(a.clone()))?,
                None => global.clone(),
            };
            let perms = match &u.permissions {
                Some(p) => Some(Arc::new(Perms::compile(p))),
                None => default_perms.clone(),
            };
            let name = u
                .username
                .clone()
                .or_else(|| u.nkey.clone())
                .unwrap_or_default();
            let user = Arc::new(AuthUser {
                name: name.clone(),
                password: u.password.clone(),
                account,
                perms,
                expires: None,
                limits: JwtLimits::default(),
            });
            if let Some(nkey) = &u.nkey {
                by_nkey.insert(nkey.clone(), user.clone());
            }
            if u.username.is_some() {
                by_name.insert(name, user);
            }
        }
        let no_auth_user = match &opts.no_auth_user {
            Some(n) => Some(
                by_name
                    .get(n)
                    .or_else(|| by_nkey.get(n))
                    .cloned()
                    .ok_or_else(|| AuthError::UnknownNoAuthUser(n.clone()))?,
            ),
            None => None,
        };
        Ok(Authenticator {
            by_name,
            by_nkey,
            token: opts.token.clone(),
            no_auth_user,
            tls_map: opts.tls.as_ref().is_some_and(|t| t.verify_and_map),
            required: opts.auth_required(),
            global,
            jwt: jwt::JwtAuth::new(opts, accounts)?,
        })
    }

    /// Whether clients must present credentials (INFO `auth_required`).
    pub fn required(&self) -> bool {
        self.required
    }

    /// Whether INFO must carry a nonce for clients to sign (nkey users exist).
    pub fn needs_nonce(&self) -> bool {
        !self.by_nkey.is_empty() || self.jwt.is_some()
    }

    /// Whether checking this client may need a bcrypt comparison (run it off the async workers).
    pub fn is_expensive(&self, p: &Presented<'_>) -> bool {
        let Some(ci) = p.connect else { return false };
        // The token is compared last, whatever else the CONNECT carries.
        let bcrypt_token = self.token.as_deref().is_some_and(is_bcrypt);
        let bcrypt_pass = ci
            .user
            .as_deref()
            .and_then(|u| self.by_name.get(u))
            .is_some_and(|u| u.password.as_deref().is_some_and(is_bcrypt));
        bcrypt_token || bcrypt_pass
    }

    /// Decides who the client is. Without configured auth everyone is the global account's
    /// anonymous user (or `no_auth_user`).
    pub fn authenticate(&self, p: &Presented<'_>) -> Result<Arc<AuthUser>, AuthError> {
        let anonymous = || {
            Arc::new(AuthUser {
                name: String::new(),
                password: None,
                account: self.global.clone(),
                perms: None,
                expires: None,
                limits: JwtLimits::default(),
            })
        };
        if !self.required {
            return Ok(self.no_auth_user.clone().unwrap_or_else(anonymous));
        }
        if let Some(j) = &self.jwt {
            return j.authenticate(p);
        }
        let ci = p.connect.cloned().unwrap_or_default();
        let given = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
        // nats-server's order: an nkey only counts when nkey users exist; users (or the
        // certificate map, or no_auth_user) only when users exist; the token last, whatever
        // else the CONNECT carries.
        if !self.by_nkey.is_empty() && given(&ci.nkey) {
            let nkey = ci.nkey.as_deref().unwrap_or_default();
            let user = self.by_nkey.get(nkey).ok_or(AuthError::NoMatch)?;
            let (Some(nonce), Some(sig)) = (p.nonce, ci.sig.as_deref()) else {
                return Err(AuthError::NoMatch);
            };
            let sig = decode_sig(sig).ok_or(AuthError::NoMatch)?;
            let kp = nkeys::KeyPair::from_public_key(nkey).map_err(|_| AuthError::NoMatch)?;
            kp.verify(nonce.as_bytes(), &sig)
                .map_err(|_| AuthError::NoMatch)?;
            return Ok(user.clone());
        }
        if !self.by_name.is_empty() {
            if self.tls_map {
                // The certificate names the user; nats-server only warns when CONNECT names
                // another one and goes by the certificate.
                for id in p.cert_identities {
                    if let Some(u) = self.by_name.get(id) {
                        if ci.user.as_ref().is_some_and(|n| n != id) {
                            tracing::warn!(
                                "User {:?} found in connect proto, but user required from cert",
                                ci.user.as_deref().unwrap_or_default()
                            );
                        }
                        return Ok(u.clone());
                    }
                }
                return Err(AuthError::NoMatch);
            }
            if !given(&ci.user) && !given(&ci.pass) && !given(&ci.auth_token) {
                if let Some(u) = &self.no_auth_user {
                    return Ok(u.clone());
                }
            }
            if let Some(user) = ci.user.as_deref().filter(|u| !u.is_empty()) {
                let u = self.by_name.get(user).ok_or(AuthError::NoMatch)?;
                let given = ci.pass.as_deref().unwrap_or_default();
                return match &u.password {
                    Some(want) if secret_matches(want, given) => Ok(u.clone()),
                    _ => Err(AuthError::NoMatch),
                };
            }
        }
        match &self.token {
            Some(want) if secret_matches(want, ci.auth_token.as_deref().unwrap_or_default()) => {
                Ok(anonymous())
            }
            _ => Err(AuthError::NoMatch),
        }
    }

    /// The `no_auth_user`, which nats-server also applies when a client's first operation is
    /// not CONNECT.
    pub fn no_auth_user(&self) -> Option<Arc<AuthUser>> {
        self.no_auth_user.clone()
    }

    /// Whether INFO tells clients `auth_required`: not when a `no_auth_user` lets clients in
    /// without credentials (the auth timer still runs).
    pub fn advertise_required(&self) -> bool {
        self.required && self.no_auth_user.is_none()
    }

    /// Configured user names, for matching certificate subjects (`verify_and_map`).
    pub fn usernames(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }
}

/// Whether a configured secret is a bcrypt hash, as nats-server decides
/// (`^\$2[abxy]\$\d{2}\$`; anything else is a plain secret).
pub fn is_bcrypt(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 7
        && b.starts_with(b"$2")
        && matches!(b[2], b'a' | b'b' | b'x' | b'y')
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
}

/// Compares a presented secret with a configured one (plain or bcrypt) in constant time.
pub(crate) fn secret_matches(want: &str, given: &str) -> bool {
    if is_bcrypt(want) {
        return bcrypt::verify(given, want).unwrap_or(false);
    }
    let (a, b) = (want.as_bytes(), given.as_bytes());
    let mut diff = (a.len() ^ b.len()) as u8;
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// Clients send the nonce signature in base64 URL encoding without padding; nats-server also
/// accepts standard encoding.
fn decode_sig(sig: &str) -> Option<Vec<u8>> {
    use data_encoding::{BASE64, BASE64URL, BASE64URL_NOPAD, BASE64_NOPAD};
    [BASE64URL_NOPAD, BASE64URL, BASE64, BASE64_NOPAD]
        .iter()
        .find_map(|e| e.decode(sig.as_bytes()).ok())
}

/// A fresh nonce for INFO: 11 random bytes, base64 URL encoded, as nats-server makes them.
pub fn new_nonce() -> String {
    let bytes: [u8; 11] = std::array::from_fn(|_| fastrand::u8(..));
    data_encoding::BASE64URL_NOPAD.encode(&bytes)
}

/// A random password and its bcrypt hash, for `natrix-broker passwd`.
pub fn generate_password() -> (String, String) {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = fastrand::Rng::with_seed(seed_from_os());
    let pass: String = (0..22)
        .map(|_| ALPHABET[rng.usize(..ALPHABET.len())] as char)
        .collect();
    let hash = bcrypt::hash(&pass, 11).expect("bcrypt hash");
    (pass, hash)
}

fn seed_from_os() -> u64 {
    let mut buf = [0u8; 8];
    if getrandom_fill(&mut buf) {
        u64::from_le_bytes(buf)
    } else {
        fastrand::u64(..)
    }
}

/// Reads the kernel's random source; passwords must not come from a guessable seed.
fn getrandom_fill(buf: &mut [u8]) -> bool {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::User;

    fn auth(opts: &Options) -> Authenticator {
        let global = Arc::new(Account::new("$G"));
        Authenticator::new(opts, &HashMap::new(), global).unwrap()
    }

    fn connect(json: &str) -> ConnectInfo {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn open_server_needs_nothing() {
        let a = auth(&Options::default());
        assert!(!a.required());
        assert!(a.authenticate(&Presented::default()).is_ok());
    }

    #[test]
    fn token_plain_and_bcrypt() {
        for token in ["s3cr3t".to_string(), bcrypt::hash("s3cr3t", 4).unwrap()] {
            let a = auth(&Options {
                token: Some(token),
                ..Options::default()
            });
            let good = connect(r#"{"auth_token":"s3cr3t"}"#);
            let bad = connect(r#"{"auth_token":"nope"}"#);
            let p = |c| Presented {
                connect: Some(c),
                ..Default::default()
            };
            assert!(a.authenticate(&p(&good)).is_ok());
            assert_eq!(a.authenticate(&p(&bad)).unwrap_err(), AuthError::NoMatch);
            assert!(a.authenticate(&Presented::default()).is_err());
        }
    }

    #[test]
    fn users_and_no_auth_user() {
        let opts = Options {
            users: vec![
                User {
                    username: Some("alice".into()),
                    password: Some("pw".into()),
                    ..Default::default()
                },
                User {
                    username: Some("bob".into()),
                    password: Some(bcrypt::hash("bpw", 4).unwrap()),
                    ..Default::default()
                },
            ],
            no_auth_user: Some("alice".into()),
            ..Options::default()
        };
        let a = auth(&opts);
        let check = |json: &str| {
            let ci = connect(json);
            let p = Presented {
                connect: Some(&ci),
                ..Default::default()
            };
            (
                a.is_expensive(&p),
                a.authenticate(&p).map(|u| u.name.clone()),
            )
        };
        assert_eq!(
            check(r#"{"user":"alice","pass":"pw"}"#),
            (false, Ok("alice".into()))
        );
        assert_eq!(
            check(r#"{"user":"bob","pass":"bpw"}"#),
            (true, Ok("bob".into()))
        );
        assert!(check(r#"{"user":"bob","pass":"x"}"#).1.is_err());
        assert!(check(r#"{"user":"carol","pass":"pw"}"#).1.is_err());
        // No credentials at all: the no_auth_user.
        assert_eq!(check("{}").1, Ok("alice".into()));
    }

    #[test]
    fn nkey_signature_over_nonce() {
        let kp = nkeys::KeyPair::new_user();
        let opts = Options {
            users: vec![User {
                nkey: Some(kp.public_key()),
                ..Default::default()
            }],
            ..Options::default()
        };
        let a = auth(&opts);
        assert!(a.needs_nonce());
        let nonce = new_nonce();
        let sig = data_encoding::BASE64URL_NOPAD.encode(&kp.sign(nonce.as_bytes()).unwrap());
        let ci = connect(&format!(
            r#"{{"nkey":"{}","sig":"{}"}}"#,
            kp.public_key(),
            sig
        ));
        let p = Presented {
            connect: Some(&ci),
            nonce: Some(&nonce),
            ..Default::default()
        };
        assert!(a.authenticate(&p).is_ok());
        let other = new_nonce();
        let p = Presented {
            connect: Some(&ci),
            nonce: Some(&other),
            ..Default::default()
        };
        assert!(a.authenticate(&p).is_err());
    }

    #[test]
    fn bcrypt_detection_and_token_precedence() {
        assert!(is_bcrypt("$2a$11$abc"));
        assert!(is_bcrypt("$2y$04$abc"));
        assert!(!is_bcrypt("$2a$x"));
        assert!(!is_bcrypt("$2c$11$abc"));
        assert!(!is_bcrypt("plain"));
        // A token server only looks at the token, whatever else CONNECT carries.
        let a = auth(&Options {
            token: Some("t".into()),
            ..Options::default()
        });
        let ci = connect(r#"{"user":"x","pass":"y","auth_token":"t"}"#);
        let p = Presented {
            connect: Some(&ci),
            ..Default::default()
        };
        assert!(a.authenticate(&p).is_ok());
    }

    #[test]
    fn generated_password_verifies() {
        let (pass, hash) = generate_password();
        assert_eq!(pass.len(), 22);
        assert!(is_bcrypt(&hash));
        assert!(bcrypt::verify(&pass, &hash).unwrap());
    }
}
