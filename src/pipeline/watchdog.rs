//! Media watchdog: turns "time since the last RTP packet" into stream events.
//!
//! SRS never signals a vanished publisher: the player just stops getting RTP. So silence is
//! the only evidence, and it is judged here, as a plain state machine driven by `packet` and
//! `tick` with the caller's clock (no timers inside, unit-tested without waiting).

use std::time::{Duration, Instant};

/// What the watchdog concluded on a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    /// The first packet after a (re)start or a stall.
    Flowing,
    /// No RTP for the stall timeout (reported once per silence).
    Stalled,
    /// No RTP for the reconnect timeout (reported once per silence).
    TimedOut,
}

#[derive(Debug, Clone)]
pub struct MediaWatchdog {
    stall_after: Duration,
    timeout_after: Duration,
    last: Instant,
    flowing: bool,
    stalled: bool,
    timed_out: bool,
}

impl MediaWatchdog {
    pub fn new(stall_after: Duration, timeout_after: Duration, now: Instant) -> Self {
        Self {
            stall_after,
            timeout_after: timeout_after.max(stall_after),
            last: now,
            flowing: false,
            stalled: false,
            timed_out: false,
        }
    }

    /// A packet arrived at `now`.
    pub fn packet(&mut self, now: Instant) -> Option<MediaEvent> {
        self.last = now;
        self.stalled = false;
        self.timed_out = false;
        (!std::mem::replace(&mut self.flowing, true)).then_some(MediaEvent::Flowing)
    }

    /// A new session starts: the clock restarts and the next packet is `Flowing` again.
    pub fn restart(&mut self, now: Instant) {
        *self = Self::new(self.stall_after, self.timeout_after, now);
    }

    /// Periodic check. Reports `Stalled` then `TimedOut` once each per silence.
    pub fn tick(&mut self, now: Instant) -> Option<MediaEvent> {
        let idle = now.saturating_duration_since(self.last);
        if idle >= self.timeout_after && !self.timed_out {
            self.timed_out = true;
            self.stalled = true;
            self.flowing = false;
            Some(MediaEvent::TimedOut)
        } else if idle >= self.stall_after && !self.stalled {
            self.stalled = true;
            self.flowing = false;
            Some(MediaEvent::Stalled)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn flowing_once_then_stall_then_timeout_once_each() {
        let t0 = Instant::now();
        let mut w = MediaWatchdog::new(5 * S, 15 * S, t0);
        assert_eq!(w.packet(t0), Some(MediaEvent::Flowing));
        assert_eq!(w.packet(t0 + S), None);
        assert_eq!(w.tick(t0 + 5 * S), None);
        assert_eq!(w.tick(t0 + 6 * S), Some(MediaEvent::Stalled));
        assert_eq!(w.tick(t0 + 7 * S), None);
        assert_eq!(w.tick(t0 + 16 * S), Some(MediaEvent::TimedOut));
        assert_eq!(w.tick(t0 + 30 * S), None);
        // Media comes back: flowing again, and a new silence is judged afresh.
        assert_eq!(w.packet(t0 + 31 * S), Some(MediaEvent::Flowing));
        assert_eq!(w.tick(t0 + 36 * S), Some(MediaEvent::Stalled));
    }

    #[test]
    fn no_first_packet_times_out_from_the_start() {
        let t0 = Instant::now();
        let mut w = MediaWatchdog::new(5 * S, 15 * S, t0);
        assert_eq!(w.tick(t0 + 5 * S), Some(MediaEvent::Stalled));
        assert_eq!(w.tick(t0 + 15 * S), Some(MediaEvent::TimedOut));
    }

    #[test]
    fn restart_resets_the_clock_and_flowing() {
        let t0 = Instant::now();
        let mut w = MediaWatchdog::new(5 * S, 15 * S, t0);
        w.packet(t0);
        w.restart(t0 + 10 * S);
        assert_eq!(w.tick(t0 + 14 * S), None);
        assert_eq!(w.packet(t0 + 14 * S), Some(MediaEvent::Flowing));
    }

    #[test]
    fn a_long_gap_between_ticks_reports_the_timeout() {
        let t0 = Instant::now();
        let mut w = MediaWatchdog::new(5 * S, 15 * S, t0);
        w.packet(t0);
        assert_eq!(w.tick(t0 + 20 * S), Some(MediaEvent::TimedOut));
        assert_eq!(w.tick(t0 + 21 * S), None);
    }
}
