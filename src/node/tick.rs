//! One coordination round of a node (every second, and at once on a cluster event): the
//! coordinator calls the [`StreamRegistry`](super::registry::StreamRegistry) makes, in the
//! order that keeps delivery single, as one async function over plain inputs. The registry
//! applies the [`TickOutcome`] to its streams.
//!
//! Order matters:
//! 1. **Renew** every lease this node holds. Only a confirmed renewal lets held delivery
//!    resume (see [`FenceClock`](crate::cluster::fence::FenceClock)).
//! 2. **Settle lost leases** before anything else: a lease that expired while the
//!    coordinator was away is re-acquired by its owner if nobody took it (same stream, new
//!    epoch); one another node holds is lost for good; one whose spec is gone was deleted.
//! 3. Unless draining: read the live nodes and cooldowns, send the heartbeat, pick the
//!    failing streams another node may take (the registry **hands them over**), and
//!    **claim** what [`plan_claims`] gives this node — orphans only when allowed (not right
//!    after an outage).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use crate::api::spec::StreamRequest;
use crate::cluster::claim::{plan_claims, ClaimView, Peer};
use crate::cluster::handover::eligible_peers;
use crate::cluster::{CoordError, Coordinator, Lease, NodeInfo};

/// What the registry hands to a round.
pub struct TickInput {
    pub leases: Vec<Lease>,
    /// The spec each local stream runs.
    pub local: BTreeMap<String, StreamRequest>,
    pub info: NodeInfo,
    pub draining: bool,
    pub may_claim_orphans: bool,
    /// Local streams that local retries have not fixed for `policy.after`.
    pub failing: Vec<Lease>,
}

/// What became of a lease the renewal reported lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostFate {
    /// Nobody held it any more (it expired during an outage): ours again, new epoch.
    Reacquired(Lease),
    /// Another node holds it: stop without delivering what is held.
    Taken,
    /// Its spec is gone (deleted): stop gracefully.
    Deleted,
    /// Could not find out (the coordinator failed meanwhile): keep delivery held.
    Unknown,
}

#[derive(Debug, Default)]
pub struct TickOutcome {
    /// When the renewal that succeeded was sent.
    pub renewed: Option<Instant>,
    pub lost: Vec<(Lease, LostFate)>,
    /// Streams acquired this round, with their stored spec.
    pub claimed: Vec<(StreamRequest, Lease)>,
    /// Failing streams another live node may take: hand them over.
    pub hand_over: Vec<Lease>,
    /// The first coordinator call that failed (the rest of the round was skipped).
    pub error: Option<CoordError>,
}

/// Runs one round; never fails as a whole (a failing call ends the round, and the outcome
/// says how far it got).
pub async fn run_tick(coord: Arc<dyn Coordinator>, input: TickInput) -> TickOutcome {
    let mut out = TickOutcome::default();
    let sent = Instant::now();
    let lost = match coord.renew(&input.leases).await {
        Ok(lost) => lost,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    out.renewed = Some(sent);
    if input.draining {
        // Leases lost now are the ones this node just released after draining their
        // streams: nothing to settle, and re-acquiring them would hold up the hand-over.
        return out;
    }
    let stored = match coord.streams().await {
        Ok(s) => s,
        Err(e) => {
            out.lost = lost.into_iter().map(|l| (l, LostFate::Unknown)).collect();
            out.error = Some(e);
            return out;
        }
    };
    for lease in lost {
        let fate = if !stored.iter().any(|s| s.stm_id == lease.stm_id) {
            LostFate::Deleted
        } else {
            match coord.acquire(&lease.stm_id, &lease.node).await {
                Ok(Some(new)) => LostFate::Reacquired(new),
                Ok(None) => LostFate::Taken,
                Err(e) => {
                    out.error.get_or_insert(e);
                    LostFate::Unknown
                }
            }
        };
        out.lost.push((lease, fate));
    }
    if out.error.is_some() {
        return out;
    }
    if let Err(e) = claim_round(coord.as_ref(), &input, &stored, &mut out).await {
        out.error = Some(e);
    }
    out
}

async fn claim_round(
    coord: &dyn Coordinator,
    input: &TickInput,
    stored: &[StreamRequest],
    out: &mut TickOutcome,
) -> Result<(), CoordError> {
    let info = &input.info;
    // Read before writing our own heartbeat: a twin's entry is still visible then.
    let nodes = coord.nodes().await?;
    if let Err(e) = coord.heartbeat(info).await {
        tracing::warn!(error = %e, "heartbeat failed");
    }
    // Two processes heartbeating one id would each take the other's leases as their own:
    // say so loudly (the address tells them apart).
    if let Some(twin) = nodes
        .iter()
        .find(|n| n.node == info.node && n.address != info.address)
    {
        tracing::error!(
            node = %info.node, other = %twin.address,
            "another live node uses this node.id; give every node its own id"
        );
    }
    let peers: Vec<Peer> = nodes
        .iter()
        .filter(|n| n.node != info.node)
        .map(|n| (n.node.clone(), n.streams))
        .collect();
    let cooling = coord.cooling().await?;
    let live: Vec<String> = nodes.iter().map(|n| n.node.clone()).collect();
    for lease in &input.failing {
        if !eligible_peers(&info.node, &lease.stm_id, &live, &cooling).is_empty() {
            out.hand_over.push(lease.clone());
        }
    }
    let orphans: BTreeSet<String> = coord.orphans().await?.into_iter().collect();
    let mut plan = plan_claims(&ClaimView {
        me: &info.node,
        stored,
        local: &input.local,
        peers: &peers,
        cooling: &cooling,
        orphans: &orphans,
    });
    if !input.may_claim_orphans {
        plan.claim.clear();
    }
    for id in &plan.restart {
        if let Some(lease) = input.leases.iter().find(|l| &l.stm_id == id) {
            coord.release(lease).await?;
        }
    }
    for id in plan.restart.iter().chain(&plan.claim) {
        if let Some(lease) = coord.acquire(id, &info.node).await? {
            if let Some(spec) = stored.iter().find(|s| &s.stm_id == id) {
                out.claimed.push((spec.clone(), lease));
            }
        }
    }
    Ok(())
}
