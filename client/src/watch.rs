//! [`Client::watch`]: the live feed of a namespace's changes.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use shoal_proto::v1 as pb;
use tokio_stream::Stream;

use crate::batch::invalid_response;
use crate::call::{to_bytes, within};
use crate::client::Client;
use crate::error::Result;

/// What to follow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOptions {
    /// Only keys with one of these prefixes; none means every key.
    pub prefixes: Vec<Bytes>,
    /// Heartbeat interval when the feed is quiet; `None` for the server's
    /// default (10 s).
    pub heartbeat: Option<Duration>,
}

impl WatchOptions {
    /// Every key of the namespace.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only keys starting with `prefix` (call again to add more).
    #[must_use]
    pub fn prefix(mut self, prefix: impl AsRef<[u8]>) -> Self {
        self.prefixes.push(to_bytes(prefix));
        self
    }

    /// Heartbeats after `interval` of silence.
    #[must_use]
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = Some(interval);
        self
    }
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeKind {
    /// A string value was written.
    Set,
    /// A hash, list or set changed.
    Update,
    /// Only the expiry changed.
    Expiry,
    /// Deleted by a command.
    Delete,
    /// Expired.
    Expire,
    /// Evicted to stay within the server's limits.
    Evict,
}

/// One event of a [`WatchStream`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchEvent {
    /// A key changed.
    Changed {
        /// What happened.
        kind: ChangeKind,
        /// The key.
        key: Bytes,
        /// The key's version after the change (for removals, the sequence
        /// number the removal took).
        version: u64,
    },
    /// The namespace was flushed: every key is gone.
    Flushed {
        /// Keys removed.
        removed: u64,
    },
    /// The feed is alive and nothing changed.
    Heartbeat,
    /// This watcher fell behind and `missed` events were dropped: anything
    /// derived from earlier events must be treated as stale.
    Resync {
        /// Events dropped.
        missed: u64,
    },
}

/// The events of one Watch call. Ends with an error when the connection
/// breaks or the server shuts down; watch again to continue (treating what
/// was known as stale).
pub struct WatchStream {
    inner: tonic::Streaming<pb::WatchEvent>,
    last_sequence: u64,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream")
            .field("last_sequence", &self.last_sequence)
            .finish_non_exhaustive()
    }
}

impl Stream for WatchStream {
    type Item = Result<WatchEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let message = match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(status))) => return Poll::Ready(Some(Err(status.into()))),
                Poll::Ready(Some(Ok(message))) => message,
            };
            if message.sequence != self.last_sequence + 1 {
                return Poll::Ready(Some(Err(invalid_response(format!(
                    "watch event {} followed {}",
                    message.sequence, self.last_sequence
                )))));
            }
            self.last_sequence = message.sequence;
            match convert_event(message.event) {
                Ok(Some(event)) => return Poll::Ready(Some(Ok(event))),
                Ok(None) => {}
                Err(error) => return Poll::Ready(Some(Err(error))),
            }
        }
    }
}

fn convert_event(event: Option<pb::watch_event::Event>) -> Result<Option<WatchEvent>> {
    use pb::watch_event::Event;
    Ok(Some(match event {
        Some(Event::Key(key)) => WatchEvent::Changed {
            kind: change_kind(key.kind())?,
            key: key.key,
            version: key.version,
        },
        Some(Event::Flushed(flushed)) => WatchEvent::Flushed {
            removed: flushed.removed,
        },
        Some(Event::Heartbeat(_)) => WatchEvent::Heartbeat,
        Some(Event::Resync(resync)) => WatchEvent::Resync {
            missed: resync.missed,
        },
        // A repeated "subscribed" carries nothing new; an event kind from a
        // newer server is skipped.
        Some(Event::Subscribed(_)) | None => return Ok(None),
    }))
}

fn change_kind(kind: pb::KeyEventKind) -> Result<ChangeKind> {
    Ok(match kind {
        pb::KeyEventKind::Set => ChangeKind::Set,
        pb::KeyEventKind::Update => ChangeKind::Update,
        pb::KeyEventKind::Expiry => ChangeKind::Expiry,
        pb::KeyEventKind::Delete => ChangeKind::Delete,
        pb::KeyEventKind::Expire => ChangeKind::Expire,
        pb::KeyEventKind::Evict => ChangeKind::Evict,
        pb::KeyEventKind::Unspecified => {
            return Err(invalid_response("a key event without a kind"));
        }
    })
}

impl Client {
    /// Follows the changes of this handle's namespace. Returns once the
    /// subscription is in place: every change acknowledged after that is
    /// delivered, in the order each key changed.
    ///
    /// ```no_run
    /// # async fn demo(client: shoal_client::Client) -> shoal_client::Result<()> {
    /// use shoal_client::{WatchEvent, WatchOptions};
    /// use tokio_stream::StreamExt;
    ///
    /// let mut events = client.watch(WatchOptions::all().prefix("user:")).await?;
    /// while let Some(event) = events.next().await {
    ///     if let WatchEvent::Changed { kind, key, .. } = event? {
    ///         println!("{kind:?} {}", String::from_utf8_lossy(&key));
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a bad prefix or heartbeat,
    /// [`Error::ResourceExhausted`] when the server has as many watchers as
    /// it allows, transport errors and the handle's deadline for the
    /// subscription itself (the stream has no deadline).
    pub async fn watch(&self, options: WatchOptions) -> Result<WatchStream> {
        let heartbeat_interval_ms = match options.heartbeat {
            None => 0,
            Some(interval) => u32::try_from(interval.as_millis()).unwrap_or(u32::MAX),
        };
        let request = pb::WatchRequest {
            namespace: self.ns(),
            key_prefixes: options.prefixes,
            heartbeat_interval_ms,
        };
        let mut watch = self.node.watch.clone();
        within(self.timeout, async move {
            let mut inner = watch.watch(request).await?.into_inner();
            let first = inner
                .message()
                .await?
                .ok_or_else(|| invalid_response("the watch ended before it began"))?;
            match (first.sequence, first.event) {
                (1, Some(pb::watch_event::Event::Subscribed(_))) => Ok(WatchStream {
                    inner,
                    last_sequence: 1,
                }),
                (sequence, event) => Err(invalid_response(format!(
                    "a watch began with event {sequence}: {event:?}"
                ))),
            }
        })
        .await
    }
}
