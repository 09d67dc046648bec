//! Namespace-wide calls answered for the whole cluster: Count, Flush and
//! Stats run on every ready member and their answers are added up; Scan
//! walks the members one after another behind one cursor.
//!
//! A call that carries the forwarded mark is answered by the member it
//! reaches alone, which is how each member's part is asked for. A member
//! that is down owns no keys and is not asked; a ready member that cannot
//! be reached fails the call with its UNAVAILABLE status, named, rather
//! than answering with a silent undercount. The calls are idempotent, so
//! the caller may simply retry.
//!
//! # The cluster scan cursor
//!
//! A scan visits the ready members in order of id, each with its own
//! cursor. The cluster cursor is `0xC5`, the length of the member's id (one
//! byte), the id, then that member's cursor. A member that leaves during a
//! scan is skipped (its keys left with it); one that joins with an id
//! after the cursor's is visited, one with an id before it is not. Keys do
//! not move between members while they live, so a key stored on a member
//! for the whole scan is returned, as Redis promises for SCAN.

use futures_util::StreamExt as _;
use futures_util::future::join_all;
use shoal_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use super::forward::Owner;
use super::{ServiceState, method};
use crate::cluster::View;

/// The first byte of a cluster scan cursor.
const CLUSTER_CURSOR: u8 = 0xC5;

/// Pages of a cluster scan buffered ahead of a slow reader.
const PAGES_IN_FLIGHT: usize = 2;

/// The members a namespace-wide call must reach besides this one.
pub(crate) struct Others {
    /// Every other ready member.
    pub(crate) members: Vec<Owner>,
    /// The metadata their parts carry.
    pub(crate) metadata: MetadataMap,
}

impl ServiceState {
    /// The other ready members a namespace-wide call also runs on; `None`
    /// to answer here alone (a single server, or a call forwarded here).
    pub(crate) fn other_members(&self, metadata: &MetadataMap) -> Result<Option<Others>, Status> {
        let Some((cluster, view)) = self.routing(metadata) else {
            return Ok(None);
        };
        let members = view
            .members()
            .iter()
            .filter(|member| member.ready && !view.is_local(member))
            .map(|member| super::forward::owner(cluster, &view, member))
            .collect::<Result<Vec<_>, Status>>()?;
        Ok(Some(Others {
            members,
            metadata: self.travelling_metadata(metadata),
        }))
    }
}

impl Others {
    /// `message` sent to every other member as a unary `path` call: their
    /// replies, or the first failure.
    pub(crate) async fn each<T, R>(&self, path: &'static str, message: &T) -> Result<Vec<R>, Status>
    where
        T: prost::Message + Clone + Send + 'static,
        R: prost::Message + Default + Send + 'static,
    {
        let calls = self.members.iter().map(|owner| {
            let mut request = Request::new(message.clone());
            *request.metadata_mut() = self.metadata.clone();
            owner.clone().unary::<T, R>(path, request)
        });
        join_all(calls)
            .await
            .into_iter()
            .map(|reply| reply.map(tonic::Response::into_inner))
            .collect()
    }
}

/// Every member's Stats, added up into `local`: counters and sizes are
/// summed, namespaces and RPC methods merged by name; the version, policy,
/// uptime and persistence status stay this member's.
pub(crate) fn merge_stats(local: &mut pb::StatsResponse, remote: Vec<pb::StatsResponse>) {
    for other in remote {
        if let Some(total) = other.total {
            add_namespace(local.total.get_or_insert_with(Default::default), &total);
        }
        for namespace in other.namespaces {
            match local
                .namespaces
                .binary_search_by(|held| held.namespace.cmp(&namespace.namespace))
            {
                Ok(at) => add_namespace(&mut local.namespaces[at], &namespace),
                Err(at) => local.namespaces.insert(at, namespace),
            }
        }
        for rpc in other.rpcs {
            match local
                .rpcs
                .binary_search_by(|held| held.method.cmp(&rpc.method))
            {
                Ok(at) => {
                    let held = &mut local.rpcs[at];
                    held.calls += rpc.calls;
                    held.errors += rpc.errors;
                    for (code, count) in rpc.errors_by_code {
                        *held.errors_by_code.entry(code).or_default() += count;
                    }
                }
                Err(at) => local.rpcs.insert(at, rpc),
            }
        }
        local.max_keys += other.max_keys;
        local.max_memory_bytes += other.max_memory_bytes;
        local.charged_bytes += other.charged_bytes;
        local.inflight_request_bytes += other.inflight_request_bytes;
        local.max_inflight_request_bytes += other.max_inflight_request_bytes;
        local.connections_open += other.connections_open;
        local.auth_failures += other.auth_failures;
        local.permission_denials += other.permission_denials;
        local.members += other.members.max(1);
    }
}

/// Adds `other`'s counters of a namespace to `into`'s.
fn add_namespace(into: &mut pb::NamespaceStats, other: &pb::NamespaceStats) {
    into.keys += other.keys;
    into.hits += other.hits;
    into.misses += other.misses;
    into.sets += other.sets;
    into.deletes += other.deletes;
    into.expirations += other.expirations;
    into.memory_bytes += other.memory_bytes;
    into.flushed += other.flushed;
    into.evictions += other.evictions;
    into.evicted_for_keys += other.evicted_for_keys;
    into.evicted_for_memory += other.evicted_for_memory;
    into.snapshot_bytes += other.snapshot_bytes;
    let reads = into.hits + into.misses;
    into.hit_ratio = if reads == 0 {
        0.0
    } else {
        into.hits as f64 / reads as f64
    };
    if let (Some(budget), Some(theirs)) = (into.budget.as_mut(), other.budget.as_ref()) {
        budget.keys += theirs.keys;
        budget.charged_bytes += theirs.charged_bytes;
        budget.max_keys += theirs.max_keys;
        budget.max_memory_bytes += theirs.max_memory_bytes;
    }
}

/// Where a cluster scan stands: a member's id and that member's cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterCursor {
    member: String,
    inner: bytes::Bytes,
}

impl ClusterCursor {
    /// The cursor's bytes, as the caller gets them.
    fn encode(&self) -> bytes::Bytes {
        let mut out = Vec::with_capacity(2 + self.member.len() + self.inner.len());
        out.push(CLUSTER_CURSOR);
        // Member ids are checked to be at most 255 bytes when the cluster
        // is configured.
        out.push(u8::try_from(self.member.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(self.member.as_bytes());
        out.extend_from_slice(&self.inner);
        out.into()
    }

    /// A cursor from a caller; INVALID_ARGUMENT naming `cursor` when it
    /// is not one this cluster gave out.
    fn decode(bytes: &[u8]) -> Result<Self, Status> {
        let invalid = || {
            Status::invalid_argument(
                "cursor: not a cursor from a scan of this cluster; start with an empty cursor",
            )
        };
        let [CLUSTER_CURSOR, length, rest @ ..] = bytes else {
            return Err(invalid());
        };
        let length = usize::from(*length);
        if rest.len() < length {
            return Err(invalid());
        }
        let member = std::str::from_utf8(&rest[..length]).map_err(|_| invalid())?;
        Ok(Self {
            member: member.to_owned(),
            inner: bytes::Bytes::copy_from_slice(&rest[length..]),
        })
    }
}

/// The ready members in id order, from `first` on (inclusive).
fn members_from<'a>(view: &'a View, first: &str) -> Vec<&'a crate::cluster::Member> {
    let mut members: Vec<_> = view
        .members()
        .iter()
        .filter(|member| member.ready && member.id.as_str() >= first)
        .collect();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    members
}

/// A scan of the whole cluster: the pages of each ready member in id
/// order, from the request's cursor on, with cluster cursors.
/// `local_scan` runs this member's part.
pub(crate) fn scan<F>(
    state: &ServiceState,
    metadata: &MetadataMap,
    request: &pb::ScanRequest,
    local_scan: F,
) -> Result<Option<ReceiverStream<Result<pb::ScanResponse, Status>>>, Status>
where
    F: FnOnce(pb::ScanRequest) -> Result<ReceiverStream<Result<pb::ScanResponse, Status>>, Status>
        + Send
        + 'static,
{
    let Some((cluster, view)) = state.routing(metadata) else {
        return Ok(None);
    };
    let start = if request.cursor.is_empty() {
        ClusterCursor {
            member: String::new(),
            inner: bytes::Bytes::new(),
        }
    } else {
        ClusterCursor::decode(&request.cursor)?
    };
    let travelling = state.travelling_metadata(metadata);
    let mut parts: Vec<Part> = Vec::new();
    let mut local_scan = Some(local_scan);
    for (at, member) in members_from(&view, &start.member).into_iter().enumerate() {
        // The cursor's member resumes where it stopped; the later ones
        // start from the beginning.
        let inner = if at == 0 && member.id == start.member {
            start.inner.clone()
        } else {
            bytes::Bytes::new()
        };
        let part = pb::ScanRequest {
            cursor: inner,
            ..request.clone()
        };
        parts.push(if view.is_local(member) {
            let Some(scan) = local_scan.take() else {
                continue;
            };
            Part::Local {
                id: member.id.clone(),
                request: part,
                scan: Box::new(scan),
            }
        } else {
            let owner = super::forward::owner(cluster, &view, member)?;
            let mut call = Request::new(part);
            *call.metadata_mut() = travelling.clone();
            Part::Remote {
                id: member.id.clone(),
                owner: Box::new(owner),
                request: call,
            }
        });
    }
    let (sender, receiver) = mpsc::channel(PAGES_IN_FLIGHT);
    tokio::spawn(relay(parts, request.limit, sender));
    Ok(Some(ReceiverStream::new(receiver)))
}

/// Runs this member's part of a scan.
type LocalScan = Box<
    dyn FnOnce(pb::ScanRequest) -> Result<ReceiverStream<Result<pb::ScanResponse, Status>>, Status>
        + Send,
>;

/// One member's part of a scan, run when its turn comes, with the keys
/// left of the limit.
enum Part {
    /// This member's.
    Local {
        id: String,
        request: pb::ScanRequest,
        scan: LocalScan,
    },
    /// Another member's, asked for when its turn comes.
    Remote {
        id: String,
        owner: Box<Owner>,
        request: Request<pb::ScanRequest>,
    },
}

/// Sends each part's pages in turn, with cluster cursors, until `limit`
/// keys (0 for no limit) or the last member's end.
async fn relay(
    parts: Vec<Part>,
    limit: u64,
    sender: mpsc::Sender<Result<pb::ScanResponse, Status>>,
) {
    let ids: Vec<String> = parts
        .iter()
        .map(|part| match part {
            Part::Local { id, .. } | Part::Remote { id, .. } => id.clone(),
        })
        .collect();
    let mut remaining = if limit == 0 { u64::MAX } else { limit };
    let mut sent_any = false;
    for (at, part) in parts.into_iter().enumerate() {
        let limit_left = if remaining == u64::MAX { 0 } else { remaining };
        let (id, mut pages): (String, super::chunks::ResponseStream<pb::ScanResponse>) = match part
        {
            Part::Local {
                id,
                mut request,
                scan,
            } => {
                request.limit = limit_left;
                match scan(request) {
                    Ok(pages) => (id, Box::pin(pages)),
                    Err(status) => {
                        let _ = sender.send(Err(status)).await;
                        return;
                    }
                }
            }
            Part::Remote {
                id,
                owner,
                mut request,
            } => {
                request.get_mut().limit = limit_left;
                match owner
                    .server_streaming::<_, pb::ScanResponse>(method::SCAN, request)
                    .await
                {
                    Ok(response) => (id, response.into_inner()),
                    Err(status) => {
                        let _ = sender.send(Err(status)).await;
                        return;
                    }
                }
            }
        };
        let next = ids.get(at + 1);
        while let Some(page) = pages.next().await {
            let mut page = match page {
                Ok(page) => page,
                Err(status) => {
                    let _ = sender.send(Err(status)).await;
                    return;
                }
            };
            remaining = remaining.saturating_sub(page.keys.len() as u64);
            let done_here = page.cursor.is_empty();
            page.cursor = match (done_here, next) {
                (false, _) => ClusterCursor {
                    member: id.clone(),
                    inner: page.cursor,
                }
                .encode(),
                (true, Some(next)) => ClusterCursor {
                    member: next.clone(),
                    inner: bytes::Bytes::new(),
                }
                .encode(),
                (true, None) => bytes::Bytes::new(),
            };
            let last = remaining == 0 || (done_here && next.is_none());
            // Empty pages between members say nothing; the last one says
            // the scan is over.
            if !page.keys.is_empty() || last {
                if sender.send(Ok(page)).await.is_err() {
                    return;
                }
                sent_any = true;
            }
            if last {
                return;
            }
        }
    }
    if !sent_any {
        let _ = sender.send(Ok(pb::ScanResponse::default())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_cursors_round_trip_and_foreign_ones_are_refused() {
        let cursor = ClusterCursor {
            member: "shoal-1".into(),
            inner: bytes::Bytes::from_static(b"\x00\x01\x02"),
        };
        assert_eq!(ClusterCursor::decode(&cursor.encode()).unwrap(), cursor);
        for bad in [
            &b"\x01abc"[..],
            b"\xC5",
            b"\xC5\x09abc",
            b"\xC5\x02\xff\xfe",
        ] {
            let status = ClusterCursor::decode(bad).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().starts_with("cursor:"), "{status:?}");
        }
    }

    #[test]
    fn stats_of_members_add_up() {
        let namespace = |name: &str, keys, hits, misses| pb::NamespaceStats {
            namespace: name.into(),
            keys,
            hits,
            misses,
            ..Default::default()
        };
        let mut local = pb::StatsResponse {
            total: Some(namespace("", 10, 3, 1)),
            namespaces: vec![namespace("a", 10, 3, 1)],
            rpcs: vec![pb::RpcStats {
                method: "/shoal.v1.CacheService/Get".into(),
                calls: 4,
                ..Default::default()
            }],
            members: 1,
            ..Default::default()
        };
        let remote = pb::StatsResponse {
            total: Some(namespace("", 5, 1, 3)),
            namespaces: vec![namespace("a", 2, 1, 1), namespace("b", 3, 0, 2)],
            rpcs: vec![pb::RpcStats {
                method: "/shoal.v1.CacheService/Get".into(),
                calls: 6,
                ..Default::default()
            }],
            members: 1,
            ..Default::default()
        };
        merge_stats(&mut local, vec![remote]);
        let total = local.total.unwrap();
        assert_eq!((total.keys, total.hits, total.misses), (15, 4, 4));
        assert!((total.hit_ratio - 0.5).abs() < 1e-9);
        let names: Vec<_> = local
            .namespaces
            .iter()
            .map(|n| n.namespace.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(local.namespaces[0].keys, 12);
        assert_eq!(local.rpcs[0].calls, 10);
        assert_eq!(local.members, 2);
    }
}
