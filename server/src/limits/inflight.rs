//! Bytes of request messages the server holds, from their first byte until they are handled.
//!
//! tonic reads a request body as fast as the client sends it and keeps the
//! bytes until the message they belong to is complete, releasing HTTP/2
//! flow-control credit as it goes; so the windows alone bound nothing, and
//! one connection with many unfinished large messages could make the server
//! hold streams × message size. Every request body therefore passes
//! through a [`MeteredBody`], which reads each gRPC message's 5-byte prefix
//! as it arrives and, before any byte of the message is buffered:
//! - refuses a message longer than the largest the server accepts with
//!   INVALID_ARGUMENT, naming the limit (tonic would answer OUT_OF_RANGE
//!   only once it had buffered the prefix's worth);
//! - reserves the message's length from its connection's budget and from
//!   the server's, and refuses it with RESOURCE_EXHAUSTED when either would
//!   pass its limit.
//!
//! A whole message is still held while it is decoded and handled: its
//! bytes are the value the handler stores (decoding slices it out of the
//! receive buffer rather than copying it). So its reservation is kept
//! until the handler is done with it, which the body sees in one of two
//! ways:
//! - the body is read again for more data, and more arrives or the call's
//!   reply is ready (so the reader is a stream's handler, which reads its
//!   messages one at a time): the handler has taken the message and asked
//!   for the next;
//! - the body ends (or is dropped) with the message the last one: it is
//!   then held until the call's reply is ready, which for a unary call is
//!   when the handler has returned (tonic reads a unary body to its end,
//!   and drops it, before the handler runs).
//!
//! By then the value is in the engine, charged to the memory budget, or
//! dropped. A refused message fails its call alone; the connection and its
//! other calls go on.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

use super::byte_budget::ByteBudget;
use super::connections::ConnectionInfo;

/// The limits one request body is held to.
#[derive(Debug, Clone)]
pub struct InflightLimits {
    /// The server-wide budget.
    pub server: Arc<ByteBudget>,
    /// The budget of each connection, in bytes.
    pub per_connection: u64,
    /// The longest message accepted, in bytes.
    pub max_message: u64,
}

/// Meters the request bodies of the services it wraps.
#[derive(Debug, Clone)]
pub struct InflightLayer {
    limits: InflightLimits,
}

impl InflightLayer {
    /// Meters every request body against `limits`.
    pub fn new(limits: InflightLimits) -> Self {
        Self { limits }
    }
}

impl<S> Layer<S> for InflightLayer {
    type Service = InflightService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InflightService {
            inner,
            limits: self.limits.clone(),
        }
    }
}

/// The service [`InflightLayer`] builds.
#[derive(Debug, Clone)]
pub struct InflightService<S> {
    inner: S,
    limits: InflightLimits,
}

impl<S> Service<http::Request<tonic::body::Body>> for InflightService<S>
where
    S: Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = HoldUntilReply<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        // A request that reached the server without a connection of ours
        // (an embedder's own transport) gets a budget of its own.
        let connection = request
            .extensions()
            .get::<ConnectionInfo>()
            .map(|connection| Arc::clone(connection.inflight()))
            .unwrap_or_else(|| Arc::new(ByteBudget::new(self.limits.per_connection)));
        let held = Arc::new(HeldMessage::new(
            connection,
            Arc::clone(&self.limits.server),
        ));
        let limits = self.limits.clone();
        let body_held = Arc::clone(&held);
        let one_message = !CLIENT_STREAMS.contains(&request.uri().path());
        let call = self.inner.call(request.map(|body| {
            let mut body = MeteredBody::new(body, body_held, limits);
            body.one_message = one_message;
            tonic::body::Body::new(body)
        }));
        HoldUntilReply { call, held }
    }
}

/// The reservations of a call's whole messages that its handler may still
/// be using, shared by its body and its call.
#[derive(Debug)]
pub struct HeldMessage {
    connection: Arc<ByteBudget>,
    server: Arc<ByteBudget>,
    state: Mutex<Held>,
}

/// What a [`HeldMessage`] holds.
#[derive(Debug, Default)]
struct Held {
    /// The last whole message, until the body is read again.
    by_body: u64,
    /// The message the body ended with, until the reply is ready.
    until_reply: u64,
    /// Whether the call's reply is ready.
    replied: bool,
}

impl HeldMessage {
    fn new(connection: Arc<ByteBudget>, server: Arc<ByteBudget>) -> Self {
        Self {
            connection,
            server,
            state: Mutex::default(),
        }
    }

    fn with<T>(&self, change: impl FnOnce(&mut Held) -> T) -> T {
        change(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A message of `bytes` (already reserved) is whole.
    fn message_whole(&self, bytes: u64) {
        let previous = self.with(|held| std::mem::replace(&mut held.by_body, bytes));
        self.release(previous);
    }

    /// The body is read for more data: the handler is done with the last
    /// whole message.
    fn body_read_again(&self) {
        let previous = self.with(|held| std::mem::take(&mut held.by_body));
        self.release(previous);
    }

    /// The body is read for more data and none has come: if the reply is
    /// ready, the reader is the handler of a stream, done with the last
    /// whole message.
    fn body_read_again_if_replied(&self) {
        let previous = self.with(|held| {
            if held.replied {
                std::mem::take(&mut held.by_body)
            } else {
                0
            }
        });
        self.release(previous);
    }

    /// The body has ended or is dropped: its last whole message is held
    /// until the reply is ready, if it is not yet.
    fn body_ended(&self) {
        let free = self.with(|held| {
            let last = std::mem::take(&mut held.by_body);
            if held.replied {
                last
            } else {
                held.until_reply += last;
                0
            }
        });
        self.release(free);
    }

    /// The call's reply is ready: the handler is done with every message.
    fn replied(&self) {
        let free = self.with(|held| {
            held.replied = true;
            std::mem::take(&mut held.until_reply)
        });
        self.release(free);
    }

    /// Gives back `bytes` reserved by the body.
    fn release(&self, bytes: u64) {
        if bytes > 0 {
            self.connection.release(bytes);
            self.server.release(bytes);
        }
    }
}

impl Drop for HeldMessage {
    fn drop(&mut self) {
        let held = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let bytes = held.by_body + held.until_reply;
        self.release(bytes);
    }
}

pin_project_lite::pin_project! {
    /// The future of a metered call: the call's own, telling the call's
    /// [`HeldMessage`] when the reply is ready.
    #[derive(Debug)]
    pub struct HoldUntilReply<F> {
        #[pin]
        call: F,
        held: Arc<HeldMessage>,
    }
}

impl<F: Future> Future for HoldUntilReply<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let reply = std::task::ready!(this.call.poll(cx));
        this.held.replied();
        Poll::Ready(reply)
    }
}

/// The methods whose requests are streams; every other method takes exactly
/// one request message.
const CLIENT_STREAMS: &[&str] = &[
    "/shoal.v1.BatchService/SetBatch",
    "/shoal.v1.BatchService/Pipeline",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// A request body whose messages are reserved against their connection's
/// and the server's budgets before they are buffered.
#[derive(Debug)]
pub struct MeteredBody<B> {
    inner: B,
    /// The call's last whole message; its connection's budget.
    held: Arc<HeldMessage>,
    limits: InflightLimits,
    /// The prefix of the next message, as far as it has arrived; read
    /// while no message is under way (`remaining` is 0).
    prefix: [u8; 5],
    prefix_read: usize,
    /// Bytes of the current message still to come.
    remaining: u64,
    /// Bytes reserved for the message under way.
    reserved: u64,
    /// Set once a message was refused: the body then ends with that error.
    failed: bool,
    /// Whether the method takes exactly one message (not a stream).
    one_message: bool,
    /// Whether a message has begun.
    began: bool,
}

impl<B> MeteredBody<B> {
    fn new(inner: B, held: Arc<HeldMessage>, limits: InflightLimits) -> Self {
        Self {
            inner,
            held,
            limits,
            prefix: [0; 5],
            prefix_read: 0,
            remaining: 0,
            reserved: 0,
            failed: false,
            one_message: false,
            began: false,
        }
    }

    /// Follows the messages in `data`, reserving each as its prefix
    /// completes and holding it once its last byte has passed.
    fn meter(&mut self, data: &Bytes) -> Result<(), Status> {
        let mut rest: &[u8] = data;
        while !rest.is_empty() {
            if self.remaining == 0 {
                let take = (5 - self.prefix_read).min(rest.len());
                self.prefix[self.prefix_read..self.prefix_read + take]
                    .copy_from_slice(&rest[..take]);
                self.prefix_read += take;
                rest.advance(take);
                if self.prefix_read == 5 {
                    self.prefix_read = 0;
                    let length = u64::from(u32::from_be_bytes([
                        self.prefix[1],
                        self.prefix[2],
                        self.prefix[3],
                        self.prefix[4],
                    ]));
                    self.begin_message(length)?;
                }
                continue;
            }
            let take = self.remaining.min(rest.len() as u64);
            rest.advance(take as usize);
            self.remaining -= take;
            if self.remaining == 0 {
                self.finish_message();
            }
        }
        Ok(())
    }

    /// The error for a body that ended inside a message, or without the
    /// one message its method takes, if it did. tonic would answer INTERNAL
    /// ("Unexpected EOF"), but the fault is the client's.
    fn truncated(&self) -> Option<Status> {
        if self.one_message && !self.began && self.prefix_read == 0 {
            // tonic's "Missing request message." is INTERNAL too.
            return Some(Status::invalid_argument(
                "the request carried no message; this method takes exactly one",
            ));
        }
        if self.remaining > 0 {
            return Some(Status::invalid_argument(format!(
                "the request ended inside a message: {} of its {} bytes arrived",
                self.reserved - self.remaining,
                self.reserved
            )));
        }
        (self.prefix_read > 0).then(|| {
            Status::invalid_argument(format!(
                "the request ended inside a message prefix: {} of its 5 bytes arrived",
                self.prefix_read
            ))
        })
    }

    fn begin_message(&mut self, length: u64) -> Result<(), Status> {
        // tonic answers INTERNAL for a flag that is neither 0 nor 1; the
        // fault is the client's. (A flag of 1 without `grpc-encoding` stays
        // INTERNAL, as the gRPC compression spec requires.)
        if self.prefix[0] > 1 {
            return Err(Status::invalid_argument(format!(
                "request message has compressed-flag {}: only 0 and 1 exist",
                self.prefix[0]
            )));
        }
        self.began = true;
        let max = self.limits.max_message;
        if length > max {
            return Err(Status::invalid_argument(format!(
                "request message is {length} bytes, over the limit of {max} bytes \
                 (engine.max_value_bytes plus the largest key and framing)"
            )));
        }
        let connection = &self.held.connection;
        if !connection.try_reserve(length) {
            return Err(Status::resource_exhausted(format!(
                "requests in flight on this connection would hold more than {} bytes \
                 (grpc.max_inflight_bytes_per_connection); retry when earlier calls finish",
                connection.limit()
            )));
        }
        if !self.limits.server.try_reserve(length) {
            connection.release(length);
            return Err(Status::resource_exhausted(format!(
                "requests in flight would hold more than {} bytes on this server \
                 (grpc.max_inflight_bytes); retry shortly",
                self.limits.server.limit()
            )));
        }
        self.reserved = length;
        self.remaining = length;
        if length == 0 {
            self.finish_message();
        }
        Ok(())
    }

    /// The message under way is whole: it is held while the handler may
    /// still use it.
    fn finish_message(&mut self) {
        self.held.message_whole(std::mem::take(&mut self.reserved));
    }

    /// Gives back what the message under way reserved.
    fn release(&mut self) {
        self.held.release(std::mem::take(&mut self.reserved));
    }
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        self.release();
        self.held.body_ended();
    }
}

impl<B> Body for MeteredBody<B>
where
    B: Body<Data = Bytes, Error = Status> + Unpin,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let Poll::Ready(polled) = Pin::new(&mut self.inner).poll_frame(cx) else {
            // A stream's handler waits for its next message. (Before the
            // reply, the reader is tonic reading a unary body to its end:
            // the message is not handled yet.)
            self.held.body_read_again_if_replied();
            return Poll::Pending;
        };
        match &polled {
            Some(Ok(frame)) => match frame.data_ref() {
                Some(data) if !data.is_empty() => {
                    self.held.body_read_again();
                    if let Err(status) = self.meter(data) {
                        self.failed = true;
                        self.release();
                        return Poll::Ready(Some(Err(status)));
                    }
                }
                Some(_) => {}
                None => self.held.body_ended(),
            },
            Some(Err(_)) => self.held.body_read_again(),
            None => {
                if let Some(status) = self.truncated() {
                    self.failed = true;
                    self.release();
                    self.held.body_ended();
                    return Poll::Ready(Some(Err(status)));
                }
                self.held.body_ended();
            }
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(server: u64, max_message: u64) -> InflightLimits {
        InflightLimits {
            server: Arc::new(ByteBudget::new(server)),
            per_connection: 1 << 30,
            max_message,
        }
    }

    fn held(connection: &Arc<ByteBudget>, limits: &InflightLimits) -> Arc<HeldMessage> {
        Arc::new(HeldMessage::new(
            Arc::clone(connection),
            Arc::clone(&limits.server),
        ))
    }

    fn prefix(length: u32) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes
    }

    #[test]
    fn a_stream_message_is_held_from_its_prefix_until_the_body_is_read_again() {
        let limits = limits(100, 1000);
        let connection = Arc::new(ByteBudget::new(1000));
        let call = held(&connection, &limits);
        let mut body = MeteredBody::new((), Arc::clone(&call), limits.clone());
        // The prefix arrives split across frames.
        body.meter(&Bytes::from(prefix(60)[..2].to_vec())).unwrap();
        assert_eq!(limits.server.used(), 0);
        body.meter(&Bytes::from(prefix(60)[2..].to_vec())).unwrap();
        assert_eq!((limits.server.used(), connection.used()), (60, 60));
        body.meter(&Bytes::from(vec![1; 59])).unwrap();
        assert_eq!(limits.server.used(), 60);
        // The last byte, and the next message's prefix, in one frame: the
        // first message is still held while its handler may use it.
        let mut frame = vec![1];
        frame.extend(prefix(30));
        frame.extend([2; 10]);
        body.meter(&Bytes::from(frame)).unwrap();
        assert_eq!((limits.server.used(), connection.used()), (90, 90));
        // The handler asks for more: it is done with the first.
        call.body_read_again();
        assert_eq!((limits.server.used(), connection.used()), (30, 30));
        body.meter(&Bytes::from(vec![2; 20])).unwrap();
        assert_eq!(limits.server.used(), 30, "the second is whole and held");
        call.body_read_again_if_replied();
        assert_eq!(limits.server.used(), 30, "no reply yet: a unary body's end");
        call.replied();
        call.body_read_again_if_replied();
        assert_eq!(limits.server.used(), 0, "a stream's handler waits for more");
        body.meter(&Bytes::from(prefix(10))).unwrap();
        drop(body);
        assert_eq!(
            (limits.server.used(), connection.used()),
            (0, 0),
            "the body ended after the reply: nothing is held"
        );
        drop(call);
    }

    #[test]
    fn a_unary_message_is_held_until_the_reply_is_ready() {
        let limits = limits(100, 1000);
        let connection = Arc::new(ByteBudget::new(1000));
        let call = held(&connection, &limits);
        let mut body = MeteredBody::new((), Arc::clone(&call), limits.clone());
        let mut message = prefix(50);
        message.extend([1; 50]);
        body.meter(&Bytes::from(message)).unwrap();
        // tonic reads the body to its end and drops it before the handler.
        drop(body);
        assert_eq!(limits.server.used(), 50, "held while the handler runs");
        call.replied();
        assert_eq!((limits.server.used(), connection.used()), (0, 0));
    }

    #[test]
    fn a_body_dropped_mid_message_gives_its_reservation_back() {
        let limits = limits(100, 1000);
        let connection = Arc::new(ByteBudget::new(1000));
        let call = held(&connection, &limits);
        let mut body = MeteredBody::new((), Arc::clone(&call), limits.clone());
        body.meter(&Bytes::from(prefix(80))).unwrap();
        body.meter(&Bytes::from(vec![1; 40])).unwrap();
        drop(body);
        assert_eq!((limits.server.used(), connection.used()), (0, 0));
        drop(call);
    }

    #[test]
    fn a_call_dropped_before_its_reply_gives_everything_back() {
        let limits = limits(100, 1000);
        let connection = Arc::new(ByteBudget::new(1000));
        let call = held(&connection, &limits);
        let mut body = MeteredBody::new((), Arc::clone(&call), limits.clone());
        let mut message = prefix(50);
        message.extend([1; 50]);
        body.meter(&Bytes::from(message)).unwrap();
        drop(body);
        drop(call);
        assert_eq!((limits.server.used(), connection.used()), (0, 0));
    }

    #[test]
    fn messages_over_a_budget_or_the_size_limit_are_refused() {
        let limits = limits(100, 1000);
        let connection = Arc::new(ByteBudget::new(1000));
        let mut first = MeteredBody::new((), held(&connection, &limits), limits.clone());
        first.meter(&Bytes::from(prefix(80))).unwrap();
        let mut second = MeteredBody::new((), held(&connection, &limits), limits.clone());
        let refused = second.meter(&Bytes::from(prefix(30))).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("grpc.max_inflight_bytes"));
        assert_eq!(connection.used(), 80, "a refusal leaves nothing reserved");
        let too_long = second.meter(&Bytes::from(prefix(1001))).unwrap_err();
        assert_eq!(too_long.code(), tonic::Code::InvalidArgument);
        assert!(too_long.message().contains("1000 bytes"));
        assert_eq!(limits.server.refused(), 1);
    }
}
