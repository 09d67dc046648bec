//! BatchService end to end: GetBatch, SetBatch, DeleteBatch and Pipeline,
//! with per-item outcomes, ordering and limits.

use bytes::Bytes;
use shoal_proto::v1 as pb;
use shoal_server::Config;
use shoal_tests::{TestServer, assert_status, b, raw, set_request, ttl};
use tokio_stream::StreamExt;
use tonic::Code;

use pb::get_batch_item::Result as GetItem;
use pb::pipeline_request::Command;
use pb::pipeline_response::Result as Reply;

async fn get_batch(
    raw: &mut shoal_tests::Raw,
    request: pb::GetBatchRequest,
) -> Result<Vec<pb::GetBatchResponse>, tonic::Status> {
    let mut stream = raw.batch.get_batch(request).await?.into_inner();
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk?);
    }
    Ok(chunks)
}

fn keys(names: &[&str]) -> Vec<Bytes> {
    names.iter().map(|name| b(name)).collect()
}

#[tokio::test]
async fn get_batch_answers_every_key_in_order_with_per_item_errors() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    raw.cache.set(set_request("a", "1")).await.expect("set a");
    raw.cache.set(set_request("c", "3")).await.expect("set c");
    raw.collection
        .s_add(pb::SAddRequest {
            key: b("set"),
            members: keys(&["m"]),
            ..Default::default()
        })
        .await
        .expect("sadd");

    let chunks = get_batch(
        &mut raw,
        pb::GetBatchRequest {
            keys: keys(&["a", "b", "", "set", "c", "a"]),
            include_meta: true,
            chunk_size: 4,
            ..Default::default()
        },
    )
    .await
    .expect("get batch");
    assert_eq!(chunks.len(), 2, "chunks of at most 4 items");
    let items: Vec<_> = chunks.into_iter().flat_map(|chunk| chunk.items).collect();
    let indexes: Vec<u32> = items.iter().map(|item| item.index).collect();
    assert_eq!(indexes, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(items[0].result, Some(GetItem::Value(b("1"))));
    assert!(items[0].meta.as_ref().is_some_and(|meta| meta.version > 0));
    assert_eq!(items[1].result, Some(GetItem::Miss(pb::Miss {})));
    match &items[2].result {
        Some(GetItem::Error(status)) => {
            assert_eq!(status.code, Code::InvalidArgument as i32);
            assert!(status.message.contains("keys[2]"), "{}", status.message);
        }
        other => panic!("empty key must be an item error, got {other:?}"),
    }
    match &items[3].result {
        Some(GetItem::Error(status)) => {
            assert_eq!(status.code, Code::FailedPrecondition as i32);
            assert!(
                status.message.starts_with("WRONGTYPE"),
                "{}",
                status.message
            );
        }
        other => panic!("a set is WRONGTYPE, got {other:?}"),
    }
    assert_eq!(items[4].result, Some(GetItem::Value(b("3"))));
    assert_eq!(items[5].result, Some(GetItem::Value(b("1"))));
}

#[tokio::test]
async fn get_batch_in_a_missing_namespace_misses_without_creating_it() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    let chunks = get_batch(
        &mut raw,
        pb::GetBatchRequest {
            namespace: "nowhere".into(),
            keys: keys(&["x", "y"]),
            ..Default::default()
        },
    )
    .await
    .expect("get batch");
    let items: Vec<_> = chunks.into_iter().flat_map(|chunk| chunk.items).collect();
    assert!(
        items
            .iter()
            .all(|item| item.result == Some(GetItem::Miss(pb::Miss {})))
    );
    let namespaces = raw
        .admin
        .list_namespaces(pb::ListNamespacesRequest {})
        .await
        .expect("list")
        .into_inner();
    assert!(!namespaces.namespaces.iter().any(|name| name == "nowhere"));
}

#[tokio::test]
async fn whole_batch_faults_fail_the_call() {
    let mut config = Config::default();
    config.grpc.max_batch_items = 3;
    let server = TestServer::start_with(config).await;
    let mut raw = raw(&server).await;
    let too_many = pb::GetBatchRequest {
        keys: keys(&["a", "b", "c", "d"]),
        ..Default::default()
    };
    assert_status(
        get_batch(&mut raw, too_many).await,
        Code::InvalidArgument,
        &["keys", "4 items", "batch limit of 3"],
    );
    let bad_namespace = pb::GetBatchRequest {
        namespace: "bad name".into(),
        keys: keys(&["a"]),
        ..Default::default()
    };
    assert_status(
        get_batch(&mut raw, bad_namespace).await,
        Code::InvalidArgument,
        &["namespace"],
    );
    let bad_chunk = pb::GetBatchRequest {
        keys: keys(&["a"]),
        chunk_size: 10_001,
        ..Default::default()
    };
    assert_status(
        get_batch(&mut raw, bad_chunk).await,
        Code::InvalidArgument,
        &["chunk_size", "10000"],
    );
    let deletes = raw
        .batch
        .delete_batch(pb::DeleteBatchRequest {
            keys: keys(&["a", "b", "c", "d"]),
            ..Default::default()
        })
        .await;
    assert_status(
        deletes,
        Code::InvalidArgument,
        &["keys", "batch limit of 3"],
    );
}

fn set_item(key: &str, value: &str) -> pb::SetBatchItem {
    pb::SetBatchItem {
        key: b(key),
        value: b(value),
        ..Default::default()
    }
}

async fn set_batch(
    raw: &mut shoal_tests::Raw,
    chunks: Vec<pb::SetBatchRequest>,
) -> Result<Vec<pb::SetBatchResult>, tonic::Status> {
    let mut replies = raw
        .batch
        .set_batch(tokio_stream::iter(chunks))
        .await?
        .into_inner();
    let mut results = Vec::new();
    while let Some(reply) = replies.next().await {
        results.extend(reply?.results);
    }
    Ok(results)
}

#[tokio::test]
async fn set_batch_reports_each_item_and_numbers_them_across_chunks() {
    let mut config = Config::default();
    config.engine.max_value_bytes = 8;
    let server = TestServer::start_with(config).await;
    let mut raw = raw(&server).await;
    raw.cache
        .set(set_request("taken", "old"))
        .await
        .expect("set");

    let mut conditional = set_item("taken", "new");
    conditional.condition = Some(pb::Condition {
        kind: Some(pb::condition::Kind::IfAbsent(pb::IfAbsent {})),
    });
    let mut expiring = set_item("short", "v");
    expiring.expiry = ttl(60_000);
    let chunks = vec![
        pb::SetBatchRequest {
            items: vec![set_item("a", "1"), set_item("", "empty key")],
            ..Default::default()
        },
        pb::SetBatchRequest {
            namespace: "other".into(),
            items: vec![set_item("b", "too long a value"), conditional, expiring],
        },
    ];
    let results = set_batch(&mut raw, chunks).await.expect("set batch");
    let indexes: Vec<u64> = results.iter().map(|result| result.index).collect();
    assert_eq!(indexes, vec![0, 1, 2, 3, 4]);
    use pb::set_batch_result::Result as SetResult;
    assert!(matches!(
        &results[0].result,
        Some(SetResult::Outcome(pb::SetOutcome { stored: true, version })) if *version > 0
    ));
    let error = |at: usize| match &results[at].result {
        Some(SetResult::Error(status)) => status.clone(),
        other => panic!("item {at} must fail, got {other:?}"),
    };
    assert_eq!(error(1).code, Code::InvalidArgument as i32);
    assert!(error(1).message.contains("key"), "{}", error(1).message);
    assert_eq!(error(2).code, Code::InvalidArgument as i32);
    assert!(error(2).message.contains("value"), "{}", error(2).message);
    // The condition is about "taken" in namespace "other", where it is absent.
    assert!(matches!(
        &results[3].result,
        Some(SetResult::Outcome(pb::SetOutcome { stored: true, .. }))
    ));

    // Rejected items changed nothing; the others are readable.
    let chunks = get_batch(
        &mut raw,
        pb::GetBatchRequest {
            namespace: "other".into(),
            keys: keys(&["b", "taken", "short"]),
            include_meta: true,
            ..Default::default()
        },
    )
    .await
    .expect("read back");
    let items: Vec<_> = chunks.into_iter().flat_map(|chunk| chunk.items).collect();
    assert_eq!(items[0].result, Some(GetItem::Miss(pb::Miss {})));
    assert_eq!(items[1].result, Some(GetItem::Value(b("new"))));
    assert!(
        items[2]
            .meta
            .as_ref()
            .is_some_and(|meta| meta.ttl_ms.is_some()),
        "per-item expiry applies"
    );
}

#[tokio::test]
async fn set_batch_has_no_ceiling_beyond_one_chunk() {
    // Messages are limited to about 64 KiB here; the batch is 100 times that.
    let mut config = Config::default();
    config.engine.max_value_bytes = 1024;
    let server = TestServer::start_with(config).await;
    let mut raw = raw(&server).await;
    let value = "v".repeat(1000);
    let chunks: Vec<_> = (0..200)
        .map(|chunk| pb::SetBatchRequest {
            items: (0..40)
                .map(|item| set_item(&format!("k{chunk}-{item}"), &value))
                .collect(),
            ..Default::default()
        })
        .collect();
    let results = set_batch(&mut raw, chunks).await.expect("set batch");
    assert_eq!(results.len(), 8000);
    assert_eq!(results.last().map(|result| result.index), Some(7999));
    let count = raw
        .cache
        .count(pb::CountRequest::default())
        .await
        .expect("count")
        .into_inner();
    assert_eq!(count.keys, 8000);
}

#[tokio::test]
async fn a_set_batch_chunk_over_the_limit_ends_the_stream() {
    let mut config = Config::default();
    config.grpc.max_batch_items = 2;
    let server = TestServer::start_with(config).await;
    let mut raw = raw(&server).await;
    let chunks = vec![
        pb::SetBatchRequest {
            items: vec![set_item("a", "1")],
            ..Default::default()
        },
        pb::SetBatchRequest {
            items: vec![set_item("b", "1"), set_item("c", "1"), set_item("d", "1")],
            ..Default::default()
        },
    ];
    let mut replies = raw
        .batch
        .set_batch(tokio_stream::iter(chunks))
        .await
        .expect("stream")
        .into_inner();
    let first = replies.next().await.expect("first reply").expect("ok");
    assert_eq!(first.results.len(), 1);
    let second = replies.next().await.expect("second reply");
    assert_status(
        second,
        Code::InvalidArgument,
        &["items", "batch limit of 2"],
    );
    let count = raw
        .cache
        .count(pb::CountRequest::default())
        .await
        .expect("count")
        .into_inner();
    assert_eq!(count.keys, 1, "nothing of the rejected chunk was stored");
}

#[tokio::test]
async fn delete_batch_says_which_keys_existed() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    raw.cache.set(set_request("a", "1")).await.expect("set");
    let mut stream = raw
        .batch
        .delete_batch(pb::DeleteBatchRequest {
            keys: keys(&["a", "b", "", "a"]),
            ..Default::default()
        })
        .await
        .expect("delete batch")
        .into_inner();
    let mut items = Vec::new();
    while let Some(chunk) = stream.next().await {
        items.extend(chunk.expect("chunk").items);
    }
    use pb::delete_batch_item::Result as Deleted;
    assert_eq!(items[0].result, Some(Deleted::Existed(true)));
    assert_eq!(items[1].result, Some(Deleted::Existed(false)));
    assert!(
        matches!(&items[2].result, Some(Deleted::Error(status)) if status.code == Code::InvalidArgument as i32)
    );
    assert_eq!(items[3].result, Some(Deleted::Existed(false)));
}

fn command(id: u64, command: Command) -> pb::PipelineRequest {
    pb::PipelineRequest {
        id,
        command: Some(command),
    }
}

#[tokio::test]
async fn pipeline_runs_commands_in_order_and_answers_each() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    let requests = vec![
        command(1, Command::Set(set_request("k", "v"))),
        command(
            2,
            Command::Get(pb::GetRequest {
                key: b("k"),
                ..Default::default()
            }),
        ),
        command(
            3,
            Command::Increment(pb::IncrementRequest {
                key: b("n"),
                delta: 5,
                ..Default::default()
            }),
        ),
        command(
            4,
            Command::RPush(pb::RPushRequest {
                key: b("list"),
                values: keys(&["x", "y", "z"]),
                ..Default::default()
            }),
        ),
        command(
            5,
            Command::LRange(pb::LRangeRequest {
                key: b("list"),
                start: 0,
                stop: -1,
                chunk_size: 1,
                ..Default::default()
            }),
        ),
        // Wrong type: an error for this command only.
        command(
            6,
            Command::Get(pb::GetRequest {
                key: b("list"),
                ..Default::default()
            }),
        ),
        // Not after 6: refused, and not run.
        command(6, Command::Set(set_request("dup", "x"))),
        pb::PipelineRequest {
            id: 7,
            command: None,
        },
        command(
            9,
            Command::Get(pb::GetRequest {
                key: b("dup"),
                ..Default::default()
            }),
        ),
    ];
    let mut replies = raw
        .batch
        .pipeline(tokio_stream::iter(requests))
        .await
        .expect("pipeline")
        .into_inner();
    let mut all = Vec::new();
    while let Some(reply) = replies.next().await {
        all.push(reply.expect("reply"));
    }
    let ids: Vec<u64> = all.iter().map(|reply| reply.id).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5, 6, 6, 7, 9]);
    assert!(matches!(&all[0].result, Some(Reply::Set(set)) if set.stored));
    assert!(matches!(&all[1].result, Some(Reply::Get(get)) if get.value == b("v")));
    assert!(matches!(&all[2].result, Some(Reply::Increment(incr)) if incr.value == 5));
    assert!(matches!(&all[3].result, Some(Reply::RPush(push)) if push.length == 3));
    assert!(
        matches!(&all[4].result, Some(Reply::LRange(range)) if range.values == keys(&["x", "y", "z"])),
        "a chunked read is gathered into one reply: {:?}",
        all[4].result
    );
    let error = |at: usize| match &all[at].result {
        Some(Reply::Error(status)) => status.clone(),
        other => panic!("reply {at} must be an error, got {other:?}"),
    };
    assert_eq!(error(5).code, Code::FailedPrecondition as i32);
    assert_eq!(error(6).code, Code::InvalidArgument as i32);
    assert!(error(6).message.starts_with("id"), "{}", error(6).message);
    assert_eq!(error(7).code, Code::InvalidArgument as i32);
    assert!(error(7).message.contains("command"), "{}", error(7).message);
    assert!(
        matches!(&all[8].result, Some(Reply::Get(get)) if !get.found),
        "the refused duplicate was not run"
    );
}

#[tokio::test]
async fn pipeline_runs_whole_batches_as_single_commands() {
    let mut config = Config::default();
    config.grpc.max_batch_items = 3;
    let server = TestServer::start_with(config).await;
    let mut raw = raw(&server).await;
    let item = |key: &str, value: &str| pb::SetBatchItem {
        key: b(key),
        value: b(value),
        ..Default::default()
    };
    let requests = vec![
        command(
            1,
            Command::SetBatch(pb::SetBatchRequest {
                namespace: String::new(),
                items: vec![item("a", "1"), item("", "x"), item("b", "2")],
            }),
        ),
        command(
            2,
            Command::GetBatch(pb::GetBatchRequest {
                keys: keys(&["b", "missing", "a"]),
                // Chunks are gathered into the one reply.
                chunk_size: 1,
                ..Default::default()
            }),
        ),
        command(
            3,
            Command::DeleteBatch(pb::DeleteBatchRequest {
                keys: keys(&["a", "a", ""]),
                ..Default::default()
            }),
        ),
        // Over the batch limit: refused as a whole, and nothing is read.
        command(
            4,
            Command::GetBatch(pb::GetBatchRequest {
                keys: keys(&["a", "b", "c", "d"]),
                ..Default::default()
            }),
        ),
    ];
    let replies: Vec<pb::PipelineResponse> = raw
        .batch
        .pipeline(tokio_stream::iter(requests))
        .await
        .expect("pipeline")
        .into_inner()
        .map(|reply| reply.expect("reply"))
        .collect()
        .await;
    assert_eq!(replies.len(), 4);

    let Some(Reply::SetBatch(set)) = &replies[0].result else {
        panic!("a SetBatch reply: {:?}", replies[0]);
    };
    let indexes: Vec<u64> = set.results.iter().map(|result| result.index).collect();
    assert_eq!(indexes, [0, 1, 2]);
    assert!(matches!(
        &set.results[1].result,
        Some(pb::set_batch_result::Result::Error(status)) if status.code == Code::InvalidArgument as i32
    ));

    let Some(Reply::GetBatch(get)) = &replies[1].result else {
        panic!("a GetBatch reply: {:?}", replies[1]);
    };
    let found: Vec<Option<Bytes>> = get
        .items
        .iter()
        .map(|item| match &item.result {
            Some(pb::get_batch_item::Result::Value(value)) => Some(value.clone()),
            Some(pb::get_batch_item::Result::Miss(_)) => None,
            other => panic!("unexpected item {other:?}"),
        })
        .collect();
    assert_eq!(found, [Some(b("2")), None, Some(b("1"))]);

    let Some(Reply::DeleteBatch(deleted)) = &replies[2].result else {
        panic!("a DeleteBatch reply: {:?}", replies[2]);
    };
    let existed: Vec<Option<bool>> = deleted
        .items
        .iter()
        .map(|item| match &item.result {
            Some(pb::delete_batch_item::Result::Existed(existed)) => Some(*existed),
            _ => None,
        })
        .collect();
    assert_eq!(existed, [Some(true), Some(false), None]);

    let Some(Reply::Error(status)) = &replies[3].result else {
        panic!("an error reply: {:?}", replies[3]);
    };
    assert_eq!(status.code, Code::InvalidArgument as i32);
    assert!(
        status.message.contains("batch limit of 3"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn a_shutdown_ends_open_pipelines_with_unavailable() {
    let mut config = Config::default();
    config.grpc.shutdown_grace_secs = 3600;
    let mut server = TestServer::start_with(config).await;
    let mut raw = raw(&server).await;
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let mut replies = raw
        .batch
        .pipeline(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .expect("pipeline")
        .into_inner();
    sender
        .send(command(1, Command::Set(set_request("k", "v"))))
        .await
        .expect("send");
    assert!(replies.message().await.expect("reply").is_some());

    server.begin_shutdown();
    let status = replies
        .message()
        .await
        .expect_err("the stream ends with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("shutting down"), "{status:?}");
    drop(sender);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn pipeline_replies_arrive_before_the_stream_ends() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let mut replies = raw
        .batch
        .pipeline(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .expect("pipeline")
        .into_inner();
    for id in 1..=3u64 {
        sender
            .send(command(id, Command::Set(set_request("k", &id.to_string()))))
            .await
            .expect("send");
        let reply = replies.next().await.expect("reply").expect("ok");
        assert_eq!(reply.id, id, "answered while the stream is still open");
    }
    drop(sender);
    assert!(replies.next().await.is_none());
}
