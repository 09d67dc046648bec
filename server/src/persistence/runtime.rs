//! Persistence in a running server: the data directory's lock, recovery at
//! start-up, the log and its acknowledgements, scheduled snapshots and the
//! status that Stats and `/metrics` report.
//!
//! # Design
//!
//! [`Persistence::open`] runs before the server takes calls: it creates and
//! locks the data directory (a second process on it fails there), rebuilds
//! the engine with [`recover`] while a progress line is logged every few
//! seconds, opens the log writer on the next segment and attaches one
//! change sink, [`PersistSink`], which appends every change record of a
//! namespace that did not opt out to the log (with `mode = "log"`) and
//! passes every record on to the change feed. Keys whose deadline passed
//! while the server was down are then dropped, and logged.
//!
//! With `mode = "snapshot"` the log writer still runs, to number the
//! segments a snapshot rolls to, but nothing is appended to it: the
//! segments stay empty, and a restart loses the writes made since the last
//! snapshot.
//!
//! Acknowledgement: a handler takes [`LogSink::take_position`] right after
//! its engine call, on the same thread, and awaits
//! [`Persistence::acknowledged`]. With `everysec` and `no` that future
//! yields once, so that the other tasks ready on its thread append their
//! records too, then writes the log's buffer itself when nobody else is
//! writing it ([`LogWriter::write_through`]: one `write` to the kernel's
//! cache for all of them, never a sync or a new file), so most writes are
//! acknowledged without waiting for another thread.
//! Otherwise the handler waits on a `tokio::sync::watch` that the writer's
//! listener advances, so no runtime thread ever blocks on the disk. A
//! writer that failed makes every waiter not yet acknowledged fail with
//! the writer's error. Memory stays bounded without a limit of its own:
//! every write waits for its record before it is answered, so the writer's
//! buffer holds at most the records of the calls in flight, which the
//! in-flight limits bound; when the disk is slower than the writers they
//! wait longer, none is dropped.
//!
//! Snapshots run on a thread of their own (`shoal-snapshot`), one at a
//! time: on the interval, when the log has grown by
//! `snapshot_log_bytes` since the last one, and on demand
//! ([`Persistence::snapshot`], from `AdminService.Snapshot`, called off the
//! async runtime). A failed snapshot leaves the previous one in force and
//! is logged and counted.
//!
//! [`Persistence::close`] at shutdown takes a final snapshot in snapshot
//! mode, then syncs and closes the log, so a clean stop loses nothing in
//! either mode.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex};

use super::error::PersistenceError;
use super::fs::{AppendFile, FileSystem, OsFileSystem};
use super::recovery::{recover, take_snapshot_of};
use super::segment::parse_segment_name;
use super::settings::{PersistenceMode, PersistenceSettings};
use super::sink::LogSink;
use super::writer::{FsyncPolicy, LogAck, LogConfig, LogPosition, LogWriter};
use crate::engine::{ChangeRecord, ChangeSink, Engine, FlushRecord};

/// Name of the lock file in the data directory.
pub const LOCK_FILE: &str = "LOCK";
/// How often a long load logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// How often the snapshot thread checks its triggers.
const TRIGGER_CHECK: Duration = Duration::from_millis(500);

/// The sink a persistent server attaches to its engine: appends the
/// records of persisted namespaces to the log, then hands every record to
/// the next sink (the change feed).
pub struct PersistSink {
    log: Option<LogSink>,
    skipped: Arc<BTreeSet<String>>,
    changes: Arc<AtomicU64>,
    next: Arc<dyn ChangeSink>,
}

impl PersistSink {
    fn persisted(&self, namespace: &str) -> bool {
        self.skipped.is_empty() || !self.skipped.contains(namespace)
    }
}

impl ChangeSink for PersistSink {
    fn record(&self, change: ChangeRecord) {
        if self.persisted(&change.namespace) {
            self.changes.fetch_add(1, Ordering::Relaxed);
            if let Some(log) = &self.log {
                log.append_change(&change);
            }
        }
        self.next.record(change);
    }

    fn flushed(&self, flush: FlushRecord) {
        if self.persisted(&flush.namespace) {
            self.changes.fetch_add(1, Ordering::Relaxed);
            if let Some(log) = &self.log {
                log.append_flush(&flush);
            }
        }
        self.next.flushed(flush);
    }
}

/// What recovery at start-up did, kept for Stats and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartReport {
    /// Keys restored from the snapshot.
    pub snapshot_keys: u64,
    /// Log records replayed after it.
    pub replayed_records: u64,
    /// Keys dropped because their deadline passed while the server was down.
    pub expired_keys: u64,
    /// Bytes cut off a torn log tail.
    pub torn_bytes: u64,
    /// Time recovery took.
    pub elapsed: Duration,
}

/// The last snapshot this process took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// File name in the data directory.
    pub name: String,
    /// Keys written.
    pub keys: u64,
    /// Bytes of the file.
    pub bytes: u64,
    /// Time it took.
    pub duration: Duration,
    /// When it finished, in milliseconds since the Unix epoch.
    pub finished_unix_ms: u64,
}

/// fdatasync figures of the log's segments.
#[derive(Debug, Default)]
struct SyncTimes {
    count: AtomicU64,
    total_us: AtomicU64,
    last_us: AtomicU64,
    max_us: AtomicU64,
}

impl SyncTimes {
    fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total_us.fetch_add(us, Ordering::Relaxed);
        self.last_us.store(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }
}

/// A point-in-time view of persistence, for Stats and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistenceStatus {
    /// What survives a restart.
    pub mode: PersistenceMode,
    /// When the log reaches the disk.
    pub fsync: FsyncPolicy,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Recovery at start-up.
    pub start: StartReport,
    /// The last snapshot taken by this process, if any.
    pub last_snapshot: Option<SnapshotSummary>,
    /// Snapshots taken by this process.
    pub snapshots: u64,
    /// Snapshots that failed.
    pub snapshot_failures: u64,
    /// Log bytes appended since start.
    pub log_bytes: u64,
    /// Log bytes appended since the last snapshot (what a restart replays
    /// beyond it).
    pub log_bytes_since_snapshot: u64,
    /// Log fdatasync calls.
    pub fsyncs: u64,
    /// Their total time, in microseconds.
    pub fsync_total_us: u64,
    /// The last one's, in microseconds.
    pub fsync_last_us: u64,
    /// The longest one's, in microseconds.
    pub fsync_max_us: u64,
}

/// How far the log has acknowledged, published by the writer's listener.
#[derive(Debug, Clone, Default)]
struct Acked {
    position: LogPosition,
    failure: Option<PersistenceError>,
}

struct SnapshotState {
    last: Option<SnapshotSummary>,
    last_at: Instant,
    /// Log bytes appended when the last snapshot began.
    log_at_last: u64,
    /// Changes counted when the last snapshot began.
    changes_at_last: u64,
    taken: u64,
    failures: u64,
}

/// Persistence of a running server; see the module docs.
pub struct Persistence {
    settings: PersistenceSettings,
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    engine: Engine,
    writer: Arc<LogWriter>,
    skipped: Arc<BTreeSet<String>>,
    changes: Arc<AtomicU64>,
    acked: tokio::sync::watch::Receiver<Acked>,
    start: StartReport,
    sync_times: Arc<SyncTimes>,
    /// Held while a snapshot is taken: one at a time.
    snapshot_gate: Mutex<()>,
    snapshots: Mutex<SnapshotState>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Held for the life of the process: the data directory's lock.
    _lock: File,
}

impl std::fmt::Debug for Persistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persistence")
            .field("mode", &self.settings.mode)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Persistence {
    /// Locks the data directory, rebuilds `engine` (empty, no sink yet)
    /// from it, opens the log and attaches a [`PersistSink`] that passes
    /// every record on to `next`. Blocks for as long as the load takes:
    /// call it off the async runtime. `skipped` names the namespaces that
    /// opted out; any of their keys found on disk (from before they opted
    /// out) are dropped.
    ///
    /// # Errors
    /// [`PersistenceError::Locked`] when another process holds the
    /// directory; recovery's errors naming file and offset;
    /// [`PersistenceError::SinkAttached`]; I/O errors naming the path.
    pub fn open(
        settings: &PersistenceSettings,
        engine: &Engine,
        skipped: BTreeSet<String>,
        next: Arc<dyn ChangeSink>,
    ) -> Result<Arc<Self>, PersistenceError> {
        let Some(dir) = settings.data_dir.clone() else {
            return Err(PersistenceError::io(
                "open",
                PathBuf::new(),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "persistence.data_dir is not set",
                ),
            ));
        };
        let sync_times = Arc::new(SyncTimes::default());
        let fs: Arc<dyn FileSystem> = Arc::new(TimedFs {
            times: Arc::clone(&sync_times),
        });
        fs.create_dir_all(&dir)
            .map_err(|error| PersistenceError::io("create directory", &dir, error))?;
        let lock = lock_data_dir(&dir)?;
        let started = Instant::now();
        tracing::info!(dir = %dir.display(), mode = mode_name(settings.mode), "recovering from the data directory");
        let report = with_progress(engine, started, || recover(fs.as_ref(), &dir, engine))?;
        if let Some(torn) = &report.log.torn_tail {
            tracing::warn!(
                file = %torn.path.display(),
                offset = torn.offset,
                dropped_bytes = torn.dropped_bytes,
                reason = %torn.reason,
                "the log ended torn (a crash mid-write): its tail was cut off"
            );
        }
        for name in &skipped {
            if let Ok(Some(removed)) = engine.drop_namespace(name) {
                tracing::info!(namespace = %name, removed, "dropped keys of a namespace that opted out of persistence");
            }
        }
        let mut config = LogConfig::new(&dir, settings.fsync);
        config.segment_bytes = settings.segment_bytes;
        let (acked_tx, acked) = tokio::sync::watch::channel(Acked::default());
        let writer = Arc::new(LogWriter::open_with_listener(
            Arc::clone(&fs),
            config,
            report.next_segment,
            Some(Box::new(move |ack| publish_ack(&acked_tx, ack))),
        )?);
        let skipped = Arc::new(skipped);
        let changes = Arc::new(AtomicU64::new(0));
        let sink = PersistSink {
            log: (settings.mode == PersistenceMode::Log).then(|| LogSink::new(Arc::clone(&writer))),
            skipped: Arc::clone(&skipped),
            changes: Arc::clone(&changes),
            next,
        };
        if !engine.attach_sink(Arc::new(sink)) {
            let _ = writer.close();
            return Err(PersistenceError::SinkAttached);
        }
        let expired_keys = engine.drop_expired();
        writer.sync()?;
        let start = StartReport {
            snapshot_keys: report
                .snapshot
                .as_ref()
                .map_or(0, |snapshot| snapshot.entries),
            replayed_records: report.log.records,
            expired_keys,
            torn_bytes: report
                .log
                .torn_tail
                .as_ref()
                .map_or(0, |torn| torn.dropped_bytes),
            elapsed: started.elapsed(),
        };
        tracing::info!(
            snapshot = report
                .snapshot
                .as_ref()
                .map(|snapshot| snapshot.name.as_str()),
            snapshot_keys = start.snapshot_keys,
            replayed_records = start.replayed_records,
            expired_keys,
            elapsed_ms = start.elapsed.as_millis() as u64,
            "recovery done"
        );
        let persistence = Arc::new(Self {
            settings: settings.clone(),
            dir,
            fs,
            engine: engine.clone(),
            writer: Arc::clone(&writer),
            skipped,
            changes,
            acked,
            start,
            sync_times,
            snapshot_gate: Mutex::new(()),
            snapshots: Mutex::new(SnapshotState {
                last: None,
                last_at: Instant::now(),
                log_at_last: writer.progress().appended,
                changes_at_last: 0,
                taken: 0,
                failures: 0,
            }),
            stop: Arc::new((Mutex::new(false), Condvar::new())),
            threads: Mutex::new(Vec::new()),
            _lock: lock,
        });
        let scheduler = {
            let scheduled = Arc::clone(&persistence);
            std::thread::Builder::new()
                .name("shoal-snapshot".into())
                .spawn(move || scheduled.schedule())
                .map_err(|error| {
                    PersistenceError::io("spawn snapshot thread for", &persistence.dir, error)
                })?
        };
        persistence.threads.lock().push(scheduler);
        Ok(persistence)
    }

    /// The mode these files are kept in.
    pub fn mode(&self) -> PersistenceMode {
        self.settings.mode
    }

    /// Completes once the record ending at `position` (from
    /// [`LogSink::take_position`], taken right after the engine call) is
    /// acknowledged as the fsync policy says; at once for `None`.
    ///
    /// # Errors
    /// The writer's failure when it failed (or closed) first: the change
    /// is then applied in memory but may not survive a restart.
    pub fn acknowledged(
        &self,
        position: Option<LogPosition>,
    ) -> impl Future<Output = Result<(), PersistenceError>> + Send + 'static + use<> {
        // With everysec and no, the caller most often writes its record
        // itself and need not wait (`LogWriter::write_through`). It yields
        // first, once, so that the other tasks ready on its thread append
        // their records too and one write carries them all: a write per
        // batch of 16 SETs was most of what the log cost them.
        let writer = (self.writer.fsync() != FsyncPolicy::Always).then(|| Arc::clone(&self.writer));
        let mut acked = position.map(|_| self.acked.clone());
        // Counted from now, with `always`, so that the flusher sees how many
        // writers a sync would answer.
        let waiting = (position.is_some() && writer.is_none()).then(|| self.writer.waiter());
        async move {
            let _waiting = waiting;
            let (Some(position), Some(acked)) = (position, acked.as_mut()) else {
                return Ok(());
            };
            if let Some(writer) = writer {
                tokio::task::yield_now().await;
                if writer.write_through(position) {
                    return Ok(());
                }
            }
            let state = acked
                .wait_for(|state| state.position >= position || state.failure.is_some())
                .await
                .map_err(|_| PersistenceError::Closed)?;
            if state.position >= position {
                return Ok(());
            }
            Err(state.failure.clone().unwrap_or(PersistenceError::Closed))
        }
    }

    /// Takes a snapshot now (after the one under way, if any) and removes
    /// the files it covers. Blocks: call it off the async runtime.
    ///
    /// # Errors
    /// Any error of writing it; the previous snapshot stays in force.
    pub fn snapshot(&self) -> Result<SnapshotSummary, PersistenceError> {
        let _gate = self.snapshot_gate.lock();
        let began = Instant::now();
        let log_at = self.writer.progress().appended;
        let changes_at = self.changes.load(Ordering::Relaxed);
        let skipped = Arc::clone(&self.skipped);
        let keep = move |name: &str| !skipped.contains(name);
        let result = take_snapshot_of(
            self.fs.as_ref(),
            &self.dir,
            &self.engine,
            &self.writer,
            &keep,
        );
        let mut state = self.snapshots.lock();
        state.last_at = Instant::now();
        match result {
            Ok(report) => {
                let summary = SnapshotSummary {
                    name: report.name,
                    keys: report.entries,
                    bytes: report.bytes,
                    duration: began.elapsed(),
                    finished_unix_ms: unix_ms(),
                };
                state.last = Some(summary.clone());
                state.log_at_last = log_at;
                state.changes_at_last = changes_at;
                state.taken += 1;
                tracing::info!(
                    name = %summary.name,
                    keys = summary.keys,
                    bytes = summary.bytes,
                    duration_ms = summary.duration.as_millis() as u64,
                    "snapshot taken"
                );
                Ok(summary)
            }
            Err(error) => {
                state.failures += 1;
                tracing::error!(%error, "snapshot failed; the previous one stays in force");
                Err(error)
            }
        }
    }

    /// The figures for Stats and `/metrics`.
    pub fn status(&self) -> PersistenceStatus {
        let progress = self.writer.progress();
        let state = self.snapshots.lock();
        let times = &self.sync_times;
        PersistenceStatus {
            mode: self.settings.mode,
            fsync: self.settings.fsync,
            data_dir: self.dir.clone(),
            start: self.start.clone(),
            last_snapshot: state.last.clone(),
            snapshots: state.taken,
            snapshot_failures: state.failures,
            log_bytes: progress.appended,
            log_bytes_since_snapshot: progress.appended.saturating_sub(state.log_at_last),
            fsyncs: times.count.load(Ordering::Relaxed),
            fsync_total_us: times.total_us.load(Ordering::Relaxed),
            fsync_last_us: times.last_us.load(Ordering::Relaxed),
            fsync_max_us: times.max_us.load(Ordering::Relaxed),
        }
    }

    /// Stops the snapshot thread, takes a final snapshot in snapshot mode
    /// (when anything changed since the last), then syncs and closes the
    /// log. Blocks: call it off the async runtime.
    ///
    /// # Errors
    /// The final snapshot's or the log's failure.
    pub fn close(&self) -> Result<(), PersistenceError> {
        {
            let (stopped, wake) = &*self.stop;
            *stopped.lock() = true;
            wake.notify_all();
        }
        let mut result = Ok(());
        if self.settings.mode == PersistenceMode::Snapshot && self.changed_since_snapshot() {
            result = self.snapshot().map(drop);
        }
        let synced = self.writer.sync().and_then(|()| self.writer.close());
        for thread in self.threads.lock().drain(..) {
            let _ = thread.join();
        }
        result.and(synced)
    }

    fn changed_since_snapshot(&self) -> bool {
        self.changes.load(Ordering::Relaxed) != self.snapshots.lock().changes_at_last
    }

    /// The snapshot thread: checks the triggers until [`Persistence::close`].
    fn schedule(&self) {
        let (stopped, wake) = &*self.stop;
        loop {
            {
                let mut stopped = stopped.lock();
                if *stopped {
                    return;
                }
                wake.wait_for(&mut stopped, TRIGGER_CHECK);
                if *stopped {
                    return;
                }
            }
            if self.snapshot_due() {
                let _ = self.snapshot();
            }
        }
    }

    fn snapshot_due(&self) -> bool {
        if !self.changed_since_snapshot() {
            return false;
        }
        let settings = &self.settings;
        let state = self.snapshots.lock();
        let timed = !settings.snapshot_interval.is_zero()
            && state.last_at.elapsed() >= settings.snapshot_interval;
        let grown = settings.mode == PersistenceMode::Log
            && settings.snapshot_log_bytes > 0
            && self
                .writer
                .progress()
                .appended
                .saturating_sub(state.log_at_last)
                >= settings.snapshot_log_bytes;
        timed || grown
    }
}

/// The name of `mode` as the settings spell it.
pub fn mode_name(mode: PersistenceMode) -> &'static str {
    match mode {
        PersistenceMode::Off => "off",
        PersistenceMode::Snapshot => "snapshot",
        PersistenceMode::Log => "log",
    }
}

/// The name of `fsync` as the settings spell it.
pub fn fsync_name(fsync: FsyncPolicy) -> &'static str {
    match fsync {
        FsyncPolicy::Always => "always",
        FsyncPolicy::Everysec => "everysec",
        FsyncPolicy::No => "no",
    }
}

/// Publishes what the writer acknowledged to the tasks waiting for it.
fn publish_ack(acked: &tokio::sync::watch::Sender<Acked>, ack: LogAck) {
    match ack {
        LogAck::Upto(position) => acked.send_if_modified(|state| {
            let advanced = position > state.position;
            state.position = state.position.max(position);
            advanced
        }),
        LogAck::Stopped(error) => acked.send_if_modified(|state| {
            state.failure.get_or_insert(error);
            true
        }),
    };
}

/// Creates `dir/LOCK` and locks it for this process, for as long as the
/// returned file is open: what a server holds for its life, and a repair
/// while it works, so that neither runs on a directory the other uses.
///
/// # Errors
/// [`PersistenceError::Locked`] when another process holds it; I/O errors
/// naming the path.
pub fn lock_data_dir(dir: &Path) -> Result<File, PersistenceError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| PersistenceError::io("open", &path, error))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(PersistenceError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(error)) => Err(PersistenceError::io("lock", &path, error)),
    }
}

/// Runs `load`, logging the keys loaded so far every few seconds.
fn with_progress<T>(engine: &Engine, started: Instant, load: impl FnOnce() -> T) -> T {
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                done_rx.recv_timeout(PROGRESS_EVERY)
            {
                let keys: u64 = engine
                    .namespaces()
                    .iter()
                    .map(|namespace| namespace.len())
                    .sum();
                tracing::info!(
                    keys,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "still loading the data directory"
                );
            }
        });
        let result = load();
        drop(done_tx);
        result
    })
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// The operating system's file system, timing the fdatasync of log
/// segments for the status.
struct TimedFs {
    times: Arc<SyncTimes>,
}

struct TimedFile {
    file: Box<dyn AppendFile>,
    times: Arc<SyncTimes>,
}

impl AppendFile for TimedFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.append(bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let began = Instant::now();
        let result = self.file.sync_data();
        self.times.record(began.elapsed());
        result
    }
}

impl FileSystem for TimedFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let file = OsFileSystem.create(path)?;
        let segment = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| parse_segment_name(name).is_some());
        Ok(if segment {
            Box::new(TimedFile {
                file,
                times: Arc::clone(&self.times),
            })
        } else {
            file
        })
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        OsFileSystem.read(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        OsFileSystem.list(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsFileSystem.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        OsFileSystem.remove(path)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        OsFileSystem.truncate(path, len)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsFileSystem.sync_dir(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        OsFileSystem.create_dir_all(dir)
    }
}
