//! Random input through the real service stack: gRPC messages of random
//! bytes behind random (and hostile) length prefixes, sent over raw HTTP/2
//! to every kind of method, and random sequences of well-formed calls with
//! random, often invalid, arguments. Limits apply as in production.
//!
//! Each property holds for every case: the server answers every call with
//! a status, never INTERNAL or UNKNOWN, keeps serving, and a call it
//! refuses changes nothing that is stored.
//!
//! Bounded for `cargo test` (64 cases each); `SHOAL_FUZZ_CASES=N` runs N.

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use shoal_proto::v1 as pb;
use shoal_server::Config;
use shoal_tests::{Raw, TestServer, get_request, raw, set_request};
use tokio::net::TcpStream;
use tonic::Code;

/// Longest one call may take before the case fails: a guard against hangs.
const PATIENCE: Duration = Duration::from_secs(20);

fn cases() -> u32 {
    std::env::var("SHOAL_FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(64)
}

/// Methods of every shape: unary reads and writes, collections, streamed
/// replies, client streams, the admin service and a path that is none.
const PATHS: &[&str] = &[
    "/shoal.v1.CacheService/Get",
    "/shoal.v1.CacheService/Set",
    "/shoal.v1.CacheService/Delete",
    "/shoal.v1.CacheService/Increment",
    "/shoal.v1.CacheService/Scan",
    "/shoal.v1.CollectionService/HSet",
    "/shoal.v1.CollectionService/HGetAll",
    "/shoal.v1.CollectionService/LPush",
    "/shoal.v1.BatchService/GetBatch",
    "/shoal.v1.BatchService/SetBatch",
    "/shoal.v1.BatchService/Pipeline",
    "/shoal.v1.AdminService/Stats",
    "/shoal.v1.Nothing/Here",
];

/// What a call ended with, read off its response.
async fn grpc_code(response: h2::client::ResponseFuture) -> Result<Code, String> {
    let response = response
        .await
        .map_err(|error| format!("response: {error}"))?;
    if let Some(code) = header_code(response.headers()) {
        return Ok(code);
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.map_err(|error| format!("body: {error}"))?;
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body
        .trailers()
        .await
        .map_err(|error| format!("trailers: {error}"))?
        .ok_or("no trailers")?;
    header_code(&trailers).ok_or_else(|| "no grpc-status".to_string())
}

fn header_code(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(Code::from(value.parse::<i32>().ok()?))
}

/// A gRPC message prefix: `flag` (0, or 1 for compressed) and `length`.
fn prefix(flag: u8, length: u32) -> Vec<u8> {
    let mut bytes = vec![flag];
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes
}

/// One hostile request body: a prefix whose length may be the payload's,
/// shorter, longer, huge or zero, with the compressed flag sometimes set,
/// and payloads of random bytes, in one or several messages.
fn hostile_body() -> impl Strategy<Value = Vec<u8>> {
    let message = (
        prop_oneof![Just(0u8), Just(0u8), Just(0u8), Just(1u8), any::<u8>()],
        proptest::collection::vec(any::<u8>(), 0..200),
        prop_oneof![
            Just(None),
            Just(None),
            Just(Some(0u32)),
            Just(Some(u32::MAX)),
            (0u32..400).prop_map(Some),
            (16_000_000u32..20_000_000).prop_map(Some),
        ],
    )
        .prop_map(|(flag, payload, declared)| {
            let length = declared.unwrap_or(payload.len() as u32);
            let mut bytes = prefix(flag, length);
            bytes.extend_from_slice(&payload);
            bytes
        });
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..16),
        proptest::collection::vec(message, 1..4).prop_map(|messages| messages.concat()),
    ]
}

/// The stored state a refused call must leave as it was.
async fn stored(client: &mut Raw) -> (u64, Option<Bytes>) {
    let stats = client
        .admin
        .stats(pb::StatsRequest::default())
        .await
        .expect("Stats")
        .into_inner();
    let sentinel = client
        .cache
        .get(get_request("sentinel"))
        .await
        .expect("Get")
        .into_inner();
    (
        stats.total.map_or(0, |total| total.keys),
        sentinel.found.then_some(sentinel.value),
    )
}

fn fail(message: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(message.into())
}

/// A runtime, a server on it holding the sentinel key, a client, and a
/// runner of [`cases`] cases.
fn start() -> (tokio::runtime::Runtime, TestServer, Raw, TestRunner) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let server = runtime.block_on(TestServer::start_with(Config::default()));
    let client = runtime.block_on(raw(&server));
    runtime
        .block_on(client.cache.clone().set(set_request("sentinel", "kept")))
        .expect("Set");
    let runner = TestRunner::new(RunnerConfig {
        cases: cases(),
        ..RunnerConfig::default()
    });
    (runtime, server, client, runner)
}

#[test]
fn raw_messages_of_random_bytes_are_answered_and_never_internal() {
    let (runtime, server, client, mut runner) = start();
    let case = (proptest::collection::vec(
        (prop::sample::select(PATHS), hostile_body(), any::<bool>()),
        1..6,
    ),);
    runner
        .run(&case, |(calls,)| {
            let mut client = client.clone();
            runtime.block_on(async {
                let before = stored(&mut client).await;
                let tcp = TcpStream::connect(server.addr())
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let (send, connection) = h2::client::handshake(tcp)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let driver = tokio::spawn(async move {
                    let _ = connection.await;
                });
                let mut refused_all = true;
                for (path, body, end) in &calls {
                    let request = http::Request::builder()
                        .method("POST")
                        .uri(format!("http://localhost{path}"))
                        .header("content-type", "application/grpc")
                        .header("te", "trailers")
                        .body(())
                        .expect("request");
                    let mut send = send
                        .clone()
                        .ready()
                        .await
                        .map_err(|e| fail(e.to_string()))?;
                    let (response, mut stream) = send
                        .send_request(request, false)
                        .map_err(|e| fail(e.to_string()))?;
                    // A body that does not end is cut off by the client
                    // after a moment, as a client that gives up would.
                    let _ = stream.send_data(Bytes::from(body.clone()), *end);
                    let answered = tokio::time::timeout(
                        if *end {
                            PATIENCE
                        } else {
                            Duration::from_millis(200)
                        },
                        grpc_code(response),
                    )
                    .await;
                    let code = match answered {
                        Ok(Ok(code)) => code,
                        // A client-streaming call still waiting for the
                        // rest of its body: cancelled by this client.
                        Err(_) if !end => {
                            stream.send_reset(h2::Reason::CANCEL);
                            continue;
                        }
                        Err(_) => return Err(fail(format!("{path}: no answer in time"))),
                        // The server may reset a stream it cannot parse.
                        Ok(Err(error)) => {
                            if error.contains("stream no longer needed") {
                                continue;
                            }
                            return Err(fail(format!("{path}: {error}")));
                        }
                    };
                    // The one INTERNAL the gRPC spec requires: a message
                    // flagged compressed on a call with no grpc-encoding.
                    let compressed_flag = any_message_flagged_compressed(body);
                    prop_assert!(
                        code != Code::Unknown && (code != Code::Internal || compressed_flag),
                        "{} answered {:?} to {:?}",
                        path,
                        code,
                        body
                    );
                    refused_all &= code != Code::Ok;
                }
                driver.abort();
                let after = stored(&mut client).await;
                if refused_all {
                    prop_assert_eq!(&before, &after, "a refused call changed what is stored");
                }
                prop_assert_eq!(
                    after.1,
                    Some(Bytes::from_static(b"kept")),
                    "the sentinel is never touched by these keys"
                );
                Ok(())
            })
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}

/// Whether any length-prefixed message of a gRPC body, in order, carries
/// the compressed flag (a later one counts as much as the first).
fn any_message_flagged_compressed(body: &[u8]) -> bool {
    let mut rest = body;
    while rest.len() >= 5 {
        if rest[0] == 1 {
            return true;
        }
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        rest = rest.get(5 + len..).unwrap_or_default();
    }
    false
}

/// One call with random, often invalid, arguments.
#[derive(Debug, Clone)]
enum Call {
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
        ttl_ms: i64,
    },
    Get {
        key: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    Increment {
        key: Vec<u8>,
        by: i64,
    },
    HSet {
        key: Vec<u8>,
        field: Vec<u8>,
    },
    LPush {
        key: Vec<u8>,
        count: usize,
    },
    Scan {
        pattern: String,
        page_size: u32,
    },
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        proptest::collection::vec(prop::sample::select(b"abc:".to_vec()), 1..4),
        proptest::collection::vec(any::<u8>(), 1..8),
        Just(vec![b'k'; 70_000]),
    ]
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        (
            key(),
            proptest::collection::vec(any::<u8>(), 0..64),
            // No TTL, an invalid one, or one far longer than a case, so
            // that nothing expires between two looks at what is stored.
            prop_oneof![Just(0i64), -5i64..=0, 600_000i64..700_000, Just(i64::MAX)]
        )
            .prop_map(|(key, value, ttl_ms)| Call::Set { key, value, ttl_ms }),
        key().prop_map(|key| Call::Get { key }),
        key().prop_map(|key| Call::Delete { key }),
        (key(), prop_oneof![Just(i64::MAX), Just(i64::MIN), -3i64..3])
            .prop_map(|(key, by)| Call::Increment { key, by }),
        (key(), key()).prop_map(|(key, field)| Call::HSet { key, field }),
        (key(), 0usize..3).prop_map(|(key, count)| Call::LPush { key, count }),
        (
            "[a-c:*?\\[\\]^\\\\]{0,6}",
            prop_oneof![Just(0u32), Just(1u32), Just(20_000u32)]
        )
            .prop_map(|(pattern, page_size)| Call::Scan { pattern, page_size }),
    ]
}

/// Runs `call`; its status code (OK for success).
async fn run(client: &mut Raw, call: &Call) -> Code {
    let code =
        |result: Result<(), tonic::Status>| result.err().map_or(Code::Ok, |status| status.code());
    match call.clone() {
        Call::Set { key, value, ttl_ms } => code(
            client
                .cache
                .set(pb::SetRequest {
                    key: key.into(),
                    value: value.into(),
                    expiry: (ttl_ms != 0).then_some(pb::Expiry {
                        kind: Some(pb::expiry::Kind::TtlMs(ttl_ms)),
                    }),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        Call::Get { key } => code(
            client
                .cache
                .get(pb::GetRequest {
                    key: key.into(),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        Call::Delete { key } => code(
            client
                .cache
                .delete(pb::DeleteRequest {
                    keys: vec![key.into()],
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        Call::Increment { key, by } => code(
            client
                .cache
                .increment(pb::IncrementRequest {
                    key: key.into(),
                    delta: by,
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        Call::HSet { key, field } => code(
            client
                .collection
                .h_set(pb::HSetRequest {
                    key: key.into(),
                    fields: vec![pb::FieldValue {
                        field: field.into(),
                        value: Bytes::from_static(b"v"),
                    }],
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        Call::LPush { key, count } => code(
            client
                .collection
                .l_push(pb::LPushRequest {
                    key: key.into(),
                    values: vec![Bytes::from_static(b"v"); count],
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        Call::Scan { pattern, page_size } => {
            let scanned = async {
                let mut pages = client
                    .cache
                    .scan(pb::ScanRequest {
                        pattern,
                        page_size,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                while pages.message().await?.is_some() {}
                Ok(())
            };
            code(scanned.await)
        }
    }
}

#[test]
fn random_calls_are_refused_cleanly_and_refusals_change_nothing() {
    let (runtime, _server, client, mut runner) = start();
    runner
        .run(&proptest::collection::vec(call(), 1..12), |calls| {
            let mut client = client.clone();
            runtime.block_on(async {
                for call in &calls {
                    let before = stored(&mut client).await;
                    let code = tokio::time::timeout(PATIENCE, run(&mut client, call))
                        .await
                        .map_err(|_| fail(format!("{call:?}: no answer in time")))?;
                    prop_assert!(
                        !matches!(code, Code::Internal | Code::Unknown | Code::Unavailable),
                        "{:?} answered {:?}",
                        call,
                        code
                    );
                    if code != Code::Ok {
                        prop_assert_eq!(
                            &before,
                            &stored(&mut client).await,
                            "{:?} was refused ({:?}) but changed what is stored",
                            call,
                            code
                        );
                    }
                }
                Ok(())
            })
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}
