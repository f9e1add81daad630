//! `natrix-broker`: runs the broker with nats-server's command line.

use std::process::ExitCode;

use natrix_broker::cli;
use natrix_broker::options::Options;
use natrix_broker::server::{Server, VERSION};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
        eprintln!("natrix-broker: --signal {sig}: sending signals is not supported yet");
        return ExitCode::FAILURE;
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
                for w in &warnings {
                    eprintln!("natrix-broker: {w}");
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
    rt.block_on(run(opts))
}

async fn run(opts: Options) -> ExitCode {
    let pid_file = opts.pid_file.clone();
    let ports_file = opts.ports_file_dir.as_deref().map(ports_file_path);
    let server = Server::new(opts);
    tracing::info!("Starting nats-server");
    tracing::info!(
        "  Version:  {} (natrix-broker {})",
        VERSION,
        env!("CARGO_PKG_VERSION")
    );
    tracing::info!("  Name:     {}", server.server_name);
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
    if let Err(e) = server.start().await {
        tracing::error!("Error listening on port: {e}");
        return ExitCode::FAILURE;
    }
    let signal = wait_for_signal().await;
    tracing::info!("Trapped \"{signal}\" signal");
    tracing::info!("Initiating Shutdown...");
    server.shutdown();
    // nats-server removes both files on a clean exit.
    for p in [&pid_file, &ports_file].into_iter().flatten() {
        let _ = std::fs::remove_file(p);
    }
    tracing::info!("Server Exiting..");
    ExitCode::SUCCESS
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

/// Waits for SIGINT or SIGTERM and names it as Go does.
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return "interrupt";
    };
    tokio::select! {
        _ = term.recv() => "terminated",
        _ = int.recv() => "interrupt",
    }
}
