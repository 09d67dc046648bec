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

    ok(&server, &["-n", "shop", "set", "k", "v"]).await;
    let refused = shoal(&server, &["-n", "shop", "drop-namespace"]).await;
    assert!(!refused.status.success());
    assert_eq!(
        ok(&server, &["-n", "shop", "drop-namespace", "--yes"]).await,
        "1\n"
    );
    assert_eq!(ok(&server, &["namespaces"]).await, "");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_from_the_command_line() {
    let server = TestServer::start().await;
    assert_eq!(
        ok(
            &server,
            &["hset", "pos:AAPL", "qty", "100", "avg", "187.40"]
        )
        .await,
        "2\n"
    );
    assert_eq!(
        ok(&server, &["hset", "pos:AAPL", "qty", "120", "side", "long"]).await,
        "1\n"
    );
    assert_eq!(ok(&server, &["hget", "pos:AAPL", "qty"]).await, "120\n");
    assert_eq!(ok(&server, &["hget", "pos:AAPL", "nope"]).await, "(nil)\n");
    assert_eq!(
        ok(&server, &["hmget", "pos:AAPL", "side", "nope", "avg"]).await,
        "long\n(nil)\n187.40\n"
    );
    assert_eq!(
        ok(&server, &["hgetall", "pos:AAPL"]).await,
        "avg\t187.40\nqty\t120\nside\tlong\n"
    );
    assert_eq!(
        ok(&server, &["hkeys", "pos:AAPL"]).await,
        "avg\nqty\nside\n"
    );
    assert_eq!(
        ok(&server, &["hincrby", "pos:AAPL", "qty", "-20"]).await,
        "100\n"
    );
    assert_eq!(ok(&server, &["hexists", "pos:AAPL", "qty"]).await, "1\n");
    assert_eq!(ok(&server, &["hlen", "pos:AAPL"]).await, "3\n");

    let all = json(&server, &["hgetall", "pos:AAPL"]).await;
    assert_eq!(
        all,
        serde_json::json!({ "avg": "187.40", "qty": "100", "side": "long" })
    );
    let got = json(&server, &["hget", "pos:AAPL", "side"]).await;
    assert_eq!(got, serde_json::json!({ "found": true, "value": "long" }));

    assert_eq!(
        ok(&server, &["hdel", "pos:AAPL", "avg", "side", "qty", "nope"]).await,
        "3\n"
    );
    assert_eq!(ok(&server, &["hgetall", "pos:AAPL"]).await, "");
    assert_eq!(
        ok(&server, &["describe", "pos:AAPL"])
            .await
            .lines()
            .nth(1)
            .map(|l| l.contains("no")),
        Some(true),
        "an emptied hash disappears"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_keep_the_last_n_from_the_command_line() {
    let server = TestServer::start().await;
    for (i, message) in ["m1", "m2", "m3", "m4", "m5"].into_iter().enumerate() {
        let length = ok(&server, &["rpush", "chat", message]).await;
        // Trimmed to 3 after every push, so at most 4 right after one.
        assert_eq!(length, format!("{}\n", i.min(3) + 1));
        ok(&server, &["ltrim", "chat", "-3", "-1"]).await;
    }
    assert_eq!(ok(&server, &["llen", "chat"]).await, "3\n");
    assert_eq!(
        ok(&server, &["lrange", "chat", "0", "-1"]).await,
        "m3\nm4\nm5\n"
    );
    assert_eq!(
        ok(&server, &["lrange", "chat", "-2", "-1"]).await,
        "m4\nm5\n"
    );
    assert_eq!(ok(&server, &["lindex", "chat", "-1"]).await, "m5\n");
    assert_eq!(ok(&server, &["lindex", "chat", "10"]).await, "(nil)\n");

    assert_eq!(ok(&server, &["lpush", "chat", "m2", "m1"]).await, "5\n");
    assert_eq!(ok(&server, &["lset", "chat", "0", "first"]).await, "OK\n");
    assert_eq!(ok(&server, &["lpop", "chat"]).await, "first\n");
    assert_eq!(ok(&server, &["rpop", "chat", "2"]).await, "m5\nm4\n");
    let rest = json(&server, &["lrange", "chat", "0", "-1"]).await;
    assert_eq!(rest, serde_json::json!({ "values": ["m2", "m3"] }));

    assert_eq!(ok(&server, &["lpush", "nope", "v", "--xx"]).await, "0\n");
    assert_eq!(ok(&server, &["lpop", "nope"]).await, "(nil)\n");
    assert_eq!(ok(&server, &["lrange", "nope", "0", "-1"]).await, "");

    let output = shoal(&server, &["lset", "nope", "0", "v"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("NotFound"));
    let output = shoal(&server, &["lset", "chat", "5", "v"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("OutOfRange"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_from_the_command_line() {
    let server = TestServer::start().await;
    assert_eq!(
        ok(&server, &["sadd", "tag:red", "img:2", "img:1", "img:2"]).await,
        "2\n"
    );
    assert_eq!(
        ok(&server, &["sadd", "tag:round", "img:2", "img:3"]).await,
        "2\n"
    );
    assert_eq!(
        ok(&server, &["smembers", "tag:red"]).await,
        "img:1\nimg:2\n"
    );
    assert_eq!(ok(&server, &["scard", "tag:red"]).await, "2\n");
    assert_eq!(ok(&server, &["sismember", "tag:red", "img:1"]).await, "1\n");
    assert_eq!(
        ok(&server, &["smismember", "tag:red", "img:3", "img:2"]).await,
        "0\n1\n"
    );
    assert_eq!(
        ok(&server, &["sinter", "tag:red", "tag:round"]).await,
        "img:2\n"
    );
    assert_eq!(
        ok(&server, &["sunion", "tag:red", "tag:round"]).await,
        "img:1\nimg:2\nimg:3\n"
    );
    assert_eq!(
        ok(&server, &["sdiff", "tag:red", "tag:round"]).await,
        "img:1\n"
    );
    assert_eq!(ok(&server, &["sinter", "tag:red", "missing"]).await, "");
    let members = json(&server, &["smembers", "tag:round"]).await;
    assert_eq!(
        members,
        serde_json::json!({ "members": ["img:2", "img:3"] })
    );

    assert_eq!(
        ok(&server, &["srem", "tag:round", "img:3", "img:9"]).await,
        "1\n"
    );
    assert_eq!(ok(&server, &["spop", "tag:round"]).await, "img:2\n");
    assert_eq!(ok(&server, &["spop", "tag:round"]).await, "(nil)\n");
    assert_eq!(
        ok(&server, &["srandmember", "tag:red", "-3"])
            .await
            .lines()
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_on_the_wrong_type_fail_with_wrongtype() {
    let server = TestServer::start().await;
    ok(&server, &["set", "greeting", "hello"]).await;
    for args in [
        &["hset", "greeting", "f", "v"][..],
        &["rpush", "greeting", "v"],
        &["smembers", "greeting"],
    ] {
        let output = shoal(&server, args).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("WRONGTYPE"), "{args:?}: {stderr}");
    }
    assert_eq!(
        ok(&server, &["get", "greeting"]).await,
        "hello\n",
        "a failed command changes nothing"
    );

    ok(&server, &["sadd", "s", "a"]).await;
    let output = shoal(&server, &["get", "s"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("WRONGTYPE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_from_the_command_line() {
    let server = TestServer::start().await;
    assert_eq!(ok(&server, &["mset", "a", "1", "b", "2"]).await, "OK\n");
    assert_eq!(
        ok(&server, &["mget", "a", "missing", "b"]).await,
        "1\n(nil)\n2\n"
    );
    let values = json(&server, &["mget", "a", "missing"]).await;
    assert_eq!(values, serde_json::json!(["1", null]));
    let odd = shoal(&server, &["mset", "a", "1", "b"]).await;
    assert!(!odd.status.success());
    assert!(String::from_utf8_lossy(&odd.stderr).contains("KEY VALUE pairs"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_events_until_its_count() {
    let server = TestServer::start().await;
    let watcher = {
        let endpoint = server.endpoint();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_shoal"))
                .args([
                    "--addr", &endpoint, "watch", "--prefix", "user:", "--count", "2",
                ])
                .env_remove("SHOAL_NAMESPACE")
                .output()
                .expect("run shoal watch")
        })
    };
    // Writes until the watcher has seen two of them: it may subscribe after
    // the first few.
    let mut round = 0;
    while !watcher.is_finished() {
        round += 1;
        ok(&server, &["set", &format!("user:{round}"), "x"]).await;
        ok(&server, &["set", "order:1", "ignored"]).await;
        assert!(round < 10_000, "the watcher never finished");
    }
    let output = watcher.await.expect("join");
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines.iter().all(|line| line.starts_with("set user:")),
        "{text}"
    );
}
