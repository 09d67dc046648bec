//! The `shoal` binary against a real server: what a person types and reads.

use std::process::{Command, Output};

use serde_json::Value;
use shoal_server::testing::TestServer;

/// Runs `shoal --addr <server> args...` off the async runtime.
async fn shoal(server: &TestServer, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
    command.arg("--addr").arg(server.endpoint()).args(args);
    command.env_remove("SHOAL_NAMESPACE");
    tokio::task::spawn_blocking(move || command.output().expect("run shoal"))
        .await
        .expect("join")
}

/// Runs a command that must succeed and returns its standard output.
async fn ok(server: &TestServer, args: &[&str]) -> String {
    let output = shoal(server, args).await;
    assert!(
        output.status.success(),
        "shoal {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

async fn json(server: &TestServer, args: &[&str]) -> Value {
    let mut with_json = vec!["--json"];
    with_json.extend_from_slice(args);
    serde_json::from_str(&ok(server, &with_json).await).expect("valid JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strings_ttls_and_counters_from_the_command_line() {
    let server = TestServer::start().await;
    assert_eq!(
        ok(&server, &["set", "greeting", "hello", "--ttl", "60000"]).await,
        "OK\n"
    );
    assert_eq!(ok(&server, &["get", "greeting"]).await, "hello\n");
    assert_eq!(ok(&server, &["get", "missing"]).await, "(nil)\n");
    let ttl: i64 = ok(&server, &["ttl", "greeting"])
        .await
        .trim()
        .parse()
        .expect("ms");
    assert!(ttl > 0 && ttl <= 60_000);
    assert_eq!(ok(&server, &["ttl", "missing"]).await, "-2\n");
    assert_eq!(ok(&server, &["persist", "greeting"]).await, "1\n");
    assert_eq!(ok(&server, &["ttl", "greeting"]).await, "-1\n");
    assert_eq!(ok(&server, &["expire", "greeting", "5000"]).await, "1\n");
    assert_eq!(ok(&server, &["expire", "missing", "5000"]).await, "0\n");

    assert_eq!(ok(&server, &["incr", "visits"]).await, "1\n");
    assert_eq!(ok(&server, &["incr", "visits", "10"]).await, "11\n");
    assert_eq!(ok(&server, &["decr", "visits", "2"]).await, "9\n");

    let got = json(&server, &["get", "greeting"]).await;
    assert_eq!(got["found"], true);
    assert_eq!(got["value"], "hello");
    assert_eq!(got["meta"]["type"], "string");

    let described = ok(&server, &["describe", "greeting", "visits", "nope"]).await;
    let lines: Vec<_> = described.lines().collect();
    assert_eq!(lines.len(), 4, "{described}");
    assert!(lines[0].starts_with("KEY"));
    assert!(lines[3].starts_with("nope") && lines[3].contains("no"));

    assert_eq!(ok(&server, &["del", "greeting", "nope"]).await, "1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_count_flush_stats_and_namespaces() {
    let server = TestServer::start().await;
    for key in ["user:1", "user:2", "order:1"] {
        ok(&server, &["-n", "shop", "set", key, "v"]).await;
    }
    let mut users: Vec<_> = ok(&server, &["-n", "shop", "scan", "user:*"])
        .await
        .lines()
        .map(str::to_string)
        .collect();
    users.sort();
    assert_eq!(users, ["user:1", "user:2"]);
    let all = json(&server, &["-n", "shop", "scan", "--count", "1"]).await;
    assert_eq!(all["keys"].as_array().map(Vec::len), Some(3));
    assert_eq!(ok(&server, &["-n", "shop", "count"]).await, "3\n");
    assert_eq!(
        ok(&server, &["count"]).await,
        "0\n",
        "the default namespace is separate"
    );

    let stats = json(&server, &["stats"]).await;
    assert_eq!(stats["total"]["keys"], 3);
    let human = ok(&server, &["stats"]).await;
    assert!(human.contains("shop") && human.contains("HIT%"), "{human}");
    assert_eq!(ok(&server, &["namespaces"]).await, "shop\n");

    let refused = shoal(&server, &["-n", "shop", "flush"]).await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    assert_eq!(ok(&server, &["-n", "shop", "count"]).await, "3\n");
    assert_eq!(ok(&server, &["-n", "shop", "flush", "--yes"]).await, "3\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_with_the_servers_message() {
    let server = TestServer::start().await;
    let output = shoal(&server, &["set", "", "v"]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("key must not be empty") && stderr.contains("InvalidArgument"),
        "{stderr}"
    );

    let output = shoal(&server, &["scan", "[unclosed"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("pattern"));

    let output = shoal(&server, &["set", "k", "v", "--nx", "--xx"]).await;
    assert_eq!(
        output.status.code(),
        Some(2),
        "conflicting flags are a usage error"
    );
    assert_eq!(ok(&server, &["get", "k"]).await, "(nil)\n");
}
