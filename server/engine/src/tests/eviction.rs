//! Eviction under key and memory budgets, per policy, engine-wide and per namespace.

use super::*;

fn bounded(
    policy: EvictionPolicy,
    max_keys: u64,
    max_memory_bytes: u64,
) -> (Engine, Arc<Namespace>) {
    let config = EngineConfig {
        shards_per_namespace: 1,
        max_keys,
        max_memory_bytes,
        eviction_policy: policy,
        ..EngineConfig::default()
    };
    let engine = Engine::with_parts(config, Arc::new(ManualClock::new(START_MS)), None);
    let ns = engine.namespace("bounded").expect("namespace");
    (engine, ns)
}

fn put(ns: &Namespace, key: &str) {
    ns.set(key.as_bytes(), b("v"), SetOptions::default())
        .expect("set");
}

fn present(ns: &Namespace, keys: &[&str]) -> Vec<String> {
    keys.iter()
        .filter(|key| ns.describe(key.as_bytes()).expect("describe").is_some())
        .map(|key| key.to_string())
        .collect()
}

#[test]
fn s3fifo_evicts_one_hit_wonders_before_keys_read_again() {
    let (engine, ns) = bounded(EvictionPolicy::S3Fifo, 10, 0);
    for i in 0..10 {
        put(&ns, &format!("k{i}"));
    }
    // k0..k4 are read again (twice); k5..k9 never are.
    for _ in 0..2 {
        for i in 0..5 {
            ns.get(format!("k{i}").as_bytes()).expect("get");
        }
    }
    for i in 10..15 {
        put(&ns, &format!("k{i}"));
    }
    let keys: Vec<String> = (0..15).map(|i| format!("k{i}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let kept = present(&ns, &refs);
    assert_eq!(kept.len(), 10);
    for reread in ["k0", "k1", "k2", "k3", "k4"] {
        assert!(
            kept.contains(&reread.to_string()),
            "{reread} was read again and must stay: {kept:?}"
        );
    }
    let usage = engine.budget_usage();
    assert_eq!(usage.keys, 10);
    assert_eq!(ns.stats().evicted_for_keys, 5);
}

#[test]
fn lru_gives_recently_read_keys_a_second_chance() {
    let (_, ns) = bounded(EvictionPolicy::Lru, 3, 0);
    for key in ["a", "b", "c"] {
        put(&ns, key);
    }
    ns.get(b"a").expect("get");
    put(&ns, "d");
    assert_eq!(
        present(&ns, &["a", "b", "c", "d"]),
        vec!["a", "c", "d"],
        "b is the least recent"
    );
    put(&ns, "e");
    assert_eq!(
        present(&ns, &["a", "b", "c", "d", "e"]),
        vec!["a", "d", "e"]
    );
}

#[test]
fn lfu_keeps_the_most_read_key() {
    let (_, ns) = bounded(EvictionPolicy::Lfu, 3, 0);
    for key in ["hot", "warm", "cold"] {
        put(&ns, key);
    }
    for _ in 0..10 {
        ns.get(b"hot").expect("get");
    }
    ns.get(b"warm").expect("get");
    for key in ["x", "y", "z"] {
        put(&ns, key);
        ns.get(key.as_bytes()).expect("get");
    }
    assert!(
        present(&ns, &["hot"]) == vec!["hot"],
        "the most read key survives a stream of new keys"
    );
}

#[test]
fn noeviction_refuses_new_keys_but_serves_reads_updates_and_deletes() {
    let (_, ns) = bounded(EvictionPolicy::NoEviction, 2, 0);
    put(&ns, "a");
    put(&ns, "b");
    let refused = ns.set(b"c", b("v"), SetOptions::default());
    assert_eq!(refused, Err(EngineError::OutOfMemory { limit: "max_keys" }));
    assert!(matches!(
        ns.sadd(b"s", vec![b("m")], Expiry::Keep),
        Err(EngineError::OutOfMemory { .. })
    ));
    assert_eq!(ns.get(b"a").expect("get"), Some(b("v")));
    put(&ns, "a");
    ns.delete(&[b"b"]).expect("delete");
    put(&ns, "c");
    assert_eq!(ns.len(), 2);
}

/// An engine whose namespace `capped` has a budget of its own.
fn with_namespace_limits(
    policy: EvictionPolicy,
    engine_max_keys: u64,
    limits: NamespaceLimits,
) -> Engine {
    let mut config = EngineConfig {
        // More shards than the smallest budget below has keys: most writes
        // land in a shard with nothing to evict.
        shards_per_namespace: 16,
        max_keys: engine_max_keys,
        eviction_policy: policy,
        ..EngineConfig::default()
    };
    config.namespace_limits.insert("capped".into(), limits);
    Engine::with_parts(config, Arc::new(ManualClock::new(START_MS)), None)
}

#[test]
fn a_namespace_budget_bounds_that_namespace_only() {
    let limits = NamespaceLimits {
        max_keys: 20,
        max_memory_bytes: 0,
    };
    let engine = with_namespace_limits(EvictionPolicy::S3Fifo, 0, limits);
    let capped = engine.namespace("capped").expect("namespace");
    let free = engine.namespace("free").expect("namespace");
    for i in 0..200 {
        put(&capped, &format!("k{i}"));
        put(&free, &format!("k{i}"));
    }
    assert_eq!(
        capped.len(),
        20,
        "holds its budget exactly, evicting across shards"
    );
    assert_eq!(free.len(), 200, "a namespace without a budget is untouched");
    assert!(capped.stats().evicted_for_keys >= 180);
    let own = capped.own_budget().expect("capped has a budget of its own");
    assert_eq!((own.keys, own.max_keys), (capped.len(), 20));
    assert!(free.own_budget().is_none());
    assert_eq!(engine.budget_usage().max_keys, 0);
}

#[test]
fn a_namespace_budget_also_counts_toward_the_engine_budget() {
    let limits = NamespaceLimits {
        max_keys: 30,
        max_memory_bytes: 0,
    };
    let engine = with_namespace_limits(EvictionPolicy::Lru, 100, limits);
    let capped = engine.namespace("capped").expect("namespace");
    let other = engine.namespace("other").expect("namespace");
    for i in 0..100 {
        put(&capped, &format!("c{i}"));
    }
    assert!(capped.len() <= 30, "capped holds {}", capped.len());
    for i in 0..200 {
        put(&other, &format!("o{i}"));
    }
    let total = capped.len() + other.len();
    assert!(total <= 100, "the engine holds {total} keys");
    assert_eq!(engine.budget_usage().keys, total);
}

#[test]
fn under_noeviction_a_full_namespace_refuses_writes_and_others_go_on() {
    let limits = NamespaceLimits {
        max_keys: 2,
        max_memory_bytes: 0,
    };
    let engine = with_namespace_limits(EvictionPolicy::NoEviction, 0, limits);
    let capped = engine.namespace("capped").expect("namespace");
    let free = engine.namespace("free").expect("namespace");
    put(&capped, "a");
    put(&capped, "b");
    assert_eq!(
        capped.set(b"c", b("v"), SetOptions::default()),
        Err(EngineError::OutOfMemory {
            limit: "namespace max_keys"
        })
    );
    assert_eq!(capped.get(b"a").expect("get"), Some(b("v")));
    for i in 0..10 {
        put(&free, &format!("k{i}"));
    }
    assert_eq!((capped.len(), free.len()), (2, 10));
}

#[test]
fn a_memory_budget_holds_under_a_write_storm() {
    let budget = 1 << 20;
    let (engine, ns) = bounded(EvictionPolicy::S3Fifo, 0, budget);
    let value = Bytes::from(vec![0u8; 1_000]);
    for i in 0..5_000u32 {
        ns.set(&i.to_be_bytes(), value.clone(), SetOptions::default())
            .expect("set");
        let usage = engine.budget_usage();
        assert!(
            usage.charged_bytes <= budget,
            "over budget after write {i}: {usage:?}"
        );
    }
    let stats = ns.stats();
    assert!(stats.evicted_for_memory > 3_000, "{stats:?}");
    assert!(stats.keys > 500, "the cache stays useful: {stats:?}");
    // A collection growing past the budget evicts other keys, not itself.
    for chunk in 0..20 {
        let values = (0..50)
            .map(|i| Bytes::from(format!("{chunk}-{i}-{}", "x".repeat(1_000))))
            .collect();
        ns.push(b"log", values, false, false, Expiry::Keep)
            .expect("push");
    }
    assert!(engine.budget_usage().charged_bytes <= budget + 60_000);
    assert_eq!(ns.llen(b"log").expect("llen"), 1_000);
}

#[test]
fn without_limits_nothing_is_tracked_or_evicted() {
    let (engine, ns) = bounded(EvictionPolicy::S3Fifo, 0, 0);
    for i in 0..1_000 {
        put(&ns, &format!("k{i}"));
    }
    assert_eq!(ns.len(), 1_000);
    assert_eq!(engine.budget_usage().keys, 0);
}

#[test]
fn a_budget_smaller_than_the_shard_count_still_holds_after_every_write() {
    let limits = NamespaceLimits {
        max_keys: 5,
        max_memory_bytes: 0,
    };
    let engine = with_namespace_limits(EvictionPolicy::S3Fifo, 0, limits);
    let capped = engine.namespace("capped").expect("namespace");
    for i in 0..100 {
        put(&capped, &format!("k{i}"));
        assert!(capped.len() <= 5, "after write {i}: {} keys", capped.len());
    }
    assert_eq!(capped.len(), 5);
    assert_eq!(capped.stats().evicted_for_keys, 95);
}

#[test]
fn versions_left_behind_for_readers_count_toward_the_memory_limit() {
    let (_, ns) = bounded(EvictionPolicy::NoEviction, 0, 256 * 1024);
    let fields: Vec<_> = (0..1_000)
        .map(|at| (b(&format!("field-{at}")), b("value")))
        .collect();
    ns.hset(b"h", fields, Expiry::Keep).expect("hset");
    let stored = ns.stats().memory_bytes;
    let mut readers = Vec::new();
    let mut refused = None;
    for round in 0..64 {
        readers.push(ns.hgetall(b"h").expect("hgetall").expect("exists"));
        if let Err(error) = ns.hset(
            b"h",
            vec![(b("field-0"), b(&round.to_string()))],
            Expiry::Keep,
        ) {
            refused = Some(error);
            break;
        }
    }
    assert_eq!(
        refused,
        Some(EngineError::OutOfMemory {
            limit: "max_memory"
        })
    );
    let stats = ns.stats();
    assert!(stats.memory_bytes + stats.snapshot_bytes <= 256 * 1024 + stored);
    drop(readers);
    assert_eq!(ns.stats().snapshot_bytes, 0);
    ns.hset(b"h", vec![(b("field-0"), b("again"))], Expiry::Keep)
        .expect("the readers' memory came back");
}

/// Hits of a read-through replay of `accesses` (read, and set on a miss)
/// into a namespace of one shard holding `capacity` keys.
fn read_through_hits(policy: EvictionPolicy, capacity: u64, accesses: &[u64]) -> usize {
    let (_, ns) = bounded(policy, capacity, 0);
    let mut hits = 0;
    for key in accesses {
        let key = key.to_string();
        if ns.get(key.as_bytes()).expect("get").is_some() {
            hits += 1;
        } else {
            put(&ns, &key);
        }
    }
    hits
}

#[test]
fn tinylfu_keeps_hitting_in_a_loop_and_a_scan_larger_than_the_cache() {
    // A loop over 600 keys with room for 500: the optimum keeps about 500
    // of them, while an LRU keeps cycling and hits nothing.
    let looped: Vec<u64> = (0..20).flat_map(|_| 0..600).collect();
    let tinylfu = read_through_hits(EvictionPolicy::TinyLfu, 500, &looped);
    let lru = read_through_hits(EvictionPolicy::Lru, 500, &looped);
    assert!(
        tinylfu > looped.len() * 6 / 10,
        "tinylfu: {tinylfu} hits of {}",
        looped.len()
    );
    assert!(lru < looped.len() / 20, "lru: {lru} hits");

    // 200 hot keys read in turn, each pass followed by a one-time scan of
    // 1 000 new keys; room for 300.
    let mut scanned = Vec::new();
    let mut fresh = 1_000_000;
    for _ in 0..20 {
        scanned.extend(0..200);
        scanned.extend(fresh..fresh + 1_000);
        fresh += 1_000;
    }
    let hot_reads = 20 * 200;
    let tinylfu = read_through_hits(EvictionPolicy::TinyLfu, 300, &scanned);
    let lru = read_through_hits(EvictionPolicy::Lru, 300, &scanned);
    // Key hashes are seeded per process, so the sketch's collisions, and
    // the figure, vary a little from run to run.
    assert!(
        tinylfu > hot_reads * 6 / 10,
        "tinylfu: {tinylfu} of {hot_reads} hot reads"
    );
    assert!(lru < hot_reads / 10, "lru: {lru} of {hot_reads} hot reads");
}

#[test]
fn tinylfu_holds_a_loop_far_larger_than_the_cache() {
    // 2 000 keys in a loop, room for 100: the optimum hits 5 % of the
    // reads, an LRU none.
    let looped: Vec<u64> = (0..60).flat_map(|_| 0..2_000).collect();
    let tinylfu = read_through_hits(EvictionPolicy::TinyLfu, 100, &looped);
    assert!(
        tinylfu > looped.len() * 35 / 1000,
        "tinylfu: {tinylfu} hits of {}",
        looped.len()
    );
}

#[test]
fn noeviction_never_lets_charged_bytes_pass_the_memory_limit() {
    let budget = 1 << 20;
    let (engine, ns) = bounded(EvictionPolicy::NoEviction, 0, budget);
    // Values from 16 B to 64 KiB, new keys and overwrites of old ones
    // with larger values, until writes are refused and beyond.
    let mut size = 16usize;
    let mut refused = 0;
    for i in 0..4_000u32 {
        size = (size * 7 + 13) % (64 * 1024) + 16;
        let key = (i % 1_500).to_be_bytes();
        match ns.set(&key, Bytes::from(vec![1u8; size]), SetOptions::default()) {
            Ok(_) => {}
            Err(EngineError::OutOfMemory { limit }) => {
                assert_eq!(limit, "max_memory");
                refused += 1;
            }
            Err(other) => panic!("write {i}: {other:?}"),
        }
        let usage = engine.budget_usage();
        assert!(
            usage.charged_bytes <= budget,
            "over the limit after write {i} of {size} B: {usage:?}"
        );
    }
    assert!(refused > 0, "the storm reached the limit");
}

#[test]
fn noeviction_refuses_a_collection_write_that_would_pass_the_memory_limit() {
    let budget = 1 << 20;
    let (engine, ns) = bounded(EvictionPolicy::NoEviction, 0, budget);
    let mut refused = 0;
    for i in 0..100 {
        let values = vec![Bytes::from(vec![b'x'; 30_000]); 2];
        let fields = vec![(b(&format!("f{i}")), Bytes::from(vec![b'y'; 20_000]))];
        let members = vec![Bytes::from(format!("{i}-{}", "z".repeat(20_000)))];
        for result in [
            ns.push(b"list", values, false, false, Expiry::Keep)
                .map(drop),
            ns.hset(b"hash", fields, Expiry::Keep).map(drop),
            ns.sadd(b"set", members, Expiry::Keep).map(drop),
        ] {
            match result {
                Ok(()) => {}
                Err(EngineError::OutOfMemory { .. }) => refused += 1,
                Err(other) => panic!("{other:?}"),
            }
            let usage = engine.budget_usage();
            assert!(usage.charged_bytes <= budget, "write {i}: {usage:?}");
        }
    }
    assert!(refused > 0);
    assert!(ns.llen(b"list").expect("llen") > 0);
}

/// Hits on 350 hot keys, read every round, while each round also writes
/// 150 keys never read again, in a namespace of 500 keys on an engine
/// configured for 256 shards.
fn hot_hits_in_a_small_namespace(min_keys_per_shard_honoured: bool) -> (usize, u64) {
    let mut config = EngineConfig {
        shards_per_namespace: 256,
        ..EngineConfig::default()
    };
    config.namespace_limits.insert(
        "small".into(),
        NamespaceLimits {
            max_keys: 500,
            max_memory_bytes: 0,
        },
    );
    let engine = Engine::with_parts(config.clone(), Arc::new(ManualClock::new(START_MS)), None);
    let ns = if min_keys_per_shard_honoured {
        engine.namespace("small").expect("namespace")
    } else {
        // What a namespace of 256 shards would do with the same budget.
        Arc::new(Namespace::new(
            Arc::from("small"),
            256,
            Limits {
                max_key_bytes: config.max_key_bytes,
                max_value_bytes: config.max_value_bytes,
            },
            Arc::new(ManualClock::new(START_MS)),
            Arc::default(),
            engine.budget_for("small"),
        ))
    };
    let hot: Vec<String> = (0..350).map(|i| format!("hot:{i}")).collect();
    let mut hits = 0;
    for round in 0..20 {
        for key in &hot {
            if ns.get(key.as_bytes()).expect("get").is_some() {
                hits += 1;
            } else {
                put(&ns, key);
            }
        }
        for cold in 0..150 {
            put(&ns, &format!("cold:{round}:{cold}"));
        }
    }
    (ns.shard_count(), hits)
}

#[test]
fn a_small_namespace_budget_gets_few_enough_shards_to_keep_its_hot_keys() {
    let (shards, hits) = hot_hits_in_a_small_namespace(true);
    assert_eq!(shards, 2, "500 keys at 128 a shard or more");
    // The hot keys fit in the budget and are read every round: after the
    // first round, nearly every read hits.
    assert!(hits >= 19 * 350 * 9 / 10, "{hits} hits of {}", 19 * 350);
    let (_, spread_hits) = hot_hits_in_a_small_namespace(false);
    assert!(
        spread_hits < hits * 9 / 10,
        "with 256 shards of about two keys each, the shards cannot keep them: {spread_hits} against {hits}"
    );
}
