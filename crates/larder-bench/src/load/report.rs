//! Counting and telling: each connection's [`Recorder`], the merged [`Summary`] with its
//! human and `summary key=value` forms, and the once-a-second progress on stderr.

use std::fmt;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::cpu::CpuUse;
use super::window::Window;

/// Latencies above this are recorded as this (a minute: a stall, whatever its length).
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// What one connection (or gRPC call slot) saw inside the measured window.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    /// Latency of each successful request, in nanoseconds.
    latency: Histogram<u64>,
    /// Operations that succeeded: requests, or keys for batched reads.
    pub(crate) ops: u64,
    /// Requests that failed: error replies, failed calls, requests lost with a connection.
    pub(crate) errors: u64,
    /// Reads that found no value.
    pub(crate) misses: u64,
    /// The first failure, for the report.
    pub(crate) first_error: Option<String>,
}

impl Recorder {
    pub(crate) fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .unwrap_or_else(|_| unreachable!("1 ns to 60 s at 3 digits are valid bounds")),
            ops: 0,
            errors: 0,
            misses: 0,
            first_error: None,
        }
    }

    /// One successful request of `ops` operations that took `latency`.
    pub(crate) fn success(&mut self, latency: Duration, ops: u64) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency.saturating_record(nanos.max(1));
        self.ops += ops;
    }

    /// `count` failed requests; `why` is kept if it is the first.
    pub(crate) fn failure(&mut self, count: u64, why: impl FnOnce() -> String) {
        self.errors += count;
        if self.first_error.is_none() {
            self.first_error = Some(why());
        }
    }

    /// Requests recorded as successful.
    pub(crate) fn requests(&self) -> u64 {
        self.latency.len()
    }

    pub(crate) fn merge(&mut self, other: Recorder) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.ops += other.ops;
        self.errors += other.errors;
        self.misses += other.misses;
        self.first_error = self.first_error.take().or(other.first_error);
    }

    fn percentiles(&self) -> Percentiles {
        let us = |ns: u64| ns as f64 / 1000.0;
        let at = |q: f64| us(self.latency.value_at_quantile(q));
        Percentiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: us(self.latency.max()),
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
}

/// The result of one run.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    /// What ran, in one line.
    pub(crate) title: String,
    pub(crate) ops: u64,
    /// Requests that succeeded (a batch is one request).
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) misses: u64,
    /// Length of the measured window.
    pub(crate) window: Duration,
    pub(crate) latency_us: Percentiles,
    pub(crate) cpu: CpuUse,
    /// The requested open-loop rate, if any.
    pub(crate) rate: Option<f64>,
    pub(crate) first_error: Option<String>,
}

impl Summary {
    pub(crate) fn new(
        title: String,
        recorded: Recorder,
        window: Duration,
        cpu: CpuUse,
        rate: Option<f64>,
    ) -> Self {
        Self {
            title,
            ops: recorded.ops,
            requests: recorded.requests(),
            errors: recorded.errors,
            misses: recorded.misses,
            window,
            latency_us: recorded.percentiles(),
            cpu,
            rate,
            first_error: recorded.first_error,
        }
    }

    pub(crate) fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// CPU microseconds per operation of the server (`Some` with `--server-pid`).
    pub(crate) fn server_cpu_us_per_op(&self) -> Option<f64> {
        self.per_op(self.cpu.server)
    }

    fn client_cpu_us_per_op(&self) -> Option<f64> {
        self.per_op(self.cpu.client)
    }

    fn per_op(&self, cpu: Option<Duration>) -> Option<f64> {
        let cpu = cpu?;
        (self.ops > 0).then(|| cpu.as_secs_f64() * 1e6 / self.ops as f64)
    }

    /// The one line scripts grep for.
    pub(crate) fn machine_line(&self) -> String {
        let or_na = |v: Option<f64>| v.map_or_else(|| "na".to_owned(), |v| format!("{v:.3}"));
        let l = &self.latency_us;
        format!(
            "summary ops={} ops_per_sec={:.0} p50_us={:.1} p90_us={:.1} p99_us={:.1} \
             p999_us={:.1} max_us={:.1} errors={} misses={} server_cpu_us_per_op={} \
             client_cpu_us_per_op={}",
            self.ops,
            self.ops_per_sec(),
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            self.errors,
            self.misses,
            or_na(self.server_cpu_us_per_op()),
            or_na(self.client_cpu_us_per_op()),
        )
    }

    /// A warning when an open-loop run fell behind its schedule.
    fn behind_schedule(&self) -> Option<String> {
        let rate = self.rate?;
        let achieved = (self.requests + self.errors) as f64 / self.window.as_secs_f64();
        (achieved < 0.95 * rate).then(|| {
            format!(
                "  note          {achieved:.0} of the {rate:.0} requests/s scheduled completed; \
                 latencies include the queueing"
            )
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.latency_us;
        writeln!(f, "{}", self.title)?;
        writeln!(
            f,
            "  ops           {} in {:.1} s = {:.0} ops/s",
            self.ops,
            self.window.as_secs_f64(),
            self.ops_per_sec()
        )?;
        writeln!(f, "  errors        {}", self.errors)?;
        writeln!(f, "  misses        {}", self.misses)?;
        writeln!(
            f,
            "  latency (µs)  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            l.p50, l.p90, l.p99, l.p999, l.max
        )?;
        if let Some(us) = self.server_cpu_us_per_op() {
            writeln!(f, "  server cpu    {us:.3} µs/op")?;
        }
        if let Some(us) = self.client_cpu_us_per_op() {
            writeln!(f, "  client cpu    {us:.3} µs/op (this load generator)")?;
        }
        if let Some(why) = &self.first_error {
            writeln!(f, "  first error   {why}")?;
        }
        if let Some(note) = self.behind_schedule() {
            writeln!(f, "{note}")?;
        }
        write!(f, "{}", self.machine_line())
    }
}

/// How progress is shown while a run lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// An indicatif bar (stderr is a terminal).
    Bar,
    /// A line per second on stderr (stderr is a file or a pipe).
    Lines,
    /// Nothing (tests).
    Quiet,
}

impl Progress {
    /// A bar on a terminal, lines otherwise.
    pub(crate) fn for_stderr() -> Self {
        if std::io::stderr().is_terminal() {
            Self::Bar
        } else {
            Self::Lines
        }
    }

    /// Shows the ops/s of `completed` once a second until the window ends.
    pub(crate) fn spawn(
        self,
        label: &'static str,
        window: Window,
        completed: Arc<AtomicU64>,
    ) -> Option<JoinHandle<()>> {
        if self == Self::Quiet {
            return None;
        }
        let total = window
            .end
            .duration_since(window.origin)
            .as_secs_f64()
            .ceil();
        let bar = (self == Self::Bar).then(|| bar(total as u64, label));
        Some(tokio::spawn(tick(bar, label, window, completed)))
    }
}

/// Once a second until the window ends: the ops/s of the second just past.
async fn tick(bar: Option<ProgressBar>, label: &str, window: Window, completed: Arc<AtomicU64>) {
    let (mut last_at, mut last_count) = (window.origin, 0);
    for second in 1.. {
        let at = window.origin + Duration::from_secs(second);
        if at > window.end {
            break;
        }
        tokio::time::sleep_until(at).await;
        let (now, count) = (Instant::now(), completed.load(Ordering::Relaxed));
        let rate = (count - last_count) as f64 / now.duration_since(last_at).as_secs_f64();
        (last_at, last_count) = (now, count);
        let phase = if at <= window.measure_from {
            "warmup"
        } else {
            "measuring"
        };
        match &bar {
            Some(bar) => {
                bar.set_position(second);
                bar.set_message(format!("{label} {phase} {rate:.0} ops/s"));
            }
            None => eprintln!("{label}: {second:>3} s {phase} {rate:.0} ops/s"),
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

fn bar(seconds: u64, label: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(seconds).with_message(label);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} s") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// What every load generator's test expects of a clean run: requests made, none failed, the
/// server's CPU sampled and sane latencies.
#[cfg(test)]
pub(crate) fn assert_sound(summary: &Summary) {
    assert!(summary.ops > 0, "{summary}");
    assert_eq!(summary.errors, 0, "{summary}");
    assert!(summary.server_cpu_us_per_op().is_some(), "{summary}");
    assert!(summary.latency_us.p50 > 0.0, "{summary}");
    assert!(
        summary.latency_us.p50 <= summary.latency_us.max,
        "{summary}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(ops: u64, rate: Option<f64>) -> Summary {
        let mut recorded = Recorder::new();
        for us in 1..=1000 {
            recorded.success(Duration::from_micros(us), ops / 1000);
        }
        let cpu = CpuUse {
            server: Some(Duration::from_secs(1)),
            client: None,
        };
        Summary::new("test".into(), recorded, Duration::from_secs(2), cpu, rate)
    }

    #[test]
    fn merged_recorders_add_up() {
        let mut a = Recorder::new();
        a.success(Duration::from_micros(10), 1);
        let mut b = Recorder::new();
        b.success(Duration::from_micros(30), 5);
        b.failure(2, || "first".into());
        b.failure(1, || "second".into());
        a.merge(b);
        assert_eq!((a.ops, a.requests(), a.errors), (6, 2, 3));
        assert_eq!(a.first_error.as_deref(), Some("first"));
        let p = a.percentiles();
        assert!((p.max - 30.0).abs() < 0.1, "{p:?}");
    }

    #[test]
    fn the_summary_line_has_every_figure() {
        let s = summary(100_000, None);
        assert_eq!(s.ops_per_sec(), 50_000.0);
        assert_eq!(s.server_cpu_us_per_op(), Some(10.0));
        let line = s.machine_line();
        assert!(line.starts_with("summary ops=100000 ops_per_sec=50000 p50_us=500."));
        assert!(line.contains(" errors=0 misses=0 server_cpu_us_per_op=10.000"));
        assert!(line.ends_with("client_cpu_us_per_op=na"));
        assert!(s.to_string().ends_with(&line));
    }

    #[test]
    fn an_open_loop_run_behind_schedule_says_so() {
        assert!(summary(1000, Some(500.0)).behind_schedule().is_none());
        let note = summary(1000, Some(5000.0)).behind_schedule().unwrap();
        assert!(note.contains("500 of the 5000"), "{note}");
    }
}
