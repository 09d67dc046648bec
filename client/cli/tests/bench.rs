//! `shoal bench` as a script runs it: the real binary against a real server
//! and against the no-op peer, with tiny request counts.

use std::process::{Command, Output};

use serde_json::Value;
use shoal_server::testing::TestServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Every test `shoal bench` has, in its default order.
const ALL_TESTS: &str = "set,get,incr,lpush,sadd,hset,hget,mset,mget,pipeline,delete";

/// Runs `shoal --addr <addr> args...` off the async runtime.
async fn shoal(addr: &str, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
    command.arg("--addr").arg(addr).args(args);
    command.env_remove("SHOAL_NAMESPACE");
    tokio::task::spawn_blocking(move || command.output().expect("run shoal"))
        .await
        .expect("join")
}

/// Runs a benchmark with `--json` that must succeed; one object per line.
async fn bench_json(addr: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json", "bench"];
    all.extend_from_slice(args);
    let output = shoal(addr, &all).await;
    assert!(
        output.status.success(),
        "shoal {all:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8 output")
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

/// Checks the shape every report has, and that `requests` all succeeded.
fn assert_report(report: &Value, test: &str, requests: u64, items_per_request: u64) {
    assert_eq!(report["test"], test, "{report}");
    assert_eq!(report["requests"], requests, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["items"], requests * items_per_request, "{report}");
    assert!(report["first_error"].is_null(), "{report}");
    let number = |field: &str| {
        report[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} missing: {report}"))
    };
    assert!(number("seconds") > 0.0, "{report}");
    assert!(number("requests_per_sec") > 0.0, "{report}");
    let ratio = number("items_per_sec") / number("requests_per_sec");
    assert!((ratio - items_per_request as f64).abs() < 1e-6, "{report}");
    let latency = |p: &str| {
        report["latency_ms"][p]
            .as_f64()
            .unwrap_or_else(|| panic!("latency_ms.{p} missing: {report}"))
    };
    let (p50, p99, p999, max) = (
        latency("p50"),
        latency("p99"),
        latency("p99_9"),
        latency("max"),
    );
    assert!(
        0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
        "{report}"
    );
    for field in [
        "concurrency",
        "connections",
        "depth",
        "value_size",
        "keyspace",
    ] {
        assert!(report[field].is_u64(), "{field}: {report}");
    }
    assert!(report["distribution"].is_string(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_test_runs_against_the_server_and_reports_json() {
    let server = TestServer::start().await;
    let reports = bench_json(
        &server.endpoint(),
        &[
            "-t",
            ALL_TESTS,
            "-n",
            "40",
            "-c",
            "4",
            "--connections",
            "2",
            "-r",
            "30",
            "-P",
            "5",
            "-d",
            "100",
            "--warmup",
            "8",
            "--namespace",
            "load",
        ],
    )
    .await;
    let tests: Vec<&str> = reports.iter().filter_map(|r| r["test"].as_str()).collect();
    assert_eq!(tests, ALL_TESTS.split(',').collect::<Vec<_>>());
    for report in &reports {
        let test = report["test"].as_str().unwrap_or_default();
        let depth = if matches!(test, "mget" | "mset") {
            5
        } else {
            1
        };
        assert_report(report, test, 40, depth);
        if matches!(test, "get" | "hget" | "mget" | "pipeline") {
            assert_eq!(report["misses"], 0, "the key space was preloaded: {report}");
        }
        assert_eq!(report["value_size"], 100);
        assert_eq!(report["connections"], 2);
    }

    // Everything went to the namespace asked for, and hget's preload wrote
    // a hash for every id of the key space (delete, last, removed strings).
    let counted = shoal(
        &server.endpoint(),
        &["-n", "load", "describe", "hash:000000000029"],
    )
    .await;
    let described = String::from_utf8_lossy(&counted.stdout);
    assert!(described.contains("hash"), "{described}");
    let default = shoal(&server.endpoint(), &["count"]).await;
    assert_eq!(String::from_utf8_lossy(&default.stdout), "0\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_output_reads_like_redis_benchmark() {
    let server = TestServer::start().await;
    let output = shoal(
        &server.endpoint(),
        &[
            "bench",
            "-q",
            "-n",
            "20",
            "-c",
            "2",
            "-r",
            "10",
            "-t",
            "get,mget,pipeline",
            "--distribution",
            "zipf",
        ],
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("GET: ") && lines[0].contains(" requests per second, p50="),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("MGET (16 keys per batch): ")
            && lines[1].contains(" keys per second, "),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("PIPELINE (16 GETs in flight per stream): "),
        "{stdout}"
    );
    assert!(lines.iter().all(|line| line.ends_with(" msec")), "{stdout}");
    assert!(output.stderr.is_empty(), "no progress bar off a terminal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_noop_peer_answers_what_bench_sends() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = oneshot::channel::<()>();
    let peer = tokio::spawn(shoal_bench::noop::serve_noop(listener, 32, async {
        let _ = stopped.await;
    }));

    let reports = bench_json(
        &addr,
        &[
            "-t",
            "set,get,incr,mset,mget,pipeline",
            "-n",
            "30",
            "-c",
            "3",
            "-r",
            "50",
            "-P",
            "4",
        ],
    )
    .await;
    assert_eq!(reports.len(), 6);
    for report in &reports {
        let test = report["test"].as_str().unwrap_or_default();
        let depth = if matches!(test, "mget" | "mset") {
            4
        } else {
            1
        };
        assert_report(report, test, 30, depth);
    }

    // What it does not implement fails loudly, request by request.
    let output = shoal(
        &addr,
        &["--json", "bench", "-t", "hset", "-n", "5", "-c", "1"],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).expect("a report still");
    assert_eq!(
        (&report["requests"], &report["errors"]),
        (&Value::from(5), &Value::from(5))
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("hset: 5 errors") && stderr.contains("Unimplemented"),
        "{stderr}"
    );

    let _ = stop.send(());
    peer.await.expect("join").expect("the peer stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_refused_before_any_request() {
    // Nothing listens here; validation must fail first.
    let addr = "http://127.0.0.1:9";
    for (args, expected) in [
        (&["bench", "-c", "0"][..], "--concurrency"),
        (&["bench", "-t", "get,zadd"], "possible values"),
        (&["bench", "-P", "0"], "--depth"),
        (
            &["bench", "-c", "2", "--connections", "3"],
            "--connections 3 is more than -c 2",
        ),
        (&["bench", "--warmup", "later"], "duration"),
    ] {
        let output = shoal(addr, args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }

    let output = shoal(addr, &["--timeout", "200", "bench", "-n", "1"]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
}
