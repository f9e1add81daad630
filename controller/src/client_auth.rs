//! How the operator connects to a NatsCluster's client port: TLS (the cluster's CA and, when the
//! listener verifies clients, the operator's certificate) and a login, read from Secrets.
//! Nothing here ever puts a secret into a message: errors name Secrets and keys only.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::ResourceExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::crd::NatsCluster;

/// Secret key of the user name in a login Secret (as in `kubernetes.io/basic-auth`).
pub const USERNAME_KEY: &str = "username";
/// Secret key of the password in a login Secret.
pub const PASSWORD_KEY: &str = "password";
/// Secret key of a token in a login Secret.
pub const TOKEN_KEY: &str = "token";
/// Secret key of a user nkey seed in a login Secret.
pub const NKEY_KEY: &str = "nkey";

/// The login the operator presents.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Login {
    /// None (the cluster allows anonymous clients).
    #[default]
    None,
    /// A creds file (user JWT and seed).
    Creds(String),
    /// User and password.
    UserPassword {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// A token.
    Token(String),
    /// A user nkey seed.
    NKey(String),
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Login::None => "None",
            Login::Creds(_) => "Creds(..)",
            Login::UserPassword { .. } => "UserPassword(..)",
            Login::Token(_) => "Token(..)",
            Login::NKey(_) => "NKey(..)",
        })
    }
}

/// TLS towards the client port.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM of the CA certificates that sign the servers' certificates.
    pub ca_pem: Vec<u8>,
    /// PEM of the operator's certificate chain and key, for listeners that verify clients.
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca_pem", &format!("{} bytes", self.ca_pem.len()))
            .field("client_cert", &self.client_cert.is_some())
            .finish()
    }
}

/// Everything the operator presents to a client port; `Debug` shows no secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientAuth {
    /// TLS, when the client listener has it.
    pub tls: Option<ClientTls>,
    /// The login.
    pub login: Login,
}

impl ClientAuth {
    /// A login with a creds file and no TLS.
    pub fn creds(creds: &str) -> Self {
        ClientAuth {
            tls: None,
            login: Login::Creds(creds.to_string()),
        }
    }

    /// Whether there is nothing to present (plain, anonymous).
    pub fn is_anonymous(&self) -> bool {
        self.tls.is_none() && self.login == Login::None
    }

    /// A short digest of everything presented (connection cache key; reveals nothing).
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mut part = |tag: &[u8], v: &[u8]| {
            h.update(tag);
            h.update((v.len() as u64).to_be_bytes());
            h.update(v);
        };
        match &self.login {
            Login::None => part(b"none", b""),
            Login::Creds(c) => part(b"creds", c.as_bytes()),
            Login::UserPassword { user, password } => {
                part(b"user", user.as_bytes());
                part(b"password", password.as_bytes());
            }
            Login::Token(t) => part(b"token", t.as_bytes()),
            Login::NKey(k) => part(b"nkey", k.as_bytes()),
        }
        if let Some(t) = &self.tls {
            part(b"ca", &t.ca_pem);
            if let Some((c, k)) = &t.client_cert {
                part(b"cert", c);
                part(b"key", k);
            }
        }
        h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// async-nats options presenting this login and TLS.
    pub fn connect_options(&self) -> Result<async_nats::ConnectOptions, String> {
        let opts = match &self.login {
            Login::None => async_nats::ConnectOptions::new(),
            // The creds error text is generic; it never echoes the file.
            Login::Creds(c) => async_nats::ConnectOptions::with_credentials(c)
                .map_err(|_| "the creds file in the Secret cannot be parsed".to_string())?,
            Login::UserPassword { user, password } => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            Login::Token(t) => async_nats::ConnectOptions::with_token(t.clone()),
            Login::NKey(seed) => {
                nkeys::KeyPair::from_seed(seed)
                    .map_err(|_| "the nkey in the Secret is not a valid user seed".to_string())?;
                async_nats::ConnectOptions::with_nkey(seed.clone())
            }
        };
        Ok(match &self.tls {
            Some(t) => opts.require_tls(true).tls_client_config(rustls_config(t)?),
            None => opts,
        })
    }
}

/// The rustls client configuration of `t`.
pub fn rustls_config(t: &ClientTls) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let mut n = 0;
    for c in CertificateDer::pem_slice_iter(&t.ca_pem) {
        let c = c.map_err(|e| format!("the CA is not PEM certificates: {e}"))?;
        roots
            .add(c)
            .map_err(|e| format!("the CA certificate cannot be used: {e}"))?;
        n += 1;
    }
    if n == 0 {
        return Err("the CA holds no PEM certificate".into());
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots);
    match &t.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("the client certificate is not PEM: {e}"))?;
            if chain.is_empty() {
                return Err("the client certificate Secret holds no PEM certificate".into());
            }
            // The key's parse error could quote it: keep the message generic.
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|_| "the client key is not a PEM private key".to_string())?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("the client certificate and key do not fit: {e}"))
        }
    }
}

/// One key of a Secret as text, or why not (never its value).
fn key_str(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .map(|v| v.trim_end_matches(['\r', '\n']).to_string())
        .filter(|v| !v.is_empty())
}

fn key_bytes(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.0.clone())
        .filter(|v| !v.is_empty())
}

/// The login in a credentials Secret: `user.creds`, else `nkey`, else `username` and
/// `password`, else `token`.
pub fn login_from_secret(secret: &Secret) -> Result<Login, String> {
    let name = secret.name_any();
    if let Some(c) = key_str(secret, crate::auth::CREDS_KEY) {
        return Ok(Login::Creds(c));
    }
    if let Some(k) = key_str(secret, NKEY_KEY) {
        return Ok(Login::NKey(k));
    }
    match (key_str(secret, USERNAME_KEY), key_str(secret, PASSWORD_KEY)) {
        (Some(user), Some(password)) => return Ok(Login::UserPassword { user, password }),
        (Some(_), None) => {
            return Err(format!(
                "Secret {name} has `{USERNAME_KEY}` but no `{PASSWORD_KEY}`"
            ))
        }
        _ => {}
    }
    if let Some(t) = key_str(secret, TOKEN_KEY) {
        return Ok(Login::Token(t));
    }
    Err(format!(
        "Secret {name} has none of the keys `{USERNAME_KEY}` + `{PASSWORD_KEY}`, `{TOKEN_KEY}`, \
         `{NKEY_KEY}` or `{}`",
        crate::auth::CREDS_KEY
    ))
}

/// The Secrets [`from_secrets`] reads for `nc`: the CA's, the client listener's, and those of
/// `spec.auth.operatorClient`.
pub fn secret_names(nc: &NatsCluster) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(t) = &nc.spec.tls {
        if t.client.is_some() {
            names.extend(t.ca.as_ref().map(|c| c.secret_name.clone()));
            names.extend(t.client.as_ref().map(|c| c.secret_name.clone()));
        }
    }
    if let Some(oc) = &nc.spec.auth.operator_client {
        names.extend(oc.credentials_secret_name.clone());
        names.extend(oc.tls_secret_name.clone());
    }
    names.sort();
    names.dedup();
    names
}

/// What the operator presents to `nc`'s client port: its TLS and, outside operator mode, the
/// login of `spec.auth.operatorClient` (operator-mode callers set an account's creds), from
/// `secrets` by name; the error says what is missing, for a condition.
pub fn from_secrets(
    nc: &NatsCluster,
    secrets: &BTreeMap<String, Secret>,
) -> Result<ClientAuth, String> {
    let ns = nc.namespace().unwrap_or_default();
    let cluster = nc.name_any();
    let oc = nc.spec.auth.operator_client.clone().unwrap_or_default();
    let get = |name: &str, field: &str| {
        secrets
            .get(name)
            .ok_or_else(|| format!("Secret {ns}/{name} ({field}) not found"))
    };
    let mut auth = ClientAuth::default();
    let tls = nc.spec.tls.as_ref();
    if let Some(listener) = tls.and_then(|t| t.client.as_ref()) {
        let ca = match tls.and_then(|t| t.ca.as_ref()) {
            Some(r) => key_bytes(get(&r.secret_name, "spec.tls.ca")?, &r.key).ok_or_else(|| {
                format!(
                    "Secret {ns}/{} (spec.tls.ca) has no key `{}`",
                    r.secret_name, r.key
                )
            })?,
            // cert-manager puts the issuer's CA next to the certificate.
            None => secrets
                .get(&listener.secret_name)
                .and_then(|s| key_bytes(s, "ca.crt"))
                .ok_or_else(|| {
                    format!(
                        "NatsCluster {ns}/{cluster} has client TLS but no CA to verify its \
                         servers with: set spec.tls.ca (or add ca.crt to Secret {})",
                        listener.secret_name
                    )
                })?,
        };
        let client_cert = match &oc.tls_secret_name {
            Some(name) => {
                let field = "spec.auth.operatorClient.tlsSecretName";
                let s = get(name, field)?;
                match (key_bytes(s, "tls.crt"), key_bytes(s, "tls.key")) {
                    (Some(c), Some(k)) => Some((c, k)),
                    _ => {
                        return Err(format!(
                            "Secret {ns}/{name} ({field}) needs tls.crt and tls.key"
                        ))
                    }
                }
            }
            None if listener.verify => {
                return Err(format!(
                    "NatsCluster {ns}/{cluster} verifies client certificates \
                     (spec.tls.client.verify): give the operator one with \
                     spec.auth.operatorClient.tlsSecretName (a kubernetes.io/tls Secret)"
                ))
            }
            None => None,
        };
        let t = ClientTls {
            ca_pem: ca,
            client_cert,
        };
        rustls_config(&t)?;
        auth.tls = Some(t);
    }
    if !nc.spec.auth.operator_mode {
        if let Some(name) = &oc.credentials_secret_name {
            let s = get(name, "spec.auth.operatorClient.credentialsSecretName")?;
            auth.login =
                login_from_secret(s).map_err(|e| format!("{e} (spec.auth.operatorClient)"))?;
        }
    }
    Ok(auth)
}

/// [`from_secrets`] with the Secrets read from the API server (the outer error is the API's).
pub async fn for_cluster(
    client: &kube::Client,
    nc: &NatsCluster,
) -> Result<Result<ClientAuth, String>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &nc.namespace().unwrap_or_default());
    let mut secrets = BTreeMap::new();
    for name in secret_names(nc) {
        if let Some(s) = api.get_opt(&name).await? {
            secrets.insert(name, s);
        }
    }
    Ok(from_secrets(nc, &secrets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(name: &str, kv: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.data = Some(
            kv.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        s
    }

    #[test]
    fn logins_from_secrets() {
        let l = login_from_secret(&secret("a", &[("username", "op"), ("password", "pw\n")]));
        assert_eq!(
            l.unwrap(),
            Login::UserPassword {
                user: "op".into(),
                password: "pw".into()
            }
        );
        assert_eq!(
            login_from_secret(&secret("a", &[("token", "t0k")])).unwrap(),
            Login::Token("t0k".into())
        );
        assert!(matches!(
            login_from_secret(&secret("a", &[("nkey", "SU..."), ("token", "x")])).unwrap(),
            Login::NKey(_)
        ));
        let e = login_from_secret(&secret("a", &[("username", "op")])).unwrap_err();
        assert!(e.contains("no `password`"), "{e}");
        let e = login_from_secret(&secret("a", &[("pass", "s3cr3t")])).unwrap_err();
        assert!(
            e.contains("Secret a has none") && !e.contains("s3cr3t"),
            "{e}"
        );
    }

    #[test]
    fn debug_and_digest_reveal_nothing() {
        let a = ClientAuth {
            tls: Some(ClientTls {
                ca_pem: b"ca".to_vec(),
                client_cert: Some((b"c".to_vec(), b"KEYDATA".to_vec())),
            }),
            login: Login::UserPassword {
                user: "op".into(),
                password: "s3cr3t".into(),
            },
        };
        let d = format!("{a:?}");
        assert!(
            !d.contains("s3cr3t") && !d.contains("KEYDATA") && !d.contains("op"),
            "{d}"
        );
        let mut b = a.clone();
        b.login = Login::UserPassword {
            user: "op".into(),
            password: "other".into(),
        };
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest(), a.clone().digest());
        assert!(!a.is_anonymous() && ClientAuth::default().is_anonymous());
    }

    #[test]
    fn bad_pem_is_an_error_without_the_key() {
        let t = ClientTls {
            ca_pem: b"not pem".to_vec(),
            client_cert: None,
        };
        assert!(rustls_config(&t)
            .unwrap_err()
            .contains("no PEM certificate"));
        let e = ClientAuth {
            tls: None,
            login: Login::NKey("SECRETSEED".into()),
        }
        .connect_options()
        .err()
        .unwrap();
        assert!(!e.contains("SECRETSEED"), "{e}");
    }
}
