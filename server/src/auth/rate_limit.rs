//! A token bucket of authentication failures per peer address.
//!
//! Each failure takes a token from its address's bucket; an address with
//! an empty bucket is refused before its credentials are looked at, until
//! the bucket refills. Calls that authenticate never take the lock: an
//! atomic tells whether any address may be held off at all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Addresses tracked at once; past it, addresses that are not held off
/// are forgotten first, and new ones share one bucket.
const MAX_PEERS: usize = 4096;

/// An address's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Failures per address, in bounded memory.
#[derive(Debug)]
pub struct FailureLimiter {
    burst: f64,
    /// Tokens regained per second.
    refill: f64,
    started: Instant,
    /// Milliseconds after `started` until which some address may be held
    /// off; 0 when none is.
    held_until_ms: AtomicU64,
    buckets: Mutex<HashMap<Option<IpAddr>, Bucket>>,
    max_peers: usize,
}

impl FailureLimiter {
    /// Allows `burst` failures at once per address, and `refill_per_minute`
    /// more each minute.
    pub fn new(burst: u32, refill_per_minute: u32) -> Self {
        Self::with_capacity(burst, refill_per_minute, MAX_PEERS)
    }

    fn with_capacity(burst: u32, refill_per_minute: u32, max_peers: usize) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            refill: f64::from(refill_per_minute) / 60.0,
            started: Instant::now(),
            held_until_ms: AtomicU64::new(0),
            buckets: Mutex::new(HashMap::new()),
            max_peers,
        }
    }

    /// Whether calls from `peer` are held off now.
    pub fn is_held_off(&self, peer: Option<IpAddr>) -> bool {
        let held_until = self.held_until_ms.load(Ordering::Relaxed);
        if held_until == 0 {
            return false;
        }
        let now = Instant::now();
        if self.millis(now) >= held_until {
            return false;
        }
        let key = peer.map(bucket_key);
        let mut buckets = self.buckets.lock();
        let bucket = buckets
            .get_mut(&key)
            .map(|bucket| self.refilled(bucket, now));
        match bucket {
            Some(tokens) => tokens < 1.0,
            // An address the map could not hold shares the overflow bucket.
            None if buckets.len() >= self.max_peers => buckets
                .get_mut(&None)
                .is_some_and(|bucket| self.refilled(bucket, now) < 1.0),
            None => false,
        }
    }

    /// Counts a failure from `peer`; true when it has just emptied its
    /// bucket (worth one log line).
    pub fn count_failure(&self, peer: Option<IpAddr>) -> bool {
        let now = Instant::now();
        let mut key = peer.map(bucket_key);
        let mut buckets = self.buckets.lock();
        if !buckets.contains_key(&key) && buckets.len() >= self.max_peers {
            // Forget the addresses whose bucket is full again.
            let burst = self.burst;
            let refill = self.refill;
            buckets.retain(|_, bucket| {
                let elapsed = now.duration_since(bucket.updated).as_secs_f64();
                bucket.tokens + elapsed * refill < burst
            });
            if buckets.len() >= self.max_peers {
                key = None;
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let before = self.refilled(bucket, now);
        bucket.tokens = (before - 1.0).max(0.0);
        if bucket.tokens >= 1.0 {
            return false;
        }
        let until = if self.refill > 0.0 {
            let wait = Duration::from_secs_f64((1.0 - bucket.tokens) / self.refill);
            self.millis(now + wait).max(1)
        } else {
            u64::MAX
        };
        self.held_until_ms.fetch_max(until, Ordering::Relaxed);
        before >= 1.0
    }

    /// The bucket's tokens at `now`, refilled since it was last touched.
    fn refilled(&self, bucket: &mut Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.refill).min(self.burst);
        bucket.updated = now;
        bucket.tokens
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.started).as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().len()
    }
}

/// The bucket an address counts in: an IPv6 address by its /64, which is
/// what one host usually holds.
fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(
                    segments[0],
                    segments[1],
                    segments[2],
                    segments[3],
                    0,
                    0,
                    0,
                    0,
                ))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn an_address_is_held_off_after_its_burst() {
        let limiter = FailureLimiter::new(3, 0);
        let peer = ip("10.0.0.1");
        assert!(!limiter.is_held_off(peer));
        assert!(!limiter.count_failure(peer));
        assert!(!limiter.count_failure(peer));
        assert!(limiter.count_failure(peer), "the third failure empties it");
        assert!(!limiter.count_failure(peer), "reported once");
        assert!(limiter.is_held_off(peer));
        assert!(!limiter.is_held_off(ip("10.0.0.2")), "others go on");
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let limiter = FailureLimiter::new(1, 0);
        limiter.count_failure(ip("2001:db8:1:2::1"));
        assert!(limiter.is_held_off(ip("2001:db8:1:2::ffff")));
        assert!(!limiter.is_held_off(ip("2001:db8:1:3::1")));
    }

    #[test]
    fn memory_stays_bounded() {
        let limiter = FailureLimiter::with_capacity(1, 0, 8);
        for last in 0..100u8 {
            limiter.count_failure(Some(IpAddr::from([10, 0, 1, last])));
        }
        assert!(limiter.tracked() <= 9, "{} tracked", limiter.tracked());
        // Addresses past the bound share one bucket, which is empty.
        assert!(limiter.is_held_off(Some(IpAddr::from([10, 0, 2, 1]))));
    }

    #[test]
    fn buckets_refill() {
        let limiter = FailureLimiter::new(1, 60_000);
        let peer = ip("10.0.0.1");
        limiter.count_failure(peer);
        // 1000 tokens a second: back within a few milliseconds.
        let deadline = Instant::now() + Duration::from_secs(10);
        while limiter.is_held_off(peer) {
            assert!(Instant::now() < deadline, "never refilled");
            std::thread::yield_now();
        }
    }
}
