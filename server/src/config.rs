//! Server configuration: defaults, a TOML file, environment and flags.
//!
//! Precedence, lowest first: built-in defaults, the file given by `--config`
//! (or `SHOAL_CONFIG`), then flags and their environment variables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::engine::{EngineConfig, EvictionPolicy};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("invalid setting {setting}: {reason}")]
    Invalid {
        /// The setting, as `section.name`.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Everything the server needs to start.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Address of the gRPC listener.
    pub listen: SocketAddr,
    /// Engine limits and layout.
    pub engine: EngineSettings,
    /// Memory and key budget, and the eviction policy.
    pub memory: MemorySettings,
    /// Expiry sweeping.
    pub expiry: ExpirySettings,
    /// HTTP/2 and gRPC limits.
    pub grpc: GrpcSettings,
    /// The change feed.
    pub watch: WatchSettings,
    /// Logging.
    pub log: LogSettings,
}

/// The `[engine]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct EngineSettings {
    /// Shards per namespace (0 = four per core, at least 16).
    pub shards_per_namespace: usize,
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Largest value, in bytes.
    pub max_value_bytes: usize,
    /// Most namespaces.
    pub max_namespaces: usize,
}

/// The `[memory]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MemorySettings {
    /// Most bytes entries may be charged: an integer, or a string with a
    /// unit such as `"512MiB"` or `"2G"`; 0 for no limit.
    #[serde(deserialize_with = "byte_count")]
    pub max_memory: u64,
    /// Most keys across namespaces; 0 for no limit.
    pub max_keys: u64,
    /// What to evict at a limit: `s3fifo`, `lru`, `lfu` or `noeviction`.
    #[serde(deserialize_with = "eviction_policy")]
    pub eviction_policy: EvictionPolicy,
}

/// Parses a byte count with an optional unit: `K`, `M`, `G` are powers of
/// 1000 and `KiB`, `MiB`, `GiB` powers of 1024.
///
/// # Errors
/// A message naming the text when it is not a byte count.
pub fn parse_byte_count(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|_| {
            format!("{text:?} is not a byte count (examples: 1048576, \"512MiB\", \"2G\")")
        })
}

fn byte_count<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Count {
        Number(u64),
        Text(String),
    }
    match Count::deserialize(deserializer)? {
        Count::Number(count) => Ok(count),
        Count::Text(text) => parse_byte_count(&text).map_err(serde::de::Error::custom),
    }
}

fn eviction_policy<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<EvictionPolicy, D::Error> {
    String::deserialize(deserializer)?
        .parse()
        .map_err(serde::de::Error::custom)
}

/// The `[expiry]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ExpirySettings {
    /// Milliseconds between sweeps.
    pub sweep_interval_ms: u64,
}

/// The `[grpc]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct GrpcSettings {
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Resets tolerated before GOAWAY.
    pub max_pending_accept_reset_streams: usize,
    /// Largest header list, in bytes.
    pub max_header_list_size: u32,
    /// Seconds between keepalive pings.
    pub keepalive_interval_secs: u64,
    /// Seconds to wait for a keepalive answer.
    pub keepalive_timeout_secs: u64,
    /// Longest a request may run, in seconds.
    pub request_timeout_secs: u64,
    /// Seconds in-flight calls get to finish at shutdown.
    pub shutdown_grace_secs: u64,
    /// Most keys one GetBatch or DeleteBatch request, or one SetBatch chunk,
    /// may name.
    pub max_batch_items: usize,
}

/// The `[watch]` section: the change feed behind `WatchService`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct WatchSettings {
    /// Events buffered per watched namespace; a watcher further behind gets
    /// a resync event instead of more server memory.
    pub buffer_events: usize,
    /// Watch streams open at once, over all namespaces.
    pub max_watchers: usize,
}

/// The `[log]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LogSettings {
    /// Output format.
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Default gRPC port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            engine: EngineSettings::default(),
            memory: MemorySettings::default(),
            expiry: ExpirySettings::default(),
            grpc: GrpcSettings::default(),
            watch: WatchSettings::default(),
            log: LogSettings::default(),
        }
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        let engine = EngineConfig::default();
        Self {
            shards_per_namespace: engine.shards_per_namespace,
            max_key_bytes: engine.max_key_bytes,
            max_value_bytes: engine.max_value_bytes,
            max_namespaces: engine.max_namespaces,
        }
    }
}

impl Default for ExpirySettings {
    fn default() -> Self {
        Self {
            sweep_interval_ms: 100,
        }
    }
}

impl Default for GrpcSettings {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 1024,
            max_pending_accept_reset_streams: 100,
            max_header_list_size: 16 * 1024,
            keepalive_interval_secs: 30,
            keepalive_timeout_secs: 10,
            request_timeout_secs: 60,
            shutdown_grace_secs: 10,
            max_batch_items: 10_000,
        }
    }
}

impl Default for WatchSettings {
    fn default() -> Self {
        Self {
            buffer_events: 4096,
            max_watchers: 1024,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
        }
    }
}

impl Config {
    /// Parses a TOML document.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] for bad TOML or unknown keys,
    /// [`ConfigError::Invalid`] for out-of-range values.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: origin.to_path_buf(),
            source: Box::new(source),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a TOML file.
    ///
    /// # Errors
    /// As [`Config::from_toml`], plus [`ConfigError::Read`].
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Checks that every value is usable.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason: &str| {
            Err(ConfigError::Invalid {
                setting,
                reason: reason.to_string(),
            })
        };
        if self.engine.max_key_bytes == 0 {
            return invalid("engine.max_key_bytes", "must be at least 1");
        }
        if self.engine.max_value_bytes > 1 << 30 {
            return invalid("engine.max_value_bytes", "must be at most 1 GiB");
        }
        if self.engine.max_namespaces == 0 {
            return invalid("engine.max_namespaces", "must be at least 1");
        }
        if self.engine.shards_per_namespace > 1 << 16 {
            return invalid("engine.shards_per_namespace", "must be at most 65536");
        }
        if self.expiry.sweep_interval_ms == 0 || self.expiry.sweep_interval_ms > 10_000 {
            return invalid("expiry.sweep_interval_ms", "must be between 1 and 10000");
        }
        if self.grpc.max_concurrent_streams == 0 {
            return invalid("grpc.max_concurrent_streams", "must be at least 1");
        }
        if self.grpc.request_timeout_secs == 0 {
            return invalid("grpc.request_timeout_secs", "must be at least 1");
        }
        if !(1..=1_000_000).contains(&self.grpc.max_batch_items) {
            return invalid("grpc.max_batch_items", "must be between 1 and 1000000");
        }
        if !(16..=1 << 20).contains(&self.watch.buffer_events) {
            return invalid("watch.buffer_events", "must be between 16 and 1048576");
        }
        if self.watch.max_watchers == 0 {
            return invalid("watch.max_watchers", "must be at least 1");
        }
        Ok(())
    }

    /// The engine configuration these settings describe.
    pub fn engine_config(&self) -> EngineConfig {
        let mut engine = EngineConfig::default();
        engine.shards_per_namespace = self.engine.shards_per_namespace;
        engine.max_key_bytes = self.engine.max_key_bytes;
        engine.max_value_bytes = self.engine.max_value_bytes;
        engine.max_namespaces = self.engine.max_namespaces;
        engine.max_keys = self.memory.max_keys;
        engine.max_memory_bytes = self.memory.max_memory;
        engine.eviction_policy = self.memory.eviction_policy;
        engine
    }

    /// Largest gRPC message accepted or sent: room for the largest key and
    /// value plus framing, so that an oversized value reaches validation and
    /// gets a precise INVALID_ARGUMENT rather than a transport error.
    pub fn max_message_bytes(&self) -> usize {
        const FRAMING_BYTES: usize = 64 * 1024;
        self.engine.max_value_bytes + self.engine.max_key_bytes + FRAMING_BYTES
    }

    /// Time in-flight calls get at shutdown.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.grpc.shutdown_grace_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_parses_and_matches_the_defaults() {
        let text = include_str!("../config/shoal.example.toml");
        let config =
            Config::from_toml(text, Path::new("shoal.example.toml")).expect("example parses");
        assert_eq!(config, Config::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_reported() {
        let unknown = Config::from_toml("lisen = \"1.2.3.4:1\"", Path::new("x.toml"));
        assert!(matches!(unknown, Err(ConfigError::Parse { .. })));
        let bad = Config::from_toml("[expiry]\nsweep_interval_ms = 0", Path::new("x.toml"));
        assert!(matches!(
            bad,
            Err(ConfigError::Invalid {
                setting: "expiry.sweep_interval_ms",
                ..
            })
        ));
    }

    #[test]
    fn memory_limits_take_units_and_policy_names() {
        let text = "[memory]\nmax_memory = \"512MiB\"\nmax_keys = 1000\neviction_policy = \"lfu\"";
        let config = Config::from_toml(text, Path::new("x.toml")).expect("parses");
        assert_eq!(config.memory.max_memory, 512 * 1024 * 1024);
        assert_eq!(config.memory.eviction_policy, EvictionPolicy::Lfu);
        assert_eq!(config.engine_config().max_keys, 1000);
        let numeric =
            Config::from_toml("[memory]\nmax_memory = 4096", Path::new("x.toml")).expect("parses");
        assert_eq!(numeric.memory.max_memory, 4096);
        assert!(
            Config::from_toml(
                "[memory]\neviction_policy = \"random\"",
                Path::new("x.toml")
            )
            .is_err()
        );
        assert!(Config::from_toml("[memory]\nmax_memory = \"lots\"", Path::new("x.toml")).is_err());
        assert_eq!(parse_byte_count("2G"), Ok(2_000_000_000));
    }

    #[test]
    fn a_partial_file_keeps_other_defaults() {
        let config = Config::from_toml("[engine]\nmax_value_bytes = 1024", Path::new("x.toml"))
            .expect("parses");
        assert_eq!(config.engine.max_value_bytes, 1024);
        assert_eq!(config.listen, Config::default().listen);
    }
}
