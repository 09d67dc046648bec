//! Members from DNS: the addresses a name resolves to (a headless
//! Service's name, a round-robin record), looked up again on a timer.
//!
//! DNS names no server, only addresses, so a member's id is its resolved
//! `ip:port`, and this server is the member whose id is its `advertise`
//! address. The consequence: a server that comes back at a new address is a
//! new member (its keys are placed afresh, as after a restart of a cache
//! without persistence), and two servers behind one address (NAT, a proxy)
//! cannot be told apart, so DNS membership needs the servers' own
//! addresses. A headless Service publishes only ready pods (unless
//! `publishNotReadyAddresses`), so readiness comes through DNS too; every
//! listed member is taken as ready until probed.
//!
//! A failed lookup, or an empty answer, leaves the last list in force and
//! is logged: one bad answer does not empty the cluster, and members that
//! vanish meanwhile are taken out by the probes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::MembershipSource;
use crate::cluster::settings::ClusterSettings;
use crate::cluster::topology::{Member, Topology};
use crate::config::ConfigError;

/// The addresses of one name, looked up on a timer.
#[derive(Debug, Clone)]
pub struct DnsMembers {
    name: String,
    interval: Duration,
}

impl DnsMembers {
    /// Lookups of `settings.dns_name` every `settings.dns_interval()`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when `dns_name` is unset.
    pub fn new(settings: &ClusterSettings) -> Result<Self, ConfigError> {
        let name = settings
            .dns_name
            .clone()
            .ok_or_else(|| ConfigError::Invalid {
                setting: "cluster.dns_name",
                reason: "is unset: membership = \"dns\" needs the host:port to resolve".to_string(),
            })?;
        Ok(Self {
            name,
            interval: settings.dns_interval(),
        })
    }
}

impl MembershipSource for DnsMembers {
    fn initial_members(&self) -> Vec<Member> {
        Vec::new()
    }

    fn run(self, topology: Arc<Topology>) -> impl Future<Output = ()> + Send + 'static {
        resolve_forever(self, topology)
    }
}

async fn resolve_forever(source: DnsMembers, topology: Arc<Topology>) {
    let mut ticks = tokio::time::interval(source.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        let members = match tokio::net::lookup_host(source.name.as_str()).await {
            Ok(addresses) => members_from_addresses(addresses),
            Err(error) => {
                if !failing {
                    tracing::warn!(name = %source.name, %error, "cluster DNS lookup failed: the last known members stay");
                }
                failing = true;
                continue;
            }
        };
        if members.is_empty() {
            if !failing {
                tracing::warn!(name = %source.name, "cluster DNS name has no addresses: the last known members stay");
            }
            failing = true;
            continue;
        }
        if failing {
            tracing::info!(name = %source.name, members = members.len(), "cluster DNS lookups answer again");
            failing = false;
        }
        topology.set_members(members);
    }
}

/// The members `addresses` make, sorted by id and each listed once: id and
/// address both the `ip:port` (IPv6 in brackets), ready until probed.
pub fn members_from_addresses(addresses: impl IntoIterator<Item = SocketAddr>) -> Vec<Member> {
    let mut members: Vec<Member> = addresses
        .into_iter()
        .map(|address| {
            let address = address.to_string();
            Member {
                id: address.clone(),
                address,
                ready: true,
            }
        })
        .collect();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    members.dedup_by(|a, b| a.id == b.id);
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_is_a_ready_member_named_by_it() {
        let addresses: Vec<SocketAddr> = vec![
            "10.0.0.2:50051".parse().unwrap(),
            "10.0.0.1:50051".parse().unwrap(),
            "10.0.0.2:50051".parse().unwrap(),
            "[fd00::1]:50051".parse().unwrap(),
        ];
        let members = members_from_addresses(addresses);
        let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["10.0.0.1:50051", "10.0.0.2:50051", "[fd00::1]:50051"]);
        assert!(members.iter().all(|m| m.ready && m.address == m.id));
    }

    #[test]
    fn the_local_member_is_the_advertised_address() {
        let settings: ClusterSettings = toml::from_str(
            "membership = \"dns\"\ndns_name = \"localhost:7\"\nadvertise = \"[::1]:7\"",
        )
        .unwrap();
        let members = members_from_addresses(["[::1]:7".parse().unwrap()]);
        assert_eq!(members[0].id, settings.local_id().unwrap());
    }

    #[tokio::test]
    async fn lookups_keep_the_topology_current() {
        let settings: ClusterSettings = toml::from_str(
            "membership = \"dns\"\ndns_name = \"127.0.0.1:7\"\nadvertise = \"127.0.0.1:7\"\ndns_interval_ms = 10",
        )
        .unwrap();
        let source = DnsMembers::new(&settings).unwrap();
        let (topology, task) = super::super::start("127.0.0.1:7", source);
        let mut changes = topology.subscribe();
        while changes.borrow_and_update().members().is_empty() {
            changes.changed().await.unwrap();
        }
        assert_eq!(topology.view().members()[0].id, "127.0.0.1:7");
        assert!(
            topology
                .view()
                .owner(b"k")
                .is_some_and(|m| topology.view().is_local(m))
        );
        task.abort();
    }
}
