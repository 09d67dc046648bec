//! Hashes, lists and sets over real gRPC: streaming of large collections,
//! the key-level RPCs on collections, and bad input.

use bytes::Bytes;
use shoal_proto::v1 as pb;
use shoal_tests::{Raw, TestServer, assert_status, b, raw, scan_all, set_request, stats, ttl};
use tonic::Code;
use tonic_types::StatusExt;

async fn lrange_chunks(raw: &mut Raw, key: &str, chunk_size: u32) -> Vec<Vec<Bytes>> {
    let mut stream = raw
        .collection
        .l_range(pb::LRangeRequest {
            key: b(key),
            start: 0,
            stop: -1,
            chunk_size,
            ..Default::default()
        })
        .await
        .expect("lrange")
        .into_inner();
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.message().await.expect("chunk") {
        chunks.push(chunk.values);
    }
    chunks
}

#[tokio::test]
async fn a_conversation_keeps_its_last_hundred_messages() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    for turn in 0..250 {
        raw.collection
            .r_push(pb::RPushRequest {
                key: b("chat:42"),
                values: vec![b(&format!("message {turn}"))],
                expiry: ttl(86_400_000),
                ..Default::default()
            })
            .await
            .expect("rpush");
        let kept = raw
            .collection
            .l_trim(pb::LTrimRequest {
                key: b("chat:42"),
                start: -100,
                stop: -1,
                ..Default::default()
            })
            .await
            .expect("ltrim")
            .into_inner();
        assert_eq!(kept.length, (turn + 1).min(100));
    }
    let chunks = lrange_chunks(&mut raw, "chat:42", 30).await;
    assert_eq!(
        chunks.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![30, 30, 30, 10]
    );
    let all: Vec<_> = chunks.concat();
    assert_eq!(all.first(), Some(&b("message 150")));
    assert_eq!(all.last(), Some(&b("message 249")));
}

#[tokio::test]
async fn large_collections_stream_in_bounded_messages() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    // 40 values of 256 KiB: 10 MiB in all, more than a default 4 MiB message.
    let value = Bytes::from(vec![b'v'; 256 * 1024]);
    for _ in 0..4 {
        raw.collection
            .r_push(pb::RPushRequest {
                key: b("big"),
                values: vec![value.clone(); 10],
                ..Default::default()
            })
            .await
            .expect("rpush");
    }
    let chunks = lrange_chunks(&mut raw, "big", 0).await;
    assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 40);
    assert!(
        chunks.iter().all(|chunk| chunk.len() <= 4),
        "chunks close at about 1 MiB"
    );

    let fields: Vec<_> = (0..2_500)
        .map(|i| pb::FieldValue {
            field: b(&format!("f{i}")),
            value: b("x"),
        })
        .collect();
    raw.collection
        .h_set(pb::HSetRequest {
            key: b("wide"),
            fields,
            ..Default::default()
        })
        .await
        .expect("hset");
    let mut stream = raw
        .collection
        .h_get_all(pb::HGetAllRequest {
            key: b("wide"),
            projection: pb::HashProjection::Fields.into(),
            ..Default::default()
        })
        .await
        .expect("hgetall")
        .into_inner();
    let mut sizes = Vec::new();
    let mut fields = Vec::new();
    while let Some(chunk) = stream.message().await.expect("chunk") {
        sizes.push(chunk.entries.len());
        assert!(
            chunk.entries.iter().all(|entry| entry.value.is_empty()),
            "fields only"
        );
        fields.extend(chunk.entries.into_iter().map(|entry| entry.field));
    }
    assert_eq!(sizes, vec![1000, 1000, 500]);
    fields.sort();
    fields.dedup();
    assert_eq!(fields.len(), 2_500);
}

#[tokio::test]
async fn key_level_rpcs_work_on_collections() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    raw.collection
        .s_add(pb::SAddRequest {
            key: b("tags"),
            members: vec![b("a"), b("b"), b("a")],
            expiry: ttl(60_000),
            ..Default::default()
        })
        .await
        .expect("sadd");
    raw.collection
        .h_set(pb::HSetRequest {
            key: b("position"),
            fields: vec![pb::FieldValue {
                field: b("BTCUSDT"),
                value: b("2.5"),
            }],
            ..Default::default()
        })
        .await
        .expect("hset");
    raw.cache.set(set_request("plain", "v")).await.expect("set");

    let described = raw
        .cache
        .describe(pb::DescribeRequest {
            keys: vec![b("tags"), b("position")],
            ..Default::default()
        })
        .await
        .expect("describe")
        .into_inner();
    let tags = described.keys[0].meta.expect("tags meta");
    assert_eq!(tags.r#type(), pb::KeyType::Set);
    assert_eq!(tags.size, 2);
    assert!(tags.ttl_ms.is_some());
    assert_eq!(
        described.keys[1].meta.expect("hash meta").r#type(),
        pb::KeyType::Hash
    );

    let (sets, _) = scan_all(
        &mut raw,
        pb::ScanRequest {
            r#type: pb::KeyType::Set.into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(sets, vec![b("tags")]);

    let persisted = raw
        .cache
        .update_ttl(pb::UpdateTtlRequest {
            key: b("tags"),
            expiry: Some(pb::Expiry {
                kind: Some(pb::expiry::Kind::Never(pb::NoExpiry {})),
            }),
            ..Default::default()
        })
        .await
        .expect("persist")
        .into_inner();
    assert!(persisted.existed);
    let count = raw
        .cache
        .count(pb::CountRequest::default())
        .await
        .expect("count")
        .into_inner();
    assert_eq!(count.keys, 3);
    let deleted = raw
        .cache
        .delete(pb::DeleteRequest {
            keys: vec![b("tags")],
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(deleted.deleted, 1);
    let stats = stats(&mut raw).await;
    let hset = stats
        .rpcs
        .iter()
        .find(|rpc| rpc.method == "/shoal.v1.CollectionService/HSet")
        .expect("HSet counted");
    assert_eq!(hset.calls, 1);
    let flushed = raw
        .admin
        .flush(pb::FlushRequest::default())
        .await
        .expect("flush")
        .into_inner();
    assert_eq!(flushed.removed, 2);
}

#[tokio::test]
async fn bad_collection_input_gets_its_documented_error_and_changes_nothing() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    raw.cache
        .set(set_request("s", "string"))
        .await
        .expect("set");
    raw.collection
        .r_push(pb::RPushRequest {
            key: b("l"),
            values: vec![b("a")],
            ..Default::default()
        })
        .await
        .expect("rpush");

    let status = assert_status(
        raw.collection
            .h_set(pb::HSetRequest {
                key: b("s"),
                fields: vec![pb::FieldValue {
                    field: b("f"),
                    value: b("v"),
                }],
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        &["WRONGTYPE"],
    );
    assert_eq!(
        status
            .get_error_details()
            .error_info()
            .expect("info")
            .reason,
        "WRONGTYPE"
    );
    assert_status(
        raw.cache.get(shoal_tests::get_request("l")).await,
        Code::FailedPrecondition,
        &["WRONGTYPE"],
    );
    assert_status(
        raw.collection
            .l_set(pb::LSetRequest {
                key: b("l"),
                index: 5,
                value: b("x"),
                ..Default::default()
            })
            .await,
        Code::OutOfRange,
        &["index out of range"],
    );
    assert_status(
        raw.collection
            .l_set(pb::LSetRequest {
                key: b("nope"),
                index: 0,
                value: b("x"),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &["no such key"],
    );
    assert_status(
        raw.collection
            .s_add(pb::SAddRequest {
                key: b("set"),
                members: vec![Bytes::from(vec![b'm'; 65_537])],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["member", "65537", "65536"],
    );
    assert_status(
        raw.collection
            .h_set(pb::HSetRequest {
                key: b("hash"),
                fields: vec![pb::FieldValue {
                    field: Bytes::from(vec![b'f'; 65_537]),
                    value: b("v"),
                }],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["field", "65536"],
    );
    // Reads refuse what no write could have stored, as Get refuses an
    // oversized key.
    assert_status(
        raw.collection
            .h_get(pb::HGetRequest {
                key: b("hash"),
                field: Bytes::from(vec![b'f'; 65_537]),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["field", "65536"],
    );
    assert_status(
        raw.collection
            .s_is_member(pb::SIsMemberRequest {
                key: b("set"),
                member: Bytes::from(vec![b'm'; 65_537]),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["member", "65536"],
    );
    assert_status(
        raw.collection
            .h_set(pb::HSetRequest {
                key: b("hash"),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["fields", "at least 1"],
    );
    assert_status(
        raw.collection
            .r_push(pb::RPushRequest {
                key: b("l"),
                values: vec![b("x"); 10_001],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["values", "10001", "10000"],
    );
    assert_status(
        raw.collection
            .l_pop(pb::LPopRequest {
                key: b("l"),
                count: Some(0),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["count", "between 1 and 10000"],
    );
    assert_status(
        raw.collection
            .s_rand_member(pb::SRandMemberRequest {
                key: b("set"),
                count: Some(-10_001),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["count"],
    );
    assert_status(
        raw.collection
            .l_range(pb::LRangeRequest {
                key: b("l"),
                stop: -1,
                chunk_size: 10_001,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["chunk_size", "10000"],
    );
    assert_status(
        raw.collection
            .h_get_all(pb::HGetAllRequest {
                key: b("hash"),
                projection: 7,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["projection", "unknown value 7"],
    );
    assert_status(
        raw.collection
            .s_inter(pb::SInterRequest {
                keys: vec![b("l")],
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        &["WRONGTYPE"],
    );

    let list = lrange_chunks(&mut raw, "l", 0).await.concat();
    assert_eq!(list, vec![b("a")], "the list is untouched");
    let count = raw
        .cache
        .count(pb::CountRequest::default())
        .await
        .expect("count")
        .into_inner();
    assert_eq!(count.keys, 2, "no key was created by a refused request");
}
