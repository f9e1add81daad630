//! Server options: what the config file and the command line resolve to.

use std::path::PathBuf;
use std::time::Duration;

/// The interval `watch_config: true` polls at.
pub const WATCH_CONFIG_INTERVAL: Duration = Duration::from_secs(5);

/// Every setting the broker runs with; defaults are nats-server's.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Path of the config file this came from, if any.
    pub config_file: Option<PathBuf>,
    pub server_name: Option<String>,
    /// Client listen host (`listen`/`host`/`-a`).
    pub host: String,
    /// Client port; 0 or -1 (RANDOM_PORT) picks an ephemeral port.
    pub port: i32,
    /// `client_advertise`: host:port given to clients in `connect_urls`.
    pub client_advertise: Option<String>,
    /// Monitoring host (`http: host:port` or `http_host`).
    pub http_host: String,
    /// Monitoring port; 0 means disabled, -1 random.
    pub http_port: i32,
    /// `prof_port`: CPU profiles over HTTP (0: off, -1: a random port), on `host`.
    pub prof_port: i32,
    pub https_port: i32,
    pub http_base_path: String,
    pub max_payload: i32,
    pub max_pending: i64,
    pub max_control_line: i32,
    pub max_connections: i32,
    /// 0 means unlimited.
    pub max_subscriptions: i32,
    pub ping_interval: Duration,
    pub ping_max: i32,
    pub write_deadline: Duration,
    /// Placeholder until auth lands; kept so `/varz` reports it.
    pub auth_timeout: Duration,
    pub debug: bool,
    pub trace: bool,
    pub trace_verbose: bool,
    pub logtime: bool,
    pub log_file: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub ports_file_dir: Option<PathBuf>,
    pub no_header_support: bool,
    pub lame_duck_duration: Duration,
    pub lame_duck_grace_period: Duration,
    /// Ours (`lame_duck_on_sigterm` / `--ldm_on_sigterm`): SIGTERM enters lame duck mode instead
    /// of stopping at once, so a Kubernetes pod needs no preStop hook.
    pub lame_duck_on_sigterm: bool,
    /// Ours (`watch_config: true | "<interval>"`): reload when the config file, a file it
    /// includes or a TLS file it names changes on disk, checked at this interval — what a
    /// Kubernetes pod otherwise needs a reloader sidecar for when its ConfigMap changes.
    pub watch_config: Option<Duration>,
    /// Only with `-t`: check the config and exit.
    pub check_config: bool,
    /// Users from `authorization { user/password | users }`, `accounts { X { users } }` and
    /// `--user/--pass`; a user's `account` names its account (`None`: `$G`).
    pub users: Vec<User>,
    /// `authorization { token }` / `--auth`: plain or bcrypt.
    pub token: Option<String>,
    /// `authorization { default_permissions }`: for users without their own.
    pub default_permissions: Option<Permissions>,
    /// `no_auth_user`: the user a client without credentials is treated as.
    pub no_auth_user: Option<String>,
    /// `accounts { ... }`.
    pub accounts: Vec<AccountConfig>,
    /// `system_account`.
    pub system_account: Option<String>,
    /// `allow_non_tls`: with `tls`, plain clients are served on the same port (INFO says
    /// `tls_available` instead of `tls_required`; a client's first byte decides).
    pub allow_non_tls: bool,
    /// `default_sentinel`: in operator mode, the bearer user JWT of clients that present none.
    pub default_sentinel: Option<String>,
    /// `no_sys_acc`: no `$SYS` account when none is configured (no system services).
    pub no_sys_acc: bool,
    /// `server_metadata`: free-form labels reported in `/varz` `metadata`.
    pub server_metadata: std::collections::BTreeMap<String, String>,
    /// `tls { ... }` / `--tls*` for client connections (and `https_port`).
    pub tls: Option<TlsOptions>,
    /// `operator`: trusted operator JWTs; non-empty means operator mode.
    pub trusted_operators: Vec<String>,
    /// `trusted_keys` / `trusted`: operator public keys trusted without an operator JWT.
    pub trusted_keys: Vec<String>,
    /// `resolver: MEMORY`: accounts come only from `resolver_preload`.
    pub memory_resolver: bool,
    /// `resolver: { type: full, dir, allow_delete, ... }`: the nats-resolver, account JWTs
    /// stored as files and updated through the system account.
    pub full_resolver: Option<FullResolverOptions>,
    /// `resolver_preload`: account public key and account JWT, in config order.
    pub resolver_preload: Vec<(String, String)>,
    /// `cluster { ... }` / `--cluster`, `--routes`: core NATS clustering over routes.
    pub cluster: Option<ClusterOptions>,
    /// `jetstream { ... }` / `-js`: JetStream persistence; `None` leaves it off.
    pub jetstream: Option<JetStreamOptions>,
}

/// `jetstream { store_dir, max_memory_store, max_file_store, domain, sync_interval, sync_always,
/// cipher, key }`.
#[derive(Debug, Clone, PartialEq)]
pub struct JetStreamOptions {
    /// Where streams live; `<store_dir>/jetstream/<account>/streams/<stream>`.
    pub store_dir: PathBuf,
    /// Memory storage limit in bytes; negative means 75% of system memory (as nats-server).
    pub max_memory: i64,
    /// File storage limit in bytes; negative means 1 TiB (as nats-server's default).
    pub max_file: i64,
    pub domain: Option<String>,
    /// How often file stores are fsynced (nats-server default 2 minutes).
    pub sync_interval: Duration,
    /// fsync after every write.
    pub sync_always: bool,
    /// `cipher` and `key`: encryption at rest of file streams.
    pub encryption: Option<JsEncryption>,
    /// `strict` (default on, as nats-server 2.12+): API requests with unknown fields are refused.
    pub strict: bool,
}

/// The AEAD of `jetstream { cipher }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsCipher {
    ChaChaPoly,
    Aes,
}

/// `jetstream { cipher, key }`; the key is left out of `Debug`.
#[derive(Clone, PartialEq)]
pub struct JsEncryption {
    pub cipher: JsCipher,
    pub key: String,
    /// `prev_key`: the key being rotated away from; key files sealed with it are opened and
    /// sealed again with `key`.
    pub prev_key: Option<String>,
}

impl std::fmt::Debug for JsEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsEncryption({:?}, <redacted>)", self.cipher)
    }
}

impl Default for JetStreamOptions {
    fn default() -> Self {
        JetStreamOptions {
            store_dir: std::env::temp_dir().join("nats"),
            max_memory: -1,
            max_file: -1,
            domain: None,
            sync_interval: Duration::from_secs(120),
            sync_always: false,
            encryption: None,
            strict: true,
        }
    }
}

/// Per-account JetStream limits (`accounts { A { jetstream { max_mem, ... } } }`); -1 is
/// unlimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JsAccountLimits {
    pub max_memory: i64,
    pub max_store: i64,
    pub max_streams: i64,
    pub max_consumers: i64,
}

impl Default for JsAccountLimits {
    fn default() -> Self {
        JsAccountLimits {
            max_memory: -1,
            max_store: -1,
            max_streams: -1,
            max_consumers: -1,
        }
    }
}

/// The nats-resolver's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FullResolverOptions {
    /// Where account JWTs are stored (`<dir>/<account>.jwt`).
    pub dir: std::path::PathBuf,
    /// Whether `$SYS.REQ.CLAIMS.DELETE` may remove accounts.
    pub allow_delete: bool,
    /// How many JWTs the store holds (nats-server's `limit`).
    pub limit: i64,
    /// How often the store is compared with another server's (`interval`, `$SYS.REQ.CLAIMS.PACK`).
    pub interval: Duration,
    /// How long a lookup of a missing account waits for the other servers (`timeout`).
    pub timeout: Duration,
    /// `type: cache`: JWTs are only fetched from the cluster's full resolvers, kept for
    /// `ttl` (zero: until evicted by `limit`), updated only when already held, and nothing is
    /// served to other servers. `None` is `type: full`.
    pub cache_ttl: Option<Duration>,
}

/// `cluster { name, listen, host, port, routes, advertise, no_advertise, connect_retries,
/// authorization, tls }`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterOptions {
    /// Cluster name; `None` lets the server pick one (and accept its peers' name).
    pub name: Option<String>,
    /// Route listen host.
    pub host: String,
    /// Route listen port; 0 or -1 picks an ephemeral port.
    pub port: i32,
    /// `host:port` other servers are told to connect to (`advertise`/`--cluster_advertise`).
    pub advertise: Option<String>,
    /// Do not tell clients about other servers' client URLs (`connect_urls`).
    pub no_advertise: bool,
    /// Seed route URLs (`nats-route://host:port` or `nats://host:port`).
    pub routes: Vec<String>,
    /// How many times a lost implicit (gossiped) route is redialed.
    pub connect_retries: i32,
    /// `authorization { user, password }`: what routes must present (and what we present when
    /// a route URL carries no credentials).
    pub auth: Option<RouteAuth>,
    /// `tls { ... }`: routes are TLS from their first byte, both sides verified against
    /// `ca_file`.
    pub tls: Option<TlsOptions>,
    /// `permissions { import, export }`: which subjects this server takes from routes
    /// (`import`, kept as publish) and lets routes subscribe to (`export`, kept as subscribe).
    pub permissions: Option<Permissions>,
}

/// Route credentials; the password may be a bcrypt hash on the accepting side.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouteAuth {
    pub user: String,
    pub password: String,
}

/// One configured user.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct User {
    /// Absent for nkey users.
    pub username: Option<String>,
    /// Plain text or a bcrypt hash (`$2a$`, `$2b$`, `$2y$`).
    pub password: Option<String>,
    /// Public user nkey (`U...`).
    pub nkey: Option<String>,
    pub permissions: Option<Permissions>,
    /// Account name; `None` is the global account `$G`.
    pub account: Option<String>,
}

/// Publish/subscribe permissions of a user.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Permissions {
    pub publish: Option<SubjectPermission>,
    pub subscribe: Option<SubjectPermission>,
    /// `allow_responses`: may publish to reply subjects of requests it received.
    pub allow_responses: Option<ResponsePermission>,
}

/// `allow`/`deny` subject lists; a plain list is `allow` only. Subscribe entries may carry a
/// queue group after a space (`"foo queue"`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubjectPermission {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

/// `allow_responses: true` is `max: 1, expires: 0` (no expiry).
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsePermission {
    pub max: i32,
    pub expires: Duration,
}

/// One account from `accounts { NAME { users, exports, imports } }`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccountConfig {
    pub name: String,
    pub exports: Vec<Export>,
    pub imports: Vec<Import>,
    /// `jetstream: enabled` or limits; `None` leaves JetStream off for the account.
    pub jetstream: Option<JsAccountLimits>,
}

/// How a service export answers: once, a stream of messages, or chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseType {
    #[default]
    Singleton,
    Stream,
    Chunked,
}

/// `exports: [{stream: subj, accounts: [..]}, {service: subj, response_type: ..}]`.
#[derive(Debug, Clone, PartialEq)]
pub enum Export {
    /// Messages on `subject` may be imported; `accounts` empty means public.
    Stream {
        subject: String,
        accounts: Vec<String>,
    },
    /// Requests on `subject` may be imported.
    Service {
        subject: String,
        accounts: Vec<String>,
        response_type: ResponseType,
    },
}

/// `imports: [{stream: {account, subject}, prefix|to}, {service: {account, subject}, to}]`.
#[derive(Debug, Clone, PartialEq)]
pub enum Import {
    /// Stream import; `to` remaps the subject, `prefix` prepends to it.
    Stream {
        account: String,
        subject: String,
        to: Option<String>,
        prefix: Option<String>,
    },
    /// Service import; `to` is the local subject requests are sent on.
    Service {
        account: String,
        subject: String,
        to: Option<String>,
    },
}

/// `tls { ... }` for client connections.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsOptions {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: Option<PathBuf>,
    /// Require and verify client certificates against `ca_file`.
    pub verify: bool,
    /// Also map the client certificate to a configured user.
    pub verify_and_map: bool,
    /// Handshake timeout (nats-server default 2 s).
    pub timeout: Duration,
    /// Handshake before INFO instead of after it.
    pub handshake_first: bool,
    /// `handshake_first: auto` or a duration: wait this long for a TLS handshake, then fall
    /// back to sending INFO first (`None`: no fallback).
    pub handshake_first_fallback: Option<Duration>,
    /// IANA names of allowed cipher suites; empty means the defaults.
    pub cipher_suites: Vec<String>,
    /// Allowed key-exchange groups; empty means the defaults.
    pub curve_preferences: Vec<String>,
    /// Dialed connections (routes) skip verifying the server certificate.
    pub insecure: bool,
    /// `certs`: more certificate/key pairs, chosen by the name a client asks for (SNI);
    /// without a match, the first configured pair serves.
    pub certs: Vec<(PathBuf, PathBuf)>,
}

impl Options {
    /// Whether clients must authenticate.
    pub fn auth_required(&self) -> bool {
        !self.users.is_empty()
            || self.token.is_some()
            || self.tls.as_ref().is_some_and(|t| t.verify_and_map)
            || self.operator_mode()
    }

    /// Decentralized auth: an operator JWT or a trusted operator key is configured.
    pub fn operator_mode(&self) -> bool {
        !self.trusted_operators.is_empty() || !self.trusted_keys.is_empty()
    }

    /// The trusted operators' claims: decoded operator JWTs, and for each `trusted_keys`
    /// entry an operator with that identity key and no signing keys (nats-server's
    /// `TrustedKeys` trust the key alone).
    pub fn trusted_operator_claims(&self) -> Vec<natrix_jwt::OperatorClaims> {
        let mut out: Vec<natrix_jwt::OperatorClaims> = self
            .trusted_operators
            .iter()
            .filter_map(|t| natrix_jwt::decode_as::<natrix_jwt::Operator>(t).ok())
            .collect();
        for k in &self.trusted_keys {
            if !out.iter().any(|o| &o.sub == k) {
                out.push(natrix_jwt::OperatorClaims {
                    sub: k.clone(),
                    iss: k.clone(),
                    ..Default::default()
                });
            }
        }
        out
    }
}

impl Options {
    /// Cross-option checks nats-server makes before it starts; the message is nats-server's.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_payload as i64 > self.max_pending {
            return Err(format!(
                "max_payload ({}) cannot be higher than max_pending ({})",
                self.max_payload, self.max_pending
            ));
        }
        if self.max_payload < 0 {
            return Err(format!(
                "max_payload ({}) cannot be negative",
                self.max_payload
            ));
        }
        if self.lame_duck_grace_period >= self.lame_duck_duration {
            return Err(format!(
                "lame duck grace period ({}) should be strictly lower than lame duck duration ({})",
                crate::clock::go_duration(self.lame_duck_grace_period.as_nanos() as i128),
                crate::clock::go_duration(self.lame_duck_duration.as_nanos() as i128)
            ));
        }
        // A clustered JetStream names its peers by server name, and its groups by cluster.
        let clustered = self.cluster.as_ref().is_some_and(|c| c.port != 0);
        if self.jetstream.is_some() && clustered {
            if self.server_name.as_deref().unwrap_or("").is_empty() {
                return Err("jetstream cluster requires `server_name` to be set".into());
            }
            let name = self.cluster.as_ref().and_then(|c| c.name.as_deref());
            if name.unwrap_or("").is_empty() {
                return Err("jetstream cluster requires `cluster.name` to be set".into());
            }
        }
        Ok(())
    }
}

/// nats-server's RANDOM_PORT sentinel.
pub const RANDOM_PORT: i32 = -1;

impl Default for Options {
    fn default() -> Self {
        Options {
            config_file: None,
            server_name: None,
            host: "0.0.0.0".into(),
            port: 4222,
            client_advertise: None,
            http_host: "0.0.0.0".into(),
            http_port: 0,
            prof_port: 0,
            https_port: 0,
            http_base_path: String::new(),
            max_payload: 1024 * 1024,
            max_pending: 64 * 1024 * 1024,
            max_control_line: 4096,
            max_connections: 64 * 1024,
            max_subscriptions: 0,
            ping_interval: Duration::from_secs(120),
            ping_max: 2,
            write_deadline: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(2),
            debug: false,
            trace: false,
            trace_verbose: false,
            logtime: true,
            log_file: None,
            pid_file: None,
            ports_file_dir: None,
            no_header_support: false,
            lame_duck_duration: Duration::from_secs(120),
            lame_duck_grace_period: Duration::from_secs(10),
            lame_duck_on_sigterm: false,
            watch_config: None,
            check_config: false,
            users: Vec::new(),
            token: None,
            default_permissions: None,
            no_auth_user: None,
            accounts: Vec::new(),
            system_account: None,
            no_sys_acc: false,
            default_sentinel: None,
            allow_non_tls: false,
            server_metadata: Default::default(),
            tls: None,
            trusted_operators: Vec::new(),
            trusted_keys: Vec::new(),
            memory_resolver: false,
            resolver_preload: Vec::new(),
            full_resolver: None,
            cluster: None,
            jetstream: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_payload_must_fit_in_max_pending() {
        assert!(Options::default().validate().is_ok());
        let o = Options {
            max_pending: 1000,
            max_payload: 2000,
            ..Options::default()
        };
        assert_eq!(
            o.validate().unwrap_err(),
            "max_payload (2000) cannot be higher than max_pending (1000)"
        );
    }
}
