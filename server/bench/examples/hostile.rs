//! Hostile and unlucky clients against the release server, each scenario
//! on a fresh server process, with the figure it must reach beside the
//! one measured. Run by `server/bench/benches/hostile.sh`, which builds
//! the server first.
//!
//! ```sh
//! cargo build --release -p shoal-server
//! cargo run --release -p shoal-bench --example hostile            # every scenario
//! cargo run --release -p shoal-bench --example hostile -- storm   # one of them
//! ```
//!
//! Scenarios: `bodies` (unfinished request bodies), `sockets` (silent
//! sockets), `readers` (stalled readers of a large hash), `shutdown`
//! (SIGTERM with a Watch open), `storm` (large values under a small
//! memory budget), `resets` (a rapid-reset flood) and `idle` (2 000 idle
//! HTTP/2 connections). The server listens on loopback only and is killed when
//! its scenario ends.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use shoal_proto::v1 as pb;
use shoal_proto::v1::admin_service_client::AdminServiceClient;
use shoal_proto::v1::cache_service_client::CacheServiceClient;
use shoal_proto::v1::collection_service_client::CollectionServiceClient;
use shoal_proto::v1::watch_service_client::WatchServiceClient;
use tokio::net::TcpStream;
use tonic::transport::Channel;

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// A shoal-server process on a loopback port of its own.
struct Server {
    child: Child,
    addr: SocketAddr,
    _config: tempfile::NamedTempFile,
}

impl Server {
    /// Starts the release server with `config` (TOML) and `flags`, and
    /// waits until its health service says SERVING.
    async fn start(config: &str, flags: &[&str]) -> Result<Self, Failure> {
        let addr = free_port()?;
        let mut file = tempfile::NamedTempFile::new()?;
        std::io::Write::write_all(&mut file, config.as_bytes())?;
        let child = Command::new(server_binary())
            .arg("--config")
            .arg(file.path())
            .arg("--listen")
            .arg(addr.to_string())
            .args(["--admin-listen", "off"])
            .args(flags)
            .env("RUST_LOG", "warn,h2=error,hyper=error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", server_binary().display()))?;
        let mut server = Self {
            child,
            addr,
            _config: file,
        };
        server.wait_serving().await?;
        Ok(server)
    }

    async fn wait_serving(&mut self) -> Result<(), Failure> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("the server exited at start: {status}").into());
            }
            if let Ok(channel) = self.try_channel().await {
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                let asked = health
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await;
                if asked.is_ok_and(|reply| reply.into_inner().status == 1) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err("the server never turned SERVING".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn try_channel(&self) -> Result<Channel, tonic::transport::Error> {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))?
            .connect()
            .await
    }

    async fn channel(&self) -> Result<Channel, Failure> {
        Ok(self.try_channel().await?)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now and at its peak, in bytes.
    fn rss(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .map_or(0, |kib| kib * 1024)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    async fn stats(&self) -> Result<pb::StatsResponse, Failure> {
        let mut admin = AdminServiceClient::new(self.channel().await?);
        Ok(admin.stats(pb::StatsRequest::default()).await?.into_inner())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_binary() -> PathBuf {
    std::env::var_os("SHOAL_SERVER_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/shoal-server"),
        PathBuf::from,
    )
}

fn free_port() -> Result<SocketAddr, Failure> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// A raw HTTP/2 connection for calls that a well-behaved client never makes.
struct Http2 {
    send: h2::client::SendRequest<Bytes>,
    _driver: tokio::task::JoinHandle<()>,
}

impl Http2 {
    async fn connect(addr: SocketAddr, window: u32) -> Result<Self, Failure> {
        let tcp = TcpStream::connect(addr).await?;
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(window)
            .handshake(tcp)
            .await?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            send,
            _driver: driver,
        })
    }

    /// Opens a call of `path` and sends `body`, ending the request when
    /// `end` is set.
    async fn call(
        &mut self,
        path: &str,
        body: Vec<u8>,
        end: bool,
    ) -> Result<(h2::client::ResponseFuture, h2::SendStream<Bytes>), Failure> {
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://localhost{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())?;
        let mut send = self.send.clone().ready().await?;
        let (response, mut stream) = send.send_request(request, false)?;
        stream.send_data(Bytes::from(body), end)?;
        Ok((response, stream))
    }
}

/// A gRPC frame announcing `length` bytes, followed by `payload`.
fn grpc_frame(length: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0];
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Unfinished request bodies: eight connections each open eight Sets that
/// announce 4 MiB and send all but the last byte, against in-flight budgets
/// of 64 MiB per server and 16 MiB per connection.
async fn bodies() -> Result<(), Failure> {
    let budget: u64 = 64 << 20;
    let server = Server::start(
        &format!(
            "[engine]\nmax_value_bytes = {}\n[grpc]\nmax_inflight_bytes = {budget}\n\
             max_inflight_bytes_per_connection = {}\n",
            4 << 20,
            16 << 20
        ),
        &[],
    )
    .await?;
    let (base, _) = server.rss();
    let announced: u32 = 4 << 20;
    let body = grpc_frame(announced, &vec![7; announced as usize - 1]);
    let mut connections = Vec::new();
    let mut streams = Vec::new();
    let mut refused = 0;
    let mut responses = Vec::new();
    for _ in 0..8 {
        let mut connection = Http2::connect(server.addr, 1 << 20).await?;
        for _ in 0..8 {
            let (response, stream) = connection
                .call("/shoal.v1.CacheService/Set", body.clone(), false)
                .await?;
            responses.push(response);
            streams.push(stream);
        }
        connections.push(connection);
    }
    // Let the bytes arrive, polling what the server holds until it stops
    // growing.
    let mut held = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = server.stats().await?.inflight_request_bytes;
        if now == held && now > 0 {
            break;
        }
        held = now;
    }
    for response in responses {
        if let Ok(Ok(reply)) = tokio::time::timeout(Duration::from_millis(10), response).await
            && reply
                .headers()
                .get("grpc-status")
                .is_some_and(|code| code != "0")
        {
            refused += 1;
        }
    }
    let (rss, peak) = server.rss();
    let goal = budget as f64 * 1.1;
    let grown = peak.saturating_sub(base);
    println!(
        "bodies: 64 calls announcing 4 MiB, sent but for one byte: {refused} refused at once, \
         {:.1} MiB held in flight (budget {:.0} MiB); RSS base {:.1} MiB, now {:.1}, peak {:.1}: \
         peak - base = {:.1} MiB, goal <= budget + 10% = {:.1} MiB: {}",
        mib(held),
        mib(budget),
        mib(base),
        mib(rss),
        mib(peak),
        mib(grown),
        goal / (1024.0 * 1024.0),
        verdict((grown as f64) <= goal)
    );
    drop(streams);
    Ok(())
}

/// Silent sockets: 2 000 connections that never send a byte, then a new
/// client's first call.
async fn sockets() -> Result<(), Failure> {
    raise_open_file_limit(4096)?;
    let server = Server::start("", &[]).await?;
    let mut silent = Vec::new();
    for _ in 0..2000 {
        silent.push(TcpStream::connect(server.addr).await?);
    }
    let started = Instant::now();
    get_once(server.channel().await?).await?;
    let served = started.elapsed();
    let open = server.stats().await?.connections_open;
    println!(
        "sockets: 2000 silent connections open ({open} counted by the server); a new client \
         connected and was answered in {:.1} ms, goal < 1000 ms: {}",
        served.as_secs_f64() * 1000.0,
        verdict(served < Duration::from_secs(1))
    );
    drop(silent);
    Ok(())
}

/// One unary Get over `channel`.
async fn get_once(channel: Channel) -> Result<(), Failure> {
    CacheServiceClient::new(channel)
        .get(pb::GetRequest {
            key: Bytes::from_static(b"k"),
            ..Default::default()
        })
        .await?;
    Ok(())
}

fn raise_open_file_limit(wanted: u64) -> Result<(), Failure> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < wanted {
        setrlimit(Resource::RLIMIT_NOFILE, wanted.min(hard), hard)?;
    }
    Ok(())
}

/// Stalled readers: ten HGetAll calls on a 300 000-field hash whose clients
/// never read, while another client keeps writing to the hash.
async fn readers() -> Result<(), Failure> {
    let server = Server::start("[grpc]\nrequest_timeout_secs = 10\n", &[]).await?;
    let (empty, _) = server.rss();
    let mut collection = CollectionServiceClient::new(server.channel().await?);
    let key = Bytes::from_static(b"wide");
    for batch in 0..30 {
        let fields = (batch * 10_000..(batch + 1) * 10_000)
            .map(|at| pb::FieldValue {
                field: Bytes::from(format!("field:{at:07}")),
                value: Bytes::from(format!("value:{at:013}")),
            })
            .collect();
        collection
            .h_set(pb::HSetRequest {
                key: key.clone(),
                fields,
                ..Default::default()
            })
            .await?;
    }
    let (base, _) = server.rss();
    let quiet = hset_latencies(&mut collection, &key, 2000).await?;

    let mut stalled = Http2::connect(server.addr, 1024).await?;
    let mut calls = Vec::new();
    let request = prost::Message::encode_to_vec(&pb::HGetAllRequest {
        key: key.clone(),
        ..Default::default()
    });
    for _ in 0..10 {
        calls.push(
            stalled
                .call(
                    "/shoal.v1.CollectionService/HGetAll",
                    grpc_frame(request.len() as u32, &request),
                    true,
                )
                .await?,
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let loaded = hset_latencies(&mut collection, &key, 2000).await?;
    let (rss, _) = server.rss();
    let stats = server.stats().await?;
    let total = stats.total.unwrap_or_default();
    let charged = total.memory_bytes + total.snapshot_bytes;
    let ratio = loaded.value_at_quantile(0.99) as f64 / quiet.value_at_quantile(0.99) as f64;
    println!(
        "readers: HSet p99 quiet {:.0} us, with 10 stalled readers {:.0} us ({ratio:.2}x, goal \
         <= 2x: {}); stored {:.1} MiB + left behind for readers {:.1} MiB = charged {:.1} MiB; \
         RSS {:.1} MiB ({:.1} MiB before the readers)",
        quiet.value_at_quantile(0.99) as f64 / 1000.0,
        loaded.value_at_quantile(0.99) as f64 / 1000.0,
        verdict(ratio <= 2.0),
        mib(total.memory_bytes),
        mib(total.snapshot_bytes),
        mib(charged),
        mib(rss),
        mib(base),
    );
    let rss_vs_charged = rss.saturating_sub(empty) as f64 / charged as f64;
    println!(
        "readers: (RSS - RSS of the empty server, {:.1} MiB) / charged = {rss_vs_charged:.2}, \
         goal within 15%: {}",
        mib(empty),
        verdict((rss_vs_charged - 1.0).abs() <= 0.15)
    );
    let started = Instant::now();
    loop {
        let left = server
            .stats()
            .await?
            .total
            .map_or(0, |total| total.snapshot_bytes);
        if left == 0 || started.elapsed() > Duration::from_secs(30) {
            println!(
                "readers: snapshots held {:.1} s more, until the 10 s deadline; left behind now \
                 {:.1} MiB, RSS {:.1} MiB",
                started.elapsed().as_secs_f64(),
                mib(left),
                mib(server.rss().0)
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(calls);
    Ok(())
}

async fn hset_latencies(
    collection: &mut CollectionServiceClient<Channel>,
    key: &Bytes,
    count: usize,
) -> Result<Histogram<u64>, Failure> {
    let mut histogram = Histogram::<u64>::new(3)?;
    for at in 0..count {
        let started = Instant::now();
        collection
            .h_set(pb::HSetRequest {
                key: key.clone(),
                fields: vec![pb::FieldValue {
                    field: Bytes::from(format!("field:{:07}", at * 97 % 300_000)),
                    value: Bytes::from_static(b"changed"),
                }],
                ..Default::default()
            })
            .await?;
        histogram.record(started.elapsed().as_nanos() as u64)?;
    }
    Ok(histogram)
}

/// Latencies of `count` sequential unary Gets over `channel`.
async fn get_latencies(channel: Channel, count: usize) -> Result<Histogram<u64>, Failure> {
    let mut cache = CacheServiceClient::new(channel);
    let mut histogram = Histogram::<u64>::new(3)?;
    for _ in 0..count {
        let started = Instant::now();
        cache
            .get(pb::GetRequest {
                key: Bytes::from_static(b"k"),
                ..Default::default()
            })
            .await?;
        histogram.record(started.elapsed().as_nanos() as u64)?;
    }
    Ok(histogram)
}

/// The frames of a rapid-reset flood on a new connection: the preface, an
/// empty SETTINGS, then `calls` HEADERS each followed at once by its
/// RST_STREAM (CVE-2023-44487). HPACK fields are literals, never indexed.
fn reset_flood(calls: u32) -> Vec<u8> {
    fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
    }
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/shoal.v1.CacheService/Get"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
    ] {
        block.push(0x10);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, 0x4, 0, 0, &[]);
    for at in 0..calls {
        let stream = 2 * at + 1;
        frame(&mut out, 0x1, 0x4, stream, &block);
        frame(&mut out, 0x3, 0, stream, &0x8u32.to_be_bytes());
    }
    out
}

/// A rapid-reset flood: one attacker writes 10 000 HEADERS + RST_STREAM
/// pairs on a connection, and reconnects each time the server closes it,
/// while a well-behaved client on another connection times its Gets.
async fn resets() -> Result<(), Failure> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start("", &[]).await?;
    let channel = server.channel().await?;
    get_latencies(channel.clone(), 500).await?;
    let quiet = get_latencies(channel.clone(), 3000).await?;
    let (before, _) = server.rss();
    let flood = std::sync::Arc::new(reset_flood(10_000));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attacker = {
        let (flood, stop, addr) = (flood.clone(), stop.clone(), server.addr);
        tokio::spawn(async move {
            let mut connections = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(mut tcp) = TcpStream::connect(addr).await else {
                    continue;
                };
                connections += 1;
                let (mut read, mut write) = tcp.split();
                // Read whatever the server says (GOAWAY) so that it is never
                // blocked writing to the attacker.
                let drain = async {
                    let mut sink = vec![0; 64 * 1024];
                    while read.read(&mut sink).await.is_ok_and(|n| n > 0) {}
                };
                let send = async {
                    let _ = write.write_all(&flood).await;
                    let _ = write.shutdown().await;
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    tokio::join!(drain, send)
                })
                .await;
            }
            connections
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let flooded = get_latencies(channel.clone(), 3000).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let connections = attacker.await?;
    let (after, peak) = server.rss();
    let ratio = flooded.value_at_quantile(0.99) as f64 / quiet.value_at_quantile(0.99) as f64;
    println!(
        "resets: Get p99 quiet {:.0} us, during a rapid-reset flood {:.0} us ({ratio:.2}x, goal \
         <= 2x: {}); the attacker opened {connections} connections of 10 000 resets each; RSS \
         {:.1} MiB before, {:.1} MiB after (peak {:.1} MiB)",
        quiet.value_at_quantile(0.99) as f64 / 1000.0,
        flooded.value_at_quantile(0.99) as f64 / 1000.0,
        verdict(ratio <= 2.0),
        mib(before),
        mib(after),
        mib(peak),
    );
    Ok(())
}

/// 2 000 idle HTTP/2 connections (handshake done, no call): the memory each
/// costs the server, and a well-behaved client's p99 beside them.
async fn idle() -> Result<(), Failure> {
    raise_open_file_limit(4096)?;
    let server = Server::start("", &[]).await?;
    let channel = server.channel().await?;
    get_latencies(channel.clone(), 500).await?;
    let quiet = get_latencies(channel.clone(), 3000).await?;
    let (before, _) = server.rss();
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(Http2::connect(server.addr, 65_535).await?);
    }
    // Every handshake is complete once a call on each would be accepted.
    for connection in &mut idle {
        connection.send.clone().ready().await?;
    }
    let open = server.stats().await?.connections_open;
    let (after, _) = server.rss();
    let loaded = get_latencies(channel.clone(), 3000).await?;
    let ratio = loaded.value_at_quantile(0.99) as f64 / quiet.value_at_quantile(0.99) as f64;
    println!(
        "idle: {open} connections open; RSS grew {:.1} MiB, {:.1} KiB per idle connection; Get \
         p99 quiet {:.0} us, beside them {:.0} us ({ratio:.2}x, goal <= 2x: {})",
        mib(after.saturating_sub(before)),
        after.saturating_sub(before) as f64 / 2000.0 / 1024.0,
        quiet.value_at_quantile(0.99) as f64 / 1000.0,
        loaded.value_at_quantile(0.99) as f64 / 1000.0,
        verdict(ratio <= 2.0),
    );
    drop(idle);
    Ok(())
}

/// SIGTERM while a Watch and a health Watch are open: the time from the
/// signal to the process's exit.
async fn shutdown() -> Result<(), Failure> {
    let mut server = Server::start("", &[]).await?;
    let channel = server.channel().await?;
    let mut watch = WatchServiceClient::new(channel.clone());
    let mut events = watch.watch(pb::WatchRequest::default()).await?.into_inner();
    events.message().await?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let mut statuses = health
        .watch(tonic_health::pb::HealthCheckRequest::default())
        .await?
        .into_inner();
    statuses.message().await?;
    get_once(channel).await?;
    let signalled = Instant::now();
    Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()?;
    let exited = loop {
        if server.child.try_wait()?.is_some() {
            break signalled.elapsed();
        }
        if signalled.elapsed() > Duration::from_secs(30) {
            break signalled.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    println!(
        "shutdown: a Watch and a health Watch open, last unary call answered; exited {:.0} ms \
         after SIGTERM, goal <= 1000 ms: {}",
        exited.as_secs_f64() * 1000.0,
        verdict(exited <= Duration::from_secs(1))
    );
    Ok(())
}

/// Eight writers of values from 64 B to 8 MiB (sizes spread evenly on a log
/// scale) for ten seconds, under `--max-memory 32M`; RSS sampled every
/// 20 ms, and again after two seconds at rest.
async fn storm() -> Result<(), Failure> {
    let budget: u64 = 32 << 20;
    let server = Server::start("", &["--max-memory", "32M"]).await?;
    let (base, _) = server.rss();
    let until = Instant::now() + Duration::from_secs(10);
    let mut writers = Vec::new();
    for writer in 0..8u64 {
        let channel = server.channel().await?;
        writers.push(tokio::spawn(async move {
            let mut cache = CacheServiceClient::new(channel)
                .max_encoding_message_size(32 << 20)
                .max_decoding_message_size(32 << 20);
            let mut rng = rand::rngs::StdRng::seed_from_u64(writer);
            let (mut written, mut refused) = (0u64, 0u64);
            let mut at = 0u64;
            while Instant::now() < until {
                let size = 2f64.powf(rng.random_range(6.0..=23.0)) as usize;
                let value = Bytes::from(vec![b'v'; size]);
                let request = pb::SetRequest {
                    key: Bytes::from(format!("w{writer}:{}", at % 64)),
                    value,
                    ..Default::default()
                };
                match cache.set(request).await {
                    Ok(_) => written += size as u64,
                    Err(status) if status.code() == tonic::Code::ResourceExhausted => refused += 1,
                    Err(_) => {}
                }
                at += 1;
            }
            (written, refused, at)
        }));
    }
    let mut peak = 0;
    while Instant::now() < until {
        peak = peak.max(server.rss().0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut written, mut refused, mut calls) = (0, 0, 0);
    for writer in writers {
        let (bytes, refusals, sent) = writer.await?;
        written += bytes;
        refused += refusals;
        calls += sent;
    }
    let (_, high_water) = server.rss();
    peak = peak.max(high_water);
    // The server gives freed memory back within a second or two of going
    // quiet (see `process::allocator`).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rest, _) = server.rss();
    let stats = server.stats().await?;
    let charged = stats.total.map_or(0, |total| total.memory_bytes);
    let peak_goal = 2 * budget + base;
    let rest_goal = budget + budget * 15 / 100 + base;
    println!(
        "storm: 8 writers, {:.0} MiB written in 10 s, values 64 B to 8 MiB, budget 32 MiB; \
         {refused} of {calls} Sets refused with RESOURCE_EXHAUSTED (requests in flight); engine memory {:.1} MiB; RSS base {:.1} MiB, peak {:.1} MiB (goal <= 2x budget + base \
         = {:.1}: {}), at rest {:.1} MiB (goal <= budget + 15% + base = {:.1}: {})",
        mib(written),
        mib(charged),
        mib(base),
        mib(peak),
        mib(peak_goal),
        verdict(peak <= peak_goal),
        mib(rest),
        mib(rest_goal),
        verdict(rest <= rest_goal)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let chosen: Vec<String> = std::env::args().skip(1).collect();
    let wants = |name: &str| chosen.is_empty() || chosen.iter().any(|wanted| wanted == name);
    if wants("bodies") {
        bodies().await?;
    }
    if wants("sockets") {
        sockets().await?;
    }
    if wants("readers") {
        readers().await?;
    }
    if wants("shutdown") {
        shutdown().await?;
    }
    if wants("storm") {
        storm().await?;
    }
    if wants("resets") {
        resets().await?;
    }
    if wants("idle") {
        idle().await?;
    }
    Ok(())
}
