//! What every larder process's `/metrics` shares: a latency histogram with fixed buckets,
//! rendered as Prometheus text, and the process and build metrics ([`process`]).

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

pub mod process;

/// Upper bounds of the latency buckets, in seconds: 10 µs (a cache hit) to 10 s (a request
/// timeout).
pub const LATENCY_BUCKETS: [f64; 19] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram over [`LATENCY_BUCKETS`], updated with relaxed atomics.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records `n` observations of `ns` nanoseconds each.
    pub fn observe(&self, ns: u64, n: u64) {
        let secs = ns as f64 / 1e9;
        let bucket = LATENCY_BUCKETS.partition_point(|&bound| bound < secs);
        self.buckets[bucket].fetch_add(n, Relaxed);
        self.sum_ns.fetch_add(ns.saturating_mul(n), Relaxed);
        self.count.fetch_add(n, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Appends the `_bucket`, `_sum` and `_count` series of `name`, each with `labels`
    /// (`key="value",…`, or empty) besides `le`.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[LATENCY_BUCKETS.len()].load(Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_ns.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{braced} {sum}");
        let _ = writeln!(out, "{name}_count{braced} {}", self.count.load(Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_with_and_without_labels() {
        let h = Histogram::default();
        h.observe(5_000, 2); // 5 µs
        h.observe(2_000_000, 1); // 2 ms
        h.observe(60_000_000_000, 1); // a minute
        let mut out = String::new();
        h.render(&mut out, "x", "p=\"a\"");
        assert!(
            out.contains("x_bucket{p=\"a\",le=\"0.00001\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("x_bucket{p=\"a\",le=\"0.0025\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{p=\"a\",le=\"10\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{p=\"a\",le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_count{p=\"a\"} 4\n"), "{out}");
        let mut out = String::new();
        h.render(&mut out, "y", "");
        assert!(out.contains("y_bucket{le=\"0.001\"} 2\n"), "{out}");
        assert!(out.contains("y_sum 60.00201\n"), "{out}");
        assert!(out.contains("y_count 4\n"), "{out}");
    }
}
