//! The change sink that appends every change record to the log.
//!
//! The engine calls the sink on the thread that made the change, under the
//! shard's lock, so the records of a shard reach the log in sequence
//! order. The sink remembers, per thread, the position of the last record
//! it appended: after an engine call, the caller takes it
//! ([`LogSink::take_position`]) and waits for it ([`LogWriter::wait`],
//! or the listener of [`LogWriter::open_with_listener`])
//! before answering, which is the acknowledgement rule.

use std::cell::Cell;
use std::sync::Arc;

use super::record::{encode_change, encode_flush};
use super::writer::{LogPosition, LogWriter};
use crate::engine::{ChangeRecord, ChangeSink, FlushRecord};

thread_local! {
    /// Position of the last record this thread appended and nobody took
    /// yet; 0 for none, `u64::MAX` after a failed append (whose wait then
    /// reports the writer's failure).
    static LAST_POSITION: Cell<u64> = const { Cell::new(0) };
}

/// Appends change records to a [`LogWriter`].
#[derive(Debug, Clone)]
pub struct LogSink {
    writer: Arc<LogWriter>,
}

impl LogSink {
    /// A sink appending to `writer`.
    pub fn new(writer: Arc<LogWriter>) -> Self {
        Self { writer }
    }

    /// The position to wait for before this thread acknowledges what it
    /// changed since it last asked; `None` when it changed nothing.
    pub fn take_position() -> Option<LogPosition> {
        let position = LAST_POSITION.replace(0);
        (position != 0).then_some(position)
    }

    /// Appends `change`, remembering its position for this thread.
    pub fn append_change(&self, change: &ChangeRecord) {
        self.appended(self.writer.append(|out| encode_change(change, out)));
    }

    /// Appends `flush`, remembering its position for this thread.
    pub fn append_flush(&self, flush: &FlushRecord) {
        self.appended(self.writer.append(|out| encode_flush(flush, out)));
    }

    fn appended(&self, result: Result<LogPosition, super::PersistenceError>) {
        LAST_POSITION.set(result.unwrap_or(u64::MAX));
    }
}

impl ChangeSink for LogSink {
    fn record(&self, change: ChangeRecord) {
        self.append_change(&change);
    }

    fn flushed(&self, flush: FlushRecord) {
        self.append_flush(&flush);
    }
}
