//! Reading block-access traces into a stream of keys.
//!
//! A trace is read lazily, line by line, so a replay holds one line in
//! memory however long the trace is; each replay opens the file afresh.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The trace file formats a replay understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceFormat {
    /// ARC `.lis` lines `start count ignored request`; each expands to the
    /// `count` block accesses `start..start + count`.
    Arc,
    /// One key a line, a decimal unsigned 64-bit integer: the plainest
    /// format to write by hand or from another tool.
    Lines,
}

impl TraceFormat {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TraceFormat::Arc => "arc",
            TraceFormat::Lines => "lines",
        }
    }
}

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be opened, or its compressed stream not started.
    #[error("{}: cannot open: {source}", path.display())]
    Open {
        /// The trace file.
        path: PathBuf,
        /// What the operating system or the decoder said.
        source: io::Error,
    },
    /// Reading (or decompressing) failed part way.
    #[error("{}: line {line}: cannot read: {source}", path.display())]
    Read {
        /// The trace file.
        path: PathBuf,
        /// The 1-based line being read.
        line: u64,
        /// What the operating system or the decoder said.
        source: io::Error,
    },
    /// A line is not in the trace's format.
    #[error("{}: line {line}: {reason}", path.display())]
    Malformed {
        /// The trace file.
        path: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// What is wrong with the line.
        reason: String,
    },
}

/// Opens `path` for reading lines, decompressing it when its name ends in
/// `.zst`.
///
/// # Errors
/// [`TraceError::Open`] when the file cannot be opened or is not a zstd
/// stream although named `.zst`.
pub fn open(path: &Path) -> Result<Box<dyn BufRead + Send>, TraceError> {
    let open_error = |source| TraceError::Open {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(open_error)?;
    if path.extension().is_some_and(|ext| ext == "zst") {
        let decoder = zstd::stream::read::Decoder::new(file).map_err(open_error)?;
        Ok(Box::new(BufReader::new(decoder)))
    } else {
        Ok(Box::new(BufReader::new(file)))
    }
}

/// The keys `path` accesses, in order, read in `format`.
///
/// # Errors
/// Opening fails as [`open`] does; each item is an error for a line that
/// cannot be read or parsed, after which the stream ends.
pub fn accesses(path: &Path, format: TraceFormat) -> Result<Accesses, TraceError> {
    let reader = open(path)?;
    let path = path.to_path_buf();
    Ok(match format {
        TraceFormat::Arc => Accesses::Arc(ArcAccesses::new(reader, path)),
        TraceFormat::Lines => Accesses::Lines(LinesAccesses::new(reader, path)),
    })
}

/// A stream of block accesses in one of the [`TraceFormat`]s.
pub enum Accesses {
    /// From an ARC `.lis` trace.
    Arc(ArcAccesses<Box<dyn BufRead + Send>>),
    /// From a trace of one key a line.
    Lines(LinesAccesses<Box<dyn BufRead + Send>>),
}

impl Iterator for Accesses {
    type Item = Result<u64, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Accesses::Arc(inner) => inner.next(),
            Accesses::Lines(inner) => inner.next(),
        }
    }
}

/// Counts of one trace, from a full pass over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TraceSummary {
    /// Block accesses replayed (at most the limit, when one was given).
    pub accesses: u64,
    /// Distinct blocks among them.
    pub unique_keys: u64,
}

/// The numbered lines of a trace, shared by the readers of every format so
/// that they count lines and report read errors alike.
struct NumberedLines<R> {
    reader: R,
    path: PathBuf,
    line: Vec<u8>,
    line_number: u64,
    /// Set at the end of the trace or at its first error: nothing follows.
    finished: bool,
}

impl<R: BufRead> NumberedLines<R> {
    fn new(reader: R, path: PathBuf) -> Self {
        Self {
            reader,
            path,
            line: Vec::new(),
            line_number: 0,
            finished: false,
        }
    }

    /// The next record `parse` finds in the lines (which it answers `None`
    /// for blank ones); `None` at the end of the trace and after an error,
    /// which ends the trace.
    fn next_record<T>(
        &mut self,
        parse: fn(&[u8]) -> Result<Option<T>, String>,
    ) -> Option<Result<T, TraceError>> {
        while !self.finished {
            let parsed = match self.next_line() {
                Ok(None) => {
                    self.finished = true;
                    return None;
                }
                Ok(Some(line)) => parse(line),
                Err(error) => {
                    self.finished = true;
                    return Some(Err(error));
                }
            };
            match parsed {
                Ok(Some(record)) => return Some(Ok(record)),
                Ok(None) => {}
                Err(reason) => {
                    self.finished = true;
                    return Some(Err(self.malformed(reason)));
                }
            }
        }
        None
    }

    /// The next line, with its end of line; `None` at the end of the trace.
    fn next_line(&mut self) -> Result<Option<&[u8]>, TraceError> {
        self.line.clear();
        match self.reader.read_until(b'\n', &mut self.line) {
            Ok(0) => Ok(None),
            Ok(_) => {
                self.line_number += 1;
                Ok(Some(&self.line))
            }
            Err(source) => Err(TraceError::Read {
                path: self.path.clone(),
                line: self.line_number + 1,
                source,
            }),
        }
    }

    /// The error for the line last read, which is not in the format.
    fn malformed(&self, reason: String) -> TraceError {
        TraceError::Malformed {
            path: self.path.clone(),
            line: self.line_number,
            reason,
        }
    }
}

/// Block accesses from ARC `.lis` lines.
///
/// Blank lines are skipped. Every other line must hold exactly four unsigned
/// integers; `count` may be 0 (a request touching no block).
pub struct ArcAccesses<R> {
    lines: NumberedLines<R>,
    next_block: u64,
    remaining: u64,
}

impl<R: BufRead> ArcAccesses<R> {
    /// Reads lines from `reader`; `path` names the trace in errors.
    pub fn new(reader: R, path: PathBuf) -> Self {
        Self {
            lines: NumberedLines::new(reader, path),
            next_block: 0,
            remaining: 0,
        }
    }
}

impl<R: BufRead> Iterator for ArcAccesses<R> {
    type Item = Result<u64, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.remaining == 0 {
            match self.lines.next_record(parse_arc_line)? {
                Ok((start, count)) => {
                    self.next_block = start;
                    self.remaining = count;
                }
                Err(error) => return Some(Err(error)),
            }
        }
        let block = self.next_block;
        self.remaining -= 1;
        // Cannot overflow: the parser checked `start + count - 1`.
        self.next_block = self.next_block.wrapping_add(1);
        Some(Ok(block))
    }
}

/// Keys from a trace of one decimal key a line.
///
/// Blank lines are skipped and whitespace around a key (a CRLF line end
/// included) is ignored; anything else on a line is an error, so a trace in
/// another format is not silently read as a stream of wrong keys.
pub struct LinesAccesses<R> {
    lines: NumberedLines<R>,
}

impl<R: BufRead> LinesAccesses<R> {
    /// Reads lines from `reader`; `path` names the trace in errors.
    pub fn new(reader: R, path: PathBuf) -> Self {
        Self {
            lines: NumberedLines::new(reader, path),
        }
    }
}

impl<R: BufRead> Iterator for LinesAccesses<R> {
    type Item = Result<u64, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.lines.next_record(parse_key_line)
    }
}

/// Parses a line of the `lines` format into its key; `None` for a blank
/// line.
fn parse_key_line(line: &[u8]) -> Result<Option<u64>, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not valid UTF-8".to_string())?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    // `u64::from_str` would also take a leading `+`; a key is digits only.
    if !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!(
            "expected one key, a decimal unsigned integer, found: {}",
            quote(text)
        ));
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("key is larger than {}: {}", u64::MAX, quote(text)))
}

/// Field names of an ARC line, in order.
const ARC_FIELDS: [&str; 4] = ["start", "count", "ignored", "request"];

/// Parses one ARC line into `(start, count)`; `None` for a blank line.
fn parse_arc_line(line: &[u8]) -> Result<Option<(u64, u64)>, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not valid UTF-8".to_string())?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    if fields.len() != ARC_FIELDS.len() {
        return Err(format!(
            "expected 4 fields `start count ignored request`, found {}: {}",
            fields.len(),
            quote(text)
        ));
    }
    let mut numbers = [0u64; 4];
    for ((number, field), name) in numbers.iter_mut().zip(&fields).zip(ARC_FIELDS) {
        *number = field
            .parse()
            .map_err(|_| format!("`{name}` is not an unsigned integer: {}", quote(field)))?;
    }
    let [start, count, _, _] = numbers;
    if count > 0 && start.checked_add(count - 1).is_none() {
        return Err(format!(
            "blocks {start}..{start}+{count} run past the largest block number"
        ));
    }
    Ok(Some((start, count)))
}

/// `text` in backquotes, cut short if long.
fn quote(text: &str) -> String {
    const MAX_CHARS: usize = 60;
    if text.chars().count() <= MAX_CHARS {
        format!("`{text}`")
    } else {
        let head: String = text.chars().take(MAX_CHARS).collect();
        format!("`{head}...`")
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use super::*;

    fn parse(text: &[u8]) -> Vec<Result<u64, TraceError>> {
        ArcAccesses::new(Cursor::new(text.to_vec()), PathBuf::from("inline.lis")).collect()
    }

    fn keys(text: &[u8]) -> Vec<u64> {
        parse(text)
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("trace parses")
    }

    fn error(text: &[u8]) -> String {
        let items = parse(text);
        let last = items.last().expect("at least one item");
        assert!(
            items[..items.len() - 1].iter().all(Result::is_ok),
            "only the last item is an error"
        );
        match last {
            Err(error) => error.to_string(),
            Ok(key) => panic!("expected an error, got key {key}"),
        }
    }

    #[test]
    fn lines_expand_to_consecutive_blocks() {
        let trace = b"100 3 0 0\n7 1 0 1\n100 2 0 2\n";
        assert_eq!(keys(trace), [100, 101, 102, 7, 100, 101]);
    }

    #[test]
    fn blank_lines_crlf_and_a_missing_final_newline_are_accepted() {
        let trace = b"\n5 2 0 0\r\n  \n9 1 0 1";
        assert_eq!(keys(trace), [5, 6, 9]);
    }

    #[test]
    fn zero_count_lines_touch_nothing() {
        assert_eq!(keys(b"5 0 0 0\n6 1 0 1\n"), [6]);
    }

    #[test]
    fn an_empty_trace_has_no_accesses() {
        assert!(keys(b"").is_empty());
    }

    #[test]
    fn wrong_field_count_names_file_and_line() {
        let message = error(b"1 1 0 0\n2 2 0\n");
        assert!(message.starts_with("inline.lis: line 2: "), "{message}");
        assert!(message.contains("expected 4 fields"), "{message}");
        assert!(message.contains("found 3"), "{message}");
    }

    #[test]
    fn extra_fields_are_rejected() {
        let message = error(b"1 1 0 0 9\n");
        assert!(message.contains("line 1"), "{message}");
        assert!(message.contains("found 5"), "{message}");
    }

    #[test]
    fn non_numeric_fields_are_rejected() {
        let message = error(b"1 1 0 0\n\nx 1 0 2\n");
        assert!(message.starts_with("inline.lis: line 3: "), "{message}");
        assert!(message.contains("`start`"), "{message}");
        assert!(message.contains("`x`"), "{message}");

        assert!(error(b"1 -2 0 0\n").contains("`count`"));
        assert!(error(b"1 2 0.5 0\n").contains("`ignored`"));
        assert!(error(b"1 2 0 r\n").contains("`request`"));
    }

    #[test]
    fn block_ranges_past_u64_are_rejected() {
        let max = u64::MAX;
        assert_eq!(keys(format!("{max} 1 0 0\n").as_bytes()), [max]);
        let message = error(format!("{max} 2 0 0\n").as_bytes());
        assert!(message.contains("line 1"), "{message}");
        assert!(message.contains("largest block number"), "{message}");
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let message = error(b"1 1 0 0\n\xff\xfe 1 0 0\n");
        assert!(message.contains("line 2: not valid UTF-8"), "{message}");
    }

    #[test]
    fn long_lines_are_cut_in_messages() {
        let line = "1 ".repeat(100);
        let message = error(line.as_bytes());
        assert!(message.contains("...`"), "{message}");
        assert!(message.len() < 200, "{message}");
    }

    #[test]
    fn zst_files_are_decompressed_in_every_format() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (format, text) in [
            (TraceFormat::Arc, &b"10 4 0 0\n12 2 0 1\n"[..]),
            (TraceFormat::Lines, &b"10\n11\n12\n13\n12\n13\n"[..]),
        ] {
            let plain = dir.path().join(format!("small.{}", format.name()));
            let compressed = dir.path().join(format!("small.{}.zst", format.name()));
            std::fs::write(&plain, text).expect("write plain");
            let packed = zstd::encode_all(text, 3).expect("compress");
            std::fs::File::create(&compressed)
                .and_then(|mut file| file.write_all(&packed))
                .expect("write compressed");

            for path in [&plain, &compressed] {
                let all: Vec<u64> = accesses(path, format)
                    .expect("open")
                    .collect::<Result<_, _>>()
                    .expect("parse");
                assert_eq!(all, [10, 11, 12, 13, 12, 13], "{}", path.display());
            }
        }
    }

    #[test]
    fn a_missing_file_is_an_open_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("absent.lis");
        for format in [TraceFormat::Arc, TraceFormat::Lines] {
            let Err(error) = accesses(&path, format) else {
                panic!("opening a missing file succeeded");
            };
            assert!(matches!(error, TraceError::Open { .. }));
            assert!(error.to_string().contains("absent.lis: cannot open"));
        }
    }

    #[test]
    fn a_bad_zst_file_is_reported_not_panicked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bad.lis.zst");
        std::fs::write(&path, b"1 1 0 0\n").expect("write");
        let result = accesses(&path, TraceFormat::Arc)
            .and_then(|keys| keys.collect::<Result<Vec<u64>, _>>());
        let message = result.expect_err("not a zstd stream").to_string();
        assert!(
            message.starts_with(&path.display().to_string()),
            "{message}"
        );
    }

    fn parse_lines(text: &[u8]) -> Vec<Result<u64, TraceError>> {
        LinesAccesses::new(Cursor::new(text.to_vec()), PathBuf::from("inline.keys")).collect()
    }

    fn lines_error(text: &[u8]) -> String {
        let items = parse_lines(text);
        let (last, before) = items.split_last().expect("at least one item");
        assert!(
            before.iter().all(Result::is_ok),
            "only the last is an error"
        );
        match last {
            Err(error) => error.to_string(),
            Ok(key) => panic!("expected an error, got key {key}"),
        }
    }

    #[test]
    fn lines_hold_one_key_each() {
        let keys: Vec<u64> = parse_lines(b"3\n1\n3\n0\n18446744073709551615\n")
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("parses");
        assert_eq!(keys, [3, 1, 3, 0, u64::MAX]);
    }

    #[test]
    fn lines_accept_blank_lines_crlf_spaces_and_no_final_newline() {
        let keys: Vec<u64> = parse_lines(b"\r\n7\r\n\n  8 \n\t\n9")
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("parses");
        assert_eq!(keys, [7, 8, 9]);
        assert!(parse_lines(b"").is_empty());
        assert!(parse_lines(b"\n\r\n").is_empty());
    }

    #[test]
    fn lines_reject_anything_but_one_decimal_key() {
        for (text, line, needle) in [
            (&b"1\n2 3\n"[..], 2, "`2 3`"),
            (b"1\n\n-4\n", 3, "`-4`"),
            (b"+5\n", 1, "`+5`"),
            (b"0x10\n", 1, "`0x10`"),
            (b"1.5\n", 1, "`1.5`"),
            (b"10 1 0 0\n", 1, "`10 1 0 0`"),
            (
                b"18446744073709551616\n",
                1,
                "larger than 18446744073709551615",
            ),
            (b"7\n\xff\n", 2, "not valid UTF-8"),
        ] {
            let message = lines_error(text);
            assert!(
                message.starts_with(&format!("inline.keys: line {line}: ")),
                "{message}"
            );
            assert!(message.contains(needle), "{message}");
        }
        assert!(lines_error(b"x\n").contains("decimal unsigned integer"));
    }

    #[test]
    fn formats_are_named_as_on_the_command_line() {
        assert_eq!(TraceFormat::Arc.name(), "arc");
        assert_eq!(TraceFormat::Lines.name(), "lines");
        assert_eq!(
            serde_json::to_value(TraceFormat::Lines).expect("serializes"),
            "lines"
        );
    }
}
