//! One shard: its entries plus the expiry index and counters that describe
//! them, all under one lock.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use std::sync::Arc;

use super::budget::Budget;
use super::entry_store::{EntryRef, EntryStore, Header, RemovedEntry, Spilled};
use super::eviction::{
    EvictionOrder, EvictionQueues, GHOST_BYTES_PER_KEY, QueueKind, QueueRef, Verdict,
};
use super::expiry_index::ExpiryIndex;
use super::value::Value;

/// Bytes charged per key beyond what its entry takes in the store (its
/// slot, and what it spills), so that a budget holds what the process
/// really spends on a key under steady eviction (measured with the
/// `memory_budget` example's storm of small values): its index bucket at a
/// third of the index's load (under steady removal a hash table runs
/// between a quarter and half full), its eviction-queue reference with the
/// stale ones kept until compaction, and what the S3-FIFO ghost remembers
/// for about one key each (which also covers W-TinyLFU's frequency sketch:
/// at most 20 bytes a key in shards of 512 keys or more; a smaller shard's
/// doorkeeper has a 1 KiB floor, up to about 31 bytes a key at 65 keys).
pub(crate) const KEY_CHARGE_BYTES: usize =
    (size_of::<u32>() + 1) * 3 + size_of::<QueueRef>() * 2 + GHOST_BYTES_PER_KEY;

/// Counters changed only under the shard's write lock.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WriteCounters {
    pub(crate) sets: u64,
    pub(crate) deletes: u64,
    pub(crate) expirations: u64,
    pub(crate) flushed: u64,
    pub(crate) evicted_for_keys: u64,
    pub(crate) evicted_for_memory: u64,
}

/// A shard: its state behind a read-write lock, and read counters kept
/// outside the lock so a hit needs only the shared lock.
///
/// Laid out for the first-level cache, which a read of every shard in turn
/// keeps asking for the shard's first lines:
/// - the read counters come first, on the lock word's line, so a hit
///   writes the line that taking the lock has just brought in;
/// - two shards never share a line (64-byte alignment);
/// - a shard spans an odd number of lines (7), so that the shards of a
///   namespace, laid side by side, start in every set of the cache. At 8
///   lines, the 256 shards' first lines all fell in 8 of its 64 sets and
///   pushed one another out: callgrind's model of this machine's 48 KiB
///   12-way cache counted 5.85 misses an operation on the engine benchmark
///   instead of 4.96 (`benches/instructions.sh`).
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct Shard {
    hits: AtomicU64,
    misses: AtomicU64,
    state: RwLock<ShardState>,
}

impl Shard {
    /// An empty shard reporting to `budget`, whose keys `hasher` hashes.
    pub(crate) fn new(budget: Arc<Budget>, hasher: foldhash::fast::RandomState) -> Self {
        Self {
            state: RwLock::new(ShardState {
                table: EntryStore::new(hasher),
                expiry: ExpiryIndex::default(),
                queues: EvictionQueues::new(budget.eviction_policy()),
                budget,
                reported: (0, 0),
                last_sequence: 0,
                counters: WriteCounters::default(),
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, ShardState> {
        self.state.read()
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, ShardState> {
        self.state.write()
    }

    #[inline]
    pub(crate) fn count_read(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a batch's reads of this shard at once.
    pub(crate) fn count_reads(&self, hits: u64, misses: u64) {
        if hits > 0 {
            self.hits.fetch_add(hits, Ordering::Relaxed);
        }
        if misses > 0 {
            self.misses.fetch_add(misses, Ordering::Relaxed);
        }
    }

    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub(crate) fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

/// Everything a shard's lock protects.
#[derive(Debug)]
pub(crate) struct ShardState {
    table: EntryStore,
    expiry: ExpiryIndex,
    /// Eviction order; empty when the engine has no budget.
    queues: EvictionQueues,
    /// The engine-wide budget this shard reports its keys and bytes to.
    budget: Arc<Budget>,
    /// Keys and charged bytes last reported to the budget.
    reported: (usize, usize),
    /// Last sequence number handed out; versions and change records use it.
    last_sequence: u64,
    pub(crate) counters: WriteCounters,
}

impl Drop for ShardState {
    /// Gives back what the shard held to its budget: a dropped namespace's
    /// entries, written after it was flushed, stop counting once it goes.
    fn drop(&mut self) {
        if self.budget.policy().is_some() {
            self.budget
                .report((self.reported.0, 0), (self.reported.1, 0));
        }
    }
}

impl ShardState {
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Makes room for `additional` more keys (see [`EntryStore::reserve`]).
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.table.reserve(additional);
    }

    #[inline]
    pub(crate) fn find(&self, hash: u64, key: &[u8]) -> Option<EntryRef<'_>> {
        self.table.find(hash, key)
    }

    /// The slot of `key`'s entry, which stays valid until an entry is
    /// removed (removals may move entries to fill holes).
    #[inline]
    pub(crate) fn find_slot(&self, hash: u64, key: &[u8]) -> Option<u32> {
        self.table.find_slot(hash, |entry| entry.key_is(key))
    }

    /// The entry in `slot`, from [`ShardState::find_slot`].
    #[inline]
    pub(crate) fn entry(&self, slot: u32) -> EntryRef<'_> {
        self.table.entry(slot)
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = EntryRef<'_>> {
        self.table.iter()
    }

    /// The hash of `key`, as the namespace computes it.
    pub(crate) fn hash_of(&self, key: &[u8]) -> u64 {
        self.table.hash_of(key)
    }

    /// Takes the next sequence number.
    pub(crate) fn next_sequence(&mut self) -> u64 {
        self.last_sequence += 1;
        self.last_sequence
    }

    /// Stores `value` under `key` with a new version, replacing any entry.
    /// Returns the new version and what the replaced value spilled (to be
    /// dropped after the lock is released).
    pub(crate) fn upsert(
        &mut self,
        hash: u64,
        key: &[u8],
        value: Value,
        expires_at_ms: u64,
    ) -> (u64, Option<Spilled>) {
        let slot = self.find_slot(hash, key);
        self.upsert_at(slot, hash, key, value, expires_at_ms)
    }

    /// [`ShardState::upsert`] for a caller that has just looked the key
    /// up: `slot` is what [`ShardState::find_slot`] returned, with no entry
    /// removed since, which saves the write a second lookup.
    pub(crate) fn upsert_at(
        &mut self,
        slot: Option<u32>,
        hash: u64,
        key: &[u8],
        value: Value,
        expires_at_ms: u64,
    ) -> (u64, Option<Spilled>) {
        let version = self.next_sequence();
        let replaced = self.store_at(slot, hash, key, value, expires_at_ms, version);
        self.counters.sets += 1;
        (version, replaced)
    }

    /// The last sequence number handed out; a snapshot of the shard
    /// reflects every record up to it.
    pub(crate) fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    /// Makes later sequence numbers exceed `sequence`: replayed records
    /// carry versions from before a restart, and every write after it must
    /// get a higher one.
    pub(crate) fn observe_sequence(&mut self, sequence: u64) {
        self.last_sequence = self.last_sequence.max(sequence);
    }

    /// Stores `value` under `key` with the given `version`, which the
    /// caller has made no higher than the shard's sequence (see
    /// [`ShardState::observe_sequence`]); the write of a replayed record.
    pub(crate) fn store_versioned(
        &mut self,
        hash: u64,
        key: &[u8],
        value: Value,
        expires_at_ms: u64,
        version: u64,
    ) -> Option<Spilled> {
        debug_assert!(version <= self.last_sequence);
        let slot = self.find_slot(hash, key);
        self.store_at(slot, hash, key, value, expires_at_ms, version)
    }

    fn store_at(
        &mut self,
        slot: Option<u32>,
        hash: u64,
        key: &[u8],
        value: Value,
        expires_at_ms: u64,
        version: u64,
    ) -> Option<Spilled> {
        debug_assert_eq!(slot, self.find_slot(hash, key));
        let replaced = match slot {
            Some(slot) => {
                let previous = self.table.entry(slot).header();
                let header = Header {
                    version,
                    expires_at_ms,
                    ..previous
                };
                self.expiry
                    .schedule(hash, expires_at_ms, previous.expires_at_ms);
                self.table.replace(hash, slot, key, header, value)
            }
            None => {
                let (queue_stamp, queue) = match self.budget.policy() {
                    Some(_) => {
                        let (reference, queue) = self.queues.admit(hash, self.table.len());
                        (reference.stamp, queue)
                    }
                    None => (0, QueueKind::Main),
                };
                let header = Header {
                    version,
                    expires_at_ms,
                    queue_stamp,
                    queue,
                    frequency: 0,
                };
                self.table.insert(hash, key, header, value);
                self.compact_queues_if_stale();
                self.expiry.schedule(hash, expires_at_ms, 0);
                None
            }
        };
        self.rebuild_expiry_if_stale();
        self.settle();
        replaced
    }

    /// Changes the deadline of an existing entry and bumps its version.
    /// Returns the new version, or `None` when the key is absent.
    pub(crate) fn set_deadline(
        &mut self,
        hash: u64,
        key: &[u8],
        expires_at_ms: u64,
    ) -> Option<u64> {
        let slot = self.table.find_slot(hash, |entry| entry.key_is(key))?;
        let version = self.next_sequence();
        self.write_deadline(slot, hash, expires_at_ms, version);
        Some(version)
    }

    /// [`ShardState::set_deadline`] with the given `version` (see
    /// [`ShardState::store_versioned`]); false when the key is absent.
    pub(crate) fn set_deadline_versioned(
        &mut self,
        hash: u64,
        key: &[u8],
        expires_at_ms: u64,
        version: u64,
    ) -> bool {
        debug_assert!(version <= self.last_sequence);
        let Some(slot) = self.table.find_slot(hash, |entry| entry.key_is(key)) else {
            return false;
        };
        self.write_deadline(slot, hash, expires_at_ms, version);
        true
    }

    fn write_deadline(&mut self, slot: u32, hash: u64, expires_at_ms: u64, version: u64) {
        let previous = self.table.entry(slot).header();
        self.table.set_header(
            slot,
            Header {
                version,
                expires_at_ms,
                ..previous
            },
        );
        self.expiry
            .schedule(hash, expires_at_ms, previous.expires_at_ms);
        self.rebuild_expiry_if_stale();
    }

    /// Runs `change` on the collection stored under `key`, keeping the
    /// memory figure right; `None` when the key is absent or holds a string.
    /// The version and deadline are left alone (see
    /// [`ShardState::set_deadline`]).
    pub(crate) fn update_value<R>(
        &mut self,
        hash: u64,
        key: &[u8],
        change: impl FnOnce(&mut Value) -> R,
    ) -> Option<R> {
        let slot = self.table.find_slot(hash, |entry| entry.key_is(key))?;
        let result = self.table.update_spilled(slot, change);
        self.settle();
        result
    }

    /// Removes the entry for `key`, if any.
    pub(crate) fn remove(&mut self, hash: u64, key: &[u8]) -> Option<RemovedEntry> {
        let entry = self.table.remove(hash, |entry| entry.key_is(key))?;
        self.settle();
        Some(entry)
    }

    /// Whether the expiry index has keys due at `now_ms`; checked under the
    /// shared lock so an idle sweep never blocks readers.
    pub(crate) fn has_expiry_due(&self, now_ms: u64) -> bool {
        self.expiry.has_due(now_ms)
    }

    /// Removes up to `max` expired entries found through the expiry index.
    pub(crate) fn take_expired(&mut self, now_ms: u64, max: usize) -> Vec<RemovedEntry> {
        let mut expired = Vec::new();
        for hash in self.expiry.take_due(now_ms, max) {
            while let Some(entry) = self
                .table
                .remove_without_compaction(hash, |entry| entry.is_expired(now_ms))
            {
                expired.push(entry);
            }
        }
        self.settle();
        expired
    }

    /// Empties the shard; returns the old entries so they can be dropped
    /// after the lock is released.
    pub(crate) fn take_all(&mut self) -> EntryStore {
        self.expiry.clear();
        self.queues.clear();
        let empty = EntryStore::new(self.table.hasher());
        let table = std::mem::replace(&mut self.table, empty);
        self.settle();
        table
    }

    /// Gives memory back after many removals (see
    /// [`EntryStore::shrink_if_sparse`]).
    pub(crate) fn shrink_if_sparse(&mut self) {
        self.table.shrink_if_sparse();
    }

    /// Whether [`ShardState::shrink_if_sparse`] would give memory back.
    pub(crate) fn is_sparse(&self) -> bool {
        self.table.is_sparse()
    }

    /// Bytes held for this shard's entries: the entry store (slots, spill
    /// list and index, spare room included, and what spilled values hold),
    /// the expiry index and the eviction queues.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.table.memory_bytes() + self.expiry.memory_bytes() + self.queues.memory_bytes()
    }

    /// Bytes charged against the memory budget: what each entry takes in
    /// the store plus [`KEY_CHARGE_BYTES`] per key. Unlike
    /// [`ShardState::memory_bytes`] it falls with every eviction, which the
    /// eviction loop needs; spare room is left out.
    pub(crate) fn charged_bytes(&self) -> usize {
        self.table.live_bytes() + self.table.len() * KEY_CHARGE_BYTES
    }

    /// Reports this shard's change in keys and charged bytes to the budget.
    fn settle(&mut self) {
        if self.budget.policy().is_none() {
            return;
        }
        let now = (self.table.len(), self.charged_bytes());
        self.budget
            .report((self.reported.0, now.0), (self.reported.1, now.1));
        self.reported = now;
    }

    /// Hands the shard's read counters to its eviction policy before it
    /// evicts (a policy that tunes itself reads its hit ratio from them).
    pub(crate) fn observe_reads(&mut self, hits: u64, misses: u64) {
        let live = self.table.len();
        self.queues.observe_reads(hits, misses, live);
    }

    /// Evicts one entry chosen by the policy, never the entry for
    /// `protected`. Returns `None` when nothing can be evicted.
    pub(crate) fn evict_one(&mut self, protected: (u64, &[u8])) -> Option<RemovedEntry> {
        let policy = self.budget.evicting_policy()?;
        let mut attempts = self.queues.len() + 1;
        while attempts > 0 {
            attempts -= 1;
            let live = self.table.len();
            let (reference, kind) = self.queues.next_candidate(live)?;
            let is_referenced = |entry: EntryRef<'_>| {
                entry.queue_stamp() == reference.stamp && entry.queue() == kind
            };
            let Some(slot) = self.table.find_slot(reference.hash, is_referenced) else {
                continue;
            };
            let entry = self.table.entry(slot);
            let frequency = if reference.hash == protected.0 && entry.key_is(protected.1) {
                policy.max_frequency().max(1)
            } else {
                entry.frequency()
            };
            match self.queues.judge(reference.hash, kind, frequency, live) {
                (Verdict::Keep(requeued, queue), frequency) => {
                    let header = Header {
                        queue_stamp: requeued.stamp,
                        queue,
                        frequency,
                        ..entry.header()
                    };
                    self.table.set_header(slot, header);
                }
                (Verdict::Evict, _) => {
                    let entry = self.table.remove(reference.hash, is_referenced)?;
                    self.compact_queues_if_stale();
                    self.settle();
                    return Some(entry);
                }
            }
        }
        None
    }

    /// Drops stale queue references once they outnumber live entries.
    fn compact_queues_if_stale(&mut self) {
        const MIN_REFERENCES: usize = 1024;
        if self.queues.len() <= MIN_REFERENCES.max(self.table.len() * 2) {
            return;
        }
        let table = &self.table;
        self.queues.retain(&mut |reference, kind| {
            table
                .find_slot(reference.hash, |entry| {
                    entry.queue_stamp() == reference.stamp && entry.queue() == kind
                })
                .is_some()
        });
    }

    fn rebuild_expiry_if_stale(&mut self) {
        if self.expiry.needs_rebuild(self.table.len()) {
            let table = &self.table;
            let deadlines = table
                .iter()
                .filter(|entry| entry.expires_at_ms() != 0)
                .map(|entry| {
                    (
                        entry.with_key(|key| table.hash_of(key)),
                        entry.expires_at_ms(),
                    )
                });
            self.expiry.rebuild(deadlines);
        }
    }
}
