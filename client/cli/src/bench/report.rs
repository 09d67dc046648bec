//! What a test measured, as redis-benchmark's `-q` line or a JSON object.

use std::time::Duration;

use serde_json::{Value, json};
use tonic::Status;

use crate::args::bench::{BenchArgs, Test};
use crate::bench::workers::Tally;

/// The measured phase of one test.
#[derive(Debug)]
pub struct Report {
    /// Which test.
    pub test: Test,
    /// Keys per batch or commands in flight per stream; 1 for unary tests.
    pub depth: u32,
    /// From the first request sent to the last reply received.
    pub elapsed: Duration,
    /// What the workers counted.
    pub tally: Tally,
}

/// Latency figures, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest request.
    pub max: f64,
}

impl Report {
    /// Completed requests per second.
    pub fn requests_per_sec(&self) -> f64 {
        per_sec(self.tally.requests, self.elapsed)
    }

    /// Keys or commands per second.
    pub fn items_per_sec(&self) -> f64 {
        per_sec(self.tally.items, self.elapsed)
    }

    /// Latency percentiles of the successful requests (zero when none
    /// succeeded).
    pub fn percentiles(&self) -> Percentiles {
        let h = &self.tally.latency;
        let ms = |nanos: u64| nanos as f64 / 1e6;
        Percentiles {
            p50: ms(h.value_at_quantile(0.5)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }

    /// One line in the manner of `redis-benchmark -q`, with the tail
    /// latencies added:
    /// `GET: 81234.56 requests per second, p50=0.311 p99=0.815 p99.9=1.207 max=4.511 msec`.
    pub fn line(&self) -> String {
        let p = self.percentiles();
        let name = self.test.name().to_uppercase();
        let label = match self.test {
            Test::Mget | Test::Mset => format!("{name} ({} keys per batch)", self.depth),
            Test::Pipeline => format!("{name} ({} GETs in flight per stream)", self.depth),
            _ => name,
        };
        let mut line = format!(
            "{label}: {:.2} requests per second, ",
            self.requests_per_sec()
        );
        if self.test.is_batch() {
            line.push_str(&format!("{:.2} keys per second, ", self.items_per_sec()));
        }
        line.push_str(&format!(
            "p50={:.3} p99={:.3} p99.9={:.3} max={:.3} msec",
            p.p50, p.p99, p.p999, p.max
        ));
        if self.tally.misses > 0 {
            line.push_str(&format!(
                ", {:.1}% misses",
                100.0 * self.tally.misses as f64 / self.tally.items.max(1) as f64
            ));
        }
        if self.tally.errors > 0 {
            line.push_str(&format!(", {} errors", self.tally.errors));
        }
        line
    }

    /// The report as one JSON object, with the settings that produced it.
    pub fn json(&self, args: &BenchArgs) -> Value {
        let p = self.percentiles();
        let mut doc = json!({
            "test": self.test.name(),
            "requests": self.tally.requests,
            "items": self.tally.items,
            "errors": self.tally.errors,
            "misses": self.tally.misses,
            "seconds": self.elapsed.as_secs_f64(),
            "requests_per_sec": self.requests_per_sec(),
            "items_per_sec": self.items_per_sec(),
            "latency_ms": { "p50": p.p50, "p99": p.p99, "p99_9": p.p999, "max": p.max },
            "depth": self.depth,
            "concurrency": args.concurrency,
            "connections": args.connections,
            "threads": args.threads,
            "value_size": args.value_size,
            "keyspace": args.keyspace,
            "distribution": args.distribution.name(),
        });
        if let Some(status) = &self.tally.first_error {
            doc["first_error"] = json!(describe(status));
        }
        doc
    }
}

/// A failure as `Code: message`, or the code alone when there is no message
/// (as for an RPC the server does not implement).
pub fn describe(status: &Status) -> String {
    if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{:?}: {}", status.code(), status.message())
    }
}

fn per_sec(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(test: Test, requests: u64, items: u64, latencies_us: &[u64]) -> Report {
        let mut tally = Tally::new();
        for &us in latencies_us {
            tally.latency.record(us * 1000).unwrap();
        }
        tally.requests = requests;
        tally.items = items;
        Report {
            test,
            depth: 16,
            elapsed: Duration::from_secs(2),
            tally,
        }
    }

    #[test]
    fn a_line_reads_like_redis_benchmark_with_tail_latencies() {
        let latencies: Vec<u64> = (1..=1000).collect();
        let line = report(Test::Get, 1000, 1000, &latencies).line();
        assert_eq!(
            line,
            "GET: 500.00 requests per second, p50=0.500 p99=0.990 p99.9=0.999 max=1.000 msec"
        );
    }

    #[test]
    fn batches_report_keys_per_second_too() {
        let mut batch = report(Test::Mget, 100, 1600, &[100]);
        batch.tally.misses = 16;
        batch.tally.errors = 2;
        let line = batch.line();
        assert!(
            line.starts_with("MGET (16 keys per batch): 50.00 requests per second, 800.00 keys per second, p50=0.100"),
            "{line}"
        );
        assert!(line.ends_with(", 1.0% misses, 2 errors"), "{line}");
    }
}
