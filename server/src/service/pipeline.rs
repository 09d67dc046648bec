//! `BatchService.Pipeline`: any mix of commands over one stream, run in
//! order, each answered as soon as it has run.
//!
//! With the log on, the commands that have arrived are run one after the
//! other (up to [`REPLIES_IN_FLIGHT`]) and their replies held until the
//! log acknowledges the last record they wrote: one wait for the lot
//! rather than one per write. A failed log write turns every held reply
//! into an UNAVAILABLE error, never OK.
//!
//! Every command runs through the same handler as its unary RPC, so a
//! pipelined command validates and behaves exactly as if it had been called
//! on its own. The per-RPC statistics count the Pipeline call once.

use std::sync::Arc;

use futures_util::FutureExt as _;
use shoal_proto::v1 as pb;
use shoal_proto::v1::cache_service_server::CacheService;
use shoal_proto::v1::collection_service_server::CollectionService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status, Streaming};

use super::ServiceState;
use super::batch::BatchApi;
use super::cache::CacheApi;
use super::collection::CollectionApi;
use super::status::{invalid, item_status};
use crate::auth::Access;

/// Largest reply a streaming read may produce inside a pipeline. Larger
/// results belong on the streaming RPC, which sends them in chunks.
pub const MAX_PIPELINE_READ_BYTES: usize = 4 * 1024 * 1024;
/// Replies queued for a client that is slow to read them; commands wait
/// behind them, so a pipeline holds bounded memory.
const REPLIES_IN_FLIGHT: usize = 64;

type Reply = pb::pipeline_response::Result;
type ReplySender = mpsc::Sender<Result<pb::PipelineResponse, Status>>;

/// One pipeline stream's executor.
#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    cache: CacheApi,
    collection: CollectionApi,
    batch: BatchApi,
    state: Arc<ServiceState>,
    /// The caller's rights, which every command is held to.
    access: Access,
    /// The call's metadata that each command carries, so that one whose
    /// key another cluster member owns is forwarded with the caller's
    /// credentials (empty on a single server).
    metadata: MetadataMap,
}

impl Pipeline {
    pub(crate) fn new(state: Arc<ServiceState>, access: Access, metadata: MetadataMap) -> Self {
        Self {
            access,
            metadata,
            cache: CacheApi::new(Arc::clone(&state)),
            collection: CollectionApi::new(Arc::clone(&state)),
            batch: BatchApi::new(Arc::clone(&state)),
            state,
        }
    }

    /// Runs the commands of `requests` on a task of their own and returns
    /// the stream of replies.
    pub(crate) fn start(
        self,
        requests: Streaming<pb::PipelineRequest>,
    ) -> ReceiverStream<Result<pb::PipelineResponse, Status>> {
        let (sender, receiver) = mpsc::channel(REPLIES_IN_FLIGHT);
        tokio::spawn(ServiceState::deferring_acks(self.run(requests, sender)));
        ReceiverStream::new(receiver)
    }

    async fn run(self, mut requests: Streaming<pb::PipelineRequest>, replies: ReplySender) {
        let mut last_id: Option<u64> = None;
        let state = Arc::clone(&self.state);
        let stopped = state.stopped();
        tokio::pin!(stopped);
        loop {
            let request = tokio::select! {
                () = replies.closed() => return,
                () = &mut stopped => {
                    // Commands sent but not read get no reply: the client
                    // learns from the status that they may not have run.
                    let status = Status::unavailable("the server is shutting down");
                    let _ = replies.send(Err(status)).await;
                    return;
                }
                request = requests.next() => request,
            };
            // Run what has arrived, then wait once for the log.
            let mut held = Vec::new();
            let mut next = Some(request);
            let mut ending = None;
            while let Some(request) = next.take() {
                match request {
                    None => {
                        ending = Some(None);
                        break;
                    }
                    Some(Err(status)) => {
                        ending = Some(Some(status));
                        break;
                    }
                    Some(Ok(request)) => held.push(self.answer(request, &mut last_id).await),
                }
                // Without a log there is nothing to wait for: answer at once.
                if self.state.persistence.is_none() || held.len() >= REPLIES_IN_FLIGHT {
                    break;
                }
                next = requests.next().now_or_never();
            }
            let logged = self.state.deferred_logged().await;
            for mut reply in held {
                if let Err(status) = &logged {
                    reply.result = Some(Reply::Error(item_status(status)));
                }
                if replies.send(Ok(reply)).await.is_err() {
                    return;
                }
            }
            match ending {
                None => {}
                Some(None) => return,
                Some(Some(status)) => {
                    let _ = replies.send(Err(status)).await;
                    return;
                }
            }
        }
    }

    /// Runs one command and builds its reply.
    async fn answer(
        &self,
        request: pb::PipelineRequest,
        last_id: &mut Option<u64>,
    ) -> pb::PipelineResponse {
        let id = request.id;
        let result = match *last_id {
            Some(last) if id <= last => Err(invalid(
                "id",
                format!("id {id} is not greater than the previous id {last} on this stream"),
            )),
            _ => {
                *last_id = Some(id);
                self.execute(request.command).await
            }
        };
        pb::PipelineResponse {
            id,
            result: Some(result.unwrap_or_else(|status| Reply::Error(item_status(&status)))),
        }
    }

    /// A command's request as its handler takes it: carrying the caller's
    /// rights, as the pipeline call did.
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.extensions_mut().insert(self.access.clone());
        if !self.metadata.is_empty() {
            *request.metadata_mut() = self.metadata.clone();
        }
        request
    }

    /// Runs one command through its unary handler.
    async fn execute(
        &self,
        command: Option<pb::pipeline_request::Command>,
    ) -> Result<Reply, Status> {
        use pb::pipeline_request::Command as C;

        /// Calls a unary handler and wraps its response in a reply variant.
        macro_rules! unary {
            ($api:expr, $service:ident :: $method:ident, $request:expr, $reply:ident) => {
                $service::$method($api, self.request($request))
                    .await
                    .map(|response| Reply::$reply(response.into_inner()))
            };
        }
        /// Calls a streaming handler and gathers its chunks into one reply,
        /// appending each chunk's `$items` to the first chunk's.
        macro_rules! gathered {
            ($method:ident, $request:expr, $reply:ident, $items:ident) => {{
                let stream = CollectionService::$method(&self.collection, self.request($request))
                    .await?
                    .into_inner();
                gather(stream, |all, chunk| all.$items.extend(chunk.$items))
                    .await
                    .map(Reply::$reply)
            }};
        }

        let cache = &self.cache;
        let coll = &self.collection;
        match command {
            None => Err(invalid(
                "command",
                "command is unset, or a kind this server does not know",
            )),
            Some(C::Get(r)) => unary!(cache, CacheService::get, r, Get),
            Some(C::Set(r)) => unary!(cache, CacheService::set, r, Set),
            Some(C::Delete(r)) => unary!(cache, CacheService::delete, r, Delete),
            Some(C::Describe(r)) => unary!(cache, CacheService::describe, r, Describe),
            Some(C::Increment(r)) => unary!(cache, CacheService::increment, r, Increment),
            Some(C::UpdateTtl(r)) => unary!(cache, CacheService::update_ttl, r, UpdateTtl),
            Some(C::Count(r)) => unary!(cache, CacheService::count, r, Count),
            Some(C::GetBatch(r)) => {
                let stream = self.batch.batch_routed(&self.access, &self.metadata, r)?;
                gather(stream, |all, chunk| {
                    all.items.extend(chunk.items);
                })
                .await
                .map(Reply::GetBatch)
            }
            Some(C::SetBatch(r)) => {
                let reply = self
                    .batch
                    .set_chunk_routed(&self.access, &self.metadata, r, &mut 0)
                    .await;
                self.state.logged().await?;
                reply.map(Reply::SetBatch)
            }
            Some(C::DeleteBatch(r)) => {
                let stream = self.batch.batch_routed(&self.access, &self.metadata, r)?;
                gather(stream, |all, chunk| {
                    all.items.extend(chunk.items);
                })
                .await
                .map(Reply::DeleteBatch)
            }

            Some(C::HSet(r)) => unary!(coll, CollectionService::h_set, r, HSet),
            Some(C::HGet(r)) => unary!(coll, CollectionService::h_get, r, HGet),
            Some(C::HmGet(r)) => unary!(coll, CollectionService::hm_get, r, HmGet),
            Some(C::HGetAll(r)) => gathered!(h_get_all, r, HGetAll, entries),
            Some(C::HDel(r)) => unary!(coll, CollectionService::h_del, r, HDel),
            Some(C::HLen(r)) => unary!(coll, CollectionService::h_len, r, HLen),
            Some(C::HExists(r)) => unary!(coll, CollectionService::h_exists, r, HExists),
            Some(C::HIncrBy(r)) => unary!(coll, CollectionService::h_incr_by, r, HIncrBy),

            Some(C::LPush(r)) => unary!(coll, CollectionService::l_push, r, LPush),
            Some(C::RPush(r)) => unary!(coll, CollectionService::r_push, r, RPush),
            Some(C::LPop(r)) => unary!(coll, CollectionService::l_pop, r, LPop),
            Some(C::RPop(r)) => unary!(coll, CollectionService::r_pop, r, RPop),
            Some(C::LRange(r)) => gathered!(l_range, r, LRange, values),
            Some(C::LLen(r)) => unary!(coll, CollectionService::l_len, r, LLen),
            Some(C::LTrim(r)) => unary!(coll, CollectionService::l_trim, r, LTrim),
            Some(C::LIndex(r)) => unary!(coll, CollectionService::l_index, r, LIndex),
            Some(C::LSet(r)) => unary!(coll, CollectionService::l_set, r, LSet),
            Some(C::LRem(r)) => unary!(coll, CollectionService::l_rem, r, LRem),

            Some(C::SAdd(r)) => unary!(coll, CollectionService::s_add, r, SAdd),
            Some(C::SRem(r)) => unary!(coll, CollectionService::s_rem, r, SRem),
            Some(C::SMembers(r)) => gathered!(s_members, r, SMembers, members),
            Some(C::SIsMember(r)) => unary!(coll, CollectionService::s_is_member, r, SIsMember),
            Some(C::SmIsMember(r)) => {
                unary!(coll, CollectionService::sm_is_member, r, SmIsMember)
            }
            Some(C::SCard(r)) => unary!(coll, CollectionService::s_card, r, SCard),
            Some(C::SPop(r)) => unary!(coll, CollectionService::s_pop, r, SPop),
            Some(C::SRandMember(r)) => {
                unary!(coll, CollectionService::s_rand_member, r, SRandMember)
            }
            Some(C::SInter(r)) => gathered!(s_inter, r, SInter, members),
            Some(C::SUnion(r)) => gathered!(s_union, r, SUnion, members),
            Some(C::SDiff(r)) => gathered!(s_diff, r, SDiff, members),
        }
    }
}

/// Gathers a chunked read into one message, failing with RESOURCE_EXHAUSTED
/// once it passes [`MAX_PIPELINE_READ_BYTES`].
async fn gather<M, S>(mut stream: S, append: impl Fn(&mut M, M)) -> Result<M, Status>
where
    M: prost::Message + Default,
    S: Stream<Item = Result<M, Status>> + Unpin,
{
    let mut all = M::default();
    let mut bytes = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        bytes += chunk.encoded_len();
        if bytes > MAX_PIPELINE_READ_BYTES {
            return Err(Status::resource_exhausted(format!(
                "the result is over {MAX_PIPELINE_READ_BYTES} bytes, the limit for one \
                 pipeline reply; read it with the streaming RPC instead"
            )));
        }
        append(&mut all, chunk);
    }
    Ok(all)
}
