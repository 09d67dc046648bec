//! What a streamed reply reads from, held no longer than the call's
//! deadline.
//!
//! A whole-collection read (HGetAll, LRange, SMembers, SInter…) streams
//! from a snapshot or a computed result. A client that stops reading stops
//! HTTP/2 from polling the reply once its flow-control window is full, so
//! nothing in the reply's own code runs again until the connection closes:
//! without a timer of its own, the snapshot would stay pinned (and every
//! write to the collection would leave a copy behind for it) for as long as
//! the client cares to wait. A [`Lease`] keeps the snapshot in a slot that a
//! timer empties at the deadline, whether or not the reply is polled.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::task::AbortHandle;
use tokio::time::Instant;

/// A value given up at a deadline. Dropping the lease gives it up too and
/// stops its timer.
#[derive(Debug)]
pub(crate) struct Lease<S> {
    slot: Arc<Mutex<Option<S>>>,
    timer: Option<AbortHandle>,
}

impl<S: Send + 'static> Lease<S> {
    /// `value`, held until `deadline` (for ever without one). Needs a tokio
    /// runtime when there is a deadline.
    pub(crate) fn new(value: S, deadline: Option<Instant>) -> Self {
        let slot = Arc::new(Mutex::new(Some(value)));
        let timer = deadline.map(|deadline| {
            let slot = Arc::clone(&slot);
            tokio::spawn(async move {
                tokio::time::sleep_until(deadline).await;
                let expired = lock(&slot).take();
                drop(expired);
            })
            .abort_handle()
        });
        Self { slot, timer }
    }

    /// The value, or `None` once the deadline has passed.
    pub(crate) fn get(&self) -> MutexGuard<'_, Option<S>> {
        lock(&self.slot)
    }

    /// Gives the value up now (the reply is complete).
    pub(crate) fn release(&self) {
        let released = lock(&self.slot).take();
        drop(released);
    }
}

impl<S> Drop for Lease<S> {
    /// Frees the value now: the aborted timer still holds the slot until
    /// the runtime drops it.
    fn drop(&mut self) {
        if let Some(timer) = &self.timer {
            timer.abort();
        }
        let released = lock(&self.slot).take();
        drop(released);
    }
}

/// The slot, whether or not a holder panicked (the value is only read).
fn lock<S>(slot: &Mutex<Option<S>>) -> MutexGuard<'_, Option<S>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_value_goes_at_the_deadline_without_being_asked_for() {
        let value = Arc::new(());
        let lease = Lease::new(
            Arc::clone(&value),
            Some(Instant::now() + Duration::from_secs(5)),
        );
        assert!(lease.get().is_some());
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(Arc::strong_count(&value), 2);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(Arc::strong_count(&value), 1, "the timer dropped it");
        assert!(lease.get().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn release_and_drop_give_the_value_up_at_once() {
        let value = Arc::new(());
        let lease = Lease::new(Arc::clone(&value), None);
        lease.release();
        assert_eq!(Arc::strong_count(&value), 1);
        let dropped = Lease::new(
            Arc::clone(&value),
            Some(Instant::now() + Duration::from_secs(1)),
        );
        drop(dropped);
        assert_eq!(Arc::strong_count(&value), 1);
    }
}
