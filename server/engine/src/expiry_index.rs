//! Per-shard index of deadlines, so the sweeper finds expired keys without
//! scanning the keyspace.
//!
//! Deadlines fall into buckets of [`BUCKET_MS`] milliseconds, as in
//! Segcache's TTL buckets. A bucket holds the hashes of the keys whose
//! deadline falls in it; the sweeper takes the buckets that have wholly
//! passed and checks each key's real deadline, so a reference left behind by a
//! key whose expiry changed (a *stale* reference) is harmless. Stale references
//! are bounded: when they outnumber twice the shard's keys, the index is
//! rebuilt from the table.

use std::collections::BTreeMap;

/// Width of one deadline bucket. A key is reclaimed at most this long, plus
/// one sweep interval, after its deadline.
pub(crate) const BUCKET_MS: u64 = 128;

/// References kept before a rebuild is considered, however small the shard.
const MIN_REFS_BEFORE_REBUILD: usize = 4096;

/// Deadline buckets of one shard.
#[derive(Debug, Default)]
pub(crate) struct ExpiryIndex {
    /// Bucket number (deadline / BUCKET_MS rounded up) -> key hashes.
    buckets: BTreeMap<u64, Vec<u64>>,
    /// Hashes held across all buckets, stale ones included.
    refs: usize,
}

/// The bucket that holds `deadline_ms`: the first whose end is not before it.
fn bucket_of(deadline_ms: u64) -> u64 {
    deadline_ms.div_ceil(BUCKET_MS)
}

impl ExpiryIndex {
    /// Records that the key with `hash` now expires at `deadline_ms`, having
    /// expired at `previous_ms` before (0 for none).
    pub(crate) fn schedule(&mut self, hash: u64, deadline_ms: u64, previous_ms: u64) {
        if deadline_ms == 0 {
            return;
        }
        if previous_ms != 0 && bucket_of(previous_ms) == bucket_of(deadline_ms) {
            return;
        }
        self.buckets
            .entry(bucket_of(deadline_ms))
            .or_default()
            .push(hash);
        self.refs += 1;
    }

    /// Whether some bucket has ended at or before `now_ms`.
    pub(crate) fn has_due(&self, now_ms: u64) -> bool {
        self.buckets
            .first_key_value()
            .is_some_and(|(bucket, _)| bucket.saturating_mul(BUCKET_MS) <= now_ms)
    }

    /// Removes and returns up to `max` hashes from buckets that ended at or
    /// before `now_ms`. Every key with a deadline at or before the end of a
    /// returned bucket has its hash among those returned, in this call or an
    /// earlier one.
    pub(crate) fn take_due(&mut self, now_ms: u64, max: usize) -> Vec<u64> {
        let mut due = Vec::new();
        while due.len() < max {
            let Some(mut bucket) = self.buckets.first_entry() else {
                break;
            };
            if bucket.key().saturating_mul(BUCKET_MS) > now_ms {
                break;
            }
            let room = max - due.len();
            let hashes = bucket.get_mut();
            if hashes.len() <= room {
                due.append(&mut bucket.remove());
            } else {
                due.extend(hashes.drain(hashes.len() - room..));
            }
        }
        self.refs -= due.len();
        due
    }

    /// Whether stale references have piled up enough that the index should be
    /// rebuilt from the `live_keys` of the shard.
    pub(crate) fn needs_rebuild(&self, live_keys: usize) -> bool {
        self.refs > MIN_REFS_BEFORE_REBUILD.max(live_keys.saturating_mul(2))
    }

    /// Replaces the index with exactly one reference per `(hash, deadline)`.
    pub(crate) fn rebuild(&mut self, deadlines: impl Iterator<Item = (u64, u64)>) {
        self.buckets.clear();
        self.refs = 0;
        for (hash, deadline_ms) in deadlines {
            self.schedule(hash, deadline_ms, 0);
        }
    }

    /// Forgets every reference.
    pub(crate) fn clear(&mut self) {
        self.buckets = BTreeMap::new();
        self.refs = 0;
    }

    /// Bytes held by the index (bucket vectors and tree nodes, estimated).
    pub(crate) fn memory_bytes(&self) -> usize {
        const TREE_ENTRY_BYTES: usize = 48;
        self.buckets
            .values()
            .map(|hashes| hashes.capacity() * size_of::<u64>() + TREE_ENTRY_BYTES)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_nothing_before_the_bucket_ends() {
        let mut index = ExpiryIndex::default();
        index.schedule(1, 1_000, 0);
        assert!(!index.has_due(999));
        assert!(index.take_due(999, 100).is_empty());
        assert!(index.has_due(1_024));
        assert_eq!(index.take_due(1_024, 100), vec![1]);
        assert!(index.take_due(10_000, 100).is_empty());
    }

    #[test]
    fn respects_the_batch_limit_and_keeps_the_rest() {
        let mut index = ExpiryIndex::default();
        for hash in 0..10 {
            index.schedule(hash, 500, 0);
        }
        assert_eq!(index.take_due(10_000, 4).len(), 4);
        assert_eq!(index.take_due(10_000, 4).len(), 4);
        assert_eq!(index.take_due(10_000, 4).len(), 2);
    }

    #[test]
    fn a_deadline_in_the_same_bucket_adds_no_reference() {
        let mut index = ExpiryIndex::default();
        index.schedule(1, 1_000, 0);
        index.schedule(1, 1_001, 1_000);
        assert_eq!(index.refs, 1);
        index.schedule(1, 90_000, 1_001);
        assert_eq!(index.refs, 2);
    }

    #[test]
    fn rebuild_drops_stale_references() {
        let mut index = ExpiryIndex::default();
        for deadline in 1..10_000u64 {
            index.schedule(7, deadline * BUCKET_MS, (deadline - 1) * BUCKET_MS);
        }
        assert!(index.needs_rebuild(1));
        index.rebuild([(7, 5_000)].into_iter());
        assert_eq!(index.refs, 1);
        assert!(!index.needs_rebuild(1));
    }
}
