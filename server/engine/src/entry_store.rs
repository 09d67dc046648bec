//! A shard's entries: packed slots of 32 to 128 bytes in fixed-size chunks,
//! found through a hash index of 4-byte slot references.
//!
//! An entry takes only the words its header, key and value need (see
//! [`packed`] for the layout): a 16-byte key with a 32-byte value fills a
//! 72-byte slot, 24 bytes beyond its payload. Slots of one size sit in
//! chunks of about 8 KiB that are never reallocated, so growth copies
//! nothing and leaves no outgrown blocks for the allocator to hold, and a
//! removal leaves a hole that the next entry of that size reuses. The
//! chunks of every size are listed in one directory per shard, so a slot
//! reference leads to its chunk in one load.
//!
//! The index holds slot references, not hashes: the hash is computed again
//! from the key when the index grows or a scan orders keys by it.
//!
//! Strings too long for a slot, collections and long keys live in a spill
//! list beside the slots; the slot names them by index.

mod packed;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hashbrown::HashTable;

use super::key::StoredKey;
use super::value::Value;
use packed::{Encoded, MAX_WORDS, MIN_WORDS, Placement};
pub(crate) use packed::{EntryRef, Header, Spilled, StringRead, entry_bytes, string_stored_inline};

/// Slot sizes, one per word count from [`MIN_WORDS`] to [`MAX_WORDS`].
const CLASSES: usize = MAX_WORDS - MIN_WORDS + 1;
/// Bytes of a full-size chunk of slots.
const CHUNK_BYTES: usize = 8192;
/// Slots of a class's first chunk.
const FIRST_CHUNK_SLOTS: usize = 4;
/// A slot reference keeps the slot's offset in its chunk in 8 bits.
const MAX_SLOTS_PER_CHUNK: usize = 256;
/// ... its chunk's place in the shard's directory in 20 bits, and its
/// class in the top 4.
const MAX_CHUNKS: usize = 1 << 20;
/// A store holding at least this many bytes of slots is rebuilt when under
/// a quarter full, to give memory back after a mass removal.
const MIN_BYTES_TO_SHRINK: usize = 64 * 1024;

/// Every chunk of a shard's slots, of every class, in one list: a read
/// finds its slot's chunk in one load from here, where a list per class
/// took two (the class, then its list), each a likely cache miss.
///
/// A chunk given back leaves an empty place, which the next chunk added
/// takes. Finding it is a scan, but chunks are added once per 4 to 256
/// slots and a directory holds tens of them; a list of free places would
/// have made every shard a cache line longer (see `Shard`).
#[derive(Debug, Default)]
struct ChunkDirectory {
    chunks: Vec<Box<[AtomicU64]>>,
}

impl ChunkDirectory {
    /// Adds `chunk`, which is not empty; returns its place.
    fn add(&mut self, chunk: Box<[AtomicU64]>) -> usize {
        debug_assert!(!chunk.is_empty());
        if let Some(place) = self.chunks.iter().position(|chunk| chunk.is_empty()) {
            self.chunks[place] = chunk;
            return place;
        }
        assert!(
            self.chunks.len() < MAX_CHUNKS,
            "over 2^20 chunks in one shard"
        );
        self.chunks.push(chunk);
        self.chunks.len() - 1
    }

    /// Frees the chunk at `place`, which may be reused.
    fn remove(&mut self, place: usize) {
        self.chunks[place] = Box::default();
    }

    #[inline]
    fn chunk(&self, place: usize) -> &[AtomicU64] {
        &self.chunks[place]
    }

    fn capacity_bytes(&self) -> usize {
        self.chunks.iter().map(|chunk| chunk.len() * 8).sum()
    }

    fn memory_bytes(&self) -> usize {
        self.capacity_bytes() + self.chunks.capacity() * size_of::<Box<[AtomicU64]>>()
    }
}

/// Slots of one size.
#[derive(Debug)]
struct SlotClass {
    words: usize,
    /// Slots in a full-size chunk.
    full_chunk: usize,
    /// The class's chunks, as places in the shard's [`ChunkDirectory`],
    /// oldest first; the first ones are small, so that a shard holding a
    /// few keys holds a few hundred bytes, not kilobytes.
    chunks: Vec<u32>,
    /// Slots handed out of the last chunk.
    used_in_last: usize,
    /// Slots in all chunks but the last.
    in_full_chunks: usize,
    /// Removals since the class last moved a chunk's entries, so that a
    /// mass removal moves no more than one entry per removal.
    removals: usize,
    /// Freed slots, reused first.
    holes: Vec<u32>,
}

impl SlotClass {
    fn new(class: usize) -> Self {
        let words = class + MIN_WORDS;
        Self {
            words,
            full_chunk: (CHUNK_BYTES / (words * 8)).min(MAX_SLOTS_PER_CHUNK),
            chunks: Vec::new(),
            used_in_last: 0,
            in_full_chunks: 0,
            removals: 0,
            holes: Vec::new(),
        }
    }

    /// Slots in the class's `index`-th chunk.
    fn chunk_slots(&self, directory: &ChunkDirectory, index: usize) -> usize {
        directory.chunk(self.chunks[index] as usize).len() / self.words
    }

    /// Slots handed out of the class's `index`-th chunk.
    fn used_slots(&self, directory: &ChunkDirectory, index: usize) -> usize {
        if index + 1 == self.chunks.len() {
            self.used_in_last
        } else {
            self.chunk_slots(directory, index)
        }
    }

    /// A free slot: a hole, else the next one of the last chunk, else the
    /// first of a new chunk, twice the size of the last up to
    /// [`CHUNK_BYTES`].
    fn allocate(&mut self, class: usize, directory: &mut ChunkDirectory) -> u32 {
        if let Some(slot) = self.holes.pop() {
            return slot;
        }
        let last = self.chunks.len().checked_sub(1);
        if last.is_none_or(|last| self.used_in_last == self.chunk_slots(directory, last)) {
            if let Some(last) = last {
                self.in_full_chunks += self.chunk_slots(directory, last);
            }
            let slots = (FIRST_CHUNK_SLOTS << self.chunks.len().min(8)).min(self.full_chunk);
            let chunk = (0..slots * self.words).map(|_| AtomicU64::new(0)).collect();
            self.chunks.push(directory.add(chunk) as u32);
            self.used_in_last = 0;
        }
        self.used_in_last += 1;
        let last = self.chunks[self.chunks.len() - 1] as usize;
        slot_reference(class, last, self.used_in_last - 1)
    }

    /// Slots handed out, live or holes.
    fn handed_out(&self) -> usize {
        self.in_full_chunks + self.used_in_last
    }

    /// Gives every chunk back to `directory`.
    fn release(&self, directory: &mut ChunkDirectory) {
        for &place in &self.chunks {
            directory.remove(place as usize);
        }
    }

    fn memory_bytes(&self) -> usize {
        self.chunks.capacity() * size_of::<u32>() + self.holes.capacity() * size_of::<u32>()
    }
}

fn slot_reference(class: usize, chunk: usize, offset: usize) -> u32 {
    (class as u32) << 28 | (chunk as u32) << 8 | offset as u32
}

#[inline]
fn split_reference(slot: u32) -> (usize, usize, usize) {
    (
        (slot >> 28) as usize,
        (slot >> 8 & 0xF_FFFF) as usize,
        (slot & 0xFF) as usize,
    )
}

/// The slots and spill list, apart from the index so that the index's
/// closures can read entries while it changes.
#[derive(Debug)]
struct Slots {
    directory: ChunkDirectory,
    classes: Vec<SlotClass>,
    spill: Vec<Option<Spilled>>,
    spill_holes: Vec<u32>,
    /// Heap bytes held by spilled keys and values.
    spilled_heap: usize,
    /// Bytes live entries take: their slots, their spill-list slots and the
    /// heap those hold.
    live_bytes: usize,
}

impl Slots {
    fn new() -> Self {
        Self {
            directory: ChunkDirectory::default(),
            classes: Vec::new(),
            spill: Vec::new(),
            spill_holes: Vec::new(),
            spilled_heap: 0,
            live_bytes: 0,
        }
    }

    #[inline]
    fn words(&self, slot: u32) -> &[AtomicU64] {
        let (class, chunk, offset) = split_reference(slot);
        let words = class + MIN_WORDS;
        let start = offset * words;
        &self.directory.chunk(chunk)[start..start + words]
    }

    #[inline]
    fn entry(&self, slot: u32) -> EntryRef<'_> {
        EntryRef::new(self.words(slot), &self.spill)
    }

    /// Writes `encoded` into a free slot, with `spilled` in the spill list.
    fn place(&mut self, encoded: &Encoded, spilled: Option<Spilled>) -> u32 {
        let class = encoded.words - MIN_WORDS;
        debug_assert!(class < CLASSES);
        if self.classes.len() <= class {
            // Classes up to the largest in use, so a shard of a few small
            // keys pays for one or two.
            let start = self.classes.len();
            self.classes.extend((start..=class).map(SlotClass::new));
        }
        let slot = self.classes[class].allocate(class, &mut self.directory);
        let spill_index = spilled.map(|spilled| {
            self.spilled_heap += spilled.heap_bytes();
            match self.spill_holes.pop() {
                Some(index) => {
                    self.spill[index as usize] = Some(spilled);
                    index
                }
                None => {
                    self.spill.push(Some(spilled));
                    u32::try_from(self.spill.len() - 1)
                        .unwrap_or_else(|_| unreachable!("over 2^32 spilled entries in one shard"))
                }
            }
        });
        let words = self.words(slot);
        for (word, value) in words.iter().zip(&encoded.buffer[..encoded.words]) {
            word.store(*value, Relaxed);
        }
        if let (Some(at), Some(index)) = (encoded.spill_at, spill_index) {
            packed::write_spill_index(words, at, index);
        }
        self.live_bytes += self.entry(slot).stored_bytes();
        slot
    }

    /// Empties `slot`; returns what it spilled.
    fn free(&mut self, slot: u32) -> Option<Spilled> {
        self.live_bytes -= self.entry(slot).stored_bytes();
        let spill_slot = self.entry(slot).spill_slot();
        self.words(slot)[0].store(0, Relaxed);
        let (class, ..) = split_reference(slot);
        self.classes[class].holes.push(slot);
        let spilled = spill_slot.and_then(|index| {
            self.spill_holes.push(index as u32);
            self.spill[index].take()
        })?;
        self.spilled_heap -= spilled.heap_bytes();
        Some(spilled)
    }

    fn iter(&self) -> impl Iterator<Item = (u32, EntryRef<'_>)> {
        self.classes
            .iter()
            .enumerate()
            .flat_map(move |(class, slots)| {
                slots
                    .chunks
                    .iter()
                    .enumerate()
                    .flat_map(move |(index, &place)| {
                        (0..slots.used_slots(&self.directory, index)).filter_map(move |offset| {
                            let slot = slot_reference(class, place as usize, offset);
                            let entry = self.entry(slot);
                            entry.is_occupied().then_some((slot, entry))
                        })
                    })
            })
    }

    fn capacity_bytes(&self) -> usize {
        self.directory.capacity_bytes()
    }

    fn memory_bytes(&self) -> usize {
        self.directory.memory_bytes()
            + self.classes.capacity() * size_of::<SlotClass>()
            + self
                .classes
                .iter()
                .map(SlotClass::memory_bytes)
                .sum::<usize>()
            + self.spill.capacity() * size_of::<Option<Spilled>>()
            + self.spill_holes.capacity() * size_of::<u32>()
            + self.spilled_heap
    }
}

/// An entry taken out of the store: its key, and what it spilled (dropped
/// by the caller once the shard's lock is released).
#[derive(Debug)]
pub(crate) struct RemovedEntry {
    pub(crate) key: StoredKey,
    /// Kept only to be dropped outside the lock.
    spilled: Option<Spilled>,
}

impl RemovedEntry {
    /// What the entry spilled, the only part worth dropping late.
    pub(crate) fn into_spilled(self) -> Option<Spilled> {
        self.spilled
    }
}

/// The entries of one shard, found by hash.
#[derive(Debug)]
pub(crate) struct EntryStore {
    /// Slot references, hashed by their entry's key.
    index: HashTable<u32>,
    slots: Slots,
    /// The namespace's key hasher, to hash keys again as the index grows.
    hasher: foldhash::fast::RandomState,
}

impl EntryStore {
    /// An empty store whose keys are hashed by `hasher`.
    pub(crate) fn new(hasher: foldhash::fast::RandomState) -> Self {
        Self {
            index: HashTable::new(),
            slots: Slots::new(),
            hasher,
        }
    }

    /// The hasher keys are hashed with.
    pub(crate) fn hasher(&self) -> foldhash::fast::RandomState {
        self.hasher.clone()
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// The hash of `key`, as the namespace computes it.
    pub(crate) fn hash_of(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The entry for `key`, whose hash is `hash`.
    #[inline]
    pub(crate) fn find(&self, hash: u64, key: &[u8]) -> Option<EntryRef<'_>> {
        let slot = self.find_slot(hash, |entry| entry.key_is(key))?;
        Some(self.slots.entry(slot))
    }

    /// The slot of the entry with `hash` that `matches`.
    #[inline]
    pub(crate) fn find_slot(
        &self,
        hash: u64,
        matches: impl Fn(EntryRef<'_>) -> bool,
    ) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(hash, |&slot| matches(slots.entry(slot)))
            .copied()
    }

    /// The entry in `slot`, from [`EntryStore::find_slot`].
    #[inline]
    pub(crate) fn entry(&self, slot: u32) -> EntryRef<'_> {
        self.slots.entry(slot)
    }

    /// Adds an entry for `key`, which must not be present.
    pub(crate) fn insert(&mut self, hash: u64, key: &[u8], header: Header, value: Value) {
        let slot = self.place(key, header, value);
        self.index_slot(hash, slot);
    }

    /// Makes room in the index for `additional` more keys at once, so that
    /// a bulk load does not rehash every key at each doubling.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.reserve(additional, |&slot| {
            slots.entry(slot).with_key(|key| hasher.hash_one(key))
        });
    }

    /// Adds `slot`, whose key hashes to `hash`, to the index; should the
    /// index grow, it hashes the keys again.
    fn index_slot(&mut self, hash: u64, slot: u32) {
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(hash, slot, |&slot| {
            slots.entry(slot).with_key(|key| hasher.hash_one(key))
        });
    }

    fn place(&mut self, key: &[u8], header: Header, value: Value) -> u32 {
        let placement = packed::placement(key, &value);
        let encoded = packed::encode(header, key, &placement);
        let spilled = match placement {
            Placement::Inline { .. } => None,
            Placement::SpillValue => Some(Spilled { key: None, value }),
            Placement::SpillBoth => Some(Spilled {
                key: Some(key.into()),
                value,
            }),
        };
        self.slots.place(&encoded, spilled)
    }

    /// Gives the entry in `slot` (whose key is `key` and hash `hash`) a new
    /// value and header; returns what the old value spilled, to be dropped
    /// once the lock is released.
    pub(crate) fn replace(
        &mut self,
        hash: u64,
        slot: u32,
        key: &[u8],
        header: Header,
        value: Value,
    ) -> Option<Spilled> {
        let old = self.slots.free(slot);
        let new = self.place(key, header, value);
        if new != slot {
            let reference = self
                .index
                .find_mut(hash, |&candidate| candidate == slot)
                .unwrap_or_else(|| unreachable!("an entry's slot is in the index"));
            *reference = new;
            self.compact_class(split_reference(slot).0);
        }
        old
    }

    /// After a removal from `class`: frees the class's chunks once it is
    /// empty, and once a quarter of its slots are holes moves the entries
    /// of its last chunk into holes and frees that chunk, at most once per
    /// chunk's worth of removals (a chunk holds at most that many entries,
    /// so a removal moves at most one entry on average and a sweep keeps
    /// its lock holds short). Entries move between classes as their sizes
    /// change (keys grow longer as a counter in them does, values are
    /// rewritten shorter), and without this a class would keep the most
    /// slots it ever held: a storm of small values held 2.4 times its live
    /// slots so.
    fn compact_class(&mut self, class: usize) {
        let Slots {
            directory, classes, ..
        } = &mut self.slots;
        let slots = &mut classes[class];
        let handed_out = slots.handed_out();
        if slots.holes.len() == handed_out {
            slots.release(directory);
            *slots = SlotClass::new(class);
            return;
        }
        slots.removals += 1;
        if slots.removals < slots.full_chunk {
            return;
        }
        let Some(last) = slots.chunks.len().checked_sub(1) else {
            return;
        };
        if slots.holes.len() * 4 <= handed_out
            || slots.holes.len() < 2 * slots.chunk_slots(directory, last)
        {
            return;
        }
        slots.removals = 0;
        let last_place = slots.chunks[last] as usize;
        slots
            .holes
            .retain(|&hole| split_reference(hole).1 != last_place);
        for offset in 0..slots.used_in_last {
            let from = slot_reference(class, last_place, offset);
            let entry = self.slots.entry(from);
            if !entry.is_occupied() {
                continue;
            }
            let hash = entry.with_key(|key| self.hasher.hash_one(key));
            let to = self.slots.classes[class]
                .holes
                .pop()
                .unwrap_or_else(|| unreachable!("more holes than the last chunk has slots"));
            for (target, source) in self.slots.words(to).iter().zip(self.slots.words(from)) {
                target.store(source.load(Relaxed), Relaxed);
            }
            let reference = self
                .index
                .find_mut(hash, |&candidate| candidate == from)
                .unwrap_or_else(|| unreachable!("a live slot is in the index"));
            *reference = to;
        }
        let Slots {
            directory, classes, ..
        } = &mut self.slots;
        let slots = &mut classes[class];
        slots.chunks.pop();
        directory.remove(last_place);
        slots.used_in_last = match slots.chunks.len().checked_sub(1) {
            Some(last) => slots.chunk_slots(directory, last),
            None => 0,
        };
        slots.in_full_chunks -= slots.used_in_last;
    }

    /// Rewrites the fixed fields of the entry in `slot`.
    pub(crate) fn set_header(&mut self, slot: u32, header: Header) {
        packed::write_header(self.slots.words(slot), header);
    }

    /// Runs `change` on the spilled value of the entry in `slot` (every
    /// collection spills), keeping the byte counts right; `None` when the
    /// value is a string kept in the slot.
    pub(crate) fn update_spilled<R>(
        &mut self,
        slot: u32,
        change: impl FnOnce(&mut Value) -> R,
    ) -> Option<R> {
        let index = self.slots.entry(slot).spill_slot()?;
        let spilled = self.slots.spill[index].as_mut()?;
        let before = spilled.value.heap_bytes();
        let result = change(&mut spilled.value);
        let after = spilled.value.heap_bytes();
        self.slots.spilled_heap = self.slots.spilled_heap + after - before;
        self.slots.live_bytes = self.slots.live_bytes + after - before;
        Some(result)
    }

    /// Removes and returns the entry with `hash` that `matches`.
    pub(crate) fn remove(
        &mut self,
        hash: u64,
        matches: impl Fn(EntryRef<'_>) -> bool,
    ) -> Option<RemovedEntry> {
        self.remove_and(hash, matches, true)
    }

    /// As [`EntryStore::remove`], but never moves entries or frees chunks
    /// (unless the store empties): for the sweeper, which removes entries
    /// by the thousand while readers run. Freeing the chunks of another
    /// thread's allocations by the thousand made that thread's next
    /// allocation process them all at once, and a reader's get took tens of
    /// microseconds; [`EntryStore::shrink_if_sparse`] gives the room back
    /// later, a shard at a time.
    pub(crate) fn remove_without_compaction(
        &mut self,
        hash: u64,
        matches: impl Fn(EntryRef<'_>) -> bool,
    ) -> Option<RemovedEntry> {
        self.remove_and(hash, matches, false)
    }

    fn remove_and(
        &mut self,
        hash: u64,
        matches: impl Fn(EntryRef<'_>) -> bool,
        compact: bool,
    ) -> Option<RemovedEntry> {
        let slots = &self.slots;
        let (slot, _) = self
            .index
            .find_entry(hash, |&slot| matches(slots.entry(slot)))
            .ok()?
            .remove();
        let entry = self.slots.entry(slot);
        let key = entry.with_key(StoredKey::new);
        let spilled = self.slots.free(slot);
        if self.index.is_empty() {
            // Nothing left to keep the chunks and buckets for.
            self.index = HashTable::new();
            self.slots = Slots::new();
        } else if compact {
            self.compact_class(split_reference(slot).0);
        }
        Some(RemovedEntry { key, spilled })
    }

    /// Every entry, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = EntryRef<'_>> {
        self.slots.iter().map(|(_, entry)| entry)
    }

    /// Gives memory back after many removals: a store whose slots or
    /// index are under a quarter full is rebuilt without its holes.
    pub(crate) fn shrink_if_sparse(&mut self) {
        if !self.is_sparse() {
            return;
        }
        let mut old = std::mem::replace(self, Self::new(self.hasher()));
        let live: Vec<u32> = old.slots.iter().map(|(slot, _)| slot).collect();
        let hasher = self.hasher();
        self.index.reserve(live.len(), |_| 0);
        for slot in live {
            let entry = old.slots.entry(slot);
            let encoded = entry.raw();
            let hash = entry.with_key(|key| hasher.hash_one(key));
            let spilled = old.slots.free(slot);
            let moved = self.slots.place(&encoded, spilled);
            self.index_slot(hash, moved);
        }
    }

    /// Whether [`EntryStore::shrink_if_sparse`] would rebuild the store:
    /// it holds at least 64 KiB, and its slots or its index are under a
    /// quarter full.
    pub(crate) fn is_sparse(&self) -> bool {
        let capacity = self.slots.capacity_bytes();
        let sparse_slots = self.live_slot_bytes() * 4 < capacity;
        let sparse_index = self.index.capacity() > self.len() * 4;
        self.memory_bytes() >= MIN_BYTES_TO_SHRINK && (sparse_slots || sparse_index)
    }

    /// Bytes of slots held by live entries.
    fn live_slot_bytes(&self) -> usize {
        self.slots.live_bytes - self.slots.spilled_heap
    }

    /// Bytes the live entries take: their slots, their spill-list slots and
    /// the heap those hold. Unlike [`EntryStore::memory_bytes`] it falls
    /// with every removal, which the eviction loop needs.
    pub(crate) fn live_bytes(&self) -> usize {
        self.slots.live_bytes
    }

    /// Bytes held: every chunk of slots (holes and unused slots included),
    /// the spill list and what it holds, and the index's buckets (a slot
    /// reference and a control byte each).
    pub(crate) fn memory_bytes(&self) -> usize {
        let capacity = self.index.capacity();
        let buckets = if capacity == 0 {
            0
        } else {
            (capacity * 8 / 7).next_power_of_two()
        };
        self.slots.memory_bytes() + buckets * (size_of::<u32>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eviction::QueueKind;
    use bytes::Bytes;

    fn header(version: u64) -> Header {
        Header {
            version,
            expires_at_ms: 0,
            queue_stamp: version as u32,
            queue: QueueKind::Main,
            frequency: 0,
        }
    }

    fn key(n: u64) -> [u8; 8] {
        n.to_be_bytes()
    }

    fn insert(store: &mut EntryStore, n: u64, value: Value) {
        let hash = store.hash_of(&key(n));
        store.insert(hash, &key(n), header(n), value);
    }

    fn small(n: u64) -> Value {
        Value::string(Bytes::from(format!("value {n:06}")))
    }

    fn get(store: &EntryStore, n: u64) -> Option<Bytes> {
        store.find(store.hash_of(&key(n)), &key(n))?.string_bytes()
    }

    fn remove(store: &mut EntryStore, n: u64) -> Option<RemovedEntry> {
        store.remove(store.hash_of(&key(n)), |entry| entry.key_is(&key(n)))
    }

    #[test]
    fn entries_are_found_removed_and_their_holes_reused() {
        let mut store = EntryStore::new(Default::default());
        for n in 0..1_000 {
            insert(&mut store, n, small(n));
        }
        let capacity = store.slots.capacity_bytes();
        for n in (0..1_000).step_by(2) {
            let removed = remove(&mut store, n).expect("present");
            assert_eq!(removed.key.as_slice(), &key(n));
        }
        assert_eq!(store.len(), 500);
        assert_eq!(get(&store, 4), None);
        assert_eq!(get(&store, 5), Some(Bytes::from("value 000005")));
        for n in 1_000..1_500 {
            insert(&mut store, n, small(n));
        }
        assert!(
            store.slots.capacity_bytes() <= capacity,
            "holes were reused"
        );
        assert_eq!(store.iter().count(), 1_000);
        for n in (1..1_000).step_by(2).chain(1_000..1_500) {
            assert_eq!(get(&store, n), Some(Bytes::from(format!("value {n:06}"))));
        }
    }

    #[test]
    fn a_value_that_changes_size_moves_and_stays_found() {
        let mut store = EntryStore::new(Default::default());
        for n in 0..100 {
            insert(&mut store, n, small(n));
        }
        let hash = store.hash_of(&key(7));
        let sizes = [1usize, 90, 300, 70_000, 3, 0];
        for (version, size) in sizes.into_iter().enumerate() {
            let slot = store
                .find_slot(hash, |entry| entry.key_is(&key(7)))
                .expect("present");
            let value = Bytes::from(vec![b'x'; size]);
            drop(store.replace(
                hash,
                slot,
                &key(7),
                header(version as u64),
                Value::string(value.clone()),
            ));
            let entry = store.find(hash, &key(7)).expect("present");
            assert_eq!(entry.string_bytes(), Some(value));
            assert_eq!(entry.version(), version as u64);
        }
        assert_eq!(store.len(), 100);
        for n in (0..100).filter(|n| *n != 7) {
            assert_eq!(get(&store, n), Some(Bytes::from(format!("value {n:06}"))));
        }
    }

    #[test]
    fn collections_and_long_keys_spill_and_are_counted() {
        let mut store = EntryStore::new(Default::default());
        let long_key = vec![b'k'; 300];
        let hash = store.hash_of(&long_key);
        store.insert(hash, &long_key, header(1), small(1));
        assert_eq!(
            store.find(hash, &long_key).and_then(|e| e.string_bytes()),
            Some(Bytes::from("value 000001"))
        );
        insert(&mut store, 2, Value::empty(crate::KeyType::List));
        let slot = store
            .find_slot(store.hash_of(&key(2)), |entry| entry.key_is(&key(2)))
            .expect("present");
        let before = store.live_bytes();
        store
            .update_spilled(slot, |value| {
                if let Value::List(list) = value {
                    std::sync::Arc::make_mut(list).push(Bytes::from(vec![0; 10_000]), false);
                }
            })
            .expect("spilled");
        assert!(store.live_bytes() >= before + 10_000);
        assert_eq!(store.entry(slot).key_type(), crate::KeyType::List);
        assert!(
            store
                .remove(hash, |entry| entry.key_is(&long_key))
                .is_some()
        );
        assert!(remove(&mut store, 2).is_some());
        assert_eq!(store.live_bytes(), 0);
        assert_eq!(store.memory_bytes(), 0, "an emptied store holds nothing");
    }

    #[test]
    fn a_sparse_store_gives_memory_back_and_keeps_its_entries() {
        let mut store = EntryStore::new(Default::default());
        for n in 0..10_000 {
            insert(&mut store, n, small(n));
        }
        let full = store.memory_bytes();
        for n in 0..9_900 {
            remove(&mut store, n).expect("present");
        }
        store.shrink_if_sparse();
        assert!(
            store.memory_bytes() * 20 < full,
            "{} of {full}",
            store.memory_bytes()
        );
        assert_eq!(store.len(), 100);
        for n in 9_900..10_000 {
            assert_eq!(get(&store, n), Some(Bytes::from(format!("value {n:06}"))));
        }
    }

    #[test]
    fn slots_follow_entries_from_one_size_to_another() {
        let mut store = EntryStore::new(Default::default());
        let sized = |n: u64, size: usize| Value::string(Bytes::from(vec![n as u8; size]));
        for n in 0..5_000 {
            insert(&mut store, n, sized(n, 8));
        }
        let before = store.memory_bytes();
        // Every entry is replaced by one of another slot size, by removal
        // and insertion, then by rewriting values in place.
        for n in 0..5_000 {
            remove(&mut store, n).expect("present");
            insert(&mut store, n + 5_000, sized(n, 40));
        }
        for n in 5_000..10_000 {
            let hash = store.hash_of(&key(n));
            let slot = store
                .find_slot(hash, |entry| entry.key_is(&key(n)))
                .expect("present");
            drop(store.replace(hash, slot, &key(n), header(n), sized(n, 80)));
        }
        let slot_bytes = (packed::HEADER_BYTES + 8 + 80).div_ceil(8) * 8;
        let per_entry = store.memory_bytes() / store.len();
        assert!(
            per_entry < slot_bytes + 20 + slot_bytes / 4,
            "{per_entry} bytes an entry of {slot_bytes}; {before} bytes before"
        );
        for n in 5_000..10_000 {
            assert_eq!(get(&store, n), Some(Bytes::from(vec![n as u8; 80])));
        }
    }

    #[test]
    fn chunks_one_class_gives_back_are_taken_by_another_that_grows() {
        let mut store = EntryStore::new(Default::default());
        let sized = |n: u64, size: usize| Value::string(Bytes::from(vec![n as u8; size]));
        let size_of = |n: u64| if n.is_multiple_of(2) { 8 } else { 40 };
        // Two classes whose chunks interleave in the shard's directory.
        for n in 0..4_000 {
            insert(&mut store, n, sized(n, size_of(n)));
        }
        // The smaller class empties and gives its chunks back...
        for n in (0..4_000).step_by(2) {
            remove(&mut store, n).expect("present");
        }
        let directory = &store.slots.directory.chunks;
        let given_back = directory.iter().filter(|chunk| chunk.is_empty()).count();
        assert!(given_back > 0, "no chunk given back of {}", directory.len());
        // ...and the larger one, growing by more than that, takes every
        // place before it adds new ones.
        for n in 4_000..6_000 {
            insert(&mut store, n, sized(n, 40));
        }
        let directory = &store.slots.directory.chunks;
        assert!(directory.iter().all(|chunk| !chunk.is_empty()));
        for n in (1..4_000).step_by(2).chain(4_000..6_000) {
            assert_eq!(get(&store, n), Some(Bytes::from(vec![n as u8; 40])));
        }
        assert_eq!(store.len(), 4_000);
    }

    #[test]
    fn churn_at_a_steady_size_keeps_the_store_small() {
        let mut store = EntryStore::new(Default::default());
        for n in 0..8_000 {
            insert(&mut store, n, small(n));
        }
        for n in 8_000..200_000u64 {
            remove(&mut store, n - 8_000).expect("present");
            insert(&mut store, n, small(n));
        }
        assert_eq!(store.len(), 8_000);
        let per_entry = store.memory_bytes() / store.len();
        // A 48-byte slot (header, 8-byte key, 12-byte value), an
        // index at least a quarter full, and no more than a tenth of slack.
        assert!(per_entry < 48 + 20 + 5, "{per_entry} bytes an entry");
    }
}
