//! The log writer: appends framed records to segment files with group
//! commit.
//!
//! Writers encode their record straight into one shared buffer, under a
//! short mutex, and get back the position just past it. One flusher thread
//! takes the whole buffer at a time, writes it with one call and, as the
//! fsync policy says, makes it durable with one `fdatasync`: records
//! appended while a sync is under way wait for the next one, so concurrent
//! writers share it. A writer is acknowledged when its position has reached
//! the kernel (`everysec`, `no`) or the disk (`always`); see the module
//! docs of [`super`] for what each policy can lose.
//!
//! The first write or sync that fails stops the writer for good: a failed
//! `fdatasync` is not retried, since the kernel may have dropped the pages
//! it could not write and a second call would report success. Every
//! waiter not yet acknowledged, and every later append, gets the error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::error::PersistenceError;
use super::frame::{FileKind, append_frame, write_file_header};
use super::fs::{AppendFile, FileSystem};
use super::segment::segment_name;

/// When the log is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Before a write is acknowledged.
    Always,
    /// About once a second.
    #[default]
    Everysec,
    /// When the operating system writes its cache back.
    No,
}

/// How often `everysec` syncs.
pub const EVERYSEC_INTERVAL: Duration = Duration::from_secs(1);
/// Default size at which a segment is closed and the next one begun.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Settings of a [`LogWriter`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LogConfig {
    /// The data directory.
    pub dir: PathBuf,
    /// When appended records are made durable.
    pub fsync: FsyncPolicy,
    /// A segment past this size is closed and the next one begun, between
    /// two flushes (so a segment may pass it by one flush's worth).
    pub segment_bytes: u64,
}

impl LogConfig {
    /// Settings for `dir` with `fsync` and the default segment size.
    pub fn new(dir: impl Into<PathBuf>, fsync: FsyncPolicy) -> Self {
        Self {
            dir: dir.into(),
            fsync,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// The end of an appended record in the writer's byte stream (counted
/// across segments since the writer opened); pass it to
/// [`LogWriter::wait`].
pub type LogPosition = u64;

/// How far the log has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogProgress {
    /// Bytes appended to the buffer.
    pub appended: u64,
    /// Bytes handed to the kernel.
    pub written: u64,
    /// Bytes made durable.
    pub durable: u64,
    /// The segment being written.
    pub segment: u64,
    /// `fdatasync` calls made on segments.
    pub syncs: u64,
}

struct State {
    buffer: Vec<u8>,
    /// Offsets in `buffer` at which a new segment begins.
    rolls: Vec<usize>,
    progress: LogProgress,
    /// The number the next segment will get.
    next_segment: u64,
    sync_requested: bool,
    closing: bool,
    failed: Option<PersistenceError>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the flusher.
    work: Condvar,
    /// Wakes the waiters.
    done: Condvar,
    fsync: FsyncPolicy,
}

/// The append-only log; see the module docs.
pub struct LogWriter {
    shared: Arc<Shared>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("fsync", &self.shared.fsync)
            .field("progress", &self.progress())
            .finish_non_exhaustive()
    }
}

/// A segment being written by the flusher.
struct OpenSegment {
    file: Box<dyn AppendFile>,
    path: PathBuf,
    bytes: u64,
}

/// Creates segment `number` in `dir` with its header, durable with its
/// name, so that a segment that exists always starts with a header.
fn create_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    number: u64,
) -> Result<OpenSegment, PersistenceError> {
    let path = dir.join(segment_name(number));
    let mut file = fs
        .create(&path)
        .map_err(|error| PersistenceError::io("create", &path, error))?;
    let mut header = Vec::new();
    write_file_header(FileKind::Log, &mut header);
    file.append(&header)
        .map_err(|error| PersistenceError::io("write", &path, error))?;
    file.sync_data()
        .map_err(|error| PersistenceError::io("fdatasync", &path, error))?;
    fs.sync_dir(dir)
        .map_err(|error| PersistenceError::io("fsync directory", dir, error))?;
    Ok(OpenSegment {
        file,
        path,
        bytes: header.len() as u64,
    })
}

impl LogWriter {
    /// Opens a log that writes segment `first_segment` and the ones after
    /// it. The segment is created new: a restart never appends to a segment
    /// an earlier process wrote, so a torn tail stays the end of its
    /// segment, and records of one process's shards never mix with
    /// another's in a segment.
    ///
    /// # Errors
    /// The segment cannot be created, or the flusher thread cannot start.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        config: LogConfig,
        first_segment: u64,
    ) -> Result<Self, PersistenceError> {
        let first_segment = first_segment.max(1);
        let segment = create_segment(fs.as_ref(), &config.dir, first_segment)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buffer: Vec::new(),
                rolls: Vec::new(),
                progress: LogProgress {
                    segment: first_segment,
                    ..LogProgress::default()
                },
                next_segment: first_segment + 1,
                sync_requested: false,
                closing: false,
                failed: None,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            fsync: config.fsync,
        });
        let flusher = Flusher {
            shared: Arc::clone(&shared),
            fs,
            dir: config.dir.clone(),
            segment_bytes: config.segment_bytes,
            segment,
            last_sync: Instant::now(),
        };
        let handle = std::thread::Builder::new()
            .name("shoal-log".into())
            .spawn(move || flusher.run())
            .map_err(|error| PersistenceError::io("spawn flusher for", &config.dir, error))?;
        Ok(Self {
            shared,
            flusher: Mutex::new(Some(handle)),
        })
    }

    /// Appends one record whose payload `encode` writes into the shared
    /// buffer; returns the position to wait for.
    ///
    /// # Errors
    /// [`PersistenceError::WriterFailed`] after a failure,
    /// [`PersistenceError::Closed`] after [`LogWriter::close`].
    pub fn append(
        &self,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<LogPosition, PersistenceError> {
        let mut state = self.shared.state.lock();
        state.check_append()?;
        let was_empty = state.buffer.is_empty();
        let len = append_frame(&mut state.buffer, encode) as u64;
        state.progress.appended += len;
        let position = state.progress.appended;
        drop(state);
        if was_empty {
            self.shared.work.notify_one();
        }
        Ok(position)
    }

    /// Blocks until the record ending at `position` is acknowledged: on
    /// disk with `always`, handed to the kernel otherwise.
    ///
    /// # Errors
    /// [`PersistenceError::WriterFailed`] when the writer failed before
    /// acknowledging it; [`PersistenceError::Closed`] when it was closed
    /// first.
    pub fn wait(&self, position: LogPosition) -> Result<(), PersistenceError> {
        let mut state = self.shared.state.lock();
        loop {
            if self.acknowledged(&state.progress) >= position {
                return Ok(());
            }
            state.check()?;
            self.shared.done.wait(&mut state);
        }
    }

    /// Blocks until everything appended so far is on disk, whatever the
    /// policy, and every segment asked for by [`LogWriter::roll`] has
    /// begun (a snapshot's cut, a clean shutdown).
    ///
    /// # Errors
    /// As [`LogWriter::wait`].
    pub fn sync(&self) -> Result<(), PersistenceError> {
        let mut state = self.shared.state.lock();
        let target = state.progress.appended;
        let segment = state.next_segment - 1;
        state.sync_requested = true;
        self.shared.work.notify_one();
        loop {
            if state.progress.durable >= target && state.progress.segment >= segment {
                return Ok(());
            }
            state.check()?;
            self.shared.done.wait(&mut state);
        }
    }

    /// Begins a new segment: records appended after this call go to it,
    /// and to later ones. Returns its number. A snapshot rolls the log when
    /// it begins, so that the segments before the returned one are covered
    /// by it once it is durable.
    ///
    /// # Errors
    /// As [`LogWriter::append`].
    pub fn roll(&self) -> Result<u64, PersistenceError> {
        let mut state = self.shared.state.lock();
        state.check_append()?;
        let at = state.buffer.len();
        state.rolls.push(at);
        let number = state.next_segment;
        state.next_segment += 1;
        drop(state);
        self.shared.work.notify_one();
        Ok(number)
    }

    /// The policy this writer acknowledges by.
    pub fn fsync(&self) -> FsyncPolicy {
        self.shared.fsync
    }

    /// How far the log has got.
    pub fn progress(&self) -> LogProgress {
        self.shared.state.lock().progress
    }

    /// Writes and syncs what was appended, then stops the flusher.
    ///
    /// # Errors
    /// The failure that stopped the writer, if one did.
    pub fn close(&self) -> Result<(), PersistenceError> {
        {
            let mut state = self.shared.state.lock();
            state.closing = true;
            self.shared.work.notify_one();
        }
        if let Some(handle) = self.flusher.lock().take() {
            let _ = handle.join();
        }
        match &self.shared.state.lock().failed {
            Some(PersistenceError::Closed) | None => Ok(()),
            Some(error) => Err(PersistenceError::WriterFailed(Box::new(error.clone()))),
        }
    }

    fn acknowledged(&self, progress: &LogProgress) -> u64 {
        match self.shared.fsync {
            FsyncPolicy::Always => progress.durable,
            FsyncPolicy::Everysec | FsyncPolicy::No => progress.written,
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl State {
    /// Fails once the writer has failed or begun to close.
    fn check_append(&self) -> Result<(), PersistenceError> {
        if self.closing && self.failed.is_none() {
            return Err(PersistenceError::Closed);
        }
        self.check()
    }

    /// Fails once the writer has failed, or has closed (after writing and
    /// syncing everything appended before, so only a position never
    /// appended can still be waited for then).
    fn check(&self) -> Result<(), PersistenceError> {
        match &self.failed {
            None => Ok(()),
            Some(PersistenceError::Closed) => Err(PersistenceError::Closed),
            Some(error) => Err(PersistenceError::WriterFailed(Box::new(error.clone()))),
        }
    }
}

/// The flusher thread's own state.
struct Flusher {
    shared: Arc<Shared>,
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    segment_bytes: u64,
    segment: OpenSegment,
    last_sync: Instant,
}

/// One round's work, taken from the shared state.
struct Batch {
    buffer: Vec<u8>,
    rolls: Vec<usize>,
    end: u64,
    sync: bool,
    closing: bool,
}

impl Flusher {
    fn run(mut self) {
        let mut spare = Vec::new();
        loop {
            let Some(batch) = self.next_batch(std::mem::take(&mut spare)) else {
                return;
            };
            let closing = batch.closing;
            match self.flush(batch) {
                Ok(buffer) => spare = buffer,
                Err(error) => {
                    self.fail(error);
                    return;
                }
            }
            if closing {
                let mut state = self.shared.state.lock();
                if state.buffer.is_empty() && state.rolls.is_empty() {
                    state.failed.get_or_insert(PersistenceError::Closed);
                    self.shared.done.notify_all();
                    return;
                }
            }
        }
    }

    /// Waits for work and takes it, leaving `spare` as the new buffer;
    /// `None` once the writer has failed.
    fn next_batch(&mut self, spare: Vec<u8>) -> Option<Batch> {
        let mut state = self.shared.state.lock();
        loop {
            if state.failed.is_some() {
                return None;
            }
            let unsynced = state.progress.written > state.progress.durable;
            let sync_due = self.shared.fsync == FsyncPolicy::Everysec
                && unsynced
                && self.last_sync.elapsed() >= EVERYSEC_INTERVAL;
            if !state.buffer.is_empty()
                || !state.rolls.is_empty()
                || state.sync_requested
                || state.closing
                || sync_due
            {
                break;
            }
            if self.shared.fsync == FsyncPolicy::Everysec && unsynced {
                let left = EVERYSEC_INTERVAL.saturating_sub(self.last_sync.elapsed());
                self.shared.work.wait_for(&mut state, left);
            } else {
                self.shared.work.wait(&mut state);
            }
        }
        let mut buffer = spare;
        buffer.clear();
        std::mem::swap(&mut buffer, &mut state.buffer);
        let batch = Batch {
            buffer,
            rolls: std::mem::take(&mut state.rolls),
            end: state.progress.appended,
            sync: std::mem::take(&mut state.sync_requested),
            closing: state.closing,
        };
        Some(batch)
    }

    /// Writes a batch, rolling segments where asked, and syncs it as the
    /// policy says; returns the emptied buffer for reuse.
    fn flush(&mut self, batch: Batch) -> Result<Vec<u8>, PersistenceError> {
        let mut from = 0;
        for &at in &batch.rolls {
            self.write(&batch.buffer[from..at])?;
            self.roll()?;
            from = at;
        }
        self.write(&batch.buffer[from..])?;
        self.publish(|progress| progress.written = batch.end);
        let sync = match self.shared.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Everysec => self.last_sync.elapsed() >= EVERYSEC_INTERVAL,
            FsyncPolicy::No => false,
        } || batch.sync
            || batch.closing;
        if sync && self.shared.state.lock().progress.durable < batch.end {
            self.sync_segment()?;
            self.publish(|progress| progress.durable = batch.end);
        }
        if self.segment.bytes >= self.segment_bytes {
            // Roll before whatever was appended meanwhile, as `roll` would
            // have, taking the next number; the next round does it.
            let mut state = self.shared.state.lock();
            state.rolls.insert(0, 0);
            state.next_segment += 1;
        }
        Ok(batch.buffer)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), PersistenceError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.segment
            .file
            .append(bytes)
            .map_err(|error| PersistenceError::io("write", &self.segment.path, error))?;
        self.segment.bytes += bytes.len() as u64;
        Ok(())
    }

    fn sync_segment(&mut self) -> Result<(), PersistenceError> {
        self.segment
            .file
            .sync_data()
            .map_err(|error| PersistenceError::io("fdatasync", &self.segment.path, error))?;
        self.last_sync = Instant::now();
        self.shared.state.lock().progress.syncs += 1;
        Ok(())
    }

    /// Seals the current segment (synced whatever the policy, so that
    /// only the last segment can ever end torn) and begins the next one.
    fn roll(&mut self) -> Result<(), PersistenceError> {
        self.sync_segment()?;
        let number = self.shared.state.lock().progress.segment + 1;
        self.segment = create_segment(self.fs.as_ref(), &self.dir, number)?;
        self.publish(|progress| progress.segment = number);
        Ok(())
    }

    fn publish(&self, change: impl FnOnce(&mut LogProgress)) {
        let mut state = self.shared.state.lock();
        change(&mut state.progress);
        drop(state);
        self.shared.done.notify_all();
    }

    fn fail(&self, error: PersistenceError) {
        let mut state = self.shared.state.lock();
        state.failed = Some(error);
        drop(state);
        self.shared.done.notify_all();
    }
}
