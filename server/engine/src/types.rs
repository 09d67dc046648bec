//! Plain data the engine hands to callers: key types, metadata, options and
//! outcomes of each command.

use std::fmt;

use bytes::Bytes;

/// The data type stored under a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// Bytes, possibly holding a 64-bit integer counter.
    String,
    /// Field -> value map.
    Hash,
    /// Ordered list of values.
    List,
    /// Unordered set of unique members.
    Set,
}

impl KeyType {
    /// The lowercase name Redis uses for the type.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::String => "string",
            KeyType::Hash => "hash",
            KeyType::List => "list",
            KeyType::Set => "set",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a written key expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expiry {
    /// Never expire.
    #[default]
    Never,
    /// Keep the key's current expiry (none if the key is new).
    Keep,
    /// Expire this many milliseconds after the write.
    AfterMs(i64),
    /// Expire at this Unix time in milliseconds; a past time removes the key.
    AtUnixMs(i64),
}

/// A precondition on a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    /// Write unconditionally.
    #[default]
    Always,
    /// Write only if the key does not exist.
    IfAbsent,
    /// Write only if the key exists.
    IfPresent,
    /// Write only if the key exists with exactly this version.
    IfVersion(u64),
}

/// Options of [`Namespace::set`](super::Namespace::set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetOptions {
    /// Expiry of the written key.
    pub expiry: Expiry,
    /// Precondition.
    pub condition: Condition,
    /// Return the value held before the write.
    pub return_previous: bool,
}

/// Result of a [`Namespace::set`](super::Namespace::set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOutcome {
    /// False when the condition was not met and nothing was written.
    pub stored: bool,
    /// The key's version after the call; 0 when the key does not exist.
    pub version: u64,
    /// The value before the call, when asked for and the key existed.
    pub previous: Option<Bytes>,
}

/// Result of a [`Namespace::increment`](super::Namespace::increment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncrementOutcome {
    /// The counter after the increment.
    pub value: i64,
    /// The key's version after the increment.
    pub version: u64,
    /// Whether the call created the key.
    pub created: bool,
}

/// Metadata about a stored key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemMeta {
    /// The key's type.
    pub key_type: KeyType,
    /// Version of the key's last write.
    pub version: u64,
    /// Absolute expiry in Unix milliseconds, if the key expires.
    pub expires_at_ms: Option<u64>,
    /// Milliseconds left before expiry, if the key expires.
    pub ttl_ms: Option<u64>,
    /// Size of the value in bytes.
    pub size: u64,
}

/// Result of a collection write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome<R> {
    /// What the command returns (fields added, new length, ...).
    pub result: R,
    /// The key's version after the write; 0 when the key no longer exists.
    pub version: u64,
}
