//! Measures honest memory: (1) a write storm of three times a memory budget
//! with values from 16 B to 64 KiB, reporting the process RSS against the
//! budget (`small-storm`: values of 16 and 32 bytes only, where per-key
//! costs dominate); (2) the per-key overhead beyond key and value bytes for one
//! million 16-byte keys with 32-byte values, from the engine's figure and
//! from RSS.
//!
//! Each measurement runs in a fresh process, so that memory freed by one
//! cannot hide in the other's RSS figure:
//!
//! ```text
//! cargo run --release -p shoal-bench --example memory_budget -- storm [BUDGET_MIB]
//! cargo run --release -p shoal-bench --example memory_budget -- small-storm [BUDGET_MIB]
//! cargo run --release -p shoal-bench --example memory_budget -- overhead
//! ```
//!
//! It uses the allocator shoal-server ships with, and turns transparent huge
//! pages off as shoal-server does by default, so that RSS is measured as the
//! server would show it; `--huge-pages` leaves them on.

/// The allocator of the shoal-server binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::Bytes;
use shoal_engine::{Engine, EngineConfig, SetOptions};

/// Resident set size of this process, from /proc (Linux only).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A deterministic spread of value sizes: powers of two from 16 bytes up,
/// `sizes` of them (13 reach 64 KiB; 2 give the small-value storm).
fn value_size(i: u64, sizes: u64) -> usize {
    let mixed = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    16 << (mixed % sizes)
}

fn storm(budget: u64, sizes: u64) -> Result<(), Box<dyn std::error::Error>> {
    let base = rss_bytes();
    let mut config = EngineConfig::default();
    config.max_memory_bytes = budget;
    let engine = Engine::new(config);
    let ns = engine.namespace("storm")?;
    let mut written = 0u64;
    let mut peak = 0u64;
    let mut i = 0u64;
    while written < 3 * budget {
        let size = value_size(i, sizes);
        ns.set(
            format!("storm:{i}").as_bytes(),
            Bytes::from(vec![b'x'; size]),
            SetOptions::default(),
        )?;
        written += size as u64;
        i += 1;
        if i.is_multiple_of(1024) {
            peak = peak.max(rss_bytes());
        }
    }
    let stats = ns.stats();
    let usage = engine.budget_usage();
    let rss = rss_bytes();
    peak = peak.max(rss);
    println!(
        "storm: budget {:.0} MiB, wrote {:.0} MiB in {i} sets; charged {:.1} MiB, engine memory {:.1} MiB, \
         {} keys, {} evicted",
        mib(budget),
        mib(written),
        mib(usage.charged_bytes),
        mib(stats.memory_bytes),
        stats.keys,
        stats.evictions()
    );
    println!(
        "storm: RSS {:.1} MiB now, peak {:.1} MiB, base before {:.1} MiB: peak - base = {:.1}% of budget",
        mib(rss),
        mib(peak),
        mib(base),
        (peak.saturating_sub(base)) as f64 * 100.0 / budget as f64
    );
    Ok(())
}

fn per_key_overhead() -> Result<(), Box<dyn std::error::Error>> {
    const KEYS: u64 = 1_000_000;
    let base = rss_bytes();
    let engine = Engine::new(EngineConfig::default());
    let ns = engine.namespace("overhead")?;
    for i in 0..KEYS {
        let key = format!("key:{i:012}");
        let value = Bytes::from(format!("value:{i:026}"));
        ns.set(key.as_bytes(), value, SetOptions::default())?;
    }
    let stats = ns.stats();
    let payload = KEYS * (16 + 32);
    let rss = rss_bytes().saturating_sub(base);
    println!(
        "overhead: {KEYS} keys of 16 B with 32-byte values; engine figure {:.1} B/key beyond payload, \
         RSS {:.1} B/key beyond payload",
        (stats.memory_bytes.saturating_sub(payload)) as f64 / KEYS as f64,
        (rss.saturating_sub(payload)) as f64 / KEYS as f64
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let huge_pages = args.iter().any(|arg| arg == "--huge-pages");
    args.retain(|arg| arg != "--huge-pages");
    if !huge_pages {
        shoal_server::process::huge_pages::disable()?;
    }
    let mut args = args.into_iter();
    match args.next().as_deref() {
        Some(mode @ ("storm" | "small-storm")) => {
            let budget_mib: u64 = args.next().map_or(Ok(256), |arg| arg.parse())?;
            let sizes = if mode == "storm" { 13 } else { 2 };
            storm(budget_mib * 1024 * 1024, sizes)
        }
        Some("overhead") => per_key_overhead(),
        _ => Err(
            "usage: memory_budget [--huge-pages] storm|small-storm [BUDGET_MIB] | memory_budget [--huge-pages] overhead"
                .into(),
        ),
    }
}
