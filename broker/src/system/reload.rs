//! Config reload (SIGHUP, `--signal reload`): the re-read options are compared with the running
//! ones; an option that needs a restart refuses the whole reload with nats-server's error
//! (`config reload not supported for Port: old=4222, new=4223`), everything else is applied
//! live with nats-server's `Reloaded: ...` lines.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::accounts::Account;
use crate::auth::Authenticator;
use crate::clock::go_duration;
use crate::options::{ClusterOptions, Options};
use crate::protocol::ClosedReason;
use crate::server::{tls_setup, Server};

/// nats-server's error when the server was started without a config file.
pub const NO_CONFIG_FILE: &str =
    "can only reload config when a file is provided using -c or --config";

fn dur(d: Duration) -> String {
    go_duration(d.as_nanos() as i128)
}

fn opt_str<T: std::fmt::Display>(o: &Option<T>) -> String {
    o.as_ref().map(|v| v.to_string()).unwrap_or_default()
}

/// nats-server's refusal for an option that cannot change while running.
fn refuse(name: &str, old: impl std::fmt::Display, new: impl std::fmt::Display) -> String {
    format!("config reload not supported for {name}: old={old}, new={new}")
}

/// Checks that nothing changed that needs a restart; the error names the first such option.
pub fn check_restart_options(old: &Options, new: &Options) -> Result<(), String> {
    macro_rules! same {
        ($field:ident, $name:expr, $fmt:expr) => {
            if old.$field != new.$field {
                return Err(refuse($name, $fmt(&old.$field), $fmt(&new.$field)));
            }
        };
    }
    let plain = |v: &dyn std::fmt::Display| v.to_string();
    same!(server_name, "ServerName", opt_str);
    same!(host, "Host", |v: &String| plain(v));
    same!(port, "Port", |v: &i32| plain(v));
    same!(client_advertise, "ClientAdvertise", opt_str);
    same!(http_host, "HTTPHost", |v: &String| plain(v));
    same!(http_port, "HTTPPort", |v: &i32| plain(v));
    same!(https_port, "HTTPSPort", |v: &i32| plain(v));
    same!(http_base_path, "HTTPBasePath", |v: &String| plain(v));
    same!(max_pending, "MaxPending", |v: &i64| plain(v));
    same!(max_subscriptions, "MaxSubs", |v: &i32| plain(v));
    same!(no_header_support, "NoHeaderSupport", |v: &bool| plain(v));
    same!(lame_duck_duration, "LameDuckDuration", |v: &Duration| dur(
        *v
    ));
    same!(
        lame_duck_grace_period,
        "LameDuckGracePeriod",
        |v: &Duration| { dur(*v) }
    );
    same!(lame_duck_on_sigterm, "LameDuckOnSigterm", |v: &bool| plain(
        v
    ));
    same!(no_auth_user, "NoAuthUser", opt_str);
    same!(system_account, "SystemAccount", opt_str);
    same!(pid_file, "PidFile", |v: &Option<std::path::PathBuf>| v
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default());
    same!(ports_file_dir, "PortsFileDir", |v: &Option<
        std::path::PathBuf,
    >| v
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default());
    check_cluster(old.cluster.as_ref(), new.cluster.as_ref())?;
    check_jetstream(old, new)?;
    // Ours: imports and exports are wired into the accounts when they are built.
    for a in &new.accounts {
        if let Some(o) = old.accounts.iter().find(|o| o.name == a.name) {
            if o.imports != a.imports || o.exports != a.exports {
                return Err(format!(
                    "config reload not supported for account {:?} imports/exports",
                    a.name
                ));
            }
        }
    }
    Ok(())
}

/// Routes and the cluster listener need a restart (ours: nats-server can add/remove routes).
fn check_cluster(old: Option<&ClusterOptions>, new: Option<&ClusterOptions>) -> Result<(), String> {
    if old == new {
        return Ok(());
    }
    let none = ClusterOptions::default();
    let (o, n) = (old.unwrap_or(&none), new.unwrap_or(&none));
    let field = |name: &str, a: String, b: String| {
        if a != b {
            Err(refuse(&format!("cluster {name}"), a, b))
        } else {
            Ok(())
        }
    };
    field("host", o.host.clone(), n.host.clone())?;
    field("port", o.port.to_string(), n.port.to_string())?;
    field("name", opt_str(&o.name), opt_str(&n.name))?;
    field("advertise", opt_str(&o.advertise), opt_str(&n.advertise))?;
    field(
        "no_advertise",
        o.no_advertise.to_string(),
        n.no_advertise.to_string(),
    )?;
    // Ours: route TLS is built once at startup.
    if o.tls != n.tls {
        let tls = |t: &Option<crate::options::TlsOptions>| match t {
            None => "none".to_string(),
            Some(t) => format!("cert_file={}", t.cert_file.display()),
        };
        return Err(refuse("cluster tls", tls(&o.tls), tls(&n.tls)));
    }
    // Ours: route permissions are compiled once at startup (nats-server reloads them).
    if o.permissions != n.permissions {
        let p = |p: &Option<crate::options::Permissions>| {
            if p.is_some() { "set" } else { "none" }.to_string()
        };
        return Err(refuse(
            "cluster permissions",
            p(&o.permissions),
            p(&n.permissions),
        ));
    }
    // `routes` reload: added routes are dialed, removed ones closed.
    field(
        "connect_retries",
        o.connect_retries.to_string(),
        n.connect_retries.to_string(),
    )?;
    if old.is_some() == new.is_some() {
        return Ok(());
    }
    Err(refuse("cluster", "enabled", "disabled"))
}

/// JetStream: the server-wide `max_mem`/`max_file` apply live (as nats-server); the store
/// directory, domain (nats-server's wording), turning JetStream on or off, sync and
/// encryption settings, and per-account JetStream limits need a restart here.
fn check_jetstream(old: &Options, new: &Options) -> Result<(), String> {
    match (&old.jetstream, &new.jetstream) {
        (None, None) => {}
        (Some(_), None) => return Err(refuse("JetStream", "enabled", "disabled")),
        (None, Some(_)) => return Err(refuse("JetStream", "disabled", "enabled")),
        (Some(o), Some(n)) => {
            if o.store_dir != n.store_dir {
                return Err("config reload not supported for jetstream storage directory".into());
            }
            if o.domain != n.domain {
                return Err(refuse(
                    "JetStreamDomain",
                    opt_str(&o.domain),
                    opt_str(&n.domain),
                ));
            }
            if o.sync_interval != n.sync_interval || o.sync_always != n.sync_always {
                return Err(refuse(
                    "JetStreamSyncInterval",
                    dur(o.sync_interval),
                    dur(n.sync_interval),
                ));
            }
            if o.encryption != n.encryption {
                // Never the key itself.
                let c = |e: &Option<crate::options::JsEncryption>| match e {
                    Some(e) => format!("{:?}", e.cipher),
                    None => "none".to_string(),
                };
                return Err(refuse(
                    "JetStream encryption",
                    c(&o.encryption),
                    c(&n.encryption),
                ));
            }
        }
    }
    for a in &new.accounts {
        if let Some(o) = old.accounts.iter().find(|o| o.name == a.name) {
            if o.jetstream != a.jetstream {
                return Err(format!(
                    "config reload not supported for account {:?} jetstream limits",
                    a.name
                ));
            }
        }
    }
    Ok(())
}

/// What a reload changes, in the order nats-server logs it.
#[derive(Debug, Default)]
pub struct Changes {
    /// The `Reloaded: ...` lines.
    pub lines: Vec<String>,
    /// Users, tokens, nkeys, permissions or accounts changed: re-check every connection.
    pub auth: bool,
    /// Log level, timestamps or file changed.
    pub logging: bool,
}

/// Lists the live changes between `old` and `new` (after [`check_restart_options`]).
pub fn diff(old: &Options, new: &Options) -> Changes {
    let mut c = Changes::default();
    let mut line = |s: String| c.lines.push(s);
    if old.trace != new.trace {
        line(format!("Reloaded: trace = {}", new.trace));
    }
    if old.debug != new.debug {
        line(format!("Reloaded: debug = {}", new.debug));
    }
    if old.logtime != new.logtime {
        line(format!("Reloaded: logtime = {}", new.logtime));
    }
    if old.trace_verbose != new.trace_verbose {
        line(format!("Reloaded: trace_verbose = {}", new.trace_verbose));
    }
    if old.max_connections != new.max_connections {
        line(format!(
            "Reloaded: max_connections = {}",
            new.max_connections
        ));
    }
    let named = |o: &Options| o.users.iter().any(|u| u.username.is_some());
    let nkeys = |o: &Options| o.users.iter().any(|u| u.nkey.is_some());
    // nats-server reports its users (and accounts) on every reload that has any.
    let users = named(old) || named(new);
    let nkey_users = nkeys(old) || nkeys(new);
    if users {
        line("Reloaded: authorization users".into());
    }
    if nkey_users {
        line("Reloaded: authorization nkey users".into());
    }
    let accounts = users || nkey_users || old.accounts != new.accounts;
    if accounts {
        line("Reloaded: accounts".into());
    }
    if old.token != new.token {
        line("Reloaded: authorization token".into());
    }
    if old.log_file != new.log_file {
        line(format!(
            "Reloaded: log_file = {}",
            new.log_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ));
    }
    if old.ping_interval != new.ping_interval {
        line(format!(
            "Reloaded: ping_interval = {}",
            dur(new.ping_interval)
        ));
    }
    if old.ping_max != new.ping_max {
        line(format!("Reloaded: ping_max = {}", new.ping_max));
    }
    if old.auth_timeout != new.auth_timeout {
        line(format!(
            "Reloaded: authorization timeout = {}",
            new.auth_timeout.as_secs_f64()
        ));
    }
    if old.tls != new.tls {
        let state = if new.tls.is_some() {
            "enabled"
        } else {
            "disabled"
        };
        line(format!("Reloaded: tls = {state}"));
    }
    if old.max_control_line != new.max_control_line {
        line(format!(
            "Reloaded: max_control_line = {}",
            new.max_control_line
        ));
    }
    if old.max_payload != new.max_payload {
        line(format!("Reloaded: max_payload = {}", new.max_payload));
    }
    if old.write_deadline != new.write_deadline {
        line(format!(
            "Reloaded: write_deadline = {}",
            dur(new.write_deadline)
        ));
    }
    c.auth = accounts
        || old.token != new.token
        || old.users != new.users
        || old.default_permissions != new.default_permissions
        || old.tls.as_ref().map(|t| t.verify_and_map) != new.tls.as_ref().map(|t| t.verify_and_map);
    c.logging = old.trace != new.trace
        || old.debug != new.debug
        || old.logtime != new.logtime
        || old.log_file != new.log_file;
    c
}

impl Server {
    /// Applies re-read options (the config file with the command-line flags over it): refuses
    /// them whole when an option needing a restart changed, else swaps options, authentication
    /// and TLS, re-checks every connection's credentials (disconnecting those that no longer
    /// authenticate with `-ERR 'Authorization Violation'`), and tells connections to re-read
    /// their limits and permissions. Logs nats-server's lines; the error is the reason to log
    /// after `Failed to reload server configuration: `.
    pub async fn reload(self: &Arc<Self>, mut new: Options) -> Result<(), String> {
        let old = self.options();
        new.validate()?;
        // As nats-server: a random port compares as the port actually bound.
        let mut bound = (*old).clone();
        if let Some(a) = *self.client_addr.read() {
            if old.port <= 0 {
                bound.port = a.port() as i32;
                if new.port <= 0 {
                    new.port = bound.port;
                }
            }
        }
        check_restart_options(&bound, &new)?;
        new.port = old.port;
        let changes = diff(&old, &new);
        // Build everything that can fail before changing anything.
        let mut info = self.info();
        let tls = tls_setup(&new, &mut info).map_err(|e| e.to_string())?;
        let mut accounts = self.accounts.read().clone();
        for a in &new.accounts {
            accounts
                .entry(a.name.clone())
                .or_insert_with(|| Arc::new(Account::new(&a.name)));
        }
        let auth =
            Authenticator::new(&new, &accounts, self.global.clone()).map_err(|e| e.to_string())?;
        let auth = Arc::new(auth);
        for l in &changes.lines {
            tracing::info!("{l}");
        }
        if changes.logging {
            if let Err(e) =
                crate::log::reconfigure(new.debug, new.trace, new.logtime, new.log_file.as_deref())
            {
                tracing::error!("Failed to reload log file: {e}");
            }
        }
        let max_conn = new.max_connections;
        let new_routes = new.cluster.as_ref().map(|c| c.routes.clone());
        let new_route_auth = new.cluster.as_ref().and_then(|c| c.auth.clone());
        *self.accounts.write() = accounts;
        *self.tls.write() = tls;
        *self.auth.write() = auth.clone();
        self.update_info(|i| {
            i.max_payload = new.max_payload;
            i.tls_required = info.tls_required;
            i.tls_verify = info.tls_verify;
            i.auth_required = auth.advertise_required().then_some(true);
        });
        *self.opts.write() = Arc::new(new);
        if let Some(c) = crate::cluster::Cluster::of(self) {
            if c.auth() != new_route_auth {
                tracing::info!("Reloaded: cluster authorization");
                c.set_auth(new_route_auth);
            }
        }
        if let (Some(c), Some(routes)) = (crate::cluster::Cluster::of(self), new_routes) {
            if c.configured_routes() != routes {
                tracing::info!("Reloaded: cluster routes");
                c.set_routes(self, routes);
            }
        }
        if max_conn > 0 {
            self.enforce_max_connections(max_conn as usize);
        }
        if changes.auth {
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.reauthorize_clients(&auth)).await;
        }
        self.reload_epoch.fetch_add(1, Ordering::Release);
        for c in self.clients() {
            c.out.wake.notify_one();
        }
        if let (Some(js), Some(j)) = (
            crate::jetstream::JetStream::of(self),
            &self.options().jetstream,
        ) {
            js.set_limits(j.max_memory, j.max_file);
        }
        *self.config_load_time.write() = SystemTime::now();
        tracing::info!("Reloaded server configuration");
        Ok(())
    }

    /// Rebuilds authentication after the resolver's stored accounts changed: new accounts get
    /// their `Account`, and every connection is checked again (revoked users and users of
    /// deleted accounts are disconnected). Runs on the resolver's thread.
    pub(crate) fn refresh_accounts(self: &Arc<Self>) -> Result<(), String> {
        let opts = self.options();
        let claims = crate::auth::jwt::load_accounts(&opts).map_err(|e| e.to_string())?;
        let mut accounts = self.accounts.read().clone();
        for c in &claims {
            accounts
                .entry(c.sub.clone())
                .or_insert_with(|| Arc::new(Account::new(&c.sub)));
        }
        let auth =
            Authenticator::new(&opts, &accounts, self.global.clone()).map_err(|e| e.to_string())?;
        let auth = Arc::new(auth);
        crate::server::wire_all_imports(&opts, &accounts);
        *self.accounts.write() = accounts;
        self.refresh_import_interest();
        *self.auth.write() = auth.clone();
        self.reauthorize_clients(&auth);
        self.reload_epoch.fetch_add(1, Ordering::Release);
        for c in self.clients() {
            c.out.wake.notify_one();
        }
        Ok(())
    }

    /// Closes connections until at most `max` remain, as nats-server on a lowered
    /// `max_connections`.
    fn enforce_max_connections(&self, max: usize) {
        let clients = self.clients();
        if clients.len() <= max {
            return;
        }
        let excess = clients.len() - max;
        for c in clients.iter().take(excess) {
            tracing::error!("{} - maximum connections exceeded", c.tag());
            c.send_proto(b"-ERR 'maximum connections exceeded'\r\n");
            c.close(ClosedReason::MaxConnectionsExceeded);
        }
        tracing::info!("Closed {excess} connections to fall within max_connections");
    }

    /// Re-checks every connection against new authentication rules (may run bcrypt: call off
    /// the async workers). Connections that fail are told `Authorization Violation` and closed;
    /// the others drop subscriptions their new permissions deny.
    fn reauthorize_clients(&self, auth: &Authenticator) {
        for c in self.clients() {
            if c.is_closing() {
                continue;
            }
            if !c.reauthenticate(auth) {
                tracing::error!("{} - authentication error on config reload", c.tag());
                c.send_proto(b"-ERR 'Authorization Violation'\r\n");
                c.close(ClosedReason::AuthenticationViolation);
                continue;
            }
            let Some(perms) = c.auth_user().and_then(|u| u.perms.clone()) else {
                continue;
            };
            let denied: Vec<_> = c
                .subs
                .lock()
                .values()
                .filter(|s| !perms.can_subscribe(&s.subject, s.queue.as_deref()))
                .cloned()
                .collect();
            for sub in denied {
                self.remove_sub(&sub);
                let text = match &sub.queue {
                    Some(q) => format!(
                        "Permissions Violation for Subscription to \"{}\" using queue \"{q}\"",
                        sub.subject
                    ),
                    None => format!(
                        "Permissions Violation for Subscription to \"{}\"",
                        sub.subject
                    ),
                };
                c.send_proto(format!("-ERR '{text}'\r\n").as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_restart_options_with_nats_server_wording() {
        let old = Options::default();
        let new = Options {
            port: 4223,
            ..Options::default()
        };
        assert_eq!(
            check_restart_options(&old, &new).unwrap_err(),
            "config reload not supported for Port: old=4222, new=4223"
        );
        let new = Options {
            lame_duck_duration: Duration::from_secs(30),
            ..Options::default()
        };
        assert_eq!(
            check_restart_options(&old, &new).unwrap_err(),
            "config reload not supported for LameDuckDuration: old=2m0s, new=30s"
        );
        let new = Options {
            cluster: Some(ClusterOptions {
                host: "0.0.0.0".into(),
                ..Default::default()
            }),
            ..Options::default()
        };
        assert_eq!(
            check_restart_options(&old, &new).unwrap_err(),
            "config reload not supported for cluster host: old=, new=0.0.0.0"
        );
    }

    #[test]
    fn lists_live_changes_in_nats_server_order() {
        let old = Options::default();
        let new = Options {
            debug: true,
            max_payload: 100_000,
            ping_interval: Duration::from_secs(30),
            auth_timeout: Duration::from_secs(3),
            ..Options::default()
        };
        let c = diff(&old, &new);
        assert_eq!(
            c.lines,
            [
                "Reloaded: debug = true",
                "Reloaded: ping_interval = 30s",
                "Reloaded: authorization timeout = 3",
                "Reloaded: max_payload = 100000",
            ]
        );
        assert!(c.logging);
        assert!(!c.auth);
    }
}
