//! WatchService end to end: events in order with versions, prefixes,
//! heartbeats, resync of a slow watcher, limits and cleanup.

use std::time::Duration;

use bytes::Bytes;
use shoal_proto::v1 as pb;
use shoal_server::Config;
use shoal_tests::{TestServer, assert_status, b, raw, set_request};
use tokio_stream::StreamExt;
use tonic::{Code, Streaming};

use pb::watch_event::Event;

/// Upper bound on waiting for an event that must come; never reached when
/// the server works.
const PATIENCE: Duration = Duration::from_secs(20);

async fn next(stream: &mut Streaming<pb::WatchEvent>) -> pb::WatchEvent {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("an event within the patience limit")
        .expect("stream open")
        .expect("event")
}

async fn watch(raw: &mut shoal_tests::Raw, request: pb::WatchRequest) -> Streaming<pb::WatchEvent> {
    let mut stream = raw.watch.watch(request).await.expect("watch").into_inner();
    let first = next(&mut stream).await;
    assert_eq!(first.sequence, 1);
    assert_eq!(first.event, Some(Event::Subscribed(pb::Subscribed {})));
    stream
}

fn key_event(event: &pb::WatchEvent) -> (pb::KeyEventKind, Bytes, u64) {
    match &event.event {
        Some(Event::Key(key)) => (key.kind(), key.key.clone(), key.version),
        other => panic!("expected a key event, got {other:?}"),
    }
}

#[tokio::test]
async fn changes_arrive_in_order_with_versions_and_sequence_numbers() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    let mut stream = watch(&mut raw, pb::WatchRequest::default()).await;

    let set = raw
        .cache
        .set(set_request("a", "1"))
        .await
        .expect("set")
        .into_inner();
    raw.collection
        .r_push(pb::RPushRequest {
            key: b("list"),
            values: vec![b("x")],
            ..Default::default()
        })
        .await
        .expect("rpush");
    raw.cache
        .update_ttl(pb::UpdateTtlRequest {
            key: b("a"),
            expiry: shoal_tests::ttl(60_000),
            ..Default::default()
        })
        .await
        .expect("expire");
    raw.cache
        .delete(pb::DeleteRequest {
            keys: vec![b("a")],
            ..Default::default()
        })
        .await
        .expect("delete");
    // Another namespace is not this watcher's business.
    raw.cache
        .set(pb::SetRequest {
            namespace: "other".into(),
            ..set_request("z", "1")
        })
        .await
        .expect("set other");
    raw.admin
        .flush(pb::FlushRequest::default())
        .await
        .expect("flush");

    let events = [
        next(&mut stream).await,
        next(&mut stream).await,
        next(&mut stream).await,
        next(&mut stream).await,
        next(&mut stream).await,
    ];
    let sequences: Vec<u64> = events.iter().map(|event| event.sequence).collect();
    assert_eq!(sequences, vec![2, 3, 4, 5, 6]);
    assert_eq!(
        key_event(&events[0]),
        (pb::KeyEventKind::Set, b("a"), set.version)
    );
    assert_eq!(key_event(&events[1]).0, pb::KeyEventKind::Update);
    assert_eq!(key_event(&events[1]).1, b("list"));
    assert_eq!(key_event(&events[2]).0, pb::KeyEventKind::Expiry);
    assert_eq!(key_event(&events[3]).0, pb::KeyEventKind::Delete);
    assert!(key_event(&events[3]).2 > set.version);
    assert_eq!(
        events[4].event,
        Some(Event::Flushed(pb::Flushed { removed: 1 }))
    );
}

#[tokio::test]
async fn prefixes_select_keys() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    let mut stream = watch(
        &mut raw,
        pb::WatchRequest {
            namespace: "users".into(),
            key_prefixes: vec![b("user:"), b("session:")],
            ..Default::default()
        },
    )
    .await;
    for key in ["order:1", "user:1", "other", "session:9"] {
        raw.cache
            .set(pb::SetRequest {
                namespace: "users".into(),
                ..set_request(key, "v")
            })
            .await
            .expect("set");
    }
    assert_eq!(key_event(&next(&mut stream).await).1, b("user:1"));
    assert_eq!(key_event(&next(&mut stream).await).1, b("session:9"));
}

#[tokio::test]
async fn a_quiet_feed_sends_heartbeats() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    let mut stream = watch(
        &mut raw,
        pb::WatchRequest {
            heartbeat_interval_ms: 100,
            ..Default::default()
        },
    )
    .await;
    let event = next(&mut stream).await;
    assert_eq!(event.event, Some(Event::Heartbeat(pb::Heartbeat {})));
    assert_eq!(event.sequence, 2);
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_resynced_and_the_feed_goes_on() {
    let mut config = Config::default();
    config.watch.buffer_events = 16;
    let server = TestServer::start_with(config).await;
    let mut raw = raw(&server).await;
    let mut stream = watch(&mut raw, pb::WatchRequest::default()).await;

    // Far more events than the transport and the ring buffer hold, written
    // while the watcher reads nothing.
    let value = Bytes::from(vec![b'v'; 16]);
    let chunks: Vec<_> = (0..20)
        .map(|chunk| pb::SetBatchRequest {
            items: (0..5000)
                .map(|item| pb::SetBatchItem {
                    key: Bytes::from(format!("key-{chunk}-{item}-with-some-length-to-fill")),
                    value: value.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    let mut replies = raw
        .batch
        .set_batch(tokio_stream::iter(chunks))
        .await
        .expect("set batch")
        .into_inner();
    while let Some(reply) = replies.next().await {
        reply.expect("chunk stored");
    }
    raw.cache.set(set_request("last", "1")).await.expect("last");

    let mut missed = 0;
    let mut last_sequence = 1;
    loop {
        let event = next(&mut stream).await;
        assert_eq!(event.sequence, last_sequence + 1, "no gaps in sequence");
        last_sequence = event.sequence;
        match event.event {
            Some(Event::Resync(resync)) => missed += resync.missed,
            Some(Event::Key(key)) if key.key == b("last") => break,
            _ => {}
        }
    }
    assert!(missed > 0, "the slow watcher was told it missed events");
}

#[tokio::test]
async fn bad_watch_requests_are_refused() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    let empty_prefix = pb::WatchRequest {
        key_prefixes: vec![b("ok"), Bytes::new()],
        ..Default::default()
    };
    assert_status(
        raw.watch.watch(empty_prefix).await,
        Code::InvalidArgument,
        &["key_prefixes[1]"],
    );
    let too_many = pb::WatchRequest {
        key_prefixes: (0..65).map(|at| b(&format!("p{at}"))).collect(),
        ..Default::default()
    };
    assert_status(
        raw.watch.watch(too_many).await,
        Code::InvalidArgument,
        &["key_prefixes", "64"],
    );
    let heartbeat = pb::WatchRequest {
        heartbeat_interval_ms: 5,
        ..Default::default()
    };
    assert_status(
        raw.watch.watch(heartbeat).await,
        Code::InvalidArgument,
        &["heartbeat_interval_ms", "100"],
    );
    let namespace = pb::WatchRequest {
        namespace: "no spaces".into(),
        ..Default::default()
    };
    assert_status(
        raw.watch.watch(namespace).await,
        Code::InvalidArgument,
        &["namespace"],
    );
}

#[tokio::test]
async fn watchers_are_bounded_and_a_dropped_one_frees_its_place() {
    let mut config = Config::default();
    config.watch.max_watchers = 1;
    let server = TestServer::start_with(config).await;
    let mut raw = raw(&server).await;
    let first = watch(&mut raw, pb::WatchRequest::default()).await;
    assert_status(
        raw.watch.watch(pb::WatchRequest::default()).await,
        Code::ResourceExhausted,
        &["1 watch streams"],
    );
    drop(first);
    // The server notices the cancelled stream asynchronously.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match raw.watch.watch(pb::WatchRequest::default()).await {
            Ok(_) => break,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(tokio::time::Instant::now() < deadline, "place never freed");
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(status) => panic!("unexpected {status:?}"),
        }
    }
}

#[tokio::test]
async fn shutdown_ends_watch_streams() {
    let mut server = TestServer::start().await;
    let mut raw = raw(&server).await;
    let mut stream = watch(&mut raw, pb::WatchRequest::default()).await;
    server.begin_shutdown();
    let end = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("the stream ends at shutdown");
    match end {
        None => {}
        Some(Err(status)) => assert_eq!(status.code(), Code::Unavailable),
        Some(Ok(event)) => panic!("unexpected event {event:?}"),
    }
}
