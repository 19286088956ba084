//! A circuit breaker: after `threshold` consecutive failures it opens and refuses calls at once
//! for `cooldown`; then it lets one trial call through (half-open), which closes it on success
//! and opens it again on failure.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The breaker's state as `larder_breaker_state` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

#[derive(Debug)]
struct Inner {
    state: State,
    failures: u32,
    /// When an open breaker may let a trial through.
    retry_at: Option<Instant>,
    /// Whether the half-open trial is out.
    trial_out: bool,
}

/// One origin's breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
}

/// Permission to call; report how the call went with [`Permit::finish`]. A permit dropped
/// unfinished (its caller went away mid-call) counts as a failure, so a half-open breaker
/// never waits for a trial that will not report.
#[derive(Debug)]
#[must_use]
pub(crate) struct Permit<'b> {
    breaker: &'b Breaker,
    trial: bool,
    finished: bool,
}

impl Permit<'_> {
    /// Records how the permitted call went.
    pub(crate) fn finish(mut self, ok: bool, now: Instant) {
        self.finished = true;
        self.breaker.record(self.trial, ok, now);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.breaker.record(self.trial, false, Instant::now());
        }
    }
}

impl Breaker {
    /// A closed breaker; `threshold` 0 never opens.
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            inner: Mutex::new(Inner {
                state: State::Closed,
                failures: 0,
                retry_at: None,
                trial_out: false,
            }),
        }
    }

    /// Permission for one call, or `None` while the breaker refuses calls.
    pub(crate) fn try_call(&self, now: Instant) -> Option<Permit<'_>> {
        let mut inner = self.inner.lock();
        let trial = match inner.state {
            State::Closed => false,
            State::Open if inner.retry_at.is_some_and(|at| now >= at) => {
                inner.state = State::HalfOpen;
                inner.trial_out = true;
                true
            }
            State::Open => return None,
            State::HalfOpen if !inner.trial_out => {
                inner.trial_out = true;
                true
            }
            State::HalfOpen => return None,
        };
        Some(Permit {
            breaker: self,
            trial,
            finished: false,
        })
    }

    fn record(&self, trial: bool, ok: bool, now: Instant) {
        let mut inner = self.inner.lock();
        if trial {
            inner.trial_out = false;
        }
        if ok {
            inner.failures = 0;
            if trial || inner.state == State::Closed {
                inner.state = State::Closed;
                inner.retry_at = None;
            }
            return;
        }
        inner.failures = inner.failures.saturating_add(1);
        let trip = trial || (self.threshold > 0 && inner.failures >= self.threshold);
        if trip && inner.state != State::Open {
            inner.state = State::Open;
            inner.retry_at = now.checked_add(self.cooldown);
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> State {
        self.inner.lock().state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_one_trial_decides() {
        let b = Breaker::new(3, Duration::from_secs(5));
        let t0 = Instant::now();
        for _ in 0..2 {
            let p = b.try_call(t0).unwrap();
            p.finish(false, t0);
        }
        assert_eq!(b.state(), State::Closed);
        let p = b.try_call(t0).unwrap();
        p.finish(false, t0);
        assert_eq!(b.state(), State::Open);
        assert!(b.try_call(t0 + Duration::from_secs(1)).is_none());

        let later = t0 + Duration::from_secs(6);
        let trial = b.try_call(later).unwrap();
        assert_eq!(b.state(), State::HalfOpen);
        assert!(b.try_call(later).is_none(), "one trial at a time");
        trial.finish(false, later);
        assert_eq!(b.state(), State::Open, "a failed trial opens it again");
        assert!(b.try_call(later + Duration::from_secs(1)).is_none());

        let again = later + Duration::from_secs(6);
        let trial = b.try_call(again).unwrap();
        trial.finish(true, again);
        assert_eq!(b.state(), State::Closed);
        assert!(b.try_call(again).is_some());
    }

    #[test]
    fn a_success_resets_the_count_and_zero_never_opens() {
        let b = Breaker::new(2, Duration::from_secs(1));
        let t = Instant::now();
        let p = b.try_call(t).unwrap();
        p.finish(false, t);
        let p = b.try_call(t).unwrap();
        p.finish(true, t);
        let p = b.try_call(t).unwrap();
        p.finish(false, t);
        assert_eq!(b.state(), State::Closed);

        let never = Breaker::new(0, Duration::from_secs(1));
        for _ in 0..100 {
            let p = never.try_call(t).unwrap();
            p.finish(false, t);
        }
        assert_eq!(never.state(), State::Closed);
    }

    #[test]
    fn an_abandoned_trial_counts_as_a_failure() {
        let b = Breaker::new(1, Duration::from_millis(10));
        let t = Instant::now();
        b.try_call(t).unwrap().finish(false, t);
        let later = t + Duration::from_millis(20);
        drop(b.try_call(later).unwrap());
        assert_eq!(b.state(), State::Open, "the dropped trial reopened it");
        let again = later + Duration::from_millis(20);
        let trial = b.try_call(again).expect("a new trial after the cooldown");
        trial.finish(true, again);
        assert_eq!(b.state(), State::Closed);
    }
}
