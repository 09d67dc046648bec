//! `shoal.v1.CollectionService`: hashes, lists and sets.

use std::sync::Arc;

use bytes::Bytes;
use shoal_proto::v1 as pb;
use shoal_proto::v1::collection_service_server::CollectionService;
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use super::chunks::{ResponseStream, chunk_size, stream_snapshot};
use super::status::{engine_status, invalid};
use super::validate::{self, MAX_ITEMS_PER_REQUEST, item_count, pop_count};
use super::{ServiceState, convert, method};
use crate::engine::{EngineError, Namespace, SetOperation};
use crate::observe::rpc_layer::CallDeadline;
use crate::observe::telemetry::record_call;

/// Implementation of `CollectionService` over the engine.
#[derive(Debug, Clone)]
pub struct CollectionApi {
    state: Arc<ServiceState>,
}

/// Copies request bytes into buffers of their own, so stored elements never
/// pin the request's receive buffer and memory figures stay honest.
fn owned(bytes: &Bytes) -> Bytes {
    Bytes::copy_from_slice(bytes)
}

fn engine(error: EngineError) -> Status {
    engine_status(error, None)
}

impl CollectionApi {
    pub(crate) fn new(state: Arc<ServiceState>) -> Self {
        Self { state }
    }

    /// Runs a read against `key` in `namespace`; a namespace that does not
    /// exist reads as empty (`R::default()`) after the key is checked.
    fn read<R: Default>(
        &self,
        namespace: &str,
        key: &[u8],
        read: impl FnOnce(&Namespace) -> Result<R, EngineError>,
    ) -> Result<R, Status> {
        match self.state.readable(namespace)? {
            Some(namespace) => read(&namespace).map_err(engine),
            None => validate::key(&self.state, key).map(|()| R::default()),
        }
    }

    /// Runs a write that may create `key`, creating the namespace if needed.
    fn create<R>(
        &self,
        namespace: &str,
        write: impl FnOnce(&Namespace) -> Result<R, EngineError>,
    ) -> Result<R, Status> {
        let namespace = self.state.writable(namespace)?;
        write(&namespace).map_err(engine)
    }

    fn hset(&self, request: pb::HSetRequest) -> Result<pb::HSetResponse, Status> {
        record_call(&request.namespace, request.fields.len());
        item_count("fields", request.fields.len(), 1)?;
        let fields = request
            .fields
            .iter()
            .map(|entry| (owned(&entry.field), owned(&entry.value)))
            .collect();
        let expiry = convert::collection_expiry(request.expiry);
        let outcome = self.create(&request.namespace, |ns| {
            ns.hset(&request.key, fields, expiry)
        })?;
        Ok(pb::HSetResponse {
            added: outcome.result,
            version: outcome.version,
        })
    }

    fn hget(&self, request: pb::HGetRequest) -> Result<pb::HGetResponse, Status> {
        record_call(&request.namespace, 1);
        let value = self.read(&request.namespace, &request.key, |ns| {
            ns.hget(&request.key, &request.field)
        })?;
        Ok(found_value(value))
    }

    fn hmget(&self, request: pb::HmGetRequest) -> Result<pb::HmGetResponse, Status> {
        record_call(&request.namespace, request.fields.len());
        item_count("fields", request.fields.len(), 1)?;
        let values = self.read(&request.namespace, &request.key, |ns| {
            ns.hmget(&request.key, &request.fields)
        })?;
        let values = match values.len() {
            0 => vec![pb::OptionalValue::default(); request.fields.len()],
            _ => values
                .into_iter()
                .map(|value| pb::OptionalValue {
                    found: value.is_some(),
                    value: value.unwrap_or_default(),
                })
                .collect(),
        };
        Ok(pb::HmGetResponse { values })
    }

    fn hgetall(
        &self,
        request: pb::HGetAllRequest,
        deadline: Option<Instant>,
    ) -> Result<ResponseStream<pb::HGetAllResponse>, Status> {
        record_call(&request.namespace, 1);
        let chunk = chunk_size(request.chunk_size)?;
        let projection = pb::HashProjection::try_from(request.projection).map_err(|_| {
            invalid(
                "projection",
                format!(
                    "projection has unknown value {}; expected HASH_PROJECTION_UNSPECIFIED (0), \
                     HASH_PROJECTION_FIELDS (1) or HASH_PROJECTION_VALUES (2)",
                    request.projection
                ),
            )
        })?;
        let snapshot = self.read(&request.namespace, &request.key, |ns| {
            ns.hgetall(&request.key)
        })?;
        let len = snapshot.as_ref().map_or(0, |hash| hash.len());
        Ok(stream_snapshot(
            snapshot,
            0..len,
            chunk,
            deadline,
            move |snapshot, at| {
                let (field, value) = snapshot.as_ref()?.get(at)?;
                let entry = match projection {
                    pb::HashProjection::Unspecified => pb::FieldValue {
                        field: field.clone(),
                        value: value.clone(),
                    },
                    pb::HashProjection::Fields => pb::FieldValue {
                        field: field.clone(),
                        value: Bytes::new(),
                    },
                    pb::HashProjection::Values => pb::FieldValue {
                        field: Bytes::new(),
                        value: value.clone(),
                    },
                };
                let size = entry.field.len() + entry.value.len();
                Some((entry, size))
            },
            |entries| pb::HGetAllResponse { entries },
        ))
    }

    fn hdel(&self, request: pb::HDelRequest) -> Result<pb::HDelResponse, Status> {
        record_call(&request.namespace, request.fields.len());
        item_count("fields", request.fields.len(), 1)?;
        let removed = self.read(&request.namespace, &request.key, |ns| {
            ns.hdel(&request.key, &request.fields)
        })?;
        Ok(pb::HDelResponse { removed })
    }

    fn hlen(&self, request: pb::HLenRequest) -> Result<pb::HLenResponse, Status> {
        record_call(&request.namespace, 1);
        let length = self.read(&request.namespace, &request.key, |ns| ns.hlen(&request.key))?;
        Ok(pb::HLenResponse { length })
    }

    fn hexists(&self, request: pb::HExistsRequest) -> Result<pb::HExistsResponse, Status> {
        record_call(&request.namespace, 1);
        let exists = self.read(&request.namespace, &request.key, |ns| {
            ns.hexists(&request.key, &request.field)
        })?;
        Ok(pb::HExistsResponse { exists })
    }

    fn hincrby(&self, request: pb::HIncrByRequest) -> Result<pb::HIncrByResponse, Status> {
        record_call(&request.namespace, 1);
        let expiry = convert::collection_expiry(request.expiry);
        let value = self.create(&request.namespace, |ns| {
            ns.hincrby(&request.key, &request.field, request.delta, expiry)
        })?;
        Ok(pb::HIncrByResponse { value })
    }

    fn push(
        &self,
        namespace: &str,
        key: &Bytes,
        values: &[Bytes],
        front: bool,
        only_if_exists: bool,
        expiry: Option<pb::Expiry>,
    ) -> Result<u64, Status> {
        record_call(namespace, values.len());
        item_count("values", values.len(), 1)?;
        let values = values.iter().map(owned).collect();
        let expiry = convert::collection_expiry(expiry);
        let outcome = self.create(namespace, |ns| {
            ns.push(key, values, front, only_if_exists, expiry)
        })?;
        Ok(outcome.result)
    }

    fn pop(
        &self,
        namespace: &str,
        key: &Bytes,
        count: Option<u32>,
        front: bool,
    ) -> Result<Vec<Bytes>, Status> {
        record_call(namespace, 1);
        let count = pop_count(count)?;
        self.read(namespace, key, |ns| ns.pop(key, count, front))
    }

    fn lrange(
        &self,
        request: pb::LRangeRequest,
        deadline: Option<Instant>,
    ) -> Result<ResponseStream<pb::LRangeResponse>, Status> {
        record_call(&request.namespace, 1);
        let chunk = chunk_size(request.chunk_size)?;
        let snapshot = self.read(&request.namespace, &request.key, |ns| {
            ns.list_snapshot(&request.key)
        })?;
        let positions = snapshot
            .as_ref()
            .map_or(0..0, |list| list.positions(request.start, request.stop));
        Ok(stream_snapshot(
            snapshot,
            positions,
            chunk,
            deadline,
            |snapshot, at| {
                snapshot
                    .as_ref()?
                    .get(at)
                    .map(|value| (value.clone(), value.len()))
            },
            |values| pb::LRangeResponse { values },
        ))
    }

    fn llen(&self, request: pb::LLenRequest) -> Result<pb::LLenResponse, Status> {
        record_call(&request.namespace, 1);
        let length = self.read(&request.namespace, &request.key, |ns| ns.llen(&request.key))?;
        Ok(pb::LLenResponse { length })
    }

    fn ltrim(&self, request: pb::LTrimRequest) -> Result<pb::LTrimResponse, Status> {
        record_call(&request.namespace, 1);
        let length = self.read(&request.namespace, &request.key, |ns| {
            ns.ltrim(&request.key, request.start, request.stop)
        })?;
        Ok(pb::LTrimResponse { length })
    }

    fn lindex(&self, request: pb::LIndexRequest) -> Result<pb::LIndexResponse, Status> {
        record_call(&request.namespace, 1);
        let value = self.read(&request.namespace, &request.key, |ns| {
            ns.lindex(&request.key, request.index)
        })?;
        Ok(pb::LIndexResponse {
            found: value.is_some(),
            value: value.unwrap_or_default(),
        })
    }

    fn lset(&self, request: pb::LSetRequest) -> Result<pb::LSetResponse, Status> {
        record_call(&request.namespace, 1);
        let Some(namespace) = self.state.readable(&request.namespace)? else {
            validate::key(&self.state, &request.key)?;
            return Err(engine(EngineError::NoSuchKey));
        };
        let version = namespace
            .lset(&request.key, request.index, owned(&request.value))
            .map_err(engine)?;
        Ok(pb::LSetResponse { version })
    }

    fn lrem(&self, request: pb::LRemRequest) -> Result<pb::LRemResponse, Status> {
        record_call(&request.namespace, 1);
        let removed = self.read(&request.namespace, &request.key, |ns| {
            ns.lrem(&request.key, request.count, &request.value)
        })?;
        Ok(pb::LRemResponse { removed })
    }

    fn sadd(&self, request: pb::SAddRequest) -> Result<pb::SAddResponse, Status> {
        record_call(&request.namespace, request.members.len());
        item_count("members", request.members.len(), 1)?;
        let members = request.members.iter().map(owned).collect();
        let expiry = convert::collection_expiry(request.expiry);
        let outcome = self.create(&request.namespace, |ns| {
            ns.sadd(&request.key, members, expiry)
        })?;
        Ok(pb::SAddResponse {
            added: outcome.result,
        })
    }

    fn srem(&self, request: pb::SRemRequest) -> Result<pb::SRemResponse, Status> {
        record_call(&request.namespace, request.members.len());
        item_count("members", request.members.len(), 1)?;
        let removed = self.read(&request.namespace, &request.key, |ns| {
            ns.srem(&request.key, &request.members)
        })?;
        Ok(pb::SRemResponse { removed })
    }

    fn smembers(
        &self,
        request: pb::SMembersRequest,
        deadline: Option<Instant>,
    ) -> Result<ResponseStream<pb::SMembersResponse>, Status> {
        record_call(&request.namespace, 1);
        let chunk = chunk_size(request.chunk_size)?;
        let snapshot = self.read(&request.namespace, &request.key, |ns| {
            ns.smembers(&request.key)
        })?;
        let len = snapshot.as_ref().map_or(0, |set| set.len());
        Ok(stream_snapshot(
            snapshot,
            0..len,
            chunk,
            deadline,
            |snapshot, at| {
                snapshot
                    .as_ref()?
                    .get(at)
                    .map(|member| (member.clone(), member.len()))
            },
            |members| pb::SMembersResponse { members },
        ))
    }

    fn smismember(
        &self,
        namespace: &str,
        key: &Bytes,
        members: &[Bytes],
    ) -> Result<Vec<bool>, Status> {
        record_call(namespace, members.len());
        item_count("members", members.len(), 1)?;
        let found = self.read(namespace, key, |ns| ns.smismember(key, members))?;
        Ok(if found.is_empty() {
            vec![false; members.len()]
        } else {
            found
        })
    }

    fn scard(&self, request: pb::SCardRequest) -> Result<pb::SCardResponse, Status> {
        record_call(&request.namespace, 1);
        let cardinality = self.read(&request.namespace, &request.key, |ns| {
            ns.scard(&request.key)
        })?;
        Ok(pb::SCardResponse { cardinality })
    }

    fn spop(&self, request: pb::SPopRequest) -> Result<pb::SPopResponse, Status> {
        record_call(&request.namespace, 1);
        let count = pop_count(request.count)?;
        let members = self.read(&request.namespace, &request.key, |ns| {
            ns.spop(&request.key, count)
        })?;
        Ok(pb::SPopResponse { members })
    }

    fn srandmember(
        &self,
        request: pb::SRandMemberRequest,
    ) -> Result<pb::SRandMemberResponse, Status> {
        record_call(&request.namespace, 1);
        let count = request.count.unwrap_or(1);
        if count.unsigned_abs() > MAX_ITEMS_PER_REQUEST as u64 {
            return Err(invalid(
                "count",
                format!(
                    "count is {count}, must be between -{MAX_ITEMS_PER_REQUEST} and {MAX_ITEMS_PER_REQUEST}"
                ),
            ));
        }
        let members = self.read(&request.namespace, &request.key, |ns| {
            ns.srandmember(&request.key, count)
        })?;
        Ok(pb::SRandMemberResponse { members })
    }

    /// SINTER, SUNION, SDIFF: the result is computed from snapshots, then
    /// streamed in chunks.
    fn combine<M: Send + 'static>(
        &self,
        namespace: &str,
        keys: &[Bytes],
        requested_chunk: u32,
        deadline: Option<Instant>,
        operation: SetOperation,
        message: impl FnMut(Vec<Bytes>) -> M + Send + 'static,
    ) -> Result<ResponseStream<M>, Status> {
        record_call(namespace, keys.len());
        item_count("keys", keys.len(), 1)?;
        validate::keys(&self.state, keys)?;
        let chunk = chunk_size(requested_chunk)?;
        let members = match self.state.readable(namespace)? {
            Some(namespace) => namespace.combine_sets(keys, operation).map_err(engine)?,
            None => Vec::new(),
        };
        let len = members.len();
        Ok(stream_snapshot(
            members,
            0..len,
            chunk,
            deadline,
            |members, at| members.get(at).map(|member| (member.clone(), member.len())),
            message,
        ))
    }
}

fn found_value(value: Option<Bytes>) -> pb::HGetResponse {
    pb::HGetResponse {
        found: value.is_some(),
        value: value.unwrap_or_default(),
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl CollectionService for CollectionApi {
    async fn h_set(&self, request: Request<pb::HSetRequest>) -> Reply<pb::HSetResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::HSET, request).await;
        }
        self.state.acked(self.hset(request.into_inner())).await
    }

    async fn h_get(&self, request: Request<pb::HGetRequest>) -> Reply<pb::HGetResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::HGET, request).await;
        }
        self.state.acked(self.hget(request.into_inner())).await
    }

    async fn hm_get(&self, request: Request<pb::HmGetRequest>) -> Reply<pb::HmGetResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::HMGET, request).await;
        }
        self.state.acked(self.hmget(request.into_inner())).await
    }

    type HGetAllStream = ResponseStream<pb::HGetAllResponse>;

    async fn h_get_all(&self, request: Request<pb::HGetAllRequest>) -> Reply<Self::HGetAllStream> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.server_streaming(method::HGETALL, request).await;
        }
        let deadline = CallDeadline::of(&request);
        self.state
            .acked(self.hgetall(request.into_inner(), deadline))
            .await
    }

    async fn h_del(&self, request: Request<pb::HDelRequest>) -> Reply<pb::HDelResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::HDEL, request).await;
        }
        self.state.acked(self.hdel(request.into_inner())).await
    }

    async fn h_len(&self, request: Request<pb::HLenRequest>) -> Reply<pb::HLenResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::HLEN, request).await;
        }
        self.state.acked(self.hlen(request.into_inner())).await
    }

    async fn h_exists(&self, request: Request<pb::HExistsRequest>) -> Reply<pb::HExistsResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::HEXISTS, request).await;
        }
        self.state.acked(self.hexists(request.into_inner())).await
    }

    async fn h_incr_by(&self, request: Request<pb::HIncrByRequest>) -> Reply<pb::HIncrByResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::HINCRBY, request).await;
        }
        self.state.acked(self.hincrby(request.into_inner())).await
    }

    async fn l_push(&self, request: Request<pb::LPushRequest>) -> Reply<pb::LPushResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::LPUSH, request).await;
        }
        let r = request.into_inner();
        let result = self
            .push(
                &r.namespace,
                &r.key,
                &r.values,
                true,
                r.only_if_exists,
                r.expiry,
            )
            .map(|length| pb::LPushResponse { length });
        self.state.acked(result).await
    }

    async fn r_push(&self, request: Request<pb::RPushRequest>) -> Reply<pb::RPushResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::RPUSH, request).await;
        }
        let r = request.into_inner();
        let result = self
            .push(
                &r.namespace,
                &r.key,
                &r.values,
                false,
                r.only_if_exists,
                r.expiry,
            )
            .map(|length| pb::RPushResponse { length });
        self.state.acked(result).await
    }

    async fn l_pop(&self, request: Request<pb::LPopRequest>) -> Reply<pb::LPopResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::LPOP, request).await;
        }
        let r = request.into_inner();
        let result = self
            .pop(&r.namespace, &r.key, r.count, true)
            .map(|values| pb::LPopResponse { values });
        self.state.acked(result).await
    }

    async fn r_pop(&self, request: Request<pb::RPopRequest>) -> Reply<pb::RPopResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::RPOP, request).await;
        }
        let r = request.into_inner();
        let result = self
            .pop(&r.namespace, &r.key, r.count, false)
            .map(|values| pb::RPopResponse { values });
        self.state.acked(result).await
    }

    type LRangeStream = ResponseStream<pb::LRangeResponse>;

    async fn l_range(&self, request: Request<pb::LRangeRequest>) -> Reply<Self::LRangeStream> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.server_streaming(method::LRANGE, request).await;
        }
        let deadline = CallDeadline::of(&request);
        self.state
            .acked(self.lrange(request.into_inner(), deadline))
            .await
    }

    async fn l_len(&self, request: Request<pb::LLenRequest>) -> Reply<pb::LLenResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::LLEN, request).await;
        }
        self.state.acked(self.llen(request.into_inner())).await
    }

    async fn l_trim(&self, request: Request<pb::LTrimRequest>) -> Reply<pb::LTrimResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::LTRIM, request).await;
        }
        self.state.acked(self.ltrim(request.into_inner())).await
    }

    async fn l_index(&self, request: Request<pb::LIndexRequest>) -> Reply<pb::LIndexResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::LINDEX, request).await;
        }
        self.state.acked(self.lindex(request.into_inner())).await
    }

    async fn l_set(&self, request: Request<pb::LSetRequest>) -> Reply<pb::LSetResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::LSET, request).await;
        }
        self.state.acked(self.lset(request.into_inner())).await
    }

    async fn l_rem(&self, request: Request<pb::LRemRequest>) -> Reply<pb::LRemResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::LREM, request).await;
        }
        self.state.acked(self.lrem(request.into_inner())).await
    }

    async fn s_add(&self, request: Request<pb::SAddRequest>) -> Reply<pb::SAddResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::SADD, request).await;
        }
        self.state.acked(self.sadd(request.into_inner())).await
    }

    async fn s_rem(&self, request: Request<pb::SRemRequest>) -> Reply<pb::SRemResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::SREM, request).await;
        }
        self.state.acked(self.srem(request.into_inner())).await
    }

    type SMembersStream = ResponseStream<pb::SMembersResponse>;

    async fn s_members(
        &self,
        request: Request<pb::SMembersRequest>,
    ) -> Reply<Self::SMembersStream> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.server_streaming(method::SMEMBERS, request).await;
        }
        let deadline = CallDeadline::of(&request);
        self.state
            .acked(self.smembers(request.into_inner(), deadline))
            .await
    }

    async fn s_is_member(
        &self,
        request: Request<pb::SIsMemberRequest>,
    ) -> Reply<pb::SIsMemberResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::SISMEMBER, request).await;
        }
        let r = request.into_inner();
        let result = self
            .smismember(&r.namespace, &r.key, std::slice::from_ref(&r.member))
            .map(|found| pb::SIsMemberResponse {
                is_member: found.first().copied().unwrap_or(false),
            });
        self.state.acked(result).await
    }

    async fn sm_is_member(
        &self,
        request: Request<pb::SmIsMemberRequest>,
    ) -> Reply<pb::SmIsMemberResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::SMISMEMBER, request).await;
        }
        let r = request.into_inner();
        let result = self
            .smismember(&r.namespace, &r.key, &r.members)
            .map(|is_member| pb::SmIsMemberResponse { is_member });
        self.state.acked(result).await
    }

    async fn s_card(&self, request: Request<pb::SCardRequest>) -> Reply<pb::SCardResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::SCARD, request).await;
        }
        self.state.acked(self.scard(request.into_inner())).await
    }

    async fn s_pop(&self, request: Request<pb::SPopRequest>) -> Reply<pb::SPopResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::SPOP, request).await;
        }
        self.state.acked(self.spop(request.into_inner())).await
    }

    async fn s_rand_member(
        &self,
        request: Request<pb::SRandMemberRequest>,
    ) -> Reply<pb::SRandMemberResponse> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::SRANDMEMBER, request).await;
        }
        self.state
            .acked(self.srandmember(request.into_inner()))
            .await
    }

    type SInterStream = ResponseStream<pb::SInterResponse>;

    async fn s_inter(&self, request: Request<pb::SInterRequest>) -> Reply<Self::SInterStream> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner_of_keys(&request)? {
            return owner.server_streaming(method::SINTER, request).await;
        }
        let deadline = CallDeadline::of(&request);
        let r = request.into_inner();
        let result = self.combine(
            &r.namespace,
            &r.keys,
            r.chunk_size,
            deadline,
            SetOperation::Intersection,
            |members| pb::SInterResponse { members },
        );
        self.state.acked(result).await
    }

    type SUnionStream = ResponseStream<pb::SUnionResponse>;

    async fn s_union(&self, request: Request<pb::SUnionRequest>) -> Reply<Self::SUnionStream> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner_of_keys(&request)? {
            return owner.server_streaming(method::SUNION, request).await;
        }
        let deadline = CallDeadline::of(&request);
        let r = request.into_inner();
        let result = self.combine(
            &r.namespace,
            &r.keys,
            r.chunk_size,
            deadline,
            SetOperation::Union,
            |members| pb::SUnionResponse { members },
        );
        self.state.acked(result).await
    }

    type SDiffStream = ResponseStream<pb::SDiffResponse>;

    async fn s_diff(&self, request: Request<pb::SDiffRequest>) -> Reply<Self::SDiffStream> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner_of_keys(&request)? {
            return owner.server_streaming(method::SDIFF, request).await;
        }
        let deadline = CallDeadline::of(&request);
        let r = request.into_inner();
        let result = self.combine(
            &r.namespace,
            &r.keys,
            r.chunk_size,
            deadline,
            SetOperation::Difference,
            |members| pb::SDiffResponse { members },
        );
        self.state.acked(result).await
    }
}
