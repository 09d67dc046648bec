//! The encoding of records inside frames: a compact binary layout of the
//! engine's change records, snapshot entries and the manifest.
//!
//! Hand-rolled rather than prost: the layout is private to the data
//! directory (no other program reads it), versioned as a whole by the file
//! header, and read back at start-up by the million, where decoding into
//! slices of one buffer (no allocation per value) and no intermediate
//! message type is what keeps a warm restart short. Every payload starts
//! with a tag byte naming the record, so a later version can add records;
//! integers are LEB128 varints, byte strings a varint length and the bytes.
//!
//! ```text
//! change    1 | namespace | shard | sequence | key | kind ...
//!   kind    1 Set expires_at value | 2 ExpiryChanged expires_at
//!           3 Collection expires_at change | 4 Deleted | 5 Expired | 6 Evicted
//!   change  1 HashSet n (field value)*n | 2 HashDeleted n field*n
//!           3 ListPushed front n value*n | 4 ListPopped front count
//!           5 ListSet index value | 6 ListTrimmed start end
//!           7 ListRemoved zigzag(count) value | 8 SetAdded n member*n
//!           9 SetRemoved n member*n
//! flush     2 | namespace | removed
//! shard     16 | namespace | shard | shard_sequence     (snapshot)
//! entry     17 | key | expires_at | version | type value (snapshot)
//!   type    1 string bytes | 2 hash n (field value)*n | 3 list n item*n
//!           4 set n member*n
//! end       18 | entries                                 (snapshot)
//! keys      19 | namespace | keys        (snapshot format 2 on, a hint)
//! manifest  32 | snapshot (empty for none) | first_segment
//! ```

use std::sync::Arc;

use bytes::Bytes;

use crate::engine::{
    ChangeKind, ChangeRecord, CollectionChange, FlushRecord, HashSnapshot, ListSnapshot,
    SetSnapshot, SnapshotEntry, SnapshotValue,
};

/// A record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRecord {
    /// One key changed.
    Change(ChangeRecord),
    /// A namespace was flushed.
    Flush(FlushRecord),
}

/// A record of a snapshot file.
#[derive(Debug, Clone)]
pub enum SnapshotRecord {
    /// About this many keys of this namespace follow, in its shard
    /// records (snapshot format 2 on; a hint for sizing tables).
    Namespace {
        /// The namespace.
        namespace: Arc<str>,
        /// Its key count when the snapshot began reading it.
        keys: u64,
    },
    /// The entries that follow, up to the next `Shard`, are of this shard,
    /// read when its sequence was `shard_sequence`.
    Shard {
        /// The namespace.
        namespace: Arc<str>,
        /// The shard's index in the engine that wrote the snapshot.
        shard: u32,
        /// Its sequence when its reading began.
        shard_sequence: u64,
    },
    /// One key of the current shard.
    Entry(SnapshotEntry),
    /// The snapshot is complete and holds this many entries.
    End {
        /// Entries written.
        entries: u64,
    },
}

/// The manifest's content: which files hold the state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// The snapshot file to load first, if any.
    pub snapshot: Option<String>,
    /// The first log segment to replay after it; older ones are covered.
    pub first_segment: u64,
}

const CHANGE: u8 = 1;
const FLUSH: u8 = 2;
const SHARD: u8 = 16;
const ENTRY: u8 = 17;
const END: u8 = 18;
const NAMESPACE: u8 = 19;
const MANIFEST: u8 = 32;

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_list<'a>(out: &mut Vec<u8>, items: impl ExactSizeIterator<Item = &'a Bytes>) {
    put_varint(out, items.len() as u64);
    for item in items {
        put_bytes(out, item);
    }
}

fn put_pairs<'a>(out: &mut Vec<u8>, pairs: impl ExactSizeIterator<Item = (&'a Bytes, &'a Bytes)>) {
    put_varint(out, pairs.len() as u64);
    for (field, value) in pairs {
        put_bytes(out, field);
        put_bytes(out, value);
    }
}

impl LogRecord {
    /// Appends the record's payload to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            LogRecord::Change(change) => encode_change(change, out),
            LogRecord::Flush(flush) => encode_flush(flush, out),
        }
    }

    /// Decodes a payload.
    ///
    /// # Errors
    /// What is wrong with it, for a corruption report.
    pub fn decode(payload: Bytes) -> Result<Self, String> {
        Self::decode_with(payload, &mut NameCache::default())
    }

    /// Decodes a payload, taking its namespace's name from `names` when it
    /// is the one the previous record named: a log holds runs of records
    /// of one namespace, and a replay of millions of them should not
    /// allocate a name for each.
    ///
    /// # Errors
    /// What is wrong with it, for a corruption report.
    pub fn decode_with(payload: Bytes, names: &mut NameCache) -> Result<Self, String> {
        let mut input = Decoder::new(payload);
        let record = match input.u8()? {
            CHANGE => LogRecord::Change(input.change(names)?),
            FLUSH => LogRecord::Flush(FlushRecord {
                namespace: input.cached_name(names)?,
                removed: input.varint()?,
            }),
            tag => return Err(format!("unknown log record tag {tag}")),
        };
        input.finish()?;
        Ok(record)
    }
}

/// Appends the payload of a change record; what the log's sink calls, so
/// a record is encoded straight into the log's buffer.
pub fn encode_change(change: &ChangeRecord, out: &mut Vec<u8>) {
    out.push(CHANGE);
    put_bytes(out, change.namespace.as_bytes());
    put_varint(out, u64::from(change.shard));
    put_varint(out, change.sequence);
    put_bytes(out, &change.key);
    match &change.kind {
        ChangeKind::Set {
            value,
            expires_at_ms,
        } => {
            out.push(1);
            put_varint(out, *expires_at_ms);
            put_bytes(out, value);
        }
        ChangeKind::ExpiryChanged { expires_at_ms } => {
            out.push(2);
            put_varint(out, *expires_at_ms);
        }
        ChangeKind::Collection {
            change,
            expires_at_ms,
        } => {
            out.push(3);
            put_varint(out, *expires_at_ms);
            encode_collection_change(change, out);
        }
        ChangeKind::Deleted => out.push(4),
        ChangeKind::Expired => out.push(5),
        ChangeKind::Evicted => out.push(6),
    }
}

/// Appends the payload of a flush record.
pub fn encode_flush(flush: &FlushRecord, out: &mut Vec<u8>) {
    out.push(FLUSH);
    put_bytes(out, flush.namespace.as_bytes());
    put_varint(out, flush.removed);
}

fn encode_collection_change(change: &CollectionChange, out: &mut Vec<u8>) {
    match change {
        CollectionChange::HashSet { fields } => {
            out.push(1);
            put_pairs(out, fields.iter().map(|(f, v)| (f, v)));
        }
        CollectionChange::HashDeleted { fields } => {
            out.push(2);
            put_list(out, fields.iter());
        }
        CollectionChange::ListPushed { front, values } => {
            out.push(3);
            out.push(u8::from(*front));
            put_list(out, values.iter());
        }
        CollectionChange::ListPopped { front, count } => {
            out.push(4);
            out.push(u8::from(*front));
            put_varint(out, *count);
        }
        CollectionChange::ListSet { index, value } => {
            out.push(5);
            put_varint(out, *index);
            put_bytes(out, value);
        }
        CollectionChange::ListTrimmed { start, end } => {
            out.push(6);
            put_varint(out, *start);
            put_varint(out, *end);
        }
        CollectionChange::ListRemoved { count, value } => {
            out.push(7);
            put_varint(out, ((*count << 1) ^ (*count >> 63)) as u64);
            put_bytes(out, value);
        }
        CollectionChange::SetAdded { members } => {
            out.push(8);
            put_list(out, members.iter());
        }
        CollectionChange::SetRemoved { members } => {
            out.push(9);
            put_list(out, members.iter());
        }
    }
}

impl SnapshotRecord {
    /// Appends the record's payload to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            SnapshotRecord::Namespace { namespace, keys } => {
                out.push(NAMESPACE);
                put_bytes(out, namespace.as_bytes());
                put_varint(out, *keys);
            }
            SnapshotRecord::Shard {
                namespace,
                shard,
                shard_sequence,
            } => {
                out.push(SHARD);
                put_bytes(out, namespace.as_bytes());
                put_varint(out, u64::from(*shard));
                put_varint(out, *shard_sequence);
            }
            SnapshotRecord::Entry(entry) => encode_entry(entry, out),
            SnapshotRecord::End { entries } => {
                out.push(END);
                put_varint(out, *entries);
            }
        }
    }

    /// Decodes a payload.
    ///
    /// # Errors
    /// What is wrong with it, for a corruption report.
    pub fn decode(payload: Bytes) -> Result<Self, String> {
        let mut input = Decoder::new(payload);
        let record = match input.u8()? {
            SHARD => SnapshotRecord::Shard {
                namespace: input.name()?,
                shard: input.u32()?,
                shard_sequence: input.varint()?,
            },
            ENTRY => SnapshotRecord::Entry(input.entry()?),
            END => SnapshotRecord::End {
                entries: input.varint()?,
            },
            NAMESPACE => SnapshotRecord::Namespace {
                namespace: input.name()?,
                keys: input.varint()?,
            },
            tag => return Err(format!("unknown snapshot record tag {tag}")),
        };
        input.finish()?;
        Ok(record)
    }
}

/// Whether `payload` is a snapshot entry's, by its tag alone: the records
/// a restore hands to its restoring threads undecoded.
pub fn is_snapshot_entry(payload: &[u8]) -> bool {
    payload.first() == Some(&ENTRY)
}

/// Appends the payload of a snapshot entry, reading a collection straight
/// from its copy-on-write snapshot.
pub fn encode_entry(entry: &SnapshotEntry, out: &mut Vec<u8>) {
    out.push(ENTRY);
    put_bytes(out, &entry.key);
    put_varint(out, entry.expires_at_ms);
    put_varint(out, entry.version);
    match &entry.value {
        SnapshotValue::String(bytes) => {
            out.push(1);
            put_bytes(out, bytes);
        }
        SnapshotValue::Hash(hash) => {
            out.push(2);
            put_varint(out, hash.len() as u64);
            for (field, value) in hash.iter() {
                put_bytes(out, field);
                put_bytes(out, value);
            }
        }
        SnapshotValue::List(list) => {
            out.push(3);
            put_varint(out, list.len() as u64);
            for item in list.range(0, -1) {
                put_bytes(out, item);
            }
        }
        SnapshotValue::Set(set) => {
            out.push(4);
            put_varint(out, set.len() as u64);
            for member in set.iter() {
                put_bytes(out, member);
            }
        }
    }
}

impl Manifest {
    /// Appends the manifest's payload to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(MANIFEST);
        put_bytes(out, self.snapshot.as_deref().unwrap_or("").as_bytes());
        put_varint(out, self.first_segment);
    }

    /// Decodes a payload.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn decode(payload: Bytes) -> Result<Self, String> {
        let mut input = Decoder::new(payload);
        match input.u8()? {
            MANIFEST => {}
            tag => return Err(format!("unknown manifest record tag {tag}")),
        }
        let snapshot = input.name()?;
        let manifest = Manifest {
            snapshot: (!snapshot.is_empty()).then(|| snapshot.to_string()),
            first_segment: input.varint()?,
        };
        input.finish()?;
        Ok(manifest)
    }
}

/// The namespace name the last decoded record named, for
/// [`LogRecord::decode_with`].
#[derive(Debug, Default)]
pub struct NameCache(Option<Arc<str>>);

/// Reads a payload; byte strings are slices of it, not copies.
struct Decoder {
    input: Bytes,
    at: usize,
}

impl Decoder {
    fn new(input: Bytes) -> Self {
        Self { input, at: 0 }
    }

    fn u8(&mut self) -> Result<u8, String> {
        let byte = *self
            .input
            .get(self.at)
            .ok_or_else(|| format!("record ends at byte {} inside a field", self.at))?;
        self.at += 1;
        Ok(byte)
    }

    fn bool(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("{other} is not a boolean")),
        }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err("varint overflows 64 bits".into());
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn u32(&mut self) -> Result<u32, String> {
        let value = self.varint()?;
        u32::try_from(value).map_err(|_| format!("{value} does not fit 32 bits"))
    }

    /// A count of items, each at least one byte, so that a damaged count
    /// cannot make the decoder reserve more than the payload holds.
    fn count(&mut self) -> Result<usize, String> {
        let count = self.varint()?;
        let left = (self.input.len() - self.at) as u64;
        if count > left {
            return Err(format!("count {count} exceeds the {left} bytes left"));
        }
        Ok(count as usize)
    }

    fn bytes(&mut self) -> Result<Bytes, String> {
        let len = self.varint()?;
        let left = (self.input.len() - self.at) as u64;
        if len > left {
            return Err(format!("length {len} exceeds the {left} bytes left"));
        }
        let start = self.at;
        self.at += len as usize;
        Ok(self.input.slice(start..self.at))
    }

    fn name(&mut self) -> Result<Arc<str>, String> {
        let bytes = self.bytes()?;
        std::str::from_utf8(&bytes)
            .map(Arc::from)
            .map_err(|_| "namespace is not UTF-8".to_string())
    }

    /// As [`Decoder::name`], reusing the cached name when it is the same.
    fn cached_name(&mut self, names: &mut NameCache) -> Result<Arc<str>, String> {
        let len = self.varint()?;
        let left = (self.input.len() - self.at) as u64;
        if len > left {
            return Err(format!("length {len} exceeds the {left} bytes left"));
        }
        let bytes = &self.input[self.at..self.at + len as usize];
        self.at += len as usize;
        if let Some(name) = &names.0
            && name.as_bytes() == bytes
        {
            return Ok(Arc::clone(name));
        }
        let name: Arc<str> = std::str::from_utf8(bytes)
            .map(Arc::from)
            .map_err(|_| "namespace is not UTF-8".to_string())?;
        names.0 = Some(Arc::clone(&name));
        Ok(name)
    }

    fn list(&mut self) -> Result<Vec<Bytes>, String> {
        let count = self.count()?;
        (0..count).map(|_| self.bytes()).collect()
    }

    fn pairs(&mut self) -> Result<Vec<(Bytes, Bytes)>, String> {
        let count = self.count()?;
        (0..count)
            .map(|_| Ok((self.bytes()?, self.bytes()?)))
            .collect()
    }

    fn finish(&self) -> Result<(), String> {
        if self.at != self.input.len() {
            return Err(format!(
                "{} bytes left after the record",
                self.input.len() - self.at
            ));
        }
        Ok(())
    }

    fn change(&mut self, names: &mut NameCache) -> Result<ChangeRecord, String> {
        let namespace = self.cached_name(names)?;
        let shard = self.u32()?;
        let sequence = self.varint()?;
        let key = self.bytes()?;
        let kind = match self.u8()? {
            1 => {
                let expires_at_ms = self.varint()?;
                ChangeKind::Set {
                    value: self.bytes()?,
                    expires_at_ms,
                }
            }
            2 => ChangeKind::ExpiryChanged {
                expires_at_ms: self.varint()?,
            },
            3 => {
                let expires_at_ms = self.varint()?;
                ChangeKind::Collection {
                    change: self.collection_change()?,
                    expires_at_ms,
                }
            }
            4 => ChangeKind::Deleted,
            5 => ChangeKind::Expired,
            6 => ChangeKind::Evicted,
            tag => return Err(format!("unknown change kind {tag}")),
        };
        Ok(ChangeRecord {
            namespace,
            shard,
            sequence,
            key,
            kind,
        })
    }

    fn collection_change(&mut self) -> Result<CollectionChange, String> {
        Ok(match self.u8()? {
            1 => CollectionChange::HashSet {
                fields: self.pairs()?,
            },
            2 => CollectionChange::HashDeleted {
                fields: self.list()?,
            },
            3 => CollectionChange::ListPushed {
                front: self.bool()?,
                values: self.list()?,
            },
            4 => CollectionChange::ListPopped {
                front: self.bool()?,
                count: self.varint()?,
            },
            5 => CollectionChange::ListSet {
                index: self.varint()?,
                value: self.bytes()?,
            },
            6 => CollectionChange::ListTrimmed {
                start: self.varint()?,
                end: self.varint()?,
            },
            7 => {
                let zigzag = self.varint()?;
                CollectionChange::ListRemoved {
                    count: ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64),
                    value: self.bytes()?,
                }
            }
            8 => CollectionChange::SetAdded {
                members: self.list()?,
            },
            9 => CollectionChange::SetRemoved {
                members: self.list()?,
            },
            tag => return Err(format!("unknown collection change {tag}")),
        })
    }

    fn entry(&mut self) -> Result<SnapshotEntry, String> {
        let key = self.bytes()?;
        let expires_at_ms = self.varint()?;
        let version = self.varint()?;
        let value = match self.u8()? {
            1 => SnapshotValue::String(self.bytes()?),
            2 => SnapshotValue::Hash(HashSnapshot::from_fields(self.pairs()?)),
            3 => SnapshotValue::List(ListSnapshot::from_items(self.list()?)),
            4 => SnapshotValue::Set(SetSnapshot::from_members(self.list()?)),
            tag => return Err(format!("unknown value type {tag}")),
        };
        Ok(SnapshotEntry {
            key,
            value,
            expires_at_ms,
            version,
        })
    }
}
