//! A benchmark peer: the shoal API with no cache behind it.
//!
//! [`serve_noop`] answers `CacheService` Get, Set and Increment and every
//! `BatchService` call with fixed responses of the same shapes and sizes as
//! the real server's, over the same HTTP/2 settings, without touching any
//! data. What a client measures against it is the cost of gRPC itself
//! (HTTP/2 framing, protobuf, the runtime), so `shoal bench` against the
//! real server divided by `shoal bench` against this peer is the share of
//! throughput left after the cache's own work.
//!
//! It is not a cache: reads always hit and return the configured value,
//! writes store nothing, and every other RPC answers UNIMPLEMENTED. The
//! `shoal-noop` binary serves it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use shoal_proto::v1 as pb;
use shoal_proto::v1::batch_service_server::{BatchService, BatchServiceServer};
use shoal_proto::v1::cache_service_server::{CacheService, CacheServiceServer};
use tokio::net::TcpListener;
use tokio_stream::{Stream, StreamExt as _};
use tonic::transport::Server;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_health::ServingStatus;

use shoal_server::{Config, ServerError};

/// Items per GetBatch / DeleteBatch reply when the request names none, as
/// the real server does.
const DEFAULT_CHUNK_ITEMS: usize = 1000;

/// A GetBatch reply is closed once it holds this many value bytes, as the
/// real server's are.
const CHUNK_BYTES: usize = 1 << 20;

type ReplyStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Serves the no-op services, health included, on `listener` until
/// `shutdown` completes. Every read answers `value_size` bytes.
///
/// # Errors
/// When the transport fails.
pub async fn serve_noop(
    listener: TcpListener,
    value_size: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let value = Bytes::from(vec![b'v'; value_size]);
    let config = Config::default();
    let max_message = config.max_message_bytes();
    let cache = CacheServiceServer::new(NoopCache {
        value: value.clone(),
    })
    .max_decoding_message_size(max_message)
    .max_encoding_message_size(max_message);
    let batch = BatchServiceServer::new(NoopBatch { value })
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<CacheServiceServer<NoopCache>>().await;
    health.set_serving::<BatchServiceServer<NoopBatch>>().await;
    health.set_service_status("", ServingStatus::Serving).await;

    // The transport settings of `shoal_server::serve`, so that only the work
    // behind the RPCs differs between the two servers.
    let grpc = &config.grpc;
    Server::builder()
        .max_concurrent_streams(grpc.max_concurrent_streams)
        .http2_max_pending_accept_reset_streams(Some(grpc.max_pending_accept_reset_streams))
        .http2_max_header_list_size(grpc.max_header_list_size)
        .http2_keepalive_interval(Some(Duration::from_secs(grpc.keepalive_interval_secs)))
        .http2_keepalive_timeout(Some(Duration::from_secs(grpc.keepalive_timeout_secs)))
        .timeout(Duration::from_secs(grpc.request_timeout_secs))
        .add_service(health_service)
        .add_service(cache)
        .add_service(batch)
        .serve_with_incoming_shutdown(
            shoal_server::server::accepted_without_delay(listener),
            shutdown,
        )
        .await?;
    Ok(())
}

fn unimplemented<T>() -> Result<T, Status> {
    Err(Status::unimplemented(
        "the no-op benchmark server answers only Get, Set, Increment and BatchService",
    ))
}

/// `CacheService` with fixed answers.
#[derive(Debug, Clone)]
struct NoopCache {
    value: Bytes,
}

impl NoopCache {
    fn get(&self) -> pb::GetResponse {
        pb::GetResponse {
            found: true,
            value: self.value.clone(),
            meta: None,
        }
    }
}

fn set_response() -> pb::SetResponse {
    pb::SetResponse {
        stored: true,
        version: 1,
        previous: None,
    }
}

fn increment_response(request: &pb::IncrementRequest) -> pb::IncrementResponse {
    pb::IncrementResponse {
        value: request.initial.unwrap_or(0).wrapping_add(request.delta),
        version: 1,
        created: true,
    }
}

#[tonic::async_trait]
impl CacheService for NoopCache {
    async fn get(&self, _: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        Ok(Response::new(NoopCache::get(self)))
    }

    async fn set(&self, _: Request<pb::SetRequest>) -> Result<Response<pb::SetResponse>, Status> {
        Ok(Response::new(set_response()))
    }

    async fn delete(
        &self,
        _: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        unimplemented()
    }

    async fn describe(
        &self,
        _: Request<pb::DescribeRequest>,
    ) -> Result<Response<pb::DescribeResponse>, Status> {
        unimplemented()
    }

    async fn increment(
        &self,
        request: Request<pb::IncrementRequest>,
    ) -> Result<Response<pb::IncrementResponse>, Status> {
        Ok(Response::new(increment_response(request.get_ref())))
    }

    async fn update_ttl(
        &self,
        _: Request<pb::UpdateTtlRequest>,
    ) -> Result<Response<pb::UpdateTtlResponse>, Status> {
        unimplemented()
    }

    type ScanStream = ReplyStream<pb::ScanResponse>;

    async fn scan(
        &self,
        _: Request<pb::ScanRequest>,
    ) -> Result<Response<Self::ScanStream>, Status> {
        unimplemented()
    }

    async fn count(
        &self,
        _: Request<pb::CountRequest>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        unimplemented()
    }
}

/// `BatchService` with fixed answers: every key holds the value, every
/// write stores, every key deleted existed.
#[derive(Debug, Clone)]
struct NoopBatch {
    value: Bytes,
}

/// Splits `count` items into replies of at most `chunk_size` items (0
/// means the default) and about [`CHUNK_BYTES`] of `item_bytes` each.
fn chunks<T>(
    count: usize,
    chunk_size: u32,
    item_bytes: usize,
    mut reply: impl FnMut(std::ops::Range<usize>) -> T,
) -> Vec<Result<T, Status>> {
    let by_count = match chunk_size {
        0 => DEFAULT_CHUNK_ITEMS,
        n => n as usize,
    };
    let by_bytes = (CHUNK_BYTES / item_bytes.max(1)).max(1);
    let per_chunk = by_count.min(by_bytes);
    (0..count)
        .step_by(per_chunk)
        .map(|start| Ok(reply(start..(start + per_chunk).min(count))))
        .collect()
}

/// GetBatch items for the keys at `range`, all holding `value`.
fn batch_values(value: &Bytes, range: std::ops::Range<usize>) -> pb::GetBatchResponse {
    pb::GetBatchResponse {
        items: range
            .map(|index| pb::GetBatchItem {
                index: index as u32,
                result: Some(pb::get_batch_item::Result::Value(value.clone())),
                meta: None,
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl BatchService for NoopBatch {
    type GetBatchStream = ReplyStream<pb::GetBatchResponse>;

    async fn get_batch(
        &self,
        request: Request<pb::GetBatchRequest>,
    ) -> Result<Response<Self::GetBatchStream>, Status> {
        let request = request.into_inner();
        let value = &self.value;
        let replies = chunks(
            request.keys.len(),
            request.chunk_size,
            value.len(),
            |range| batch_values(value, range),
        );
        Ok(Response::new(Box::pin(tokio_stream::iter(replies))))
    }

    type SetBatchStream = ReplyStream<pb::SetBatchResponse>;

    async fn set_batch(
        &self,
        request: Request<Streaming<pb::SetBatchRequest>>,
    ) -> Result<Response<Self::SetBatchStream>, Status> {
        let mut next_index = 0_u64;
        let replies = request.into_inner().map(move |chunk| {
            let chunk = chunk?;
            let results = chunk
                .items
                .iter()
                .map(|_| {
                    next_index += 1;
                    pb::SetBatchResult {
                        index: next_index - 1,
                        result: Some(pb::set_batch_result::Result::Outcome(pb::SetOutcome {
                            stored: true,
                            version: 1,
                        })),
                    }
                })
                .collect();
            Ok(pb::SetBatchResponse { results })
        });
        Ok(Response::new(Box::pin(replies)))
    }

    type DeleteBatchStream = ReplyStream<pb::DeleteBatchResponse>;

    async fn delete_batch(
        &self,
        request: Request<pb::DeleteBatchRequest>,
    ) -> Result<Response<Self::DeleteBatchStream>, Status> {
        let request = request.into_inner();
        let replies = chunks(request.keys.len(), request.chunk_size, 1, |range| {
            pb::DeleteBatchResponse {
                items: range
                    .map(|index| pb::DeleteBatchItem {
                        index: index as u32,
                        result: Some(pb::delete_batch_item::Result::Existed(true)),
                    })
                    .collect(),
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(replies))))
    }

    type PipelineStream = ReplyStream<pb::PipelineResponse>;

    async fn pipeline(
        &self,
        request: Request<Streaming<pb::PipelineRequest>>,
    ) -> Result<Response<Self::PipelineStream>, Status> {
        let cache = NoopCache {
            value: self.value.clone(),
        };
        let replies = request.into_inner().map(move |command| {
            use pb::pipeline_request::Command;
            use pb::pipeline_response::Result as Reply;
            let command = command?;
            let result = match &command.command {
                Some(Command::Get(_)) => Reply::Get(cache.get()),
                Some(Command::GetBatch(batch)) => {
                    Reply::GetBatch(batch_values(&cache.value, 0..batch.keys.len()))
                }
                Some(Command::Set(_)) => Reply::Set(set_response()),
                Some(Command::Increment(increment)) => {
                    Reply::Increment(increment_response(increment))
                }
                _ => Reply::Error(tonic_types::Status {
                    code: Code::Unimplemented as i32,
                    message:
                        "the no-op benchmark server runs only get, get_batch, set and increment"
                            .to_owned(),
                    details: Vec::new(),
                }),
            };
            Ok(pb::PipelineResponse {
                id: command.id,
                result: Some(result),
            })
        });
        Ok(Response::new(Box::pin(replies)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_chunked_like_the_real_servers() {
        let sizes = |count, chunk_size, item_bytes| -> Vec<usize> {
            chunks(count, chunk_size, item_bytes, |range| range.len())
                .into_iter()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(sizes(2500, 0, 64), [1000, 1000, 500]);
        assert_eq!(sizes(5, 2, 64), [2, 2, 1]);
        assert_eq!(sizes(0, 0, 64), Vec::<usize>::new());
        // 2 KiB values: a 1 MiB reply holds 512 of them.
        assert_eq!(sizes(1000, 0, 2048), [512, 488]);
    }
}
