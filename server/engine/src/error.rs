//! The engine's error type.

use super::KeyType;

/// Why an engine call was refused. A refused call changes nothing.
///
/// Deliberately exhaustive: the server maps each variant to a gRPC status
/// in one `match`, and a new variant must fail that build rather than fall
/// into a catch-all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The key is empty.
    #[error("key must not be empty")]
    EmptyKey,
    /// The key is longer than the configured limit.
    #[error("key is {len} bytes, over the limit of {max} bytes")]
    KeyTooLong {
        /// Length of the key.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is larger than the configured limit.
    #[error("value is {len} bytes, over the limit of {max} bytes")]
    ValueTooLarge {
        /// Length of the value.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The expiry is negative, zero or too far away.
    #[error("{field} {reason}")]
    InvalidExpiry {
        /// Which part of the expiry is wrong (`ttl_ms`, `at_unix_ms`).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The command does not apply to the type stored under the key.
    #[error("WRONGTYPE operation against a key holding a {actual} value, expected {expected}")]
    WrongType {
        /// The type the command works on.
        expected: KeyType,
        /// The type stored.
        actual: KeyType,
    },
    /// A hash field or set member is longer than the key limit.
    #[error("{element} is {len} bytes, over the limit of {max} bytes")]
    ElementTooLong {
        /// What is too long (`field` or `member`).
        element: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The command needs an existing key (LSET).
    #[error("no such key")]
    NoSuchKey,
    /// The index is outside the list (LSET).
    #[error("index out of range")]
    IndexOutOfRange,
    /// The value is not a 64-bit signed integer in canonical decimal form.
    #[error("value is not a 64-bit integer")]
    NotAnInteger,
    /// The increment would leave the 64-bit signed range.
    #[error("increment or decrement would overflow a 64-bit integer")]
    IncrementOverflow,
    /// The glob pattern cannot be parsed.
    #[error("pattern is malformed: {0}")]
    InvalidPattern(String),
    /// The scan cursor was not produced by this engine.
    #[error("cursor is invalid or was issued by another server process")]
    InvalidCursor,
    /// The namespace name is not allowed.
    #[error("namespace {reason}")]
    InvalidNamespace {
        /// What is wrong with the name.
        reason: String,
    },
    /// The engine is at its key or memory limit and its policy is
    /// `noeviction`.
    #[error("{limit} limit reached and the eviction policy is noeviction")]
    OutOfMemory {
        /// Which limit: `max_keys` or `max_memory`.
        limit: &'static str,
    },
    /// Creating another namespace would pass the configured limit.
    #[error("namespace limit of {max} reached")]
    TooManyNamespaces {
        /// The limit.
        max: usize,
    },
}
