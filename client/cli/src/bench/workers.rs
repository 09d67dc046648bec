//! The request loops: one worker per request in flight, each repeating one
//! test's request until the phase's budget is spent.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use hdrhistogram::Histogram;
use shoal_client::proto::batch_service_client::BatchServiceClient;
use shoal_client::proto::cache_service_client::CacheServiceClient;
use shoal_client::proto::collection_service_client::CollectionServiceClient;
use shoal_client::proto::{
    DeleteRequest, FieldValue, GetRequest, HGetRequest, HSetRequest, IncrementRequest,
    LPushRequest, PipelineRequest, SAddRequest, SetBatchItem, SetBatchRequest, SetRequest,
    pipeline_request, pipeline_response, set_batch_result,
};
use shoal_client::{BatchOptions, BatchSet, Client, DEFAULT_MAX_MESSAGE_SIZE};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataKey, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::args::bench::Test;
use crate::bench::workload::{Budget, KeyIds, key, prefix};

/// The hash field that hset writes and hget reads.
const FIELD: &[u8] = b"field";

/// What the workers of one phase share.
#[derive(Debug)]
pub struct Shared {
    /// Which requests remain.
    pub budget: Budget,
    /// Requests completed, for the progress bar.
    pub done: AtomicU64,
}

/// A connection whose calls carry the run's token.
pub type Authorized = InterceptedService<Channel, Authorize>;

/// Adds the token's header to each call when the run has a token, in the
/// form the client would send it; does nothing otherwise.
#[derive(Clone)]
pub struct Authorize(Option<(MetadataKey<Ascii>, MetadataValue<Ascii>)>);

impl Authorize {
    /// The header `builder` would send.
    ///
    /// # Errors
    /// When the token cannot be a header value.
    pub fn new(builder: &shoal_client::ClientBuilder) -> Result<Self, shoal_client::Error> {
        let value = builder.credential_header()?.and_then(|(name, header)| {
            let key = MetadataKey::from_bytes(name.as_str().as_bytes()).ok()?;
            let mut value: MetadataValue<Ascii> = header.to_str().ok()?.parse().ok()?;
            value.set_sensitive(header.is_sensitive());
            Some((key, value))
        });
        Ok(Self(value))
    }
}

impl std::fmt::Debug for Authorize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Authorize(<redacted>)"
        } else {
            "Authorize(none)"
        })
    }
}

impl Interceptor for Authorize {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some((key, value)) = &self.0 {
            request.metadata_mut().insert(key.clone(), value.clone());
        }
        Ok(request)
    }
}

/// One worker: a request in flight (a pipeline stream for `pipeline`).
#[derive(Debug)]
pub struct Worker {
    /// The connection it sends on.
    pub channel: Channel,
    /// Puts the token, if any, on each call.
    pub authorize: Authorize,
    /// The typed client, over the same connections, for the tests that
    /// measure it.
    pub client: Client,
    /// Whether every test goes through `client` (`--topology-aware`).
    pub typed: bool,
    /// Namespace of every request.
    pub namespace: String,
    /// Where its keys come from.
    pub ids: KeyIds,
    /// The value it writes, shared by every request (a reference count, not
    /// a copy).
    pub value: Bytes,
    /// Keys per batch, commands in flight per pipeline stream.
    pub depth: usize,
    /// The phase's budget and progress.
    pub shared: Arc<Shared>,
}

/// What one worker measured.
#[derive(Debug)]
pub struct Tally {
    /// Latency of each successful request, in nanoseconds.
    pub latency: Histogram<u64>,
    /// Requests completed, failed ones included.
    pub requests: u64,
    /// Keys or commands carried by those requests.
    pub items: u64,
    /// Reads that found no value.
    pub misses: u64,
    /// Failed requests, and failed items of batches.
    pub errors: u64,
    /// The first failure, to show.
    pub first_error: Option<Status>,
}

impl Tally {
    /// An empty tally.
    pub fn new() -> Self {
        Self {
            // One nanosecond to an hour, three significant digits: 0.1%
            // resolution everywhere, in about 200 KiB.
            latency: Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
                .expect("valid histogram bounds"),
            requests: 0,
            items: 0,
            misses: 0,
            errors: 0,
            first_error: None,
        }
    }

    /// Adds `other` to this tally.
    pub fn merge(&mut self, other: Self) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.requests += other.requests;
        self.items += other.items;
        self.misses += other.misses;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn error(&mut self, status: Status) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(status);
        }
    }

    /// Records one completed request that started at `start`.
    fn record(&mut self, shared: &Shared, start: Instant, outcome: Result<Outcome, Status>) {
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.requests += 1;
        match outcome {
            Ok(outcome) => {
                self.latency.saturating_record(nanos.max(1));
                self.items += outcome.items;
                self.misses += outcome.misses;
                if let Some(status) = outcome.failed {
                    self.errors += outcome.failures - 1;
                    self.error(status);
                }
            }
            Err(status) => self.error(status),
        }
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// The result of one successful request.
#[derive(Debug, Default)]
struct Outcome {
    items: u64,
    misses: u64,
    /// Items that failed, and the first of their errors.
    failures: u64,
    failed: Option<Status>,
}

impl Outcome {
    fn hit(found: bool) -> Self {
        Self {
            items: 1,
            misses: u64::from(!found),
            ..Self::default()
        }
    }

    fn item_failed(&mut self, status: Status) {
        self.failures += 1;
        if self.failed.is_none() {
            self.failed = Some(status);
        }
    }
}

/// A typed client's error as a [`Status`].
fn client_status(error: &shoal_client::Error) -> Status {
    Status::new(error.code(), error.to_string())
}

/// A per-item `google.rpc.Status` as a [`Status`].
fn item_status(status: &tonic_types::Status) -> Status {
    Status::new(Code::from(status.code), status.message.clone())
}

impl Worker {
    /// Runs `test` until the budget is spent.
    pub async fn run(self, test: Test) -> Tally {
        match test {
            Test::Mget => self.get_batches().await,
            Test::Mset if self.typed => self.typed_set_batches().await,
            Test::Mset => self.set_batches().await,
            Test::Pipeline => self.pipeline().await,
            unary if self.typed => self.typed_unary(unary).await,
            unary => self.unary(unary).await,
        }
    }

    fn cache(&self) -> CacheServiceClient<Authorized> {
        CacheServiceClient::with_interceptor(self.channel.clone(), self.authorize.clone())
            .max_decoding_message_size(DEFAULT_MAX_MESSAGE_SIZE)
    }

    fn batch(&self) -> BatchServiceClient<Authorized> {
        BatchServiceClient::with_interceptor(self.channel.clone(), self.authorize.clone())
            .max_decoding_message_size(DEFAULT_MAX_MESSAGE_SIZE)
            .max_encoding_message_size(DEFAULT_MAX_MESSAGE_SIZE)
    }

    /// One unary call per request.
    async fn unary(mut self, test: Test) -> Tally {
        let mut tally = Tally::new();
        let mut cache = self.cache();
        let mut collections =
            CollectionServiceClient::with_interceptor(self.channel.clone(), self.authorize.clone())
                .max_decoding_message_size(DEFAULT_MAX_MESSAGE_SIZE);
        let namespace = self.namespace.clone();
        while let Some(seq) = self.shared.budget.claim() {
            let id = self.ids.next(seq);
            let value = self.value.clone();
            let namespace = namespace.clone();
            let start = Instant::now();
            let outcome = match test {
                Test::Get => cache
                    .get(GetRequest {
                        namespace,
                        key: key(prefix::STRING, id),
                        include_meta: false,
                    })
                    .await
                    .map(|r| Outcome::hit(r.into_inner().found)),
                Test::Set => cache
                    .set(SetRequest {
                        namespace,
                        key: key(prefix::STRING, id),
                        value,
                        ..SetRequest::default()
                    })
                    .await
                    .map(|_| Outcome::hit(true)),
                Test::Incr => cache
                    .increment(IncrementRequest {
                        namespace,
                        key: key(prefix::COUNTER, id),
                        delta: 1,
                        ..IncrementRequest::default()
                    })
                    .await
                    .map(|_| Outcome::hit(true)),
                Test::Delete => cache
                    .delete(DeleteRequest {
                        namespace,
                        keys: vec![key(prefix::STRING, id)],
                    })
                    .await
                    .map(|_| Outcome::hit(true)),
                Test::Hset => collections
                    .h_set(HSetRequest {
                        namespace,
                        key: key(prefix::HASH, id),
                        fields: vec![FieldValue {
                            field: Bytes::from_static(FIELD),
                            value,
                        }],
                        ..HSetRequest::default()
                    })
                    .await
                    .map(|_| Outcome::hit(true)),
                Test::Hget => collections
                    .h_get(HGetRequest {
                        namespace,
                        key: key(prefix::HASH, id),
                        field: Bytes::from_static(FIELD),
                    })
                    .await
                    .map(|r| Outcome::hit(r.into_inner().found)),
                Test::Lpush => collections
                    .l_push(LPushRequest {
                        namespace,
                        key: key(prefix::LIST, id),
                        values: vec![value],
                        ..LPushRequest::default()
                    })
                    .await
                    .map(|_| Outcome::hit(true)),
                Test::Sadd => {
                    let member = key(prefix::MEMBER, self.ids.next(seq));
                    collections
                        .s_add(SAddRequest {
                            namespace,
                            key: key(prefix::SET, id),
                            members: vec![member],
                            ..SAddRequest::default()
                        })
                        .await
                        .map(|_| Outcome::hit(true))
                }
                Test::Mget | Test::Mset | Test::Pipeline => {
                    unreachable!("{test} is not a unary test")
                }
            };
            tally.record(&self.shared, start, outcome);
        }
        tally
    }

    /// One call of the typed client per request, each key sent where the
    /// client routes it.
    async fn typed_unary(mut self, test: Test) -> Tally {
        let mut tally = Tally::new();
        let client = self.client.clone();
        while let Some(seq) = self.shared.budget.claim() {
            let id = self.ids.next(seq);
            let value = self.value.clone();
            let start = Instant::now();
            let outcome = match test {
                Test::Get => client
                    .get(key(prefix::STRING, id))
                    .await
                    .map(|found| Outcome::hit(found.is_some())),
                Test::Set => client
                    .set(key(prefix::STRING, id), value)
                    .await
                    .map(|_| Outcome::hit(true)),
                Test::Incr => client
                    .increment(key(prefix::COUNTER, id), 1)
                    .await
                    .map(|_| Outcome::hit(true)),
                Test::Delete => client
                    .delete([key(prefix::STRING, id)])
                    .await
                    .map(|_| Outcome::hit(true)),
                Test::Hset => client
                    .hset(key(prefix::HASH, id), [(Bytes::from_static(FIELD), value)])
                    .await
                    .map(|_| Outcome::hit(true)),
                Test::Hget => client
                    .hget(key(prefix::HASH, id), FIELD)
                    .await
                    .map(|found| Outcome::hit(found.is_some())),
                Test::Lpush => client
                    .lpush(key(prefix::LIST, id), [value])
                    .await
                    .map(|_| Outcome::hit(true)),
                Test::Sadd => {
                    let member = key(prefix::MEMBER, self.ids.next(seq));
                    client
                        .sadd(key(prefix::SET, id), [member])
                        .await
                        .map(|_| Outcome::hit(true))
                }
                Test::Mget | Test::Mset | Test::Pipeline => {
                    unreachable!("{test} is not a unary test")
                }
            };
            tally.record(&self.shared, start, outcome.map_err(|e| client_status(&e)));
        }
        tally
    }

    /// One `set_many` of `depth` values per request, through the typed
    /// client (split by owner when it routes).
    async fn typed_set_batches(mut self) -> Tally {
        let mut tally = Tally::new();
        let options = BatchOptions {
            chunk_items: self.depth,
            in_flight: 1,
        };
        while let Some(seq) = self.shared.budget.claim() {
            let items: Vec<BatchSet> = self
                .ids
                .for_request(seq, self.depth)
                .map(|id| BatchSet::new(key(prefix::STRING, id), self.value.clone()))
                .collect();
            let start = Instant::now();
            let outcome = match self.client.set_many_with(items, options).await {
                Ok(results) => {
                    let mut outcome = Outcome::default();
                    for result in results {
                        outcome.items += 1;
                        if let Err(error) = result {
                            outcome.item_failed(client_status(&error));
                        }
                    }
                    Ok(outcome)
                }
                Err(error) => Err(client_status(&error)),
            };
            tally.record(&self.shared, start, outcome);
        }
        tally
    }

    /// One `get_many` of `depth` keys per request, through the typed
    /// client: a command on a shared stream, or a GetBatch call with
    /// `--batch-calls`. It ends when every key's result has arrived.
    async fn get_batches(mut self) -> Tally {
        let mut tally = Tally::new();
        let options = BatchOptions {
            chunk_items: self.depth,
            in_flight: 1,
        };
        while let Some(seq) = self.shared.budget.claim() {
            let keys: Vec<Bytes> = self
                .ids
                .for_request(seq, self.depth)
                .map(|id| key(prefix::STRING, id))
                .collect();
            let start = Instant::now();
            let outcome = match self.client.get_many_with(keys, options).await {
                Ok(results) => {
                    let mut outcome = Outcome::default();
                    for result in results {
                        outcome.items += 1;
                        match result {
                            Ok(Some(_)) => {}
                            Ok(None) => outcome.misses += 1,
                            Err(error) => outcome.item_failed(client_status(&error)),
                        }
                    }
                    Ok(outcome)
                }
                Err(error) => Err(client_status(&error)),
            };
            tally.record(&self.shared, start, outcome);
        }
        tally
    }

    /// Chunks of `depth` values over one SetBatch stream, each request
    /// waiting for its chunk's reply. A failed stream is replaced by a new
    /// one for the next request.
    async fn set_batches(mut self) -> Tally {
        let mut tally = Tally::new();
        let mut batch = self.batch();
        let mut claimed = self.shared.budget.claim();
        while let Some(seq) = claimed.take() {
            let (sender, receiver) = mpsc::channel(1);
            // The first chunk goes in before the call, so a server that reads
            // it before answering the headers is not kept waiting.
            let mut chunk = self.set_chunk(seq);
            let mut start = Instant::now();
            let _ = sender.try_send(chunk.0);
            let mut replies = match batch.set_batch(ReceiverStream::new(receiver)).await {
                Ok(replies) => replies.into_inner(),
                Err(status) => {
                    tally.record(&self.shared, start, Err(status));
                    claimed = self.shared.budget.claim();
                    continue;
                }
            };
            loop {
                let outcome = match replies.message().await {
                    Ok(Some(reply)) => {
                        let mut outcome = Outcome::default();
                        for result in &reply.results {
                            outcome.items += 1;
                            match &result.result {
                                Some(set_batch_result::Result::Outcome(_)) => {}
                                Some(set_batch_result::Result::Error(status)) => {
                                    outcome.item_failed(item_status(status));
                                }
                                None => outcome.item_failed(Status::internal(
                                    "SetBatch result without an outcome",
                                )),
                            }
                        }
                        if outcome.items == chunk.1 {
                            Ok(outcome)
                        } else {
                            Err(Status::internal(format!(
                                "SetBatch answered {} results for {} items",
                                outcome.items, chunk.1
                            )))
                        }
                    }
                    Ok(None) => Err(Status::internal("SetBatch stream ended early")),
                    Err(status) => Err(status),
                };
                let broken = outcome.is_err();
                tally.record(&self.shared, start, outcome);
                claimed = self.shared.budget.claim();
                let Some(seq) = claimed else { break };
                if broken {
                    break;
                }
                chunk = self.set_chunk(seq);
                start = Instant::now();
                if sender.send(chunk.0).await.is_err() {
                    // A new stream takes this request.
                    break;
                }
            }
            drop(sender);
            // Let the stream end cleanly rather than resetting it.
            while let Ok(Some(_)) = replies.message().await {}
        }
        tally
    }

    /// The chunk for request `seq`, and how many items it holds.
    fn set_chunk(&mut self, seq: u64) -> (SetBatchRequest, u64) {
        let value = &self.value;
        let items: Vec<SetBatchItem> = self
            .ids
            .for_request(seq, self.depth)
            .map(|id| SetBatchItem {
                key: key(prefix::STRING, id),
                value: value.clone(),
                ..SetBatchItem::default()
            })
            .collect();
        let count = items.len() as u64;
        (
            SetBatchRequest {
                namespace: self.namespace.clone(),
                items,
            },
            count,
        )
    }

    /// GET commands over one Pipeline stream, `depth` of them in flight: a
    /// new command goes out as each reply comes back. A failed stream is
    /// replaced by a new one.
    async fn pipeline(mut self) -> Tally {
        let mut tally = Tally::new();
        let mut batch = self.batch();
        let mut next_id = 1;
        loop {
            let (sender, receiver) = mpsc::channel(self.depth);
            let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(self.depth);
            while in_flight.len() < self.depth {
                let Some(seq) = self.shared.budget.claim() else {
                    break;
                };
                let _ = sender.try_send(self.pipeline_get(next_id, seq));
                in_flight.push_back((next_id, Instant::now()));
                next_id += 1;
            }
            if in_flight.is_empty() {
                return tally;
            }
            let mut replies = match batch.pipeline(ReceiverStream::new(receiver)).await {
                Ok(replies) => replies.into_inner(),
                Err(status) => {
                    for (_, start) in in_flight {
                        tally.record(&self.shared, start, Err(status.clone()));
                    }
                    continue;
                }
            };
            while let Some((id, start)) = in_flight.pop_front() {
                let outcome = match replies.message().await {
                    Ok(Some(reply)) if reply.id != id => Err(Status::internal(format!(
                        "Pipeline answered id {} where {id} was due",
                        reply.id
                    ))),
                    Ok(Some(reply)) => match reply.result {
                        Some(pipeline_response::Result::Get(get)) => Ok(Outcome::hit(get.found)),
                        Some(pipeline_response::Result::Error(status)) => Err(item_status(&status)),
                        _ => Err(Status::internal("Pipeline answered GET with another reply")),
                    },
                    Ok(None) => Err(Status::internal("Pipeline stream ended early")),
                    Err(status) => Err(status),
                };
                let broken = outcome.is_err();
                tally.record(&self.shared, start, outcome);
                if broken {
                    // The stream cannot be trusted any more: fail what is
                    // still in flight and start a new one.
                    for (_, start) in in_flight.drain(..) {
                        tally.record(
                            &self.shared,
                            start,
                            Err(Status::aborted("Pipeline stream abandoned after an error")),
                        );
                    }
                    break;
                }
                if let Some(seq) = self.shared.budget.claim() {
                    let command = self.pipeline_get(next_id, seq);
                    if sender.send(command).await.is_err() {
                        // The call is over; its error arrives with the
                        // replies still due.
                        tally.record(
                            &self.shared,
                            Instant::now(),
                            Err(Status::aborted("Pipeline stream closed by the server")),
                        );
                    } else {
                        in_flight.push_back((next_id, Instant::now()));
                        next_id += 1;
                    }
                }
            }
            drop(sender);
            while let Ok(Some(_)) = replies.message().await {}
        }
    }

    fn pipeline_get(&mut self, id: u64, seq: u64) -> PipelineRequest {
        PipelineRequest {
            id,
            command: Some(pipeline_request::Command::Get(GetRequest {
                namespace: self.namespace.clone(),
                key: key(prefix::STRING, self.ids.next(seq)),
                include_meta: false,
            })),
        }
    }
}
