//! What a benchmark phase sends: which keys, and how many requests.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use rand_distr::{Distribution as _, Zipf};

use crate::args::bench::Distribution;

/// Prefixes of the keys each kind of test works on, so that strings,
/// counters and collections never collide (a GET on a hash would fail with
/// WRONGTYPE).
pub mod prefix {
    /// Strings: set, get, mset, mget, pipeline, delete.
    pub const STRING: &str = "key:";
    /// Counters: incr.
    pub const COUNTER: &str = "counter:";
    /// Hashes: hset, hget.
    pub const HASH: &str = "hash:";
    /// Lists: lpush.
    pub const LIST: &str = "list:";
    /// Sets: sadd (whose members are `member:<id>`).
    pub const SET: &str = "set:";
    /// Members added by sadd.
    pub const MEMBER: &str = "member:";
}

/// `prefix` followed by `id` in twelve digits, as redis-benchmark writes
/// `key:__rand_int__`, so keys have the same length in both.
pub fn key(prefix: &str, id: u64) -> Bytes {
    let mut key = String::with_capacity(prefix.len() + 12);
    key.push_str(prefix);
    let _ = write!(key, "{id:012}");
    Bytes::from(key)
}

/// Which key ids the requests of a phase use.
#[derive(Debug, Clone, Copy)]
pub enum KeyPlan {
    /// Drawn at random from `0..keyspace`.
    Random {
        /// Number of keys.
        keyspace: u64,
        /// How they are drawn.
        distribution: Distribution,
        /// Exponent of the Zipf distribution.
        exponent: f64,
    },
    /// Every id of `0..keyspace` once, in order: request `seq` with `depth`
    /// ids covers `seq * depth ..`. Preloading uses it.
    Sequential {
        /// Number of keys.
        keyspace: u64,
    },
}

impl KeyPlan {
    /// The key ids of one worker, seeded so that a run can be repeated.
    pub fn ids(self, seed: u64) -> KeyIds {
        let draw = match self {
            Self::Random {
                keyspace,
                distribution: Distribution::Zipf,
                exponent,
            } => Draw::Zipf(
                // The arguments were checked: n >= 1, s >= 0 and finite.
                Zipf::new(keyspace as f64, exponent).expect("valid Zipf parameters"),
            ),
            Self::Random { keyspace, .. } => Draw::Uniform(keyspace),
            Self::Sequential { keyspace } => Draw::Sequential(keyspace),
        };
        KeyIds {
            draw,
            rng: SmallRng::seed_from_u64(seed),
        }
    }
}

/// A source of key ids for one worker.
#[derive(Debug)]
pub struct KeyIds {
    draw: Draw,
    rng: SmallRng,
}

#[derive(Debug)]
enum Draw {
    Uniform(u64),
    Zipf(Zipf<f64>),
    Sequential(u64),
}

impl KeyIds {
    /// The ids for request `seq` carrying up to `depth` keys: `depth` random
    /// ids, or the next `depth` ids in order (fewer for the last request).
    pub fn for_request(&mut self, seq: u64, depth: usize) -> impl Iterator<Item = u64> + '_ {
        let (start, end) = match self.draw {
            Draw::Sequential(keyspace) => {
                let start = seq.saturating_mul(depth as u64).min(keyspace);
                (start, start.saturating_add(depth as u64).min(keyspace))
            }
            _ => (0, depth as u64),
        };
        (start..end).map(move |i| self.next(i))
    }

    /// One random id (or `i` itself for a sequential plan).
    pub fn next(&mut self, i: u64) -> u64 {
        match &self.draw {
            Draw::Uniform(keyspace) => self.rng.random_range(0..*keyspace),
            // Rank 1 is the hottest key; it becomes id 0.
            Draw::Zipf(zipf) => (zipf.sample(&mut self.rng) as u64).saturating_sub(1),
            Draw::Sequential(_) => i,
        }
    }
}

/// How many requests a phase sends, shared by its workers.
#[derive(Debug)]
pub enum Budget {
    /// Exactly this many, numbered from 0.
    Count {
        /// Requests in all.
        limit: u64,
        /// Requests handed out so far.
        claimed: AtomicU64,
    },
    /// As many as fit before this instant.
    Until {
        /// When the phase stops starting requests.
        deadline: Instant,
        /// Requests handed out so far.
        claimed: AtomicU64,
    },
}

impl Budget {
    /// A budget of `limit` requests.
    pub fn count(limit: u64) -> Self {
        Self::Count {
            limit,
            claimed: AtomicU64::new(0),
        }
    }

    /// A budget of whatever fits in `duration` from now.
    pub fn time(duration: Duration) -> Self {
        Self::Until {
            deadline: Instant::now() + duration,
            claimed: AtomicU64::new(0),
        }
    }

    /// The sequence number of one more request, or `None` once the budget
    /// is spent.
    pub fn claim(&self) -> Option<u64> {
        match self {
            Self::Count { limit, claimed } => {
                // Workers stop at the first refusal, so the counter passes
                // `limit` by at most one per worker: no overflow.
                let seq = claimed.fetch_add(1, Ordering::Relaxed);
                (seq < *limit).then_some(seq)
            }
            Self::Until { deadline, claimed } => {
                (Instant::now() < *deadline).then(|| claimed.fetch_add(1, Ordering::Relaxed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_look_like_redis_benchmark_keys() {
        assert_eq!(key(prefix::STRING, 42), "key:000000000042");
        assert_eq!(key(prefix::COUNTER, 0), "counter:000000000000");
    }

    #[test]
    fn a_sequential_plan_covers_the_key_space_once() {
        let mut ids = KeyPlan::Sequential { keyspace: 10 }.ids(0);
        let mut seen: Vec<u64> = (0..4)
            .flat_map(|seq| ids.for_request(seq, 3).collect::<Vec<_>>())
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!(ids.for_request(4, 3).count(), 0);
    }

    #[test]
    fn random_ids_stay_in_the_key_space() {
        for distribution in [Distribution::Uniform, Distribution::Zipf] {
            let plan = KeyPlan::Random {
                keyspace: 100,
                distribution,
                exponent: 0.99,
            };
            let mut ids = plan.ids(7);
            let drawn: Vec<u64> = ids.for_request(0, 10_000).collect();
            assert_eq!(drawn.len(), 10_000);
            assert!(drawn.iter().all(|&id| id < 100), "{distribution:?}");
        }
    }

    #[test]
    fn zipf_makes_the_first_keys_hot() {
        let plan = KeyPlan::Random {
            keyspace: 1000,
            distribution: Distribution::Zipf,
            exponent: 0.99,
        };
        let drawn: Vec<u64> = plan.ids(1).for_request(0, 100_000).collect();
        let hottest = drawn.iter().filter(|&&id| id < 10).count();
        // The top 1% of keys draws about 39% of the requests at s = 0.99
        // (a uniform draw would give 1%).
        assert!(hottest > 30_000, "{hottest}");
    }

    #[test]
    fn a_count_budget_hands_out_each_number_once() {
        let budget = Budget::count(3);
        let claimed: Vec<_> = std::iter::from_fn(|| budget.claim()).collect();
        assert_eq!(claimed, [0, 1, 2]);
        assert_eq!(budget.claim(), None);
        assert_eq!(Budget::time(Duration::ZERO).claim(), None);
    }
}
