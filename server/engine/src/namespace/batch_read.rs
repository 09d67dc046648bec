//! Reading many string keys at once.
//!
//! A batch read groups its keys by shard and takes each shard's shared lock
//! once for all of that shard's keys, instead of once per key. On a batch of
//! a hundred keys over sixteen shards that turns a hundred lock round trips,
//! each an atomic write to a cache line the other cores also write, into at
//! most sixteen, and lets the lookups of one shard's keys overlap their cache
//! misses. Hits and misses are counted once per shard too.

use bytes::Bytes;

use super::Namespace;
use super::strings::string_with_meta;
use crate::{EngineError, ItemMeta};

/// What a batch read found for one key: its value and metadata, `None` for
/// a miss, or the error of that key alone.
pub type BatchRead = Result<Option<(Bytes, ItemMeta)>, EngineError>;

/// A key of the batch to look up: where it sits in the batch, its hash and
/// its shard.
struct Lookup {
    shard: usize,
    position: usize,
    hash: u64,
}

impl Namespace {
    /// Reads the string values of `keys`, each as [`Namespace::get_with_meta`]
    /// would, and returns their outcomes in the order of `keys`.
    ///
    /// An invalid key or a key holding a collection fails alone; the other
    /// keys are read. Keys found past their deadline are removed, as a
    /// single read would.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use shoal_engine::{Engine, EngineConfig, SetOptions};
    ///
    /// let engine = Engine::new(EngineConfig::default());
    /// let ns = engine.namespace("docs")?;
    /// ns.set(b"a", Bytes::from_static(b"1"), SetOptions::default())?;
    /// let mut found = ns.get_many(&[&b"a"[..], b"missing", b""]).into_iter();
    /// let (value, meta) = found.next().unwrap()?.expect("present");
    /// assert_eq!((value, meta.size), (Bytes::from_static(b"1"), 1));
    /// assert_eq!(found.next().unwrap()?, None);
    /// assert!(found.next().unwrap().is_err(), "an empty key fails alone");
    /// # Ok::<(), shoal_engine::EngineError>(())
    /// ```
    pub fn get_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<BatchRead> {
        let mut results: Vec<BatchRead> = Vec::with_capacity(keys.len());
        let mut lookups = Vec::with_capacity(keys.len());
        for (position, key) in keys.iter().enumerate() {
            let key = key.as_ref();
            match self.check_key(key) {
                Err(error) => results.push(Err(error)),
                Ok(()) => {
                    results.push(Ok(None));
                    let hash = self.hash(key);
                    lookups.push(Lookup {
                        shard: self.shard_index(hash),
                        position,
                        hash,
                    });
                }
            }
        }
        lookups.sort_unstable_by_key(|lookup| (lookup.shard, lookup.position));

        let touch_limit = self
            .budget
            .evicting_policy()
            .map(|policy| policy.max_frequency());
        let mut now_ms = None;
        let mut expired = Vec::new();
        for group in lookups.chunk_by(|a, b| a.shard == b.shard) {
            let shard = &self.shards[group[0].shard];
            let (mut hits, mut misses) = (0, 0);
            let state = shard.read();
            for lookup in group {
                let Some(entry) = state.find(lookup.hash, keys[lookup.position].as_ref()) else {
                    misses += 1;
                    continue;
                };
                let now = if entry.expires_at_ms() == 0 {
                    0
                } else {
                    *now_ms.get_or_insert_with(|| self.clock.now_ms())
                };
                if entry.is_expired(now) {
                    misses += 1;
                    expired.push((lookup, now));
                    continue;
                }
                results[lookup.position] = match string_with_meta(entry, now) {
                    Err(error) => Err(error),
                    Ok(read) => {
                        if let Some(limit) = touch_limit {
                            entry.touch(limit);
                        }
                        hits += 1;
                        Ok(Some(read))
                    }
                };
            }
            drop(state);
            shard.count_reads(hits, misses);
        }

        for (lookup, now) in expired {
            let key = keys[lookup.position].as_ref();
            let mut state = self.shards[lookup.shard].write();
            let removed = self.remove_if_expired(lookup.shard, &mut state, lookup.hash, key, now);
            drop(state);
            drop(removed);
        }
        results
    }
}
