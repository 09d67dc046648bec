//! One server-side TLS handshake, with a deadline and a cap on how many run
//! at once.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::ListenerTls;

/// Handshakes in progress on one listener, held to a maximum.
#[derive(Debug, Clone)]
pub struct Handshakes {
    in_progress: Arc<AtomicUsize>,
    max: usize,
}

impl Handshakes {
    /// At most `max` at once.
    pub fn new(max: usize) -> Self {
        Self {
            in_progress: Arc::default(),
            max,
        }
    }

    /// Room for one more handshake, held until the guard is dropped; `None`
    /// when `max` are in progress.
    pub fn try_start(&self) -> Option<HandshakeSlot> {
        self.in_progress
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                (count < self.max).then_some(count + 1)
            })
            .ok()?;
        Some(HandshakeSlot(Arc::clone(&self.in_progress)))
    }

    /// The most at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Handshakes in progress now.
    pub fn in_progress(&self) -> usize {
        self.in_progress.load(Ordering::Acquire)
    }
}

/// One handshake's place under [`Handshakes`]'s maximum.
#[derive(Debug)]
pub struct HandshakeSlot(Arc<AtomicUsize>);

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a handshake did not make a connection.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The deadline (`tls.handshake_timeout_secs`) passed first.
    #[error("no TLS handshake within {0:?} (tls.handshake_timeout_secs)")]
    TimedOut(Duration),
    /// The client's certificate was refused, or it sent none when one is
    /// required.
    #[error("client certificate refused: {0}")]
    ClientRefused(String),
    /// Anything else: not TLS, no protocol in common, the peer went away,
    /// or it refused the server's certificate.
    #[error("TLS handshake failed: {0}")]
    Failed(io::Error),
}

/// Runs the server side of a handshake on `stream` with the configuration in
/// force, within `timeout`. Returns the stream and the identities of the
/// client's certificate (empty without one), or why not; a refused client
/// certificate is logged here, once, with the reason.
///
/// # Errors
/// See [`HandshakeError`].
pub async fn handshake(
    tls: &ListenerTls,
    stream: TcpStream,
    timeout: Duration,
    peer: Option<SocketAddr>,
) -> Result<(TlsStream<TcpStream>, Vec<String>), HandshakeError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
    let outcome = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Err(_) => Err(HandshakeError::TimedOut(timeout)),
        Ok(Err(error)) => Err(classify(error)),
        Ok(Ok(stream)) => {
            let identities = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(super::client_identities)
                .unwrap_or_default();
            Ok((stream, identities))
        }
    };
    match &outcome {
        Err(error @ HandshakeError::ClientRefused(_)) => {
            tracing::warn!(listener = tls.name(), ?peer, %error, "connection refused");
        }
        Err(error) => tracing::debug!(listener = tls.name(), ?peer, %error, "connection closed"),
        Ok(_) => {}
    }
    outcome
}

fn classify(error: io::Error) -> HandshakeError {
    let reason = match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::NoCertificatesPresented) => {
            "none sent, and tls.client_auth is required".to_string()
        }
        Some(rustls::Error::InvalidCertificate(why)) => why.to_string(),
        _ => return HandshakeError::Failed(error),
    };
    HandshakeError::ClientRefused(reason)
}
