//! The files in `deploy/` agree with the server and with each other: ports
//! and probes, label selectors, the ConfigMap's TOML, the Secrets mounted
//! for TLS and tokens (and a server run on them, rotation included), the
//! compose stack's secured wiring, shutdown timing, the memory budget, the
//! Prometheus scrape target, and the metric names the Grafana dashboard
//! queries. (`.ci/validate-deploy` checks each file against its schema; this
//! checks what no schema can.)

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize as _;
use serde_json::Value;
use shoal_server::config::{ClientAuth, Config, MemoryBudget};

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
fn the_pods_are_members_found_through_the_headless_services_endpoints() {
    // Several pods are one cache: the ConfigMap's [cluster] takes the
    // members from the headless Service's EndpointSlices, by pod name.
    let statefulset = yaml("k8s/statefulset.yaml");
    assert_eq!(number(&statefulset, "/spec/replicas"), 3);
    let config = configmap_config();
    assert_eq!(
        config.cluster.membership(),
        shoal_server::cluster::Membership::Kubernetes
    );
    assert!(config.cluster.peers.is_empty());
    let headless = yaml("k8s/service-headless.yaml");
    assert_eq!(
        config.cluster.kubernetes_service,
        text(&headless, "/metadata/name")
    );
    // Readiness drives membership: a not-ready pod must be published as
    // such, or it would own keys while starting or draining.
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], false);
    // Members are dialled on the server's gRPC port, which the headless
    // Service's endpoints must carry.
    let grpc = array(&headless, "/spec/ports")
        .iter()
        .find(|port| port["name"] == "grpc")
        .expect("the headless Service has a grpc port");
    assert_eq!(number(grpc, "/port"), u64::from(grpc_port()));
    // The member id is the pod's name, the namespace the pod's own.
    let container = shoal_container(&statefulset);
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let var = array(container, "/env")
            .iter()
            .find(|var| var["name"] == name)
            .unwrap_or_else(|| panic!("the container sets {name}"));
        assert_eq!(text(var, "/valueFrom/fieldRef/fieldPath"), field);
    }
    assert!(
        config.cluster.node_id.is_none(),
        "node_id comes from POD_NAME"
    );
    // Members are reached by IP over TLS: their certificate is checked for
    // one name, which the README's certificates carry.
    let server_name = config
        .cluster
        .tls_server_name
        .as_deref()
        .expect("cluster.tls_server_name is set");
    assert!(
        read("README.md").contains(&format!("--name {server_name}")),
        "deploy/README.md's dev-cert command names {server_name}"
    );
    let compose = read("compose.yaml");
    assert!(
        !compose.contains("replicas:"),
        "compose.yaml must run a single shoal node"
    );
}

#[test]
fn the_pods_may_watch_endpointslices_and_nothing_else() {
    let statefulset = yaml("k8s/statefulset.yaml");
    let pod = &statefulset["spec"]["template"]["spec"];
    let account = yaml("k8s/serviceaccount.yaml");
    assert_eq!(
        text(pod, "/serviceAccountName"),
        text(&account, "/metadata/name")
    );
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(account["automountServiceAccountToken"], false);

    let role = yaml("k8s/role.yaml");
    let rules = array(&role, "/rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(array(&rules[0], "/apiGroups"), ["discovery.k8s.io"]);
    assert_eq!(array(&rules[0], "/resources"), ["endpointslices"]);
    assert_eq!(array(&rules[0], "/verbs"), ["get", "list", "watch"]);

    let binding = yaml("k8s/rolebinding.yaml");
    assert_eq!(text(&binding, "/roleRef/kind"), "Role");
    assert_eq!(
        text(&binding, "/roleRef/name"),
        text(&role, "/metadata/name")
    );
    let subjects = array(&binding, "/subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!(text(&subjects[0], "/kind"), "ServiceAccount");
    assert_eq!(
        text(&subjects[0], "/name"),
        text(&account, "/metadata/name")
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

    // HTTP(S) GETs on the admin listener: kubelet's gRPC probes speak no
    // TLS. Readiness ends when shutdown begins; liveness does not.
    let scheme = if configmap_config().tls.admin_enabled() {
        "HTTPS"
    } else {
        "HTTP"
    };
    for (name, path) in [
        ("startupProbe", "/readyz"),
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
    ] {
        let probe = &container[name];
        assert!(probe.get("grpc").is_none(), "{name}: a gRPC probe");
        assert_eq!(text(probe, "/httpGet/path"), path, "{name}");
        assert_eq!(text(probe, "/httpGet/scheme"), scheme, "{name}");
        let port = match &probe["httpGet"]["port"] {
            Value::String(name) => *ports
                .get(name)
                .unwrap_or_else(|| panic!("no container port named {name}")),
            other => other.as_u64().expect("a port"),
        };
        assert_eq!(port, admin, "{name} probes the admin listener");
    }

    let annotations = labels(&statefulset, "/spec/template/metadata/annotations");
    assert_eq!(
        annotations.get("prometheus.io/scheme").map(String::as_str),
        Some(scheme.to_ascii_lowercase().as_str()),
        "scrapers are told the admin listener's scheme"
    );
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

/// The example Secrets (`k8s/examples/secrets.yaml`), by name.
fn example_secrets() -> BTreeMap<String, Value> {
    let source = read("k8s/examples/secrets.yaml");
    serde_yaml_ng::Deserializer::from_str(&source)
        .map(|document| Value::deserialize(document).expect("a YAML document"))
        .map(|secret| {
            assert_eq!(text(&secret, "/kind"), "Secret");
            (text(&secret, "/metadata/name").to_owned(), secret)
        })
        .collect()
}

/// The keys a Secret manifest holds, in `data` or `stringData`.
fn secret_keys(secret: &Value) -> BTreeSet<String> {
    ["data", "stringData"]
        .iter()
        .filter_map(|field| secret.get(field).and_then(Value::as_object))
        .flat_map(|data| data.keys().cloned())
        .collect()
}

/// Where a file the server reads comes from in the pod: the Secret and key
/// mounted at that path, checking that the mount is read-only and whole (a
/// `subPath` mount never sees a Secret's updates).
fn mounted_secret_key(statefulset: &Value, path: &Path) -> (String, String) {
    let dir = path.parent().and_then(Path::to_str).expect("a directory");
    let file = path
        .file_name()
        .and_then(|name| name.to_str())
        .expect("a file name");
    let mount = array(shoal_container(statefulset), "/volumeMounts")
        .iter()
        .find(|mount| text(mount, "/mountPath").trim_end_matches('/') == dir)
        .unwrap_or_else(|| panic!("nothing is mounted at {dir}, where the server reads {file}"));
    assert_eq!(mount["readOnly"], true, "{dir} is mounted read-only");
    assert!(
        mount.get("subPath").is_none() && mount.get("subPathExpr").is_none(),
        "{dir}: a subPath mount never sees the Secret's updates"
    );
    let volume = array(statefulset, "/spec/template/spec/volumes")
        .iter()
        .find(|volume| volume["name"] == mount["name"])
        .expect("the mounted volume");
    let secret = volume
        .get("secret")
        .unwrap_or_else(|| panic!("{dir} is not a Secret volume"));
    let key = match secret.get("items").and_then(Value::as_array) {
        Some(items) => items
            .iter()
            .find(|item| item["path"] == file)
            .map(|item| text(item, "/key").to_owned())
            .unwrap_or_else(|| panic!("the Secret volume at {dir} has no {file}")),
        None => file.to_owned(),
    };
    (text(secret, "/secretName").to_owned(), key)
}

/// The files the ConfigMap's config reads, by setting.
fn secured_files(config: &Config) -> Vec<(&'static str, PathBuf)> {
    let named = |setting, path: &Option<PathBuf>| {
        (
            setting,
            path.clone()
                .unwrap_or_else(|| panic!("the config sets no {setting}")),
        )
    };
    vec![
        named("tls.cert", &config.tls.cert),
        named("tls.key", &config.tls.key),
        named("tls.client_ca", &config.tls.client_ca),
        named("auth.token_file", &config.auth.token_file),
    ]
}

/// Whether clap reads `value` as false for a flag such as `--insecure`.
fn is_false(value: &str) -> bool {
    ["false", "no", "off", "0", "n", "f"].contains(&value.trim().to_ascii_lowercase().as_str())
}

#[test]
fn the_pod_reads_tls_and_tokens_from_mounted_secrets() {
    let statefulset = yaml("k8s/statefulset.yaml");
    let container = shoal_container(&statefulset);
    let mut config = configmap_config();
    config.listen = env_var(container, "SHOAL_LISTEN")
        .parse()
        .expect("SHOAL_LISTEN is an address");
    assert!(config.tls.enabled(), "the ConfigMap turns TLS on");
    assert!(
        config.tls.admin_enabled(),
        "and HTTPS on the admin listener"
    );
    assert_ne!(config.tls.client_auth, ClientAuth::Off);
    assert_eq!(
        config.unprotected_exposure(),
        None,
        "the pod's listener passes protected mode"
    );
    // Protected mode stays on: a config that lost its tokens would refuse
    // to start rather than serve open.
    assert!(is_false(env_var(container, "SHOAL_INSECURE")));
    // The CLI and the health check read these as their client certificate.
    for name in ["SHOAL_TLS_CERT", "SHOAL_TLS_KEY", "SHOAL_TOKEN_FILE"] {
        assert!(
            !array(container, "/env")
                .iter()
                .any(|var| var["name"] == name),
            "{name} is set in the environment; the ConfigMap names the files"
        );
    }

    let examples = example_secrets();
    let mut mounted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (setting, path) in secured_files(&config) {
        let (secret, key) = mounted_secret_key(&statefulset, &path);
        let example = examples
            .get(&secret)
            .unwrap_or_else(|| panic!("{setting}: no example of the Secret {secret}"));
        assert!(
            secret_keys(example).contains(&key),
            "{setting}: the example {secret} has no key {key}"
        );
        mounted.entry(secret).or_default().insert(key);
    }
    // The standard TLS Secret, its certificate and key under the names that
    // type (and cert-manager) gives them.
    let (tls, cert) = mounted_secret_key(&statefulset, config.tls.cert.as_deref().expect("cert"));
    let (_, key) = mounted_secret_key(&statefulset, config.tls.key.as_deref().expect("key"));
    assert_eq!((cert.as_str(), key.as_str()), ("tls.crt", "tls.key"));
    assert_eq!(text(&examples[&tls], "/type"), "kubernetes.io/tls");
    // Every Secret volume mounts keys the config reads, and no other.
    for volume in array(&statefulset, "/spec/template/spec/volumes") {
        if let Some(secret) = volume.get("secret") {
            let name = text(secret, "/secretName");
            let keys: BTreeSet<String> = array(secret, "/items")
                .iter()
                .map(|item| text(item, "/key").to_owned())
                .collect();
            assert_eq!(Some(&keys), mounted.get(name), "the Secret volume {name}");
        }
    }
    // The example token file is one the server would load.
    let (tokens, key) = mounted_secret_key(
        &statefulset,
        config.auth.token_file.as_deref().expect("token file"),
    );
    let token_file = text(&examples[&tokens], &format!("/stringData/{key}"));
    let parsed = shoal_server::auth::TokenSet::parse(token_file).expect("the example token file");
    assert!(parsed.tokens() > 0);

    // The Secret files are readable by the server's group only.
    let pod = &statefulset["spec"]["template"]["spec"];
    assert_eq!(
        pod.pointer("/securityContext/fsGroup"),
        pod.pointer("/securityContext/runAsGroup")
    );
}

/// A Secret volume laid out as the kubelet lays one out: each file a
/// symlink through `..data` to a directory of this version, `..data`
/// replaced by a rename when the Secret changes.
fn write_secret_volume(dir: &Path, version: u32, files: &BTreeMap<String, String>) {
    let versioned = format!("..version_{version}");
    std::fs::create_dir_all(dir.join(&versioned)).expect("version directory");
    for (name, content) in files {
        std::fs::write(dir.join(&versioned).join(name), content).expect("write a Secret file");
    }
    let next = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&versioned, &next).expect("symlink");
    std::fs::rename(&next, dir.join("..data")).expect("swap ..data");
    for name in files.keys() {
        let link = dir.join(name);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link).expect("symlink");
        }
    }
    if version > 1 {
        std::fs::remove_dir_all(dir.join(format!("..version_{}", version - 1))).expect("cleanup");
    }
}

/// One version of the two Secrets: a CA, a server certificate it signed,
/// and a token file with one admin token; the token's secret comes back.
fn secret_contents(config: &Config, version: u32) -> (BTreeMap<PathBuf, String>, String, String) {
    use shoal_server::tls::dev_cert::{DevCa, Leaf};
    let ca = DevCa::new(&format!("deploy test CA {version}")).expect("CA");
    let server = ca
        .issue(&Leaf::server(&["localhost", "127.0.0.1"]))
        .expect("server certificate");
    let token = shoal_server::auth::generate_token().expect("a token");
    let grant = shoal_server::auth::parse_grant("*=admin").expect("grant");
    let stanza =
        shoal_server::auth::token_stanza("ops", &token.digest, &[grant], None).expect("stanza");
    let files = BTreeMap::from([
        (config.tls.cert.clone().expect("cert"), server.cert_pem),
        (config.tls.key.clone().expect("key"), server.key_pem),
        (
            config.tls.client_ca.clone().expect("CA"),
            ca.cert_pem().to_owned(),
        ),
        (config.auth.token_file.clone().expect("tokens"), stanza),
    ]);
    (files, ca.cert_pem().to_owned(), token.secret)
}

/// Writes one version of the Secrets into the pod's directories under
/// `root`.
fn write_secrets(root: &Path, files: &BTreeMap<PathBuf, String>, version: u32) {
    let mut volumes: BTreeMap<PathBuf, BTreeMap<String, String>> = BTreeMap::new();
    for (path, content) in files {
        let dir = root.join(
            path.parent()
                .expect("dir")
                .strip_prefix("/")
                .expect("absolute"),
        );
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .expect("name");
        volumes
            .entry(dir)
            .or_default()
            .insert(name.to_owned(), content.clone());
    }
    for (dir, files) in volumes {
        write_secret_volume(&dir, version, &files);
    }
}

/// The outcome of a Set over a fresh connection that trusts `ca_pem` and
/// sends `token`.
async fn set_with(
    server: &shoal_tests::tls::TlsServer,
    ca_pem: &str,
    token: Option<&str>,
) -> Result<(), tonic::Code> {
    let mut builder = shoal_client::Client::builder()
        .endpoint(server.endpoint())
        .tls(shoal_client::TlsConfig::new().ca_pem(ca_pem))
        .max_retries(0)
        .timeout(Duration::from_secs(5));
    if let Some(token) = token {
        builder = builder.token(token);
    }
    let client = builder.connect_lazy().expect("client");
    client
        .set("deploy", "secured")
        .await
        .map(drop)
        .map_err(|error| error.code())
}

#[tokio::test]
async fn the_configmap_serves_tls_and_tokens_from_secret_volumes_and_takes_rotations() {
    use tonic::Code;
    // The pod's paths, as the ConfigMap names them; the server reads them
    // under a temporary directory.
    let deployed = configmap_config();
    let mut config = deployed.clone();
    let pod = tempfile::tempdir().expect("a directory for the pod's files");
    let in_pod = |path: &Option<PathBuf>| {
        path.as_ref().map(|path| {
            pod.path()
                .join(path.strip_prefix("/").expect("an absolute path"))
        })
    };
    let (files, ca, token) = secret_contents(&deployed, 1);
    write_secrets(pod.path(), &files, 1);
    config.tls.cert = in_pod(&config.tls.cert);
    config.tls.key = in_pod(&config.tls.key);
    config.tls.client_ca = in_pod(&config.tls.client_ca);
    config.auth.token_file = in_pod(&config.auth.token_file);
    // The volume claim's data directory, likewise.
    config.persistence.data_dir = in_pod(&config.persistence.data_dir);
    // A single server: there is no API server here to list the members.
    config.cluster = shoal_server::cluster::ClusterSettings::default();
    let server = shoal_tests::tls::TlsServer::start(
        config.clone(),
        shoal_client::TlsConfig::new().ca_pem(ca.as_str()),
    )
    .await;

    // TLS with the mounted certificate; calls need the mounted token.
    assert_eq!(
        set_with(&server, &ca, None).await,
        Err(Code::Unauthenticated)
    );
    assert_eq!(
        set_with(&server, &ca, Some("shoal_not-a-token")).await,
        Err(Code::Unauthenticated)
    );
    assert_eq!(set_with(&server, &ca, Some(&token)).await, Ok(()));
    // The probes' paths answer over HTTPS, as do the metrics.
    for path in ["/readyz", "/healthz", "/metrics"] {
        let (status, body) = shoal_tests::tls::https_get(server.admin_addr(), &ca, path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }

    // The Secrets change: the kubelet swaps ..data, and the server takes
    // the new certificate and tokens without a restart.
    let (files, new_ca, new_token) = secret_contents(&deployed, 2);
    write_secrets(pod.path(), &files, 2);
    let waited =
        (config.tls.reload_interval_secs * 1000).max(config.auth.reload_interval_ms) + 20_000;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(waited);
    loop {
        if set_with(&server, &new_ca, Some(&new_token)).await == Ok(())
            && set_with(&server, &new_ca, Some(&token)).await == Err(Code::Unauthenticated)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not take the rotated Secrets within {waited} ms"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A compose service's named volume holding `path`: the volume and the
/// path inside it, and whether it is mounted read-only.
fn compose_volume(service: &Value, path: &str) -> (String, String, bool) {
    array(service, "/volumes")
        .iter()
        .map(|volume| volume.as_str().expect("short volume syntax"))
        .filter(|volume| !volume.starts_with("./"))
        .find_map(|volume| {
            let mut parts = volume.split(':');
            let (name, target) = (parts.next()?, parts.next()?);
            let inside = path.strip_prefix(target)?.strip_prefix('/')?;
            Some((
                name.to_owned(),
                inside.to_owned(),
                parts.next() == Some("ro"),
            ))
        })
        .unwrap_or_else(|| panic!("no named volume holds {path}"))
}

/// Where a compose service mounts a named volume.
fn compose_mount_target(service: &Value, volume: &str) -> String {
    array(service, "/volumes")
        .iter()
        .filter_map(|mount| mount.as_str()?.strip_prefix(volume)?.strip_prefix(':'))
        .map(|rest| rest.split(':').next().expect("a target").to_owned())
        .next()
        .unwrap_or_else(|| panic!("the volume {volume} is not mounted"))
}

/// The compose stack's shoal config, from the file mounted at SHOAL_CONFIG.
fn compose_config(compose: &Value) -> (Config, String) {
    let shoal = &compose["services"]["shoal"];
    let target = text(&shoal["environment"], "/SHOAL_CONFIG");
    let source = array(shoal, "/volumes")
        .iter()
        .filter_map(|volume| volume.as_str()?.strip_prefix("./"))
        .find(|volume| volume.split(':').nth(1) == Some(target))
        .and_then(|volume| volume.split(':').next())
        .unwrap_or_else(|| panic!("nothing is mounted at SHOAL_CONFIG {target}"))
        .to_owned();
    let config = Config::from_toml(&read(&source), Path::new(&source))
        .unwrap_or_else(|error| panic!("{source}: {error}"));
    (config, source)
}

#[test]
fn compose_runs_shoal_secured_on_the_files_shoal_init_writes() {
    let compose = yaml("compose.yaml");
    let services = compose["services"].as_object().expect("services");
    let shoal = &services["shoal"];
    let init = &services["shoal-init"];
    let prometheus = &services["prometheus"];
    let env = &shoal["environment"];

    // On the image's listen address, the config passes protected mode, and
    // protected mode is on.
    let (mut config, source) = compose_config(&compose);
    let image_env = dockerfile_instructions()
        .iter()
        .filter_map(|line| line.strip_prefix("ENV "))
        .flat_map(|vars| {
            vars.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find_map(|var| var.strip_prefix("SHOAL_LISTEN=").map(str::to_owned))
        .expect("the image sets SHOAL_LISTEN");
    config.listen = image_env.parse().expect("an address");
    assert!(
        config.tls.enabled() && config.tls.admin_enabled(),
        "{source}"
    );
    assert_eq!(config.unprotected_exposure(), None, "{source}");
    assert!(is_false(text(env, "/SHOAL_INSECURE")));
    for name in ["SHOAL_TLS_CERT", "SHOAL_TLS_KEY"] {
        assert!(
            env.get(name).is_none(),
            "{name} would be the client certificate of the HEALTHCHECK and the CLI"
        );
    }

    // shoal-init writes every file the config reads into a volume that
    // shoal mounts read-only, and shoal starts once it has.
    assert_eq!(
        text(shoal, "/depends_on/shoal-init/condition"),
        "service_completed_successfully"
    );
    let script = array(init, "/command")
        .iter()
        .map(|part| part.as_str().expect("a string"))
        .collect::<Vec<_>>()
        .join(" ");
    let dev = tempfile::tempdir().expect("a directory");
    let made = shoal_server::tls::dev_cert::write(dev.path()).expect("dev-cert");
    let dev_cert_file = |path: &Path| {
        path.strip_prefix(dev.path())
            .expect("in the directory")
            .to_str()
            .expect("UTF-8")
            .to_owned()
    };
    let in_init = |path: &str| -> (String, String) {
        let (volume, inside, read_only) = compose_volume(shoal, path);
        assert!(read_only, "shoal mounts {volume} read-only");
        (compose_mount_target(init, &volume), inside)
    };
    for (path, made) in [
        (config.tls.cert.as_ref(), &made.server_cert),
        (config.tls.key.as_ref(), &made.server_key),
    ] {
        let path = path.and_then(|path| path.to_str()).expect("a path");
        let (dir, file) = in_init(path);
        assert_eq!(file, dev_cert_file(made), "{path} is what dev-cert writes");
        assert!(
            script.contains(&format!("dev-cert --out {dir}")),
            "shoal-init writes the certificates to {dir}: {script}"
        );
    }
    let tokens = config
        .auth
        .token_file
        .as_ref()
        .and_then(|path| path.to_str())
        .expect("a token file");
    let (dir, file) = in_init(tokens);
    assert!(
        script.contains("shoal-server token") && script.contains(&format!("{dir}/{file}")),
        "shoal-init writes the token file {dir}/{file}: {script}"
    );

    // The image's HEALTHCHECK and the CLI in the container trust the CA
    // beside the server's certificate, and dial TLS.
    let cert_volume = compose_volume(
        shoal,
        config
            .tls
            .cert
            .as_ref()
            .and_then(|path| path.to_str())
            .expect("cert"),
    )
    .0;
    let ca = text(env, "/SHOAL_TLS_CA");
    let (ca_volume, ca_file, _) = compose_volume(shoal, ca);
    assert_eq!(ca_volume, cert_volume);
    assert_eq!(ca_file, dev_cert_file(&made.ca));
    assert_eq!(
        text(env, "/SHOAL_ADDR"),
        format!("https://127.0.0.1:{}", grpc_port())
    );

    // Prometheus scrapes over HTTPS with that CA, under the service's name,
    // which shoal-init puts in the development certificate.
    let job = array(&yaml("prometheus.yml"), "/scrape_configs")
        .iter()
        .find(|job| job["job_name"] == "shoal")
        .cloned()
        .expect("a shoal scrape job");
    assert_eq!(text(&job, "/scheme"), "https");
    let (volume, file, read_only) = compose_volume(prometheus, text(&job, "/tls_config/ca_file"));
    assert!(read_only);
    assert_eq!((volume, file), (ca_volume, ca_file));
    let targets = array(&job, "/static_configs/0/targets");
    let target = targets[0].as_str().expect("a target");
    let host = target.split(':').next().expect("host:port");
    assert!(
        job.pointer("/tls_config/server_name").is_none(),
        "the certificate names the target itself"
    );
    assert!(
        script.contains(&format!("--name {host}")),
        "dev-cert names the scrape target's host {host}: {script}"
    );

    // Every named volume is declared.
    let declared = compose["volumes"].as_object().expect("volumes");
    for service in services.values() {
        for volume in service
            .get("volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let volume = volume.as_str().expect("short syntax");
            if !volume.starts_with("./") {
                let name = volume.split(':').next().expect("a name");
                assert!(declared.contains_key(name), "undeclared volume {name}");
            }
        }
    }
}

#[tokio::test]
async fn the_compose_config_serves_tls_and_tokens_from_the_init_services_files() {
    use tonic::Code;
    let (deployed, _) = compose_config(&yaml("compose.yaml"));
    let root = tempfile::tempdir().expect("a directory");
    let in_container = |path: &Option<PathBuf>| {
        path.as_ref()
            .map(|path| root.path().join(path.strip_prefix("/").expect("absolute")))
    };
    let mut config = deployed.clone();
    config.tls.cert = in_container(&deployed.tls.cert);
    config.tls.key = in_container(&deployed.tls.key);
    config.auth.token_file = in_container(&deployed.auth.token_file);
    // What shoal-init runs: dev-cert into the certificates' directory, and
    // a token file.
    let certs_dir = config
        .tls
        .cert
        .as_ref()
        .and_then(|path| path.parent())
        .expect("dir");
    let made = shoal_server::tls::dev_cert::write(certs_dir).expect("dev-cert");
    assert_eq!(Some(&made.server_key), config.tls.key.as_ref());
    let token = shoal_server::auth::generate_token().expect("a token");
    let grant = shoal_server::auth::parse_grant("*=admin").expect("grant");
    let stanza =
        shoal_server::auth::token_stanza("ops", &token.digest, &[grant], None).expect("stanza");
    let token_file = config.auth.token_file.as_ref().expect("token file");
    std::fs::create_dir_all(token_file.parent().expect("dir")).expect("dir");
    std::fs::write(token_file, stanza).expect("token file");

    let ca = std::fs::read_to_string(&made.ca).expect("ca.pem");
    let server = shoal_tests::tls::TlsServer::start(
        config,
        shoal_client::TlsConfig::new().ca_pem(ca.as_str()),
    )
    .await;
    assert_eq!(
        set_with(&server, &ca, None).await,
        Err(Code::Unauthenticated)
    );
    assert_eq!(set_with(&server, &ca, Some(&token.secret)).await, Ok(()));
    let (status, body) = shoal_tests::tls::https_get(server.admin_addr(), &ca, "/metrics").await;
    assert_eq!(status, 200, "{body}");
}

#[test]
fn the_data_directory_is_on_a_volume_that_outlives_the_pod_and_the_container() {
    use shoal_server::persistence::settings::PersistenceMode;

    // Kubernetes: the ConfigMap's data directory is the mount of a volume
    // claim template, so each pod keeps its claim across restarts.
    let config = configmap_config();
    assert_eq!(config.persistence.mode, PersistenceMode::Log);
    let data_dir = config
        .persistence
        .data_dir
        .clone()
        .expect("a data directory");
    let statefulset = yaml("k8s/statefulset.yaml");
    let mount = array(shoal_container(&statefulset), "/volumeMounts")
        .iter()
        .find(|mount| Path::new(text(mount, "/mountPath")) == data_dir)
        .expect("the data directory is mounted");
    assert!(
        mount
            .get("readOnly")
            .is_none_or(|read_only| read_only == false)
    );
    let claim = array(&statefulset, "/spec/volumeClaimTemplates")
        .iter()
        .find(|claim| claim.pointer("/metadata/name") == mount.get("name"))
        .expect("the data directory's volume is a claim template");
    assert!(!text(claim, "/spec/resources/requests/storage").is_empty());

    // Compose: the data directory is a named volume.
    let compose = yaml("compose.yaml");
    let shoal = &compose["services"]["shoal"];
    assert_eq!(text(shoal, "/environment/SHOAL_PERSISTENCE"), "log");
    let data_dir = text(shoal, "/environment/SHOAL_DATA_DIR");
    let volume = array(shoal, "/volumes")
        .iter()
        .filter_map(Value::as_str)
        .find_map(|volume| {
            let (source, target) = volume.split_once(':')?;
            (target == data_dir).then_some(source)
        })
        .expect("the data directory is mounted");
    assert!(
        compose["volumes"].get(volume).is_some(),
        "{volume} is a named volume"
    );
}
