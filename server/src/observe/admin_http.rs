//! The admin HTTP listener: Prometheus metrics and the probes an orchestrator
//! polls.
//!
//! - `GET /metrics`: every metric, in the OpenMetrics text format (see
//!   [`crate::observe::metrics`]).
//! - `GET /healthz`: 200 while the process runs (liveness).
//! - `GET /readyz`: 200 while the server takes calls, 503 once shutdown
//!   began (readiness), exactly when the gRPC health service turns
//!   NOT_SERVING.
//!
//! It is plain HTTP/1.1 on its own port, so scrapers and probes need no
//! gRPC, and a flood of scrapes never competes with the API's connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::observe::metrics::{self, Metrics};

/// Whether the server takes calls; shared by the gRPC health service's
/// owner and `/readyz`.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Ready from the start.
    pub fn ready() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }

    /// The server stopped taking calls.
    pub fn set_not_ready(&self) {
        self.0.store(false, Ordering::Relaxed);
    }

    /// Whether the server takes calls.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Admin {
    metrics: Metrics,
    readiness: Readiness,
}

/// Serves the admin endpoints on `listener` until the task is dropped.
///
/// # Errors
/// When accepting connections fails for good.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    readiness: Readiness,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, readiness)).await
}

fn router(metrics: Metrics, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Arc::new(Admin { metrics, readiness }))
}

async fn scrape(State(admin): State<Arc<Admin>>) -> Response {
    match admin.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode the metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn ready(State(admin): State<Arc<Admin>>) -> (StatusCode, &'static str) {
    if admin.readiness.is_ready() {
        (StatusCode::OK, "serving\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    }
}
