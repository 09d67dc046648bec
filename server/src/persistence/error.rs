//! The persistence layer's error type.

use std::path::PathBuf;
use std::sync::Arc;

/// Why a log, snapshot or manifest could not be written or read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PersistenceError {
    /// A file operation failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done (`write`, `fdatasync`, `rename`, ...).
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause, shared so that every waiter of a failed group commit
        /// can be told.
        source: Arc<std::io::Error>,
    },
    /// A file's content is damaged somewhere other than a torn tail.
    #[error("{path} is corrupt at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the first bad record or field.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// A file was written by an unknown format version.
    #[error("{path} has format version {found}; this build reads version {supported}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in its header.
        found: u32,
        /// The newest version this build reads (and the one it writes).
        supported: u32,
    },
    /// A record could not be replayed into the engine.
    #[error("{path} at offset {offset}: cannot replay the record: {source}")]
    Replay {
        /// The file.
        path: PathBuf,
        /// Byte offset of the record's frame.
        offset: u64,
        /// Why the engine refused it.
        source: crate::engine::ReplayError,
    },
    /// The log writer stopped after an earlier failure; nothing appended
    /// since is durable. A failed fdatasync is never retried: the kernel
    /// may already have dropped the pages it could not write.
    #[error("the log writer has failed: {0}")]
    WriterFailed(Box<PersistenceError>),
    /// The engine already sends its change records to another sink, so
    /// the log would miss them.
    #[error("the engine already has a change sink; the log must be its only one")]
    SinkAttached,
    /// The log writer was closed.
    #[error("the log writer is closed")]
    Closed,
    /// Another process holds the data directory.
    #[error(
        "data directory {} is in use by another shoal-server (its LOCK file is held); \
         stop that one or give this one another --data-dir",
        .dir.display()
    )]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
}

impl PersistenceError {
    pub(crate) fn io(
        operation: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            operation,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// The error for a whole file at `path` whose header is not that of a
    /// current file of its kind (`header`, from `check_file_header`); `None`
    /// when it is. `not_what` says what it is not, such as "not a shoal
    /// manifest".
    pub(crate) fn from_header(
        header: super::frame::HeaderCheck,
        kind: super::frame::FileKind,
        path: &std::path::Path,
        not_what: &str,
    ) -> Option<Self> {
        use super::frame::HeaderCheck;
        match header {
            HeaderCheck::Valid => None,
            HeaderCheck::WrongVersion(found) => Some(Self::UnsupportedVersion {
                path: path.to_path_buf(),
                found,
                supported: kind.version(),
            }),
            HeaderCheck::Missing | HeaderCheck::WrongMagic => {
                Some(Self::corrupt(path, 0, not_what))
            }
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Self::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}
