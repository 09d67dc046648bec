//! Keys as entries store them: short keys inside the entry itself.
//!
//! Most cache keys are short (`user:1234`, `session:8f3a…`). Storing each
//! in an allocation of its own costs the allocation (malloc's header and
//! rounding, a pointer and length in the entry) and, on every lookup, a
//! cache miss to compare it: the table slot, then the key somewhere else on
//! the heap. A [`StoredKey`] keeps keys of up to [`INLINE_KEY_BYTES`] bytes
//! in the 24 bytes the entry spends on the key anyway, so the comparison
//! reads the line the lookup already brought in, and only longer keys go to
//! the heap.

use std::fmt;

use bytes::Bytes;

/// Longest key kept inside the entry.
pub(crate) const INLINE_KEY_BYTES: usize = 22;

/// A key owned by an entry.
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
    /// A stored copy of `key`, so a stored key never pins a larger request
    /// buffer.
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

    /// Bytes this key holds outside the entry.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Self::Inline { .. } => 0,
            Self::Heap(bytes) => bytes.len(),
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
    fn short_keys_live_in_the_entry_and_long_ones_on_the_heap() {
        assert_eq!(size_of::<StoredKey>(), 24);
        for len in [0, 1, 16, INLINE_KEY_BYTES, INLINE_KEY_BYTES + 1, 200] {
            let key: Vec<u8> = (0..len).map(|n| n as u8).collect();
            let stored = StoredKey::new(&key);
            assert_eq!(stored.as_slice(), &key[..]);
            assert!(stored == key[..]);
            let inline = len <= INLINE_KEY_BYTES;
            assert_eq!(matches!(stored, StoredKey::Inline { .. }), inline);
            assert_eq!(stored.heap_bytes(), if inline { 0 } else { len });
        }
    }

    #[test]
    fn keys_that_differ_only_in_length_differ() {
        assert!(StoredKey::new(b"ab") != StoredKey::new(b"ab\0"));
        assert!(StoredKey::new(b"ab") != b"ab\0"[..]);
    }
}
