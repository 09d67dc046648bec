//! Members from the EndpointSlices of a Kubernetes Service (the
//! StatefulSet's headless Service): each endpoint is a member, named by
//! its pod, at its address, ready as Kubernetes says.
//!
//! The slices are watched through the API server with a reflector, which
//! keeps the last complete list: a failed watch is logged and resumed with
//! backoff, and a relist replaces the list only once it is complete, so
//! while the API server is unreachable the members stay as they were last
//! seen (and the probes still take out the ones that stop answering).
//! [`members_from_slices`] is the whole mapping, with no client, so that it
//! is tested on slices built by hand.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::runtime::{WatchStreamExt, reflector, watcher};

use super::MembershipSource;
use crate::cluster::ClusterError;
use crate::cluster::settings::{ClusterSettings, env_value};
use crate::cluster::topology::{Member, Topology};

/// The label the EndpointSlice controller puts on a Service's slices.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The endpoints of one Service, watched.
#[derive(Clone)]
pub struct KubernetesMembers {
    client: kube::Client,
    namespace: String,
    service: String,
    port: u16,
}

impl std::fmt::Debug for KubernetesMembers {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KubernetesMembers")
            .field("namespace", &self.namespace)
            .field("service", &self.service)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl KubernetesMembers {
    /// A client for the API server of the pod's cluster (its service
    /// account), or of the kubeconfig's current context outside one, for
    /// the slices of `settings.kubernetes_service`; members are reached on
    /// `port`, the gRPC port every member listens on.
    ///
    /// # Errors
    /// [`ClusterError::Kubernetes`] when no API server is configured (not
    /// in a pod, no kubeconfig) or the client cannot be built. Nothing is
    /// asked of the API server yet.
    pub async fn connect(settings: &ClusterSettings, port: u16) -> Result<Self, ClusterError> {
        let config = kube::Config::infer().await.map_err(|error| {
            ClusterError::Kubernetes(format!(
                "no API server to watch EndpointSlices on (not in a pod, no kubeconfig): {error}"
            ))
        })?;
        let namespace = settings
            .kubernetes_namespace
            .clone()
            .or_else(|| env_value("POD_NAMESPACE"))
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config)
            .map_err(|error| ClusterError::Kubernetes(format!("API client: {error}")))?;
        Ok(Self {
            client,
            namespace,
            service: settings.kubernetes_service.clone(),
            port,
        })
    }

    /// The slices of `service` in `namespace`, through `client` (one the
    /// caller configured, such as a test's API server), members reached on
    /// `port`.
    pub fn with_client(client: kube::Client, namespace: &str, service: &str, port: u16) -> Self {
        Self {
            client,
            namespace: namespace.to_string(),
            service: service.to_string(),
            port,
        }
    }

    /// The namespace watched.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

impl MembershipSource for KubernetesMembers {
    fn initial_members(&self) -> Vec<Member> {
        Vec::new()
    }

    fn run(self, topology: Arc<Topology>) -> impl Future<Output = ()> + Send + 'static {
        watch(self, topology)
    }
}

async fn watch(source: KubernetesMembers, topology: Arc<Topology>) {
    let api = kube::Api::<EndpointSlice>::namespaced(source.client, &source.namespace);
    let selector = format!("{SERVICE_NAME_LABEL}={}", source.service);
    let (store, writer) = reflector::store();
    let events = reflector(
        writer,
        watcher(api, watcher::Config::default().labels(&selector)),
    )
    .default_backoff();
    let mut events = std::pin::pin!(events);
    let mut listed = false;
    while let Some(event) = events.next().await {
        match event {
            // The store holds the complete list after each of these; during
            // a (re)list it keeps the previous one until InitDone.
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) => {
                let slices = store.state();
                let members = members_from_slices(slices.iter().map(Arc::as_ref), source.port);
                if !listed {
                    listed = true;
                    tracing::info!(
                        namespace = %source.namespace,
                        service = %source.service,
                        members = members.len(),
                        "cluster members listed from the Service's EndpointSlices"
                    );
                }
                topology.set_members(members);
            }
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Err(error) => tracing::warn!(
                namespace = %source.namespace,
                service = %source.service,
                %error,
                "watching the cluster's EndpointSlices failed: the last known members stay, \
                 retrying with backoff"
            ),
        }
    }
    tracing::error!("the EndpointSlice watch ended: cluster members are no longer updated");
}

/// The members `slices` list, sorted by id, each reached at `ip:port`:
///
/// - one member per endpoint, with its pod's name (`targetRef.name`) as its
///   id, or its `ip:port` when it names no object;
/// - ready when Kubernetes says so (`conditions.ready`, where unset means
///   ready, as the API documents) and it is not terminating;
/// - an endpoint listed twice (in two slices while they are rebalanced, or
///   once per address family on a dual-stack Service) is one member, the
///   ready listing first, then IPv4, then the lowest address;
/// - slices of FQDN endpoints, and addresses that are not IPs, are left out.
pub fn members_from_slices<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    port: u16,
) -> Vec<Member> {
    let mut members: BTreeMap<String, (Member, bool)> = BTreeMap::new();
    for slice in slices {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        for endpoint in &slice.endpoints {
            let ready = is_ready(endpoint);
            let Some(ip) = endpoint
                .addresses
                .iter()
                .filter_map(|address| address.parse::<IpAddr>().ok())
                .min()
            else {
                continue;
            };
            let address = SocketAddr::new(ip, port).to_string();
            let id = endpoint
                .target_ref
                .as_ref()
                .and_then(|target| target.name.clone())
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| address.clone());
            let candidate = Member { id, address, ready };
            let ipv4 = ip.is_ipv4();
            match members.get(&candidate.id) {
                Some((kept, kept_ipv4))
                    if (kept.ready, *kept_ipv4, std::cmp::Reverse(&kept.address))
                        >= (ready, ipv4, std::cmp::Reverse(&candidate.address)) => {}
                _ => {
                    members.insert(candidate.id.clone(), (candidate, ipv4));
                }
            }
        }
    }
    members.into_values().map(|(member, _)| member).collect()
}

fn is_ready(endpoint: &Endpoint) -> bool {
    let conditions = endpoint.conditions.as_ref();
    let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
    let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
    ready && !terminating
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::discovery::v1::EndpointConditions;

    use super::*;

    fn endpoint(pod: Option<&str>, addresses: &[&str], ready: Option<bool>) -> Endpoint {
        Endpoint {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            conditions: Some(EndpointConditions {
                ready,
                serving: ready,
                terminating: Some(false),
            }),
            target_ref: pod.map(|name| ObjectReference {
                kind: Some("Pod".to_string()),
                name: Some(name.to_string()),
                ..ObjectReference::default()
            }),
            ..Endpoint::default()
        }
    }

    fn slice(address_type: &str, endpoints: Vec<Endpoint>) -> EndpointSlice {
        EndpointSlice {
            address_type: address_type.to_string(),
            endpoints,
            ..EndpointSlice::default()
        }
    }

    fn member(id: &str, address: &str, ready: bool) -> Member {
        Member {
            id: id.to_string(),
            address: address.to_string(),
            ready,
        }
    }

    #[test]
    fn each_endpoint_is_a_member_named_by_its_pod_with_its_readiness() {
        let slices = [slice(
            "IPv4",
            vec![
                endpoint(Some("shoal-1"), &["10.0.0.2"], Some(false)),
                endpoint(Some("shoal-0"), &["10.0.0.1"], Some(true)),
                endpoint(Some("shoal-2"), &["10.0.0.3"], None),
            ],
        )];
        assert_eq!(
            members_from_slices(&slices, 50051),
            [
                member("shoal-0", "10.0.0.1:50051", true),
                member("shoal-1", "10.0.0.2:50051", false),
                // Unset readiness is unknown, which the API says to take
                // as ready.
                member("shoal-2", "10.0.0.3:50051", true),
            ]
        );
    }

    #[test]
    fn a_terminating_endpoint_owns_no_keys() {
        let mut leaving = endpoint(Some("shoal-0"), &["10.0.0.1"], Some(true));
        leaving.conditions.as_mut().unwrap().terminating = Some(true);
        let slices = [slice("IPv4", vec![leaving])];
        assert_eq!(
            members_from_slices(&slices, 1),
            [member("shoal-0", "10.0.0.1:1", false)]
        );
    }

    #[test]
    fn slices_are_merged_and_duplicates_are_one_member() {
        let slices = [
            slice(
                "IPv4",
                vec![
                    endpoint(Some("shoal-0"), &["10.0.0.1"], Some(true)),
                    endpoint(Some("shoal-1"), &["10.0.0.2"], Some(false)),
                ],
            ),
            // The controller moving shoal-1 to another slice: the ready
            // listing wins, in either order.
            slice(
                "IPv4",
                vec![
                    endpoint(Some("shoal-1"), &["10.0.0.2"], Some(true)),
                    endpoint(Some("shoal-2"), &["10.0.0.3"], Some(true)),
                    endpoint(Some("shoal-0"), &["10.0.0.1"], Some(false)),
                ],
            ),
        ];
        let expected = [
            member("shoal-0", "10.0.0.1:7", true),
            member("shoal-1", "10.0.0.2:7", true),
            member("shoal-2", "10.0.0.3:7", true),
        ];
        assert_eq!(members_from_slices(&slices, 7), expected);
        assert_eq!(members_from_slices(slices.iter().rev(), 7), expected);
    }

    #[test]
    fn an_endpoint_without_a_target_is_named_by_its_address() {
        let slices = [slice(
            "IPv4",
            vec![endpoint(None, &["192.168.1.9"], Some(true))],
        )];
        assert_eq!(
            members_from_slices(&slices, 50051),
            [member("192.168.1.9:50051", "192.168.1.9:50051", true)]
        );
    }

    #[test]
    fn ipv6_addresses_are_bracketed_and_dual_stack_prefers_ipv4() {
        let v6 = [slice(
            "IPv6",
            vec![endpoint(Some("shoal-0"), &["fd00:0:0::0a"], Some(true))],
        )];
        assert_eq!(
            members_from_slices(&v6, 50051),
            [member("shoal-0", "[fd00::a]:50051", true)]
        );
        let dual = [
            v6[0].clone(),
            slice(
                "IPv4",
                vec![endpoint(Some("shoal-0"), &["10.0.0.1"], Some(true))],
            ),
        ];
        assert_eq!(
            members_from_slices(&dual, 50051),
            [member("shoal-0", "10.0.0.1:50051", true)]
        );
    }

    #[test]
    fn fqdn_slices_and_unparsable_addresses_are_left_out() {
        let slices = [
            slice(
                "FQDN",
                vec![endpoint(Some("a"), &["a.example.com"], Some(true))],
            ),
            slice(
                "IPv4",
                vec![
                    endpoint(Some("b"), &["not-an-ip"], Some(true)),
                    endpoint(Some("c"), &[], Some(true)),
                ],
            ),
        ];
        assert!(members_from_slices(&slices, 1).is_empty());
    }

    #[test]
    fn no_slices_is_no_members() {
        assert!(members_from_slices(std::iter::empty(), 1).is_empty());
    }

    /// What the test's API server answers.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Phase {
        /// The list has slice s1 (a and b ready); a watch reports b not
        /// ready, then ends.
        Serving,
        /// Every request fails with 500.
        Failing,
        /// The list has s1 and s2 (c ready); a watch reports s2 added.
        Recovered,
    }

    #[derive(Default)]
    struct ApiServer {
        phase: parking_lot::Mutex<Option<Phase>>,
        failures: std::sync::atomic::AtomicUsize,
        selectors_seen: parking_lot::Mutex<Vec<String>>,
    }

    fn named_slice(name: &str, endpoints: Vec<Endpoint>) -> EndpointSlice {
        let mut slice = slice("IPv4", endpoints);
        slice.metadata.name = Some(name.to_string());
        slice.metadata.namespace = Some("cache".to_string());
        slice.metadata.resource_version = Some("2".to_string());
        slice
    }

    fn s1(b_ready: bool) -> EndpointSlice {
        named_slice(
            "s1",
            vec![
                endpoint(Some("a"), &["10.0.0.1"], Some(true)),
                endpoint(Some("b"), &["10.0.0.2"], Some(b_ready)),
            ],
        )
    }

    fn s2() -> EndpointSlice {
        named_slice("s2", vec![endpoint(Some("c"), &["10.0.0.3"], Some(true))])
    }

    fn list(items: Vec<EndpointSlice>) -> String {
        serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSliceList",
            "metadata": { "resourceVersion": "1" },
            "items": items,
        })
        .to_string()
    }

    fn watch_event(kind: &str, slice: EndpointSlice) -> String {
        let mut object = serde_json::to_value(slice).unwrap();
        object["apiVersion"] = "discovery.k8s.io/v1".into();
        object["kind"] = "EndpointSlice".into();
        format!(
            "{}\n",
            serde_json::json!({ "type": kind, "object": object })
        )
    }

    async fn answer(server: &ApiServer, uri: &http::Uri) -> (http::StatusCode, String) {
        let query = uri.query().unwrap_or_default();
        if let Some(selector) = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("labelSelector="))
        {
            server.selectors_seen.lock().push(selector.to_string());
        }
        let watching = query.split('&').any(|pair| pair == "watch=true");
        let phase = *server.phase.lock();
        match phase {
            Some(Phase::Failing) | None => {
                server
                    .failures
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                (http::StatusCode::INTERNAL_SERVER_ERROR, "{}".to_string())
            }
            Some(Phase::Serving) if watching => {
                (http::StatusCode::OK, watch_event("MODIFIED", s1(false)))
            }
            Some(Phase::Serving) => (http::StatusCode::OK, list(vec![s1(true)])),
            Some(Phase::Recovered) if watching => {
                (http::StatusCode::OK, watch_event("ADDED", s2()))
            }
            Some(Phase::Recovered) => (http::StatusCode::OK, list(vec![s1(false), s2()])),
        }
    }

    async fn until(topology: &Topology, what: &str, done: impl Fn(&[Member]) -> bool) {
        let mut changes = topology.subscribe();
        tokio::time::timeout(std::time::Duration::from_secs(60), async {
            while !done(changes.borrow_and_update().members()) {
                changes.changed().await.unwrap();
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{what}: members are {:?}", topology.view().members()));
    }

    /// The watch against an API server that lists, reports a change, then
    /// fails for a while and comes back: the members follow each change and
    /// stay as last seen while it fails.
    #[tokio::test]
    async fn the_watch_follows_changes_and_keeps_the_last_members_while_failing() {
        let server = Arc::new(ApiServer::default());
        *server.phase.lock() = Some(Phase::Serving);
        let router = axum::Router::new().fallback({
            let server = Arc::clone(&server);
            move |uri: http::Uri| {
                let server = Arc::clone(&server);
                async move { answer(&server, &uri).await }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: http::Uri = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let api = tokio::spawn(async move { axum::serve(listener, router).await });
        let client = kube::Client::try_from(kube::Config::new(url)).unwrap();
        let source = KubernetesMembers::with_client(client, "cache", "shoal-headless", 50051);
        let (topology, task) = super::super::start("a", source);
        assert!(topology.view().members().is_empty());

        until(&topology, "listed, then b turned not ready", |members| {
            members.len() == 2 && members[0].ready && !members[1].ready
        })
        .await;
        assert_eq!(topology.view().members()[1].address, "10.0.0.2:50051");

        *server.phase.lock() = Some(Phase::Failing);
        let failing_since = server.failures.load(std::sync::atomic::Ordering::SeqCst);
        tokio::time::timeout(std::time::Duration::from_secs(60), async {
            while server.failures.load(std::sync::atomic::Ordering::SeqCst) < failing_since + 2 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the watch retries after a failure");
        let members = topology.view().members().to_vec();
        assert_eq!(
            members.len(),
            2,
            "the failures kept the members: {members:?}"
        );

        *server.phase.lock() = Some(Phase::Recovered);
        until(
            &topology,
            "c joined once the API server answered",
            |members| {
                members
                    .iter()
                    .any(|member| member.id == "c" && member.ready)
            },
        )
        .await;
        assert!(
            server
                .selectors_seen
                .lock()
                .iter()
                .all(|selector| selector.contains("service-name")
                    && selector.ends_with("shoal-headless")),
            "{:?}",
            server.selectors_seen.lock()
        );
        task.abort();
        api.abort();
    }
}
