//! The key of an entry taken out of a shard, kept until its removal has
//! been announced to the change feed.
//!
//! Inside the shard a key is packed into its entry's slot (see
//! `entry_store`); once the entry is removed its key must outlive the slot.
//! Evictions and expirations remove entries by the thousand, so a
//! [`StoredKey`] keeps keys of up to [`INLINE_KEY_BYTES`] bytes without an
//! allocation, and only longer keys go to the heap.

use std::fmt;

use bytes::Bytes;

/// Longest key kept without an allocation.
pub(crate) const INLINE_KEY_BYTES: usize = 22;

/// A key taken out of an entry.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum StoredKey {
    /// The first `len` bytes of `bytes`.
    Inline {
        len: u8,
        bytes: [u8; INLINE_KEY_BYTES],
    },
    /// A longer key, in an allocation of exactly its size.
    Heap(Box<[u8]>),
}

impl StoredKey {
    /// A copy of `key`.
    pub(crate) fn new(key: &[u8]) -> Self {
        match u8::try_from(key.len()) {
            Ok(len) if key.len() <= INLINE_KEY_BYTES => {
                let mut bytes = [0; INLINE_KEY_BYTES];
                bytes[..key.len()].copy_from_slice(key);
                Self::Inline { len, bytes }
            }
            _ => Self::Heap(key.into()),
        }
    }

    /// The key's bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(bytes) => bytes,
        }
    }
}

impl std::ops::Deref for StoredKey {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq<[u8]> for StoredKey {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<&[u8]> for StoredKey {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_slice() == *other
    }
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&Bytes::copy_from_slice(self.as_slice()), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_need_no_allocation_and_long_ones_go_to_the_heap() {
        assert_eq!(size_of::<StoredKey>(), 24);
        for len in [0, 1, 16, INLINE_KEY_BYTES, INLINE_KEY_BYTES + 1, 200] {
            let key: Vec<u8> = (0..len).map(|n| n as u8).collect();
            let stored = StoredKey::new(&key);
            assert_eq!(stored.as_slice(), &key[..]);
            assert!(stored == key[..]);
            let inline = len <= INLINE_KEY_BYTES;
            assert_eq!(matches!(stored, StoredKey::Inline { .. }), inline);
        }
    }

    #[test]
    fn keys_that_differ_only_in_length_differ() {
        assert!(StoredKey::new(b"ab") != StoredKey::new(b"ab\0"));
        assert!(StoredKey::new(b"ab") != b"ab\0"[..]);
    }
}
