//! Calls and failures per RPC method, reported by `AdminService.Stats`.
//!
//! Methods are registered once at start-up; recording a call is then a
//! lookup in a small fixed map and two relaxed atomic increments.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use tonic::Code;

/// Number of gRPC status codes (OK through UNAUTHENTICATED).
const CODES: usize = 17;

#[derive(Debug, Default)]
struct MethodCounters {
    calls: AtomicU64,
    by_code: [AtomicU64; CODES],
}

/// Counters of one method, as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodStats {
    /// Full method path, for example `/shoal.v1.CacheService/Get`.
    pub method: &'static str,
    /// Calls completed.
    pub calls: u64,
    /// Calls that failed, by code (codes with no failure are left out).
    pub errors_by_code: Vec<(Code, u64)>,
}

impl MethodStats {
    /// Calls that ended with a status other than OK.
    pub fn errors(&self) -> u64 {
        self.errors_by_code.iter().map(|(_, count)| count).sum()
    }
}

/// Call counters for a fixed set of methods.
#[derive(Debug)]
pub struct RpcStats {
    methods: BTreeMap<&'static str, MethodCounters>,
}

impl RpcStats {
    /// Counters for `methods` (full paths).
    pub fn new(methods: &[&'static str]) -> Self {
        Self {
            methods: methods
                .iter()
                .map(|method| (*method, MethodCounters::default()))
                .collect(),
        }
    }

    /// Counts one finished call of `method` with outcome `code`.
    pub fn record(&self, method: &'static str, code: Code) {
        let Some(counters) = self.methods.get(method) else {
            debug_assert!(false, "unregistered method {method}");
            return;
        };
        counters.calls.fetch_add(1, Ordering::Relaxed);
        if code != Code::Ok {
            counters.by_code[(code as usize).min(CODES - 1)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a call from its result.
    pub fn observe<T>(&self, method: &'static str, result: &Result<T, tonic::Status>) {
        self.record(
            method,
            result
                .as_ref()
                .map_or_else(tonic::Status::code, |_| Code::Ok),
        );
    }

    /// Counters of every method that has been called, sorted by path.
    pub fn snapshot(&self) -> Vec<MethodStats> {
        self.methods
            .iter()
            .filter_map(|(method, counters)| {
                let calls = counters.calls.load(Ordering::Relaxed);
                (calls > 0).then(|| MethodStats {
                    method,
                    calls,
                    errors_by_code: (1..CODES)
                        .filter_map(|code| {
                            let count = counters.by_code[code].load(Ordering::Relaxed);
                            (count > 0).then(|| (Code::from(code as i32), count))
                        })
                        .collect(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_calls_and_errors_by_code() {
        let stats = RpcStats::new(&["/a/Get", "/a/Set"]);
        stats.record("/a/Get", Code::Ok);
        stats.record("/a/Get", Code::InvalidArgument);
        stats.record("/a/Get", Code::InvalidArgument);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.len(), 1, "uncalled methods are left out");
        assert_eq!(snapshot[0].calls, 3);
        assert_eq!(snapshot[0].errors(), 2);
        assert_eq!(snapshot[0].errors_by_code, vec![(Code::InvalidArgument, 2)]);
    }
}
