//! The admin HTTP listener: Prometheus metrics that follow the naming
//! conventions and move with traffic, and the liveness and readiness probes.

use std::collections::{BTreeMap, HashSet};

use shoal_proto::v1 as pb;
use shoal_tests::{TestServer, get_request, http_get, raw, set_request, stats};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Every family the dashboards query, by the name of their samples.
const EXPECTED: &[&str] = &[
    "shoal_build_info",
    "shoal_requests_total",
    "shoal_request_duration_seconds_bucket",
    "shoal_cache_hits_total",
    "shoal_cache_misses_total",
    "shoal_cache_sets_total",
    "shoal_evictions_total",
    "shoal_expirations_total",
    "shoal_keys",
    "shoal_memory_used_bytes",
    "shoal_memory_limit_bytes",
    "shoal_keys_limit",
    "shoal_connections_open",
    "shoal_streams_open",
    "shoal_watch_subscribers",
    "shoal_watch_resyncs_total",
];

/// One sample of the exposition.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The families (`# TYPE` lines, in order) and samples of an OpenMetrics
/// text exposition.
#[derive(Debug, Default)]
struct Exposition {
    families: Vec<(String, String)>,
    units: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut exposition = Exposition::default();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if line == "# EOF" {
                assert!(lines.peek().is_none(), "text after # EOF");
                return exposition;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
                exposition.families.push((name.into(), kind.into()));
            } else if let Some(rest) = line.strip_prefix("# UNIT ") {
                let (name, unit) = rest.split_once(' ').expect("# UNIT name unit");
                exposition.units.insert(name.into(), unit.into());
            } else if line.starts_with("# HELP ") {
            } else {
                exposition.samples.push(parse_sample(line));
            }
        }
        panic!("the exposition does not end with # EOF");
    }

    /// The value of the sample `name` whose labels include `labels`; 0 when
    /// there is none (a counter not yet touched).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let matching: Vec<_> = self
            .samples
            .iter()
            .filter(|sample| {
                sample.name == name
                    && labels.iter().all(|(key, value)| {
                        sample.labels.get(*key).map(String::as_str) == Some(value)
                    })
            })
            .collect();
        assert!(
            matching.len() <= 1,
            "{name} {labels:?} is ambiguous: {matching:?}"
        );
        matching.first().map_or(0.0, |sample| sample.value)
    }
}

/// `name{key="value",...} value`, with `\"`, `\\` and `\n` escapes.
fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).expect("a sample name");
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let (at, c) = chars.next().expect("unterminated labels");
            match c {
                '}' => {
                    rest = &inner[at + 1..];
                    break;
                }
                ',' => {}
                '=' => {
                    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "quoted value");
                    let mut value = String::new();
                    loop {
                        match chars.next().expect("unterminated value").1 {
                            '"' => break,
                            '\\' => match chars.next().expect("escape").1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        }
    }
    let value = rest
        .trim()
        .split(' ')
        .next()
        .expect("a value")
        .parse()
        .unwrap_or_else(|_| panic!("bad value in {line:?}"));
    Sample {
        name,
        labels,
        value,
    }
}

async fn scrape(server: &TestServer) -> Exposition {
    let admin = server.admin_addr().expect("admin listener");
    let (status, body) = http_get(admin, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    Exposition::parse(&body)
}

#[tokio::test]
async fn metrics_follow_the_conventions_and_move_with_traffic() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    let in_ns = |mut request: pb::SetRequest| {
        request.namespace = "metrics".into();
        request
    };
    raw.cache
        .set(in_ns(set_request("warm", "up")))
        .await
        .expect("set");
    let before = scrape(&server).await;

    raw.cache
        .set(in_ns(set_request("k", "v")))
        .await
        .expect("set");
    for key in ["k", "missing"] {
        let mut get = get_request(key);
        get.namespace = "metrics".into();
        raw.cache.get(get).await.expect("get");
    }
    let mut bad = get_request("");
    bad.namespace = "metrics".into();
    raw.cache
        .get(bad)
        .await
        .expect_err("an empty key is refused");
    let after = scrape(&server).await;

    // Names: unique, prefixed, and following the Prometheus conventions.
    let mut seen = HashSet::new();
    for (family, kind) in &after.families {
        assert!(seen.insert(family.clone()), "{family} declared twice");
        assert!(family.starts_with("shoal_"), "{family} lacks the prefix");
        let samples: Vec<_> = after
            .samples
            .iter()
            .filter(|sample| sample.name.starts_with(family.as_str()))
            .map(|sample| &sample.name[family.len()..])
            .collect();
        match kind.as_str() {
            "counter" => {
                assert!(
                    !family.ends_with("_total"),
                    "{family}: the suffix goes on samples"
                );
                assert!(
                    samples.iter().all(|suffix| *suffix == "_total"),
                    "{family}: {samples:?}"
                );
            }
            "gauge" => assert!(!family.ends_with("_total"), "{family} is a gauge"),
            "histogram" => {
                assert!(family.ends_with("_seconds"), "{family} is not in seconds");
                assert!(
                    samples
                        .iter()
                        .all(|suffix| ["_bucket", "_sum", "_count"].contains(suffix)),
                    "{family}: {samples:?}"
                );
            }
            other => panic!("{family} has unexpected type {other}"),
        }
        if family.contains("memory") || family.contains("bytes") {
            assert!(family.ends_with("_bytes"), "{family} is not in bytes");
            assert_eq!(after.units.get(family).map(String::as_str), Some("bytes"));
        }
        if family.contains("duration") {
            assert_eq!(after.units.get(family).map(String::as_str), Some("seconds"));
        }
    }
    for sample in &after.samples {
        assert!(
            after
                .families
                .iter()
                .any(|(family, _)| sample.name.starts_with(family.as_str())),
            "{} belongs to no declared family",
            sample.name
        );
    }
    let names: HashSet<&str> = after
        .samples
        .iter()
        .map(|sample| sample.name.as_str())
        .chain(after.families.iter().map(|(family, _)| family.as_str()))
        .collect();
    for expected in EXPECTED {
        assert!(names.contains(expected), "{expected} is missing");
    }

    // Counters move with the calls made between the scrapes.
    let moved = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let cache = ("service", "shoal.v1.CacheService");
    let ns = [("namespace", "metrics")];
    assert_eq!(
        moved(
            "shoal_requests_total",
            &[cache, ("method", "Set"), ("code", "OK")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "shoal_requests_total",
            &[cache, ("method", "Get"), ("code", "OK")]
        ),
        2.0
    );
    assert_eq!(
        moved(
            "shoal_requests_total",
            &[cache, ("method", "Get"), ("code", "INVALID_ARGUMENT")]
        ),
        1.0,
        "a status sent in the headers counts"
    );
    assert_eq!(
        moved(
            "shoal_request_duration_seconds_count",
            &[cache, ("method", "Get")]
        ),
        3.0
    );
    assert_eq!(
        moved(
            "shoal_request_duration_seconds_bucket",
            &[cache, ("method", "Get"), ("le", "+Inf")]
        ),
        3.0
    );
    assert_eq!(moved("shoal_cache_hits_total", &ns), 1.0);
    assert_eq!(moved("shoal_cache_misses_total", &ns), 1.0);
    assert_eq!(moved("shoal_cache_sets_total", &ns), 1.0);
    assert_eq!(after.value("shoal_keys", &ns), 2.0);
    assert!(after.value("shoal_memory_used_bytes", &ns) > 0.0);
    assert_eq!(
        after.value(
            "shoal_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(
        after.value("shoal_connections_open", &[]) >= 1.0,
        "the raw client's connection is open"
    );
    assert_eq!(after.value("shoal_watch_subscribers", &[]), 0.0);

    // AdminService.Stats reads the same table.
    let stats = stats(&mut raw).await;
    let get = stats
        .rpcs
        .iter()
        .find(|rpc| rpc.method == "/shoal.v1.CacheService/Get")
        .expect("Get is listed");
    assert_eq!(
        get.calls as f64,
        after.value(
            "shoal_request_duration_seconds_count",
            &[cache, ("method", "Get")]
        )
    );
    assert!(
        stats
            .rpcs
            .iter()
            .all(|rpc| rpc.method.starts_with("/shoal.v1.")),
        "Stats lists the shoal API only"
    );
}

#[tokio::test]
async fn a_stream_counts_once_it_has_ended() {
    let server = TestServer::start().await;
    let mut raw = raw(&server).await;
    // Keys large enough that the pages outgrow the HTTP/2 flow-control
    // windows: the server cannot finish the stream until the client reads.
    for i in 0..80 {
        let key = format!("{i:02}{}", "k".repeat(60_000));
        raw.cache.set(set_request(&key, "v")).await.expect("set");
    }
    let scans = |exposition: &Exposition| {
        exposition.value(
            "shoal_requests_total",
            &[
                ("service", "shoal.v1.CacheService"),
                ("method", "Scan"),
                ("code", "OK"),
            ],
        )
    };
    let mut scan = raw
        .cache
        .scan(pb::ScanRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("scan")
        .into_inner();
    scan.message().await.expect("a page").expect("a page");
    let open = scrape(&server).await;
    assert_eq!(scans(&open), 0.0, "a stream in flight is not counted yet");
    assert_eq!(open.value("shoal_streams_open", &[]), 1.0);

    while scan.message().await.expect("page").is_some() {}
    let ended = scrape(&server).await;
    assert_eq!(scans(&ended), 1.0);
    assert_eq!(ended.value("shoal_streams_open", &[]), 0.0);
}

async fn next_status(
    watch: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
) -> ServingStatus {
    watch
        .message()
        .await
        .expect("status")
        .expect("a status")
        .status()
}

#[tokio::test]
async fn probes_report_liveness_and_readiness() {
    let mut server = TestServer::start().await;
    let admin = server.admin_addr().expect("admin listener");
    assert_eq!(http_get(admin, "/healthz").await.0, 200);
    assert_eq!(http_get(admin, "/readyz").await.0, 200);
    assert_eq!(http_get(admin, "/nothing").await.0, 404);

    // A call in flight keeps the server draining while the probes are read:
    // a SetBatch whose client has not finished sending.
    let mut client = raw(&server).await;
    let (more, chunks) = tokio::sync::mpsc::channel::<pb::SetBatchRequest>(1);
    let held = tokio::spawn(async move {
        client
            .batch
            .set_batch(tokio_stream::wrappers::ReceiverStream::new(chunks))
            .await
    });
    let channel = tonic::transport::Endpoint::from_shared(server.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);
    let mut open = 0;
    for _ in 0..1000 {
        let (_, text) = http_get(admin, "/metrics").await;
        open = text
            .lines()
            .find_map(|line| line.strip_prefix("shoal_streams_open "))
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0);
        if open >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(open >= 2, "the SetBatch and the health Watch are open");
    server.begin_shutdown();
    assert_eq!(next_status(&mut watch).await, ServingStatus::NotServing);
    let (code, body) = http_get(admin, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(http_get(admin, "/healthz").await.0, 200, "still alive");
    drop((watch, more));
    let _ = held.await;
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn the_admin_listener_can_be_turned_off() {
    let mut config = shoal_server::Config::default();
    config.admin.listen = None;
    let server = TestServer::start_with(config).await;
    assert_eq!(server.admin_addr(), None);
    let mut raw = raw(&server).await;
    raw.cache
        .set(set_request("k", "v"))
        .await
        .expect("the API works without it");
}
