//! How many keys and bytes an engine or a namespace may hold, and how many
//! it holds now. The budget only counts and answers "would this pass a
//! limit?"; which entry leaves when it would is the eviction policy's
//! business (see the `eviction` module).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::eviction::EvictionPolicy;

/// Why an entry was evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EvictionCause {
    /// The engine held `max_keys` keys.
    KeyCount,
    /// The engine held `max_memory` bytes.
    Memory,
}

/// A key and memory budget: the engine-wide one, shared by every shard of
/// every namespace, or a namespace's own, which also counts toward the
/// engine's. Shards report what they hold after each change; a write that
/// would pass a limit evicts from its own shard first (or, under
/// `noeviction`, fails), so no lock is ever taken across shards.
#[derive(Debug)]
pub(crate) struct Budget {
    policy: EvictionPolicy,
    /// Whether this budget or its parent sets a limit, fixed at creation:
    /// every read asks, through [`Budget::policy`].
    limited: bool,
    max_keys: u64,
    max_bytes: u64,
    /// For a namespace's budget: the engine's, which its usage also counts
    /// toward and whose limits also apply.
    parent: Option<Arc<Budget>>,
    /// What is held, on a cache line of its own: every write updates it,
    /// while every read checks the policy and limits above, and sharing a
    /// line made each read during a write burst miss the cache (reads took
    /// 2.5 times as long at the median).
    usage: Usage,
}

/// Keys and charged bytes held against a [`Budget`].
#[derive(Debug, Default)]
#[repr(align(128))]
struct Usage {
    keys: AtomicU64,
    bytes: AtomicU64,
    /// Bytes of collection versions held by readers alone (see
    /// `collections::left_behind`); they count toward the memory limit.
    pinned: AtomicU64,
}

/// Which budget a limit belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BudgetScope {
    /// The engine-wide budget.
    Engine,
    /// A namespace's own budget.
    Namespace,
}

impl Budget {
    pub(crate) fn new(policy: EvictionPolicy, max_keys: u64, max_bytes: u64) -> Self {
        Self {
            policy,
            limited: max_keys > 0 || max_bytes > 0,
            max_keys,
            max_bytes,
            parent: None,
            usage: Usage::default(),
        }
    }

    /// A namespace's own budget with these limits (0 = none), inside the
    /// engine's `parent` and evicting by its policy.
    pub(crate) fn within(parent: Arc<Budget>, max_keys: u64, max_bytes: u64) -> Self {
        Self {
            policy: parent.policy,
            limited: max_keys > 0 || max_bytes > 0 || parent.limited,
            max_keys,
            max_bytes,
            parent: Some(parent),
            usage: Usage::default(),
        }
    }

    /// The policy, when a limit is set here or in the parent; `None` means
    /// nothing is tracked.
    pub(crate) fn policy(&self) -> Option<EvictionPolicy> {
        self.limited.then_some(self.policy)
    }

    /// The policy, when it evicts (a limit is set and it is not `noeviction`).
    pub(crate) fn evicting_policy(&self) -> Option<EvictionPolicy> {
        self.policy()
            .filter(|policy| *policy != EvictionPolicy::NoEviction)
    }

    /// Adds a shard's change in keys and charged bytes, here and in the
    /// parent.
    pub(crate) fn report(&self, keys: (usize, usize), bytes: (usize, usize)) {
        apply_delta(&self.usage.keys, keys);
        apply_delta(&self.usage.bytes, bytes);
        if let Some(parent) = &self.parent {
            parent.report(keys, bytes);
        }
    }

    /// Charges `bytes` of a collection version left behind for readers,
    /// here and in the parent.
    pub(crate) fn pin(&self, bytes: u64) {
        self.usage.pinned.fetch_add(bytes, Ordering::Relaxed);
        if let Some(parent) = &self.parent {
            parent.pin(bytes);
        }
    }

    /// Gives back what [`Budget::pin`] charged.
    pub(crate) fn unpin(&self, bytes: u64) {
        self.usage.pinned.fetch_sub(bytes, Ordering::Relaxed);
        if let Some(parent) = &self.parent {
            parent.unpin(bytes);
        }
    }

    /// Bytes of left-behind versions charged now.
    pub(crate) fn pinned_bytes(&self) -> u64 {
        self.usage.pinned.load(Ordering::Relaxed)
    }

    /// Which limit would be passed by adding `keys` keys and `bytes` bytes:
    /// this budget's own first, then the parent's.
    pub(crate) fn over(&self, keys: u64, bytes: u64) -> Option<(EvictionCause, BudgetScope)> {
        let scope = if self.parent.is_some() {
            BudgetScope::Namespace
        } else {
            BudgetScope::Engine
        };
        if self.max_keys > 0 && self.usage.keys.load(Ordering::Relaxed) + keys > self.max_keys {
            return Some((EvictionCause::KeyCount, scope));
        }
        let held = self.usage.bytes.load(Ordering::Relaxed) + self.pinned_bytes();
        if self.max_bytes > 0 && held + bytes > self.max_bytes {
            return Some((EvictionCause::Memory, scope));
        }
        self.parent.as_ref()?.over(keys, bytes)
    }

    /// Keys and charged bytes held now.
    pub(crate) fn usage(&self) -> (u64, u64) {
        (
            self.usage.keys.load(Ordering::Relaxed),
            self.usage.bytes.load(Ordering::Relaxed),
        )
    }

    /// The limits: keys and bytes (0 = none).
    pub(crate) fn limits(&self) -> (u64, u64) {
        (self.max_keys, self.max_bytes)
    }

    /// The policy it evicts by.
    pub(crate) fn eviction_policy(&self) -> EvictionPolicy {
        self.policy
    }

    /// Whether this is a namespace's own budget.
    pub(crate) fn is_namespace_budget(&self) -> bool {
        self.parent.is_some()
    }
}

fn apply_delta(counter: &AtomicU64, (before, after): (usize, usize)) {
    if after > before {
        counter.fetch_add((after - before) as u64, Ordering::Relaxed);
    } else if before > after {
        counter.fetch_sub((before - after) as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_budget_counts_toward_the_engine_and_obeys_both_limits() {
        let engine = Arc::new(Budget::new(EvictionPolicy::Lru, 10, 0));
        let namespace = Budget::within(engine.clone(), 0, 100);
        namespace.report((0, 9), (0, 50));
        assert_eq!(engine.usage(), (9, 50));
        assert_eq!(namespace.over(1, 50), None);
        assert_eq!(
            namespace.over(1, 51),
            Some((EvictionCause::Memory, BudgetScope::Namespace))
        );
        assert_eq!(
            namespace.over(2, 0),
            Some((EvictionCause::KeyCount, BudgetScope::Engine))
        );
        namespace.report((9, 4), (50, 10));
        assert_eq!(engine.usage(), (4, 10));
    }

    #[test]
    fn without_limits_nothing_is_tracked() {
        let budget = Budget::new(EvictionPolicy::S3Fifo, 0, 0);
        assert_eq!(budget.policy(), None);
        let noeviction = Budget::new(EvictionPolicy::NoEviction, 5, 0);
        assert_eq!(noeviction.policy(), Some(EvictionPolicy::NoEviction));
        assert_eq!(noeviction.evicting_policy(), None);
    }
}
