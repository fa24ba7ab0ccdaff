//! Which streams a node should try to take on its next tick (SPEC §6): the plain decision
//! behind the registry's claim loop.
//!
//! - **Unowned streams go to the least-loaded node.** A node claims an orphan while its
//!   load (counting what it claims this round) is below its fair share (stored streams /
//!   live nodes, rounded up), or at most the lowest load among the other live nodes'
//!   heartbeats. The fair share places a burst of new streams in one round even though the
//!   heartbeats are up to a second old; the least-loaded rule places the odd stream. Two
//!   nodes asking for one stream is harmless: the coordinator's `acquire` grants one.
//! - **Cooldowns steer claims** ([`handover`](super::handover)): a node cooling down for a
//!   stream leaves it to the others, and the least-loaded rule only counts nodes that may
//!   take it; when every node is cooling down for it, the cooldowns are ignored (someone
//!   must run it).
//! - **A changed spec restarts its run** (a `PUT` that reached another node): the owner
//!   releases and re-acquires, so the new run has a new epoch.

use std::collections::{BTreeMap, BTreeSet};

use super::handover::Cooling;
use crate::api::spec::StreamRequest;

/// A live node other than this one, with its load (streams).
pub type Peer = (String, usize);

/// The outcome of [`plan_claims`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClaimPlan {
    /// Stored streams this node does not run and should try to acquire, in order.
    pub claim: Vec<String>,
    /// Streams this node runs whose stored spec changed: release, re-acquire, restart.
    pub restart: Vec<String>,
}

/// Should a node running `load` streams take one more, given the other live nodes' loads?
/// Yes while it is (one of) the least loaded; a lone node always does.
pub fn is_least_loaded(load: usize, others: &[usize]) -> bool {
    others.iter().min().is_none_or(|&min| load <= min)
}

/// What one node knows of the cluster when it plans.
pub struct ClaimView<'a> {
    pub me: &'a str,
    /// Every stored spec.
    pub stored: &'a [StreamRequest],
    /// What this node runs, with the spec it runs.
    pub local: &'a BTreeMap<String, StreamRequest>,
    /// The other live nodes.
    pub peers: &'a [Peer],
    pub cooling: &'a Cooling,
    /// Stored streams nobody holds a lease on.
    pub orphans: &'a BTreeSet<String>,
}

pub fn plan_claims(view: &ClaimView<'_>) -> ClaimPlan {
    let ClaimView {
        me,
        stored,
        local,
        peers,
        cooling,
        orphans,
    } = *view;
    let mut plan = ClaimPlan::default();
    let mut load = local.len();
    // Everyone's fair share: up to it a node claims without waiting for fresher loads, so
    // a burst of new streams is placed in one round instead of one stream per node per round.
    let target = stored.len().div_ceil(peers.len() + 1);
    for spec in stored {
        match local.get(&spec.stm_id) {
            Some(running) if running != spec => plan.restart.push(spec.stm_id.clone()),
            Some(_) => {}
            None if !orphans.contains(&spec.stm_id) => {}
            None => {
                let cold = cooling.get(&spec.stm_id);
                let is_cold = |n: &str| cold.is_some_and(|c| c.contains(n));
                let warm: Vec<usize> = peers
                    .iter()
                    .filter(|(n, _)| !is_cold(n))
                    .map(|(_, l)| *l)
                    .collect();
                let rivals = match (is_cold(me), warm.is_empty()) {
                    // Someone who may take it will.
                    (true, false) => continue,
                    // Everyone is cooling down for it: plain least-loaded among all.
                    (true, true) => peers.iter().map(|(_, l)| *l).collect(),
                    (false, _) => warm,
                };
                if load < target || is_least_loaded(load, &rivals) {
                    plan.claim.push(spec.stm_id.clone());
                    load += 1;
                }
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &str, stream: &str) -> StreamRequest {
        serde_json::from_value(serde_json::json!({
            "stmId": id,
            "whepUrl": format!("http://127.0.0.1:1985/whep/{stream}"),
        }))
        .expect("request")
    }

    fn peers(loads: &[usize]) -> Vec<Peer> {
        loads
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("p{i}"), *l))
            .collect()
    }

    fn view<'a>(
        stored: &'a [StreamRequest],
        local: &'a BTreeMap<String, StreamRequest>,
        peers: &'a [Peer],
        cooling: &'a Cooling,
        orphans: &'a BTreeSet<String>,
    ) -> ClaimView<'a> {
        ClaimView {
            me: "me",
            stored,
            local,
            peers,
            cooling,
            orphans,
        }
    }

    /// Every stored stream this node does not run is an orphan.
    fn plan_for(
        stored: &[StreamRequest],
        local: &BTreeMap<String, StreamRequest>,
        others: &[usize],
    ) -> ClaimPlan {
        let orphans = stored
            .iter()
            .filter(|s| !local.contains_key(&s.stm_id))
            .map(|s| s.stm_id.clone())
            .collect();
        plan_claims(&view(
            stored,
            local,
            &peers(others),
            &Cooling::new(),
            &orphans,
        ))
    }

    fn local(items: &[(&str, &str)]) -> BTreeMap<String, StreamRequest> {
        items
            .iter()
            .map(|(id, s)| (id.to_string(), req(id, s)))
            .collect()
    }

    #[test]
    fn a_lone_node_claims_everything_it_does_not_run() {
        let stored = [req("a", "1"), req("b", "1"), req("c", "1")];
        let plan = plan_for(&stored, &local(&[("b", "1")]), &[]);
        assert_eq!(plan.claim, ["a", "c"]);
        assert!(plan.restart.is_empty());
    }

    #[test]
    fn claims_up_to_the_fair_share_then_only_while_least_loaded() {
        let stored: Vec<_> = (0..10).map(|i| req(&format!("s{i}"), "x")).collect();
        // 10 streams, 3 nodes: a share of 4, whatever the (stale) peer loads say.
        let plan = plan_for(&stored, &BTreeMap::new(), &[5, 2]);
        assert_eq!(plan.claim, ["s0", "s1", "s2", "s3"]);
        // Peers at 0 and 1 on stale heartbeats: still the share, in one round.
        assert_eq!(plan_for(&stored, &BTreeMap::new(), &[0, 1]).claim.len(), 4);
        // Above its share and busier than a peer: a node claims nothing.
        let few: Vec<_> = (0..4).map(|i| req(&format!("s{i}"), "x")).collect();
        let busy = local(&[("x1", "x"), ("x2", "x"), ("x3", "x")]);
        assert!(plan_for(&few, &busy, &[1]).claim.is_empty());
        // Above its share but the least loaded: it takes the odd stream.
        assert_eq!(plan_for(&few, &busy, &[3]).claim, ["s0"]);
    }

    #[test]
    fn three_equal_nodes_deciding_round_by_round_spread_thirty_streams_evenly() {
        let stored: Vec<_> = (0..30).map(|i| req(&format!("s{i:02}"), "x")).collect();
        let mut runs: Vec<BTreeMap<String, StreamRequest>> = vec![BTreeMap::new(); 3];
        // Each round, every node decides on last round's loads; the coordinator grants each
        // stream to the first node that asks (node order rotates between rounds).
        for round in 0..30 {
            let loads: Vec<usize> = runs.iter().map(BTreeMap::len).collect();
            let owned: Vec<String> = runs.iter().flat_map(|r| r.keys().cloned()).collect();
            let unowned: Vec<_> = stored
                .iter()
                .filter(|s| !owned.contains(&s.stm_id))
                .cloned()
                .collect();
            for k in 0..3 {
                let n = (k + round) % 3;
                let others: Vec<usize> = (0..3).filter(|&o| o != n).map(|o| loads[o]).collect();
                let plan = plan_for(&unowned, &runs[n], &others);
                for id in plan.claim {
                    let taken = runs.iter().any(|r| r.contains_key(&id));
                    if !taken {
                        let spec = stored.iter().find(|s| s.stm_id == id).cloned();
                        runs[n].insert(id, spec.expect("stored"));
                    }
                }
            }
        }
        let loads: Vec<usize> = runs.iter().map(BTreeMap::len).collect();
        assert_eq!(loads.iter().sum::<usize>(), 30);
        assert!(loads.iter().all(|&l| (8..=12).contains(&l)), "{loads:?}");
    }

    #[test]
    fn a_node_cooling_down_leaves_the_stream_to_the_others_unless_all_are() {
        let stored = [req("s", "x")];
        let none = BTreeMap::new();
        let cool = |nodes: &[&str]| -> Cooling {
            [(
                "s".to_owned(),
                nodes.iter().map(|n| n.to_string()).collect(),
            )]
            .into()
        };
        let orphans: BTreeSet<String> = ["s".to_owned()].into();
        let busy = local(&[("a", "1")]);
        let plan = |local: &BTreeMap<String, StreamRequest>,
                    loads: &[usize],
                    cooling: &Cooling|
         -> Vec<String> {
            let peers = peers(loads);
            plan_claims(&ClaimView {
                me: "me",
                stored: &stored,
                local,
                peers: &peers,
                cooling,
                orphans: &orphans,
            })
            .claim
        };
        // We are the least loaded but cooling down: p0 (warm) takes it.
        assert!(plan(&none, &[4], &cool(&["me"])).is_empty());
        // p0 is cooling down, p1 is warm but busier than us: we compare with p1 only.
        assert_eq!(plan(&busy, &[0, 3], &cool(&["p0"])), ["s"]);
        // Everyone cooling down: plain least-loaded (p0 at 0 wins, not us at 1).
        let all = cool(&["me", "p0"]);
        assert!(plan(&busy, &[0], &all).is_empty());
        assert_eq!(plan(&none, &[0], &all), ["s"]);
    }

    #[test]
    fn streams_another_node_holds_are_not_claimed_and_do_not_use_up_the_budget() {
        let stored = [req("held", "x"), req("free", "x")];
        let orphans: BTreeSet<String> = ["free".to_owned()].into();
        let none = BTreeMap::new();
        let p = plan_claims(&view(
            &stored,
            &none,
            &peers(&[0]),
            &Cooling::new(),
            &orphans,
        ));
        assert_eq!(p.claim, ["free"]);
    }

    #[test]
    fn a_changed_spec_is_restarted_an_unchanged_one_left_alone() {
        let stored = [req("a", "new"), req("b", "same")];
        let plan = plan_for(&stored, &local(&[("a", "old"), ("b", "same")]), &[]);
        assert_eq!(plan.restart, ["a"]);
        assert!(plan.claim.is_empty());
    }
}
