//! Small batches over long-lived Pipeline streams shared by every caller.
//!
//! Each GetBatch call opens an HTTP/2 stream: request headers, a handler on
//! the server, response headers, data and trailers, and the bookkeeping of
//! both ends for all of it. For a batch of a few dozen keys that fixed cost
//! is most of the work, and it is what keeps a batch of 16 keys behind a
//! Redis pipeline of 16 GETs. [`SharedStreams`] keeps one `Pipeline` stream
//! open per connection and sends each small batch as one command on it:
//! one message each way, as Redis pipelining does on its connection.
//!
//! The server runs a pipeline's commands in order and answers each as it
//! runs, so replies come back in the order the commands went out. The
//! stream's writer numbers each command as it sends it and queues its
//! caller; the reader hands each reply to the caller at the front of the
//! queue, after checking that the ids match.
//!
//! When a stream fails, every caller waiting on it gets the failure (the
//! client's retry policy decides whether to try again: only idempotent
//! commands ride these streams), and the next command opens a new stream.
//! A caller that gives up (its deadline passed) simply drops its place; the
//! reply is discarded when it comes. The streams close when the last clone
//! of the client is dropped.
//!
//! Tracing sees the stream, not each batch on it: the server's span for a
//! shared stream is the `Pipeline` call that carries it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, ready};

use shoal_proto::v1 as pb;
use shoal_proto::v1::batch_service_client::BatchServiceClient;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;

use crate::error::{Error, Result};
use crate::telemetry::TracedChannel;

use pb::pipeline_request::Command;
use pb::pipeline_response::Result as Reply;

/// Commands queued for one stream before senders wait: enough to keep the
/// stream busy, small enough that a stalled stream holds little.
const QUEUED_COMMANDS: usize = 256;

/// A caller waiting for its reply.
type Waiter = oneshot::Sender<Result<Reply>>;

/// One command on its way to a stream.
#[derive(Debug)]
struct Queued {
    command: Command,
    reply: Waiter,
}

/// The stream a slot currently feeds, and which opening of the slot it is.
#[derive(Debug, Default)]
struct Slot {
    generation: u64,
    sender: Option<mpsc::Sender<Queued>>,
}

/// Long-lived Pipeline streams, one per connection of the client, used in
/// turn. Cloning shares them.
#[derive(Debug, Clone)]
pub(crate) struct SharedStreams {
    /// A client bound to each connection, so each stream has one of its own.
    connections: Arc<[BatchServiceClient<TracedChannel>]>,
    slots: Arc<[Mutex<Slot>]>,
    next: Arc<AtomicUsize>,
}

impl SharedStreams {
    /// One stream per client of `connections`, opened when first needed.
    pub(crate) fn new(connections: Vec<BatchServiceClient<TracedChannel>>) -> Self {
        Self {
            slots: connections.iter().map(|_| Mutex::default()).collect(),
            connections: connections.into(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Runs `command` on one of the streams and returns its reply, which
    /// may be a per-command error ([`Reply::Error`]).
    ///
    /// # Errors
    ///
    /// The failure of the stream the command rode, or UNAVAILABLE when the
    /// stream ended before answering it.
    pub(crate) async fn call(&self, command: Command) -> Result<Reply> {
        let (reply, answer) = oneshot::channel();
        let sender = self.sender();
        sender
            .send(Queued { command, reply })
            .await
            .map_err(|_| stream_ended())?;
        answer.await.map_err(|_| stream_ended())?
    }

    /// The sender of the next slot's stream, opening one if it has none or
    /// its stream has ended.
    fn sender(&self) -> mpsc::Sender<Queued> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = lock(&self.slots[index]);
        if let Some(sender) = slot.sender.as_ref().filter(|sender| !sender.is_closed()) {
            return sender.clone();
        }
        let (sender, receiver) = mpsc::channel(QUEUED_COMMANDS);
        slot.generation += 1;
        slot.sender = Some(sender.clone());
        let owner = SlotRef {
            slots: Arc::downgrade(&self.slots),
            index,
            generation: slot.generation,
        };
        tokio::spawn(drive(self.connections[index].clone(), receiver, owner));
        sender
    }
}

/// Where a stream's driver clears its slot when the stream ends, without
/// keeping the slots (and so the stream) alive itself.
#[derive(Debug)]
struct SlotRef {
    slots: Weak<[Mutex<Slot>]>,
    index: usize,
    generation: u64,
}

impl SlotRef {
    /// Forgets this stream's sender, unless the slot has moved on to a
    /// newer stream, so that the next command opens a new one.
    fn release(&self) {
        if let Some(slots) = self.slots.upgrade() {
            let mut slot = lock(&slots[self.index]);
            if slot.generation == self.generation {
                slot.sender = None;
            }
        }
    }
}

/// What a stream's writer, reader and driver share: the commands not yet
/// sent, and the callers of those sent, in order.
#[derive(Debug)]
struct StreamState {
    queue: Mutex<mpsc::Receiver<Queued>>,
    waiting: Mutex<VecDeque<(u64, Waiter)>>,
}

impl StreamState {
    /// Fails every caller, sent or queued, with `failure`, and refuses
    /// further commands.
    fn fail_all(&self, failure: &Error) {
        let mut queue = lock(&self.queue);
        queue.close();
        while let Ok(queued) = queue.try_recv() {
            let _ = queued.reply.send(Err(failure.duplicate()));
        }
        drop(queue);
        for (_, waiter) in lock(&self.waiting).drain(..) {
            let _ = waiter.send(Err(failure.duplicate()));
        }
    }
}

/// The request side of a stream: queued commands, numbered as they go out,
/// each caller queued for its reply before its command leaves.
#[derive(Debug)]
struct Commands {
    state: Arc<StreamState>,
    last_id: u64,
}

impl Stream for Commands {
    type Item = pb::PipelineRequest;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = lock(&self.state.queue).poll_recv(cx);
        let Some(queued) = ready!(polled) else {
            return Poll::Ready(None);
        };
        self.last_id += 1;
        let id = self.last_id;
        lock(&self.state.waiting).push_back((id, queued.reply));
        Poll::Ready(Some(pb::PipelineRequest {
            id,
            command: Some(queued.command),
        }))
    }
}

/// Opens one stream and runs it until it fails or every sender is gone.
async fn drive(
    mut batch: BatchServiceClient<TracedChannel>,
    receiver: mpsc::Receiver<Queued>,
    owner: SlotRef,
) {
    let state = Arc::new(StreamState {
        queue: Mutex::new(receiver),
        waiting: Mutex::default(),
    });
    let commands = Commands {
        state: Arc::clone(&state),
        last_id: 0,
    };
    let failure = match batch.pipeline(commands).await {
        Ok(replies) => read_replies(replies.into_inner(), &state.waiting).await,
        Err(status) => Error::from(status),
    };
    owner.release();
    state.fail_all(&failure);
}

/// Hands each reply to the caller it answers, until the stream ends;
/// returns what the callers still waiting should be told.
async fn read_replies(
    mut replies: tonic::Streaming<pb::PipelineResponse>,
    waiting: &Mutex<VecDeque<(u64, Waiter)>>,
) -> Error {
    loop {
        let reply = match replies.message().await {
            Ok(Some(reply)) => reply,
            Ok(None) => return stream_ended(),
            Err(status) => return Error::from(status),
        };
        let Some((id, waiter)) = lock(waiting).pop_front() else {
            return protocol_error(format!("reply {} to no command", reply.id));
        };
        if reply.id != id {
            let error = protocol_error(format!("reply {} to command {id}", reply.id));
            let _ = waiter.send(Err(error.duplicate()));
            return error;
        }
        let result = reply
            .result
            .ok_or_else(|| protocol_error(format!("reply {id} has no result")));
        // The caller may have given up; its reply is then dropped.
        let _ = waiter.send(result);
    }
}

fn stream_ended() -> Error {
    Error::Unavailable {
        message: "the shared pipeline stream ended before answering".to_owned(),
    }
}

fn protocol_error(message: String) -> Error {
    Error::InvalidResponse {
        message: format!("shared pipeline stream: {message}"),
    }
}

/// Locks `mutex`; its data stays consistent even if a holder panicked (each
/// critical section is a single push, pop or assignment).
fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
