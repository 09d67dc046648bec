//! Replaying traces against caches, one replay per trace × capacity × cache,
//! spread over worker threads, and OPT for every trace × capacity.
//!
//! Each replay owns its cache and reads the trace afresh, so replays share
//! nothing and their results do not depend on how they are scheduled. OPT
//! needs a whole trace in memory; each trace is loaded once, before the
//! replays, and released once its OPT figures are in, so at most one trace
//! is held at a time.

use std::convert::Infallible;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::caches::{CacheKind, CacheState, ReplayCache};
use crate::opt::{NextUses, OptResult};
use crate::source::TraceSource;
use crate::trace::{TraceError, TraceSummary};

/// Everything one run replays.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The traces, in the order given.
    pub sources: Vec<TraceSource>,
    /// Cache capacities in entries, in the order given.
    pub capacities: Vec<NonZeroUsize>,
    /// Shards per namespace for shoal's engine.
    pub shards: usize,
    /// Replay at most this many accesses of each trace.
    pub limit: Option<u64>,
    /// Worker threads.
    pub threads: NonZeroUsize,
    /// Report each finished replay on standard error.
    pub progress: bool,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A trace could not be read.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// A cache failed to build or failed during a replay.
    #[error("{trace}: capacity {capacity}: {cache}: {message}")]
    Cache {
        /// The trace's name.
        trace: String,
        /// The capacity replayed.
        capacity: usize,
        /// The cache that failed.
        cache: String,
        /// What went wrong.
        message: String,
    },
}

/// The outcome of one replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurement {
    /// Accesses that hit.
    pub hits: u64,
    /// Accesses replayed.
    pub accesses: u64,
    /// The cache's own account of itself at the end.
    pub state: CacheState,
}

impl Measurement {
    /// Hits as a percentage of accesses; 0 for an empty replay.
    pub fn hit_percent(&self) -> f64 {
        if self.accesses == 0 {
            0.0
        } else {
            self.hits as f64 * 100.0 / self.accesses as f64
        }
    }
}

/// The results for one trace.
#[derive(Debug, Clone)]
pub struct TraceResults {
    /// The trace as given.
    pub source: TraceSource,
    /// Its counts, from loading it.
    pub summary: TraceSummary,
    /// One entry per capacity, in plan order.
    pub rows: Vec<CapacityResults>,
}

/// The results for one trace at one capacity.
#[derive(Debug, Clone)]
pub struct CapacityResults {
    /// Entries each cache could hold.
    pub capacity: NonZeroUsize,
    /// Belady's optimum at this capacity, for one unsharded cache.
    pub opt: OptResult,
    /// Every cache of [`CacheKind::all`], with `None` for one that is not
    /// replayable.
    pub caches: Vec<(CacheKind, Option<Measurement>)>,
}

/// Replays `cache` over `accesses`.
///
/// # Errors
/// The first error of `accesses`, or the cache's own failure.
pub fn replay(
    cache: &mut dyn ReplayCache,
    accesses: impl Iterator<Item = Result<u64, TraceError>>,
) -> Result<Result<Measurement, String>, TraceError> {
    let mut hits = 0;
    let mut count = 0;
    for key in accesses {
        hits += u64::from(cache.access(key?));
        count += 1;
    }
    Ok(cache.finish().map(|state| Measurement {
        hits,
        accesses: count,
        state,
    }))
}

/// One replay to run.
struct Job {
    trace: usize,
    capacity: usize,
    cache: usize,
}

/// Loads every trace, checking it and working out OPT at every capacity,
/// then runs every replay of `plan`.
///
/// # Errors
/// The first trace that cannot be read, or the first cache that fails.
pub fn run(plan: &Plan) -> Result<Vec<TraceResults>, ReplayError> {
    let kinds = CacheKind::all();
    let mut results = Vec::with_capacity(plan.sources.len());
    for source in &plan.sources {
        let (summary, opt) = optimum(plan, source)?;
        let rows = plan
            .capacities
            .iter()
            .zip(opt)
            .map(|(&capacity, opt)| CapacityResults {
                capacity,
                opt,
                caches: kinds.iter().map(|&kind| (kind, None)).collect(),
            })
            .collect();
        results.push(TraceResults {
            source: source.clone(),
            summary,
            rows,
        });
    }

    let mut jobs = Vec::new();
    for trace in 0..plan.sources.len() {
        for capacity in 0..plan.capacities.len() {
            for (cache, kind) in kinds.iter().enumerate() {
                if kind.is_replayable() {
                    jobs.push(Job {
                        trace,
                        capacity,
                        cache,
                    });
                }
            }
        }
    }
    let outcomes = on_threads(&jobs, plan.threads, |job| {
        run_job(plan, kinds[job.cache], job)
    });
    for (job, outcome) in jobs.iter().zip(outcomes) {
        if let Some(outcome) = outcome {
            results[job.trace].rows[job.capacity].caches[job.cache].1 = Some(outcome?);
        }
    }
    Ok(results)
}

/// Loads `source` and works out its counts and OPT at each capacity of
/// `plan`, in plan order.
///
/// # Errors
/// The trace cannot be read.
fn optimum(
    plan: &Plan,
    source: &TraceSource,
) -> Result<(TraceSummary, Vec<OptResult>), TraceError> {
    let started = Instant::now();
    let keys = source.load(plan.limit)?;
    let next_uses = NextUses::new(&keys);
    drop(keys);
    let summary = TraceSummary {
        accesses: next_uses.accesses(),
        unique_keys: next_uses.distinct_keys(),
    };
    if plan.progress {
        eprintln!(
            "{}: {} accesses, {} unique blocks",
            source.name(),
            summary.accesses,
            summary.unique_keys
        );
    }
    let opt = on_threads(&plan.capacities, plan.threads, |&capacity| {
        Ok::<_, Infallible>(next_uses.simulate(capacity))
    })
    .into_iter()
    // No job can fail, so every one ran.
    .flatten()
    .map(|Ok(opt)| opt)
    .collect::<Vec<_>>();
    if plan.progress {
        for (capacity, result) in plan.capacities.iter().zip(&opt) {
            eprintln!(
                "{} capacity {capacity} opt: {:.2}% hits",
                source.name(),
                result.hit_percent()
            );
        }
        eprintln!(
            "{}: loaded and OPT worked out in {:.1} s",
            source.name(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok((summary, opt))
}

/// Runs `work` on every job over `threads` worker threads, and gives back
/// each job's outcome in job order. Once a job fails no new one starts, so
/// the jobs that did not run are `None`.
fn on_threads<J: Sync, T: Send, E: Send>(
    jobs: &[J],
    threads: NonZeroUsize,
    work: impl Fn(&J) -> Result<T, E> + Sync,
) -> Vec<Option<Result<T, E>>> {
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Option<Result<T, E>>>> =
        Mutex::new(jobs.iter().map(|_| None).collect());
    let workers = threads.get().min(jobs.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(index) else { break };
                    let outcome = work(job);
                    let failed = outcome.is_err();
                    let mut slots = outcomes.lock().unwrap_or_else(|poison| poison.into_inner());
                    slots[index] = Some(outcome);
                    if failed {
                        // Nothing more is worth running once a job failed.
                        next.store(jobs.len(), Ordering::Relaxed);
                    }
                }
            });
        }
    });
    outcomes
        .into_inner()
        .unwrap_or_else(|poison| poison.into_inner())
}

/// Runs one replay, reporting it when `plan.progress` asks.
fn run_job(plan: &Plan, kind: CacheKind, job: &Job) -> Result<Measurement, ReplayError> {
    let source = &plan.sources[job.trace];
    let capacity = plan.capacities[job.capacity];
    let cache_error = |message: String| ReplayError::Cache {
        trace: source.name(),
        capacity: capacity.get(),
        cache: kind.to_string(),
        message,
    };
    let started = Instant::now();
    let mut cache = kind.build(capacity, plan.shards).map_err(cache_error)?;
    let accesses = source.accesses(plan.limit)?;
    let measurement = replay(cache.as_mut(), accesses)?.map_err(cache_error)?;
    // Dropping a large cache takes a while; keep it out of the timing.
    let elapsed = started.elapsed();
    drop(cache);
    if plan.progress {
        eprintln!(
            "{} capacity {capacity} {kind}: {:.2}% hits ({:.1} s)",
            source.name(),
            measurement.hit_percent(),
            elapsed.as_secs_f64()
        );
    }
    Ok(measurement)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::caches::ExactLru;
    use crate::synthetic::Synthetic;
    use crate::trace::{ArcAccesses, TraceFormat};

    fn inline(text: &str) -> ArcAccesses<Cursor<Vec<u8>>> {
        ArcAccesses::new(Cursor::new(text.as_bytes().to_vec()), "inline.lis".into())
    }

    #[test]
    fn replay_counts_hits_of_a_read_through_cache() {
        let mut cache = ExactLru::new(NonZeroUsize::new(4).expect("non-zero"));
        // Blocks 0..4, then 2..6: 2 and 3 hit, 4 and 5 miss.
        let measurement = replay(&mut cache, inline("0 4 0 0\n2 4 0 1\n"))
            .expect("trace parses")
            .expect("cache works");
        assert_eq!(measurement.accesses, 8);
        assert_eq!(measurement.hits, 2);
        assert_eq!(measurement.hit_percent(), 25.0);
        assert_eq!(measurement.state.entries, 4);
    }

    #[test]
    fn replay_stops_at_a_malformed_line() {
        let mut cache = ExactLru::new(NonZeroUsize::new(4).expect("non-zero"));
        let error = replay(&mut cache, inline("0 4 0 0\n2 four 0 1\n")).expect_err("bad line");
        assert!(error.to_string().contains("inline.lis: line 2"), "{error}");
    }

    #[test]
    fn an_empty_replay_has_a_zero_hit_ratio() {
        let measurement = Measurement {
            hits: 0,
            accesses: 0,
            state: CacheState::default(),
        };
        assert_eq!(measurement.hit_percent(), 0.0);
    }

    #[test]
    fn run_fills_every_replayable_cell_and_agrees_across_thread_counts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("loop.lis");
        // A loop over 12 blocks, read 5 times, then a few hot blocks.
        let mut text = String::new();
        for request in 0..5 {
            text.push_str(&format!("0 12 0 {request}\n"));
        }
        text.push_str("3 2 0 5\n3 2 0 6\n");
        std::fs::write(&path, text).expect("write trace");

        let plan = |threads| Plan {
            sources: vec![TraceSource::File {
                path: path.clone(),
                format: TraceFormat::Arc,
            }],
            capacities: vec![
                NonZeroUsize::new(4).expect("non-zero"),
                NonZeroUsize::new(64).expect("non-zero"),
            ],
            shards: 1,
            limit: None,
            threads: NonZeroUsize::new(threads).expect("non-zero"),
            progress: false,
        };
        let results = run(&plan(1)).expect("run");
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].summary.accesses, 64);
        assert_eq!(results[0].summary.unique_keys, 12);
        let large = &results[0].rows[1];
        assert_eq!((large.opt.hits, large.opt.accesses), (52, 64));
        for (kind, measurement) in &large.caches {
            match measurement {
                // Everything fits: only the 12 first reads miss.
                Some(m) => assert_eq!((m.hits, m.accesses), (52, 64), "{kind}"),
                None => assert!(!kind.is_replayable(), "{kind} was not replayed"),
            }
        }
        // An exact LRU smaller than the loop never hits it; the repeated tail does.
        let small_lru = results[0].rows[0]
            .caches
            .iter()
            .find(|(kind, _)| *kind == CacheKind::Lru)
            .and_then(|(_, m)| *m)
            .expect("lru replayed");
        assert_eq!(small_lru.hits, 2);
        // OPT keeps 4 of the 12 looped blocks, 3 and 4 among them, so it hits
        // them in each of the 4 later passes and in the whole tail: 16 + 4.
        let small = &results[0].rows[0];
        assert_eq!(small.opt.hits, 20);
        for (kind, measurement) in &small.caches {
            // moka evicts in batches of maintenance work, so on a trace this
            // short it never gets down to its capacity and beats OPT.
            if let Some(m) = measurement
                && *kind != CacheKind::Moka
            {
                assert!(m.hits <= small.opt.hits, "{kind} beat OPT: {m:?}");
            }
        }

        // Replays share nothing, so threads change no result. Only peers
        // without hash seeds or timers are compared exactly.
        let threaded = run(&plan(3)).expect("run");
        for (one, many) in results[0].rows.iter().zip(&threaded[0].rows) {
            for ((kind, a), (_, b)) in one.caches.iter().zip(&many.caches) {
                if matches!(kind, CacheKind::Lru | CacheKind::QuickCache) {
                    assert_eq!(a, b, "{kind}");
                }
            }
        }
    }

    #[test]
    fn limit_cuts_every_replay() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.lis");
        std::fs::write(&path, "0 10 0 0\n0 10 0 1\n").expect("write trace");
        let plan = Plan {
            sources: vec![TraceSource::File {
                path,
                format: TraceFormat::Arc,
            }],
            capacities: vec![NonZeroUsize::new(100).expect("non-zero")],
            shards: 1,
            limit: Some(15),
            threads: NonZeroUsize::new(2).expect("non-zero"),
            progress: false,
        };
        let results = run(&plan).expect("run");
        assert_eq!(results[0].summary.accesses, 15);
        assert_eq!(results[0].rows[0].opt.hits, 5);
        for (kind, measurement) in &results[0].rows[0].caches {
            if let Some(m) = measurement {
                assert_eq!((m.hits, m.accesses), (5, 15), "{kind}");
            }
        }
    }

    #[test]
    fn synthetic_traces_replay_like_files() {
        let loop_of = |keys| {
            TraceSource::Synthetic(Synthetic {
                shape: crate::synthetic::Shape::Loop { keys },
                length: 300,
            })
        };
        let plan = Plan {
            sources: vec![loop_of(10), loop_of(100)],
            capacities: vec![
                NonZeroUsize::new(50).expect("non-zero"),
                NonZeroUsize::new(200).expect("non-zero"),
            ],
            shards: 1,
            limit: None,
            threads: NonZeroUsize::new(4).expect("non-zero"),
            progress: false,
        };
        let results = run(&plan).expect("run");
        assert_eq!(results[0].source.name(), "synthetic loop:10");
        let summaries: Vec<(u64, u64)> = results
            .iter()
            .map(|trace| (trace.summary.accesses, trace.summary.unique_keys))
            .collect();
        assert_eq!(summaries, [(300, 10), (300, 100)]);
        // A loop that fits hits after its first pass in every cache.
        for row in &results[0].rows {
            assert_eq!(row.opt.hits, 290);
            let lru = row.caches.iter().find(|(kind, _)| *kind == CacheKind::Lru);
            assert_eq!(lru.and_then(|(_, m)| *m).map(|m| m.hits), Some(290));
        }
        // A loop of 100 over 50 entries: LRU never hits, OPT holds 49 keys
        // fixed (and one more slot turning over) for about half the loop.
        let small = &results[1].rows[0];
        let lru = small
            .caches
            .iter()
            .find(|(kind, _)| *kind == CacheKind::Lru);
        assert_eq!(lru.and_then(|(_, m)| *m).map(|m| m.hits), Some(0));
        assert!(small.opt.hits >= 2 * 49, "{}", small.opt.hits);
    }

    #[test]
    fn a_bad_trace_fails_the_run_before_any_replay() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bad.keys");
        std::fs::write(&path, "1\n2\n3 4\n").expect("write trace");
        let plan = Plan {
            sources: vec![TraceSource::File {
                path,
                format: TraceFormat::Lines,
            }],
            capacities: vec![NonZeroUsize::new(10).expect("non-zero")],
            shards: 1,
            limit: None,
            threads: NonZeroUsize::new(1).expect("non-zero"),
            progress: false,
        };
        let error = run(&plan).expect_err("malformed trace");
        assert!(matches!(error, ReplayError::Trace(_)), "{error}");
        assert!(error.to_string().contains("bad.keys: line 3"), "{error}");
    }
}
