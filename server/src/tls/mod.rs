//! Transport security: TLS on the gRPC and admin listeners, client
//! certificates (mTLS), and certificates reloaded without a restart.
//!
//! - [`ListenerTls`]: a listener's rustls configuration, swapped whole when
//!   its files change, so that new connections get the new certificate and
//!   open ones keep theirs.
//! - [`Reloader`]: polls the files' modification times and answers
//!   [`reload_certificates`] (which `shoal-server` calls on SIGHUP).
//! - [`handshake`]: one server-side handshake with a deadline, and the
//!   verified client's identities (its URI and DNS subject alternative
//!   names), which [`ConnectionInfo::client_identities`] exposes to the
//!   services.
//! - [`dev_cert`]: a throwaway CA, server and client certificate for
//!   development (`shoal-server dev-cert`).
//!
//! The handshake runs in the accept stream
//! ([`limits::connections`](crate::limits::connections)), on a task of its
//! own per connection, so the connection cap and deadlines hold for TLS
//! connections too and a slow handshake never holds the accept loop.
//!
//! [`ConnectionInfo::client_identities`]: crate::limits::connections::ConnectionInfo::client_identities

pub mod dev_cert;
mod handshake;
mod identity;
mod reloading;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use handshake::{HandshakeError, Handshakes, handshake};
pub use identity::client_identities;
pub use reloading::{ListenerTls, Reloader, reload_certificates};

/// A listener's TLS, with the limits its handshakes are held to.
#[derive(Debug, Clone)]
pub struct TlsListener {
    /// The certificate and client verification in force.
    pub config: Arc<ListenerTls>,
    /// Time a new connection has to finish its handshake.
    pub handshake_timeout: Duration,
    /// Handshakes in progress, and how many may be.
    pub handshakes: Handshakes,
}

impl TlsListener {
    /// `config` with the handshake limits of `settings`.
    pub fn new(config: Arc<ListenerTls>, settings: &crate::config::TlsSettings) -> Self {
        Self {
            config,
            handshake_timeout: settings.handshake_timeout(),
            handshakes: Handshakes::new(settings.max_handshakes),
        }
    }
}

/// Why TLS could not be set up, or a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file holds no usable PEM of the kind expected.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificate, the key or the CA bundle (for
    /// example a key that does not match the certificate).
    #[error("{what}: {source}")]
    Rustls {
        /// What was being set up.
        what: String,
        /// The cause.
        source: rustls::Error,
    },
    /// The client CA bundle could not make a verifier.
    #[error("client CA {path}: {source}")]
    ClientCa {
        /// The bundle.
        path: PathBuf,
        /// The cause.
        source: rustls::server::VerifierBuilderError,
    },
    /// A development certificate could not be made or written.
    #[error("cannot make development certificates: {0}")]
    DevCert(String),
}
