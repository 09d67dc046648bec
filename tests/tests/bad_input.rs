//! Every kind of bad input gets INVALID_ARGUMENT (or FAILED_PRECONDITION)
//! naming the field and the limit, and changes nothing that is stored.

use bytes::Bytes;
use shoal_proto::v1 as pb;
use shoal_server::Config;
use shoal_tests::{Raw, TestServer, assert_status, b, get_request, raw, set_request, stats, ttl};
use tonic::Code;

/// What the server holds, to compare before and after bad requests.
async fn snapshot(raw: &mut Raw) -> (pb::GetResponse, u64, u64) {
    let got = raw
        .cache
        .get(get_request("k"))
        .await
        .expect("get")
        .into_inner();
    let stats = stats(raw).await;
    let total = stats.total.expect("total");
    (got, total.keys, total.sets)
}

#[tokio::test]
async fn bad_keys_values_and_ttls_are_refused_without_effect() {
    let mut config = Config::default();
    config.engine.max_value_bytes = 1024;
    let server = TestServer::start_with(config).await;
    let mut raw = raw(&server).await;
    raw.cache
        .set(set_request("k", "original"))
        .await
        .expect("set");
    raw.cache
        .set(set_request("text", "abc"))
        .await
        .expect("set");
    raw.cache
        .set(set_request("max", &i64::MAX.to_string()))
        .await
        .expect("set");
    let before = snapshot(&mut raw).await;

    let long_key = Bytes::from(vec![b'k'; 64 * 1024 + 1]);
    let cases: Vec<(pb::SetRequest, &[&str])> = vec![
        (set_request("", "v"), &["key", "empty"]),
        (
            pb::SetRequest {
                key: long_key.clone(),
                ..set_request("", "v")
            },
            &["key", "65537", "65536"],
        ),
        (
            pb::SetRequest {
                value: Bytes::from(vec![0; 1025]),
                ..set_request("k", "")
            },
            &["value", "1025", "1024"],
        ),
        (
            pb::SetRequest {
                expiry: ttl(-5),
                ..set_request("k", "changed")
            },
            &["expiry.ttl_ms", "-5"],
        ),
        (
            pb::SetRequest {
                expiry: ttl(0),
                ..set_request("k", "changed")
            },
            &["expiry.ttl_ms", "between 1 and"],
        ),
        (
            pb::SetRequest {
                expiry: ttl(i64::MAX),
                ..set_request("k", "changed")
            },
            &["expiry.ttl_ms", "100 years"],
        ),
        (
            pb::SetRequest {
                expiry: Some(pb::Expiry {
                    kind: Some(pb::expiry::Kind::AtUnixMs(-1)),
                }),
                ..set_request("k", "changed")
            },
            &["expiry.at_unix_ms"],
        ),
        (
            pb::SetRequest {
                namespace: "no spaces allowed".into(),
                ..set_request("k", "changed")
            },
            &["namespace"],
        ),
        (
            pb::SetRequest {
                namespace: "n".repeat(129),
                ..set_request("k", "changed")
            },
            &["namespace", "128"],
        ),
    ];
    for (request, expected) in cases {
        assert_status(
            raw.cache.set(request).await,
            Code::InvalidArgument,
            expected,
        );
    }

    assert_status(
        raw.cache.get(get_request("")).await,
        Code::InvalidArgument,
        &["key"],
    );
    assert_status(
        raw.cache
            .get(pb::GetRequest {
                key: long_key.clone(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["key", "65536"],
    );
    assert_status(
        raw.cache
            .delete(pb::DeleteRequest {
                keys: vec![b("k"), Bytes::new()],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["keys[1]", "empty"],
    );
    assert_status(
        raw.cache
            .delete(pb::DeleteRequest {
                keys: vec![b("k"); 10_001],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["keys", "10001", "10000"],
    );
    assert_status(
        raw.cache
            .describe(pb::DescribeRequest {
                keys: vec![long_key],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["keys[0]", "65536"],
    );
    assert_status(
        raw.cache
            .update_ttl(pb::UpdateTtlRequest {
                key: b("k"),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["expiry", "required"],
    );
    assert_status(
        raw.cache
            .update_ttl(pb::UpdateTtlRequest {
                key: b("k"),
                expiry: ttl(-1),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["expiry.ttl_ms"],
    );
    assert_status(
        raw.cache
            .update_ttl(pb::UpdateTtlRequest {
                key: b("k"),
                expiry: Some(pb::Expiry {
                    kind: Some(pb::expiry::Kind::Keep(pb::KeepExpiry {})),
                }),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["expiry"],
    );
    assert_status(
        raw.cache
            .increment(pb::IncrementRequest {
                key: b("text"),
                delta: 1,
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        &["not a 64-bit integer"],
    );
    assert_status(
        raw.cache
            .increment(pb::IncrementRequest {
                key: b("max"),
                delta: 1,
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        &["overflow"],
    );
    assert_status(
        raw.cache
            .increment(pb::IncrementRequest {
                key: b("new-counter"),
                delta: 1,
                expiry: ttl(-1),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["expiry.ttl_ms"],
    );

    let after = snapshot(&mut raw).await;
    assert_eq!(before, after, "bad requests changed stored data");
    let text = raw
        .cache
        .get(get_request("text"))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(text.value, b("abc"));
    let max = raw
        .cache
        .get(get_request("max"))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(max.value, b(&i64::MAX.to_string()));
}

#[tokio::test]
async fn bad_scans_are_refused() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    raw.cache.set(set_request("k", "v")).await.expect("set");
    let cases: Vec<(pb::ScanRequest, &[&str])> = vec![
        (
            pb::ScanRequest {
                pattern: "user:[abc".into(),
                ..Default::default()
            },
            &["pattern", "not closed"],
        ),
        (
            pb::ScanRequest {
                pattern: "trailing\\".into(),
                ..Default::default()
            },
            &["pattern"],
        ),
        (
            pb::ScanRequest {
                pattern: "*".repeat(1025),
                ..Default::default()
            },
            &["pattern", "1024"],
        ),
        (
            pb::ScanRequest {
                r#type: 99,
                ..Default::default()
            },
            &["type", "unknown value 99"],
        ),
        (
            pb::ScanRequest {
                page_size: 10_001,
                ..Default::default()
            },
            &["page_size", "10000"],
        ),
        (
            pb::ScanRequest {
                cursor: b("not a cursor at all, honestly"),
                ..Default::default()
            },
            &["cursor"],
        ),
    ];
    for (request, expected) in cases {
        assert_status(
            raw.cache.scan(request).await,
            Code::InvalidArgument,
            expected,
        );
    }
    let count = raw
        .cache
        .count(pb::CountRequest::default())
        .await
        .expect("count")
        .into_inner();
    assert_eq!(count.keys, 1);
}

#[tokio::test]
async fn the_default_value_limit_matches_the_grpc_message_limit() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    let limit = 16 * 1024 * 1024;
    let fits = pb::SetRequest {
        value: Bytes::from(vec![7; limit]),
        ..set_request("big", "")
    };
    assert!(
        raw.cache
            .set(fits)
            .await
            .expect("a 16 MiB value fits")
            .into_inner()
            .stored
    );
    let got = raw
        .cache
        .get(get_request("big"))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.value.len(), limit);

    let over = pb::SetRequest {
        value: Bytes::from(vec![7; limit + 1]),
        ..set_request("big", "")
    };
    assert_status(
        raw.cache.set(over).await,
        Code::InvalidArgument,
        &["value", "16777217", "16777216"],
    );
    let got = raw
        .cache
        .get(get_request("big"))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.value.len(), limit, "the stored value is untouched");
}
