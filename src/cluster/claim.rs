//! Which streams a node should try to take on its next tick (SPEC §6): the plain decision
//! behind the registry's claim loop.
//!
//! - **Unowned streams go to the least-loaded node.** A node claims a stream it does not
//!   run only while its own load (counting what it claims this round) is at most the lowest
//!   load among the other live nodes' heartbeats. Loads are up to a second old, so a burst of
//!   new streams spreads over a few ticks instead of landing on whichever node looks first;
//!   a stream some other node holds is simply refused by the coordinator's `acquire`.
//! - **Cooldowns steer claims** ([`handover`](super::handover)): a node cooling down for a
//!   stream leaves it to the others, and the least-loaded rule only counts nodes that may
//!   take it; when every node is cooling down for it, the cooldowns are ignored (someone
//!   must run it).
//! - **A changed spec restarts its run** (a `PUT` that reached another node): the owner
//!   releases and re-acquires, so the new run has a new epoch.

use std::collections::BTreeMap;

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

/// `stored`: every spec in the coordinator. `local`: what this node (`me`) runs, with the
/// spec it runs. `peers`: the other live nodes. `cooling`: who is cooling down for what.
pub fn plan_claims(
    me: &str,
    stored: &[StreamRequest],
    local: &BTreeMap<String, StreamRequest>,
    peers: &[Peer],
    cooling: &Cooling,
) -> ClaimPlan {
    let mut plan = ClaimPlan::default();
    let mut load = local.len();
    for spec in stored {
        match local.get(&spec.stm_id) {
            Some(running) if running != spec => plan.restart.push(spec.stm_id.clone()),
            Some(_) => {}
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
                if is_least_loaded(load, &rivals) {
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

    fn plan_for(
        stored: &[StreamRequest],
        local: &BTreeMap<String, StreamRequest>,
        others: &[usize],
    ) -> ClaimPlan {
        plan_claims("me", stored, local, &peers(others), &Cooling::new())
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
    fn claims_stop_once_this_node_is_above_the_least_loaded_peer() {
        let stored: Vec<_> = (0..10).map(|i| req(&format!("s{i}"), "x")).collect();
        // Peers run 2 and 5; we run 0: we take up to load 2, then one more at equality.
        let plan = plan_for(&stored, &BTreeMap::new(), &[5, 2]);
        assert_eq!(plan.claim, ["s0", "s1", "s2"]);
        // A busier node claims nothing new while a peer is lighter.
        let busy = local(&[("x1", "x"), ("x2", "x"), ("x3", "x")]);
        assert!(plan_for(&stored, &busy, &[1]).claim.is_empty());
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
        // We are the least loaded but cooling down: p0 (warm) takes it.
        let p = plan_claims("me", &stored, &none, &peers(&[4]), &cool(&["me"]));
        assert!(p.claim.is_empty());
        // p0 is cooling down, p1 is warm but busier than us: we compare with p1 only.
        let p = plan_claims(
            "me",
            &stored,
            &local(&[("a", "1")]),
            &peers(&[0, 3]),
            &cool(&["p0"]),
        );
        assert_eq!(p.claim, ["s"]);
        // Everyone cooling down: plain least-loaded (p0 at 0 wins, not us at 1).
        let busy = local(&[("a", "1")]);
        let all = cool(&["me", "p0"]);
        assert!(plan_claims("me", &stored, &busy, &peers(&[0]), &all)
            .claim
            .is_empty());
        assert_eq!(
            plan_claims("me", &stored, &none, &peers(&[0]), &all).claim,
            ["s"]
        );
    }

    #[test]
    fn a_changed_spec_is_restarted_an_unchanged_one_left_alone() {
        let stored = [req("a", "new"), req("b", "same")];
        let plan = plan_for(&stored, &local(&[("a", "old"), ("b", "same")]), &[]);
        assert_eq!(plan.restart, ["a"]);
        assert!(plan.claim.is_empty());
    }
}
