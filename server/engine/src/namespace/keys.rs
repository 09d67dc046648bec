//! Commands on keys of any type: delete, describe, expiry, listing,
//! flushing and sweeping expired keys.

use std::sync::Arc;

use bytes::Bytes;

use super::{Namespace, meta_of};
use crate::change::{ChangeKind, FlushRecord};
use crate::deadline::Deadline;
use crate::scan::{ScanCursor, ScanFilter, ScanPage, scan_shard};
use crate::{EngineError, Expiry, ItemMeta};

impl Namespace {
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
            let mut write = self.write_key(key, now_ms);
            if let Some(entry) = write.state.remove(write.hash, key) {
                deleted += 1;
                write.state.counters.deletes += 1;
                let sequence = write.state.next_sequence();
                write.emit(sequence, &entry.key, ChangeKind::Deleted);
                write.state.shrink_if_sparse();
                write.removed.push(entry);
            }
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
        let mut write = self.write_key(key, now_ms);
        let hash = write.hash;
        if write.state.find(hash, key).is_none() {
            return Ok(None);
        }
        let result = if deadline == Deadline::Passed {
            let removed = write.state.remove(hash, key);
            write.state.counters.deletes += 1;
            let sequence = write.state.next_sequence();
            if let Some(entry) = removed {
                write.emit(sequence, &entry.key, ChangeKind::Deleted);
                write.removed.push(entry);
            }
            Some(0)
        } else {
            let expires_at_ms = deadline.stored_ms(0);
            let version = write.state.set_deadline(hash, key, expires_at_ms);
            if let Some(version) = version {
                write.emit(version, key, ChangeKind::ExpiryChanged { expires_at_ms });
            }
            version
        };
        drop(write);
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
        cursor.encode(self.cursor_secret)
    }

    /// Decodes a cursor from [`Namespace::encode_cursor`]; an empty one
    /// starts a new scan.
    ///
    /// # Errors
    /// [`EngineError::InvalidCursor`] for bytes this namespace did not issue:
    /// edited, from another namespace, or from this one before it was
    /// dropped and made again.
    pub fn decode_cursor(&self, bytes: &[u8]) -> Result<ScanCursor, EngineError> {
        ScanCursor::decode(bytes, self.cursor_secret, self.shards.len())
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
    ///
    /// Every shard's lock is held at once, taken in shard order, while the
    /// tables are swapped for empty ones (no entry is freed under them) and
    /// the flush is announced: a write then lands wholly before the flush
    /// or wholly after it, in memory and in the order of change records
    /// alike, which a replayed log depends on. No other path holds two
    /// shard locks, so the order cannot deadlock.
    pub fn flush(&self) -> u64 {
        self.flush_all(false)
    }

    /// As [`Namespace::flush`] for a namespace its engine dropped: also
    /// silences every later change through a handle still held (see the
    /// `dropped` field), inside the same lock holds as the flush.
    pub(crate) fn flush_dropped(&self) -> u64 {
        self.flush_all(true)
    }

    fn flush_all(&self, dropping: bool) -> u64 {
        let mut states: Vec<_> = self.shards.iter().map(|shard| shard.write()).collect();
        if dropping {
            self.dropped
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let tables: Vec<_> = states
            .iter_mut()
            .map(|state| {
                let table = state.take_all();
                state.counters.flushed += table.len() as u64;
                table
            })
            .collect();
        let removed = tables.iter().map(|table| table.len() as u64).sum();
        if let Some(sink) = self.sink.get() {
            sink.flushed(FlushRecord {
                namespace: Arc::clone(&self.name),
                removed,
            });
        }
        drop(states);
        drop(tables);
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
        // A shard with nothing due is also asked, under the same shared
        // lock, whether it holds far more memory than it uses: one lock per
        // shard and tick, rather than two, for an idle namespace.
        let mut sparse = None;
        for (index, shard) in self.shards.iter().enumerate() {
            {
                let state = shard.read();
                if !state.has_expiry_due(now_ms) {
                    if sparse.is_none() && state.is_sparse() {
                        sparse = Some(index);
                    }
                    continue;
                }
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
            // Expiring keys is what makes a shard sparse.
            if sparse.is_none() && shard.read().is_sparse() {
                sparse = Some(index);
            }
        }
        if let Some(index) = sparse {
            self.shards[index].write().shrink_if_sparse();
        }
        removed
    }
}
