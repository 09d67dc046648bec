//! Built-in synthetic traces: the access shapes that real traces mix and
//! that policies are known to struggle with, generated on the fly so every
//! one can be reproduced without a file.
//!
//! Every generator is deterministic: the random ones draw from `StdRng`
//! seeded with [`SEED`], so a shape gives the same keys on every run of the
//! same build (rand does not promise `StdRng`'s stream across its releases,
//! so figures compare exactly within one `Cargo.lock`).

use std::fmt;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

/// Accesses of a synthetic trace unless `--synthetic-length` says otherwise:
/// enough for the largest default shapes to reach a steady state many times
/// over (a thousand passes of `loop:1000`, fourteen scan cycles of `scan`).
pub const DEFAULT_LENGTH: u64 = 1_000_000;

/// Keys of `zigzag` when no count is given.
pub const DEFAULT_ZIGZAG_KEYS: u64 = 1_000;

/// Keys of a `zipf:S` trace: `0..ZIPF_KEYS`, key 0 the most popular.
pub const ZIPF_KEYS: u64 = 100_000;

/// Hot keys of `scan`: `0..SCAN_HOT_KEYS`, drawn Zipf([`SCAN_HOT_EXPONENT`]).
pub const SCAN_HOT_KEYS: u64 = 10_000;

/// The Zipf exponent of `scan`'s hot set.
pub const SCAN_HOT_EXPONENT: f64 = 0.9;

/// Hot accesses of `scan` between two scans.
pub const SCAN_HOT_RUN: u64 = 50_000;

/// Keys in each of `scan`'s scans, all never seen before: more than a
/// typical capacity, so a cache that admits every key is flushed by them.
pub const SCAN_LENGTH: u64 = 20_000;

/// Accesses in each phase of `phases` and between two moves of `shift`'s
/// hot set.
pub const PHASE_LENGTH: u64 = 100_000;

/// Keys of the Zipf(0.9) hot set of `phases` and `shift`.
pub const PHASE_HOT_KEYS: u64 = 10_000;

/// Keys of the loop phases of `phases`, numbered from [`PHASE_LOOP_BASE`].
pub const PHASE_LOOP_KEYS: u64 = 2_000;

/// The first key of `phases`' loop, above every hot key.
pub const PHASE_LOOP_BASE: u64 = 1 << 32;

/// The Zipf exponent of `oneoff:N`'s hot set.
pub const ONEOFF_HOT_EXPONENT: f64 = 0.9;

/// The first key of `oneoff:N`'s one-time keys, above every hot key.
pub const ONEOFF_FRESH_BASE: u64 = 1 << 40;

/// The Zipf exponent of `drift:N`.
pub const DRIFT_EXPONENT: f64 = 0.9;

/// Accesses of `drift:N` between two moves of its ranking by one key.
pub const DRIFT_STEP: u64 = 100;

/// The seed of every random shape.
pub const SEED: u64 = 0x5ea1_0ad5;

/// The shape of a synthetic trace, as given to `--synthetic`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// `loop:N`: keys `0..N` in order, over and over. An LRU smaller than
    /// the loop never hits; OPT keeps a fixed part of the loop.
    Loop {
        /// N.
        keys: u64,
    },
    /// `scan`: runs of [`SCAN_HOT_RUN`] accesses to [`SCAN_HOT_KEYS`] hot
    /// keys (Zipf [`SCAN_HOT_EXPONENT`], key 0 hottest), each followed by a
    /// scan of [`SCAN_LENGTH`] fresh keys, numbered upwards from
    /// `SCAN_HOT_KEYS` and never repeated; hot accesses come first.
    Scan {
        /// The hot set's distribution.
        hot: Zipf<f64>,
    },
    /// `zigzag[:N]`: keys `0..N` forwards, then backwards, then forwards
    /// again, each pass visiting all N (so the end keys repeat at a turn).
    /// An LRU of C < N keys hits just the C keys after each turn.
    Zigzag {
        /// N, [`DEFAULT_ZIGZAG_KEYS`] when not given.
        keys: u64,
    },
    /// `zipf:S`: independent draws from Zipf with exponent S over
    /// [`ZIPF_KEYS`] keys, key 0 the most popular; S = 0 is uniform.
    Zipf {
        /// S.
        exponent: f64,
        /// The distribution.
        distribution: Zipf<f64>,
    },
    /// `phases`: phases of [`PHASE_LENGTH`] accesses that take turns: Zipf
    /// 0.9 over [`PHASE_HOT_KEYS`] keys (the same keys every time), then a
    /// loop over [`PHASE_LOOP_KEYS`] other keys. A policy must turn from
    /// frequency to the loop and back without losing the hot set.
    Phases {
        /// The hot phases' distribution.
        hot: Zipf<f64>,
    },
    /// `shift`: Zipf 0.9 over [`PHASE_HOT_KEYS`] keys that are all replaced
    /// by new ones every [`PHASE_LENGTH`] accesses: yesterday's hottest keys
    /// are never read again, so counts from an old phase only mislead.
    Shift {
        /// The distribution within a phase.
        hot: Zipf<f64>,
    },
    /// `oneoff:N`: every access is, with even odds, a key never seen
    /// before (numbered upwards from [`ONEOFF_FRESH_BASE`]) or a draw from
    /// Zipf [`ONEOFF_HOT_EXPONENT`] over N hot keys: a hot set read amid
    /// a steady stream of one-time keys (a crawler, a batch job), so that
    /// a frequency filter sees far more distinct keys per sample than the
    /// cache holds.
    OneOff {
        /// N.
        keys: u64,
        /// The hot set's distribution.
        hot: Zipf<f64>,
    },
    /// `drift:N`: Zipf [`DRIFT_EXPONENT`] over N keys whose ranking moves
    /// by one key every [`DRIFT_STEP`] accesses: the hottest key is never
    /// read again, every other key gets one rank hotter, and a key never
    /// seen before takes the coldest rank. Popularity changes gradually,
    /// so counts from the past mislead a little all the time instead of
    /// all at once as in `shift`.
    Drift {
        /// N.
        keys: u64,
        /// The distribution of ranks.
        hot: Zipf<f64>,
    },
}

/// What `--synthetic` accepts, for error messages.
const SPECS: &str = "loop:N, scan, zigzag, zigzag:N, zipf:S, phases, shift, oneoff:N or drift:N";

impl FromStr for Shape {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (name, parameter) = match spec.split_once(':') {
            Some((name, parameter)) => (name, Some(parameter)),
            None => (spec, None),
        };
        match (name, parameter) {
            ("loop", Some(keys)) => Ok(Shape::Loop {
                keys: key_count(keys)?,
            }),
            ("loop", None) => Err("`loop` needs its number of keys, as in loop:1000".into()),
            ("scan", None) => Ok(Shape::Scan {
                hot: zipf(SCAN_HOT_KEYS, SCAN_HOT_EXPONENT)?,
            }),
            ("scan", Some(_)) => Err("`scan` takes no parameter".into()),
            ("phases", None) => Ok(Shape::Phases {
                hot: zipf(PHASE_HOT_KEYS, SCAN_HOT_EXPONENT)?,
            }),
            ("shift", None) => Ok(Shape::Shift {
                hot: zipf(PHASE_HOT_KEYS, SCAN_HOT_EXPONENT)?,
            }),
            ("phases" | "shift", Some(_)) => Err(format!("`{name}` takes no parameter")),
            ("zigzag", keys) => Ok(Shape::Zigzag {
                keys: keys.map_or(Ok(DEFAULT_ZIGZAG_KEYS), key_count)?,
            }),
            ("zipf", Some(text)) => {
                let exponent: f64 = text
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| {
                        format!("zipf exponent must be a number of at least 0, got {text:?}")
                    })?;
                Ok(Shape::Zipf {
                    exponent,
                    distribution: zipf(ZIPF_KEYS, exponent)?,
                })
            }
            ("oneoff", Some(keys)) => {
                let keys = key_count(keys)?;
                Ok(Shape::OneOff {
                    keys,
                    hot: zipf(keys, ONEOFF_HOT_EXPONENT)?,
                })
            }
            ("oneoff", None) => {
                Err("`oneoff` needs its number of hot keys, as in oneoff:2000".into())
            }
            ("drift", Some(keys)) => {
                let keys = key_count(keys)?;
                Ok(Shape::Drift {
                    keys,
                    hot: zipf(keys, DRIFT_EXPONENT)?,
                })
            }
            ("drift", None) => Err("`drift` needs its number of keys, as in drift:10000".into()),
            ("zipf", None) => Err("`zipf` needs its exponent, as in zipf:0.9".into()),
            _ => Err(format!(
                "unknown synthetic trace {spec:?}: expected {SPECS}"
            )),
        }
    }
}

/// Parses the key count of `loop:N` or `zigzag:N`.
fn key_count(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(keys) if keys > 0 => Ok(keys),
        _ => Err(format!(
            "expected a number of keys of at least 1, got {text:?}"
        )),
    }
}

/// Zipf with exponent `exponent` over `keys` keys.
fn zipf(keys: u64, exponent: f64) -> Result<Zipf<f64>, String> {
    Zipf::new(keys as f64, exponent).map_err(|error| error.to_string())
}

impl fmt::Display for Shape {
    /// The spec that gives this shape, with defaults spelt out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Loop { keys } => write!(f, "loop:{keys}"),
            Shape::Scan { .. } => f.write_str("scan"),
            Shape::Zigzag { keys } => write!(f, "zigzag:{keys}"),
            Shape::Zipf { exponent, .. } => write!(f, "zipf:{exponent}"),
            Shape::Phases { .. } => f.write_str("phases"),
            Shape::Shift { .. } => f.write_str("shift"),
            Shape::OneOff { keys, .. } => write!(f, "oneoff:{keys}"),
            Shape::Drift { keys, .. } => write!(f, "drift:{keys}"),
        }
    }
}

/// A synthetic trace: a shape and how many accesses to make of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Synthetic {
    /// What the accesses look like.
    pub shape: Shape,
    /// How many there are.
    pub length: u64,
}

impl Synthetic {
    /// The trace's keys, from the start; every call gives the same ones.
    pub fn keys(&self) -> Keys {
        let generator = match self.shape {
            Shape::Loop { keys } => Generator::Loop { keys },
            Shape::Zigzag { keys } => Generator::Zigzag { keys },
            Shape::Zipf { distribution, .. } => Generator::Zipf {
                distribution,
                rng: StdRng::seed_from_u64(SEED),
            },
            Shape::Scan { hot } => Generator::Scan {
                hot,
                rng: StdRng::seed_from_u64(SEED),
                next_fresh: SCAN_HOT_KEYS,
            },
            Shape::Phases { hot } => Generator::Phases {
                hot,
                rng: StdRng::seed_from_u64(SEED),
            },
            Shape::Shift { hot } => Generator::Shift {
                hot,
                rng: StdRng::seed_from_u64(SEED),
            },
            Shape::OneOff { hot, .. } => Generator::OneOff {
                hot,
                rng: StdRng::seed_from_u64(SEED),
                next_fresh: ONEOFF_FRESH_BASE,
            },
            Shape::Drift { hot, .. } => Generator::Drift {
                hot,
                rng: StdRng::seed_from_u64(SEED),
            },
        };
        Keys {
            generator,
            made: 0,
            length: self.length,
        }
    }
}

/// The keys of a [`Synthetic`] trace.
pub struct Keys {
    generator: Generator,
    made: u64,
    length: u64,
}

/// The state each shape needs to make its next key.
enum Generator {
    Loop {
        keys: u64,
    },
    Zigzag {
        keys: u64,
    },
    Zipf {
        distribution: Zipf<f64>,
        rng: StdRng,
    },
    Scan {
        hot: Zipf<f64>,
        rng: StdRng,
        next_fresh: u64,
    },
    Phases {
        hot: Zipf<f64>,
        rng: StdRng,
    },
    Shift {
        hot: Zipf<f64>,
        rng: StdRng,
    },
    OneOff {
        hot: Zipf<f64>,
        rng: StdRng,
        next_fresh: u64,
    },
    Drift {
        hot: Zipf<f64>,
        rng: StdRng,
    },
}

/// Key `rank - 1` for a Zipf draw of `rank` in `1..=n`.
fn ranked(draw: f64) -> u64 {
    (draw as u64).saturating_sub(1)
}

impl Iterator for Keys {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.made == self.length {
            return None;
        }
        let at = self.made;
        self.made += 1;
        Some(match &mut self.generator {
            Generator::Loop { keys } => at % *keys,
            Generator::Zigzag { keys } => {
                let offset = at % *keys;
                if (at / *keys).is_multiple_of(2) {
                    offset
                } else {
                    *keys - 1 - offset
                }
            }
            Generator::Zipf { distribution, rng } => ranked(distribution.sample(rng)),
            Generator::Scan {
                hot,
                rng,
                next_fresh,
            } => {
                if at % (SCAN_HOT_RUN + SCAN_LENGTH) < SCAN_HOT_RUN {
                    ranked(hot.sample(rng))
                } else {
                    let key = *next_fresh;
                    *next_fresh += 1;
                    key
                }
            }
            Generator::Phases { hot, rng } => {
                if (at / PHASE_LENGTH).is_multiple_of(2) {
                    ranked(hot.sample(rng))
                } else {
                    PHASE_LOOP_BASE + at % PHASE_LOOP_KEYS
                }
            }
            Generator::Shift { hot, rng } => {
                (at / PHASE_LENGTH) * PHASE_HOT_KEYS + ranked(hot.sample(rng))
            }
            Generator::OneOff {
                hot,
                rng,
                next_fresh,
            } => {
                if rng.random_bool(0.5) {
                    let key = *next_fresh;
                    *next_fresh += 1;
                    key
                } else {
                    ranked(hot.sample(rng))
                }
            }
            Generator::Drift { hot, rng } => at / DRIFT_STEP + ranked(hot.sample(rng)),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.length - self.made).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

#[cfg(test)]
mod tests {
    use hashbrown::{HashMap, HashSet};

    use super::*;

    fn shape(spec: &str) -> Shape {
        spec.parse()
            .unwrap_or_else(|error| panic!("{spec}: {error}"))
    }

    fn keys(spec: &str, length: u64) -> Vec<u64> {
        Synthetic {
            shape: shape(spec),
            length,
        }
        .keys()
        .collect()
    }

    #[test]
    fn specs_parse_and_print_back() {
        for (spec, printed) in [
            ("loop:1200", "loop:1200"),
            ("scan", "scan"),
            ("zigzag", "zigzag:1000"),
            ("zigzag:1500", "zigzag:1500"),
            ("zipf:0.9", "zipf:0.9"),
            ("zipf:1", "zipf:1"),
            ("zipf:0", "zipf:0"),
            ("phases", "phases"),
            ("shift", "shift"),
            ("oneoff:2000", "oneoff:2000"),
            ("drift:10000", "drift:10000"),
        ] {
            assert_eq!(shape(spec).to_string(), printed);
        }
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (spec, needle) in [
            ("loop", "needs its number of keys"),
            ("loop:0", "at least 1"),
            ("loop:x", "at least 1"),
            ("loop:-3", "at least 1"),
            ("scan:5", "no parameter"),
            ("phases:2", "no parameter"),
            ("shift:1", "no parameter"),
            ("zigzag:0", "at least 1"),
            ("zipf", "needs its exponent"),
            ("oneoff", "needs its number of hot keys"),
            ("drift", "needs its number of keys"),
            ("drift:0", "at least 1"),
            ("oneoff:0", "at least 1"),
            ("zipf:-1", "at least 0"),
            ("zipf:nan", "at least 0"),
            ("zipf:inf", "at least 0"),
            ("zipf:", "at least 0"),
            ("lru:10", "expected loop:N, scan"),
            ("", "unknown synthetic trace"),
        ] {
            let error = spec.parse::<Shape>().expect_err(spec);
            assert!(error.contains(needle), "{spec}: {error}");
        }
    }

    #[test]
    fn a_trace_has_exactly_its_length() {
        for spec in ["loop:7", "scan", "zigzag:5", "zipf:0.9", "phases", "shift"] {
            for length in [0, 1, 1_234] {
                let trace = Synthetic {
                    shape: shape(spec),
                    length,
                };
                assert_eq!(
                    trace.keys().size_hint(),
                    (length as usize, Some(length as usize))
                );
                assert_eq!(trace.keys().count() as u64, length, "{spec}");
            }
        }
    }

    #[test]
    fn the_loop_cycles_through_its_keys() {
        assert_eq!(keys("loop:3", 8), [0, 1, 2, 0, 1, 2, 0, 1]);
        let long = keys("loop:1000", 5_000);
        for (at, &key) in long.iter().enumerate() {
            assert_eq!(key, at as u64 % 1000);
        }
        assert!(keys("loop:1", 4).iter().all(|&key| key == 0));
    }

    #[test]
    fn the_zigzag_reverses_at_each_end() {
        assert_eq!(
            keys("zigzag:3", 13),
            [0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0]
        );
        let long = keys("zigzag", 4_000);
        assert_eq!(long[..3], [0, 1, 2]);
        assert_eq!(long[999..1002], [999, 999, 998]);
        assert_eq!(long[1999..2001], [0, 0]);
        let backwards: Vec<u64> = (0..1000).rev().collect();
        assert_eq!(long[1000..2000], backwards[..]);
    }

    #[test]
    fn scan_keys_are_fresh_and_never_repeated() {
        let cycle = (SCAN_HOT_RUN + SCAN_LENGTH) as usize;
        let trace = keys("scan", 3 * cycle as u64);
        let mut scanned = HashSet::new();
        for (at, &key) in trace.iter().enumerate() {
            if at % cycle < SCAN_HOT_RUN as usize {
                assert!(key < SCAN_HOT_KEYS, "hot access {at} is key {key}");
            } else {
                assert!(key >= SCAN_HOT_KEYS, "scan access {at} is key {key}");
                assert!(scanned.insert(key), "scan key {key} repeated");
            }
        }
        assert_eq!(scanned.len(), 3 * SCAN_LENGTH as usize);
        // The scans are runs of consecutive fresh keys.
        let first_scan = &trace[SCAN_HOT_RUN as usize..cycle];
        assert!(first_scan.windows(2).all(|pair| pair[1] == pair[0] + 1));
    }

    #[test]
    fn scan_hot_keys_are_skewed() {
        let trace = keys("scan", SCAN_HOT_RUN);
        let mut counts: HashMap<u64, u64> = HashMap::new();
        for &key in &trace {
            *counts.entry(key).or_default() += 1;
        }
        // Zipf(0.9) over 10 000 keys gives key 0 about 5.4 % of draws.
        let hottest = counts.get(&0).copied().unwrap_or(0);
        assert!(hottest > SCAN_HOT_RUN / 40, "key 0 drawn {hottest} times");
        assert!(counts.len() > 3_000, "{} distinct hot keys", counts.len());
    }

    #[test]
    fn zipf_draws_stay_in_the_key_space_and_favour_low_keys() {
        let trace = keys("zipf:0.9", 100_000);
        assert!(trace.iter().all(|&key| key < ZIPF_KEYS));
        let low = trace.iter().filter(|&&key| key < 100).count();
        assert!(low > 10_000, "{low} draws below 100");
        let uniform = keys("zipf:0", 100_000);
        let low = uniform.iter().filter(|&&key| key < 100).count();
        assert!(low < 500, "{low} uniform draws below 100");
    }

    #[test]
    fn phases_alternate_a_hot_set_and_a_loop() {
        let length = PHASE_LENGTH as usize;
        let trace = keys("phases", 4 * PHASE_LENGTH);
        for (phase, accesses) in trace.chunks(length).enumerate() {
            if phase % 2 == 0 {
                assert!(accesses.iter().all(|&key| key < PHASE_HOT_KEYS));
            } else {
                let looped: Vec<u64> = (0..length as u64)
                    .map(|at| {
                        PHASE_LOOP_BASE + (phase as u64 * PHASE_LENGTH + at) % PHASE_LOOP_KEYS
                    })
                    .collect();
                assert_eq!(accesses, &looped[..]);
            }
        }
    }

    #[test]
    fn shift_moves_the_whole_hot_set_each_phase() {
        let length = PHASE_LENGTH as usize;
        let trace = keys("shift", 3 * PHASE_LENGTH);
        for (phase, accesses) in trace.chunks(length).enumerate() {
            let base = phase as u64 * PHASE_HOT_KEYS;
            assert!(
                accesses
                    .iter()
                    .all(|&key| (base..base + PHASE_HOT_KEYS).contains(&key))
            );
            // Skewed: the phase's first key is its hottest.
            let first = accesses.iter().filter(|&&key| key == base).count();
            assert!(first > length / 40, "{first}");
        }
    }

    #[test]
    fn oneoff_mixes_a_hot_set_with_keys_never_seen_again() {
        let trace = keys("oneoff:2000", 100_000);
        let fresh: Vec<u64> = trace
            .iter()
            .copied()
            .filter(|&key| key >= ONEOFF_FRESH_BASE)
            .collect();
        assert!((45_000..55_000).contains(&fresh.len()), "{}", fresh.len());
        assert_eq!(fresh.iter().collect::<HashSet<_>>().len(), fresh.len());
        assert!(
            trace
                .iter()
                .all(|&key| !(2_000..ONEOFF_FRESH_BASE).contains(&key))
        );
        let hot = trace.len() - fresh.len();
        let top = trace.iter().filter(|&&key| key < 20).count();
        assert!(top > hot / 5, "{top} of {hot} hot reads on the top 1 %");
    }

    #[test]
    fn drift_moves_the_ranking_one_key_at_a_time() {
        let trace = keys("drift:1000", 100_000);
        // Early on keys 0..1000; by the end the ranking moved 999 keys.
        assert!(trace[..DRIFT_STEP as usize].iter().all(|&key| key < 1_000));
        let last = &trace[trace.len() - DRIFT_STEP as usize..];
        assert!(last.iter().all(|&key| (999..1_999).contains(&key)));
        // The hottest key of the moment is the most read of its step.
        let mut counts = HashMap::new();
        for &key in last {
            *counts.entry(key).or_insert(0) += 1;
        }
        assert!(counts.get(&999).copied().unwrap_or(0) > 5, "{counts:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        for spec in [
            "scan", "zipf:0.9", "zipf:1.2", "loop:10", "zigzag:7", "phases", "shift", "drift:50",
        ] {
            assert_eq!(keys(spec, 100_000), keys(spec, 100_000), "{spec}");
        }
        // A shorter trace is a prefix of a longer one.
        assert_eq!(keys("zipf:0.9", 500)[..], keys("zipf:0.9", 1_000)[..500]);
        assert_ne!(keys("zipf:0.9", 1_000), keys("zipf:1.1", 1_000));
    }
}
