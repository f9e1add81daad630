//! `natrix-controller`: the Natrix operator (NatsCluster, Account and Stream reconcilers).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use natrix_controller::context::{Context, Settings};
use natrix_controller::leader::LeaseLock;
use natrix_controller::metrics::{self, Metrics};
use natrix_controller::{apply, operator, telemetry};

/// Command-line flags of the operator.
#[derive(Parser, Debug)]
#[command(
    name = "natrix-controller",
    version,
    about = "Kubernetes operator for Natrix"
)]
struct Args {
    /// Namespaces to watch (all when empty); repeat or separate with commas.
    #[arg(long, env = "WATCH_NAMESPACES", value_delimiter = ',')]
    namespace: Vec<String>,
    /// Kubeconfig file (in-cluster config or $KUBECONFIG when unset).
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// Kubeconfig context (its current context when unset).
    #[arg(long)]
    context: Option<String>,
    /// Address of the /metrics and /healthz HTTP server.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Take a Lease before reconciling (for more than one replica).
    #[arg(long)]
    leader_elect: bool,
    /// Name of the leader election Lease.
    #[arg(long, default_value = "natrix-controller")]
    lease_name: String,
    /// Namespace of the Lease ($POD_NAMESPACE, else `default`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Identity in the Lease ($POD_NAME, else the host name and pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Lease duration in seconds (renewed every third of it).
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// NATS URL of a NatsCluster instead of its Services: `[namespace/]name=nats://host:port`
    /// (`;` between the URLs of every server: Accounts are pushed to each).
    #[arg(long, env = "NATRIX_NATS_URLS", value_delimiter = ',')]
    nats_url: Vec<String>,
    /// Monitor URL of a broker pod instead of its IP, for the `/healthz` checks of rolling
    /// upgrades: `[namespace/]pod=http://host:port`.
    #[arg(long, env = "NATRIX_MONITOR_URLS", value_delimiter = ',')]
    monitor_url: Vec<String>,
    /// How long a rolling update may wait on one pod (not Ready, or its /healthz not ok)
    /// before `Degraded` says it is stuck (`RollingUpdateStuck`); it keeps waiting.
    #[arg(long, default_value = "10m", value_parser = parse_deadline)]
    rollout_deadline: Duration,
    /// Seconds between drift checks of each Stream.
    #[arg(long, default_value_t = 30)]
    stream_resync_seconds: u64,
    /// Seconds between pushes of an unchanged Account JWT (brokers that lost it converge).
    #[arg(long, default_value_t = 60)]
    account_resync_seconds: u64,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    log_level: tracing::Level,
    /// OTLP/HTTP endpoint to export traces to as JSON, e.g. `http://otel-collector:4318`
    /// (`/v1/traces` is appended); overrides `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`. No
    /// traces are exported without an endpoint.
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// Print the CRDs as YAML and exit (same output as `crdgen`).
    #[arg(long)]
    print_crds: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_crds {
        for (_, crd) in natrix_controller::crd::all_crds() {
            match natrix_controller::crd::crd_yaml(&crd) {
                Ok(y) => print!("---\n{y}"),
                Err(e) => {
                    eprintln!("natrix-controller: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    let metrics = Arc::new(Metrics::default());
    let exporter = match init_tracing(&args, metrics.clone(), |k| std::env::var(k).ok()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("natrix-controller: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("natrix-controller: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        // Without an OTLP endpoint no export task runs.
        let exporter = exporter.map(telemetry::Exporter::spawn);
        let result = run(args, metrics).await;
        if let Some(e) = exporter {
            e.shutdown(Duration::from_secs(5)).await;
        }
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A duration flag: `10m`, `1h30m`, `600s` (Go/Kubernetes spelling).
fn parse_deadline(s: &str) -> Result<Duration, String> {
    natrix_controller::units::parse_duration(s)
        .filter(|d| *d >= 1.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{s:?}: expected a duration of at least 1s such as 10m or 1h30m"))
}

/// Install the log output and, when an OTLP endpoint is configured, the span exporter's layer;
/// the exporter to spawn once the runtime runs (`None` without an endpoint).
fn init_tracing(
    args: &Args,
    metrics: Arc<Metrics>,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<telemetry::Exporter>> {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let (layer, exporter) = match otlp_config(args, env)? {
        Some(config) => {
            let (l, e) = telemetry::pipeline(config, metrics);
            (Some(l), Some(e))
        }
        None => (None, None),
    };
    let level = LevelFilter::from_level(args.log_level);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_filter(level),
        )
        .with(layer.with_filter(level))
        .try_init()
        .context("installing the tracing subscriber")?;
    Ok(exporter)
}

/// The OTLP export configuration of the flags and environment, if an endpoint is configured.
fn otlp_config(
    args: &Args,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<telemetry::OtlpConfig>> {
    telemetry::OtlpConfig::from_env(args.otlp_endpoint.as_deref(), env)
        .map_err(anyhow::Error::msg)
        .context("OpenTelemetry trace export settings")
}

async fn client(args: &Args) -> anyhow::Result<kube::Client> {
    let opts = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &opts).await?
        }
        None if args.context.is_some() => kube::Config::from_kubeconfig(&opts).await?,
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn run(args: Args, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = Settings {
        nats_urls: Settings::parse_nats_urls(&args.nats_url).map_err(anyhow::Error::msg)?,
        monitor_urls: Settings::parse_monitor_urls(&args.monitor_url)
            .map_err(anyhow::Error::msg)?,
        stream_resync: Duration::from_secs(args.stream_resync_seconds.max(1)),
        account_resync: Duration::from_secs(args.account_resync_seconds.max(1)),
        rollout_deadline: args.rollout_deadline,
        ..Settings::default()
    };
    let client = client(&args).await?;
    let version = client
        .apiserver_version()
        .await
        .context("talking to the Kubernetes API server")?;
    tracing::info!("Kubernetes API server {}", version.git_version);
    let (addr, _server) = metrics::serve(args.metrics_addr, metrics.clone())
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;
    tracing::info!("serving /healthz and /metrics on http://{addr}");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let lock = if args.leader_elect {
        let identity = args.identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "natrix-controller".into());
            format!("{host}-{}", std::process::id())
        });
        let lock = LeaseLock::new(
            client.clone(),
            &args.lease_namespace,
            &args.lease_name,
            &identity,
            Duration::from_secs(args.lease_seconds.max(3)),
        );
        tracing::info!(
            "waiting for Lease {}/{} as {identity}",
            args.lease_namespace,
            args.lease_name
        );
        tokio::select! {
            _ = lock.acquire(Duration::from_secs(2)) => {}
            _ = shutdown_signal() => return Ok(()),
        }
        tracing::info!("leading");
        metrics.set_leader(true);
        Some(lock)
    } else {
        metrics.set_leader(true);
        None
    };

    let pdb = apply::pdb_resource(&client).await;
    tracing::info!("PodDisruptionBudgets as {}", pdb.api_version);
    let ctx = Arc::new(Context::new(client, metrics.clone(), pdb, settings));
    let mut controllers = tokio::spawn(operator::run(ctx, args.namespace.clone(), stop_rx));
    let lost = async {
        match &lock {
            Some(l) => l.hold().await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
        _ = lost => Err(anyhow::anyhow!("lost the leader Lease; exiting so that a new leader takes over")),
        r = &mut controllers => r.map_err(anyhow::Error::from),
    };
    let _ = stop_tx.send(true);
    if !controllers.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(10), controllers).await;
    }
    metrics.set_leader(false);
    if let Some(l) = &lock {
        if let Err(e) = l.release().await {
            tracing::warn!("releasing the Lease: {e}");
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let a = Args::try_parse_from([
            "natrix-controller",
            "--namespace",
            "a,b",
            "--namespace",
            "c",
            "--nats-url",
            "a/nats=nats://127.0.0.1:4222",
            "--metrics-addr",
            "127.0.0.1:0",
            "--leader-elect",
            "--log-level",
            "debug",
        ])
        .unwrap();
        assert_eq!(a.namespace, vec!["a", "b", "c"]);
        assert!(a.leader_elect);
        assert_eq!(a.log_level, tracing::Level::DEBUG);
        assert_eq!(a.stream_resync_seconds, 30);
        assert_eq!(a.rollout_deadline, Duration::from_secs(600));
        let b = Args::try_parse_from(["natrix-controller", "--rollout-deadline", "1h30m"]).unwrap();
        assert_eq!(b.rollout_deadline, Duration::from_secs(5400));
        assert!(Args::try_parse_from(["natrix-controller", "--rollout-deadline", "soon"]).is_err());
        assert!(Args::try_parse_from(["natrix-controller", "--rollout-deadline", "0s"]).is_err());
        let urls = Settings::parse_nats_urls(&a.nats_url).unwrap();
        assert_eq!(urls["a/nats"], "nats://127.0.0.1:4222");
        assert!(Args::try_parse_from(["natrix-controller", "--metrics-addr", "nope"]).is_err());
    }

    #[test]
    fn otlp_only_with_an_endpoint() {
        let no_env = |_: &str| None;
        let a = Args::try_parse_from(["natrix-controller"]).unwrap();
        assert!(otlp_config(&a, no_env).unwrap().is_none());
        let a = Args::try_parse_from(["natrix-controller", "--otlp-endpoint", "http://c:4318"])
            .unwrap();
        let c = otlp_config(&a, no_env).unwrap().unwrap();
        assert_eq!(c.endpoint, "http://c:4318/v1/traces");
        assert_eq!(c.service_name, "natrix-controller");
        let env = |k: &str| {
            (k == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").then(|| "http://t:4318/v1/traces".into())
        };
        let a = Args::try_parse_from(["natrix-controller"]).unwrap();
        assert_eq!(
            otlp_config(&a, env).unwrap().unwrap().endpoint,
            "http://t:4318/v1/traces"
        );
        let a = Args::try_parse_from(["natrix-controller", "--otlp-endpoint", "c:4318"]).unwrap();
        let e = format!("{:#}", otlp_config(&a, no_env).unwrap_err());
        assert!(e.contains("--otlp-endpoint"), "{e}");
    }
}
