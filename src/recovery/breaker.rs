//! A per-worker circuit breaker: closed while the worker behaves; open after `threshold` failures
//! in a row (no work is routed to it); half-open after `cooldown`, when one probe decides whether
//! it closes again or reopens. Times are passed in, so the logic is tested without sleeping.

use std::time::{Duration, Instant};

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Work flows.
    Closed,
    /// No work until the cooldown passes.
    Open,
    /// One probe allowed.
    HalfOpen,
}

/// A circuit breaker for one worker.
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: u32,
    opened: Option<Instant>,
    probing: bool,
}

impl Breaker {
    /// A closed breaker that opens after `threshold` consecutive failures for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            failures: 0,
            opened: None,
            probing: false,
        }
    }

    /// The state at `now`.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.opened {
            None => BreakerState::Closed,
            Some(t) if now.duration_since(t) < self.cooldown => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether a request may go to the worker at `now`. In half-open, the first caller gets the
    /// probe and the others are refused until it reports.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen if self.probing => false,
            BreakerState::HalfOpen => {
                self.probing = true;
                true
            }
        }
    }

    /// A request succeeded: the breaker closes.
    pub fn on_success(&mut self) {
        self.failures = 0;
        self.opened = None;
        self.probing = false;
    }

    /// A request failed at `now`. Returns whether the breaker is open afterwards.
    pub fn on_failure(&mut self, now: Instant) -> bool {
        self.failures += 1;
        let was_probe = self.probing;
        self.probing = false;
        if was_probe || self.failures >= self.threshold {
            self.opened = Some(now);
        }
        self.opened.is_some()
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_half_opens_and_closes_on_success() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(5));
        assert!(b.allow(t0));
        assert!(!b.on_failure(t0));
        assert!(!b.on_failure(t0));
        assert!(b.on_failure(t0));
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(!b.allow(t0 + Duration::from_secs(1)));
        let later = t0 + Duration::from_secs(6);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert!(b.allow(later), "one probe");
        assert!(!b.allow(later), "only one probe");
        b.on_success();
        assert_eq!(b.state(later), BreakerState::Closed);
        assert_eq!(b.failures(), 0);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, Duration::from_secs(2));
        assert!(b.on_failure(t0));
        let later = t0 + Duration::from_secs(3);
        assert!(b.allow(later));
        assert!(b.on_failure(later));
        assert_eq!(b.state(later + Duration::from_secs(1)), BreakerState::Open);
    }
}
