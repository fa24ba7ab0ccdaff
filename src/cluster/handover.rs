//! Handing a failing stream to another node (SPEC §6 takeover triggers): plain rules the
//! registry's coordination round applies.
//!
//! A node retries a broken WHEP peer or consumer by itself (backoff, capped). When that has
//! not helped for [`HandoverPolicy::after`] and some other live node is not cooling down for
//! the stream, the owner gives the stream up: it stops delivering, releases the lease with a
//! **cooldown** for itself (so it does not claim the stream straight back) and the other
//! nodes claim it at once. Each hand-over within the cooldown window doubles the cooldown
//! (capped), so a stream that fails on every node settles: once every other node is cooling
//! down for it, its owner keeps it, keeps retrying with its capped backoff, and shows it as
//! `failing` with the last error, instead of bouncing it around the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// When to hand over and for how long to stay away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandoverPolicy {
    /// Unhealthy this long without recovering → hand over (if someone can take it).
    pub after: Duration,
    /// Cooldown after the first hand-over; doubled by each further one in the window.
    pub cooldown: Duration,
    pub cooldown_max: Duration,
}

impl Default for HandoverPolicy {
    fn default() -> Self {
        Self {
            after: Duration::from_secs(10),
            cooldown: Duration::from_secs(30),
            cooldown_max: Duration::from_secs(600),
        }
    }
}

impl HandoverPolicy {
    /// The cooldown of the `fails`-th hand-over in a row (1-based).
    pub fn cooldown_for(&self, fails: u32) -> Duration {
        let doublings = fails.saturating_sub(1).min(20);
        self.cooldown
            .saturating_mul(1 << doublings)
            .min(self.cooldown_max)
    }
}

/// Streams per node that may not take them now: `stmId` → nodes cooling down for it.
pub type Cooling = BTreeMap<String, BTreeSet<String>>;

/// The live nodes other than `me` that may take `stm_id` now.
pub fn eligible_peers<'a>(
    me: &str,
    stm_id: &str,
    live: &'a [String],
    cooling: &Cooling,
) -> Vec<&'a str> {
    let cold = cooling.get(stm_id);
    live.iter()
        .map(String::as_str)
        .filter(|n| *n != me && !cold.is_some_and(|c| c.contains(*n)))
        .collect()
}

/// Who is cooling down for which stream, in memory (the embedded coordinator; Redis keeps
/// the same record in a hash, see `redis/scripts.rs`). Hand-overs while any cooldown of the
/// stream still runs count as one streak (doubling the cooldown); a stream whose cooldowns
/// have all lapsed starts over.
#[derive(Debug, Default)]
pub struct CooldownBook {
    streams: BTreeMap<String, Streak>,
}

#[derive(Debug, Default)]
struct Streak {
    fails: u32,
    until: BTreeMap<String, Instant>,
}

impl CooldownBook {
    /// `node` hands `stm_id` over at `now`: returns the cooldown it gets.
    pub fn record(
        &mut self,
        stm_id: &str,
        node: &str,
        now: Instant,
        policy: &HandoverPolicy,
    ) -> Duration {
        let streak = self.streams.entry(stm_id.to_owned()).or_default();
        streak.until.retain(|_, u| *u > now);
        if streak.until.is_empty() {
            streak.fails = 0;
        }
        streak.fails = streak.fails.saturating_add(1);
        let cooldown = policy.cooldown_for(streak.fails);
        streak.until.insert(node.to_owned(), now + cooldown);
        cooldown
    }

    /// The cooldowns running at `now`.
    pub fn cooling(&mut self, now: Instant) -> Cooling {
        self.streams.retain(|_, s| {
            s.until.retain(|_, u| *u > now);
            !s.until.is_empty()
        });
        self.streams
            .iter()
            .map(|(id, s)| (id.clone(), s.until.keys().cloned().collect()))
            .collect()
    }

    /// The stream is deleted.
    pub fn forget(&mut self, stm_id: &str) {
        self.streams.remove(stm_id);
    }
}

/// How long a stream has been unhealthy (not live, or its consumer not connected).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    since: Option<Instant>,
}

impl Health {
    pub fn observe(&mut self, healthy: bool, now: Instant) {
        match (healthy, self.since) {
            (true, _) => self.since = None,
            (false, None) => self.since = Some(now),
            (false, Some(_)) => {}
        }
    }

    pub fn unhealthy_for(&self, now: Instant) -> Option<Duration> {
        self.since.map(|s| now.saturating_duration_since(s))
    }

    /// Unhealthy for at least `policy.after`: local retries are not fixing it.
    pub fn is_failing(&self, policy: &HandoverPolicy, now: Instant) -> bool {
        self.unhealthy_for(now).is_some_and(|d| d >= policy.after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn cooldown_doubles_per_hand_over_and_is_capped() {
        let p = HandoverPolicy::default();
        assert_eq!(p.cooldown_for(0), secs(30));
        assert_eq!(p.cooldown_for(1), secs(30));
        assert_eq!(p.cooldown_for(2), secs(60));
        assert_eq!(p.cooldown_for(3), secs(120));
        assert_eq!(p.cooldown_for(6), secs(600));
        assert_eq!(p.cooldown_for(u32::MAX), secs(600));
    }

    #[test]
    fn peers_cooling_down_or_dead_are_not_eligible() {
        let live: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut cooling = Cooling::new();
        assert_eq!(eligible_peers("a", "s1", &live, &cooling), ["b", "c"]);
        cooling.insert("s1".into(), ["b".to_owned()].into());
        assert_eq!(eligible_peers("a", "s1", &live, &cooling), ["c"]);
        assert_eq!(eligible_peers("a", "s2", &live, &cooling), ["b", "c"]);
        cooling.insert("s1".into(), ["b".to_owned(), "c".to_owned()].into());
        assert!(eligible_peers("a", "s1", &live, &cooling).is_empty());
        assert!(eligible_peers("a", "s1", &live[..1], &Cooling::new()).is_empty());
    }

    #[test]
    fn repeated_hand_overs_escalate_until_the_cooldowns_lapse() {
        let t0 = Instant::now();
        let p = HandoverPolicy::default();
        let mut book = CooldownBook::default();
        assert_eq!(book.record("s", "a", t0, &p), secs(30));
        assert_eq!(book.record("s", "b", t0 + secs(5), &p), secs(60));
        let cooling = book.cooling(t0 + secs(10));
        assert_eq!(cooling["s"], ["a".to_owned(), "b".to_owned()].into());
        // a's cooldown lapsed; b's still runs: a third hand-over escalates again.
        assert_eq!(book.record("s", "c", t0 + secs(40), &p), secs(120));
        assert_eq!(book.cooling(t0 + secs(40))["s"].len(), 2, "b and c");
        // All lapsed: the next hand-over starts a new streak.
        assert!(book.cooling(t0 + secs(1_000)).is_empty());
        assert_eq!(book.record("s", "a", t0 + secs(1_000), &p), secs(30));
        book.forget("s");
        assert!(book.cooling(t0 + secs(1_001)).is_empty());
    }

    #[test]
    fn health_counts_from_the_first_unhealthy_sign_and_resets_on_recovery() {
        let t0 = Instant::now();
        let p = HandoverPolicy::default();
        let mut h = Health::default();
        h.observe(true, t0);
        assert_eq!(h.unhealthy_for(t0), None);
        h.observe(false, t0);
        h.observe(false, t0 + secs(5));
        assert_eq!(h.unhealthy_for(t0 + secs(9)), Some(secs(9)));
        assert!(!h.is_failing(&p, t0 + secs(9)));
        assert!(h.is_failing(&p, t0 + secs(10)));
        h.observe(true, t0 + secs(11));
        assert!(!h.is_failing(&p, t0 + secs(30)));
    }
}
