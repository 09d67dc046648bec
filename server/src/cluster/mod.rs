//! Several servers as one cache: membership, key placement and
//! forwarding.
//!
//! # Design
//!
//! - **Membership without consensus.** A [`Topology`] holds the members
//!   (stable id, address, readiness) and an epoch that grows with each
//!   change. Its sources are outside shoal: the static `cluster.peers`
//!   list, with each member's readiness taken from its own health service
//!   by [`probe`]. No member votes; each one's view is what its sources and
//!   probes say, and views may differ for up to the detection window
//!   ([`ClusterSettings::detection_window`], 3 s by default).
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

pub mod peers;
pub mod probe;
pub mod settings;
pub mod topology;

use std::sync::Arc;

pub use peers::Peers;
pub use settings::ClusterSettings;
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
    /// Largest message a forwarded call sends or receives.
    max_message: usize,
}

impl Cluster {
    /// The cluster `config.cluster` describes, with its probes running;
    /// `None` for a single server.
    ///
    /// # Errors
    /// See [`ClusterError`].
    pub fn start(config: &Config) -> Result<Option<Self>, ClusterError> {
        let settings = &config.cluster;
        if !settings.enabled() {
            return Ok(None);
        }
        let local_id = settings.local_id()?;
        let topology = Arc::new(Topology::new(&local_id, settings.static_members()?));
        let peers = Peers::new(config)?;
        let probes = tokio::spawn(probe::run(
            Arc::clone(&topology),
            Arc::clone(&peers),
            probe::ProbeSettings {
                interval: std::time::Duration::from_millis(settings.probe_interval_ms),
                timeout: std::time::Duration::from_millis(settings.probe_timeout_ms),
                failures: settings.probe_failures,
            },
        ));
        tracing::info!(
            node_id = %local_id,
            members = topology.view().members().len(),
            "cluster member: keys are placed by rendezvous hashing over the ready members"
        );
        Ok(Some(Self {
            topology,
            peers,
            probes: Some(probes),
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
        if let Some(probes) = self.probes.take() {
            probes.abort();
        }
    }
}
