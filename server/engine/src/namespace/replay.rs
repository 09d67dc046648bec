//! Replaying change records and snapshot entries into a namespace: how a
//! restart rebuilds the keyspace without re-running commands.
//!
//! A replayed write takes its version from the record (its sequence), not
//! from the shard, and raises the shard's sequence to it, so that every
//! write after the restart gets a higher version than any before it. A
//! record whose version is not above the key's stored version is already
//! reflected and is ignored: replaying the records that follow a snapshot
//! over that snapshot, even those the snapshot already saw, is idempotent.
//!
//! Replay reproduces the keyspace, deadlines included, also for keys whose
//! deadline has passed: such a key is kept until the end of the replay,
//! invisible to reads like any expired key, because a later record may
//! still bring it back (a PERSIST made before the deadline, recorded as
//! [`ChangeKind::ExpiryChanged`]) or change a collection it holds. The
//! caller drops them when the replay is done ([`Engine::drop_expired`]).
//!
//! Replay emits no change record of its own: the records already exist.
//! An eviction it causes to stay within a budget is a new event and is
//! announced as one ([`ChangeKind::Evicted`]), as is every eviction.
//! Records carry the shard of the engine that wrote them; the keyspace
//! does not depend on it, and replay places each key by its own hash.

use std::sync::Arc;

use bytes::Bytes;

use super::Namespace;
use super::snapshot::{SnapshotEntry, SnapshotValue};
use crate::change::{ChangeKind, ChangeRecord, CollectionChange, FlushRecord};
use crate::collections::Growth;
use crate::entry_store::{entry_bytes, string_stored_inline};
use crate::value::Value;
use crate::{Engine, EngineError, KeyType};

/// Largest version or deadline an entry can hold (48 bits).
pub const MAX_REPLAYED_FIELD: u64 = (1 << 48) - 1;

/// What replaying one record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The key now reflects the record.
    Changed,
    /// The key already held this version or a later one; nothing changed.
    Stale,
    /// The record changes a key that is absent (its earlier records were
    /// not replayed, or removed it); nothing changed.
    Absent,
}

/// Why a record could not be replayed. Replay of a log that the engine
/// wrote, into an engine with the same limits, fails only under
/// `noeviction` when the data does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The engine refused the write: a key or value over this engine's
    /// limits, a collection change to a key of another type, or a budget
    /// that `noeviction` keeps.
    #[error(transparent)]
    Refused(#[from] EngineError),
    /// A field is outside what an entry can hold.
    #[error("{field} is {value}, over the largest storable {MAX_REPLAYED_FIELD}")]
    OutOfRange {
        /// `version` or `expires_at_ms`.
        field: &'static str,
        /// The value found.
        value: u64,
    },
}

fn check_range(field: &'static str, value: u64) -> Result<(), ReplayError> {
    if value > MAX_REPLAYED_FIELD {
        return Err(ReplayError::OutOfRange { field, value });
    }
    Ok(())
}

impl CollectionChange {
    /// The type of collection the change applies to.
    pub fn key_type(&self) -> KeyType {
        match self {
            CollectionChange::HashSet { .. } | CollectionChange::HashDeleted { .. } => {
                KeyType::Hash
            }
            CollectionChange::ListPushed { .. }
            | CollectionChange::ListPopped { .. }
            | CollectionChange::ListSet { .. }
            | CollectionChange::ListTrimmed { .. }
            | CollectionChange::ListRemoved { .. } => KeyType::List,
            CollectionChange::SetAdded { .. } | CollectionChange::SetRemoved { .. } => KeyType::Set,
        }
    }

    /// Whether the change can create its collection (it adds elements).
    fn adds(&self) -> bool {
        matches!(
            self,
            CollectionChange::HashSet { .. }
                | CollectionChange::ListPushed { .. }
                | CollectionChange::SetAdded { .. }
        )
    }

    /// Bytes of elements the change adds, for the budget.
    fn growth(&self) -> Growth {
        let (elements, payload) = match self {
            CollectionChange::HashSet { fields } => (
                fields.len(),
                fields.iter().map(|(f, v)| f.len() + v.len()).sum(),
            ),
            CollectionChange::ListPushed { values, .. } => {
                (values.len(), values.iter().map(Bytes::len).sum())
            }
            CollectionChange::SetAdded { members } => {
                (members.len(), members.iter().map(Bytes::len).sum())
            }
            CollectionChange::ListSet { value, .. } => (0, value.len()),
            _ => (0, 0),
        };
        Growth { elements, payload }
    }

    /// Applies the change to `value`, which is a collection of
    /// [`CollectionChange::key_type`]. Indices out of range (a record
    /// replayed onto another base than it was made on) change nothing
    /// rather than panic.
    fn apply_to(self, value: &mut Value) {
        match (self, value) {
            (CollectionChange::HashSet { fields }, Value::Hash(hash)) => {
                let hash = Arc::make_mut(hash);
                for (field, value) in fields {
                    hash.insert(field, value);
                }
            }
            (CollectionChange::HashDeleted { fields }, Value::Hash(hash)) => {
                let hash = Arc::make_mut(hash);
                for field in fields {
                    hash.remove(&field);
                }
            }
            (CollectionChange::ListPushed { front, values }, Value::List(list)) => {
                let list = Arc::make_mut(list);
                for value in values {
                    list.push(value, front);
                }
            }
            (CollectionChange::ListPopped { front, count }, Value::List(list)) => {
                let list = Arc::make_mut(list);
                for _ in 0..count {
                    if list.pop(front).is_none() {
                        break;
                    }
                }
            }
            (CollectionChange::ListSet { index, value }, Value::List(list)) => {
                if let Ok(index) = usize::try_from(index) {
                    Arc::make_mut(list).replace(index, value);
                }
            }
            (CollectionChange::ListTrimmed { start, end }, Value::List(list)) => {
                let len = list.len();
                let end = usize::try_from(end).unwrap_or(usize::MAX).min(len);
                let start = usize::try_from(start).unwrap_or(usize::MAX).min(end);
                Arc::make_mut(list).keep(start, end);
            }
            (CollectionChange::ListRemoved { count, value }, Value::List(list)) => {
                let limit = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
                Arc::make_mut(list).remove_occurrences(&value, limit, count < 0);
            }
            (CollectionChange::SetAdded { members }, Value::Set(set)) => {
                let set = Arc::make_mut(set);
                for member in members {
                    set.insert(member);
                }
            }
            (CollectionChange::SetRemoved { members }, Value::Set(set)) => {
                let set = Arc::make_mut(set);
                for member in members {
                    set.remove(&member);
                }
            }
            // The caller checked the type.
            _ => {}
        }
    }
}

impl Namespace {
    /// Replays one change record of this namespace (see the module docs).
    /// The key and a string value may be slices of a larger buffer: what
    /// the entry keeps is copied out of them.
    ///
    /// # Errors
    /// [`ReplayError`]; a refused record changes nothing.
    pub fn apply_change(&self, record: ChangeRecord) -> Result<Applied, ReplayError> {
        let ChangeRecord {
            sequence,
            key,
            kind,
            ..
        } = record;
        check_range("version", sequence)?;
        self.check_key(&key)?;
        match &kind {
            ChangeKind::Set {
                value,
                expires_at_ms,
            } => {
                self.check_value(value)?;
                check_range("expires_at_ms", *expires_at_ms)?;
            }
            ChangeKind::ExpiryChanged { expires_at_ms }
            | ChangeKind::Collection { expires_at_ms, .. } => {
                check_range("expires_at_ms", *expires_at_ms)?;
            }
            ChangeKind::Deleted | ChangeKind::Expired | ChangeKind::Evicted => {}
        }
        let mut write = self.lock_key(&key);
        write.state.observe_sequence(sequence);
        let hash = write.hash;
        let current = write
            .state
            .find(hash, &key)
            .map(|entry| (entry.version(), entry.key_type(), entry.stored_bytes()));
        if current.is_some_and(|(version, ..)| version >= sequence) {
            return Ok(Applied::Stale);
        }
        match kind {
            ChangeKind::Set {
                value,
                expires_at_ms,
            } => {
                let old_bytes = current.map_or(0, |(.., bytes)| bytes);
                let extra = entry_bytes(key.len(), Some(value.len())).saturating_sub(old_bytes);
                write.make_room(&key, current.is_none(), extra)?;
                // Kept beside the entry, the value is copied: it may be a
                // slice of a larger buffer (a whole read of the log).
                let value = if string_stored_inline(key.len(), value.len()) {
                    value
                } else {
                    Bytes::copy_from_slice(&value)
                };
                write.replaced = write.state.store_versioned(
                    hash,
                    &key,
                    Value::string(value),
                    expires_at_ms,
                    sequence,
                );
                Ok(Applied::Changed)
            }
            ChangeKind::ExpiryChanged { expires_at_ms } => {
                if write
                    .state
                    .set_deadline_versioned(hash, &key, expires_at_ms, sequence)
                {
                    Ok(Applied::Changed)
                } else {
                    Ok(Applied::Absent)
                }
            }
            ChangeKind::Deleted | ChangeKind::Expired | ChangeKind::Evicted => {
                match write.state.remove(hash, &key) {
                    Some(entry) => {
                        write.removed.push(entry);
                        Ok(Applied::Changed)
                    }
                    None => Ok(Applied::Absent),
                }
            }
            ChangeKind::Collection {
                change,
                expires_at_ms,
            } => {
                let key_type = change.key_type();
                match current {
                    Some((_, actual, _)) if actual != key_type => Err(EngineError::WrongType {
                        expected: key_type,
                        actual,
                    }
                    .into()),
                    Some(_) => {
                        let growth = change.growth();
                        // As a command would: refused under noeviction
                        // before anything changes, evicting after.
                        write.make_room(&key, false, 0)?;
                        let changed = write.state.update_value(hash, &key, |value| {
                            self.check_growth(value, growth)?;
                            value.make_unique(&self.pins);
                            change.apply_to(value);
                            Ok::<(), EngineError>(())
                        });
                        match changed {
                            Some(result) => result?,
                            None => return Ok(Applied::Absent),
                        }
                        if self.budget.evicting_policy().is_some() {
                            write.make_room(&key, false, 0)?;
                        }
                        let emptied = write
                            .state
                            .find(hash, &key)
                            .is_some_and(|entry| entry.is_empty_collection());
                        if emptied {
                            let removed = write.state.remove(hash, &key);
                            write.removed.extend(removed);
                        } else {
                            write
                                .state
                                .set_deadline_versioned(hash, &key, expires_at_ms, sequence);
                        }
                        Ok(Applied::Changed)
                    }
                    None if !change.adds() => Ok(Applied::Absent),
                    None => {
                        let mut value = Value::empty(key_type);
                        change.apply_to(&mut value);
                        if value.is_empty_collection() {
                            return Ok(Applied::Absent);
                        }
                        write.make_room(&key, true, entry_bytes(key.len(), None))?;
                        write.replaced =
                            write
                                .state
                                .store_versioned(hash, &key, value, expires_at_ms, sequence);
                        Ok(Applied::Changed)
                    }
                }
            }
        }
    }

    /// Restores one key read from a snapshot, unless the key already holds
    /// its version or a later one. A collection is taken over as it is
    /// when nothing else shares it, and copied otherwise. The key and a
    /// string value may be slices of a larger buffer: what the entry keeps
    /// is copied out of them.
    ///
    /// # Errors
    /// [`ReplayError`]; a refused entry changes nothing.
    pub fn restore_entry(&self, entry: SnapshotEntry) -> Result<Applied, ReplayError> {
        let SnapshotEntry {
            key,
            value,
            expires_at_ms,
            version,
        } = entry;
        check_range("version", version)?;
        check_range("expires_at_ms", expires_at_ms)?;
        self.check_key(&key)?;
        let value = match value {
            SnapshotValue::String(bytes) => {
                self.check_value(&bytes)?;
                // Kept beside the entry, the value is copied: the bytes may
                // be a slice of a larger buffer (a whole read of a
                // snapshot), which the entry must not keep alive.
                if string_stored_inline(key.len(), bytes.len()) {
                    Value::string(bytes)
                } else {
                    Value::string(Bytes::copy_from_slice(&bytes))
                }
            }
            SnapshotValue::Hash(hash) => Value::Hash(Arc::new(Arc::unwrap_or_clone(hash.0))),
            SnapshotValue::List(list) => Value::List(Arc::new(Arc::unwrap_or_clone(list.0))),
            SnapshotValue::Set(set) => Value::Set(Arc::new(Arc::unwrap_or_clone(set.0))),
        };
        if value.is_empty_collection() {
            return Ok(Applied::Absent);
        }
        let mut write = self.lock_key(&key);
        write.state.observe_sequence(version);
        let hash = write.hash;
        let current = write
            .state
            .find(hash, &key)
            .map(|entry| (entry.version(), entry.stored_bytes()));
        if current.is_some_and(|(stored, _)| stored >= version) {
            return Ok(Applied::Stale);
        }
        let string_len = value.as_string().map(<[u8]>::len);
        let extra = entry_bytes(key.len(), string_len)
            .saturating_add(value.heap_bytes())
            .saturating_sub(current.map_or(0, |(_, bytes)| bytes));
        write.make_room(&key, current.is_none(), extra)?;
        write.replaced = write
            .state
            .store_versioned(hash, &key, value, expires_at_ms, version);
        Ok(Applied::Changed)
    }

    /// Makes every later version in shard `shard` higher than `sequence`:
    /// after a restore, writes must not reuse versions the snapshot or the
    /// log handed out, even of keys no longer present. Out-of-range shards
    /// are ignored.
    pub fn raise_sequence(&self, shard: usize, sequence: u64) {
        if let Some(shard) = self.shards.get(shard) {
            shard.write().observe_sequence(sequence);
        }
    }

    /// Removes every key whose deadline has passed, one shard's lock at a
    /// time; returns how many. Unlike the sweeper, which finds keys by
    /// their deadline's bucket and so up to a bucket late, this reads every
    /// entry: it runs once, when a replay is done. Each removal is
    /// announced as an expiry, as the sweeper's are.
    pub fn drop_expired(&self) -> u64 {
        let now_ms = self.clock.now_ms();
        let mut dropped = 0;
        for (index, shard) in self.shards.iter().enumerate() {
            let mut state = shard.write();
            let due: Vec<(u64, Bytes)> = state
                .entries()
                .filter(|entry| entry.is_expired(now_ms))
                .map(|entry| {
                    entry.with_key(|key| (state.hash_of(key), Bytes::copy_from_slice(key)))
                })
                .collect();
            let mut removed = Vec::with_capacity(due.len());
            for (hash, key) in due {
                if let Some(entry) = state.remove(hash, &key) {
                    state.counters.expirations += 1;
                    let sequence = state.next_sequence();
                    self.emit(index, sequence, &key, ChangeKind::Expired);
                    removed.push(entry);
                }
            }
            drop(state);
            dropped += removed.len() as u64;
            drop(removed);
        }
        dropped
    }

    /// Replays a flush: removes every key, announcing nothing.
    pub fn apply_flush(&self) -> u64 {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut state = shard.write();
            let table = state.take_all();
            drop(state);
            removed += table.len() as u64;
            drop(table);
        }
        removed
    }
}

impl Engine {
    /// Replays a change record into the namespace it names, creating it.
    ///
    /// # Errors
    /// [`ReplayError::Refused`] for a bad namespace name or when too many
    /// namespaces exist; else as [`Namespace::apply_change`].
    pub fn apply_change(&self, record: ChangeRecord) -> Result<Applied, ReplayError> {
        self.namespace(&record.namespace)?.apply_change(record)
    }

    /// Replays a flush of a namespace, if it exists; returns how many keys
    /// it removed.
    ///
    /// # Errors
    /// [`ReplayError::Refused`] for a bad namespace name.
    pub fn apply_flush(&self, flush: &FlushRecord) -> Result<u64, ReplayError> {
        Ok(self
            .existing_namespace(&flush.namespace)?
            .map_or(0, |namespace| namespace.apply_flush()))
    }

    /// Restores a snapshot entry into the namespace called `namespace`,
    /// creating it.
    ///
    /// # Errors
    /// As [`Engine::apply_change`].
    pub fn restore_entry(
        &self,
        namespace: &str,
        entry: SnapshotEntry,
    ) -> Result<Applied, ReplayError> {
        self.namespace(namespace)?.restore_entry(entry)
    }

    /// Removes every key whose deadline has passed from every namespace,
    /// as the end of a replay must (see the module docs and
    /// [`Namespace::drop_expired`]); returns how many.
    pub fn drop_expired(&self) -> u64 {
        self.namespaces()
            .iter()
            .map(|namespace| namespace.drop_expired())
            .sum()
    }
}
