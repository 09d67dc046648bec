//! Figures of the Watch feed that the metrics report.
//!
//! Updated by the Watch service; read by the `/metrics` collector at scrape
//! time as `shoal_watch_subscribers` and `shoal_watch_resyncs_total`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Subscribers of the Watch feed and the resyncs it has ordered.
#[derive(Debug, Default)]
pub struct WatchStats {
    subscribers: AtomicU64,
    resyncs: AtomicU64,
}

impl WatchStats {
    /// A subscriber joined the feed.
    pub fn subscriber_joined(&self) {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
    }

    /// A subscriber left the feed (its stream ended, for whatever reason).
    pub fn subscriber_left(&self) {
        // Saturating, so that a stray extra call cannot wrap the gauge.
        let _ = self
            .subscribers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
                Some(count.saturating_sub(1))
            });
    }

    /// A subscriber fell too far behind and was told to resync.
    pub fn resync_ordered(&self) {
        self.resyncs.fetch_add(1, Ordering::Relaxed);
    }

    /// Subscribers now.
    pub fn subscribers(&self) -> u64 {
        self.subscribers.load(Ordering::Relaxed)
    }

    /// Resyncs ordered since start-up.
    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_go_up_and_down_and_never_wrap() {
        let stats = WatchStats::default();
        stats.subscriber_joined();
        stats.subscriber_joined();
        stats.subscriber_left();
        stats.resync_ordered();
        assert_eq!((stats.subscribers(), stats.resyncs()), (1, 1));
        stats.subscriber_left();
        stats.subscriber_left();
        assert_eq!(stats.subscribers(), 0);
    }
}
