//! The routing function against its golden vectors, and the balance and
//! movement it promises.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;

/// The members the golden vectors rank for.
const VECTOR_NODES: [&str; 5] = ["shoal-0", "shoal-1", "shoal-2", "shoal-3", "shoal-4"];

/// Keys of every shape the hash-tag rule tells apart.
fn vector_keys() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = [
        "",
        "a",
        "user:42",
        "{user:42}:cart",
        "{user:42}:orders",
        "{}x",
        "a{b}c{d}",
        "{",
        "}{x}",
        "x{y",
        "{{a}}",
        "ключ",
    ]
    .iter()
    .map(|key| key.as_bytes().to_vec())
    .collect();
    keys.push(vec![0, 255, 1, b'{', 2, b'}', 3]);
    keys.push(vec![b'k'; 300]);
    keys
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The vectors as this build computes them.
fn computed_vectors() -> Value {
    let nodes = Rendezvous::new(VECTOR_NODES);
    let seeds: BTreeMap<&str, String> = VECTOR_NODES
        .iter()
        .map(|id| (*id, format!("{:016x}", node_seed(id))))
        .collect();
    let cases: Vec<Value> = vector_keys()
        .iter()
        .map(|key| {
            let weights: BTreeMap<&str, String> = VECTOR_NODES
                .iter()
                .map(|id| (*id, format!("{:016x}", weight(node_seed(id), key))))
                .collect();
            json!({
                "key_hex": hex(key),
                "routing_key_hex": hex(routing_key(key)),
                "weights": weights,
                "ranked": nodes.ranked(key).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "about": "Golden vectors of shoal's key routing (shoal_proto::routing): \
                  routing key by hash tag, node seed = XXH64(node id, 0), \
                  weight = XXH64(routing key, node seed), ranked by weight \
                  descending then id ascending. 64-bit values in hex.",
        "nodes": VECTOR_NODES,
        "seeds": seeds,
        "cases": cases,
    })
}

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("routing_vectors.json")
}

#[test]
fn the_routing_function_matches_its_golden_vectors() {
    let computed = computed_vectors();
    if std::env::var_os("SHOAL_WRITE_ROUTING_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&computed).expect("vectors as JSON") + "\n";
        std::fs::write(vectors_path(), text).expect("write the vectors");
    }
    let pinned: Value = serde_json::from_str(include_str!("../../routing_vectors.json"))
        .expect("routing_vectors.json parses");
    assert_eq!(
        computed, pinned,
        "the routing function changed: every client would route differently"
    );
}

#[test]
fn the_hash_is_xxh64() {
    // Published XXH64 values, so that the vectors pin the real function.
    assert_eq!(xxh64(b"", 0), 0xef46_db37_51d8_e999);
    assert_eq!(node_seed(""), 0xef46_db37_51d8_e999);
}

#[test]
fn hash_tags_route_by_the_first_non_empty_tag() {
    assert_eq!(routing_key(b"{user:42}:cart"), b"user:42");
    assert_eq!(routing_key(b"plain"), b"plain");
    assert_eq!(routing_key(b"{}x"), b"{}x");
    assert_eq!(routing_key(b"a{b}c{d}"), b"b");
    assert_eq!(routing_key(b"{{a}}"), b"{a");
    assert_eq!(routing_key(b"x{y"), b"x{y");
    assert_eq!(routing_key(b"}{x}"), b"x");
}

#[test]
fn ties_and_duplicates_do_not_depend_on_the_order_given() {
    let forward = Rendezvous::new(["b", "a", "c", "a"]);
    let backward = Rendezvous::new(["c", "a", "b"]);
    assert_eq!(forward, backward);
    assert_eq!(forward.len(), 3);
    for key in vector_keys() {
        assert_eq!(forward.owner(&key), forward.ranked(&key).next());
        assert_eq!(forward.holders(&key, 2).len(), 2);
        assert_eq!(forward.holders(&key, 9).len(), 3);
    }
    assert_eq!(Rendezvous::default().owner(b"k"), None);
}

/// Keys each of `nodes` owns, of `count` keys, and how many change owner
/// when `joined` joins; fails if any moves elsewhere than to `joined`.
fn owners_before_and_after_a_join(nodes: &[String], joined: &str, count: u64) -> (Vec<u64>, u64) {
    let before = Rendezvous::new(nodes.iter().cloned());
    let after = Rendezvous::new(nodes.iter().cloned().chain([joined.to_owned()]));
    let index: BTreeMap<&str, usize> = before
        .node_ids()
        .enumerate()
        .map(|(at, id)| (id, at))
        .collect();
    let mut owned = vec![0u64; nodes.len()];
    let mut moved = 0;
    for at in 0..count {
        let key = format!("key:{at:012}");
        let old = before.owner(key.as_bytes()).expect("members");
        let new = after.owner(key.as_bytes()).expect("members");
        owned[index[old]] += 1;
        if new != old {
            assert_eq!(
                new, joined,
                "{key} moved from {old} to {new}, not to the node that joined"
            );
            moved += 1;
        }
    }
    (owned, moved)
}

#[test]
fn a_million_keys_spread_evenly_and_a_join_moves_only_its_share() {
    const KEYS: u64 = 1_000_000;
    for members in [3usize, 5, 10] {
        let nodes: Vec<String> = (0..members).map(|at| format!("shoal-{at}")).collect();
        let joined = format!("shoal-{members}");
        let (owned, moved) = owners_before_and_after_a_join(&nodes, &joined, KEYS);
        let mean = KEYS as f64 / members as f64;
        let most = *owned.iter().max().expect("members") as f64;
        assert!(
            most <= 1.05 * mean,
            "{members} nodes: the busiest owns {most} keys, the mean is {mean}"
        );
        let share = moved as f64 / KEYS as f64;
        let bound = 1.0 / (members + 1) as f64 + 0.01;
        assert!(
            share <= bound,
            "{members} nodes: a join moved {share:.4} of the keys, more than {bound:.4}"
        );
    }
}
