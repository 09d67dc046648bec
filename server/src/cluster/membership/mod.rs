//! Where the members come from: one [`MembershipSource`] per kind of
//! `cluster.membership`, each keeping a [`Topology`]'s member list (and
//! the readiness its source knows of) current. The health probes work on
//! top of any of them.
//!
//! - [`StaticMembers`]: the `peers` list, fixed at start.
//! - [`dns::DnsMembers`]: the addresses a name resolves to, looked up again
//!   on a timer.
//! - [`kubernetes::KubernetesMembers`]: the endpoints of a Service, from
//!   its EndpointSlices, watched through the API server.

pub mod dns;
pub mod kubernetes;

use std::future::Future;
use std::sync::Arc;

use super::topology::{Member, Topology};

/// A source of the member list.
///
/// A source never fails once running: an error (a lookup that fails, an
/// API server that cannot be reached) is logged and retried, and the last
/// list it gave stays in force meanwhile, so one error never empties the
/// cluster.
pub trait MembershipSource: Send + 'static {
    /// The members to start with, before [`run`](Self::run) has reported
    /// anything: the whole list for a fixed source, none for one that must
    /// ask (calls then fail with UNAVAILABLE until it has answered, rather
    /// than this server taking every key for itself).
    fn initial_members(&self) -> Vec<Member>;

    /// Keeps `topology`'s members current through
    /// [`Topology::set_members`], until the task running it is aborted;
    /// returns at once when the list never changes.
    fn run(self, topology: Arc<Topology>) -> impl Future<Output = ()> + Send + 'static;
}

/// The `cluster.peers` list: every member named up front, each ready until
/// its probes say otherwise.
#[derive(Debug, Clone)]
pub struct StaticMembers(pub Vec<Member>);

impl MembershipSource for StaticMembers {
    fn initial_members(&self) -> Vec<Member> {
        self.0.clone()
    }

    fn run(self, _topology: Arc<Topology>) -> impl Future<Output = ()> + Send + 'static {
        std::future::ready(())
    }
}

/// Starts `source` over a new topology for `local_id`: the topology and
/// the task that keeps it current.
pub fn start(
    local_id: &str,
    source: impl MembershipSource,
) -> (Arc<Topology>, tokio::task::JoinHandle<()>) {
    let topology = Arc::new(Topology::new(local_id, source.initial_members()));
    let task = tokio::spawn(source.run(Arc::clone(&topology)));
    (topology, task)
}
