//! The circuit breaker in front of every dependency that can fail: a cache node (the client)
//! and an origin (the node's read-through). Three atomics, so the call path takes no lock.
//!
//! Closed: calls go through; `threshold` consecutive failures open it (a threshold of 0 never
//! opens). Open: calls fail fast
//! until `cooldown` has passed, then exactly one call is let through as a trial (half-open).
//! The trial's success closes the breaker; its failure opens it for another cooldown. A trial
//! that is abandoned (its future dropped) hands the trial to the next caller. Outcomes of calls
//! admitted while closed but finishing after the breaker opened are ignored.
//!
//! Time is passed in as milliseconds on the caller's clock, so the logic is plain and testable.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use serde::Serialize;

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    /// Calls go to the node.
    Closed,
    /// Calls fail fast without touching the network.
    Open,
    /// One trial call is in flight; the others fail fast until it ends.
    HalfOpen,
}

impl BreakerState {
    /// The value of the `larder_breaker_state{target}` gauge: 0 closed, 1 open, 2 half-open.
    pub const fn metric_value(self) -> u8 {
        match self {
            Self::Closed => CLOSED,
            Self::Open => OPEN,
            Self::HalfOpen => HALF_OPEN,
        }
    }

    const fn from_u8(value: u8) -> Self {
        match value {
            CLOSED => Self::Closed,
            OPEN => Self::Open,
            _ => Self::HalfOpen,
        }
    }
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// A change of state worth logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed.
    None,
    /// The breaker opened after consecutive failures.
    Opened,
    /// A trial failed and the breaker opened for another cooldown.
    Reopened,
    /// A trial succeeded and the breaker closed.
    Closed,
}

/// One dependency's breaker.
#[derive(Debug)]
pub struct Breaker {
    state: AtomicU8,
    failures: AtomicU32,
    opened_at_ms: AtomicU64,
    threshold: u32,
    cooldown_ms: u64,
}

/// Leave to make one call; report its outcome with [`Permit::succeed`] or [`Permit::fail`].
#[derive(Debug)]
#[must_use]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    trial: bool,
}

impl Breaker {
    /// A closed breaker that opens after `threshold` consecutive failures (0: never) and lets
    /// a trial through `cooldown_ms` after opening.
    #[must_use]
    pub fn new(threshold: u32, cooldown_ms: u64) -> Self {
        Self {
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            opened_at_ms: AtomicU64::new(0),
            threshold,
            cooldown_ms,
        }
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Leave to make a call, or `None` to fail fast. `now_ms` is only read while the breaker
    /// is open, so a closed breaker costs one atomic load and no clock read.
    pub fn admit(&self, now_ms: impl FnOnce() -> u64) -> Option<Permit<'_>> {
        match self.state.load(Ordering::Acquire) {
            CLOSED => Some(Permit {
                breaker: self,
                trial: false,
            }),
            OPEN => {
                let opened = self.opened_at_ms.load(Ordering::Acquire);
                let due = now_ms().saturating_sub(opened) >= self.cooldown_ms;
                let won = due
                    && self
                        .state
                        .compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok();
                won.then_some(Permit {
                    breaker: self,
                    trial: true,
                })
            }
            _ => None,
        }
    }

    fn on_success(&self, trial: bool) -> Transition {
        // Only a write when there is something to reset, so the happy path keeps the cache
        // line shared between cores.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if trial {
            self.state.store(CLOSED, Ordering::Release);
            return Transition::Closed;
        }
        Transition::None
    }

    fn on_failure(&self, trial: bool, now_ms: u64) -> Transition {
        if trial {
            self.opened_at_ms.store(now_ms, Ordering::Release);
            self.state.store(OPEN, Ordering::Release);
            return Transition::Reopened;
        }
        if self.state.load(Ordering::Acquire) != CLOSED {
            return Transition::None;
        }
        let failures = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if self.threshold == 0 || failures < self.threshold {
            return Transition::None;
        }
        // The time goes in before the state, so no caller sees OPEN with an old time.
        self.opened_at_ms.store(now_ms, Ordering::Release);
        match self
            .state
            .compare_exchange(CLOSED, OPEN, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Transition::Opened,
            Err(_) => Transition::None,
        }
    }
}

impl Permit<'_> {
    /// Whether this call is the half-open trial.
    #[must_use]
    pub fn is_trial(&self) -> bool {
        self.trial
    }

    /// The call was answered (with any outcome that is not an availability failure).
    pub fn succeed(mut self) -> Transition {
        let trial = std::mem::take(&mut self.trial);
        self.breaker.on_success(trial)
    }

    /// The dependency was unavailable, timed out or the transport failed, at `now_ms`.
    pub fn fail(mut self, now_ms: u64) -> Transition {
        let trial = std::mem::take(&mut self.trial);
        self.breaker.on_failure(trial, now_ms)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.trial {
            // Abandoned trial: back to open with the cooldown already served, so the next
            // caller becomes the trial instead of the breaker staying half-open for ever.
            self.breaker.state.store(OPEN, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail_n(breaker: &Breaker, n: u32, now: u64) {
        for _ in 0..n {
            let _ = breaker.admit(|| now).unwrap().fail(now);
        }
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = Breaker::new(3, 1_000);
        fail_n(&b, 2, 0);
        let _ = b.admit(|| 0).unwrap().succeed();
        fail_n(&b, 2, 0);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.admit(|| 5).unwrap().fail(5), Transition::Opened);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.admit(|| 6).is_none());
        assert!(b.admit(|| 1_004).is_none());
    }

    #[test]
    fn one_trial_after_cooldown_and_success_closes() {
        let b = Breaker::new(1, 100);
        let _ = b.admit(|| 0).unwrap().fail(0);
        let trial = b.admit(|| 100).unwrap();
        assert!(trial.is_trial());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.admit(|| 101).is_none(), "only one trial at a time");
        assert_eq!(trial.succeed(), Transition::Closed);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(!b.admit(|| 102).unwrap().is_trial());
    }

    #[test]
    fn failed_trial_reopens_for_another_cooldown() {
        let b = Breaker::new(1, 100);
        let _ = b.admit(|| 0).unwrap().fail(0);
        assert_eq!(b.admit(|| 150).unwrap().fail(150), Transition::Reopened);
        assert!(b.admit(|| 200).is_none());
        assert!(b.admit(|| 250).unwrap().is_trial());
    }

    #[test]
    fn abandoned_trial_passes_to_the_next_caller() {
        let b = Breaker::new(1, 100);
        let _ = b.admit(|| 0).unwrap().fail(0);
        drop(b.admit(|| 100).unwrap());
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.admit(|| 101).unwrap().is_trial());
    }

    #[test]
    fn late_outcomes_of_old_calls_do_not_disturb_an_open_breaker() {
        let b = Breaker::new(1, 100);
        let late_success = b.admit(|| 0).unwrap();
        let late_failure = b.admit(|| 0).unwrap();
        let _ = b.admit(|| 0).unwrap().fail(0);
        assert_eq!(late_success.succeed(), Transition::None);
        assert_eq!(late_failure.fail(90), Transition::None);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(
            b.admit(|| 100).unwrap().is_trial(),
            "cooldown runs from the first opening"
        );
    }

    #[test]
    fn a_threshold_of_zero_never_opens() {
        let b = Breaker::new(0, 100);
        fail_n(&b, 1_000, 0);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn metric_values() {
        let values = [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ]
        .map(BreakerState::metric_value);
        assert_eq!(values, [0, 1, 2]);
    }
}
