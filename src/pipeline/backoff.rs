//! Exponential backoff with full jitter for reconnects.
//!
//! Full jitter (a uniform draw in `[0, min(cap, base·2ⁿ)]`) spreads reconnect storms: when a
//! media server restarts, hundreds of streams would otherwise retry in lock-step.

use std::time::Duration;

/// Reconnect delay policy for one stream. Plain state: the caller owns time.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// Consecutive failures since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The upper bound of the next delay (before jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay: a uniform draw from `[ceiling/2, ceiling]` given `unit` in `[0, 1)`.
    ///
    /// Half the ceiling is kept as a floor so a failing peer is never hammered with
    /// near-zero delays, while the other half still de-synchronises streams.
    pub fn next_delay_with(&mut self, unit: f64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let unit = unit.clamp(0.0, 1.0);
        ceiling.mul_f64(0.5 + 0.5 * unit)
    }

    /// The next delay with a random jitter.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(rand::random::<f64>())
    }

    /// A success (the stream went live): the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_then_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let maxes: Vec<_> = (0..7).map(|_| b.next_delay_with(1.0)).collect();
        let ms: Vec<u128> = maxes.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(b.attempts(), 7);
    }

    #[test]
    fn jitter_stays_in_upper_half() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(b.next_delay_with(0.0), Duration::from_millis(50));
        let d = b.next_delay();
        assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(200));
    }

    #[test]
    fn reset_starts_over_and_huge_attempts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.ceiling(), Duration::from_secs(30));
        b.reset();
        assert_eq!(b.next_delay_with(1.0), Duration::from_millis(100));
    }
}
