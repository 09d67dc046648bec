//! Keys sent straight to their owners, when the client knows the cluster.
//!
//! Any member of a shoal cluster answers for any key: it forwards a call
//! for a key it does not own to the owner, one hop. That costs the
//! forwarding member a second call's work and the caller a second round
//! trip. A topology-aware client
//! ([`ClientBuilder::topology_aware`](crate::ClientBuilder::topology_aware))
//! skips the hop: it learns the members from `ClusterService`, ranks them
//! for each key with the same [`Rendezvous`] function as the servers
//! (pinned by the golden vectors in `proto/`), and sends each call to the
//! owner. Batches and pipelines are split by owner, run at once, and their
//! results put back in request order.
//!
//! # What it guarantees
//!
//! Routing here is only a shortcut, never a condition of correctness: a
//! call that reaches a member that does not own its key (the client's view
//! is late, or a member has just been marked down) is forwarded by that
//! member, as any call from a client that routes nothing. So a stale view
//! costs a hop, not a wrong answer.
//!
//! The view follows one member's `WatchTopology` stream; when that stream
//! breaks the client follows another member, with backoff, and keeps its
//! last view meanwhile. Members that are not ready own no keys, as on the
//! servers. Calls that name no key go to the member the client was built
//! with, which answers Count, Flush, Stats, Scan and Watch for the whole
//! cluster.
//! A call with several keys (Delete of several keys, set algebra) goes to
//! the owner of its first key, which forwards the rest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use shoal_proto::routing::Rendezvous;
use shoal_proto::v1 as pb;

use crate::builder::ClientBuilder;
use crate::node::Node;

/// First wait before following the topology again after its stream broke.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between attempts to follow the topology.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Where each key goes: the ready members, ranked for keys, and a node for
/// each.
#[derive(Debug)]
struct Table {
    /// The ready members with an address.
    placement: Rendezvous,
    /// The node of each member of `placement`, in its id order.
    nodes: Vec<Arc<Node>>,
}

/// The members a client routes to, kept up to date by a task that follows
/// the cluster's topology.
#[derive(Debug)]
pub(crate) struct Router {
    table: ArcSwap<Table>,
    /// The node the client was built with: for calls that name no key, and
    /// for every call while no member is ready.
    seed: Arc<Node>,
    /// Builds nodes for members not seen before.
    builder: ClientBuilder,
    /// Nodes by member id and address, reused across topology changes so
    /// that a change does not reopen connections.
    known: Mutex<HashMap<(String, String), Arc<Node>>>,
    /// The id of the member `seed` reached, whose node is `seed` itself.
    seed_id: String,
    follower: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Router {
    /// A router over `topology`, as the member behind `seed` reported it,
    /// that follows later changes until it is dropped.
    pub(crate) fn start(
        seed: Arc<Node>,
        builder: ClientBuilder,
        topology: pb::Topology,
    ) -> Arc<Self> {
        let router = Arc::new(Self {
            table: ArcSwap::from_pointee(Table {
                placement: Rendezvous::default(),
                nodes: Vec::new(),
            }),
            seed,
            builder,
            known: Mutex::default(),
            seed_id: topology.local_id.clone(),
            follower: Mutex::default(),
        });
        router.apply(&topology);
        let follower = tokio::spawn(follow(Arc::downgrade(&router)));
        *router
            .follower
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(follower);
        router
    }

    /// The node that owns `key` now, or the seed when no member is ready.
    pub(crate) fn node_for(&self, key: &[u8]) -> Arc<Node> {
        let table = self.table.load();
        match table.placement.owner_index(key) {
            Some(index) => Arc::clone(&table.nodes[index]),
            None => Arc::clone(&self.seed),
        }
    }

    /// The index of the owner of each key among [`nodes`](Self::nodes),
    /// from one view, so that a batch is split consistently.
    pub(crate) fn owners<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> (Vec<usize>, Vec<Arc<Node>>) {
        let table = self.table.load();
        if table.nodes.is_empty() {
            let owners = keys.into_iter().map(|_| 0).collect();
            return (owners, vec![Arc::clone(&self.seed)]);
        }
        let owners = keys
            .into_iter()
            .map(|key| table.placement.owner_index(key).unwrap_or(0))
            .collect();
        (owners, table.nodes.clone())
    }

    /// Replaces the view with `topology`.
    fn apply(&self, topology: &pb::Topology) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        // Members no longer listed are forgotten; their connections close
        // once no call holds them.
        known.retain(|(id, address), _| {
            topology
                .members
                .iter()
                .any(|member| &member.id == id && &member.address == address)
        });
        let mut ready: Vec<(&str, Arc<Node>)> = Vec::new();
        for member in &topology.members {
            if !member.ready || member.address.is_empty() {
                continue;
            }
            let key = (member.id.clone(), member.address.clone());
            let node = match known.get(&key) {
                Some(node) => Arc::clone(node),
                None => {
                    let Some(node) = self.node_of(member) else {
                        continue;
                    };
                    known.insert(key, Arc::clone(&node));
                    node
                }
            };
            ready.push((member.id.as_str(), node));
        }
        drop(known);
        // `Rendezvous` sorts its ids; the nodes must follow that order.
        ready.sort_by(|a, b| a.0.cmp(b.0));
        ready.dedup_by(|a, b| a.0 == b.0);
        let placement = Rendezvous::new(ready.iter().map(|(id, _)| *id));
        let nodes = ready.into_iter().map(|(_, node)| node).collect();
        self.table.store(Arc::new(Table { placement, nodes }));
    }

    /// A node for `member`: the seed's own for the member the seed reached,
    /// else new connections to its address, opened on first use. `None`
    /// when the address cannot be used; the member then owns nothing here,
    /// and its keys reach it through the others.
    fn node_of(&self, member: &pb::ClusterMember) -> Option<Arc<Node>> {
        if member.id == self.seed_id {
            return Some(Arc::clone(&self.seed));
        }
        match self.builder.for_member(&member.address).connect_lazy() {
            Ok(client) => Some(client.seed_node()),
            Err(error) => {
                tracing::warn!(member = %member.id, address = %member.address, %error,
                    "cannot route to this cluster member; its keys go through the others");
                None
            }
        }
    }

    /// Every node the client may follow the topology through: the seed
    /// first, then the members'.
    fn candidates(&self) -> Vec<Arc<Node>> {
        let mut nodes = vec![Arc::clone(&self.seed)];
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        nodes.extend(
            known
                .values()
                .filter(|node| !Arc::ptr_eq(node, &self.seed))
                .cloned(),
        );
        nodes
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        if let Some(follower) = self
            .follower
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            follower.abort();
        }
    }
}

/// Follows the topology through one member after another, until the
/// router is gone.
async fn follow(router: Weak<Router>) {
    let mut backoff = FIRST_BACKOFF;
    let mut turn = 0usize;
    loop {
        let Some(node) = router.upgrade().map(|router| {
            let candidates = router.candidates();
            Arc::clone(&candidates[turn % candidates.len()])
        }) else {
            return;
        };
        let mut cluster = node.cluster.clone();
        drop(node);
        match cluster.watch_topology(pb::WatchTopologyRequest {}).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(message)) => {
                            let Some(router) = router.upgrade() else {
                                return;
                            };
                            if let Some(topology) = message.topology {
                                router.apply(&topology);
                            }
                            backoff = FIRST_BACKOFF;
                        }
                        Ok(None) => break,
                        Err(status) => {
                            tracing::debug!(%status, "the cluster topology stream broke");
                            break;
                        }
                    }
                }
            }
            Err(status) => tracing::debug!(%status, "cannot follow the cluster topology"),
        }
        turn += 1;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Splits `items` by the node that owns each one's key: for each node
/// that owns any, the node, the items in input order and their places in
/// the input.
pub(crate) fn split_by_owner<T>(
    owners: &[usize],
    nodes: &[Arc<Node>],
    items: Vec<T>,
) -> Vec<(Arc<Node>, Vec<T>, Vec<usize>)> {
    let mut groups: Vec<(Vec<T>, Vec<usize>)> = nodes.iter().map(|_| Default::default()).collect();
    for (position, (item, &owner)) in items.into_iter().zip(owners).enumerate() {
        let group = &mut groups[owner];
        group.0.push(item);
        group.1.push(position);
    }
    groups
        .into_iter()
        .zip(nodes)
        .filter(|((items, _), _)| !items.is_empty())
        .map(|((items, positions), node)| (Arc::clone(node), items, positions))
        .collect()
}

/// Puts the results of each group back at the places its items held in
/// the input of `len` items.
///
/// # Panics
///
/// When the groups do not cover every place exactly once.
pub(crate) fn merge_in_order<T>(len: usize, groups: Vec<(Vec<T>, Vec<usize>)>) -> Vec<T> {
    let mut slots: Vec<Option<T>> = (0..len).map(|_| None).collect();
    for (results, positions) in groups {
        for (result, position) in results.into_iter().zip(positions) {
            slots[position] = Some(result);
        }
    }
    slots
        .into_iter()
        .map(|slot| slot.expect("every place of a split batch gets a result"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_restores_the_input_order() {
        let groups = vec![(vec!["b", "d"], vec![1, 3]), (vec!["a", "c"], vec![0, 2])];
        assert_eq!(merge_in_order(4, groups), vec!["a", "b", "c", "d"]);
    }
}
