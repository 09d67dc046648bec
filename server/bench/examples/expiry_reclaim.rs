//! Measures how fast the expiry sweeper reclaims a mass expiry on the real
//! clock: one million keys with a one-second TTL, then the time until every
//! one is gone and the memory the engine reports before and after.
//!
//! ```text
//! cargo run --release -p shoal-bench --example expiry_reclaim
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;
use shoal_engine::{Engine, EngineConfig, Expiry, ExpirySweeper, SetOptions};

const KEYS: u32 = 1_000_000;
const TTL_MS: i64 = 1_000;

/// Resident set size of this process, from /proc (Linux only).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::new(EngineConfig::default());
    let namespace = engine.namespace("bench")?;
    let _sweeper = ExpirySweeper::start(engine.clone(), Duration::from_millis(100))?;
    let rss_before = rss_bytes().unwrap_or(0);

    let options = SetOptions {
        expiry: Expiry::AfterMs(TTL_MS),
        ..SetOptions::default()
    };
    let value = Bytes::from_static(b"0123456789abcdef0123456789abcdef");
    let started = Instant::now();
    for i in 0..KEYS {
        namespace.set(format!("key:{i:08}").as_bytes(), value.clone(), options)?;
    }
    let loaded_in = started.elapsed();
    let deadline = started + Duration::from_millis(TTL_MS.unsigned_abs());
    let full = namespace.stats();
    let rss_full = rss_bytes().unwrap_or(0);
    println!(
        "loaded {KEYS} keys in {loaded_in:.2?}; engine memory {:.1} MiB; RSS {:.1} MiB (+{:.1})",
        mib(full.memory_bytes),
        mib(rss_full),
        mib(rss_full.saturating_sub(rss_before))
    );

    while !namespace.is_empty() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let gone_at = Instant::now();
    let after = namespace.stats();
    println!(
        "last key reclaimed {:.0?} after the last deadline ({:.0?} after the first); expirations {}",
        gone_at.saturating_duration_since(deadline + loaded_in),
        gone_at.saturating_duration_since(deadline),
        after.expirations
    );
    println!(
        "engine memory after: {:.3} MiB; RSS after: {:.1} MiB",
        mib(after.memory_bytes),
        mib(rss_bytes().unwrap_or(0))
    );
    Ok(())
}
