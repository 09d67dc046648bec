//! The files in `deploy/` agree with the server and with each other: ports
//! and probes, label selectors, the ConfigMap's TOML, shutdown timing, the
//! memory budget, the Prometheus scrape target, and the metric names the
//! Grafana dashboard queries. (`.ci/validate-deploy` checks each file against
//! its schema; this checks what no schema can.)

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;
use shoal_server::config::{Config, MemoryBudget};

/// The metric families a live server exports, by the name Prometheus stores
/// them under (a counter with `_total`), with their type: read from the
/// `# TYPE` lines of `/metrics`, so the dashboard is checked against what
/// the server really serves.
async fn exported_metrics() -> BTreeMap<String, MetricType> {
    let server = shoal_tests::TestServer::start().await;
    let admin = server.admin_addr().expect("the admin listener runs");
    let (status, body) = shoal_tests::http_get(admin, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|declaration| {
            let (name, kind) = declaration.split_once(' ')?;
            Some(match kind.trim() {
                "counter" => (format!("{name}_total"), MetricType::Counter),
                "histogram" => (name.to_owned(), MetricType::Histogram),
                _ => (name.to_owned(), MetricType::Gauge),
            })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

/// The admin HTTP listener's default port (`/metrics`, `/healthz`, `/readyz`).
fn admin_port() -> u16 {
    shoal_server::config::DEFAULT_ADMIN_LISTEN
        .parse::<SocketAddr>()
        .expect("the default admin address parses")
        .port()
}

/// The gRPC listener's default port, from the server's own default.
fn grpc_port() -> u16 {
    shoal_server::config::DEFAULT_LISTEN
        .parse::<SocketAddr>()
        .expect("DEFAULT_LISTEN is an address")
        .port()
}

fn deploy_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(relative)
}

fn read(relative: &str) -> String {
    let path = deploy_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn yaml(relative: &str) -> Value {
    serde_yaml_ng::from_str(&read(relative)).unwrap_or_else(|error| panic!("{relative}: {error}"))
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer}"))
}

fn number(value: &Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number at {pointer}"))
}

fn array<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("no array at {pointer}"))
}

fn labels(value: &Value, pointer: &str) -> BTreeMap<String, String> {
    value
        .pointer(pointer)
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("no labels at {pointer}"))
        .iter()
        .map(|(key, value)| (key.clone(), value.as_str().expect("label value").to_owned()))
        .collect()
}

fn port_of(address: &str) -> u16 {
    address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("{address:?} has no port"))
}

/// The one container of the StatefulSet.
fn shoal_container(statefulset: &Value) -> &Value {
    let containers = array(statefulset, "/spec/template/spec/containers");
    assert_eq!(containers.len(), 1, "one container per pod");
    &containers[0]
}

fn env_var<'a>(container: &'a Value, name: &str) -> &'a str {
    array(container, "/env")
        .iter()
        .find(|var| var["name"] == name)
        .and_then(|var| var["value"].as_str())
        .unwrap_or_else(|| panic!("the container sets no {name}"))
}

/// Named container ports.
fn container_ports(container: &Value) -> BTreeMap<String, u64> {
    array(container, "/ports")
        .iter()
        .map(|port| {
            (
                text(port, "/name").to_owned(),
                number(port, "/containerPort"),
            )
        })
        .collect()
}

/// The ConfigMap's `shoal.toml`, parsed by the server's own parser.
fn configmap_config() -> Config {
    let configmap = yaml("k8s/configmap.yaml");
    let toml = text(&configmap, "/data/shoal.toml");
    Config::from_toml(toml, Path::new("deploy/k8s/configmap.yaml"))
        .unwrap_or_else(|error| panic!("the ConfigMap's shoal.toml: {error}"))
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let kustomization = yaml("k8s/kustomization.yaml");
    let listed: BTreeSet<String> = array(&kustomization, "/resources")
        .iter()
        .map(|resource| resource.as_str().expect("a file name").to_owned())
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(deploy_path("k8s"))
        .expect("deploy/k8s")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("utf-8")
        })
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present);
}

#[test]
fn selectors_match_the_pod_labels() {
    let statefulset = yaml("k8s/statefulset.yaml");
    let pod = labels(&statefulset, "/spec/template/metadata/labels");
    let must_select = |selector: BTreeMap<String, String>, what: &str| {
        assert!(!selector.is_empty(), "{what} selects nothing");
        for (key, value) in &selector {
            assert_eq!(pod.get(key), Some(value), "{what} selects {key}={value}");
        }
    };
    must_select(
        labels(&statefulset, "/spec/selector/matchLabels"),
        "the StatefulSet",
    );
    for constraint in array(
        &statefulset,
        "/spec/template/spec/topologySpreadConstraints",
    ) {
        must_select(
            labels(constraint, "/labelSelector/matchLabels"),
            "a topology spread constraint",
        );
    }
    for file in ["k8s/service.yaml", "k8s/service-headless.yaml"] {
        must_select(labels(&yaml(file), "/spec/selector"), file);
    }
    must_select(
        labels(
            &yaml("k8s/poddisruptionbudget.yaml"),
            "/spec/selector/matchLabels",
        ),
        "the PodDisruptionBudget",
    );

    let headless = yaml("k8s/service-headless.yaml");
    assert_eq!(text(&headless, "/spec/clusterIP"), "None");
    assert_eq!(
        text(&statefulset, "/spec/serviceName"),
        text(&headless, "/metadata/name"),
        "the StatefulSet is governed by the headless Service"
    );
}

#[test]
fn one_replica_until_keys_are_routed_between_pods() {
    // Independent pods behind one Service serve misses and stale values:
    // a Set on one pod, the next Get on another.
    let statefulset = yaml("k8s/statefulset.yaml");
    assert_eq!(number(&statefulset, "/spec/replicas"), 1);
    let compose = read("compose.yaml");
    assert!(
        !compose.contains("replicas:"),
        "compose.yaml must run a single shoal node"
    );
}

#[test]
fn ports_and_probes_match_the_server() {
    let statefulset = yaml("k8s/statefulset.yaml");
    let container = shoal_container(&statefulset);
    let ports = container_ports(container);
    let grpc = u64::from(grpc_port());
    let admin = u64::from(admin_port());
    assert_eq!(ports.get("grpc"), Some(&grpc));
    assert_eq!(ports.get("admin"), Some(&admin));

    // The container listens where its ports say, on every interface.
    let listen = env_var(container, "SHOAL_LISTEN");
    let admin_listen = env_var(container, "SHOAL_ADMIN_LISTEN");
    assert!(listen.starts_with("0.0.0.0:") && u64::from(port_of(listen)) == grpc);
    assert!(admin_listen.starts_with("0.0.0.0:") && u64::from(port_of(admin_listen)) == admin);

    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let probe = &container[probe];
        assert_eq!(
            probe.pointer("/grpc/port").and_then(Value::as_u64),
            Some(grpc),
            "{probe} is a gRPC health check on the gRPC port"
        );
    }

    let annotations = labels(&statefulset, "/spec/template/metadata/annotations");
    assert_eq!(
        annotations.get("prometheus.io/port"),
        Some(&admin.to_string())
    );
    assert_eq!(
        annotations.get("prometheus.io/path").map(String::as_str),
        Some("/metrics")
    );

    for file in ["k8s/service.yaml", "k8s/service-headless.yaml"] {
        let service = yaml(file);
        let mut exposed = BTreeMap::new();
        for port in array(&service, "/spec/ports") {
            let target = match &port["targetPort"] {
                Value::String(name) => *ports
                    .get(name)
                    .unwrap_or_else(|| panic!("{file}: no container port named {name}")),
                Value::Number(number) => number.as_u64().expect("a port number"),
                other => panic!("{file}: targetPort {other}"),
            };
            assert!(
                ports.values().any(|&port| port == target),
                "{file}: {target}"
            );
            exposed.insert(
                text(port, "/name").to_owned(),
                (number(port, "/port"), target),
            );
        }
        assert_eq!(exposed.get("grpc"), Some(&(grpc, grpc)), "{file}");
        assert_eq!(exposed.get("admin"), Some(&(admin, admin)), "{file}");
    }
}

#[test]
fn the_configmap_is_a_valid_config_mounted_where_the_server_reads_it() {
    let config = configmap_config();
    assert_eq!(config.log.format, shoal_server::config::LogFormat::Json);

    let configmap = yaml("k8s/configmap.yaml");
    let statefulset = yaml("k8s/statefulset.yaml");
    let container = shoal_container(&statefulset);
    let volume = array(&statefulset, "/spec/template/spec/volumes")
        .iter()
        .find(|volume| volume.pointer("/configMap/name") == configmap.pointer("/metadata/name"))
        .expect("a volume holds the ConfigMap");
    let mount = array(container, "/volumeMounts")
        .iter()
        .find(|mount| mount["name"] == volume["name"])
        .expect("the container mounts it");
    let args: Vec<&str> = array(container, "/args")
        .iter()
        .map(|arg| arg.as_str().expect("string arg"))
        .collect();
    let config_path = args
        .windows(2)
        .find(|pair| pair[0] == "--config")
        .map(|pair| pair[1])
        .expect("--config is passed");
    assert_eq!(
        config_path,
        format!("{}/shoal.toml", text(mount, "/mountPath"))
    );
}

#[test]
fn the_pod_outlives_the_servers_shutdown_grace() {
    let statefulset = yaml("k8s/statefulset.yaml");
    let container = shoal_container(&statefulset);
    let termination = number(
        &statefulset,
        "/spec/template/spec/terminationGracePeriodSeconds",
    );
    let pause: u64 = array(container, "/lifecycle/preStop/exec/command")
        .last()
        .and_then(Value::as_str)
        .and_then(|seconds| seconds.parse().ok())
        .expect("preStop is `sleep N`");
    let grace = configmap_config().grpc.shutdown_grace_secs;
    assert!(
        termination > pause + grace,
        "terminationGracePeriodSeconds {termination} must exceed preStop {pause} s + shutdown grace {grace} s"
    );
}

#[test]
fn the_memory_budget_is_a_share_of_the_container_limit() {
    let statefulset = yaml("k8s/statefulset.yaml");
    let container = shoal_container(&statefulset);
    let budget = MemoryBudget::parse(env_var(container, "SHOAL_MAX_MEMORY")).expect("parses");
    assert!(
        matches!(budget, MemoryBudget::Percent(percent) if percent < 100.0),
        "{budget:?} leaves no room beside the cache"
    );
    assert!(
        container.pointer("/resources/limits/memory").is_some(),
        "a percentage needs a memory limit"
    );
}

#[test]
fn the_pod_runs_unprivileged() {
    let statefulset = yaml("k8s/statefulset.yaml");
    let pod = &statefulset["spec"]["template"]["spec"];
    let container = &shoal_container(&statefulset)["securityContext"];
    assert_eq!(
        pod.pointer("/securityContext/runAsNonRoot"),
        Some(&Value::Bool(true))
    );
    assert_eq!(
        text(pod, "/securityContext/seccompProfile/type"),
        "RuntimeDefault"
    );
    assert_eq!(container["runAsNonRoot"], true);
    assert_eq!(container["readOnlyRootFilesystem"], true);
    assert_eq!(container["allowPrivilegeEscalation"], false);
    assert_eq!(array(container, "/capabilities/drop"), ["ALL"]);
    assert_eq!(pod["automountServiceAccountToken"], false);

    // The image's user is the one the pod asks for.
    let dockerfile = dockerfile_instructions();
    let user = dockerfile
        .iter()
        .find_map(|line| line.strip_prefix("USER "))
        .expect("the image sets USER");
    let uid: u64 = user
        .split(':')
        .next()
        .and_then(|uid| uid.parse().ok())
        .expect("numeric");
    assert_eq!(number(pod, "/securityContext/runAsUser"), uid);
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn dockerfile_instructions() -> Vec<String> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(line);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    instructions
}

#[test]
fn the_image_listens_everywhere_on_the_default_ports() {
    let instructions = dockerfile_instructions();
    let find = |keyword: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter_map(|line| line.strip_prefix(keyword))
            .collect()
    };
    let exposed: BTreeSet<u16> = find("EXPOSE ")
        .iter()
        .flat_map(|ports| ports.split_whitespace())
        .map(|port| port.parse().expect("a port"))
        .collect();
    assert_eq!(exposed, BTreeSet::from([grpc_port(), admin_port()]));

    let env = find("ENV ").join(" ");
    assert!(
        env.contains(&format!("SHOAL_LISTEN=0.0.0.0:{}", grpc_port())),
        "{env}"
    );
    assert!(
        env.contains(&format!("SHOAL_ADMIN_LISTEN=0.0.0.0:{}", admin_port())),
        "{env}"
    );

    let healthcheck = find("HEALTHCHECK ").join(" ");
    for word in ["\"shoal-server\"", "\"healthcheck\"", "\"--addr\""] {
        assert!(healthcheck.contains(word), "{healthcheck}");
    }
    assert!(
        healthcheck.contains(&format!("127.0.0.1:{}", grpc_port())),
        "{healthcheck}"
    );

    // Every base image is pinned by digest.
    for from in find("FROM ") {
        assert!(from.contains("@sha256:"), "unpinned base image: {from}");
    }
}

#[test]
fn compose_wires_every_service_by_name() {
    let compose = yaml("compose.yaml");
    let services = compose["services"].as_object().expect("services");
    let service = |name: &str| -> &Value {
        services
            .get(name)
            .unwrap_or_else(|| panic!("compose has no service {name}"))
    };
    let host_port = |url: &str| -> (String, u16) {
        let authority = url.split("://").last().expect("a URL");
        let authority = authority.split('/').next().expect("an authority");
        let (host, port) = authority.rsplit_once(':').expect("host:port");
        (host.to_owned(), port.parse().expect("a port"))
    };

    // shoal publishes both listeners on loopback.
    let published: BTreeSet<u16> = array(service("shoal"), "/ports")
        .iter()
        .map(|mapping| port_of(mapping.as_str().expect("a short port mapping")))
        .collect();
    assert_eq!(published, BTreeSet::from([grpc_port(), admin_port()]));

    // Prometheus scrapes shoal's admin listener.
    let prometheus = yaml("prometheus.yml");
    let job = array(&prometheus, "/scrape_configs")
        .iter()
        .find(|job| job["job_name"] == "shoal")
        .expect("a shoal scrape job");
    assert_eq!(
        job.get("metrics_path").and_then(Value::as_str),
        Some("/metrics")
    );
    let targets = array(job, "/static_configs/0/targets");
    assert!(
        targets.contains(&Value::from(format!("shoal:{}", admin_port()))),
        "{targets:?}"
    );

    // shoal -> collector -> Jaeger, by OTLP over gRPC.
    let shoal_env = &service("shoal")["environment"];
    let (collector, port) = host_port(text(shoal_env, "/OTEL_EXPORTER_OTLP_ENDPOINT"));
    service(&collector);
    let otel = yaml("otel-collector.yaml");
    assert_eq!(
        port_of(text(&otel, "/receivers/otlp/protocols/grpc/endpoint")),
        port
    );
    let exporters = otel["exporters"].as_object().expect("exporters");
    for exporter in exporters.values() {
        let (host, _) = host_port(text(exporter, "/endpoint"));
        service(&host);
    }

    // Grafana's data sources are compose services.
    let datasources = yaml("grafana/provisioning/datasources/datasources.yaml");
    for datasource in array(&datasources, "/datasources") {
        let (host, _) = host_port(text(datasource, "/url"));
        service(&host);
    }

    // Every bind-mounted file or directory exists, and Grafana's dashboard
    // provider reads the directory the dashboards are mounted on.
    let mut mounts = BTreeMap::new();
    for (name, definition) in services {
        for volume in definition
            .get("volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let volume = volume.as_str().expect("short volume syntax");
            if let Some(source) = volume.strip_prefix("./") {
                let source = source.split(':').next().expect("a source");
                assert!(
                    deploy_path(source).exists(),
                    "{name} mounts missing {source}"
                );
                let target = volume.split(':').nth(1).expect("a target");
                mounts.insert(target.to_owned(), source.to_owned());
            }
        }
    }
    let providers = yaml("grafana/provisioning/dashboards/dashboards.yaml");
    let dashboards_dir = text(&providers, "/providers/0/options/path");
    let source = mounts
        .get(dashboards_dir)
        .expect("the dashboards directory is mounted");
    let home = text(
        &service("grafana")["environment"],
        "/GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH",
    );
    let home_file = home
        .strip_prefix(dashboards_dir)
        .expect("the home dashboard is a mounted dashboard");
    assert!(deploy_path(&format!("{source}{home_file}")).is_file());
}

/// Every PromQL expression and variable query in a dashboard.
fn queries(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, value) in object {
                match (key.as_str(), value) {
                    ("expr" | "definition", Value::String(query)) => found.push(query.clone()),
                    _ => queries(value, found),
                }
            }
        }
        Value::Array(values) => values.iter().for_each(|value| queries(value, found)),
        _ => {}
    }
}

#[tokio::test]
async fn the_dashboard_queries_only_exported_metrics() {
    let dashboard: Value =
        serde_json::from_str(&read("grafana/dashboards/shoal.json")).expect("dashboard JSON");
    let mut found = Vec::new();
    queries(&dashboard, &mut found);
    assert!(found.len() > 10, "{found:?}");

    let metric_name = regex::Regex::new(r"shoal_[a-z_]+").expect("regex");
    let exported = exported_metrics().await;
    let mut used = BTreeSet::new();
    for query in &found {
        for name in metric_name.find_iter(query).map(|found| found.as_str()) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|base| exported.get(*base) == Some(&MetricType::Histogram))
                })
                .unwrap_or(name);
            assert!(
                exported.contains_key(base),
                "the dashboard queries {name}, which the server does not export: {query}"
            );
            used.insert(base);
        }
    }
    // What the dashboard is for.
    for needed in [
        "shoal_cache_hits_total",
        "shoal_cache_misses_total",
        "shoal_requests_total",
        "shoal_request_duration_seconds",
        "shoal_memory_used_bytes",
        "shoal_memory_limit_bytes",
        "shoal_evictions_total",
        "shoal_keys",
    ] {
        assert!(used.contains(needed), "no panel shows {needed}");
    }

    // Panels have unique ids and query through the data source variable.
    let mut ids = BTreeSet::new();
    for panel in array(&dashboard, "/panels") {
        assert!(ids.insert(number(panel, "/id")), "duplicate panel id");
        if panel["type"] != "row" {
            assert_eq!(text(panel, "/datasource/uid"), "${datasource}");
        }
    }
}
