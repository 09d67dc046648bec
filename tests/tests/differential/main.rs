//! Differential test against a real `redis-server`: the same random command
//! sequences run on shoal and on Redis, every reply is compared, and every
//! [`SNAPSHOT_EVERY`] commands the whole keyspace is compared too (type,
//! contents and whether a TTL is set, for every key).
//!
//! The test starts its own `redis-server` on a free loopback port. When none
//! is installed it prints that it was skipped, unless `SHOAL_REQUIRE_REDIS=1`,
//! which turns a missing `redis-server` into a failure.
//!
//! Scale: seeds `0..SHOAL_DIFF_SEEDS` (default 20) with `SHOAL_DIFF_OPS`
//! commands each (default 2000); `SHOAL_DIFF_SEED=N` adds seed N.
//!
//! On a divergence the test replays the seed from an empty keyspace up to the
//! first differing reply, cuts that prefix down to a short sequence that
//! still diverges, prints both with every reply, and fails.
//!
//! Translations where the API differs from Redis on purpose (as the protos
//! document): `UpdateTtl` says whether the key existed, so PERSIST is
//! compared as "EXISTS before PERSIST"; LTRIM's reply is compared with the
//! length shoal returns; LSET's NOT_FOUND and OUT_OF_RANGE stand for Redis's
//! "no such key" and "index out of range"; a collection write with an
//! `expiry` is the Redis command followed by PEXPIRE when it succeeded.
//! SPOP and SRANDMEMBER are random: shoal answers first and Redis checks the
//! answer against its own state (SPOP's members are then removed from Redis
//! with SREM).
//!
//! Layout: `ops` (the commands and their generator), `reply` (the form
//! both sides' answers are compared in), `redis_side` and `shoal_side`
//! (each server and its normalisation), and one file per data type
//! (`strings`, `hashes`, `lists`, `sets`) holding how each side runs that
//! type's commands, so that "how is HSET compared" is one file.

use std::collections::{BTreeSet, VecDeque};
use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use shoal_proto::v1 as pb;
use shoal_tests::{Raw, TestServer, raw};
use tonic::{Code, Status};

mod hashes;
mod lists;
mod ops;
mod redis_side;
mod reply;
mod sets;
mod shoal_side;
mod strings;

use ops::*;
use redis_side::*;
use reply::*;
use shoal_side::*;

// ---------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------

/// Few keys, so that commands meet each other's keys and types often.
const KEYS: [&str; 6] = ["k0", "k1", "k2", "k3", "k4", "k5"];
/// The keys each family of commands mostly works on; the others' keys now
/// and then, so that types collide often while collections live long enough
/// to grow.
const STRING_KEYS: [&str; 1] = ["k0"];
const HASH_KEYS: [&str; 2] = ["k1", "k2"];
const LIST_KEYS: [&str; 1] = ["k3"];
const SET_KEYS: [&str; 2] = ["k4", "k5"];
/// String values: integers (some at the i64 limits), and strings Redis does
/// not take as integers (leading zero, sign, spaces, out of range, empty).
const STRINGS: [&str; 15] = [
    "0",
    "1",
    "42",
    "-7",
    "9223372036854775806",
    "9223372036854775807",
    "-9223372036854775808",
    "007",
    "-0",
    "+3",
    "1.5",
    " 1",
    "99999999999999999999",
    "abc",
    "",
];
const FIELDS: [&str; 5] = ["f0", "f1", "f2", "f3", "f4"];
const HASH_VALUES: [&str; 8] = [
    "0",
    "5",
    "-2",
    "9223372036854775807",
    "-9223372036854775808",
    "007",
    "x",
    "",
];
const ELEMENTS: [&str; 5] = ["a", "b", "c", "1", "22"];
const MEMBERS: [&str; 6] = ["a", "b", "c", "d", "e", ""];
/// TTLs of hours: nothing expires by time during a run, however long.
const TTLS_MS: [i64; 3] = [10_000_000, 20_000_000, 30_000_000];
const EXTREME_DELTAS: [i64; 5] = [
    i64::MAX,
    i64::MIN,
    i64::MAX - 1,
    i64::MIN + 1,
    9_223_372_036_854_775_000,
];
const EXTREME_INDEXES: [i64; 6] = [
    i64::MIN,
    i64::MAX,
    -1_000_000_000_000,
    1_000_000_000_000,
    -100,
    100,
];
/// Chunk sizes for streaming reads; the result must not depend on them.
const CHUNKS: [u32; 5] = [0, 1, 2, 3, 1000];
/// A whole-keyspace comparison after this many commands.
const SNAPSHOT_EVERY: usize = 50;
/// How far apart the remaining TTLs of one key may be on the two servers.
const TTL_TOLERANCE_MS: i64 = 2_000;
/// Time allowed for cutting a failing sequence down.
const SHRINK_BUDGET: Duration = Duration::from_secs(60);
/// Seeds run this many at a time, each worker with its own shoal namespace
/// and Redis database: round trips, not CPU, bound a worker.
const WORKERS: usize = 4;

struct Harness {
    redis: RedisSide,
    shoal: ShoalSide,
}

struct Step {
    op: Op,
    shoal: Reply,
    redis: Reply,
}

/// The steps of one run, up to and including the first divergence.
struct Run {
    steps: Vec<Step>,
    diverged_at: Option<usize>,
}

impl Harness {
    /// Runs `ops` from an empty keyspace, stopping at the first divergence.
    async fn run(&mut self, ops: &[Op]) -> Run {
        self.redis.flush();
        self.shoal.flush().await;
        let mut steps = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let shoal = self.shoal.apply(op).await;
            let redis = self.redis.apply(op, &shoal);
            let same = agree(&shoal, &redis);
            steps.push(Step {
                op: op.clone(),
                shoal,
                redis,
            });
            if !same {
                return Run {
                    steps,
                    diverged_at: Some(i),
                };
            }
        }
        Run {
            steps,
            diverged_at: None,
        }
    }

    /// Removes chunks of `ops` (halving the chunk size down to single
    /// commands) while the rest still diverges, within [`SHRINK_BUDGET`].
    async fn shrink(&mut self, ops: Vec<Op>) -> Vec<Op> {
        let deadline = Instant::now() + SHRINK_BUDGET;
        let mut current = ops;
        let mut chunk = current.len().div_ceil(2);
        while chunk > 0 && Instant::now() < deadline {
            let mut start = 0;
            while start < current.len() && Instant::now() < deadline {
                let end = (start + chunk).min(current.len());
                let candidate: Vec<Op> = current[..start]
                    .iter()
                    .chain(&current[end..])
                    .cloned()
                    .collect();
                if !candidate.is_empty()
                    && let Some(at) = self.run(&candidate).await.diverged_at
                {
                    current = candidate[..=at].to_vec();
                    continue;
                }
                start += chunk;
            }
            chunk /= 2;
        }
        current
    }

    /// Replays the failing prefix of seed `seed`, shrinks it and panics with
    /// both.
    async fn report(&mut self, seed: u64, ops_per_seed: usize, ops: &[Op], first: Run) -> ! {
        let at = first.diverged_at.expect("a divergence to report");
        let prefix = &ops[..=at];
        let replay = self.run(prefix).await;
        let reproduced = replay.diverged_at.is_some();
        let mut text = format!(
            "shoal and redis-server diverge: seed {seed}, command #{at} of {} \
             (rerun with SHOAL_DIFF_SEED={seed} SHOAL_DIFF_SEEDS=0 SHOAL_DIFF_OPS={ops_per_seed})\n",
            ops.len(),
        );
        let steps = if reproduced {
            replay.steps
        } else {
            text.push_str(
                "the divergence did NOT reproduce on a replay from an empty keyspace \
                 (random commands may have chosen differently); first run shown\n",
            );
            first.steps
        };
        text.push_str(&format!(
            "\nshortest failing prefix ({} commands):\n",
            steps.len()
        ));
        text.push_str(&render(&steps));
        if reproduced {
            let reduced = self.shrink(prefix.to_vec()).await;
            let run = self.run(&reduced).await;
            text.push_str(&format!(
                "\nreduced to {} commands that still diverge:\n",
                run.steps.len()
            ));
            text.push_str(&render(&run.steps));
        }
        eprintln!("{text}");
        panic!("shoal and redis-server diverge (seed {seed}); see above");
    }
}

fn render(steps: &[Step]) -> String {
    let mut text = String::new();
    for (i, step) in steps.iter().enumerate() {
        let mark = if agree(&step.shoal, &step.redis) {
            ""
        } else {
            "   <<< DIFFERS"
        };
        let _ = writeln!(text, "{i:5}: {:?}{mark}", step.op);
        if mark.is_empty() {
            let _ = writeln!(text, "         both:  {:?}", step.shoal);
        } else {
            let _ = writeln!(text, "         shoal: {:?}", step.shoal);
            let _ = writeln!(text, "         redis: {:?}", step.redis);
        }
    }
    text
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shoal_answers_random_command_sequences_as_redis_does() {
    let Some(redis_server) = RedisServer::start() else {
        assert!(
            std::env::var("SHOAL_REQUIRE_REDIS").as_deref() != Ok("1"),
            "redis-server is not installed, and SHOAL_REQUIRE_REDIS=1 requires it \
             (Debian: apt-get install redis-server)"
        );
        eprintln!(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !! SKIPPED the differential test: redis-server is not installed.     !!\n\
             !! Install it (apt-get install redis-server) or set                  !!\n\
             !! SHOAL_REQUIRE_REDIS=1 to make its absence a failure.              !!\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        );
        return;
    };
    let seed_count = env_number("SHOAL_DIFF_SEEDS").unwrap_or(20);
    let ops_per_seed = env_number("SHOAL_DIFF_OPS").map_or(2000, |n| {
        usize::try_from(n).expect("SHOAL_DIFF_OPS fits in usize")
    });
    let mut seeds: Vec<u64> = (0..seed_count).collect();
    if let Some(extra) = env_number("SHOAL_DIFF_SEED") {
        seeds.push(extra);
    }
    let workers = WORKERS.min(seeds.len()).max(1);

    let server = TestServer::start().await;
    let version = {
        let con = redis_server.connect(0).expect("connect to redis-server");
        RedisSide { con }.info("redis_version")
    };
    let started = Instant::now();
    let queue = Arc::new(Mutex::new(seeds.iter().copied().collect::<VecDeque<u64>>()));
    let mut tasks = Vec::with_capacity(workers);
    for worker in 0..workers {
        let mut harness = Harness {
            redis: RedisSide {
                con: redis_server
                    .connect(worker)
                    .expect("connect to redis-server"),
            },
            shoal: ShoalSide {
                raw: raw(&server).await,
                namespace: format!("differential-{worker}"),
            },
        };
        let queue = Arc::clone(&queue);
        tasks.push(tokio::spawn(async move {
            let mut commands = 0;
            loop {
                let Some(seed) = queue.lock().expect("seed queue").pop_front() else {
                    return commands;
                };
                let ops = generate(seed, ops_per_seed);
                let run = harness.run(&ops).await;
                if run.diverged_at.is_some() {
                    // Let the other workers stop at their next seed.
                    queue.lock().expect("seed queue").clear();
                    harness.report(seed, ops_per_seed, &ops, run).await;
                }
                commands += ops.len();
            }
        }));
    }
    let mut commands = 0;
    for task in tasks {
        match task.await {
            Ok(done) => commands += done,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    eprintln!(
        "differential: {} seeds, {commands} commands (snapshots included) agreed with \
         redis-server {version} in {:.1?} ({workers} workers)",
        seeds.len(),
        started.elapsed()
    );
}
