//! `shoal-trace`: replays block-access traces against shoal's eviction
//! policies and against peer caches in the same run, and prints their hit
//! ratios side by side, with Belady's OPT as the ceiling.
//!
//! Every cache is a read-through cache bounded by an entry count: each access
//! reads a key and, on a miss, inserts it. The peers are moka (W-TinyLFU),
//! quick_cache (CLOCK-Pro) and an exact LRU (the `lru` crate). OPT, the best
//! any cache of the capacity could do knowing the future, says how much of
//! what is left to gain a policy already has: "POLICY/opt %" is shoal's
//! default policy's hits as a share of OPT's (e.g. "tinylfu/opt %"), and
//! "best/opt %" the best peer's.
//!
//! Traces come from files (`--format arc`: ARC `.lis` lines; `--format
//! lines`: one decimal key a line; `.zst` files are decompressed) or are
//! generated (`--synthetic SPEC`, repeatable, see `--help`), so that the
//! shapes real traces mix (loops, scans, zig-zags, skew) can each be
//! reproduced without a file:
//!
//! ```text
//! cargo run --release -p shoal-bench --bin shoal-trace -- \
//!     --format arc --capacity 100,250,500,800 ../shared/traces/cs.lis.zst
//! cargo run --release -p shoal-bench --bin shoal-trace -- \
//!     --format lines --capacity 100,250,500,800 \
//!     --synthetic loop:1000 --synthetic scan --synthetic zigzag:1500 --synthetic zipf:0.9
//! cargo run --release -p shoal-bench --bin shoal-trace -- \
//!     --format arc --capacity 1000,10000,100000,400000 TRACE.lis.zst [TRACE...]
//! ```
//!
//! `--format` is needed only with files. Files are reported first, then the
//! synthetic traces in the order given; each synthetic trace has
//! `--synthetic-length` accesses (1 000 000 unless told), and `--limit` cuts
//! files and synthetic traces alike.
//!
//! shoal is replayed with one shard by default, which measures its policies
//! exactly. The server's default sharding splits `max_keys` evenly across
//! shards, each evicting on its own; `--shards` replays that setup. OPT is
//! always one unsharded cache.
//!
//! OPT holds a trace in memory (8 bytes a key while loading, then 4 bytes
//! an access for traces under 4 G accesses); replays stream it.

mod caches;
mod opt;
mod replay;
mod report;
mod source;
mod synthetic;
mod trace;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Parser};
use shoal_engine::EngineConfig;

use crate::replay::Plan;
use crate::report::{Report, RunInfo};
use crate::source::TraceSource;
use crate::synthetic::{Shape, Synthetic};
use crate::trace::TraceFormat;

/// Replay cache traces against shoal's eviction policies and peer caches
/// (moka, quick_cache, exact LRU), next to Belady's OPT, and print hit
/// ratios.
#[derive(Debug, Parser)]
#[command(version)]
#[command(group(
    ArgGroup::new("traces")
        .required(true)
        .multiple(true)
        .args(["files", "synthetic"])
))]
struct Args {
    /// Format of the trace files; needed when files are given.
    #[arg(long, value_enum)]
    format: Option<TraceFormat>,

    /// Cache capacities in entries, comma-separated.
    #[arg(long, required = true, value_delimiter = ',')]
    capacity: Vec<NonZeroUsize>,

    /// A generated trace, instead of or besides files; may be repeated.
    ///
    /// `loop:N`: keys 0..N in order, over and over.
    ///
    /// `scan`: 50 000 accesses to 10 000 hot keys (Zipf 0.9), then a scan of
    /// 20 000 keys never seen before, and again.
    ///
    /// `zigzag[:N]`: keys 0..N forwards, then backwards, and again (N = 1000
    /// unless given).
    ///
    /// `zipf:S`: Zipf with exponent S over 100 000 keys.
    ///
    /// `phases`: 100 000 accesses to 10 000 hot keys (Zipf 0.9), then
    /// 100 000 of a loop over 2 000 other keys, and again.
    ///
    /// `shift`: Zipf 0.9 over 10 000 keys, all replaced by new keys every
    /// 100 000 accesses.
    ///
    /// `oneoff:N`: half the accesses Zipf 0.9 over N hot keys, half keys
    /// never seen before, mixed at random.
    ///
    /// `drift:N`: Zipf 0.9 over N keys whose ranking moves by one key every
    /// 100 accesses (the hottest leaves, a new key comes in coldest).
    ///
    /// Random shapes use a fixed seed, so every run sees the same keys.
    #[arg(long, value_name = "SPEC", value_parser = parse_shape)]
    synthetic: Vec<Shape>,

    /// Accesses of each synthetic trace.
    #[arg(long, value_name = "N", default_value_t = synthetic::DEFAULT_LENGTH)]
    synthetic_length: u64,

    /// Shards per namespace in shoal's engine (a power of two), as the
    /// server's `engine.shards_per_namespace`; the key limit is shared by
    /// them and each evicts on its own. As in the server, the engine gives
    /// a namespace fewer shards when its budget would leave a shard fewer
    /// than 128 keys. 1 measures the policies exactly.
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

    /// Trace files; names ending in `.zst` are zstd-compressed. Optional
    /// when `--synthetic` is given.
    #[arg(value_name = "FILE", requires = "format")]
    files: Vec<PathBuf>,
}

impl Args {
    /// The traces to replay: the files, then the synthetic traces.
    fn sources(&self) -> Vec<TraceSource> {
        let files = self.format.into_iter().flat_map(|format| {
            self.files.iter().map(move |path| TraceSource::File {
                path: path.clone(),
                format,
            })
        });
        let synthetic = self.synthetic.iter().map(|&shape| {
            TraceSource::Synthetic(Synthetic {
                shape,
                length: self.synthetic_length,
            })
        });
        files.chain(synthetic).collect()
    }
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

/// Accepts a synthetic trace spec.
fn parse_shape(text: &str) -> Result<Shape, String> {
    text.parse()
}

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = Plan {
        sources: args.sources(),
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
    // A format read no file when only synthetic traces ran.
    let format = args.format.filter(|_| !args.files.is_empty());
    let info = RunInfo::new(format, plan.shards, default_policy, plan.limit);
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
        let names: Vec<String> = args.sources().iter().map(TraceSource::name).collect();
        assert_eq!(names, ["a.lis.zst", "b.lis"]);
    }

    #[test]
    fn the_documented_synthetic_command_line_parses() {
        let args = Args::try_parse_from([
            "shoal-trace",
            "--format",
            "lines",
            "--capacity",
            "100,250,500,800",
            "--synthetic",
            "loop:1000",
            "--synthetic",
            "scan",
            "--synthetic",
            "zigzag:1500",
            "--synthetic",
            "zipf:0.9",
        ])
        .expect("parses");
        assert_eq!(args.format, Some(TraceFormat::Lines));
        assert!(args.files.is_empty());
        let sources = args.sources();
        let names: Vec<String> = sources.iter().map(TraceSource::name).collect();
        assert_eq!(
            names,
            [
                "synthetic loop:1000",
                "synthetic scan",
                "synthetic zigzag:1500",
                "synthetic zipf:0.9"
            ]
        );
        for source in &sources {
            let TraceSource::Synthetic(synthetic) = source else {
                panic!("{} is not synthetic", source.name());
            };
            assert_eq!(synthetic.length, synthetic::DEFAULT_LENGTH);
        }
    }

    #[test]
    fn files_come_first_then_synthetic_traces_in_order() {
        let args = Args::try_parse_from([
            "shoal-trace",
            "--synthetic",
            "zipf:1.1",
            "--format",
            "arc",
            "--capacity",
            "10",
            "t.lis",
            "--synthetic",
            "loop:5",
            "--synthetic-length",
            "300",
        ])
        .expect("parses");
        let sources = args.sources();
        let names: Vec<String> = sources.iter().map(TraceSource::name).collect();
        assert_eq!(names, ["t.lis", "synthetic zipf:1.1", "synthetic loop:5"]);
        assert!(matches!(
            sources[2],
            TraceSource::Synthetic(Synthetic { length: 300, .. })
        ));
    }

    #[test]
    fn a_file_or_a_synthetic_trace_is_required_and_files_need_a_format() {
        let parse = |extra: &[&str]| {
            Args::try_parse_from(["shoal-trace", "--capacity", "10"].iter().chain(extra))
        };
        assert!(parse(&[]).is_err(), "no trace at all");
        assert!(parse(&["--format", "arc"]).is_err(), "a format is no trace");
        assert!(parse(&["t.lis"]).is_err(), "a file needs a format");
        let only_synthetic = parse(&["--synthetic", "scan"]).expect("parses");
        assert_eq!(only_synthetic.format, None);
        assert_eq!(only_synthetic.sources().len(), 1);
        assert!(parse(&["--synthetic", "scan", "--format", "lines", "t.keys"]).is_ok());
        for bad in ["loop", "loop:0", "zipf:-1", "scan:3", "fifo"] {
            assert!(parse(&["--synthetic", bad]).is_err(), "{bad}");
        }
        assert!(parse(&["--synthetic", "scan", "--synthetic-length", "x"]).is_err());
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
