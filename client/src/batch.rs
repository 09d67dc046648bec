//! Many keys per call: [`Client::get_many`], [`Client::set_many`] and
//! [`Client::delete_many`] over the server's batch streams.
//!
//! A batch of any size is split into requests of at most
//! [`BatchOptions::chunk_items`] keys; up to [`BatchOptions::in_flight`] of
//! them run at once, and results come back in input order with one
//! outcome per item, so one bad key does not fail the rest.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _, future, stream};
use shoal_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::call::{to_bytes, with_deadline};
use crate::client::Client;
use crate::compression;
use crate::convert;
use crate::error::{Error, Result};
use crate::node::Node;
use crate::retry::Idempotency;
use crate::routing;
use crate::telemetry::TracedChannel;
use crate::types::{SetOptions, SetResult};

use pb::pipeline_request::Command;
use pb::pipeline_response::Result as Reply;

/// Keys per request when not configured: large enough to amortise a round
/// trip, small enough that a chunk's values stay near a megabyte for
/// typical sizes.
pub const DEFAULT_BATCH_CHUNK_ITEMS: usize = 500;
/// Requests of one batch in flight at once when not configured.
pub const DEFAULT_BATCH_IN_FLIGHT: usize = 4;
/// A SetBatch chunk is closed once its values reach this many bytes, so a
/// chunk stays well below any message limit.
const SET_CHUNK_BYTES: usize = 1024 * 1024;

/// How batches are split and how many parts run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Keys per request (at most the server's `max_batch_items`).
    pub chunk_items: usize,
    /// Requests in flight at once.
    pub in_flight: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            chunk_items: DEFAULT_BATCH_CHUNK_ITEMS,
            in_flight: DEFAULT_BATCH_IN_FLIGHT,
        }
    }
}

/// One write of [`Client::set_many_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSet {
    /// The key.
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
    /// Expiry and condition; `return_previous` is not supported in batches
    /// and ignored.
    pub options: SetOptions,
}

impl BatchSet {
    /// A write of `value` under `key` with the default options.
    pub fn new(key: impl AsRef<[u8]>, value: impl Into<Bytes>) -> Self {
        Self {
            key: to_bytes(key),
            value: value.into(),
            options: SetOptions::default(),
        }
    }

    /// The same write with `options`.
    #[must_use]
    pub fn with_options(mut self, options: SetOptions) -> Self {
        self.options = options;
        self
    }
}

/// The error an item of a batch or pipeline failed with: the same
/// [`Error`] the call would have failed with on its own.
pub(crate) fn item_error(status: tonic_types::Status) -> Error {
    let code = tonic::Code::from_i32(status.code);
    Error::from(tonic::Status::new(code, status.message))
}

/// As [`item_error`], for an item of a batch this client split into
/// requests: the server names the key by its place in one request
/// (`keys[3]: ...`), which is not its place in the caller's input, so that
/// prefix is dropped; the result's own position says which key it was.
fn batch_item_error(mut status: tonic_types::Status) -> Error {
    if let Some(rest) = status.message.strip_prefix("keys[")
        && let Some((index, message)) = rest.split_once("]: ")
        && index.bytes().all(|byte| byte.is_ascii_digit())
    {
        status.message = message.to_owned();
    }
    item_error(status)
}

impl Client {
    /// The values of many string keys, in the order given: `Ok(Some)` for a
    /// hit, `Ok(None)` for a miss, `Err` for a key that could not be read
    /// (empty, too long, or a collection). A key may repeat.
    ///
    /// ```no_run
    /// # async fn demo(client: shoal_client::Client) -> shoal_client::Result<()> {
    /// let values = client.get_many(["user:1", "user:2", "user:3"]).await?;
    /// for value in values {
    ///     match value? {
    ///         Some(bytes) => println!("{} bytes", bytes.len()),
    ///         None => println!("miss"),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The outer error is for the whole call (transport, deadline, an invalid
    /// namespace); per-key problems are in the inner results.
    pub async fn get_many<K: AsRef<[u8]>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<Result<Option<Bytes>>>> {
        self.get_many_with(keys, BatchOptions::default()).await
    }

    /// As [`get_many`](Self::get_many), split and run as `options` says.
    ///
    /// # Errors
    ///
    /// As [`get_many`](Self::get_many).
    pub async fn get_many_with<K: AsRef<[u8]>>(
        &self,
        keys: impl IntoIterator<Item = K>,
        options: BatchOptions,
    ) -> Result<Vec<Result<Option<Bytes>>>> {
        let keys: Vec<Bytes> = keys.into_iter().map(to_bytes).collect();
        self.by_owner(keys, |node, keys| self.get_on(node, keys, options))
            .await
    }

    /// Runs `run` on the keys of each owner at once (on this handle's own
    /// server when it does not route) and puts the results back in input
    /// order. `run` must give one result per key, in its order.
    pub(crate) async fn by_owner<T, R, F, Fut>(&self, items: Vec<T>, run: F) -> Result<Vec<R>>
    where
        T: RoutedItem,
        F: Fn(Arc<Node>, Vec<T>) -> Fut,
        Fut: Future<Output = Result<Vec<R>>>,
    {
        let Some(router) = &self.router else {
            return run(self.seed_node(), items).await;
        };
        let count = items.len();
        let (owners, nodes) = router.owners(items.iter().map(RoutedItem::routing_key));
        let groups = routing::split_by_owner(&owners, &nodes, items);
        let parts = future::try_join_all(groups.into_iter().map(|(node, items, positions)| {
            let part = run(node, items);
            async move { Ok::<_, Error>((part.await?, positions)) }
        }))
        .await?;
        Ok(routing::merge_in_order(count, parts))
    }

    /// Reads `keys` on `node`, in chunks, in input order.
    async fn get_on(
        &self,
        node: Arc<Node>,
        keys: Vec<Bytes>,
        options: BatchOptions,
    ) -> Result<Vec<Result<Option<Bytes>>>> {
        let chunks = keys
            .chunks(options.chunk_items.max(1))
            .map(<[Bytes]>::to_vec);
        let parts: Vec<Vec<Result<Option<Bytes>>>> = stream::iter(chunks)
            .map(|chunk| self.get_chunk(&node, chunk))
            .buffered(options.in_flight.max(1))
            .try_collect()
            .await?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// Runs a batch `command` on a shared stream, retried as an idempotent
    /// read; `decode` turns its reply into results, or gives `None` for a
    /// reply of another kind.
    async fn shared_batch<T>(
        &self,
        node: &Node,
        command: Command,
        decode: impl Fn(Reply) -> Option<Result<T>>,
    ) -> Result<T> {
        self.run(Idempotency::Idempotent, |_| {
            let command = command.clone();
            let decode = &decode;
            async move {
                match node.shared.call(command).await? {
                    Reply::Error(status) => Err(item_error(status)),
                    reply => decode(reply).unwrap_or_else(|| {
                        Err(invalid_response(
                            "a batch command got another kind of reply",
                        ))
                    }),
                }
            }
        })
        .await
    }

    /// Reads one chunk of keys: as a command on a shared stream when it is
    /// small enough, as a GetBatch call otherwise.
    async fn get_chunk(&self, node: &Node, keys: Vec<Bytes>) -> Result<Vec<Result<Option<Bytes>>>> {
        let count = keys.len();
        let request = pb::GetBatchRequest {
            namespace: self.ns(),
            keys,
            include_meta: false,
            chunk_size: 0,
        };
        if count <= self.shared_stream_max_keys {
            return self
                .shared_batch(node, Command::GetBatch(request), |reply| match reply {
                    Reply::GetBatch(reply) => Some(get_results(count, [reply])),
                    _ => None,
                })
                .await;
        }
        self.run(Idempotency::Idempotent, |timeout| {
            let mut batch = node.batch.clone();
            let request = with_deadline(request.clone(), timeout);
            async move {
                let mut stream = batch.get_batch(request).await?.into_inner();
                let mut chunks = Vec::new();
                while let Some(chunk) = stream.message().await? {
                    chunks.push(chunk);
                }
                get_results(count, chunks)
            }
        })
        .await
    }

    /// Stores many string values that never expire, in one stream. Results
    /// come back in input order.
    ///
    /// ```no_run
    /// # async fn demo(client: shoal_client::Client) -> shoal_client::Result<()> {
    /// let rows = (0..10_000).map(|n| (format!("row:{n}"), format!("value {n}")));
    /// let results = client.set_many(rows).await?;
    /// assert!(results.iter().all(|result| result.is_ok()));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get_many`](Self::get_many): the outer error is for the whole
    /// call, per-item problems (an oversized value) are inner.
    pub async fn set_many<K: AsRef<[u8]>, V: Into<Bytes>>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Vec<Result<SetResult>>> {
        let items = items
            .into_iter()
            .map(|(key, value)| BatchSet::new(key, value));
        self.set_many_with(items, BatchOptions::default()).await
    }

    /// Stores many values, each with its own expiry and condition, in one
    /// stream of chunks: `options.in_flight` chunks may await their
    /// outcomes at once, so memory stays bounded whatever the batch size.
    ///
    /// Retried as a whole after a transient failure, like a single
    /// [`set_with`](Self::set_with).
    ///
    /// # Errors
    ///
    /// As [`set_many`](Self::set_many).
    pub async fn set_many_with(
        &self,
        items: impl IntoIterator<Item = BatchSet>,
        options: BatchOptions,
    ) -> Result<Vec<Result<SetResult>>> {
        let compression = self.compression;
        let items: Vec<BatchSet> = items
            .into_iter()
            .map(|mut item| {
                item.value = compression::encode_value(compression.as_ref(), item.value);
                item
            })
            .collect();
        self.by_owner(items, |node, items| self.set_on(node, items, options))
            .await
    }

    /// Stores `items` on `node`, in one stream of chunks.
    async fn set_on(
        &self,
        node: Arc<Node>,
        items: Vec<BatchSet>,
        options: BatchOptions,
    ) -> Result<Vec<Result<SetResult>>> {
        let chunks = set_chunks(&self.ns(), items, options.chunk_items.max(1));
        let total: usize = chunks.iter().map(|chunk| chunk.items.len()).sum();
        let in_flight = options.in_flight.max(1);
        self.run(Idempotency::Idempotent, |timeout| {
            let mut batch = node.batch.clone();
            let chunks = chunks.clone();
            async move {
                let (sender, receiver) = mpsc::channel(in_flight);
                let feeder = tokio::spawn(async move {
                    for chunk in chunks {
                        if sender.send(chunk).await.is_err() {
                            return;
                        }
                    }
                });
                let request = with_deadline(ReceiverStream::new(receiver), timeout);
                let outcome = collect_set_results(&mut batch, request, total).await;
                feeder.abort();
                outcome
            }
        })
        .await
    }

    /// Removes many keys of any type; says per key, in input order, whether
    /// it existed.
    ///
    /// # Errors
    ///
    /// As [`get_many`](Self::get_many).
    pub async fn delete_many<K: AsRef<[u8]>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<Result<bool>>> {
        let keys: Vec<Bytes> = keys.into_iter().map(to_bytes).collect();
        self.by_owner(keys, |node, keys| self.delete_on(node, keys))
            .await
    }

    /// Removes `keys` on `node`, in chunks, in input order.
    async fn delete_on(&self, node: Arc<Node>, keys: Vec<Bytes>) -> Result<Vec<Result<bool>>> {
        let chunks = keys
            .chunks(DEFAULT_BATCH_CHUNK_ITEMS)
            .map(<[Bytes]>::to_vec);
        let parts: Vec<Vec<Result<bool>>> = stream::iter(chunks)
            .map(|chunk| self.delete_chunk(&node, chunk))
            .buffered(DEFAULT_BATCH_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// Removes one chunk of keys, on a shared stream when it is small
    /// enough.
    async fn delete_chunk(&self, node: &Node, keys: Vec<Bytes>) -> Result<Vec<Result<bool>>> {
        let count = keys.len();
        let request = pb::DeleteBatchRequest {
            namespace: self.ns(),
            keys,
            chunk_size: 0,
        };
        if count <= self.shared_stream_max_keys {
            return self
                .shared_batch(node, Command::DeleteBatch(request), |reply| match reply {
                    Reply::DeleteBatch(reply) => Some(delete_results(count, [reply])),
                    _ => None,
                })
                .await;
        }
        self.run(Idempotency::Idempotent, |timeout| {
            let mut batch = node.batch.clone();
            let request = with_deadline(request.clone(), timeout);
            async move {
                let mut stream = batch.delete_batch(request).await?.into_inner();
                let mut chunks = Vec::new();
                while let Some(chunk) = stream.message().await? {
                    chunks.push(chunk);
                }
                delete_results(count, chunks)
            }
        })
        .await
    }
}

/// An item of a batch, placed by its key.
pub(crate) trait RoutedItem {
    /// The key its owner is found by.
    fn routing_key(&self) -> &[u8];
}

impl RoutedItem for Bytes {
    fn routing_key(&self) -> &[u8] {
        self
    }
}

impl RoutedItem for BatchSet {
    fn routing_key(&self) -> &[u8] {
        &self.key
    }
}

/// The outcome of each of `count` keys read, from the reply chunks of a
/// GetBatch, in key order.
fn get_results(
    count: usize,
    chunks: impl IntoIterator<Item = pb::GetBatchResponse>,
) -> Result<Vec<Result<Option<Bytes>>>> {
    let mut results: Vec<Option<Result<Option<Bytes>>>> =
        std::iter::repeat_with(|| None).take(count).collect();
    for item in chunks.into_iter().flat_map(|chunk| chunk.items) {
        let slot = results
            .get_mut(item.index as usize)
            .ok_or_else(|| invalid_response(format!("item index {} out of range", item.index)))?;
        *slot = Some(get_outcome(item.result)?);
    }
    results
        .into_iter()
        .enumerate()
        .map(|(at, result)| {
            result.ok_or_else(|| invalid_response(format!("no result for key {at}")))
        })
        .collect()
}

/// Whether each of `count` keys existed, from the reply chunks of a
/// DeleteBatch, in key order.
fn delete_results(
    count: usize,
    chunks: impl IntoIterator<Item = pb::DeleteBatchResponse>,
) -> Result<Vec<Result<bool>>> {
    let mut results = Vec::with_capacity(count);
    for item in chunks.into_iter().flat_map(|chunk| chunk.items) {
        if item.index as usize != results.len() {
            return Err(invalid_response(format!(
                "item index {} out of order",
                item.index
            )));
        }
        results.push(match item.result {
            Some(pb::delete_batch_item::Result::Existed(existed)) => Ok(existed),
            Some(pb::delete_batch_item::Result::Error(status)) => Err(batch_item_error(status)),
            None => return Err(invalid_response("an item has no result")),
        });
    }
    if results.len() != count {
        return Err(invalid_response("the batch ended early"));
    }
    Ok(results)
}

/// Splits writes into SetBatch chunks bounded by items and bytes.
fn set_chunks(
    namespace: &str,
    items: impl IntoIterator<Item = BatchSet>,
    chunk_items: usize,
) -> Vec<pb::SetBatchRequest> {
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for item in items {
        if !current.is_empty() && (current.len() >= chunk_items || bytes >= SET_CHUNK_BYTES) {
            chunks.push(pb::SetBatchRequest {
                namespace: namespace.to_owned(),
                items: std::mem::take(&mut current),
            });
            bytes = 0;
        }
        bytes += item.key.len() + item.value.len();
        current.push(pb::SetBatchItem {
            key: item.key,
            value: item.value,
            expiry: convert::write_expiry(item.options.expiry),
            condition: convert::condition(item.options.condition),
        });
    }
    if !current.is_empty() {
        chunks.push(pb::SetBatchRequest {
            namespace: namespace.to_owned(),
            items: current,
        });
    }
    chunks
}

async fn collect_set_results(
    batch: &mut shoal_proto::v1::batch_service_client::BatchServiceClient<TracedChannel>,
    request: tonic::Request<ReceiverStream<pb::SetBatchRequest>>,
    total: usize,
) -> Result<Vec<Result<SetResult>>> {
    let mut replies = batch.set_batch(request).await?.into_inner();
    let mut results = Vec::with_capacity(total);
    while let Some(reply) = replies.message().await? {
        for result in reply.results {
            if result.index != results.len() as u64 {
                return Err(invalid_response(format!(
                    "item index {} out of order",
                    result.index
                )));
            }
            results.push(match result.result {
                Some(pb::set_batch_result::Result::Outcome(outcome)) => Ok(SetResult {
                    stored: outcome.stored,
                    version: outcome.version,
                    previous: None,
                }),
                Some(pb::set_batch_result::Result::Error(status)) => Err(item_error(status)),
                None => return Err(invalid_response("an item has no result")),
            });
        }
    }
    if results.len() != total {
        return Err(invalid_response(format!(
            "{} of {total} writes were answered",
            results.len()
        )));
    }
    Ok(results)
}

fn get_outcome(result: Option<pb::get_batch_item::Result>) -> Result<Result<Option<Bytes>>> {
    use pb::get_batch_item::Result as Item;
    match result {
        Some(Item::Value(value)) => Ok(compression::decode_value(value)
            .map(Some)
            .map_err(Error::from)),
        Some(Item::Miss(_)) => Ok(Ok(None)),
        Some(Item::Error(status)) => Ok(Err(batch_item_error(status))),
        None => Err(invalid_response("an item has no result")),
    }
}

pub(crate) fn invalid_response(message: impl Into<String>) -> Error {
    Error::InvalidResponse {
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_item_errors_drop_the_request_relative_position() {
        let status = |message: &str| tonic_types::Status {
            code: tonic::Code::InvalidArgument as i32,
            message: message.to_owned(),
            details: Vec::new(),
        };
        let error = batch_item_error(status("keys[12]: key must not be empty"));
        assert_eq!(error.to_string(), "invalid argument: key must not be empty");
        let error = batch_item_error(status("keys[x]: other"));
        assert_eq!(error.to_string(), "invalid argument: keys[x]: other");
    }

    #[test]
    fn set_chunks_close_on_items_and_on_bytes() {
        let small = (0..5).map(|n| BatchSet::new(format!("k{n}"), "v"));
        let chunks = set_chunks("ns", small, 2);
        let sizes: Vec<usize> = chunks.iter().map(|chunk| chunk.items.len()).collect();
        assert_eq!(sizes, vec![2, 2, 1]);
        assert!(chunks.iter().all(|chunk| chunk.namespace == "ns"));

        let big = (0..3).map(|n| BatchSet::new(format!("k{n}"), vec![0u8; SET_CHUNK_BYTES]));
        let sizes: Vec<usize> = set_chunks("ns", big, 100)
            .iter()
            .map(|chunk| chunk.items.len())
            .collect();
        assert_eq!(sizes, vec![1, 1, 1]);
        assert!(set_chunks("ns", Vec::new(), 10).is_empty());
    }
}
