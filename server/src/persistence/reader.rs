//! Reading the log back: segments in order, every frame checked.
//!
//! The only damage recovery repairs by itself is a torn tail: the last
//! segment ending inside a frame, or in bytes that hold no valid frame up
//! to its end, as a crash during a write leaves it. That tail held nothing
//! acknowledged under `always` (nothing after the last fdatasync is), so it
//! is cut off, durably, and reported. Anything else is an error naming the
//! file and the offset: a bad frame in an earlier segment (segments are
//! synced before the next one begins), or a bad frame followed by a valid
//! one, which a torn write does not leave behind.
//!
//! Segments are read piece by piece ([`FrameReader`]), so a replay holds
//! about [`READ_CHUNK_BYTES`](super::frame::READ_CHUNK_BYTES) of file
//! however long the log. Records are decoded from slices of one copy of
//! each piece, so that a replay makes and frees no allocation per record:
//! the engine copies out a string value it keeps beside its entry
//! ([`Namespace::apply_change`](crate::engine::Namespace::apply_change)),
//! and a collection change, whose members would keep the piece alive, is
//! decoded again from a copy of its own. A visitor that keeps records
//! (tests) keeps their pieces. Only when a bad frame is found in the last
//! segment is that one segment read whole, to look past the damage.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::error::PersistenceError;
use super::frame::{ChunkEnd, FORMAT_VERSION, OpenedFrames};
use super::frame::{FileKind, FrameReader, HeaderCheck, find_valid_frame_after};
use super::fs::FileSystem;
use super::record::{LogRecord, NameCache};
use super::segment::{segment_name, segment_numbers};
use crate::engine::{ChangeKind, ChangeRecord, ReplayError};

/// The end of the last segment that was cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment.
    pub path: PathBuf,
    /// Where the valid records end, now the segment's length (0 when the
    /// segment held no header, and was removed).
    pub offset: u64,
    /// Bytes cut off.
    pub dropped_bytes: u64,
    /// What was found there.
    pub reason: String,
}

/// What reading the log found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogReport {
    /// Segments read, in order.
    pub segments: Vec<u64>,
    /// Records read.
    pub records: u64,
    /// The torn tail cut off, if there was one.
    pub torn_tail: Option<TornTail>,
}

impl LogReport {
    /// The number the next segment should get: above every segment read.
    pub fn next_segment(&self, first_segment: u64) -> u64 {
        self.segments
            .last()
            .map_or(first_segment.max(1), |last| last + 1)
    }
}

/// Reads the segments of `dir` numbered `first_segment` and up, in order,
/// handing each record to `visit`; cuts off a torn tail (see the module
/// docs). Segments below `first_segment` are left alone (a snapshot covers
/// them).
///
/// # Errors
/// [`PersistenceError::Corrupt`] naming the file and offset of damage that
/// is not a torn tail, or of a missing segment;
/// [`PersistenceError::UnsupportedVersion`]; [`PersistenceError::Io`]; or
/// [`PersistenceError::Replay`] when `visit` refuses a record.
pub fn read_log(
    fs: &dyn FileSystem,
    dir: &Path,
    first_segment: u64,
    mut visit: impl FnMut(LogRecord) -> Result<(), ReplayError>,
) -> Result<LogReport, PersistenceError> {
    let names = fs
        .list(dir)
        .map_err(|error| PersistenceError::io("list", dir, error))?;
    let numbers: Vec<u64> = segment_numbers(&names)
        .into_iter()
        .filter(|number| *number >= first_segment)
        .collect();
    let mut report = LogReport::default();
    // Segments from the first one on are only ever removed by a snapshot,
    // after the manifest moved past them.
    if let Some(&first) = numbers.first()
        && first != first_segment.max(1)
    {
        return Err(PersistenceError::corrupt(
            dir.join(segment_name(first_segment.max(1))),
            0,
            format!(
                "segment {} is missing before segment {first}",
                first_segment.max(1)
            ),
        ));
    }
    for (index, &number) in numbers.iter().enumerate() {
        let path = dir.join(segment_name(number));
        if let Some(&previous) = report.segments.last()
            && number != previous + 1
        {
            return Err(PersistenceError::corrupt(
                dir.join(segment_name(previous + 1)),
                0,
                format!(
                    "segment {} is missing before segment {number}",
                    previous + 1
                ),
            ));
        }
        let last = index + 1 == numbers.len();
        let source = fs
            .open(&path)
            .map_err(|error| PersistenceError::io("read", &path, error))?;
        let OpenedFrames {
            mut frames,
            header,
            short_len,
        } = FrameReader::open(source, FileKind::Log)
            .map_err(|error| PersistenceError::io("read", &path, error))?;
        report.segments.push(number);
        // A segment's header is synced before any frame is written to it,
        // so a last segment of no more than a header that is not valid is
        // one whose creation the crash cut short, unless it names another
        // version in full.
        let torn_header = last
            && short_len.is_some()
            && !matches!(header, HeaderCheck::Valid | HeaderCheck::WrongVersion(1..));
        match header {
            HeaderCheck::Valid => {}
            _ if torn_header => {
                fs.remove(&path)
                    .map_err(|error| PersistenceError::io("remove", &path, error))?;
                fs.sync_dir(dir)
                    .map_err(|error| PersistenceError::io("fsync directory", dir, error))?;
                report.torn_tail = Some(TornTail {
                    path,
                    offset: 0,
                    dropped_bytes: short_len.unwrap_or(0),
                    reason: "the segment has no complete header".into(),
                });
                report.segments.pop();
                break;
            }
            HeaderCheck::Missing => {
                return Err(PersistenceError::corrupt(path, 0, "no file header"));
            }
            HeaderCheck::WrongMagic => {
                return Err(PersistenceError::corrupt(
                    path,
                    0,
                    "not a shoal log segment",
                ));
            }
            HeaderCheck::WrongVersion(found) => {
                return Err(PersistenceError::UnsupportedVersion {
                    path,
                    found,
                    supported: FORMAT_VERSION,
                });
            }
        }
        let mut names = NameCache::default();
        loop {
            let chunk = frames
                .next_chunk()
                .map_err(|error| PersistenceError::io("read", &path, error))?;
            let block = Bytes::copy_from_slice(chunk.bytes);
            for payload in &chunk.payloads {
                let at = chunk.frame_offset(payload);
                let corrupt = |reason| PersistenceError::corrupt(&path, at, reason);
                let mut record = LogRecord::decode_with(block.slice(payload.clone()), &mut names)
                    .map_err(corrupt)?;
                if let LogRecord::Change(ChangeRecord {
                    kind: ChangeKind::Collection { .. },
                    ..
                }) = &record
                {
                    let own = Bytes::copy_from_slice(&block[payload.clone()]);
                    record = LogRecord::decode_with(own, &mut names).map_err(corrupt)?;
                }
                visit(record).map_err(|source| PersistenceError::Replay {
                    path: path.clone(),
                    offset: at,
                    source,
                })?;
                report.records += 1;
            }
            match chunk.end {
                ChunkEnd::More => {}
                ChunkEnd::End => break,
                ChunkEnd::Bad { offset, reason, .. } => {
                    if !last {
                        return Err(PersistenceError::corrupt(&path, offset, reason));
                    }
                    report.torn_tail = Some(cut_torn_tail(fs, &path, offset, reason)?);
                    break;
                }
            }
        }
    }
    Ok(report)
}

/// Cuts the last segment at `path` at the bad frame at `offset` when
/// nothing valid follows it (a torn tail); fails naming the offset when
/// something does. The segment is read whole here, once, to look.
fn cut_torn_tail(
    fs: &dyn FileSystem,
    path: &Path,
    offset: u64,
    reason: String,
) -> Result<TornTail, PersistenceError> {
    let bytes = fs
        .read(path)
        .map_err(|error| PersistenceError::io("read", path, error))?;
    let at = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    if find_valid_frame_after(&bytes, at).is_some() {
        return Err(PersistenceError::corrupt(path, offset, reason));
    }
    fs.truncate(path, offset)
        .map_err(|error| PersistenceError::io("truncate", path, error))?;
    Ok(TornTail {
        path: path.to_path_buf(),
        offset,
        dropped_bytes: (bytes.len() - at) as u64,
        reason,
    })
}
