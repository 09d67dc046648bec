//! The FIFO of entry references every policy is built from, and the stamps
//! that tell a live reference from a stale one.

use std::collections::VecDeque;

use super::{QueueKind, QueueRef};

/// Room a queue may keep beyond what it holds before it is given back.
pub(super) const SPARE_REFERENCES: usize = 64;

/// Hands out the stamps that tie a queue reference to its entry: an entry
/// re-queued gets a new stamp, so the reference it left behind is stale.
#[derive(Debug, Default)]
pub(super) struct Stamps {
    last: u32,
}

impl Stamps {
    /// A stamp for a reference to `hash`, never the last one handed out.
    pub(super) fn reference(&mut self, hash: u64) -> QueueRef {
        self.last = self.last.wrapping_add(1);
        QueueRef {
            hash,
            stamp: self.last,
        }
    }
}

/// A FIFO of references to entries in one queue.
#[derive(Debug, Default)]
pub(super) struct Fifo {
    references: VecDeque<QueueRef>,
}

impl Fifo {
    pub(super) fn push(&mut self, reference: QueueRef) {
        self.references.push_back(reference);
    }

    /// Puts `reference` first, to be popped next.
    pub(super) fn push_front(&mut self, reference: QueueRef) {
        self.references.push_front(reference);
    }

    pub(super) fn pop(&mut self) -> Option<QueueRef> {
        self.references.pop_front()
    }

    pub(super) fn len(&self) -> usize {
        self.references.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.references.is_empty()
    }

    /// Keeps the references `live` says true for, as queue `kind`, and
    /// gives back the room the others took.
    pub(super) fn retain(
        &mut self,
        kind: QueueKind,
        live: &mut dyn FnMut(QueueRef, QueueKind) -> bool,
    ) {
        self.references.retain(|reference| live(*reference, kind));
        let len = self.references.len();
        self.references.shrink_to(len + len / 4 + SPARE_REFERENCES);
    }

    /// Bytes held, spare room included.
    pub(super) fn memory_bytes(&self) -> usize {
        self.references.capacity() * size_of::<QueueRef>()
    }
}
