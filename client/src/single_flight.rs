//! One load per key at a time: the first caller leads, the others wait for
//! its outcome.
//!
//! Flights are keyed by namespace and key and shared by a client and its
//! clones. The outcome is the value's bytes (before any codec), so callers
//! with different value types or codecs can share a flight. A leader whose
//! future is dropped abandons its flight: the waiters see the channel close
//! and go round again, and one of them leads the next flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::watch;

use crate::error::Error;

/// What a flight ends with: the value's bytes, or the error every waiter
/// gets a copy of.
pub(crate) type Outcome = Result<Bytes, Arc<Error>>;

type FlightKey = (Arc<str>, Bytes);

/// The flights in progress of one client and its clones.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    running: Mutex<HashMap<FlightKey, Running>>,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct Running {
    id: u64,
    outcome: watch::Receiver<Option<Outcome>>,
}

/// A caller's part in the flight for its key.
pub(crate) enum Turn {
    /// No flight was running: this caller runs one and must
    /// [`finish`](Leader::finish) it (or drop it to abandon it).
    Lead(Leader),
    /// Another caller leads: wait for its outcome.
    Wait(Waiter),
}

impl Flights {
    /// Joins the flight for `key` in `namespace`, or starts one.
    pub(crate) fn join(self: &Arc<Self>, namespace: &Arc<str>, key: &Bytes) -> Turn {
        let key = (Arc::clone(namespace), key.clone());
        let mut running = self.lock();
        if let Some(flight) = running.get(&key) {
            return Turn::Wait(Waiter(flight.outcome.clone()));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, outcome) = watch::channel(None);
        running.insert(key.clone(), Running { id, outcome });
        Turn::Lead(Leader {
            flights: Arc::clone(self),
            key,
            id,
            sender: Some(sender),
        })
    }

    /// How many flights are running; for tests.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn remove(&self, key: &FlightKey, id: u64) {
        let mut running = self.lock();
        if running.get(key).is_some_and(|flight| flight.id == id) {
            running.remove(key);
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<FlightKey, Running>> {
        // The map stays consistent whatever panicked while holding it.
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The caller that runs the load of a flight.
#[derive(Debug)]
pub(crate) struct Leader {
    flights: Arc<Flights>,
    key: FlightKey,
    id: u64,
    sender: Option<watch::Sender<Option<Outcome>>>,
}

impl Leader {
    /// Ends the flight and hands `outcome` to every waiter. Callers that
    /// arrive from now on start a new flight.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.flights.remove(&self.key, self.id);
        if let Some(sender) = self.sender.take() {
            sender.send_replace(Some(outcome));
        }
    }

    /// How many callers wait on this flight; for tests.
    #[cfg(test)]
    fn waiters(&self) -> usize {
        // The map holds one receiver of its own until the flight ends.
        self.sender
            .as_ref()
            .map_or(0, |sender| sender.receiver_count().saturating_sub(1))
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if self.sender.is_some() {
            // Abandoned: forget the flight first, so that waiters woken by
            // the sender's drop (right after this) start a new one.
            self.flights.remove(&self.key, self.id);
        }
    }
}

/// A caller waiting for another's load.
#[derive(Debug)]
pub(crate) struct Waiter(watch::Receiver<Option<Outcome>>);

impl Waiter {
    /// The flight's outcome, or `None` when its leader gave up without one
    /// (its future was dropped): the caller should join again.
    pub(crate) async fn outcome(mut self) -> Option<Outcome> {
        self.0
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|outcome| outcome.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &'static str) -> (Arc<str>, Bytes) {
        (Arc::from("ns"), Bytes::from_static(k.as_bytes()))
    }

    fn lead(flights: &Arc<Flights>, k: &'static str) -> Leader {
        let (ns, key) = key(k);
        match flights.join(&ns, &key) {
            Turn::Lead(leader) => leader,
            Turn::Wait(_) => panic!("expected to lead"),
        }
    }

    fn wait(flights: &Arc<Flights>, k: &'static str) -> Waiter {
        let (ns, key) = key(k);
        match flights.join(&ns, &key) {
            Turn::Wait(waiter) => waiter,
            Turn::Lead(_) => panic!("expected to wait"),
        }
    }

    #[tokio::test]
    async fn waiters_get_the_leaders_outcome() {
        let flights = Arc::new(Flights::default());
        let leader = lead(&flights, "k");
        let waiters: Vec<_> = (0..3).map(|_| wait(&flights, "k")).collect();
        assert_eq!(leader.waiters(), 3);
        // Another key has a flight of its own.
        let other = lead(&flights, "other");
        assert_eq!(flights.len(), 2);

        leader.finish(Ok(Bytes::from_static(b"v")));
        for waiter in waiters {
            assert_eq!(waiter.outcome().await.unwrap().unwrap(), "v");
        }
        // The finished flight is gone: the next caller leads.
        assert_eq!(flights.len(), 1);
        drop(lead(&flights, "k"));
        drop(other);
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn errors_reach_every_waiter_and_end_the_flight() {
        let flights = Arc::new(Flights::default());
        let leader = lead(&flights, "k");
        let waiter = wait(&flights, "k");
        leader.finish(Err(Arc::new(Error::DeadlineExceeded)));
        let outcome = waiter.outcome().await.unwrap();
        assert!(matches!(outcome, Err(error) if matches!(*error, Error::DeadlineExceeded)));
        drop(lead(&flights, "k"));
    }

    #[tokio::test]
    async fn an_abandoned_flight_lets_a_waiter_lead_the_next() {
        let flights = Arc::new(Flights::default());
        let leader = lead(&flights, "k");
        let first = wait(&flights, "k");
        let second = wait(&flights, "k");
        drop(leader);
        assert_eq!(flights.len(), 0);
        assert!(first.outcome().await.is_none());
        assert!(second.outcome().await.is_none());
        // Both go round again: one leads, the other waits for it.
        let next = lead(&flights, "k");
        let follower = wait(&flights, "k");
        next.finish(Ok(Bytes::from_static(b"v")));
        assert_eq!(follower.outcome().await.unwrap().unwrap(), "v");
    }

    #[tokio::test]
    async fn a_late_drop_never_removes_a_newer_flight() {
        let flights = Arc::new(Flights::default());
        let (ns, k) = key("k");
        let old = lead(&flights, "k");
        flights.remove(&(Arc::clone(&ns), k.clone()), old.id);
        // A new flight for the same key starts while the old leader lives.
        let new = lead(&flights, "k");
        drop(old);
        assert_eq!(flights.len(), 1);
        let waiter = wait(&flights, "k");
        new.finish(Ok(Bytes::new()));
        assert!(waiter.outcome().await.is_some());
    }
}
