//! `shoal-server`: runs the shoal cache server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use shoal_server::config::{Config, LogFormat};
use shoal_server::engine::EvictionPolicy;
use tracing_subscriber::EnvFilter;

/// The shoal cache server: a sharded in-memory cache behind a gRPC API.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file (see server/config/shoal.example.toml).
    #[arg(long, env = "SHOAL_CONFIG")]
    config: Option<PathBuf>,
    /// Address for the gRPC API [default: 127.0.0.1:50051].
    #[arg(long, env = "SHOAL_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Largest value accepted, in bytes [default: 16777216].
    #[arg(long, env = "SHOAL_MAX_VALUE_BYTES")]
    max_value_bytes: Option<usize>,
    /// Memory budget for entries, with K/M/G or KiB/MiB/GiB units, or a share
    /// of the container's memory limit (else of RAM) such as 75%; 0 for no
    /// limit [default: 0].
    #[arg(long, env = "SHOAL_MAX_MEMORY", value_parser = shoal_server::config::parse_memory_budget)]
    max_memory: Option<u64>,
    /// Most keys across namespaces; 0 for no limit [default: 0].
    #[arg(long, env = "SHOAL_MAX_KEYS")]
    max_keys: Option<u64>,
    /// What to evict at a limit: s3fifo, lru, lfu or noeviction [default: s3fifo].
    #[arg(long, env = "SHOAL_EVICTION_POLICY")]
    eviction_policy: Option<EvictionPolicy>,
    /// Log format [default: text]. The level comes from RUST_LOG.
    #[arg(long, env = "SHOAL_LOG_FORMAT")]
    log_format: Option<LogFormat>,
}

impl Args {
    fn into_config(self) -> Result<Config, shoal_server::config::ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(max_value_bytes) = self.max_value_bytes {
            config.engine.max_value_bytes = max_value_bytes;
        }
        if let Some(max_memory) = self.max_memory {
            config.memory.max_memory = max_memory;
        }
        if let Some(max_keys) = self.max_keys {
            config.memory.max_keys = max_keys;
        }
        if let Some(policy) = self.eviction_policy {
            config.memory.eviction_policy = policy;
        }
        if let Some(format) = self.log_format {
            config.log.format = format;
        }
        config.validate()?;
        Ok(config)
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Args::parse().into_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log.format);
    match shoal_server::run(config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "shoal-server failed");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
