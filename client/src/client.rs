//! The [`Client`] handle and its operations.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use shoal_proto::v1 as pb;
use tokio::time::Instant;

use crate::call::{to_bytes, with_deadline, within};
use crate::compression::{self, Compression};
use crate::convert;
use crate::error::{Error, Result};
use crate::node::{Node, NodeRef};
use crate::routing::Router;

use crate::retry::{Idempotency, RetryPolicy};
use crate::single_flight::Flights;
use crate::types::{Expiry, IncrementResult, ItemMeta, KeyInfo, SetOptions, SetResult, Stats, Ttl};

/// A handle to a shoal server, bound to one namespace and one per-call
/// deadline.
///
/// Cloning is cheap: clones share the underlying connection, so one client
/// can be cloned into every task. [`with_namespace`](Self::with_namespace)
/// and [`with_timeout`](Self::with_timeout) derive handles that share it
/// too.
///
/// Calls that the API declares safe to repeat are retried with backoff
/// after transient failures, within the deadline. Those that could apply
/// twice ([`increment`](Self::increment), [`hincrby`](Self::hincrby), list
/// pushes and pops, [`lrem`](Self::lrem), [`spop`](Self::spop)) are sent
/// once.
///
/// Hashes, lists and sets have their own methods, named after the Redis
/// commands: [`hset`](Self::hset), [`rpush`](Self::rpush),
/// [`sadd`](Self::sadd), ...
#[derive(Clone)]
pub struct Client {
    /// The server this handle was built for: calls that name no key go
    /// here, and every call when the client does not route.
    pub(crate) node: Arc<Node>,
    /// Sends each key to its owner, when the client is topology-aware.
    pub(crate) router: Option<Arc<Router>>,
    pub(crate) namespace: Arc<str>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retry: RetryPolicy,
    /// How string values are compressed on write; reads always decode.
    pub(crate) compression: Option<Compression>,
    /// Loads in progress of `get_or_insert_with`, shared by clones.
    pub(crate) flights: Arc<Flights>,
    /// Size of the channel pool behind the service clients.
    pub(crate) connections: usize,
    /// Largest batch, in keys, sent on [`shared`](Self::shared).
    pub(crate) shared_stream_max_keys: usize,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The namespace this handle works in; empty means `default`.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The per-call deadline of this handle.
    #[must_use]
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// How many HTTP/2 connections this client spreads its calls over; see
    /// [`ClientBuilder::connections`].
    #[must_use]
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// How this client compresses the string values it writes, if at all;
    /// see [`ClientBuilder::compression`].
    #[must_use]
    pub fn compression(&self) -> Option<Compression> {
        self.compression
    }

    /// A handle on the same connection, working in another namespace.
    #[must_use]
    pub fn with_namespace(&self, namespace: impl Into<String>) -> Self {
        Self {
            namespace: Arc::from(namespace.into()),
            ..self.clone()
        }
    }

    /// A handle on the same connection, with another per-call deadline.
    #[must_use]
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
            ..self.clone()
        }
    }

    /// The value of a string key, or `None` when it does not exist.
    ///
    /// A value a client stored compressed comes back decompressed, whether
    /// this client compresses or not.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`] when the key holds a collection;
    /// [`Error::Codec`] when a compressed value cannot be decompressed;
    /// transport and server errors otherwise.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        let request = pb::GetRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            include_meta: false,
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for(&request.key).cache,
                request,
                |mut c, r| async move { c.get(r).await },
            )
            .await?;
        if !response.found {
            return Ok(None);
        }
        Ok(Some(compression::decode_value(response.value)?))
    }

    /// The value of a string key with its metadata (version, expiry), or
    /// `None` when it does not exist.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub async fn get_with_meta(&self, key: impl AsRef<[u8]>) -> Result<Option<(Bytes, ItemMeta)>> {
        let request = pb::GetRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            include_meta: true,
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for(&request.key).cache,
                request,
                |mut c, r| async move { c.get(r).await },
            )
            .await?;
        match convert::get_with_meta(response)? {
            Some((value, meta)) => Ok(Some((compression::decode_value(value)?, meta))),
            None => Ok(None),
        }
    }

    /// Stores a string value that never expires, replacing any previous
    /// value of any type.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty or oversized key or value.
    pub async fn set(&self, key: impl AsRef<[u8]>, value: impl Into<Bytes>) -> Result<SetResult> {
        self.set_with(key, value, SetOptions::default()).await
    }

    /// Stores a string value with an expiry, a condition, or both.
    ///
    /// A condition that is not met is not an error: the result says
    /// `stored: false`. With [compression](ClientBuilder::compression) on,
    /// a large value may be stored compressed; the size in
    /// [`ItemMeta`] is then the compressed size.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty or oversized key or value or
    /// an out-of-range TTL.
    pub async fn set_with(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        options: SetOptions,
    ) -> Result<SetResult> {
        let request = pb::SetRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            value: compression::encode_value(self.compression.as_ref(), value.into()),
            expiry: convert::write_expiry(options.expiry),
            condition: convert::condition(options.condition),
            return_previous: options.return_previous,
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for(&request.key).cache,
                request,
                |mut c, r| async move { c.set(r).await },
            )
            .await?;
        let mut result = convert::set_result(response);
        result.previous = result.previous.map(compression::decode_value).transpose()?;
        Ok(result)
    }

    /// Removes keys of any type and returns how many existed.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty key or more than 10000 keys.
    pub async fn delete<K: AsRef<[u8]>>(&self, keys: impl IntoIterator<Item = K>) -> Result<u64> {
        let request = pb::DeleteRequest {
            namespace: self.ns(),
            keys: keys.into_iter().map(to_bytes).collect(),
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for_keys(&request.keys).cache,
                request,
                |mut c, r| async move { c.delete(r).await },
            )
            .await?;
        Ok(response.deleted)
    }

    /// Type, expiry, version and size of each key, in the order given.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty key or more than 10000 keys.
    pub async fn describe<K: AsRef<[u8]>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<KeyInfo>> {
        let request = pb::DescribeRequest {
            namespace: self.ns(),
            keys: keys.into_iter().map(to_bytes).collect(),
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for_keys(&request.keys).cache,
                request,
                |mut c, r| async move { c.describe(r).await },
            )
            .await?;
        response.keys.into_iter().map(convert::key_info).collect()
    }

    /// Adds `delta` to a 64-bit integer counter, creating it at 0 when
    /// absent, and returns the new value.
    ///
    /// Never retried: a repeated increment could count twice.
    ///
    /// # Errors
    ///
    /// [`Error::FailedPrecondition`] when the value is not an integer or the
    /// result would overflow; [`Error::WrongType`] on a collection.
    pub async fn increment(&self, key: impl AsRef<[u8]>, delta: i64) -> Result<i64> {
        Ok(self
            .increment_with(key, delta, None, Expiry::Never)
            .await?
            .value)
    }

    /// Adds `delta` to a counter that starts at `initial` (0 when `None`)
    /// and gets `expiry` when this call creates it; an existing counter
    /// keeps its expiry.
    ///
    /// # Errors
    ///
    /// As [`increment`](Self::increment).
    pub async fn increment_with(
        &self,
        key: impl AsRef<[u8]>,
        delta: i64,
        initial: Option<i64>,
        expiry: Expiry,
    ) -> Result<IncrementResult> {
        let request = pb::IncrementRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            delta,
            initial,
            expiry: convert::write_expiry(expiry),
        };
        let response = self
            .unary(
                Idempotency::NotIdempotent,
                &self.node_for(&request.key).cache,
                request,
                |mut c, r| async move { c.increment(r).await },
            )
            .await?;
        Ok(convert::increment_result(response))
    }

    /// Makes a key expire `ttl` from now. Returns whether the key existed.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a zero or out-of-range TTL.
    pub async fn expire(&self, key: impl AsRef<[u8]>, ttl: Duration) -> Result<bool> {
        self.update_ttl(key, Expiry::After(ttl)).await
    }

    /// Makes a key expire at `at`; a time in the past removes it. Returns
    /// whether the key existed.
    ///
    /// # Errors
    ///
    /// Transport and server errors.
    pub async fn expire_at(&self, key: impl AsRef<[u8]>, at: SystemTime) -> Result<bool> {
        self.update_ttl(key, Expiry::At(at)).await
    }

    /// Removes a key's expiry. Returns whether the key existed.
    ///
    /// # Errors
    ///
    /// Transport and server errors.
    pub async fn persist(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.update_ttl(key, Expiry::Never).await
    }

    async fn update_ttl(&self, key: impl AsRef<[u8]>, expiry: Expiry) -> Result<bool> {
        let request = pb::UpdateTtlRequest {
            namespace: self.ns(),
            key: to_bytes(key),
            expiry: Some(convert::expiry(expiry)),
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node_for(&request.key).cache,
                request,
                |mut c, r| async move { c.update_ttl(r).await },
            )
            .await?;
        Ok(response.existed)
    }

    /// Remaining lifetime of a key of any type.
    ///
    /// # Errors
    ///
    /// Transport and server errors.
    pub async fn ttl(&self, key: impl AsRef<[u8]>) -> Result<Ttl> {
        let info = self.describe([key]).await?.into_iter().next();
        Ok(match info.and_then(|info| info.meta) {
            None => Ttl::Missing,
            Some(ItemMeta { ttl: None, .. }) => Ttl::Never,
            Some(ItemMeta {
                ttl: Some(left), ..
            }) => Ttl::Expires(left),
        })
    }

    /// Number of live keys in the namespace.
    ///
    /// # Errors
    ///
    /// Transport and server errors.
    pub async fn count(&self) -> Result<u64> {
        let request = pb::CountRequest {
            namespace: self.ns(),
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node.cache,
                request,
                |mut c, r| async move { c.count(r).await },
            )
            .await?;
        Ok(response.keys)
    }

    /// Removes every key of the namespace and returns how many there were.
    ///
    /// # Errors
    ///
    /// Transport and server errors.
    pub async fn flush(&self) -> Result<u64> {
        let request = pb::FlushRequest {
            namespace: self.ns(),
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node.admin,
                request,
                |mut c, r| async move { c.flush(r).await },
            )
            .await?;
        Ok(response.removed)
    }

    /// Drops the namespace: its keys go and its slot under the server's
    /// namespace limit is free (a later write makes it again, empty).
    /// Returns how many keys it held, or `None` when it did not exist.
    ///
    /// # Errors
    ///
    /// Transport and server errors.
    pub async fn drop_namespace(&self) -> Result<Option<u64>> {
        let request = pb::DropNamespaceRequest {
            namespace: self.ns(),
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node.admin,
                request,
                |mut c, r| async move { c.drop_namespace(r).await },
            )
            .await?;
        Ok(response.dropped.then_some(response.removed))
    }

    /// Asks the server to take a snapshot now (persistence must be on);
    /// returns once it is durable. Not retried: a second snapshot would
    /// only repeat the work.
    ///
    /// # Errors
    ///
    /// Transport and server errors: `FAILED_PRECONDITION` with persistence
    /// off, `PERMISSION_DENIED` without the admin right on every namespace.
    pub async fn snapshot(&self) -> Result<crate::types::SnapshotInfo> {
        let response = self
            .unary(
                Idempotency::NotIdempotent,
                &self.node.admin,
                pb::SnapshotRequest {},
                |mut c, r| async move { c.snapshot(r).await },
            )
            .await?;
        Ok(convert::snapshot(response))
    }

    /// The members of the server's cluster as it sees them (a single
    /// server is a cluster of one, with an empty address).
    ///
    /// # Errors
    ///
    /// As for every call: the server's status, or a transport failure.
    pub async fn topology(&self) -> Result<crate::types::Topology> {
        Ok(convert::topology(self.topology_message().await?))
    }

    /// The topology as the server sent it.
    pub(crate) async fn topology_message(&self) -> Result<pb::Topology> {
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node.cluster,
                pb::GetTopologyRequest {},
                |mut c, r| async move { c.get_topology(r).await },
            )
            .await?;
        Ok(response.topology.unwrap_or_default())
    }

    /// Counters of every namespace, their total, and per-RPC counts. A
    /// cluster member adds up every ready member's ([`Stats::members`]
    /// says how many).
    ///
    /// # Errors
    ///
    /// Transport and server errors.
    pub async fn stats(&self) -> Result<Stats> {
        self.stats_of(false).await
    }

    /// As [`stats`](Self::stats), of the server this handle was built for
    /// alone, even in a cluster.
    ///
    /// # Errors
    ///
    /// Transport and server errors.
    pub async fn member_stats(&self) -> Result<Stats> {
        self.stats_of(true).await
    }

    async fn stats_of(&self, local_only: bool) -> Result<Stats> {
        let request = pb::StatsRequest {
            namespaces: Vec::new(),
            local_only,
        };
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node.admin,
                request,
                |mut c, r| async move { c.stats(r).await },
            )
            .await?;
        Ok(convert::stats(response))
    }

    /// Names of the namespaces the server knows, sorted.
    ///
    /// # Errors
    ///
    /// Transport and server errors.
    pub async fn list_namespaces(&self) -> Result<Vec<String>> {
        let request = pb::ListNamespacesRequest {};
        let response = self
            .unary(
                Idempotency::Idempotent,
                &self.node.admin,
                request,
                |mut c, r| async move { c.list_namespaces(r).await },
            )
            .await?;
        Ok(response.namespaces)
    }

    pub(crate) fn ns(&self) -> String {
        self.namespace.to_string()
    }

    /// Whether this client sends each key to its owner; see
    /// [`ClientBuilder::topology_aware`].
    #[must_use]
    pub fn is_topology_aware(&self) -> bool {
        self.router.is_some()
    }

    /// The server a call for `key` goes to: its owner when the client
    /// routes, else the one it was built for.
    pub(crate) fn node_for(&self, key: &[u8]) -> NodeRef<'_> {
        match &self.router {
            Some(router) => NodeRef::Routed(router.node_for(key)),
            None => NodeRef::Seed(&self.node),
        }
    }

    /// The server a call for several `keys` goes to: the owner of the
    /// first, which forwards what it does not own.
    pub(crate) fn node_for_keys(&self, keys: &[Bytes]) -> NodeRef<'_> {
        match keys.first() {
            Some(key) => self.node_for(key),
            None => NodeRef::Seed(&self.node),
        }
    }

    /// The server this handle was built for, shared.
    pub(crate) fn seed_node(&self) -> Arc<Node> {
        Arc::clone(&self.node)
    }

    /// One unary RPC on `service`, with deadline and retries.
    pub(crate) async fn unary<S, Req, Resp, F, Fut>(
        &self,
        idempotency: Idempotency,
        service: &S,
        message: Req,
        call: F,
    ) -> Result<Resp>
    where
        S: Clone,
        Req: Clone,
        F: Fn(S, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        self.run(idempotency, |timeout| {
            let response = call(service.clone(), with_deadline(message.clone(), timeout));
            async move {
                response
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(Error::from)
            }
        })
        .await
    }

    /// Runs `attempt` until it succeeds, fails for good, or the handle's
    /// deadline passes. Each attempt gets the time left, to send as
    /// `grpc-timeout`, and is cut off locally when it runs out.
    pub(crate) async fn run<T, F, Fut>(&self, idempotency: Idempotency, mut attempt: F) -> Result<T>
    where
        F: FnMut(Option<Duration>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let deadline = self.timeout.map(|timeout| Instant::now() + timeout);
        let mut attempts = 0;
        loop {
            let remaining = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Err(Error::DeadlineExceeded),
                },
                None => None,
            };
            let outcome = within(remaining, attempt(remaining)).await;
            attempts += 1;
            let error = match outcome {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if !self.retry.should_retry(idempotency, &error, attempts) {
                return Err(error);
            }
            let wait = self.retry.backoff(attempts);
            if deadline.is_some_and(|deadline| Instant::now() + wait >= deadline) {
                return Err(error);
            }
            tracing::debug!(%error, attempts, ?wait, "retrying shoal call");
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn client(max_retries: u32, timeout: Option<Duration>) -> Client {
        let builder = Client::builder()
            .endpoint("127.0.0.1:1")
            .retry_policy(RetryPolicy::with_max_retries(max_retries));
        let builder = match timeout {
            Some(timeout) => builder.timeout(timeout),
            None => builder.no_timeout(),
        };
        builder.connect_lazy().unwrap()
    }

    async fn count_attempts(
        client: &Client,
        idempotency: Idempotency,
        error: fn() -> Error,
    ) -> (u32, Error) {
        let attempts = AtomicU32::new(0);
        let result: Result<()> = client
            .run(idempotency, |_| {
                attempts.fetch_add(1, Ordering::Relaxed);
                async move { Err(error()) }
            })
            .await;
        (attempts.load(Ordering::Relaxed), result.unwrap_err())
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_of_idempotent_calls_are_retried() {
        let client = client(3, None);
        let (attempts, error) = count_attempts(&client, Idempotency::Idempotent, || {
            tonic::Status::unavailable("down").into()
        })
        .await;
        assert_eq!(attempts, 4);
        assert!(matches!(error, Error::Unavailable { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn non_idempotent_calls_are_tried_once() {
        let client = client(3, None);
        let (attempts, _) = count_attempts(&client, Idempotency::NotIdempotent, || {
            tonic::Status::unavailable("down").into()
        })
        .await;
        assert_eq!(attempts, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_not_retried() {
        let client = client(3, None);
        let (attempts, error) = count_attempts(&client, Idempotency::Idempotent, || {
            tonic::Status::invalid_argument("bad").into()
        })
        .await;
        assert_eq!(attempts, 1);
        assert!(matches!(error, Error::InvalidArgument { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_attempt_ends_at_the_deadline() {
        let client = client(3, Some(Duration::from_millis(100)));
        let started = Instant::now();
        let result: Result<()> = client
            .run(Idempotency::Idempotent, |_| std::future::pending())
            .await;
        assert!(matches!(result, Err(Error::DeadlineExceeded)));
        assert_eq!(started.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_at_the_deadline() {
        // Backoff is at least 10 ms, so within 25 ms there is room for at most
        // a couple of attempts, never the 11 the policy would allow.
        let client = client(10, Some(Duration::from_millis(25)));
        let (attempts, error) = count_attempts(&client, Idempotency::Idempotent, || {
            tonic::Status::unavailable("down").into()
        })
        .await;
        assert!((1..=3).contains(&attempts), "{attempts} attempts");
        assert!(matches!(error, Error::Unavailable { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn each_attempt_is_told_the_time_left() {
        let client = client(0, Some(Duration::from_secs(2)));
        let seen = client
            .run(Idempotency::Idempotent, |left| async move { Ok(left) })
            .await
            .unwrap();
        assert_eq!(seen, Some(Duration::from_secs(2)));
    }
}
