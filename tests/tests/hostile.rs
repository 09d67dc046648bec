//! Clients that try to make the server hold what it should not: unfinished
//! request bodies, silent and idle connections, too many connections,
//! garbage messages, stalled readers of streamed replies, and sessions
//! that would hold a shutdown. Each is driven over raw HTTP/2, as such a
//! client would, against the real server on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use h2::client::SendRequest;
use shoal_proto::v1 as pb;
use shoal_server::Config;
use shoal_tests::{TestServer, get_request, http_get, raw, set_request, stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

/// Longest any step here may take before the test gives up on it: a guard
/// against hangs, far above what any step needs.
const PATIENCE: Duration = Duration::from_secs(30);

/// A raw HTTP/2 connection that speaks gRPC frames by hand.
struct Http2 {
    send: SendRequest<Bytes>,
    driver: tokio::task::JoinHandle<()>,
}

impl Http2 {
    async fn connect(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (send, connection) = h2::client::handshake(tcp).await.expect("handshake");
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Self { send, driver }
    }

    /// A connection that lets the server send only `window` bytes on each
    /// stream until the test reads them, as a client that stopped reading.
    async fn connect_stalled(addr: SocketAddr, window: u32) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(window)
            .handshake(tcp)
            .await
            .expect("handshake");
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Self { send, driver }
    }

    /// Opens a call of `path` and sends `body`, ending the request stream
    /// when `end` is set.
    async fn call(
        &mut self,
        path: &str,
        body: Vec<u8>,
        end: bool,
    ) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
        self.call_within(path, body, end, None).await
    }

    /// As [`Http2::call`], with a `grpc-timeout` when `timeout` is set.
    async fn call_within(
        &mut self,
        path: &str,
        body: Vec<u8>,
        end: bool,
        timeout: Option<&str>,
    ) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
        let mut request = http::Request::builder()
            .method("POST")
            .uri(format!("http://localhost{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(timeout) = timeout {
            request = request.header("grpc-timeout", timeout);
        }
        let request = request.body(()).expect("request");
        let mut send = self.send.clone().ready().await.expect("ready");
        let (response, mut stream) = send.send_request(request, false).expect("send request");
        stream.send_data(Bytes::from(body), end).expect("send data");
        (response, stream)
    }
}

impl Drop for Http2 {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A gRPC message prefix announcing `length` bytes.
fn prefix(length: u32) -> Vec<u8> {
    let mut bytes = vec![0];
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes
}

/// A whole gRPC message of `payload`.
fn message(payload: &[u8]) -> Vec<u8> {
    let mut bytes = prefix(payload.len() as u32);
    bytes.extend_from_slice(payload);
    bytes
}

/// The status a call ended with: from a trailers-only reply's headers, or
/// from the trailers after reading the whole reply.
async fn status_of(response: h2::client::ResponseFuture) -> (Code, String) {
    let response = response.await.expect("response");
    let read = |headers: &http::HeaderMap| {
        let code = headers
            .get("grpc-status")?
            .to_str()
            .ok()?
            .parse::<i32>()
            .ok()?;
        let message = headers
            .get("grpc-message")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Some((Code::from(code), message))
    };
    if let Some(status) = read(response.headers()) {
        return status;
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("reply data");
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.expect("trailers").expect("a status");
    read(&trailers).expect("grpc-status in the trailers")
}

/// The value of one sample of `/metrics`, 0 when absent.
async fn metric(server: &TestServer, sample: &str) -> f64 {
    let admin = server.admin_addr().expect("admin listener");
    let (_, text) = http_get(admin, "/metrics").await;
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The code a stream of messages ends with (OK for a clean end), skipping
/// its messages; fails the test after [`PATIENCE`].
async fn end_of<T>(stream: &mut tonic::Streaming<T>, what: &str) -> Code {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return status.code(),
                None => return Code::Ok,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never: {what}"))
}

/// Polls `condition` until it holds, failing the test after [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut pause = Duration::from_millis(10);
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// A configuration with values up to 1 MB and in-flight budgets of four
/// and six such messages.
fn small_budgets() -> Config {
    let mut config = Config::default();
    config.engine.max_value_bytes = 1_000_000;
    config.grpc.max_inflight_bytes_per_connection = Some(4_000_000);
    config.grpc.max_inflight_bytes = Some(6_000_000);
    config
}

#[tokio::test]
async fn unfinished_request_bodies_are_bounded_per_connection_and_per_server() {
    let server = TestServer::start_with(small_budgets()).await;
    let mut client = raw(&server).await;
    let announced = 1_000_000;

    // One connection opens ten Sets that announce 1 MB and send 1 KB.
    let mut first = Http2::connect(server.addr()).await;
    let mut open_streams = Vec::new();
    let mut statuses = FuturesUnordered::new();
    for _ in 0..10 {
        let mut body = prefix(announced);
        body.extend(vec![0; 1024]);
        let (response, stream) = first.call("/shoal.v1.CacheService/Set", body, false).await;
        statuses.push(status_of(response));
        open_streams.push(stream);
    }
    // Four fit in the connection's 4 MB; the other six are refused at once.
    for _ in 0..6 {
        let (code, message) = tokio::time::timeout(PATIENCE, statuses.next())
            .await
            .expect("six calls refused")
            .expect("a status");
        assert_eq!(code, Code::ResourceExhausted, "{message}");
        assert!(
            message.contains("grpc.max_inflight_bytes_per_connection"),
            "{message}"
        );
    }
    let held = stats(&mut client).await;
    assert_eq!(held.inflight_request_bytes, 4 * u64::from(announced));
    assert_eq!(held.max_inflight_request_bytes, 6_000_000);

    // A second connection gets the two the server's 6 MB have left.
    let mut second = Http2::connect(server.addr()).await;
    let mut second_statuses = FuturesUnordered::new();
    for _ in 0..3 {
        let (response, stream) = second
            .call("/shoal.v1.CacheService/Set", prefix(announced), false)
            .await;
        second_statuses.push(status_of(response));
        open_streams.push(stream);
    }
    let (code, message) = tokio::time::timeout(PATIENCE, second_statuses.next())
        .await
        .expect("one call refused")
        .expect("a status");
    assert_eq!(code, Code::ResourceExhausted);
    assert!(message.contains("(grpc.max_inflight_bytes)"), "{message}");
    assert_eq!(
        stats(&mut client).await.inflight_request_bytes,
        6 * u64::from(announced)
    );

    // A small call has no room now, and is told so without effect.
    let status = client
        .cache
        .set(set_request("k", "v"))
        .await
        .expect_err("no room");
    assert_eq!(status.code(), Code::ResourceExhausted);

    // Once the attackers go, everything they held is given back.
    drop((open_streams, statuses, second_statuses));
    drop((first, second));
    eventually("the in-flight bytes are given back", || {
        let mut client = client.clone();
        async move { stats(&mut client).await.inflight_request_bytes == 0 }
    })
    .await;
    client
        .cache
        .set(set_request("k", "v"))
        .await
        .expect("served again");
    assert_eq!(
        metric(&server, "shoal_inflight_refusals_total").await,
        2.0,
        "the server's budget refused two messages"
    );
}

#[tokio::test]
async fn handled_messages_of_open_streams_hold_no_budget() {
    // Eight SetBatch streams on one connection, each sending a 900 KB
    // chunk, waiting for its results and staying open: eight times what
    // the connection's 4 MB may hold in flight, but each chunk is handled
    // before the next stream sends, so none may be refused.
    let server = TestServer::start_with(small_budgets()).await;
    let mut raw = raw(&server).await;
    let mut open = Vec::new();
    for stream in 0..8 {
        let (chunks, queued) = tokio::sync::mpsc::channel(1);
        let mut replies = raw
            .batch
            .set_batch(tokio_stream::wrappers::ReceiverStream::new(queued))
            .await
            .expect("stream opened")
            .into_inner();
        let chunk = pb::SetBatchRequest {
            items: vec![pb::SetBatchItem {
                key: Bytes::from(format!("large:{stream}")),
                value: Bytes::from(vec![b'v'; 900_000]),
                ..Default::default()
            }],
            ..Default::default()
        };
        chunks.send(chunk).await.expect("chunk queued");
        let reply = tokio::time::timeout(PATIENCE, replies.next())
            .await
            .expect("a reply")
            .expect("the stream goes on")
            .expect("the chunk is accepted");
        assert_eq!(reply.results.len(), 1, "stream {stream}");
        assert!(
            matches!(
                reply.results[0].result,
                Some(pb::set_batch_result::Result::Outcome(_))
            ),
            "stream {stream}: {:?}",
            reply.results[0].result
        );
        open.push((chunks, replies));
    }
    eventually("the handled chunks are given back", || {
        let mut client = raw.clone();
        async move { stats(&mut client).await.inflight_request_bytes == 0 }
    })
    .await;
    drop(open);
}

#[tokio::test]
async fn a_message_over_the_limit_is_refused_before_it_is_sent() {
    let server = TestServer::start().await;
    let mut connection = Http2::connect(server.addr()).await;
    let limit = Config::default().max_message_bytes();
    // Only the prefix is sent: the refusal cannot wait for the 17 MiB.
    let (response, _stream) = connection
        .call("/shoal.v1.CacheService/Set", prefix(17 << 20), false)
        .await;
    let (code, message) = tokio::time::timeout(PATIENCE, status_of(response))
        .await
        .expect("refused at once");
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains(&limit.to_string()), "{message}");
    assert!(message.contains("engine.max_value_bytes"), "{message}");
}

#[tokio::test]
async fn garbage_is_the_callers_fault_and_never_internal() {
    let server = TestServer::start().await;
    let mut connection = Http2::connect(server.addr()).await;
    let garbage: [&[u8]; 4] = [
        // Field 1 as bytes running past the end.
        &[0x0a, 0x7f, 0x01],
        // A varint that never ends.
        &[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
        // Wire type 7 does not exist.
        &[0x0f],
        // Field 1, a string in each of these requests, that is not UTF-8.
        &[0x0a, 0x02, 0xc3, 0x28],
    ];
    for (path, payload) in [
        "/shoal.v1.CacheService/Get",
        "/shoal.v1.CacheService/Set",
        "/shoal.v1.CollectionService/HSet",
        "/shoal.v1.AdminService/Stats",
    ]
    .into_iter()
    .flat_map(|path| garbage.iter().map(move |payload| (path, *payload)))
    {
        let (response, _stream) = connection.call(path, message(payload), true).await;
        let (code, status) = status_of(response).await;
        assert_eq!(code, Code::InvalidArgument, "{path} {payload:?}: {status}");
    }
    let mut client = raw(&server).await;
    let internal: u64 = stats(&mut client)
        .await
        .rpcs
        .iter()
        .filter_map(|rpc| rpc.errors_by_code.get("Internal"))
        .sum();
    assert_eq!(internal, 0);
}

#[tokio::test]
async fn silent_and_half_open_sockets_are_closed_and_never_crowd_out_clients() {
    let mut config = Config::default();
    config.grpc.preface_timeout_secs = 1;
    let server = TestServer::start_with(config).await;
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(TcpStream::connect(server.addr()).await.expect("connect"));
    }
    // Half a preface, then nothing.
    let mut half = TcpStream::connect(server.addr()).await.expect("connect");
    half.write_all(b"PRI * HTTP/2.0\r\n").await.expect("write");
    silent.push(half);

    // A client is served while they are open.
    let mut client = raw(&server).await;
    client
        .cache
        .set(set_request("k", "v"))
        .await
        .expect("served");

    // Each of them is closed once its preface is late (after the server's
    // own SETTINGS, which it sends at once).
    for socket in &mut silent {
        let mut received = Vec::new();
        let read = tokio::time::timeout(PATIENCE, socket.read_to_end(&mut received))
            .await
            .expect("closed by the server");
        assert!(received.len() < 1024, "only the server's SETTINGS");
        drop(read);
    }
    assert!(
        metric(
            &server,
            "shoal_connections_closed_by_limit_total{limit=\"preface_timeout\"}"
        )
        .await
            >= 201.0
    );
    // The client's own connection, which sent its preface, stays.
    client
        .cache
        .get(get_request("k"))
        .await
        .expect("still served");
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_when_accepted() {
    let mut config = Config::default();
    config.grpc.max_connections = 3;
    let server = TestServer::start_with(config).await;
    let client = raw(&server).await;
    // The connections the start-up health checks used close first.
    eventually("only this client is connected", || {
        let mut client = client.clone();
        async move { stats(&mut client).await.connections_open == 1 }
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(server.addr()).await.expect("connect"));
    }
    eventually("three connections are open", || {
        let mut client = client.clone();
        async move { stats(&mut client).await.connections_open == 3 }
    })
    .await;
    let mut over = TcpStream::connect(server.addr()).await.expect("connect");
    let mut received = Vec::new();
    let read = tokio::time::timeout(PATIENCE, over.read_to_end(&mut received))
        .await
        .expect("closed by the server");
    assert!(
        received.is_empty(),
        "closed before any HTTP/2 ({read:?}, {received:?})"
    );
    assert_eq!(
        metric(
            &server,
            "shoal_connections_closed_by_limit_total{limit=\"max_connections\"}"
        )
        .await,
        1.0
    );
    // Those already connected are still served.
    let mut client = client.clone();
    client
        .cache
        .set(set_request("k", "v"))
        .await
        .expect("served");
}

#[tokio::test]
async fn idle_connections_are_closed_and_clients_reconnect() {
    let mut config = Config::default();
    config.grpc.idle_timeout_secs = 1;
    let server = TestServer::start_with(config).await;
    let mut client = raw(&server).await;
    client
        .cache
        .set(set_request("k", "v"))
        .await
        .expect("served");
    eventually("the idle connection is closed", || async {
        metric(
            &server,
            "shoal_connections_closed_by_limit_total{limit=\"idle_timeout\"}",
        )
        .await
            >= 1.0
    })
    .await;
    // A connection with a call open is not idle: this Watch outlives the
    // timeout and still gets its event.
    let mut watch = client
        .watch
        .watch(pb::WatchRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let subscribed = watch.next().await.expect("an event").expect("subscribed");
    assert!(matches!(
        subscribed.event,
        Some(pb::watch_event::Event::Subscribed(_))
    ));
    // Another client connects, calls once and goes idle.
    let idle_closes = metric(
        &server,
        "shoal_connections_closed_by_limit_total{limit=\"idle_timeout\"}",
    )
    .await;
    let mut other = raw(&server).await;
    other
        .cache
        .set(set_request("other", "v"))
        .await
        .expect("served");
    eventually("the other, idle connection is closed", || async {
        metric(
            &server,
            "shoal_connections_closed_by_limit_total{limit=\"idle_timeout\"}",
        )
        .await
            > idle_closes
    })
    .await;
    client
        .cache
        .set(set_request("k", "2"))
        .await
        .expect("served after the timeouts");
    let seen = tokio::time::timeout(PATIENCE, async {
        while let Some(event) = watch.next().await {
            let event = event.expect("an event, not an error");
            if let Some(pb::watch_event::Event::Key(key)) = event.event
                && key.key == "k"
            {
                return true;
            }
        }
        false
    })
    .await
    .expect("the Set's event");
    assert!(seen, "the Watch's connection was closed while it was open");
}

#[tokio::test]
async fn shutdown_ends_sessions_closes_the_port_and_does_not_wait_the_grace() {
    let mut config = Config::default();
    // Far longer than the steps below need: a shutdown that waited for the
    // open sessions would take this long.
    config.grpc.shutdown_grace_secs = 120;
    let mut server = TestServer::start_with(config).await;
    let addr = server.addr();
    let mut client = raw(&server).await;
    let mut watch = client
        .watch
        .watch(pb::WatchRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let channel = tonic::transport::Endpoint::from_shared(server.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel)
        .watch(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health watch")
        .into_inner();
    let first = health.next().await.expect("status").expect("status");
    assert_eq!(first.status, 1, "SERVING");

    server.begin_shutdown();
    assert_eq!(
        end_of(&mut watch, "the Watch ends").await,
        Code::Unavailable
    );
    assert_eq!(
        end_of(&mut health, "the health Watch ends").await,
        Code::Unavailable
    );
    eventually("the port refuses connections", || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    tokio::time::timeout(PATIENCE, server.stop())
        .await
        .expect("the server stops without waiting its grace period")
        .expect("clean stop");
}

#[tokio::test]
async fn namespaces_can_be_dropped_and_empty_ones_are_reclaimed() {
    let mut config = Config::default();
    config.engine.max_namespaces = 3;
    config.engine.empty_namespace_grace_secs = 1;
    let server = TestServer::start_with(config).await;
    let mut client = raw(&server).await;
    let set_in = |namespace: &str, key: &str| pb::SetRequest {
        namespace: namespace.to_string(),
        ..set_request(key, "v")
    };
    for namespace in ["a", "b", "c"] {
        client.cache.set(set_in(namespace, "k")).await.expect("set");
    }
    let full = client
        .cache
        .set(set_in("d", "k"))
        .await
        .expect_err("the namespaces are full");
    assert_eq!(full.code(), Code::ResourceExhausted);
    assert!(full.message().contains("engine.max_namespaces"), "{full:?}");

    let dropped = client
        .admin
        .drop_namespace(pb::DropNamespaceRequest {
            namespace: "a".to_string(),
        })
        .await
        .expect("drop")
        .into_inner();
    assert_eq!((dropped.dropped, dropped.removed), (true, 1));
    client
        .cache
        .set(set_in("d", "k"))
        .await
        .expect("a slot is free");
    let got = client
        .cache
        .get(pb::GetRequest {
            namespace: "a".to_string(),
            ..get_request("k")
        })
        .await
        .expect("get")
        .into_inner();
    assert!(!got.found, "a dropped namespace keeps nothing");

    // Emptied, "b" gives its slot back after the grace.
    client
        .cache
        .delete(pb::DeleteRequest {
            namespace: "b".to_string(),
            keys: vec![Bytes::from("k")],
        })
        .await
        .expect("delete");
    eventually("the empty namespace is reclaimed", || {
        let mut client = client.clone();
        async move {
            let names = client
                .admin
                .list_namespaces(pb::ListNamespacesRequest {})
                .await
                .expect("list")
                .into_inner()
                .namespaces;
            names == ["c", "d"]
        }
    })
    .await;
    client
        .cache
        .set(set_in("e", "k"))
        .await
        .expect("a slot is free");
}

#[tokio::test]
async fn a_scan_cursor_is_refused_outside_the_namespace_that_issued_it() {
    let server = TestServer::start().await;
    let mut client = raw(&server).await;
    for key in 0..50 {
        client
            .cache
            .set(set_request(&format!("k{key}"), "v"))
            .await
            .expect("set");
    }
    let mut pages = client
        .cache
        .scan(pb::ScanRequest {
            page_size: 5,
            limit: 5,
            ..Default::default()
        })
        .await
        .expect("scan")
        .into_inner();
    let mut cursor = Bytes::new();
    while let Some(page) = pages.next().await {
        cursor = page.expect("page").cursor;
    }
    assert!(!cursor.is_empty(), "the scan stopped early with a cursor");
    let elsewhere = client
        .cache
        .scan(pb::ScanRequest {
            namespace: "other".to_string(),
            cursor: cursor.clone(),
            ..Default::default()
        })
        .await;
    let status = match elsewhere {
        Err(status) => status,
        Ok(stream) => stream
            .into_inner()
            .next()
            .await
            .expect("an answer")
            .expect_err("refused"),
    };
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("cursor"), "{status:?}");
}

#[tokio::test]
async fn a_stalled_reader_of_a_collection_is_charged_and_let_go_at_its_deadline() {
    let server = TestServer::start().await;
    let mut client = raw(&server).await;
    for half in 0..2 {
        let fields: Vec<_> = (half * 10_000..(half + 1) * 10_000)
            .map(|at| pb::FieldValue {
                field: Bytes::from(format!("field-{at:05}")),
                value: Bytes::from_static(b"a value of some twenty bytes"),
            })
            .collect();
        client
            .collection
            .h_set(pb::HSetRequest {
                key: Bytes::from_static(b"wide"),
                fields,
                ..Default::default()
            })
            .await
            .expect("hset");
    }

    // Three readers ask for the whole hash (20 chunks) within 2 s and read
    // nothing: their windows hold less than one chunk.
    let mut stalled = Http2::connect_stalled(server.addr(), 1024).await;
    let request = pb::HGetAllRequest {
        key: Bytes::from_static(b"wide"),
        ..Default::default()
    };
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (response, stream) = stalled
            .call_within(
                "/shoal.v1.CollectionService/HGetAll",
                message(&prost::Message::encode_to_vec(&request)),
                true,
                Some("2S"),
            )
            .await;
        readers.push((response, stream));
    }
    let snapshot_bytes =
        |stats: &pb::StatsResponse| stats.total.as_ref().map_or(0, |total| total.snapshot_bytes);
    eventually("the three calls are open", || async {
        metric(&server, "shoal_streams_open").await >= 3.0
    })
    .await;
    assert_eq!(
        snapshot_bytes(&stats(&mut client).await),
        0,
        "reading copies nothing"
    );

    // Writes go on; the first leaves the readers' version behind, charged.
    for round in 0..50 {
        client
            .collection
            .h_set(pb::HSetRequest {
                key: Bytes::from_static(b"wide"),
                fields: vec![pb::FieldValue {
                    field: Bytes::from(format!("field-{round:05}")),
                    value: Bytes::from_static(b"changed"),
                }],
                ..Default::default()
            })
            .await
            .expect("hset while readers stall");
    }
    let held = stats(&mut client).await;
    let charged = snapshot_bytes(&held);
    let stored = held.total.as_ref().map_or(0, |total| total.memory_bytes);
    assert!(
        charged > 20_000 * 40 && charged < stored * 2,
        "one version left behind for the three readers: {charged} bytes, {stored} stored"
    );
    assert!(
        metric(
            &server,
            "shoal_snapshot_memory_bytes{namespace=\"default\"}"
        )
        .await
            > 0.0
    );

    // At the deadline the server lets the version go, though nobody reads.
    eventually("the snapshot is let go at the deadline", || {
        let mut client = client.clone();
        async move { snapshot_bytes(&stats(&mut client).await) == 0 }
    })
    .await;
    drop(readers);
}
