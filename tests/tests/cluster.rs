//! Three `shoal-server` processes on loopback as one cluster: every member
//! answers for every key (forwarding calls to the key's owner, splitting
//! batches and pipelines by owner), keys sit where the golden-vector
//! routing puts them, and a member killed with SIGKILL costs errors only
//! until the others' probes mark it down.

use std::time::Duration;

use shoal_proto::routing::Rendezvous;
use shoal_proto::v1 as pb;
use shoal_proto::v1::admin_service_client::AdminServiceClient;
use shoal_proto::v1::batch_service_client::BatchServiceClient;
use shoal_proto::v1::cache_service_client::CacheServiceClient;
use shoal_proto::v1::cluster_service_client::ClusterServiceClient;
use shoal_proto::v1::collection_service_client::CollectionServiceClient;
use shoal_tests::process::{ChildServer, free_port};
use shoal_tests::{b, get_request, set_request};
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;

const IDS: [&str; 3] = ["node-a", "node-b", "node-c"];
/// Keys written in each test.
const KEYS: usize = 300;
/// Longest a membership change may take to show: the probes' detection
/// window (2 × (250 ms + 600 ms)) with room for a loaded machine.
const CONVERGENCE: Duration = Duration::from_secs(20);

/// A member: its process and a channel to it.
struct Node {
    id: &'static str,
    server: ChildServer,
    channel: Channel,
}

impl Node {
    fn cache(&self) -> CacheServiceClient<Channel> {
        CacheServiceClient::new(self.channel.clone())
    }

    fn collection(&self) -> CollectionServiceClient<Channel> {
        CollectionServiceClient::new(self.channel.clone())
    }

    async fn topology(&self) -> pb::Topology {
        ClusterServiceClient::new(self.channel.clone())
            .get_topology(pb::GetTopologyRequest {})
            .await
            .expect("GetTopology")
            .into_inner()
            .topology
            .expect("a topology")
    }

    /// This member's own Stats, not the cluster's.
    async fn local_stats(&self) -> pb::StatsResponse {
        AdminServiceClient::new(self.channel.clone())
            .stats(pb::StatsRequest {
                local_only: true,
                ..Default::default()
            })
            .await
            .expect("Stats")
            .into_inner()
    }

    /// Keys stored on this member itself.
    async fn local_keys(&self) -> u64 {
        self.local_stats().await.total.map_or(0, |total| total.keys)
    }
}

fn peers_flag(addrs: &[std::net::SocketAddr]) -> String {
    IDS.iter()
        .zip(addrs)
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn spawn(id: &str, addr: std::net::SocketAddr, peers: &str) -> ChildServer {
    ChildServer::spawn(addr, ["--node-id", id, "--peers", peers])
}

async fn connect(server: &ChildServer) -> Channel {
    Channel::from_shared(server.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

async fn start_cluster() -> (Vec<Node>, String) {
    let addrs: Vec<_> = IDS.iter().map(|_| free_port()).collect();
    let peers = peers_flag(&addrs);
    let mut nodes = Vec::new();
    for (id, addr) in IDS.iter().zip(&addrs) {
        let mut server = spawn(id, *addr, &peers);
        server.ready().await;
        let channel = connect(&server).await;
        nodes.push(Node {
            id,
            server,
            channel,
        });
    }
    (nodes, peers)
}

fn key(index: usize) -> String {
    format!("user:{index}")
}

/// Polls `node`'s topology until `id` has readiness `ready`.
async fn wait_ready(node: &Node, id: &str, ready: bool) {
    let deadline = tokio::time::Instant::now() + CONVERGENCE;
    loop {
        let topology = node.topology().await;
        if topology
            .members
            .iter()
            .any(|member| member.id == id && member.ready == ready)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never saw {id} ready = {ready}: {topology:?}",
            node.id
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_member_answers_for_every_key_and_keys_live_on_their_owner() {
    let (nodes, _) = start_cluster().await;
    for index in 0..KEYS {
        let node = &nodes[index % nodes.len()];
        node.cache()
            .set(set_request(&key(index), &format!("value {index}")))
            .await
            .expect("Set through any member");
    }
    for node in &nodes {
        for index in 0..KEYS {
            let reply = node
                .cache()
                .get(get_request(&key(index)))
                .await
                .expect("Get through any member")
                .into_inner();
            assert!(reply.found, "{} lost {}", node.id, key(index));
            assert_eq!(reply.value, b(&format!("value {index}")));
        }
    }
    // Each member holds exactly the keys the shared routing gives it.
    let routing = Rendezvous::new(IDS);
    for node in &nodes {
        let owned = (0..KEYS)
            .filter(|&index| routing.owner(key(index).as_bytes()) == Some(node.id))
            .count() as u64;
        assert!(owned > 0, "{} owns none of {KEYS} keys", node.id);
        assert_eq!(node.local_keys().await, owned, "keys stored on {}", node.id);
    }
    // Every member reports the same members, each from its own place.
    for node in &nodes {
        let topology = node.topology().await;
        assert_eq!(topology.local_id, node.id);
        let ids: Vec<_> = topology.members.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, IDS);
        assert!(topology.members.iter().all(|member| member.ready));
    }
}

#[tokio::test]
async fn collections_are_forwarded_and_set_algebra_needs_one_owner() {
    let (nodes, _) = start_cluster().await;
    let fields = (0..5)
        .map(|index| pb::FieldValue {
            field: b(&format!("f{index}")),
            value: b(&format!("v{index}")),
        })
        .collect();
    nodes[0]
        .collection()
        .h_set(pb::HSetRequest {
            key: b("cart:1"),
            fields,
            ..Default::default()
        })
        .await
        .expect("HSet");
    for node in &nodes {
        let mut stream = node
            .collection()
            .h_get_all(pb::HGetAllRequest {
                key: b("cart:1"),
                ..Default::default()
            })
            .await
            .expect("HGetAll")
            .into_inner();
        let mut entries = 0;
        while let Some(chunk) = stream.next().await {
            entries += chunk.expect("HGetAll chunk").entries.len();
        }
        assert_eq!(entries, 5, "HGetAll through {}", node.id);
    }

    // Two sets under one hash tag share an owner: SInter works from anywhere.
    for (set, members) in [("{team:7}:x", ["a", "b"]), ("{team:7}:y", ["b", "c"])] {
        nodes[1]
            .collection()
            .s_add(pb::SAddRequest {
                key: b(set),
                members: members.iter().map(|m| b(m)).collect(),
                ..Default::default()
            })
            .await
            .expect("SAdd");
    }
    let mut stream = nodes[2]
        .collection()
        .s_inter(pb::SInterRequest {
            keys: vec![b("{team:7}:x"), b("{team:7}:y")],
            ..Default::default()
        })
        .await
        .expect("SInter of one tag")
        .into_inner();
    let mut members = Vec::new();
    while let Some(chunk) = stream.next().await {
        members.extend(chunk.expect("SInter chunk").members);
    }
    assert_eq!(members, [b("b")]);

    // Keys without a shared tag, on different owners, are refused by name.
    let routing = Rendezvous::new(IDS);
    let apart = (1..100)
        .map(|index| format!("set:{index}"))
        .find(|other| routing.owner(other.as_bytes()) != routing.owner(b"set:0"))
        .expect("a key on another owner");
    let status = nodes[0]
        .collection()
        .s_inter(pb::SInterRequest {
            keys: vec![b("set:0"), b(&apart)],
            ..Default::default()
        })
        .await
        .expect_err("keys of two owners");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().contains("hash tag"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_killed_member_costs_errors_only_until_it_is_marked_down() {
    let (mut nodes, peers) = start_cluster().await;
    for index in 0..KEYS {
        nodes[0]
            .cache()
            .set(set_request(&key(index), "v"))
            .await
            .expect("Set");
    }
    let routing = Rendezvous::new(IDS);
    let victim = 2;
    let victim_id = nodes[victim].id;
    nodes[victim].server.kill();
    for survivor in &nodes[..victim] {
        wait_ready(survivor, victim_id, false).await;
    }
    // Marked down: no call fails. The victim's keys are misses on their
    // new owners; every other key is still there.
    for survivor in &nodes[..victim] {
        for index in 0..KEYS {
            let reply = survivor
                .cache()
                .get(get_request(&key(index)))
                .await
                .unwrap_or_else(|status| panic!("Get through {}: {status}", survivor.id))
                .into_inner();
            let lost = routing.owner(key(index).as_bytes()) == Some(victim_id);
            assert_eq!(reply.found, !lost, "{} through {}", key(index), survivor.id);
        }
    }

    // Back (empty, as a restart without persistence is): the others take
    // it in again and its keys route to it.
    let addr = nodes[victim].server.addr;
    let mut server = spawn(victim_id, addr, &peers);
    server.ready().await;
    nodes[victim].channel = connect(&server).await;
    nodes[victim].server = server;
    for survivor in &nodes[..victim] {
        wait_ready(survivor, victim_id, true).await;
    }
    let back = (0..KEYS)
        .find(|&index| routing.owner(key(index).as_bytes()) == Some(victim_id))
        .expect("a key of the victim");
    nodes[0]
        .cache()
        .set(set_request(&key(back), "again"))
        .await
        .expect("Set after the return");
    let reply = nodes[victim]
        .cache()
        .get(get_request(&key(back)))
        .await
        .expect("Get on the member that came back")
        .into_inner();
    assert_eq!(reply.value, b("again"));
    assert_eq!(nodes[victim].local_keys().await, 1);
}

#[tokio::test]
async fn batches_and_pipelines_split_by_owner_and_answer_in_request_order() {
    let (nodes, _) = start_cluster().await;
    let client = shoal_client::Client::builder()
        .endpoint(nodes[0].server.endpoint())
        .connect()
        .await
        .expect("connect");
    // Small batches travel on pipelines, large ones on batch streams.
    for count in [8, 2_000] {
        let keys: Vec<String> = (0..count)
            .map(|index| format!("batch:{count}:{index}"))
            .collect();
        let written = client
            .set_many(keys.iter().map(|key| (key.clone(), format!("v-{key}"))))
            .await
            .expect("set_many");
        assert!(written.iter().all(Result::is_ok), "set_many of {count}");
        for node in &nodes {
            let mut stream = BatchServiceClient::new(node.channel.clone())
                .get_batch(pb::GetBatchRequest {
                    keys: keys.iter().map(|key| b(key)).collect(),
                    ..Default::default()
                })
                .await
                .expect("GetBatch")
                .into_inner();
            let mut next = 0;
            while let Some(chunk) = stream.next().await {
                for item in chunk.expect("GetBatch chunk").items {
                    assert_eq!(item.index, next, "GetBatch through {}", node.id);
                    let expected = format!("v-{}", keys[next as usize]);
                    assert_eq!(
                        item.result,
                        Some(pb::get_batch_item::Result::Value(b(&expected)))
                    );
                    next += 1;
                }
            }
            assert_eq!(next as usize, count);
        }
        let read = client.get_many(&keys).await.expect("get_many");
        for (key, value) in keys.iter().zip(read) {
            assert_eq!(value.expect("item"), Some(b(&format!("v-{key}"))));
        }
        let described = &keys[..count.min(1_000)];
        let mut asked: Vec<&str> = described.iter().map(String::as_str).collect();
        asked.push("batch:none");
        let infos = client.describe(&asked).await.expect("describe");
        assert_eq!(infos.len(), asked.len());
        for (info, key) in infos.iter().zip(&asked) {
            assert_eq!(info.key, b(key), "describe keeps the request order");
            assert_eq!(info.exists(), *key != "batch:none", "{key} described");
        }
        let removed = client
            .delete_many(&keys[..count / 2])
            .await
            .expect("delete_many");
        assert!(removed.into_iter().all(|existed| existed.expect("item")));
        let deleted = client.delete(&keys[count / 2..]).await.expect("delete");
        assert_eq!(deleted, (count - count / 2) as u64);
    }
    let stored: u64 = {
        let mut total = 0;
        for node in &nodes {
            total += node.local_keys().await;
        }
        total
    };
    assert_eq!(stored, 0, "every key was deleted where it lived");
}

/// A secret from `shoal-server token`, with the token-file entry it prints.
fn make_token(id: &str, grant: &str) -> (String, String) {
    let output = std::process::Command::new(shoal_tests::process::server_binary())
        .args(["token", "--id", id, "--grant", grant])
        .output()
        .expect("shoal-server token");
    assert!(output.status.success(), "shoal-server token failed");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let secret = text.lines().next().expect("a secret").to_string();
    let entry = text
        .lines()
        .skip(1)
        .filter(|line| !line.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    (secret, entry)
}

#[tokio::test]
async fn forwarded_calls_carry_the_callers_credentials_and_rights() {
    let (writer, writer_entry) = make_token("writer", "*=write");
    let (reader, reader_entry) = make_token("reader", "*=read");
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, format!("{writer_entry}\n{reader_entry}\n")).expect("token file");
    let addrs: Vec<_> = IDS.iter().map(|_| free_port()).collect();
    let peers = peers_flag(&addrs);
    let mut servers = Vec::new();
    for (id, addr) in IDS.iter().zip(&addrs) {
        let mut server = ChildServer::spawn(
            *addr,
            [
                "--node-id",
                id,
                "--peers",
                &peers,
                "--token-file",
                tokens.to_str().expect("utf-8 path"),
            ],
        );
        server.ready().await;
        servers.push(server);
    }
    let client = |token: &str| {
        shoal_client::Client::builder()
            .endpoint(servers[0].endpoint())
            .token(token)
            .connect()
    };
    let writing = client(&writer).await.expect("connect");
    let reading = client(&reader).await.expect("connect");
    let routing = Rendezvous::new(IDS);
    let elsewhere: Vec<String> = (0..200)
        .map(key)
        .filter(|key| routing.owner(key.as_bytes()) != Some(IDS[0]))
        .take(20)
        .collect();
    for key in &elsewhere {
        writing
            .set(key, "v")
            .await
            .expect("a forwarded Set with a write token");
        assert_eq!(
            reading
                .get(key)
                .await
                .expect("a forwarded Get with a read token"),
            Some(b("v"))
        );
        let denied = reading
            .set(key, "w")
            .await
            .expect_err("a read token writes nothing");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    }
    let batch = writing
        .set_many(elsewhere.iter().map(|key| (key.clone(), "batch")))
        .await
        .expect("set_many");
    assert!(batch.iter().all(Result::is_ok));
    for value in reading.get_many(&elsewhere).await.expect("get_many") {
        assert_eq!(value.expect("item"), Some(b("batch")));
    }
    // Without a token nothing is forwarded or served.
    let anonymous = shoal_client::Client::builder()
        .endpoint(servers[0].endpoint())
        .connect()
        .await
        .expect("connect");
    assert!(anonymous.get(&elsewhere[0]).await.is_err());
}

/// Calls of `method` (a full path) each member received, summed.
async fn calls_received(nodes: &[Node], method: &str) -> u64 {
    let mut total = 0;
    for node in nodes {
        total += node
            .local_stats()
            .await
            .rpcs
            .iter()
            .filter(|rpc| rpc.method == method)
            .map(|rpc| rpc.calls)
            .sum::<u64>();
    }
    total
}

#[tokio::test]
async fn a_topology_aware_client_sends_each_key_to_its_owner() {
    let (nodes, _) = start_cluster().await;
    let client = shoal_client::Client::builder()
        .endpoint(nodes[0].server.endpoint())
        .topology_aware(true)
        .connect()
        .await
        .expect("connect");
    assert!(client.is_topology_aware());
    for index in 0..KEYS {
        client
            .set(key(index), format!("v{index}"))
            .await
            .expect("set");
    }
    for index in 0..KEYS {
        assert_eq!(
            client.get(key(index)).await.expect("get"),
            Some(b(&format!("v{index}")))
        );
    }
    // Each call reached its owner and no member forwarded one: every
    // member together received exactly the calls the client made.
    assert_eq!(
        calls_received(&nodes, "/shoal.v1.CacheService/Set").await,
        KEYS as u64
    );
    assert_eq!(
        calls_received(&nodes, "/shoal.v1.CacheService/Get").await,
        KEYS as u64
    );
    let placement = Rendezvous::new(IDS);
    for node in &nodes {
        let owned = (0..KEYS)
            .filter(|&index| placement.owner(key(index).as_bytes()) == Some(node.id))
            .count();
        assert_eq!(node.local_keys().await, owned as u64, "keys on {}", node.id);
    }

    // Batches and pipelines are split by owner and come back in order.
    let keys: Vec<String> = (0..1_500).map(|index| format!("routed:{index}")).collect();
    let written = client
        .set_many(keys.iter().map(|key| (key.clone(), format!("v-{key}"))))
        .await
        .expect("set_many");
    assert!(written.iter().all(Result::is_ok));
    for count in [8, 1_500] {
        let read = client.get_many(&keys[..count]).await.expect("get_many");
        for (key, value) in keys.iter().zip(read) {
            assert_eq!(value.expect("item"), Some(b(&format!("v-{key}"))));
        }
    }
    let mut pipeline = client.pipeline();
    let slots: Vec<_> = keys[..40].iter().map(|key| pipeline.get(key)).collect();
    let counter = pipeline.increment("{routed}:counter", 5);
    let mut results = pipeline.run().await.expect("pipeline");
    for (slot, key) in slots.into_iter().zip(&keys) {
        assert_eq!(
            results.take(slot).expect("get"),
            Some(b(&format!("v-{key}")))
        );
    }
    assert_eq!(results.take(counter).expect("increment"), 5);
    let existed = client.delete_many(&keys).await.expect("delete_many");
    assert!(existed.into_iter().all(|existed| existed.expect("item")));
    assert_eq!(
        calls_received(&nodes, "/shoal.v1.BatchService/SetBatch").await,
        3
    );

    // A member that leaves takes its keys with it, and the client follows:
    // after the window, calls go to the members that remain, and none fails.
    let mut nodes = nodes;
    let gone = nodes.remove(2);
    drop(gone);
    for node in &nodes {
        wait_ready(node, IDS[2], false).await;
    }
    let deadline = tokio::time::Instant::now() + CONVERGENCE;
    loop {
        let failures = {
            let mut failures = 0;
            for index in 0..50 {
                if client.set(key(index), "after").await.is_err() {
                    failures += 1;
                }
            }
            failures
        };
        if failures == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "writes still fail after the member left: {failures} of 50"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn namespace_wide_calls_answer_for_the_whole_cluster() {
    let (nodes, _) = start_cluster().await;
    let through = |node: &Node| {
        shoal_client::Client::builder()
            .endpoint(node.server.endpoint())
            .connect_lazy()
            .expect("client")
    };
    let client = through(&nodes[0]);
    let users: Vec<String> = (0..KEYS).map(key).collect();
    client
        .set_many(users.iter().map(|key| (key.clone(), "v")))
        .await
        .expect("set_many");
    client
        .set_many((0..20).map(|index| (format!("other:{index}"), "v")))
        .await
        .expect("set_many");
    let everything = KEYS as u64 + 20;

    // Count and Stats add up every member, whichever is called.
    let mut local_sum = 0;
    for node in &nodes {
        let member = through(node);
        assert_eq!(
            member.count().await.expect("count"),
            everything,
            "via {}",
            node.id
        );
        let stats = member.stats().await.expect("stats");
        assert_eq!(stats.members, 3);
        assert_eq!(stats.total.keys, everything, "stats via {}", node.id);
        let own = member.member_stats().await.expect("member stats");
        assert_eq!(own.members, 1);
        local_sum += own.total.keys;
    }
    assert_eq!(local_sum, everything);

    // A scan walks every member, page after page, with no key twice.
    let scanner = through(&nodes[2]);
    let mut seen = std::collections::BTreeSet::new();
    let mut options = shoal_client::ScanOptions::matching("user:*").with_page_size(7);
    let mut pages = 0;
    loop {
        let page = scanner.scan_page(options.clone()).await.expect("scan page");
        pages += 1;
        for key in page.keys {
            assert!(seen.insert(key.clone()), "{key:?} returned twice");
        }
        match page.cursor {
            Some(cursor) => options = options.with_cursor(cursor),
            None => break,
        }
        assert!(pages < 1_000, "the scan never ended");
    }
    let expected: std::collections::BTreeSet<_> = users.iter().map(|key| b(key)).collect();
    assert_eq!(seen, expected);
    // A limit counts across members.
    let limited = scanner
        .scan_page(shoal_client::ScanOptions {
            limit: 50,
            page_size: 1_000,
            ..Default::default()
        })
        .await
        .expect("limited scan");
    assert_eq!(limited.keys.len(), 50);
    assert!(limited.cursor.is_some());
    // A cursor that is not this cluster's is refused, naming the field.
    let error = scanner
        .scan_page(shoal_client::ScanOptions::default().with_cursor(&b"\x01junk"[..]))
        .await
        .expect_err("a foreign cursor");
    assert!(error.to_string().contains("cursor"), "{error}");

    // Flush empties the namespace on every member.
    let removed = through(&nodes[1]).flush().await.expect("flush");
    assert_eq!(removed, everything);
    for node in &nodes {
        assert_eq!(node.local_keys().await, 0, "{} after flush", node.id);
    }
}

#[tokio::test]
async fn a_watch_through_one_member_sees_changes_on_every_member() {
    let (mut nodes, _) = start_cluster().await;
    let watcher = shoal_client::Client::builder()
        .endpoint(nodes[0].server.endpoint())
        .connect()
        .await
        .expect("connect");
    let mut events = watcher
        .watch(shoal_client::WatchOptions::all().prefix("watched:"))
        .await
        .expect("watch");
    // Keys owned by each member, written through another member.
    let placement = Rendezvous::new(IDS);
    let mut keys = Vec::new();
    for id in IDS {
        let owned = (0..)
            .map(|index| format!("watched:{index}"))
            .find(|key| placement.owner(key.as_bytes()) == Some(id))
            .expect("a key for each member");
        keys.push(owned);
    }
    let writer = shoal_client::Client::builder()
        .endpoint(nodes[1].server.endpoint())
        .connect()
        .await
        .expect("connect");
    for key in &keys {
        writer.set(key, "v").await.expect("set");
    }
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < keys.len() {
        let event = tokio::time::timeout(CONVERGENCE, events.next())
            .await
            .expect("an event in time")
            .expect("the stream goes on")
            .expect("an event");
        if let shoal_client::WatchEvent::Changed { key, .. } = event {
            seen.insert(String::from_utf8(key.to_vec()).expect("utf-8"));
        }
    }
    assert_eq!(seen, keys.iter().cloned().collect());

    // A member that goes away ends the merged stream with UNAVAILABLE, so
    // the watcher knows to subscribe again.
    nodes[2].server.kill();
    let ended = tokio::time::timeout(CONVERGENCE, async {
        loop {
            match events.next().await {
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Some(error),
                None => return None,
            }
        }
    })
    .await
    .expect("the stream ends in time");
    let error = ended.expect("an error, not a silent end");
    assert_eq!(error.code(), tonic::Code::Unavailable, "{error}");
}

/// Sends `signal` (`STOP`, `CONT`) to `server`'s process.
fn signal(server: &ChildServer, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(server.child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal}");
}

#[tokio::test]
async fn a_member_stopped_and_resumed_serves_no_stale_value() {
    let (nodes, _) = start_cluster().await;
    let placement = Rendezvous::new(IDS);
    let stale = (0..)
        .map(|index| format!("paused:{index}"))
        .find(|key| placement.owner(key.as_bytes()) == Some(IDS[2]))
        .expect("a key node-c owns");
    let client = shoal_client::Client::builder()
        .endpoint(nodes[0].server.endpoint())
        .connect()
        .await
        .expect("connect");
    client.set(&stale, "old").await.expect("set");

    signal(&nodes[2].server, "STOP");
    let stopped_at = tokio::time::Instant::now();
    let resumed = async {
        for node in &nodes[..2] {
            wait_ready(node, IDS[2], false).await;
        }
        // Written to the stand-in owner while node-c is out.
        client
            .set(&stale, "new")
            .await
            .expect("set while node-c is out");
        // A stop longer than node-c's detection window (1.7 s by default)
        // is one it notices when it runs again.
        tokio::time::sleep_until(stopped_at + Duration::from_secs(3)).await;
        signal(&nodes[2].server, "CONT");
        for node in &nodes[..2] {
            wait_ready(node, IDS[2], true).await;
        }
        client.get(&stale).await.expect("get after node-c is back")
    };
    // Resumed whatever happens, so that the process can be killed.
    let value = tokio::time::timeout(CONVERGENCE * 2, resumed).await;
    signal(&nodes[2].server, "CONT");
    let value = value.expect("the cluster converged in time");
    // node-c owns the key again: it may have lost it (a miss), but it must
    // not answer with the value it held before it stopped.
    assert_ne!(
        value.as_deref(),
        Some(&b"old"[..]),
        "a stale value was served"
    );
}
