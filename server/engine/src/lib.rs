//! The cache engine: namespaces of sharded keyspaces with string values,
//! counters, expiry and key listing.
//!
//! The engine is synchronous and knows nothing of the network, so it is also
//! the embedded cache for programs that cannot afford even a loopback call.
//!
//! ```
//! use bytes::Bytes;
//! use shoal_engine::{Engine, EngineConfig, Expiry, SetOptions};
//!
//! let engine = Engine::new(EngineConfig::default());
//! let prices = engine.namespace("prices")?;
//! let options = SetOptions { expiry: Expiry::AfterMs(60_000), ..SetOptions::default() };
//! prices.set(b"BTCUSDT", Bytes::from_static(b"97000.5"), options)?;
//! assert_eq!(prices.get(b"BTCUSDT")?, Some(Bytes::from_static(b"97000.5")));
//!
//! let hits = engine.namespace("counters")?;
//! assert_eq!(hits.increment(b"page:/", 1, None, Expiry::Never)?.value, 1);
//! # Ok::<(), shoal_engine::EngineError>(())
//! ```

mod budget;
mod change;
mod clock;
mod collections;
mod deadline;
mod entry_store;
mod error;
mod eviction;
mod expiry_index;
mod integer;
mod key;
mod namespace;
mod pattern;
mod scan;
mod shard;
mod sweeper;
mod types;
mod value;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;

pub use change::{ChangeKind, ChangeRecord, ChangeSink, CollectionChange, FlushRecord};
pub use clock::{Clock, ManualClock, SystemClock};
pub use deadline::MAX_TTL_MS;
pub use error::EngineError;
pub use eviction::{EvictionPolicy, UnknownPolicy};
pub use namespace::{
    Applied, BatchRead, HashSnapshot, ListSnapshot, MAX_CHUNKS_PER_SHARD, MAX_REPLAYED_FIELD,
    MAX_RESERVED_KEYS, Namespace, NamespaceStats, RESERVED_BYTES_PER_KEY, ReplayError,
    SNAPSHOT_CHUNK_KEYS, SetOperation, SetSnapshot, SnapshotChunk, SnapshotEntry, SnapshotReader,
    SnapshotValue,
};
pub use pattern::{KeyPattern, MAX_PATTERN_BYTES};
pub use scan::{ScanCursor, ScanFilter, ScanPage};
pub use sweeper::{ExpirySweeper, KEYS_PER_LOCK};
pub use types::{
    Condition, Expiry, IncrementOutcome, ItemMeta, KeyType, SetOptions, SetOutcome, WriteOutcome,
};

/// Name used for the empty namespace.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Longest namespace name, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 128;

/// Shards per core a namespace gets by default.
///
/// A read waits only when a writer holds its own shard's lock, so the
/// chance that a read meets an eviction or an expiry sweep falls with the
/// shard count. Measured with the `latency_bursts` example on 2 cores, the
/// p99 of a get during an eviction burst was 3.7 to 4.4 times the quiet
/// p99 with 16 shards, about 2 times with 128 and 1.6 to 2.0 times with
/// 256 (1.9 to 2.1 once entries moved to a slab behind an index, 1.4 to
/// 2.3 with entries packed into slots); hit ratios on the ARC traces did
/// not move. An empty shard costs 448 bytes, so 256 shards are 112 KiB per
/// namespace.
pub const DEFAULT_SHARDS_PER_CORE: usize = 128;
/// Fewest shards a namespace gets by default.
pub const MIN_DEFAULT_SHARDS: usize = 256;
/// Most shards a namespace gets by default, whatever the core count, to
/// bound the fixed memory of many namespaces on a large machine.
pub const MAX_DEFAULT_SHARDS: usize = 1024;

/// Engine settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineConfig {
    /// Shards per namespace; rounded up to a power of two. 0 picks
    /// [`DEFAULT_SHARDS_PER_CORE`] per available core, at least
    /// [`MIN_DEFAULT_SHARDS`] and at most [`MAX_DEFAULT_SHARDS`].
    pub shards_per_namespace: usize,
    /// Longest key accepted, in bytes.
    pub max_key_bytes: usize,
    /// Largest value accepted, in bytes.
    pub max_value_bytes: usize,
    /// Most namespaces that may exist at once.
    pub max_namespaces: usize,
    /// Milliseconds a namespace may hold no key before the sweeper
    /// reclaims its slot (when nothing outside the engine still holds it);
    /// 0 keeps empty namespaces. A write makes it again.
    pub empty_namespace_grace_ms: u64,
    /// Most keys the engine holds across namespaces; 0 for no limit.
    pub max_keys: u64,
    /// Most bytes the engine's entries may be charged (keys, values and a
    /// fixed per-entry cost); 0 for no limit.
    pub max_memory_bytes: u64,
    /// What to evict when a limit is reached.
    pub eviction_policy: EvictionPolicy,
    /// Budgets of their own for some namespaces, by canonical name
    /// (`default` for the empty name), within the engine-wide limits above.
    pub namespace_limits: BTreeMap<String, NamespaceLimits>,
}

/// A namespace's own key and memory budget. Its keys and bytes also count
/// toward the engine's limits, and a write into it evicts from it when
/// either budget is full, so one busy namespace cannot crowd out the
/// others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NamespaceLimits {
    /// Most keys in the namespace; 0 for no limit of its own.
    pub max_keys: u64,
    /// Most bytes the namespace's entries may be charged; 0 for no limit
    /// of its own.
    pub max_memory_bytes: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            shards_per_namespace: 0,
            max_key_bytes: 64 * 1024,
            max_value_bytes: 16 * 1024 * 1024,
            max_namespaces: 1024,
            empty_namespace_grace_ms: 60_000,
            max_keys: 0,
            max_memory_bytes: 0,
            eviction_policy: EvictionPolicy::default(),
            namespace_limits: BTreeMap::new(),
        }
    }
}

/// Fewest keys a shard of a namespace with a small budget is given room
/// for. Eviction is per shard, so a shard's policy chooses among the keys
/// that shard holds; with a handful each (500 keys over 256 shards) no
/// policy can tell hot from cold. At about 128 keys a shard, hit ratios
/// measured with `shoal-trace --shards` match one shard's.
pub const MIN_KEYS_PER_SHARD: u64 = 128;

/// Bytes a key is taken to cost when only a memory budget bounds a
/// namespace, to size its shards: on the small side of typical entries, so
/// that a memory budget never leaves shards with fewer keys than
/// [`MIN_KEYS_PER_SHARD`] unless its values are larger than this.
pub const SHARD_SIZING_BYTES_PER_KEY: u64 = 1024;

impl EngineConfig {
    /// The number of shards each namespace gets when no budget is smaller
    /// than its shards could use (see [`EngineConfig::shard_count_for`]).
    pub fn shard_count(&self) -> usize {
        let wanted = if self.shards_per_namespace == 0 {
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            (cores * DEFAULT_SHARDS_PER_CORE).clamp(MIN_DEFAULT_SHARDS, MAX_DEFAULT_SHARDS)
        } else {
            self.shards_per_namespace
        };
        wanted.next_power_of_two()
    }

    /// The number of shards the namespace called `name` (canonical) gets:
    /// [`EngineConfig::shard_count`], or fewer when the tightest key or
    /// memory budget it is held to (its own or the engine's) would leave a
    /// shard room for fewer than [`MIN_KEYS_PER_SHARD`] keys, so that a
    /// small budget evicts as well as one shard would.
    ///
    /// ```
    /// use shoal_engine::{EngineConfig, NamespaceLimits};
    /// let mut config = EngineConfig::default();
    /// config.shards_per_namespace = 256;
    /// config.namespace_limits.insert(
    ///     "small".into(),
    ///     NamespaceLimits { max_keys: 500, max_memory_bytes: 0 },
    /// );
    /// assert_eq!(config.shard_count_for("small"), 2);
    /// assert_eq!(config.shard_count_for("other"), 256);
    /// ```
    pub fn shard_count_for(&self, name: &str) -> usize {
        let own = self.namespace_limits.get(name).copied().unwrap_or_default();
        let room = [
            own.max_keys,
            own.max_memory_bytes / SHARD_SIZING_BYTES_PER_KEY,
            self.max_keys,
            self.max_memory_bytes / SHARD_SIZING_BYTES_PER_KEY,
        ]
        .into_iter()
        .filter(|keys| *keys > 0)
        .min();
        let configured = self.shard_count();
        match room {
            // A memory budget under one key's worth still bounds the
            // namespace: one shard.
            None if own.max_memory_bytes > 0 || self.max_memory_bytes > 0 => 1,
            None => configured,
            Some(keys) => {
                let fits = (keys / MIN_KEYS_PER_SHARD).max(1);
                // The largest power of two not above `fits`.
                let fits = 1usize
                    << (usize::BITS
                        - 1
                        - usize::try_from(fits).unwrap_or(usize::MAX).leading_zeros());
                fits.min(configured)
            }
        }
    }
}

/// Size limits every namespace enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_key_bytes: usize,
    pub(crate) max_value_bytes: usize,
}

/// The engine: a set of namespaces. Cloning is cheap and shares the data.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    sink: Arc<change::SinkSlot>,
    /// By name; foldhash rather than SipHash, since every call looks its
    /// namespace up here and names are not attacker-chosen keys of a large
    /// table (at most `max_namespaces`).
    namespaces: RwLock<HashMap<Arc<str>, Arc<Namespace>, foldhash::fast::RandomState>>,
    budget: Arc<budget::Budget>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.inner.config)
            .field("namespaces", &self.inner.namespaces.read().len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine on the system clock with no change sink.
    pub fn new(config: EngineConfig) -> Self {
        Self::with_parts(config, Arc::new(SystemClock), None)
    }

    /// An engine with an explicit clock (tests use [`ManualClock`]) and an
    /// optional sink receiving a [`ChangeRecord`] for every mutation.
    pub fn with_parts(
        config: EngineConfig,
        clock: Arc<dyn Clock>,
        sink: Option<Arc<dyn ChangeSink>>,
    ) -> Self {
        Self {
            inner: Arc::new(EngineInner {
                budget: Arc::new(budget::Budget::new(
                    config.eviction_policy,
                    config.max_keys,
                    config.max_memory_bytes,
                )),
                config,
                clock,
                sink: Arc::new(change::SinkSlot::new(sink)),
                namespaces: RwLock::new(HashMap::default()),
            }),
        }
    }

    /// Sends a [`ChangeRecord`] for every later mutation to `sink`, for an
    /// engine built without one (a server attaches its change feed this
    /// way). Returns false, and changes nothing, when a sink is already
    /// attached: records go to exactly one sink, which may fan out.
    #[must_use = "a false return means the sink receives nothing"]
    pub fn attach_sink(&self, sink: Arc<dyn ChangeSink>) -> bool {
        self.inner.sink.attach(sink)
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The engine's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The namespace called `name` (empty means [`DEFAULT_NAMESPACE`]),
    /// created if needed.
    ///
    /// # Errors
    /// [`EngineError::InvalidNamespace`] for a bad name,
    /// [`EngineError::TooManyNamespaces`] when creating it would pass the limit.
    pub fn namespace(&self, name: &str) -> Result<Arc<Namespace>, EngineError> {
        if let Some(namespace) = self.existing_namespace(name)? {
            return Ok(namespace);
        }
        let name = canonical_namespace(name);
        let mut namespaces = self.inner.namespaces.write();
        if let Some(namespace) = namespaces.get(name) {
            return Ok(Arc::clone(namespace));
        }
        if namespaces.len() >= self.inner.config.max_namespaces {
            return Err(EngineError::TooManyNamespaces {
                max: self.inner.config.max_namespaces,
            });
        }
        let name: Arc<str> = Arc::from(name);
        let limits = Limits {
            max_key_bytes: self.inner.config.max_key_bytes,
            max_value_bytes: self.inner.config.max_value_bytes,
        };
        let namespace = Arc::new(Namespace::new(
            Arc::clone(&name),
            self.inner.config.shard_count_for(&name),
            limits,
            Arc::clone(&self.inner.clock),
            Arc::clone(&self.inner.sink),
            self.budget_for(&name),
        ));
        namespaces.insert(name, Arc::clone(&namespace));
        Ok(namespace)
    }

    /// Drops the namespace called `name` (empty means
    /// [`DEFAULT_NAMESPACE`]): its keys are removed, as a flush removes
    /// them, and its slot under `max_namespaces` is free. Returns how many
    /// keys it held, or `None` when it did not exist. A write already under
    /// way when it is dropped may still land in the dropped namespace, and
    /// is freed with it, unannounced: the change sink sees the drop as a
    /// flush and nothing of the dropped namespace after it, so a replayed
    /// log cannot bring such a write back. Later writes make a new, empty
    /// namespace.
    ///
    /// # Errors
    /// [`EngineError::InvalidNamespace`] for a bad name.
    pub fn drop_namespace(&self, name: &str) -> Result<Option<u64>, EngineError> {
        validate_namespace(name)?;
        let dropped = self
            .inner
            .namespaces
            .write()
            .remove(canonical_namespace(name));
        Ok(dropped.map(|namespace| namespace.flush_dropped()))
    }

    /// Reclaims the slots of namespaces that have held no key for
    /// `empty_namespace_grace_ms`, as seen by earlier calls, and that
    /// nothing outside the engine holds (no call under way, no handle kept
    /// by an embedder). Returns how many were reclaimed. The sweeper calls
    /// this about once a second.
    pub fn reclaim_empty_namespaces(&self) -> usize {
        let grace = self.inner.config.empty_namespace_grace_ms;
        if grace == 0 {
            return 0;
        }
        let now = self.inner.clock.now_ms().max(1);
        let due: Vec<Arc<str>> = self
            .namespaces()
            .into_iter()
            .filter(|namespace| namespace.idle_for(now) >= grace)
            .map(|namespace| Arc::from(namespace.name()))
            .collect();
        if due.is_empty() {
            return 0;
        }
        let mut namespaces = self.inner.namespaces.write();
        let mut reclaimed = 0;
        for name in due {
            // Under the write lock no one can take a new handle, so a count
            // of one means the map's is the only one.
            if let Some(namespace) = namespaces.get(&name)
                && Arc::strong_count(namespace) == 1
                && namespace.is_empty()
            {
                namespaces.remove(&name);
                reclaimed += 1;
            }
        }
        reclaimed
    }

    /// The budget a new namespace called `name` reports to: its own, inside
    /// the engine's, when configured; the engine's otherwise.
    fn budget_for(&self, name: &str) -> Arc<budget::Budget> {
        match self.inner.config.namespace_limits.get(name) {
            Some(limits) if limits.max_keys > 0 || limits.max_memory_bytes > 0 => {
                Arc::new(budget::Budget::within(
                    Arc::clone(&self.inner.budget),
                    limits.max_keys,
                    limits.max_memory_bytes,
                ))
            }
            _ => Arc::clone(&self.inner.budget),
        }
    }

    /// The namespace called `name` if it exists; reads use this so that
    /// reading never creates namespaces.
    ///
    /// # Errors
    /// [`EngineError::InvalidNamespace`] for a bad name.
    pub fn existing_namespace(&self, name: &str) -> Result<Option<Arc<Namespace>>, EngineError> {
        validate_namespace(name)?;
        Ok(self
            .inner
            .namespaces
            .read()
            .get(canonical_namespace(name))
            .cloned())
    }

    /// Every namespace, sorted by name.
    pub fn namespaces(&self) -> Vec<Arc<Namespace>> {
        let mut all: Vec<_> = self.inner.namespaces.read().values().cloned().collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// Keys and charged bytes held against the budget (both 0 when no limit
    /// is set), and the limits (0 = none).
    pub fn budget_usage(&self) -> BudgetUsage {
        let (keys, bytes) = self.inner.budget.usage();
        let (max_keys, max_bytes) = self.inner.budget.limits();
        BudgetUsage {
            keys,
            charged_bytes: bytes,
            max_keys,
            max_memory_bytes: max_bytes,
            policy: self.inner.config.eviction_policy,
        }
    }

    /// Removes expired keys from every namespace, `batch` keys per lock at
    /// most. Returns how many were removed.
    pub fn sweep_expired(&self, batch: usize) -> u64 {
        self.namespaces()
            .iter()
            .map(|namespace| namespace.sweep_expired(batch))
            .sum()
    }
}

/// What the engine holds against its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetUsage {
    /// Keys held (0 when no limit is set: nothing is tracked).
    pub keys: u64,
    /// Bytes charged: keys, values and a fixed per-entry cost.
    pub charged_bytes: u64,
    /// Key limit; 0 for none.
    pub max_keys: u64,
    /// Memory limit; 0 for none.
    pub max_memory_bytes: u64,
    /// The eviction policy.
    pub policy: EvictionPolicy,
}

/// The name a namespace is known by (and reported under in change records):
/// `name` itself, or [`DEFAULT_NAMESPACE`] for the empty name.
///
/// # Errors
/// [`EngineError::InvalidNamespace`] for a bad name.
pub fn resolve_namespace_name(name: &str) -> Result<&str, EngineError> {
    validate_namespace(name)?;
    Ok(canonical_namespace(name))
}

/// Maps the empty name to [`DEFAULT_NAMESPACE`].
fn canonical_namespace(name: &str) -> &str {
    if name.is_empty() {
        DEFAULT_NAMESPACE
    } else {
        name
    }
}

/// Checks a namespace name: up to [`MAX_NAMESPACE_BYTES`] bytes of ASCII
/// letters, digits, `_`, `-`, `.` and `:` (empty means the default).
fn validate_namespace(name: &str) -> Result<(), EngineError> {
    if name.len() > MAX_NAMESPACE_BYTES {
        return Err(EngineError::InvalidNamespace {
            reason: format!(
                "is {} bytes, over the limit of {MAX_NAMESPACE_BYTES} bytes",
                name.len()
            ),
        });
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(EngineError::InvalidNamespace {
            reason: format!(
                "contains {bad:?}; allowed are ASCII letters, digits, '_', '-', '.' and ':'"
            ),
        });
    }
    Ok(())
}
