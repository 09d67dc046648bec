//! Tokens and rights end to end: authentication before any handler, one
//! check per namespace touched (per batch item, per pipeline command), the
//! token file read again on change, failures rate-limited per address, and
//! health and reflection open.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use shoal_proto::v1 as pb;
use shoal_server::Config;
use shoal_server::auth::{
    RATE_LIMITED_MESSAGE, UNAUTHENTICATED_MESSAGE, parse_grant, secret_digest, token_stanza,
};
use shoal_tests::{TestServer, b, raw};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const READER: &str = "shoal_reader-secret-for-tests-only-0001";
const WRITER: &str = "shoal_writer-secret-for-tests-only-0002";
const ADMIN: &str = "shoal_admin-secret-for-tests-only-0003";
const EXPIRED: &str = "shoal_expired-secret-for-tests-only-0004";
const UNKNOWN: &str = "shoal_unknown-secret-for-tests-only-0005";

/// A token file stanza for `secret`.
fn stanza(id: &str, secret: &str, grants: &[&str], expires: Option<&str>) -> String {
    let grants: Vec<_> = grants
        .iter()
        .map(|grant| parse_grant(grant).expect("grant"))
        .collect();
    token_stanza(id, &secret_digest(secret.as_bytes()), &grants, expires).expect("stanza")
}

/// The tokens most tests use: a reader of `catalog`, a writer of `orders*`
/// who may also read `catalog`, an admin of everything, and one expired.
fn standard_tokens() -> String {
    [
        stanza("reader", READER, &["catalog=read"], None),
        stanza("writer", WRITER, &["orders*=write", "catalog=read"], None),
        stanza("admin", ADMIN, &["*=admin"], None),
        stanza("old", EXPIRED, &["*=admin"], Some("2001-01-01T00:00:00Z")),
    ]
    .join("\n")
}

/// A server reading its tokens from a file in a directory of its own.
struct Secured {
    server: TestServer,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

async fn secured_with(tokens: &str, tune: impl FnOnce(&mut Config)) -> Secured {
    logs();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tokens.toml");
    std::fs::write(&path, tokens).expect("write token file");
    let mut config = Config::default();
    config.admin.listen = None;
    config.auth.token_file = Some(path.clone());
    // The tests make many failed calls on purpose; only the rate-limit
    // test keeps the limit low.
    config.auth.failure_burst = 10_000;
    tune(&mut config);
    Secured {
        server: TestServer::start_with(config).await,
        path,
        _dir: dir,
    }
}

async fn secured() -> Secured {
    secured_with(&standard_tokens(), |_| {}).await
}

/// `message` as a request carrying `token`.
fn with_token<T>(token: &str, message: T) -> tonic::Request<T> {
    with_header(&format!("Bearer {token}"), message)
}

/// `message` with `value` as its `authorization` header.
fn with_header<T>(value: &str, message: T) -> tonic::Request<T> {
    with_named_header("authorization", value, message)
}

/// `message` with `value` as its header `name`.
fn with_named_header<T>(name: &'static str, value: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(name, value.parse().expect("header value"));
    request
}

fn set(namespace: &str, key: &str, value: &str) -> pb::SetRequest {
    pb::SetRequest {
        namespace: namespace.into(),
        key: b(key),
        value: b(value),
        ..Default::default()
    }
}

fn get(namespace: &str, key: &str) -> pb::GetRequest {
    pb::GetRequest {
        namespace: namespace.into(),
        key: b(key),
        ..Default::default()
    }
}

async fn value_of(server: &TestServer, namespace: &str, key: &str) -> Option<Bytes> {
    let reply = raw(server)
        .await
        .cache
        .get(with_token(ADMIN, get(namespace, key)))
        .await
        .expect("admin get")
        .into_inner();
    reply.found.then_some(reply.value)
}

fn assert_denied<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    namespace: &str,
    role: &str,
) {
    let status = result.expect_err("must be denied");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains(&format!("{namespace:?}"))
            && status.message().contains(&format!("role {role}")),
        "{:?} should name namespace {namespace:?} and role {role}",
        status.message()
    );
}

fn assert_unauthenticated<T: std::fmt::Debug>(result: Result<T, tonic::Status>) {
    let status = result.expect_err("must be refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), UNAUTHENTICATED_MESSAGE);
}

#[tokio::test]
async fn bad_credentials_are_all_refused_alike_and_change_nothing() {
    let secured = secured().await;
    let mut raw = raw(&secured.server).await;
    raw.cache
        .set(with_token(WRITER, set("orders", "k", "before")))
        .await
        .expect("writer sets");

    assert_unauthenticated(raw.cache.set(set("orders", "k", "after")).await);
    for header in [
        "Basic dXNlcjpwYXNz".to_string(),
        "Bearer".to_string(),
        "Bearer    ".to_string(),
        format!("Bearer {WRITER} extra"),
        WRITER.to_string(),
        format!("Bearer {UNKNOWN}"),
        format!("Bearer {EXPIRED}"),
        format!("Bearer {WRITER}x"),
    ] {
        assert_unauthenticated(
            raw.cache
                .set(with_header(&header, set("orders", "k", "after")))
                .await,
        );
    }
    // The other header takes the token alone, and never both at once.
    for header in [
        format!("Bearer {WRITER}"),
        UNKNOWN.to_string(),
        EXPIRED.to_string(),
        format!("{WRITER} x"),
        String::new(),
    ] {
        assert_unauthenticated(
            raw.cache
                .set(with_named_header(
                    "shoal-token",
                    &header,
                    set("orders", "k", "after"),
                ))
                .await,
        );
    }
    let mut both = with_token(WRITER, set("orders", "k", "after"));
    both.metadata_mut()
        .insert("shoal-token", WRITER.parse().expect("header value"));
    assert_unauthenticated(raw.cache.set(both).await);
    assert_unauthenticated(raw.admin.flush(pb::FlushRequest::default()).await);
    let mut stream = raw
        .batch
        .set_batch(tokio_stream::iter([pb::SetBatchRequest {
            namespace: "orders".into(),
            items: vec![pb::SetBatchItem {
                key: b("k"),
                value: b("after"),
                ..Default::default()
            }],
        }]))
        .await;
    if let Ok(replies) = &mut stream {
        // A stream's refusal may arrive as its first message's status.
        assert_unauthenticated(replies.get_mut().next().await.expect("a status"));
    } else {
        assert_unauthenticated(stream);
    }
    assert_eq!(
        value_of(&secured.server, "orders", "k").await,
        Some(b("before"))
    );
    // Counted where operators look.
    let stats = raw
        .admin
        .stats(with_token(ADMIN, pb::StatsRequest::default()))
        .await
        .expect("stats")
        .into_inner();
    assert!(stats.auth_failures >= 17, "{}", stats.auth_failures);
}

#[tokio::test]
async fn a_token_is_accepted_in_either_header() {
    let secured = secured().await;
    let mut raw = raw(&secured.server).await;
    raw.cache
        .set(with_named_header(
            "shoal-token",
            WRITER,
            set("orders", "k", "bare"),
        ))
        .await
        .expect("shoal-token");
    assert_eq!(
        value_of(&secured.server, "orders", "k").await,
        Some(b("bare"))
    );
    for header in [
        shoal_client::TokenHeader::ShoalToken,
        shoal_client::TokenHeader::Authorization,
    ] {
        let builder = shoal_client::Client::builder()
            .endpoint(secured.server.endpoint())
            .namespace("orders")
            .token(WRITER)
            .token_header(header);
        let (name, _) = builder.credential_header().expect("header").expect("token");
        let client = builder.connect().await.expect("connect");
        // Many calls on one connection: the later ones find the token in
        // the connection's header table (shoal-token) or in full.
        for round in 0..20 {
            client
                .set("k", format!("{name}-{round}"))
                .await
                .unwrap_or_else(|error| panic!("{name}: {error}"));
        }
        assert_eq!(
            client.get("k").await.expect("get"),
            Some(b(&format!("{name}-19")))
        );
    }
}

#[tokio::test]
async fn a_read_token_cannot_write() {
    let secured = secured().await;
    let mut raw = raw(&secured.server).await;
    raw.cache
        .set(with_token(ADMIN, set("catalog", "item", "original")))
        .await
        .expect("admin sets");

    assert_denied(
        raw.cache
            .set(with_token(READER, set("catalog", "item", "changed")))
            .await,
        "catalog",
        "write",
    );
    assert_denied(
        raw.cache
            .delete(with_token(
                READER,
                pb::DeleteRequest {
                    namespace: "catalog".into(),
                    keys: vec![b("item")],
                },
            ))
            .await,
        "catalog",
        "write",
    );
    assert_denied(
        raw.collection
            .h_set(with_token(
                READER,
                pb::HSetRequest {
                    namespace: "catalog".into(),
                    key: b("hash"),
                    fields: vec![pb::FieldValue {
                        field: b("f"),
                        value: b("v"),
                    }],
                    ..Default::default()
                },
            ))
            .await,
        "catalog",
        "write",
    );
    let read = raw
        .cache
        .get(with_token(READER, get("catalog", "item")))
        .await
        .expect("reader reads")
        .into_inner();
    assert_eq!(read.value, b("original"));
    assert_denied(
        raw.cache.get(with_token(READER, get("orders", "x"))).await,
        "orders",
        "read",
    );
    // The empty name is the default namespace, which the reader may not read.
    assert_denied(
        raw.cache.get(with_token(READER, get("", "x"))).await,
        "default",
        "read",
    );
    assert_eq!(
        value_of(&secured.server, "catalog", "item").await,
        Some(b("original"))
    );
    assert!(
        value_of(&secured.server, "catalog", "hash").await.is_none(),
        "no hash was made"
    );
}

fn item_code<T>(result: &Option<T>, code: impl Fn(&T) -> Option<i32>) -> Option<Code> {
    result.as_ref().and_then(code).map(Code::from)
}

#[tokio::test]
async fn batches_are_checked_item_by_item() {
    let secured = secured().await;
    let mut raw = raw(&secured.server).await;
    raw.cache
        .set(with_token(ADMIN, set("catalog", "kept", "yes")))
        .await
        .expect("admin sets");

    // One SetBatch stream, chunks in three namespaces: only the writer's
    // own are applied; the others get a denial per item.
    let chunk = |namespace: &str, keys: &[&str]| pb::SetBatchRequest {
        namespace: namespace.into(),
        items: keys
            .iter()
            .map(|key| pb::SetBatchItem {
                key: b(key),
                value: b("v"),
                ..Default::default()
            })
            .collect(),
    };
    let chunks = [
        chunk("orders", &["a", "b"]),
        chunk("catalog", &["c"]),
        chunk("orders-eu", &["d"]),
        chunk("other", &["e", "f"]),
    ];
    let mut replies = raw
        .batch
        .set_batch(with_token(WRITER, tokio_stream::iter(chunks)))
        .await
        .expect("set batch")
        .into_inner();
    let mut results = Vec::new();
    while let Some(reply) = replies.next().await {
        results.extend(reply.expect("chunk reply").results);
    }
    let codes: Vec<(u64, Option<Code>)> = results
        .iter()
        .map(|result| {
            let code = item_code(&result.result, |result| match result {
                pb::set_batch_result::Result::Error(status) => Some(status.code),
                pb::set_batch_result::Result::Outcome(_) => None,
            });
            (result.index, code)
        })
        .collect();
    let denied = Some(Code::PermissionDenied);
    assert_eq!(
        codes,
        vec![
            (0, None),
            (1, None),
            (2, denied),
            (3, None),
            (4, denied),
            (5, denied)
        ]
    );
    if let Some(pb::set_batch_result::Result::Error(status)) = &results[2].result {
        assert!(status.message.contains("\"catalog\"") && status.message.contains("role write"));
    }
    assert_eq!(value_of(&secured.server, "orders", "a").await, Some(b("v")));
    assert_eq!(
        value_of(&secured.server, "orders-eu", "d").await,
        Some(b("v"))
    );
    assert_eq!(value_of(&secured.server, "catalog", "c").await, None);
    assert_eq!(value_of(&secured.server, "other", "e").await, None);

    // A GetBatch in a namespace the caller may not read: each item denied.
    let mut stream = raw
        .batch
        .get_batch(with_token(
            READER,
            pb::GetBatchRequest {
                namespace: "orders".into(),
                keys: vec![b("a"), b("b")],
                ..Default::default()
            },
        ))
        .await
        .expect("get batch")
        .into_inner();
    let mut items = Vec::new();
    while let Some(chunk) = stream.next().await {
        items.extend(chunk.expect("chunk").items);
    }
    assert_eq!(items.len(), 2);
    for item in &items {
        assert!(
            matches!(&item.result, Some(pb::get_batch_item::Result::Error(status)) if status.code == Code::PermissionDenied as i32),
            "{item:?}"
        );
    }

    // A DeleteBatch by a reader deletes nothing.
    let mut stream = raw
        .batch
        .delete_batch(with_token(
            READER,
            pb::DeleteBatchRequest {
                namespace: "catalog".into(),
                keys: vec![b("kept")],
                ..Default::default()
            },
        ))
        .await
        .expect("delete batch")
        .into_inner();
    let chunk = stream.next().await.expect("a chunk").expect("ok");
    assert!(matches!(
        &chunk.items[0].result,
        Some(pb::delete_batch_item::Result::Error(status)) if status.code == Code::PermissionDenied as i32
    ));
    assert_eq!(
        value_of(&secured.server, "catalog", "kept").await,
        Some(b("yes"))
    );
}

#[tokio::test]
async fn pipeline_commands_are_checked_one_by_one() {
    use pb::pipeline_request::Command;
    use pb::pipeline_response::Result as Reply;

    let secured = secured().await;
    let mut raw = raw(&secured.server).await;
    raw.cache
        .set(with_token(ADMIN, set("catalog", "item", "original")))
        .await
        .expect("admin sets");
    let commands = [
        Command::Set(set("orders", "p", "1")),
        Command::Set(set("catalog", "item", "changed")),
        Command::Get(get("catalog", "item")),
        Command::Count(pb::CountRequest {
            namespace: "other".into(),
        }),
        Command::SetBatch(pb::SetBatchRequest {
            namespace: "catalog".into(),
            items: vec![pb::SetBatchItem {
                key: b("item"),
                value: b("batched"),
                ..Default::default()
            }],
        }),
        Command::Increment(pb::IncrementRequest {
            namespace: "orders".into(),
            key: b("n"),
            delta: 2,
            ..Default::default()
        }),
    ];
    let requests = commands
        .into_iter()
        .enumerate()
        .map(|(id, command)| pb::PipelineRequest {
            id: id as u64,
            command: Some(command),
        });
    let mut replies = raw
        .batch
        .pipeline(with_token(WRITER, tokio_stream::iter(requests)))
        .await
        .expect("pipeline")
        .into_inner();
    let mut results = Vec::new();
    while let Some(reply) = replies.next().await {
        results.push(reply.expect("reply").result.expect("a result"));
    }
    assert_eq!(results.len(), 6);
    assert!(matches!(&results[0], Reply::Set(set) if set.stored));
    assert!(matches!(&results[1], Reply::Error(status)
        if status.code == Code::PermissionDenied as i32 && status.message.contains("\"catalog\"")));
    assert!(matches!(&results[2], Reply::Get(read) if read.value == b("original")));
    assert!(matches!(&results[3], Reply::Error(status)
        if status.code == Code::PermissionDenied as i32 && status.message.contains("role read")));
    assert!(matches!(&results[4], Reply::SetBatch(batch)
        if matches!(&batch.results[0].result, Some(pb::set_batch_result::Result::Error(status)) if status.code == Code::PermissionDenied as i32)));
    assert!(matches!(&results[5], Reply::Increment(increment) if increment.value == 2));
    assert_eq!(
        value_of(&secured.server, "catalog", "item").await,
        Some(b("original"))
    );
    assert_eq!(value_of(&secured.server, "orders", "p").await, Some(b("1")));
}

#[tokio::test]
async fn watch_scan_and_count_need_read_on_their_namespace() {
    let secured = secured().await;
    let mut raw = raw(&secured.server).await;
    for key in ["a", "b"] {
        raw.cache
            .set(with_token(ADMIN, set("orders", key, "v")))
            .await
            .expect("admin sets");
    }
    let watch = |namespace: &str| pb::WatchRequest {
        namespace: namespace.into(),
        ..Default::default()
    };
    assert_denied(
        raw.watch.watch(with_token(READER, watch("orders"))).await,
        "orders",
        "read",
    );
    let mut events = raw
        .watch
        .watch(with_token(WRITER, watch("orders")))
        .await
        .expect("writer watches its namespace")
        .into_inner();
    let subscribed = events.next().await.expect("an event").expect("ok");
    assert!(matches!(
        subscribed.event,
        Some(pb::watch_event::Event::Subscribed(_))
    ));
    raw.cache
        .set(with_token(WRITER, set("orders", "c", "v")))
        .await
        .expect("set");
    let event = events.next().await.expect("an event").expect("ok");
    assert!(
        matches!(event.event, Some(pb::watch_event::Event::Key(_))),
        "{event:?}"
    );

    let scan = |namespace: &str| pb::ScanRequest {
        namespace: namespace.into(),
        ..Default::default()
    };
    assert_denied(
        raw.cache.scan(with_token(READER, scan("orders"))).await,
        "orders",
        "read",
    );
    let mut pages = raw
        .cache
        .scan(with_token(WRITER, scan("orders")))
        .await
        .expect("scan")
        .into_inner();
    let mut keys = Vec::new();
    while let Some(page) = pages.next().await {
        keys.extend(page.expect("page").keys);
    }
    assert_eq!(keys.len(), 3);

    let count = |namespace: &str| pb::CountRequest {
        namespace: namespace.into(),
    };
    assert_denied(
        raw.cache.count(with_token(READER, count("orders"))).await,
        "orders",
        "read",
    );
    let counted = raw
        .cache
        .count(with_token(WRITER, count("orders")))
        .await
        .expect("count")
        .into_inner();
    assert_eq!(counted.keys, 3);
}

#[tokio::test]
async fn admin_operations_need_admin() {
    let secured = secured().await;
    let mut raw = raw(&secured.server).await;
    raw.cache
        .set(with_token(WRITER, set("orders", "k", "v")))
        .await
        .expect("set");
    let flush = || pb::FlushRequest {
        namespace: "orders".into(),
    };
    assert_denied(
        raw.admin.flush(with_token(WRITER, flush())).await,
        "orders",
        "admin",
    );
    assert_denied(
        raw.admin
            .drop_namespace(with_token(
                WRITER,
                pb::DropNamespaceRequest {
                    namespace: "orders".into(),
                },
            ))
            .await,
        "orders",
        "admin",
    );
    assert_eq!(value_of(&secured.server, "orders", "k").await, Some(b("v")));

    // Stats of every namespace are server-wide; of named ones, need read.
    let status = raw
        .admin
        .stats(with_token(WRITER, pb::StatsRequest::default()))
        .await
        .expect_err("server-wide stats");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("role admin"), "{status:?}");
    assert_denied(
        raw.admin
            .stats(with_token(
                READER,
                pb::StatsRequest {
                    namespaces: vec!["orders".into()],
                    local_only: false,
                },
            ))
            .await,
        "orders",
        "read",
    );
    let scoped = raw
        .admin
        .stats(with_token(
            WRITER,
            pb::StatsRequest {
                namespaces: vec!["orders".into()],
                local_only: false,
            },
        ))
        .await
        .expect("scoped stats")
        .into_inner();
    assert_eq!(scoped.namespaces.len(), 1);
    assert_eq!(scoped.total.expect("total").keys, 1);
    assert!(scoped.rpcs.is_empty(), "no server-wide figures");
    assert_eq!(scoped.permission_denials, 0, "no server-wide figures");

    let listed = raw
        .admin
        .list_namespaces(with_token(READER, pb::ListNamespacesRequest::default()))
        .await
        .expect("list")
        .into_inner();
    assert!(
        listed.namespaces.is_empty(),
        "the reader may read no namespace that exists: {:?}",
        listed.namespaces
    );

    let flushed = raw
        .admin
        .flush(with_token(ADMIN, flush()))
        .await
        .expect("admin flushes")
        .into_inner();
    assert_eq!(flushed.removed, 1);
    let full = raw
        .admin
        .stats(with_token(ADMIN, pb::StatsRequest::default()))
        .await
        .expect("admin stats")
        .into_inner();
    assert!(!full.rpcs.is_empty());
    assert!(full.permission_denials >= 4, "{}", full.permission_denials);
}

/// Waits until `secret` is accepted (or refused, for `accepted = false`):
/// polls, as the file is read again in the background.
async fn wait_for_token(server: &TestServer, secret: &str, accepted: bool) {
    let mut raw = raw(server).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let result = raw
            .cache
            .count(with_token(secret, pb::CountRequest::default()))
            .await;
        if result.is_ok() == accepted {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the token file was not read again"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn rewrite(path: &Path, text: &str) {
    // Written beside and renamed, as deploy tools do, so that the server
    // never reads half a file.
    let staged = path.with_extension("new");
    std::fs::write(&staged, text).expect("write");
    std::fs::rename(&staged, path).expect("rename");
}

#[tokio::test]
async fn the_token_file_is_read_again_when_it_changes() {
    let first = "shoal_first-secret-for-reload-test-0001";
    let second = "shoal_second-secret-for-reload-test-0002";
    let secured = secured_with(&stanza("first", first, &["*=read"], None), |config| {
        config.auth.reload_interval_ms = 10;
    })
    .await;
    wait_for_token(&secured.server, first, true).await;
    // A connection that verified `first` before the change remembers it.
    let mut kept = raw(&secured.server).await;
    let count = || with_token(first, pb::CountRequest::default());
    kept.cache.count(count()).await.expect("first accepted");

    rewrite(&secured.path, &stanza("second", second, &["*=read"], None));
    wait_for_token(&secured.server, second, true).await;
    wait_for_token(&secured.server, first, false).await;
    // The removed token stops working on that connection too.
    assert_unauthenticated(kept.cache.count(count()).await);

    // A file that does not parse leaves the tokens in force.
    rewrite(
        &secured.path,
        "[[token]]\nid = \"broken\"\nsha256 = \"nope\"\n",
    );
    let third = "shoal_third-secret-for-reload-test-0003";
    rewrite(
        &secured.path,
        &[
            stanza("second", second, &["*=read"], None),
            stanza("third", third, &["*=read"], None),
        ]
        .join("\n"),
    );
    wait_for_token(&secured.server, third, true).await;
    wait_for_token(&secured.server, second, true).await;
}

#[tokio::test]
async fn repeated_failures_from_one_address_are_refused_unchecked() {
    let secured = secured_with(&standard_tokens(), |config| {
        config.auth.failure_burst = 3;
        config.auth.failure_refill_per_minute = 0;
    })
    .await;
    let mut raw = raw(&secured.server).await;
    raw.cache
        .get(with_token(READER, get("catalog", "x")))
        .await
        .expect("good calls do not count");
    for _ in 0..3 {
        assert_unauthenticated(
            raw.cache
                .get(with_token(UNKNOWN, get("catalog", "x")))
                .await,
        );
    }
    for token in [UNKNOWN, READER] {
        let status = raw
            .cache
            .get(with_token(token, get("catalog", "x")))
            .await
            .expect_err("held off");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(status.message(), RATE_LIMITED_MESSAGE);
    }
    // Probes still work.
    let health = HealthClient::new(channel(&secured.server).await)
        .check(HealthCheckRequest::default())
        .await;
    assert!(health.is_ok());
}

async fn channel(server: &TestServer) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(server.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

#[tokio::test]
async fn health_and_reflection_need_no_token() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let secured = secured().await;
    let health = HealthClient::new(channel(&secured.server).await)
        .check(HealthCheckRequest::default())
        .await
        .expect("health without a token")
        .into_inner();
    assert_eq!(health.status, 1);
    let mut reflection = ServerReflectionClient::new(channel(&secured.server).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let response = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection without a token")
        .into_inner()
        .next()
        .await
        .expect("a response")
        .expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("not a service list: {response:?}");
    };
    assert!(
        list.service
            .iter()
            .any(|service| service.name == "shoal.v1.CacheService")
    );
}

#[tokio::test]
async fn the_client_sends_its_token_on_every_call_and_stream() {
    let secured = secured().await;
    let client = shoal_client::Client::builder()
        .endpoint(secured.server.endpoint())
        .namespace("orders")
        .token(WRITER)
        .connect()
        .await
        .expect("connect");
    client.set("k", "v").await.expect("unary");
    let results = client
        .set_many([("a", "1"), ("b", "2")])
        .await
        .expect("set batch stream");
    assert!(results.iter().all(Result::is_ok));
    let values = client
        .get_many(["a", "b", "k"])
        .await
        .expect("pipeline stream");
    assert_eq!(values.len(), 3);
    assert!(values.iter().all(|value| matches!(value, Ok(Some(_)))));
    let mut watch = client
        .watch(shoal_client::WatchOptions::default())
        .await
        .expect("watch stream");
    client.set("w", "v").await.expect("set");
    assert!(watch.next().await.is_some());

    let denied = client.with_namespace("catalog").set("k", "v").await;
    assert_eq!(
        denied.expect_err("reader of catalog").code(),
        Code::PermissionDenied
    );
    let anonymous = shoal_client::Client::builder()
        .endpoint(secured.server.endpoint())
        .connect()
        .await
        .expect("connect");
    assert_eq!(
        anonymous.get("k").await.expect_err("no token").code(),
        Code::Unauthenticated
    );

    // The refusals are in the client's Stats, for an admin.
    let admin = shoal_client::Client::builder()
        .endpoint(secured.server.endpoint())
        .token(ADMIN)
        .connect()
        .await
        .expect("connect");
    let stats = admin.stats().await.expect("stats");
    assert!(stats.auth_failures >= 1, "{stats:?}");
    assert!(stats.permission_denials >= 1, "{stats:?}");
    assert!(stats.connections_open >= 1, "{stats:?}");
    assert!(stats.max_inflight_request_bytes > 0, "{stats:?}");
}

/// Log output gathered in memory.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything every server and client of this file logs, at every level:
/// installed for the whole process before the first server starts, so that
/// no call of any test escapes it.
fn logs() -> &'static Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        logs
    })
}

/// No secret appears in the logs of server or client, whether calls
/// succeed or fail, nor in what their `Debug` output prints.
#[tokio::test]
async fn secrets_are_never_logged_nor_printed() {
    let secured = secured().await;
    let builder = shoal_client::Client::builder()
        .endpoint(secured.server.endpoint())
        .namespace("orders")
        .token(WRITER);
    let client = builder.clone().connect().await.expect("connect");
    client.set("k", "v").await.expect("set");
    assert!(client.get("k").await.expect("get").is_some());
    let stranger = shoal_client::Client::builder()
        .endpoint(secured.server.endpoint())
        .token(UNKNOWN)
        .connect()
        .await
        .expect("connect");
    assert_eq!(
        stranger.get("k").await.expect_err("unknown").code(),
        Code::Unauthenticated
    );
    let mut raw = raw(&secured.server).await;
    assert_unauthenticated(
        raw.cache
            .get(with_header(
                &format!("Bearer {EXPIRED}"),
                get("orders", "k"),
            ))
            .await,
    );
    let printed = format!("{builder:?} {client:?} {stranger:?}");

    let text = String::from_utf8_lossy(&logs().0.lock()).into_owned();
    assert!(
        text.contains("call not authenticated"),
        "the server logged the refusals"
    );
    assert!(
        text.contains("shoal.v1.CacheService/Get"),
        "the calls were traced"
    );
    for secret in [READER, WRITER, ADMIN, UNKNOWN, EXPIRED] {
        assert!(!text.contains(secret), "a secret was logged");
        assert!(!printed.contains(secret), "a secret was printed: {printed}");
    }
}
