//! Memory and key budgets over real gRPC: a write storm stays within the
//! budget while the server keeps serving, and `noeviction` refuses writes
//! with RESOURCE_EXHAUSTED while reads go on.

use bytes::Bytes;
use shoal_proto::v1 as pb;
use shoal_server::Config;
use shoal_server::engine::EvictionPolicy;
use shoal_tests::{TestServer, b, get_request, raw, set_request, stats};
use tonic::Code;

/// A deterministic spread of value sizes from 16 bytes to 64 KiB.
fn value_size(i: u64) -> usize {
    let mixed = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    16 << (mixed % 13)
}

#[tokio::test]
async fn a_write_storm_of_three_times_the_budget_stays_within_it() {
    let budget: u64 = 8 * 1024 * 1024;
    let mut config = Config::default();
    config.memory.max_memory = budget;
    let server = TestServer::start_with(config).await;
    let mut raw = raw(&server).await;
    let mut written = 0u64;
    let mut i = 0u64;
    while written < 3 * budget {
        let size = value_size(i);
        raw.cache
            .set(pb::SetRequest {
                key: b(&format!("storm:{i}")),
                value: Bytes::from(vec![b'x'; size]),
                ..Default::default()
            })
            .await
            .expect("writes keep succeeding under eviction");
        written += size as u64;
        i += 1;
        if i.is_multiple_of(256) {
            let stats = stats(&mut raw).await;
            assert!(
                stats.charged_bytes <= budget,
                "charged {} over budget {budget}",
                stats.charged_bytes
            );
        }
    }
    let stats = stats(&mut raw).await;
    let total = stats.total.expect("total");
    assert!(stats.charged_bytes <= budget);
    assert!(
        total.memory_bytes <= budget * 2,
        "held {} bytes for a {budget} budget",
        total.memory_bytes
    );
    assert!(total.evicted_for_memory > 0 && total.evictions == total.evicted_for_memory);
    assert_eq!(stats.max_memory_bytes, budget);
    assert_eq!(stats.eviction_policy, "tinylfu");

    // Still serving: the newest key is there, and new writes and reads work.
    let last = raw
        .cache
        .get(get_request(&format!("storm:{}", i - 1)))
        .await
        .expect("get")
        .into_inner();
    assert!(last.found);
    raw.cache
        .set(set_request("after", "storm"))
        .await
        .expect("set");
    assert!(
        raw.cache
            .get(get_request("after"))
            .await
            .expect("get")
            .into_inner()
            .found
    );
}

#[tokio::test]
async fn noeviction_refuses_writes_over_the_limit_and_keeps_serving_reads() {
    let mut config = Config::default();
    config.memory.max_keys = 3;
    config.memory.eviction_policy = EvictionPolicy::NoEviction;
    let server = TestServer::start_with(config).await;
    let mut raw = raw(&server).await;
    for key in ["a", "b", "c"] {
        raw.cache.set(set_request(key, "v")).await.expect("set");
    }
    let refused = raw
        .cache
        .set(set_request("d", "v"))
        .await
        .expect_err("over the key limit");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("max_keys"),
        "{}",
        refused.message()
    );
    let refused = raw
        .collection
        .s_add(pb::SAddRequest {
            key: b("set"),
            members: vec![b("m")],
            ..Default::default()
        })
        .await
        .expect_err("over the key limit");
    assert_eq!(refused.code(), Code::ResourceExhausted);

    assert!(
        raw.cache
            .get(get_request("a"))
            .await
            .expect("reads go on")
            .into_inner()
            .found
    );
    raw.cache
        .set(set_request("a", "updated"))
        .await
        .expect("updates of existing keys go on");
    raw.cache
        .delete(pb::DeleteRequest {
            keys: vec![b("b")],
            ..Default::default()
        })
        .await
        .expect("delete");
    raw.cache
        .set(set_request("d", "v"))
        .await
        .expect("room again after a delete");
    let stats = stats(&mut raw).await;
    assert_eq!(stats.total.expect("total").evictions, 0);
}

#[tokio::test]
async fn a_namespace_budget_from_the_config_bounds_that_namespace_and_shows_in_stats() {
    let text = "[memory.namespaces.capped]\nmax_memory = \"1MiB\"\nmax_keys = 50";
    let config = Config::from_toml(text, std::path::Path::new("shoal.toml")).expect("config");
    let server = TestServer::start_with(config).await;
    let mut raw = raw(&server).await;
    for namespace in ["capped", "free"] {
        for i in 0..500 {
            raw.cache
                .set(pb::SetRequest {
                    namespace: namespace.into(),
                    key: b(&format!("k{i}")),
                    value: Bytes::from(vec![b'x'; 4096]),
                    ..Default::default()
                })
                .await
                .expect("writes go on, evicting within the namespace");
        }
    }
    let stats = stats(&mut raw).await;
    let namespace = |name: &str| {
        stats
            .namespaces
            .iter()
            .find(|ns| ns.namespace == name)
            .unwrap_or_else(|| panic!("{name} in stats"))
            .clone()
    };
    let capped = namespace("capped");
    let budget = capped.budget.expect("capped reports its budget");
    assert_eq!(
        (budget.max_keys, budget.max_memory_bytes),
        (50, 1024 * 1024)
    );
    assert!(capped.keys <= 50, "capped holds {} keys", capped.keys);
    assert!(
        budget.charged_bytes <= budget.max_memory_bytes,
        "{} bytes charged",
        budget.charged_bytes
    );
    assert_eq!(budget.keys, capped.keys);
    assert!(capped.evicted_for_keys + capped.evicted_for_memory >= 450);
    let free = namespace("free");
    assert_eq!(
        free.keys, 500,
        "a namespace without a budget keeps everything"
    );
    assert!(free.budget.is_none());
}

#[test]
fn a_namespace_budget_must_name_a_valid_namespace() {
    let error = Config::from_toml(
        "[memory.namespaces.\"bad name\"]\nmax_keys = 1",
        std::path::Path::new("shoal.toml"),
    )
    .expect_err("invalid name");
    let message = error.to_string();
    assert!(message.contains("memory.namespaces"), "{message}");
    assert!(message.contains("bad name"), "{message}");
    let error = Config::from_toml(
        "[memory.namespaces.ok]\nmax_memory = \"lots\"",
        std::path::Path::new("shoal.toml"),
    )
    .expect_err("bad size");
    assert!(error.to_string().contains("max_memory"), "{error}");
}
