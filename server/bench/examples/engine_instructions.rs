//! The engine benchmark's workload on one thread, for one cache at a time,
//! to be run under callgrind: instructions and simulated cache misses per
//! operation are the same from run to run whatever else the machine is
//! doing, where wall time on a shared machine moves by a third and hides
//! changes of a few percent. `server/bench/benches/instructions.sh` runs it for
//! shoal and quick_cache and prints both side by side.
//!
//! The workload is that of `benches/engine.rs`: Zipf(0.99) popularity over
//! 1 000 000 keys, capacity 100 000, 90% reads and 10% writes of 32-byte
//! values. The cache is warmed with two passes over half the sequence;
//! only the last pass, over the other half, runs inside `measured_pass`,
//! the function callgrind is told to count.
//!
//! ```text
//! cargo run --release -p shoal-bench --example engine_instructions -- shoal
//! bash server/bench/benches/instructions.sh
//! ```

/// The allocator shoal-server ships with, as in `benches/engine.rs`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Zipf};
use shoal_engine::{Engine, EngineConfig, SetOptions};

const KEY_SPACE: u64 = 1_000_000;
const CAPACITY: u64 = 100_000;
const ACCESSES: usize = 1 << 20;
const VALUE: &[u8] = b"0123456789abcdef0123456789abcdef";

/// One cache under test.
trait Cache {
    fn read(&self, key: u64) -> bool;
    fn write(&self, key: u64);
}

impl Cache for std::sync::Arc<shoal_engine::Namespace> {
    fn read(&self, key: u64) -> bool {
        self.get(&key.to_be_bytes()).ok().flatten().is_some()
    }
    fn write(&self, key: u64) {
        let _ = self.set(
            &key.to_be_bytes(),
            Bytes::from_static(VALUE),
            SetOptions::default(),
        );
    }
}

impl Cache for quick_cache::sync::Cache<u64, Bytes> {
    fn read(&self, key: u64) -> bool {
        self.get(&key).is_some()
    }
    fn write(&self, key: u64) {
        self.insert(key, Bytes::from_static(VALUE));
    }
}

/// Every tenth access a write, the rest reads; returns the hits.
fn pass(cache: &dyn Cache, keys: &[u64]) -> u64 {
    let mut hits = 0;
    for (op, &key) in keys.iter().enumerate() {
        if op % 10 == 0 {
            cache.write(key);
        } else if cache.read(key) {
            hits += 1;
        }
    }
    hits
}

/// The pass callgrind counts (`--toggle-collect='*measured_pass*'`).
#[inline(never)]
fn measured_pass(cache: &dyn Cache, keys: &[u64]) -> u64 {
    pass(cache, keys)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "shoal".into());
    let zipf = Zipf::new(KEY_SPACE as f64, 0.99)?;
    let mut rng = StdRng::seed_from_u64(0);
    let keys: Vec<u64> = (0..ACCESSES)
        .map(|_| zipf.sample(&mut rng) as u64)
        .collect();
    let (warm, measured) = keys.split_at(ACCESSES / 2);

    let cache: Box<dyn Cache> = match which.as_str() {
        "shoal" => {
            let mut config = EngineConfig::default();
            config.max_keys = CAPACITY;
            Box::new(Engine::new(config).namespace("bench")?)
        }
        "quick_cache" => Box::new(quick_cache::sync::Cache::<u64, Bytes>::new(
            CAPACITY as usize,
        )),
        other => return Err(format!("unknown cache {other:?}: shoal or quick_cache").into()),
    };
    pass(cache.as_ref(), warm);
    pass(cache.as_ref(), warm);
    let hits = measured_pass(cache.as_ref(), measured);
    println!("{which}: {} operations, {hits} hits", measured.len());
    Ok(())
}
