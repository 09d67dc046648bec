//! Snapshot files: every live key of the engine, written without stopping
//! it, and loaded back.
//!
//! A snapshot is written to a temporary name, synced, renamed to
//! `snapshot-NNNNNNNNNNNNNNNNNNNN.snp` (the number of the log segment that
//! follows it) and the directory synced; only then may a manifest name it.
//! So a snapshot file is never torn: any damage in one, or a missing `End`
//! trailer, is an error. Entries are read from the engine shard by shard
//! ([`Namespace::snapshot_reader`](crate::engine::Namespace::snapshot_reader))
//! and written out in pieces of about [`WRITE_BYTES`], so the memory a
//! snapshot takes beyond the engine's is one piece plus the collections
//! that writes copy meanwhile (counted in the namespaces' snapshot bytes).
//! It is loaded back piece by piece too ([`FrameReader`]), entries sliced
//! from a copy of each piece that nothing keeps, and each shard record's
//! namespace looked up once for the entries that follow it: the calling
//! thread reads and checks the file while two threads
//! decode and restore the entries (see [`load_snapshot`]), so a restart
//! uses every core of a small machine.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use super::error::PersistenceError;
use super::frame::{ChunkEnd, FILE_HEADER_BYTES, FRAME_HEADER_BYTES, FileKind, FrameReader};
use super::frame::{OpenedFrames, append_frame, write_file_header};
use super::fs::FileSystem;
use super::record::{SnapshotRecord, encode_entry, is_snapshot_entry};
use crate::engine::{Engine, Namespace, SnapshotValue};

/// Bytes gathered before they are handed to the file.
pub const WRITE_BYTES: usize = 1 << 20;

/// The file name of the snapshot that precedes log segment `number`.
pub fn snapshot_name(number: u64) -> String {
    format!("snapshot-{number:020}.snp")
}

/// The segment number in a snapshot's file name, if it is one.
pub fn parse_snapshot_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("snapshot-")?.strip_suffix(".snp")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What writing or loading a snapshot did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotReport {
    /// The file's name.
    pub name: String,
    /// Keys written or restored.
    pub entries: u64,
    /// Bytes of the file.
    pub bytes: u64,
    /// Each shard's sequence when its reading began, by namespace and
    /// shard index (of the engine that wrote it).
    pub shard_sequences: HashMap<(Arc<str>, u32), u64>,
}

/// Writes every live key of `engine` to snapshot `number` in `dir`.
///
/// # Errors
/// [`PersistenceError::Io`]; no file of the final name exists then.
pub fn write_snapshot(
    fs: &dyn FileSystem,
    dir: &Path,
    engine: &Engine,
    number: u64,
) -> Result<SnapshotReport, PersistenceError> {
    write_snapshot_of(fs, dir, engine, number, &|_| true)
}

/// As [`write_snapshot`], with only the namespaces `keep` accepts (by
/// name): those that opt out of persistence are left out.
///
/// # Errors
/// As [`write_snapshot`].
pub fn write_snapshot_of(
    fs: &dyn FileSystem,
    dir: &Path,
    engine: &Engine,
    number: u64,
    keep: &dyn Fn(&str) -> bool,
) -> Result<SnapshotReport, PersistenceError> {
    let name = snapshot_name(number);
    let path = dir.join(&name);
    let temp = dir.join(format!("{name}.tmp"));
    let mut file = fs
        .create(&temp)
        .map_err(|error| PersistenceError::io("create", &temp, error))?;
    let mut report = SnapshotReport {
        name,
        ..SnapshotReport::default()
    };
    let mut buffer = Vec::with_capacity(WRITE_BYTES + WRITE_BYTES / 8);
    write_file_header(FileKind::Snapshot, &mut buffer);
    let mut write = |buffer: &mut Vec<u8>, report: &mut SnapshotReport| {
        report.bytes += buffer.len() as u64;
        let written = file
            .append(buffer)
            .map_err(|error| PersistenceError::io("write", &temp, error));
        buffer.clear();
        written
    };
    for namespace in engine.namespaces() {
        if !keep(namespace.name()) {
            continue;
        }
        let name: Arc<str> = Arc::from(namespace.name());
        // A hint for the restore, taken before the shards are read: keys
        // written or removed meanwhile make it a little off.
        let keys = SnapshotRecord::Namespace {
            namespace: Arc::clone(&name),
            keys: namespace.len(),
        };
        append_frame(&mut buffer, |out| keys.encode(out));
        let mut shard = None;
        for chunk in namespace.snapshot_reader() {
            if shard != Some(chunk.shard) {
                shard = Some(chunk.shard);
                report
                    .shard_sequences
                    .insert((Arc::clone(&name), chunk.shard), chunk.shard_sequence);
                let record = SnapshotRecord::Shard {
                    namespace: Arc::clone(&name),
                    shard: chunk.shard,
                    shard_sequence: chunk.shard_sequence,
                };
                append_frame(&mut buffer, |out| record.encode(out));
            }
            for entry in &chunk.entries {
                append_frame(&mut buffer, |out| encode_entry(entry, out));
                report.entries += 1;
            }
            // The chunk's collections are released here, so a write that
            // follows copies nothing.
            drop(chunk);
            if buffer.len() >= WRITE_BYTES {
                write(&mut buffer, &mut report)?;
            }
        }
    }
    let end = SnapshotRecord::End {
        entries: report.entries,
    };
    append_frame(&mut buffer, |out| end.encode(out));
    write(&mut buffer, &mut report)?;
    file.sync_data()
        .map_err(|error| PersistenceError::io("fdatasync", &temp, error))?;
    drop(file);
    fs.rename(&temp, &path)
        .map_err(|error| PersistenceError::io("rename", &temp, error))?;
    fs.sync_dir(dir)
        .map_err(|error| PersistenceError::io("fsync directory", dir, error))?;
    Ok(report)
}

/// Entries of one namespace handed to a restoring thread: slices of a
/// copy of the piece of the file they were read from.
struct EntryPiece {
    /// The bytes read, shared by the pieces cut from one read.
    block: Bytes,
    /// The namespace the entries belong to.
    namespace: Arc<Namespace>,
    /// Each entry's frame offset and the range of its payload in `block`.
    entries: Vec<(u64, Range<usize>)>,
}

/// Pieces read ahead of the restoring threads: enough to keep them busy,
/// few enough that the memory stays a few read buffers.
const PIECES_AHEAD: usize = 4;
/// Threads restoring entries. A snapshot holds each key once, so its
/// entries may be restored in any order: two threads fill the shards
/// side by side (each taking one key's shard lock at a time) while the
/// calling thread reads, checks and sorts the records.
const RESTORE_THREADS: usize = 2;

/// Restores snapshot `name` of `dir` into `engine`. On an error the
/// engine holds part of the snapshot and is to be discarded.
///
/// The calling thread reads the file, checks each frame's checksums,
/// handles the records that are not entries (namespaces, shards, the end)
/// and hands the entries on, by the piece, to two threads
/// that decode and restore them. Entries are sliced from one copy of each
/// read, and the engine copies out what it keeps, so no allocation is made
/// or freed per entry.
///
/// # Errors
/// [`PersistenceError::Corrupt`] naming the offset of any damage, or of
/// the end when the `End` trailer is missing or disagrees;
/// [`PersistenceError::UnsupportedVersion`]; [`PersistenceError::Replay`]
/// when the engine refuses an entry; [`PersistenceError::Io`]. When more
/// than one thread fails, the failure earliest in the file is reported.
pub fn load_snapshot(
    fs: &dyn FileSystem,
    dir: &Path,
    name: &str,
    engine: &Engine,
) -> Result<SnapshotReport, PersistenceError> {
    let path = dir.join(name);
    let read_error = |error| PersistenceError::io("read", &path, error);
    let OpenedFrames { frames, header, .. } =
        FrameReader::open(fs.open(&path).map_err(read_error)?, FileKind::Snapshot)
            .map_err(read_error)?;
    if let Some(error) =
        PersistenceError::from_header(header, FileKind::Snapshot, &path, "not a shoal snapshot")
    {
        return Err(error);
    }
    let stop = AtomicBool::new(false);
    let (pieces, received) = std::sync::mpsc::sync_channel(PIECES_AHEAD);
    let received = parking_lot::Mutex::new(received);
    std::thread::scope(|scope| {
        let mut restorers = Vec::with_capacity(RESTORE_THREADS);
        for _ in 0..RESTORE_THREADS {
            let restorer = std::thread::Builder::new()
                .name("shoal-restore".into())
                .spawn_scoped(scope, || restore_entries(&path, &received, &stop))
                .map_err(|error| PersistenceError::io("spawn restorer for", &path, error))?;
            restorers.push(restorer);
        }
        let read = read_snapshot(frames, &path, name, engine, &pieces, &stop);
        drop(pieces);
        let mut failures = Vec::new();
        for restorer in restorers {
            match restorer.join() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => failures.push(error),
                Err(_) => failures.push(PersistenceError::io(
                    "restore",
                    &path,
                    std::io::Error::other("a restoring thread panicked"),
                )),
            }
        }
        match read {
            Err(error) => failures.push(error),
            Ok(_) if !failures.is_empty() => {}
            Ok(report) => return Ok(report),
        }
        Err(failures
            .into_iter()
            .min_by_key(|error| match error {
                PersistenceError::Corrupt { offset, .. }
                | PersistenceError::Replay { offset, .. } => *offset,
                _ => u64::MAX,
            })
            .unwrap_or_else(|| unreachable!("a failure was pushed")))
    })
}

/// A restoring thread of [`load_snapshot`]: decodes and restores the
/// entries of each piece it takes, until the pieces run out or one fails.
fn restore_entries(
    path: &Path,
    pieces: &parking_lot::Mutex<std::sync::mpsc::Receiver<EntryPiece>>,
    stop: &AtomicBool,
) -> Result<(), PersistenceError> {
    let result = (|| loop {
        let Ok(piece) = pieces.lock().recv() else {
            return Ok(());
        };
        for (at, payload) in piece.entries {
            let corrupt = |reason: String| PersistenceError::corrupt(path, at, reason);
            let mut record =
                SnapshotRecord::decode(piece.block.slice(payload.clone())).map_err(corrupt)?;
            if let SnapshotRecord::Entry(entry) = &record
                && !matches!(entry.value, SnapshotValue::String(_))
            {
                // A collection keeps its members as they are decoded, so it
                // is decoded again from a copy of its own.
                let own = Bytes::copy_from_slice(&piece.block[payload]);
                record = SnapshotRecord::decode(own).map_err(corrupt)?;
            }
            let SnapshotRecord::Entry(entry) = record else {
                return Err(corrupt("not an entry, by its tag".into()));
            };
            piece
                .namespace
                .restore_entry(entry)
                .map_err(|source| PersistenceError::Replay {
                    path: path.to_path_buf(),
                    offset: at,
                    source,
                })?;
        }
    })();
    if result.is_err() {
        stop.store(true, Ordering::Relaxed);
    }
    result
}

/// The reading side of [`load_snapshot`]: reads and checks the frames,
/// handles every record that is not an entry, hands the entries on by
/// the piece, and checks the end. Stops early once a restorer failed.
fn read_snapshot(
    mut frames: FrameReader,
    path: &Path,
    name: &str,
    engine: &Engine,
    pieces: &std::sync::mpsc::SyncSender<EntryPiece>,
    stop: &AtomicBool,
) -> Result<SnapshotReport, PersistenceError> {
    let read_error = |error| PersistenceError::io("read", path, error);
    let resolve = |name: &str, at: u64| {
        engine
            .namespace(name)
            .map_err(|source| PersistenceError::Replay {
                path: path.to_path_buf(),
                offset: at,
                source: source.into(),
            })
    };
    let mut report = SnapshotReport {
        name: name.to_owned(),
        bytes: FILE_HEADER_BYTES as u64,
        ..SnapshotReport::default()
    };
    let mut namespace: Option<Arc<Namespace>> = None;
    let mut ended = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            // A restorer failed, and says why.
            return Ok(report);
        }
        let chunk = frames.next_chunk().map_err(read_error)?;
        let block = Bytes::copy_from_slice(chunk.bytes);
        let mut entries = Vec::with_capacity(chunk.payloads.len());
        // Hands on the entries gathered so far, of the current namespace.
        let hand_on = |entries: &mut Vec<(u64, Range<usize>)>,
                       namespace: &Option<Arc<Namespace>>| {
            if let Some(namespace) = namespace
                && !entries.is_empty()
            {
                let piece = EntryPiece {
                    block: block.clone(),
                    namespace: Arc::clone(namespace),
                    entries: std::mem::take(entries),
                };
                if pieces.send(piece).is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        };
        for payload in &chunk.payloads {
            let at = chunk.frame_offset(payload);
            if let Some((_, end_at)) = ended {
                return Err(PersistenceError::corrupt(
                    path,
                    end_at,
                    format!("a record follows the end record, at offset {at}"),
                ));
            }
            report.bytes += (FRAME_HEADER_BYTES + payload.len()) as u64;
            let corrupt = |reason: String| PersistenceError::corrupt(path, at, reason);
            if is_snapshot_entry(&chunk.bytes[payload.clone()]) {
                if namespace.is_none() {
                    return Err(corrupt("an entry before any shard record".into()));
                }
                entries.push((at, payload.clone()));
                report.entries += 1;
                continue;
            }
            match SnapshotRecord::decode(block.slice(payload.clone())).map_err(corrupt)? {
                SnapshotRecord::Namespace {
                    namespace: name,
                    keys,
                } => resolve(&name, at)?.reserve_keys(keys),
                SnapshotRecord::Shard {
                    namespace: name,
                    shard,
                    shard_sequence,
                } => {
                    if namespace
                        .as_ref()
                        .is_none_or(|current| current.name() != &*name)
                    {
                        hand_on(&mut entries, &namespace);
                        namespace = Some(resolve(&name, at)?);
                    }
                    report.shard_sequences.insert((name, shard), shard_sequence);
                }
                SnapshotRecord::Entry(_) => {
                    unreachable!("entries are told by their tag and handed on")
                }
                SnapshotRecord::End { entries } => ended = Some((entries, at)),
            }
        }
        hand_on(&mut entries, &namespace);
        match chunk.end {
            ChunkEnd::More => {}
            end => return check_end(path, report, ended, end),
        }
    }
}

/// Checks how the file ended against the end record, if one was read.
fn check_end(
    path: &Path,
    report: SnapshotReport,
    ended: Option<(u64, u64)>,
    end: ChunkEnd,
) -> Result<SnapshotReport, PersistenceError> {
    match (ended, end) {
        (Some((entries, at)), end) => {
            let follows = if matches!(end, ChunkEnd::End) {
                "no"
            } else {
                "more"
            };
            if entries != report.entries || follows != "no" {
                return Err(PersistenceError::corrupt(
                    path,
                    at,
                    format!(
                        "the end record counts {entries} entries, {} were read, {follows} bytes follow",
                        report.entries
                    ),
                ));
            }
            Ok(report)
        }
        (None, ChunkEnd::Bad { offset, reason, .. }) => {
            Err(PersistenceError::corrupt(path, offset, reason))
        }
        (None, _) => Err(PersistenceError::corrupt(
            path,
            report.bytes,
            "no end record",
        )),
    }
}
