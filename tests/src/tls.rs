//! TLS test helpers: certificates made at test time, a server with `[tls]`
//! on ephemeral ports that is waited on through its health service over
//! TLS, and an HTTPS GET for the admin listener.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shoal_client::{Client, TlsConfig};
use shoal_server::config::{ClientAuth, Config};
use shoal_server::tls::dev_cert::{self, DevCa, Issued, Leaf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How long [`TlsServer::start`] waits for the server to answer SERVING.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A CA and a server certificate for `localhost` and `127.0.0.1` it
/// signed, written to a temporary directory as the server reads them.
#[derive(Debug)]
pub struct Certs {
    /// The CA.
    pub ca: DevCa,
    dir: tempfile::TempDir,
}

impl Certs {
    /// A new CA, with its certificate and a server certificate and key in
    /// files (`ca.pem`, `server.pem`, `server-key.pem`).
    ///
    /// # Panics
    /// When a certificate cannot be made or written.
    pub fn new() -> Self {
        let certs = Self {
            ca: DevCa::new("test CA").expect("CA"),
            dir: tempfile::tempdir().expect("temporary directory"),
        };
        certs.write_server(&certs.ca);
        std::fs::write(certs.path("ca.pem"), certs.ca.cert_pem()).expect("write ca.pem");
        certs
    }

    /// A file in the certificates' directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces `server.pem` and `server-key.pem` with a certificate that
    /// `ca` signed.
    ///
    /// # Panics
    /// When it cannot be made or written.
    pub fn write_server(&self, ca: &DevCa) {
        let server = ca
            .issue(&Leaf::server(&["localhost", "127.0.0.1"]))
            .expect("server certificate");
        write(&self.path("server.pem"), &server.cert_pem);
        dev_cert::write_file(&self.path("server-key.pem"), &server.key_pem, true)
            .expect("write server-key.pem");
    }

    /// `config` with TLS from these files, client certificates as `auth`
    /// asks (verified against this CA).
    pub fn config(&self, mut config: Config, auth: ClientAuth) -> Config {
        config.tls.cert = Some(self.path("server.pem"));
        config.tls.key = Some(self.path("server-key.pem"));
        if auth != ClientAuth::Off {
            config.tls.client_ca = Some(self.path("ca.pem"));
        }
        config.tls.client_auth = auth;
        config
    }

    /// Client TLS trusting this CA.
    pub fn client_tls(&self) -> TlsConfig {
        TlsConfig::new().ca_pem(self.ca.cert_pem())
    }

    /// A client certificate signed by this CA for `uri`.
    ///
    /// # Panics
    /// When it cannot be made.
    pub fn client_cert(&self, uri: &str) -> Issued {
        self.ca
            .issue(&Leaf::client(&[uri], &["client.test"]))
            .expect("client certificate")
    }
}

impl Default for Certs {
    fn default() -> Self {
        Self::new()
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
}

/// A server with `[tls]`, on `127.0.0.1:0`; shut down on drop.
#[derive(Debug)]
pub struct TlsServer {
    addr: SocketAddr,
    admin_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TlsServer {
    /// Starts a server with `config` (listen addresses ignored) and waits
    /// until its health service answers SERVING to a client with `probe`'s
    /// TLS settings.
    ///
    /// # Panics
    /// When it cannot bind or does not become healthy in time.
    pub async fn start(config: Config, probe: TlsConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let admin_addr = admin.local_addr().expect("address");
        let (shutdown, stopped) = oneshot::channel::<()>();
        let engine = shoal_server::engine::Engine::new(config.engine_config());
        tokio::spawn(shoal_server::serve_listeners(
            listener,
            Some(admin),
            config,
            engine,
            async {
                let _ = stopped.await;
            },
        ));
        let server = Self {
            addr,
            admin_addr,
            shutdown: Some(shutdown),
        };
        server.wait_until_serving(probe).await;
        server
    }

    async fn wait_until_serving(&self, probe: TlsConfig) {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let mut backoff = Duration::from_millis(5);
        loop {
            if let Ok(channel) = Client::builder()
                .endpoint(self.endpoint())
                .tls(probe.clone())
                .connect_channel()
                .await
            {
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                let request = tonic_health::pb::HealthCheckRequest::default();
                if let Ok(response) = health.check(request).await
                    && response.into_inner().status
                        == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
                {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "TLS server at {} never became healthy",
                self.addr
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }

    /// The gRPC listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// `https://localhost:PORT`: the name the test certificates carry.
    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// A client with `tls` that connects on its first call.
    ///
    /// # Panics
    /// When the settings are refused before dialling.
    pub fn client(&self, tls: TlsConfig) -> Client {
        Client::builder()
            .endpoint(self.endpoint())
            .tls(tls)
            .max_retries(0)
            .timeout(Duration::from_secs(10))
            .connect_lazy()
            .expect("client")
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// An HTTPS/1.1 GET to `addr`, trusting `ca_pem` and checking the name
/// `localhost`; returns the status code and the body.
///
/// # Panics
/// When the connection, the handshake or the exchange fails.
pub async fn https_get(addr: SocketAddr, ca_pem: &str, path: &str) -> (u16, String) {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.expect("CA PEM")).expect("CA");
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut stream = connector.connect(name, tcp).await.expect("TLS handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    // A server may close without close_notify once it has answered.
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    (status, body.to_string())
}
