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
//! It is loaded back piece by piece too ([`FrameReader`]), each entry
//! copied out of the read buffer (see [`super::reader`]), and each shard
//! record's namespace looked up once for the entries that follow it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::error::PersistenceError;
use super::frame::{ChunkEnd, FILE_HEADER_BYTES, FRAME_HEADER_BYTES, FileKind, FrameReader};
use super::frame::{OpenedFrames, append_frame, write_file_header};
use super::fs::FileSystem;
use super::record::{SnapshotRecord, encode_entry};
use crate::engine::{Engine, Namespace};

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

/// Restores snapshot `name` of `dir` into `engine`. On an error the
/// engine holds part of the snapshot and is to be discarded.
///
/// # Errors
/// [`PersistenceError::Corrupt`] naming the offset of any damage, or of
/// the end when the `End` trailer is missing or disagrees;
/// [`PersistenceError::UnsupportedVersion`]; [`PersistenceError::Replay`]
/// when the engine refuses an entry; [`PersistenceError::Io`].
pub fn load_snapshot(
    fs: &dyn FileSystem,
    dir: &Path,
    name: &str,
    engine: &Engine,
) -> Result<SnapshotReport, PersistenceError> {
    let path = dir.join(name);
    let read_error = |error| PersistenceError::io("read", &path, error);
    let OpenedFrames {
        mut frames, header, ..
    } = FrameReader::open(fs.open(&path).map_err(read_error)?, FileKind::Snapshot)
        .map_err(read_error)?;
    if let Some(error) = PersistenceError::from_header(header, &path, "not a shoal snapshot") {
        return Err(error);
    }
    let mut report = SnapshotReport {
        name: name.to_owned(),
        bytes: FILE_HEADER_BYTES as u64,
        ..SnapshotReport::default()
    };
    // Resolved once per shard record, not per entry.
    let mut namespace: Option<Arc<Namespace>> = None;
    let mut ended = None;
    loop {
        let chunk = frames.next_chunk().map_err(read_error)?;
        for payload in &chunk.payloads {
            let at = chunk.frame_offset(payload);
            if let Some((_, end_at)) = ended {
                return Err(PersistenceError::corrupt(
                    &path,
                    end_at,
                    format!("a record follows the end record, at offset {at}"),
                ));
            }
            report.bytes += (FRAME_HEADER_BYTES + payload.len()) as u64;
            let corrupt = |reason: String| PersistenceError::corrupt(&path, at, reason);
            // Copied out of the read buffer: see the reader's docs.
            let record = Bytes::copy_from_slice(&chunk.bytes[payload.clone()]);
            match SnapshotRecord::decode(record).map_err(corrupt)? {
                SnapshotRecord::Shard {
                    namespace: name,
                    shard,
                    shard_sequence,
                } => {
                    let resolved =
                        engine
                            .namespace(&name)
                            .map_err(|source| PersistenceError::Replay {
                                path: path.clone(),
                                offset: at,
                                source: source.into(),
                            })?;
                    namespace = Some(resolved);
                    report.shard_sequences.insert((name, shard), shard_sequence);
                }
                SnapshotRecord::Entry(entry) => {
                    let Some(namespace) = &namespace else {
                        return Err(corrupt("an entry before any shard record".into()));
                    };
                    namespace
                        .restore_entry(entry)
                        .map_err(|source| PersistenceError::Replay {
                            path: path.clone(),
                            offset: at,
                            source,
                        })?;
                    report.entries += 1;
                }
                SnapshotRecord::End { entries } => ended = Some((entries, at)),
            }
        }
        if let Some((entries, at)) = ended {
            let follows = match &chunk.end {
                ChunkEnd::More => continue,
                ChunkEnd::End => "no",
                ChunkEnd::Bad { .. } => "more",
            };
            if entries != report.entries || follows != "no" {
                return Err(PersistenceError::corrupt(
                    &path,
                    at,
                    format!(
                        "the end record counts {entries} entries, {} were read, {follows} bytes follow",
                        report.entries
                    ),
                ));
            }
            return Ok(report);
        }
        match chunk.end {
            ChunkEnd::More => {}
            ChunkEnd::End => {
                return Err(PersistenceError::corrupt(
                    &path,
                    report.bytes,
                    "no end record",
                ));
            }
            ChunkEnd::Bad { offset, reason, .. } => {
                return Err(PersistenceError::corrupt(&path, offset, reason));
            }
        }
    }
}
