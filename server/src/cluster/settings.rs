//! The `[cluster]` settings, parsed and checked; the server's
//! [`Config`](crate::config::Config) holds them as `cluster`.
//!
//! ```
//! use shoal_server::cluster::settings::{ClusterSettings, Membership};
//!
//! let settings: ClusterSettings = toml::from_str(
//!     "node_id = \"shoal-0\"\n\
//!      peers = [\"shoal-0=10.0.0.1:50051\", \"shoal-1=10.0.0.2:50051\"]",
//! )
//! .unwrap();
//! settings.validate().unwrap();
//! assert!(settings.enabled());
//! assert_eq!(settings.static_members().unwrap()[1].id, "shoal-1");
//! assert!(!ClusterSettings::default().enabled());
//!
//! let on_kubernetes: ClusterSettings = toml::from_str(
//!     "membership = \"kubernetes\"\nnode_id = \"shoal-0\"",
//! )
//! .unwrap();
//! on_kubernetes.validate().unwrap();
//! assert_eq!(on_kubernetes.membership(), Membership::Kubernetes);
//! assert_eq!(on_kubernetes.kubernetes_service, "shoal-headless");
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::topology::Member;
use crate::config::ConfigError;

/// Longest node id, in bytes (a Kubernetes pod name is at most 253).
pub const MAX_NODE_ID_BYTES: usize = 253;
/// Most members of one cluster.
pub const MAX_MEMBERS: usize = 1024;

/// Where the list of members comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Membership {
    /// The fixed `peers` list.
    Static,
    /// The addresses `dns_name` resolves to, looked up again every
    /// `dns_interval_ms`.
    Dns,
    /// The EndpointSlices of the Service `kubernetes_service`, watched.
    Kubernetes,
}

impl FromStr for Membership {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        match text {
            "static" => Ok(Self::Static),
            "dns" => Ok(Self::Dns),
            "kubernetes" => Ok(Self::Kubernetes),
            other => Err(invalid(
                "cluster.membership",
                format!("{other:?} is not one of \"static\", \"dns\", \"kubernetes\""),
            )),
        }
    }
}

/// The `[cluster]` section. Off (a single server) unless `peers` is set or
/// `membership` names a source that finds the members.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ClusterSettings {
    /// Where the members come from; `static` when unset.
    pub membership: Option<Membership>,
    /// This server's id, which must be one of `peers`; the host name when
    /// unset (a pod's name in a StatefulSet). With Kubernetes membership,
    /// `POD_NAME` then the host name; with DNS, see `advertise`.
    pub node_id: Option<String>,
    /// Every member, this one included, as `id=host:port` (or `host:port`,
    /// which is then also the id). Keys are placed by the ids, so an id
    /// must stay with its server across restarts.
    pub peers: Vec<String>,
    /// With DNS membership: `host:port` whose addresses are the members,
    /// each with its `ip:port` as its id (DNS gives no other name that
    /// stays with a server).
    pub dns_name: Option<String>,
    /// Milliseconds between DNS lookups; `probe_interval_ms` when unset.
    pub dns_interval_ms: Option<u64>,
    /// With DNS membership: this server's `ip:port` as `dns_name` resolves
    /// it, which is its id there (`node_id` when unset).
    pub advertise: Option<String>,
    /// With Kubernetes membership: the Service whose EndpointSlices list
    /// the members (the StatefulSet's headless Service).
    pub kubernetes_service: String,
    /// With Kubernetes membership: the Service's namespace; when unset,
    /// `POD_NAMESPACE`, else the pod's own namespace (from its service
    /// account), else the kubeconfig context's.
    pub kubernetes_namespace: Option<String>,
    /// Milliseconds between health probes of each other member.
    pub probe_interval_ms: u64,
    /// Probes in a row that fail before a member counts as down (its keys
    /// then go to the next members); one success brings it back.
    pub probe_failures: u32,
    /// Milliseconds a probe, or a connection to a member, may take.
    pub probe_timeout_ms: u64,
    /// CA bundle that signs the members' certificates, for TLS between
    /// members; without it members are called in plaintext unless the
    /// server's own listener has TLS, whose `tls.client_ca` is then used.
    pub tls_ca: Option<PathBuf>,
    /// The name every member's certificate is checked against, for members
    /// reached by IP (DNS and Kubernetes membership) whose certificate
    /// names a Service rather than each pod; unset, each member's own host.
    pub tls_server_name: Option<String>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            membership: None,
            node_id: None,
            peers: Vec::new(),
            dns_name: None,
            dns_interval_ms: None,
            advertise: None,
            kubernetes_service: "shoal-headless".to_string(),
            kubernetes_namespace: None,
            probe_interval_ms: 250,
            probe_failures: 2,
            probe_timeout_ms: 600,
            tls_ca: None,
            tls_server_name: None,
        }
    }
}

impl ClusterSettings {
    /// Whether this server is one member of several.
    pub fn enabled(&self) -> bool {
        !self.peers.is_empty() || self.membership.is_some()
    }

    /// Where the members come from.
    pub fn membership(&self) -> Membership {
        self.membership.unwrap_or(Membership::Static)
    }

    /// Time between DNS lookups.
    pub fn dns_interval(&self) -> Duration {
        Duration::from_millis(self.dns_interval_ms.unwrap_or(self.probe_interval_ms))
    }

    /// How long a member that stopped answering keeps its keys: the
    /// failed probes and the wait for each.
    pub fn detection_window(&self) -> Duration {
        self.probe_settings().detection_window()
    }

    /// How the members are probed, as these settings say.
    pub fn probe_settings(&self) -> super::probe::ProbeSettings {
        super::probe::ProbeSettings {
            interval: Duration::from_millis(self.probe_interval_ms),
            timeout: Duration::from_millis(self.probe_timeout_ms),
            failures: self.probe_failures,
        }
    }

    /// The members `peers` lists, sorted by id, all taken as ready until
    /// probed.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for an entry that is not `id=host:port` or
    /// `host:port`, or an id listed twice.
    pub fn static_members(&self) -> Result<Vec<Member>, ConfigError> {
        let mut members = Vec::with_capacity(self.peers.len());
        for entry in &self.peers {
            let (id, address) = match entry.split_once('=') {
                Some((id, address)) => (id.trim(), address.trim()),
                None => (entry.trim(), entry.trim()),
            };
            check_node_id(id)?;
            check_address(address)?;
            members.push(Member {
                id: id.to_string(),
                address: address.to_string(),
                ready: true,
            });
        }
        members.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(pair) = members.windows(2).find(|pair| pair[0].id == pair[1].id) {
            return Err(invalid(
                "cluster.peers",
                format!("node id {:?} is listed twice", pair[0].id),
            ));
        }
        Ok(members)
    }

    /// This server's id: `node_id`, else the host name. With Kubernetes
    /// membership `POD_NAME` comes before the host name, as the
    /// EndpointSlices name members by pod. With DNS membership it is
    /// `advertise` (written as the resolver writes addresses), else
    /// `node_id`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when none gives a usable id.
    pub fn local_id(&self) -> Result<String, ConfigError> {
        let id = match self.membership() {
            Membership::Dns => self
                .advertise
                .as_deref()
                .map(|address| match address.parse::<SocketAddr>() {
                    Ok(address) => address.to_string(),
                    Err(_) => address.to_string(),
                })
                .or_else(|| self.node_id.clone())
                .ok_or_else(|| {
                    invalid(
                        "cluster.advertise",
                        "is unset: with DNS membership set it (or cluster.node_id) to this \
                         server's ip:port as cluster.dns_name resolves it"
                            .to_string(),
                    )
                })?,
            membership => match &self.node_id {
                Some(id) => id.clone(),
                None => (membership == Membership::Kubernetes)
                    .then(|| env_value("POD_NAME"))
                    .flatten()
                    .or_else(host_name)
                    .ok_or_else(|| {
                        invalid(
                            "cluster.node_id",
                            "is unset and the host name cannot be read; set it".to_string(),
                        )
                    })?,
            },
        };
        check_node_id(&id)?;
        Ok(id)
    }

    /// Checks that every value is usable.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        match self.membership() {
            Membership::Static => self.validate_peers()?,
            membership => {
                if !self.peers.is_empty() {
                    return Err(invalid(
                        "cluster.peers",
                        "lists members, which only membership = \"static\" takes".to_string(),
                    ));
                }
                if membership == Membership::Dns {
                    self.validate_dns()?;
                } else {
                    check_kubernetes_name("cluster.kubernetes_service", &self.kubernetes_service)?;
                    if let Some(namespace) = &self.kubernetes_namespace {
                        check_kubernetes_name("cluster.kubernetes_namespace", namespace)?;
                    }
                }
                self.local_id()?;
            }
        }
        if self
            .tls_server_name
            .as_deref()
            .is_some_and(|name| name.trim().is_empty())
        {
            return Err(invalid(
                "cluster.tls_server_name",
                "must not be empty; leave it out to check each member's own host".to_string(),
            ));
        }
        if self.probe_interval_ms == 0 || self.probe_interval_ms > 60_000 {
            return Err(invalid(
                "cluster.probe_interval_ms",
                "must be between 1 and 60000".to_string(),
            ));
        }
        if self.probe_timeout_ms == 0 || self.probe_timeout_ms > 60_000 {
            return Err(invalid(
                "cluster.probe_timeout_ms",
                "must be between 1 and 60000".to_string(),
            ));
        }
        if !(1..=100).contains(&self.probe_failures) {
            return Err(invalid(
                "cluster.probe_failures",
                "must be between 1 and 100".to_string(),
            ));
        }
        Ok(())
    }

    fn validate_peers(&self) -> Result<(), ConfigError> {
        if self.peers.is_empty() {
            return Err(invalid(
                "cluster.peers",
                "is empty: membership = \"static\" needs every member listed".to_string(),
            ));
        }
        if self.peers.len() > MAX_MEMBERS {
            return Err(invalid(
                "cluster.peers",
                format!("lists {} members; at most {MAX_MEMBERS}", self.peers.len()),
            ));
        }
        let members = self.static_members()?;
        let local = self.local_id()?;
        if !members.iter().any(|member| member.id == local) {
            return Err(invalid(
                "cluster.node_id",
                format!("{local:?} is not one of cluster.peers; list this server there too"),
            ));
        }
        Ok(())
    }

    fn validate_dns(&self) -> Result<(), ConfigError> {
        match &self.dns_name {
            None => {
                return Err(invalid(
                    "cluster.dns_name",
                    "is unset: membership = \"dns\" needs the host:port to resolve".to_string(),
                ));
            }
            Some(name) => check_address(name)
                .map_err(|_| invalid("cluster.dns_name", format!("{name:?} is not host:port")))?,
        }
        if let Some(advertise) = &self.advertise {
            check_address(advertise).map_err(|_| {
                invalid("cluster.advertise", format!("{advertise:?} is not ip:port"))
            })?;
        }
        if self
            .dns_interval_ms
            .is_some_and(|interval| interval == 0 || interval > 3_600_000)
        {
            return Err(invalid(
                "cluster.dns_interval_ms",
                "must be between 1 and 3600000".to_string(),
            ));
        }
        Ok(())
    }
}

/// A Service or namespace name: a DNS label (RFC 1123), as Kubernetes
/// requires of both.
fn check_kubernetes_name(setting: &'static str, name: &str) -> Result<(), ConfigError> {
    let usable = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if usable {
        Ok(())
    } else {
        Err(invalid(
            setting,
            format!("{name:?} is not a Kubernetes name: 1 to 63 lowercase letters, digits or '-'"),
        ))
    }
}

fn invalid(setting: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { setting, reason }
}

fn check_node_id(id: &str) -> Result<(), ConfigError> {
    let usable = !id.is_empty()
        && id.len() <= MAX_NODE_ID_BYTES
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:[]".contains(&byte));
    if usable {
        Ok(())
    } else {
        Err(invalid(
            "cluster.node_id",
            format!(
                "{id:?} is not a node id: 1 to {MAX_NODE_ID_BYTES} letters, digits, '-', '_', '.', ':', '[' or ']'"
            ),
        ))
    }
}

fn check_address(address: &str) -> Result<(), ConfigError> {
    let port = address
        .rsplit_once(':')
        .filter(|(host, _)| !host.is_empty())
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .filter(|port| *port > 0);
    match port {
        Some(_) => Ok(()),
        None => Err(invalid(
            "cluster.peers",
            format!("{address:?} is not host:port"),
        )),
    }
}

/// The host name (a pod's name on Kubernetes), from `HOSTNAME` or
/// `/etc/hostname`.
fn host_name() -> Option<String> {
    env_value("HOSTNAME").or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
    })
}

/// An environment variable's value, when it is set and not blank.
pub(crate) fn env_value(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(node_id: &str, peers: &[&str]) -> ClusterSettings {
        ClusterSettings {
            node_id: Some(node_id.to_string()),
            peers: peers.iter().map(|peer| peer.to_string()).collect(),
            ..ClusterSettings::default()
        }
    }

    fn rejected(settings: &ClusterSettings) -> &'static str {
        match settings.validate() {
            Err(ConfigError::Invalid { setting, .. }) => setting,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn bare_addresses_are_their_own_ids() {
        let settings = settings("127.0.0.1:1", &["127.0.0.1:2", "127.0.0.1:1"]);
        settings.validate().unwrap();
        let members = settings.static_members().unwrap();
        assert_eq!(members[0].id, "127.0.0.1:1");
        assert_eq!(members[0].address, "127.0.0.1:1");
    }

    #[test]
    fn bad_peer_lists_are_refused_by_name() {
        assert_eq!(
            rejected(&settings("a", &["a=h:1", "a=h:2"])),
            "cluster.peers"
        );
        assert_eq!(rejected(&settings("a", &["a=nohost"])), "cluster.peers");
        assert_eq!(rejected(&settings("a", &["a=h:0"])), "cluster.peers");
        assert_eq!(rejected(&settings("a", &["b=h:1"])), "cluster.node_id");
        assert_eq!(rejected(&settings("a b", &["a b=h:1"])), "cluster.node_id");
        let mut slow = settings("a", &["a=h:1"]);
        slow.probe_failures = 0;
        assert_eq!(rejected(&slow), "cluster.probe_failures");
    }

    fn parsed(text: &str) -> ClusterSettings {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn kubernetes_membership_needs_no_peers_and_refuses_them() {
        let settings = parsed("membership = \"kubernetes\"\nnode_id = \"shoal-0\"");
        settings.validate().unwrap();
        assert!(settings.enabled());
        assert_eq!(settings.local_id().unwrap(), "shoal-0");
        let with_peers =
            parsed("membership = \"kubernetes\"\nnode_id = \"a\"\npeers = [\"a=h:1\"]");
        assert_eq!(rejected(&with_peers), "cluster.peers");
        let bad_service = parsed(
            "membership = \"kubernetes\"\nnode_id = \"a\"\nkubernetes_service = \"Shoal_X\"",
        );
        assert_eq!(rejected(&bad_service), "cluster.kubernetes_service");
    }

    #[test]
    fn dns_membership_knows_this_server_by_its_advertised_address() {
        let settings = parsed(
            "membership = \"dns\"\ndns_name = \"shoal-headless:50051\"\n\
             advertise = \"[fd00:0::7]:50051\"\nprobe_interval_ms = 250",
        );
        settings.validate().unwrap();
        assert_eq!(settings.local_id().unwrap(), "[fd00::7]:50051");
        assert_eq!(settings.dns_interval(), Duration::from_millis(250));
        let by_id = parsed("membership = \"dns\"\ndns_name = \"h:1\"\nnode_id = \"10.0.0.1:1\"");
        assert_eq!(by_id.local_id().unwrap(), "10.0.0.1:1");
        assert_eq!(
            rejected(&parsed("membership = \"dns\"\nadvertise = \"10.0.0.1:1\"")),
            "cluster.dns_name"
        );
        assert_eq!(
            rejected(&parsed(
                "membership = \"dns\"\ndns_name = \"h:1\"\nnode_id = \"a\"\ndns_interval_ms = 0"
            )),
            "cluster.dns_interval_ms"
        );
    }

    #[test]
    fn explicit_static_membership_needs_peers() {
        assert_eq!(
            rejected(&parsed("membership = \"static\"\nnode_id = \"a\"")),
            "cluster.peers"
        );
        assert!(matches!(
            "etcd".parse::<Membership>(),
            Err(ConfigError::Invalid { .. })
        ));
        assert_eq!("dns".parse::<Membership>().unwrap(), Membership::Dns);
    }

    #[test]
    fn a_single_server_needs_no_id() {
        ClusterSettings::default().validate().unwrap();
    }
}
