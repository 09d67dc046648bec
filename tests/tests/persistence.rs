//! Persistence end to end: restarts keep data in each mode, a namespace
//! that opts out comes back empty, a second server on a data directory is
//! refused, a damaged log stops the start naming file and offset, a
//! repair refuses a directory in use and salvages a stopped one, and a
//! kill -9 checker: concurrent writers record every acknowledged write,
//! the server process is killed at random moments, and after each restart
//! every acknowledged write must be there or superseded by a later write
//! of the same key.
//!
//! `SHOAL_KILL_CYCLES` raises the checker's cycles per fsync policy (25 by
//! default, 50 in all).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use shoal_proto::v1 as pb;
use shoal_proto::v1::cache_service_client::CacheServiceClient;
use shoal_server::Config;
use shoal_tests::process::{ChildServer, free_port, server_binary};
use shoal_tests::{TestServer, b, get_request, raw, set_request};
use tonic::transport::Channel;

/// A configuration with persistence as `section` says (TOML lines of the
/// `[persistence]` table), its data in `dir`, and `extra` TOML after.
fn config(dir: &Path, section: &str, extra: &str) -> Config {
    let text = format!(
        "[admin]\nlisten = \"off\"\n[persistence]\ndata_dir = {:?}\n{section}\n{extra}",
        dir.display().to_string()
    );
    Config::from_toml(&text, Path::new("test.toml")).expect("config")
}

async fn get(raw: &mut shoal_tests::Raw, namespace: &str, key: &str) -> Option<String> {
    let mut request = get_request(key);
    request.namespace = namespace.to_string();
    let reply = raw.cache.get(request).await.expect("get").into_inner();
    reply
        .found
        .then(|| String::from_utf8(reply.value.to_vec()).expect("utf-8"))
}

/// Writes of several kinds, then checks them after a clean restart.
async fn restart_keeps(section: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(config(dir.path(), section, "")).await;
    let mut client = raw(&server).await;
    client
        .cache
        .set(set_request("kept", "v1"))
        .await
        .expect("set");
    client
        .cache
        .set(set_request("kept", "v2"))
        .await
        .expect("set");
    client
        .cache
        .set(set_request("gone", "x"))
        .await
        .expect("set");
    client
        .cache
        .delete(pb::DeleteRequest {
            keys: vec![b("gone")],
            ..Default::default()
        })
        .await
        .expect("delete");
    for _ in 0..3 {
        client
            .cache
            .increment(pb::IncrementRequest {
                key: b("counter"),
                delta: 7,
                ..Default::default()
            })
            .await
            .expect("increment");
    }
    let mut other = set_request("elsewhere", "y");
    other.namespace = "orders".into();
    client.cache.set(other).await.expect("set");
    drop(client);
    server.stop().await.expect("clean stop");

    let server = TestServer::start_with(config(dir.path(), section, "")).await;
    let mut client = raw(&server).await;
    assert_eq!(
        get(&mut client, "", "kept").await.as_deref(),
        Some("v2"),
        "{section}"
    );
    assert_eq!(get(&mut client, "", "gone").await, None, "{section}");
    assert_eq!(
        get(&mut client, "", "counter").await.as_deref(),
        Some("21"),
        "{section}"
    );
    assert_eq!(
        get(&mut client, "orders", "elsewhere").await.as_deref(),
        Some("y")
    );
    let stats = shoal_tests::stats(&mut client).await;
    let status = stats.persistence.expect("persistence status");
    assert!(section.contains(&status.mode), "{section}: {status:?}");
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn log_with_fsync_always_keeps_data_across_a_restart() {
    restart_keeps("mode = \"log\"\nfsync = \"always\"").await;
}

#[tokio::test]
async fn log_with_fsync_everysec_keeps_data_across_a_restart() {
    restart_keeps("mode = \"log\"\nfsync = \"everysec\"").await;
}

#[tokio::test]
async fn log_with_fsync_no_keeps_data_across_a_restart() {
    restart_keeps("mode = \"log\"\nfsync = \"no\"").await;
}

#[tokio::test]
async fn snapshot_mode_keeps_data_across_a_clean_restart() {
    restart_keeps("mode = \"snapshot\"").await;
}

#[tokio::test]
async fn on_demand_snapshot_reports_itself_and_covers_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let section = "mode = \"log\"\nsnapshot_interval = \"0\"\nsnapshot_log_bytes = 0";
    let server = TestServer::start_with(config(dir.path(), section, "")).await;
    let mut client = raw(&server).await;
    for index in 0..20 {
        client
            .cache
            .set(set_request(&format!("k{index}"), "v"))
            .await
            .expect("set");
    }
    let snapshot = client
        .admin
        .snapshot(pb::SnapshotRequest {})
        .await
        .expect("snapshot")
        .into_inner();
    assert_eq!(snapshot.keys, 20);
    assert!(snapshot.bytes > 0);
    assert!(dir.path().join(&snapshot.name).exists());
    let status = shoal_tests::stats(&mut client)
        .await
        .persistence
        .expect("status");
    assert_eq!(status.last_snapshot_name, snapshot.name);
    assert_eq!(status.last_snapshot_keys, 20);
    assert_eq!(status.snapshots, 1);
    drop(client);
    server.stop().await.expect("clean stop");

    let server = TestServer::start_with(config(dir.path(), section, "")).await;
    let mut client = raw(&server).await;
    let status = shoal_tests::stats(&mut client)
        .await
        .persistence
        .expect("status");
    assert_eq!(status.start_snapshot_keys, 20, "{status:?}");
    assert_eq!(get(&mut client, "", "k19").await.as_deref(), Some("v"));
}

#[tokio::test]
async fn snapshot_is_refused_with_persistence_off() {
    let server = TestServer::start().await;
    let mut client = raw(&server).await;
    let status = client
        .admin
        .snapshot(pb::SnapshotRequest {})
        .await
        .expect_err("no persistence");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(status.message().contains("--persistence"), "{status:?}");
    assert!(shoal_tests::stats(&mut client).await.persistence.is_none());
}

#[tokio::test]
async fn a_namespace_that_opts_out_comes_back_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let section = "mode = \"log\"";
    let extra = "[namespaces.scratch]\npersistence = false";
    let server = TestServer::start_with(config(dir.path(), section, extra)).await;
    let mut client = raw(&server).await;
    for namespace in ["scratch", "kept"] {
        let mut request = set_request("key", "value");
        request.namespace = namespace.into();
        client.cache.set(request).await.expect("set");
    }
    client
        .admin
        .snapshot(pb::SnapshotRequest {})
        .await
        .expect("snapshot");
    let mut request = set_request("later", "value");
    request.namespace = "scratch".into();
    client.cache.set(request).await.expect("set");
    drop(client);
    server.stop().await.expect("clean stop");

    let server = TestServer::start_with(config(dir.path(), section, extra)).await;
    let mut client = raw(&server).await;
    assert_eq!(
        get(&mut client, "kept", "key").await.as_deref(),
        Some("value")
    );
    assert_eq!(get(&mut client, "scratch", "key").await, None);
    assert_eq!(get(&mut client, "scratch", "later").await, None);
}

/// A child server logging to `dir` with `fsync`.
fn spawn_logging(dir: &Path, fsync: &str, addr: SocketAddr) -> ChildServer {
    let mut args: Vec<std::ffi::OsString> =
        ["--persistence", "log", "--fsync", fsync, "--data-dir"]
            .iter()
            .map(Into::into)
            .collect();
    args.push(dir.into());
    ChildServer::spawn(addr, args)
}

/// Runs a server binary to its exit; returns its status and stderr.
fn run_to_exit(dir: &Path) -> (std::process::ExitStatus, String) {
    let mut child = spawn_logging(dir, "everysec", free_port());
    let mut stderr = String::new();
    for _ in 0..600 {
        if let Some(status) = child.child.try_wait().expect("try_wait") {
            use std::io::Read as _;
            if let Some(mut pipe) = child.child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            return (status, stderr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("shoal-server kept running");
}

#[tokio::test]
async fn a_second_server_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(config(dir.path(), "mode = \"log\"", "")).await;
    let (status, stderr) = run_to_exit(dir.path());
    assert!(!status.success());
    let line = stderr
        .lines()
        .find(|line| line.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in {stderr}"));
    assert!(line.contains(&dir.path().display().to_string()), "{line}");
    assert!(line.contains("in use by another shoal-server"), "{line}");
    // The first one still serves.
    let mut client = raw(&server).await;
    client.cache.set(set_request("k", "v")).await.expect("set");
}

/// Sets `k0` to `k49`, each acknowledged.
async fn write_fifty_keys(client: &mut shoal_tests::Raw) {
    for index in 0..50 {
        client
            .cache
            .set(set_request(&format!("k{index}"), "some value"))
            .await
            .expect("set");
    }
}

/// Flips a byte inside the first record of the first log segment of
/// `dir`, with valid records after it; returns the segment's path and its
/// damaged bytes.
fn damage_the_first_record(dir: &Path) -> (PathBuf, Vec<u8>) {
    let segment = dir.join("log-00000000000000000001.seg");
    let mut bytes = std::fs::read(&segment).expect("segment");
    bytes[16 + 12 + 4] ^= 0xff;
    std::fs::write(&segment, &bytes).expect("damage");
    (segment, bytes)
}

#[tokio::test]
async fn a_corrupt_log_stops_the_start_naming_file_and_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(config(dir.path(), "mode = \"log\"", "")).await;
    let mut client = raw(&server).await;
    write_fifty_keys(&mut client).await;
    drop(client);
    server.stop().await.expect("clean stop");
    let (segment, _) = damage_the_first_record(dir.path());
    let (status, stderr) = run_to_exit(dir.path());
    assert!(!status.success());
    let line = stderr
        .lines()
        .find(|line| line.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in {stderr}"));
    assert!(line.contains(&segment.display().to_string()), "{line}");
    assert!(line.contains("offset 16"), "{line}");
}

/// Runs `shoal-server repair --data-dir DIR` with `extra` arguments;
/// returns its exit code, standard output and standard error.
fn run_repair(dir: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(server_binary())
        .arg("repair")
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .output()
        .expect("run shoal-server repair");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn repair_refuses_a_directory_in_use_and_salvages_a_stopped_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(config(dir.path(), "mode = \"log\"", "")).await;
    let mut client = raw(&server).await;
    write_fifty_keys(&mut client).await;
    let (code, _, stderr) = run_repair(dir.path(), &["--yes"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("in use by another shoal-server"),
        "{stderr}"
    );
    // Nothing was touched: the server still serves what it had.
    assert_eq!(
        get(&mut client, "", "k49").await.as_deref(),
        Some("some value")
    );
    drop(client);
    server.stop().await.expect("clean stop");

    let (segment, bytes) = damage_the_first_record(dir.path());
    let (code, stdout, stderr) = run_repair(dir.path(), &[]);
    assert_eq!(
        code,
        Some(1),
        "a dry run over damage exits 1: {stdout}{stderr}"
    );
    assert!(stdout.contains("log-00000000000000000001.seg"), "{stdout}");
    assert_eq!(
        std::fs::read(&segment).expect("segment"),
        bytes,
        "a dry run changed the log"
    );
    let (code, stdout, stderr) = run_repair(dir.path(), &["--yes"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        dir.path()
            .join("log-00000000000000000001.seg.damaged")
            .exists(),
        "{stdout}"
    );
    // The repaired directory starts, without what followed the damage.
    let server = TestServer::start_with(config(dir.path(), "mode = \"log\"", "")).await;
    let mut client = raw(&server).await;
    assert_eq!(get(&mut client, "", "k0").await, None);
    client
        .cache
        .set(set_request("after", "repair"))
        .await
        .expect("set");
}

/// What the checker knows of one key: its value once every acknowledged
/// write is applied, and the write in flight when the server died (which
/// may or may not have been applied).
#[derive(Debug, Clone, Default)]
struct KeyModel {
    acknowledged: Option<String>,
    pending: Option<Option<String>>,
}

type Model = Arc<Mutex<HashMap<String, KeyModel>>>;

/// One writer: sets, deletes and increments on keys of its own until a
/// call fails (the server was killed), recording each write before it is
/// sent and once it is acknowledged.
async fn writer(addr: SocketAddr, id: usize, cycle: usize, model: Model) {
    let Ok(channel) = Channel::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
    else {
        return;
    };
    let mut cache = CacheServiceClient::new(channel);
    for step in 0u64.. {
        let (key, op) = {
            let mut rng = rand::rng();
            let key = format!("w{id}-k{}", rng.random_range(0..8));
            let choice = rng.random_range(0..10);
            (key, choice)
        };
        let counter = format!("w{id}-counter");
        let (key, expected) = {
            let mut models = model.lock();
            let (key, expected) = match op {
                0..=5 => {
                    let value = format!("c{cycle}-s{step}");
                    (key, Some(value))
                }
                6 | 7 => (key, None),
                _ => {
                    let now: i64 = models
                        .get(&counter)
                        .and_then(|entry| entry.acknowledged.as_deref())
                        .map_or(0, |text| text.parse().expect("counter"));
                    (counter, Some((now + 3).to_string()))
                }
            };
            models.entry(key.clone()).or_default().pending = Some(expected.clone());
            (key, expected)
        };
        let result = match (op, &expected) {
            (0..=5, Some(value)) => cache.set(set_request(&key, value)).await.map(drop),
            (6 | 7, _) => cache
                .delete(pb::DeleteRequest {
                    keys: vec![b(&key)],
                    ..Default::default()
                })
                .await
                .map(drop),
            _ => cache
                .increment(pb::IncrementRequest {
                    key: b(&key),
                    delta: 3,
                    ..Default::default()
                })
                .await
                .map(|reply| {
                    assert_eq!(
                        Some(reply.into_inner().value.to_string()),
                        expected,
                        "increment of {key} lost an acknowledged increment"
                    );
                }),
        };
        if result.is_err() {
            return;
        }
        let mut models = model.lock();
        let entry = models.entry(key).or_default();
        entry.acknowledged = expected;
        entry.pending = None;
        drop(models);
    }
}

/// After a restart: every key holds its acknowledged value, or the value
/// of the write in flight at the kill; the model then takes what is there.
async fn check(addr: SocketAddr, model: &Model, cycle: usize, fsync: &str) {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut cache = CacheServiceClient::new(channel);
    let keys: Vec<String> = model.lock().keys().cloned().collect();
    for key in keys {
        let reply = cache
            .get(get_request(&key))
            .await
            .expect("get")
            .into_inner();
        let found = reply
            .found
            .then(|| String::from_utf8(reply.value.to_vec()).expect("utf-8"));
        let mut models = model.lock();
        let entry = models.get_mut(&key).expect("modelled");
        let allowed = found == entry.acknowledged
            || entry
                .pending
                .as_ref()
                .is_some_and(|pending| *pending == found);
        assert!(
            allowed,
            "fsync {fsync}, cycle {cycle}: {key} is {found:?}; acknowledged {:?}, in flight {:?}",
            entry.acknowledged, entry.pending
        );
        entry.acknowledged = found;
        entry.pending = None;
    }
}

async fn kill_loop(fsync: &str) {
    let cycles: usize = std::env::var("SHOAL_KILL_CYCLES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(25);
    let dir = tempfile::tempdir().expect("tempdir");
    let model: Model = Arc::default();
    let mut acknowledged_writes = 0usize;
    for cycle in 0..cycles {
        let mut server = spawn_logging(dir.path(), fsync, free_port());
        server.ready().await;
        if cycle > 0 {
            check(server.addr, &model, cycle, fsync).await;
        }
        let writers: Vec<_> = (0..4)
            .map(|id| tokio::spawn(writer(server.addr, id, cycle, Arc::clone(&model))))
            .collect();
        let wait = rand::rng().random_range(20..120);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        server.kill();
        for writer in writers {
            tokio::time::timeout(Duration::from_secs(30), writer)
                .await
                .expect("writer ends once the server is gone")
                .expect("writer");
        }
        acknowledged_writes += model
            .lock()
            .values()
            .filter(|entry| entry.acknowledged.is_some())
            .count();
    }
    let mut server = spawn_logging(dir.path(), fsync, free_port());
    server.ready().await;
    check(server.addr, &model, cycles, fsync).await;
    assert!(
        acknowledged_writes > 0,
        "the writers got nothing acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_write_with_fsync_everysec() {
    kill_loop("everysec").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_write_with_fsync_always() {
    kill_loop("always").await;
}

#[tokio::test]
async fn pipelined_and_batched_writes_are_answered_once_logged_and_survive() {
    use tokio_stream::StreamExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let section = "mode = \"log\"\nfsync = \"always\"";
    let server = TestServer::start_with(config(dir.path(), section, "")).await;
    let mut client = raw(&server).await;
    let commands: Vec<pb::PipelineRequest> = (0..100u64)
        .map(|id| pb::PipelineRequest {
            id: id + 1,
            command: Some(pb::pipeline_request::Command::Set(set_request(
                &format!("p{id}"),
                &format!("v{id}"),
            ))),
        })
        .collect();
    let mut replies = client
        .batch
        .pipeline(tokio_stream::iter(commands))
        .await
        .expect("pipeline")
        .into_inner();
    let mut answered = 0;
    while let Some(reply) = replies.next().await {
        let reply = reply.expect("reply");
        assert!(
            matches!(reply.result, Some(pb::pipeline_response::Result::Set(_))),
            "{reply:?}"
        );
        answered += 1;
    }
    assert_eq!(answered, 100);
    let items = (0..50)
        .map(|index| pb::SetBatchItem {
            key: b(&format!("s{index}")),
            value: b("batched"),
            ..Default::default()
        })
        .collect();
    let chunk = pb::SetBatchRequest {
        items,
        ..Default::default()
    };
    let mut results = client
        .batch
        .set_batch(tokio_stream::iter([chunk]))
        .await
        .expect("set batch")
        .into_inner();
    while let Some(reply) = results.next().await {
        reply.expect("chunk reply");
    }
    drop(client);
    server.stop().await.expect("clean stop");

    let server = TestServer::start_with(config(dir.path(), section, "")).await;
    let mut client = raw(&server).await;
    assert_eq!(get(&mut client, "", "p99").await.as_deref(), Some("v99"));
    assert_eq!(
        get(&mut client, "", "s49").await.as_deref(),
        Some("batched")
    );
}
