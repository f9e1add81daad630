//! `natrix-broker`: runs the broker with nats-server's command line.

use std::sync::Arc;

use natrix_broker::options::Options;
use natrix_broker::server::Server;

fn main() -> std::process::ExitCode {
    let opts = Options {
        http_port: 8222,
        ..Options::default()
    };
    if let Err(e) = natrix_broker::log::init(opts.debug, opts.trace, opts.logtime, opts.log_file.as_deref()) {
        eprintln!("natrix-broker: cannot open log: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let server: Arc<Server> = Server::new(opts);
        if let Err(e) = server.start().await {
            tracing::error!("{e}");
            return std::process::ExitCode::FAILURE;
        }
        let _ = tokio::signal::ctrl_c().await;
        server.shutdown();
        std::process::ExitCode::SUCCESS
    })
}
