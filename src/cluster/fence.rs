//! FenceClock: when must a node stop delivering, and when may it claim again (SPEC §6, "no
//! double delivery"). Plain time arithmetic on `Instant`s the caller passes in, so tests
//! drive it without sleeping.
//!
//! - **Self-fencing.** A lease expires on the coordinator's clock `ttl` after the renewal
//!   that last reached it. The node only knows when it *sent* its last successful renewal,
//!   which is earlier than when Redis applied it, so counting from the send is safe. It holds
//!   delivery `ttl - margin` after that (`margin` covers the check interval and clock-rate
//!   drift between the two hosts): by the time another node can acquire the stream, this one
//!   has been silent for at least `margin`.
//!   [`DeliveryGate`] carries that deadline to every forwarder.
//! - **Orphans wait one TTL after an outage.** When the coordinator comes back, every owner
//!   finds its leases expired. Owners re-acquire their own first; a node that just saw the
//!   outage end leaves unowned streams alone for one TTL, so it does not snatch a stream
//!   whose owner is still pulling (and buffering) it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Until when this node may deliver, shared by the registry (which moves it forward on every
/// confirmed renewal) and every stream's forwarder (which checks it before each write).
/// Checking in the forwarder itself keeps the fence exact even while the registry is busy
/// with something else: a forwarder never writes past the deadline, whoever is late.
#[derive(Debug)]
pub struct DeliveryGate {
    base: Instant,
    /// Milliseconds after `base`; `u64::MAX`: always open.
    until_ms: AtomicU64,
}

impl DeliveryGate {
    /// Closed until [`open_until`](Self::open_until) is called.
    pub fn closed() -> Self {
        Self {
            base: Instant::now(),
            until_ms: AtomicU64::new(0),
        }
    }

    /// Never closes (a node on its own: nobody else can deliver its streams).
    pub fn always_open() -> Self {
        Self {
            base: Instant::now(),
            until_ms: AtomicU64::new(u64::MAX),
        }
    }

    pub fn open_until(&self, deadline: Instant) {
        let ms = deadline.saturating_duration_since(self.base).as_millis();
        self.until_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX - 1), Ordering::Relaxed);
    }

    pub fn is_open(&self, now: Instant) -> bool {
        let until = self.until_ms.load(Ordering::Relaxed);
        until == u64::MAX || (now.saturating_duration_since(self.base).as_millis() as u64) < until
    }
}

#[derive(Debug, Clone)]
pub struct FenceClock {
    ttl: Duration,
    hold_after: Duration,
    /// When the last renewal that the coordinator confirmed was sent.
    confirmed: Option<Instant>,
    held: bool,
    /// The coordinator has been failing since.
    down_since: Option<Instant>,
    /// No claiming of unowned streams before this.
    claims_paused_until: Option<Instant>,
}

/// What [`FenceClock::on_call_result`] observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    /// Nothing changed.
    Same,
    /// The coordinator stopped answering.
    Lost,
    /// It answers again after being away this long.
    Back(Duration),
}

impl FenceClock {
    /// `ttl`: the lease TTL. `margin`: how long before the earliest possible expiry delivery
    /// must already be held.
    pub fn new(ttl: Duration, margin: Duration) -> Self {
        Self {
            ttl,
            hold_after: ttl.saturating_sub(margin),
            confirmed: None,
            held: false,
            down_since: None,
            claims_paused_until: None,
        }
    }

    /// The margin a node uses: the longer of one coordinator call timeout and a third of the
    /// TTL (a renewal is sent every TTL/3).
    pub fn margin_for(ttl: Duration, call_timeout: Duration) -> Duration {
        call_timeout.max(ttl / 3)
    }

    /// A renewal of every lease the node holds, sent at `sent`, was confirmed. Returns true
    /// when delivery was held and may resume.
    pub fn on_renewed(&mut self, sent: Instant) -> bool {
        if self.confirmed.is_none_or(|c| sent > c) {
            self.confirmed = Some(sent);
        }
        std::mem::take(&mut self.held)
    }

    /// A lease was acquired at `sent` while no renewal had been confirmed yet (the first
    /// stream of a node): start counting from it.
    pub fn on_acquired(&mut self, sent: Instant) {
        if self.confirmed.is_none() {
            self.confirmed = Some(sent);
        }
    }

    /// The node holds no lease any more: nothing to fence.
    pub fn clear(&mut self) {
        self.confirmed = None;
        self.held = false;
    }

    /// Should delivery be held now? True once per fencing (the caller then holds every
    /// stream); false again after [`on_renewed`](Self::on_renewed).
    pub fn should_hold(&mut self, now: Instant) -> bool {
        let due = self
            .confirmed
            .is_some_and(|c| now.saturating_duration_since(c) >= self.hold_after);
        if due && !self.held {
            self.held = true;
            return true;
        }
        false
    }

    pub fn is_held(&self) -> bool {
        self.held
    }

    /// The deadline for delivery under the last confirmation, if any.
    pub fn deliver_until(&self) -> Option<Instant> {
        self.confirmed.map(|c| c + self.hold_after)
    }

    /// How long delivery has been unconfirmed (for logs).
    pub fn unconfirmed_for(&self, now: Instant) -> Option<Duration> {
        self.confirmed.map(|c| now.saturating_duration_since(c))
    }

    /// Records whether a round of coordinator calls succeeded.
    pub fn on_call_result(&mut self, ok: bool, now: Instant) -> Reachability {
        match (ok, self.down_since) {
            (false, None) => {
                self.down_since = Some(now);
                Reachability::Lost
            }
            (true, Some(since)) => {
                self.down_since = None;
                self.claims_paused_until = Some(now + self.ttl);
                Reachability::Back(now.saturating_duration_since(since))
            }
            _ => Reachability::Same,
        }
    }

    /// May the node claim streams nobody owns? Not while the coordinator is away, nor for one
    /// TTL after it came back (their owners re-acquire them first).
    pub fn may_claim_orphans(&self, now: Instant) -> bool {
        self.down_since.is_none() && self.claims_paused_until.is_none_or(|t| now >= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(3);
    #[allow(non_snake_case)]
    fn S(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn clock() -> FenceClock {
        FenceClock::new(TTL, FenceClock::margin_for(TTL, S(1_000)))
    }

    #[test]
    fn margin_is_the_call_timeout_or_a_third_of_the_ttl() {
        assert_eq!(FenceClock::margin_for(TTL, S(500)), S(1_000));
        assert_eq!(FenceClock::margin_for(TTL, S(1_500)), S(1_500));
    }

    #[test]
    fn holds_before_the_lease_can_expire_and_only_once() {
        let t0 = Instant::now();
        let mut c = clock();
        // No lease yet: nothing to hold.
        assert!(!c.should_hold(t0 + S(60_000)));
        c.on_renewed(t0);
        assert!(!c.should_hold(t0 + S(1_999)));
        assert!(
            c.should_hold(t0 + S(2_000)),
            "held 1 s before the 3 s expiry"
        );
        assert!(c.is_held());
        assert!(!c.should_hold(t0 + S(2_500)), "reported once");
        assert_eq!(c.unconfirmed_for(t0 + S(2_500)), Some(S(2_500)));
    }

    #[test]
    fn a_confirmed_renewal_releases_the_hold_and_restarts_the_count() {
        let t0 = Instant::now();
        let mut c = clock();
        c.on_renewed(t0);
        assert!(!c.on_renewed(t0 + S(1_000)), "was not held");
        assert!(
            !c.should_hold(t0 + S(2_500)),
            "counted from the later renewal"
        );
        assert!(c.should_hold(t0 + S(3_000)));
        assert!(c.on_renewed(t0 + S(3_100)), "resume");
        assert!(!c.is_held());
        // A late confirmation of an older renewal never moves the count back.
        c.on_renewed(t0 + S(100));
        assert!(!c.should_hold(t0 + S(4_500)));
    }

    #[test]
    fn first_acquisition_starts_the_count_clear_stops_it() {
        let t0 = Instant::now();
        let mut c = clock();
        c.on_acquired(t0);
        c.on_acquired(t0 + S(1_500));
        assert!(c.should_hold(t0 + S(2_000)), "counted from the first");
        c.clear();
        assert!(!c.is_held());
        assert!(!c.should_hold(t0 + S(10_000)));
    }

    #[test]
    fn the_gate_follows_the_deadline_and_can_stay_open() {
        let t0 = Instant::now();
        let gate = DeliveryGate::closed();
        assert!(!gate.is_open(t0));
        let mut c = clock();
        c.on_renewed(t0);
        gate.open_until(c.deliver_until().expect("confirmed"));
        assert!(gate.is_open(t0 + S(1_999)));
        assert!(!gate.is_open(t0 + S(2_001)), "closed before the 3 s expiry");
        c.on_renewed(t0 + S(1_000));
        gate.open_until(c.deliver_until().expect("confirmed"));
        assert!(gate.is_open(t0 + S(2_500)));
        assert!(DeliveryGate::always_open().is_open(t0 + S(1 << 40)));
    }

    #[test]
    fn orphans_wait_one_ttl_after_the_coordinator_returns() {
        let t0 = Instant::now();
        let mut c = clock();
        assert!(c.may_claim_orphans(t0), "a fresh node claims at once");
        assert_eq!(c.on_call_result(true, t0), Reachability::Same);
        assert_eq!(c.on_call_result(false, t0 + S(100)), Reachability::Lost);
        assert_eq!(c.on_call_result(false, t0 + S(1_100)), Reachability::Same);
        assert!(!c.may_claim_orphans(t0 + S(1_200)));
        assert_eq!(
            c.on_call_result(true, t0 + S(5_100)),
            Reachability::Back(S(5_000))
        );
        assert!(!c.may_claim_orphans(t0 + S(8_000)));
        assert!(c.may_claim_orphans(t0 + S(8_100)));
    }
}
