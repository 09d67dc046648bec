//! What a key holds: a short string inline, a longer one as shared
//! `Bytes`, or a collection behind `Arc` (copy-on-write, so a snapshot
//! costs a reference count).

use std::sync::Arc;

use bytes::Bytes;

use super::KeyType;
use super::collections::{Growth, HashValue, ListValue, PinAccount, SetValue, make_unique};

/// Longest string a `Value` holds without an allocation: what fits beside
/// the tag in the 40 bytes a `Value` takes anyway.
pub(crate) const INLINE_VALUE_BYTES: usize = 38;

/// A value stored under a key. Collections sit behind `Arc` so a snapshot
/// costs a reference count.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// A string of up to [`INLINE_VALUE_BYTES`] bytes (counters, flags,
    /// short tokens) without an allocation: a short value on its way into
    /// a slot, which copies it, or spilled beside a key too long for one.
    InlineString {
        len: u8,
        bytes: [u8; INLINE_VALUE_BYTES],
    },
    /// A longer string, shared with the readers it is returned to. (An
    /// `Arc<[u8]>`, whose count sits beside the bytes, saves a reader one
    /// cache miss, but its 16-byte header pushes a power-of-two value into
    /// the allocator's next size class: up to a quarter more memory, which
    /// broke the storm test's bound.)
    String(Bytes),
    /// Field -> value map.
    Hash(Arc<HashValue>),
    /// Ordered values.
    List(Arc<ListValue>),
    /// Unique members.
    Set(Arc<SetValue>),
}

impl Value {
    /// A string value: inside the entry when short, else `bytes` itself.
    pub(crate) fn string(bytes: Bytes) -> Self {
        match u8::try_from(bytes.len()) {
            Ok(len) if bytes.len() <= INLINE_VALUE_BYTES => {
                let mut inline = [0; INLINE_VALUE_BYTES];
                inline[..bytes.len()].copy_from_slice(&bytes);
                Value::InlineString { len, bytes: inline }
            }
            _ => Value::String(bytes),
        }
    }

    /// The bytes of a string value; `None` for a collection.
    pub(crate) fn as_string(&self) -> Option<&[u8]> {
        match self {
            Value::InlineString { len, bytes } => Some(&bytes[..usize::from(*len)]),
            Value::String(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// A string value as [`Bytes`] for a reader: a copy of a short one, a
    /// shared reference to a long one; `None` for a collection.
    pub(crate) fn string_bytes(&self) -> Option<Bytes> {
        match self {
            Value::InlineString { len, bytes } => {
                Some(Bytes::copy_from_slice(&bytes[..usize::from(*len)]))
            }
            Value::String(bytes) => Some(bytes.clone()),
            _ => None,
        }
    }

    /// Makes a collection the only reference to its elements before a
    /// write changes it, so that readers' snapshots keep the version they
    /// took; a version left behind is charged to `pins`. Strings are
    /// never shared this way.
    pub(crate) fn make_unique(&mut self, pins: &PinAccount) {
        match self {
            Value::Hash(hash) => make_unique(hash, pins),
            Value::List(list) => make_unique(list, pins),
            Value::Set(set) => make_unique(set, pins),
            Value::InlineString { .. } | Value::String(_) => {}
        }
    }

    /// An empty collection of `key_type` (an empty string for strings).
    pub(crate) fn empty(key_type: KeyType) -> Self {
        match key_type {
            KeyType::String => Value::string(Bytes::new()),
            KeyType::Hash => Value::Hash(Arc::default()),
            KeyType::List => Value::List(Arc::default()),
            KeyType::Set => Value::Set(Arc::default()),
        }
    }

    pub(crate) fn key_type(&self) -> KeyType {
        match self {
            Value::InlineString { .. } | Value::String(_) => KeyType::String,
            Value::Hash(_) => KeyType::Hash,
            Value::List(_) => KeyType::List,
            Value::Set(_) => KeyType::Set,
        }
    }

    /// Bytes of payload the value holds (elements only).
    pub(crate) fn size(&self) -> usize {
        match self {
            Value::InlineString { len, .. } => usize::from(*len),
            Value::String(bytes) => bytes.len(),
            Value::Hash(hash) => hash.payload_bytes(),
            Value::List(list) => list.payload_bytes(),
            Value::Set(set) => set.payload_bytes(),
        }
    }

    /// Bytes the value holds on the heap: payload plus collection slots.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            // Inside the entry, which is charged on its own.
            Value::InlineString { .. } => 0,
            Value::String(bytes) => bytes.len(),
            Value::Hash(hash) => hash.heap_bytes(),
            Value::List(list) => list.heap_bytes(),
            Value::Set(set) => set.heap_bytes(),
        }
    }

    /// The most `growth` can add to a collection's bytes; 0 for a string.
    pub(crate) fn growth_bound(&self, growth: Growth) -> usize {
        match self {
            Value::InlineString { .. } | Value::String(_) => 0,
            Value::Hash(hash) => hash.growth_bound(growth),
            Value::List(list) => list.growth_bound(growth),
            Value::Set(set) => set.growth_bound(growth),
        }
    }

    /// Whether the value is an empty collection (which must disappear).
    pub(crate) fn is_empty_collection(&self) -> bool {
        match self {
            Value::InlineString { .. } | Value::String(_) => false,
            Value::Hash(hash) => hash.len() == 0,
            Value::List(list) => list.len() == 0,
            Value::Set(set) => set.len() == 0,
        }
    }
}
