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
//! It is HTTP/1.1 on its own port, so scrapers and probes need no gRPC, and
//! a flood of scrapes never competes with the API's connections. With
//! `[tls]` (and `tls.admin`, the default) it is HTTPS with the server's
//! certificate (or `tls.admin_cert`), asking for no client certificate, so
//! that probes and scrapers need only trust the CA; its handshakes are held
//! to the same deadline and cap as the gRPC listener's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::observe::metrics::{self, Metrics};
use crate::tls::TlsListener;

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

/// Serves the admin endpoints on `listener`, over TLS when `tls` is set,
/// until the task is dropped.
///
/// # Errors
/// When accepting connections fails for good.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    readiness: Readiness,
    tls: Option<TlsListener>,
) -> std::io::Result<()> {
    let router = router(metrics, readiness);
    match tls {
        None => axum::serve(listener, router).await,
        Some(tls) => serve_tls(listener, router, tls).await,
    }
}

/// HTTPS: each connection's handshake, then its requests, on a task of its
/// own.
async fn serve_tls(listener: TcpListener, router: Router, tls: TlsListener) -> std::io::Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors and the like: pause rather than spin.
                tracing::debug!(%error, "admin listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = tls.handshakes.try_start() else {
            tracing::debug!(%peer, "admin listener: tls.max_handshakes in progress; closed");
            continue;
        };
        let router = router.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let handshake =
                crate::tls::handshake(&tls.config, stream, tls.handshake_timeout, Some(peer)).await;
            drop(slot);
            let Ok((stream, _)) = handshake else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "admin connection failed");
            }
        });
    }
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
