//! Start-up recovery and taking a snapshot: the order of operations that
//! makes the files on disk always describe the state.

use std::path::Path;
use std::sync::Arc;

use super::error::PersistenceError;
use super::fs::FileSystem;
use super::manifest::{read_manifest, write_manifest};
use super::reader::{LogReport, read_log};
use super::record::{LogRecord, Manifest};
use super::segment::parse_segment_name;
use super::sink::LogSink;
use super::snapshot::{SnapshotReport, load_snapshot, parse_snapshot_name, write_snapshot_of};
use super::writer::{LogConfig, LogWriter};
use crate::engine::{Engine, Namespace};

/// What recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The snapshot loaded, if the manifest named one.
    pub snapshot: Option<SnapshotReport>,
    /// What reading the log found, torn tail included.
    pub log: LogReport,
    /// The segment the new log writer should begin.
    pub next_segment: u64,
}

/// Rebuilds `engine` (empty, with no sink attached) from `dir`: the
/// snapshot the manifest names, then every record of the log after it.
/// Keys whose deadline has passed are still there (invisible to reads);
/// [`start_log`] drops them once their expiry can be logged.
///
/// # Errors
/// Any error of [`read_manifest`], [`load_snapshot`] or [`read_log`]; the
/// engine is then to be discarded.
pub fn recover(
    fs: &dyn FileSystem,
    dir: &Path,
    engine: &Engine,
) -> Result<RecoveryReport, PersistenceError> {
    let manifest = read_manifest(fs, dir)?.unwrap_or_default();
    let first_segment = manifest.first_segment.max(1);
    let snapshot = manifest
        .snapshot
        .as_deref()
        .map(|name| load_snapshot(fs, dir, name, engine))
        .transpose()?;
    // The namespace of the last change, kept rather than looked up for
    // every record; a flush may remove it, so it is looked up again then.
    let mut current: Option<Arc<Namespace>> = None;
    let log = read_log(fs, dir, first_segment, |record| match record {
        LogRecord::Change(change) => {
            let namespace = match current.take() {
                Some(namespace) if namespace.name() == &*change.namespace => namespace,
                _ => engine.namespace(&change.namespace)?,
            };
            let applied = namespace.apply_change(change);
            current = Some(namespace);
            applied.map(drop)
        }
        LogRecord::Flush(flush) => {
            current = None;
            engine.apply_flush(&flush).map(drop)
        }
    })?;
    Ok(RecoveryReport {
        snapshot,
        next_segment: log.next_segment(first_segment),
        log,
    })
}

/// Opens the log of `engine` after [`recover`]: a writer beginning segment
/// `next_segment`, attached as the engine's sink; then drops the keys
/// whose deadline passed while the server was down, and returns the writer
/// and how many keys went.
///
/// The drops are logged, before any new write: the new process's records
/// take those keys as gone (a write to one creates it afresh), and a later
/// replay, which replays the old records first, must see them go first.
///
/// # Errors
/// [`PersistenceError::SinkAttached`] when the engine already has a sink;
/// as [`LogWriter::open`] and [`LogWriter::sync`].
pub fn start_log(
    fs: Arc<dyn FileSystem>,
    config: LogConfig,
    engine: &Engine,
    next_segment: u64,
) -> Result<(Arc<LogWriter>, u64), PersistenceError> {
    let writer = Arc::new(LogWriter::open(fs, config, next_segment)?);
    if !engine.attach_sink(Arc::new(LogSink::new(Arc::clone(&writer)))) {
        let _ = writer.close();
        return Err(PersistenceError::SinkAttached);
    }
    let expired = engine.drop_expired();
    writer.sync()?;
    Ok((writer, expired))
}

/// Takes a snapshot of `engine`, whose changes `writer` logs, into `dir`,
/// then removes the files it covers. In order: the log is rolled, so every
/// record from the new segment on is in the snapshot or after it; the
/// snapshot is written and made durable; the log is synced up to the roll;
/// the manifest switches to the snapshot and the new segment; only then go
/// the older segments and snapshots. A crash at any point leaves the old
/// manifest and its files, or the new ones.
///
/// # Errors
/// Any error of the steps; the old manifest then still holds.
pub fn take_snapshot(
    fs: &dyn FileSystem,
    dir: &Path,
    engine: &Engine,
    writer: &LogWriter,
) -> Result<SnapshotReport, PersistenceError> {
    take_snapshot_of(fs, dir, engine, writer, &|_| true)
}

/// As [`take_snapshot`], with only the namespaces `keep` accepts (see
/// [`write_snapshot_of`]).
///
/// # Errors
/// As [`take_snapshot`].
pub fn take_snapshot_of(
    fs: &dyn FileSystem,
    dir: &Path,
    engine: &Engine,
    writer: &LogWriter,
    keep: &dyn Fn(&str) -> bool,
) -> Result<SnapshotReport, PersistenceError> {
    let number = writer.roll()?;
    let report = write_snapshot_of(fs, dir, engine, number, keep)?;
    writer.sync()?;
    write_manifest(
        fs,
        dir,
        &Manifest {
            snapshot: Some(report.name.clone()),
            first_segment: number,
        },
    )?;
    let names = fs
        .list(dir)
        .map_err(|error| PersistenceError::io("list", dir, error))?;
    for name in names {
        let covered = parse_segment_name(&name).is_some_and(|segment| segment < number)
            || parse_snapshot_name(&name).is_some_and(|snapshot| snapshot < number)
            || (name.ends_with(".snp.tmp") && name != format!("{}.tmp", report.name));
        if covered {
            let path = dir.join(&name);
            fs.remove(&path)
                .map_err(|error| PersistenceError::io("remove", &path, error))?;
        }
    }
    fs.sync_dir(dir)
        .map_err(|error| PersistenceError::io("fsync directory", dir, error))?;
    Ok(report)
}
