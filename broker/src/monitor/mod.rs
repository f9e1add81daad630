//! The HTTP monitoring server: nats-server's endpoints and JSON.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::server::Server;

/// Serves monitoring on an already bound listener until the server shuts down.
pub async fn serve(server: Arc<Server>, listener: TcpListener) {
    let app = Router::new()
        .route("/healthz", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .with_state(server.clone());
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move { server.wait_shutdown().await })
        .await;
}
