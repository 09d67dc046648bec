//! Turning replay results into a table or JSON.
//!
//! Hit ratios are percentages rounded to two decimals, and every difference
//! is taken between the rounded figures, so the JSON and the table agree
//! with each other and with the arithmetic a reader does on them. Shares of
//! OPT are the exception: they are taken between hit counts, since rounding
//! would distort the ratio of two small hit ratios.

use std::fmt::Write as _;

use serde::Serialize;
use shoal_engine::EvictionPolicy;

use crate::caches::CacheKind;
use crate::opt::OptResult;
use crate::replay::{Measurement, TraceResults};
use crate::source::TraceSource;
use crate::trace::TraceFormat;

/// Settings of the run, shown above the results.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// Format of the trace files; `None` when only synthetic traces ran.
    pub format: Option<&'static str>,
    /// Shards per namespace in shoal's engine.
    pub shards: usize,
    /// shoal's default eviction policy, the one compared with the peers.
    pub default_policy: String,
    /// Accesses replayed per trace at most, when limited.
    pub limit: Option<u64>,
}

impl RunInfo {
    /// Describes a run.
    pub fn new(
        format: Option<TraceFormat>,
        shards: usize,
        default_policy: EvictionPolicy,
        limit: Option<u64>,
    ) -> Self {
        Self {
            format: format.map(TraceFormat::name),
            shards,
            default_policy: default_policy.to_string(),
            limit,
        }
    }

    /// The column name of the default policy.
    fn default_cache(&self) -> String {
        format!("shoal/{}", self.default_policy)
    }
}

/// A whole run: its settings and one entry per trace.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The run's settings.
    #[serde(flatten)]
    pub info: RunInfo,
    /// Results per trace, in the order given.
    pub traces: Vec<TraceReport>,
}

/// The results for one trace.
#[derive(Debug, Clone, Serialize)]
pub struct TraceReport {
    /// The trace's name: its file name, or `synthetic SPEC`.
    pub trace: String,
    /// The path as given on the command line, for a trace file.
    pub file: Option<String>,
    /// The spec it was generated from, for a synthetic trace.
    pub synthetic: Option<String>,
    /// Accesses replayed.
    pub accesses: u64,
    /// Distinct blocks among them.
    pub unique_keys: u64,
    /// One row per capacity.
    pub rows: Vec<RowReport>,
}

/// One trace at one capacity.
#[derive(Debug, Clone, Serialize)]
pub struct RowReport {
    /// Entries each cache could hold.
    pub capacity: usize,
    /// Every cache, shoal's policies first.
    pub caches: Vec<CacheReport>,
    /// The peer with the highest hit ratio (the first on a tie).
    pub best_peer: Option<String>,
    /// Its hit ratio, percent.
    pub best_peer_hit_percent: Option<f64>,
    /// shoal's default policy's hit ratio minus the best peer's, in
    /// percentage points.
    pub default_minus_best_peer: Option<f64>,
    /// shoal's default policy's hit ratio minus moka's, in percentage points.
    pub default_minus_moka: Option<f64>,
    /// Belady's optimum: the hits of the best possible cache of this
    /// capacity (one unsharded cache, whatever `shards` says).
    pub opt_hits: u64,
    /// OPT's hit ratio, percent.
    pub opt_hit_percent: f64,
    /// shoal's default policy's hits as a percentage of OPT's; `null` when
    /// OPT has none.
    pub default_percent_of_opt: Option<f64>,
    /// The best peer's hits as a percentage of OPT's.
    pub best_peer_percent_of_opt: Option<f64>,
}

/// One cache's replay of one trace at one capacity.
#[derive(Debug, Clone, Serialize)]
pub struct CacheReport {
    /// The cache: `shoal/<policy>`, `moka`, `quick_cache` or `lru`.
    pub cache: String,
    /// Whether it is a peer rather than shoal.
    pub peer: bool,
    /// Hit ratio in percent, rounded to two decimals; `null` when the cache
    /// has no replacement policy to measure (`shoal/noeviction`).
    pub hit_percent: Option<f64>,
    /// Accesses that hit.
    pub hits: Option<u64>,
    /// Entries held at the end.
    pub entries: Option<u64>,
    /// Entries evicted, for caches that count them.
    pub evictions: Option<u64>,
}

/// `value` rounded to two decimals.
fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

impl Report {
    /// Builds the report of a run.
    pub fn new(info: RunInfo, results: &[TraceResults]) -> Self {
        let default_cache = info.default_cache();
        let traces = results
            .iter()
            .map(|trace| TraceReport {
                trace: trace.source.name(),
                file: trace.source.path().map(|path| path.display().to_string()),
                synthetic: match &trace.source {
                    TraceSource::Synthetic(synthetic) => Some(synthetic.shape.to_string()),
                    TraceSource::File { .. } => None,
                },
                accesses: trace.summary.accesses,
                unique_keys: trace.summary.unique_keys,
                rows: trace
                    .rows
                    .iter()
                    .map(|row| row_report(row.capacity.get(), row.opt, &row.caches, &default_cache))
                    .collect(),
            })
            .collect();
        Self { info, traces }
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings and numbers cannot fail, and
        // every float here is finite.
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"))
    }

    /// Consistency checks on the results; one line per problem found.
    ///
    /// Every cache must hold at most its capacity, a cache that counts its
    /// evictions must have evicted exactly what it inserted (one per miss)
    /// but no longer holds, and no cache can hit more often than OPT.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for trace in &self.traces {
            for row in &trace.rows {
                for cache in &row.caches {
                    let (Some(hits), Some(entries)) = (cache.hits, cache.entries) else {
                        continue;
                    };
                    let place =
                        format!("{} capacity {} {}", trace.trace, row.capacity, cache.cache);
                    if entries > row.capacity as u64 {
                        problems.push(format!("{place}: holds {entries} entries"));
                    }
                    if hits > row.opt_hits {
                        problems.push(format!(
                            "{place}: {hits} hits, more than OPT's {}, so it held more \
                             than its capacity at times",
                            row.opt_hits
                        ));
                    }
                    let misses = trace.accesses - hits;
                    if let Some(evictions) = cache.evictions
                        && evictions + entries != misses
                    {
                        problems.push(format!(
                            "{place}: {misses} misses (inserts) but {evictions} evictions \
                             and {entries} entries held"
                        ));
                    }
                }
            }
        }
        problems
    }

    /// The report as a text table with a header and notes.
    pub fn to_table(&self) -> String {
        let info = &self.info;
        let default_cache = info.default_cache();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "shoal-trace: read-through replay, count-bounded capacity, format {}",
            info.format.unwrap_or("n/a (synthetic traces only)")
        );
        let _ = writeln!(
            out,
            "shoal: up to {} shard{} per namespace (the engine gives a namespace fewer when \
             its key budget would leave a shard under {} keys), default policy {}",
            info.shards,
            if info.shards == 1 { "" } else { "s" },
            shoal_engine::MIN_KEYS_PER_SHARD,
            info.default_policy
        );
        if let Some(limit) = info.limit {
            let _ = writeln!(out, "limited to the first {limit} accesses of each trace");
        }
        for trace in &self.traces {
            let _ = writeln!(
                out,
                "{}: {} accesses, {} unique blocks",
                trace.trace, trace.accesses, trace.unique_keys
            );
        }
        let _ = writeln!(out);

        let cache_names: Vec<String> = self
            .traces
            .first()
            .and_then(|trace| trace.rows.first())
            .map(|row| row.caches.iter().map(|c| c.cache.clone()).collect())
            .unwrap_or_default();
        let mut header = vec!["trace".to_string(), "capacity".to_string()];
        header.extend(cache_names.iter().cloned());
        header.extend([
            "best peer".to_string(),
            "vs best".to_string(),
            "vs moka".to_string(),
            "opt".to_string(),
            format!("{}/opt %", info.default_policy),
            "best/opt %".to_string(),
        ]);
        let mut lines = vec![header];
        for trace in &self.traces {
            for row in &trace.rows {
                let mut line = vec![trace.trace.clone(), row.capacity.to_string()];
                line.extend(row.caches.iter().map(|c| percent(c.hit_percent)));
                line.push(row.best_peer.clone().unwrap_or_else(|| "n/a".into()));
                line.push(signed(row.default_minus_best_peer));
                line.push(signed(row.default_minus_moka));
                line.push(percent(Some(row.opt_hit_percent)));
                line.push(percent(row.default_percent_of_opt));
                line.push(percent(row.best_peer_percent_of_opt));
                lines.push(line);
            }
        }
        out.push_str(&align(&lines));

        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "hit ratios in percent; \"vs best\" / \"vs moka\": {default_cache} minus the best \
             peer / moka, in percentage points"
        );
        let _ = writeln!(
            out,
            "opt: Belady's optimum, the best any single cache of that capacity can do \
             (evicting the key next used furthest ahead, admission optional); \
             \"{policy}/opt %\" / \"best/opt %\": the hits of {default_cache} / of the best \
             peer as a percentage of OPT's",
            policy = info.default_policy
        );
        if cache_names.iter().any(|name| name == "shoal/noeviction") {
            let _ = writeln!(
                out,
                "shoal/noeviction: n/a, it refuses writes when full, so there is no replacement \
                 policy to measure"
            );
        }
        let rows: Vec<&RowReport> = self.traces.iter().flat_map(|t| &t.rows).collect();
        let at_least = |pick: fn(&RowReport) -> Option<f64>| {
            rows.iter()
                .filter(|row| pick(row).is_some_and(|d| d >= 0.0))
                .count()
        };
        let _ = writeln!(
            out,
            "{default_cache} matches or beats the best peer on {} of {} rows, moka on {} of {}",
            at_least(|row| row.default_minus_best_peer),
            rows.len(),
            at_least(|row| row.default_minus_moka),
            rows.len()
        );
        let problems = self.problems();
        if problems.is_empty() {
            let _ = writeln!(
                out,
                "sanity: no cache held more than its capacity or hit more often than OPT; \
                 every shoal replay evicted exactly its misses minus the keys it held"
            );
        } else {
            for problem in problems {
                let _ = writeln!(out, "sanity: PROBLEM: {problem}");
            }
        }
        out
    }
}

/// Builds one row from its measurements.
fn row_report(
    capacity: usize,
    opt: OptResult,
    caches: &[(CacheKind, Option<Measurement>)],
    default_cache: &str,
) -> RowReport {
    let caches: Vec<CacheReport> = caches
        .iter()
        .map(|(kind, measurement)| CacheReport {
            cache: kind.to_string(),
            peer: kind.is_peer(),
            hit_percent: measurement.map(|m| round2(m.hit_percent())),
            hits: measurement.map(|m| m.hits),
            entries: measurement.map(|m| m.state.entries),
            evictions: measurement.and_then(|m| m.state.evictions),
        })
        .collect();
    let mut best: Option<&CacheReport> = None;
    for cache in caches.iter().filter(|c| c.peer) {
        if let Some(hit) = cache.hit_percent
            && best.is_none_or(|b| b.hit_percent.is_none_or(|best_hit| hit > best_hit))
        {
            best = Some(cache);
        }
    }
    let hit_of = |name: &str| {
        caches
            .iter()
            .find(|c| c.cache == name)
            .and_then(|c| c.hit_percent)
    };
    let default_hit = hit_of(default_cache);
    let best_peer_hit_percent = best.and_then(|b| b.hit_percent);
    let minus = |other: Option<f64>| Some(round2(default_hit? - other?));
    let share_of_opt = |hits: Option<u64>| {
        let hits = hits?;
        (opt.hits > 0).then(|| round2(hits as f64 * 100.0 / opt.hits as f64))
    };
    let default_hits = caches
        .iter()
        .find(|c| c.cache == default_cache)
        .and_then(|c| c.hits);
    RowReport {
        capacity,
        best_peer: best.map(|b| b.cache.clone()),
        best_peer_hit_percent,
        default_minus_best_peer: minus(best_peer_hit_percent),
        default_minus_moka: minus(hit_of("moka")),
        opt_hits: opt.hits,
        opt_hit_percent: round2(opt.hit_percent()),
        default_percent_of_opt: share_of_opt(default_hits),
        best_peer_percent_of_opt: share_of_opt(best.and_then(|b| b.hits)),
        caches,
    }
}

/// A hit ratio for the table.
fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".into(), |v| format!("{v:.2}"))
}

/// A difference for the table, always signed.
fn signed(value: Option<f64>) -> String {
    // `+0.00`, never `-0.00`, for a tie.
    value.map_or_else(|| "n/a".into(), |v| format!("{:+.2}", v + 0.0))
}

/// Lays `lines` out in columns: the first left-aligned, the rest right.
fn align(lines: &[Vec<String>]) -> String {
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            lines
                .iter()
                .filter_map(|line| line.get(i))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in lines {
        let mut text = String::new();
        for (i, cell) in line.iter().enumerate() {
            if i == 0 {
                let _ = write!(text, "{cell:<width$}", width = widths[i]);
            } else {
                let _ = write!(text, "  {cell:>width$}", width = widths[i]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;
    use std::path::PathBuf;

    use super::*;
    use crate::caches::CacheState;
    use crate::replay::CapacityResults;
    use crate::synthetic::Synthetic;
    use crate::trace::TraceSummary;

    fn measured(hits: u64, entries: u64, evictions: Option<u64>) -> Option<Measurement> {
        Some(Measurement {
            hits,
            accesses: 10_000,
            state: CacheState { entries, evictions },
        })
    }

    /// One trace of 10,000 accesses at capacity 100; `s3fifo` gets `hits`,
    /// OPT 6,000.
    fn sample(s3fifo_hits: u64) -> Report {
        sample_with_opt(s3fifo_hits, 6_000)
    }

    fn sample_with_opt(s3fifo_hits: u64, opt_hits: u64) -> Report {
        let caches = CacheKind::all()
            .into_iter()
            .map(|kind| {
                let measurement = match kind {
                    CacheKind::Shoal(EvictionPolicy::S3Fifo) => {
                        measured(s3fifo_hits, 100, Some(10_000 - s3fifo_hits - 100))
                    }
                    CacheKind::Shoal(EvictionPolicy::NoEviction) => None,
                    CacheKind::Shoal(_) => measured(4_000, 100, Some(5_900)),
                    CacheKind::Moka => measured(4_523, 100, None),
                    CacheKind::QuickCache => measured(4_612, 100, None),
                    CacheKind::Lru => measured(4_000, 100, Some(5_900)),
                };
                (kind, measurement)
            })
            .collect();
        let results = [TraceResults {
            source: TraceSource::File {
                path: PathBuf::from("traces/T1.lis.zst"),
                format: TraceFormat::Arc,
            },
            summary: TraceSummary {
                accesses: 10_000,
                unique_keys: 2_000,
            },
            rows: vec![CapacityResults {
                capacity: NonZeroUsize::new(100).expect("non-zero"),
                opt: OptResult {
                    hits: opt_hits,
                    accesses: 10_000,
                },
                caches,
            }],
        }];
        let info = RunInfo::new(Some(TraceFormat::Arc), 1, EvictionPolicy::S3Fifo, None);
        Report::new(info, &results)
    }

    #[test]
    fn best_peer_and_differences_use_rounded_percentages() {
        let report = sample(4_701);
        let row = &report.traces[0].rows[0];
        assert_eq!(row.best_peer.as_deref(), Some("quick_cache"));
        assert_eq!(row.best_peer_hit_percent, Some(46.12));
        assert_eq!(row.default_minus_best_peer, Some(0.89));
        assert_eq!(row.default_minus_moka, Some(1.78));
        let noeviction = row
            .caches
            .iter()
            .find(|c| c.cache == "shoal/noeviction")
            .expect("listed");
        assert_eq!(noeviction.hit_percent, None);
    }

    #[test]
    fn table_shows_every_cache_na_and_signed_differences() {
        let table = sample(4_500).to_table();
        assert!(table.contains("1 shard per namespace"), "{table}");
        assert!(table.contains("default policy s3fifo"), "{table}");
        assert!(
            table.contains("T1.lis.zst: 10000 accesses, 2000 unique blocks"),
            "{table}"
        );
        let header = table
            .lines()
            .find(|line| line.starts_with("trace"))
            .expect("header");
        for name in ["shoal/s3fifo", "shoal/lru", "shoal/lfu", "shoal/noeviction"] {
            assert!(header.contains(name), "{header}");
        }
        for name in [
            "moka",
            "quick_cache",
            "lru",
            "best peer",
            "vs best",
            "vs moka",
            "opt",
            "s3fifo/opt %",
            "best/opt %",
        ] {
            assert!(header.contains(name), "{header}");
        }
        let row = table
            .lines()
            .find(|line| line.starts_with("T1.lis.zst "))
            .expect("row");
        let cells: Vec<&str> = row.split_whitespace().collect();
        // One cell per cache, in the order of `CacheKind::all`, whatever
        // policies the engine has.
        let mut expected = vec!["T1.lis.zst", "100"];
        expected.extend(CacheKind::all().into_iter().map(|kind| match kind {
            CacheKind::Shoal(EvictionPolicy::S3Fifo) => "45.00",
            CacheKind::Shoal(EvictionPolicy::NoEviction) => "n/a",
            CacheKind::Shoal(_) | CacheKind::Lru => "40.00",
            CacheKind::Moka => "45.23",
            CacheKind::QuickCache => "46.12",
        }));
        expected.extend(["quick_cache", "-1.12", "-0.23", "60.00", "75.00", "76.87"]);
        assert_eq!(cells, expected);
        assert!(table.contains("on 0 of 1 rows, moka on 0 of 1"), "{table}");
        assert!(table.contains("sanity: no cache held more"), "{table}");
    }

    #[test]
    fn a_tie_is_plus_zero() {
        let report = sample(4_612);
        assert_eq!(report.traces[0].rows[0].default_minus_best_peer, Some(0.0));
        assert!(report.to_table().contains("+0.00"));
        assert_eq!(signed(Some(-0.0)), "+0.00");
    }

    #[test]
    fn json_carries_the_same_figures() {
        let report = sample(4_701);
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("valid JSON");
        assert_eq!(json["format"], "arc");
        assert_eq!(json["shards"], 1);
        assert_eq!(json["default_policy"], "s3fifo");
        assert_eq!(json["limit"], serde_json::Value::Null);
        let trace = &json["traces"][0];
        assert_eq!(trace["trace"], "T1.lis.zst");
        assert_eq!(trace["accesses"], 10_000);
        let row = &trace["rows"][0];
        assert_eq!(row["capacity"], 100);
        assert_eq!(row["best_peer"], "quick_cache");
        assert_eq!(row["default_minus_best_peer"], 0.89);
        let cache = |name: &str| {
            row["caches"]
                .as_array()
                .and_then(|caches| caches.iter().find(|c| c["cache"] == name))
                .unwrap_or_else(|| panic!("{name} is listed"))
                .clone()
        };
        assert_eq!(row["caches"][0]["peer"], false, "shoal comes first");
        assert_eq!(cache("shoal/s3fifo")["hit_percent"], 47.01);
        assert_eq!(cache("shoal/s3fifo")["peer"], false);
        assert_eq!(
            cache("shoal/noeviction")["hit_percent"],
            serde_json::Value::Null
        );
        assert_eq!(cache("moka")["peer"], true);
        assert_eq!(cache("moka")["hits"], 4_523);
        assert_eq!(trace["file"], "traces/T1.lis.zst");
        assert_eq!(trace["synthetic"], serde_json::Value::Null);
        assert_eq!(row["opt_hits"], 6_000);
        assert_eq!(row["opt_hit_percent"], 60.0);
        assert_eq!(row["default_percent_of_opt"], 78.35);
        assert_eq!(row["best_peer_percent_of_opt"], 76.87);
    }

    #[test]
    fn shares_of_opt_come_from_hit_counts() {
        // 1 and 3 hits of 10,000 round to 0.01 % and 0.03 %, yet one is a
        // third of the other.
        let report = sample_with_opt(1, 3);
        let row = &report.traces[0].rows[0];
        assert_eq!(row.default_percent_of_opt, Some(33.33));
        assert_eq!(row.opt_hit_percent, 0.03);
        // Without a hit to OPT there is no share to give.
        let none = sample_with_opt(0, 0);
        let row = &none.traces[0].rows[0];
        assert_eq!(row.default_percent_of_opt, None);
        assert_eq!(row.best_peer_percent_of_opt, None);
        let table = none.to_table();
        let cells: Vec<&str> = table
            .lines()
            .find(|line| line.starts_with("T1.lis.zst "))
            .expect("row")
            .split_whitespace()
            .collect();
        assert_eq!(cells[cells.len() - 3..], ["0.00", "n/a", "n/a"]);
    }

    #[test]
    fn a_cache_beating_opt_is_a_problem() {
        let report = sample_with_opt(4_500, 4_600);
        let problems = report.problems();
        // quick_cache's 4,612 hits are more than OPT's 4,600.
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("quick_cache: 4612 hits, more than OPT's 4600"),
            "{problems:?}"
        );
    }

    #[test]
    fn synthetic_traces_are_named_by_their_spec() {
        let shape = "loop:1200".parse().expect("valid spec");
        let results = [TraceResults {
            source: TraceSource::Synthetic(Synthetic {
                shape,
                length: 10_000,
            }),
            summary: TraceSummary {
                accesses: 10_000,
                unique_keys: 1_200,
            },
            rows: vec![],
        }];
        let info = RunInfo::new(None, 1, EvictionPolicy::S3Fifo, None);
        let report = Report::new(info, &results);
        let trace = &report.traces[0];
        assert_eq!(trace.trace, "synthetic loop:1200");
        assert_eq!(trace.file, None);
        assert_eq!(trace.synthetic.as_deref(), Some("loop:1200"));
        let table = report.to_table();
        assert!(
            table.contains("format n/a (synthetic traces only)"),
            "{table}"
        );
        assert!(
            table.contains("synthetic loop:1200: 10000 accesses, 1200 unique blocks"),
            "{table}"
        );
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
        assert_eq!(json["format"], serde_json::Value::Null);
        assert_eq!(json["traces"][0]["synthetic"], "loop:1200");
    }

    #[test]
    fn inconsistent_counts_are_reported() {
        let mut report = sample(4_500);
        assert!(report.problems().is_empty());
        let row = &mut report.traces[0].rows[0];
        for cache in &mut row.caches {
            match cache.cache.as_str() {
                "shoal/s3fifo" => cache.evictions = Some(1),
                "moka" => cache.entries = Some(101),
                _ => {}
            }
        }
        let problems = report.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("shoal/s3fifo"), "{problems:?}");
        assert!(
            problems[1].contains("moka: holds 101 entries"),
            "{problems:?}"
        );
        assert!(report.to_table().contains("sanity: PROBLEM"));
    }
}
