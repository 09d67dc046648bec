//! The gRPC services: requests in, engine calls, responses out.
//!
//! This is the only layer that knows both the proto types and the engine's.
//! Engine errors become statuses in one place, [`status::engine_status`].

mod admin;
mod batch;
mod cache;
mod chunks;
mod cluster;
mod collection;
mod convert;
mod fan_out;
mod forward;
mod lease;
mod pipeline;
mod rights;
mod split;
mod status;
mod validate;
mod watch;
mod watch_merge;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use admin::AdminApi;
pub use batch::BatchApi;
pub use cache::{CacheApi, DEFAULT_SCAN_PAGE, MAX_SCAN_PAGE};
pub use chunks::{DEFAULT_CHUNK_ITEMS, MAX_CHUNK_BYTES, MAX_CHUNK_ITEMS};
pub use cluster::ClusterApi;
pub use collection::CollectionApi;
pub use forward::FORWARDED_BY;
pub use pipeline::MAX_PIPELINE_READ_BYTES;
pub use validate::MAX_ITEMS_PER_REQUEST;
pub use watch::{DEFAULT_HEARTBEAT_MS, MAX_WATCH_PREFIXES, WatchApi};

use tonic::{Request, Response, Status};

use crate::auth::{Access, AuthState, Role};
use crate::change_feed::ChangeFeed;
use crate::cluster::{Cluster, Topology};
use crate::config::Config;
use crate::engine::{Engine, Namespace};
use crate::limits::byte_budget::ByteBudget;
use crate::limits::traffic::Traffic;
use crate::observe::metrics::MetricSources;
use crate::observe::rpc_layer::RpcLayer;
use crate::observe::rpc_stats::RpcStats;
use crate::persistence::LogSink;
use crate::persistence::runtime::Persistence;
pub(crate) use rights::Scoped;
use status::engine_status;

/// Defines a constant per method path, and `ALL` listing them.
macro_rules! methods {
    ($($name:ident = $path:literal;)*) => {
        $(
            #[doc = concat!("`", $path, "`.")]
            pub const $name: &str = $path;
        )*
        /// Every method above.
        pub const ALL: &[&str] = &[$($name),*];
    };
}

/// Full paths of every method, for per-RPC statistics.
pub mod method {
    /// Methods of the health and reflection services served beside ours.
    pub const INFRASTRUCTURE: &[&str] = &[
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ];

    methods! {
        GET = "/shoal.v1.CacheService/Get";
        SET = "/shoal.v1.CacheService/Set";
        DELETE = "/shoal.v1.CacheService/Delete";
        DESCRIBE = "/shoal.v1.CacheService/Describe";
        INCREMENT = "/shoal.v1.CacheService/Increment";
        UPDATE_TTL = "/shoal.v1.CacheService/UpdateTtl";
        SCAN = "/shoal.v1.CacheService/Scan";
        COUNT = "/shoal.v1.CacheService/Count";
        STATS = "/shoal.v1.AdminService/Stats";
        FLUSH = "/shoal.v1.AdminService/Flush";
        LIST_NAMESPACES = "/shoal.v1.AdminService/ListNamespaces";
        DROP_NAMESPACE = "/shoal.v1.AdminService/DropNamespace";
        SNAPSHOT = "/shoal.v1.AdminService/Snapshot";
        HSET = "/shoal.v1.CollectionService/HSet";
        HGET = "/shoal.v1.CollectionService/HGet";
        HMGET = "/shoal.v1.CollectionService/HMGet";
        HGETALL = "/shoal.v1.CollectionService/HGetAll";
        HDEL = "/shoal.v1.CollectionService/HDel";
        HLEN = "/shoal.v1.CollectionService/HLen";
        HEXISTS = "/shoal.v1.CollectionService/HExists";
        HINCRBY = "/shoal.v1.CollectionService/HIncrBy";
        LPUSH = "/shoal.v1.CollectionService/LPush";
        RPUSH = "/shoal.v1.CollectionService/RPush";
        LPOP = "/shoal.v1.CollectionService/LPop";
        RPOP = "/shoal.v1.CollectionService/RPop";
        LRANGE = "/shoal.v1.CollectionService/LRange";
        LLEN = "/shoal.v1.CollectionService/LLen";
        LTRIM = "/shoal.v1.CollectionService/LTrim";
        LINDEX = "/shoal.v1.CollectionService/LIndex";
        LSET = "/shoal.v1.CollectionService/LSet";
        LREM = "/shoal.v1.CollectionService/LRem";
        SADD = "/shoal.v1.CollectionService/SAdd";
        SREM = "/shoal.v1.CollectionService/SRem";
        SMEMBERS = "/shoal.v1.CollectionService/SMembers";
        SISMEMBER = "/shoal.v1.CollectionService/SIsMember";
        SMISMEMBER = "/shoal.v1.CollectionService/SMIsMember";
        SCARD = "/shoal.v1.CollectionService/SCard";
        SPOP = "/shoal.v1.CollectionService/SPop";
        SRANDMEMBER = "/shoal.v1.CollectionService/SRandMember";
        SINTER = "/shoal.v1.CollectionService/SInter";
        SUNION = "/shoal.v1.CollectionService/SUnion";
        SDIFF = "/shoal.v1.CollectionService/SDiff";
        GET_BATCH = "/shoal.v1.BatchService/GetBatch";
        SET_BATCH = "/shoal.v1.BatchService/SetBatch";
        DELETE_BATCH = "/shoal.v1.BatchService/DeleteBatch";
        PIPELINE = "/shoal.v1.BatchService/Pipeline";
        WATCH = "/shoal.v1.WatchService/Watch";
        GET_TOPOLOGY = "/shoal.v1.ClusterService/GetTopology";
        WATCH_TOPOLOGY = "/shoal.v1.ClusterService/WatchTopology";
    }
}

tokio::task_local! {
    /// In a pipeline's task: the last log position its commands wrote and
    /// nobody has waited for yet (0 for none).
    static DEFERRED_POSITION: std::cell::Cell<u64>;
}

/// What every service shares.
#[derive(Debug)]
pub struct ServiceState {
    pub(crate) engine: Engine,
    /// Fed by the [`RpcLayer`](crate::observe::rpc_layer::RpcLayer) for every call,
    /// whichever service serves it.
    pub(crate) rpc_stats: Arc<RpcStats>,
    pub(crate) traffic: Arc<Traffic>,
    /// Bytes of request messages in flight now, server-wide.
    pub(crate) inflight: Arc<ByteBudget>,
    pub(crate) started: Instant,
    /// Fans the engine's changes out to Watch streams.
    pub(crate) feed: Arc<ChangeFeed>,
    /// Most items in one batch request or SetBatch chunk.
    pub(crate) max_batch_items: usize,
    /// Turns true when the server begins shutting down, so that streams
    /// that never end on their own (pipelines) end and let draining finish.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Whether calls carry credentials, and the counts of refusals.
    pub(crate) auth: AuthState,
    /// The log and snapshots, with persistence on.
    pub(crate) persistence: Option<Arc<Persistence>>,
    /// The other members, when this server is one of a cluster.
    pub(crate) cluster: Option<Arc<Cluster>>,
    /// The members as ClusterService reports them: the cluster's, or this
    /// server alone.
    pub(crate) topology: Arc<Topology>,
}

impl ServiceState {
    /// State over `engine`, with fresh statistics, feeding Watch streams
    /// from `feed` (which the caller has attached to the engine), held to
    /// the batch and in-flight limits of `config`.
    pub fn new(engine: Engine, feed: Arc<ChangeFeed>, config: &Config) -> Arc<Self> {
        Self::with_auth(engine, feed, config, AuthState::off())
    }

    /// As [`ServiceState::new`], with calls held to the rights of `auth`.
    pub fn with_auth(
        engine: Engine,
        feed: Arc<ChangeFeed>,
        config: &Config,
        auth: AuthState,
    ) -> Arc<Self> {
        Self::with_persistence(engine, feed, config, auth, None)
    }

    /// As [`ServiceState::with_auth`], with writes answered only once
    /// `persistence` acknowledged their records.
    pub fn with_persistence(
        engine: Engine,
        feed: Arc<ChangeFeed>,
        config: &Config,
        auth: AuthState,
        persistence: Option<Arc<Persistence>>,
    ) -> Arc<Self> {
        Self::with_cluster(engine, feed, config, auth, persistence, None)
    }

    /// As [`ServiceState::with_persistence`], with calls for keys that
    /// another member of `cluster` owns forwarded to it.
    pub fn with_cluster(
        engine: Engine,
        feed: Arc<ChangeFeed>,
        config: &Config,
        auth: AuthState,
        persistence: Option<Arc<Persistence>>,
        cluster: Option<Arc<Cluster>>,
    ) -> Arc<Self> {
        let topology = match &cluster {
            Some(cluster) => Arc::clone(cluster.topology()),
            None => Arc::new(Topology::single(
                &config
                    .cluster
                    .local_id()
                    .unwrap_or_else(|_| "shoal".to_string()),
            )),
        };
        let methods: Vec<&'static str> = method::ALL
            .iter()
            .chain(method::INFRASTRUCTURE)
            .copied()
            .collect();
        Arc::new(Self {
            engine,
            rpc_stats: Arc::new(RpcStats::new(&methods)),
            traffic: Arc::default(),
            started: Instant::now(),
            feed,
            max_batch_items: config.grpc.max_batch_items,
            inflight: Arc::new(ByteBudget::new(config.inflight_budget().server)),
            stopping: tokio::sync::watch::Sender::new(false),
            auth,
            persistence,
            cluster,
            topology,
        })
    }

    /// Tells long-lived streams that the server is shutting down.
    pub fn begin_stopping(&self) {
        self.stopping.send_replace(true);
    }

    /// Completes once the server has begun shutting down.
    pub(crate) async fn stopped(&self) {
        let mut stopping = self.stopping.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }
}

impl ServiceState {
    /// The figures `/metrics` reads at scrape time.
    pub fn metric_sources(&self) -> MetricSources {
        MetricSources {
            engine: self.engine.clone(),
            rpc_stats: self.rpc_stats.clone(),
            traffic: self.traffic.clone(),
            inflight: self.inflight.clone(),
            feed: self.feed.clone(),
            auth: self.auth.counters.clone(),
            persistence: self.persistence.clone(),
        }
    }

    /// Completes once what this thread changed since it last asked is
    /// acknowledged by the log. The position is taken now, before the
    /// caller's next `.await`: call it right after the engine call, on the
    /// thread that made it.
    ///
    /// Inside a pipeline ([`ServiceState::deferring_acks`]) it completes
    /// at once and leaves the position to the pipeline, which waits once
    /// for the last one before it sends the replies of the commands run.
    pub(crate) fn logged(
        &self,
    ) -> impl std::future::Future<Output = Result<(), Status>> + Send + 'static + use<> {
        let mut position = LogSink::take_position();
        if let Some(at) = position
            && DEFERRED_POSITION
                .try_with(|deferred| deferred.set(deferred.get().max(at)))
                .is_ok()
        {
            position = None;
        }
        self.acknowledged(position)
    }

    /// Completes once the log acknowledges `position` (at once for `None`
    /// or with persistence off).
    fn acknowledged(
        &self,
        position: Option<crate::persistence::LogPosition>,
    ) -> impl std::future::Future<Output = Result<(), Status>> + Send + 'static + use<> {
        let waiting = self
            .persistence
            .as_ref()
            .map(|persistence| persistence.acknowledged(position));
        async move {
            match waiting {
                Some(waiting) => waiting.await.map_err(status::unlogged),
                None => Ok(()),
            }
        }
    }

    /// Runs `task` with the acknowledgements of its writes deferred: see
    /// [`ServiceState::logged`] and [`ServiceState::deferred_logged`].
    pub(crate) fn deferring_acks<F: std::future::Future>(
        task: F,
    ) -> impl std::future::Future<Output = F::Output> {
        DEFERRED_POSITION.scope(std::cell::Cell::new(0), task)
    }

    /// Completes once every write deferred so far in this task (see
    /// [`ServiceState::deferring_acks`]) is acknowledged.
    pub(crate) fn deferred_logged(
        &self,
    ) -> impl std::future::Future<Output = Result<(), Status>> + Send + 'static + use<> {
        let position = DEFERRED_POSITION
            .try_with(|deferred| deferred.replace(0))
            .ok()
            .filter(|position| *position > 0);
        self.acknowledged(position)
    }

    /// `result`, answered once its changes are acknowledged by the log
    /// (see [`ServiceState::logged`]): for unary handlers, called right
    /// after their engine call.
    pub(crate) fn acked<T: Send + 'static>(
        &self,
        result: Result<T, Status>,
    ) -> impl std::future::Future<Output = Result<Response<T>, Status>> + Send + 'static + use<T>
    {
        let logged = self.logged();
        async move {
            logged.await?;
            reply(result)
        }
    }

    /// The layer that observes every call into these services: it records
    /// each call in the statistics `AdminService.Stats` and `/metrics`
    /// report. See [`RpcLayer::new`] for `server_timeout`.
    pub fn rpc_layer(&self, server_timeout: Option<Duration>) -> RpcLayer {
        RpcLayer::new(
            Arc::clone(&self.rpc_stats),
            Arc::clone(&self.traffic),
            server_timeout,
        )
        .ending_sessions_on(self.stopping.subscribe())
    }

    /// What the caller of `request` may do.
    pub(crate) fn access<'a, T>(&self, request: &'a Request<T>) -> &'a Access {
        Access::of(request.extensions(), self.auth.enabled())
    }

    /// Allows `request` (its namespace, with the role it needs), or
    /// answers PERMISSION_DENIED.
    pub(crate) fn authorize<T: Scoped>(&self, request: &Request<T>) -> Result<(), Status> {
        self.check(self.access(request), request.get_ref().namespace(), T::ROLE)
    }

    /// Allows `role` in `namespace` for `access`, or answers
    /// PERMISSION_DENIED (and counts the denial).
    pub(crate) fn check(&self, access: &Access, namespace: &str, role: Role) -> Result<(), Status> {
        access.check(namespace, role).map_err(|error| {
            self.auth.counters.count_denial();
            Status::from(error)
        })
    }

    /// Allows a server-wide operation, or answers PERMISSION_DENIED.
    pub(crate) fn check_server_admin(
        &self,
        access: &Access,
        what: &'static str,
    ) -> Result<(), Status> {
        access.check_server_admin(what).map_err(|error| {
            self.auth.counters.count_denial();
            Status::from(error)
        })
    }

    /// The namespace a write goes to, created if needed.
    pub(crate) fn writable(&self, name: &str) -> Result<Arc<Namespace>, Status> {
        self.engine
            .namespace(name)
            .map_err(|error| engine_status(error, None))
    }

    /// The namespace a read looks in; `None` when it does not exist, so that
    /// reads never create namespaces.
    pub(crate) fn readable(&self, name: &str) -> Result<Option<Arc<Namespace>>, Status> {
        self.engine
            .existing_namespace(name)
            .map_err(|error| engine_status(error, None))
    }
}

/// Wraps a handler's result. Calls are counted by the
/// [`RpcLayer`](crate::observe::rpc_layer::RpcLayer) once they end, not here, so that a
/// stream counts with its final status.
pub(crate) fn reply<T>(result: Result<T, Status>) -> Result<Response<T>, Status> {
    result.map(Response::new)
}
