//! The manifest: the one file that says which snapshot and which log
//! segments hold the state, replaced atomically.
//!
//! A new manifest is written to `MANIFEST.tmp`, synced, renamed over
//! `MANIFEST` and made durable with a sync of the directory: after a crash
//! the manifest is the old one or the new one, never a mix. Files it no
//! longer names may be removed only after that.

use std::path::Path;

use bytes::Bytes;

use super::error::PersistenceError;
use super::frame::{FILE_HEADER_BYTES, FileKind, FrameRead};
use super::frame::{append_frame, check_file_header, read_frame, write_file_header};
use super::fs::FileSystem;
use super::record::Manifest;
use super::segment::{MANIFEST_NAME, MANIFEST_TEMP_NAME};

/// Replaces the manifest of `dir` with `manifest`, durably.
///
/// # Errors
/// [`PersistenceError::Io`]; the old manifest is then still in place.
pub fn write_manifest(
    fs: &dyn FileSystem,
    dir: &Path,
    manifest: &Manifest,
) -> Result<(), PersistenceError> {
    let temp = dir.join(MANIFEST_TEMP_NAME);
    let target = dir.join(MANIFEST_NAME);
    let mut bytes = Vec::new();
    write_file_header(FileKind::Manifest, &mut bytes);
    append_frame(&mut bytes, |out| manifest.encode(out));
    let mut file = fs
        .create(&temp)
        .map_err(|error| PersistenceError::io("create", &temp, error))?;
    file.append(&bytes)
        .map_err(|error| PersistenceError::io("write", &temp, error))?;
    file.sync_data()
        .map_err(|error| PersistenceError::io("fdatasync", &temp, error))?;
    drop(file);
    fs.rename(&temp, &target)
        .map_err(|error| PersistenceError::io("rename", &temp, error))?;
    fs.sync_dir(dir)
        .map_err(|error| PersistenceError::io("fsync directory", dir, error))
}

/// The manifest of `dir`, or `None` when there is none (a new data
/// directory, or one that only ever had a log).
///
/// # Errors
/// [`PersistenceError::Corrupt`] or [`PersistenceError::UnsupportedVersion`]
/// for a damaged manifest: it is only ever replaced whole, so damage is
/// not a torn write and is never repaired silently.
pub fn read_manifest(
    fs: &dyn FileSystem,
    dir: &Path,
) -> Result<Option<Manifest>, PersistenceError> {
    let path = dir.join(MANIFEST_NAME);
    let bytes = match fs.read(&path) {
        Ok(bytes) => Bytes::from(bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(PersistenceError::io("read", &path, error)),
    };
    if let Some(error) = PersistenceError::from_header(
        check_file_header(FileKind::Manifest, &bytes),
        FileKind::Manifest,
        &path,
        "not a shoal manifest",
    ) {
        return Err(error);
    }
    let (payload, next) = match read_frame(&bytes, FILE_HEADER_BYTES) {
        FrameRead::Frame { payload, next } => (payload, next),
        FrameRead::End => {
            return Err(PersistenceError::corrupt(
                path,
                FILE_HEADER_BYTES as u64,
                "no record",
            ));
        }
        FrameRead::Bad { reason, .. } => {
            return Err(PersistenceError::corrupt(
                path,
                FILE_HEADER_BYTES as u64,
                reason,
            ));
        }
    };
    if next != bytes.len() {
        return Err(PersistenceError::corrupt(
            path,
            next as u64,
            "bytes after the record",
        ));
    }
    Manifest::decode(bytes.slice(payload))
        .map(Some)
        .map_err(|reason| PersistenceError::corrupt(path, FILE_HEADER_BYTES as u64, reason))
}
