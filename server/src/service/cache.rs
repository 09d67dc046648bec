//! `shoal.v1.CacheService`: keys, strings, counters, expiry and scans.

use std::sync::Arc;

use bytes::Bytes;
use shoal_proto::v1 as pb;
use shoal_proto::v1::cache_service_server::CacheService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::status::{engine_status, invalid};
use super::{ServiceState, convert, method, validate};
use crate::engine::{EngineError, KeyPattern, Namespace, ScanFilter, SetOptions};
use crate::observe::telemetry::record_call;

/// Keys per Scan page when the request does not say.
pub const DEFAULT_SCAN_PAGE: u32 = 100;
/// Most keys per Scan page.
pub const MAX_SCAN_PAGE: u32 = 10_000;
/// Scan pages buffered ahead of a slow reader.
const SCAN_PAGES_IN_FLIGHT: usize = 2;

/// Implementation of `CacheService` over the engine.
#[derive(Debug, Clone)]
pub struct CacheApi {
    state: Arc<ServiceState>,
}

impl CacheApi {
    pub(crate) fn new(state: Arc<ServiceState>) -> Self {
        Self { state }
    }

    fn get(&self, request: pb::GetRequest) -> Result<pb::GetResponse, Status> {
        record_call(&request.namespace, 1);
        let Some(namespace) = self.state.readable(&request.namespace)? else {
            validate::key(&self.state, &request.key)?;
            return Ok(pb::GetResponse::default());
        };
        let found = namespace
            .get_with_meta(&request.key)
            .map_err(|error| engine_status(error, None))?;
        Ok(match found {
            None => pb::GetResponse::default(),
            Some((value, meta)) => pb::GetResponse {
                found: true,
                value,
                meta: request.include_meta.then(|| convert::meta(meta)),
            },
        })
    }

    fn set(&self, request: pb::SetRequest) -> Result<pb::SetResponse, Status> {
        record_call(&request.namespace, 1);
        let namespace = self.state.writable(&request.namespace)?;
        let options = SetOptions {
            expiry: convert::expiry(request.expiry),
            condition: convert::condition(request.condition),
            return_previous: request.return_previous,
        };
        let value = unary_value(&request);
        let outcome = namespace
            .set(&request.key, value, options)
            .map_err(|error| engine_status(error, None))?;
        Ok(pb::SetResponse {
            stored: outcome.stored,
            version: outcome.version,
            previous: outcome.previous,
        })
    }

    fn delete(&self, request: pb::DeleteRequest) -> Result<pb::DeleteResponse, Status> {
        record_call(&request.namespace, request.keys.len());
        validate::item_count("keys", request.keys.len(), 0)?;
        let Some(namespace) = self.state.readable(&request.namespace)? else {
            validate::keys(&self.state, &request.keys)?;
            return Ok(pb::DeleteResponse { deleted: 0 });
        };
        validate::keys(&self.state, &request.keys)?;
        let deleted = namespace
            .delete(&request.keys)
            .map_err(|error| engine_status(error, None))?;
        Ok(pb::DeleteResponse { deleted })
    }

    fn describe(&self, request: pb::DescribeRequest) -> Result<pb::DescribeResponse, Status> {
        record_call(&request.namespace, request.keys.len());
        validate::item_count("keys", request.keys.len(), 0)?;
        validate::keys(&self.state, &request.keys)?;
        let namespace = self.state.readable(&request.namespace)?;
        let keys = request
            .keys
            .into_iter()
            .enumerate()
            .map(|(index, key)| {
                let meta = match &namespace {
                    None => None,
                    Some(namespace) => namespace
                        .describe(&key)
                        .map_err(|error| engine_status(error, Some(&format!("keys[{index}]"))))?,
                };
                Ok(pb::KeyDescription {
                    key,
                    exists: meta.is_some(),
                    meta: meta.map(convert::meta),
                })
            })
            .collect::<Result<_, Status>>()?;
        Ok(pb::DescribeResponse { keys })
    }

    fn increment(&self, request: pb::IncrementRequest) -> Result<pb::IncrementResponse, Status> {
        record_call(&request.namespace, 1);
        let namespace = self.state.writable(&request.namespace)?;
        let outcome = namespace
            .increment(
                &request.key,
                request.delta,
                request.initial,
                convert::expiry(request.expiry),
            )
            .map_err(|error| engine_status(error, None))?;
        Ok(pb::IncrementResponse {
            value: outcome.value,
            version: outcome.version,
            created: outcome.created,
        })
    }

    fn update_ttl(&self, request: pb::UpdateTtlRequest) -> Result<pb::UpdateTtlResponse, Status> {
        record_call(&request.namespace, 1);
        let Some(expiry) = request.expiry.filter(|expiry| expiry.kind.is_some()) else {
            return Err(invalid(
                "expiry",
                "expiry is required: set ttl_ms, at_unix_ms or never",
            ));
        };
        let expiry = convert::expiry(Some(expiry));
        let Some(namespace) = self.state.readable(&request.namespace)? else {
            validate::key(&self.state, &request.key)?;
            return Ok(pb::UpdateTtlResponse::default());
        };
        let version = namespace
            .update_expiry(&request.key, expiry)
            .map_err(|error| engine_status(error, None))?;
        Ok(pb::UpdateTtlResponse {
            existed: version.is_some(),
            version: version.unwrap_or(0),
        })
    }

    fn count(&self, request: pb::CountRequest) -> Result<pb::CountResponse, Status> {
        record_call(&request.namespace, 0);
        let keys = self
            .state
            .readable(&request.namespace)?
            .map_or(0, |namespace| namespace.len());
        Ok(pb::CountResponse { keys })
    }

    /// Validates a scan request and starts a task that streams its pages.
    fn scan(
        &self,
        request: pb::ScanRequest,
    ) -> Result<ReceiverStream<Result<pb::ScanResponse, Status>>, Status> {
        record_call(&request.namespace, 0);
        let page_size = match request.page_size {
            0 => DEFAULT_SCAN_PAGE,
            size if size <= MAX_SCAN_PAGE => size,
            size => {
                return Err(invalid(
                    "page_size",
                    format!("page_size is {size}, over the limit of {MAX_SCAN_PAGE}"),
                ));
            }
        } as usize;
        let key_type = convert::key_type_filter("type", request.r#type)?;
        let pattern = match request.pattern.as_str() {
            "" | "*" => None,
            text => Some(KeyPattern::new(text).map_err(|error| engine_status(error, None))?),
        };
        let filter = ScanFilter { pattern, key_type };
        let (sender, receiver) = mpsc::channel(SCAN_PAGES_IN_FLIGHT);
        let Some(namespace) = self.state.readable(&request.namespace)? else {
            if !request.cursor.is_empty() {
                return Err(engine_status(EngineError::InvalidCursor, None));
            }
            let _ = sender.try_send(Ok(pb::ScanResponse::default()));
            return Ok(ReceiverStream::new(receiver));
        };
        let cursor = namespace
            .decode_cursor(&request.cursor)
            .map_err(|error| engine_status(error, None))?;
        let limit = if request.limit == 0 {
            u64::MAX
        } else {
            request.limit
        };
        tokio::spawn(stream_scan(
            namespace, cursor, filter, page_size, limit, sender,
        ));
        Ok(ReceiverStream::new(receiver))
    }
}

/// Sends full pages until the scan or the limit is reached, or the caller
/// goes away. Each engine call does bounded work and the task yields between
/// calls, so a scan of a large keyspace never monopolises a worker.
async fn stream_scan(
    namespace: Arc<Namespace>,
    mut cursor: crate::engine::ScanCursor,
    filter: ScanFilter,
    page_size: usize,
    limit: u64,
    sender: mpsc::Sender<Result<pb::ScanResponse, Status>>,
) {
    let mut remaining = limit;
    let mut keys = Vec::with_capacity(page_size);
    loop {
        let wanted = page_size.min(usize::try_from(remaining).unwrap_or(usize::MAX)) - keys.len();
        let page = namespace.scan(&cursor, &filter, wanted);
        keys.extend(page.keys);
        let next = page.cursor;
        let page_full = keys.len() == page_size || keys.len() as u64 == remaining;
        if next.is_some() && !page_full {
            cursor = next.unwrap_or_default();
            tokio::task::yield_now().await;
            continue;
        }
        remaining -= keys.len() as u64;
        let finished = next.is_none() || remaining == 0;
        let response = pb::ScanResponse {
            keys: std::mem::take(&mut keys),
            cursor: next
                .as_ref()
                .map(|next| namespace.encode_cursor(next))
                .unwrap_or_default(),
        };
        if sender.send(Ok(response)).await.is_err() || finished {
            return;
        }
        cursor = next.unwrap_or_default();
    }
}

#[tonic::async_trait]
impl CacheService for CacheApi {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::GET, request).await;
        }
        self.state
            .acked(CacheApi::get(self, request.into_inner()))
            .await
    }

    async fn set(
        &self,
        request: Request<pb::SetRequest>,
    ) -> Result<Response<pb::SetResponse>, Status> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::SET, request).await;
        }
        self.state
            .acked(CacheApi::set(self, request.into_inner()))
            .await
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.state.authorize(&request)?;
        if request.get_ref().keys.len() <= super::MAX_ITEMS_PER_REQUEST
            && let Some(groups) = self
                .state
                .owners_of(request.metadata(), &request.get_ref().keys)?
        {
            let metadata = self.state.travelling_metadata(request.metadata());
            let deleted = super::split::delete(
                &self.state,
                &metadata,
                request.into_inner(),
                groups,
                |part| CacheApi::delete(self, part),
            )
            .await;
            return super::reply(deleted);
        }
        self.state
            .acked(CacheApi::delete(self, request.into_inner()))
            .await
    }

    async fn describe(
        &self,
        request: Request<pb::DescribeRequest>,
    ) -> Result<Response<pb::DescribeResponse>, Status> {
        self.state.authorize(&request)?;
        if request.get_ref().keys.len() <= super::MAX_ITEMS_PER_REQUEST
            && let Some(groups) = self
                .state
                .owners_of(request.metadata(), &request.get_ref().keys)?
        {
            let metadata = self.state.travelling_metadata(request.metadata());
            let described =
                super::split::describe(&metadata, request.into_inner(), groups, |part| {
                    CacheApi::describe(self, part)
                })
                .await;
            return super::reply(described);
        }
        self.state
            .acked(CacheApi::describe(self, request.into_inner()))
            .await
    }

    async fn increment(
        &self,
        request: Request<pb::IncrementRequest>,
    ) -> Result<Response<pb::IncrementResponse>, Status> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::INCREMENT, request).await;
        }
        self.state
            .acked(CacheApi::increment(self, request.into_inner()))
            .await
    }

    async fn update_ttl(
        &self,
        request: Request<pb::UpdateTtlRequest>,
    ) -> Result<Response<pb::UpdateTtlResponse>, Status> {
        self.state.authorize(&request)?;
        if let Some(owner) = self.state.remote_owner(&request)? {
            return owner.unary(method::UPDATE_TTL, request).await;
        }
        self.state
            .acked(CacheApi::update_ttl(self, request.into_inner()))
            .await
    }

    type ScanStream = ReceiverStream<Result<pb::ScanResponse, Status>>;

    async fn scan(
        &self,
        request: Request<pb::ScanRequest>,
    ) -> Result<Response<Self::ScanStream>, Status> {
        self.state.authorize(&request)?;
        let (metadata, _, message) = request.into_parts();
        let api = CacheApi {
            state: Arc::clone(&self.state),
        };
        let whole_cluster = super::fan_out::scan(&self.state, &metadata, &message, move |part| {
            CacheApi::scan(&api, part)
        })?;
        if let Some(pages) = whole_cluster {
            return Ok(Response::new(pages));
        }
        self.state.acked(CacheApi::scan(self, message)).await
    }

    async fn count(
        &self,
        request: Request<pb::CountRequest>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        self.state.authorize(&request)?;
        let others = self.state.other_members(request.metadata())?;
        let message = request.into_inner();
        let mut counted = self
            .state
            .acked(CacheApi::count(self, message.clone()))
            .await?;
        if let Some(others) = others {
            for reply in others
                .each::<_, pb::CountResponse>(method::COUNT, &message)
                .await?
            {
                counted.get_mut().keys += reply.keys;
            }
        }
        Ok(counted)
    }
}

/// Values at least this long are stored as the slice of the receive buffer
/// they arrived in, rather than copied.
const SLICED_VALUE_BYTES: usize = 1 << 20;

/// The value of a unary Set as it is stored.
///
/// A short value is copied, so that it owns exactly its bytes rather than
/// pinning the receive buffer it was decoded from: memory figures stay
/// honest. A long one is kept as it came: the buffer of a unary call holds
/// that one message (its value, key, namespace, a few bytes of framing and
/// at most one 16 KiB HTTP/2 frame beyond), so with the key and namespace
/// at most a 64th of the value, the slice pins at most about 3 % more than
/// it is charged for, and the copy would double what a burst of large
/// writes holds at its peak.
fn unary_value(request: &pb::SetRequest) -> Bytes {
    let value = &request.value;
    let rest = request.key.len() + request.namespace.len();
    if value.len() >= SLICED_VALUE_BYTES && rest <= value.len() / 64 {
        value.clone()
    } else {
        Bytes::copy_from_slice(value)
    }
}
