//! Read latency while the engine is busy reclaiming: p50/p99/p99.9 of a
//! get on a quiet engine, during a mass expiry (500 000 keys reaching their
//! deadline at once, reclaimed by a sweeping thread that makes the background
//! sweeper's call, so that the window measured is exactly the sweep), and
//! during an eviction burst (a writer inserting new keys as fast as it can
//! into a full engine, each insert evicting). The reader reads keys that
//! stay.
//!
//! Each burst runs twice: in the reader's own engine, and next door, in a
//! second engine that shares nothing with the reader's but the machine. The
//! burst next door costs the reader what any busy neighbour on the other
//! core would (caches and memory bandwidth taken from under it); what the
//! burst in its own engine costs beyond that is the engine's share. Each
//! busy p99 is printed against the quiet p99 and against the next-door p99.
//!
//! ```text
//! cargo run --release -p shoal-bench --example latency_bursts
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use shoal_engine::{Engine, EngineConfig, Expiry, KEYS_PER_LOCK, Namespace, SetOptions};

const STAYING: u64 = 100_000;
const EXPIRING: u64 = 500_000;
const CAPACITY: u64 = 1_000_000;
const VALUE: &[u8] = b"0123456789abcdef0123456789abcdef";

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

/// Prints a phase's percentiles, with its p99 against each `(name, p99)`
/// peer, and returns its p99.
fn report(phase: &str, histogram: &Histogram<u64>, peers: &[(&str, u64)]) -> u64 {
    let p99 = histogram.value_at_quantile(0.99);
    let ratios: String = peers
        .iter()
        .map(|(name, peer)| format!("; / {name} {:.2}", p99 as f64 / *peer as f64))
        .collect();
    println!(
        "{phase:>18}: {:>8} gets, p50 {:>5} ns, p99 {:>6} ns, p99.9 {:>7} ns, max {:>9} ns{ratios}",
        histogram.len(),
        histogram.value_at_quantile(0.5),
        p99,
        histogram.value_at_quantile(0.999),
        histogram.max()
    );
    p99
}

/// An engine bounded at `CAPACITY` keys, and its one namespace.
fn bounded_engine(name: &str) -> Result<(Engine, Arc<Namespace>), Box<dyn std::error::Error>> {
    let mut config = EngineConfig::default();
    config.max_keys = CAPACITY;
    let engine = Engine::new(config);
    let ns = engine.namespace(name)?;
    Ok((engine, ns))
}

/// Reads during the second before a burst, on the same data, and during it.
struct Burst {
    before: Histogram<u64>,
    during: Histogram<u64>,
}

/// Reads from `reader` for up to `window`, ending by `end`.
fn read_for(reader: &Namespace, window: Duration, end: Instant) -> Histogram<u64> {
    let until = (Instant::now() + window).min(end);
    read_until(reader, || Instant::now() >= until)
}

/// Writes `EXPIRING` keys due at one moment into `target`; reads from
/// `reader` for a second before the deadline, with the keys waiting, and
/// again while a thread sweeps them from `engine` as the background sweeper
/// does, from the deadline until every one is gone. Returns both.
fn mass_expiry(
    reader: &Namespace,
    engine: &Engine,
    target: &Namespace,
) -> Result<Burst, Box<dyn std::error::Error>> {
    let lead = Duration::from_secs(4);
    let due_at = Instant::now() + lead;
    let deadline_ms = i64::try_from(
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)? + lead).as_millis(),
    )?;
    let expiring = SetOptions {
        expiry: Expiry::AtUnixMs(deadline_ms),
        ..SetOptions::default()
    };
    for i in 0..EXPIRING {
        target.set(
            format!("e{i:09}").as_bytes(),
            Bytes::from_static(VALUE),
            expiring,
        )?;
    }
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
    let before = read_for(
        reader,
        Duration::from_secs(1),
        due_at - Duration::from_millis(100),
    );
    while !sweeping.load(Ordering::Acquire) {
        std::hint::spin_loop();
    }
    let during = read_until(reader, || swept.load(Ordering::Acquire));
    sweeper.join().map_err(|_| "sweeper panicked")?;
    Ok(Burst { before, during })
}

/// Fills `target` to capacity; reads from `reader` for a second, then for
/// another while a writer inserts new keys into `target` as fast as it can,
/// each insert evicting. Returns both and the number of inserts.
fn eviction_burst(
    reader: &Namespace,
    target: &Arc<Namespace>,
) -> Result<(Burst, u64), Box<dyn std::error::Error>> {
    let held = target.stats().keys;
    for i in 0..CAPACITY.saturating_sub(held) {
        target.set(
            format!("f{i:09}").as_bytes(),
            Bytes::from_static(VALUE),
            SetOptions::default(),
        )?;
    }
    let before = read_for(
        reader,
        Duration::from_secs(1),
        Instant::now() + Duration::from_secs(1),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let target = Arc::clone(target);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = target.set(
                    format!("w{i:012}").as_bytes(),
                    Bytes::from_static(VALUE),
                    SetOptions::default(),
                );
                i += 1;
            }
            i
        })
    };
    let during = read_for(
        reader,
        Duration::from_secs(1),
        Instant::now() + Duration::from_secs(1),
    );
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().map_err(|_| "writer panicked")?;
    Ok((Burst { before, during }, written))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (engine, ns) = bounded_engine("latency")?;
    let (next_door_engine, next_door) = bounded_engine("next-door")?;
    for i in 0..STAYING {
        ns.set(
            &staying_key(i),
            Bytes::from_static(VALUE),
            SetOptions::default(),
        )?;
    }
    // Warm the staying keys so the eviction policy sees them as reused.
    read_for(
        &ns,
        Duration::from_millis(300),
        Instant::now() + Duration::from_secs(1),
    );
    let quiet = read_for(
        &ns,
        Duration::from_secs(1),
        Instant::now() + Duration::from_secs(1),
    );
    let quiet_p99 = report("quiet", &quiet, &[]);

    let next_door_expiry = mass_expiry(&ns, &next_door_engine, &next_door)?;
    let next_door_p99 = report(
        "expiry next door",
        &next_door_expiry.during,
        &[("quiet", quiet_p99)],
    );
    let expiry = mass_expiry(&ns, &engine, &ns)?;
    let before_p99 = report("before expiry", &expiry.before, &[("quiet", quiet_p99)]);
    report(
        "expiry",
        &expiry.during,
        &[
            ("before", before_p99),
            ("quiet", quiet_p99),
            ("next door", next_door_p99),
        ],
    );

    let (next_door_eviction, _) = eviction_burst(&ns, &next_door)?;
    let next_door_p99 = report(
        "eviction next door",
        &next_door_eviction.during,
        &[("quiet", quiet_p99)],
    );
    let evictions_before = ns.stats().evictions();
    let (eviction, written) = eviction_burst(&ns, &ns)?;
    let before_p99 = report("before eviction", &eviction.before, &[("quiet", quiet_p99)]);
    report(
        "eviction",
        &eviction.during,
        &[
            ("before", before_p99),
            ("quiet", quiet_p99),
            ("next door", next_door_p99),
        ],
    );
    println!(
        "eviction burst: {written} inserts in 1 s, {} evictions",
        ns.stats().evictions() - evictions_before
    );
    Ok(())
}
