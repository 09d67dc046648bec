//! Where a trace's keys come from, a file or a built-in generator, behind
//! one stream so that replays and OPT read both the same way.

use std::path::{Path, PathBuf};

use crate::synthetic::{Keys, Synthetic};
use crate::trace::{self, Accesses, TraceError, TraceFormat};

/// One trace of a run.
#[derive(Debug, Clone, PartialEq)]
pub enum TraceSource {
    /// A trace file in a given format.
    File {
        /// The file as given.
        path: PathBuf,
        /// How its lines are read.
        format: TraceFormat,
    },
    /// A generated trace.
    Synthetic(Synthetic),
}

impl TraceSource {
    /// The trace's name in reports: a file's name, or `synthetic SPEC`.
    pub fn name(&self) -> String {
        match self {
            TraceSource::File { path, .. } => file_name(path),
            TraceSource::Synthetic(synthetic) => format!("synthetic {}", synthetic.shape),
        }
    }

    /// The file, for a file trace.
    pub fn path(&self) -> Option<&Path> {
        match self {
            TraceSource::File { path, .. } => Some(path),
            TraceSource::Synthetic(_) => None,
        }
    }

    /// The trace's keys from the start, cut after `limit` when one is given;
    /// each call starts afresh.
    ///
    /// # Errors
    /// A file that cannot be opened; a line that cannot be read or parsed is
    /// an error item, after which the stream ends.
    pub fn accesses(
        &self,
        limit: Option<u64>,
    ) -> Result<std::iter::Take<SourceAccesses>, TraceError> {
        let accesses = match self {
            TraceSource::File { path, format } => {
                SourceAccesses::File(trace::accesses(path, *format)?)
            }
            TraceSource::Synthetic(synthetic) => {
                SourceAccesses::Synthetic(Box::new(synthetic.keys()))
            }
        };
        let limit = limit.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        Ok(accesses.take(limit))
    }

    /// Every key of the trace (up to `limit`) in memory, as OPT needs them;
    /// reading them all also checks a file before any replay starts.
    ///
    /// # Errors
    /// The first [`TraceError`] found.
    pub fn load(&self, limit: Option<u64>) -> Result<Vec<u64>, TraceError> {
        self.accesses(limit)?.collect()
    }
}

/// The name of a trace file: its last component.
fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

/// The keys of a [`TraceSource`].
pub enum SourceAccesses {
    /// Read from a file.
    File(Accesses),
    /// Generated; boxed, as a random generator's state dwarfs a reader.
    Synthetic(Box<Keys>),
}

impl Iterator for SourceAccesses {
    type Item = Result<u64, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            SourceAccesses::File(accesses) => accesses.next(),
            SourceAccesses::Synthetic(keys) => keys.next().map(Ok),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic(spec: &str, length: u64) -> TraceSource {
        TraceSource::Synthetic(Synthetic {
            shape: spec.parse().expect("valid spec"),
            length,
        })
    }

    #[test]
    fn files_and_synthetic_traces_read_alike_and_limits_apply() {
        let dir = tempfile::tempdir().expect("temp dir");
        let arc = dir.path().join("loop.lis");
        let lines = dir.path().join("loop.keys");
        std::fs::write(&arc, "0 3 0 0\n0 3 0 1\n0 1 0 2\n").expect("write");
        std::fs::write(&lines, "0\n1\n2\n0\n1\n2\n0\n").expect("write");
        let sources = [
            TraceSource::File {
                path: arc,
                format: TraceFormat::Arc,
            },
            TraceSource::File {
                path: lines,
                format: TraceFormat::Lines,
            },
            synthetic("loop:3", 7),
        ];
        for source in &sources {
            let name = source.name();
            assert_eq!(
                source.load(None).expect("reads"),
                [0, 1, 2, 0, 1, 2, 0],
                "{name}"
            );
            assert_eq!(source.load(Some(4)).expect("reads"), [0, 1, 2, 0], "{name}");
            assert_eq!(source.load(Some(100)).expect("reads").len(), 7, "{name}");
        }
        assert_eq!(sources[0].name(), "loop.lis");
        assert_eq!(sources[2].name(), "synthetic loop:3");
        assert!(sources[0].path().is_some());
        assert_eq!(sources[2].path(), None);
    }

    #[test]
    fn a_bad_file_fails_to_load_with_its_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bad.keys");
        std::fs::write(&path, "1\n2\nthree\n").expect("write");
        let source = TraceSource::File {
            path,
            format: TraceFormat::Lines,
        };
        let error = source.load(None).expect_err("malformed");
        assert!(error.to_string().contains("bad.keys: line 3"), "{error}");
        // A limit that stops before the bad line reads no further.
        assert_eq!(source.load(Some(2)).expect("reads"), [1, 2]);
    }

    #[test]
    fn synthetic_names_spell_out_defaults() {
        assert_eq!(synthetic("zigzag", 1).name(), "synthetic zigzag:1000");
        assert_eq!(synthetic("zipf:0.9", 1).name(), "synthetic zipf:0.9");
    }
}
