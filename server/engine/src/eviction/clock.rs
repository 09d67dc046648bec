//! CLOCK: one FIFO in which a key read since it was queued gets a second
//! chance (it goes to the back with one read fewer) and a key not read is
//! evicted. With 1-bit counters it approximates LRU; with 4-bit counters,
//! LFU, since a key read often survives that many passes.

use super::fifo::{Fifo, Stamps};
use super::{EvictionOrder, QueueKind, QueueRef, Verdict};

/// The CLOCK queue of one shard.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    queue: Fifo,
    stamps: Stamps,
}

impl Clock {
    /// The counter's ceiling under `lru`: read since queued, or not.
    pub(crate) const LRU_MAX_FREQUENCY: u8 = 1;
    /// The counter's ceiling under `lfu`.
    pub(crate) const LFU_MAX_FREQUENCY: u8 = 15;
}

impl EvictionOrder for Clock {
    fn admit(&mut self, hash: u64, _live: usize) -> (QueueRef, QueueKind) {
        let reference = self.stamps.reference(hash);
        self.queue.push(reference);
        (reference, QueueKind::Main)
    }

    fn next_candidate(&mut self, _live: usize) -> Option<(QueueRef, QueueKind)> {
        self.queue
            .pop()
            .map(|reference| (reference, QueueKind::Main))
    }

    fn judge(&mut self, hash: u64, _kind: QueueKind, frequency: u8, _live: usize) -> (Verdict, u8) {
        if frequency == 0 {
            return (Verdict::Evict, 0);
        }
        let reference = self.stamps.reference(hash);
        self.queue.push(reference);
        (Verdict::Keep(reference, QueueKind::Main), frequency - 1)
    }

    fn len(&self) -> usize {
        self.queue.len()
    }

    fn retain(&mut self, live: &mut dyn FnMut(QueueRef, QueueKind) -> bool) {
        self.queue.retain(QueueKind::Main, live);
    }

    fn clear(&mut self) {
        *self = Self::default();
    }

    fn memory_bytes(&self) -> usize {
        self.queue.memory_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_gives_a_second_chance() {
        let mut queues = Clock::default();
        queues.admit(1, 0);
        let (_, kind) = queues.next_candidate(1).expect("candidate");
        let (verdict, frequency) = queues.judge(1, kind, 1, 1);
        assert!(matches!(verdict, Verdict::Keep(..)));
        assert_eq!(frequency, 0);
        let (_, kind) = queues.next_candidate(1).expect("candidate");
        assert_eq!(queues.judge(1, kind, 0, 1).0, Verdict::Evict);
    }
}
