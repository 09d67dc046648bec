//! Measures a warm restart in process: an engine is filled with a million
//! keys of 64-byte values (the figure issue #17 sets its goals with), its
//! log written, or a snapshot taken; then the data directory is recovered
//! into a fresh engine ([`recover`] and [`start_log`], what the server does
//! before it turns SERVING), and the time that takes is printed.
//!
//! ```text
//! cargo run --release -p shoal-bench --example persistence_restart -- [KEYS] [ROUNDS]
//! cargo run --release -p shoal-bench --example persistence_restart -- prepare DIR log|snapshot [KEYS]
//! cargo run --release -p shoal-bench --example persistence_restart -- restart DIR [ROUNDS]
//! ```
//!
//! `prepare` and `restart` split the two phases, so that a profiler can
//! watch the restart alone. It turns transparent huge pages off, as
//! shoal-server does by default.
//!
//! The files go to a temporary directory beside `$TMPDIR`; the page cache
//! holds them, as it does on a restart that follows a crash of the
//! process. The whole server restart, with a peer, is measured by
//! `benches/persistence.sh`.

/// The allocator of the shoal-server binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shoal_engine::{Engine, EngineConfig, SetOptions};
use shoal_server::persistence::{
    FileSystem, FsyncPolicy, LogConfig, OsFileSystem, recover, start_log, take_snapshot,
};

const VALUE_BYTES: usize = 64;

fn fill(engine: &Engine, keys: u64) -> Result<(), Box<dyn std::error::Error>> {
    let namespace = engine.namespace("default")?;
    let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
    for i in 0..keys {
        let key = format!("key:{i:012}");
        namespace.set(key.as_bytes(), value.clone(), SetOptions::default())?;
    }
    Ok(())
}

/// Writes `keys` keys through the log into `dir`; with `snapshot`, takes a
/// snapshot once they are in, so that the log after it is empty.
fn prepare(dir: &Path, keys: u64, snapshot: bool) -> Result<u64, Box<dyn std::error::Error>> {
    let fs: Arc<dyn FileSystem> = Arc::new(OsFileSystem);
    let engine = Engine::new(EngineConfig::default());
    let (writer, _) = start_log(
        Arc::clone(&fs),
        LogConfig::new(dir, FsyncPolicy::No),
        &engine,
        1,
    )?;
    fill(&engine, keys)?;
    if snapshot {
        take_snapshot(fs.as_ref(), dir, &engine, &writer)?;
    }
    writer.sync()?;
    writer.close()?;
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir)? {
        bytes += entry?.metadata()?.len();
    }
    Ok(bytes)
}

/// Recovers `dir` into a fresh engine and opens its log, as a restart
/// does; returns the time, the keys restored and the engine (freed by the
/// caller, outside the timed part, as it outlives a restart).
fn restart(dir: &Path) -> Result<(Duration, u64, Engine), Box<dyn std::error::Error>> {
    let fs: Arc<dyn FileSystem> = Arc::new(OsFileSystem);
    let engine = Engine::new(EngineConfig::default());
    let started = Instant::now();
    let report = recover(fs.as_ref(), dir, &engine)?;
    let (writer, _) = start_log(
        Arc::clone(&fs),
        LogConfig::new(dir, FsyncPolicy::No),
        &engine,
        report.next_segment,
    )?;
    let elapsed = started.elapsed();
    writer.close()?;
    let keys = engine.namespace("default")?.len();
    Ok((elapsed, keys, engine))
}

fn restart_rounds(
    dir: &Path,
    rounds: usize,
) -> Result<(Duration, u64), Box<dyn std::error::Error>> {
    let mut best = Duration::MAX;
    let mut keys = 0;
    for _ in 0..rounds {
        // Each round recovers what the previous one left: the same
        // records, plus an empty segment per round.
        let (elapsed, restored, engine) = restart(dir)?;
        best = best.min(elapsed);
        keys = restored;
        drop(engine);
    }
    Ok((best, keys))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shoal_server::process::huge_pages::disable()?;
    let mut args = std::env::args().skip(1).peekable();
    match args.peek().map(String::as_str) {
        Some("prepare") => {
            let dir = args.nth(1).ok_or("prepare needs a directory")?;
            let snapshot = match args.next().as_deref() {
                Some("log") => false,
                Some("snapshot") => true,
                other => return Err(format!("prepare wants log or snapshot, not {other:?}").into()),
            };
            let keys: u64 = args.next().map_or(Ok(1_000_000), |arg| arg.parse())?;
            std::fs::create_dir_all(&dir)?;
            let bytes = prepare(Path::new(&dir), keys, snapshot)?;
            println!("{keys} keys, {bytes} bytes in {dir}");
            return Ok(());
        }
        Some("restart") => {
            let dir = args.nth(1).ok_or("restart needs a directory")?;
            let rounds: usize = args.next().map_or(Ok(1), |arg| arg.parse())?;
            let (best, keys) = restart_rounds(Path::new(&dir), rounds.saturating_sub(1))?;
            // The last round's engine is left to the exit, so that a
            // profile shows the restart and not the freeing.
            let (elapsed, restored, engine) = restart(Path::new(&dir))?;
            println!(
                "{restored} keys restored in {:.3} s",
                best.min(elapsed).as_secs_f64()
            );
            if keys != 0 && keys != restored {
                return Err(format!("{restored} keys restored, {keys} before").into());
            }
            std::mem::forget(engine);
            return Ok(());
        }
        _ => {}
    }
    let keys: u64 = args.next().map_or(Ok(1_000_000), |arg| arg.parse())?;
    let rounds: usize = args.next().map_or(Ok(3), |arg| arg.parse())?;
    println!("restart with {keys} keys of {VALUE_BYTES}-byte values, best of {rounds}");
    for (label, snapshot) in [("log alone", false), ("snapshot", true)] {
        let dir = tempfile::tempdir()?;
        let bytes = prepare(dir.path(), keys, snapshot)?;
        let (best, restored) = restart_rounds(dir.path(), rounds)?;
        if restored != keys {
            return Err(format!("{restored} keys restored, {keys} written").into());
        }
        println!(
            "  from the {label:<9}: {:>7.3} s  ({:.1} MiB on disk, {:.2} M keys/s)",
            best.as_secs_f64(),
            bytes as f64 / (1024.0 * 1024.0),
            keys as f64 / best.as_secs_f64() / 1e6
        );
    }
    Ok(())
}
