//! Turning replay results into a table or JSON.
//!
//! Hit ratios are percentages rounded to two decimals, and every difference
//! is taken between the rounded figures, so the JSON and the table agree
//! with each other and with the arithmetic a reader does on them.

use std::fmt::Write as _;

use serde::Serialize;
use shoal_engine::EvictionPolicy;

use crate::caches::CacheKind;
use crate::replay::{Measurement, TraceResults, trace_name};
use crate::trace::TraceFormat;

/// Settings of the run, shown above the results.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// Trace format.
    pub format: &'static str,
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
        format: TraceFormat,
        shards: usize,
        default_policy: EvictionPolicy,
        limit: Option<u64>,
    ) -> Self {
        Self {
            format: format.name(),
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
    /// File name of the trace.
    pub trace: String,
    /// The path as given on the command line.
    pub file: String,
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
                trace: trace_name(&trace.path),
                file: trace.path.display().to_string(),
                accesses: trace.summary.accesses,
                unique_keys: trace.summary.unique_keys,
                rows: trace
                    .rows
                    .iter()
                    .map(|row| row_report(row.capacity.get(), &row.caches, &default_cache))
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
    /// Every cache must hold at most its capacity, and a cache that counts
    /// its evictions must have evicted exactly what it inserted (one per
    /// miss) but no longer holds.
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
            info.format
        );
        let _ = writeln!(
            out,
            "shoal: {} shard{} per namespace (max_keys is split evenly across shards), \
             default policy {}",
            info.shards,
            if info.shards == 1 { "" } else { "s" },
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
        ]);
        let mut lines = vec![header];
        for trace in &self.traces {
            for row in &trace.rows {
                let mut line = vec![trace.trace.clone(), row.capacity.to_string()];
                line.extend(row.caches.iter().map(|c| percent(c.hit_percent)));
                line.push(row.best_peer.clone().unwrap_or_else(|| "n/a".into()));
                line.push(signed(row.default_minus_best_peer));
                line.push(signed(row.default_minus_moka));
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
                "sanity: no cache held more than its capacity; every shoal replay evicted \
                 exactly its misses minus the keys it held"
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
    RowReport {
        capacity,
        best_peer: best.map(|b| b.cache.clone()),
        best_peer_hit_percent,
        default_minus_best_peer: minus(best_peer_hit_percent),
        default_minus_moka: minus(hit_of("moka")),
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
    use crate::trace::TraceSummary;

    fn measured(hits: u64, entries: u64, evictions: Option<u64>) -> Option<Measurement> {
        Some(Measurement {
            hits,
            accesses: 10_000,
            state: CacheState { entries, evictions },
        })
    }

    /// One trace of 10,000 accesses at capacity 100; `s3fifo` gets `hits`.
    fn sample(s3fifo_hits: u64) -> Report {
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
            path: PathBuf::from("traces/T1.lis.zst"),
            summary: TraceSummary {
                accesses: 10_000,
                unique_keys: 2_000,
            },
            rows: vec![CapacityResults {
                capacity: NonZeroUsize::new(100).expect("non-zero"),
                caches,
            }],
        }];
        let info = RunInfo::new(TraceFormat::Arc, 1, EvictionPolicy::S3Fifo, None);
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
        ] {
            assert!(header.contains(name), "{header}");
        }
        let row = table
            .lines()
            .find(|line| line.starts_with("T1.lis.zst "))
            .expect("row");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "T1.lis.zst",
                "100",
                "45.00",
                "40.00",
                "40.00",
                "n/a",
                "45.23",
                "46.12",
                "40.00",
                "quick_cache",
                "-1.12",
                "-0.23"
            ]
        );
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
        assert_eq!(row["caches"][0]["cache"], "shoal/s3fifo");
        assert_eq!(row["caches"][0]["hit_percent"], 47.01);
        assert_eq!(row["caches"][3]["hit_percent"], serde_json::Value::Null);
        assert_eq!(row["caches"][4]["cache"], "moka");
        assert_eq!(row["caches"][4]["peer"], true);
    }

    #[test]
    fn inconsistent_counts_are_reported() {
        let mut report = sample(4_500);
        assert!(report.problems().is_empty());
        let row = &mut report.traces[0].rows[0];
        row.caches[0].evictions = Some(1);
        row.caches[4].entries = Some(101);
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
