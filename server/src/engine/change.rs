//! Change records: one deterministic record of the *effect* of every mutation.
//!
//! The Watch feed, the append-only log and replication all consume the same
//! records through one [`ChangeSink`]. A record says what the mutation
//! resolved to (a SET carries its value and absolute deadline, an increment
//! its resulting value), so replaying records reproduces the keyspace without
//! re-running commands.

use std::sync::Arc;

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
    /// The key was deleted by a command.
    Deleted,
    /// The key was removed because its deadline passed.
    Expired,
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
