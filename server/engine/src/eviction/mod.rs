//! Which entry leaves a shard when the engine is over its key or memory
//! budget (the budget itself, which only counts, is in `budget`).
//!
//! Every policy keeps its order in FIFO queues of `(hash, stamp)`
//! references beside the table, and its per-entry state in the entry itself
//! (a frequency counter updated with a relaxed atomic on a hit, so a hit
//! never needs the exclusive lock). A reference whose stamp no longer
//! matches its entry is stale (the entry was deleted, expired or re-queued)
//! and is skipped; stale references are compacted away when they pile up.
//!
//! Each policy is one file behind the [`EvictionOrder`] trait, and
//! [`EvictionQueues`] picks one per shard when the shard is made:
//! - `tinylfu` (default): W-TinyLFU, a window, a segmented main,
//!   admission by a frequency sketch and a self-tuning window ([`tinylfu`],
//!   [`sketch`]); it holds on loops and scans, where S3-FIFO collapses, and
//!   follows recency where a pure frequency filter would not.
//! - `s3fifo`: S3-FIFO, small, main and ghost queues ([`s3fifo`]).
//! - `lru`: CLOCK, the second-chance approximation of LRU ([`clock`]).
//! - `lfu`: the same CLOCK with 4-bit frequency counters, which favours
//!   keys read often over keys read recently.
//! - `noeviction`: nothing is evicted; writes that would pass the budget fail.

mod clock;
mod fifo;
mod s3fifo;
mod sketch;
mod tinylfu;

use std::fmt;
use std::str::FromStr;

use clock::Clock;
use s3fifo::S3Fifo;
use tinylfu::TinyLfu;

pub(crate) use s3fifo::GHOST_BYTES_PER_KEY;

/// How a shard chooses what to evict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EvictionPolicy {
    /// W-TinyLFU: a window, a segmented main and a frequency sketch that
    /// lets a newcomer into main only if it is seen more often than main's
    /// victim; the window's share tunes itself. The default: no trace shape
    /// measured makes it collapse (BENCHMARKS.md).
    #[default]
    TinyLfu,
    /// S3-FIFO: small, main and ghost FIFO queues.
    S3Fifo,
    /// CLOCK approximation of least-recently-used.
    Lru,
    /// CLOCK with frequency counters: least-frequently-used first.
    Lfu,
    /// Never evict; writes over the budget fail with RESOURCE_EXHAUSTED.
    NoEviction,
}

impl EvictionPolicy {
    /// Every policy, in the order reports list them.
    pub const ALL: &[EvictionPolicy] = &[
        EvictionPolicy::S3Fifo,
        EvictionPolicy::TinyLfu,
        EvictionPolicy::Lru,
        EvictionPolicy::Lfu,
        EvictionPolicy::NoEviction,
    ];

    /// The policy's name in configuration files and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionPolicy::TinyLfu => "tinylfu",
            EvictionPolicy::S3Fifo => "s3fifo",
            EvictionPolicy::Lru => "lru",
            EvictionPolicy::Lfu => "lfu",
            EvictionPolicy::NoEviction => "noeviction",
        }
    }

    /// Highest value of an entry's frequency counter.
    pub(crate) fn max_frequency(self) -> u8 {
        match self {
            EvictionPolicy::TinyLfu => TinyLfu::MAX_FREQUENCY,
            EvictionPolicy::S3Fifo => S3Fifo::MAX_FREQUENCY,
            EvictionPolicy::Lru => Clock::LRU_MAX_FREQUENCY,
            EvictionPolicy::Lfu => Clock::LFU_MAX_FREQUENCY,
            EvictionPolicy::NoEviction => 0,
        }
    }
}

impl fmt::Display for EvictionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy name that is not one of [`EvictionPolicy::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown eviction policy {0:?}; expected s3fifo, tinylfu, lru, lfu or noeviction")]
pub struct UnknownPolicy(pub String);

impl FromStr for EvictionPolicy {
    type Err = UnknownPolicy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        EvictionPolicy::ALL
            .iter()
            .copied()
            .find(|policy| policy.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| UnknownPolicy(text.to_string()))
    }
}

/// Which queue a reference sits in; entries remember it in their header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueKind {
    Small,
    Main,
}

/// A reference to an entry in a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueRef {
    pub(crate) hash: u64,
    pub(crate) stamp: u32,
}

/// What the caller should do with the entry a popped reference points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Evict it.
    Evict,
    /// Keep it: it was moved or re-queued under this new reference.
    Keep(QueueRef, QueueKind),
}

/// The eviction order of one shard. The shard owns the entries and calls
/// these under its write lock: it queues each new key, asks for candidates
/// and lets the policy judge each live one by the reads its entry counted.
pub(crate) trait EvictionOrder {
    /// Queues a new entry in a shard holding `live` entries before it;
    /// returns its reference and queue.
    fn admit(&mut self, hash: u64, live: usize) -> (QueueRef, QueueKind);

    /// Takes the next candidate for eviction in a shard holding `live`
    /// entries; it may be stale, which the caller checks.
    fn next_candidate(&mut self, live: usize) -> Option<(QueueRef, QueueKind)>;

    /// Decides about a live candidate read `frequency` times since it was
    /// queued, in a shard holding `live` entries; returns the verdict and
    /// the entry's new frequency.
    fn judge(&mut self, hash: u64, kind: QueueKind, frequency: u8, live: usize) -> (Verdict, u8);

    /// Takes the shard's read counters (hits and misses since it began)
    /// before an eviction, for a policy that tunes itself by its hit ratio.
    fn observe_reads(&mut self, hits: u64, misses: u64, live: usize) {
        let _ = (hits, misses, live);
    }

    /// References held, stale ones included.
    fn len(&self) -> usize;

    /// Keeps only the references for which `live` says true, and gives
    /// back the room the others took.
    fn retain(&mut self, live: &mut dyn FnMut(QueueRef, QueueKind) -> bool);

    /// Forgets everything.
    fn clear(&mut self);

    /// Bytes held by the queues and whatever else the policy remembers.
    fn memory_bytes(&self) -> usize;
}

/// One shard's eviction order, by policy. An enum rather than a boxed
/// trait object: the eviction loop calls it once per candidate, and a
/// match the compiler can inline costs less than an indirect call.
#[derive(Debug)]
pub(crate) enum EvictionQueues {
    /// W-TinyLFU's queues and sketch, boxed: inline they would push the
    /// shard to an even number of cache lines (see `Shard`).
    TinyLfu(Box<TinyLfu>),
    /// S3-FIFO's queues.
    S3Fifo(S3Fifo),
    /// One CLOCK queue, for `lru`, `lfu` and `noeviction` (which queues
    /// keys but never asks for a candidate).
    Clock(Clock),
}

impl EvictionQueues {
    /// Empty queues for `policy`.
    pub(crate) fn new(policy: EvictionPolicy) -> Self {
        match policy {
            EvictionPolicy::TinyLfu => EvictionQueues::TinyLfu(Box::default()),
            EvictionPolicy::S3Fifo => EvictionQueues::S3Fifo(S3Fifo::default()),
            EvictionPolicy::Lru | EvictionPolicy::Lfu | EvictionPolicy::NoEviction => {
                EvictionQueues::Clock(Clock::default())
            }
        }
    }
}

/// Calls the same method on whichever policy a shard runs.
macro_rules! on_policy {
    ($queues:expr, $order:ident => $call:expr) => {
        match $queues {
            EvictionQueues::TinyLfu($order) => $call,
            EvictionQueues::S3Fifo($order) => $call,
            EvictionQueues::Clock($order) => $call,
        }
    };
}

impl EvictionOrder for EvictionQueues {
    #[inline]
    fn admit(&mut self, hash: u64, live: usize) -> (QueueRef, QueueKind) {
        on_policy!(self, order => order.admit(hash, live))
    }

    fn next_candidate(&mut self, live: usize) -> Option<(QueueRef, QueueKind)> {
        on_policy!(self, order => order.next_candidate(live))
    }

    fn judge(&mut self, hash: u64, kind: QueueKind, frequency: u8, live: usize) -> (Verdict, u8) {
        on_policy!(self, order => order.judge(hash, kind, frequency, live))
    }

    fn observe_reads(&mut self, hits: u64, misses: u64, live: usize) {
        on_policy!(self, order => order.observe_reads(hits, misses, live))
    }

    fn len(&self) -> usize {
        on_policy!(self, order => order.len())
    }

    fn retain(&mut self, live: &mut dyn FnMut(QueueRef, QueueKind) -> bool) {
        on_policy!(self, order => order.retain(live))
    }

    fn clear(&mut self) {
        on_policy!(self, order => order.clear())
    }

    fn memory_bytes(&self) -> usize {
        on_policy!(self, order => order.memory_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_from_their_names() {
        for policy in EvictionPolicy::ALL {
            assert_eq!(policy.as_str().parse::<EvictionPolicy>(), Ok(*policy));
        }
        assert_eq!("LRU".parse::<EvictionPolicy>(), Ok(EvictionPolicy::Lru));
        assert!("random".parse::<EvictionPolicy>().is_err());
    }
}
