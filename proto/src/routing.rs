//! Which node of a cluster owns a key: rendezvous (highest-random-weight)
//! hashing over node ids, with hash tags.
//!
//! This is part of the wire contract, like the protos: every client that
//! routes keys itself (the Rust client, and any other) must pick the same
//! owner as the servers, so the function is fixed here and pinned by the
//! golden vectors in `proto/routing_vectors.json`, which a test checks and
//! which other languages can check against.
//!
//! # The function
//!
//! 1. The **routing key** of a key is the key itself, unless the key holds
//!    a `{` followed later by a `}` with at least one byte between the
//!    first `{` and the first `}` after it: then it is those bytes (Redis
//!    Cluster's hash tags). So `{user:42}:cart` and `{user:42}:orders` go to
//!    the same owner, and `{}x` routes by the whole key.
//! 2. A node's **seed** is XXH64 of its id's UTF-8 bytes with seed 0.
//! 3. A node's **weight** for a key is XXH64 of the routing key with the
//!    node's seed as the seed.
//! 4. Nodes **rank** by weight, highest first; equal weights by id,
//!    smaller first. Rank 1 owns the key; ranks 2..R hold its replicas.
//!
//! # What it guarantees
//!
//! Each node owns about 1/N of the keys (each key's owner is the maximum
//! of N independent weights), and when a node joins it takes over only
//! the keys it now ranks first for, about 1/(N+1) of them: no other key
//! changes owner. When a node leaves, only its keys move, each to its
//! rank 2, which is where its first replica already is. There is no ring
//! to rebalance and no state beyond the member list.
//!
//! ```
//! use shoal_proto::routing::{Rendezvous, routing_key};
//!
//! let nodes = Rendezvous::new(["shoal-0", "shoal-1", "shoal-2"]);
//! assert_eq!(routing_key(b"{user:42}:cart"), b"user:42");
//! // Keys with the same hash tag share an owner.
//! assert_eq!(nodes.owner(b"{user:42}:cart"), nodes.owner(b"{user:42}:orders"));
//! // The owner, then its replicas: every node once.
//! let ranked: Vec<&str> = nodes.ranked(b"user:7").collect();
//! assert_eq!(ranked.len(), 3);
//! assert_eq!(Some(ranked[0]), nodes.owner(b"user:7"));
//! ```

use xxhash_rust::xxh64::xxh64;

/// The bytes a key is routed by: the content of its hash tag, if it has
/// one, else the whole key (see the module docs).
pub fn routing_key(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&byte| byte == b'{') else {
        return key;
    };
    let after = &key[open + 1..];
    match after.iter().position(|&byte| byte == b'}') {
        Some(close) if close > 0 => &after[..close],
        _ => key,
    }
}

/// A node's seed: XXH64 of its id.
pub fn node_seed(node_id: &str) -> u64 {
    xxh64(node_id.as_bytes(), 0)
}

/// The weight of the node with `seed` for `key` (routed by its hash tag).
pub fn weight(seed: u64, key: &[u8]) -> u64 {
    xxh64(routing_key(key), seed)
}

/// A cluster's members, ready to rank them for keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendezvous {
    /// Node ids with their seeds, sorted by id so that ties break the
    /// same way everywhere.
    nodes: Vec<(String, u64)>,
}

impl Rendezvous {
    /// The members named by `node_ids` (duplicates count once).
    pub fn new<I, S>(node_ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut nodes: Vec<(String, u64)> = node_ids
            .into_iter()
            .map(|id| {
                let id = id.into();
                let seed = node_seed(&id);
                (id, seed)
            })
            .collect();
        nodes.sort();
        nodes.dedup_by(|a, b| a.0 == b.0);
        Self { nodes }
    }

    /// The member ids, sorted.
    pub fn node_ids(&self) -> impl ExactSizeIterator<Item = &str> {
        self.nodes.iter().map(|(id, _)| id.as_str())
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The owner of `key` (rank 1); `None` with no members.
    pub fn owner(&self, key: &[u8]) -> Option<&str> {
        self.owner_index(key)
            .map(|index| self.nodes[index].0.as_str())
    }

    /// Where the owner of `key` stands in [`Rendezvous::node_ids`]; `None`
    /// with no members. Lets a caller keep its own per-member state in a
    /// vector sorted by id and find the owner's without comparing strings.
    pub fn owner_index(&self, key: &[u8]) -> Option<usize> {
        let routed = routing_key(key);
        self.nodes
            .iter()
            .enumerate()
            .map(|(index, (_, seed))| (xxh64(routed, *seed), index))
            // Highest weight; among equal weights the smallest id, which
            // comes first in `nodes`, so a later equal one must not win.
            .fold(
                None,
                |best: Option<(u64, usize)>, (weight, index)| match best {
                    Some((top, _)) if top >= weight => best,
                    _ => Some((weight, index)),
                },
            )
            .map(|(_, index)| index)
    }

    /// Every member ranked for `key`: the owner, then its replicas in
    /// order.
    pub fn ranked(&self, key: &[u8]) -> impl Iterator<Item = &str> {
        let routed = routing_key(key);
        let mut ranked: Vec<(u64, &str)> = self
            .nodes
            .iter()
            .map(|(id, seed)| (xxh64(routed, *seed), id.as_str()))
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        ranked.into_iter().map(|(_, id)| id)
    }

    /// The `replicas` members that hold `key`: the owner first, then ranks
    /// 2..`replicas` (fewer when there are fewer members).
    pub fn holders(&self, key: &[u8], replicas: usize) -> Vec<&str> {
        self.ranked(key).take(replicas).collect()
    }
}

#[cfg(test)]
mod tests;
