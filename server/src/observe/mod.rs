//! Seeing what the server does: logs and OpenTelemetry traces, Prometheus
//! metrics, per-RPC statistics, open connections and streams, and the admin
//! HTTP listener that serves metrics and probes.
//!
//! - [`telemetry`]: the tracing subscriber, OTLP export and the span of each
//!   call.
//! - [`rpc_layer`]: the tower layer that opens that span and records each
//!   call's code and duration in [`rpc_stats`].
//! - [`traffic`]: connections and streams open now.
//! - [`metrics`]: the Prometheus text, read at scrape time from the same
//!   counters `AdminService.Stats` reports.
//! - [`admin_http`]: `/metrics`, `/healthz` and `/readyz`.

pub mod admin_http;
pub mod metrics;
pub mod rpc_layer;
pub mod rpc_stats;
pub mod telemetry;
pub mod traffic;
