//! Read latency while the engine is busy reclaiming: p50/p99/p99.9 of a
//! get on a quiet engine, during a mass expiry (500 000 keys reaching their
//! deadline at once, reclaimed by a sweeping thread that makes the background
//! sweeper's call, so that the window measured is exactly the sweep), and
//! during an
//! eviction burst (a writer inserting new keys as fast as it can into a full
//! engine, each insert evicting). The reader reads keys that stay; the ratio
//! of each busy p99 to the quiet p99 is what to look at.
//!
//! ```text
//! cargo run --release -p shoal-server --example latency_bursts
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use shoal_server::engine::{Engine, EngineConfig, Expiry, KEYS_PER_LOCK, Namespace, SetOptions};

const STAYING: u64 = 100_000;
const EXPIRING: u64 = 500_000;
const CAPACITY: u64 = 1_000_000;

fn staying_key(i: u64) -> [u8; 9] {
    let mut key = [b's'; 9];
    key[1..].copy_from_slice(&i.to_be_bytes());
    key
}

/// Reads random staying keys until `done` says stop, recording each get.
fn read_until(ns: &Namespace, done: impl Fn() -> bool) -> Histogram<u64> {
    let mut histogram = Histogram::<u64>::new(3).expect("valid histogram");
    let mut i = 0u64;
    while !done() {
        for _ in 0..256 {
            i = i
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = staying_key((i >> 33) % STAYING);
            let started = Instant::now();
            let found = ns.get(&key).ok().flatten().is_some();
            let nanos = started.elapsed().as_nanos() as u64;
            assert!(found, "staying keys must stay");
            let _ = histogram.record(nanos.max(1));
        }
    }
    histogram
}

fn report(phase: &str, histogram: &Histogram<u64>, quiet_p99: Option<u64>) -> u64 {
    let p99 = histogram.value_at_quantile(0.99);
    let ratio = quiet_p99.map_or(String::new(), |quiet| {
        format!("; p99 / quiet p99 = {:.2}", p99 as f64 / quiet as f64)
    });
    println!(
        "{phase:>9}: {:>9} gets, p50 {:>5} ns, p99 {:>6} ns, p99.9 {:>7} ns, max {:>9} ns{ratio}",
        histogram.len(),
        histogram.value_at_quantile(0.5),
        p99,
        histogram.value_at_quantile(0.999),
        histogram.max()
    );
    p99
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = EngineConfig::default();
    config.max_keys = CAPACITY;
    let engine = Engine::new(config);
    let ns = engine.namespace("latency")?;
    let value = Bytes::from_static(b"0123456789abcdef0123456789abcdef");
    for i in 0..STAYING {
        ns.set(&staying_key(i), value.clone(), SetOptions::default())?;
    }
    // Warm the staying keys so the eviction policy sees them as reused.
    read_until(&ns, {
        let until = Instant::now() + Duration::from_millis(300);
        move || Instant::now() >= until
    });

    let until = Instant::now() + Duration::from_secs(1);
    let quiet = read_until(&ns, || Instant::now() >= until);
    let quiet_p99 = report("quiet", &quiet, None);

    // Mass expiry: every expiring key gets the same deadline.
    let deadline_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
            + 1_500,
    )?;
    let expiring = SetOptions {
        expiry: Expiry::AtUnixMs(deadline_ms),
        ..SetOptions::default()
    };
    for i in 0..EXPIRING {
        ns.set(format!("e{i:09}").as_bytes(), value.clone(), expiring)?;
    }
    // Once the deadline has passed, a thread sweeps as the background
    // sweeper does, and the reader measures while it runs.
    let sweeping = Arc::new(AtomicBool::new(false));
    let swept = Arc::new(AtomicBool::new(false));
    let sweeper = {
        let engine = engine.clone();
        let (sweeping, swept) = (Arc::clone(&sweeping), Arc::clone(&swept));
        std::thread::spawn(move || {
            let due = std::time::UNIX_EPOCH + Duration::from_millis(deadline_ms as u64 + 1);
            if let Ok(wait) = due.duration_since(std::time::SystemTime::now()) {
                std::thread::sleep(wait);
            }
            sweeping.store(true, Ordering::Release);
            let mut removed = 0;
            while removed < EXPIRING {
                removed += engine.sweep_expired(KEYS_PER_LOCK);
            }
            swept.store(true, Ordering::Release);
        })
    };
    while !sweeping.load(Ordering::Acquire) {
        std::hint::spin_loop();
    }
    let expiry = read_until(&ns, || swept.load(Ordering::Acquire));
    sweeper.join().map_err(|_| "sweeper panicked")?;
    report("expiry", &expiry, Some(quiet_p99));

    // Eviction burst: fill to capacity, then keep inserting new keys.
    for i in 0..(CAPACITY - STAYING) {
        ns.set(
            format!("f{i:09}").as_bytes(),
            value.clone(),
            SetOptions::default(),
        )?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let ns = Arc::clone(&ns);
        let stop = Arc::clone(&stop);
        let value = value.clone();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = ns.set(
                    format!("w{i:012}").as_bytes(),
                    value.clone(),
                    SetOptions::default(),
                );
                i += 1;
            }
            i
        })
    };
    let until = Instant::now() + Duration::from_secs(1);
    let eviction = read_until(&ns, || Instant::now() >= until);
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().map_err(|_| "writer panicked")?;
    report("eviction", &eviction, Some(quiet_p99));
    println!(
        "eviction burst: {written} inserts in 1 s, {} evictions in all",
        ns.stats().evictions()
    );
    Ok(())
}
