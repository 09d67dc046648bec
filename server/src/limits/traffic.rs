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
    refused_at_handshake_cap: AtomicU64,
    handshake_timeouts: AtomicU64,
    client_refusals: AtomicU64,
    handshake_failures: AtomicU64,
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

    /// Connections closed at once because `tls.max_handshakes` were in
    /// progress.
    pub fn refused_at_handshake_cap(&self) -> u64 {
        self.refused_at_handshake_cap.load(Ordering::Relaxed)
    }

    /// Connections closed because their TLS handshake did not finish within
    /// `tls.handshake_timeout_secs`.
    pub fn handshake_timeouts(&self) -> u64 {
        self.handshake_timeouts.load(Ordering::Relaxed)
    }

    /// TLS handshakes that failed on the client's certificate (refused, or
    /// missing when required).
    pub fn client_refusals(&self) -> u64 {
        self.client_refusals.load(Ordering::Relaxed)
    }

    /// TLS handshakes that failed otherwise (not TLS, no common protocol,
    /// the peer went away or refused the server's certificate).
    pub fn handshake_failures(&self) -> u64 {
        self.handshake_failures.load(Ordering::Relaxed)
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

    pub(super) fn count_refused_at_handshake_cap(&self) {
        self.refused_at_handshake_cap
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_handshake_timeout(&self) {
        self.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_client_refused(&self) {
        self.client_refusals.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_handshake_failure(&self) {
        self.handshake_failures.fetch_add(1, Ordering::Relaxed);
    }
}
