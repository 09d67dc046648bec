//! How one entry is laid out in its slot: a 24-byte header, then the key
//! and the value packed behind it.
//!
//! A slot is a run of 8-byte words. Readers take the shard's shared lock
//! and still count a read in the header, so the words are atomics, loaded
//! and stored with relaxed ordering (plain moves on the hardware; the lock
//! orders writers against readers).
//!
//! | bytes  | what |
//! |--------|------|
//! | 0..6   | version (48 bits: a shard would need 2^48 writes to wrap) |
//! | 6      | key length, when the key is in the slot |
//! | 7      | flags: occupied, queue, where key and value live |
//! | 8..14  | deadline in Unix milliseconds, 0 for none (48 bits: year 10889) |
//! | 14     | reads since the eviction policy last looked, saturating |
//! | 15     | value length, when the value is in the slot |
//! | 16..20 | stamp of the entry's eviction-queue reference |
//! | 20..24 | unused, so that the payload starts on a word |
//! | 24..   | the key, then the value; or the key, then a 4-byte spill index |
//!
//! Starting the payload on a word costs no memory for the common sizes (a
//! 16-byte key with a 32-byte value fills 72 bytes either way) and lets a
//! key of 8 or 16 bytes be compared in whole words: with a 20-byte header
//! every comparison began and ended with a partial word.
//!
//! A key and string value of up to [`MAX_INLINE_BYTES`] together live in
//! the slot. Anything else (long strings, collections, long keys) lives in
//! the store's spill list, named by an index in the slot, so large values
//! stay shared with their readers instead of being copied.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;

use crate::KeyType;
use crate::eviction::QueueKind;
use crate::value::{INLINE_VALUE_BYTES, Value};

/// Bytes of the header before the payload.
pub(super) const HEADER_BYTES: usize = 24;
/// Words of the smallest slot: the header and at least one key byte.
pub(super) const MIN_WORDS: usize = HEADER_BYTES / 8 + 1;
/// Words of the largest slot.
pub(super) const MAX_WORDS: usize = 16;
/// Most key and value bytes kept inside a slot.
pub(crate) const MAX_INLINE_BYTES: usize = MAX_WORDS * 8 - HEADER_BYTES;
/// Bytes of a spill index in the payload.
const SPILL_INDEX_BYTES: usize = 4;

const LOW_48: u64 = (1 << 48) - 1;

/// The slot holds an entry (a zeroed slot is a hole).
const OCCUPIED: u8 = 1;
/// The entry's queue reference is in the small queue, not main.
const SMALL_QUEUE: u8 = 2;
/// Key and value are both in the spill list.
const SPILLED_KEY: u8 = 4;
/// The value is in the spill list; the key is in the slot.
const SPILLED_VALUE: u8 = 8;

/// What a slot does not hold itself.
#[derive(Debug)]
pub(crate) struct Spilled {
    /// The key, when too long for the slot.
    pub(super) key: Option<Box<[u8]>>,
    pub(super) value: Value,
}

impl Spilled {
    /// Bytes held on the heap beyond the spill list's own slot.
    pub(super) fn heap_bytes(&self) -> usize {
        self.key.as_ref().map_or(0, |key| key.len()) + self.value.heap_bytes()
    }
}

/// The fixed fields of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) version: u64,
    pub(crate) expires_at_ms: u64,
    pub(crate) queue_stamp: u32,
    pub(crate) queue: QueueKind,
    pub(crate) frequency: u8,
}

/// What [`EntryRef::read_string`] returns.
#[derive(Debug)]
pub(crate) struct StringRead {
    pub(crate) value: Bytes,
    pub(crate) version: u64,
    /// 0 when the key never expires.
    pub(crate) expires_at_ms: u64,
}

/// An entry ready to be written into a slot of [`Encoded::words`] words.
pub(super) struct Encoded {
    pub(super) buffer: [u64; MAX_WORDS],
    pub(super) words: usize,
    /// Byte offset of the spill index, when the entry spills.
    pub(super) spill_at: Option<usize>,
}

/// Where the key and value of a new entry go.
pub(super) enum Placement<'a> {
    /// Both in the slot.
    Inline { value: &'a [u8] },
    /// The key in the slot, the value spilled.
    SpillValue,
    /// Both spilled.
    SpillBoth,
}

/// Where `key` and `value` go: in the slot when they fit.
pub(super) fn placement<'a>(key: &[u8], value: &'a Value) -> Placement<'a> {
    if let Some(bytes) = value.as_string()
        && string_stored_inline(key.len(), bytes.len())
    {
        return Placement::Inline { value: bytes };
    }
    if key.len() + SPILL_INDEX_BYTES <= MAX_INLINE_BYTES {
        Placement::SpillValue
    } else {
        Placement::SpillBoth
    }
}

/// Whether a string of `value_len` bytes under a key of `key_len` bytes is
/// kept in the entry's slot (copied there) rather than beside it.
pub(crate) fn string_stored_inline(key_len: usize, value_len: usize) -> bool {
    key_len + value_len <= MAX_INLINE_BYTES && value_len <= usize::from(u8::MAX)
}

/// Bytes an entry for a key of `key_len` bytes holding a string of
/// `value_len` bytes (or, with `value_len` `None`, an empty collection)
/// takes in the store: its slot, and its spill-list slot with what that
/// holds. Writers ask before a write, to make room for it first.
pub(crate) fn entry_bytes(key_len: usize, value_len: Option<usize>) -> usize {
    let slot = |payload: usize| (HEADER_BYTES + payload).div_ceil(8).max(MIN_WORDS) * 8;
    // A spilled string short enough is kept inside its `Value`.
    let heap = value_len
        .filter(|len| *len > INLINE_VALUE_BYTES)
        .unwrap_or(0);
    let spilled = size_of::<Option<Spilled>>() + heap;
    match value_len {
        Some(len) if string_stored_inline(key_len, len) => slot(key_len + len),
        _ if key_len + SPILL_INDEX_BYTES <= MAX_INLINE_BYTES => {
            slot(key_len + SPILL_INDEX_BYTES) + spilled
        }
        _ => slot(SPILL_INDEX_BYTES) + spilled + key_len,
    }
}

/// Encodes an entry. The spill index is written later, at `spill_at`.
pub(super) fn encode(header: Header, key: &[u8], placement: &Placement<'_>) -> Encoded {
    let mut bytes = [0u8; MAX_WORDS * 8];
    let mut flags = OCCUPIED;
    if header.queue == QueueKind::Small {
        flags |= SMALL_QUEUE;
    }
    let (key_len, value_len, payload_len, spill_at) = match placement {
        Placement::Inline { value } => {
            let end = HEADER_BYTES + key.len();
            bytes[HEADER_BYTES..end].copy_from_slice(key);
            bytes[end..end + value.len()].copy_from_slice(value);
            (key.len(), value.len(), key.len() + value.len(), None)
        }
        Placement::SpillValue => {
            flags |= SPILLED_VALUE;
            bytes[HEADER_BYTES..HEADER_BYTES + key.len()].copy_from_slice(key);
            let at = HEADER_BYTES + key.len();
            (key.len(), 0, key.len() + SPILL_INDEX_BYTES, Some(at))
        }
        Placement::SpillBoth => {
            flags |= SPILLED_KEY;
            (0, 0, SPILL_INDEX_BYTES, Some(HEADER_BYTES))
        }
    };
    let word0 = (header.version & LOW_48) | (key_len as u64) << 48 | u64::from(flags) << 56;
    let word1 = (header.expires_at_ms & LOW_48)
        | u64::from(header.frequency) << 48
        | (value_len as u64) << 56;
    bytes[..8].copy_from_slice(&word0.to_le_bytes());
    bytes[8..16].copy_from_slice(&word1.to_le_bytes());
    bytes[16..20].copy_from_slice(&header.queue_stamp.to_le_bytes());
    let words = (HEADER_BYTES + payload_len).div_ceil(8).max(MIN_WORDS);
    let mut buffer = [0u64; MAX_WORDS];
    for (word, chunk) in buffer.iter_mut().zip(bytes.chunks_exact(8)) {
        *word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
    }
    Encoded {
        buffer,
        words,
        spill_at,
    }
}

/// Writes `index` into the four bytes at byte offset `at` of `slot`.
pub(super) fn write_spill_index(slot: &[AtomicU64], at: usize, index: u32) {
    for (n, byte) in index.to_le_bytes().into_iter().enumerate() {
        let position = at + n;
        let word = &slot[position / 8];
        let shift = (position % 8) * 8;
        let value = word.load(Relaxed) & !(0xFF << shift) | u64::from(byte) << shift;
        word.store(value, Relaxed);
    }
}

/// A read-only view of one occupied slot.
#[derive(Clone, Copy)]
pub(crate) struct EntryRef<'a> {
    slot: &'a [AtomicU64],
    spill: &'a [Option<Spilled>],
}

impl std::fmt::Debug for EntryRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryRef")
            .field("header", &self.header())
            .finish_non_exhaustive()
    }
}

impl<'a> EntryRef<'a> {
    #[inline]
    pub(super) fn new(slot: &'a [AtomicU64], spill: &'a [Option<Spilled>]) -> Self {
        Self { slot, spill }
    }

    #[inline]
    fn word(&self, n: usize) -> u64 {
        self.slot[n].load(Relaxed)
    }

    #[inline]
    fn flags(&self) -> u8 {
        (self.word(0) >> 56) as u8
    }

    #[inline]
    pub(super) fn is_occupied(&self) -> bool {
        self.flags() & OCCUPIED != 0
    }

    /// Version of the entry's last write.
    #[inline]
    pub(crate) fn version(&self) -> u64 {
        self.word(0) & LOW_48
    }

    /// Absolute deadline in Unix milliseconds; 0 when it never expires.
    #[inline]
    pub(crate) fn expires_at_ms(&self) -> u64 {
        self.word(1) & LOW_48
    }

    #[inline]
    pub(crate) fn is_expired(&self, now_ms: u64) -> bool {
        let deadline = self.expires_at_ms();
        deadline != 0 && deadline <= now_ms
    }

    /// Reads counted since the eviction policy last looked.
    #[inline]
    pub(crate) fn frequency(&self) -> u8 {
        (self.word(1) >> 48) as u8
    }

    /// Counts a read for the eviction policy, saturating at
    /// `max_frequency`. Two readers may count one read between them; the
    /// policy only needs an estimate.
    #[inline]
    pub(crate) fn touch(&self, max_frequency: u8) {
        let word = self.word(1);
        if ((word >> 48) as u8) < max_frequency {
            self.slot[1].store(word + (1 << 48), Relaxed);
        }
    }

    #[inline]
    pub(crate) fn queue_stamp(&self) -> u32 {
        self.word(2) as u32
    }

    #[inline]
    pub(crate) fn queue(&self) -> QueueKind {
        if self.flags() & SMALL_QUEUE != 0 {
            QueueKind::Small
        } else {
            QueueKind::Main
        }
    }

    #[inline]
    pub(crate) fn header(&self) -> Header {
        Header {
            version: self.version(),
            expires_at_ms: self.expires_at_ms(),
            queue_stamp: self.queue_stamp(),
            queue: self.queue(),
            frequency: self.frequency(),
        }
    }

    #[inline]
    fn key_len(&self) -> usize {
        usize::from((self.word(0) >> 48) as u8)
    }

    #[inline]
    fn value_len(&self) -> usize {
        usize::from((self.word(1) >> 56) as u8)
    }

    /// Runs `read` on `len` payload bytes from payload offset `from`. The
    /// words that hold them are copied whole (fixed 8-byte moves) into a
    /// buffer at their place in the slot, and `read` sees a slice of it: a
    /// copy piece by piece cost a library call per piece.
    #[inline]
    fn with_payload<R>(&self, from: usize, len: usize, read: impl FnOnce(&[u8]) -> R) -> R {
        let mut buffer = [0u8; MAX_WORDS * 8];
        let start = HEADER_BYTES + from;
        let end = (start + len).min(self.slot.len() * 8);
        for word in start / 8..end.div_ceil(8) {
            buffer[word * 8..word * 8 + 8].copy_from_slice(&self.word(word).to_le_bytes());
        }
        read(&buffer[start..end])
    }

    /// Whether the payload from offset `from` starts with `expected`,
    /// compared a word at a time without copying.
    #[inline]
    fn payload_starts_with(&self, from: usize, expected: &[u8]) -> bool {
        let mut position = HEADER_BYTES + from;
        let mut rest = expected;
        while !rest.is_empty() {
            let start = position % 8;
            let take = (8 - start).min(rest.len());
            let actual = self.word(position / 8) >> (start * 8);
            let (wanted, mask) = match rest.first_chunk::<8>() {
                Some(full) if take == 8 => (u64::from_le_bytes(*full), u64::MAX),
                _ => (little_endian(&rest[..take]), (1u64 << (take * 8)) - 1),
            };
            if actual & mask != wanted {
                return false;
            }
            position += take;
            rest = &rest[take..];
        }
        true
    }

    /// The spill index, for an entry that spills.
    #[inline]
    fn spill_index(&self) -> usize {
        let from = if self.flags() & SPILLED_KEY != 0 {
            0
        } else {
            self.key_len()
        };
        self.with_payload(from, SPILL_INDEX_BYTES, |bytes| {
            bytes
                .first_chunk::<SPILL_INDEX_BYTES>()
                .map_or(usize::MAX, |index| u32::from_le_bytes(*index) as usize)
        })
    }

    /// What the entry keeps in the spill list, if anything.
    #[inline]
    pub(super) fn spilled(&self) -> Option<&'a Spilled> {
        if self.flags() & (SPILLED_KEY | SPILLED_VALUE) == 0 {
            return None;
        }
        self.spill.get(self.spill_index())?.as_ref()
    }

    /// The spill index, when the entry spills.
    #[inline]
    pub(super) fn spill_slot(&self) -> Option<usize> {
        (self.flags() & (SPILLED_KEY | SPILLED_VALUE) != 0).then(|| self.spill_index())
    }

    /// The slot's words as written, to move the entry to another slot.
    #[inline]
    pub(super) fn raw(&self) -> Encoded {
        let mut buffer = [0u64; MAX_WORDS];
        for (word, slot) in buffer.iter_mut().zip(self.slot) {
            *word = slot.load(Relaxed);
        }
        let spill_at = self.spill_slot().map(|_| {
            HEADER_BYTES
                + if self.flags() & SPILLED_KEY != 0 {
                    0
                } else {
                    self.key_len()
                }
        });
        Encoded {
            buffer,
            words: self.slot.len(),
            spill_at,
        }
    }

    /// Runs `read` on the key's bytes.
    #[inline]
    pub(crate) fn with_key<R>(&self, read: impl FnOnce(&[u8]) -> R) -> R {
        if self.flags() & SPILLED_KEY != 0 {
            let key = self.spilled().and_then(|spilled| spilled.key.as_deref());
            return read(key.unwrap_or_default());
        }
        self.with_payload(0, self.key_len(), read)
    }

    /// Bytes the entry takes in the store (see [`entry_bytes`]).
    #[inline]
    pub(crate) fn stored_bytes(&self) -> usize {
        self.slot.len() * 8
            + self.spilled().map_or(0, |spilled| {
                size_of::<Option<Spilled>>() + spilled.heap_bytes()
            })
    }

    /// Whether the key is `key`.
    #[inline]
    pub(crate) fn key_is(&self, key: &[u8]) -> bool {
        let word0 = self.word(0);
        if (word0 >> 56) as u8 & SPILLED_KEY != 0 {
            return self.with_key(|stored| stored == key);
        }
        usize::from((word0 >> 48) as u8) == key.len() && self.payload_starts_with(0, key)
    }

    /// The value, when it lives in the spill list.
    #[inline]
    pub(crate) fn stored_value(&self) -> Option<&'a Value> {
        self.spilled().map(|spilled| &spilled.value)
    }

    #[inline]
    fn inline_value(&self) -> Option<(usize, usize)> {
        (self.flags() & (SPILLED_KEY | SPILLED_VALUE) == 0)
            .then(|| (self.key_len(), self.value_len()))
    }

    #[inline]
    pub(crate) fn key_type(&self) -> KeyType {
        self.stored_value().map_or(KeyType::String, Value::key_type)
    }

    /// Runs `read` on a string value's bytes; `None` for a collection.
    #[inline]
    pub(crate) fn with_string<R>(&self, read: impl FnOnce(&[u8]) -> R) -> Option<R> {
        if let Some((from, len)) = self.inline_value() {
            return Some(self.with_payload(from, len, read));
        }
        self.stored_value()?.as_string().map(read)
    }

    /// A string value with its version and deadline, each header word
    /// loaded once (a read asked for every field on its own reloaded them
    /// a dozen times); `None` for a collection.
    #[inline]
    pub(crate) fn read_string(&self) -> Option<StringRead> {
        let word0 = self.word(0);
        let word1 = self.word(1);
        let value = if (word0 >> 56) as u8 & (SPILLED_KEY | SPILLED_VALUE) == 0 {
            let key_len = usize::from((word0 >> 48) as u8);
            let value_len = usize::from((word1 >> 56) as u8);
            self.with_payload(key_len, value_len, Bytes::copy_from_slice)
        } else {
            self.stored_value()?.string_bytes()?
        };
        Some(StringRead {
            value,
            version: word0 & LOW_48,
            expires_at_ms: word1 & LOW_48,
        })
    }

    /// A string value as [`Bytes`] for a reader: a copy of one kept in the
    /// slot, a shared reference to a spilled one; `None` for a collection.
    #[inline]
    pub(crate) fn string_bytes(&self) -> Option<Bytes> {
        if let Some((from, len)) = self.inline_value() {
            return Some(self.with_payload(from, len, Bytes::copy_from_slice));
        }
        self.stored_value()?.string_bytes()
    }

    /// Bytes of payload the value holds (elements only).
    #[inline]
    pub(crate) fn value_size(&self) -> usize {
        match self.inline_value() {
            Some((_, len)) => len,
            None => self.stored_value().map_or(0, Value::size),
        }
    }

    /// Whether the value is an empty collection (which must disappear).
    #[inline]
    pub(crate) fn is_empty_collection(&self) -> bool {
        self.stored_value().is_some_and(Value::is_empty_collection)
    }
}

/// Up to seven bytes as a little-endian number, assembled in a register: a
/// copy into an 8-byte buffer was a library call, and reading the buffer
/// back stalled on that call's stores, for every key comparison.
#[inline]
fn little_endian(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0, |value, byte| value << 8 | u64::from(*byte))
}

/// Rewrites the header fields of an occupied slot, keeping key, value and
/// flags other than the queue.
pub(super) fn write_header(slot: &[AtomicU64], header: Header) {
    let word0 = slot[0].load(Relaxed);
    let mut flags = (word0 >> 56) as u8 & !SMALL_QUEUE;
    if header.queue == QueueKind::Small {
        flags |= SMALL_QUEUE;
    }
    let key_len = (word0 >> 48) & 0xFF;
    slot[0].store(
        (header.version & LOW_48) | key_len << 48 | u64::from(flags) << 56,
        Relaxed,
    );
    let value_len = slot[1].load(Relaxed) >> 56;
    slot[1].store(
        (header.expires_at_ms & LOW_48) | u64::from(header.frequency) << 48 | value_len << 56,
        Relaxed,
    );
    let word2 = slot[2].load(Relaxed);
    slot[2].store(
        (word2 & !u64::from(u32::MAX)) | u64::from(header.queue_stamp),
        Relaxed,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            version: (1 << 47) + 5,
            expires_at_ms: 1_700_000_000_123,
            queue_stamp: 0xDEAD_BEEF,
            queue: QueueKind::Small,
            frequency: 2,
        }
    }

    fn slot_of(encoded: &Encoded) -> Vec<AtomicU64> {
        encoded.buffer[..encoded.words]
            .iter()
            .map(|word| AtomicU64::new(*word))
            .collect()
    }

    #[test]
    fn a_short_key_and_value_share_one_slot() {
        let value = Value::string(Bytes::from_static(b"value of thirty-two bytes here!!"));
        let placement = placement(b"key:000000000001", &value);
        let encoded = encode(header(), b"key:000000000001", &placement);
        assert_eq!(
            encoded.words * 8,
            72,
            "20 + 16 + 32 bytes, rounded to words"
        );
        assert!(encoded.spill_at.is_none());
        let slot = slot_of(&encoded);
        let entry = EntryRef::new(&slot, &[]);
        assert!(entry.is_occupied());
        assert_eq!(entry.header(), header());
        assert!(entry.key_is(b"key:000000000001"));
        assert!(!entry.key_is(b"key:00000000000"));
        assert!(!entry.key_is(b"key:0000000000012"));
        assert_eq!(
            entry.string_bytes().as_deref(),
            Some(&b"value of thirty-two bytes here!!"[..])
        );
        assert_eq!(entry.value_size(), 32);
        assert_eq!(entry.key_type(), KeyType::String);
    }

    #[test]
    fn an_entry_takes_the_bytes_writers_make_room_for() {
        let spill = |value: Value| [Some(Spilled { key: None, value })];
        for (key_len, value_len) in [(16, 32), (1, 0), (100, 8), (8, 200), (8, 70_000)] {
            let key = vec![b'k'; key_len];
            let value = Value::string(Bytes::from(vec![b'v'; value_len]));
            let encoded = encode(header(), &key, &placement(&key, &value));
            let slot = slot_of(&encoded);
            if let Some(at) = encoded.spill_at {
                write_spill_index(&slot, at, 0);
            }
            let spilled = spill(value);
            let entry = EntryRef::new(&slot, &spilled);
            assert_eq!(
                entry.stored_bytes(),
                entry_bytes(key_len, Some(value_len)),
                "{key_len}-byte key, {value_len}-byte value"
            );
        }
    }

    #[test]
    fn header_fields_change_without_touching_the_payload() {
        let value = Value::string(Bytes::from_static(b"v"));
        let encoded = encode(header(), b"k", &placement(b"k", &value));
        let slot = slot_of(&encoded);
        let changed = Header {
            version: 9,
            expires_at_ms: 0,
            queue_stamp: 3,
            queue: QueueKind::Main,
            frequency: 0,
        };
        write_header(&slot, changed);
        let entry = EntryRef::new(&slot, &[]);
        assert_eq!(entry.header(), changed);
        assert!(entry.key_is(b"k"));
        assert_eq!(entry.string_bytes().as_deref(), Some(&b"v"[..]));
        entry.touch(3);
        entry.touch(3);
        entry.touch(3);
        entry.touch(3);
        assert_eq!(entry.frequency(), 3, "saturates");
    }

    #[test]
    fn what_does_not_fit_spills() {
        let long_value = Value::string(Bytes::from(vec![7u8; MAX_INLINE_BYTES]));
        assert!(matches!(
            placement(b"k", &long_value),
            Placement::SpillValue
        ));
        let long_key = vec![b'k'; MAX_INLINE_BYTES];
        let short = Value::string(Bytes::from_static(b"v"));
        assert!(matches!(placement(&long_key, &short), Placement::SpillBoth));
        let fits = vec![b'k'; MAX_INLINE_BYTES - 1];
        assert!(matches!(placement(&fits, &short), Placement::Inline { .. }));

        let encoded = encode(header(), b"key", &placement(b"key", &long_value));
        let slot = slot_of(&encoded);
        write_spill_index(&slot, encoded.spill_at.expect("spills"), 1);
        let spill = [
            None,
            Some(Spilled {
                key: None,
                value: long_value,
            }),
        ];
        let entry = EntryRef::new(&slot, &spill);
        assert!(entry.key_is(b"key"));
        assert_eq!(entry.value_size(), MAX_INLINE_BYTES);
        assert_eq!(entry.spill_slot(), Some(1));

        let encoded = encode(header(), &long_key, &Placement::SpillBoth);
        let slot = slot_of(&encoded);
        write_spill_index(&slot, encoded.spill_at.expect("spills"), 0);
        let spill = [Some(Spilled {
            key: Some(long_key.clone().into()),
            value: short,
        })];
        let entry = EntryRef::new(&slot, &spill);
        assert!(entry.key_is(&long_key));
        assert!(!entry.key_is(b"k"));
        assert_eq!(entry.string_bytes().as_deref(), Some(&b"v"[..]));
    }
}
