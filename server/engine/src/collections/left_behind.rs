//! Memory held by collection versions that a write left behind for its
//! readers.
//!
//! A streamed read (HGETALL, LRANGE, SMEMBERS) walks a snapshot: a second
//! reference to the collection, taken under the shard lock and read after
//! it is released. While a reader holds one, the next write to that
//! collection copies it and the old version lives on for the readers
//! alone, however slowly they read. That copy is real memory, so it is
//! charged from the moment a write leaves it behind until the last reader
//! lets go: to the namespace's figure (`NamespaceStats::snapshot_bytes`)
//! and to the budget, whose limit it counts toward like stored entries.
//!
//! The charge is the old version's whole size, elements included, though
//! its elements are shared with the new version until a write replaces
//! them: an upper bound, so that snapshots never hold memory the budget
//! does not see.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::budget::Budget;

/// Where the bytes of left-behind versions are counted: the namespace's own
/// figure and its budget.
#[derive(Debug, Clone)]
pub(crate) struct PinAccount {
    /// Bytes of the namespace's versions held by readers alone.
    namespace: Arc<AtomicU64>,
    budget: Arc<Budget>,
}

impl PinAccount {
    pub(crate) fn new(budget: Arc<Budget>) -> Self {
        Self {
            namespace: Arc::default(),
            budget,
        }
    }

    /// Bytes of versions held by readers alone now.
    pub(crate) fn bytes(&self) -> u64 {
        self.namespace.load(Ordering::Relaxed)
    }
}

/// The charge on a collection version, set when a write leaves it behind
/// and given back when the version is freed. A copy of a collection starts
/// with none (it is the live version).
#[derive(Debug, Default)]
pub(crate) struct LeftBehind(OnceLock<PinCharge>);

impl Clone for LeftBehind {
    fn clone(&self) -> Self {
        Self::default()
    }
}

#[derive(Debug)]
struct PinCharge {
    bytes: u64,
    account: PinAccount,
}

impl Drop for PinCharge {
    fn drop(&mut self) {
        self.account
            .namespace
            .fetch_sub(self.bytes, Ordering::Relaxed);
        self.account.budget.unpin(self.bytes);
    }
}

/// A collection value that can be left behind for its readers.
pub(crate) trait Versioned: Clone {
    /// Its charge slot.
    fn left_behind(&self) -> &LeftBehind;
    /// Bytes it holds: elements and table slots.
    fn heap_bytes(&self) -> usize;
}

/// Makes `shared` the only reference to its collection, so that the write
/// about to follow changes it in place. If readers hold the current
/// version, it is copied first and the old version is charged to `account`
/// until they let it go.
pub(crate) fn make_unique<T: Versioned>(shared: &mut Arc<T>, account: &PinAccount) {
    if Arc::get_mut(shared).is_some() {
        return;
    }
    let copy = Arc::new(T::clone(shared));
    let old = std::mem::replace(shared, copy);
    let bytes = old.heap_bytes() as u64;
    account.namespace.fetch_add(bytes, Ordering::Relaxed);
    account.budget.pin(bytes);
    let charge = PinCharge {
        bytes,
        account: account.clone(),
    };
    // Only this write, under the shard lock, ever leaves a version behind,
    // and a version is left behind once: it is no longer reachable from
    // the table afterwards.
    let _ = old.left_behind().0.set(charge);
    // If the readers let go meanwhile, this drops the version and gives
    // the charge back at once.
    drop(old);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collections::HashValue;
    use crate::eviction::EvictionPolicy;
    use bytes::Bytes;

    fn hash_of(fields: usize) -> HashValue {
        let mut hash = HashValue::default();
        for at in 0..fields {
            hash.insert(Bytes::from(format!("f{at}")), Bytes::from_static(b"value"));
        }
        hash
    }

    #[test]
    fn an_unshared_version_is_changed_in_place_and_charges_nothing() {
        let budget = Arc::new(Budget::new(EvictionPolicy::Lru, 0, 1 << 20));
        let account = PinAccount::new(budget.clone());
        let mut shared = Arc::new(hash_of(10));
        let before = Arc::as_ptr(&shared);
        make_unique(&mut shared, &account);
        assert_eq!(Arc::as_ptr(&shared), before);
        assert_eq!(account.bytes(), 0);
        assert_eq!(budget.pinned_bytes(), 0);
    }

    #[test]
    fn a_version_held_by_a_reader_is_charged_until_the_reader_lets_go() {
        let budget = Arc::new(Budget::new(EvictionPolicy::Lru, 0, 1 << 20));
        let account = PinAccount::new(budget.clone());
        let mut shared = Arc::new(hash_of(100));
        let reader = Arc::clone(&shared);
        let size = reader.heap_bytes() as u64;
        make_unique(&mut shared, &account);
        assert!(!Arc::ptr_eq(&shared, &reader), "the writer got a copy");
        assert_eq!(account.bytes(), size);
        assert_eq!(budget.pinned_bytes(), size);
        assert!(budget.over(0, (1 << 20) - size + 1).is_some());

        // The copy is the live version: writing it again copies nothing.
        Arc::make_mut(&mut shared).insert(Bytes::from_static(b"new"), Bytes::new());
        make_unique(&mut shared, &account);
        assert_eq!(account.bytes(), size);

        drop(reader);
        assert_eq!(account.bytes(), 0);
        assert_eq!(budget.pinned_bytes(), 0);
    }
}
