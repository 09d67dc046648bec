//! The CacheService and AdminService contracts over real gRPC.

use std::sync::Arc;

use shoal_proto::v1 as pb;
use shoal_server::Config;
use shoal_server::engine::{Engine, ManualClock};
use shoal_tests::{TestServer, b, get_request, raw, scan_all, set_request, stats, ttl};

#[tokio::test]
async fn set_get_and_metadata_round_trip() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    let stored = raw
        .cache
        .set(set_request("greeting", "hello"))
        .await
        .expect("set")
        .into_inner();
    assert!(stored.stored);
    let got = raw
        .cache
        .get(get_request("greeting"))
        .await
        .expect("get")
        .into_inner();
    assert!(got.found);
    assert_eq!(got.value, b("hello"));
    let meta = got.meta.expect("meta asked for");
    assert_eq!(meta.version, stored.version);
    assert_eq!(meta.size, 5);
    assert_eq!(meta.ttl_ms, None);
    assert_eq!(meta.r#type(), pb::KeyType::String);

    let missing = raw
        .cache
        .get(get_request("nope"))
        .await
        .expect("get")
        .into_inner();
    assert!(!missing.found);
}

#[tokio::test]
async fn conditions_and_previous_values() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    let if_absent = Some(pb::Condition {
        kind: Some(pb::condition::Kind::IfAbsent(pb::IfAbsent {})),
    });
    let first = raw
        .cache
        .set(pb::SetRequest {
            condition: if_absent,
            ..set_request("k", "one")
        })
        .await
        .expect("set")
        .into_inner();
    assert!(first.stored);
    let second = raw
        .cache
        .set(pb::SetRequest {
            condition: if_absent,
            return_previous: true,
            ..set_request("k", "two")
        })
        .await
        .expect("set")
        .into_inner();
    assert!(
        !second.stored,
        "a condition not met is a result, not an error"
    );
    assert_eq!(second.previous, Some(b("one")));

    let cas = |version| {
        Some(pb::Condition {
            kind: Some(pb::condition::Kind::IfVersion(version)),
        })
    };
    let stale = raw
        .cache
        .set(pb::SetRequest {
            condition: cas(first.version + 1),
            ..set_request("k", "three")
        })
        .await
        .expect("set")
        .into_inner();
    assert!(!stale.stored);
    let fresh = raw
        .cache
        .set(pb::SetRequest {
            condition: cas(first.version),
            return_previous: true,
            ..set_request("k", "three")
        })
        .await
        .expect("set")
        .into_inner();
    assert!(fresh.stored);
    assert_eq!(fresh.previous, Some(b("one")));
    assert!(fresh.version > first.version);
}

#[tokio::test]
async fn namespaces_are_separate_keyspaces() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    raw.cache
        .set(pb::SetRequest {
            namespace: "tenant-a".into(),
            ..set_request("k", "a")
        })
        .await
        .expect("set");
    raw.cache
        .set(set_request("k", "default"))
        .await
        .expect("set");
    let a = raw
        .cache
        .get(pb::GetRequest {
            namespace: "tenant-a".into(),
            ..get_request("k")
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(a.value, b("a"));
    let default = raw
        .cache
        .get(pb::GetRequest {
            namespace: "default".into(),
            ..get_request("k")
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        default.value,
        b("default"),
        "the empty namespace is \"default\""
    );
    let flushed = raw
        .admin
        .flush(pb::FlushRequest {
            namespace: "tenant-a".into(),
        })
        .await
        .expect("flush")
        .into_inner();
    assert_eq!(flushed.removed, 1);
    let count = raw
        .cache
        .count(pb::CountRequest::default())
        .await
        .expect("count")
        .into_inner();
    assert_eq!(count.keys, 1);
    let names = raw
        .admin
        .list_namespaces(pb::ListNamespacesRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        names.namespaces,
        vec!["default".to_string(), "tenant-a".to_string()]
    );
}

#[tokio::test]
async fn delete_describe_and_increment() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    raw.cache
        .set(pb::SetRequest {
            expiry: ttl(60_000),
            ..set_request("a", "1")
        })
        .await
        .expect("set");
    let described = raw
        .cache
        .describe(pb::DescribeRequest {
            keys: vec![b("a"), b("missing")],
            ..Default::default()
        })
        .await
        .expect("describe")
        .into_inner();
    assert_eq!(described.keys.len(), 2);
    assert!(described.keys[0].exists);
    let meta = described.keys[0].meta.expect("meta");
    assert!(meta.ttl_ms.is_some_and(|ttl| ttl > 59_000 && ttl <= 60_000));
    assert!(!described.keys[1].exists);

    let incremented = raw
        .cache
        .increment(pb::IncrementRequest {
            key: b("a"),
            delta: 41,
            ..Default::default()
        })
        .await
        .expect("incr")
        .into_inner();
    assert_eq!(incremented.value, 42);
    assert!(!incremented.created);
    let created = raw
        .cache
        .increment(pb::IncrementRequest {
            key: b("visits"),
            delta: -1,
            initial: Some(10),
            ..Default::default()
        })
        .await
        .expect("incr")
        .into_inner();
    assert_eq!((created.value, created.created), (9, true));

    let deleted = raw
        .cache
        .delete(pb::DeleteRequest {
            keys: vec![b("a"), b("visits"), b("never")],
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(deleted.deleted, 2);
}

#[tokio::test]
async fn ttls_expire_on_the_servers_clock() {
    let clock = ManualClock::new(1_700_000_000_000);
    let config = Config::default();
    let engine = Engine::with_parts(config.engine_config(), Arc::new(clock.clone()), None);
    let server = TestServer::start_with_engine(config, engine).await;
    let mut raw = raw(&server).await;
    raw.cache
        .set(pb::SetRequest {
            expiry: ttl(1_000),
            ..set_request("session", "data")
        })
        .await
        .expect("set");
    raw.cache
        .set(set_request("kept", "data"))
        .await
        .expect("set");
    let updated = raw
        .cache
        .update_ttl(pb::UpdateTtlRequest {
            key: b("kept"),
            expiry: ttl(5_000),
            ..Default::default()
        })
        .await
        .expect("expire")
        .into_inner();
    assert!(updated.existed);

    clock.advance_ms(1_000);
    let expired = raw
        .cache
        .get(get_request("session"))
        .await
        .expect("get")
        .into_inner();
    assert!(!expired.found, "gone at its deadline");
    let kept = raw
        .cache
        .get(get_request("kept"))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(kept.meta.expect("meta").ttl_ms, Some(4_000));

    let persisted = raw
        .cache
        .update_ttl(pb::UpdateTtlRequest {
            key: b("kept"),
            expiry: Some(pb::Expiry {
                kind: Some(pb::expiry::Kind::Never(pb::NoExpiry {})),
            }),
            ..Default::default()
        })
        .await
        .expect("persist")
        .into_inner();
    assert!(persisted.existed);
    clock.advance_ms(10_000);
    let kept = raw
        .cache
        .get(get_request("kept"))
        .await
        .expect("get")
        .into_inner();
    assert!(kept.found);
    assert_eq!(kept.meta.expect("meta").ttl_ms, None);

    let missing = raw
        .cache
        .update_ttl(pb::UpdateTtlRequest {
            key: b("session"),
            expiry: ttl(5_000),
            ..Default::default()
        })
        .await
        .expect("expire")
        .into_inner();
    assert!(!missing.existed);
}

#[tokio::test]
async fn scan_pages_resume_from_their_cursor() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    for i in 0..250 {
        raw.cache
            .set(set_request(&format!("user:{i}"), "v"))
            .await
            .expect("set");
        raw.cache
            .set(set_request(&format!("order:{i}"), "v"))
            .await
            .expect("set");
    }
    let (all_users, cursor) = scan_all(
        &mut raw,
        pb::ScanRequest {
            pattern: "user:*".into(),
            page_size: 40,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(all_users.len(), 250);
    assert!(cursor.is_empty(), "the last page says the scan is complete");

    // Take 100 keys, then resume from the cursor for the rest.
    let (first, cursor) = scan_all(
        &mut raw,
        pb::ScanRequest {
            pattern: "user:*".into(),
            page_size: 30,
            limit: 100,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(first.len(), 100);
    assert!(!cursor.is_empty());
    let (rest, _) = scan_all(
        &mut raw,
        pb::ScanRequest {
            pattern: "user:*".into(),
            cursor,
            ..Default::default()
        },
    )
    .await;
    let mut combined: Vec<_> = first.into_iter().chain(rest).collect();
    combined.sort();
    combined.dedup();
    assert_eq!(
        combined.len(),
        250,
        "resuming lists each remaining key once"
    );

    let (strings, _) = scan_all(
        &mut raw,
        pb::ScanRequest {
            r#type: pb::KeyType::String.into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(strings.len(), 500);
    let (hashes, _) = scan_all(
        &mut raw,
        pb::ScanRequest {
            r#type: pb::KeyType::Hash.into(),
            ..Default::default()
        },
    )
    .await;
    assert!(hashes.is_empty());
}

#[tokio::test]
async fn stats_count_hits_misses_and_calls() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    raw.cache.set(set_request("k", "v")).await.expect("set");
    raw.cache.get(get_request("k")).await.expect("get");
    raw.cache.get(get_request("k")).await.expect("get");
    raw.cache.get(get_request("absent")).await.expect("get");
    let _ = raw.cache.get(get_request("")).await;
    let stats = stats(&mut raw).await;
    let total = stats.total.expect("total");
    assert_eq!(
        (total.keys, total.hits, total.misses, total.sets),
        (1, 2, 1, 1)
    );
    assert!((total.hit_ratio - 2.0 / 3.0).abs() < 1e-9);
    assert!(total.memory_bytes > 0);
    let get = stats
        .rpcs
        .iter()
        .find(|rpc| rpc.method == "/shoal.v1.CacheService/Get")
        .expect("Get counted");
    assert_eq!((get.calls, get.errors), (4, 1));
    assert_eq!(get.errors_by_code.get("InvalidArgument"), Some(&1));
    assert_eq!(stats.namespaces.len(), 1);
    assert_eq!(stats.namespaces[0].namespace, "default");
}
