//! The client's batch, pipeline, watch and near-cache APIs against the real
//! server.

use std::time::Duration;

use bytes::Bytes;
use shoal_client::{
    BatchOptions, BatchSet, ChangeKind, Client, Error, NearCacheOptions, SetOptions, WatchEvent,
    WatchOptions,
};
use shoal_server::Config;
use shoal_tests::TestServer;
use tokio_stream::StreamExt;

/// Upper bound on waiting for something that must happen; never reached
/// when things work.
const PATIENCE: Duration = Duration::from_secs(20);

async fn client_for(server: &TestServer) -> Client {
    Client::builder()
        .endpoint(server.endpoint())
        .namespace("app")
        .connect()
        .await
        .expect("connect")
}

/// Polls `check` until it holds, failing after [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn get_set_and_delete_many_keep_input_order_and_per_item_errors() {
    let server = TestServer::start().await;
    let client = client_for(&server).await;
    let options = BatchOptions {
        chunk_items: 7,
        in_flight: 3,
    };
    let writes = (0..100).map(|n| BatchSet::new(format!("k{n}"), format!("v{n}")));
    let results = client
        .set_many_with(writes, options)
        .await
        .expect("set many");
    assert_eq!(results.len(), 100);
    assert!(
        results
            .iter()
            .all(|result| result.as_ref().is_ok_and(|set| set.stored))
    );

    let mut keys: Vec<String> = (0..100).rev().map(|n| format!("k{n}")).collect();
    keys.insert(50, String::new());
    keys.push("absent".into());
    let values = client
        .get_many_with(&keys, options)
        .await
        .expect("get many");
    assert_eq!(values.len(), 102);
    for (key, value) in keys.iter().zip(&values) {
        match key.as_str() {
            "" => assert!(
                matches!(value, Err(Error::InvalidArgument { .. })),
                "{value:?}"
            ),
            "absent" => assert_eq!(value.as_ref().expect("miss"), &None),
            key => assert_eq!(
                value.as_ref().expect("hit").as_deref(),
                Some(format!("v{}", &key[1..]).as_bytes())
            ),
        }
    }

    let removed = client
        .delete_many(["k1", "k2", "nope", ""])
        .await
        .expect("delete many");
    assert!(matches!(removed[0], Ok(true)));
    assert!(matches!(removed[1], Ok(true)));
    assert!(matches!(removed[2], Ok(false)));
    assert!(matches!(removed[3], Err(Error::InvalidArgument { .. })));
    assert_eq!(client.count().await.expect("count"), 98);
}

#[tokio::test]
async fn small_batches_on_shared_streams_answer_each_caller_with_its_own_keys() {
    let server = TestServer::start().await;
    let shared = Client::builder()
        .endpoint(server.endpoint())
        .namespace("app")
        .connections(2)
        .connect()
        .await
        .expect("connect");
    let calls = Client::builder()
        .endpoint(server.endpoint())
        .namespace("app")
        .shared_stream_max_keys(0)
        .connect()
        .await
        .expect("connect");
    let writes = (0..400).map(|n| (format!("k{n}"), format!("v{n}")));
    shared.set_many(writes).await.expect("set many");

    // Many callers at once on two shared streams: each reply goes to the
    // caller whose command it answers.
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..100_usize {
        let client = shared.clone();
        tasks.spawn(async move {
            let keys: Vec<String> = (0..4).map(|n| format!("k{}", caller * 4 + n)).collect();
            let values = client.get_many(&keys).await.expect("get many");
            (keys, values)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (keys, values) = joined.expect("task");
        for (key, value) in keys.iter().zip(values) {
            let expected = format!("v{}", &key[1..]);
            assert_eq!(
                value.expect("hit").as_deref(),
                Some(expected.as_bytes()),
                "{key}"
            );
        }
    }

    // The same answers, per-item errors included, as GetBatch calls give.
    let keys = ["k1", "", "absent", "k399"];
    let on_stream = shared.get_many(keys).await.expect("shared");
    let by_call = calls.get_many(keys).await.expect("calls");
    assert_eq!(format!("{on_stream:?}"), format!("{by_call:?}"));
    assert!(matches!(on_stream[1], Err(Error::InvalidArgument { .. })));

    // A fault of the whole command fails that call only; the stream goes on.
    let bad = shared.with_namespace("bad namespace!");
    assert!(matches!(
        bad.get_many(["k1"]).await,
        Err(Error::InvalidArgument { .. })
    ));
    let removed = shared.delete_many(["k1", "nope"]).await.expect("delete");
    assert!(matches!(removed[..], [Ok(true), Ok(false)]));
    assert_eq!(
        calls.get_many(["k1"]).await.expect("get")[0]
            .as_ref()
            .expect("ok"),
        &None
    );
}

#[tokio::test]
async fn a_shutdown_ends_shared_streams_instead_of_waiting_for_them() {
    let mut config = Config::default();
    // Far longer than the test may take: the server must not wait for the
    // open stream to end on its own.
    config.grpc.shutdown_grace_secs = 3600;
    let server = TestServer::start_with(config).await;
    let client = client_for(&server).await;
    client.set("k", "v").await.expect("set");
    let values = client.get_many(["k"]).await.expect("get many");
    assert_eq!(values[0].as_ref().expect("hit").as_deref(), Some(&b"v"[..]));

    tokio::time::timeout(PATIENCE, server.stop())
        .await
        .expect("the server stopped without waiting for the shared stream")
        .expect("clean stop");
    let error = client.get_many(["k"]).await.expect_err("no server");
    assert_eq!(error.code(), tonic::Code::Unavailable, "{error}");
}

#[tokio::test]
async fn batches_and_pipelines_read_compressed_values_like_single_calls() {
    let server = TestServer::start().await;
    let compressing = Client::builder()
        .endpoint(server.endpoint())
        .namespace("app")
        .compression(shoal_client::Compression::zstd().threshold(64))
        .connect()
        .await
        .expect("connect");
    let plain = client_for(&server).await;
    let big = "abc".repeat(1000);
    compressing
        .set_many([("big", big.clone())])
        .await
        .expect("set many");
    let mut pipeline = compressing.pipeline();
    let _ = pipeline.set("big2", big.clone());
    pipeline.run().await.expect("pipeline");
    let stats = plain.stats().await.expect("stats");
    assert!(
        stats.total.memory_bytes < 3000,
        "stored compressed: {} bytes",
        stats.total.memory_bytes
    );
    for key in ["big", "big2"] {
        assert_eq!(
            plain.get(key).await.expect("get").as_deref(),
            Some(big.as_bytes())
        );
    }
    let values = plain.get_many(["big", "big2"]).await.expect("get many");
    assert!(
        values
            .iter()
            .all(|value| value.as_ref().expect("ok").as_deref() == Some(big.as_bytes()))
    );
    let mut pipeline = plain.pipeline();
    let read = pipeline.get("big2");
    let mut results = pipeline.run().await.expect("pipeline");
    assert_eq!(
        results.take(read).expect("get").as_deref(),
        Some(big.as_bytes())
    );
}

#[tokio::test]
async fn set_many_reports_item_errors_and_conditions() {
    let mut config = Config::default();
    config.engine.max_value_bytes = 4;
    let server = TestServer::start_with(config).await;
    let client = client_for(&server).await;
    client.set("taken", "x").await.expect("set");
    let results = client
        .set_many_with(
            [
                BatchSet::new("a", "1"),
                BatchSet::new("b", "too big"),
                BatchSet::new("taken", "y").with_options(
                    SetOptions::default().with_condition(shoal_client::Condition::IfAbsent),
                ),
            ],
            BatchOptions::default(),
        )
        .await
        .expect("set many");
    assert!(results[0].as_ref().is_ok_and(|set| set.stored));
    assert!(matches!(results[1], Err(Error::InvalidArgument { .. })));
    assert!(results[2].as_ref().is_ok_and(|set| !set.stored));
    assert_eq!(client.get("b").await.expect("get"), None);
}

#[tokio::test]
async fn pipelines_return_typed_results_per_command() {
    let server = TestServer::start().await;
    let client = client_for(&server).await;
    let mut pipeline = client.pipeline();
    let set = pipeline.set("greeting", "hello");
    let get = pipeline.get("greeting");
    let counter = pipeline.increment("visits", 3);
    let pushed = pipeline.rpush("log", ["a", "b"]);
    let range = pipeline.lrange("log", 0, -1);
    let wrong = pipeline.sadd("greeting", ["m"]);
    let added = pipeline.sadd("tags", ["x", "y"]);
    let member = pipeline.sismember("tags", "y");
    assert_eq!(pipeline.len(), 8);
    let mut results = pipeline.run().await.expect("run");
    assert!(results.take(set).expect("set").stored);
    assert_eq!(
        results.take(get).expect("get").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(results.take(counter).expect("incr"), 3);
    assert_eq!(results.take(pushed).expect("rpush"), 2);
    assert_eq!(
        results.take(range).expect("lrange"),
        vec![Bytes::from("a"), Bytes::from("b")]
    );
    assert!(matches!(results.take(wrong), Err(Error::WrongType { .. })));
    assert_eq!(results.take(added).expect("sadd"), 2);
    assert!(results.take(member).expect("sismember"));
    assert!(client.pipeline().run().await.expect("empty").is_empty());
}

#[tokio::test]
async fn watch_streams_changes_of_the_namespace() {
    let server = TestServer::start().await;
    let client = client_for(&server).await;
    let mut events = client
        .watch(WatchOptions::all().prefix("user:"))
        .await
        .expect("watch");
    let written = client.set("user:1", "ann").await.expect("set");
    client.set("order:1", "x").await.expect("set");
    client.delete(["user:1"]).await.expect("delete");
    let first = events.next().await.expect("event").expect("ok");
    assert_eq!(
        first,
        WatchEvent::Changed {
            kind: ChangeKind::Set,
            key: Bytes::from("user:1"),
            version: written.version,
        }
    );
    let second = events.next().await.expect("event").expect("ok");
    assert!(matches!(
        second,
        WatchEvent::Changed {
            kind: ChangeKind::Delete,
            ..
        }
    ));
    let bad = client.watch(WatchOptions::all().prefix("")).await;
    assert!(matches!(bad, Err(Error::InvalidArgument { .. })), "{bad:?}");
}

#[tokio::test]
async fn near_caches_stay_coherent_across_clients() {
    let server = TestServer::start().await;
    let writer = client_for(&server).await;
    let reader_client = client_for(&server).await;
    let near = reader_client.near_cache(NearCacheOptions::default());
    eventually("the near cache subscribes", || async { near.is_live() }).await;

    writer.set("flag", "off").await.expect("set");
    // The write's own event may still be on its way and undo the first
    // fill; repeated reads soon come from the L1.
    eventually("reads come from the L1", || async {
        let value = near.get("flag").await.expect("get");
        assert_eq!(value.as_deref(), Some(&b"off"[..]));
        near.stats().hits > 0
    })
    .await;

    // A write through another client: once its event arrives, the L1 no
    // longer serves the old value.
    writer.set("flag", "on").await.expect("set");
    eventually("the L1 sees the write", || async {
        near.get("flag").await.expect("get").as_deref() == Some(&b"on"[..])
    })
    .await;
    assert!(near.stats().invalidations >= 1);

    // Deletes and flushes reach it too.
    writer.delete(["flag"]).await.expect("delete");
    eventually("the L1 sees the delete", || async {
        near.get("flag").await.expect("get").is_none()
    })
    .await;
    writer.set("other", "1").await.expect("set");
    near.get("other").await.expect("fill");
    writer.flush().await.expect("flush");
    eventually("the L1 sees the flush", || async {
        near.get("other").await.expect("get").is_none()
    })
    .await;
}

#[tokio::test]
async fn a_near_cache_stays_coherent_through_a_burst_beyond_the_feed_buffer() {
    let mut config = Config::default();
    config.watch.buffer_events = 16;
    let server = TestServer::start_with(config).await;
    let writer = client_for(&server).await;
    let near = client_for(&server)
        .await
        .near_cache(NearCacheOptions::default());
    eventually("the near cache subscribes", || async { near.is_live() }).await;
    writer.set("k", "v").await.expect("set");
    near.get("k").await.expect("fill");

    // Whether this watcher keeps up or is resynced (and clears), it must
    // end up serving the last write.
    // A burst far larger than the feed's buffer.
    let burst = (0..20_000).map(|n| BatchSet::new(format!("burst:{n}"), "x"));
    writer
        .set_many_with(burst, BatchOptions::default())
        .await
        .expect("burst");
    writer.set("k", "v2").await.expect("set");
    eventually("the L1 serves the new value", || async {
        near.get("k").await.expect("get").as_deref() == Some(&b"v2"[..])
    })
    .await;
}

#[tokio::test]
async fn a_near_cache_that_lost_its_feed_does_not_serve() {
    let mut server = TestServer::start().await;
    let client = client_for(&server)
        .await
        .with_timeout(Duration::from_secs(2));
    let near = client.near_cache(NearCacheOptions::default());
    eventually("the near cache subscribes", || async { near.is_live() }).await;
    client.set("k", "v").await.expect("set");
    eventually("reads come from the L1", || async {
        near.get("k").await.expect("get");
        near.stats().hits > 0
    })
    .await;

    server.begin_shutdown();
    eventually("the near cache goes offline", || async { !near.is_live() }).await;
    assert_eq!(near.stats().entries, 0, "cleared when the feed was lost");
    let hits = near.stats().hits;
    let _ = near.get("k").await;
    assert_eq!(near.stats().hits, hits, "no L1 hit without a live feed");
}
