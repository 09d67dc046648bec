//! Measures what tracing costs: unary Gets against an in-process server with
//! trace export off (the default: log lines at INFO, no span built), then on
//! (every call sampled and exported over OTLP/gRPC to an in-process receiver
//! that counts spans), and prints operations per second and their ratio.
//!
//! It also times the [`RpcLayer`](shoal_server::observe::rpc_layer::RpcLayer) alone, around a service that answers at
//! once, against that service called bare: the difference is what the
//! layer (per-call metrics, and the span when on) adds to every call, in
//! nanoseconds, next to the CPU time a whole Get takes.
//!
//! Each run is a fresh process, so that the process-wide subscriber of one
//! cannot leak into the other; runs alternate between off and on, and the
//! median of each is compared, so a noisy neighbour hurts both alike:
//!
//! ```text
//! cargo run --release -p shoal-bench --example tracing_overhead -- [GETS] [CONCURRENCY] [ROUNDS]
//! ```
//!
//! Defaults: 100000 Gets per run, 16 concurrent callers, 3 rounds.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::process::Command;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use shoal_proto::v1 as pb;
use shoal_proto::v1::cache_service_client::CacheServiceClient;
use shoal_server::Config;
use shoal_server::engine::{Engine, EngineConfig};
use shoal_server::service::ServiceState;
use shoal_server::testing::TestServer;
use shoal_tests::TraceCollector;
use tower_layer::Layer;
use tower_service::Service;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, phase, gets, concurrency] = args.as_slice()
        && flag == "--phase"
    {
        let runtime = tokio::runtime::Runtime::new()?;
        return runtime.block_on(run_phase(
            phase == "on",
            gets.parse()?,
            concurrency.parse()?,
        ));
    }
    let number = |at: usize, default: u64| args.get(at).map_or(Ok(default), |text| text.parse());
    let gets = number(0, 100_000)?;
    let concurrency = number(1, 16)?;
    let rounds = number(2, 3)?;
    println!("{gets} unary Gets per run, {concurrency} concurrent callers, {rounds} rounds");

    let mut off = Vec::new();
    let mut on = Vec::new();
    let mut layer_off = Vec::new();
    let mut layer_on = Vec::new();
    for round in 1..=rounds {
        for (phase, results, layer) in [
            ("off", &mut off, &mut layer_off),
            ("on", &mut on, &mut layer_on),
        ] {
            let output = Command::new(std::env::current_exe()?)
                .args([
                    "--phase",
                    phase,
                    &gets.to_string(),
                    &concurrency.to_string(),
                ])
                .output()?;
            let report = String::from_utf8_lossy(&output.stdout);
            if !output.status.success() {
                return Err(format!(
                    "phase {phase} failed: {report}{}",
                    String::from_utf8_lossy(&output.stderr)
                )
                .into());
            }
            print!("round {round}: {report}");
            let figure = |name: &str| -> Result<f64, Box<dyn std::error::Error>> {
                Ok(report
                    .split_whitespace()
                    .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
                    .ok_or_else(|| format!("no {name} in the report"))?
                    .parse()?)
            };
            results.push(figure("ops_per_sec")?);
            layer.push(figure("layer_ns_per_call")? - figure("bare_ns_per_call")?);
        }
    }
    let (off, on) = (median(&mut off), median(&mut on));
    let (layer_off, layer_on) = (median(&mut layer_off), median(&mut layer_on));
    // Both cores are busy serving, so a Get costs about 2 core-seconds / rate.
    let cpu_ns_per_get = 2e9 / off;
    println!(
        "median: off {off:.0} ops/s, on {on:.0} ops/s, on/off = {:.3}",
        on / off
    );
    println!(
        "RpcLayer adds {layer_off:.0} ns per call with tracing off ({:.2}% of the ~{:.0} us of CPU a Get takes), {layer_on:.0} ns with it on",
        100.0 * layer_off / cpu_ns_per_get,
        cpu_ns_per_get / 1e3
    );
    Ok(())
}

/// A gRPC service that answers OK at once, as a trailers-only response.
#[derive(Clone)]
struct AnswersAtOnce;

impl Service<http::Request<tonic::body::Body>> for AnswersAtOnce {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
        let mut response = http::Response::new(tonic::body::Body::empty());
        response
            .headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("0"));
        ready(Ok(response))
    }
}

/// Nanoseconds per call of `service` on a Get request, over `calls` calls.
fn time_calls<S, B>(mut service: S, calls: u32) -> f64
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<B>>,
{
    let started = Instant::now();
    for _ in 0..calls {
        let request = http::Request::builder()
            .uri("/shoal.v1.CacheService/Get")
            .header("grpc-timeout", "5000m")
            .body(tonic::body::Body::empty())
            .expect("request");
        let response = service.call(request).now_or_never();
        assert!(matches!(response, Some(Ok(_))));
    }
    started.elapsed().as_nanos() as f64 / f64::from(calls)
}

/// The layer's cost per call: `(with the layer, bare)`, in nanoseconds.
fn time_layer() -> (f64, f64) {
    const CALLS: u32 = 200_000;
    let feed = shoal_server::change_feed::ChangeFeed::new(16, 1);
    let state = ServiceState::new(
        Engine::new(EngineConfig::default()),
        feed,
        &shoal_server::config::Config::default(),
    );
    let layered = state
        .rpc_layer(Some(Duration::from_secs(60)))
        .layer(AnswersAtOnce);
    // Warm up, then alternate to share out any disturbance.
    time_calls(layered.clone(), CALLS / 10);
    let (mut with_layer, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        with_layer.push(time_calls(layered.clone(), CALLS));
        bare.push(time_calls(AnswersAtOnce, CALLS));
    }
    (median(&mut with_layer), median(&mut bare))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One run: a server, then `gets` Gets from `concurrency` callers.
async fn run_phase(
    tracing_on: bool,
    gets: u64,
    concurrency: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let collector = TraceCollector::start_counting().await;
    let mut config = Config::default();
    config.admin.listen = None;
    if tracing_on {
        config.telemetry.otlp_endpoint = collector.endpoint();
        config.telemetry.sampling_ratio = 1.0;
    }
    let telemetry = shoal_server::observe::telemetry::init(&config)?;
    let server = TestServer::start_with(config).await;
    let channel = tonic::transport::Endpoint::from_shared(server.endpoint())?
        .connect()
        .await?;
    let mut client = CacheServiceClient::new(channel);
    client
        .set(pb::SetRequest {
            key: Bytes::from_static(b"price:AAPL"),
            value: Bytes::from_static(b"189.12"),
            ..Default::default()
        })
        .await?;
    let get = pb::GetRequest {
        key: Bytes::from_static(b"price:AAPL"),
        ..Default::default()
    };

    // Warm up connections, allocator and caches, then measure.
    let calls = |count: u64| {
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let mut client = client.clone();
                let get = get.clone();
                tokio::spawn(async move {
                    for _ in 0..count / concurrency {
                        client.get(get.clone()).await?;
                    }
                    Ok::<_, tonic::Status>(())
                })
            })
            .collect();
        async move {
            for task in tasks {
                task.await.map_err(|error| error.to_string())??;
            }
            Ok::<_, Box<dyn std::error::Error>>(())
        }
    };
    let warm_up = gets / 10 / concurrency * concurrency;
    calls(gets / 10).await?;
    let started = Instant::now();
    calls(gets).await?;
    let elapsed = started.elapsed();

    let total = gets / concurrency * concurrency;
    let rate = total as f64 / elapsed.as_secs_f64();
    drop(client);
    server.stop().await?;
    // Spans of the calls above that reached the receiver (the batch
    // processor drops what overflows its queue).
    tokio::task::block_in_place(|| telemetry.flush());
    let spans = collector.span_count();
    let (layer_ns, bare_ns) = tokio::task::spawn_blocking(time_layer).await?;
    tokio::task::block_in_place(|| telemetry.shutdown());
    println!(
        "tracing={} ops_per_sec={rate:.0} calls={} spans_exported={spans} layer_ns_per_call={layer_ns:.0} bare_ns_per_call={bare_ns:.0}",
        if tracing_on { "on " } else { "off" },
        // The Set, the warm-up and the measured Gets; health checks add a few spans.
        1 + warm_up + total
    );
    Ok(())
}
