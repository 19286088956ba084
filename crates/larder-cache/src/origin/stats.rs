//! What each origin counts, and the Prometheus text for it.

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use larder_util::breaker::BreakerState;

use crate::metrics::Histogram;

/// Load outcomes, in `larder_origin_loads_total`'s `result` order.
pub(crate) const LOAD_RESULTS: [&str; 5] = ["found", "not_found", "error", "timeout", "rejected"];
/// Write outcomes, in `larder_origin_writes_total`'s `result` order.
pub(crate) const WRITE_RESULTS: [&str; 4] = ["ok", "error", "timeout", "rejected"];

/// How a guarded call failed, indexed like the result labels after the successes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The origin answered with an error.
    Error = 0,
    /// The origin did not answer in time.
    Timeout = 1,
    /// Not sent: the breaker is open or every slot stayed busy.
    Rejected = 2,
}

/// One origin's counters.
#[derive(Debug, Default)]
pub(crate) struct OriginStats {
    pub(crate) loads: [AtomicU64; LOAD_RESULTS.len()],
    pub(crate) writes: [AtomicU64; WRITE_RESULTS.len()],
    pub(crate) coalesced: AtomicU64,
    pub(crate) stale_served: AtomicU64,
    pub(crate) latency: Histogram,
}

impl OriginStats {
    /// Counts a stale value served.
    pub(crate) fn stale(&self) {
        self.stale_served.fetch_add(1, Relaxed);
    }
}

/// What the metrics show of one origin: its name, counters and breaker.
pub(crate) struct Shown<'a> {
    pub(crate) name: &'a str,
    pub(crate) stats: &'a OriginStats,
    pub(crate) breaker: BreakerState,
}

/// Prometheus text for every origin.
pub(crate) fn render(list: &[Shown<'_>], out: &mut String) {
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let name = "larder_origin_loads_total";
    family(out, name, "counter", "Origin loads by origin and result.");
    for o in list {
        for (result, n) in LOAD_RESULTS.iter().zip(&o.stats.loads) {
            let n = n.load(Relaxed);
            let _ = writeln!(
                out,
                "{name}{{origin=\"{}\",result=\"{result}\"}} {n}",
                o.name
            );
        }
    }
    let name = "larder_origin_writes_total";
    family(
        out,
        name,
        "counter",
        "Write-through writes by origin and result.",
    );
    for o in list {
        for (result, n) in WRITE_RESULTS.iter().zip(&o.stats.writes) {
            let n = n.load(Relaxed);
            let _ = writeln!(
                out,
                "{name}{{origin=\"{}\",result=\"{result}\"}} {n}",
                o.name
            );
        }
    }
    let name = "larder_origin_coalesced_total";
    family(
        out,
        name,
        "counter",
        "Reads that waited on a load another read started.",
    );
    for o in list {
        let n = o.stats.coalesced.load(Relaxed);
        let _ = writeln!(out, "{name}{{origin=\"{}\"}} {n}", o.name);
    }
    let name = "larder_origin_stale_served_total";
    family(out, name, "counter", "Values served past their fresh time.");
    for o in list {
        let n = o.stats.stale_served.load(Relaxed);
        let _ = writeln!(out, "{name}{{origin=\"{}\"}} {n}", o.name);
    }
    let name = "larder_origin_load_duration_seconds";
    family(out, name, "histogram", "Time one origin load took.");
    for o in list {
        o.stats
            .latency
            .render(out, name, &format!("origin=\"{}\"", o.name));
    }
    let name = "larder_breaker_state";
    family(
        out,
        name,
        "gauge",
        "Circuit breakers: 0 closed, 1 open, 2 half-open.",
    );
    for o in list {
        let state = o.breaker.metric_value();
        let _ = writeln!(out, "{name}{{target=\"origin:{}\"}} {state}", o.name);
    }
}
