//! `shoal.v1.WatchService`: a live feed of a namespace's changes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shoal_proto::v1 as pb;
use shoal_proto::v1::watch_service_server::WatchService;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::status::{engine_status, invalid};
use super::{ServiceState, reply};
use crate::change_feed::{FeedError, FeedEvent, KeyChange, Next, Subscription};
use crate::engine::resolve_namespace_name;
use crate::observe::telemetry::record_call;

/// Most prefixes one Watch may name.
pub const MAX_WATCH_PREFIXES: usize = 64;
/// Heartbeat interval when the request does not say.
pub const DEFAULT_HEARTBEAT_MS: u32 = 10_000;
/// Shortest and longest heartbeat intervals accepted.
const HEARTBEAT_RANGE_MS: std::ops::RangeInclusive<u32> = 100..=3_600_000;
/// Events queued for the network per watcher. Small on purpose: a watcher
/// that does not read falls behind in the shared ring, and is resynced,
/// rather than growing a queue of its own.
const EVENTS_IN_FLIGHT: usize = 32;

/// Implementation of `WatchService` over the server's change feed.
#[derive(Debug, Clone)]
pub struct WatchApi {
    state: Arc<ServiceState>,
}

/// What one watcher asked for.
struct WatchPlan {
    prefixes: Vec<Bytes>,
    heartbeat: Duration,
}

impl WatchPlan {
    fn wants(&self, key: &[u8]) -> bool {
        self.prefixes.is_empty() || self.prefixes.iter().any(|prefix| key.starts_with(prefix))
    }
}

impl WatchApi {
    pub(crate) fn new(state: Arc<ServiceState>) -> Self {
        Self { state }
    }

    fn watch(
        &self,
        request: pb::WatchRequest,
    ) -> Result<ReceiverStream<Result<pb::WatchEvent, Status>>, Status> {
        let namespace = resolve_namespace_name(&request.namespace)
            .map_err(|error| engine_status(error, None))?
            .to_string();
        let plan = plan(&self.state, request)?;
        let subscription = self
            .state
            .feed
            .subscribe(&namespace)
            .map_err(|error| match error {
                FeedError::TooManyWatchers { .. } => Status::resource_exhausted(error.to_string()),
                FeedError::Closed => Status::unavailable(error.to_string()),
            })?;
        let (sender, receiver) = mpsc::channel(EVENTS_IN_FLIGHT);
        tokio::spawn(follow(Arc::clone(&self.state), subscription, plan, sender));
        Ok(ReceiverStream::new(receiver))
    }
}

/// Checks a request's prefixes and heartbeat interval.
fn plan(state: &ServiceState, request: pb::WatchRequest) -> Result<WatchPlan, Status> {
    if request.key_prefixes.len() > MAX_WATCH_PREFIXES {
        return Err(invalid(
            "key_prefixes",
            format!(
                "key_prefixes has {} items, over the limit of {MAX_WATCH_PREFIXES}",
                request.key_prefixes.len()
            ),
        ));
    }
    let max_key = state.engine.config().max_key_bytes;
    for (index, prefix) in request.key_prefixes.iter().enumerate() {
        if prefix.is_empty() || prefix.len() > max_key {
            return Err(invalid(
                &format!("key_prefixes[{index}]"),
                format!(
                    "is {} bytes, must be between 1 and {max_key} bytes",
                    prefix.len()
                ),
            ));
        }
    }
    let heartbeat_ms = match request.heartbeat_interval_ms {
        0 => DEFAULT_HEARTBEAT_MS,
        ms if HEARTBEAT_RANGE_MS.contains(&ms) => ms,
        ms => {
            return Err(invalid(
                "heartbeat_interval_ms",
                format!(
                    "heartbeat_interval_ms is {ms}, must be between {} and {}",
                    HEARTBEAT_RANGE_MS.start(),
                    HEARTBEAT_RANGE_MS.end()
                ),
            ));
        }
    };
    Ok(WatchPlan {
        prefixes: request.key_prefixes,
        heartbeat: Duration::from_millis(u64::from(heartbeat_ms)),
    })
}

/// Numbers the events of one stream.
struct Numbered {
    sequence: u64,
    sender: mpsc::Sender<Result<pb::WatchEvent, Status>>,
}

impl Numbered {
    /// Sends one event; false once the watcher is gone.
    async fn send(&mut self, event: pb::watch_event::Event) -> bool {
        self.sequence += 1;
        let message = pb::WatchEvent {
            sequence: self.sequence,
            event: Some(event),
        };
        self.sender.send(Ok(message)).await.is_ok()
    }
}

/// Forwards a subscription's events to one watcher until either side ends.
/// Dropping the subscription when this returns frees the watcher's place.
async fn follow(
    state: Arc<ServiceState>,
    mut subscription: Subscription,
    plan: WatchPlan,
    sender: mpsc::Sender<Result<pb::WatchEvent, Status>>,
) {
    use pb::watch_event::Event;
    let mut out = Numbered {
        sequence: 0,
        sender,
    };
    if !out.send(Event::Subscribed(pb::Subscribed {})).await {
        return;
    }
    let mut quiet_until = Instant::now() + plan.heartbeat;
    loop {
        let next = tokio::select! {
            () = out.sender.closed() => return,
            () = tokio::time::sleep_until(quiet_until) => None,
            next = subscription.next() => Some(next),
        };
        let event = match next {
            None => Event::Heartbeat(pb::Heartbeat {}),
            Some(Next::Event(FeedEvent::Key {
                change,
                key,
                version,
            })) => {
                if !plan.wants(&key) {
                    continue;
                }
                Event::Key(pb::KeyEvent {
                    kind: key_event_kind(change) as i32,
                    key,
                    version,
                })
            }
            Some(Next::Event(FeedEvent::Flushed { removed })) => {
                Event::Flushed(pb::Flushed { removed })
            }
            Some(Next::Missed(missed)) => {
                state.feed.count_resync();
                Event::Resync(pb::Resync { missed })
            }
            Some(Next::Closed) => {
                let _ = out
                    .sender
                    .send(Err(Status::unavailable("the server is shutting down")))
                    .await;
                return;
            }
        };
        if !out.send(event).await {
            return;
        }
        quiet_until = Instant::now() + plan.heartbeat;
    }
}

fn key_event_kind(change: KeyChange) -> pb::KeyEventKind {
    match change {
        KeyChange::Set => pb::KeyEventKind::Set,
        KeyChange::Update => pb::KeyEventKind::Update,
        KeyChange::Expiry => pb::KeyEventKind::Expiry,
        KeyChange::Delete => pb::KeyEventKind::Delete,
        KeyChange::Expire => pb::KeyEventKind::Expire,
        KeyChange::Evict => pb::KeyEventKind::Evict,
    }
}

#[tonic::async_trait]
impl WatchService for WatchApi {
    type WatchStream = ReceiverStream<Result<pb::WatchEvent, Status>>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.state.authorize(&request)?;
        let metadata = request.metadata().clone();
        let request = request.into_inner();
        record_call(&request.namespace, request.key_prefixes.len());
        let merged = super::watch_merge::watch(&self.state, &metadata, request.clone(), |part| {
            WatchApi::watch(self, part)
        })
        .await?;
        match merged {
            Some(events) => Ok(Response::new(events)),
            None => reply(WatchApi::watch(self, request)),
        }
    }
}
