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

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::error::PersistenceError;
use super::frame::{FILE_HEADER_BYTES, FileKind, FrameRead};
use super::frame::{append_frame, check_file_header, read_frame, write_file_header};
use super::fs::FileSystem;
use super::record::{SnapshotRecord, encode_entry};
use crate::engine::Engine;

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
    let bytes = Bytes::from(
        fs.read(&path)
            .map_err(|error| PersistenceError::io("read", &path, error))?,
    );
    if let Some(error) = PersistenceError::from_header(
        check_file_header(FileKind::Snapshot, &bytes),
        &path,
        "not a shoal snapshot",
    ) {
        return Err(error);
    }
    let mut report = SnapshotReport {
        name: name.to_owned(),
        bytes: bytes.len() as u64,
        ..SnapshotReport::default()
    };
    let mut namespace: Option<Arc<str>> = None;
    let mut at = FILE_HEADER_BYTES;
    loop {
        let (payload, next) = match read_frame(&bytes, at) {
            FrameRead::Frame { payload, next } => (payload, next),
            FrameRead::End => {
                return Err(PersistenceError::corrupt(&path, at as u64, "no end record"));
            }
            FrameRead::Bad { reason, .. } => {
                return Err(PersistenceError::corrupt(&path, at as u64, reason));
            }
        };
        let corrupt = |reason: String| PersistenceError::corrupt(&path, at as u64, reason);
        match SnapshotRecord::decode(bytes.slice(payload)).map_err(corrupt)? {
            SnapshotRecord::Shard {
                namespace: name,
                shard,
                shard_sequence,
            } => {
                report
                    .shard_sequences
                    .insert((Arc::clone(&name), shard), shard_sequence);
                namespace = Some(name);
            }
            SnapshotRecord::Entry(entry) => {
                let Some(name) = &namespace else {
                    return Err(corrupt("an entry before any shard record".into()));
                };
                engine
                    .restore_entry(name, entry)
                    .map_err(|source| PersistenceError::Replay {
                        path: path.clone(),
                        offset: at as u64,
                        source,
                    })?;
                report.entries += 1;
            }
            SnapshotRecord::End { entries } => {
                if entries != report.entries || next != bytes.len() {
                    return Err(corrupt(format!(
                        "the end record counts {entries} entries, {} were read, {} bytes follow",
                        report.entries,
                        bytes.len() - next
                    )));
                }
                return Ok(report);
            }
        }
        at = next;
    }
}
