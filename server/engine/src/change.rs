//! Change records: one deterministic record of the *effect* of every mutation.
//!
//! The Watch feed, the append-only log and replication all consume the same
//! records through one [`ChangeSink`]. A record says what the mutation
//! resolved to (a SET carries its value and absolute deadline, an increment
//! its resulting value), so replaying records reproduces the keyspace without
//! re-running commands.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

/// What a mutation did to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// The key now holds this string value and deadline (0 = none).
    Set {
        /// The stored value.
        value: Bytes,
        /// Absolute deadline in Unix milliseconds; 0 when it never expires.
        expires_at_ms: u64,
    },
    /// Only the key's deadline changed (0 = none).
    ExpiryChanged {
        /// The new absolute deadline; 0 when it never expires.
        expires_at_ms: u64,
    },
    /// A collection changed; an emptied collection no longer exists.
    Collection {
        /// What changed.
        change: CollectionChange,
        /// The key's deadline after the change; 0 when it never expires.
        expires_at_ms: u64,
    },
    /// The key was deleted by a command.
    Deleted,
    /// The key was removed because its deadline passed.
    Expired,
    /// The key was evicted to stay within the key or memory limit.
    Evicted,
}

/// The effect of a command on a hash, list or set, resolved so that
/// replaying it needs no randomness and no other state than the collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollectionChange {
    /// Hash fields now hold these values.
    HashSet {
        /// Fields and their new values.
        fields: Vec<(Bytes, Bytes)>,
    },
    /// Hash fields were removed.
    HashDeleted {
        /// The fields that existed.
        fields: Vec<Bytes>,
    },
    /// Values were pushed, one after the other, at the head or the tail.
    ListPushed {
        /// Pushed at the head (LPUSH) rather than the tail.
        front: bool,
        /// The values, in push order.
        values: Vec<Bytes>,
    },
    /// Elements were popped from the head or the tail.
    ListPopped {
        /// Popped from the head.
        front: bool,
        /// How many.
        count: u64,
    },
    /// The element at `index` was replaced.
    ListSet {
        /// Non-negative index.
        index: u64,
        /// The new element.
        value: Bytes,
    },
    /// Only the elements `start..end` were kept.
    ListTrimmed {
        /// First kept index.
        start: u64,
        /// One past the last kept index.
        end: u64,
    },
    /// Occurrences of a value were removed (LREM semantics).
    ListRemoved {
        /// LREM count: > 0 from the head, < 0 from the tail, 0 all.
        count: i64,
        /// The value.
        value: Bytes,
    },
    /// Members were added.
    SetAdded {
        /// The members that were new.
        members: Vec<Bytes>,
    },
    /// Members were removed (SREM, or the members SPOP chose).
    SetRemoved {
        /// The members that existed.
        members: Vec<Bytes>,
    },
}

/// One mutation of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    /// Namespace of the key.
    pub namespace: Arc<str>,
    /// Index of the shard that owns the key; `sequence` orders records within it.
    pub shard: u32,
    /// The shard's sequence number for this mutation; also the key's new
    /// version when the key still exists.
    pub sequence: u64,
    /// The key.
    pub key: Bytes,
    /// The effect.
    pub kind: ChangeKind,
}

/// A whole namespace was emptied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushRecord {
    /// The namespace.
    pub namespace: Arc<str>,
    /// Keys removed.
    pub removed: u64,
}

/// Receives change records. Called under the shard's lock, so records of one
/// shard arrive in sequence order; implementations must be quick and must not
/// call back into the engine.
pub trait ChangeSink: Send + Sync + 'static {
    /// One key changed.
    fn record(&self, change: ChangeRecord);
    /// A namespace was flushed.
    fn flushed(&self, flush: FlushRecord);
}

/// Where a namespace sends its change records. Filled at most once, when the
/// engine is built or when a server attaches its change feed, and read on
/// every mutation without a lock.
#[derive(Default)]
pub(crate) struct SinkSlot(OnceLock<Arc<dyn ChangeSink>>);

impl SinkSlot {
    /// A slot holding `sink`, if any.
    pub(crate) fn new(sink: Option<Arc<dyn ChangeSink>>) -> Self {
        let slot = Self::default();
        if let Some(sink) = sink {
            let _ = slot.0.set(sink);
        }
        slot
    }

    /// The sink, once one is attached.
    pub(crate) fn get(&self) -> Option<&Arc<dyn ChangeSink>> {
        self.0.get()
    }

    /// Attaches `sink`; false when one was already attached.
    pub(crate) fn attach(&self, sink: Arc<dyn ChangeSink>) -> bool {
        self.0.set(sink).is_ok()
    }
}
