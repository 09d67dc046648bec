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

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::error::PersistenceError;
use super::frame::{FILE_HEADER_BYTES, FORMAT_VERSION, read_frame};
use super::frame::{FileKind, FrameRead, HeaderCheck, check_file_header, find_valid_frame_after};
use super::fs::FileSystem;
use super::record::LogRecord;
use super::segment::{segment_name, segment_numbers};
use crate::engine::ReplayError;

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
        let bytes = Bytes::from(
            fs.read(&path)
                .map_err(|error| PersistenceError::io("read", &path, error))?,
        );
        report.segments.push(number);
        let header = check_file_header(FileKind::Log, &bytes);
        // A segment's header is synced before any frame is written to it,
        // so a last segment of no more than a header that is not valid is
        // one whose creation the crash cut short, unless it names another
        // version in full.
        let torn_header = last
            && bytes.len() <= FILE_HEADER_BYTES
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
                    dropped_bytes: bytes.len() as u64,
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
        let mut at = FILE_HEADER_BYTES;
        loop {
            match read_frame(&bytes, at) {
                FrameRead::End => break,
                FrameRead::Frame { payload, next } => {
                    let record = LogRecord::decode(bytes.slice(payload))
                        .map_err(|reason| PersistenceError::corrupt(&path, at as u64, reason))?;
                    visit(record).map_err(|source| PersistenceError::Replay {
                        path: path.clone(),
                        offset: at as u64,
                        source,
                    })?;
                    report.records += 1;
                    at = next;
                }
                FrameRead::Bad { reason, .. } => {
                    if !last || find_valid_frame_after(&bytes, at).is_some() {
                        return Err(PersistenceError::corrupt(&path, at as u64, reason));
                    }
                    fs.truncate(&path, at as u64)
                        .map_err(|error| PersistenceError::io("truncate", &path, error))?;
                    report.torn_tail = Some(TornTail {
                        path: path.clone(),
                        offset: at as u64,
                        dropped_bytes: (bytes.len() - at) as u64,
                        reason,
                    });
                    break;
                }
            }
        }
    }
    Ok(report)
}
