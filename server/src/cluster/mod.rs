//! Several servers as one cache: membership, key placement and
//! forwarding.
//!
//! # Design
//!
//! - **Membership without consensus.** A [`Topology`] holds the members
//!   (stable id, address, readiness) and an epoch that grows with each
//!   change. Its sources are outside shoal, one
//!   [`MembershipSource`](membership::MembershipSource) chosen by
//!   `cluster.membership`, and each member's readiness is also taken from
//!   its own health service by [`probe`]: a member owns keys only while its
//!   source lists it as ready *and* its probes answer. No member votes; each
//!   one's view is what its source and probes say, and views may differ for
//!   up to the detection window ([`ClusterSettings::detection_window`], 1.7 s
//!   by default) plus the source's own delay.
//! - **What each source guarantees.**
//!   - `static`: the `peers` list, fixed for the process's life; members
//!     are named by the operator and stay themselves across restarts.
//!   - `dns`: the addresses of `dns_name`, looked up every
//!     `dns_interval_ms`. A member is its `ip:port` (DNS names nothing
//!     else), so one that returns at a new address is a new member; members
//!     appear and vanish within one interval plus the resolver's caching. A
//!     failed or empty lookup keeps the last list.
//!   - `kubernetes`: the endpoints of `kubernetes_service`'s EndpointSlices,
//!     watched: a member per pod, by the pod's name, ready as Kubernetes
//!     says (readiness probe passed, not terminating), usually within a
//!     second of the change. When the API server is unreachable, or the
//!     watch fails, the last complete list stays (the reflector replaces it
//!     only with a complete relist) and the watch is retried with backoff:
//!     membership freezes, while the probes still take out members that stop
//!     answering and bring them back. A server that has never listed the
//!     slices has no members and answers UNAVAILABLE for every key rather
//!     than claim them all. Only a missing API server configuration (not in
//!     a pod, no kubeconfig) stops the server from starting.
//! - **Placement.** A key's owner is the ready member ranking first for
//!   it by rendezvous hashing of the member ids
//!   ([`shoal_proto::routing`], fixed by golden vectors so that every
//!   client agrees). Hash tags (`{user:42}:cart`) place related keys
//!   together. When a member joins or leaves, only the keys it gains or
//!   loses move: about 1/N of them.
//! - **Forwarding.** Any member answers any call. A call naming one key
//!   that another member owns is forwarded once to it, with the caller's
//!   credentials, deadline and trace context; the owner checks the
//!   credentials again, so a member grants no more than the caller has.
//!   A forwarded call carries `shoal-forwarded-by` and is served where it
//!   lands, so two members that disagree for a moment misplace a key
//!   rather than send it round. Batches (GetBatch, SetBatch, DeleteBatch,
//!   Delete) and the commands of a pipeline are split by owner and their
//!   replies merged in request order. Set algebra over several keys goes to
//!   their one owner; keys of several owners are refused with
//!   FAILED_PRECONDITION naming a hash tag as the cure. Scan, Count, Flush,
//!   Stats and Watch act on the member called.
//!
//! # What can be lost
//!
//! Each key lives on its owner alone (replication factor 1). When a
//! member dies, its keys are gone from the cluster: calls for them fail
//! with UNAVAILABLE until the probes mark it down (at most the detection
//! window), then miss on their new owner, which the cache refills. When
//! it comes back, the keys it owns again are the ones it held before it
//! left (or none, after a restart without persistence): writes made to the
//! stand-in owner meanwhile are not seen there, so a member that was away
//! longer than the keys' TTLs should be restarted empty. A write forwarded
//! to an owner that dies before it answers may or may not have been
//! applied; the caller sees UNAVAILABLE.

pub mod membership;
pub mod peers;
pub mod probe;
pub mod settings;
pub mod topology;

use std::sync::Arc;

pub use peers::Peers;
pub use settings::{ClusterSettings, Membership};
pub use topology::{Member, Topology, View};

use crate::config::Config;

/// Why the cluster could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A member's address makes no URI.
    #[error("cluster member address {0}")]
    Address(String),
    /// TLS between members cannot be set up.
    #[error("TLS between cluster members: {0}")]
    Tls(String),
    /// Kubernetes membership has no API server to ask.
    #[error("Kubernetes membership: {0}")]
    Kubernetes(String),
    /// The settings are unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// This server's place in its cluster: the topology, the channels to the
/// other members and the probes that keep readiness current.
#[derive(Debug)]
pub struct Cluster {
    topology: Arc<Topology>,
    peers: Arc<Peers>,
    probes: Option<tokio::task::JoinHandle<()>>,
    /// The task of the membership source.
    membership: Option<tokio::task::JoinHandle<()>>,
    /// Largest message a forwarded call sends or receives.
    max_message: usize,
}

impl Cluster {
    /// The cluster `config.cluster` describes, with its membership source
    /// and probes running; `None` for a single server.
    ///
    /// # Errors
    /// See [`ClusterError`]; with Kubernetes membership, also when no API
    /// server is configured (an unreachable one is retried instead).
    pub async fn start(
        config: &Config,
        on_stall: probe::OnStall,
    ) -> Result<Option<Self>, ClusterError> {
        let settings = &config.cluster;
        if !settings.enabled() {
            return Ok(None);
        }
        let local_id = settings.local_id()?;
        let peers = Peers::new(config)?;
        let (topology, membership) = match settings.membership() {
            Membership::Static => membership::start(
                &local_id,
                membership::StaticMembers(settings.static_members()?),
            ),
            Membership::Dns => {
                membership::start(&local_id, membership::dns::DnsMembers::new(settings)?)
            }
            Membership::Kubernetes => {
                let source = membership::kubernetes::KubernetesMembers::connect(
                    settings,
                    config.listen.port(),
                )
                .await?;
                tracing::info!(
                    namespace = source.namespace(),
                    service = %settings.kubernetes_service,
                    "cluster members come from the Service's EndpointSlices"
                );
                membership::start(&local_id, source)
            }
        };
        let probes = tokio::spawn(probe::run(
            Arc::clone(&topology),
            Arc::clone(&peers),
            settings.probe_settings(),
            on_stall,
        ));
        tracing::info!(
            node_id = %local_id,
            membership = ?settings.membership(),
            members = topology.view().members().len(),
            "cluster member: keys are placed by rendezvous hashing over the ready members"
        );
        Ok(Some(Self {
            topology,
            peers,
            probes: Some(probes),
            membership: Some(membership),
            max_message: config.max_message_bytes(),
        }))
    }

    /// A cluster over a topology the caller drives (tests), with no
    /// probes, forwarding messages of up to `max_message` bytes.
    pub fn with_topology(topology: Arc<Topology>, peers: Arc<Peers>, max_message: usize) -> Self {
        Self {
            topology,
            peers,
            probes: None,
            membership: None,
            max_message,
        }
    }

    /// The membership.
    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    /// The channels to the other members.
    pub fn peers(&self) -> &Arc<Peers> {
        &self.peers
    }

    /// Largest message a forwarded call sends or receives.
    pub fn max_message(&self) -> usize {
        self.max_message
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for task in [self.probes.take(), self.membership.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }
}
