//! `shoal-server` processes for tests that kill, stop or restart a server:
//! each child listens on loopback only and is killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

/// The `shoal-server` binary beside the running test's, built if it is not
/// there yet (a test run builds the binaries of the packages it tests only).
///
/// # Panics
/// When the build fails.
pub fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let binary = profile_dir.join("shoal-server");
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        command.args([
            "build",
            "--quiet",
            "-p",
            "shoal-server",
            "--bin",
            "shoal-server",
        ]);
        if profile_dir
            .file_name()
            .is_some_and(|name| name == "release")
        {
            command.arg("--release");
        }
        let status = command.status().expect("run cargo build");
        assert!(status.success(), "cargo build of shoal-server failed");
    });
    assert!(binary.exists(), "{} is missing", binary.display());
    binary
}

/// A loopback address with a port free a moment ago.
///
/// # Panics
/// When no port can be bound.
pub fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// A child `shoal-server`, killed when dropped.
#[derive(Debug)]
pub struct ChildServer {
    /// The process.
    pub child: Child,
    /// Its gRPC listener.
    pub addr: SocketAddr,
}

impl ChildServer {
    /// Starts `shoal-server --listen ADDR --admin-listen off ARGS…` with
    /// warnings logged to a pipe on stderr.
    ///
    /// # Panics
    /// When the process cannot be started.
    pub fn spawn<I, S>(addr: SocketAddr, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let child = Command::new(server_binary())
            .args(["--listen", &addr.to_string(), "--admin-listen", "off"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shoal-server");
        Self { child, addr }
    }

    /// `http://ADDR`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until health says SERVING, polling.
    ///
    /// # Panics
    /// When the process exits, or after 30 s.
    pub async fn ready(&mut self) {
        let endpoint = self.endpoint();
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("shoal-server exited at start: {status}");
            }
            if let Ok(channel) = Channel::from_shared(endpoint.clone())
                .expect("endpoint")
                .connect()
                .await
            {
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                if let Ok(reply) = health
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await
                    && reply.into_inner().status == ServingStatus::Serving as i32
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("shoal-server did not become healthy");
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.kill();
    }
}
