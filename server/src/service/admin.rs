//! `shoal.v1.AdminService`: statistics and whole-namespace operations.

use std::sync::Arc;

use shoal_proto::v1 as pb;
use shoal_proto::v1::admin_service_server::AdminService;
use tonic::{Request, Response, Status};

use super::status::engine_status;
use super::{ServiceState, method};
use crate::auth::{Access, Role};
use crate::engine::NamespaceStats;
use crate::observe::telemetry::record_call;
use crate::persistence::runtime::{PersistenceStatus, fsync_name, mode_name};

/// Implementation of `AdminService` over the engine.
#[derive(Debug, Clone)]
pub struct AdminApi {
    state: Arc<ServiceState>,
}

impl AdminApi {
    pub(crate) fn new(state: Arc<ServiceState>) -> Self {
        Self { state }
    }

    /// Statistics. Every namespace's, and the server-wide figures, need
    /// admin on `*`; those of named namespaces need read on each, and then
    /// the total is summed over them alone and the server-wide figures are
    /// left out (see [`crate::auth`]).
    fn stats(
        &self,
        access: &Access,
        request: pb::StatsRequest,
    ) -> Result<pb::StatsResponse, Status> {
        if let [namespace] = request.namespaces.as_slice() {
            record_call(namespace, 1);
        }
        if request.namespaces.is_empty() {
            self.state.check_server_admin(
                access,
                "read the statistics of every namespace (name the namespaces to report)",
            )?;
        }
        for name in &request.namespaces {
            self.state.check(access, name, Role::Read)?;
        }
        let server_wide = access.is_server_admin();
        let engine = &self.state.engine;
        let mut total = NamespaceStats::default();
        let mut namespaces = Vec::new();
        for namespace in engine.namespaces() {
            let stats = namespace.stats();
            let wanted = request.namespaces.is_empty()
                || request.namespaces.iter().any(|name| {
                    name == namespace.name()
                        || (name.is_empty() && namespace.name() == crate::engine::DEFAULT_NAMESPACE)
                });
            if server_wide || wanted {
                total.accumulate(&stats);
            }
            if wanted {
                let mut reply = namespace_stats(namespace.name(), &stats);
                reply.budget = namespace.own_budget().map(|budget| pb::NamespaceBudget {
                    keys: budget.keys,
                    charged_bytes: budget.charged_bytes,
                    max_keys: budget.max_keys,
                    max_memory_bytes: budget.max_memory_bytes,
                });
                namespaces.push(reply);
            }
        }
        for name in &request.namespaces {
            engine
                .existing_namespace(name)
                .map_err(|error| engine_status(error, Some("namespaces")))?;
        }
        let rpcs = self
            .state
            .rpc_stats
            .snapshot()
            .into_iter()
            // Health checks and reflection are counted too, but only in the
            // metrics: this reply is about the shoal API.
            .filter(|method| method.method.starts_with("/shoal."))
            .map(|method| pb::RpcStats {
                method: method.method.to_string(),
                calls: method.calls,
                errors: method.errors(),
                errors_by_code: method
                    .errors_by_code
                    .iter()
                    .map(|(code, count)| (format!("{code:?}"), *count))
                    .collect(),
            })
            .collect();
        let budget = engine.budget_usage();
        let auth = &self.state.auth.counters;
        let reply = pb::StatsResponse {
            total: Some(namespace_stats("", &total)),
            namespaces,
            rpcs,
            uptime_ms: u64::try_from(self.state.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            server_version: env!("CARGO_PKG_VERSION").to_string(),
            max_keys: budget.max_keys,
            max_memory_bytes: budget.max_memory_bytes,
            eviction_policy: budget.policy.to_string(),
            charged_bytes: budget.charged_bytes,
            inflight_request_bytes: self.state.inflight.used(),
            max_inflight_request_bytes: self.state.inflight.limit(),
            connections_open: self.state.traffic.connections_open(),
            auth_failures: auth.failures(),
            permission_denials: auth.denials(),
            persistence: self
                .state
                .persistence
                .as_ref()
                .map(|persistence| persistence_status(&persistence.status())),
            members: 1,
        };
        if server_wide {
            return Ok(reply);
        }
        Ok(pb::StatsResponse {
            total: reply.total,
            namespaces: reply.namespaces,
            uptime_ms: reply.uptime_ms,
            server_version: reply.server_version,
            eviction_policy: reply.eviction_policy,
            ..pb::StatsResponse::default()
        })
    }

    fn flush(&self, request: pb::FlushRequest) -> Result<pb::FlushResponse, Status> {
        record_call(&request.namespace, 0);
        let namespace = self
            .state
            .engine
            .existing_namespace(&request.namespace)
            .map_err(|error| engine_status(error, None))?;
        let removed = namespace.map_or(0, |namespace| namespace.flush());
        Ok(pb::FlushResponse { removed })
    }

    fn drop_namespace(
        &self,
        request: pb::DropNamespaceRequest,
    ) -> Result<pb::DropNamespaceResponse, Status> {
        record_call(&request.namespace, 0);
        let removed = self
            .state
            .engine
            .drop_namespace(&request.namespace)
            .map_err(|error| engine_status(error, None))?;
        Ok(pb::DropNamespaceResponse {
            dropped: removed.is_some(),
            removed: removed.unwrap_or(0),
        })
    }

    /// Takes a snapshot on demand, off the async runtime.
    async fn take_snapshot(&self, access: &Access) -> Result<pb::SnapshotResponse, Status> {
        self.state
            .check_server_admin(access, "take a snapshot of every namespace")?;
        let Some(persistence) = self.state.persistence.clone() else {
            return Err(Status::failed_precondition(
                "persistence is off: start the server with --persistence snapshot or log \
                 (and --data-dir) to take snapshots",
            ));
        };
        let taken = tokio::task::spawn_blocking(move || persistence.snapshot())
            .await
            .map_err(|error| Status::internal(format!("the snapshot did not finish: {error}")))?;
        let summary = taken.map_err(|error| {
            Status::internal(format!(
                "the snapshot failed; the previous one stays in force: {error}"
            ))
        })?;
        Ok(pb::SnapshotResponse {
            name: summary.name,
            keys: summary.keys,
            bytes: summary.bytes,
            duration_ms: millis(summary.duration),
        })
    }

    /// The namespaces the caller may read.
    fn list_namespaces(&self, access: &Access) -> pb::ListNamespacesResponse {
        pb::ListNamespacesResponse {
            namespaces: self
                .state
                .engine
                .namespaces()
                .iter()
                .filter(|namespace| access.allows(namespace.name(), Role::Read))
                .map(|namespace| namespace.name().to_string())
                .collect(),
        }
    }
}

fn namespace_stats(name: &str, stats: &NamespaceStats) -> pb::NamespaceStats {
    pb::NamespaceStats {
        namespace: name.to_string(),
        keys: stats.keys,
        hits: stats.hits,
        misses: stats.misses,
        hit_ratio: stats.hit_ratio(),
        sets: stats.sets,
        deletes: stats.deletes,
        expirations: stats.expirations,
        memory_bytes: stats.memory_bytes,
        flushed: stats.flushed,
        evictions: stats.evictions(),
        evicted_for_keys: stats.evicted_for_keys,
        evicted_for_memory: stats.evicted_for_memory,
        budget: None,
        snapshot_bytes: stats.snapshot_bytes,
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Stats' view of the persistence status.
fn persistence_status(status: &PersistenceStatus) -> pb::PersistenceStatus {
    let last = status.last_snapshot.clone().unwrap_or_default();
    pb::PersistenceStatus {
        mode: mode_name(status.mode).to_string(),
        fsync: fsync_name(status.fsync).to_string(),
        data_dir: status.data_dir.display().to_string(),
        last_snapshot_name: last.name,
        last_snapshot_unix_ms: last.finished_unix_ms,
        last_snapshot_keys: last.keys,
        last_snapshot_bytes: last.bytes,
        last_snapshot_duration_ms: millis(last.duration),
        snapshots: status.snapshots,
        snapshot_failures: status.snapshot_failures,
        log_bytes: status.log_bytes,
        log_bytes_since_snapshot: status.log_bytes_since_snapshot,
        fsyncs: status.fsyncs,
        fsync_mean_us: status
            .fsync_total_us
            .checked_div(status.fsyncs)
            .unwrap_or(0),
        fsync_max_us: status.fsync_max_us,
        start_snapshot_keys: status.start.snapshot_keys,
        start_replayed_records: status.start.replayed_records,
        start_expired_keys: status.start.expired_keys,
        start_recovery_ms: millis(status.start.elapsed),
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        let access = self.state.access(&request).clone();
        self.take_snapshot(&access).await.map(Response::new)
    }

    async fn stats(
        &self,
        request: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let others = if request.get_ref().local_only {
            None
        } else {
            self.state.other_members(request.metadata())?
        };
        let (_, extensions, message) = request.into_parts();
        let access = Access::of(&extensions, self.state.auth.enabled());
        // Rights are checked here first, so that a denied call asks no
        // other member.
        let mut local = AdminApi::stats(self, access, message.clone())?;
        if let Some(others) = others {
            let remote = others.each(method::STATS, &message).await?;
            super::fan_out::merge_stats(&mut local, remote);
        }
        Ok(Response::new(local))
    }

    async fn flush(
        &self,
        request: Request<pb::FlushRequest>,
    ) -> Result<Response<pb::FlushResponse>, Status> {
        self.state.authorize(&request)?;
        let others = self.state.other_members(request.metadata())?;
        let message = request.into_inner();
        let mut flushed = self
            .state
            .acked(AdminApi::flush(self, message.clone()))
            .await?;
        if let Some(others) = others {
            for reply in others
                .each::<_, pb::FlushResponse>(method::FLUSH, &message)
                .await?
            {
                flushed.get_mut().removed += reply.removed;
            }
        }
        Ok(flushed)
    }

    async fn drop_namespace(
        &self,
        request: Request<pb::DropNamespaceRequest>,
    ) -> Result<Response<pb::DropNamespaceResponse>, Status> {
        self.state.authorize(&request)?;
        self.state
            .acked(AdminApi::drop_namespace(self, request.into_inner()))
            .await
    }

    async fn list_namespaces(
        &self,
        request: Request<pb::ListNamespacesRequest>,
    ) -> Result<Response<pb::ListNamespacesResponse>, Status> {
        Ok(Response::new(
            self.list_namespaces(self.state.access(&request)),
        ))
    }
}
