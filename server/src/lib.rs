//! The shoal cache server.
//!
//! - [`engine`]: the cache itself: synchronous, no networking, usable
//!   in-process as an embedded cache.
//! - [`service`]: the `shoal.v1` gRPC services over the engine.
//! - [`serve`] / [`run`]: a complete server with health, reflection and
//!   graceful shutdown, as the `shoal-server` binary runs it.
//! - [`auth`]: tokens and the rights they grant per namespace, checked
//!   once per call and per namespace touched.
//! - [`cluster`]: several servers as one cache: membership, key
//!   placement and forwarding to a key's owner.
//! - [`change_feed`]: the engine's change records fanned out to Watch
//!   streams.
//! - [`config`]: settings from defaults, a TOML file, flags and the
//!   environment; [`error`]: why serving stopped.
//! - [`observe`]: logs and OpenTelemetry traces, Prometheus metrics, per-RPC
//!   statistics, and the admin HTTP listener serving them with the probes.
//! - [`persistence`]: the append-only log of change records with group
//!   commit, its file format and recovery (not yet wired into start-up).
//! - [`process`]: settings of the process itself (its memory limit,
//!   transparent huge pages).
//! - [`tls`]: TLS and client certificates on the listeners, reloaded
//!   without a restart.
//! - [`healthcheck`]: the probe behind `shoal-server healthcheck`.
//! - [`testing`]: a real server on an ephemeral port, for tests.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! println!("serving on {}", listener.local_addr()?);
//! let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
//! shoal_server::serve(listener, shoal_server::Config::default(), shutdown).await?;
//! # Ok(())
//! # }
//! ```

pub mod auth;
pub mod change_feed;
pub mod cluster;
pub mod config;
pub mod error;
pub mod healthcheck;
pub mod limits;
pub mod observe;
pub mod persistence;
pub mod process;
pub mod server;
pub mod service;
pub mod testing;
pub mod tls;

/// The cache engine, a crate of its own ([`shoal_engine`]) so that an
/// embedder compiles none of the network; re-exported here so that
/// `shoal_server::engine` paths keep working.
pub use shoal_engine as engine;

pub use config::Config;
pub use error::ServerError;
pub use server::{run, serve, serve_engine, serve_listeners};
