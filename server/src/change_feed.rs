//! The change feed behind `WatchService`: the engine's change records, fanned
//! out to the watchers of each namespace.
//!
//! Each watched namespace has one bounded broadcast ring. A mutation costs
//! one atomic load when nobody watches, and one ring write when somebody
//! does, however many watchers there are. A watcher that falls a whole ring
//! behind is told how many events it missed (and must resync) instead of
//! holding memory for it: the server's cost per watcher is bounded.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::broadcast;

use crate::engine::{ChangeKind, ChangeRecord, ChangeSink, FlushRecord};

/// What happened to a key, as watchers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChange {
    /// A string value was written.
    Set,
    /// A hash, list or set changed.
    Update,
    /// Only the expiry changed.
    Expiry,
    /// Deleted by a command.
    Delete,
    /// Its deadline passed.
    Expire,
    /// Evicted to stay within a limit.
    Evict,
}

/// One event of a namespace's feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// A key changed.
    Key {
        /// What happened.
        change: KeyChange,
        /// The key.
        key: Bytes,
        /// The key's version after the change, or the removal's sequence.
        version: u64,
    },
    /// The namespace was flushed.
    Flushed {
        /// Keys removed.
        removed: u64,
    },
}

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FeedError {
    /// As many watchers as allowed are already subscribed.
    #[error("{max} watch streams are already open, the server's limit")]
    TooManyWatchers {
        /// The limit.
        max: usize,
    },
    /// The server is shutting down.
    #[error("the server is shutting down")]
    Closed,
}

/// Fans change records out to watchers. Attach it to an engine with
/// [`Engine::attach_sink`](crate::engine::Engine::attach_sink).
#[derive(Debug)]
pub struct ChangeFeed {
    channels: RwLock<HashMap<Arc<str>, broadcast::Sender<FeedEvent>>>,
    watchers: AtomicUsize,
    resyncs: AtomicU64,
    closed: AtomicBool,
    buffer_events: usize,
    max_watchers: usize,
}

impl ChangeFeed {
    /// A feed buffering `buffer_events` per watched namespace and accepting
    /// at most `max_watchers` subscriptions.
    pub fn new(buffer_events: usize, max_watchers: usize) -> Arc<Self> {
        Arc::new(Self {
            channels: RwLock::new(HashMap::new()),
            watchers: AtomicUsize::new(0),
            resyncs: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            buffer_events: buffer_events.max(1),
            max_watchers,
        })
    }

    /// Subscribes to `namespace` (its canonical name). Events of changes
    /// made after this returns are delivered.
    ///
    /// # Errors
    /// [`FeedError::TooManyWatchers`] at the limit, [`FeedError::Closed`]
    /// once [`close`](Self::close) was called.
    pub fn subscribe(self: &Arc<Self>, namespace: &str) -> Result<Subscription, FeedError> {
        let mut channels = self.channels.write();
        if self.closed.load(Ordering::Acquire) {
            return Err(FeedError::Closed);
        }
        if self.watchers.load(Ordering::Acquire) >= self.max_watchers {
            return Err(FeedError::TooManyWatchers {
                max: self.max_watchers,
            });
        }
        let receiver = match channels.get(namespace) {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = broadcast::channel(self.buffer_events);
                channels.insert(Arc::from(namespace), sender);
                receiver
            }
        };
        self.watchers.fetch_add(1, Ordering::AcqRel);
        Ok(Subscription {
            feed: Arc::clone(self),
            namespace: Arc::from(namespace),
            receiver: Some(receiver),
        })
    }

    /// Ends every subscription (their streams see the feed close) and
    /// refuses new ones: called when the server begins shutting down.
    pub fn close(&self) {
        let mut channels = self.channels.write();
        self.closed.store(true, Ordering::Release);
        channels.clear();
    }

    /// Watch streams open now.
    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Acquire)
    }

    /// Resync events sent since start.
    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Acquire)
    }

    pub(crate) fn count_resync(&self) {
        self.resyncs.fetch_add(1, Ordering::AcqRel);
    }

    fn publish(&self, namespace: &str, event: FeedEvent) {
        if self.watchers.load(Ordering::Acquire) == 0 {
            return;
        }
        if let Some(sender) = self.channels.read().get(namespace) {
            // No receiver left is not an error: the last one is leaving.
            let _ = sender.send(event);
        }
    }

    fn unsubscribe(&self, namespace: &str) {
        let mut channels = self.channels.write();
        self.watchers.fetch_sub(1, Ordering::AcqRel);
        // The receiver being dropped is already gone from the count.
        if channels
            .get(namespace)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            channels.remove(namespace);
        }
    }
}

impl ChangeSink for ChangeFeed {
    fn record(&self, change: ChangeRecord) {
        let change_kind = match change.kind {
            ChangeKind::Set { .. } => KeyChange::Set,
            ChangeKind::Collection { .. } => KeyChange::Update,
            ChangeKind::ExpiryChanged { .. } => KeyChange::Expiry,
            ChangeKind::Deleted => KeyChange::Delete,
            ChangeKind::Expired => KeyChange::Expire,
            ChangeKind::Evicted => KeyChange::Evict,
        };
        self.publish(
            &change.namespace,
            FeedEvent::Key {
                change: change_kind,
                key: change.key,
                version: change.sequence,
            },
        );
    }

    fn flushed(&self, flush: FlushRecord) {
        self.publish(
            &flush.namespace,
            FeedEvent::Flushed {
                removed: flush.removed,
            },
        );
    }
}

/// One watcher's place in a namespace's feed. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    feed: Arc<ChangeFeed>,
    namespace: Arc<str>,
    /// Always `Some` until dropped.
    receiver: Option<broadcast::Receiver<FeedEvent>>,
}

/// What [`Subscription::next`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// The next event.
    Event(FeedEvent),
    /// This many events were lost; the feed goes on from the oldest kept.
    Missed(u64),
    /// The feed closed (server shutdown).
    Closed,
}

impl Subscription {
    /// Waits for the next event.
    pub async fn next(&mut self) -> Next {
        let Some(receiver) = self.receiver.as_mut() else {
            return Next::Closed;
        };
        match receiver.recv().await {
            Ok(event) => Next::Event(event),
            Err(broadcast::error::RecvError::Lagged(missed)) => Next::Missed(missed),
            Err(broadcast::error::RecvError::Closed) => Next::Closed,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Drop the receiver first so the channel's count no longer includes
        // it when the feed decides whether the channel can go.
        drop(self.receiver.take());
        self.feed.unsubscribe(&self.namespace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(namespace: &str, key: &'static str, kind: ChangeKind) -> ChangeRecord {
        ChangeRecord {
            namespace: Arc::from(namespace),
            shard: 0,
            sequence: 7,
            key: Bytes::from_static(key.as_bytes()),
            kind,
        }
    }

    #[tokio::test]
    async fn watchers_get_their_namespace_only() {
        let feed = ChangeFeed::new(16, 8);
        let mut watcher = feed.subscribe("a").expect("subscribe");
        feed.record(record("b", "x", ChangeKind::Deleted));
        feed.record(record("a", "y", ChangeKind::Expired));
        assert_eq!(
            watcher.next().await,
            Next::Event(FeedEvent::Key {
                change: KeyChange::Expire,
                key: Bytes::from_static(b"y"),
                version: 7,
            })
        );
    }

    #[tokio::test]
    async fn a_slow_watcher_is_told_what_it_missed() {
        let feed = ChangeFeed::new(16, 8);
        let mut watcher = feed.subscribe("a").expect("subscribe");
        for _ in 0..20 {
            feed.record(record("a", "k", ChangeKind::Deleted));
        }
        assert_eq!(watcher.next().await, Next::Missed(4));
        assert!(matches!(watcher.next().await, Next::Event(_)));
    }

    #[tokio::test]
    async fn subscriptions_are_bounded_and_released() {
        let feed = ChangeFeed::new(16, 1);
        let first = feed.subscribe("a").expect("first");
        assert_eq!(
            feed.subscribe("b").expect_err("over the limit"),
            FeedError::TooManyWatchers { max: 1 }
        );
        drop(first);
        assert_eq!(feed.watchers(), 0);
        assert!(feed.channels.read().is_empty(), "idle channels are freed");
        let _second = feed.subscribe("b").expect("room again");
    }

    #[tokio::test]
    async fn closing_ends_every_subscription() {
        let feed = ChangeFeed::new(16, 8);
        let mut watcher = feed.subscribe("a").expect("subscribe");
        feed.close();
        assert_eq!(watcher.next().await, Next::Closed);
        assert_eq!(feed.subscribe("a").expect_err("closed"), FeedError::Closed);
    }
}
