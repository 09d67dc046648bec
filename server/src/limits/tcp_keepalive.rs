//! Finding dead peers with TCP keepalive rather than HTTP/2 pings.
//!
//! A client whose machine vanished (power lost, a NAT entry dropped) never
//! closes its connection, and a Watch or Pipeline stream open on it would
//! hold the server's memory for ever. Both TCP keepalive and HTTP/2 PING
//! frames find such peers. shoal uses TCP keepalive by default because the
//! kernel sends its probes and reads their answers, while hyper's PING
//! keepalive times every frame it receives: turning pings off saved about
//! 1 000 instructions of some 59 000 per unary Get (callgrind, see
//! BENCHMARKS.md). HTTP/2 pings stay available (`grpc.http2_ping_interval_secs`)
//! for the rare proxy that drops connections without TCP traffic.
//!
//! What TCP keepalive cannot see is a peer whose kernel is alive but whose
//! program is stuck; the idle timeout and each call's deadline bound what
//! such a peer can hold.

use std::io;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

/// Probes a connection receives before it is declared dead.
const PROBES: u32 = 3;

/// When the kernel probes a quiet connection, and how long a peer has to
/// answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveSettings {
    /// Quiet time before the first probe.
    pub idle: Duration,
    /// Time, from the first probe, after which a peer that answered none is
    /// dropped; the [`PROBES`] probes are spread over it.
    pub timeout: Duration,
}

impl KeepaliveSettings {
    /// The time between two probes: `timeout` split between them, at least
    /// one second (the kernel's unit).
    pub fn probe_interval(&self) -> Duration {
        (self.timeout / PROBES).max(Duration::from_secs(1))
    }
}

/// Turns TCP keepalive on for `stream` with `settings`.
///
/// # Errors
/// The socket option could not be set.
pub fn apply(stream: &TcpStream, settings: &KeepaliveSettings) -> io::Result<()> {
    let keepalive = TcpKeepalive::new()
        .with_time(settings.idle.max(Duration::from_secs(1)))
        .with_interval(settings.probe_interval())
        .with_retries(PROBES);
    SockRef::from(stream).set_tcp_keepalive(&keepalive)
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn accepted_sockets_probe_as_configured() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (_client, (accepted, _)) = (client.unwrap(), accepted.unwrap());
        let settings = KeepaliveSettings {
            idle: Duration::from_secs(30),
            timeout: Duration::from_secs(9),
        };
        apply(&accepted, &settings).unwrap();
        let socket = SockRef::from(&accepted);
        assert!(socket.keepalive().unwrap());
        assert_eq!(
            socket.tcp_keepalive_time().unwrap(),
            Duration::from_secs(30)
        );
        assert_eq!(
            socket.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(3)
        );
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), PROBES);
    }

    #[test]
    fn probes_are_at_least_a_second_apart() {
        let settings = KeepaliveSettings {
            idle: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
        };
        assert_eq!(settings.probe_interval(), Duration::from_secs(1));
    }
}
