//! The `shoal.v1` gRPC API.
//!
//! Generated from `proto/shoal/v1/*.proto`: prost messages (every `bytes`
//! field is a [`bytes::Bytes`]), tonic clients and servers, and the encoded
//! file descriptor set the server hands to gRPC reflection.
//!
//! Per-item errors in batches and pipelines are `google.rpc.Status`
//! messages, generated as [`tonic_types::Status`] so that the richer error
//! details of `tonic-types` apply to them as to a failed call.

pub mod codec;
pub mod routing;

/// Package `shoal.v1`.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("shoal.v1");
}

/// Encoded `FileDescriptorSet` of every shoal proto file, for server
/// reflection (so `grpcurl list` and `grpcurl describe` work).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/shoal_descriptor.bin"));

/// Full service names, as used by the health service and reflection.
pub mod service_names {
    /// `shoal.v1.CacheService`.
    pub const CACHE: &str = "shoal.v1.CacheService";
    /// `shoal.v1.AdminService`.
    pub const ADMIN: &str = "shoal.v1.AdminService";
    /// `shoal.v1.CollectionService`.
    pub const COLLECTION: &str = "shoal.v1.CollectionService";
    /// `shoal.v1.BatchService`.
    pub const BATCH: &str = "shoal.v1.BatchService";
    /// `shoal.v1.WatchService`.
    pub const WATCH: &str = "shoal.v1.WatchService";
    /// `shoal.v1.ClusterService`.
    pub const CLUSTER: &str = "shoal.v1.ClusterService";
}
