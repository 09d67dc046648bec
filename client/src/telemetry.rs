//! A span per call, and the caller's trace carried to the server.
//!
//! Every request a [`Client`](crate::Client) sends goes through
//! [`TracedChannel`]. It opens an INFO span named after the method
//! (`shoal.v1.CacheService/Get`), a child of the caller's current span, with
//! the OpenTelemetry RPC conventions (`otel.kind = "client"`, `rpc.system`,
//! `rpc.service`, `rpc.method`, and `rpc.grpc.status_code` once known), and
//! writes that span's context into the request metadata as a W3C
//! `traceparent`, so the server's span joins the caller's trace. The span
//! ends with the call: for a stream, when its status arrives.
//!
//! The spans reach an OpenTelemetry backend when the application installs a
//! `tracing-opentelemetry` layer; without one, no `traceparent` is sent, and
//! when no subscriber listens at all the span is never built. A retried call
//! gets one span per attempt.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_http::HeaderInjector;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use pin_project_lite::pin_project;
use tonic::Code;
use tower_service::Service;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::pool::ChannelPool;

/// The channel every generated client of a [`Client`](crate::Client) speaks
/// through: the client's connections, with each call traced.
#[derive(Clone)]
pub struct TracedChannel {
    inner: ChannelPool,
    /// The token's header and value ([`TokenHeader`](crate::TokenHeader)).
    /// The `shoal-token` value is not marked sensitive, so that HTTP/2 may
    /// index it, and its own `Debug` would print it: this type's `Debug`
    /// prints the header name only.
    authorization: Option<(http::HeaderName, http::HeaderValue)>,
}

impl std::fmt::Debug for TracedChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedChannel")
            .field("inner", &self.inner)
            .field(
                "token_header",
                &self.authorization.as_ref().map(|(name, _)| name),
            )
            .finish()
    }
}

impl TracedChannel {
    /// Traces the calls made on `pool`, each carrying `authorization`.
    pub(crate) fn new(
        pool: ChannelPool,
        authorization: Option<(http::HeaderName, http::HeaderValue)>,
    ) -> Self {
        Self {
            inner: pool,
            authorization,
        }
    }
}

impl Service<http::Request<tonic::body::Body>> for TracedChannel {
    type Response = http::Response<TracedBody<tonic::body::Body>>;
    type Error = <ChannelPool as Service<http::Request<tonic::body::Body>>>::Error;
    type Future = TracedFuture<<ChannelPool as Service<http::Request<tonic::body::Body>>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        if let Some((name, value)) = &self.authorization {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let span = call_span(request.uri().path());
        if !span.is_disabled() {
            TraceContextPropagator::new()
                .inject_context(&span.context(), &mut HeaderInjector(request.headers_mut()));
        }
        let inner = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        TracedFuture {
            inner,
            span: Some(span),
        }
    }
}

/// The span of one call to `path` (`/shoal.v1.CacheService/Get`).
fn call_span(path: &str) -> Span {
    let name = path.strip_prefix('/').unwrap_or(path);
    let (service, method) = name.split_once('/').unwrap_or((name, ""));
    tracing::info_span!(
        target: "shoal_client",
        "rpc",
        otel.name = name,
        otel.kind = "client",
        otel.status_code = Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = Empty,
    )
}

/// Records how the call of `span` ended; any code but OK fails the span.
fn record_status(span: &Span, code: Code) {
    span.record("rpc.grpc.status_code", code as i64);
    if code != Code::Ok {
        span.record("otel.status_code", "ERROR");
    }
}

pin_project! {
    /// The response future of [`TracedChannel`].
    #[derive(Debug)]
    pub struct TracedFuture<F> {
        #[pin]
        inner: F,
        span: Option<Span>,
    }
}

impl<F, B, E> Future for TracedFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<TracedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.as_ref().map(Span::enter);
            ready!(this.inner.poll(cx))
        };
        let span = this.span.take();
        Poll::Ready(match result {
            Ok(response) => {
                // A call that failed before any message has its status in
                // the headers ("trailers-only"); otherwise it is in the
                // trailers, at the end of the body.
                let span = match (span, grpc_status(response.headers())) {
                    (Some(span), Some(code)) => {
                        record_status(&span, code);
                        None
                    }
                    (span, _) => span,
                };
                Ok(response.map(|inner| TracedBody { inner, span }))
            }
            Err(error) => {
                if let Some(span) = span {
                    record_status(&span, Code::Unavailable);
                }
                Err(error)
            }
        })
    }
}

pin_project! {
    /// A response body whose span ends with the status in its trailers.
    #[derive(Debug)]
    pub struct TracedBody<B> {
        #[pin]
        inner: B,
        span: Option<Span>,
    }
}

impl<B: Body> Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = {
            let _entered = this.span.as_ref().map(Span::enter);
            ready!(this.inner.poll_frame(cx))
        };
        let code = match &polled {
            Some(Ok(frame)) => frame
                .trailers_ref()
                .map(|trailers| grpc_status(trailers).unwrap_or(Code::Unknown)),
            Some(Err(_)) | None => Some(Code::Unknown),
        };
        if let Some(code) = code
            && let Some(span) = this.span.take()
        {
            record_status(&span, code);
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The `grpc-status` in `headers`, if any.
fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    value.parse::<i32>().ok().map(Code::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_named_after_the_method() {
        // Without a subscriber the span is disabled: building it is free and
        // nothing is injected.
        let span = call_span("/shoal.v1.CacheService/Get");
        assert!(span.is_disabled());
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", http::HeaderValue::from_static("5"));
        assert_eq!(grpc_status(&headers), Some(Code::NotFound));
    }
}
