//! A Watch of a whole cluster: one subscription on every ready member,
//! merged into one stream.
//!
//! A near cache fed by Watch must hear of every change to every key it
//! holds, and in a cluster those keys live on every member; a watch of the
//! member called alone would leave it serving stale values. So a member
//! called without the forwarded mark subscribes on each ready member (its
//! own feed, and the others' with the mark) and merges their events:
//!
//! - `Subscribed` comes once, when every member's subscription is in
//!   place, so that a caller that waits for it misses no change after it.
//! - Key events, flushes and resyncs pass through in the order they
//!   arrive, renumbered in one sequence. Keys have one owner, so the
//!   events of one key come from one member, in its order.
//! - Heartbeats are this member's; the others' are dropped.
//! - When a member's stream ends or fails, or the set of ready members
//!   changes (a member that joins would not be watched), the merged stream
//!   ends with UNAVAILABLE saying so: the caller subscribes again, and a
//!   near cache clears itself meanwhile, as after any broken feed.

use std::sync::Arc;

use futures_util::StreamExt as _;
use futures_util::stream::{BoxStream, select_all};
use shoal_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use super::{ServiceState, method};

/// Events buffered ahead of a slow watcher before the merge waits.
const EVENTS_IN_FLIGHT: usize = 256;

/// One member's events, tagged with whether they are this member's.
type MemberEvents = BoxStream<'static, (bool, Arc<str>, Option<Result<pb::WatchEvent, Status>>)>;

/// The merged watch of every ready member, or `None` to watch this member
/// alone (a single server, or a call forwarded here). `local_watch` starts
/// this member's subscription.
pub(crate) async fn watch<F>(
    state: &ServiceState,
    metadata: &MetadataMap,
    request: pb::WatchRequest,
    local_watch: F,
) -> Result<Option<ReceiverStream<Result<pb::WatchEvent, Status>>>, Status>
where
    F: FnOnce(pb::WatchRequest) -> Result<ReceiverStream<Result<pb::WatchEvent, Status>>, Status>,
{
    let Some((cluster, view)) = state.routing(metadata) else {
        return Ok(None);
    };
    let travelling = state.travelling_metadata(metadata);
    let mut streams: Vec<MemberEvents> = Vec::new();
    // This member's first, so that bad input fails the call before any
    // other member is asked.
    let local = local_watch(request.clone())?;
    streams.push(tag(true, Arc::from(view.local_id()), local.boxed()));
    for member in view.members() {
        if !member.ready || view.is_local(member) {
            continue;
        }
        let owner = super::forward::owner(cluster, &view, member)?;
        let mut call = Request::new(request.clone());
        *call.metadata_mut() = travelling.clone();
        let events = owner
            .server_streaming::<_, pb::WatchEvent>(method::WATCH, call)
            .await?
            .into_inner();
        streams.push(tag(false, Arc::from(member.id.as_str()), events));
    }
    let members = streams.len();
    let watched = ready_ids(&view);
    let mut changes = cluster.topology().subscribe();
    let (sender, receiver) = mpsc::channel(EVENTS_IN_FLIGHT);
    tokio::spawn(async move {
        let mut merged = select_all(streams);
        let mut subscribed = 0;
        let mut sequence = 0u64;
        loop {
            let (local, member, item) = tokio::select! {
                next = merged.next() => match next {
                    Some(next) => next,
                    None => return,
                },
                changed = changes.changed() => {
                    let now = changes.borrow_and_update().clone();
                    if changed.is_err() || ready_ids(&now) != watched {
                        let _ = sender
                            .send(Err(Status::unavailable(
                                "the cluster's members changed; subscribe again to watch them all",
                            )))
                            .await;
                        return;
                    }
                    continue;
                }
            };
            let event = match item {
                Some(Ok(event)) => event,
                Some(Err(status)) => {
                    let _ = sender
                        .send(Err(Status::unavailable(format!(
                            "the watch of cluster member {member} broke: {}; subscribe again",
                            status.message()
                        ))))
                        .await;
                    return;
                }
                None => {
                    let _ = sender
                        .send(Err(Status::unavailable(format!(
                            "the watch of cluster member {member} ended; subscribe again"
                        ))))
                        .await;
                    return;
                }
            };
            let forward = match &event.event {
                Some(pb::watch_event::Event::Subscribed(_)) => {
                    subscribed += 1;
                    subscribed == members
                }
                Some(pb::watch_event::Event::Heartbeat(_)) => local && subscribed == members,
                _ => true,
            };
            if !forward {
                continue;
            }
            sequence += 1;
            let event = pb::WatchEvent {
                sequence,
                event: event.event,
            };
            if sender.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    Ok(Some(ReceiverStream::new(receiver)))
}

/// The ids of the ready members, sorted.
fn ready_ids(view: &crate::cluster::View) -> Vec<String> {
    let mut ids: Vec<String> = view
        .members()
        .iter()
        .filter(|member| member.ready)
        .map(|member| member.id.clone())
        .collect();
    ids.sort();
    ids
}

/// `events` tagged with their member, ending with one `None` so that the
/// merge hears of the end.
fn tag(
    local: bool,
    member: Arc<str>,
    events: impl futures_util::Stream<Item = Result<pb::WatchEvent, Status>> + Send + 'static,
) -> MemberEvents {
    let end_member = Arc::clone(&member);
    events
        .map(move |event| (local, Arc::clone(&member), Some(event)))
        .chain(futures_util::stream::once(async move {
            (local, end_member, None)
        }))
        .boxed()
}
