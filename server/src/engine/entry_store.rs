//! A shard's entries: a dense slab of entries and a hash index of 4-byte
//! slot numbers into it.
//!
//! A hash table that keeps its entries in its own buckets pays for every
//! empty bucket at the size of an entry. Under steady eviction that is most
//! of them: removals leave tombstones, and once they use up the table's
//! spare room a table over half full doubles instead of cleaning up in
//! place, so it settles between a quarter and half full. With 96-byte
//! entries that came to nearly 400 bytes a key. Here an empty bucket costs 5
//! bytes (a slot number and its control byte), and the slab grows by a
//! quarter at a time, reusing the holes removals leave.

use hashbrown::HashTable;

use super::shard::Entry;

/// Slots added to an empty slab, before growth by a quarter takes over.
const MIN_GROWTH: usize = 4;
/// A slab of at least this many slots is rebuilt when under a quarter
/// full, to give memory back after a mass removal.
const MIN_SLOTS_TO_SHRINK: usize = 64;

/// The entries of one shard, found by hash.
#[derive(Debug, Default)]
pub(crate) struct EntryStore {
    /// Slot numbers, hashed by their entry's hash.
    index: HashTable<u32>,
    /// Entries by slot; `None` is a hole waiting for reuse.
    slots: Vec<Option<Entry>>,
    /// Holes in `slots`, reused before the slab grows.
    holes: Vec<u32>,
}

impl EntryStore {
    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// The entry with `hash` that `matches`, if any.
    pub(crate) fn find(&self, hash: u64, matches: impl Fn(&Entry) -> bool) -> Option<&Entry> {
        let slots = &self.slots;
        let slot = self
            .index
            .find(hash, |&slot| matches(occupied(slots, slot)))?;
        Some(occupied(slots, *slot))
    }

    /// The entry with `hash` that `matches`, for a change that keeps its
    /// hash.
    pub(crate) fn find_mut(
        &mut self,
        hash: u64,
        matches: impl Fn(&Entry) -> bool,
    ) -> Option<&mut Entry> {
        let slots = &self.slots;
        let slot = *self
            .index
            .find(hash, |&slot| matches(occupied(slots, slot)))?;
        self.slots[slot as usize].as_mut()
    }

    /// Adds `entry`, whose key must not be present.
    pub(crate) fn insert(&mut self, entry: Entry) {
        let hash = entry.hash;
        let slot = match self.holes.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(entry);
                slot
            }
            None => {
                if self.slots.len() == self.slots.capacity() {
                    let growth = (self.slots.len() / 4).max(MIN_GROWTH);
                    self.slots.reserve_exact(growth);
                }
                self.slots.push(Some(entry));
                slot_number(self.slots.len() - 1)
            }
        };
        let slots = &self.slots;
        self.index
            .insert_unique(hash, slot, |&slot| occupied(slots, slot).hash);
    }

    /// Removes and returns the entry with `hash` that `matches`.
    pub(crate) fn remove(&mut self, hash: u64, matches: impl Fn(&Entry) -> bool) -> Option<Entry> {
        let slots = &self.slots;
        let (slot, _) = self
            .index
            .find_entry(hash, |&slot| matches(occupied(slots, slot)))
            .ok()?
            .remove();
        let entry = self.slots[slot as usize].take();
        if slot as usize + 1 == self.slots.len() {
            self.slots.pop();
        } else {
            self.holes.push(slot);
        }
        entry
    }

    /// Every entry, in slab order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.slots.iter().flatten()
    }

    /// Gives memory back after many removals: a slab under a quarter full
    /// is rebuilt without its holes, and the index with it.
    pub(crate) fn shrink_if_sparse(&mut self) {
        let capacity = self.slots.capacity();
        if capacity < MIN_SLOTS_TO_SHRINK || self.len() * 4 >= capacity {
            return;
        }
        let old = std::mem::take(self);
        let mut rebuilt = Self {
            index: HashTable::with_capacity(old.len()),
            slots: Vec::with_capacity(old.len() + old.len() / 4),
            holes: Vec::new(),
        };
        for entry in old.slots.into_iter().flatten() {
            rebuilt.insert(entry);
        }
        *self = rebuilt;
    }

    /// Bytes held: every slab slot (holes and spare room included), the
    /// index's buckets (a slot number and a control byte each) and the
    /// list of holes.
    pub(crate) fn memory_bytes(&self) -> usize {
        let capacity = self.index.capacity();
        let buckets = if capacity == 0 {
            0
        } else {
            (capacity * 8 / 7).next_power_of_two()
        };
        self.slots.capacity() * size_of::<Option<Entry>>()
            + buckets * (size_of::<u32>() + 1)
            + self.holes.capacity() * size_of::<u32>()
    }
}

/// The entry in `slot`, which the index says is occupied.
fn occupied(slots: &[Option<Entry>], slot: u32) -> &Entry {
    slots[slot as usize]
        .as_ref()
        .unwrap_or_else(|| unreachable!("the index names only occupied slots"))
}

/// A slab position as a slot number. A shard never holds four billion
/// entries: the engine's memory would run out long before.
fn slot_number(position: usize) -> u32 {
    u32::try_from(position).unwrap_or_else(|_| unreachable!("over 2^32 entries in one shard"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::eviction::QueueKind;
    use crate::engine::key::StoredKey;
    use crate::engine::shard::Value;
    use std::sync::atomic::AtomicU8;

    fn entry(hash: u64) -> Entry {
        Entry {
            hash,
            key: StoredKey::new(&hash.to_be_bytes()),
            value: Value::string(bytes::Bytes::new()),
            version: hash,
            expires_at_ms: 0,
            queue_stamp: 0,
            queue: QueueKind::Main,
            frequency: AtomicU8::new(0),
        }
    }

    #[test]
    fn an_empty_slot_costs_no_more_than_an_entry() {
        assert_eq!(size_of::<Option<Entry>>(), size_of::<Entry>());
    }

    #[test]
    fn entries_are_found_removed_and_their_holes_reused() {
        let mut store = EntryStore::default();
        for hash in 0..100 {
            store.insert(entry(hash));
        }
        for hash in (0..100).step_by(2) {
            let removed = store.remove(hash, |e| e.version == hash).expect("present");
            assert_eq!(removed.hash, hash);
        }
        assert_eq!(store.len(), 50);
        assert!(store.find(4, |e| e.version == 4).is_none());
        assert_eq!(store.find(5, |e| e.version == 5).map(|e| e.hash), Some(5));
        let slots = store.slots.len();
        for hash in 100..150 {
            store.insert(entry(hash));
        }
        assert_eq!(store.slots.len(), slots, "holes were reused");
        assert_eq!(store.iter().count(), 100);
        store
            .find_mut(7, |e| e.version == 7)
            .expect("present")
            .version = 70;
        assert!(store.find(7, |e| e.version == 70).is_some());
    }

    #[test]
    fn a_sparse_store_gives_memory_back_and_keeps_its_entries() {
        let mut store = EntryStore::default();
        for hash in 0..10_000 {
            store.insert(entry(hash));
        }
        let full = store.memory_bytes();
        for hash in 0..9_900 {
            store.remove(hash, |_| true).expect("present");
        }
        store.shrink_if_sparse();
        assert!(store.memory_bytes() * 20 < full);
        assert_eq!(store.len(), 100);
        for hash in 9_900..10_000 {
            assert!(store.find(hash, |e| e.version == hash).is_some());
        }
    }

    #[test]
    fn churn_at_a_steady_size_keeps_the_store_small() {
        let mut store = EntryStore::default();
        for hash in 0..8_000 {
            store.insert(entry(hash));
        }
        for hash in 8_000..200_000u64 {
            store.remove(hash - 8_000, |_| true).expect("present");
            store.insert(entry(hash));
        }
        assert_eq!(store.len(), 8_000);
        let per_entry = store.memory_bytes() / store.len();
        assert!(
            per_entry < size_of::<Entry>() * 5 / 4 + 24,
            "{per_entry} bytes an entry"
        );
    }
}
