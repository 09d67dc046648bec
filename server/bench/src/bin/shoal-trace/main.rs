//! `shoal-trace`: replays block-access traces against shoal's eviction
//! policies and against peer caches in the same run, and prints their hit
//! ratios side by side.
//!
//! Every cache is a read-through cache bounded by an entry count: each access
//! reads a key and, on a miss, inserts it. The peers are moka (W-TinyLFU),
//! quick_cache (CLOCK-Pro) and an exact LRU (the `lru` crate).
//!
//! ```text
//! cargo run --release -p shoal-bench --bin shoal-trace -- \
//!     --format arc --capacity 1000,10000,100000,400000 TRACE.lis.zst [TRACE...]
//! ```
//!
//! shoal is replayed with one shard by default, which measures its policies
//! exactly. The server's default sharding splits `max_keys` evenly across
//! shards, each evicting on its own; `--shards` replays that setup.

mod caches;
mod replay;
mod report;
mod trace;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use shoal_engine::EngineConfig;

use crate::replay::Plan;
use crate::report::{Report, RunInfo};
use crate::trace::TraceFormat;

/// Replay cache traces against shoal's eviction policies and peer caches
/// (moka, quick_cache, exact LRU) and print hit ratios.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Format of the trace files.
    #[arg(long, value_enum)]
    format: TraceFormat,

    /// Cache capacities in entries, comma-separated.
    #[arg(long, required = true, value_delimiter = ',')]
    capacity: Vec<NonZeroUsize>,

    /// Shards per namespace in shoal's engine (a power of two); the key
    /// limit is split evenly across them. 1 measures the policies exactly.
    #[arg(long, default_value_t = 1, value_parser = parse_shards)]
    shards: usize,

    /// Replay only the first N accesses of each trace.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,

    /// Replays run at once; defaults to the number of CPUs.
    #[arg(long)]
    threads: Option<NonZeroUsize>,

    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,

    /// Do not report each finished replay on standard error.
    #[arg(long, short)]
    quiet: bool,

    /// Trace files; names ending in `.zst` are zstd-compressed.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// Accepts a positive power of two.
fn parse_shards(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n.is_power_of_two() => Ok(n),
        _ => Err(format!(
            "expected a power of two (1, 2, 4, ...), got {text:?}"
        )),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = Plan {
        files: args.files,
        format: args.format,
        capacities: args.capacity,
        shards: args.shards,
        limit: args.limit,
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)),
        progress: !args.quiet,
    };
    let results = match replay::run(&plan) {
        Ok(results) => results,
        Err(error) => {
            eprintln!("shoal-trace: {error}");
            return ExitCode::FAILURE;
        }
    };
    let default_policy = EngineConfig::default().eviction_policy;
    let info = RunInfo::new(plan.format, plan.shards, default_policy, plan.limit);
    let report = Report::new(info, &results);
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn arguments_are_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn the_documented_command_line_parses() {
        let args = Args::try_parse_from([
            "shoal-trace",
            "--format",
            "arc",
            "--capacity",
            "1000,10000,100000,400000",
            "a.lis.zst",
            "b.lis",
        ])
        .expect("parses");
        let capacities: Vec<usize> = args.capacity.iter().map(|c| c.get()).collect();
        assert_eq!(capacities, [1000, 10000, 100000, 400000]);
        assert_eq!(args.shards, 1);
        assert_eq!(args.files.len(), 2);
        assert!(!args.json);
        assert_eq!(args.limit, None);
    }

    #[test]
    fn bad_arguments_are_rejected() {
        let base = ["shoal-trace", "--format", "arc"];
        let parse = |extra: &[&str]| Args::try_parse_from(base.iter().chain(extra));
        assert!(parse(&["--capacity", "0", "t.lis"]).is_err());
        assert!(parse(&["--capacity", "10,x", "t.lis"]).is_err());
        assert!(parse(&["--capacity", "10"]).is_err(), "a file is required");
        assert!(parse(&["t.lis"]).is_err(), "a capacity is required");
        assert!(parse(&["--capacity", "10", "--shards", "3", "t.lis"]).is_err());
        assert!(parse(&["--capacity", "10", "--shards", "0", "t.lis"]).is_err());
        let ok = parse(&[
            "--capacity",
            "10",
            "--shards",
            "8",
            "--limit",
            "5",
            "--json",
            "t.lis",
        ])
        .expect("parses");
        assert_eq!((ok.shards, ok.limit, ok.json), (8, Some(5), true));
        assert!(
            Args::try_parse_from(["shoal-trace", "--format", "csv", "--capacity", "1", "t"])
                .is_err()
        );
    }
}
