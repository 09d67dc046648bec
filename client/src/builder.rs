//! Connection settings and the builder that turns them into a [`Client`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::client::Client;
use crate::compression::Compression;
use crate::error::{Error, Result};
use crate::node::Node;
use crate::pool::ChannelPool;
use crate::retry::RetryPolicy;
use crate::routing::Router;

/// Address used when none is given.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:50051";

/// Default largest message sent or received: the server's 16 MiB value
/// limit plus room for keys, metadata and framing, and for large scan or
/// describe pages.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Largest batch, in keys, that [`ClientBuilder::shared_stream_max_keys`]
/// sends on a shared stream by default: past a few hundred keys the fixed
/// cost of a call of its own no longer matters, and a batch that large
/// would hold up the small ones queued behind it.
pub const DEFAULT_SHARED_STREAM_MAX_KEYS: usize = 256;

/// Builds a [`Client`]: where to connect, which namespace, which deadlines.
///
/// ```no_run
/// # async fn demo() -> shoal_client::Result<()> {
/// use std::time::Duration;
///
/// let client = shoal_client::Client::builder()
///     .endpoint("127.0.0.1:50051")
///     .namespace("prices")
///     .connect_timeout(Duration::from_secs(1))
///     .timeout(Duration::from_millis(200))
///     .max_retries(2)
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientBuilder {
    endpoint: String,
    namespace: String,
    connect_timeout: Duration,
    timeout: Option<Duration>,
    retry: RetryPolicy,
    keepalive_interval: Duration,
    keepalive_timeout: Duration,
    max_message_size: usize,
    connections: usize,
    compression: Option<Compression>,
    shared_stream_max_keys: usize,
    token: Option<AccessToken>,
    token_header: TokenHeader,
    tls: Option<TlsConfig>,
    topology_aware: bool,
}

/// The header a [`ClientBuilder`] carries its token in.
///
/// The server accepts either. They differ in what HTTP/2 does with them:
/// h2 (and nghttp2) never add `authorization` to a connection's header
/// compression table, so a call carrying it sends the whole value, and the
/// server decodes it, every time. `shoal-token` may be added: the first call
/// of a connection sends the secret, later ones a one-byte reference to it.
/// That is safe for shoal's secrets (RFC 7541, section 7.1.3: compression
/// attacks confirm guesses of a whole value, and a 256-bit random secret
/// cannot be guessed; the table belongs to one connection). Choose
/// `Authorization` when a proxy on the way routes on, strips or redacts
/// `authorization` and would not know `shoal-token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TokenHeader {
    /// `shoal-token: <token>`, which HTTP/2 sends in full once per
    /// connection (the default).
    #[default]
    ShoalToken,
    /// `authorization: Bearer <token>`, the standard form, sent in full on
    /// every call.
    Authorization,
}

/// A token as it is sent, in both forms, and never printed: the
/// `authorization` value marked sensitive (HTTP/2 never indexes it), the
/// `shoal-token` value not (see [`TokenHeader`]).
#[derive(Clone)]
pub(crate) struct AccessToken(Result<(http::HeaderValue, http::HeaderValue), String>);

impl AccessToken {
    fn new(secret: &str) -> Self {
        let secret = secret.trim();
        let value = http::HeaderValue::try_from(format!("Bearer {secret}"))
            .and_then(|mut bearer| {
                bearer.set_sensitive(true);
                Ok((bearer, http::HeaderValue::try_from(secret)?))
            })
            .map_err(|_| {
                "the token holds characters a header cannot carry (control characters or \
                 non-ASCII)"
                    .to_string()
            });
        Self(value)
    }

    /// The `authorization` value.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the token cannot be a header value.
    pub(crate) fn header(&self) -> Result<http::HeaderValue> {
        self.0
            .clone()
            .map(|(bearer, _)| bearer)
            .map_err(|message| Error::InvalidArgument { message })
    }

    /// The header and value calls carry in the form `header` says.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the token cannot be a header value.
    pub(crate) fn header_as(
        &self,
        header: TokenHeader,
    ) -> Result<(http::HeaderName, http::HeaderValue)> {
        let (bearer, raw) = self
            .0
            .clone()
            .map_err(|message| Error::InvalidArgument { message })?;
        Ok(match header {
            TokenHeader::ShoalToken => (SHOAL_TOKEN_HEADER, raw),
            TokenHeader::Authorization => (http::header::AUTHORIZATION, bearer),
        })
    }
}

/// The name of the header [`TokenHeader::ShoalToken`] sends.
pub const SHOAL_TOKEN_HEADER: http::HeaderName = http::HeaderName::from_static("shoal-token");

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// PEM text, or the file holding it (read when the client connects).
#[derive(Debug, Clone)]
enum Pem {
    File(PathBuf),
    Text(Vec<u8>),
}

impl Pem {
    fn read(&self) -> Result<Vec<u8>> {
        match self {
            Pem::Text(text) => Ok(text.clone()),
            Pem::File(path) => std::fs::read(path).map_err(|error| Error::Tls {
                reason: format!("cannot read {}: {error}", path.display()),
            }),
        }
    }
}

/// TLS for a [`ClientBuilder`]: which CA to trust (the system's roots
/// unless one is given), which certificate to present to a server that
/// asks for one (mTLS), and which name to verify the server's certificate
/// against (the endpoint's host unless one is given).
///
/// ```no_run
/// # async fn demo() -> shoal_client::Result<()> {
/// use shoal_client::TlsConfig;
///
/// let client = shoal_client::Client::builder()
///     .endpoint("https://cache.internal:50051")
///     .tls(
///         TlsConfig::new()
///             .ca_file("certs/ca.pem")
///             .identity_files("certs/client.pem", "certs/client-key.pem"),
///     )
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct TlsConfig {
    ca: Option<Pem>,
    identity: Option<(Pem, Pem)>,
    domain: Option<String>,
}

impl TlsConfig {
    /// TLS trusting the system's root certificates.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trust the CA certificates in this PEM file instead of the system's.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca = Some(Pem::File(path.into()));
        self
    }

    /// Trust these PEM CA certificates instead of the system's.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca = Some(Pem::Text(pem.into()));
        self
    }

    /// Present this certificate (PEM chain file) and key (PEM file) to a
    /// server that asks for one.
    pub fn identity_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some((Pem::File(cert.into()), Pem::File(key.into())));
        self
    }

    /// Present this certificate and key, both PEM text.
    pub fn identity_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.identity = Some((Pem::Text(cert.into()), Pem::Text(key.into())));
        self
    }

    /// Verify the server's certificate against this name rather than the
    /// endpoint's host (for example when connecting by IP address to a
    /// server whose certificate names only its DNS name).
    pub fn domain_name(mut self, name: impl Into<String>) -> Self {
        self.domain = Some(name.into());
        self
    }

    fn to_tonic(&self) -> Result<ClientTlsConfig> {
        let mut config = ClientTlsConfig::new();
        config = match &self.ca {
            Some(ca) => config.ca_certificate(Certificate::from_pem(ca.read()?)),
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(cert.read()?, key.read()?));
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        Ok(config)
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            namespace: String::new(),
            connect_timeout: Duration::from_secs(5),
            timeout: Some(Duration::from_secs(5)),
            retry: RetryPolicy::default(),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            connections: 1,
            compression: None,
            shared_stream_max_keys: DEFAULT_SHARED_STREAM_MAX_KEYS,
            token: None,
            token_header: TokenHeader::default(),
            tls: None,
            topology_aware: false,
        }
    }
}

impl ClientBuilder {
    /// A builder with the defaults: `http://127.0.0.1:50051`, namespace
    /// `default`, 5 s connect timeout, 5 s per-call deadline, 3 retries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Server address, such as `http://cache:50051`. Without a scheme,
    /// `http://` is assumed, or `https://` with [`tls`](Self::tls) set. An
    /// `https://` address without [`tls`](Self::tls) trusts the system's
    /// root certificates.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    /// Namespace the client works in; empty means `default`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How long establishing a connection may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Deadline of each call, retries included. It is sent to the server
    /// as `grpc-timeout` and also enforced locally, so an unresponsive
    /// server cannot block the caller.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Calls have no deadline.
    pub fn no_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// How many times an idempotent call is retried after a transient
    /// failure; 0 disables retries.
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.retry.max_retries = max_retries;
        self
    }

    /// The whole retry policy, backoff included.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// HTTP/2 keepalive: a PING every `interval`, the connection is dropped
    /// when one is not answered within `timeout`.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive_interval = interval;
        self.keepalive_timeout = timeout;
        self
    }

    /// Sends `token` on every call, streams included, to a server that
    /// checks tokens (see `shoal-server token`), in the header
    /// [`token_header`](Self::token_header) chooses (`shoal-token` unless
    /// told otherwise). The token is kept out of `Debug` output and logs.
    ///
    /// ```
    /// let builder = shoal_client::Client::builder().token("shoal_example");
    /// assert!(!format!("{builder:?}").contains("shoal_example"));
    /// ```
    pub fn token(mut self, token: impl AsRef<str>) -> Self {
        self.token = Some(AccessToken::new(token.as_ref()));
        self
    }

    /// Which header carries the token: [`TokenHeader::ShoalToken`] (the
    /// default, cheaper per call) or [`TokenHeader::Authorization`].
    ///
    /// ```
    /// use shoal_client::TokenHeader;
    ///
    /// let builder = shoal_client::Client::builder()
    ///     .token("shoal_example")
    ///     .token_header(TokenHeader::Authorization);
    /// let (name, _) = builder.credential_header().unwrap().unwrap();
    /// assert_eq!(name, "authorization");
    /// ```
    pub fn token_header(mut self, header: TokenHeader) -> Self {
        self.token_header = header;
        self
    }

    /// The header and value calls carry, if a token was given, as
    /// [`token_header`](Self::token_header) chose: for callers that make
    /// their own requests on a raw channel from
    /// [`connect_channel`](Self::connect_channel).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the token cannot be a header value.
    pub fn credential_header(&self) -> Result<Option<(http::HeaderName, http::HeaderValue)>> {
        self.token
            .as_ref()
            .map(|token| token.header_as(self.token_header))
            .transpose()
    }

    /// The `authorization: Bearer` value of the token, if one was given: for
    /// callers that make their own requests and want the standard form.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the token cannot be a header value.
    pub fn authorization(&self) -> Result<Option<http::HeaderValue>> {
        self.token.as_ref().map(AccessToken::header).transpose()
    }

    /// Largest message sent or received, in bytes.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How many HTTP/2 connections to open; calls take them in turn
    /// (round-robin). 0 counts as 1.
    ///
    /// The default is 1: one HTTP/2 connection already carries up to the
    /// server's limit of concurrent calls (1 024 by default), and every
    /// connection costs the server a socket, buffers and a task, for every
    /// client process. Raise it for a client that keeps more calls than
    /// that in flight, or that moves large values, where one TCP stream
    /// and one connection task become the bottleneck; a few (2 to 4)
    /// usually suffice. Each connection has its own keepalive and
    /// reconnects on its own.
    ///
    /// ```no_run
    /// # async fn demo() -> shoal_client::Result<()> {
    /// let client = shoal_client::Client::builder()
    ///     .endpoint("127.0.0.1:50051")
    ///     .connections(4)
    ///     .connect()
    ///     .await?;
    /// assert_eq!(client.connections(), 4);
    /// # Ok(()) }
    /// ```
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections.max(1);
        self
    }

    /// Compress string values of at least a threshold size before they
    /// are stored, when that makes them smaller. Off by default.
    ///
    /// Whatever the setting, every client reads compressed values back
    /// (they carry a header saying how they were compressed), so writers
    /// can turn it on without touching readers. See [`Compression`] for
    /// when it pays.
    ///
    /// ```no_run
    /// # async fn demo() -> shoal_client::Result<()> {
    /// use shoal_client::Compression;
    ///
    /// let client = shoal_client::Client::builder()
    ///     .compression(Compression::zstd().threshold(1024))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = Some(compression);
        self
    }

    /// Batches of at most this many keys ([`get_many`](Client::get_many),
    /// [`delete_many`](Client::delete_many)) travel as one command on a
    /// long-lived Pipeline stream shared by all callers, one stream per
    /// connection, instead of as a call of their own; larger batches are
    /// split into GetBatch and DeleteBatch calls. 0 sends every batch as
    /// its own call. The default is [`DEFAULT_SHARED_STREAM_MAX_KEYS`].
    ///
    /// A call costs a new HTTP/2 stream (headers, trailers and handler on
    /// both ends), which for a batch of a few dozen keys is most of its
    /// work; a command on a shared stream costs one message each way. The
    /// price is that commands on one stream are answered in turn, so a
    /// large batch would hold up the small ones behind it: hence the
    /// limit.
    ///
    /// ```no_run
    /// # async fn demo() -> shoal_client::Result<()> {
    /// let client = shoal_client::Client::builder()
    ///     .shared_stream_max_keys(0) // a GetBatch call per batch
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn shared_stream_max_keys(mut self, keys: usize) -> Self {
        self.shared_stream_max_keys = keys;
        self
    }

    /// Speak TLS, with these settings (see [`TlsConfig`]).
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Connects now, failing if the server cannot be reached.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEndpoint`] when the endpoint is not a valid URI,
    /// [`Error::InvalidArgument`] when the token cannot be a header value,
    /// [`Error::Tls`] when the TLS settings cannot be used,
    /// [`Error::Connect`] when the connection cannot be established within
    /// the connect timeout (a TLS handshake that fails included).
    pub async fn connect(self) -> Result<Client> {
        self.authorization()?;
        let endpoint = self.transport_endpoint()?;
        let connecting = (0..self.connections).map(|_| endpoint.connect());
        let channels = futures_util::future::try_join_all(connecting)
            .await
            .map_err(|source| Error::Connect {
                endpoint: endpoint.uri().to_string(),
                source,
            })?;
        let routing = self.topology_aware.then(|| self.clone());
        let mut client = self.build_with_pool(ChannelPool::new(channels));
        if let Some(builder) = routing {
            client.router = discover(&client, builder).await?;
        }
        Ok(client)
    }

    /// Sends each key straight to the member of the cluster that owns it,
    /// instead of to the endpoint, which would forward it: one hop less
    /// per call. Off by default.
    ///
    /// [`connect`](Self::connect) then asks the endpoint for the members
    /// (`ClusterService.GetTopology`) and follows their changes; batches
    /// and pipelines are split by owner and merged back in request order.
    /// Every member's address, as the cluster lists it (`--peers`, or the
    /// pod addresses on Kubernetes), must be reachable from the client,
    /// with the same TLS and token settings. A single server, or one
    /// without `ClusterService`, is simply called directly. See the
    /// `routing` module docs for what a stale view costs (a hop, never a
    /// wrong answer). Clients built with [`connect_lazy`](Self::connect_lazy)
    /// or over given channels do not route.
    ///
    /// ```no_run
    /// # async fn demo() -> shoal_client::Result<()> {
    /// let client = shoal_client::Client::builder()
    ///     .endpoint("10.0.0.1:50051")
    ///     .topology_aware(true)
    ///     .connect()
    ///     .await?;
    /// client.set("user:42", "Ada").await?; // straight to its owner
    /// # Ok(()) }
    /// ```
    pub fn topology_aware(mut self, enabled: bool) -> Self {
        self.topology_aware = enabled;
        self
    }

    /// This builder aimed at a cluster member's `address` (`host:port`),
    /// over the scheme of the endpoint it was given.
    pub(crate) fn for_member(&self, address: &str) -> Self {
        let https = self.tls.is_some() || self.endpoint.trim().starts_with("https://");
        let endpoint = if https {
            format!("https://{address}")
        } else {
            format!("http://{address}")
        };
        Self {
            endpoint,
            topology_aware: false,
            ..self.clone()
        }
    }

    /// A client that connects on its first call (and reconnects as needed)
    /// instead of now.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEndpoint`] when the endpoint is not a valid URI,
    /// [`Error::InvalidArgument`] when the token cannot be a header value.
    pub fn connect_lazy(self) -> Result<Client> {
        self.authorization()?;
        let endpoint = self.transport_endpoint()?;
        let channels = (0..self.connections)
            .map(|_| endpoint.connect_lazy())
            .collect();
        Ok(self.build_with_pool(ChannelPool::new(channels)))
    }

    /// Opens one HTTP/2 connection with this builder's transport settings
    /// (scheme, connect timeout, keepalive, no Nagle delay) and returns it
    /// as a raw channel for the generated clients in [`proto`](crate::proto).
    ///
    /// Every call opens a new connection, so a caller can spread load over
    /// several; the `shoal bench` load generator does. The namespace,
    /// deadline, retry and message size settings do not apply to the
    /// channel.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_channel(&self) -> Result<Channel> {
        let endpoint = self.transport_endpoint()?;
        endpoint.connect().await.map_err(|source| Error::Connect {
            endpoint: endpoint.uri().to_string(),
            source,
        })
    }

    /// A client over an existing channel, for custom transports. The
    /// endpoint, connect timeout, keepalive and connection count settings
    /// are not used.
    ///
    /// # Panics
    ///
    /// When the token cannot be a header value.
    pub fn build_with_channel(self, channel: Channel) -> Client {
        self.build_with_pool(ChannelPool::new(vec![channel]))
    }

    /// A client over existing channels, used in turn, as with
    /// [`connections`](Self::connections). The endpoint, connect timeout
    /// and keepalive settings are not used.
    ///
    /// # Panics
    ///
    /// When `channels` is empty, or the token cannot be a header value.
    pub fn build_with_channels(self, channels: Vec<Channel>) -> Client {
        self.build_with_pool(ChannelPool::new(channels))
    }

    fn build_with_pool(self, pool: ChannelPool) -> Client {
        let credential = match self.credential_header() {
            Ok(credential) => credential,
            Err(error) => panic!("{error}"),
        };
        let connections = pool.len();
        let node = Node::new(pool, credential, self.max_message_size);
        Client {
            node: Arc::new(node),
            router: None,
            namespace: Arc::from(self.namespace),
            timeout: self.timeout,
            retry: self.retry,
            compression: self.compression,
            flights: Arc::default(),
            connections,
            shared_stream_max_keys: self.shared_stream_max_keys,
        }
    }

    fn transport_endpoint(&self) -> Result<Endpoint> {
        let uri = match &self.tls {
            Some(_) if !self.endpoint.contains("://") => {
                format!("https://{}", self.endpoint.trim())
            }
            _ => with_scheme(&self.endpoint),
        };
        let https = uri.starts_with("https://");
        if self.tls.is_some() && !https {
            return Err(Error::Tls {
                reason: format!(
                    "TLS settings with the plaintext endpoint {:?}",
                    self.endpoint
                ),
            });
        }
        let endpoint = Endpoint::from_shared(uri).map_err(|e| Error::InvalidEndpoint {
            endpoint: self.endpoint.clone(),
            reason: e.to_string(),
        })?;
        let endpoint = if https {
            let tls = self.tls.clone().unwrap_or_default().to_tonic()?;
            endpoint.tls_config(tls).map_err(|error| Error::Tls {
                reason: error.to_string(),
            })?
        } else {
            endpoint
        };
        Ok(endpoint
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(self.keepalive_interval)
            .keep_alive_timeout(self.keepalive_timeout)
            .keep_alive_while_idle(true))
    }
}

/// `endpoint` with `http://` in front when it names no scheme.
/// The router of a topology-aware client: `None` for a single server, or
/// one that does not offer `ClusterService`.
async fn discover(client: &Client, builder: ClientBuilder) -> Result<Option<Arc<Router>>> {
    let topology = match client.topology_message().await {
        Ok(topology) => topology,
        Err(Error::Status(status)) if status.code() == tonic::Code::Unimplemented => {
            return Ok(None);
        }
        Err(error) => return Err(error),
    };
    let routable = topology
        .members
        .iter()
        .filter(|member| !member.address.is_empty())
        .count();
    if routable < 2 {
        return Ok(None);
    }
    Ok(Some(Router::start(client.seed_node(), builder, topology)))
}

fn with_scheme(endpoint: &str) -> String {
    let endpoint = endpoint.trim();
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    }
}

/// The ways to make a [`Client`]; they live here, beside the settings they
/// fill in.
impl Client {
    /// A builder for a client with non-default settings.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// Connects to `endpoint` with the default settings.
    ///
    /// # Errors
    ///
    /// See [`ClientBuilder::connect`].
    pub async fn connect(endpoint: impl Into<String>) -> Result<Self> {
        ClientBuilder::new().endpoint(endpoint).connect().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_without_scheme_get_http() {
        assert_eq!(with_scheme("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(with_scheme(" cache:7000 "), "http://cache:7000");
        assert_eq!(with_scheme("http://cache:7000"), "http://cache:7000");
        assert_eq!(with_scheme("https://cache:7000"), "https://cache:7000");
    }

    #[test]
    fn invalid_endpoints_are_rejected_before_dialling() {
        let err = ClientBuilder::new()
            .endpoint("http://bad host:1")
            .connect_lazy()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidEndpoint { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn lazy_clients_keep_their_settings() {
        let client = ClientBuilder::new()
            .endpoint("127.0.0.1:1")
            .namespace("prices")
            .timeout(Duration::from_millis(250))
            .connect_lazy()
            .unwrap();
        assert_eq!(client.namespace(), "prices");
        assert_eq!(client.timeout(), Some(Duration::from_millis(250)));
        let other = client
            .with_namespace("orders")
            .with_timeout(Duration::from_secs(1));
        assert_eq!(other.namespace(), "orders");
        assert_eq!(other.timeout(), Some(Duration::from_secs(1)));
        assert_eq!(client.namespace(), "prices");
    }

    #[tokio::test]
    async fn unreachable_servers_fail_as_unavailable() {
        // Port 1 on loopback is closed: the call fails fast, and after the
        // retries the error says the server is unavailable.
        let client = ClientBuilder::new()
            .endpoint("127.0.0.1:1")
            .retry_policy(
                RetryPolicy::with_max_retries(1)
                    .with_backoff(Duration::from_millis(1), Duration::from_millis(1)),
            )
            .connect_lazy()
            .unwrap();
        let err = client.get("k").await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        assert!(err.is_retryable());

        let err = ClientBuilder::new()
            .endpoint("127.0.0.1:1")
            .connect()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    }
}
