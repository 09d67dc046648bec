//! Health probes of the other members: a member whose probes fail
//! `probe_failures` times in a row (no answer in time, or an answer other
//! than SERVING, as while it drains) leaves the placement; one SERVING
//! answer brings it back, if its membership source lists it as ready.
//! Members their source lists as not ready are probed too, so that their
//! verdict is current when the source changes its mind.
//!
//! The same loop watches this member's own clock: a member that did not
//! run for longer than the detection window (stopped with SIGSTOP, frozen
//! by its host) was certainly marked down by the others, which served and
//! wrote its keys meanwhile, so the copies it holds may be stale. It then
//! empties itself ([`ProbeSettings`]'s `on_stall`) as soon as it runs
//! again, before the others' next probe can bring it back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use super::peers::Peers;
use super::topology::{Member, Topology};

/// How members are probed.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSettings {
    /// Time between rounds.
    pub interval: Duration,
    /// Time one probe may take.
    pub timeout: Duration,
    /// Failures in a row that mark a member down.
    pub failures: u32,
}

impl ProbeSettings {
    /// How long a member may stop answering before the others mark it
    /// down: the failed probes and the wait for each.
    pub fn detection_window(&self) -> Duration {
        (self.interval + self.timeout) * self.failures
    }
}

/// What a member does when it finds it has not run for longer than the
/// detection window: drop the values it holds, which may be stale.
pub type OnStall = Arc<dyn Fn(Duration) + Send + Sync>;

/// Probes every other member of `topology` until the task is aborted.
pub async fn run(
    topology: Arc<Topology>,
    peers: Arc<Peers>,
    settings: ProbeSettings,
    on_stall: OnStall,
) {
    let mut failures: HashMap<String, u32> = HashMap::new();
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_round = tokio::time::Instant::now();
    loop {
        ticks.tick().await;
        // A round takes at most the interval and one probe timeout, so a
        // longer gap than the whole window means this process was stopped.
        let gap = last_round.elapsed();
        last_round = tokio::time::Instant::now();
        if gap > settings.detection_window() {
            tracing::warn!(
                stalled_ms = u64::try_from(gap.as_millis()).unwrap_or(u64::MAX),
                "this member did not run for longer than the detection window: \
                 the others served its keys meanwhile, so it drops what it holds"
            );
            on_stall(gap);
        }
        let view = topology.view();
        let others: Vec<Member> = view
            .members()
            .iter()
            .filter(|member| !view.is_local(member))
            .cloned()
            .collect();
        let probes = others
            .iter()
            .map(|member| probe(&peers, member, settings.timeout));
        let answers = futures_util::future::join_all(probes).await;
        for (member, serving) in others.iter().zip(answers) {
            let count = failures.entry(member.id.clone()).or_default();
            if serving {
                *count = 0;
                if view.is_down(&member.id) {
                    tracing::info!(member = %member.id, "cluster member answers again");
                    topology.set_ready(&member.id, true);
                }
            } else {
                *count = count.saturating_add(1);
                if !view.is_down(&member.id) && *count >= settings.failures {
                    tracing::warn!(
                        member = %member.id,
                        address = %member.address,
                        failures = *count,
                        "cluster member is down: its keys go to the next members"
                    );
                    topology.set_ready(&member.id, false);
                }
            }
        }
        failures.retain(|id, _| others.iter().any(|member| member.id == *id));
    }
}

/// Whether `member` answers SERVING within `timeout`.
async fn probe(peers: &Peers, member: &Member, timeout: Duration) -> bool {
    let Ok(channel) = peers.channel(member) else {
        return false;
    };
    let mut health = HealthClient::new(channel);
    let check = health.check(HealthCheckRequest::default());
    matches!(
        tokio::time::timeout(timeout, check).await,
        Ok(Ok(reply)) if reply.get_ref().status == ServingStatus::Serving as i32
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, address: &str) -> Member {
        Member {
            id: id.to_string(),
            address: address.to_string(),
            ready: true,
        }
    }

    /// A member its source keeps listing as ready (as Kubernetes may, for
    /// a pod whose readiness probe has not failed yet) is taken out once it
    /// stops answering, and the source's next list does not bring it back.
    #[tokio::test]
    async fn a_member_listed_ready_that_does_not_answer_is_taken_out() {
        // Nothing listens on port 1: every probe of b fails at once.
        let listed = vec![member("a", "127.0.0.1:2"), member("b", "127.0.0.1:1")];
        let topology = Arc::new(Topology::new("a", listed.clone()));
        let probes = tokio::spawn(run(
            Arc::clone(&topology),
            Peers::plaintext(Duration::from_millis(200)),
            ProbeSettings {
                interval: Duration::from_millis(10),
                timeout: Duration::from_millis(200),
                failures: 2,
            },
            Arc::new(|_| {}),
        ));
        let mut changes = topology.subscribe();
        tokio::time::timeout(Duration::from_secs(20), async {
            while changes.borrow_and_update().members()[1].ready {
                changes.changed().await.unwrap();
            }
        })
        .await
        .expect("b is marked down");
        topology.set_members(listed);
        let view = topology.view();
        assert!(view.is_down("b") && !view.members()[1].ready);
        assert_eq!(view.owner(b"any").map(|m| m.id.as_str()), Some("a"));
        probes.abort();
    }
}
