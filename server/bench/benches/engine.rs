//! In-process throughput of the engine against moka (W-TinyLFU),
//! quick_cache (CLOCK-Pro) and a plain DashMap (no eviction), on the same
//! workload in the same run: Zipf(0.99) key popularity over 1 000 000 keys,
//! capacity 100 000, 90% reads and 10% writes of 32-byte values, on 1 and 2
//! threads. shoal runs with TTL bookkeeping, versions and memory accounting
//! as always, and the default eviction policy (W-TinyLFU) at `max_keys`.
//!
//! ```text
//! cargo bench -p shoal-bench --bench engine
//! ```

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

/// The allocator shoal-server ships with, for every cache in the run: reads
/// that return a copy of a short value allocate, and the figures should be
/// those of the server as deployed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Zipf};
use shoal_engine::{Engine, EngineConfig, Namespace, SetOptions};

const KEY_SPACE: u64 = 1_000_000;
const CAPACITY: u64 = 100_000;
const ACCESSES_PER_THREAD: usize = 1 << 20;

/// A cache under test: the same read-mostly workload runs against each.
trait Workload: Send + Sync {
    fn read(&self, key: u64) -> bool;
    fn write(&self, key: u64, value: &Bytes);
}

struct Shoal(Arc<Namespace>);

impl Workload for Shoal {
    fn read(&self, key: u64) -> bool {
        self.0.get(&key.to_be_bytes()).ok().flatten().is_some()
    }
    fn write(&self, key: u64, value: &Bytes) {
        let _ = self
            .0
            .set(&key.to_be_bytes(), value.clone(), SetOptions::default());
    }
}

struct Moka(moka::sync::Cache<u64, Bytes>);

impl Workload for Moka {
    fn read(&self, key: u64) -> bool {
        self.0.get(&key).is_some()
    }
    fn write(&self, key: u64, value: &Bytes) {
        self.0.insert(key, value.clone());
    }
}

struct QuickCache(quick_cache::sync::Cache<u64, Bytes>);

impl Workload for QuickCache {
    fn read(&self, key: u64) -> bool {
        self.0.get(&key).is_some()
    }
    fn write(&self, key: u64, value: &Bytes) {
        self.0.insert(key, value.clone());
    }
}

struct Map(dashmap::DashMap<u64, Bytes>);

impl Workload for Map {
    fn read(&self, key: u64) -> bool {
        self.0.get(&key).is_some()
    }
    fn write(&self, key: u64, value: &Bytes) {
        self.0.insert(key, value.clone());
    }
}

fn caches() -> Vec<(&'static str, Arc<dyn Workload>)> {
    let mut config = EngineConfig::default();
    config.max_keys = CAPACITY;
    let engine = Engine::new(config);
    let namespace = engine.namespace("bench").expect("namespace");
    vec![
        ("shoal", Arc::new(Shoal(namespace)) as Arc<dyn Workload>),
        ("moka", Arc::new(Moka(moka::sync::Cache::new(CAPACITY)))),
        (
            "quick_cache",
            Arc::new(QuickCache(quick_cache::sync::Cache::new(CAPACITY as usize))),
        ),
        ("dashmap", Arc::new(Map(dashmap::DashMap::new()))),
    ]
}

/// Zipf(0.99)-distributed keys, one sequence per thread.
fn key_sequence(seed: u64) -> Vec<u64> {
    let zipf = Zipf::new(KEY_SPACE as f64, 0.99).expect("valid Zipf parameters");
    let mut rng = StdRng::seed_from_u64(seed);
    (0..ACCESSES_PER_THREAD)
        .map(|_| zipf.sample(&mut rng) as u64)
        .collect()
}

/// Runs `ops` accesses from `keys` (every tenth a write) starting at `start`.
fn run(cache: &dyn Workload, keys: &[u64], start: usize, ops: u64, value: &Bytes) {
    let mut position = start;
    for op in 0..ops {
        let key = keys[position];
        position = (position + 1) % keys.len();
        if op % 10 == 0 {
            cache.write(key, value);
        } else if !cache.read(key) {
            std::hint::black_box(key);
        }
    }
}

fn zipf_read_mostly(c: &mut Criterion) {
    let value = Bytes::from_static(b"0123456789abcdef0123456789abcdef");
    let sequences: Vec<Arc<Vec<u64>>> = (0..2).map(|seed| Arc::new(key_sequence(seed))).collect();
    let mut group = c.benchmark_group("zipf_0.99_90r10w");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    for threads in [1usize, 2] {
        for (name, cache) in caches() {
            // Warm up to steady state: fill to capacity first.
            run(
                cache.as_ref(),
                &sequences[0],
                0,
                ACCESSES_PER_THREAD as u64,
                &value,
            );
            group.bench_with_input(
                BenchmarkId::new(name, format!("{threads}t")),
                &threads,
                |b, &threads| {
                    b.iter_custom(|iterations| {
                        let per_thread = iterations.div_ceil(threads as u64);
                        let started = Instant::now();
                        std::thread::scope(|scope| {
                            for (thread, keys) in sequences.iter().enumerate().take(threads) {
                                let cache = Arc::clone(&cache);
                                let keys = Arc::clone(keys);
                                let value = value.clone();
                                scope.spawn(move || {
                                    run(cache.as_ref(), &keys, thread * 7919, per_thread, &value)
                                });
                            }
                        });
                        // Wall time for all `iterations` operations, so criterion's
                        // throughput is the threads' combined rate.
                        started.elapsed()
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, zipf_read_mostly);
criterion_main!(benches);
