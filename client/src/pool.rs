//! Several HTTP/2 connections behind one client, used in turn.
//!
//! One HTTP/2 connection multiplexes many calls, but all of them share one
//! TCP stream (one congestion window, head-of-line blocking on loss), one
//! connection task on each side, and the server's limit of concurrent
//! streams per connection (1 024 by default). A client that keeps
//! thousands of calls in flight, or moves large values, goes faster over a
//! few connections. [`ClientBuilder::connections`](crate::ClientBuilder::connections)
//! sets how many.
//!
//! Calls are spread round-robin: each call takes the next connection. tonic
//! also offers `Channel::balance_list`, but it keys connections by URI (so
//! one endpoint gives one connection), connects lazily (so `connect()`
//! could not fail fast), and picks by load with random choices; a fixed
//! set of eagerly connected channels used in turn is simpler to reason
//! about and spreads evenly. Each channel reconnects on its own, and a
//! retried call goes to the next connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::Service;
use tonic::transport::Channel;
use tonic::transport::channel::ResponseFuture;

/// A fixed set of channels to one server, used round-robin. Cloning is
/// cheap; clones share the channels and the turn counter.
#[derive(Debug)]
pub struct ChannelPool {
    channels: Arc<[Channel]>,
    next: Arc<AtomicUsize>,
    /// The channel picked by `poll_ready`, which the next `call` must use:
    /// a channel is ready only once its buffer slot is reserved.
    ready: Option<Channel>,
}

impl ChannelPool {
    /// A pool over `channels`.
    ///
    /// # Panics
    ///
    /// When `channels` is empty.
    pub(crate) fn new(channels: Vec<Channel>) -> Self {
        assert!(!channels.is_empty(), "a channel pool needs a channel");
        Self {
            channels: channels.into(),
            next: Arc::new(AtomicUsize::new(0)),
            ready: None,
        }
    }

    /// How many connections the pool spreads calls over.
    pub(crate) fn len(&self) -> usize {
        self.channels.len()
    }

    /// One pool per connection of this one, for work that must stay on a
    /// connection of its own.
    pub(crate) fn each(&self) -> Vec<Self> {
        self.channels
            .iter()
            .map(|channel| Self::new(vec![channel.clone()]))
            .collect()
    }

    /// The index of the connection the next call takes.
    fn next_index(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len()
    }
}

impl Clone for ChannelPool {
    fn clone(&self) -> Self {
        Self {
            channels: Arc::clone(&self.channels),
            next: Arc::clone(&self.next),
            // A clone has not been polled ready.
            ready: None,
        }
    }
}

impl Service<http::Request<Body>> for ChannelPool {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let channel = match &mut self.ready {
            Some(channel) => channel,
            None => self.ready.insert(self.channels[self.next_index()].clone()),
        };
        let poll = channel.poll_ready(cx);
        if let Poll::Ready(Err(_)) = poll {
            // Try the next connection on the next poll.
            self.ready = None;
        }
        poll
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let mut channel = self
            .ready
            .take()
            .expect("ChannelPool::call without a successful poll_ready");
        channel.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lazy_channels(n: usize) -> Vec<Channel> {
        (0..n)
            .map(|_| Channel::from_static("http://127.0.0.1:1").connect_lazy())
            .collect()
    }

    #[tokio::test]
    async fn calls_take_the_connections_in_turn() {
        let pool = ChannelPool::new(lazy_channels(3));
        assert_eq!(pool.len(), 3);
        let clone = pool.clone();
        let turns: Vec<usize> = (0..7)
            .map(|i| {
                if i % 2 == 0 {
                    pool.next_index()
                } else {
                    clone.next_index()
                }
            })
            .collect();
        assert_eq!(turns, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[tokio::test]
    async fn a_ready_pool_keeps_its_channel_until_the_call() {
        let mut pool = ChannelPool::new(lazy_channels(2));
        std::future::poll_fn(|cx| pool.poll_ready(cx))
            .await
            .unwrap();
        std::future::poll_fn(|cx| pool.poll_ready(cx))
            .await
            .unwrap();
        // Polling twice reserved one turn, not two.
        assert_eq!(pool.next_index(), 1);
        assert!(pool.ready.is_some());
        assert!(pool.clone().ready.is_none());
    }

    #[test]
    #[should_panic(expected = "needs a channel")]
    fn an_empty_pool_is_a_bug() {
        let _ = ChannelPool::new(Vec::new());
    }
}
