//! `natrix-controller`: the Natrix operator (the reconcile loop is not implemented yet).

use std::process::ExitCode;

use clap::Parser;

/// Command-line flags of the operator.
#[derive(Parser, Debug)]
#[command(
    name = "natrix-controller",
    version,
    about = "Kubernetes operator for Natrix"
)]
struct Args {
    /// Namespaces to watch (all when empty); repeat or separate with commas.
    #[arg(long, value_delimiter = ',')]
    namespace: Vec<String>,
    /// Address of the /metrics and /healthz HTTP server.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: String,
    /// Take a Lease before reconciling (for more than one replica).
    #[arg(long)]
    leader_elect: bool,
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
    eprintln!(
        "natrix-controller: the reconcile loop is not implemented yet; \
         only --print-crds and --help work in this version (flags given: {args:?})"
    );
    ExitCode::from(2)
}
