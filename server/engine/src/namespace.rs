//! A namespace: one independent keyspace, split into shards, and the
//! commands that run on it.
//!
//! This file holds the namespace itself and the two paths every collection
//! command goes through ([`Namespace::read_value`] and
//! [`Namespace::write_collection`]); the commands live by subject: strings
//! in `strings`, hashes in `hashes`, lists in `lists`, sets in `sets`,
//! commands on keys of any type in `keys`, batch reads in `batch_read`,
//! and the frame of every write in `key_write`.

mod batch_read;
mod hashes;
mod key_write;
mod keys;
mod lists;
mod replay;
mod sets;
mod snapshot;
mod stats;
mod strings;

pub use batch_read::BatchRead;
pub use hashes::HashSnapshot;
pub use lists::ListSnapshot;
pub use replay::{Applied, MAX_REPLAYED_FIELD, ReplayError};
pub use sets::{SetOperation, SetSnapshot};
pub use snapshot::{
    MAX_CHUNKS_PER_SHARD, SNAPSHOT_CHUNK_KEYS, SnapshotChunk, SnapshotEntry, SnapshotReader,
    SnapshotValue,
};
pub use stats::NamespaceStats;

use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;

use super::budget::Budget;
use super::change::{ChangeKind, ChangeRecord, CollectionChange, SinkSlot};
use super::collections::{Growth, PinAccount};
use super::deadline::Deadline;
use super::entry_store::{EntryRef, RemovedEntry, entry_bytes};
use super::eviction::EvictionPolicy;
use super::shard::{Shard, ShardState};
use super::value::Value;
use super::{Clock, EngineError, Expiry, ItemMeta, KeyType, Limits, WriteOutcome};

/// The most keys [`Namespace::reserve_keys`] makes room for: 16 Mi keys,
/// an index of about 150 MiB over all shards.
pub const MAX_RESERVED_KEYS: u64 = 1 << 24;
/// Bytes of a memory budget per key [`Namespace::reserve_keys`] may make
/// room for: about the smallest an entry takes.
pub const RESERVED_BYTES_PER_KEY: u64 = 32;

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
    /// The secret this namespace instance tags its scan cursors with.
    cursor_secret: u64,
    /// When the reclaimer first found this namespace empty (ms on the
    /// engine's clock; 0 when it was not).
    empty_since_ms: std::sync::atomic::AtomicU64,
    /// Set once the namespace is dropped from its engine, under every
    /// shard's lock: a write still under way through an old handle lands
    /// in the dropped keyspace, freed with it, and announces nothing, so
    /// that no record of it can follow the drop's flush record and bring
    /// the key back on replay.
    dropped: std::sync::atomic::AtomicBool,
    /// The engine-wide key and memory budget.
    budget: Arc<Budget>,
    /// Where collection versions left behind for readers are charged.
    pins: PinAccount,
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
        budget: Arc<Budget>,
    ) -> Self {
        debug_assert!(shard_count.is_power_of_two());
        let hasher = foldhash::fast::RandomState::default();
        let name_for_secret = Arc::clone(&name);
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
            cursor_secret: std::hash::RandomState::new().hash_one(&*name_for_secret),
            empty_since_ms: std::sync::atomic::AtomicU64::new(0),
            dropped: std::sync::atomic::AtomicBool::new(false),
            pins: PinAccount::new(Arc::clone(&budget)),
            budget,
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many shards the namespace is split into (see
    /// [`EngineConfig::shard_count_for`](crate::EngineConfig::shard_count_for)).
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Makes room for about `keys` more keys spread over the shards, before
    /// a bulk load (a snapshot's restore) whose size is known: each shard's
    /// index is then sized once instead of growing, and rehashing every key
    /// it holds, at each doubling. At most [`MAX_RESERVED_KEYS`] are
    /// reserved, and no more than the budget's key limit or a key per
    /// [`RESERVED_BYTES_PER_KEY`] of its memory limit, so that a wrong
    /// hint cannot take memory the keys never could; past that, the shards
    /// grow as they fill.
    pub fn reserve_keys(&self, keys: u64) {
        let (max_keys, max_bytes) = self.budget.limits();
        let mut keys = keys.min(MAX_RESERVED_KEYS);
        if max_keys > 0 {
            keys = keys.min(max_keys);
        }
        if max_bytes > 0 {
            keys = keys.min(max_bytes / RESERVED_BYTES_PER_KEY);
        }
        let keys = usize::try_from(keys).unwrap_or(0);
        let per_shard = keys.div_ceil(self.shards.len());
        if per_shard == 0 {
            return;
        }
        for shard in self.shards.iter() {
            shard.write().reserve(per_shard);
        }
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
        // Relaxed is enough: the flag is set and read under a shard lock.
        if self.dropped.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
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
    /// Under `noeviction`, refuses a collection write whose `growth` could
    /// take the budget past its memory limit, before anything changes (the
    /// evicting policies make room after the write instead).
    fn check_growth(&self, value: &Value, growth: Growth) -> Result<(), EngineError> {
        if growth == Growth::NONE || self.budget.policy() != Some(EvictionPolicy::NoEviction) {
            return Ok(());
        }
        let bytes = value.growth_bound(growth) as u64;
        match self.budget.over(0, bytes) {
            Some((scope_cause, scope)) => Err(key_write::out_of_memory(scope, scope_cause)),
            None => Ok(()),
        }
    }

    /// [`Namespace::write_collection`] for a write that only removes from
    /// or reorders an existing collection: it creates nothing, keeps the
    /// deadline and adds no bytes.
    pub(crate) fn shrink_collection<R>(
        &self,
        key: &[u8],
        key_type: KeyType,
        apply: impl FnOnce(&mut Value) -> Result<(R, Option<CollectionChange>), EngineError>,
    ) -> Result<Option<WriteOutcome<R>>, EngineError> {
        self.write_collection(key, key_type, false, Expiry::Keep, Growth::NONE, apply)
    }

    pub(crate) fn write_collection<R>(
        &self,
        key: &[u8],
        key_type: KeyType,
        create: bool,
        expiry: Expiry,
        growth: Growth,
        apply: impl FnOnce(&mut Value) -> Result<(R, Option<CollectionChange>), EngineError>,
    ) -> Result<Option<WriteOutcome<R>>, EngineError> {
        self.check_key(key)?;
        let now_ms = self.clock.now_ms();
        let deadline = Deadline::resolve(expiry, now_ms)?;
        let mut write = self.write_key(key, now_ms);
        let hash = write.hash;
        let existing = write
            .state
            .find(hash, key)
            .map(|entry| (entry.key_type(), entry.expires_at_ms()));
        match existing {
            None if create => write.make_room(key, true, entry_bytes(key.len(), None))?,
            // Under noeviction, what a collection write may add is checked
            // against the limit before it changes anything (check_growth).
            Some(_) => write.make_room(key, false, 0)?,
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
                let (result, change) = write
                    .state
                    .update_value(hash, key, |value| {
                        self.check_growth(value, growth)?;
                        value.make_unique(&self.pins);
                        apply(value)
                    })
                    .ok_or(EngineError::NoSuchKey)??;
                if self.budget.evicting_policy().is_some() {
                    // The collection may have grown past the limit.
                    write.make_room(key, false, 0)?;
                }
                let emptied = write
                    .state
                    .find(hash, key)
                    .is_some_and(|entry| entry.is_empty_collection());
                if emptied || deadline == Deadline::Passed {
                    let removed = write.state.remove(hash, key);
                    write.removed.extend(removed);
                    let sequence = write.state.next_sequence();
                    write.state.counters.sets += 1;
                    match change {
                        Some(change) if emptied => write.emit(
                            sequence,
                            key,
                            ChangeKind::Collection {
                                change,
                                expires_at_ms: 0,
                            },
                        ),
                        _ => write.emit(sequence, key, ChangeKind::Deleted),
                    }
                    WriteOutcome { result, version: 0 }
                } else if change.is_some() || deadline != Deadline::Keep {
                    let expires_at_ms = deadline.stored_ms(current_deadline);
                    let version = write
                        .state
                        .set_deadline(hash, key, expires_at_ms)
                        .unwrap_or(0);
                    write.state.counters.sets += 1;
                    let kind = match change {
                        Some(change) => ChangeKind::Collection {
                            change,
                            expires_at_ms,
                        },
                        None => ChangeKind::ExpiryChanged { expires_at_ms },
                    };
                    write.emit(version, key, kind);
                    WriteOutcome { result, version }
                } else {
                    let version = write
                        .state
                        .find(hash, key)
                        .map_or(0, |entry| entry.version());
                    WriteOutcome { result, version }
                }
            }
            None if !create => return Ok(None),
            None => {
                let mut value = Value::empty(key_type);
                self.check_growth(&value, growth)?;
                let (result, change) = apply(&mut value)?;
                if value.is_empty_collection() || deadline == Deadline::Passed {
                    WriteOutcome { result, version: 0 }
                } else {
                    let expires_at_ms = deadline.stored_ms(0);
                    let (version, _) = write.state.upsert(hash, key, value, expires_at_ms);
                    if let Some(change) = change {
                        write.emit(
                            version,
                            key,
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
        drop(write);
        Ok(Some(outcome))
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
