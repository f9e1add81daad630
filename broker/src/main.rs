//! `natrix-broker`: runs the broker with nats-server's command line.

use std::process::ExitCode;
use std::time::Duration;

use natrix_broker::cli;
use natrix_broker::options::Options;
use natrix_broker::server::{Server, VERSION};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("passwd") {
        return passwd();
    }
    let flags = match cli::parse_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}\n{}", cli::usage());
            return ExitCode::from(2);
        }
    };
    if flags.help {
        println!("{}", cli::usage());
        return ExitCode::SUCCESS;
    }
    if flags.version {
        println!(
            "natrix-broker: v{} (nats-server {VERSION} compatible)",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    if let Some(sig) = &flags.signal {
        // As nats-server: send the signal and exit, before any configuration is read.
        return match natrix_broker::signal::process_signal(sig) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("natrix-broker: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let (mut opts, warnings) = match &flags.config {
        Some(path) => match natrix_broker::config::load_file(path) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("natrix-broker: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => (Options::default(), Vec::new()),
    };
    flags.apply(&mut opts);
    if let Err(e) = opts.validate() {
        eprintln!("natrix-broker: {e}");
        return ExitCode::FAILURE;
    }
    if opts.check_config {
        match &flags.config {
            Some(p) => {
                // As nats-server's -t: what is only a warning at startup fails the check.
                if let Some(w) = warnings.first() {
                    eprintln!("natrix-broker: {w}");
                    return ExitCode::FAILURE;
                }
                eprintln!("natrix-broker: configuration file {} is valid", p.display());
                return ExitCode::SUCCESS;
            }
            None => {
                eprintln!("natrix-broker: must specify [-c, --config] option to check configuration file syntax");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(e) = natrix_broker::log::init(
        opts.debug,
        opts.trace,
        opts.logtime,
        opts.log_file.as_deref(),
    ) {
        eprintln!("natrix-broker: cannot open log file: {e}");
        return ExitCode::FAILURE;
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("natrix-broker: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(opts, flags))
}

/// `natrix-broker passwd`: a random password and its bcrypt hash, like the `nats server passwd`
/// tool the NATS docs use for `authorization` blocks.
fn passwd() -> ExitCode {
    let (pass, hash) = natrix_broker::auth::generate_password();
    println!("pass: {pass}");
    println!("bcrypt hash: {hash}");
    ExitCode::SUCCESS
}

async fn run(opts: Options, flags: cli::Cli) -> ExitCode {
    let pid_file = opts.pid_file.clone();
    let ports_file = opts.ports_file_dir.as_deref().map(ports_file_path);
    let server = match natrix_broker::node::build(opts) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("natrix-broker: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!("Starting nats-server");
    tracing::info!(
        "  Version:  {} (natrix-broker {})",
        VERSION,
        env!("CARGO_PKG_VERSION")
    );
    tracing::info!("  Name:     {}", server.server_name);
    if server.options().jetstream.is_some() {
        // The id this server has in JetStream's Raft groups.
        tracing::info!(
            "  Node:     {}",
            natrix_broker::raft::peer::peer_id(&server.server_name)
        );
    }
    tracing::info!("  ID:       {}", server.server_id);
    if let Some(cf) = &server.options().config_file {
        tracing::info!("Using configuration file: {}", cf.display());
    }
    if let Some(p) = &pid_file {
        if let Err(e) = std::fs::write(p, std::process::id().to_string()) {
            tracing::error!("Could not write pidfile: {e}");
            return ExitCode::FAILURE;
        }
    }
    // Trap the signals before announcing readiness: a harness may stop the server the moment
    // it sees `Server is ready`.
    let mut signals = Signals::new();
    if let Err(e) = natrix_broker::node::start(&server).await {
        tracing::error!("Error listening on port: {e}");
        if let Some(p) = &pid_file {
            let _ = std::fs::remove_file(p);
        }
        return ExitCode::FAILURE;
    }
    let ldm_on_sigterm = server.options().lame_duck_on_sigterm;
    // `watch_config`: the digest of what a reload would read, compared at each tick.
    let mut seen = server
        .options()
        .config_file
        .as_ref()
        .map(|f| natrix_broker::system::config_watch::fingerprint(f, &server.options()));
    loop {
        let watch = server.options().watch_config.filter(|_| seen.is_some());
        tokio::select! {
            _ = tokio::time::sleep(watch.unwrap_or(Duration::from_secs(3600))), if watch.is_some() => {
                let opts = server.options();
                let Some(file) = opts.config_file.as_ref() else { continue };
                let now = natrix_broker::system::config_watch::fingerprint(file, &opts);
                if seen != Some(now) {
                    tracing::info!("Configuration change detected on disk, reloading");
                    reload(&server, &flags).await;
                    // What the reload itself changed (e.g. the TLS files named) is the new base.
                    let opts = server.options();
                    seen = Some(natrix_broker::system::config_watch::fingerprint(file, &opts));
                }
            }
            sig = signals.recv() => {
                tracing::info!("Trapped \"{}\" signal", sig.go_name());
                match sig {
                    Sig::Int => break,
                    // nats-server ignores SIGTERM once lame duck mode runs.
                    Sig::Term if server.is_lame_duck() => {}
                    Sig::Term if !ldm_on_sigterm => break,
                    Sig::Term | Sig::Usr2 => {
                        let s = server.clone();
                        tokio::spawn(async move { s.lame_duck_mode().await });
                    }
                    Sig::Usr1 => {
                        if let Err(e) = natrix_broker::log::reopen() {
                            tracing::error!("Failed to re-open log file: {e}");
                        }
                    }
                    Sig::Hup => {
                        reload(&server, &flags).await;
                        if let Some(f) = server.options().config_file.as_ref() {
                            seen = Some(natrix_broker::system::config_watch::fingerprint(f, &server.options()));
                        }
                    }
                }
            }
            // Lame duck mode has evicted every client and shut the server down.
            _ = server.wait_shutdown() => break,
        }
    }
    let open: Vec<u64> = server.clients().iter().map(|c| c.cid).collect();
    if !server.is_shut_down() {
        tracing::info!("Initiating Shutdown...");
        server.shutdown();
    }
    wait_clients_closed(&server, &open).await;
    // nats-server removes both files on a clean exit.
    for p in [&pid_file, &ports_file].into_iter().flatten() {
        let _ = std::fs::remove_file(p);
    }
    tracing::info!("Server Exiting..");
    ExitCode::SUCCESS
}

/// SIGHUP: re-reads the config file, puts the command-line flags over it (as at startup) and
/// applies it; any failure is logged and the running configuration stays.
async fn reload(server: &std::sync::Arc<Server>, flags: &cli::Cli) {
    let result = async {
        let path = server
            .options()
            .config_file
            .clone()
            .ok_or_else(|| natrix_broker::system::reload::NO_CONFIG_FILE.to_string())?;
        let (mut opts, warnings) =
            natrix_broker::config::load_file(&path).map_err(|e| e.to_string())?;
        for w in &warnings {
            tracing::warn!("{w}");
        }
        flags.apply(&mut opts);
        server.reload(opts).await
    }
    .await;
    if let Err(e) = result {
        tracing::error!("Failed to reload server configuration: {e}");
    }
}

/// `<dir>/<executable name>_<pid>.ports`, the file the server writes for `--ports_file_dir`.
fn ports_file_path(dir: &std::path::Path) -> std::path::PathBuf {
    let exe = std::env::args()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "natrix-broker".into());
    dir.join(format!("{}_{}.ports", exe, std::process::id()))
}

/// Waits (at most 2 s) until the connections open at shutdown are closed and filed, so their
/// `Client connection closed` lines come before `Server Exiting..` as with nats-server.
async fn wait_clients_closed(server: &Server, open: &[u64]) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        if server.num_clients() == 0 {
            let closed: std::collections::HashSet<u64> = server
                .closed_clients()
                .iter()
                .map(|c| c.client.cid)
                .collect();
            if open.iter().all(|c| closed.contains(c)) {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A trapped signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sig {
    Term,
    Int,
    Usr1,
    Usr2,
    Hup,
}

impl Sig {
    /// The name Go gives the signal in `Trapped "..." signal`.
    fn go_name(self) -> &'static str {
        match self {
            Sig::Term => "terminated",
            Sig::Int => "interrupt",
            Sig::Usr1 => "user defined signal 1",
            Sig::Usr2 => "user defined signal 2",
            Sig::Hup => "hangup",
        }
    }
}

/// SIGTERM, SIGINT, SIGUSR1, SIGUSR2 and SIGHUP, trapped from creation on.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
    usr1: Option<tokio::signal::unix::Signal>,
    usr2: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the handlers (needs the tokio runtime).
    fn new() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
            usr1: signal(SignalKind::user_defined1()).ok(),
            usr2: signal(SignalKind::user_defined2()).ok(),
            hup: signal(SignalKind::hangup()).ok(),
        }
    }

    /// Waits for the next trapped signal.
    async fn recv(&mut self) -> Sig {
        /// One signal stream; pending forever when it could not be installed.
        async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.term) => Sig::Term,
            _ = next(&mut self.int) => Sig::Int,
            _ = next(&mut self.usr1) => Sig::Usr1,
            _ = next(&mut self.usr2) => Sig::Usr2,
            _ = next(&mut self.hup) => Sig::Hup,
        }
    }
}
