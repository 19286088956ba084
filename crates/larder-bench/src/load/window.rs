//! When a run's requests are due: the measured [`Window`] after the warmup, and the open-loop
//! [`Schedule`] that spreads `--rate` over the lanes, with the timer slack a lane allows itself.
//!
//! Without `--rate` the run is closed-loop: a connection sends its next batch as soon as the
//! previous one is answered. With `--rate` it is open-loop: request `n` of connection `c` is due
//! at a fixed time ([`Schedule`]) whether or not the server keeps up, and its latency counts from
//! that time, so a stalled server shows up as latency instead of as fewer requests.

use std::time::Duration;

use tokio::time::Instant;

/// The phases of a run: warmup from `origin`, measurement from `measure_from` to `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) origin: Instant,
    pub(crate) measure_from: Instant,
    pub(crate) end: Instant,
}

impl Window {
    pub(crate) fn new(origin: Instant, warmup: f64, duration: f64) -> Self {
        let measure_from = origin + Duration::from_secs_f64(warmup);
        Self {
            origin,
            measure_from,
            end: measure_from + Duration::from_secs_f64(duration),
        }
    }

    /// Whether a reply arriving at `at` is counted.
    pub(crate) fn measures(&self, at: Instant) -> bool {
        self.measure_from <= at && at < self.end
    }

    pub(crate) fn measured(&self) -> Duration {
        self.end.duration_since(self.measure_from)
    }
}

/// When the requests of one lane (a connection) of an open-loop run are due.
///
/// The total rate is split evenly over the lanes and the lanes are staggered, so that together
/// they send one request every `1 / rate` seconds: lane `c`'s request `n` is due at
/// `(n × lanes + c) / rate` seconds after the origin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Schedule {
    origin: Instant,
    lane: u64,
    lanes: u64,
    rate: f64,
}

impl Schedule {
    pub(crate) fn new(origin: Instant, rate: f64, lane: usize, lanes: usize) -> Self {
        Self {
            origin,
            lane: lane as u64,
            lanes: lanes.max(1) as u64,
            rate,
        }
    }

    /// The intended send time of this lane's request number `ticket`.
    pub(crate) fn at(&self, ticket: u64) -> Instant {
        self.origin + offset(ticket, self.lane, self.lanes, self.rate)
    }
}

/// One lane's place in its [`Schedule`]: the number of its next request.
#[derive(Debug)]
pub(crate) struct Pacing {
    schedule: Schedule,
    next: u64,
}

impl Pacing {
    pub(crate) fn new(schedule: Schedule) -> Self {
        Self { schedule, next: 0 }
    }

    /// When the next request is due.
    pub(crate) fn due(&self) -> Instant {
        self.schedule.at(self.next)
    }

    /// Moves past the next request; returns when it was due.
    pub(crate) fn take(&mut self) -> Instant {
        let at = self.due();
        self.next += 1;
        at
    }
}

/// How early an open-loop request may leave. tokio's timer rounds deadlines up to its
/// millisecond ticks and the wake-up itself lags, so a sleep until the exact time returns about
/// a millisecond late (up to two), which would count as latency. Instead a lane wakes this much
/// early and sends what is due by then: requests leave in millisecond groups, and an early one
/// counts its latency from when it actually left.
const TIMER_SLACK: Duration = Duration::from_millis(2);

/// When to wake for a request due at `due`.
pub(crate) fn wake_at(due: Instant) -> Instant {
    due.checked_sub(TIMER_SLACK).unwrap_or(due)
}

/// Whether a request due at `due` may leave at `now`.
pub(crate) fn may_leave(due: Instant, now: Instant) -> bool {
    due <= now + TIMER_SLACK
}

/// Where the latency of a request due at `due` and sent at `sent` counts from: the scheduled
/// time, so that a late send (a full pipeline, a stalled server) counts as latency, or the
/// actual send if that was earlier, so that leaving early never hides service time.
pub(crate) fn counted_from(due: Instant, sent: Instant) -> Instant {
    due.min(sent)
}

/// Time from the origin to lane `lane`'s request `ticket` (see [`Schedule`]).
fn offset(ticket: u64, lane: u64, lanes: u64, rate: f64) -> Duration {
    let slot = ticket as f64 * lanes as f64 + lane as f64;
    Duration::from_secs_f64(slot / rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_together_send_at_the_total_rate() {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        // 1000 requests/s over 4 lanes: lane 1 at 1, 5, 9 ms; all lanes one every millisecond.
        let lane1: Vec<f64> = (0..3).map(|n| ms(offset(n, 1, 4, 1000.0))).collect();
        assert_eq!(lane1, [1.0, 5.0, 9.0]);
        let mut all: Vec<f64> = (0..4)
            .flat_map(|lane| (0..250).map(move |n| ms(offset(n, lane, 4, 1000.0))))
            .collect();
        all.sort_by(f64::total_cmp);
        for (i, at) in all.iter().enumerate() {
            assert!((at - i as f64).abs() < 1e-6, "request {i} due at {at} ms");
        }
    }

    #[test]
    fn schedules_do_not_drift_over_long_runs() {
        // A day at 1M requests/s: the billionth-odd slot is still exact to the microsecond.
        let late = offset(86_400_000_000 / 50, 49, 50, 1e6);
        assert!(
            (late.as_secs_f64() - 86_400.000_049).abs() < 1e-6,
            "{late:?}"
        );
    }

    #[test]
    fn a_schedule_counts_from_its_origin() {
        let origin = Instant::now();
        let schedule = Schedule::new(origin, 100.0, 0, 2);
        assert_eq!(schedule.at(0), origin);
        assert_eq!(schedule.at(3) - origin, Duration::from_millis(60));
        assert_eq!(
            Schedule::new(origin, 100.0, 1, 2).at(0) - origin,
            Duration::from_millis(10)
        );
    }

    #[test]
    fn requests_leave_within_the_timer_slack_and_count_from_the_earlier_time() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(wake_at(now + ms(5)), now + ms(3));
        assert!(may_leave(now + ms(2), now));
        assert!(may_leave(now - ms(3), now));
        assert!(!may_leave(now + ms(3), now));
        assert_eq!(
            counted_from(now - ms(3), now),
            now - ms(3),
            "late: from the schedule"
        );
        assert_eq!(counted_from(now + ms(2), now), now, "early: from the send");
    }

    #[test]
    fn only_the_window_after_warmup_counts() {
        let origin = Instant::now();
        let window = Window::new(origin, 1.0, 2.0);
        assert!(!window.measures(origin));
        assert!(window.measures(origin + Duration::from_secs(1)));
        assert!(window.measures(origin + Duration::from_millis(2999)));
        assert!(!window.measures(origin + Duration::from_secs(3)));
        assert_eq!(window.measured(), Duration::from_secs(2));
    }
}
