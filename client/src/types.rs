//! Domain types of the client API, independent of the wire format.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;

/// The data type stored under a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum KeyType {
    /// Bytes, possibly holding a 64-bit integer counter.
    String,
    /// Field to value map.
    Hash,
    /// Ordered list of values.
    List,
    /// Unordered set of unique members.
    Set,
}

impl KeyType {
    /// The lowercase name, as Redis `TYPE` prints it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Hash => "hash",
            Self::List => "list",
            Self::Set => "set",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when parsing an unknown key type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key type {0:?}: expected string, hash, list or set")]
pub struct ParseKeyTypeError(String);

impl FromStr for KeyType {
    type Err = ParseKeyTypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "string" => Ok(Self::String),
            "hash" => Ok(Self::Hash),
            "list" => Ok(Self::List),
            "set" => Ok(Self::Set),
            _ => Err(ParseKeyTypeError(s.to_owned())),
        }
    }
}

/// Metadata of one stored key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ItemMeta {
    /// Version of the key's last write; compare-and-set names it in
    /// [`Condition::IfVersion`].
    pub version: u64,
    /// When the key expires; `None` when it never does.
    #[serde(
        rename = "expires_at_unix_ms",
        serialize_with = "serde_ms::system_time"
    )]
    pub expires_at: Option<SystemTime>,
    /// Time left before the key expires, as the server saw it; `None` when
    /// it never expires.
    #[serde(rename = "ttl_ms", serialize_with = "serde_ms::duration")]
    pub ttl: Option<Duration>,
    /// The key's type.
    #[serde(rename = "type")]
    pub key_type: KeyType,
    /// Size of the value in bytes (for collections, the sum of their
    /// elements).
    pub size: u64,
}

/// When a written key expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expiry {
    /// Never (Redis `PERSIST`, or `SET` without `EX`).
    #[default]
    Never,
    /// Keep whatever expiry the key already has (Redis `KEEPTTL`).
    Keep,
    /// This long after the server applies the request. Sent in whole
    /// milliseconds; a nonzero duration below one millisecond rounds up to
    /// one.
    After(Duration),
    /// At this wall-clock time. A time in the past removes the key.
    At(SystemTime),
}

/// A precondition on a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    /// Write unconditionally.
    #[default]
    Always,
    /// Write only if the key does not exist (Redis `NX`).
    IfAbsent,
    /// Write only if the key exists (Redis `XX`).
    IfPresent,
    /// Write only if the key exists at exactly this version
    /// (compare-and-set).
    IfVersion(u64),
}

/// Options of [`Client::set_with`](crate::Client::set_with).
///
/// ```
/// use std::time::Duration;
/// use shoal_client::{Condition, SetOptions};
///
/// let options = SetOptions::ttl(Duration::from_secs(30))
///     .with_condition(Condition::IfAbsent)
///     .with_previous();
/// assert!(options.return_previous);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetOptions {
    /// Expiry of the written key; the default is [`Expiry::Never`].
    pub expiry: Expiry,
    /// Precondition; the default is [`Condition::Always`].
    pub condition: Condition,
    /// Also return the value the key held before the write.
    pub return_previous: bool,
}

impl SetOptions {
    /// Options that expire the key `ttl` after the write.
    #[must_use]
    pub fn ttl(ttl: Duration) -> Self {
        Self {
            expiry: Expiry::After(ttl),
            ..Self::default()
        }
    }

    /// These options with another expiry.
    #[must_use]
    pub fn with_expiry(mut self, expiry: Expiry) -> Self {
        self.expiry = expiry;
        self
    }

    /// These options with another condition.
    #[must_use]
    pub fn with_condition(mut self, condition: Condition) -> Self {
        self.condition = condition;
        self
    }

    /// These options, also asking for the previous value.
    #[must_use]
    pub fn with_previous(mut self) -> Self {
        self.return_previous = true;
        self
    }
}

/// Options of [`Client::lpush_with`](crate::Client::lpush_with) and
/// [`Client::rpush_with`](crate::Client::rpush_with).
///
/// Unlike [`SetOptions`], the default expiry is [`Expiry::Keep`]: a push
/// leaves the list's expiry alone, as Redis `LPUSH` and `RPUSH` do.
///
/// ```
/// use std::time::Duration;
/// use shoal_client::{Expiry, PushOptions};
///
/// let options = PushOptions::ttl(Duration::from_secs(3600)).if_exists();
/// assert!(options.only_if_exists);
/// assert_eq!(PushOptions::default().expiry, Expiry::Keep);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushOptions {
    /// Push only when the list already exists (Redis `LPUSHX`, `RPUSHX`);
    /// the push then reports a length of 0 when it does not.
    pub only_if_exists: bool,
    /// Expiry of the list after the push; the default,
    /// [`Expiry::Keep`], leaves it as it is (a new list never expires).
    /// [`Expiry::Never`] removes an existing expiry.
    pub expiry: Expiry,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            only_if_exists: false,
            expiry: Expiry::Keep,
        }
    }
}

impl PushOptions {
    /// Options that make the list expire `ttl` after the push.
    #[must_use]
    pub fn ttl(ttl: Duration) -> Self {
        Self {
            expiry: Expiry::After(ttl),
            ..Self::default()
        }
    }

    /// These options with another expiry.
    #[must_use]
    pub fn with_expiry(mut self, expiry: Expiry) -> Self {
        self.expiry = expiry;
        self
    }

    /// These options, pushing only onto an existing list.
    #[must_use]
    pub fn if_exists(mut self) -> Self {
        self.only_if_exists = true;
        self
    }
}

/// Outcome of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetResult {
    /// False when the condition was not met; nothing was written then.
    pub stored: bool,
    /// The key's version after the request (0 when the key does not exist).
    pub version: u64,
    /// The previous value, when asked for and the key existed.
    pub previous: Option<Bytes>,
}

/// Outcome of an increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncrementResult {
    /// The counter after the increment.
    pub value: i64,
    /// The key's version after the increment.
    pub version: u64,
    /// Whether this increment created the key.
    pub created: bool,
}

/// What is known about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key, as requested.
    pub key: Bytes,
    /// The key's metadata; `None` when the key does not exist.
    pub meta: Option<ItemMeta>,
}

impl KeyInfo {
    /// Whether the key exists.
    #[must_use]
    pub fn exists(&self) -> bool {
        self.meta.is_some()
    }
}

/// Remaining lifetime of a key, as Redis `PTTL` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// The key does not exist (`PTTL` answers -2).
    Missing,
    /// The key exists and never expires (`PTTL` answers -1).
    Never,
    /// The key expires after this long.
    Expires(Duration),
}

/// What to list in a scan, and how.
///
/// ```
/// use shoal_client::{KeyType, ScanOptions};
///
/// let options = ScanOptions::matching("price:*").with_type(KeyType::String).with_limit(1000);
/// assert_eq!(options.pattern.as_deref(), Some("price:*"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanOptions {
    /// Glob pattern as Redis `MATCH`; `None` matches every key.
    pub pattern: Option<String>,
    /// Only keys of this type; `None` means any type.
    pub key_type: Option<KeyType>,
    /// Keys per page, 1 to 10000; 0 lets the server choose (100).
    pub page_size: u32,
    /// Where to resume, from a previous [`ScanPage::cursor`].
    pub cursor: Option<Bytes>,
    /// Stop after this many keys in total; 0 means no limit.
    pub limit: u64,
}

impl ScanOptions {
    /// Options listing the keys that match a glob pattern.
    #[must_use]
    pub fn matching(pattern: impl Into<String>) -> Self {
        Self {
            pattern: Some(pattern.into()),
            ..Self::default()
        }
    }

    /// These options, listing only keys of one type.
    #[must_use]
    pub fn with_type(mut self, key_type: KeyType) -> Self {
        self.key_type = Some(key_type);
        self
    }

    /// These options with another page size.
    #[must_use]
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size;
        self
    }

    /// These options, resuming from a cursor.
    #[must_use]
    pub fn with_cursor(mut self, cursor: impl Into<Bytes>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// These options, stopping after `limit` keys.
    #[must_use]
    pub fn with_limit(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }
}

/// One page of a scan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanPage {
    /// Matching keys, in no particular order.
    pub keys: Vec<Bytes>,
    /// Where the next page starts; `None` when the scan is complete.
    pub cursor: Option<Bytes>,
}

/// Server statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Sum over every namespace.
    pub total: NamespaceStats,
    /// One entry per namespace, sorted by name.
    pub namespaces: Vec<NamespaceStats>,
    /// One entry per RPC method that has been called, sorted by name.
    pub rpcs: Vec<RpcStats>,
    /// Time since the server started.
    #[serde(rename = "uptime_ms", serialize_with = "serde_ms::duration_required")]
    pub uptime: Duration,
    /// The server's version.
    pub server_version: String,
    /// Key limit across namespaces; 0 when there is none.
    pub max_keys: u64,
    /// Memory limit for entries in bytes; 0 when there is none.
    pub max_memory_bytes: u64,
    /// Bytes charged against the memory limit; 0 when no limit is set.
    pub charged_bytes: u64,
    /// Eviction policy: `s3fifo`, `tinylfu`, `lru`, `lfu` or `noeviction`.
    pub eviction_policy: String,
    /// Bytes of request messages the server holds until they are handled.
    pub inflight_request_bytes: u64,
    /// The server's limit on them (`grpc.max_inflight_bytes`).
    pub max_inflight_request_bytes: u64,
    /// TCP connections open on the server's gRPC listener.
    pub connections_open: u64,
    /// Calls refused for missing, malformed, unknown or expired
    /// credentials, or because their address failed too often; 0 with
    /// auth off.
    pub auth_failures: u64,
    /// Calls, batch items and pipeline commands refused for want of a
    /// right.
    pub permission_denials: u64,
    /// What survives a restart and how the log and snapshots are doing;
    /// `None` when persistence is off (or the caller may not see
    /// server-wide figures).
    pub persistence: Option<PersistenceStatus>,
    /// Cluster members whose counters these are: 1 for a single server or
    /// [`Client::member_stats`](crate::Client::member_stats). Counters and
    /// sizes are sums over them; the version, policy, uptime and
    /// persistence status are the answering member's.
    pub members: u32,
}

/// The server's persistence status, in [`Stats::persistence`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct PersistenceStatus {
    /// `snapshot` or `log`.
    pub mode: String,
    /// When the log reaches the disk: `always`, `everysec` or `no`.
    pub fsync: String,
    /// The server's data directory.
    pub data_dir: String,
    /// The last snapshot the server took since it started, if any.
    pub last_snapshot: Option<SnapshotInfo>,
    /// When it finished, in milliseconds since the Unix epoch; 0 for none.
    pub last_snapshot_unix_ms: u64,
    /// Snapshots taken since start.
    pub snapshots: u64,
    /// Snapshots that failed since start.
    pub snapshot_failures: u64,
    /// Log bytes appended since start.
    pub log_bytes: u64,
    /// Log bytes appended since the last snapshot.
    pub log_bytes_since_snapshot: u64,
    /// fdatasync calls on the log.
    pub fsyncs: u64,
    /// Their mean time, in microseconds.
    pub fsync_mean_us: u64,
    /// The longest, in microseconds.
    pub fsync_max_us: u64,
    /// Keys restored from the snapshot at start-up.
    pub start_snapshot_keys: u64,
    /// Log records replayed at start-up.
    pub start_replayed_records: u64,
    /// Keys dropped at start-up because their deadline had passed.
    pub start_expired_keys: u64,
    /// Time recovery took at start-up.
    #[serde(
        rename = "start_recovery_ms",
        serialize_with = "serde_ms::duration_required"
    )]
    pub start_recovery: Duration,
}

/// The members of a cluster, as one of them sees them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Topology {
    /// Grows with each change the answering member saw.
    pub epoch: u64,
    /// The id of the member that answered.
    pub local_id: String,
    /// Every member, sorted by id.
    pub members: Vec<ClusterMember>,
}

/// One server of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ClusterMember {
    /// Its stable id, by which keys are placed.
    pub id: String,
    /// `host:port` of its gRPC listener; empty for a single server.
    pub address: String,
    /// Whether it owns keys now.
    pub ready: bool,
}

/// A snapshot the server took.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SnapshotInfo {
    /// Its file name in the server's data directory.
    pub name: String,
    /// Keys written.
    pub keys: u64,
    /// Bytes of the file.
    pub bytes: u64,
    /// Time it took.
    #[serde(rename = "duration_ms", serialize_with = "serde_ms::duration_required")]
    pub duration: Duration,
}

/// Counters of one namespace, or of all of them in [`Stats::total`].
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct NamespaceStats {
    /// Namespace name; empty in the total.
    pub namespace: String,
    /// Live keys.
    pub keys: u64,
    /// Reads that found their key.
    pub hits: u64,
    /// Reads that did not.
    pub misses: u64,
    /// hits / (hits + misses); 0 before any read.
    pub hit_ratio: f64,
    /// Writes that stored a value (sets, increments, expiry changes).
    pub sets: u64,
    /// Keys removed by delete.
    pub deletes: u64,
    /// Keys removed because their expiry passed.
    pub expirations: u64,
    /// Bytes held for entries: keys, values, metadata and map slots.
    pub memory_bytes: u64,
    /// Bytes of collection versions kept for streamed reads still reading
    /// them; charged to the memory budget besides `memory_bytes`.
    pub snapshot_bytes: u64,
    /// Keys removed by flush.
    pub flushed: u64,
    /// Keys evicted because the server held `max_keys` keys.
    pub evicted_for_keys: u64,
    /// Keys evicted because the server held `max_memory` bytes.
    pub evicted_for_memory: u64,
    /// The namespace's own budget, when the server gives it one (not in
    /// the total).
    pub budget: Option<NamespaceBudget>,
}

/// A namespace's own key and memory budget, and what it holds against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct NamespaceBudget {
    /// Keys held.
    pub keys: u64,
    /// Bytes charged: keys, values and a fixed cost per entry.
    pub charged_bytes: u64,
    /// Most keys; 0 for no limit of its own.
    pub max_keys: u64,
    /// Most charged bytes; 0 for no limit of its own.
    pub max_memory_bytes: u64,
}

/// Calls of one RPC method.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RpcStats {
    /// Full method name, for example `/shoal.v1.CacheService/Get`.
    pub method: String,
    /// Calls completed.
    pub calls: u64,
    /// Calls that ended with a status other than OK.
    pub errors: u64,
    /// Failed calls by gRPC code name, for example `InvalidArgument`.
    pub errors_by_code: BTreeMap<String, u64>,
}

/// Serialises times and durations as integer milliseconds, the unit the
/// wire format and the command-line tool use.
mod serde_ms {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::Serializer;

    fn millis(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(millis(*d)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn duration_required<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(millis(*d))
    }

    pub(super) fn system_time<S: Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_u64(millis(t.duration_since(UNIX_EPOCH).unwrap_or_default())),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_type_names_round_trip() {
        for t in [KeyType::String, KeyType::Hash, KeyType::List, KeyType::Set] {
            assert_eq!(t.as_str().parse::<KeyType>(), Ok(t));
        }
        assert_eq!("HASH".parse::<KeyType>(), Ok(KeyType::Hash));
        assert!("zset".parse::<KeyType>().is_err());
    }

    #[test]
    fn item_meta_serialises_in_milliseconds() {
        let meta = ItemMeta {
            version: 7,
            expires_at: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_500)),
            ttl: Some(Duration::from_millis(250)),
            key_type: KeyType::Hash,
            size: 3,
        };
        let json = serde_json::to_value(meta).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "version": 7, "expires_at_unix_ms": 1500, "ttl_ms": 250, "type": "hash", "size": 3
            })
        );
    }

    #[test]
    fn option_helpers_compose() {
        let options =
            SetOptions::ttl(Duration::from_secs(1)).with_condition(Condition::IfVersion(4));
        assert_eq!(options.expiry, Expiry::After(Duration::from_secs(1)));
        assert_eq!(options.condition, Condition::IfVersion(4));
        assert!(!options.return_previous);
        assert_eq!(SetOptions::default().expiry, Expiry::Never);
    }

    #[test]
    fn pushes_keep_the_expiry_by_default() {
        let plain = PushOptions::default();
        assert_eq!(plain.expiry, Expiry::Keep);
        assert!(!plain.only_if_exists);
        let options = PushOptions::ttl(Duration::from_secs(5)).if_exists();
        assert_eq!(options.expiry, Expiry::After(Duration::from_secs(5)));
        assert!(options.only_if_exists);
        assert_eq!(
            PushOptions::default().with_expiry(Expiry::Never).expiry,
            Expiry::Never
        );
    }
}
