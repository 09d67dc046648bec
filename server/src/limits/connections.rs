//! Accepting connections, and closing the ones that only hold the server.
//!
//! - A cap on open connections (`grpc.max_connections`), kept below the
//!   process's open-file limit: a connection over it is closed as soon as
//!   it is accepted, counted and logged, so that the clients already
//!   connected keep being served.
//! - A deadline for the HTTP/2 preface (`grpc.preface_timeout_secs`): a
//!   socket that sends nothing, or part of the preface, is closed.
//! - A deadline for idle connections (`grpc.idle_timeout_secs`): a
//!   connection with no call open for that long is closed (clients
//!   reconnect when they next call).
//! - An accept loop that, when the process runs out of file descriptors,
//!   logs and backs off instead of retrying at once (which kept a core
//!   busy while every new client timed out).
//! - At shutdown the listener is closed at once, so that new clients are
//!   refused and go elsewhere instead of waiting in the backlog.
//! - With TLS (`[tls]`), each handshake runs on a task of its own, so a
//!   slow one never holds the accept loop, within a deadline
//!   (`tls.handshake_timeout_secs`) and under a cap on handshakes in
//!   progress (`tls.max_handshakes`): a connection over it is closed at
//!   once and counted. A connection counts toward `grpc.max_connections`
//!   from its TCP accept, and the preface deadline starts once the
//!   handshake is done.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

use super::byte_budget::ByteBudget;
use super::tcp_keepalive::{self, KeepaliveSettings};
use super::traffic::Traffic;
use crate::auth::{Access, ConnectionCredentials};
use crate::tls::{HandshakeError, TlsListener};

/// Bytes of the HTTP/2 client preface (RFC 9113, section 3.4).
const PREFACE_BYTES: usize = 24;

/// The settings connections are held to.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_connections: u64,
    /// Time a new connection has to send the HTTP/2 preface.
    pub preface_timeout: Duration,
    /// Time a connection may stay open with no call; `None` for ever.
    pub idle_timeout: Option<Duration>,
    /// Bytes of request messages in flight one connection may hold.
    pub inflight_bytes: u64,
    /// TCP keepalive for every accepted connection; `None` for none.
    pub keepalive: Option<KeepaliveSettings>,
    /// TLS on this listener; `None` for plaintext.
    pub tls: Option<TlsListener>,
}

/// What the server knows of one connection; each of its requests carries it
/// in its extensions (tonic puts it there from [`Connected`]).
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The peer's address.
    pub remote: Option<SocketAddr>,
    state: Arc<ConnectionState>,
    /// The rights verified for the one call whose extensions hold this copy
    /// (tonic puts a fresh copy in each request), set by the auth layer.
    /// They travel here rather than in an extension of their own, which
    /// would cost every call an allocation and, as the fourth entry, a
    /// growth of its extensions map.
    caller: Option<Access>,
}

impl ConnectionInfo {
    /// The identities in the client's verified TLS certificate: its URI
    /// subject alternative names (such as `spiffe://shoal/app`), then its
    /// DNS names. Empty on a plaintext connection or when the client sent
    /// no certificate.
    pub fn client_identities(&self) -> &[String] {
        &self.state.client_identities
    }

    /// The credential last verified on this connection.
    pub fn credentials(&self) -> &ConnectionCredentials {
        &self.state.credentials
    }

    /// The rights verified for this copy's call, if the auth layer set them.
    pub fn caller(&self) -> Option<&Access> {
        self.caller.as_ref()
    }

    /// Sets the rights verified for this copy's call.
    pub fn set_caller(&mut self, access: Access) {
        self.caller = Some(access);
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.state.tls
    }

    /// The connection's budget for request messages in flight.
    pub fn inflight(&self) -> &Arc<ByteBudget> {
        &self.state.inflight
    }

    /// Counts a call opened on this connection; the returned guard counts
    /// it closed when dropped.
    pub fn open_stream(&self) -> OpenStream {
        self.state.streams.fetch_add(1, Ordering::AcqRel);
        OpenStream {
            state: Arc::clone(&self.state),
        }
    }
}

#[cfg(test)]
impl ConnectionInfo {
    /// The info of a connection from `remote` with no socket behind it, for
    /// tests of what reads it.
    pub(crate) fn detached(remote: Option<SocketAddr>) -> Self {
        Self {
            remote,
            state: Arc::new(ConnectionState {
                accepted: Instant::now(),
                inflight: Arc::new(ByteBudget::new(u64::MAX)),
                streams: AtomicU64::new(0),
                idle_since_ms: AtomicU64::new(0),
                tls: false,
                client_identities: Vec::new(),
                credentials: ConnectionCredentials::default(),
            }),
            caller: None,
        }
    }
}

/// A call open on a connection; see [`ConnectionInfo::open_stream`].
#[derive(Debug)]
pub struct OpenStream {
    state: Arc<ConnectionState>,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        if self.state.streams.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.state.idle_since_ms.store(
                self.state.accepted.elapsed().as_millis() as u64,
                Ordering::Release,
            );
        }
    }
}

#[derive(Debug)]
struct ConnectionState {
    accepted: Instant,
    inflight: Arc<ByteBudget>,
    streams: AtomicU64,
    /// Milliseconds after `accepted` at which the last call closed.
    idle_since_ms: AtomicU64,
    tls: bool,
    client_identities: Vec<String>,
    credentials: ConnectionCredentials,
}

/// A socket counted as an open connection until dropped: from its accept,
/// through its TLS handshake, to its close.
#[derive(Debug)]
struct Counted(Arc<Traffic>);

impl Counted {
    fn new(traffic: &Arc<Traffic>) -> Self {
        traffic.connection_opened();
        Self(Arc::clone(traffic))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

/// The bytes a connection carries: plain TCP, or TLS over it.
#[derive(Debug)]
enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// An accepted connection: counted as open until dropped, and failed (which
/// makes hyper close it) when a deadline of [`ConnectionLimits`] passes.
#[derive(Debug)]
pub struct Connection {
    stream: Transport,
    traffic: Arc<Traffic>,
    _counted: Counted,
    info: ConnectionInfo,
    preface_deadline: Instant,
    idle_timeout: Option<Duration>,
    preface_read: usize,
    timer: Pin<Box<Sleep>>,
}

impl Connection {
    fn new(
        stream: Transport,
        remote: Option<SocketAddr>,
        client_identities: Vec<String>,
        counted: Counted,
        limits: &ConnectionLimits,
    ) -> Self {
        let accepted = Instant::now();
        let preface_deadline = accepted + limits.preface_timeout;
        let info = ConnectionInfo {
            remote,
            state: Arc::new(ConnectionState {
                accepted,
                inflight: Arc::new(ByteBudget::new(limits.inflight_bytes)),
                streams: AtomicU64::new(0),
                idle_since_ms: AtomicU64::new(0),
                tls: matches!(stream, Transport::Tls(_)),
                client_identities,
                credentials: ConnectionCredentials::default(),
            }),
            caller: None,
        };
        Self {
            stream,
            traffic: Arc::clone(&counted.0),
            _counted: counted,
            info,
            preface_deadline,
            idle_timeout: limits.idle_timeout,
            preface_read: 0,
            timer: Box::pin(tokio::time::sleep_until(preface_deadline)),
        }
    }

    /// When this connection is to be closed if nothing changes, and why.
    fn deadline(&self) -> Option<(Instant, Closing)> {
        if self.preface_read < PREFACE_BYTES {
            return Some((self.preface_deadline, Closing::Preface));
        }
        let state = &self.info.state;
        if state.streams.load(Ordering::Acquire) > 0 {
            return None;
        }
        let idle_since = Duration::from_millis(state.idle_since_ms.load(Ordering::Acquire));
        Some((
            state.accepted + idle_since + self.idle_timeout?,
            Closing::Idle,
        ))
    }

    /// Fails the read when a deadline has passed; otherwise arms the timer
    /// for the next one.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some((deadline, closing)) = self.deadline() else {
            return Poll::Pending;
        };
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let reason = match closing {
            Closing::Preface => {
                self.traffic.count_preface_timeout();
                "no HTTP/2 preface in time (grpc.preface_timeout_secs)"
            }
            Closing::Idle => {
                self.traffic.count_idle_close();
                "idle (grpc.idle_timeout_secs)"
            }
        };
        tracing::debug!(peer = ?self.info.remote, reason, "closing connection");
        Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, reason))
    }
}

/// Why a connection is closed.
#[derive(Debug, Clone, Copy)]
enum Closing {
    Preface,
    Idle,
}

impl Connected for Connection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                self.preface_read += buf.filled().len() - before;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => self.poll_deadline(cx).map(Err),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream) => stream.is_write_vectored(),
            Self::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The connections a listener accepts, held to `limits`, until `stop`
/// completes. The listener is owned by a task of its own, which closes it
/// as soon as `stop` completes, whether or not the stream is still read (a
/// server that has stopped reading would otherwise leave the port taking
/// connections into its backlog for the whole shutdown).
pub fn accept(
    listener: TcpListener,
    limits: ConnectionLimits,
    traffic: Arc<Traffic>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> impl Stream<Item = io::Result<Connection>> + Send {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let mut state = AcceptState {
        listener,
        limits,
        traffic,
        stop: Box::pin(stop),
        backoff: None,
        last_cap_log: None,
        last_handshake_cap_log: None,
        handshaken: sender.clone(),
    };
    tokio::spawn(async move {
        while let Some(connection) = state.next().await {
            if sender.send(Ok(connection)).await.is_err() {
                break;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

struct AcceptState {
    listener: TcpListener,
    limits: ConnectionLimits,
    traffic: Arc<Traffic>,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// The pause before the next accept, while descriptors run out.
    backoff: Option<Duration>,
    last_cap_log: Option<Instant>,
    last_handshake_cap_log: Option<Instant>,
    /// Where handshake tasks deliver the connections they finish.
    handshaken: tokio::sync::mpsc::Sender<io::Result<Connection>>,
}

impl AcceptState {
    /// The next plaintext connection to serve, or `None` once stopped. TLS
    /// connections are handed to handshake tasks, which deliver them.
    async fn next(&mut self) -> Option<Connection> {
        const FIRST_BACKOFF: Duration = Duration::from_millis(10);
        const MAX_BACKOFF: Duration = Duration::from_secs(1);
        loop {
            if let Some(pause) = self.backoff {
                tokio::select! {
                    () = &mut self.stop => return None,
                    () = tokio::time::sleep(pause) => {}
                }
            }
            let accepted = tokio::select! {
                () = &mut self.stop => return None,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    self.backoff = None;
                    if self.traffic.connections_open() >= self.limits.max_connections {
                        self.refuse(peer);
                        continue;
                    }
                    // Nagle's algorithm off: with it, the last frames of a
                    // streamed reply wait for the client's delayed ACK,
                    // which held every GetBatch or Scan call for ~40 ms.
                    let _ = stream.set_nodelay(true);
                    if let Some(keepalive) = &self.limits.keepalive
                        && let Err(error) = tcp_keepalive::apply(&stream, keepalive)
                    {
                        tracing::debug!(%error, %peer, "cannot turn TCP keepalive on");
                    }
                    let counted = Counted::new(&self.traffic);
                    if let Some(tls) = &self.limits.tls {
                        let tls = tls.clone();
                        self.start_handshake(stream, peer, counted, tls);
                        continue;
                    }
                    return Some(Connection::new(
                        Transport::Plain(stream),
                        Some(peer),
                        Vec::new(),
                        counted,
                        &self.limits,
                    ));
                }
                Err(error) if is_out_of_descriptors(&error) => {
                    let pause = self
                        .backoff
                        .map_or(FIRST_BACKOFF, |pause| (pause * 2).min(MAX_BACKOFF));
                    if self.backoff.is_none() {
                        tracing::warn!(
                            %error,
                            open = self.traffic.connections_open(),
                            "cannot accept connections: out of file descriptors; backing off"
                        );
                    }
                    self.backoff = Some(pause);
                }
                // The peer gave up before it was accepted, and the like:
                // nothing to do but take the next.
                Err(error) => tracing::debug!(%error, "accept failed"),
            }
        }
    }

    /// Runs the TLS handshake of `stream` on a task of its own, which
    /// delivers the connection when it is done; closes `stream` at once when
    /// `tls.max_handshakes` are in progress.
    fn start_handshake(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        counted: Counted,
        tls: TlsListener,
    ) {
        let Some(slot) = tls.handshakes.try_start() else {
            self.traffic.count_refused_at_handshake_cap();
            let now = Instant::now();
            if self
                .last_handshake_cap_log
                .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(10))
            {
                self.last_handshake_cap_log = Some(now);
                tracing::warn!(
                    %peer,
                    max = tls.handshakes.max(),
                    refused = self.traffic.refused_at_handshake_cap(),
                    "connection refused: tls.max_handshakes are in progress"
                );
            }
            return;
        };
        let limits = self.limits.clone();
        let deliver = self.handshaken.clone();
        tokio::spawn(async move {
            let handshake =
                crate::tls::handshake(&tls.config, stream, tls.handshake_timeout, Some(peer)).await;
            drop(slot);
            match handshake {
                Ok((stream, identities)) => {
                    let connection = Connection::new(
                        Transport::Tls(Box::new(stream)),
                        Some(peer),
                        identities,
                        counted,
                        &limits,
                    );
                    // The server stopped taking connections: drop it.
                    let _ = deliver.send(Ok(connection)).await;
                }
                Err(HandshakeError::TimedOut(_)) => counted.0.count_handshake_timeout(),
                Err(HandshakeError::ClientRefused(_)) => counted.0.count_client_refused(),
                Err(HandshakeError::Failed(_)) => counted.0.count_handshake_failure(),
            }
        });
    }

    fn refuse(&mut self, peer: SocketAddr) {
        self.traffic.count_refused_at_cap();
        let now = Instant::now();
        if self
            .last_cap_log
            .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(10))
        {
            self.last_cap_log = Some(now);
            tracing::warn!(
                %peer,
                max = self.limits.max_connections,
                refused = self.traffic.refused_at_cap(),
                "connection refused: grpc.max_connections are open"
            );
        }
    }
}

fn is_out_of_descriptors(error: &io::Error) -> bool {
    // EMFILE (24) and ENFILE (23): the process's or the system's limit;
    // ENOBUFS and ENOMEM are as lasting.
    matches!(error.raw_os_error(), Some(23 | 24 | 105 | 12))
}
