//! The gRPC services: requests in, engine calls, responses out.
//!
//! This is the only layer that knows both the proto types and the engine's.
//! Engine errors become statuses in one place, [`status::engine_status`].

mod admin;
mod cache;
mod convert;
mod status;

use std::sync::Arc;
use std::time::Instant;

pub use admin::AdminApi;
pub use cache::{CacheApi, DEFAULT_SCAN_PAGE, MAX_KEYS_PER_REQUEST, MAX_SCAN_PAGE};

use crate::engine::Engine;
use crate::rpc_stats::RpcStats;

/// Full paths of every method, for per-RPC statistics.
pub mod method {
    /// `CacheService.Get`.
    pub const GET: &str = "/shoal.v1.CacheService/Get";
    /// `CacheService.Set`.
    pub const SET: &str = "/shoal.v1.CacheService/Set";
    /// `CacheService.Delete`.
    pub const DELETE: &str = "/shoal.v1.CacheService/Delete";
    /// `CacheService.Describe`.
    pub const DESCRIBE: &str = "/shoal.v1.CacheService/Describe";
    /// `CacheService.Increment`.
    pub const INCREMENT: &str = "/shoal.v1.CacheService/Increment";
    /// `CacheService.UpdateTtl`.
    pub const UPDATE_TTL: &str = "/shoal.v1.CacheService/UpdateTtl";
    /// `CacheService.Scan`.
    pub const SCAN: &str = "/shoal.v1.CacheService/Scan";
    /// `CacheService.Count`.
    pub const COUNT: &str = "/shoal.v1.CacheService/Count";
    /// `AdminService.Stats`.
    pub const STATS: &str = "/shoal.v1.AdminService/Stats";
    /// `AdminService.Flush`.
    pub const FLUSH: &str = "/shoal.v1.AdminService/Flush";
    /// `AdminService.ListNamespaces`.
    pub const LIST_NAMESPACES: &str = "/shoal.v1.AdminService/ListNamespaces";

    /// Every method above.
    pub const ALL: &[&str] = &[
        GET,
        SET,
        DELETE,
        DESCRIBE,
        INCREMENT,
        UPDATE_TTL,
        SCAN,
        COUNT,
        STATS,
        FLUSH,
        LIST_NAMESPACES,
    ];
}

/// What every service shares.
#[derive(Debug)]
pub struct ServiceState {
    pub(crate) engine: Engine,
    pub(crate) rpc_stats: RpcStats,
    pub(crate) started: Instant,
}

impl ServiceState {
    /// State over `engine`, with fresh statistics.
    pub fn new(engine: Engine) -> Arc<Self> {
        Arc::new(Self {
            engine,
            rpc_stats: RpcStats::new(method::ALL),
            started: Instant::now(),
        })
    }
}
