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
//!
//! The layer also holds calls to their deadline (the client's
//! `grpc-timeout`, capped by `grpc.request_timeout_secs`): a handler that
//! has not answered by then is answered DEADLINE_EXCEEDED, and a reply
//! still streaming then ends with DEADLINE_EXCEEDED, so that a reader that
//! stalls cannot hold a collection's snapshot for ever (tonic's own request
//! timeout, which the server does not use, ends once the reply's headers
//! are out, and arms a timer for every call). Calls
//! that are sessions by design (Watch, Pipeline, the health Watch and
//! reflection) have no deadline; instead, they end with UNAVAILABLE as soon
//! as the server begins shutting down, so that draining waits only for
//! calls that finish on their own.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::watch;
use tokio::time::Sleep;
use tonic::{Code, Status};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;

use crate::limits::connections::{ConnectionInfo, OpenStream};
use crate::limits::traffic::Traffic;
use crate::observe::rpc_stats::{MethodId, RpcStats};
use crate::observe::telemetry;

/// Observes every call of the services it wraps.
#[derive(Debug, Clone)]
pub struct RpcLayer {
    stats: Arc<RpcStats>,
    traffic: Arc<Traffic>,
    server_timeout: Option<Duration>,
    stopping: Option<watch::Receiver<bool>>,
}

/// Calls that are sessions rather than requests: no deadline, and ended at
/// shutdown.
const SESSIONS: &[&str] = &[
    "/shoal.v1.WatchService/Watch",
    "/shoal.v1.BatchService/Pipeline",
    "/shoal.v1.ClusterService/WatchTopology",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// Calls whose replies stream, and whose handlers read the deadline
/// ([`CallDeadline`]) to give back what a reply holds once it passes.
/// Unary calls do not carry it, which spares each of them an insertion into
/// the request's extensions: an allocation, and the map's growth when the
/// caller's rights make a fourth entry.
const STREAMED_REPLIES: &[&str] = &[
    "/shoal.v1.BatchService/GetBatch",
    "/shoal.v1.BatchService/SetBatch",
    "/shoal.v1.BatchService/DeleteBatch",
    "/shoal.v1.CacheService/Scan",
    "/shoal.v1.CollectionService/HGetAll",
    "/shoal.v1.CollectionService/LRange",
    "/shoal.v1.CollectionService/SMembers",
    "/shoal.v1.CollectionService/SInter",
    "/shoal.v1.CollectionService/SUnion",
    "/shoal.v1.CollectionService/SDiff",
];

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
            stopping: None,
        }
    }

    /// Ends session calls (see the module's documentation) with UNAVAILABLE
    /// once `stopping` turns true.
    pub fn ending_sessions_on(mut self, stopping: watch::Receiver<bool>) -> Self {
        self.stopping = Some(stopping);
        self
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
    ResBody: Default,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = ObservedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let call = Call::start(&self.layer, &request);
        if let ReplyBound::Deadline(Some(deadline)) = &call.bound
            && STREAMED_REPLIES.contains(&request.uri().path())
        {
            request.extensions_mut().insert(CallDeadline(*deadline));
        }
        let inner = {
            let _entered = call.span.enter();
            self.inner.call(request)
        };
        ObservedFuture {
            inner,
            call: Some(call),
            timer: None,
        }
    }
}

/// One call in flight; recorded when dropped.
#[derive(Debug)]
struct Call {
    stats: Arc<RpcStats>,
    traffic: Arc<Traffic>,
    method: MethodId,
    started: tokio::time::Instant,
    /// The deadline the call runs under, if any.
    deadline: Option<Duration>,
    /// How a streamed reply is bounded.
    bound: ReplyBound,
    span: Span,
    code: Option<Code>,
    /// Counts the call open on its connection, which is not idle meanwhile.
    _connection: Option<OpenStream>,
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
        // One clock read serves the latency and the deadline.
        let started = tokio::time::Instant::now();
        let bound = if SESSIONS.contains(&request.uri().path()) {
            ReplyBound::Session(layer.stopping.clone())
        } else {
            ReplyBound::Deadline(deadline.map(|deadline| started + deadline))
        };
        layer.traffic.stream_opened();
        let connection = request
            .extensions()
            .get::<ConnectionInfo>()
            .map(ConnectionInfo::open_stream);
        Self {
            stats,
            traffic: Arc::clone(&layer.traffic),
            method,
            started,
            deadline,
            bound,
            span,
            code: None,
            _connection: connection,
        }
    }

    /// When the handler must have answered by: the call's deadline, unless
    /// it is a session.
    fn handler_deadline(&self) -> Option<tokio::time::Instant> {
        match self.bound {
            ReplyBound::Deadline(at) => at,
            ReplyBound::Session(_) => None,
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
    /// The response future of [`RpcService`]: the handler's, held to the
    /// call's deadline.
    ///
    /// The deadline's timer is armed only if the handler does not answer
    /// at once. Nearly every unary handler answers on its first poll (an
    /// engine call), so most calls never touch the runtime's timer wheel.
    /// Dropping tonic's timeout layer, which arms one for every call, and
    /// looking headers up by parsed name saved about 1 200 instructions of
    /// 60 600 a unary Get (callgrind).
    #[derive(Debug)]
    pub struct ObservedFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

/// The message of a call whose handler had not answered by its deadline.
const HANDLER_DEADLINE_MESSAGE: &str =
    "no answer by the call's deadline (grpc-timeout, or grpc.request_timeout_secs)";

impl<F, B, E> Future for ObservedFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    B: Default,
{
    type Output = Result<http::Response<ObservedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = {
            let _entered = this.call.as_ref().map(|call| call.span.enter());
            this.inner.poll(cx)
        };
        let result = match polled {
            Poll::Ready(result) => result,
            Poll::Pending => {
                let Some(at) = this.call.as_ref().and_then(Call::handler_deadline) else {
                    return Poll::Pending;
                };
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                ready!(timer.as_mut().poll(cx));
                if let Some(call) = this.call.take() {
                    call.end(Code::DeadlineExceeded);
                }
                let response = Status::deadline_exceeded(HANDLER_DEADLINE_MESSAGE).into_http();
                return Poll::Ready(Ok(response.map(|inner| ObservedBody {
                    inner: Some(inner),
                    call: None,
                    cutoff: None,
                })));
            }
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
                Ok(response.map(|inner| ObservedBody {
                    inner: Some(inner),
                    call,
                    cutoff: None,
                }))
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

/// What ends a streamed reply early.
/// The message of a streamed reply ended at its call's deadline.
pub(crate) const STREAM_DEADLINE_MESSAGE: &str = "the reply was still streaming at the call's \
     deadline (grpc-timeout, or grpc.request_timeout_secs)";

/// The instant a call's deadline passes (its `grpc-timeout`, capped by the
/// server's request timeout), put in the request's extensions of the calls
/// whose replies stream (`STREAMED_REPLIES`): a streamed reply that holds memory gives it back then, even if
/// the client has stopped reading and the reply is never polled again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallDeadline(pub tokio::time::Instant);

impl CallDeadline {
    /// The deadline of `request`, if it has one.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<tokio::time::Instant> {
        request
            .extensions()
            .get::<Self>()
            .map(|deadline| deadline.0)
    }
}

#[derive(Debug)]
enum ReplyBound {
    /// The call's deadline, if it has one.
    Deadline(Option<tokio::time::Instant>),
    /// A session's end: the server's shutdown, if it tells.
    Session(Option<watch::Receiver<bool>>),
}

/// What a reply waits on, armed once it first waits for its inner body.
enum Cutoff {
    Deadline(Pin<Box<Sleep>>),
    Stop(Pin<Box<dyn Future<Output = ()> + Send>>),
}

impl std::fmt::Debug for Cutoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cutoff::Deadline(_) => "Cutoff::Deadline",
            Cutoff::Stop(_) => "Cutoff::Stop",
        })
    }
}

impl Cutoff {
    /// The cutoff for a reply bounded by `bound`, if any.
    fn arm(bound: &ReplyBound) -> Option<Self> {
        match bound {
            ReplyBound::Deadline(at) => {
                at.map(|at| Cutoff::Deadline(Box::pin(tokio::time::sleep_until(at))))
            }
            ReplyBound::Session(stopping) => {
                let mut stopping = stopping.clone()?;
                Some(Cutoff::Stop(Box::pin(async move {
                    // A dropped sender means the server is gone: end too.
                    let _ = stopping.wait_for(|stopping| *stopping).await;
                })))
            }
        }
    }

    /// The status the reply ends with once the cutoff is reached.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<(Code, &'static str)> {
        match self {
            Cutoff::Deadline(sleep) => sleep
                .as_mut()
                .poll(cx)
                .map(|()| (Code::DeadlineExceeded, STREAM_DEADLINE_MESSAGE)),
            Cutoff::Stop(stop) => stop
                .as_mut()
                .poll(cx)
                .map(|()| (Code::Unavailable, "the server is shutting down")),
        }
    }
}

pin_project! {
    /// A response body that ends its call with the status in its trailers,
    /// and ends early at its [`ReplyBound`].
    #[derive(Debug)]
    pub struct ObservedBody<B> {
        #[pin]
        inner: Option<B>,
        call: Option<Call>,
        cutoff: Option<Cutoff>,
    }
}

impl<B: Body> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        let polled = {
            let _entered = this.call.as_ref().map(|call| call.span.enter());
            inner.poll_frame(cx)
        };
        let polled = match polled {
            Poll::Ready(polled) => polled,
            Poll::Pending => {
                // Only a reply that waits needs a cutoff: unary replies are
                // ready at once and never arm one.
                if this.cutoff.is_none()
                    && let Some(call) = this.call.as_ref()
                {
                    *this.cutoff = Cutoff::arm(&call.bound);
                }
                let Some(cutoff) = this.cutoff.as_mut() else {
                    return Poll::Pending;
                };
                let (code, message) = std::task::ready!(cutoff.poll(cx));
                this.inner.set(None);
                if let Some(call) = this.call.take() {
                    call.end(code);
                }
                return Poll::Ready(Some(Ok(Frame::trailers(status_trailers(code, message)))));
            }
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
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// Header names read on every call, parsed once: a lookup by `&str`
/// parses and hashes the name each time.
const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: http::HeaderName = http::HeaderName::from_static("grpc-message");
const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// Trailers carrying `code` and `message`.
fn status_trailers(code: Code, message: &'static str) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert(GRPC_STATUS, http::HeaderValue::from(code as i32));
    trailers.insert(GRPC_MESSAGE, http::HeaderValue::from_static(message));
    trailers
}

/// The `grpc-status` in `headers`, if any.
fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    // A reply's headers and trailers hold two or three entries: walking
    // them is cheaper than hashing the name for a lookup, and this runs
    // twice a call.
    let value = if headers.len() <= 8 {
        headers
            .iter()
            .find_map(|(name, value)| (*name == GRPC_STATUS).then_some(value))?
    } else {
        headers.get(GRPC_STATUS)?
    };
    match *value.as_bytes() {
        [digit @ b'0'..=b'9'] => Some(Code::from(i32::from(digit - b'0'))),
        [tens @ b'0'..=b'9', units @ b'0'..=b'9'] => Some(Code::from(
            i32::from(tens - b'0') * 10 + i32::from(units - b'0'),
        )),
        _ => None,
    }
}

/// The `grpc-timeout` in `headers`, if any and well formed: up to eight
/// digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(GRPC_TIMEOUT)?.to_str().ok()?;
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

    /// Every method of the API whose reply streams is a session or carries
    /// its deadline: a streaming handler added later cannot miss it.
    #[test]
    fn every_streamed_reply_carries_its_deadline() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(shoal_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut streamed: Vec<String> = Vec::new();
        for file in set.file.iter().filter(|file| file.package() == "shoal.v1") {
            for service in &file.service {
                for method in service.method.iter().filter(|m| m.server_streaming()) {
                    streamed.push(format!("/shoal.v1.{}/{}", service.name(), method.name()));
                }
            }
        }
        streamed.retain(|path| !SESSIONS.contains(&path.as_str()));
        streamed.sort();
        let mut listed: Vec<String> = STREAMED_REPLIES.iter().map(|p| p.to_string()).collect();
        listed.sort();
        assert_eq!(streamed, listed);
    }

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

    /// A handler that never answers.
    #[derive(Clone)]
    struct NeverAnswers;

    impl Service<http::Request<()>> for NeverAnswers {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Pending<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            std::future::pending()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_that_misses_the_deadline_is_answered_deadline_exceeded() {
        let path = "/shoal.v1.CacheService/Get";
        let stats = Arc::new(RpcStats::new(&[path]));
        let layer = RpcLayer::new(
            Arc::clone(&stats),
            Arc::default(),
            Some(Duration::from_secs(60)),
        );
        let mut service = layer.layer(NeverAnswers);
        let request = http::Request::builder()
            .uri(path)
            .header("grpc-timeout", "2S")
            .body(())
            .expect("request");
        let started = tokio::time::Instant::now();
        let response = service.call(request).await.expect("a response");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(2),
            "the client's deadline"
        );
        assert_eq!(
            grpc_status(response.headers()),
            Some(Code::DeadlineExceeded)
        );
        drop(response);
        let get = stats
            .snapshot()
            .into_iter()
            .find(|method| method.method == path);
        assert_eq!(
            get.map(|method| method.by_code),
            Some(vec![(Code::DeadlineExceeded, 1)])
        );
    }

    #[test]
    fn reads_grpc_status() {
        assert_eq!(grpc_status(&headers("grpc-status", "0")), Some(Code::Ok));
        assert_eq!(
            grpc_status(&headers("grpc-status", "5")),
            Some(Code::NotFound)
        );
        assert_eq!(
            grpc_status(&headers("grpc-status", "16")),
            Some(Code::Unauthenticated)
        );
        assert_eq!(grpc_status(&headers("grpc-status", "x")), None);
        assert_eq!(grpc_status(&headers("grpc-status", "123")), None);
        assert_eq!(grpc_status(&HeaderMap::new()), None);
        let mut many = HeaderMap::new();
        for at in 0..12 {
            many.insert(
                http::HeaderName::try_from(format!("x-{at}")).unwrap(),
                http::HeaderValue::from(at),
            );
        }
        many.insert(GRPC_STATUS, http::HeaderValue::from(14));
        assert_eq!(grpc_status(&many), Some(Code::Unavailable));
    }
}
