//! The tower layer every gRPC call passes through.
//!
//! It opens the call's span (see [`crate::observe::telemetry`]) and, once
//! the call has ended, records its final status and latency in
//! [`RpcStats`](crate::observe::rpc_stats::RpcStats) and on the span. Handlers need
//! not do anything, and services added later are covered without a change.
//!
//! A gRPC status travels in one of two places: in the response headers when
//! the call fails before any message (a "trailers-only" response, which is
//! how tonic sends an `Err` from a handler), or in the trailers after the
//! last message. A call therefore ends at the first of: headers carrying
//! `grpc-status`, the trailers, the end or failure of the body, or the
//! response being dropped unfinished (the client went away, or the deadline
//! passed). A stream's latency thus runs until its last message and status
//! went out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tonic::Code;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;

use crate::observe::rpc_stats::{MethodId, RpcStats};
use crate::observe::telemetry;
use crate::observe::traffic::Traffic;

/// Observes every call of the services it wraps.
#[derive(Debug, Clone)]
pub struct RpcLayer {
    stats: Arc<RpcStats>,
    traffic: Arc<Traffic>,
    server_timeout: Option<Duration>,
}

impl RpcLayer {
    /// Records each call's outcome into `stats` and counts it open in
    /// `traffic` while it runs. `server_timeout` is the longest the server
    /// lets any call run: a call dropped past it (or past its own
    /// `grpc-timeout`) is counted as DEADLINE_EXCEEDED rather than
    /// CANCELLED.
    pub fn new(
        stats: Arc<RpcStats>,
        traffic: Arc<Traffic>,
        server_timeout: Option<Duration>,
    ) -> Self {
        Self {
            stats,
            traffic,
            server_timeout,
        }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RpcLayer`] builds.
#[derive(Debug, Clone)]
pub struct RpcService<S> {
    inner: S,
    layer: RpcLayer,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RpcService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = ObservedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let call = Call::start(&self.layer, &request);
        let inner = {
            let _entered = call.span.enter();
            self.inner.call(request)
        };
        ObservedFuture {
            inner,
            call: Some(call),
        }
    }
}

/// One call in flight; recorded when dropped.
#[derive(Debug)]
struct Call {
    stats: Arc<RpcStats>,
    traffic: Arc<Traffic>,
    method: MethodId,
    started: Instant,
    /// The deadline the call runs under, if any.
    deadline: Option<Duration>,
    span: Span,
    code: Option<Code>,
}

impl Call {
    fn start<B>(layer: &RpcLayer, request: &http::Request<B>) -> Self {
        let stats = Arc::clone(&layer.stats);
        let method = stats.method(request.uri().path());
        let span = telemetry::rpc_span(stats.path(method), request.headers());
        let deadline = match (grpc_timeout(request.headers()), layer.server_timeout) {
            (Some(asked), Some(limit)) => Some(asked.min(limit)),
            (asked, limit) => asked.or(limit),
        };
        layer.traffic.stream_opened();
        Self {
            stats,
            traffic: Arc::clone(&layer.traffic),
            method,
            started: Instant::now(),
            deadline,
            span,
            code: None,
        }
    }

    /// Ends the call with `code`.
    fn end(mut self, code: Code) {
        self.code = Some(code);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let code = self.code.unwrap_or_else(|| {
            if self.deadline.is_some_and(|deadline| elapsed >= deadline) {
                Code::DeadlineExceeded
            } else {
                Code::Cancelled
            }
        });
        telemetry::record_status(&self.span, code);
        self.stats.record(self.method, code, elapsed);
        self.traffic.stream_closed();
    }
}

pin_project! {
    /// The response future of [`RpcService`].
    #[derive(Debug)]
    pub struct ObservedFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, B, E> Future for ObservedFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<ObservedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.call.as_ref().map(|call| call.span.enter());
            ready!(this.inner.poll(cx))
        };
        let call = this.call.take();
        Poll::Ready(match result {
            Ok(response) => {
                let call = match (call, grpc_status(response.headers())) {
                    (Some(call), Some(code)) => {
                        call.end(code);
                        None
                    }
                    (call, _) => call,
                };
                Ok(response.map(|inner| ObservedBody { inner, call }))
            }
            Err(error) => {
                if let Some(call) = call {
                    call.end(Code::Unknown);
                }
                Err(error)
            }
        })
    }
}

pin_project! {
    /// A response body that ends its call with the status in its trailers.
    #[derive(Debug)]
    pub struct ObservedBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = {
            let _entered = this.call.as_ref().map(|call| call.span.enter());
            ready!(this.inner.poll_frame(cx))
        };
        let code = match &polled {
            Some(Ok(frame)) => frame
                .trailers_ref()
                .map(|trailers| grpc_status(trailers).unwrap_or(Code::Unknown)),
            // A body that fails or ends without a status never told the
            // client how the call went.
            Some(Err(_)) | None => Some(Code::Unknown),
        };
        if let Some(code) = code
            && let Some(call) = this.call.take()
        {
            call.end(code);
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

/// The `grpc-timeout` in `headers`, if any and well formed: up to eight
/// digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, http::HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn reads_grpc_timeouts_in_every_unit() {
        let timeout = |value| grpc_timeout(&headers("grpc-timeout", value));
        assert_eq!(timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(timeout("9n"), Some(Duration::from_nanos(9)));
        assert_eq!(timeout("123456789S"), None, "more than eight digits");
        assert_eq!(timeout("S"), None);
        assert_eq!(timeout("5x"), None);
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn reads_grpc_status() {
        assert_eq!(grpc_status(&headers("grpc-status", "0")), Some(Code::Ok));
        assert_eq!(
            grpc_status(&headers("grpc-status", "5")),
            Some(Code::NotFound)
        );
        assert_eq!(grpc_status(&headers("grpc-status", "x")), None);
        assert_eq!(grpc_status(&HeaderMap::new()), None);
    }
}
