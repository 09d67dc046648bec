//! When and how long to wait before repeating a failed call.

use std::hash::BuildHasher;
use std::time::Duration;

use crate::error::Error;

/// Whether repeating an RPC can change the outcome, as declared by its
/// `idempotency_level` in the proto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// `NO_SIDE_EFFECTS` or `IDEMPOTENT`: safe to send again.
    Idempotent,
    /// Anything else, such as Increment: sending it twice may apply it twice.
    NotIdempotent,
}

/// Retry policy: how many times an idempotent call is repeated after a
/// transient failure, with exponential backoff and jitter between attempts.
///
/// The wait before retry `n` (1-based) is drawn from
/// `[ceiling / 2, ceiling]`, where `ceiling = min(max_backoff, base_backoff
/// * 2^(n-1))`. A retry never starts after the call's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retries.
    pub max_retries: u32,
    /// Backoff ceiling of the first retry.
    pub base_backoff: Duration,
    /// Largest backoff ceiling.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The default policy (3 retries, 20 ms base, 1 s cap) with another
    /// number of retries.
    #[must_use]
    pub fn with_max_retries(max_retries: u32) -> Self {
        Self {
            max_retries,
            ..Self::default()
        }
    }

    /// A policy that never retries.
    #[must_use]
    pub fn none() -> Self {
        Self::with_max_retries(0)
    }

    /// This policy with other backoff bounds.
    #[must_use]
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base_backoff = base;
        self.max_backoff = max;
        self
    }

    /// Whether to retry after attempt number `attempts` (1-based) failed
    /// with `error`.
    pub(crate) fn should_retry(
        &self,
        idempotency: Idempotency,
        error: &Error,
        attempts: u32,
    ) -> bool {
        idempotency == Idempotency::Idempotent
            && error.is_retryable()
            && attempts <= self.max_retries
    }

    /// The upper bound of the wait before retry `retry` (1-based).
    pub(crate) fn backoff_ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// The wait before retry `retry`: half the ceiling plus a random part of
    /// the other half, so that clients failing together do not retry
    /// together.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        self.jittered(retry, random_u64())
    }

    fn jittered(&self, retry: u32, random: u64) -> Duration {
        let ceiling = self.backoff_ceiling(retry);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(random % spread.saturating_add(1))
    }
}

/// A random number from the standard library's per-instance hash keys,
/// which is plenty for jitter and needs no extra dependency.
fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(0u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> Error {
        Error::from(tonic::Status::unavailable("connection reset"))
    }

    #[test]
    fn retries_only_idempotent_calls() {
        let policy = RetryPolicy::default();
        assert!(policy.should_retry(Idempotency::Idempotent, &unavailable(), 1));
        assert!(!policy.should_retry(Idempotency::NotIdempotent, &unavailable(), 1));
    }

    #[test]
    fn retries_only_transient_errors() {
        let policy = RetryPolicy::default();
        let idem = Idempotency::Idempotent;
        assert!(policy.should_retry(idem, &Error::from(tonic::Status::aborted("")), 1));
        assert!(!policy.should_retry(idem, &Error::DeadlineExceeded, 1));
        assert!(!policy.should_retry(idem, &Error::from(tonic::Status::invalid_argument("")), 1));
        assert!(!policy.should_retry(
            idem,
            &Error::from(tonic::Status::failed_precondition("WRONGTYPE")),
            1
        ));
        assert!(!policy.should_retry(idem, &Error::from(tonic::Status::resource_exhausted("")), 1));
    }

    #[test]
    fn stops_after_max_retries() {
        let policy = RetryPolicy::with_max_retries(2);
        let idem = Idempotency::Idempotent;
        // Attempts 1 and 2 fail and are retried; attempt 3 is the last.
        assert!(policy.should_retry(idem, &unavailable(), 1));
        assert!(policy.should_retry(idem, &unavailable(), 2));
        assert!(!policy.should_retry(idem, &unavailable(), 3));
        assert!(!RetryPolicy::none().should_retry(idem, &unavailable(), 1));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let ceilings: Vec<u64> = (1..=9)
            .map(|n| u64::try_from(policy.backoff_ceiling(n).as_millis()).unwrap())
            .collect();
        assert_eq!(ceilings, [20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        assert_eq!(policy.backoff_ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_between_half_and_full_ceiling() {
        let policy = RetryPolicy::default();
        for retry in 1..=8 {
            let ceiling = policy.backoff_ceiling(retry);
            assert_eq!(policy.jittered(retry, 0), ceiling / 2);
            for random in [1, 12_345, u64::MAX / 3, u64::MAX] {
                let wait = policy.jittered(retry, random);
                assert!(
                    wait >= ceiling / 2 && wait <= ceiling,
                    "{wait:?} outside [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
            }
            let wait = policy.backoff(retry);
            assert!(wait >= ceiling / 2 && wait <= ceiling);
        }
    }
}
