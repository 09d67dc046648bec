//! A real server on an ephemeral port, for tests of this workspace and of
//! applications that use shoal.
//!
//! [`TestServer::start`] binds `127.0.0.1:0`, serves in the background and
//! returns once the health service reports SERVING (polled, never a fixed
//! sleep). Dropping the handle shuts the server down. Unless the
//! configuration turns it off, the admin HTTP listener runs too, also on an
//! ephemeral port ([`TestServer::admin_addr`]).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::engine::Engine;
use crate::{Config, ServerError};

/// How long [`TestServer::start`] waits for the server to become healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running server; shut down on drop or by [`TestServer::stop`].
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    /// Starts a server with the default configuration.
    ///
    /// # Panics
    /// When the server cannot bind or does not become healthy in time: a
    /// test cannot go on without it.
    pub async fn start() -> Self {
        Self::start_with(Config::default()).await
    }

    /// Starts a server with `config` (its `listen` address is ignored, and
    /// so is `admin.listen` except to turn the admin listener off).
    ///
    /// # Panics
    /// As [`TestServer::start`].
    pub async fn start_with(config: Config) -> Self {
        let engine = Engine::new(config.engine_config());
        Self::start_with_engine(config, engine).await
    }

    /// Starts a server over `engine` (for example one on a manual clock).
    ///
    /// # Panics
    /// As [`TestServer::start`].
    pub async fn start_with_engine(config: Config, engine: Engine) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let admin = match config.admin.listen {
            Some(_) => Some(
                TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind 127.0.0.1:0"),
            ),
            None => None,
        };
        let admin_addr = admin
            .as_ref()
            .map(|admin| admin.local_addr().expect("local address"));
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::serve_listeners(
            listener,
            admin,
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
            task: Some(task),
        };
        server.wait_until_serving().await;
        server
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the admin HTTP listener (`/metrics`, `/healthz`,
    /// `/readyz`); `None` when the configuration turned it off.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// `http://127.0.0.1:PORT`, as clients take it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Polls the health service until it reports SERVING.
    async fn wait_until_serving(&self) {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let mut backoff = Duration::from_millis(5);
        loop {
            if self.health().await == Some(ServingStatus::Serving) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server at {} never became healthy",
                self.addr
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }

    /// The overall health status, or `None` when the server does not answer.
    pub async fn health(&self) -> Option<ServingStatus> {
        let channel = tonic::transport::Endpoint::from_shared(self.endpoint())
            .ok()?
            .connect()
            .await
            .ok()?;
        let mut client = HealthClient::new(channel);
        let response = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .ok()?;
        ServingStatus::try_from(response.into_inner().status).ok()
    }

    /// Asks the server to shut down (health turns NOT_SERVING, in-flight
    /// calls finish) without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Shuts the server down and waits until it has stopped.
    ///
    /// # Errors
    /// What the server returned.
    ///
    /// # Panics
    /// When the server task panicked.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        self.begin_shutdown();
        match self.task.take() {
            Some(task) => task.await.expect("server task panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}
