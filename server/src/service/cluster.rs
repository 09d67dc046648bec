//! `shoal.v1.ClusterService`: the members, for clients that route keys to
//! their owners themselves.

use std::sync::Arc;

use futures_util::StreamExt as _;
use shoal_proto::v1 as pb;
use shoal_proto::v1::cluster_service_server::ClusterService;
use tonic::{Request, Response, Status};

use super::ServiceState;
use super::chunks::ResponseStream;
use crate::cluster::View;

/// Implementation of `ClusterService` over this server's topology.
#[derive(Debug, Clone)]
pub struct ClusterApi {
    state: Arc<ServiceState>,
}

impl ClusterApi {
    pub(crate) fn new(state: Arc<ServiceState>) -> Self {
        Self { state }
    }
}

/// `view` as the API shows it.
fn topology(view: &View) -> pb::Topology {
    pb::Topology {
        epoch: view.epoch(),
        members: view
            .members()
            .iter()
            .map(|member| pb::ClusterMember {
                id: member.id.clone(),
                address: member.address.clone(),
                ready: member.ready,
            })
            .collect(),
        local_id: view.local_id().to_string(),
    }
}

#[tonic::async_trait]
impl ClusterService for ClusterApi {
    async fn get_topology(
        &self,
        _request: Request<pb::GetTopologyRequest>,
    ) -> Result<Response<pb::GetTopologyResponse>, Status> {
        Ok(Response::new(pb::GetTopologyResponse {
            topology: Some(topology(&self.state.topology.view())),
        }))
    }

    type WatchTopologyStream = ResponseStream<pb::WatchTopologyResponse>;

    async fn watch_topology(
        &self,
        _request: Request<pb::WatchTopologyRequest>,
    ) -> Result<Response<Self::WatchTopologyStream>, Status> {
        // A session: the RPC layer ends it when the server stops.
        let changes = tokio_stream::wrappers::WatchStream::new(self.state.topology.subscribe());
        let stream = changes.map(|view| {
            Ok(pb::WatchTopologyResponse {
                topology: Some(topology(&view)),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
