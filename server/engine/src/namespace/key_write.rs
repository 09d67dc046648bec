//! One write to one key, from taking its shard's lock to the last cleanup.
//!
//! Every write command has the same frame: hash the key, take the shard's
//! write lock, drop the entry if its deadline passed, make room under the
//! budget, change the entry and announce the change; then release the lock,
//! free what the write removed (after the lock, so that freeing a large
//! value never stalls the shard's readers) and, if a budget is still passed,
//! evict from the namespace's other shards. [`KeyWrite`] is that frame: the
//! commands hold one and do only what is their own, and its field order
//! makes the cleanup happen in the right order on every path, errors
//! included.

use bytes::Bytes;
use parking_lot::RwLockWriteGuard;

use super::Namespace;
use crate::EngineError;
use crate::budget::{BudgetScope, EvictionCause};
use crate::change::ChangeKind;
use crate::entry_store::{RemovedEntry, Spilled};
use crate::eviction::EvictionPolicy;
use crate::shard::{KEY_CHARGE_BYTES, ShardState};

/// A write in progress on one key's shard. Dropping it releases the lock,
/// then frees the removed entries, then spills eviction to other shards.
pub(super) struct KeyWrite<'a> {
    /// The shard's state under its write lock; declared first, so it is
    /// released before the fields below are dropped.
    pub(super) state: RwLockWriteGuard<'a, ShardState>,
    /// The key's entry, removed because its deadline had passed.
    pub(super) expired: Option<RemovedEntry>,
    /// Entries evicted to make room, or removed by the write itself.
    pub(super) removed: Vec<RemovedEntry>,
    /// What a replaced value held outside its slot.
    pub(super) replaced: Option<Spilled>,
    /// The key's hash.
    pub(super) hash: u64,
    /// Declared last: runs once everything above is released.
    after: SpillEviction<'a>,
}

/// Evicts from the namespace's other shards, when dropped, if a budget is
/// still passed (see [`Namespace::spill_eviction`]).
struct SpillEviction<'a> {
    namespace: &'a Namespace,
    shard: usize,
}

impl Drop for SpillEviction<'_> {
    fn drop(&mut self) {
        self.namespace.spill_eviction(self.shard);
    }
}

impl Namespace {
    /// Takes the write lock of the shard owning `key` (which the caller has
    /// checked).
    #[inline]
    pub(super) fn lock_key(&self, key: &[u8]) -> KeyWrite<'_> {
        let hash = self.hash(key);
        let (shard, lock) = self.shard(hash);
        KeyWrite {
            state: lock.write(),
            expired: None,
            removed: Vec::new(),
            replaced: None,
            hash,
            after: SpillEviction {
                namespace: self,
                shard,
            },
        }
    }

    /// As [`Namespace::lock_key`], then removes the key's entry if its
    /// deadline passed at `now_ms`.
    pub(super) fn write_key(&self, key: &[u8], now_ms: u64) -> KeyWrite<'_> {
        let mut write = self.lock_key(key);
        write.expired =
            self.remove_if_expired(write.after.shard, &mut write.state, write.hash, key, now_ms);
        write
    }

    /// Counts an eviction by its cause, announces it, and keeps the entry
    /// in `evicted` to be dropped once the lock is released.
    pub(super) fn record_eviction(
        &self,
        index: usize,
        state: &mut ShardState,
        cause: EvictionCause,
        entry: RemovedEntry,
        evicted: &mut Vec<RemovedEntry>,
    ) {
        match cause {
            EvictionCause::KeyCount => state.counters.evicted_for_keys += 1,
            EvictionCause::Memory => state.counters.evicted_for_memory += 1,
        }
        let sequence = state.next_sequence();
        self.emit(index, sequence, &entry.key, ChangeKind::Evicted);
        evicted.push(entry);
    }

    /// Evicts from this namespace's other shards while a budget is still
    /// passed after a write.
    ///
    /// A write evicts from its own shard first, under the lock it already
    /// holds; when that shard has nothing left to evict, the write goes
    /// ahead and the budget stays passed. Small budgets spread over many
    /// shards hit this often (a namespace limited to 5 keys has 16 shards).
    /// This takes each other shard's lock in turn, one at a time, after the
    /// writer's own lock is released, so no two shard locks are ever held
    /// together.
    fn spill_eviction(&self, from: usize) {
        if self.budget.evicting_policy().is_none() || self.budget.over(0, 0).is_none() {
            return;
        }
        let count = self.shards.len();
        // No key is empty, so this protects nothing.
        let nothing: (u64, &[u8]) = (0, &[]);
        for offset in 1..count {
            let index = (from + offset) % count;
            let shard = &self.shards[index];
            let mut state = shard.write();
            state.observe_reads(shard.hits(), shard.misses());
            let mut evicted = Vec::new();
            while let Some((cause, _)) = self.budget.over(0, 0) {
                let Some(entry) = state.evict_one(nothing) else {
                    break;
                };
                self.record_eviction(index, &mut state, cause, entry, &mut evicted);
            }
            drop(state);
            drop(evicted);
            if self.budget.over(0, 0).is_none() {
                return;
            }
        }
    }
}

impl KeyWrite<'_> {
    /// The index of the key's shard.
    pub(super) fn shard(&self) -> usize {
        self.after.shard
    }

    /// Announces a change to `key` made by this write.
    pub(super) fn emit(&self, sequence: u64, key: &[u8], kind: ChangeKind) {
        self.after
            .namespace
            .emit(self.after.shard, sequence, key, kind);
    }

    /// Announces that `key` now holds the string `value`; builds the record
    /// only when someone listens.
    pub(super) fn emit_set(&self, version: u64, key: &[u8], value: Bytes, expires_at_ms: u64) {
        if self.after.namespace.sink.get().is_some() {
            self.emit(
                version,
                key,
                ChangeKind::Set {
                    value,
                    expires_at_ms,
                },
            );
        }
    }

    /// Before a write to `key` that adds `extra_bytes` (and a key, when
    /// `adds_key`), evicts from this shard until the engine is within its
    /// limits, never `key` itself. Under `noeviction` the write is refused
    /// instead. Eviction is bounded per write; when this shard has nothing
    /// left to evict the write goes ahead (and the other shards are asked
    /// when this write is dropped).
    pub(super) fn make_room(
        &mut self,
        key: &[u8],
        adds_key: bool,
        extra_bytes: usize,
    ) -> Result<(), EngineError> {
        const MAX_EVICTIONS_PER_WRITE: usize = 64;
        let namespace = self.after.namespace;
        let Some(policy) = namespace.budget.policy() else {
            return Ok(());
        };
        let extra_keys = u64::from(adds_key);
        let extra_bytes = extra_bytes as u64 + if adds_key { KEY_CHARGE_BYTES as u64 } else { 0 };
        for attempt in 0..MAX_EVICTIONS_PER_WRITE {
            let Some((cause, scope)) = namespace.budget.over(extra_keys, extra_bytes) else {
                return Ok(());
            };
            if attempt == 0 {
                let shard = &namespace.shards[self.after.shard];
                self.state.observe_reads(shard.hits(), shard.misses());
            }
            if policy == EvictionPolicy::NoEviction {
                return Err(out_of_memory(scope, cause));
            }
            let Some(entry) = self.state.evict_one((self.hash, key)) else {
                return Ok(());
            };
            namespace.record_eviction(
                self.after.shard,
                &mut self.state,
                cause,
                entry,
                &mut self.removed,
            );
        }
        Ok(())
    }
}

/// The error of a write refused under `noeviction`, naming the limit.
pub(super) fn out_of_memory(scope: BudgetScope, cause: EvictionCause) -> EngineError {
    EngineError::OutOfMemory {
        limit: match (scope, cause) {
            (BudgetScope::Engine, EvictionCause::KeyCount) => "max_keys",
            (BudgetScope::Engine, EvictionCause::Memory) => "max_memory",
            (BudgetScope::Namespace, EvictionCause::KeyCount) => "namespace max_keys",
            (BudgetScope::Namespace, EvictionCause::Memory) => "namespace max_memory",
        },
    }
}
