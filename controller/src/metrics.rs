//! Reconcile counters, and the `/healthz` + `/metrics` HTTP server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// Counts of one controller.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counts {
    /// Reconciles run.
    pub reconciles: u64,
    /// Reconciles that returned an error.
    pub errors: u64,
    /// Duration of the last reconcile in seconds.
    pub last_seconds: f64,
    /// Sum of every reconcile's duration in seconds.
    pub total_seconds: f64,
}

/// Operator-wide metrics, shared by the reconcilers and the HTTP server.
#[derive(Debug, Default)]
pub struct Metrics {
    counts: Mutex<BTreeMap<&'static str, Counts>>,
    leader: AtomicBool,
    otlp_exported: AtomicU64,
    otlp_dropped_full: AtomicU64,
    otlp_dropped_failed: AtomicU64,
}

impl Metrics {
    /// Record one reconcile of `controller` that took `took` and failed or not.
    pub fn record(&self, controller: &'static str, took: Duration, failed: bool) {
        let mut m = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let c = m.entry(controller).or_default();
        c.reconciles += 1;
        if failed {
            c.errors += 1;
        }
        c.last_seconds = took.as_secs_f64();
        c.total_seconds += took.as_secs_f64();
    }

    /// The counts of one controller.
    pub fn counts(&self, controller: &str) -> Counts {
        let m = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        m.get(controller).cloned().unwrap_or_default()
    }

    /// Mark whether this process holds the leader Lease.
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    /// Whether this process holds the leader Lease.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    /// Count `n` spans exported over OTLP.
    pub fn otlp_exported(&self, n: u64) {
        self.otlp_exported.fetch_add(n, Ordering::Relaxed);
    }

    /// Count `n` spans dropped: `queue_full` (the export queue was full) or `export_failed`.
    pub fn otlp_dropped(&self, n: u64, reason: &str) {
        let c = if reason == "queue_full" {
            &self.otlp_dropped_full
        } else {
            &self.otlp_dropped_failed
        };
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Spans exported, dropped because the queue was full, dropped because an export failed.
    pub fn otlp_counts(&self) -> (u64, u64, u64) {
        (
            self.otlp_exported.load(Ordering::Relaxed),
            self.otlp_dropped_full.load(Ordering::Relaxed),
            self.otlp_dropped_failed.load(Ordering::Relaxed),
        )
    }

    /// Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let m = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, f: &dyn Fn(&Counts) -> String| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (ctl, c) in m.iter() {
                out.push_str(&format!("{name}{{controller=\"{ctl}\"}} {}\n", f(c)));
            }
        };
        family(
            "natrix_controller_reconciliations_total",
            "counter",
            "Reconciles run.",
            &|c| c.reconciles.to_string(),
        );
        family(
            "natrix_controller_reconciliation_errors_total",
            "counter",
            "Reconciles that failed.",
            &|c| c.errors.to_string(),
        );
        family(
            "natrix_controller_reconcile_duration_seconds_sum",
            "counter",
            "Total time spent reconciling.",
            &|c| c.total_seconds.to_string(),
        );
        family(
            "natrix_controller_last_reconcile_duration_seconds",
            "gauge",
            "Duration of the last reconcile.",
            &|c| c.last_seconds.to_string(),
        );
        out.push_str(&format!(
            "# HELP natrix_controller_leader 1 when this replica holds the leader Lease.\n\
             # TYPE natrix_controller_leader gauge\nnatrix_controller_leader {}\n",
            u8::from(self.is_leader())
        ));
        let (exported, full, failed) = self.otlp_counts();
        out.push_str(&format!(
            "# HELP natrix_controller_otlp_spans_exported_total Spans exported over OTLP.\n\
             # TYPE natrix_controller_otlp_spans_exported_total counter\n\
             natrix_controller_otlp_spans_exported_total {exported}\n\
             # HELP natrix_controller_otlp_spans_dropped_total Spans not exported: the queue \
             was full, or the export failed.\n\
             # TYPE natrix_controller_otlp_spans_dropped_total counter\n\
             natrix_controller_otlp_spans_dropped_total{{reason=\"queue_full\"}} {full}\n\
             natrix_controller_otlp_spans_dropped_total{{reason=\"export_failed\"}} {failed}\n"
        ));
        out
    }
}

/// The HTTP routes: `/healthz` (always ok while the process serves) and `/metrics`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics_handler))
        .with_state(metrics)
}

async fn metrics_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        m.render(),
    )
}

/// Bind `addr` and serve the routes until the process ends; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(metrics);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics server stopped: {e}");
        }
    });
    Ok((local, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_text() {
        let m = Metrics::default();
        m.record("natscluster", Duration::from_millis(500), false);
        m.record("natscluster", Duration::from_millis(250), true);
        m.record("stream", Duration::from_millis(10), false);
        m.set_leader(true);
        let c = m.counts("natscluster");
        assert_eq!((c.reconciles, c.errors), (2, 1));
        assert_eq!(c.last_seconds, 0.25);
        let t = m.render();
        assert!(
            t.contains("natrix_controller_reconciliations_total{controller=\"natscluster\"} 2\n")
        );
        assert!(t.contains(
            "natrix_controller_reconciliation_errors_total{controller=\"natscluster\"} 1\n"
        ));
        assert!(t.contains("natrix_controller_reconciliations_total{controller=\"stream\"} 1\n"));
        assert!(t.contains("natrix_controller_leader 1\n"));
        m.otlp_exported(3);
        m.otlp_dropped(2, "queue_full");
        m.otlp_dropped(5, "export_failed");
        let t = m.render();
        assert!(t.contains("natrix_controller_otlp_spans_exported_total 3\n"));
        assert!(t.contains("natrix_controller_otlp_spans_dropped_total{reason=\"queue_full\"} 2\n"));
        assert!(
            t.contains("natrix_controller_otlp_spans_dropped_total{reason=\"export_failed\"} 5\n")
        );
    }
}
