//! A namespace: one independent keyspace, split into shards, and the
//! commands that run on it.

mod batch_read;

pub use batch_read::BatchRead;

use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;

use super::budget::{Budget, BudgetScope, EvictionCause};
use super::change::{ChangeKind, ChangeRecord, CollectionChange, FlushRecord, SinkSlot};
use super::deadline::Deadline;
use super::entry_store::{EntryRef, RemovedEntry, StringRead, entry_bytes};
use super::eviction::EvictionPolicy;
use super::integer::{format_i64, parse_i64};
use super::scan::{ScanCursor, ScanFilter, ScanPage, scan_shard};
use super::shard::{KEY_CHARGE_BYTES, Shard, ShardState};
use super::value::Value;
use super::{
    BudgetUsage, Clock, Condition, EngineError, Expiry, IncrementOutcome, ItemMeta, KeyType,
    Limits, SetOptions, SetOutcome, WriteOutcome,
};

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
    }
}

/// One keyspace. Obtained from [`Engine::namespace`](super::Engine::namespace);
/// cheap to keep and share (`Arc`), and every method takes `&self`.
pub struct Namespace {
    name: Arc<str>,
    shards: Box<[Shard]>,
    shard_mask: usize,
    hasher: foldhash::fast::RandomState,
    limits: Limits,
    clock: Arc<dyn Clock>,
    sink: Arc<SinkSlot>,
    /// Identifies this namespace instance in scan cursors.
    cursor_epoch: u64,
    /// The engine-wide key and memory budget.
    budget: Arc<Budget>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl Namespace {
    pub(crate) fn new(
        name: Arc<str>,
        shard_count: usize,
        limits: Limits,
        clock: Arc<dyn Clock>,
        sink: Arc<SinkSlot>,
        cursor_epoch: u64,
        budget: Arc<Budget>,
    ) -> Self {
        debug_assert!(shard_count.is_power_of_two());
        let hasher = foldhash::fast::RandomState::default();
        Self {
            name,
            shards: (0..shard_count)
                .map(|_| Shard::new(Arc::clone(&budget), hasher.clone()))
                .collect(),
            shard_mask: shard_count - 1,
            hasher,
            limits,
            clock,
            sink,
            cursor_epoch,
            budget,
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The shard owning `hash`. Uses bits the table itself does not use for
    /// bucket selection (low bits) or tags (top seven bits).
    fn shard_index(&self, hash: u64) -> usize {
        (hash >> 32) as usize & self.shard_mask
    }

    fn shard(&self, hash: u64) -> (usize, &Shard) {
        let index = self.shard_index(hash);
        (index, &self.shards[index])
    }

    fn check_key(&self, key: &[u8]) -> Result<(), EngineError> {
        if key.is_empty() {
            return Err(EngineError::EmptyKey);
        }
        if key.len() > self.limits.max_key_bytes {
            return Err(EngineError::KeyTooLong {
                len: key.len(),
                max: self.limits.max_key_bytes,
            });
        }
        Ok(())
    }

    /// Checks a value (string, hash value or list element) against the
    /// value size limit.
    pub(crate) fn check_value(&self, value: &[u8]) -> Result<(), EngineError> {
        if value.len() > self.limits.max_value_bytes {
            return Err(EngineError::ValueTooLarge {
                len: value.len(),
                max: self.limits.max_value_bytes,
            });
        }
        Ok(())
    }

    fn emit(&self, shard: usize, sequence: u64, key: &[u8], kind: ChangeKind) {
        if let Some(sink) = self.sink.get() {
            sink.record(ChangeRecord {
                namespace: Arc::clone(&self.name),
                shard: shard as u32,
                sequence,
                key: Bytes::copy_from_slice(key),
                kind,
            });
        }
    }

    /// Removes `key` if its deadline has passed, counting an expiration.
    fn remove_if_expired(
        &self,
        shard: usize,
        state: &mut ShardState,
        hash: u64,
        key: &[u8],
        now_ms: u64,
    ) -> Option<RemovedEntry> {
        if !state.find(hash, key)?.is_expired(now_ms) {
            return None;
        }
        let entry = state.remove(hash, key)?;
        state.counters.expirations += 1;
        let sequence = state.next_sequence();
        self.emit(shard, sequence, &entry.key, ChangeKind::Expired);
        Some(entry)
    }

    /// The slot of `key`'s live entry, after removing it when its deadline
    /// has passed (the removed entry is returned, to be dropped after the
    /// lock is released). One lookup when the key is live or absent; the
    /// clock is read, unless `now_ms` is given, only for an entry with a
    /// deadline.
    fn find_live(
        &self,
        shard: usize,
        state: &mut ShardState,
        hash: u64,
        key: &[u8],
        now_ms: Option<u64>,
    ) -> (Option<u32>, Option<RemovedEntry>) {
        match state.find_slot(hash, key) {
            Some(slot) if state.entry(slot).expires_at_ms() != 0 => {
                let now_ms = now_ms.unwrap_or_else(|| self.clock.now_ms());
                if state.entry(slot).is_expired(now_ms) {
                    (
                        None,
                        self.remove_if_expired(shard, state, hash, key, now_ms),
                    )
                } else {
                    (Some(slot), None)
                }
            }
            slot => (slot, None),
        }
    }

    /// Checks a hash field or set member against the key length limit.
    pub(crate) fn check_element(
        &self,
        element: &'static str,
        bytes: &[u8],
    ) -> Result<(), EngineError> {
        if bytes.len() > self.limits.max_key_bytes {
            return Err(EngineError::ElementTooLong {
                element,
                len: bytes.len(),
                max: self.limits.max_key_bytes,
            });
        }
        Ok(())
    }

    /// Before a write that adds `extra_bytes` (and a key, when `adds_key`),
    /// evicts from this shard until the engine is within its limits, never
    /// the key being written. Under `noeviction` the write is refused
    /// instead. Eviction is bounded per write; when this shard has nothing
    /// left to evict the write goes ahead.
    fn make_room(
        &self,
        index: usize,
        state: &mut ShardState,
        target: (u64, &[u8]),
        adds_key: bool,
        extra_bytes: usize,
        evicted: &mut Vec<RemovedEntry>,
    ) -> Result<(), EngineError> {
        const MAX_EVICTIONS_PER_WRITE: usize = 64;
        let Some(policy) = self.budget.policy() else {
            return Ok(());
        };
        let extra_keys = u64::from(adds_key);
        let extra_bytes = extra_bytes as u64 + if adds_key { KEY_CHARGE_BYTES as u64 } else { 0 };
        for _ in 0..MAX_EVICTIONS_PER_WRITE {
            let Some((cause, scope)) = self.budget.over(extra_keys, extra_bytes) else {
                return Ok(());
            };
            if policy == EvictionPolicy::NoEviction {
                return Err(EngineError::OutOfMemory {
                    limit: match (scope, cause) {
                        (BudgetScope::Engine, EvictionCause::KeyCount) => "max_keys",
                        (BudgetScope::Engine, EvictionCause::Memory) => "max_memory",
                        (BudgetScope::Namespace, EvictionCause::KeyCount) => "namespace max_keys",
                        (BudgetScope::Namespace, EvictionCause::Memory) => "namespace max_memory",
                    },
                });
            }
            let Some(entry) = state.evict_one(target) else {
                return Ok(());
            };
            self.record_eviction(index, state, cause, entry, evicted);
        }
        Ok(())
    }

    /// Counts an eviction by its cause, announces it, and keeps the entry
    /// in `evicted` to be dropped once the lock is released.
    fn record_eviction(
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
            let mut state = self.shards[index].write();
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

    /// Runs `read` on the live value under `key` (`None` when the key is
    /// absent or expired) under the shard's shared lock, counting a hit or a
    /// miss. A key of another type than `key_type` fails with WRONGTYPE
    /// before `read` is called.
    pub(crate) fn read_value<R>(
        &self,
        key: &[u8],
        key_type: KeyType,
        read: impl FnOnce(Option<&Value>) -> Result<R, EngineError>,
    ) -> Result<R, EngineError> {
        self.check_key(key)?;
        let hash = self.hash(key);
        let (_, shard) = self.shard(hash);
        let state = shard.read();
        let live = state
            .find(hash, key)
            .filter(|entry| entry.expires_at_ms() == 0 || !entry.is_expired(self.clock.now_ms()));
        shard.count_read(live.is_some());
        let Some(entry) = live else {
            return read(None);
        };
        if let Some(policy) = self.budget.evicting_policy() {
            entry.touch(policy.max_frequency());
        }
        match entry.stored_value() {
            Some(value) if value.key_type() == key_type => read(Some(value)),
            _ => Err(EngineError::WrongType {
                expected: key_type,
                actual: entry.key_type(),
            }),
        }
    }

    /// Applies a collection command to `key`.
    ///
    /// A key of another type than `key_type` fails with WRONGTYPE. An absent
    /// key is created empty when `create` is set; otherwise `apply` is not
    /// called and the result is `None`. `apply` checks everything it can fail
    /// on before it changes the value, so an error changes nothing; it
    /// returns its result and the change it made (`None` for none). Then an
    /// emptied collection is removed; otherwise, if anything changed or an
    /// expiry was given, the version is bumped and the deadline follows
    /// `expiry` (`Keep` leaves it).
    pub(crate) fn write_collection<R>(
        &self,
        key: &[u8],
        key_type: KeyType,
        create: bool,
        expiry: Expiry,
        apply: impl FnOnce(&mut Value) -> Result<(R, Option<CollectionChange>), EngineError>,
    ) -> Result<Option<WriteOutcome<R>>, EngineError> {
        self.check_key(key)?;
        let now_ms = self.clock.now_ms();
        let deadline = Deadline::resolve(expiry, now_ms)?;
        let hash = self.hash(key);
        let (index, shard) = self.shard(hash);
        let mut state = shard.write();
        let expired = self.remove_if_expired(index, &mut state, hash, key, now_ms);
        let existing = state
            .find(hash, key)
            .map(|entry| (entry.key_type(), entry.expires_at_ms()));
        let mut garbage = Vec::new();
        match existing {
            None if create => {
                self.make_room(
                    index,
                    &mut state,
                    (hash, key),
                    true,
                    entry_bytes(key.len(), None),
                    &mut garbage,
                )?;
            }
            // A write to an existing collection is refused under noeviction
            // only once the engine is already over its limit.
            Some(_) => self.make_room(index, &mut state, (hash, key), false, 0, &mut garbage)?,
            None => {}
        }
        let outcome = match existing {
            Some((actual, _)) if actual != key_type => {
                return Err(EngineError::WrongType {
                    expected: key_type,
                    actual,
                });
            }
            Some((_, current_deadline)) => {
                let (result, change) = state
                    .update_value(hash, key, apply)
                    .ok_or(EngineError::NoSuchKey)??;
                if self.budget.evicting_policy().is_some() {
                    // The collection may have grown past the limit.
                    self.make_room(index, &mut state, (hash, key), false, 0, &mut garbage)?;
                }
                let emptied = state
                    .find(hash, key)
                    .is_some_and(|entry| entry.is_empty_collection());
                if emptied || deadline == Deadline::Passed {
                    garbage.extend(state.remove(hash, key));
                    let sequence = state.next_sequence();
                    state.counters.sets += 1;
                    let key = Bytes::copy_from_slice(key);
                    match change {
                        Some(change) if emptied => {
                            self.emit(
                                index,
                                sequence,
                                &key,
                                ChangeKind::Collection {
                                    change,
                                    expires_at_ms: 0,
                                },
                            );
                        }
                        _ => self.emit(index, sequence, &key, ChangeKind::Deleted),
                    }
                    WriteOutcome { result, version: 0 }
                } else if change.is_some() || deadline != Deadline::Keep {
                    let expires_at_ms = deadline.stored_ms(current_deadline);
                    let version = state.set_deadline(hash, key, expires_at_ms).unwrap_or(0);
                    state.counters.sets += 1;
                    let key = Bytes::copy_from_slice(key);
                    let kind = match change {
                        Some(change) => ChangeKind::Collection {
                            change,
                            expires_at_ms,
                        },
                        None => ChangeKind::ExpiryChanged { expires_at_ms },
                    };
                    self.emit(index, version, &key, kind);
                    WriteOutcome { result, version }
                } else {
                    let version = state.find(hash, key).map_or(0, |entry| entry.version());
                    WriteOutcome { result, version }
                }
            }
            None if !create => return Ok(None),
            None => {
                let mut value = Value::empty(key_type);
                let (result, change) = apply(&mut value)?;
                if value.is_empty_collection() || deadline == Deadline::Passed {
                    WriteOutcome { result, version: 0 }
                } else {
                    let expires_at_ms = deadline.stored_ms(0);
                    let (version, _) = state.upsert(hash, key, value, expires_at_ms);
                    if let Some(change) = change {
                        let key = Bytes::copy_from_slice(key);
                        self.emit(
                            index,
                            version,
                            &key,
                            ChangeKind::Collection {
                                change,
                                expires_at_ms,
                            },
                        );
                    }
                    WriteOutcome { result, version }
                }
            }
        };
        drop(state);
        drop((expired, garbage));
        self.spill_eviction(index);
        Ok(Some(outcome))
    }

    /// Reads a string value.
    ///
    /// # Errors
    /// Invalid key, or [`EngineError::WrongType`] when the key holds a
    /// collection.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>, EngineError> {
        self.read_string(key, |entry, _| string_bytes(entry))
    }

    /// Reads a string value and its metadata.
    ///
    /// # Errors
    /// As [`Namespace::get`].
    pub fn get_with_meta(&self, key: &[u8]) -> Result<Option<(Bytes, ItemMeta)>, EngineError> {
        self.read_string(key, string_with_meta)
    }

    /// Runs `read` on the live entry for `key` and the time it was read at
    /// (0 when the entry has no deadline, which needs no clock), under the
    /// shard's shared lock; counts the hit or miss and the entry's use.
    /// An expired entry found on the way is removed and reads as absent.
    #[inline(always)]
    fn read_string<R>(
        &self,
        key: &[u8],
        read: impl FnOnce(EntryRef<'_>, u64) -> Result<R, EngineError>,
    ) -> Result<Option<R>, EngineError> {
        self.check_key(key)?;
        let hash = self.hash(key);
        let (index, shard) = self.shard(hash);
        let state = shard.read();
        let Some(entry) = state.find(hash, key) else {
            shard.count_read(false);
            return Ok(None);
        };
        let now_ms = if entry.expires_at_ms() == 0 {
            0
        } else {
            self.clock.now_ms()
        };
        if entry.is_expired(now_ms) {
            drop(state);
            shard.count_read(false);
            let expired = self.remove_if_expired(index, &mut shard.write(), hash, key, now_ms);
            drop(expired);
            return Ok(None);
        }
        let read = read(entry, now_ms)?;
        if let Some(policy) = self.budget.evicting_policy() {
            entry.touch(policy.max_frequency());
        }
        drop(state);
        shard.count_read(true);
        Ok(Some(read))
    }

    /// Writes a string value.
    ///
    /// # Errors
    /// Invalid key, value or expiry; [`EngineError::WrongType`] when
    /// `return_previous` is set and the key holds a collection. Nothing
    /// changes on error.
    pub fn set(
        &self,
        key: &[u8],
        value: Bytes,
        options: SetOptions,
    ) -> Result<SetOutcome, EngineError> {
        self.check_key(key)?;
        self.check_value(&value)?;
        // The clock is read only when the new deadline or the old entry's
        // needs it.
        let now_ms = match options.expiry {
            Expiry::AfterMs(_) | Expiry::AtUnixMs(_) => Some(self.clock.now_ms()),
            Expiry::Never | Expiry::Keep => None,
        };
        let deadline = Deadline::resolve(options.expiry, now_ms.unwrap_or(0))?;
        let hash = self.hash(key);
        let (index, shard) = self.shard(hash);
        let mut state = shard.write();
        let (slot, expired) = self.find_live(index, &mut state, hash, key, now_ms);
        let existing = slot.map(|slot| state.entry(slot));
        let previous = match (options.return_previous, existing) {
            (true, Some(entry)) => Some(string_bytes(entry)?),
            _ => None,
        };
        let current_version = existing.map_or(0, |entry| entry.version());
        let met = match options.condition {
            Condition::Always => true,
            Condition::IfAbsent => existing.is_none(),
            Condition::IfPresent => existing.is_some(),
            Condition::IfVersion(version) => existing.is_some() && current_version == version,
        };
        if !met {
            drop(state);
            drop(expired);
            return Ok(SetOutcome {
                stored: false,
                version: current_version,
                previous,
            });
        }
        let current_deadline = existing.map_or(0, |entry| entry.expires_at_ms());
        let adds_key = existing.is_none();
        let old_bytes = existing.map_or(0, |entry| entry.stored_bytes());
        let mut evicted = Vec::new();
        if deadline != Deadline::Passed {
            let extra = entry_bytes(key.len(), Some(value.len())).saturating_sub(old_bytes);
            self.make_room(
                index,
                &mut state,
                (hash, key),
                adds_key,
                extra,
                &mut evicted,
            )?;
        }
        let (version, replaced) = if deadline == Deadline::Passed {
            let removed = state.remove(hash, key);
            if let Some(entry) = &removed {
                state.counters.deletes += 1;
                let sequence = state.next_sequence();
                self.emit(index, sequence, &entry.key, ChangeKind::Deleted);
            }
            (0, removed.and_then(RemovedEntry::into_spilled))
        } else {
            let expires_at_ms = deadline.stored_ms(current_deadline);
            // Evictions may have moved entries; otherwise the slot found
            // above still holds.
            let slot = if evicted.is_empty() {
                slot
            } else {
                state.find_slot(hash, key)
            };
            let (version, replaced) =
                state.upsert_at(slot, hash, key, Value::string(value.clone()), expires_at_ms);
            if self.sink.get().is_some() {
                let key = Bytes::copy_from_slice(key);
                self.emit(
                    index,
                    version,
                    &key,
                    ChangeKind::Set {
                        value,
                        expires_at_ms,
                    },
                );
            }
            (version, replaced)
        };
        drop(state);
        drop((expired, replaced, evicted));
        self.spill_eviction(index);
        Ok(SetOutcome {
            stored: true,
            version,
            previous,
        })
    }

    /// Deletes keys of any type; returns how many existed.
    ///
    /// # Errors
    /// An invalid key; then nothing is deleted.
    pub fn delete<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<u64, EngineError> {
        for key in keys {
            self.check_key(key.as_ref())?;
        }
        let now_ms = self.clock.now_ms();
        let mut deleted = 0;
        for key in keys {
            let key = key.as_ref();
            let hash = self.hash(key);
            let (index, shard) = self.shard(hash);
            let mut state = shard.write();
            let expired = self.remove_if_expired(index, &mut state, hash, key, now_ms);
            let removed = state.remove(hash, key);
            if let Some(entry) = &removed {
                deleted += 1;
                state.counters.deletes += 1;
                let sequence = state.next_sequence();
                self.emit(index, sequence, &entry.key, ChangeKind::Deleted);
                state.shrink_if_sparse();
            }
            drop(state);
            drop((expired, removed));
        }
        Ok(deleted)
    }

    /// Metadata of a key, or `None` when it does not exist.
    ///
    /// # Errors
    /// An invalid key.
    pub fn describe(&self, key: &[u8]) -> Result<Option<ItemMeta>, EngineError> {
        self.check_key(key)?;
        let hash = self.hash(key);
        let (_, shard) = self.shard(hash);
        let state = shard.read();
        let now_ms = self.clock.now_ms();
        Ok(state
            .find(hash, key)
            .filter(|entry| !entry.is_expired(now_ms))
            .map(|entry| meta_of(entry, now_ms)))
    }

    /// Adds `delta` to the counter under `key`. An absent key starts from
    /// `initial` (default 0) and gets `expiry`; an existing key keeps its
    /// expiry.
    ///
    /// # Errors
    /// Invalid key or expiry; [`EngineError::WrongType`] on a collection;
    /// [`EngineError::NotAnInteger`] when the value is not a canonical
    /// decimal `i64`; [`EngineError::IncrementOverflow`]. Nothing changes on
    /// error.
    pub fn increment(
        &self,
        key: &[u8],
        delta: i64,
        initial: Option<i64>,
        expiry: Expiry,
    ) -> Result<IncrementOutcome, EngineError> {
        self.check_key(key)?;
        let now_ms = self.clock.now_ms();
        let deadline = Deadline::resolve(expiry, now_ms)?;
        let hash = self.hash(key);
        let (index, shard) = self.shard(hash);
        let mut state = shard.write();
        let expired = self.remove_if_expired(index, &mut state, hash, key, now_ms);
        let (start, expires_at_ms, created) = match state.find(hash, key) {
            Some(entry) => (
                with_string(entry, parse_i64)??,
                entry.expires_at_ms(),
                false,
            ),
            None => (initial.unwrap_or(0), deadline.stored_ms(0), true),
        };
        let value = start
            .checked_add(delta)
            .ok_or(EngineError::IncrementOverflow)?;
        let mut evicted = Vec::new();
        let version = if created && deadline == Deadline::Passed {
            0
        } else {
            let text = format_i64(value);
            if created {
                self.make_room(
                    index,
                    &mut state,
                    (hash, key),
                    true,
                    entry_bytes(key.len(), Some(text.len())),
                    &mut evicted,
                )?;
            }
            let (version, replaced) =
                state.upsert(hash, key, Value::string(text.clone()), expires_at_ms);
            drop(replaced);
            if self.sink.get().is_some() {
                let key = Bytes::copy_from_slice(key);
                self.emit(
                    index,
                    version,
                    &key,
                    ChangeKind::Set {
                        value: text,
                        expires_at_ms,
                    },
                );
            }
            version
        };
        drop(state);
        drop((expired, evicted));
        self.spill_eviction(index);
        Ok(IncrementOutcome {
            value,
            version,
            created,
        })
    }

    /// Changes a key's expiry: `AfterMs`, `AtUnixMs` (a past time deletes the
    /// key) or `Never` (persist). Returns the key's new version, or `None`
    /// when the key does not exist.
    ///
    /// # Errors
    /// Invalid key or expiry, including [`Expiry::Keep`], which changes
    /// nothing and is refused as meaningless here.
    pub fn update_expiry(&self, key: &[u8], expiry: Expiry) -> Result<Option<u64>, EngineError> {
        self.check_key(key)?;
        if expiry == Expiry::Keep {
            return Err(EngineError::InvalidExpiry {
                field: "expiry",
                reason: "must be ttl_ms, at_unix_ms or never; keep changes nothing".into(),
            });
        }
        let now_ms = self.clock.now_ms();
        let deadline = Deadline::resolve(expiry, now_ms)?;
        let hash = self.hash(key);
        let (index, shard) = self.shard(hash);
        let mut state = shard.write();
        let expired = self.remove_if_expired(index, &mut state, hash, key, now_ms);
        if state.find(hash, key).is_none() {
            drop(state);
            drop(expired);
            return Ok(None);
        }
        let result = if deadline == Deadline::Passed {
            let removed = state.remove(hash, key);
            state.counters.deletes += 1;
            let sequence = state.next_sequence();
            if let Some(entry) = &removed {
                self.emit(index, sequence, &entry.key, ChangeKind::Deleted);
            }
            drop(state);
            drop(removed);
            Some(0)
        } else {
            let expires_at_ms = deadline.stored_ms(0);
            let version = state.set_deadline(hash, key, expires_at_ms);
            if let Some(version) = version {
                let key = Bytes::copy_from_slice(key);
                self.emit(
                    index,
                    version,
                    &key,
                    ChangeKind::ExpiryChanged { expires_at_ms },
                );
            }
            version
        };
        drop(expired);
        Ok(result)
    }

    /// One page of a key listing: up to `count` keys matching `filter`,
    /// starting at `cursor`. The page may hold fewer keys than asked even
    /// when the scan is not over (the work per call is bounded); it is over
    /// when the returned cursor is `None`.
    pub fn scan(&self, cursor: &ScanCursor, filter: &ScanFilter, count: usize) -> ScanPage {
        /// Entries examined per call before a partial page is returned.
        const WORK_PER_CALL: usize = 200_000;
        let now_ms = self.clock.now_ms();
        let mut keys = Vec::new();
        let mut position = cursor.clone();
        let mut examined = 0;
        while keys.len() < count && examined < WORK_PER_CALL {
            let Some(shard) = self.shards.get(position.shard as usize) else {
                return ScanPage { keys, cursor: None };
            };
            let state = shard.read();
            examined += state.len();
            let wanted = count - keys.len();
            let found = scan_shard(&state, position.after.as_ref(), filter, wanted, now_ms);
            drop(state);
            let exhausted = found.len() < wanted;
            position.after = found.last().map(|(hash, key)| (*hash, key.clone()));
            keys.extend(found.into_iter().map(|(_, key)| key));
            if exhausted {
                position = ScanCursor {
                    shard: position.shard + 1,
                    after: None,
                };
            }
        }
        let done = position.shard as usize >= self.shards.len();
        ScanPage {
            keys,
            cursor: (!done).then_some(position),
        }
    }

    /// Encodes a cursor for a client; see [`Namespace::decode_cursor`].
    pub fn encode_cursor(&self, cursor: &ScanCursor) -> Bytes {
        cursor.encode(self.cursor_epoch)
    }

    /// Decodes a cursor from [`Namespace::encode_cursor`]; an empty one
    /// starts a new scan.
    ///
    /// # Errors
    /// [`EngineError::InvalidCursor`] for bytes this namespace did not issue.
    pub fn decode_cursor(&self, bytes: &[u8]) -> Result<ScanCursor, EngineError> {
        ScanCursor::decode(bytes, self.cursor_epoch, self.shards.len())
    }

    /// Number of keys held (see [`NamespaceStats::keys`]).
    pub fn len(&self) -> u64 {
        self.shards
            .iter()
            .map(|shard| shard.read().len() as u64)
            .sum()
    }

    /// Whether the namespace holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every key; returns how many there were.
    pub fn flush(&self) -> u64 {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut state = shard.write();
            let table = state.take_all();
            state.counters.flushed += table.len() as u64;
            drop(state);
            removed += table.len() as u64;
            drop(table);
        }
        if let Some(sink) = self.sink.get() {
            sink.flushed(FlushRecord {
                namespace: Arc::clone(&self.name),
                removed,
            });
        }
        removed
    }

    /// Removes keys whose deadline has passed, taking each shard's lock for
    /// at most `batch` keys at a time, then gives back the memory of one
    /// shard left sparse (by this sweep or earlier ones). Returns how many
    /// keys were removed.
    ///
    /// One shard a call: rebuilding a sparse shard frees its chunks, and
    /// freeing every shard's at once, after a mass expiry, stalled readers
    /// whose threads had allocated them (see
    /// `EntryStore::remove_without_compaction`). At the sweeper's tick of
    /// 100 ms, 256 shards are all given back within half a minute.
    pub fn sweep_expired(&self, batch: usize) -> u64 {
        let now_ms = self.clock.now_ms();
        let mut removed = 0;
        for (index, shard) in self.shards.iter().enumerate() {
            if !shard.read().has_expiry_due(now_ms) {
                continue;
            }
            loop {
                let mut state = shard.write();
                let expired = state.take_expired(now_ms, batch);
                let done = expired.is_empty();
                state.counters.expirations += expired.len() as u64;
                for entry in &expired {
                    let sequence = state.next_sequence();
                    self.emit(index, sequence, &entry.key, ChangeKind::Expired);
                }
                drop(state);
                removed += expired.len() as u64;
                drop(expired);
                if done {
                    break;
                }
            }
        }
        if let Some(shard) = self.shards.iter().find(|shard| shard.read().is_sparse()) {
            shard.write().shrink_if_sparse();
        }
        removed
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
        stats
    }
}

/// Runs `read` on the string held by `entry`, or fails with WRONGTYPE.
fn with_string<R>(entry: EntryRef<'_>, read: impl FnOnce(&[u8]) -> R) -> Result<R, EngineError> {
    entry.with_string(read).ok_or_else(|| wrong_type(entry))
}

/// The string held by `entry` as [`Bytes`] for a reader, with its
/// metadata, or WRONGTYPE.
#[inline]
fn string_with_meta(entry: EntryRef<'_>, now_ms: u64) -> Result<(Bytes, ItemMeta), EngineError> {
    let StringRead {
        value,
        version,
        expires_at_ms,
    } = entry.read_string().ok_or_else(|| wrong_type(entry))?;
    let meta = item_meta(KeyType::String, version, expires_at_ms, value.len(), now_ms);
    Ok((value, meta))
}

/// The string held by `entry` as [`Bytes`] for a reader, or WRONGTYPE.
#[inline]
fn string_bytes(entry: EntryRef<'_>) -> Result<Bytes, EngineError> {
    entry.string_bytes().ok_or_else(|| wrong_type(entry))
}

#[inline]
fn wrong_type(entry: EntryRef<'_>) -> EngineError {
    EngineError::WrongType {
        expected: KeyType::String,
        actual: entry.key_type(),
    }
}

#[inline]
fn meta_of(entry: EntryRef<'_>, now_ms: u64) -> ItemMeta {
    item_meta(
        entry.key_type(),
        entry.version(),
        entry.expires_at_ms(),
        entry.value_size(),
        now_ms,
    )
}

/// Metadata from an entry's fields; a deadline of 0 is none.
#[inline]
fn item_meta(
    key_type: KeyType,
    version: u64,
    expires_at_ms: u64,
    size: usize,
    now_ms: u64,
) -> ItemMeta {
    let expires_at_ms = (expires_at_ms != 0).then_some(expires_at_ms);
    ItemMeta {
        key_type,
        version,
        expires_at_ms,
        ttl_ms: expires_at_ms.map(|at| at.saturating_sub(now_ms)),
        size: size as u64,
    }
}
