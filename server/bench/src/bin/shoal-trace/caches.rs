//! The caches a trace is replayed against: shoal's engine under each of its
//! eviction policies, and the peers it is measured against.
//!
//! Every cache is used as a read-through cache bounded by an entry count:
//! a read that misses is followed by an insert of the same key.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use shoal_engine::{Engine, EngineConfig, EngineError, EvictionPolicy, Namespace, SetOptions};

/// A cache that a trace can be replayed against.
pub trait ReplayCache {
    /// Reads `key`, inserting it on a miss; true on a hit.
    fn access(&mut self, key: u64) -> bool;

    /// What the cache holds once the replay is over.
    ///
    /// # Errors
    /// A description of the operations that failed during the replay (which
    /// then counted as misses), so a broken cache is not reported as a
    /// merely bad one.
    fn finish(&mut self) -> Result<CacheState, String>;
}

/// What a cache reports about itself after a replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheState {
    /// Entries held at the end.
    pub entries: u64,
    /// Entries evicted, for caches that count them.
    pub evictions: Option<u64>,
}

/// The cache key of block `block`: its number as 8 little-endian bytes.
pub fn key_bytes(block: u64) -> [u8; 8] {
    block.to_le_bytes()
}

/// One cache implementation (and for shoal, one policy) in a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    /// shoal's engine with the given eviction policy.
    Shoal(EvictionPolicy),
    /// moka's `sync::Cache` (W-TinyLFU).
    Moka,
    /// quick_cache's single-shard `unsync::Cache` (CLOCK-Pro).
    QuickCache,
    /// The `lru` crate's exact LRU.
    Lru,
}

impl CacheKind {
    /// Every cache a replay reports on: shoal's policies first, then peers.
    pub fn all() -> Vec<CacheKind> {
        let mut kinds: Vec<CacheKind> = EvictionPolicy::ALL
            .iter()
            .copied()
            .map(CacheKind::Shoal)
            .collect();
        kinds.extend([CacheKind::Moka, CacheKind::QuickCache, CacheKind::Lru]);
        kinds
    }

    /// Whether this is a peer shoal is compared against.
    pub fn is_peer(self) -> bool {
        !matches!(self, CacheKind::Shoal(_))
    }

    /// Whether a read-through replay means anything for this cache: under
    /// `noeviction` writes fail once the cache is full, so it has no
    /// replacement policy to measure.
    pub fn is_replayable(self) -> bool {
        !matches!(self, CacheKind::Shoal(EvictionPolicy::NoEviction))
    }

    /// Builds an empty cache holding at most `capacity` entries; shoal's
    /// engine gets `shards` shards, each with an even part of the capacity.
    ///
    /// # Errors
    /// The engine refused to create the namespace.
    pub fn build(
        self,
        capacity: NonZeroUsize,
        shards: usize,
    ) -> Result<Box<dyn ReplayCache + Send>, String> {
        Ok(match self {
            CacheKind::Shoal(policy) => Box::new(
                ShoalCache::new(policy, capacity, shards).map_err(|error| error.to_string())?,
            ),
            CacheKind::Moka => Box::new(MokaCache::new(capacity)),
            CacheKind::QuickCache => Box::new(QuickCache::new(capacity)),
            CacheKind::Lru => Box::new(ExactLru::new(capacity)),
        })
    }
}

impl fmt::Display for CacheKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheKind::Shoal(policy) => write!(f, "shoal/{policy}"),
            CacheKind::Moka => f.write_str("moka"),
            CacheKind::QuickCache => f.write_str("quick_cache"),
            CacheKind::Lru => f.write_str("lru"),
        }
    }
}

/// shoal's engine, one namespace, empty values.
pub struct ShoalCache {
    /// Kept so the namespace's engine lives as long as the replay.
    _engine: Engine,
    namespace: Arc<Namespace>,
    failures: u64,
    first_failure: Option<EngineError>,
}

impl ShoalCache {
    /// An engine bounded to `capacity` keys with `shards` shards per
    /// namespace.
    ///
    /// # Errors
    /// The engine refused to create the namespace.
    pub fn new(
        policy: EvictionPolicy,
        capacity: NonZeroUsize,
        shards: usize,
    ) -> Result<Self, EngineError> {
        let mut config = EngineConfig::default();
        config.max_keys = capacity.get() as u64;
        config.eviction_policy = policy;
        config.shards_per_namespace = shards;
        let engine = Engine::new(config);
        let namespace = engine.namespace("trace")?;
        Ok(Self {
            _engine: engine,
            namespace,
            failures: 0,
            first_failure: None,
        })
    }

    fn record(&mut self, error: EngineError) {
        self.failures += 1;
        self.first_failure.get_or_insert(error);
    }
}

impl ReplayCache for ShoalCache {
    fn access(&mut self, key: u64) -> bool {
        let key = key_bytes(key);
        match self.namespace.get(&key) {
            Ok(Some(_)) => true,
            Ok(None) => {
                if let Err(error) = self
                    .namespace
                    .set(&key, Bytes::new(), SetOptions::default())
                {
                    self.record(error);
                }
                false
            }
            Err(error) => {
                self.record(error);
                false
            }
        }
    }

    fn finish(&mut self) -> Result<CacheState, String> {
        if let Some(error) = &self.first_failure {
            return Err(format!(
                "{} engine calls failed; the first: {error}",
                self.failures
            ));
        }
        let stats = self.namespace.stats();
        Ok(CacheState {
            entries: stats.keys,
            evictions: Some(stats.evictions()),
        })
    }
}

/// moka's W-TinyLFU cache.
pub struct MokaCache {
    cache: moka::sync::Cache<[u8; 8], ()>,
}

impl MokaCache {
    /// A cache of at most `capacity` entries.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            cache: moka::sync::Cache::new(capacity.get() as u64),
        }
    }
}

impl ReplayCache for MokaCache {
    fn access(&mut self, key: u64) -> bool {
        let key = key_bytes(key);
        if self.cache.get(&key).is_some() {
            true
        } else {
            self.cache.insert(key, ());
            false
        }
    }

    fn finish(&mut self) -> Result<CacheState, String> {
        self.cache.run_pending_tasks();
        Ok(CacheState {
            entries: self.cache.entry_count(),
            evictions: None,
        })
    }
}

/// quick_cache's CLOCK-Pro cache, unsharded so the capacity is exact.
pub struct QuickCache {
    cache: quick_cache::unsync::Cache<[u8; 8], ()>,
}

impl QuickCache {
    /// A cache of at most `capacity` entries.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            cache: quick_cache::unsync::Cache::new(capacity.get()),
        }
    }
}

impl ReplayCache for QuickCache {
    fn access(&mut self, key: u64) -> bool {
        let key = key_bytes(key);
        if self.cache.get(&key).is_some() {
            true
        } else {
            self.cache.insert(key, ());
            false
        }
    }

    fn finish(&mut self) -> Result<CacheState, String> {
        Ok(CacheState {
            entries: self.cache.len() as u64,
            evictions: None,
        })
    }
}

/// An exact least-recently-used cache, the classic baseline.
pub struct ExactLru {
    cache: lru::LruCache<[u8; 8], ()>,
    evictions: u64,
}

impl ExactLru {
    /// A cache of at most `capacity` entries.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            cache: lru::LruCache::new(capacity),
            evictions: 0,
        }
    }
}

impl ReplayCache for ExactLru {
    fn access(&mut self, key: u64) -> bool {
        let key = key_bytes(key);
        if self.cache.get(&key).is_some() {
            true
        } else {
            if self.cache.push(key, ()).is_some() {
                self.evictions += 1;
            }
            false
        }
    }

    fn finish(&mut self) -> Result<CacheState, String> {
        Ok(CacheState {
            entries: self.cache.len() as u64,
            evictions: Some(self.evictions),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capacity(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).expect("non-zero")
    }

    fn replayable() -> Vec<CacheKind> {
        CacheKind::all()
            .into_iter()
            .filter(|kind| kind.is_replayable())
            .collect()
    }

    #[test]
    fn every_shoal_policy_and_every_peer_is_listed_once() {
        let kinds = CacheKind::all();
        for policy in EvictionPolicy::ALL {
            assert_eq!(
                kinds
                    .iter()
                    .filter(|k| **k == CacheKind::Shoal(*policy))
                    .count(),
                1
            );
        }
        let peers: Vec<String> = kinds
            .iter()
            .filter(|k| k.is_peer())
            .map(ToString::to_string)
            .collect();
        assert_eq!(peers, ["moka", "quick_cache", "lru"]);
        assert!(!CacheKind::Shoal(EvictionPolicy::NoEviction).is_replayable());
        assert_eq!(
            CacheKind::Shoal(EvictionPolicy::Lru).to_string(),
            "shoal/lru"
        );
    }

    #[test]
    fn a_repeated_key_hits_in_every_cache() {
        for kind in replayable() {
            let mut cache = kind.build(capacity(8), 1).expect("build");
            assert!(!cache.access(42), "{kind}: first access misses");
            assert!(cache.access(42), "{kind}: second access hits");
            assert!(!cache.access(43), "{kind}: a new key misses");
            let state = cache.finish().expect("no failures");
            assert_eq!(state.entries, 2, "{kind}");
        }
    }

    #[test]
    fn every_cache_stays_within_its_capacity() {
        for kind in replayable() {
            let mut cache = kind.build(capacity(16), 1).expect("build");
            for round in 0..3 {
                for key in 0..200 {
                    cache.access(key * 7 + round);
                }
            }
            let state = cache.finish().expect("no failures");
            assert!(state.entries <= 16, "{kind} holds {}", state.entries);
            if let Some(evictions) = state.evictions {
                assert!(evictions > 0, "{kind} evicted nothing");
            }
        }
    }

    #[test]
    fn exact_lru_evicts_the_least_recently_used_key() {
        let mut cache = ExactLru::new(capacity(2));
        let hits: Vec<bool> = [1, 2, 1, 3, 2, 1].map(|key| cache.access(key)).to_vec();
        // 3 evicts 2 (1 was read after it), 2 then evicts 1, and 1 evicts 3.
        assert_eq!(hits, [false, false, true, false, false, false]);
        assert_eq!(
            cache.finish(),
            Ok(CacheState {
                entries: 2,
                evictions: Some(3)
            })
        );
    }

    #[test]
    fn keys_are_little_endian_block_numbers() {
        assert_eq!(key_bytes(0x0102), [2, 1, 0, 0, 0, 0, 0, 0]);
    }
}
