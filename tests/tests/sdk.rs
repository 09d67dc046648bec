//! The client's conveniences against a real server: typed values,
//! compression, memoisation and connection pools.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shoal_client::proto::cache_service_client::CacheServiceClient;
use shoal_client::{Client, Compression, Error, Json, MsgPack, Raw, SetOptions, Ttl};
use shoal_server::testing::TestServer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

const TTL: Duration = Duration::from_secs(600);

async fn connect(server: &TestServer) -> Client {
    Client::builder()
        .endpoint(server.endpoint())
        .connect()
        .await
        .expect("connect")
}

async fn connect_compressing(server: &TestServer, compression: Compression) -> Client {
    Client::builder()
        .endpoint(server.endpoint())
        .compression(compression)
        .connect()
        .await
        .expect("connect")
}

/// The size the server holds for `key`.
async fn stored_size(client: &Client, key: &str) -> u64 {
    let info = client.describe([key]).await.expect("describe");
    info[0].meta.expect("key exists").size
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    symbol: String,
    price: f64,
    fills: Vec<Fill>,
    note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Fill {
    qty: u32,
    venue: String,
}

fn order(id: u64) -> Order {
    Order {
        id,
        symbol: "AAPL".into(),
        price: 189.12,
        fills: vec![
            Fill {
                qty: 100,
                venue: "XNAS".into(),
            },
            Fill {
                qty: 50,
                venue: "ARCX".into(),
            },
        ],
        note: None,
    }
}

/// JSON-like text with the redundancy of real records.
fn records(n: usize) -> Bytes {
    let orders: Vec<Order> = (0..n as u64).map(order).collect();
    serde_json::to_vec(&orders).expect("json").into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_values_round_trip_through_json_and_msgpack() {
    let server = TestServer::start().await;
    let client = connect(&server).await;

    let json = client.with_namespace("orders").typed::<Order, Json>();
    assert_eq!(json.namespace(), "orders");
    assert!(json.set("o:1", &order(1)).await.expect("set").stored);
    assert_eq!(json.get("o:1").await.expect("get"), Some(order(1)));
    assert_eq!(json.get("missing").await.expect("get"), None);
    let (value, meta) = json
        .get_with_meta("o:1")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(value, order(1));
    assert_eq!(meta.ttl, None);
    // What is stored is plain JSON, readable by any client or tool.
    let raw = client
        .with_namespace("orders")
        .get("o:1")
        .await
        .expect("get");
    assert_eq!(
        raw,
        Some(Bytes::from(serde_json::to_vec(&order(1)).unwrap()))
    );

    let packed = json.with_namespace("packed");
    let packed = packed.client().typed::<Order, MsgPack>();
    packed.set_ttl("o:1", &order(1), TTL).await.expect("set");
    assert_eq!(packed.get("o:1").await.expect("get"), Some(order(1)));
    assert!(matches!(
        packed.client().ttl("o:1").await.expect("ttl"),
        Ttl::Expires(_)
    ));
    let msgpack_size = stored_size(packed.client(), "o:1").await;
    let json_size = stored_size(json.client(), "o:1").await;
    assert!(msgpack_size < json_size, "{msgpack_size} >= {json_size}");

    // Reading a value with the wrong codec is a codec error, not garbage.
    let wrong = packed.client().typed::<Order, Json>();
    let err = wrong.get("o:1").await.unwrap_err();
    assert!(
        matches!(&err, Error::Codec(e) if e.is_decode() && e.codec() == "json"),
        "{err:?}"
    );

    // Conditions and previous values work through the typed handle.
    let result = json
        .set_with("o:1", &order(2), SetOptions::default().with_previous())
        .await
        .expect("set");
    assert_eq!(
        json.decode(result.previous.expect("previous")).unwrap(),
        order(1)
    );

    assert!(json.delete("o:1").await.expect("delete"));
    assert!(!json.delete("o:1").await.expect("delete"));

    let text = client.typed::<String, Raw>();
    text.set("greeting", &"hello".to_owned())
        .await
        .expect("set");
    assert_eq!(
        text.get("greeting").await.expect("get").as_deref(),
        Some("hello")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_values_are_read_by_clients_without_compression() {
    let server = TestServer::start().await;
    let plain = connect(&server).await;
    for (name, compression) in [("zstd", Compression::zstd()), ("lz4", Compression::lz4())] {
        let writer = connect_compressing(&server, compression.threshold(1024)).await;
        assert_eq!(writer.compression(), Some(compression.threshold(1024)));

        let large = records(200);
        let key = format!("{name}:large");
        writer.set(&key, large.clone()).await.expect("set");
        let stored = stored_size(&plain, &key).await;
        assert!(
            stored * 4 < large.len() as u64,
            "{name}: {stored} bytes stored for {}",
            large.len()
        );
        assert_eq!(plain.get(&key).await.expect("get"), Some(large.clone()));
        assert_eq!(writer.get(&key).await.expect("get"), Some(large.clone()));
        let (value, _) = plain
            .get_with_meta(&key)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(value, large);
        // The previous value of a write comes back decompressed too.
        let result = plain
            .set_with(&key, "small", SetOptions::default().with_previous())
            .await
            .expect("set");
        assert_eq!(result.previous, Some(large));

        // Under the threshold: stored as is.
        let short = records(1);
        assert!(short.len() < 1024);
        let key = format!("{name}:short");
        writer.set(&key, short.clone()).await.expect("set");
        assert_eq!(stored_size(&plain, &key).await, short.len() as u64);
        assert_eq!(plain.get(&key).await.expect("get"), Some(short));

        // Typed handles compress what the codec produces.
        let orders = writer.typed::<Vec<Order>, Json>();
        let many: Vec<Order> = (0..100).map(order).collect();
        orders.set("typed", &many).await.expect("set");
        assert!(stored_size(&plain, "typed").await * 4 < records(100).len() as u64);
        assert_eq!(
            plain
                .typed::<Vec<Order>, Json>()
                .get("typed")
                .await
                .unwrap(),
            Some(many)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_that_look_like_compressed_ones_read_back_as_written() {
    let server = TestServer::start().await;
    let plain = connect(&server).await;
    let compressing = connect_compressing(&server, Compression::zstd().threshold(0)).await;
    // The frame magic followed by what a zstd header would look like, and
    // the magic alone.
    let mut lookalike = b"\xF5shl\x01\x00\x10\x00\x00".to_vec();
    lookalike.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0, 1, 2, 3]);
    let lookalikes = [Bytes::from(lookalike), Bytes::from_static(b"\xF5shl")];
    for (i, value) in lookalikes.into_iter().enumerate() {
        for writer in [&plain, &compressing] {
            for reader in [&plain, &compressing] {
                let key = format!("lookalike:{i}");
                writer.set(&key, value.clone()).await.expect("set");
                assert_eq!(reader.get(&key).await.expect("get"), Some(value.clone()));
            }
        }
    }

    // A value that starts with the magic but was written by something else
    // than a shoal client is reported, not guessed at.
    let mut raw = CacheServiceClient::connect(server.endpoint())
        .await
        .expect("connect");
    raw.set(shoal_client::proto::SetRequest {
        namespace: String::new(),
        key: Bytes::from_static(b"foreign"),
        value: Bytes::from_static(b"\xF5shl\x07whatever"),
        ..Default::default()
    })
    .await
    .expect("set");
    let err = plain.get("foreign").await.unwrap_err();
    assert!(matches!(&err, Error::Codec(e) if e.is_decode()), "{err:?}");
    assert!(err.to_string().contains("unknown frame format 7"), "{err}");
}

/// Spawns `n` calls of `get_or_insert_with` on `key`, whose loaders count
/// their runs in `runs`, then wait for `release` and answer `answer`.
fn spawn_loads<T>(
    n: usize,
    handle: &shoal_client::Typed<T, Json>,
    key: &'static str,
    runs: &Arc<AtomicUsize>,
    release: &Arc<Semaphore>,
    answer: Result<T, &'static str>,
) -> (JoinSet<shoal_client::Result<T>>, Arc<AtomicUsize>)
where
    T: Serialize + serde::de::DeserializeOwned + Clone + Send + 'static,
{
    let entered = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        let handle = handle.clone();
        let runs = Arc::clone(runs);
        let release = Arc::clone(release);
        let entered = Arc::clone(&entered);
        let answer = answer.clone();
        tasks.spawn(async move {
            entered.fetch_add(1, Ordering::SeqCst);
            handle
                .get_or_insert_with(key, TTL, || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    let _permit = release.acquire().await.expect("open");
                    answer.map_err(std::io::Error::other)
                })
                .await
        });
    }
    (tasks, entered)
}

/// Lets every spawned task run up to its first wait. On the
/// current-thread runtime a task that has counted itself in has also
/// joined the load (nothing in between awaits), so this is exact.
async fn until_all_entered(entered: &AtomicUsize, n: usize) {
    while entered.load(Ordering::SeqCst) < n {
        tokio::task::yield_now().await;
    }
}

/// Until `runs` loaders have started (they count themselves first).
async fn until_runs(runs: &AtomicUsize, n: usize) {
    while runs.load(Ordering::SeqCst) < n {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn concurrent_loads_of_one_key_run_the_loader_once() {
    let server = TestServer::start().await;
    let client = connect(&server).await;
    let reports = client.with_namespace("reports").typed::<Order, Json>();

    let runs = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(0));
    let (mut tasks, entered) = spawn_loads(50, &reports, "daily", &runs, &release, Ok(order(7)));
    until_all_entered(&entered, 50).await;
    until_runs(&runs, 1).await;
    // Every caller is waiting on the one loader now; let it finish.
    release.add_permits(50);

    let mut answers = 0;
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.expect("task").expect("loaded"), order(7));
        answers += 1;
    }
    assert_eq!(answers, 50);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // It was stored with the TTL, and later calls just read it.
    assert!(matches!(
        reports.client().ttl("daily").await.unwrap(),
        Ttl::Expires(_)
    ));
    let again = reports
        .get_or_insert_with("daily", TTL, || async { Err::<Order, _>("not called") })
        .await
        .expect("read");
    assert_eq!(again, order(7));

    // The same key in another namespace is another load.
    let other = reports.with_namespace("reports-eu");
    let loaded = other
        .get_or_insert_with("daily", TTL, || async { Ok::<_, std::io::Error>(order(8)) })
        .await
        .expect("load");
    assert_eq!(loaded, order(8));
}

#[tokio::test]
async fn a_failed_load_reaches_every_waiter_and_is_not_cached() {
    let server = TestServer::start().await;
    let client = connect(&server).await;
    let reports = client.typed::<Order, Json>();

    let runs = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(0));
    let (mut tasks, entered) =
        spawn_loads(10, &reports, "flaky", &runs, &release, Err("database down"));
    until_all_entered(&entered, 10).await;
    until_runs(&runs, 1).await;
    release.add_permits(10);
    while let Some(result) = tasks.join_next().await {
        let err = result.expect("task").unwrap_err();
        assert!(matches!(err, Error::Loader(_)), "{err:?}");
        let cause = err
            .loader_error::<std::io::Error>()
            .expect("the loader's error");
        assert_eq!(cause.to_string(), "database down");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(client.get("flaky").await.unwrap(), None);

    // The next call runs its loader again.
    let loaded = reports
        .get_or_insert_with("flaky", TTL, || async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(order(1))
        })
        .await
        .expect("load");
    assert_eq!(loaded, order(1));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_cancelled_leader_hands_the_load_to_a_waiter() {
    let server = TestServer::start().await;
    let client = connect(&server).await;

    // The leader's loader never finishes.
    let leader_started = Arc::new(Notify::new());
    let leader = {
        let client = client.clone();
        let started = Arc::clone(&leader_started);
        tokio::spawn(async move {
            client
                .get_or_insert_with("slow", TTL, || async move {
                    started.notify_one();
                    std::future::pending::<Result<Bytes, std::io::Error>>().await
                })
                .await
        })
    };
    leader_started.notified().await;

    let runs = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(100));
    let typed = client.typed::<String, Json>();
    let (mut waiters, entered) = spawn_loads(
        10,
        &typed,
        "slow",
        &runs,
        &release,
        Ok("from a waiter".into()),
    );
    until_all_entered(&entered, 10).await;
    // All ten wait on the leader; none has run its loader.
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    while let Some(result) = waiters.join_next().await {
        assert_eq!(result.expect("task").expect("loaded"), "from a waiter");
    }
    // Exactly one waiter took over.
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_stored_by_another_process_during_the_load_wins() {
    let server = TestServer::start().await;
    let here = connect(&server).await;
    let elsewhere = connect(&server).await;

    let value = here
        .get_or_insert_with("config", TTL, || async {
            // While this process loads, another one stores the key.
            elsewhere.set("config", "theirs").await.expect("set");
            Ok::<_, std::io::Error>("ours")
        })
        .await
        .expect("load");
    assert_eq!(value, "theirs");
    assert_eq!(
        here.get("config").await.unwrap().as_deref(),
        Some(&b"theirs"[..])
    );
}

/// A TCP forwarder to `target` that counts the connections it accepts.
async fn counting_proxy(target: std::net::SocketAddr) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (format!("http://{addr}"), accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_spread_over_several_connections() {
    let server = TestServer::start().await;
    let (endpoint, accepted) = counting_proxy(server.addr()).await;
    let client = Client::builder()
        .endpoint(&endpoint)
        .connections(3)
        .keepalive(Duration::from_secs(10), Duration::from_secs(5))
        .connect()
        .await
        .expect("connect");
    assert_eq!(client.connections(), 3);

    // Three calls in a row take the three connections in turn; each answer
    // came through the proxy, so each connection has been accepted.
    for i in 0..3 {
        client.set(format!("k{i}"), "v").await.expect("set");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);

    let mut calls = JoinSet::new();
    for i in 0..60 {
        let client = client.clone();
        calls.spawn(async move { client.get(format!("k{}", i % 3)).await });
    }
    while let Some(result) = calls.join_next().await {
        assert_eq!(
            result.expect("task").expect("get").as_deref(),
            Some(&b"v"[..])
        );
    }
    // No call opened a connection of its own.
    assert_eq!(accepted.load(Ordering::SeqCst), 3);

    // A lazy client opens its connections as calls first need them.
    let (endpoint, accepted) = counting_proxy(server.addr()).await;
    let lazy = Client::builder()
        .endpoint(&endpoint)
        .connections(2)
        .connect_lazy()
        .expect("lazy");
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    for _ in 0..4 {
        assert!(lazy.get("k0").await.expect("get").is_some());
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
