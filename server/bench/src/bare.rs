//! A benchmark peer: tonic alone, with nothing of shoal's stack.
//!
//! [`serve_bare`] answers `shoal.v1.CacheService/Get` with a fixed value and
//! `Set` with a fixed acknowledgement, through tonic's own server and prost
//! codec, on tonic's default transport settings: no layers, no metrics, no
//! tracing, no limits, not shoal's codec. It is the floor a unary call can
//! reach on this machine with the library shoal is built on, so `shoal
//! bench -t get` against shoal-server divided by the same against this peer
//! is what shoal's stack (codec, layers, metrics, limits and the cache)
//! leaves of it. ([`crate::noop`] shares that stack and so hides its cost.)
//!
//! Every other method answers UNIMPLEMENTED; `shoal bench` then preloads
//! with unary Sets.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use shoal_proto::v1 as pb;
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::server::{Grpc, NamedService};
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_prost::ProstCodec;
use tower_service::Service;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Serves the bare `CacheService` and gRPC health on `listener` until
/// `shutdown` completes. Every Get answers `value_size` bytes.
///
/// # Errors
/// When the transport fails.
pub async fn serve_bare(
    listener: TcpListener,
    value_size: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let cache = BareCache {
        value: Bytes::from(vec![b'v'; value_size]),
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    health
        .set_service_status(BareCache::NAME, ServingStatus::Serving)
        .await;
    Server::builder()
        .add_service(health_service)
        .add_service(cache)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}

/// `CacheService` routed by hand, as tonic's generated servers do.
#[derive(Debug, Clone)]
struct BareCache {
    value: Bytes,
}

impl NamedService for BareCache {
    const NAME: &'static str = "shoal.v1.CacheService";
}

impl Service<http::Request<Body>> for BareCache {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match request.uri().path() {
            "/shoal.v1.CacheService/Get" => {
                let answer = GetAnswer {
                    value: self.value.clone(),
                };
                Box::pin(async move {
                    let mut grpc = Grpc::new(ProstCodec::<pb::GetResponse, pb::GetRequest>::new());
                    Ok(grpc.unary(answer, request).await)
                })
            }
            "/shoal.v1.CacheService/Set" => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<pb::SetResponse, pb::SetRequest>::new());
                Ok(grpc.unary(SetAnswer, request).await)
            }),
            _ => Box::pin(async {
                Ok(Status::unimplemented("the bare peer answers only Get and Set").into_http())
            }),
        }
    }
}

/// Get's handler: the fixed value, found.
#[derive(Debug, Clone)]
struct GetAnswer {
    value: Bytes,
}

impl Service<Request<pb::GetRequest>> for GetAnswer {
    type Response = Response<pb::GetResponse>;
    type Error = Status;
    type Future = std::future::Ready<Result<Self::Response, Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<pb::GetRequest>) -> Self::Future {
        std::future::ready(Ok(Response::new(pb::GetResponse {
            found: true,
            value: self.value.clone(),
            meta: None,
        })))
    }
}

/// Set's handler: stored, nothing kept.
#[derive(Debug, Clone, Copy)]
struct SetAnswer;

impl Service<Request<pb::SetRequest>> for SetAnswer {
    type Response = Response<pb::SetResponse>;
    type Error = Status;
    type Future = std::future::Ready<Result<Self::Response, Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<pb::SetRequest>) -> Self::Future {
        std::future::ready(Ok(Response::new(pb::SetResponse {
            stored: true,
            version: 1,
            previous: None,
        })))
    }
}
