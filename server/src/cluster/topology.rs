//! Who is in the cluster now: the members, their readiness and an epoch,
//! with the placement of keys over the ready ones.
//!
//! Two things decide whether a member owns keys, and both must agree: its
//! membership source (the static peer list, DNS or Kubernetes, through
//! [`Topology::set_members`]) lists it as ready, and the health probes
//! (through [`Topology::set_ready`]) have not found it down. They are kept
//! apart, so that a source's next list does not undo a probe's verdict and
//! a probe cannot bring back a member its source took out. Every call that
//! routes a key reads the current [`View`] without a lock.

use std::collections::BTreeSet;

use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use shoal_proto::routing::Rendezvous;
use tokio::sync::watch;

/// One server of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Stable id; keys are placed by it.
    pub id: String,
    /// `host:port` of its gRPC listener.
    pub address: String,
    /// Whether it owns keys now.
    pub ready: bool,
}

/// The cluster at one epoch: immutable, shared by the calls routed with it.
#[derive(Debug)]
pub struct View {
    epoch: u64,
    local_id: String,
    /// Every member as its source lists it, sorted by id.
    listed: Vec<Member>,
    /// The ids of listed members whose probes fail.
    down: BTreeSet<String>,
    /// Every member, sorted by id, ready when listed ready and not down.
    members: Vec<Member>,
    /// The ready members, which own keys.
    placement: Rendezvous,
    /// For each member of `placement` (in its id order), its index in
    /// `members`.
    ready: Vec<usize>,
}

impl View {
    fn new(
        epoch: u64,
        local_id: &str,
        mut listed: Vec<Member>,
        mut down: BTreeSet<String>,
    ) -> Self {
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        listed.dedup_by(|a, b| a.id == b.id);
        // A member that leaves its source forgets its probes' verdict: when
        // it comes back it is probed afresh.
        down.retain(|id| {
            listed
                .binary_search_by(|member| member.id.as_str().cmp(id))
                .is_ok()
        });
        let members: Vec<Member> = listed
            .iter()
            .map(|member| Member {
                ready: member.ready && !down.contains(&member.id),
                ..member.clone()
            })
            .collect();
        let ready: Vec<usize> = (0..members.len())
            .filter(|&index| members[index].ready)
            .collect();
        let placement = Rendezvous::new(ready.iter().map(|&index| members[index].id.clone()));
        Self {
            epoch,
            local_id: local_id.to_string(),
            listed,
            down,
            members,
            placement,
            ready,
        }
    }

    /// Grows with each change of membership or readiness.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// This server's id.
    pub fn local_id(&self) -> &str {
        &self.local_id
    }

    /// Every member, sorted by id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Whether the probes found member `id` down (whatever its source
    /// says).
    pub fn is_down(&self, id: &str) -> bool {
        self.down.contains(id)
    }

    /// Where `key`'s owner stands in [`View::members`]; `None` when no
    /// member is ready.
    pub fn owner_index(&self, key: &[u8]) -> Option<usize> {
        self.placement
            .owner_index(key)
            .map(|ready_index| self.ready[ready_index])
    }

    /// The owner of `key`; `None` when no member is ready.
    pub fn owner(&self, key: &[u8]) -> Option<&Member> {
        self.owner_index(key).map(|index| &self.members[index])
    }

    /// Whether `member` is this server.
    pub fn is_local(&self, member: &Member) -> bool {
        member.id == self.local_id
    }
}

/// The current [`View`], replaced whole on each change.
#[derive(Debug)]
pub struct Topology {
    local_id: String,
    current: ArcSwap<View>,
    /// Serialises changes, so that epochs never go back.
    changing: Mutex<()>,
    changes: watch::Sender<Arc<View>>,
}

impl Topology {
    /// A topology of `members` (which should include `local_id`), at
    /// epoch 1.
    ///
    /// ```
    /// use shoal_server::cluster::{Member, Topology};
    ///
    /// let member = |id: &str| Member { id: id.into(), address: format!("{id}:50051"), ready: true };
    /// let topology = Topology::new("a", vec![member("a"), member("b")]);
    /// let owner = topology.view().owner(b"user:42").unwrap().id.clone();
    /// topology.set_ready(&owner, false);
    /// assert_ne!(topology.view().owner(b"user:42").unwrap().id, owner);
    /// assert_eq!(topology.view().epoch(), 2);
    /// ```
    pub fn new(local_id: &str, members: Vec<Member>) -> Self {
        let view = Arc::new(View::new(1, local_id, members, BTreeSet::new()));
        Self {
            local_id: local_id.to_string(),
            current: ArcSwap::new(Arc::clone(&view)),
            changing: Mutex::new(()),
            changes: watch::Sender::new(view),
        }
    }

    /// A cluster of this server alone, reached at the address its caller
    /// used.
    pub fn single(local_id: &str) -> Self {
        Self::new(
            local_id,
            vec![Member {
                id: local_id.to_string(),
                address: String::new(),
                ready: true,
            }],
        )
    }

    /// The members now.
    pub fn view(&self) -> Arc<View> {
        self.current.load_full()
    }

    /// Follows the changes, starting with the current view.
    pub fn subscribe(&self) -> watch::Receiver<Arc<View>> {
        self.changes.subscribe()
    }

    /// Replaces the members, as a membership source lists them (with
    /// their readiness there); a new epoch when anything changed. Members
    /// the probes found down stay down.
    pub fn set_members(&self, mut members: Vec<Member>) {
        // A source that lists more members than a cluster may have (a
        // misconfigured Service, a DNS name that resolves to a whole
        // subnet) keeps the first by id rather than growing without bound.
        let limit = super::settings::MAX_MEMBERS;
        if members.len() > limit {
            tracing::warn!(
                listed = members.len(),
                limit,
                "the membership source lists more members than a cluster may have; keeping the first by id"
            );
            members.sort_by(|a, b| a.id.cmp(&b.id));
            members.truncate(limit);
        }
        self.change(|current| (members, current.down.clone()));
    }

    /// Records the probes' verdict on member `id`: down (`false`) takes it
    /// out of the placement whatever its source says; up (`true`) gives it
    /// back its source's readiness. A new epoch when that changed anything.
    pub fn set_ready(&self, id: &str, ready: bool) {
        self.change(|current| {
            let mut down = current.down.clone();
            if ready {
                down.remove(id);
            } else {
                down.insert(id.to_string());
            }
            (current.listed.clone(), down)
        });
    }

    fn change(&self, next: impl FnOnce(&View) -> (Vec<Member>, BTreeSet<String>)) {
        let _changing = self.changing.lock();
        let current = self.current.load_full();
        let (listed, down) = next(&current);
        let view = View::new(current.epoch + 1, &self.local_id, listed, down);
        if view.listed == current.listed && view.down == current.down {
            return;
        }
        tracing::info!(
            epoch = view.epoch,
            members = view.members.len(),
            ready = view.ready.len(),
            "cluster membership changed"
        );
        let view = Arc::new(view);
        self.current.store(Arc::clone(&view));
        self.changes.send_replace(view);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, ready: bool) -> Member {
        Member {
            id: id.to_string(),
            address: format!("{id}:1"),
            ready,
        }
    }

    #[test]
    fn only_ready_members_own_keys() {
        let topology = Topology::new(
            "a",
            vec![member("c", false), member("a", true), member("b", true)],
        );
        let view = topology.view();
        assert_eq!(
            view.members()
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        for key in 0..1000u32 {
            let owner = view.owner(&key.to_be_bytes()).unwrap();
            assert_ne!(owner.id, "c");
            assert_eq!(
                view.owner_index(&key.to_be_bytes())
                    .map(|i| &view.members()[i]),
                Some(owner)
            );
        }
    }

    #[test]
    fn owners_agree_with_the_rendezvous_of_ready_ids() {
        let topology = Topology::new(
            "a",
            vec![member("a", true), member("b", false), member("c", true)],
        );
        let rendezvous = Rendezvous::new(["a", "c"]);
        let view = topology.view();
        for key in 0..1000u32 {
            let key = key.to_be_bytes();
            assert_eq!(
                view.owner(&key).map(|m| m.id.as_str()),
                rendezvous.owner(&key)
            );
        }
    }

    #[test]
    fn epochs_grow_only_on_change() {
        let topology = Topology::new("a", vec![member("a", true), member("b", true)]);
        let mut changes = topology.subscribe();
        topology.set_ready("b", true);
        assert_eq!(topology.view().epoch(), 1);
        assert!(!changes.has_changed().unwrap());
        topology.set_ready("b", false);
        assert_eq!(topology.view().epoch(), 2);
        assert!(changes.has_changed().unwrap());
        assert_eq!(changes.borrow_and_update().epoch(), 2);
        topology.set_members(vec![member("a", true)]);
        assert_eq!(topology.view().members().len(), 1);
        assert_eq!(topology.view().epoch(), 3);
    }

    #[test]
    fn a_member_owns_keys_only_when_its_source_and_its_probes_agree() {
        let topology = Topology::new("a", vec![member("a", true), member("b", true)]);
        // The probes find b down; the source's next list still says ready.
        topology.set_ready("b", false);
        topology.set_members(vec![member("a", true), member("b", true)]);
        assert!(!topology.view().members()[1].ready);
        assert!(topology.view().is_down("b"));
        // The source takes b out of readiness; an answering probe does not
        // bring it back.
        topology.set_members(vec![member("a", true), member("b", false)]);
        topology.set_ready("b", true);
        assert!(!topology.view().members()[1].ready);
        assert!(!topology.view().is_down("b"));
        topology.set_members(vec![member("a", true), member("b", true)]);
        assert!(topology.view().members()[1].ready);
    }

    #[test]
    fn a_member_that_leaves_is_probed_afresh_when_it_returns() {
        let topology = Topology::new("a", vec![member("a", true), member("b", true)]);
        topology.set_ready("b", false);
        topology.set_members(vec![member("a", true)]);
        topology.set_members(vec![member("a", true), member("b", true)]);
        assert!(topology.view().members()[1].ready);
    }

    #[test]
    fn a_source_listing_too_many_members_is_cut_to_the_limit() {
        let topology = Topology::new("a", vec![member("a", true)]);
        let limit = crate::cluster::settings::MAX_MEMBERS;
        let many = (0..limit + 10)
            .map(|index| member(&format!("m{index:05}"), true))
            .collect();
        topology.set_members(many);
        let view = topology.view();
        assert_eq!(view.members().len(), limit);
        assert_eq!(view.members()[0].id, "m00000");
    }

    #[test]
    fn no_ready_member_owns_nothing() {
        let topology = Topology::new("a", vec![member("a", false)]);
        assert!(topology.view().owner(b"k").is_none());
    }
}
