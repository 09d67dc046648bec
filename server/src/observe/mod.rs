//! Seeing what the server does: logs and OpenTelemetry traces, Prometheus
//! metrics, per-RPC statistics, and the admin HTTP listener that serves
//! metrics and probes.
//!
//! - [`telemetry`]: the tracing subscriber, OTLP export and the span of each
//!   call.
//! - [`rpc_layer`]: the tower layer that opens that span and records each
//!   call's code and duration in [`rpc_stats`].
//! - [`metrics`]: the Prometheus text, read at scrape time from the same
//!   counters `AdminService.Stats` reports.
//! - [`admin_http`]: `/metrics`, `/healthz` and `/readyz`.
//!
//! The services use the leaves of this folder (spans from [`telemetry`],
//! the counters of [`rpc_stats`]), and one module here reads the services
//! back: [`metrics`] reads the `ServiceState` at scrape
//! time, because that state is where every figure `/metrics` reports is
//! kept, and copying them into a second place on every call would cost the
//! hot path. No file imports one that imports it back.

pub mod admin_http;
pub mod metrics;
pub mod rpc_layer;
pub mod rpc_stats;
pub mod telemetry;
