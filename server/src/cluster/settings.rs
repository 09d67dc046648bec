//! The `[cluster]` settings, parsed and checked; the server's
//! [`Config`](crate::config::Config) holds them as `cluster`.
//!
//! ```
//! use shoal_server::cluster::settings::ClusterSettings;
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
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::topology::Member;
use crate::config::ConfigError;

/// Longest node id, in bytes (a Kubernetes pod name is at most 253).
pub const MAX_NODE_ID_BYTES: usize = 253;
/// Most members of one cluster.
pub const MAX_MEMBERS: usize = 1024;

/// The `[cluster]` section. Off (a single server) unless `peers` is set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ClusterSettings {
    /// This server's id, which must be one of `peers`; the host name when
    /// unset (a pod's name in a StatefulSet).
    pub node_id: Option<String>,
    /// Every member, this one included, as `id=host:port` (or `host:port`,
    /// which is then also the id). Keys are placed by the ids, so an id
    /// must stay with its server across restarts.
    pub peers: Vec<String>,
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
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            node_id: None,
            peers: Vec::new(),
            probe_interval_ms: 500,
            probe_failures: 2,
            probe_timeout_ms: 1000,
            tls_ca: None,
        }
    }
}

impl ClusterSettings {
    /// Whether this server is one member of several.
    pub fn enabled(&self) -> bool {
        !self.peers.is_empty()
    }

    /// How long a member that stopped answering keeps its keys: the
    /// failed probes and the wait for each.
    pub fn detection_window(&self) -> Duration {
        Duration::from_millis(
            (self.probe_interval_ms + self.probe_timeout_ms) * u64::from(self.probe_failures),
        )
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

    /// This server's id: `node_id`, else the host name.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when neither gives a usable id.
    pub fn local_id(&self) -> Result<String, ConfigError> {
        let id = match &self.node_id {
            Some(id) => id.clone(),
            None => host_name().ok_or_else(|| {
                invalid(
                    "cluster.node_id",
                    "is unset and the host name cannot be read; set it".to_string(),
                )
            })?,
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
}

fn invalid(setting: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { setting, reason }
}

fn check_node_id(id: &str) -> Result<(), ConfigError> {
    let usable = !id.is_empty()
        && id.len() <= MAX_NODE_ID_BYTES
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:".contains(&byte));
    if usable {
        Ok(())
    } else {
        Err(invalid(
            "cluster.node_id",
            format!(
                "{id:?} is not a node id: 1 to {MAX_NODE_ID_BYTES} letters, digits, '-', '_', '.' or ':'"
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
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
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

    #[test]
    fn a_single_server_needs_no_id() {
        ClusterSettings::default().validate().unwrap();
    }
}
