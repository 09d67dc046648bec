//! Batches whose keys several cluster members own: split by owner, each
//! part run where its keys live (this member's part here, the others
//! forwarded once), and the replies merged back in request order.
//!
//! A GetBatch or DeleteBatch goes a window of positions at a time, so that
//! a split batch holds at most one window of replies, as an unsplit one
//! holds one chunk. A part that cannot reach its owner answers each of its
//! items with the owner's UNAVAILABLE status: the other items go on.

use std::future::Future;

use bytes::Bytes;
use futures_util::future::join_all;
use shoal_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use super::batch::BatchApi;
use super::chunks::{MAX_CHUNK_BYTES, ResponseStream, chunk_size};
use super::forward::Group;
use super::status::item_status;
use super::{ServiceState, method};
use crate::auth::Access;

/// Replies of a split batch buffered ahead of a slow reader.
const MESSAGES_IN_FLIGHT: usize = 2;

/// `message` as a request carrying `metadata`.
fn with_metadata<T>(metadata: &MetadataMap, message: T) -> Request<T> {
    let mut request = Request::new(message);
    *request.metadata_mut() = metadata.clone();
    request
}

/// The positions of `group` within `window`.
fn within(group: &Group, window: &std::ops::Range<usize>) -> std::ops::Range<usize> {
    let start = group.positions.partition_point(|&at| at < window.start);
    let end = group.positions.partition_point(|&at| at < window.end);
    start..end
}

/// Every item of a part's reply stream, or the status that ended it.
async fn items_of<R, I>(
    stream: impl Future<Output = Result<ResponseStream<R>, Status>>,
    items: impl Fn(R) -> Vec<I>,
) -> Result<Vec<I>, Status> {
    let mut stream = stream.await?;
    let mut all = Vec::new();
    while let Some(message) = stream.next().await {
        all.extend(items(message?));
    }
    Ok(all)
}

/// A batch read or removal that answers item by item, each item with its
/// position: what [`split_windows`] needs to know of GetBatch and
/// DeleteBatch.
pub(super) trait WindowedBatch: prost::Message + Sized + Send + 'static {
    /// A reply message.
    type Reply: prost::Message + Default + Send + 'static;
    /// One item of a reply.
    type Item: Send + 'static;
    /// The method a part is forwarded to.
    const METHOD: &'static str;
    /// The batch's keys.
    fn keys(&self) -> &[Bytes];
    /// Items per reply message, as the caller asked.
    fn chunk_size(&self) -> u32;
    /// The same request for `keys` only, answered in one stream of
    /// default-sized chunks.
    fn part(&self, keys: Vec<Bytes>) -> Self;
    /// Runs a part on this member.
    fn run_here(
        api: &BatchApi,
        access: &Access,
        part: Self,
    ) -> Result<ResponseStream<Self::Reply>, Status>;
    /// The items of a reply.
    fn items(reply: Self::Reply) -> Vec<Self::Item>;
    /// A reply of `items`.
    fn reply(items: Vec<Self::Item>) -> Self::Reply;
    /// The item's position.
    fn index(item: &Self::Item) -> u32;
    /// Sets the item's position.
    fn set_index(item: &mut Self::Item, index: u32);
    /// The item that answers position `index` with `status`.
    fn error(index: u32, status: tonic_types::Status) -> Self::Item;
    /// Bytes of value the item carries.
    fn value_bytes(item: &Self::Item) -> usize;
}

impl WindowedBatch for pb::GetBatchRequest {
    type Reply = pb::GetBatchResponse;
    type Item = pb::GetBatchItem;
    const METHOD: &'static str = method::GET_BATCH;
    fn keys(&self) -> &[Bytes] {
        &self.keys
    }
    fn chunk_size(&self) -> u32 {
        self.chunk_size
    }
    fn part(&self, keys: Vec<Bytes>) -> Self {
        Self {
            namespace: self.namespace.clone(),
            keys,
            include_meta: self.include_meta,
            chunk_size: 0,
        }
    }
    fn run_here(
        api: &BatchApi,
        access: &Access,
        part: Self,
    ) -> Result<ResponseStream<Self::Reply>, Status> {
        api.read_batch(access, part)
    }
    fn items(reply: Self::Reply) -> Vec<Self::Item> {
        reply.items
    }
    fn reply(items: Vec<Self::Item>) -> Self::Reply {
        pb::GetBatchResponse { items }
    }
    fn index(item: &Self::Item) -> u32 {
        item.index
    }
    fn set_index(item: &mut Self::Item, index: u32) {
        item.index = index;
    }
    fn error(index: u32, status: tonic_types::Status) -> Self::Item {
        pb::GetBatchItem {
            index,
            result: Some(pb::get_batch_item::Result::Error(status)),
            meta: None,
        }
    }
    fn value_bytes(item: &Self::Item) -> usize {
        match &item.result {
            Some(pb::get_batch_item::Result::Value(value)) => value.len(),
            _ => 0,
        }
    }
}

impl WindowedBatch for pb::DeleteBatchRequest {
    type Reply = pb::DeleteBatchResponse;
    type Item = pb::DeleteBatchItem;
    const METHOD: &'static str = method::DELETE_BATCH;
    fn keys(&self) -> &[Bytes] {
        &self.keys
    }
    fn chunk_size(&self) -> u32 {
        self.chunk_size
    }
    fn part(&self, keys: Vec<Bytes>) -> Self {
        Self {
            namespace: self.namespace.clone(),
            keys,
            chunk_size: 0,
        }
    }
    fn run_here(
        api: &BatchApi,
        access: &Access,
        part: Self,
    ) -> Result<ResponseStream<Self::Reply>, Status> {
        api.remove_batch(access, part)
    }
    fn items(reply: Self::Reply) -> Vec<Self::Item> {
        reply.items
    }
    fn reply(items: Vec<Self::Item>) -> Self::Reply {
        pb::DeleteBatchResponse { items }
    }
    fn index(item: &Self::Item) -> u32 {
        item.index
    }
    fn set_index(item: &mut Self::Item, index: u32) {
        item.index = index;
    }
    fn error(index: u32, status: tonic_types::Status) -> Self::Item {
        pb::DeleteBatchItem {
            index,
            result: Some(pb::delete_batch_item::Result::Error(status)),
        }
    }
    fn value_bytes(_: &Self::Item) -> usize {
        0
    }
}

/// Sends `items` (sorted by position) as messages of at most `chunk`
/// items and about [`MAX_CHUNK_BYTES`] of values; false once the reader
/// has gone.
async fn send_chunked<B: WindowedBatch>(
    sender: &mpsc::Sender<Result<B::Reply, Status>>,
    items: Vec<B::Item>,
    chunk: usize,
) -> bool {
    let mut pending = Vec::new();
    let mut bytes = 0;
    let total = items.len();
    for (sent, item) in items.into_iter().enumerate() {
        bytes += B::value_bytes(&item);
        pending.push(item);
        if pending.len() >= chunk || bytes >= MAX_CHUNK_BYTES || sent + 1 == total {
            bytes = 0;
            if sender
                .send(Ok(B::reply(std::mem::take(&mut pending))))
                .await
                .is_err()
            {
                return false;
            }
        }
    }
    true
}

fn position_u32(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(u32::MAX)
}

/// The items of one window's part: run here or forwarded, renumbered to
/// their positions in the whole batch.
async fn window_part<B: WindowedBatch>(
    api: &BatchApi,
    access: &Access,
    metadata: &MetadataMap,
    group: &Group,
    positions: &[usize],
    part: B,
) -> Vec<B::Item> {
    if positions.is_empty() {
        return Vec::new();
    }
    let stream = async {
        match group.owner.clone() {
            None => B::run_here(api, access, part),
            Some(owner) => owner
                .server_streaming(B::METHOD, with_metadata(metadata, part))
                .await
                .map(tonic::Response::into_inner),
        }
    };
    match items_of(stream, B::items).await {
        Ok(mut items) => {
            for item in &mut items {
                let at = positions.get(B::index(item) as usize).copied();
                B::set_index(item, position_u32(at.unwrap_or(usize::MAX)));
            }
            items
        }
        Err(status) => {
            let status = failed(group, status);
            positions
                .iter()
                .map(|&at| B::error(position_u32(at), status.clone()))
                .collect()
        }
    }
}

/// A GetBatch or DeleteBatch split by owner, a window of positions at a
/// time.
pub(super) fn split_windows<B: WindowedBatch>(
    api: BatchApi,
    access: Access,
    metadata: MetadataMap,
    request: B,
    groups: Vec<Group>,
) -> Result<ResponseStream<B::Reply>, Status> {
    let chunk = chunk_size(request.chunk_size())?;
    let (sender, receiver) = mpsc::channel(MESSAGES_IN_FLIGHT);
    tokio::spawn(async move {
        let count = request.keys().len();
        for start in (0..count).step_by(chunk) {
            let window = start..count.min(start + chunk);
            let parts = groups.iter().map(|group| {
                let positions = &group.positions[within(group, &window)];
                let keys = positions
                    .iter()
                    .map(|&at| request.keys()[at].clone())
                    .collect();
                window_part(
                    &api,
                    &access,
                    &metadata,
                    group,
                    positions,
                    request.part(keys),
                )
            });
            let mut items: Vec<B::Item> = join_all(parts).await.into_iter().flatten().collect();
            items.sort_by_key(B::index);
            if !send_chunked::<B>(&sender, items, chunk).await {
                return;
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(receiver)))
}

/// One SetBatch chunk split by owner, its results numbered from
/// `first` in the chunk's item order.
pub(super) async fn set_chunk(
    api: &BatchApi,
    access: &Access,
    metadata: &MetadataMap,
    chunk: pb::SetBatchRequest,
    groups: Vec<Group>,
    first: u64,
) -> Result<pb::SetBatchResponse, Status> {
    let mut items: Vec<Option<pb::SetBatchItem>> = chunk.items.into_iter().map(Some).collect();
    let parts = groups.into_iter().map(|group| {
        let part = pb::SetBatchRequest {
            namespace: chunk.namespace.clone(),
            items: group
                .positions
                .iter()
                .filter_map(|&at| items[at].take())
                .collect(),
        };
        async move {
            let results = match &group.owner {
                None => {
                    // The engine writes on this thread; the acknowledgement
                    // is taken right after, before any other await.
                    let reply = api.set_chunk(access, part, &mut 0);
                    let logged = api.state.logged();
                    match logged.await {
                        Ok(()) => reply.map(|reply| reply.results),
                        Err(status) => Err(status),
                    }
                }
                Some(owner) => {
                    let stream = owner
                        .clone()
                        .one_message_stream(method::SET_BATCH, with_metadata(metadata, part))
                        .await
                        .map(tonic::Response::into_inner);
                    items_of(async { stream }, |reply: pb::SetBatchResponse| {
                        reply.results
                    })
                    .await
                }
            };
            (group, results)
        }
    });
    let mut results = Vec::new();
    for (group, part) in join_all(parts).await {
        match part {
            Ok(part) => results.extend(part.into_iter().map(|mut result| {
                let at = group.positions.get(result.index as usize).copied();
                result.index = first + at.unwrap_or(usize::MAX) as u64;
                result
            })),
            Err(status) => {
                let status = failed(&group, status);
                results.extend(group.positions.iter().map(|&at| pb::SetBatchResult {
                    index: first + at as u64,
                    result: Some(pb::set_batch_result::Result::Error(status.clone())),
                }));
            }
        }
    }
    results.sort_by_key(|result| result.index);
    Ok(pb::SetBatchResponse { results })
}

/// A Delete of keys several members own: each owner removes its own.
pub(super) async fn delete(
    state: &ServiceState,
    metadata: &MetadataMap,
    request: pb::DeleteRequest,
    groups: Vec<Group>,
    local: impl FnOnce(pb::DeleteRequest) -> Result<pb::DeleteResponse, Status>,
) -> Result<pb::DeleteResponse, Status> {
    let part = |group: &Group| pb::DeleteRequest {
        namespace: request.namespace.clone(),
        keys: keys_at(&request.keys, &group.positions),
    };
    let mut local_part = None;
    let mut remote = Vec::new();
    for group in &groups {
        match &group.owner {
            None => local_part = Some(part(group)),
            Some(owner) => remote.push(owner.clone().unary::<_, pb::DeleteResponse>(
                method::DELETE,
                with_metadata(metadata, part(group)),
            )),
        }
    }
    let mut deleted = match local_part {
        Some(part) => local(part)?.deleted,
        None => 0,
    };
    // Taken on the thread that deleted, before the first await.
    let logged = state.logged();
    for reply in join_all(remote).await {
        deleted += reply?.into_inner().deleted;
    }
    logged.await?;
    Ok(pb::DeleteResponse { deleted })
}

/// A Describe of keys several members own: each owner describes its own,
/// and the descriptions come back in request order.
pub(super) async fn describe(
    metadata: &MetadataMap,
    request: pb::DescribeRequest,
    groups: Vec<Group>,
    local: impl FnOnce(pb::DescribeRequest) -> Result<pb::DescribeResponse, Status>,
) -> Result<pb::DescribeResponse, Status> {
    let part = |group: &Group| pb::DescribeRequest {
        namespace: request.namespace.clone(),
        keys: keys_at(&request.keys, &group.positions),
    };
    let mut described: Vec<Option<pb::KeyDescription>> = vec![None; request.keys.len()];
    if let Some(group) = groups.iter().find(|group| group.owner.is_none()) {
        let reply = local(part(group))?;
        for (&at, key) in group.positions.iter().zip(reply.keys) {
            described[at] = Some(key);
        }
    }
    let remote = groups.iter().filter_map(|group| {
        let owner = group.owner.clone()?;
        let part = part(group);
        Some(async move {
            let reply = owner
                .unary::<_, pb::DescribeResponse>(method::DESCRIBE, with_metadata(metadata, part))
                .await;
            (group, reply)
        })
    });
    for (group, reply) in join_all(remote).await {
        for (&at, key) in group.positions.iter().zip(reply?.into_inner().keys) {
            described[at] = Some(key);
        }
    }
    let keys = described
        .into_iter()
        .zip(&request.keys)
        .map(|(described, key)| {
            described.unwrap_or_else(|| pb::KeyDescription {
                key: key.clone(),
                exists: false,
                meta: None,
            })
        })
        .collect();
    Ok(pb::DescribeResponse { keys })
}

fn keys_at(keys: &[Bytes], positions: &[usize]) -> Vec<Bytes> {
    positions.iter().map(|&at| keys[at].clone()).collect()
}

/// `status` as the item error of a part that failed, naming its owner.
fn failed(group: &Group, status: Status) -> tonic_types::Status {
    let status = match &group.owner {
        Some(owner) => owner.named(status),
        None => status,
    };
    item_status(&status)
}
