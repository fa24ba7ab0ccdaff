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

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try again after `delay`; `attempt` counts consecutive failures (1 = first).
    Retry { delay: Duration, attempt: u32 },
    /// Stop: the error cannot be fixed by retrying, or the failure budget is spent.
    GiveUp { failures: u32 },
}

/// Retry decisions for one stream: [`Backoff`] plus an optional failure budget.
///
/// A node (budget `None`) never gives up: a stream that cannot work keeps retrying at the
/// capped delay and shows `failing`. `pull` has a budget so a wrong URL exits with the error.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    backoff: Backoff,
    max_failures: Option<u32>,
}

impl RetryPolicy {
    pub fn new(backoff: Backoff, max_failures: Option<u32>) -> Self {
        Self {
            backoff,
            max_failures,
        }
    }

    /// A failure; `unit` in `[0, 1)` is the jitter draw.
    pub fn on_failure_with(&mut self, retryable: bool, unit: f64) -> Decision {
        let failures = self.backoff.attempts() + 1;
        if let Some(max) = self.max_failures {
            if !retryable || failures >= max {
                return Decision::GiveUp { failures };
            }
        }
        Decision::Retry {
            delay: self.backoff.next_delay_with(unit),
            attempt: failures,
        }
    }

    /// A failure, with a random jitter.
    pub fn on_failure(&mut self, retryable: bool) -> Decision {
        self.on_failure_with(retryable, rand::random::<f64>())
    }

    /// The stream went live: the budget and the delay start over.
    pub fn on_success(&mut self) {
        self.backoff.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max: Option<u32>) -> RetryPolicy {
        RetryPolicy::new(
            Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
            max,
        )
    }

    #[test]
    fn budget_is_spent_by_consecutive_failures_only() {
        let mut p = policy(Some(3));
        assert!(matches!(
            p.on_failure_with(true, 1.0),
            Decision::Retry { attempt: 1, .. }
        ));
        assert!(matches!(
            p.on_failure_with(true, 1.0),
            Decision::Retry { attempt: 2, .. }
        ));
        p.on_success();
        assert!(matches!(
            p.on_failure_with(true, 1.0),
            Decision::Retry { attempt: 1, .. }
        ));
        assert!(matches!(
            p.on_failure_with(true, 1.0),
            Decision::Retry { attempt: 2, .. }
        ));
        assert_eq!(
            p.on_failure_with(true, 1.0),
            Decision::GiveUp { failures: 3 }
        );
    }

    #[test]
    fn permanent_errors_give_up_at_once_with_a_budget_but_not_without() {
        assert_eq!(
            policy(Some(5)).on_failure_with(false, 1.0),
            Decision::GiveUp { failures: 1 }
        );
        let mut node = policy(None);
        for _ in 0..50 {
            assert!(matches!(
                node.on_failure_with(false, 1.0),
                Decision::Retry { .. }
            ));
        }
        assert_eq!(
            node.on_failure_with(false, 1.0),
            Decision::Retry {
                delay: Duration::from_secs(1),
                attempt: 51
            }
        );
    }

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
