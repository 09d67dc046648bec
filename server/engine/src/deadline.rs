//! Turning an [`Expiry`] request into an absolute deadline.

use super::{EngineError, Expiry};

/// Longest time to live accepted: 100 years. Anything longer is almost
/// certainly a unit mistake (seconds sent as milliseconds twice over).
pub const MAX_TTL_MS: i64 = 100 * 365 * 24 * 60 * 60 * 1000;

/// What an expiry resolves to at the moment a write is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// Never expires.
    Never,
    /// Keep the key's current deadline.
    Keep,
    /// Expires at this Unix millisecond, which is in the future.
    At(u64),
    /// The deadline has already passed: the write removes the key.
    Passed,
}

impl Deadline {
    /// Validates `expiry` and resolves it against `now_ms`.
    pub(crate) fn resolve(expiry: Expiry, now_ms: u64) -> Result<Self, EngineError> {
        match expiry {
            Expiry::Never => Ok(Deadline::Never),
            Expiry::Keep => Ok(Deadline::Keep),
            Expiry::AfterMs(ttl) => {
                if !(1..=MAX_TTL_MS).contains(&ttl) {
                    return Err(EngineError::InvalidExpiry {
                        field: "ttl_ms",
                        reason: format!("is {ttl}, must be between 1 and {MAX_TTL_MS} (100 years)"),
                    });
                }
                Ok(Deadline::At(now_ms.saturating_add(ttl.unsigned_abs())))
            }
            Expiry::AtUnixMs(at) => {
                let latest = now_ms.saturating_add(MAX_TTL_MS.unsigned_abs());
                if at <= 0 || at.unsigned_abs() > latest {
                    return Err(EngineError::InvalidExpiry {
                        field: "at_unix_ms",
                        reason: format!(
                            "is {at}, must be a positive Unix time in milliseconds at most 100 years from now"
                        ),
                    });
                }
                let at = at.unsigned_abs();
                Ok(if at <= now_ms {
                    Deadline::Passed
                } else {
                    Deadline::At(at)
                })
            }
        }
    }

    /// The deadline to store, given the key's current one (0 = none).
    pub(crate) fn stored_ms(self, current_ms: u64) -> u64 {
        match self {
            Deadline::Never | Deadline::Passed => 0,
            Deadline::Keep => current_ms,
            Deadline::At(at) => at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_ttls_become_absolute() {
        assert_eq!(
            Deadline::resolve(Expiry::AfterMs(500), 1_000),
            Ok(Deadline::At(1_500))
        );
        assert_eq!(
            Deadline::resolve(Expiry::AtUnixMs(900), 1_000),
            Ok(Deadline::Passed)
        );
        assert_eq!(
            Deadline::resolve(Expiry::AtUnixMs(1_001), 1_000),
            Ok(Deadline::At(1_001))
        );
    }

    #[test]
    fn rejects_negative_zero_and_absurd_ttls() {
        for expiry in [
            Expiry::AfterMs(0),
            Expiry::AfterMs(-5),
            Expiry::AfterMs(MAX_TTL_MS + 1),
            Expiry::AtUnixMs(0),
            Expiry::AtUnixMs(-1),
            Expiry::AtUnixMs(i64::MAX),
        ] {
            assert!(Deadline::resolve(expiry, 1_000).is_err(), "{expiry:?}");
        }
    }
}
