//! Server configuration: defaults, a TOML file, environment and flags.
//!
//! Precedence, lowest first: built-in defaults, the file given by `--config`
//! (or `SHOAL_CONFIG`), then flags and their environment variables.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::engine::{EngineConfig, EvictionPolicy, NamespaceLimits};

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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// The admin HTTP listener: metrics and health probes.
    pub admin: AdminSettings,
    /// Trace export.
    pub telemetry: TelemetrySettings,
    /// Tokens and rights; off unless a token file is named.
    pub auth: AuthSettings,
    /// TLS and client certificates on the listeners.
    pub tls: TlsSettings,
    /// What survives a restart: off by default.
    pub persistence: crate::persistence::settings::PersistenceSettings,
    /// Settings of some namespaces, as `[namespaces.NAME]` tables.
    pub namespaces: BTreeMap<String, NamespaceSettings>,
    /// The other members of a cluster; a single server by default.
    pub cluster: crate::cluster::ClusterSettings,
}

/// A `[namespaces.NAME]` table.
///
/// ```
/// use shoal_server::Config;
///
/// let text = "[persistence]\nmode = \"log\"\ndata_dir = \"/var/lib/shoal\"\n\
///             [namespaces.scratch]\npersistence = false";
/// let config = Config::from_toml(text, std::path::Path::new("shoal.toml")).unwrap();
/// assert!(config.unpersisted_namespaces().contains("scratch"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NamespaceSettings {
    /// Whether the namespace's keys survive a restart when persistence is
    /// on; `false` for pure-cache data that is cheap to rebuild (its
    /// changes are neither logged nor snapshotted).
    pub persistence: bool,
}

impl Default for NamespaceSettings {
    fn default() -> Self {
        Self { persistence: true }
    }
}

/// The `[engine]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct EngineSettings {
    /// Shards per namespace (0 = 128 per core, from 256 to 1024).
    pub shards_per_namespace: usize,
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Largest value, in bytes.
    pub max_value_bytes: usize,
    /// Most namespaces.
    pub max_namespaces: usize,
    /// Seconds a namespace may hold no key before its slot is reclaimed;
    /// 0 keeps empty namespaces.
    pub empty_namespace_grace_secs: u64,
}

/// The `[memory]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MemorySettings {
    /// Most bytes entries may be charged: an integer, a string with a unit
    /// such as `"512MiB"` or `"2G"`, or a share of the memory limit such as
    /// `"75%"` (see [`MemoryBudget`]); 0 for no limit. Holds the resolved
    /// byte count.
    #[serde(deserialize_with = "memory_budget")]
    pub max_memory: u64,
    /// Most keys across namespaces; 0 for no limit.
    pub max_keys: u64,
    /// What to evict at a limit: `tinylfu` (default), `s3fifo`, `lru`, `lfu` or `noeviction`.
    #[serde(deserialize_with = "eviction_policy")]
    pub eviction_policy: EvictionPolicy,
    /// Budgets of their own for some namespaces, as
    /// `[memory.namespaces.NAME]` tables. A namespace's keys and bytes also
    /// count toward the limits above; a write into a namespace that is full
    /// evicts from that namespace (or, under `noeviction`, fails), so one
    /// busy namespace cannot crowd out the rest.
    pub namespaces: BTreeMap<String, NamespaceBudget>,
    /// Let the kernel back the cache with transparent huge pages. Off by
    /// default, so that RSS follows the memory figure (see
    /// [`huge_pages`](crate::process::huge_pages)).
    pub transparent_huge_pages: bool,
}

/// A `[memory.namespaces.NAME]` table.
///
/// ```
/// use shoal_server::Config;
///
/// let text = "[memory.namespaces.sessions]\nmax_memory = \"64MiB\"\nmax_keys = 100000";
/// let config = Config::from_toml(text, std::path::Path::new("shoal.toml")).unwrap();
/// let limits = &config.engine_config().namespace_limits["sessions"];
/// assert_eq!(limits.max_memory_bytes, 64 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NamespaceBudget {
    /// Most bytes the namespace's entries may be charged, written as
    /// `memory.max_memory` is; 0 for no limit of its own.
    #[serde(deserialize_with = "namespace_memory_budget")]
    pub max_memory: u64,
    /// Most keys in the namespace; 0 for no limit of its own.
    pub max_keys: u64,
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

/// A memory budget as written: a byte count, or a share of the memory this
/// process may use (its cgroup limit, else physical memory; see
/// [`memory_limit`](crate::process::memory_limit)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryBudget {
    /// This many bytes.
    Bytes(u64),
    /// This percentage, above 0 and at most 100, of the memory limit.
    Percent(f64),
}

impl MemoryBudget {
    /// Parses `"75%"`, `"512MiB"`, `"2G"` or `"1048576"`.
    ///
    /// # Errors
    /// A message naming the text when it is neither a byte count nor a
    /// percentage above 0% and at most 100%.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(number) = text.trim().strip_suffix('%') else {
            return parse_byte_count(text).map(Self::Bytes);
        };
        let percent: f64 = number
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a percentage (example: \"75%\")"))?;
        if !(percent > 0.0 && percent <= 100.0) {
            return Err(format!(
                "{text:?} is out of range: a share of memory must be above 0% and at most 100%"
            ));
        }
        Ok(Self::Percent(percent))
    }

    /// The budget in bytes, taking a percentage of `limit_bytes`.
    pub fn bytes_of(self, limit_bytes: u64) -> u64 {
        match self {
            Self::Bytes(bytes) => bytes,
            // f64 holds any realistic memory size to well under a byte per GiB.
            Self::Percent(percent) => (limit_bytes as f64 * percent / 100.0) as u64,
        }
    }

    /// The budget in bytes, taking a percentage of the limit
    /// [`memory_limit::detect`](crate::process::memory_limit::detect) finds.
    ///
    /// # Errors
    /// A percentage when no memory limit can be found.
    pub fn resolve(self) -> Result<u64, String> {
        match self {
            Self::Bytes(bytes) => Ok(bytes),
            Self::Percent(_) => Ok(self.bytes_of(crate::process::memory_limit::detect()?.bytes)),
        }
    }
}

/// Parses a memory budget (see [`MemoryBudget::parse`]) and resolves a
/// percentage against this process's memory limit, as `--max-memory` and
/// `SHOAL_MAX_MEMORY` do.
///
/// # Errors
/// As [`MemoryBudget::parse`] and [`MemoryBudget::resolve`].
pub fn parse_memory_budget(text: &str) -> Result<u64, String> {
    MemoryBudget::parse(text)?.resolve()
}

fn memory_budget<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    budget_setting(deserializer, "memory.max_memory")
}

fn namespace_memory_budget<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<u64, D::Error> {
    budget_setting(deserializer, "memory.namespaces: max_memory")
}

/// A memory budget written as a byte count or as text (see
/// [`parse_memory_budget`]); errors name `setting`.
fn budget_setting<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
    setting: &str,
) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Budget {
        Number(u64),
        Text(String),
    }
    match Budget::deserialize(deserializer)? {
        Budget::Number(count) => Ok(count),
        Budget::Text(text) => parse_memory_budget(&text)
            .map_err(|reason| serde::de::Error::custom(format!("{setting}: {reason}"))),
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
    /// Streams a client may make the server reset for its own errors
    /// (malformed frames, a header list too large) before the connection
    /// is closed with GOAWAY: the bound on the "rapid reset" of
    /// server-side resets.
    pub max_local_error_reset_streams: usize,
    /// Largest HTTP/2 frame the server accepts, in bytes (16 KiB to
    /// 16 MiB − 1); larger messages arrive in several frames.
    pub max_frame_size: u32,
    /// Seconds a connection may be quiet before the kernel sends it TCP
    /// keepalive probes; 0 sends none. See `limits::tcp_keepalive` for why
    /// TCP probes rather than HTTP/2 pings.
    pub keepalive_interval_secs: u64,
    /// Seconds a peer has to answer keepalive probes (TCP, and HTTP/2 pings
    /// when they are on) before its connection is dropped.
    pub keepalive_timeout_secs: u64,
    /// Seconds between HTTP/2 PING frames on a quiet connection; 0 (the
    /// default) sends none. Pings cost every call some work (hyper times
    /// each frame it receives), so they are for proxies that drop
    /// connections which carry no HTTP/2 traffic.
    pub http2_ping_interval_secs: u64,
    /// Longest a request may run, in seconds.
    pub request_timeout_secs: u64,
    /// Seconds in-flight calls get to finish at shutdown.
    pub shutdown_grace_secs: u64,
    /// Most keys one GetBatch or DeleteBatch request, or one SetBatch chunk,
    /// may name.
    pub max_batch_items: usize,
    /// Most connections open at once; lowered at start to stay below the
    /// open-file limit. A connection over it is closed when accepted.
    pub max_connections: u64,
    /// Seconds a new connection has to send the HTTP/2 preface.
    pub preface_timeout_secs: u64,
    /// Seconds a connection may stay open with no call; 0 for ever.
    pub idle_timeout_secs: u64,
    /// Bytes of request messages the server holds at once, from a
    /// message's first byte until it has been handled; a message that would
    /// pass it is refused with RESOURCE_EXHAUSTED. Unset: half of
    /// `memory.max_memory`, at least the largest message and at most
    /// 256 MiB (256 MiB with no memory limit); see
    /// [`Config::inflight_budget`].
    pub max_inflight_bytes: Option<u64>,
    /// The same, per connection. Unset: 64 MiB, or the server's budget when
    /// that is smaller.
    pub max_inflight_bytes_per_connection: Option<u64>,
}

/// The in-flight request budgets in force, defaults resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InflightBudget {
    /// Bytes of requests the whole server holds at once.
    pub server: u64,
    /// Bytes of requests one connection holds at once.
    pub per_connection: u64,
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

/// The `[admin]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AdminSettings {
    /// Address of the HTTP listener serving `/metrics`, `/healthz` and
    /// `/readyz`; `None` (written `"off"`) for none.
    #[serde(deserialize_with = "admin_listen")]
    pub listen: Option<SocketAddr>,
}

/// Parses the admin listener's address: `host:port`, or `off` for none.
///
/// # Errors
/// A message naming the text when it is neither.
pub fn parse_admin_listen(text: &str) -> Result<Option<SocketAddr>, String> {
    match text.trim() {
        "off" => Ok(None),
        address => address.parse().map(Some).map_err(|_| {
            format!("{text:?} is neither an address such as 127.0.0.1:9464 nor \"off\"")
        }),
    }
}

fn admin_listen<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    parse_admin_listen(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
}

/// The `[telemetry]` section: OpenTelemetry trace export.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TelemetrySettings {
    /// OTLP/gRPC endpoint spans are exported to, such as
    /// `http://localhost:4317`; empty for no export.
    pub otlp_endpoint: String,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Fraction of the traces started here that are recorded, 0 to 1. A call
    /// whose caller recorded its trace is always recorded.
    pub sampling_ratio: f64,
}

/// The `[auth]` section: tokens and the rights they grant (see
/// [`crate::auth`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AuthSettings {
    /// The token file; unset, every call is allowed (auth off).
    pub token_file: Option<PathBuf>,
    /// Milliseconds between checks of the token file for changes (it is
    /// also read again on SIGHUP).
    pub reload_interval_ms: u64,
    /// Authentication failures one address may make at once before its
    /// calls are refused unchecked.
    pub failure_burst: u32,
    /// Failures an address is allowed again each minute; 0 for none.
    pub failure_refill_per_minute: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            token_file: None,
            reload_interval_ms: 2000,
            failure_burst: 20,
            failure_refill_per_minute: 60,
        }
    }
}

impl AuthSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason: &str| {
            Err(ConfigError::Invalid {
                setting,
                reason: reason.to_string(),
            })
        };
        if !(10..=3_600_000).contains(&self.reload_interval_ms) {
            return invalid("auth.reload_interval_ms", "must be between 10 and 3600000");
        }
        if self.failure_burst == 0 {
            return invalid("auth.failure_burst", "must be at least 1");
        }
        if self
            .token_file
            .as_ref()
            .is_some_and(|path| path.as_os_str().is_empty())
        {
            return invalid(
                "auth.token_file",
                "must not be empty; leave it out for no auth",
            );
        }
        Ok(())
    }
}

/// The `[tls]` section: TLS on the gRPC and admin listeners, and client
/// certificates (mTLS). TLS is on when `cert` and `key` are set.
///
/// ```
/// use shoal_server::config::{ClientAuth, Config};
///
/// let text = "[tls]\ncert = \"server.pem\"\nkey = \"server-key.pem\"\n\
///             client_ca = \"ca.pem\"\nclient_auth = \"required\"";
/// let config = Config::from_toml(text, std::path::Path::new("shoal.toml")).unwrap();
/// assert!(config.tls.enabled());
/// assert_eq!(config.tls.client_auth, ClientAuth::Required);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsSettings {
    /// PEM file with the server's certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// PEM bundle of the CAs whose client certificates are accepted.
    pub client_ca: Option<PathBuf>,
    /// Whether clients must present a certificate signed by `client_ca`.
    pub client_auth: ClientAuth,
    /// Seconds a new connection has to finish its TLS handshake.
    pub handshake_timeout_secs: u64,
    /// TLS handshakes in progress at once, per listener; a connection over
    /// it is closed at once.
    pub max_handshakes: usize,
    /// Seconds between checks of the files for changes; 0 reloads only on
    /// SIGHUP.
    pub reload_interval_secs: u64,
    /// TLS on the admin listener too (with no client certificate asked).
    pub admin: bool,
    /// Certificate chain for the admin listener; `cert` when unset.
    pub admin_cert: Option<PathBuf>,
    /// Private key for the admin listener; `key` when unset.
    pub admin_key: Option<PathBuf>,
}

/// Whether a TLS listener asks for client certificates (`tls.client_auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// None asked for.
    #[default]
    Off,
    /// Asked for and verified when sent; a client may send none.
    Optional,
    /// Every client must send one that verifies.
    Required,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            client_ca: None,
            client_auth: ClientAuth::Off,
            handshake_timeout_secs: 10,
            max_handshakes: 1024,
            reload_interval_secs: 5,
            admin: true,
            admin_cert: None,
            admin_key: None,
        }
    }
}

impl TlsSettings {
    /// Whether the gRPC listener speaks TLS.
    pub fn enabled(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }

    /// Whether the admin listener speaks TLS.
    pub fn admin_enabled(&self) -> bool {
        self.enabled() && self.admin
    }

    /// Seconds a handshake may take, as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason: &str| {
            Err(ConfigError::Invalid {
                setting,
                reason: reason.to_string(),
            })
        };
        if self.cert.is_some() != self.key.is_some() {
            return invalid(
                "tls.cert",
                "tls.cert and tls.key go together: set both or neither",
            );
        }
        if self.admin_cert.is_some() != self.admin_key.is_some() {
            return invalid(
                "tls.admin_cert",
                "tls.admin_cert and tls.admin_key go together: set both or neither",
            );
        }
        if !self.enabled() {
            if self.client_ca.is_some() || self.client_auth != ClientAuth::Off {
                return invalid(
                    "tls.client_auth",
                    "client certificates need tls.cert and tls.key",
                );
            }
            if self.admin_cert.is_some() {
                return invalid("tls.admin_cert", "needs tls.cert and tls.key");
            }
            return Ok(());
        }
        match (self.client_auth, &self.client_ca) {
            (ClientAuth::Off, Some(_)) => {
                return invalid(
                    "tls.client_ca",
                    "is set but tls.client_auth is off: set it to optional or required",
                );
            }
            (ClientAuth::Optional | ClientAuth::Required, None) => {
                return invalid("tls.client_auth", "needs tls.client_ca, the CAs to trust");
            }
            _ => {}
        }
        if self.handshake_timeout_secs == 0 {
            return invalid("tls.handshake_timeout_secs", "must be at least 1");
        }
        if self.max_handshakes == 0 {
            return invalid("tls.max_handshakes", "must be at least 1");
        }
        Ok(())
    }
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
            admin: AdminSettings::default(),
            telemetry: TelemetrySettings::default(),
            auth: AuthSettings::default(),
            tls: TlsSettings::default(),
            persistence: crate::persistence::settings::PersistenceSettings::default(),
            namespaces: BTreeMap::new(),
            cluster: crate::cluster::ClusterSettings::default(),
        }
    }
}

/// Default admin HTTP port.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9464";

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
        }
    }
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            service_name: "shoal".to_string(),
            sampling_ratio: 1.0,
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
            empty_namespace_grace_secs: engine.empty_namespace_grace_ms / 1000,
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
            max_local_error_reset_streams: 1024,
            max_frame_size: 16 * 1024,
            keepalive_interval_secs: 30,
            keepalive_timeout_secs: 10,
            http2_ping_interval_secs: 0,
            request_timeout_secs: 60,
            shutdown_grace_secs: 10,
            max_batch_items: 10_000,
            max_connections: 10_000,
            preface_timeout_secs: 10,
            idle_timeout_secs: 600,
            max_inflight_bytes: None,
            max_inflight_bytes_per_connection: None,
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
        let named = [
            (
                "memory.namespaces",
                self.memory.namespaces.keys().collect::<Vec<_>>(),
            ),
            ("namespaces", self.namespaces.keys().collect()),
        ];
        for (setting, names) in named {
            for name in names {
                if let Err(error) = crate::engine::resolve_namespace_name(name) {
                    return invalid(
                        setting,
                        &format!("{name:?} is not a namespace name: {error}"),
                    );
                }
                if name.is_empty() {
                    return invalid(setting, "name the default namespace \"default\", not \"\"");
                }
            }
        }
        self.persistence.validate()?;
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
        if !(16_384..=16_777_215).contains(&self.grpc.max_frame_size) {
            return invalid(
                "grpc.max_frame_size",
                "must be between 16384 and 16777215 (RFC 9113, section 4.2)",
            );
        }
        if self.grpc.keepalive_interval_secs > 0 && self.grpc.keepalive_timeout_secs == 0 {
            return invalid(
                "grpc.keepalive_timeout_secs",
                "must be at least 1 while keepalive_interval_secs is set",
            );
        }
        if self.grpc.request_timeout_secs == 0 {
            return invalid("grpc.request_timeout_secs", "must be at least 1");
        }
        if self.grpc.max_connections == 0 {
            return invalid("grpc.max_connections", "must be at least 1");
        }
        if self.grpc.preface_timeout_secs == 0 {
            return invalid("grpc.preface_timeout_secs", "must be at least 1");
        }
        let max_message = self.max_message_bytes() as u64;
        let inflight = self.inflight_budget();
        if inflight.per_connection < max_message {
            return invalid(
                "grpc.max_inflight_bytes_per_connection",
                &format!(
                    "must be at least the largest message, {max_message} bytes \
                     (engine.max_value_bytes plus the largest key and framing)"
                ),
            );
        }
        if inflight.server < inflight.per_connection {
            return invalid(
                "grpc.max_inflight_bytes",
                "must be at least grpc.max_inflight_bytes_per_connection",
            );
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
        if !(0.0..=1.0).contains(&self.telemetry.sampling_ratio) {
            return invalid("telemetry.sampling_ratio", "must be between 0 and 1");
        }
        if self.telemetry.service_name.is_empty() {
            return invalid("telemetry.service_name", "must not be empty");
        }
        self.auth.validate()?;
        self.cluster.validate()?;
        self.tls.validate()
    }

    /// Protected mode, as in Redis: what would be open to anyone, when the
    /// gRPC listener is on an address other than loopback and neither
    /// tokens (`auth.token_file`) nor required client certificates
    /// (`tls.client_auth = "required"`) guard it; `None` when it is guarded
    /// or loopback only. `shoal-server` refuses to start on `Some` unless
    /// told `--insecure`.
    ///
    /// ```
    /// use shoal_server::Config;
    ///
    /// let mut config = Config::default(); // 127.0.0.1:50051
    /// assert_eq!(config.unprotected_exposure(), None);
    /// config.listen = "0.0.0.0:50051".parse().unwrap();
    /// assert!(config.unprotected_exposure().is_some());
    /// ```
    pub fn unprotected_exposure(&self) -> Option<String> {
        let guarded = self.auth.token_file.is_some()
            || (self.tls.enabled() && self.tls.client_auth == ClientAuth::Required);
        (!guarded && !self.listen.ip().is_loopback()).then(|| {
            format!(
                "{} with neither tokens nor required client certificates: any client that \
                 reaches it could read, overwrite and flush every namespace",
                self.listen
            )
        })
    }

    /// Namespaces whose keys do not survive a restart
    /// (`[namespaces.NAME] persistence = false`).
    pub fn unpersisted_namespaces(&self) -> std::collections::BTreeSet<String> {
        self.namespaces
            .iter()
            .filter(|(_, settings)| !settings.persistence)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The engine configuration these settings describe.
    pub fn engine_config(&self) -> EngineConfig {
        let mut engine = EngineConfig::default();
        engine.shards_per_namespace = self.engine.shards_per_namespace;
        engine.max_key_bytes = self.engine.max_key_bytes;
        engine.max_value_bytes = self.engine.max_value_bytes;
        engine.max_namespaces = self.engine.max_namespaces;
        engine.empty_namespace_grace_ms =
            self.engine.empty_namespace_grace_secs.saturating_mul(1000);
        engine.max_keys = self.memory.max_keys;
        engine.max_memory_bytes = self.memory.max_memory;
        engine.eviction_policy = self.memory.eviction_policy;
        engine.namespace_limits = self
            .memory
            .namespaces
            .iter()
            .map(|(name, budget)| {
                let limits = NamespaceLimits {
                    max_keys: budget.max_keys,
                    max_memory_bytes: budget.max_memory,
                };
                (name.clone(), limits)
            })
            .collect();
        engine
    }

    /// Largest gRPC message accepted or sent: room for the largest key and
    /// value plus framing, so that an oversized value reaches validation and
    /// gets a precise INVALID_ARGUMENT rather than a transport error.
    pub fn max_message_bytes(&self) -> usize {
        const FRAMING_BYTES: usize = 64 * 1024;
        self.engine.max_value_bytes + self.engine.max_key_bytes + FRAMING_BYTES
    }

    /// The in-flight request budgets: those set, else defaults that keep
    /// requests in flight to half the memory budget, so that a burst of
    /// large writes holds RSS under twice `memory.max_memory` (data plus
    /// requests) with no setting of its own.
    ///
    /// ```
    /// use shoal_server::config::Config;
    /// let config = Config::from_toml("[memory]\nmax_memory = \"64MiB\"", std::path::Path::new("shoal.toml")).unwrap();
    /// let budget = config.inflight_budget();
    /// assert_eq!(budget.server, 32 * 1024 * 1024);
    /// assert_eq!(budget.per_connection, 32 * 1024 * 1024);
    /// ```
    pub fn inflight_budget(&self) -> InflightBudget {
        const MOST_BY_DEFAULT: u64 = 256 * 1024 * 1024;
        const PER_CONNECTION_BY_DEFAULT: u64 = 64 * 1024 * 1024;
        let max_message = self.max_message_bytes() as u64;
        let server = self
            .grpc
            .max_inflight_bytes
            .unwrap_or(match self.memory.max_memory {
                0 => MOST_BY_DEFAULT,
                memory => (memory / 2).clamp(max_message, MOST_BY_DEFAULT.max(max_message)),
            });
        let per_connection = self
            .grpc
            .max_inflight_bytes_per_connection
            .unwrap_or(PER_CONNECTION_BY_DEFAULT.min(server).max(max_message));
        InflightBudget {
            server,
            per_connection,
        }
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
    fn inflight_budgets_follow_the_memory_budget_unless_set() {
        let max_message = Config::default().max_message_bytes() as u64;
        let budget = |text: &str| {
            Config::from_toml(text, Path::new("x.toml"))
                .expect("parses")
                .inflight_budget()
        };
        let unlimited = budget("");
        assert_eq!(
            (unlimited.server, unlimited.per_connection),
            (256 << 20, 64 << 20)
        );
        let small = budget("[memory]\nmax_memory = \"32MiB\"");
        assert_eq!(
            (small.server, small.per_connection),
            (max_message, max_message)
        );
        let large = budget("[memory]\nmax_memory = \"8GiB\"");
        assert_eq!((large.server, large.per_connection), (256 << 20, 64 << 20));
        let set =
            budget("[memory]\nmax_memory = \"32MiB\"\n[grpc]\nmax_inflight_bytes = 536870912");
        assert_eq!((set.server, set.per_connection), (512 << 20, 64 << 20));
        let too_small = Config::from_toml(
            "[grpc]\nmax_inflight_bytes_per_connection = 1000",
            Path::new("x.toml"),
        );
        assert!(matches!(
            too_small,
            Err(ConfigError::Invalid {
                setting: "grpc.max_inflight_bytes_per_connection",
                ..
            })
        ));
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
    fn memory_budget_takes_a_share_of_the_memory_limit() {
        assert_eq!(MemoryBudget::parse("75%"), Ok(MemoryBudget::Percent(75.0)));
        assert_eq!(
            MemoryBudget::parse(" 12.5% "),
            Ok(MemoryBudget::Percent(12.5))
        );
        assert_eq!(
            MemoryBudget::parse("100%"),
            Ok(MemoryBudget::Percent(100.0))
        );
        assert_eq!(
            MemoryBudget::parse("2G"),
            Ok(MemoryBudget::Bytes(2_000_000_000))
        );
        assert_eq!(MemoryBudget::Percent(75.0).bytes_of(1 << 30), 3 << 28);
        assert_eq!(MemoryBudget::Bytes(4096).bytes_of(1 << 30), 4096);
        for bad in ["0%", "101%", "-5%", "abc%", "%", "NaN%", "inf%"] {
            let reason = MemoryBudget::parse(bad).expect_err(bad);
            assert!(reason.contains(bad), "{reason}");
        }
        assert!(
            MemoryBudget::parse("101%")
                .expect_err("out of range")
                .contains("at most 100%")
        );
    }

    #[test]
    fn the_admin_listener_takes_an_address_or_off() {
        let config =
            Config::from_toml("[admin]\nlisten = \"off\"", Path::new("x.toml")).expect("parses");
        assert_eq!(config.admin.listen, None);
        let config = Config::from_toml("[admin]\nlisten = \"0.0.0.0:9100\"", Path::new("x.toml"))
            .expect("parses");
        assert_eq!(config.admin.listen, Some("0.0.0.0:9100".parse().unwrap()));
        assert!(Config::from_toml("[admin]\nlisten = \"on\"", Path::new("x.toml")).is_err());
        assert_eq!(
            Config::default().admin.listen.map(|addr| addr.to_string()),
            Some(DEFAULT_ADMIN_LISTEN.to_string())
        );
    }

    #[test]
    fn max_memory_as_a_percentage_resolves_or_names_the_field() {
        if cfg!(target_os = "linux") {
            let limit = crate::process::memory_limit::detect().expect("Linux has a limit");
            let config = Config::from_toml("[memory]\nmax_memory = \"50%\"", Path::new("x.toml"))
                .expect("parses");
            assert_eq!(config.memory.max_memory, limit.bytes / 2);
        }
        for bad in ["0%", "101%", "abc%"] {
            let text = format!("[memory]\nmax_memory = \"{bad}\"");
            let error = Config::from_toml(&text, Path::new("x.toml")).expect_err(bad);
            let message = error.to_string();
            assert!(message.contains("memory.max_memory"), "{message}");
            assert!(message.contains(bad), "{message}");
        }
    }

    #[test]
    fn telemetry_settings_are_checked() {
        let text = "[telemetry]\notlp_endpoint = \"http://collector:4317\"\nsampling_ratio = 0.25";
        let config = Config::from_toml(text, Path::new("x.toml")).expect("parses");
        assert_eq!(config.telemetry.otlp_endpoint, "http://collector:4317");
        assert_eq!(config.telemetry.sampling_ratio, 0.25);
        assert_eq!(config.telemetry.service_name, "shoal");
        let bad = Config::from_toml("[telemetry]\nsampling_ratio = 1.5", Path::new("x.toml"));
        assert!(matches!(
            bad,
            Err(ConfigError::Invalid {
                setting: "telemetry.sampling_ratio",
                ..
            })
        ));
    }

    #[test]
    fn a_partial_file_keeps_other_defaults() {
        let config = Config::from_toml("[engine]\nmax_value_bytes = 1024", Path::new("x.toml"))
            .expect("parses");
        assert_eq!(config.engine.max_value_bytes, 1024);
        assert_eq!(config.listen, Config::default().listen);
    }

    #[test]
    fn a_public_address_needs_tokens_or_required_client_certificates() {
        let mut config = Config {
            listen: "0.0.0.0:50051".parse().unwrap(),
            ..Config::default()
        };
        assert!(config.unprotected_exposure().is_some());
        config.tls.cert = Some("server.pem".into());
        config.tls.key = Some("server-key.pem".into());
        config.tls.client_ca = Some("ca.pem".into());
        config.tls.client_auth = ClientAuth::Optional;
        assert!(
            config.unprotected_exposure().is_some(),
            "optional client certificates guard nothing"
        );
        config.tls.client_auth = ClientAuth::Required;
        assert_eq!(config.unprotected_exposure(), None);
        let tokens = Config {
            listen: "[::]:50051".parse().unwrap(),
            auth: AuthSettings {
                token_file: Some("tokens.toml".into()),
                ..AuthSettings::default()
            },
            ..Config::default()
        };
        assert_eq!(tokens.unprotected_exposure(), None);
        let loopback = Config {
            listen: "[::1]:50051".parse().unwrap(),
            ..Config::default()
        };
        assert_eq!(loopback.unprotected_exposure(), None);
    }
}
