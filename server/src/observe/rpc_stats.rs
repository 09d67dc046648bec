//! Calls, outcomes and latency per RPC method.
//!
//! One table feeds both `AdminService.Stats` and the Prometheus metrics, so
//! the two never disagree. The [`RpcLayer`](crate::observe::rpc_layer::RpcLayer)
//! records every call once it has ended (a stream when its last message and
//! status went out), whichever service served it.
//!
//! Methods are registered once at start-up; recording a call is then a hash
//! lookup and a few relaxed atomic increments, with no lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tonic::Code;

/// Number of gRPC status codes (OK through UNAUTHENTICATED).
pub const CODES: usize = 17;

/// Upper bounds of the latency buckets, in seconds: from the tens of
/// microseconds a loopback read takes to the seconds a large stream may.
pub const LATENCY_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Path under which calls of unregistered methods are counted, so that
/// arbitrary paths sent by a client cannot grow the table.
pub const UNKNOWN_METHOD: &str = "/unknown/unknown";

/// Latency histogram with fixed buckets and atomic counts.
#[derive(Debug)]
struct LatencyHistogram {
    /// Upper bounds of [`LATENCY_BUCKETS`] in nanoseconds.
    bounds_ns: [u64; LATENCY_BUCKETS.len()],
    /// Calls per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl LatencyHistogram {
    fn new() -> Self {
        Self {
            bounds_ns: LATENCY_BUCKETS.map(|seconds| (seconds * 1e9) as u64),
            buckets: Default::default(),
            sum_ns: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = self.bounds_ns.partition_point(|&bound| bound < nanos);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(nanos, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Latency {
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&self.buckets)
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect();
        Latency {
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count: buckets.iter().map(|(_, count)| count).sum(),
            buckets,
        }
    }
}

#[derive(Debug)]
struct MethodCounters {
    path: &'static str,
    by_code: [AtomicU64; CODES],
    latency: LatencyHistogram,
}

/// Latency of one method, as the Prometheus histogram wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    /// Seconds spent in all calls.
    pub sum_seconds: f64,
    /// Calls.
    pub count: u64,
    /// `(upper bound in seconds, calls longer than the previous bound and at
    /// most this long)`, ending with `+Inf`. Not cumulative: the exposition
    /// encoder sums them.
    pub buckets: Vec<(f64, u64)>,
}

/// Counters of one method, as reported.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodStats {
    /// Full method path, for example `/shoal.v1.CacheService/Get`.
    pub method: &'static str,
    /// Calls completed.
    pub calls: u64,
    /// Calls by final status, codes never seen left out (OK included).
    pub by_code: Vec<(Code, u64)>,
    /// Calls that failed, by code (codes with no failure are left out).
    pub errors_by_code: Vec<(Code, u64)>,
    /// How long calls took, from the request's arrival to the final status.
    pub latency: Latency,
}

impl MethodStats {
    /// Calls that ended with a status other than OK.
    pub fn errors(&self) -> u64 {
        self.errors_by_code.iter().map(|(_, count)| count).sum()
    }

    /// The service part of the path: `shoal.v1.CacheService`.
    pub fn service(&self) -> &'static str {
        split_path(self.method).0
    }

    /// The method part of the path: `Get`.
    pub fn name(&self) -> &'static str {
        split_path(self.method).1
    }
}

/// `("shoal.v1.CacheService", "Get")` from `/shoal.v1.CacheService/Get`.
pub fn split_path(path: &str) -> (&str, &str) {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.split_once('/').unwrap_or((path, ""))
}

/// Identifies a registered method, as returned by [`RpcStats::method`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodId(usize);

/// Call counters for a fixed set of methods, plus one for every other path.
#[derive(Debug)]
pub struct RpcStats {
    methods: Vec<MethodCounters>,
    index: HashMap<&'static str, MethodId, foldhash::fast::RandomState>,
}

impl RpcStats {
    /// Counters for `methods` (full paths).
    pub fn new(methods: &[&'static str]) -> Self {
        let mut paths: Vec<&'static str> = methods.to_vec();
        paths.push(UNKNOWN_METHOD);
        paths.sort_unstable();
        paths.dedup();
        let methods: Vec<_> = paths
            .iter()
            .map(|path| MethodCounters {
                path,
                by_code: Default::default(),
                latency: LatencyHistogram::new(),
            })
            .collect();
        let index = paths
            .iter()
            .enumerate()
            .map(|(at, path)| (*path, MethodId(at)))
            .collect();
        Self { methods, index }
    }

    /// The method served at `path`; unregistered paths share one entry.
    pub fn method(&self, path: &str) -> MethodId {
        self.index
            .get(path)
            .or_else(|| self.index.get(UNKNOWN_METHOD))
            .copied()
            .unwrap_or(MethodId(0))
    }

    /// The full path of `method`.
    pub fn path(&self, method: MethodId) -> &'static str {
        self.methods[method.0].path
    }

    /// Counts one finished call of `method` that ended with `code` after
    /// `elapsed`.
    pub fn record(&self, method: MethodId, code: Code, elapsed: Duration) {
        let counters = &self.methods[method.0];
        counters.by_code[(code as usize).min(CODES - 1)].fetch_add(1, Ordering::Relaxed);
        counters.latency.observe(elapsed);
    }

    /// Counters of every method that has been called, sorted by path.
    pub fn snapshot(&self) -> Vec<MethodStats> {
        self.methods
            .iter()
            .filter_map(|counters| {
                let by_code: Vec<(Code, u64)> = (0..CODES)
                    .filter_map(|code| {
                        let count = counters.by_code[code].load(Ordering::Relaxed);
                        (count > 0).then(|| (Code::from(code as i32), count))
                    })
                    .collect();
                let calls = by_code.iter().map(|(_, count)| count).sum();
                (calls > 0).then(|| MethodStats {
                    method: counters.path,
                    calls,
                    errors_by_code: by_code
                        .iter()
                        .copied()
                        .filter(|(code, _)| *code != Code::Ok)
                        .collect(),
                    by_code,
                    latency: counters.latency.snapshot(),
                })
            })
            .collect()
    }
}

/// The canonical name of a gRPC status code, as in `OK` or `NOT_FOUND`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_calls_and_errors_by_code() {
        let stats = RpcStats::new(&["/a.S/Get", "/a.S/Set"]);
        let get = stats.method("/a.S/Get");
        stats.record(get, Code::Ok, Duration::from_micros(80));
        stats.record(get, Code::InvalidArgument, Duration::from_micros(30));
        stats.record(get, Code::InvalidArgument, Duration::from_secs(60));
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.len(), 1, "uncalled methods are left out");
        let get = &snapshot[0];
        assert_eq!((get.service(), get.name()), ("a.S", "Get"));
        assert_eq!(get.calls, 3);
        assert_eq!(get.errors(), 2);
        assert_eq!(get.errors_by_code, vec![(Code::InvalidArgument, 2)]);
        assert_eq!(get.by_code, vec![(Code::Ok, 1), (Code::InvalidArgument, 2)]);
    }

    #[test]
    fn latency_buckets_count_each_range_and_end_with_infinity() {
        let stats = RpcStats::new(&["/a.S/Get"]);
        let get = stats.method("/a.S/Get");
        stats.record(get, Code::Ok, Duration::from_micros(50));
        stats.record(get, Code::Ok, Duration::from_micros(51));
        stats.record(get, Code::Ok, Duration::from_secs(11));
        let latency = &stats.snapshot()[0].latency;
        assert_eq!(latency.count, 3);
        assert_eq!(latency.buckets[0], (0.000_05, 1), "bounds are inclusive");
        assert_eq!(latency.buckets[1], (0.000_1, 1));
        assert_eq!(latency.buckets[LATENCY_BUCKETS.len() - 1], (10.0, 0));
        assert_eq!(latency.buckets.last(), Some(&(f64::INFINITY, 1)));
        assert!((latency.sum_seconds - 11.000_101).abs() < 1e-9);
    }

    #[test]
    fn unregistered_paths_share_one_entry() {
        let stats = RpcStats::new(&["/a.S/Get"]);
        let first = stats.method("/evil/1");
        assert_eq!(first, stats.method("/evil/2"));
        assert_eq!(stats.path(first), UNKNOWN_METHOD);
        assert_ne!(first, stats.method("/a.S/Get"));
    }

    #[test]
    fn code_names_follow_the_grpc_spelling() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::from(16)), "UNAUTHENTICATED");
    }
}
