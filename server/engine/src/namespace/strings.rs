//! The string commands: reads, writes with conditions and expiry, and
//! counters.

use bytes::Bytes;

use super::{Namespace, item_meta};
use crate::change::ChangeKind;
use crate::deadline::Deadline;
use crate::entry_store::{EntryRef, RemovedEntry, StringRead, entry_bytes};
use crate::integer::{format_i64, parse_i64};
use crate::value::Value;
use crate::{
    Condition, EngineError, Expiry, IncrementOutcome, ItemMeta, KeyType, SetOptions, SetOutcome,
};

impl Namespace {
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
        let mut write = self.lock_key(key);
        let hash = write.hash;
        let (slot, expired) = self.find_live(write.shard(), &mut write.state, hash, key, now_ms);
        write.expired = expired;
        let existing = slot.map(|slot| write.state.entry(slot));
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
            return Ok(SetOutcome {
                stored: false,
                version: current_version,
                previous,
            });
        }
        let current_deadline = existing.map_or(0, |entry| entry.expires_at_ms());
        let adds_key = existing.is_none();
        let old_bytes = existing.map_or(0, |entry| entry.stored_bytes());
        if deadline != Deadline::Passed {
            let extra = entry_bytes(key.len(), Some(value.len())).saturating_sub(old_bytes);
            write.make_room(key, adds_key, extra)?;
        }
        let version = if deadline == Deadline::Passed {
            let removed = write.state.remove(hash, key);
            if let Some(entry) = &removed {
                write.state.counters.deletes += 1;
                let sequence = write.state.next_sequence();
                write.emit(sequence, &entry.key, ChangeKind::Deleted);
            }
            write.replaced = removed.and_then(RemovedEntry::into_spilled);
            0
        } else {
            let expires_at_ms = deadline.stored_ms(current_deadline);
            // Evictions may have moved entries; otherwise the slot found
            // above still holds.
            let slot = if write.removed.is_empty() {
                slot
            } else {
                write.state.find_slot(hash, key)
            };
            let (version, replaced) =
                write
                    .state
                    .upsert_at(slot, hash, key, Value::string(value.clone()), expires_at_ms);
            write.replaced = replaced;
            write.emit_set(version, key, value, expires_at_ms);
            version
        };
        drop(write);
        Ok(SetOutcome {
            stored: true,
            version,
            previous,
        })
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
        let mut write = self.write_key(key, now_ms);
        let hash = write.hash;
        let (start, expires_at_ms, created) = match write.state.find(hash, key) {
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
        let version = if created && deadline == Deadline::Passed {
            0
        } else {
            let text = format_i64(value);
            if created {
                write.make_room(key, true, entry_bytes(key.len(), Some(text.len())))?;
            }
            let (version, replaced) =
                write
                    .state
                    .upsert(hash, key, Value::string(text.clone()), expires_at_ms);
            write.replaced = replaced;
            write.emit_set(version, key, text, expires_at_ms);
            version
        };
        drop(write);
        Ok(IncrementOutcome {
            value,
            version,
            created,
        })
    }
}

/// Runs `read` on the string held by `entry`, or fails with WRONGTYPE.
fn with_string<R>(entry: EntryRef<'_>, read: impl FnOnce(&[u8]) -> R) -> Result<R, EngineError> {
    entry.with_string(read).ok_or_else(|| wrong_type(entry))
}

/// The string held by `entry` as [`Bytes`] for a reader, with its
/// metadata, or WRONGTYPE.
#[inline]
pub(super) fn string_with_meta(
    entry: EntryRef<'_>,
    now_ms: u64,
) -> Result<(Bytes, ItemMeta), EngineError> {
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
