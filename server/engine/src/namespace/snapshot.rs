//! Reading a namespace for a snapshot, without stopping it.
//!
//! A snapshot walks the namespace shard by shard and, within a shard, in
//! chunks of keys in `(hash, key)` order, the order scans use: it does not
//! depend on the table's layout, so a key present for the whole walk is
//! read exactly once, however the table moves entries between two chunks.
//! Each chunk is one hold of the shard's shared lock; collections are taken
//! as copy-on-write references (the same snapshots HGETALL or LRANGE
//! read), so a write that follows copies the collection instead of waiting,
//! and the copy is charged to the namespace's snapshot bytes.
//!
//! What a shard's chunks yield is reproduced exactly by: the entries, then
//! every record of that shard with a sequence above the shard's sequence
//! when its first chunk was read ([`SnapshotChunk::shard_sequence`]),
//! applied with [`Namespace::apply_change`]. Records at or below it are
//! already in the entries; records above it that the entries also reflect
//! are recognised by the key's version and ignored. A flush has no
//! sequence: when one may have happened during the walk, replay instead
//! every record emitted since the walk began (those the entries reflect
//! are ignored the same way), which is as exact.

use std::sync::Arc;

use bytes::Bytes;

use super::{HashSnapshot, ListSnapshot, Namespace, SetSnapshot};
use crate::collections::{HashValue, ListValue, SetValue};
use crate::scan::{ScanFilter, scan_shard};
use crate::value::Value;

/// Fewest keys a chunk reads from a shard.
pub const SNAPSHOT_CHUNK_KEYS: usize = 1024;
/// Most chunks a shard is read in: a pass over the shard finds each
/// chunk's keys, so a large shard is read in larger chunks rather than in
/// a number of passes that grows with its size.
pub const MAX_CHUNKS_PER_SHARD: usize = 8;

/// What a key holds, as a snapshot reads it or a restore writes it back.
#[derive(Debug, Clone)]
pub enum SnapshotValue {
    /// A string.
    String(Bytes),
    /// A hash, shared with the live table until either changes.
    Hash(HashSnapshot),
    /// A list, shared likewise.
    List(ListSnapshot),
    /// A set, shared likewise.
    Set(SetSnapshot),
}

/// One key, self-contained: enough to restore it with
/// [`Namespace::restore_entry`] without any record before it.
#[derive(Debug, Clone)]
pub struct SnapshotEntry {
    /// The key.
    pub key: Bytes,
    /// Its value or its whole collection.
    pub value: SnapshotValue,
    /// Absolute deadline in Unix milliseconds; 0 when it never expires.
    pub expires_at_ms: u64,
    /// The key's version: the sequence of its last write.
    pub version: u64,
}

/// One lock hold's worth of a shard.
#[derive(Debug, Clone)]
pub struct SnapshotChunk {
    /// The shard read.
    pub shard: u32,
    /// The shard's sequence when its first chunk was read: records of
    /// this shard above it are not all in the snapshot.
    pub shard_sequence: u64,
    /// Live entries, in `(hash, key)` order within the shard.
    pub entries: Vec<SnapshotEntry>,
    /// Whether this is the shard's last chunk.
    pub last_of_shard: bool,
}

/// Walks a namespace for a snapshot; see the module docs. Every shard
/// yields at least one chunk (maybe empty), so every shard's sequence is
/// reported.
#[derive(Debug)]
pub struct SnapshotReader<'a> {
    namespace: &'a Namespace,
    shard: usize,
    shard_sequence: u64,
    after: Option<(u64, Bytes)>,
    min_chunk_keys: usize,
    chunk_keys: usize,
}

impl Namespace {
    /// A reader of this namespace's live entries; see [`SnapshotReader`].
    pub fn snapshot_reader(&self) -> SnapshotReader<'_> {
        self.snapshot_reader_with(SNAPSHOT_CHUNK_KEYS)
    }

    /// [`Namespace::snapshot_reader`] reading at least `chunk_keys` keys
    /// (at least one) per lock hold instead of [`SNAPSHOT_CHUNK_KEYS`].
    pub fn snapshot_reader_with(&self, chunk_keys: usize) -> SnapshotReader<'_> {
        SnapshotReader {
            namespace: self,
            shard: 0,
            shard_sequence: 0,
            after: None,
            min_chunk_keys: chunk_keys.max(1),
            chunk_keys: 0,
        }
    }
}

impl Iterator for SnapshotReader<'_> {
    type Item = SnapshotChunk;

    fn next(&mut self) -> Option<SnapshotChunk> {
        let shard = self.namespace.shards.get(self.shard)?;
        let now_ms = self.namespace.clock.now_ms();
        let state = shard.read();
        if self.after.is_none() {
            self.shard_sequence = state.last_sequence();
            self.chunk_keys = self
                .min_chunk_keys
                .max(state.len().div_ceil(MAX_CHUNKS_PER_SHARD));
        }
        let positions = scan_shard(
            &state,
            self.after.as_ref(),
            &ScanFilter::default(),
            self.chunk_keys,
            now_ms,
        );
        let entries: Vec<SnapshotEntry> = positions
            .iter()
            .filter_map(|(hash, key)| {
                let entry = state.find(*hash, key)?;
                let value = match entry.stored_value() {
                    None => SnapshotValue::String(entry.string_bytes()?),
                    Some(Value::Hash(hash)) => SnapshotValue::Hash(HashSnapshot(Arc::clone(hash))),
                    Some(Value::List(list)) => SnapshotValue::List(ListSnapshot(Arc::clone(list))),
                    Some(Value::Set(set)) => SnapshotValue::Set(SetSnapshot(Arc::clone(set))),
                    Some(string) => SnapshotValue::String(string.string_bytes()?),
                };
                Some(SnapshotEntry {
                    key: key.clone(),
                    value,
                    expires_at_ms: entry.expires_at_ms(),
                    version: entry.version(),
                })
            })
            .collect();
        drop(state);
        let last_of_shard = positions.len() < self.chunk_keys;
        let chunk = SnapshotChunk {
            shard: self.shard as u32,
            shard_sequence: self.shard_sequence,
            entries,
            last_of_shard,
        };
        if last_of_shard {
            self.shard += 1;
            self.after = None;
        } else {
            self.after = positions.into_iter().last();
        }
        Some(chunk)
    }
}

impl HashSnapshot {
    /// A hash holding `fields` (a later value of a field wins), to restore
    /// a key read from a snapshot file.
    pub fn from_fields(fields: impl IntoIterator<Item = (Bytes, Bytes)>) -> Self {
        let mut hash = HashValue::default();
        for (field, value) in fields {
            hash.insert(field, value);
        }
        Self(Arc::new(hash))
    }
}

impl ListSnapshot {
    /// A list of `items`, head first.
    pub fn from_items(items: impl IntoIterator<Item = Bytes>) -> Self {
        let mut list = ListValue::default();
        for item in items {
            list.push(item, false);
        }
        Self(Arc::new(list))
    }
}

impl SetSnapshot {
    /// A set of `members` (duplicates count once).
    pub fn from_members(members: impl IntoIterator<Item = Bytes>) -> Self {
        let mut set = SetValue::default();
        for member in members {
            set.insert(member);
        }
        Self(Arc::new(set))
    }
}
