//! Arguments of `shoal bench`, named after redis-benchmark's where they mean
//! the same.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, ValueEnum};

use super::collections::usage_error;

/// Most keys in one batch: the server's default `max_batch_items`.
pub const MAX_DEPTH: u32 = 10_000;

/// Arguments of `bench`.
///
/// `-n` here is the number of requests, as in redis-benchmark; the namespace
/// is `--namespace` (or `-n` before `bench`).
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Requests in flight at once: unary calls, batches, or pipeline
    /// streams (each keeping -P commands in flight).
    #[arg(short = 'c', long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,

    /// Requests per test: calls for unary tests, batches for mget and
    /// mset, commands for pipeline.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: u64,

    /// Value size in bytes (strings, hash values, list elements).
    #[arg(
        short = 'd',
        long = "data-size",
        value_name = "BYTES",
        default_value_t = 64
    )]
    pub value_size: usize,

    /// Key space size: keys are drawn from `key:000000000000` up to
    /// `key:<N-1>` (and `counter:`, `hash:`, `list:`, `set:` likewise).
    #[arg(short = 'r', long, value_name = "N", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub keyspace: u64,

    /// How keys are drawn from the key space.
    #[arg(long, value_enum, default_value_t = Distribution::Uniform)]
    pub distribution: Distribution,

    /// Exponent of the Zipf distribution (0 is uniform; larger is more
    /// skewed).
    #[arg(
        long,
        value_name = "S",
        default_value_t = 0.99,
        allow_negative_numbers = true
    )]
    pub zipf_exponent: f64,

    /// Tests to run, comma-separated, in this order.
    #[arg(short = 't', long = "tests", value_name = "TESTS", value_enum,
          value_delimiter = ',', default_values_t = Test::ALL)]
    pub tests: Vec<Test>,

    /// Batch and pipeline depth: keys per GetBatch / SetBatch chunk,
    /// commands in flight per Pipeline stream.
    #[arg(short = 'P', long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DEPTH)))]
    pub depth: u32,

    /// Run each test this long first, unmeasured: a number of requests
    /// (`5000`) or a duration (`2s`, `500ms`).
    #[arg(long, value_name = "N|DURATION", default_value = "0")]
    pub warmup: Warmup,

    /// Read the keys already stored instead of writing the key space
    /// before the read tests (get, mget, pipeline, hget): to measure reads
    /// of data loaded before, or while something else runs. Keys that are
    /// missing count as misses, not failures.
    #[arg(long)]
    pub no_preload: bool,

    /// Send each mget batch as a GetBatch call of its own. By default a
    /// batch of up to 256 keys goes as one command on a Pipeline stream
    /// kept open per connection, as the client library sends it.
    #[arg(long)]
    pub batch_calls: bool,

    /// Send each key straight to the cluster member that owns it, as the
    /// typed client does when built topology-aware: every test then runs
    /// through the typed client (get, set, incr, delete, hset, hget, lpush,
    /// sadd, mget, mset; not pipeline). Against a single server it measures
    /// the typed client itself, the peer to compare a cluster with.
    #[arg(long)]
    pub topology_aware: bool,

    /// HTTP/2 connections to spread the load over (at most -c).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub connections: u32,

    /// Threads driving the load (one, as redis-benchmark, keeps the client's
    /// share of a small machine predictable).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: u32,

    /// No progress bar (there is none when stderr is not a terminal).
    #[arg(short, long)]
    pub quiet: bool,

    // Declared here under the global option's id, so that `-n` can mean
    // the request count in this subcommand; clap hands the value to the
    // global option as if it had been given before `bench`.
    /// Namespace to work in [default: default].
    #[arg(
        long = "namespace",
        id = "namespace",
        value_name = "NAMESPACE",
        env = "SHOAL_NAMESPACE",
        default_value = "",
        hide_default_value = true
    )]
    pub namespace: String,
}

impl BenchArgs {
    /// The checks clap cannot express.
    pub fn check(&self) -> Result<(), clap::Error> {
        if self.topology_aware && self.tests.contains(&Test::Pipeline) {
            return Err(usage_error(
                "bench",
                ErrorKind::ArgumentConflict,
                "--topology-aware cannot run the pipeline test: it keeps -P commands in flight on one stream, to one server",
            ));
        }
        if self.connections > self.concurrency {
            return Err(usage_error(
                "bench",
                ErrorKind::ValueValidation,
                &format!(
                    "--connections {} is more than -c {}: every connection needs at least one request in flight",
                    self.connections, self.concurrency
                ),
            ));
        }
        if !(self.zipf_exponent.is_finite() && self.zipf_exponent >= 0.0) {
            return Err(usage_error(
                "bench",
                ErrorKind::ValueValidation,
                &format!(
                    "--zipf-exponent must be a number at least 0, not {}",
                    self.zipf_exponent
                ),
            ));
        }
        if self.threads > 1 && self.threads > self.concurrency {
            return Err(usage_error(
                "bench",
                ErrorKind::ValueValidation,
                &format!(
                    "--threads {} is more than -c {}: a thread without requests idles",
                    self.threads, self.concurrency
                ),
            ));
        }
        Ok(())
    }
}

/// How keys are drawn from the key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Distribution {
    /// Every key equally likely.
    Uniform,
    /// A few hot keys: the key of rank k is drawn with probability
    /// proportional to 1/k^s.
    Zipf,
}

impl Distribution {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Uniform => "uniform",
            Self::Zipf => "zipf",
        }
    }
}

/// One benchmark test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Test {
    /// CacheService.Set of one value.
    Set,
    /// CacheService.Get of a preloaded key.
    Get,
    /// CacheService.Increment of a counter.
    Incr,
    /// CollectionService.LPush of one element.
    Lpush,
    /// CollectionService.SAdd of one member.
    Sadd,
    /// CollectionService.HSet of one field.
    Hset,
    /// CollectionService.HGet of a preloaded field.
    Hget,
    /// BatchService.SetBatch: a chunk of -P values per request, over one
    /// stream per worker.
    Mset,
    /// BatchService.GetBatch of -P preloaded keys per request.
    Mget,
    /// BatchService.Pipeline: GET commands, -P in flight per stream.
    Pipeline,
    /// CacheService.Delete of one key.
    Delete,
}

impl Test {
    /// Every test, in the order they run by default: writes before the
    /// reads of what they wrote, deletes last.
    pub const ALL: [Self; 11] = [
        Self::Set,
        Self::Get,
        Self::Incr,
        Self::Lpush,
        Self::Sadd,
        Self::Hset,
        Self::Hget,
        Self::Mset,
        Self::Mget,
        Self::Pipeline,
        Self::Delete,
    ];

    /// The name on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Set => "set",
            Self::Get => "get",
            Self::Incr => "incr",
            Self::Lpush => "lpush",
            Self::Sadd => "sadd",
            Self::Hset => "hset",
            Self::Hget => "hget",
            Self::Mset => "mset",
            Self::Mget => "mget",
            Self::Pipeline => "pipeline",
            Self::Delete => "delete",
        }
    }

    /// Whether one request carries -P items.
    pub fn is_batch(self) -> bool {
        matches!(self, Self::Mset | Self::Mget)
    }
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How long each test runs before it is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warmup {
    /// This many requests.
    Requests(u64),
    /// This long.
    Time(Duration),
}

impl Warmup {
    /// Whether there is no warmup at all.
    pub fn is_none(self) -> bool {
        matches!(self, Self::Requests(0) | Self::Time(Duration::ZERO))
    }
}

impl FromStr for Warmup {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let number = |digits: &str| {
            digits.parse::<u64>().map_err(|_| {
                format!("expected a number of requests (5000) or a duration (2s, 500ms), not '{s}'")
            })
        };
        if let Some(ms) = s.strip_suffix("ms") {
            Ok(Self::Time(Duration::from_millis(number(ms)?)))
        } else if let Some(secs) = s.strip_suffix('s') {
            Ok(Self::Time(Duration::from_secs(number(secs)?)))
        } else {
            Ok(Self::Requests(number(s)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("shoal").chain(args.iter().copied()))
            .and_then(Cli::validated)
    }

    fn bench(args: &[&str]) -> (Cli, BenchArgs) {
        let mut cli = parse(args).unwrap();
        let command = std::mem::replace(&mut cli.command, Command::Count);
        let Command::Bench(bench) = command else {
            panic!("not bench: {command:?}");
        };
        (cli, bench)
    }

    #[test]
    fn defaults_follow_redis_benchmark() {
        let (cli, b) = bench(&["bench"]);
        assert_eq!((b.concurrency, b.requests, b.value_size), (50, 100_000, 64));
        assert_eq!(b.tests, Test::ALL);
        assert_eq!(b.warmup, Warmup::Requests(0));
        assert_eq!(b.distribution, Distribution::Uniform);
        assert_eq!(cli.namespace, "");
    }

    #[test]
    fn short_flags_and_test_lists() {
        let (_, b) = bench(&[
            "bench",
            "-c",
            "8",
            "-n",
            "1000",
            "-d",
            "2048",
            "-r",
            "10",
            "-t",
            "get,mget",
            "-P",
            "100",
            "--connections",
            "4",
            "--warmup",
            "2s",
            "-q",
        ]);
        assert_eq!((b.concurrency, b.requests, b.value_size), (8, 1000, 2048));
        assert_eq!((b.keyspace, b.depth, b.connections), (10, 100, 4));
        assert_eq!(b.tests, [Test::Get, Test::Mget]);
        assert_eq!(b.warmup, Warmup::Time(Duration::from_secs(2)));
        assert!(b.quiet);
    }

    #[test]
    fn dash_n_is_the_request_count_and_the_namespace_still_works() {
        let (cli, b) = bench(&["bench", "-n", "7", "--namespace", "load"]);
        assert_eq!((b.requests, cli.namespace.as_str()), (7, "load"));
        let (cli, b) = bench(&["-n", "outer", "bench", "-n", "9"]);
        assert_eq!((b.requests, cli.namespace.as_str()), (9, "outer"));
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let message = |args: &[&str]| parse(args).unwrap_err().to_string();
        assert!(message(&["bench", "-c", "0"]).contains("--concurrency"));
        let unknown = message(&["bench", "-t", "get,zadd"]);
        assert!(
            unknown.contains("zadd") && unknown.contains("mget"),
            "{unknown}"
        );
        assert!(message(&["bench", "-P", "0"]).contains("--depth"));
        assert!(message(&["bench", "-P", "10001"]).contains("1..=10000"));
        assert!(message(&["bench", "-n", "0"]).contains("--requests"));
        assert!(message(&["bench", "-c", "2", "--connections", "3"]).contains("--connections"));
        assert!(message(&["bench", "--zipf-exponent", "-1"]).contains("zipf"));
        assert!(message(&["bench", "--warmup", "soon"]).contains("duration"));
    }

    #[test]
    fn warmup_takes_requests_or_durations() {
        assert_eq!("5000".parse(), Ok(Warmup::Requests(5000)));
        assert_eq!("3s".parse(), Ok(Warmup::Time(Duration::from_secs(3))));
        assert_eq!(
            "250ms".parse(),
            Ok(Warmup::Time(Duration::from_millis(250)))
        );
        assert!("2m".parse::<Warmup>().is_err());
        assert!(Warmup::Requests(0).is_none() && !Warmup::Requests(1).is_none());
    }
}
