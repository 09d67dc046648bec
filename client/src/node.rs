//! The generated service clients of one server, over one channel pool.
//!
//! A [`Client`](crate::Client) talks to one [`Node`], or, when it routes
//! keys to their owners ([`ClientBuilder::topology_aware`](crate::ClientBuilder::topology_aware)),
//! to one per member of the cluster. Everything a call needs to reach a
//! server lives here, so that picking a server is picking a `Node`.

use std::sync::Arc;

use shoal_proto::v1::admin_service_client::AdminServiceClient;
use shoal_proto::v1::batch_service_client::BatchServiceClient;
use shoal_proto::v1::cache_service_client::CacheServiceClient;
use shoal_proto::v1::cluster_service_client::ClusterServiceClient;
use shoal_proto::v1::collection_service_client::CollectionServiceClient;
use shoal_proto::v1::watch_service_client::WatchServiceClient;

use crate::pool::ChannelPool;
use crate::shared_stream::SharedStreams;
use crate::telemetry::TracedChannel;

/// The service clients of one server, sharing its connections.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) cache: CacheServiceClient<TracedChannel>,
    pub(crate) admin: AdminServiceClient<TracedChannel>,
    pub(crate) collection: CollectionServiceClient<TracedChannel>,
    pub(crate) batch: BatchServiceClient<TracedChannel>,
    pub(crate) watch: WatchServiceClient<TracedChannel>,
    pub(crate) cluster: ClusterServiceClient<TracedChannel>,
    /// Long-lived Pipeline streams that carry small batches, one per
    /// connection.
    pub(crate) shared: SharedStreams,
}

impl Node {
    /// The service clients over `pool`, each sending `credential` (a
    /// header name and value) on every call, with `limit` as the largest
    /// message either way.
    pub(crate) fn new(
        pool: ChannelPool,
        credential: Option<(http::HeaderName, http::HeaderValue)>,
        limit: usize,
    ) -> Self {
        let per_connection = pool
            .each()
            .into_iter()
            .map(|pool| {
                BatchServiceClient::new(TracedChannel::new(pool, credential.clone()))
                    .max_decoding_message_size(limit)
                    .max_encoding_message_size(limit)
            })
            .collect();
        let channel = TracedChannel::new(pool, credential);
        Self {
            cache: CacheServiceClient::new(channel.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            admin: AdminServiceClient::new(channel.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            collection: CollectionServiceClient::new(channel.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            batch: BatchServiceClient::new(channel.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            watch: WatchServiceClient::new(channel.clone()),
            cluster: ClusterServiceClient::new(channel),
            shared: SharedStreams::new(per_connection),
        }
    }
}

/// The node a call goes to: borrowed from the client when it does not
/// route (no reference count is touched on that path), shared from the
/// router's view when it does.
#[derive(Debug)]
pub(crate) enum NodeRef<'a> {
    /// The client's own node.
    Seed(&'a Node),
    /// A key's owner, from the router's current view.
    Routed(Arc<Node>),
}

impl std::ops::Deref for NodeRef<'_> {
    type Target = Node;

    fn deref(&self) -> &Node {
        match self {
            Self::Seed(node) => node,
            Self::Routed(node) => node,
        }
    }
}
