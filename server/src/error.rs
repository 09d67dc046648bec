//! The server's error type: why serving stopped or could not start.

use std::net::SocketAddr;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A listener's certificate, key or client CA could not be loaded.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The expiry sweeper thread could not start.
    #[error("cannot start the expiry sweeper: {0}")]
    Sweeper(std::io::Error),
    /// The reflection service could not be built from the descriptors.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("gRPC transport failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The OpenTelemetry span exporter could not be built.
    #[error("cannot export traces to {endpoint}: {source}")]
    Exporter {
        /// The configured OTLP endpoint.
        endpoint: String,
        /// The cause.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// The token file could not be used.
    #[error("{0}")]
    Auth(#[from] crate::auth::AuthError),
    /// The data directory could not be locked, recovered or logged to.
    #[error("persistence: {0}")]
    Persistence(#[from] crate::persistence::PersistenceError),
    /// The cluster could not be set up.
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    /// A tracing subscriber was already installed in this process.
    #[error("cannot install logging and tracing: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}
