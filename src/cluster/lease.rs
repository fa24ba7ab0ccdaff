//! LeaseTable: who runs which stream, for how long, under which epoch (SPEC §6).
//!
//! A lease gives one node the right to deliver a stream until it expires; the owner renews it
//! well before that. Every acquisition increases the stream's **epoch**, a fencing token the
//! owner stamps on what it sends (`extended`/`binary` envelopes), so a consumer can always
//! tell a newer owner from a stale one.
//!
//! This is the plain, clock-injected state machine: the embedded coordinator runs it in
//! memory, and the Redis coordinator's Lua scripts implement the same rules atomically on the
//! server — the unit tests here are the reference for both.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A held lease: `node` may deliver `stm_id` under `epoch` until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub stm_id: String,
    pub node: String,
    pub epoch: u64,
}

#[derive(Debug, Clone)]
struct Held {
    node: String,
    epoch: u64,
    expires: Instant,
}

#[derive(Debug)]
pub struct LeaseTable {
    ttl: Duration,
    held: BTreeMap<String, Held>,
    /// The last epoch handed out per stream (kept after release, so epochs never repeat).
    epochs: BTreeMap<String, u64>,
}

impl LeaseTable {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            held: BTreeMap::new(),
            epochs: BTreeMap::new(),
        }
    }

    /// `node` asks for `stm_id`. Granted with a new epoch when nobody holds it or the holder's
    /// lease expired; a node asking again for a lease it still holds keeps its epoch (an
    /// idempotent retry, not a new acquisition). `None` when another node holds it.
    pub fn acquire(&mut self, stm_id: &str, node: &str, now: Instant) -> Option<Lease> {
        if let Some(h) = self.held.get_mut(stm_id) {
            if h.expires > now {
                if h.node != node {
                    return None;
                }
                h.expires = now + self.ttl;
                return Some(Lease {
                    stm_id: stm_id.to_owned(),
                    node: node.to_owned(),
                    epoch: h.epoch,
                });
            }
        }
        let epoch = self.epochs.get(stm_id).copied().unwrap_or(0) + 1;
        self.epochs.insert(stm_id.to_owned(), epoch);
        self.held.insert(
            stm_id.to_owned(),
            Held {
                node: node.to_owned(),
                epoch,
                expires: now + self.ttl,
            },
        );
        Some(Lease {
            stm_id: stm_id.to_owned(),
            node: node.to_owned(),
            epoch,
        })
    }

    /// Extends a lease the caller still holds with that epoch; `false` means it is lost
    /// (expired and maybe taken over, or released): the caller must stop delivering.
    pub fn renew(&mut self, lease: &Lease, now: Instant) -> bool {
        match self.held.get_mut(&lease.stm_id) {
            Some(h) if h.node == lease.node && h.epoch == lease.epoch && h.expires > now => {
                h.expires = now + self.ttl;
                true
            }
            _ => false,
        }
    }

    /// Gives a lease up (stream stopped or handed over); only its holder can.
    pub fn release(&mut self, lease: &Lease) -> bool {
        match self.held.get(&lease.stm_id) {
            Some(h) if h.node == lease.node && h.epoch == lease.epoch => {
                self.held.remove(&lease.stm_id);
                true
            }
            _ => false,
        }
    }

    /// The stream is deleted: forget its lease and epoch history.
    pub fn forget(&mut self, stm_id: &str) {
        self.held.remove(stm_id);
        self.epochs.remove(stm_id);
    }

    /// The current holder, if the lease is alive at `now`.
    pub fn holder(&self, stm_id: &str, now: Instant) -> Option<Lease> {
        self.held
            .get(stm_id)
            .filter(|h| h.expires > now)
            .map(|h| Lease {
                stm_id: stm_id.to_owned(),
                node: h.node.clone(),
                epoch: h.epoch,
            })
    }

    /// Live leases held by `node`.
    pub fn held_by(&self, node: &str, now: Instant) -> usize {
        self.held
            .values()
            .filter(|h| h.node == node && h.expires > now)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(3);

    #[test]
    fn first_acquisition_gets_epoch_one_and_excludes_others() {
        let mut t = LeaseTable::new(TTL);
        let now = Instant::now();
        let a = t.acquire("s", "a", now).expect("free");
        assert_eq!(a.epoch, 1);
        assert_eq!(t.acquire("s", "b", now + Duration::from_secs(1)), None);
        assert_eq!(t.holder("s", now), Some(a.clone()));
        // Asking again while holding it is a retry, not a new acquisition.
        assert_eq!(t.acquire("s", "a", now + Duration::from_secs(1)), Some(a));
        assert_eq!(t.held_by("a", now), 1);
    }

    #[test]
    fn renewals_keep_it_and_expiry_lets_another_node_take_over_with_a_higher_epoch() {
        let mut t = LeaseTable::new(TTL);
        let t0 = Instant::now();
        let a = t.acquire("s", "a", t0).expect("free");
        for i in 1..=5 {
            assert!(t.renew(&a, t0 + Duration::from_secs(i)));
        }
        // Renewals stop (node died): 3 s after the last one the lease is up for grabs.
        let last = t0 + Duration::from_secs(5);
        assert_eq!(
            t.acquire("s", "b", last + Duration::from_millis(2_900)),
            None
        );
        let b = t
            .acquire("s", "b", last + Duration::from_millis(3_001))
            .expect("expired");
        assert_eq!(b.epoch, 2);
        // The old owner's renewal fails: it must stop delivering (self-fencing).
        assert!(!t.renew(&a, last + Duration::from_millis(3_100)));
        assert_eq!(t.held_by("a", last + Duration::from_secs(4)), 0);
    }

    #[test]
    fn own_expired_lease_is_reacquired_with_a_new_epoch() {
        let mut t = LeaseTable::new(TTL);
        let t0 = Instant::now();
        let a1 = t.acquire("s", "a", t0).expect("free");
        assert!(!t.renew(&a1, t0 + TTL));
        let a2 = t.acquire("s", "a", t0 + TTL).expect("expired");
        assert_eq!(a2.epoch, 2);
    }

    #[test]
    fn only_the_holder_releases_and_epochs_never_repeat() {
        let mut t = LeaseTable::new(TTL);
        let now = Instant::now();
        let a = t.acquire("s", "a", now).expect("free");
        let forged = Lease {
            node: "b".into(),
            ..a.clone()
        };
        assert!(!t.release(&forged));
        assert!(t.release(&a));
        assert!(!t.renew(&a, now));
        let b = t.acquire("s", "b", now).expect("released");
        assert_eq!(b.epoch, 2);
        // Deleting the stream starts its history over.
        t.forget("s");
        assert_eq!(t.holder("s", now), None);
        assert_eq!(t.acquire("s", "a", now).map(|l| l.epoch), Some(1));
    }
}
