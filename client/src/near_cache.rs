//! [`NearCache`]: a bounded in-process cache (L1) in front of the server,
//! kept coherent by the Watch feed.
//!
//! Coherence rules:
//! - the L1 serves only while its Watch subscription is live; before the
//!   first subscription, after a disconnect and until the next one, reads go
//!   to the server;
//! - a change event for a key removes it from the L1, so once the event of
//!   an acknowledged write (from any client) has arrived, no L1 serves the
//!   old value;
//! - a resync, a flush or a lost subscription clears the whole L1 before it
//!   serves again;
//! - a read that raced with a change does not refill the L1 with what it
//!   read: each key maps to one of a few counters bumped by every change to
//!   keys of that stripe, and a fill whose counter moved is undone.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio_stream::StreamExt as _;

use crate::client::Client;
use crate::error::Result;
use crate::watch::{WatchEvent, WatchOptions};

/// Change counters; more stripes mean fewer fills undone by unrelated
/// changes.
const STRIPES: usize = 256;
/// Wait before the first resubscription; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Size of a [`NearCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NearCacheOptions {
    /// Bytes of keys and values the L1 holds at most.
    pub max_bytes: u64,
    /// Values larger than this are never kept in the L1.
    pub max_value_bytes: usize,
}

impl Default for NearCacheOptions {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            max_value_bytes: 1024 * 1024,
        }
    }
}

/// What a near cache did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NearCacheStats {
    /// Reads answered by the L1.
    pub hits: u64,
    /// Reads that went to the server.
    pub misses: u64,
    /// Keys removed from the L1 by change events or local writes.
    pub invalidations: u64,
    /// Times the whole L1 was cleared (resync, flush, lost subscription).
    pub clears: u64,
    /// Watch subscriptions made (1 when never interrupted).
    pub subscriptions: u64,
    /// Entries held now.
    pub entries: u64,
    /// Whether the L1 is serving (its subscription is live).
    pub live: bool,
}

#[derive(Clone)]
struct EntryWeight;

impl quick_cache::Weighter<Bytes, Bytes> for EntryWeight {
    fn weight(&self, key: &Bytes, value: &Bytes) -> u64 {
        // A fixed cost per entry keeps tiny values from being free.
        (key.len() + value.len() + 64) as u64
    }
}

struct Shared {
    entries: quick_cache::sync::Cache<Bytes, Bytes, EntryWeight>,
    stripes: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
    live: AtomicBool,
    max_value_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
    clears: AtomicU64,
    subscriptions: AtomicU64,
}

impl Shared {
    fn stripe(&self, key: &[u8]) -> &AtomicU64 {
        let at = self.hasher.hash_one(key) as usize % STRIPES;
        &self.stripes[at]
    }

    /// Removes one key; the counter moves first so that a fill in flight
    /// sees it.
    fn invalidate(&self, key: &[u8]) {
        self.stripe(key).fetch_add(1, Ordering::AcqRel);
        self.entries.remove(key);
        self.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    fn clear(&self) {
        for stripe in &*self.stripes {
            stripe.fetch_add(1, Ordering::AcqRel);
        }
        self.entries.clear();
        self.clears.fetch_add(1, Ordering::Relaxed);
    }

    fn go_offline(&self) {
        self.live.store(false, Ordering::Release);
        self.clear();
    }
}

/// Stops the watcher task when the last handle goes.
struct WatcherGuard(tokio::task::AbortHandle);

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A [`Client`] handle with a coherent in-process cache of string values in
/// front of it. Clones share the L1 and its subscription.
///
/// ```no_run
/// # async fn demo(client: shoal_client::Client) -> shoal_client::Result<()> {
/// use shoal_client::NearCacheOptions;
///
/// let near = client.near_cache(NearCacheOptions::default());
/// near.get("config:flags").await?; // from the server
/// near.get("config:flags").await?; // from the L1, until the key changes
/// println!("{:?}", near.stats());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct NearCache {
    client: Client,
    shared: Arc<Shared>,
    _watcher: Arc<WatcherGuard>,
}

impl std::fmt::Debug for NearCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearCache")
            .field("namespace", &self.client.namespace())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A near cache over this handle's namespace. It starts serving from
    /// the L1 once its Watch subscription is in place (a few milliseconds);
    /// until then, and whenever the subscription is lost, reads go to the
    /// server. Must be called within a Tokio runtime.
    pub fn near_cache(&self, options: NearCacheOptions) -> NearCache {
        let shared = Arc::new(Shared {
            entries: quick_cache::sync::Cache::with_weighter(
                usize::try_from(options.max_bytes / 1024)
                    .unwrap_or(usize::MAX)
                    .max(16),
                options.max_bytes,
                EntryWeight,
            ),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            live: AtomicBool::new(false),
            max_value_bytes: options.max_value_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            clears: AtomicU64::new(0),
            subscriptions: AtomicU64::new(0),
        });
        let task = tokio::spawn(follow(self.clone(), Arc::clone(&shared)));
        NearCache {
            client: self.clone(),
            shared,
            _watcher: Arc::new(WatcherGuard(task.abort_handle())),
        }
    }
}

/// Keeps the L1 coherent: subscribes, applies events, and on any loss
/// clears the L1 and subscribes again with backoff.
async fn follow(client: Client, shared: Arc<Shared>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match client.watch(WatchOptions::all()).await {
            Ok(mut events) => {
                shared.subscriptions.fetch_add(1, Ordering::Relaxed);
                // Anything filled while offline was never served, but start
                // from empty all the same.
                shared.clear();
                shared.live.store(true, Ordering::Release);
                backoff = MIN_BACKOFF;
                while let Some(event) = events.next().await {
                    match event {
                        Ok(WatchEvent::Changed { key, .. }) => shared.invalidate(&key),
                        Ok(WatchEvent::Flushed { .. } | WatchEvent::Resync { .. }) => {
                            shared.clear();
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::debug!(%error, "near cache lost its watch");
                            break;
                        }
                    }
                }
                shared.go_offline();
            }
            Err(error) => {
                tracing::debug!(%error, ?backoff, "near cache cannot watch yet");
                shared.go_offline();
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

impl NearCache {
    /// The value of a string key: from the L1 when it holds the key and is
    /// live, otherwise from the server (and then kept in the L1). Misses
    /// are not cached.
    ///
    /// # Errors
    ///
    /// As [`Client::get`].
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        let shared = &self.shared;
        if shared.live.load(Ordering::Acquire)
            && let Some(value) = shared.entries.get(key)
        {
            shared.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(value));
        }
        shared.misses.fetch_add(1, Ordering::Relaxed);
        let stripe = shared.stripe(key);
        let before = stripe.load(Ordering::Acquire);
        let was_live = shared.live.load(Ordering::Acquire);
        let value = self.client.get(key).await?;
        let fill = value
            .as_ref()
            .filter(|value| was_live && value.len() <= shared.max_value_bytes);
        if let Some(value) = fill {
            let key = Bytes::copy_from_slice(key);
            shared.entries.insert(key.clone(), value.clone());
            // A change (or a loss of the feed) since the read began means
            // the value may already be stale: undo the fill.
            if stripe.load(Ordering::Acquire) != before || !shared.live.load(Ordering::Acquire) {
                shared.entries.remove(&key);
            }
        }
        Ok(value)
    }

    /// Writes through to the server and drops the key from this L1 (the
    /// change event does the same for every other near cache).
    ///
    /// # Errors
    ///
    /// As [`Client::set`].
    pub async fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
    ) -> Result<crate::SetResult> {
        let key = key.as_ref();
        let result = self.client.set(key, value).await;
        self.shared.invalidate(key);
        result
    }

    /// Deletes through to the server and drops the keys from this L1.
    ///
    /// # Errors
    ///
    /// As [`Client::delete`].
    pub async fn delete<K: AsRef<[u8]>>(&self, keys: impl IntoIterator<Item = K>) -> Result<u64> {
        let keys: Vec<Bytes> = keys
            .into_iter()
            .map(|key| Bytes::copy_from_slice(key.as_ref()))
            .collect();
        let result = self.client.delete(&keys).await;
        for key in &keys {
            self.shared.invalidate(key);
        }
        result
    }

    /// The client behind this cache, for every other operation.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Counters of this L1.
    #[must_use]
    pub fn stats(&self) -> NearCacheStats {
        let shared = &self.shared;
        NearCacheStats {
            hits: shared.hits.load(Ordering::Relaxed),
            misses: shared.misses.load(Ordering::Relaxed),
            invalidations: shared.invalidations.load(Ordering::Relaxed),
            clears: shared.clears.load(Ordering::Relaxed),
            subscriptions: shared.subscriptions.load(Ordering::Relaxed),
            entries: shared.entries.len() as u64,
            live: shared.live.load(Ordering::Acquire),
        }
    }

    /// Whether the L1 is serving: its subscription is in place.
    #[must_use]
    pub fn is_live(&self) -> bool {
        self.shared.live.load(Ordering::Acquire)
    }
}
