//! `shoal.v1.BatchService`: GetBatch, SetBatch and DeleteBatch. Pipeline
//! lives in [`super::pipeline`].
//!
//! Batches report an outcome per item: an item at fault gets its own
//! `google.rpc.Status` and the others go on. Replies are produced lazily,
//! chunk by chunk, as the client reads them, so a batch holds at most one
//! chunk of values in server memory whatever its size.

use std::sync::Arc;

use bytes::Bytes;
use shoal_proto::v1 as pb;
use shoal_proto::v1::batch_service_server::BatchService;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use super::chunks::{ResponseStream, chunk_size, stream_positions};
use super::pipeline::Pipeline;
use super::split;
use super::status::{engine_status, invalid, item_status};
use super::{Scoped, ServiceState, convert, reply};
use crate::auth::{Access, Role};
use crate::engine::{Namespace, SetOptions};
use crate::observe::telemetry::record_call;

/// Keys of a GetBatch looked up together: large enough that a window's
/// keys share each shard lock, small enough that a window's values are a
/// small part of a chunk.
const READ_WINDOW_KEYS: usize = 128;
/// SetBatch chunks applied ahead of a client that is slow to read outcomes.
const SET_CHUNKS_IN_FLIGHT: usize = 2;

/// Implementation of `BatchService` over the engine.
#[derive(Debug, Clone)]
pub struct BatchApi {
    pub(super) state: Arc<ServiceState>,
}

impl BatchApi {
    pub(crate) fn new(state: Arc<ServiceState>) -> Self {
        Self { state }
    }

    /// Checks that `field` names at most the server's batch limit.
    fn batch_size(&self, field: &str, count: usize) -> Result<(), Status> {
        let max = self.state.max_batch_items;
        if count > max {
            return Err(invalid(
                field,
                format!("{field} has {count} items, over the server's batch limit of {max}"),
            ));
        }
        Ok(())
    }

    /// The per-item status of a batch whose namespace `access` may not
    /// use with `role`, if so.
    fn denied(&self, access: &Access, namespace: &str, role: Role) -> Option<tonic_types::Status> {
        self.state
            .check(access, namespace, role)
            .err()
            .map(|status| item_status(&status))
    }

    /// The replies of a GetBatch or DeleteBatch, split by owner when other
    /// cluster members own some of its keys (see [`super::split`]); the
    /// caller's rights are checked first, so a denied batch is answered here
    /// item by item.
    pub(super) fn batch_routed<B: split::WindowedBatch + Scoped>(
        &self,
        access: &Access,
        metadata: &MetadataMap,
        request: B,
    ) -> Result<ResponseStream<B::Reply>, Status> {
        self.batch_size("keys", request.keys().len())?;
        if self.denied(access, request.namespace(), B::ROLE).is_none()
            && let Some(groups) = self.state.owners_of(metadata, request.keys())?
        {
            let metadata = self.state.travelling_metadata(metadata);
            return split::split_windows(self.clone(), access.clone(), metadata, request, groups);
        }
        B::run_here(self, access, request)
    }

    /// Applies one SetBatch chunk as [`BatchApi::set_chunk`] does, split
    /// by owner when other cluster members own some of its keys; the
    /// caller then waits for [`ServiceState::logged`] as after
    /// `set_chunk`.
    pub(super) async fn set_chunk_routed(
        &self,
        access: &Access,
        metadata: &MetadataMap,
        chunk: pb::SetBatchRequest,
        next_index: &mut u64,
    ) -> Result<pb::SetBatchResponse, Status> {
        if self.state.cluster.is_some()
            && chunk.items.len() <= self.state.max_batch_items
            && self.denied(access, &chunk.namespace, Role::Write).is_none()
        {
            let keys: Vec<Bytes> = chunk.items.iter().map(|item| item.key.clone()).collect();
            if let Some(groups) = self.state.owners_of(metadata, &keys)? {
                let first = *next_index;
                *next_index += keys.len() as u64;
                let metadata = self.state.travelling_metadata(metadata);
                return split::set_chunk(self, access, &metadata, chunk, groups, first).await;
            }
        }
        self.set_chunk(access, chunk, next_index)
    }

    /// The replies of a GetBatch, chunk by chunk.
    pub(super) fn read_batch(
        &self,
        access: &Access,
        request: pb::GetBatchRequest,
    ) -> Result<ResponseStream<pb::GetBatchResponse>, Status> {
        self.batch_size("keys", request.keys.len())?;
        let chunk = chunk_size(request.chunk_size)?;
        if let Some(denied) = self.denied(access, &request.namespace, Role::Read) {
            return Ok(stream_positions(
                0..request.keys.len(),
                chunk,
                move |at| {
                    let item = pb::GetBatchItem {
                        index: index_u32(at),
                        result: Some(pb::get_batch_item::Result::Error(denied.clone())),
                        meta: None,
                    };
                    Some((item, 0))
                },
                |items| pb::GetBatchResponse { items },
            ));
        }
        let namespace = self.state.readable(&request.namespace)?;
        let state = Arc::clone(&self.state);
        let keys = request.keys;
        let include_meta = request.include_meta;
        // Keys are looked up a window at a time, so that each shard's lock
        // is taken once per window rather than once per key; positions are
        // fetched in order, each once.
        let mut window = Vec::new().into_iter();
        Ok(stream_positions(
            0..keys.len(),
            chunk,
            move |at| {
                let item = match window.next() {
                    Some(item) => item,
                    None => {
                        let end = keys.len().min(at + READ_WINDOW_KEYS);
                        let read = &keys[at..end];
                        window = read_window(&state, namespace.as_deref(), read, at, include_meta)
                            .into_iter();
                        window.next()?
                    }
                };
                let size = match &item.result {
                    Some(pb::get_batch_item::Result::Value(value)) => value.len(),
                    _ => 0,
                };
                Some((item, size))
            },
            |items| pb::GetBatchResponse { items },
        ))
    }

    /// The replies of a DeleteBatch, chunk by chunk.
    pub(super) fn remove_batch(
        &self,
        access: &Access,
        request: pb::DeleteBatchRequest,
    ) -> Result<ResponseStream<pb::DeleteBatchResponse>, Status> {
        self.batch_size("keys", request.keys.len())?;
        let chunk = chunk_size(request.chunk_size)?;
        let denied = self.denied(access, &request.namespace, Role::Write);
        let namespace = match denied {
            Some(_) => None,
            None => self.state.readable(&request.namespace)?,
        };
        let state = Arc::clone(&self.state);
        let logging = Arc::clone(&self.state);
        let keys = request.keys;
        let replies = stream_positions(
            0..keys.len(),
            chunk,
            move |at| {
                let key = &keys[at];
                let checked = match &denied {
                    Some(denied) => Err(denied.clone()),
                    None => check_key(&state, key, at),
                };
                let result = match checked {
                    Err(status) => pb::delete_batch_item::Result::Error(status),
                    Ok(()) => match &namespace {
                        None => pb::delete_batch_item::Result::Existed(false),
                        Some(namespace) => match namespace.delete(std::slice::from_ref(key)) {
                            Ok(removed) => pb::delete_batch_item::Result::Existed(removed > 0),
                            Err(error) => pb::delete_batch_item::Result::Error(item_status(
                                &engine_status(error, Some(&format!("keys[{at}]"))),
                            )),
                        },
                    },
                };
                let item = pb::DeleteBatchItem {
                    index: index_u32(at),
                    result: Some(result),
                };
                Some((item, 0))
            },
            |items| pb::DeleteBatchResponse { items },
        );
        // Each reply waits for the records of its deletes, taken as the
        // chunk is built (on the thread that made them).
        Ok(Box::pin(replies.then(move |reply| {
            let logged = logging.logged();
            async move {
                logged.await?;
                reply
            }
        })))
    }

    /// Applies each chunk of a SetBatch stream as it arrives and answers it
    /// before reading the next, so the server holds at most a few chunks.
    async fn set_batch(
        self,
        access: Access,
        metadata: MetadataMap,
        mut chunks: Streaming<pb::SetBatchRequest>,
        replies: mpsc::Sender<Result<pb::SetBatchResponse, Status>>,
    ) {
        let mut next_index: u64 = 0;
        loop {
            let chunk = tokio::select! {
                () = replies.closed() => return,
                chunk = chunks.next() => chunk,
            };
            let reply = match chunk {
                None => return,
                Some(Err(status)) => Err(status),
                Some(Ok(chunk)) => {
                    let reply = self
                        .set_chunk_routed(&access, &metadata, chunk, &mut next_index)
                        .await;
                    // The chunk's reply waits for its last record.
                    let logged = self.state.logged();
                    match logged.await {
                        Ok(()) => reply,
                        Err(status) => Err(status),
                    }
                }
            };
            let failed = reply.is_err();
            if replies.send(reply).await.is_err() || failed {
                return;
            }
        }
    }

    /// Applies one SetBatch chunk, numbering its items from `next_index`.
    pub(super) fn set_chunk(
        &self,
        access: &Access,
        chunk: pb::SetBatchRequest,
        next_index: &mut u64,
    ) -> Result<pb::SetBatchResponse, Status> {
        self.batch_size("items", chunk.items.len())?;
        if let Some(denied) = self.denied(access, &chunk.namespace, Role::Write) {
            // Nothing of the chunk is written, nor its namespace made.
            let results = (0..chunk.items.len())
                .map(|_| {
                    let index = *next_index;
                    *next_index += 1;
                    pb::SetBatchResult {
                        index,
                        result: Some(pb::set_batch_result::Result::Error(denied.clone())),
                    }
                })
                .collect();
            return Ok(pb::SetBatchResponse { results });
        }
        let namespace = self.state.writable(&chunk.namespace)?;
        let results = chunk
            .items
            .into_iter()
            .map(|item| {
                let index = *next_index;
                *next_index += 1;
                let result = match set_item(&namespace, item) {
                    Ok(outcome) => pb::set_batch_result::Result::Outcome(outcome),
                    Err(status) => pb::set_batch_result::Result::Error(item_status(&status)),
                };
                pb::SetBatchResult {
                    index,
                    result: Some(result),
                }
            })
            .collect();
        Ok(pb::SetBatchResponse { results })
    }
}

/// Reads `keys`, the batch's keys from position `first` on, in one engine
/// batch read, and answers each with its value (and metadata when asked), a
/// miss, or its own error.
fn read_window(
    state: &ServiceState,
    namespace: Option<&Namespace>,
    keys: &[Bytes],
    first: usize,
    include_meta: bool,
) -> Vec<pb::GetBatchItem> {
    use pb::get_batch_item::Result as Item;
    let checked: Vec<Result<(), tonic_types::Status>> = keys
        .iter()
        .enumerate()
        .map(|(offset, key)| check_key(state, key, first + offset))
        .collect();
    let valid: Vec<&[u8]> = keys
        .iter()
        .zip(&checked)
        .filter(|(_, check)| check.is_ok())
        .map(|(key, _)| key.as_ref())
        .collect();
    let mut found = namespace
        .map(|namespace| namespace.get_many(&valid))
        .unwrap_or_default()
        .into_iter();
    checked
        .into_iter()
        .enumerate()
        .map(|(offset, check)| {
            let at = first + offset;
            let (result, meta) = match check.map(|()| found.next().unwrap_or(Ok(None))) {
                Err(status) => (Item::Error(status), None),
                Ok(Err(error)) => (
                    Item::Error(item_status(&engine_status(
                        error,
                        Some(&format!("keys[{at}]")),
                    ))),
                    None,
                ),
                Ok(Ok(None)) => (Item::Miss(pb::Miss {}), None),
                Ok(Ok(Some((value, meta)))) => (
                    Item::Value(value),
                    include_meta.then(|| convert::meta(meta)),
                ),
            };
            pb::GetBatchItem {
                index: index_u32(at),
                result: Some(result),
                meta,
            }
        })
        .collect()
}

/// Writes one item of a SetBatch.
fn set_item(namespace: &Namespace, item: pb::SetBatchItem) -> Result<pb::SetOutcome, Status> {
    let options = SetOptions {
        expiry: convert::expiry(item.expiry),
        condition: convert::condition(item.condition),
        return_previous: false,
    };
    // Copied so the stored value owns exactly its bytes, not a slice pinning
    // the whole chunk's receive buffer.
    let value = Bytes::copy_from_slice(&item.value);
    let outcome = namespace
        .set(&item.key, value, options)
        .map_err(|error| engine_status(error, None))?;
    Ok(pb::SetOutcome {
        stored: outcome.stored,
        version: outcome.version,
    })
}

/// A key's shape, checked even when its namespace does not exist, so that a
/// bad key is reported the same way whatever the keyspace holds.
fn check_key(state: &ServiceState, key: &[u8], at: usize) -> Result<(), tonic_types::Status> {
    super::validate::key(state, key)
        .map_err(|status| item_status(&invalid(&format!("keys[{at}]"), status.message())))
}

/// Batch positions fit in u32: a batch is bounded by the server's limit.
fn index_u32(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(u32::MAX)
}

#[tonic::async_trait]
impl BatchService for BatchApi {
    type GetBatchStream = ResponseStream<pb::GetBatchResponse>;

    async fn get_batch(
        &self,
        request: Request<pb::GetBatchRequest>,
    ) -> Result<Response<Self::GetBatchStream>, Status> {
        let access = self.state.access(&request).clone();
        let (metadata, _, request) = request.into_parts();
        record_call(&request.namespace, request.keys.len());
        reply(self.batch_routed(&access, &metadata, request))
    }

    type SetBatchStream = ReceiverStream<Result<pb::SetBatchResponse, Status>>;

    async fn set_batch(
        &self,
        request: Request<Streaming<pb::SetBatchRequest>>,
    ) -> Result<Response<Self::SetBatchStream>, Status> {
        let (sender, receiver) = mpsc::channel(SET_CHUNKS_IN_FLIGHT);
        let access = self.state.access(&request).clone();
        let metadata = self.state.travelling_metadata(request.metadata());
        tokio::spawn(
            self.clone()
                .set_batch(access, metadata, request.into_inner(), sender),
        );
        // Namespaces and items arrive chunk by chunk, after the span opens:
        // the span records neither.
        reply(Ok(ReceiverStream::new(receiver)))
    }

    type DeleteBatchStream = ResponseStream<pb::DeleteBatchResponse>;

    async fn delete_batch(
        &self,
        request: Request<pb::DeleteBatchRequest>,
    ) -> Result<Response<Self::DeleteBatchStream>, Status> {
        let access = self.state.access(&request).clone();
        let (metadata, _, request) = request.into_parts();
        record_call(&request.namespace, request.keys.len());
        reply(self.batch_routed(&access, &metadata, request))
    }

    type PipelineStream = ReceiverStream<Result<pb::PipelineResponse, Status>>;

    async fn pipeline(
        &self,
        request: Request<Streaming<pb::PipelineRequest>>,
    ) -> Result<Response<Self::PipelineStream>, Status> {
        let access = self.state.access(&request).clone();
        let metadata = self.state.travelling_metadata(request.metadata());
        let stream =
            Pipeline::new(Arc::clone(&self.state), access, metadata).start(request.into_inner());
        reply(Ok(stream))
    }
}
