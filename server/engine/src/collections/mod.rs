//! Hashes, lists and sets: their values (the commands that work on them
//! are in the namespace's `hashes`, `lists` and `sets`).
//!
//! Each value keeps a running count of the bytes its elements hold, so the
//! memory figure of a shard is updated in O(1) per command. Values live
//! behind `Arc` in the table: a streaming read takes a cheap snapshot and
//! walks it after the shard lock is released, and a write that finds the
//! value shared copies it first (`Arc::make_mut`).

mod left_behind;

use std::collections::VecDeque;

use bytes::Bytes;
use indexmap::{IndexMap, IndexSet};

pub(crate) use left_behind::{LeftBehind, PinAccount, Versioned, make_unique};

/// Hasher of the element tables.
type ElementHasher = foldhash::fast::RandomState;

/// Estimated bytes per hash entry: the entry (hash and two `Bytes`) and its index slot.
const HASH_SLOT_BYTES: usize = 2 * size_of::<Bytes>() + 8 + size_of::<usize>() + 1;
/// Estimated bytes per set member: the entry (hash + `Bytes`) and its index slot.
const SET_SLOT_BYTES: usize = size_of::<Bytes>() + 8 + size_of::<usize>() + 1;
/// Bytes per list slot.
const LIST_SLOT_BYTES: usize = size_of::<Bytes>();

/// What a write may add to a collection: how many elements, and their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Growth {
    pub(crate) elements: usize,
    pub(crate) payload: usize,
}

impl Growth {
    /// A write that only removes or reorders.
    pub(crate) const NONE: Growth = Growth {
        elements: 0,
        payload: 0,
    };

    /// The most a collection of `len` elements in a table of `capacity`
    /// slots of `slot_bytes` can grow by: the new elements' bytes, and the
    /// table doubling if they do not fit.
    fn bound(self, len: usize, capacity: usize, slot_bytes: usize) -> usize {
        let needed = len + self.elements;
        let new_capacity = if needed > capacity {
            needed.max(capacity * 2)
        } else {
            capacity
        };
        self.payload + (new_capacity - capacity) * slot_bytes
    }
}

/// A hash: field -> value. Entries sit in indexed slots, so a chunked read
/// can resume at a position.
#[derive(Debug, Clone, Default)]
pub(crate) struct HashValue {
    pub(crate) map: IndexMap<Bytes, Bytes, ElementHasher>,
    /// Bytes of every field and value.
    bytes: usize,
    left_behind: LeftBehind,
}

impl HashValue {
    /// Sets `field`; returns whether it is new.
    pub(crate) fn insert(&mut self, field: Bytes, value: Bytes) -> bool {
        self.bytes += field.len() + value.len();
        match self.map.insert(field.clone(), value) {
            Some(old) => {
                self.bytes -= field.len() + old.len();
                false
            }
            None => true,
        }
    }

    /// Removes `field`; returns whether it existed.
    pub(crate) fn remove(&mut self, field: &[u8]) -> bool {
        match self.map.swap_remove_entry(field) {
            Some((field, value)) => {
                self.bytes -= field.len() + value.len();
                true
            }
            None => false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn payload_bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes + self.map.capacity() * HASH_SLOT_BYTES
    }

    /// The most `growth` can add to [`HashValue::heap_bytes`].
    pub(crate) fn growth_bound(&self, growth: Growth) -> usize {
        growth.bound(self.map.len(), self.map.capacity(), HASH_SLOT_BYTES)
    }
}

/// A list.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListValue {
    pub(crate) items: VecDeque<Bytes>,
    /// Bytes of every element.
    bytes: usize,
    left_behind: LeftBehind,
}

impl ListValue {
    pub(crate) fn push(&mut self, value: Bytes, front: bool) {
        self.bytes += value.len();
        if front {
            self.items.push_front(value);
        } else {
            self.items.push_back(value);
        }
    }

    pub(crate) fn pop(&mut self, front: bool) -> Option<Bytes> {
        let value = if front {
            self.items.pop_front()
        } else {
            self.items.pop_back()
        }?;
        self.bytes -= value.len();
        Some(value)
    }

    /// Replaces the element at `index` (which must be in range).
    pub(crate) fn replace(&mut self, index: usize, value: Bytes) {
        if let Some(slot) = self.items.get_mut(index) {
            self.bytes = self.bytes + value.len() - slot.len();
            *slot = value;
        }
    }

    /// Keeps only `start..end` (which must be within the list).
    pub(crate) fn keep(&mut self, start: usize, end: usize) {
        self.items.truncate(end);
        self.items.drain(..start);
        self.bytes = self.items.iter().map(Bytes::len).sum();
        self.shrink_if_sparse();
    }

    /// Removes up to `count` occurrences of `value` (0 = all), from the head
    /// or from the tail; returns how many were removed.
    pub(crate) fn remove_occurrences(
        &mut self,
        value: &[u8],
        count: usize,
        from_tail: bool,
    ) -> usize {
        let limit = if count == 0 { usize::MAX } else { count };
        let mut removed = 0;
        let mut keep = |item: &Bytes| {
            if removed < limit && item == value {
                removed += 1;
                false
            } else {
                true
            }
        };
        if from_tail {
            let mut reversed: VecDeque<Bytes> = self
                .items
                .drain(..)
                .rev()
                .filter(|item| keep(item))
                .collect();
            reversed.make_contiguous().reverse();
            self.items = reversed;
        } else {
            self.items.retain(|item| keep(item));
        }
        self.bytes -= removed * value.len();
        self.shrink_if_sparse();
        removed
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn payload_bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes + self.items.capacity() * LIST_SLOT_BYTES
    }

    /// The most `growth` can add to [`ListValue::heap_bytes`].
    pub(crate) fn growth_bound(&self, growth: Growth) -> usize {
        growth.bound(self.items.len(), self.items.capacity(), LIST_SLOT_BYTES)
    }

    fn shrink_if_sparse(&mut self) {
        if self.items.capacity() > 64 && self.items.len() * 4 < self.items.capacity() {
            self.items.shrink_to(self.items.len() * 2);
        }
    }
}

/// A set. Members sit in insertion-ordered slots so that a random member is
/// one index away (SPOP, SRANDMEMBER) instead of a walk over the table.
#[derive(Debug, Clone, Default)]
pub(crate) struct SetValue {
    pub(crate) members: IndexSet<Bytes, ElementHasher>,
    /// Bytes of every member.
    bytes: usize,
    left_behind: LeftBehind,
}

impl SetValue {
    /// Adds `member`; returns whether it is new.
    pub(crate) fn insert(&mut self, member: Bytes) -> bool {
        let len = member.len();
        let added = self.members.insert(member);
        if added {
            self.bytes += len;
        }
        added
    }

    /// Removes `member`; returns whether it existed.
    pub(crate) fn remove(&mut self, member: &[u8]) -> bool {
        let removed = self.members.swap_remove(member);
        if removed {
            self.bytes -= member.len();
        }
        removed
    }

    /// Removes and returns the member at `index`.
    pub(crate) fn remove_at(&mut self, index: usize) -> Option<Bytes> {
        let member = self.members.swap_remove_index(index)?;
        self.bytes -= member.len();
        Some(member)
    }

    pub(crate) fn contains(&self, member: &[u8]) -> bool {
        self.members.contains(member)
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn payload_bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes + self.members.capacity() * SET_SLOT_BYTES
    }

    /// The most `growth` can add to [`SetValue::heap_bytes`].
    pub(crate) fn growth_bound(&self, growth: Growth) -> usize {
        growth.bound(self.members.len(), self.members.capacity(), SET_SLOT_BYTES)
    }
}

macro_rules! versioned {
    ($($value:ty),*) => {$(
        impl Versioned for $value {
            fn left_behind(&self) -> &LeftBehind {
                &self.left_behind
            }

            fn heap_bytes(&self) -> usize {
                <$value>::heap_bytes(self)
            }
        }
    )*};
}

versioned!(HashValue, ListValue, SetValue);

/// Resolves a Redis index (negative counts from the end) against `len`.
pub(crate) fn resolve_index(index: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let resolved = if index < 0 { len + index } else { index };
    (0..len).contains(&resolved).then_some(resolved as usize)
}

/// Resolves an inclusive Redis range (`LRANGE`, `LTRIM`) against `len` into
/// a half-open `start..end`, empty when the range selects nothing.
pub(crate) fn resolve_range(start: i64, stop: i64, len: usize) -> std::ops::Range<usize> {
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    let start = if start < 0 {
        (len_i + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len_i + stop
    } else {
        stop.min(len_i - 1)
    };
    if start > stop || start >= len_i {
        return 0..0;
    }
    start as usize..stop as usize + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_redis_rules() {
        assert_eq!(resolve_range(0, -1, 5), 0..5);
        assert_eq!(resolve_range(-100, -1, 5), 0..5);
        assert_eq!(resolve_range(1, 2, 5), 1..3);
        assert_eq!(resolve_range(3, 100, 5), 3..5);
        assert_eq!(resolve_range(4, 2, 5), 0..0);
        assert_eq!(resolve_range(5, 10, 5), 0..0);
        assert_eq!(resolve_range(-2, -3, 5), 0..0);
        assert_eq!(resolve_range(0, -1, 0), 0..0);
        assert_eq!(resolve_range(0, -6, 5), 0..0);
        assert_eq!(resolve_index(-1, 3), Some(2));
        assert_eq!(resolve_index(3, 3), None);
        assert_eq!(resolve_index(-4, 3), None);
    }

    #[test]
    fn byte_counts_follow_every_change() {
        let mut hash = HashValue::default();
        assert!(hash.insert(Bytes::from_static(b"f"), Bytes::from_static(b"abc")));
        assert!(!hash.insert(Bytes::from_static(b"f"), Bytes::from_static(b"ab")));
        assert_eq!(hash.payload_bytes(), 3);
        assert!(hash.remove(b"f"));
        assert_eq!(hash.payload_bytes(), 0);

        let mut list = ListValue::default();
        for item in ["a", "bb", "a", "ccc", "a"] {
            list.push(Bytes::copy_from_slice(item.as_bytes()), false);
        }
        assert_eq!(list.remove_occurrences(b"a", 2, true), 2);
        let items: Vec<_> = list.items.iter().cloned().collect();
        assert_eq!(
            items,
            ["a", "bb", "ccc"].map(|s| Bytes::copy_from_slice(s.as_bytes()))
        );
        assert_eq!(list.payload_bytes(), 6);
        list.keep(1, 2);
        assert_eq!(list.payload_bytes(), 2);

        let mut set = SetValue::default();
        assert!(set.insert(Bytes::from_static(b"x")));
        assert!(!set.insert(Bytes::from_static(b"x")));
        assert_eq!(set.payload_bytes(), 1);
        assert_eq!(set.remove_at(0), Some(Bytes::from_static(b"x")));
        assert_eq!(set.payload_bytes(), 0);
    }
}
