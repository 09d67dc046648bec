//! Open TCP connections and gRPC streams, and the connections the limits
//! closed, for the metrics and for the connection cap.
//!
//! Connections are counted by the [`Connection`](super::connections::Connection)
//! each accepted socket is wrapped in; streams (calls in flight, unary ones
//! included) by the [`RpcLayer`](crate::observe::rpc_layer::RpcLayer).

use std::sync::atomic::{AtomicU64, Ordering};

/// Connections and streams open now, and connections the limits closed.
#[derive(Debug, Default)]
pub struct Traffic {
    connections: AtomicU64,
    streams: AtomicU64,
    refused_at_cap: AtomicU64,
    preface_timeouts: AtomicU64,
    idle_closes: AtomicU64,
}

impl Traffic {
    /// TCP connections open on the gRPC listener.
    pub fn connections_open(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// gRPC calls in flight.
    pub fn streams_open(&self) -> u64 {
        self.streams.load(Ordering::Relaxed)
    }

    /// Connections closed at once because `grpc.max_connections` were open.
    pub fn refused_at_cap(&self) -> u64 {
        self.refused_at_cap.load(Ordering::Relaxed)
    }

    /// Connections closed because the HTTP/2 preface did not arrive in time.
    pub fn preface_timeouts(&self) -> u64 {
        self.preface_timeouts.load(Ordering::Relaxed)
    }

    /// Connections closed after `grpc.idle_timeout_secs` without a call.
    pub fn idle_closes(&self) -> u64 {
        self.idle_closes.load(Ordering::Relaxed)
    }

    pub(crate) fn stream_opened(&self) {
        self.streams.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stream_closed(&self) {
        self.streams.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn count_refused_at_cap(&self) {
        self.refused_at_cap.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_preface_timeout(&self) {
        self.preface_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_idle_close(&self) {
        self.idle_closes.fetch_add(1, Ordering::Relaxed);
    }
}
