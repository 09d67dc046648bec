//! Calls whose key another cluster member owns, forwarded once to it (see
//! the [cluster design](crate::cluster)).

use std::sync::Arc;

use bytes::Bytes;
use http::uri::PathAndQuery;
use shoal_proto::codec::PresizedCodec;
use shoal_proto::v1 as pb;
use tonic::client::Grpc;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::ServiceState;
use super::chunks::ResponseStream;
use crate::cluster::{Cluster, Member, View};

/// Metadata on a forwarded call, naming the member that forwarded it; a
/// call that carries it is served where it lands.
pub const FORWARDED_BY: &str = "shoal-forwarded-by";

/// Request metadata that travels with a forwarded call: credentials, the
/// deadline and the trace context.
const FORWARDED_METADATA: &[&str] = &[
    "authorization",
    "shoal-token",
    "grpc-timeout",
    "traceparent",
    "tracestate",
];

/// A request that names one key, which places it.
pub(crate) trait Keyed: prost::Message + Send + 'static {
    /// The key the call acts on.
    fn key(&self) -> &[u8];
}

/// Implements a one-field accessor trait for each request named.
macro_rules! field_of {
    ($trait:ident :: $method:ident -> $type:ty { $field:ident }: $($request:ident),* $(,)?) => {
        $(
            impl $trait for pb::$request {
                fn $method(&self) -> $type {
                    &self.$field
                }
            }
        )*
    };
}

field_of!(Keyed::key -> &[u8] { key }:
    GetRequest,
    SetRequest,
    IncrementRequest,
    UpdateTtlRequest,
    HSetRequest,
    HGetRequest,
    HmGetRequest,
    HGetAllRequest,
    HDelRequest,
    HLenRequest,
    HExistsRequest,
    HIncrByRequest,
    LPushRequest,
    RPushRequest,
    LPopRequest,
    RPopRequest,
    LRangeRequest,
    LLenRequest,
    LTrimRequest,
    LIndexRequest,
    LSetRequest,
    LRemRequest,
    SAddRequest,
    SRemRequest,
    SMembersRequest,
    SIsMemberRequest,
    SmIsMemberRequest,
    SCardRequest,
    SPopRequest,
    SRandMemberRequest,
);

/// A request that names several keys which must share an owner.
pub(crate) trait MultiKeyed: prost::Message + Send + 'static {
    /// The keys the call acts on.
    fn keys(&self) -> &[Bytes];
}

field_of!(MultiKeyed::keys -> &[Bytes] { keys }: SInterRequest, SUnionRequest, SDiffRequest);

/// The member a call goes to instead of being served here.
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    id: String,
    address: String,
    channel: Channel,
    local_id: String,
    max_message: usize,
    /// Told when the owner cannot be reached, so that it is taken out at
    /// once rather than after the probes' detection window.
    topology: Arc<crate::cluster::Topology>,
}

impl ServiceState {
    /// The owner of `request`'s key when that is another member; `None`
    /// to serve it here (a single server, a forwarded call, or a key this
    /// member owns).
    pub(crate) fn remote_owner<T: Keyed>(
        &self,
        request: &Request<T>,
    ) -> Result<Option<Owner>, Status> {
        match self.routing(request.metadata()) {
            None => Ok(None),
            Some((cluster, view)) => owner_of(cluster, &view, request.get_ref().key()),
        }
    }

    /// As [`ServiceState::remote_owner`] for a call naming several keys:
    /// FAILED_PRECONDITION when they have different owners.
    pub(crate) fn remote_owner_of_keys<T: MultiKeyed>(
        &self,
        request: &Request<T>,
    ) -> Result<Option<Owner>, Status> {
        let Some((cluster, view)) = self.routing(request.metadata()) else {
            return Ok(None);
        };
        let keys = request.get_ref().keys();
        let Some(first) = keys.first() else {
            return Ok(None);
        };
        let owner = view.owner_index(first);
        if let Some(index) = keys.iter().position(|key| view.owner_index(key) != owner) {
            return Err(Status::failed_precondition(format!(
                "keys[0] and keys[{index}] are owned by different cluster members; \
                 keys used together need one hash tag, as in {{user:42}}:a and {{user:42}}:b"
            )));
        }
        owner_of(cluster, &view, first)
    }

    /// The keys of a batch call grouped by owner, each group with the
    /// keys' positions in order; `None` when every key is served here (a
    /// single server, a forwarded call, or keys this member owns).
    pub(crate) fn owners_of(
        &self,
        metadata: &MetadataMap,
        keys: &[Bytes],
    ) -> Result<Option<Vec<Group>>, Status> {
        let Some((cluster, view)) = self.routing(metadata) else {
            return Ok(None);
        };
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        for (position, key) in keys.iter().enumerate() {
            let Some(member) = view.owner_index(key) else {
                return Err(Status::unavailable(
                    "no cluster member is ready to own keys; retry once members are up",
                ));
            };
            match groups.iter_mut().find(|(owner, _)| *owner == member) {
                Some((_, positions)) => positions.push(position),
                None => groups.push((member, vec![position])),
            }
        }
        let all_local = groups
            .iter()
            .all(|(member, _)| view.is_local(&view.members()[*member]));
        if all_local {
            return Ok(None);
        }
        groups
            .into_iter()
            .map(|(member, positions)| {
                let member = &view.members()[member];
                let owner = if view.is_local(member) {
                    None
                } else {
                    Some(owner(cluster, &view, member)?)
                };
                Ok(Group { owner, positions })
            })
            .collect::<Result<_, Status>>()
            .map(Some)
    }

    /// The metadata of a call that its parts carry when they are run
    /// apart (the commands of a pipeline, the parts of a split batch):
    /// credentials, deadline, trace context and the forwarded mark. Empty
    /// on a single server.
    pub(crate) fn travelling_metadata(&self, metadata: &MetadataMap) -> MetadataMap {
        let mut travelling = MetadataMap::new();
        if self.cluster.is_some() {
            for name in FORWARDED_METADATA.iter().chain(&[FORWARDED_BY]) {
                if let Some(value) = metadata.get(*name) {
                    travelling.insert(*name, value.clone());
                }
            }
        }
        travelling
    }

    /// The cluster and its current view, when calls are routed: not on a
    /// single server, and not for a call already forwarded once.
    pub(crate) fn routing(&self, metadata: &MetadataMap) -> Option<(&Arc<Cluster>, Arc<View>)> {
        let cluster = self.cluster.as_ref()?;
        if metadata.contains_key(FORWARDED_BY) {
            return None;
        }
        Some((cluster, cluster.topology().view()))
    }
}

fn owner_of(cluster: &Cluster, view: &View, key: &[u8]) -> Result<Option<Owner>, Status> {
    let Some(member) = view.owner(key) else {
        return Err(Status::unavailable(
            "no cluster member is ready to own keys; retry once members are up",
        ));
    };
    if view.is_local(member) {
        return Ok(None);
    }
    owner(cluster, view, member).map(Some)
}

pub(crate) fn owner(cluster: &Cluster, view: &View, member: &Member) -> Result<Owner, Status> {
    let channel = cluster
        .peers()
        .channel(member)
        .map_err(|error| Status::internal(error.to_string()))?;
    Ok(Owner {
        id: member.id.clone(),
        address: member.address.clone(),
        channel,
        local_id: view.local_id().to_string(),
        max_message: cluster.max_message(),
        topology: Arc::clone(cluster.topology()),
    })
}

/// Keys of a batch that one member owns.
#[derive(Debug)]
pub(crate) struct Group {
    /// The member, or `None` for this one.
    pub(crate) owner: Option<Owner>,
    /// The keys' positions in the batch, in order.
    pub(crate) positions: Vec<usize>,
}

impl Owner {
    /// Sends the unary `request` to the owner and returns its answer.
    pub(crate) async fn unary<T, R>(
        self,
        path: &'static str,
        request: Request<T>,
    ) -> Result<Response<R>, Status>
    where
        T: prost::Message + Send + 'static,
        R: prost::Message + Default + Send + 'static,
    {
        let outgoing = self.outgoing(request);
        let mut grpc = self.client().await?;
        grpc.unary(
            outgoing,
            PathAndQuery::from_static(path),
            PresizedCodec::default(),
        )
        .await
        .map_err(|status| self.named(status))
    }

    /// Sends the server-streaming `request` to the owner and relays its
    /// stream.
    pub(crate) async fn server_streaming<T, R>(
        self,
        path: &'static str,
        request: Request<T>,
    ) -> Result<Response<ResponseStream<R>>, Status>
    where
        T: prost::Message + Send + 'static,
        R: prost::Message + Default + Send + 'static,
    {
        let outgoing = self.outgoing(request);
        let mut grpc = self.client().await?;
        let response = grpc
            .server_streaming(
                outgoing,
                PathAndQuery::from_static(path),
                PresizedCodec::default(),
            )
            .await
            .map_err(|status| self.named(status))?;
        Ok(response.map(|stream| Box::pin(stream) as ResponseStream<R>))
    }

    /// Sends one message on the client-streaming or bidirectional
    /// `path` and returns the owner's replies.
    pub(crate) async fn one_message_stream<T, R>(
        self,
        path: &'static str,
        request: Request<T>,
    ) -> Result<Response<ResponseStream<R>>, Status>
    where
        T: prost::Message + Send + 'static,
        R: prost::Message + Default + Send + 'static,
    {
        let outgoing = self
            .outgoing(request)
            .map(|message| futures_util::stream::iter([message]));
        let mut grpc = self.client().await?;
        let response = grpc
            .streaming(
                outgoing,
                PathAndQuery::from_static(path),
                PresizedCodec::default(),
            )
            .await
            .map_err(|status| self.named(status))?;
        Ok(response.map(|stream| Box::pin(stream) as ResponseStream<R>))
    }

    async fn client(&self) -> Result<Grpc<Channel>, Status> {
        let mut grpc = Grpc::new(self.channel.clone())
            .max_decoding_message_size(self.max_message)
            .max_encoding_message_size(self.max_message);
        grpc.ready()
            .await
            .map_err(|error| self.named(Status::unavailable(error.to_string())))?;
        Ok(grpc)
    }

    /// `request`'s message with the metadata that travels, marked as
    /// forwarded.
    fn outgoing<T>(&self, request: Request<T>) -> Request<T> {
        let (metadata, _, message) = request.into_parts();
        let mut outgoing = Request::new(message);
        let headers = outgoing.metadata_mut();
        for name in FORWARDED_METADATA {
            if let Some(value) = metadata.get(*name) {
                headers.insert(*name, value.clone());
            }
        }
        if let Ok(by) = MetadataValue::try_from(self.local_id.as_str()) {
            headers.insert(FORWARDED_BY, by);
        }
        outgoing
    }

    /// `status` with the owner named when it could not be reached.
    ///
    /// An owner that cannot be reached is also marked down at once, as a
    /// circuit breaker: the next calls for its keys go to the next members
    /// instead of failing until the probes agree, and the next probe that
    /// finds it SERVING (one probe interval later) brings it back. Only
    /// UNAVAILABLE counts: a deadline that passes may be the caller's own.
    pub(crate) fn named(&self, status: Status) -> Status {
        if status.code() == tonic::Code::Unavailable {
            if !self.topology.view().is_down(&self.id) {
                tracing::warn!(
                    member = %self.id,
                    address = %self.address,
                    error = %status.message(),
                    "cluster member could not be reached: marked down until a probe finds it serving"
                );
                self.topology.set_ready(&self.id, false);
            }
            Status::unavailable(format!(
                "cluster member {} at {}, which owns the key, is unavailable: {}",
                self.id,
                self.address,
                status.message()
            ))
        } else {
            status
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cluster::Topology;

    /// A forward that cannot reach its owner takes the owner out at once,
    /// without waiting for the probes (none run here).
    #[tokio::test]
    async fn an_owner_that_cannot_be_reached_is_marked_down_at_once() {
        // Nothing listens on port 1.
        let members = vec![
            Member {
                id: "a".into(),
                address: "127.0.0.1:2".into(),
                ready: true,
            },
            Member {
                id: "b".into(),
                address: "127.0.0.1:1".into(),
                ready: true,
            },
        ];
        let topology = Arc::new(Topology::new("a", members));
        let cluster = Cluster::with_topology(
            Arc::clone(&topology),
            crate::cluster::Peers::plaintext(Duration::from_millis(500)),
            1 << 20,
        );
        let view = topology.view();
        let b = view
            .members()
            .iter()
            .find(|member| member.id == "b")
            .unwrap();
        let owner = owner(&cluster, &view, b).expect("an owner");
        let status = owner
            .unary::<_, pb::GetResponse>(
                super::super::method::GET,
                Request::new(pb::GetRequest::default()),
            )
            .await
            .expect_err("nothing listens");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().contains("cluster member b"), "{status:?}");
        assert!(topology.view().is_down("b"));
        assert!(!topology.view().is_down("a"));
    }
}
