//! nats-server's command-line flags, parsed by hand with Go `flag` package
//! rules: `-x` and `--x` are the same, values as `-x v` or `-x=v`, boolean
//! flags only take `-x=false`, `--` ends the flags.

use std::path::PathBuf;

use std::time::Duration;

use crate::options::{Options, TlsOptions, User};

/// The flags given on the command line (`None`/`false` = not given).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cli {
    /// `-a/--addr/--net`.
    pub host: Option<String>,
    /// `-p/--port` (-1 = random).
    pub port: Option<i32>,
    /// `-m/--http_port`.
    pub http_port: Option<i32>,
    /// `--profile`: the profiling port.
    pub prof_port: Option<i32>,
    /// `-ms/--https_port`.
    pub https_port: Option<i32>,
    /// `-c/--config`.
    pub config: Option<PathBuf>,
    /// `-t`: check the config and exit.
    pub check_config: bool,
    /// `-n/--name/--server_name`.
    pub server_name: Option<String>,
    /// `-l/--log`.
    pub log_file: Option<PathBuf>,
    /// `-P/--pid`.
    pub pid_file: Option<PathBuf>,
    /// `--ports_file_dir`.
    pub ports_file_dir: Option<PathBuf>,
    /// `--client_advertise`.
    pub client_advertise: Option<String>,
    /// `-D/--debug` (also `-DV`, `-DVV`).
    pub debug: Option<bool>,
    /// `-V/--trace` (also `-VV`, `-DV`, `-DVV`).
    pub trace: Option<bool>,
    /// `-VV`, `-DVV`.
    pub trace_verbose: Option<bool>,
    /// `-T/--logtime`.
    pub logtime: Option<bool>,
    /// `-v/--version`.
    pub version: bool,
    /// `-h/--help`.
    pub help: bool,
    /// `-sl/--signal <signal>[=<pid>]`, raw.
    pub signal: Option<String>,
    /// `--ldm_on_sigterm` (ours): SIGTERM enters lame duck mode.
    pub ldm_on_sigterm: Option<bool>,
    /// `--cluster <url>` / `--cluster_listen`: route listen URL.
    pub cluster: Option<String>,
    /// `--cluster_name`.
    pub cluster_name: Option<String>,
    /// `--routes <url,url>`.
    pub routes: Option<String>,
    /// `--cluster_advertise`.
    pub cluster_advertise: Option<String>,
    /// `--no_advertise`.
    pub no_advertise: Option<bool>,
    /// `--connect_retries`.
    pub connect_retries: Option<i32>,
    /// `--user`: username required for connections.
    pub user: Option<String>,
    /// `--pass`: password required for connections.
    pub pass: Option<String>,
    /// `--auth`: token required for connections.
    pub auth: Option<String>,
    /// `--tls` (`--tls=false` disables TLS, also from the file).
    pub tls: Option<bool>,
    /// `--tlsverify`: require and verify client certificates.
    pub tls_verify: Option<bool>,
    /// `--tlscert`: server certificate file.
    pub tls_cert: Option<PathBuf>,
    /// `--tlskey`: server private key file.
    pub tls_key: Option<PathBuf>,
    /// `--tlscacert`: CA for client certificates.
    pub tls_ca_cert: Option<PathBuf>,
    /// `-js/--jetstream`.
    pub jetstream: Option<bool>,
    /// `-sd/--store_dir`.
    pub store_dir: Option<PathBuf>,
}

/// A command line that cannot be parsed; Display is Go's `flag` wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// `flag provided but not defined: -foo`.
    #[error("flag provided but not defined: -{0}")]
    Unknown(String),
    /// `flag needs an argument: -p`.
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    /// `invalid value "abc" for flag -p: parse error`.
    #[error("invalid value {value:?} for flag -{flag}: parse error")]
    InvalidValue {
        /// The flag name.
        flag: String,
        /// The value given.
        value: String,
    },
    /// `invalid boolean value "x" for -D: parse error`.
    #[error("invalid boolean value {value:?} for -{flag}: parse error")]
    InvalidBool {
        /// The flag name.
        flag: String,
        /// The value given.
        value: String,
    },
    /// A positional argument: `unrecognized command: "x"`.
    #[error("unrecognized command: {0:?}")]
    Positional(String),
    /// A nats-server flag whose feature this broker does not implement yet.
    #[error("flag -{0} is not supported yet")]
    Unsupported(String),
    /// `bad flag syntax: ---x`.
    #[error("bad flag syntax: {0}")]
    BadSyntax(String),
    /// Flags that are fine one by one but not together (nats-server's wording).
    #[error("{0}")]
    Invalid(String),
}

/// nats-server flags for features not implemented yet: (name, takes a value).
const UNSUPPORTED: &[(&str, bool)] = &[
    ("logtime_utc", false),
    ("s", false),
    ("syslog", false),
    ("r", true),
    ("remote_syslog", true),
    ("log_size_limit", true),
    ("max_traced_msg_len", true),
    ("help_tls", false),
];

/// Go `strconv.ParseInt(s, 0, 64)`: optional sign, 0x/0o/0b/0 prefixes, `_` separators.
fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string())
    } else {
        (10, lower.clone())
    };
    if radix == 10 && digits.contains('_') {
        return None;
    }
    let digits = digits.replace('_', "");
    if digits.is_empty() || digits.starts_with('+') || digits.starts_with('-') {
        return None;
    }
    let v = i64::from_str_radix(&digits, radix).ok()?;
    Some(if neg { -v } else { v })
}

fn parse_go_bool(flag: &str, v: &str) -> Result<bool, CliError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(CliError::InvalidBool {
            flag: flag.to_string(),
            value: v.to_string(),
        }),
    }
}

fn parse_port(flag: &str, v: &str) -> Result<i32, CliError> {
    parse_go_int(v)
        .and_then(|i| i32::try_from(i).ok())
        .ok_or_else(|| CliError::InvalidValue {
            flag: flag.to_string(),
            value: v.to_string(),
        })
}

/// Parse the arguments after the program name.
pub fn parse_args<I, S>(args: I) -> Result<Cli, CliError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let mut cli = Cli::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg.len() < 2 || !arg.starts_with('-') {
            return Err(CliError::Positional(arg.clone()));
        }
        let mut name = &arg[1..];
        if let Some(n) = name.strip_prefix('-') {
            if n.is_empty() {
                // `--` ends the flags; anything after is positional.
                if let Some(rest) = args.get(i) {
                    return Err(CliError::Positional(rest.clone()));
                }
                break;
            }
            name = n;
        }
        if name.is_empty() || name.starts_with('-') || name.starts_with('=') {
            return Err(CliError::BadSyntax(arg.clone()));
        }
        let (name, inline) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (name, None),
        };
        let flag = name.to_string();
        // Bool flags: only `-x` or `-x=value`.
        let bool_val = |inline: &Option<String>| -> Result<bool, CliError> {
            match inline {
                Some(v) => parse_go_bool(&flag, v),
                None => Ok(true),
            }
        };
        match name {
            "t" => cli.check_config = bool_val(&inline)?,
            "D" | "debug" => cli.debug = Some(bool_val(&inline)?),
            "V" | "trace" => cli.trace = Some(bool_val(&inline)?),
            "VV" => {
                if bool_val(&inline)? {
                    cli.trace = Some(true);
                    cli.trace_verbose = Some(true);
                }
            }
            "DV" => {
                if bool_val(&inline)? {
                    cli.debug = Some(true);
                    cli.trace = Some(true);
                }
            }
            "DVV" => {
                if bool_val(&inline)? {
                    cli.debug = Some(true);
                    cli.trace = Some(true);
                    cli.trace_verbose = Some(true);
                }
            }
            "T" | "logtime" => cli.logtime = Some(bool_val(&inline)?),
            "v" | "version" => cli.version = bool_val(&inline)?,
            "h" | "help" => cli.help = bool_val(&inline)?,
            "tls" => cli.tls = Some(bool_val(&inline)?),
            "ldm_on_sigterm" => cli.ldm_on_sigterm = Some(bool_val(&inline)?),
            "tlsverify" => cli.tls_verify = Some(bool_val(&inline)?),
            "no_advertise" => cli.no_advertise = Some(bool_val(&inline)?),
            "js" | "jetstream" => cli.jetstream = Some(bool_val(&inline)?),
            "a" | "addr" | "net" | "p" | "port" | "m" | "http_port" | "ms" | "https_port" | "c"
            | "config" | "n" | "name" | "server_name" | "l" | "log" | "P" | "pid"
            | "ports_file_dir" | "client_advertise" | "sl" | "signal" | "user" | "pass"
            | "auth" | "tlscert" | "tlskey" | "tlscacert" | "routes" | "cluster"
            | "cluster_listen" | "cluster_name" | "cluster_advertise" | "connect_retries"
            | "sd" | "store_dir" | "profile" => {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        let v = args
                            .get(i)
                            .ok_or_else(|| CliError::MissingValue(flag.clone()))?;
                        i += 1;
                        v.clone()
                    }
                };
                match name {
                    "a" | "addr" | "net" => cli.host = Some(value),
                    "p" | "port" => cli.port = Some(parse_port(name, &value)?),
                    "m" | "http_port" => cli.http_port = Some(parse_port(name, &value)?),
                    "profile" => cli.prof_port = Some(parse_port(name, &value)?),
                    "ms" | "https_port" => cli.https_port = Some(parse_port(name, &value)?),
                    "c" | "config" => cli.config = Some(PathBuf::from(value)),
                    "n" | "name" | "server_name" => cli.server_name = Some(value),
                    "l" | "log" => cli.log_file = Some(PathBuf::from(value)),
                    "P" | "pid" => cli.pid_file = Some(PathBuf::from(value)),
                    "ports_file_dir" => cli.ports_file_dir = Some(PathBuf::from(value)),
                    "client_advertise" => cli.client_advertise = Some(value),
                    "user" => cli.user = Some(value),
                    "pass" => cli.pass = Some(value),
                    "auth" => cli.auth = Some(value),
                    "tlscert" => cli.tls_cert = Some(PathBuf::from(value)),
                    "tlskey" => cli.tls_key = Some(PathBuf::from(value)),
                    "tlscacert" => cli.tls_ca_cert = Some(PathBuf::from(value)),
                    "routes" => cli.routes = Some(value),
                    "cluster" | "cluster_listen" => cli.cluster = Some(value),
                    "cluster_name" => cli.cluster_name = Some(value),
                    "cluster_advertise" => cli.cluster_advertise = Some(value),
                    "connect_retries" => cli.connect_retries = Some(parse_port(name, &value)?),
                    "sd" | "store_dir" => cli.store_dir = Some(PathBuf::from(value)),
                    _ => cli.signal = Some(value),
                }
            }
            _ => {
                if let Some((_, takes_value)) = UNSUPPORTED.iter().find(|(n, _)| *n == name) {
                    if *takes_value && inline.is_none() && i >= args.len() {
                        return Err(CliError::MissingValue(flag));
                    }
                    return Err(CliError::Unsupported(flag));
                }
                return Err(CliError::Unknown(flag));
            }
        }
    }
    // nats-server's overrideTLS: any `-tls*` flag (unless `-tls=false`) replaces the file's
    // TLS certificate settings and needs both a certificate and a key.
    if cli.tls_override() {
        if cli
            .tls_cert
            .as_ref()
            .is_none_or(|p| p.as_os_str().is_empty())
        {
            return Err(CliError::Invalid(
                "TLS Server certificate must be present and valid".into(),
            ));
        }
        if cli
            .tls_key
            .as_ref()
            .is_none_or(|p| p.as_os_str().is_empty())
        {
            return Err(CliError::Invalid(
                "TLS Server private key must be present and valid".into(),
            ));
        }
    }
    Ok(cli)
}

impl Cli {
    /// Whether `-tls*` flags replace the TLS settings (some given, and not `-tls=false`).
    fn tls_override(&self) -> bool {
        self.tls != Some(false)
            && (self.tls.is_some()
                || self.tls_verify.is_some()
                || self.tls_cert.is_some()
                || self.tls_key.is_some()
                || self.tls_ca_cert.is_some())
    }

    /// `--user/--pass/--auth` over the file, as nats-server merges them: they set the
    /// single `authorization { user, password }` user, and are ignored (as nats-server
    /// ignores its single user) when the file configures a `users` list.
    fn apply_auth(&self, opts: &mut Options) {
        if let Some(t) = &self.auth {
            opts.token = Some(t.clone());
        }
        if self.user.is_none() && self.pass.is_none() {
            return;
        }
        let single = |u: &User| u.account.is_none() && u.nkey.is_none() && u.permissions.is_none();
        match opts.users.as_mut_slice() {
            [] => {
                // nats-server: a password alone does not turn authentication on.
                if let Some(name) = self.user.clone().filter(|u| !u.is_empty()) {
                    opts.users.push(User {
                        username: Some(name),
                        password: self.pass.clone(),
                        ..User::default()
                    });
                }
            }
            [u] if single(u) => {
                if let Some(name) = &self.user {
                    u.username = Some(name.clone());
                }
                if let Some(p) = &self.pass {
                    u.password = Some(p.clone());
                }
            }
            _ => {}
        }
    }

    /// `--tls*` over the file, as nats-server's overrideTLS: certificate, key, CA and
    /// verification come from the flags only (suites and curves back to the defaults);
    /// the file's timeout, `verify_and_map` and `handshake_first` stay.
    fn apply_tls(&self, opts: &mut Options) {
        if self.tls == Some(false) {
            opts.tls = None;
            return;
        }
        if !self.tls_override() {
            return;
        }
        let had_tls = opts.tls.is_some();
        let prev = opts.tls.take().unwrap_or(TlsOptions {
            timeout: Duration::from_secs(2),
            ..TlsOptions::default()
        });
        let t = TlsOptions {
            cert_file: self.tls_cert.clone().unwrap_or_default(),
            key_file: self.tls_key.clone().unwrap_or_default(),
            ca_file: self.tls_ca_cert.clone(),
            verify: self.tls_verify.unwrap_or(false),
            verify_and_map: prev.verify_and_map,
            timeout: prev.timeout,
            handshake_first: prev.handshake_first,
            handshake_first_fallback: prev.handshake_first_fallback,
            cipher_suites: Vec::new(),
            curve_preferences: Vec::new(),
            insecure: false,
            certs: Vec::new(),
        };
        // nats-server: with TLS the default auth timeout is the TLS timeout plus a second.
        if !had_tls && opts.auth_timeout == Options::default().auth_timeout {
            opts.auth_timeout = t.timeout + Duration::from_secs(1);
        }
        opts.tls = Some(t);
    }

    /// Apply the flags that were given on top of `opts` (flags override the file).
    pub fn apply(&self, opts: &mut Options) {
        match self.jetstream {
            Some(true) => {
                opts.jetstream.get_or_insert_with(Default::default);
            }
            Some(false) => opts.jetstream = None,
            None => {}
        }
        if let (Some(js), Some(dir)) = (opts.jetstream.as_mut(), &self.store_dir) {
            js.store_dir = dir.clone();
        }
        if let Some(h) = &self.host {
            // The monitoring host follows the client host unless set on its own.
            if opts.http_host == opts.host {
                opts.http_host = h.clone();
            }
            opts.host = h.clone();
        }
        if let Some(p) = self.port {
            opts.port = p;
        }
        if let Some(p) = self.http_port {
            opts.http_port = p;
        }
        if let Some(p) = self.prof_port {
            opts.prof_port = p;
        }
        if let Some(p) = self.https_port {
            opts.https_port = p;
        }
        if let Some(c) = &self.config {
            opts.config_file = Some(c.clone());
        }
        if self.check_config {
            opts.check_config = true;
        }
        if let Some(n) = &self.server_name {
            opts.server_name = Some(n.clone());
        }
        if let Some(l) = &self.log_file {
            opts.log_file = Some(l.clone());
        }
        if let Some(p) = &self.pid_file {
            opts.pid_file = Some(p.clone());
        }
        if let Some(d) = &self.ports_file_dir {
            opts.ports_file_dir = Some(d.clone());
        }
        if let Some(a) = &self.client_advertise {
            opts.client_advertise = Some(a.clone());
        }
        if let Some(d) = self.debug {
            opts.debug = d;
        }
        if let Some(t) = self.trace {
            opts.trace = t;
        }
        if let Some(t) = self.trace_verbose {
            opts.trace_verbose = t;
        }
        if let Some(t) = self.logtime {
            opts.logtime = t;
        }
        if let Some(l) = self.ldm_on_sigterm {
            opts.lame_duck_on_sigterm = l;
        }
        self.apply_auth(opts);
        self.apply_tls(opts);
        self.apply_cluster(opts);
    }

    /// `--cluster`, `--cluster_name`, `--routes`, ... over the file's `cluster` block.
    fn apply_cluster(&self, opts: &mut Options) {
        let any = self.cluster.is_some()
            || self.cluster_name.is_some()
            || self.routes.is_some()
            || self.cluster_advertise.is_some()
            || self.no_advertise.is_some()
            || self.connect_retries.is_some();
        if !any {
            return;
        }
        let c = opts
            .cluster
            .get_or_insert_with(|| crate::options::ClusterOptions {
                host: "0.0.0.0".into(),
                ..Default::default()
            });
        if let Some(url) = &self.cluster {
            if let Some(hp) = crate::config::cluster::route_host_port(url) {
                if let Some((h, p)) = hp.rsplit_once(':') {
                    c.host = h.trim_matches(|x| x == '[' || x == ']').to_string();
                    c.port = p.parse().unwrap_or(0);
                }
            }
        }
        if let Some(n) = &self.cluster_name {
            c.name = Some(n.clone());
        }
        if let Some(r) = &self.routes {
            c.routes = r
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(a) = &self.cluster_advertise {
            c.advertise = Some(a.clone());
        }
        if let Some(n) = self.no_advertise {
            c.no_advertise = n;
        }
        if let Some(n) = self.connect_retries {
            c.connect_retries = n;
        }
    }
}

/// Help text, modeled on `nats-server -h` (unsupported sections left out).
pub fn usage() -> &'static str {
    "\
Usage: natrix-broker [options]

Server Options:
    -a, --addr, --net <host>         Bind to host address (default: 0.0.0.0)
    -p, --port <port>                Use port for clients (default: 4222)
    -n, --name
        --server_name <server_name>  Server name (default: auto)
    -P, --pid <file>                 File to store PID
    -m, --http_port <port>           Use port for http monitoring
    -ms,--https_port <port>          Use port for https monitoring
    -c, --config <file>              Configuration file
    -t                               Test configuration and exit
    -sl,--signal <signal>[=<pid>]    Send signal to natrix-broker process (ldm, stop, quit, term, reopen, reload)
                                     <pid> can be either a PID (e.g. 1) or the path to a PID file (e.g. /var/run/natrix-broker.pid)
        --ldm_on_sigterm             SIGTERM enters lame duck mode instead of stopping at once
                                     (also `lame_duck_on_sigterm: true`; no preStop hook needed on Kubernetes)
        --client_advertise <string>  Client URL to advertise to other servers
        --ports_file_dir <dir>       Creates a ports file in the specified directory (<executable_name>_<pid>.ports).

Logging Options:
    -l, --log <file>                 File to redirect log output
    -T, --logtime                    Timestamp log entries (default: true)
    -D, --debug                      Enable debugging output
    -V, --trace                      Trace the raw protocol
    -VV                              Verbose trace (traces system account as well)
    -DV                              Debug and trace
    -DVV                             Debug and verbose trace (traces system account as well)

JetStream Options:
    -js, --jetstream                 Enable JetStream functionality
    -sd, --store_dir <dir>           Set the storage directory

Authorization Options:
        --user <user>                User required for connections
        --pass <password>            Password required for connections
        --auth <token>               Authorization token required for connections

TLS Options:
        --tls                        Enable TLS, do not verify clients (default: false)
        --tlscert <file>             Server certificate file
        --tlskey <file>              Private key for server certificate
        --tlsverify                  Enable TLS, verify client certificates
        --tlscacert <file>           Client certificate CA for verification

Cluster Options:
        --routes <rurl-1, rurl-2>    Routes to solicit and connect
        --cluster <cluster-url>      Cluster URL for solicited routes
        --cluster_name <string>      Cluster Name, if not set one will be dynamically generated
        --no_advertise <bool>        Do not advertise known cluster information to clients
        --cluster_advertise <string> Cluster URL to advertise to other servers
        --connect_retries <number>   For implicit routes, number of connect retries
        --cluster_listen <url>       Cluster url from which members can solicit routes

Profiling Options:
        --profile <port>             Profiling HTTP port

Common Options:
    -h, --help                       Show this message
    -v, --version                    Show version
"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Cli, CliError> {
        parse_args(args.iter().copied())
    }

    #[test]
    fn go_style_forms() {
        for form in [
            &["-p", "4222"][..],
            &["--port", "4222"],
            &["-port", "4222"],
            &["--port=4222"],
            &["-port=4222"],
            &["-p=4222"],
        ] {
            assert_eq!(p(form).unwrap().port, Some(4222), "{form:?}");
        }
        assert_eq!(p(&["-p", "-1"]).unwrap().port, Some(-1));
        assert_eq!(p(&["-p", "0x10"]).unwrap().port, Some(16));
    }

    #[test]
    fn all_value_flags() {
        let c = p(&[
            "-a",
            "127.0.0.1",
            "-m",
            "8222",
            "-ms",
            "8443",
            "-c",
            "x.conf",
            "-n",
            "srv",
            "-l",
            "log.txt",
            "-P",
            "pid",
            "--ports_file_dir",
            "/tmp",
            "--client_advertise",
            "h:1",
            "--signal",
            "ldm=12",
        ])
        .unwrap();
        assert_eq!(c.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(c.http_port, Some(8222));
        assert_eq!(c.https_port, Some(8443));
        assert_eq!(c.config, Some(PathBuf::from("x.conf")));
        assert_eq!(c.server_name.as_deref(), Some("srv"));
        assert_eq!(c.log_file, Some(PathBuf::from("log.txt")));
        assert_eq!(c.pid_file, Some(PathBuf::from("pid")));
        assert_eq!(c.ports_file_dir, Some(PathBuf::from("/tmp")));
        assert_eq!(c.client_advertise.as_deref(), Some("h:1"));
        assert_eq!(c.signal.as_deref(), Some("ldm=12"));
        assert_eq!(p(&["--net", "h"]).unwrap().host.as_deref(), Some("h"));
        assert_eq!(p(&["--addr=h"]).unwrap().host.as_deref(), Some("h"));
        assert_eq!(
            p(&["--server_name", "s"]).unwrap().server_name.as_deref(),
            Some("s")
        );
        assert_eq!(
            p(&["-sl", "reload"]).unwrap().signal.as_deref(),
            Some("reload")
        );
    }

    #[test]
    fn bool_flags() {
        let c = p(&["-D", "-V", "-t"]).unwrap();
        assert_eq!(
            (c.debug, c.trace, c.check_config),
            (Some(true), Some(true), true)
        );
        let c = p(&["-DVV"]).unwrap();
        assert_eq!(
            (c.debug, c.trace, c.trace_verbose),
            (Some(true), Some(true), Some(true))
        );
        let c = p(&["-DV"]).unwrap();
        assert_eq!(
            (c.debug, c.trace, c.trace_verbose),
            (Some(true), Some(true), None)
        );
        let c = p(&["-VV"]).unwrap();
        assert_eq!(
            (c.debug, c.trace, c.trace_verbose),
            (None, Some(true), Some(true))
        );
        assert_eq!(p(&["-T=false"]).unwrap().logtime, Some(false));
        assert_eq!(p(&["--logtime"]).unwrap().logtime, Some(true));
        assert!(p(&["-v"]).unwrap().version);
        assert!(p(&["--help"]).unwrap().help);
        // A bool flag does not take the next argument as its value.
        assert_eq!(
            p(&["-D", "false"]).unwrap_err(),
            CliError::Positional("false".into())
        );
    }

    #[test]
    fn errors_like_go() {
        assert_eq!(
            p(&["-foo"]).unwrap_err().to_string(),
            "flag provided but not defined: -foo"
        );
        assert_eq!(
            p(&["-p"]).unwrap_err().to_string(),
            "flag needs an argument: -p"
        );
        assert_eq!(
            p(&["-p", "abc"]).unwrap_err().to_string(),
            "invalid value \"abc\" for flag -p: parse error"
        );
        assert_eq!(
            p(&["-D=maybe"]).unwrap_err().to_string(),
            "invalid boolean value \"maybe\" for -D: parse error"
        );
        assert_eq!(
            p(&["extra"]).unwrap_err().to_string(),
            "unrecognized command: \"extra\""
        );
        assert_eq!(
            p(&["--", "-D"]).unwrap_err(),
            CliError::Positional("-D".into())
        );
        assert_eq!(
            p(&["--max_traced_msg_len", "1"]).unwrap_err(),
            CliError::Unsupported("max_traced_msg_len".into())
        );
        assert_eq!(
            p(&["--tls"]).unwrap_err().to_string(),
            "TLS Server certificate must be present and valid"
        );
        assert_eq!(
            p(&["--tlscert", "c.pem"]).unwrap_err().to_string(),
            "TLS Server private key must be present and valid"
        );
        assert!(p(&["--tls=false", "--tlsverify"]).is_ok());
        assert_eq!(
            p(&["--user"]).unwrap_err(),
            CliError::MissingValue("user".into())
        );
        assert_eq!(
            p(&["---x"]).unwrap_err(),
            CliError::BadSyntax("---x".into())
        );
        assert!(p(&["--"]).is_ok());
    }

    #[test]
    fn flags_override_options() {
        let mut o = Options {
            port: 1234,
            debug: false,
            ..Options::default()
        };
        p(&["-p", "5555", "-D", "-a", "10.0.0.1", "-T=false"])
            .unwrap()
            .apply(&mut o);
        assert_eq!(o.port, 5555);
        assert!(o.debug);
        assert!(!o.logtime);
        assert_eq!(o.host, "10.0.0.1");
        assert_eq!(o.http_host, "10.0.0.1");
        // Unset flags leave the file's values alone.
        let mut o2 = Options {
            port: 1234,
            ..Options::default()
        };
        Cli::default().apply(&mut o2);
        assert_eq!(o2.port, 1234);
        assert!(usage().contains("--http_port"));
    }
}
