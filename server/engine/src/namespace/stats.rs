//! What a namespace reports about itself: counters and sizes read from
//! its shards, and its own budget's usage.

use super::Namespace;
use crate::BudgetUsage;

/// Counters and sizes of one namespace, read from its shards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceStats {
    /// Keys held, including any whose deadline passed less than a sweep ago.
    pub keys: u64,
    /// Reads that found their key.
    pub hits: u64,
    /// Reads that did not.
    pub misses: u64,
    /// Writes that stored a value.
    pub sets: u64,
    /// Keys removed by delete commands.
    pub deletes: u64,
    /// Keys removed because their deadline passed.
    pub expirations: u64,
    /// Keys removed by flushes.
    pub flushed: u64,
    /// Keys evicted because the engine held `max_keys` keys.
    pub evicted_for_keys: u64,
    /// Keys evicted because the engine held `max_memory` bytes.
    pub evicted_for_memory: u64,
    /// Bytes held for entries: payload, table slots and expiry index.
    pub memory_bytes: u64,
    /// Bytes of collection versions that writes left behind for streamed
    /// reads still reading them (HGETALL, LRANGE, SMEMBERS): not in
    /// `memory_bytes`, but charged to the memory budget until the readers
    /// finish or their deadline ends them.
    pub snapshot_bytes: u64,
}

impl NamespaceStats {
    /// Keys evicted, for any cause.
    pub fn evictions(&self) -> u64 {
        self.evicted_for_keys + self.evicted_for_memory
    }

    /// `hits / (hits + misses)`, or 0 before any read.
    pub fn hit_ratio(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }

    /// Adds `other` into `self` (for totals).
    pub fn accumulate(&mut self, other: &NamespaceStats) {
        self.keys += other.keys;
        self.hits += other.hits;
        self.misses += other.misses;
        self.sets += other.sets;
        self.deletes += other.deletes;
        self.expirations += other.expirations;
        self.flushed += other.flushed;
        self.evicted_for_keys += other.evicted_for_keys;
        self.evicted_for_memory += other.evicted_for_memory;
        self.memory_bytes += other.memory_bytes;
        self.snapshot_bytes += other.snapshot_bytes;
    }
}

impl Namespace {
    /// How long, in milliseconds up to `now_ms`, this namespace has been
    /// seen empty by the calls to this method (0 when it holds keys, or on
    /// the first call that finds it empty).
    pub(crate) fn idle_for(&self, now_ms: u64) -> u64 {
        use std::sync::atomic::Ordering;
        if !self.is_empty() {
            self.empty_since_ms.store(0, Ordering::Relaxed);
            return 0;
        }
        match self.empty_since_ms.load(Ordering::Relaxed) {
            0 => {
                self.empty_since_ms.store(now_ms, Ordering::Relaxed);
                0
            }
            since => now_ms.saturating_sub(since),
        }
    }

    /// The namespace's own budget, when it has one (see
    /// [`NamespaceLimits`](super::NamespaceLimits)): what it holds against
    /// its limits.
    pub fn own_budget(&self) -> Option<BudgetUsage> {
        if !self.budget.is_namespace_budget() {
            return None;
        }
        let (keys, charged_bytes) = self.budget.usage();
        let (max_keys, max_memory_bytes) = self.budget.limits();
        Some(BudgetUsage {
            keys,
            charged_bytes,
            max_keys,
            max_memory_bytes,
            policy: self.budget.eviction_policy(),
        })
    }

    /// Counters and sizes of this namespace.
    pub fn stats(&self) -> NamespaceStats {
        let mut stats = NamespaceStats::default();
        for shard in self.shards.iter() {
            let state = shard.read();
            stats.keys += state.len() as u64;
            stats.sets += state.counters.sets;
            stats.deletes += state.counters.deletes;
            stats.expirations += state.counters.expirations;
            stats.flushed += state.counters.flushed;
            stats.evicted_for_keys += state.counters.evicted_for_keys;
            stats.evicted_for_memory += state.counters.evicted_for_memory;
            stats.memory_bytes += state.memory_bytes() as u64;
            drop(state);
            stats.hits += shard.hits();
            stats.misses += shard.misses();
        }
        stats.snapshot_bytes = self.pins.bytes();
        stats
    }
}
