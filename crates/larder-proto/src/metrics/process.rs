//! What every `/metrics` ends with: the process's own figures under the names Prometheus'
//! client libraries give them (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, …), so the usual dashboards and alerts work unchanged, and
//! `larder_build_info{version,commit}`.
//!
//! The figures are read from `/proc/self` at each scrape (four small files and one directory
//! listing); where there is no `/proc` (not Linux) only the build info is written.

use std::fmt::Write as _;

/// The version this binary was built from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit this binary was built from: `LARDER_COMMIT` in the build's environment (CI and
/// the container build set it from git), or `unknown`.
pub const COMMIT: &str = match option_env!("LARDER_COMMIT") {
    Some(commit) if !commit.is_empty() => commit,
    _ => "unknown",
};

/// Clock ticks per second in `/proc/*/stat`. Linux fixes `USER_HZ` at 100 for user space on
/// every architecture it exposes it on, which is also what Prometheus' own procfs reader assumes.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time this process has used, and that of its waited-for children, in seconds: what
/// Redis's `INFO cpu` reports.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct CpuTimes {
    /// User time.
    pub user: f64,
    /// System time.
    pub system: f64,
    /// User time of waited-for children.
    pub children_user: f64,
    /// System time of waited-for children.
    pub children_system: f64,
}

/// Reads this process's CPU times from `/proc/self/stat`; `None` where it cannot.
#[must_use]
pub fn cpu_times() -> Option<CpuTimes> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu(&stat)
}

/// The fields after the command name in a `/proc/*/stat` line; `fields[0]` is field 3.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    // The command name (field 2) is in parentheses and may itself hold spaces or parentheses:
    // the fields that follow start after the last `)`.
    Some(
        stat.get(stat.rfind(')')? + 1..)?
            .split_whitespace()
            .collect(),
    )
}

fn parse_cpu(stat: &str) -> Option<CpuTimes> {
    let after = stat_fields(stat)?;
    let seconds = |n: usize| -> Option<f64> {
        let ticks: u64 = after.get(n - 3)?.parse().ok()?;
        Some(ticks as f64 / TICKS_PER_SECOND)
    };
    Some(CpuTimes {
        user: seconds(14)?,
        system: seconds(15)?,
        children_user: seconds(16)?,
        children_system: seconds(17)?,
    })
}

/// Appends the process metrics and `larder_build_info` to `out`.
pub fn render(out: &mut String) {
    if let Some(sample) = Sample::read() {
        sample.render(out);
    }
    render_build_info(out, VERSION, COMMIT);
}

fn render_build_info(out: &mut String, version: &str, commit: &str) {
    let name = "larder_build_info";
    let _ = writeln!(
        out,
        "# HELP {name} The build serving this endpoint; the value is always 1.\n\
         # TYPE {name} gauge\n\
         {name}{{version=\"{}\",commit=\"{}\"}} 1",
        escape(version),
        escape(commit)
    );
}

/// A label value with `\`, `"` and line feeds escaped as the text format wants them.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One reading of the process's figures.
#[derive(Debug, Default, Clone, PartialEq)]
struct Sample {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    threads: u64,
    start_time_seconds: f64,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

impl Sample {
    /// Reads `/proc/self`; `None` where it cannot be read.
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let mut sample = parse(&stat, &status, &boot)?;
        sample.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as u64);
        sample.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| soft_limit(&limits, "Max open files"));
        Some(sample)
    }

    fn render(&self, out: &mut String) {
        let metrics: [(&str, &str, &str, Option<f64>); 7] = [
            (
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                Some(self.cpu_seconds),
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                Some(self.resident_bytes as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                Some(self.virtual_bytes as f64),
            ),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                Some(self.start_time_seconds),
            ),
            (
                "process_threads",
                "gauge",
                "Number of OS threads in the process.",
                Some(self.threads as f64),
            ),
            (
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
                self.open_fds.map(|n| n as f64),
            ),
            (
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
                self.max_fds.map(|n| n as f64),
            ),
        ];
        for (name, kind, help, value) in metrics {
            if let Some(value) = value {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
                );
            }
        }
    }
}

/// The figures in `/proc/self/stat`, `/proc/self/status` and `/proc/stat` (for the boot time).
fn parse(stat: &str, status: &str, boot: &str) -> Option<Sample> {
    let after = stat_fields(stat)?;
    let field = |n: usize| -> Option<u64> { after.get(n - 3)?.parse().ok() };
    let (utime, stime) = (field(14)?, field(15)?);
    let threads = field(20)?;
    let start_ticks = field(22)?;
    let virtual_bytes = field(23)?;
    let boot_time: u64 = boot
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // `VmRSS` is in KiB; reading it spares asking the page size, which `stat` counts rss in.
    let resident_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0);
    Some(Sample {
        cpu_seconds: (utime + stime) as f64 / TICKS_PER_SECOND,
        resident_bytes: resident_kib * 1024,
        virtual_bytes,
        threads,
        start_time_seconds: boot_time as f64 + start_ticks as f64 / TICKS_PER_SECOND,
        open_fds: None,
        max_fds: None,
    })
}

/// The soft limit on the `/proc/self/limits` line that starts with `what`; `None` if the line
/// is missing or the limit is `unlimited`.
fn soft_limit(limits: &str, what: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix(what))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (larder (x) y) S 1 4242 4242 0 -1 4194560 5000 0 0 0 \
        250 75 0 0 20 0 9 0 123456 987654321 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 \
        0 17 1 0 0 0 0 0\n";
    const STATUS: &str = "Name:\tlarder\nVmPeak:\t  999999 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n";
    const BOOT: &str = "cpu  1 2 3 4\nintr 5\nbtime 1700000000\nprocesses 10\n";
    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units\n\
        Max cpu time              unlimited            unlimited            seconds\n\
        Max open files            1048576              1048576              files\n";

    #[test]
    fn cpu_times_are_seconds_by_kind() {
        let cpu = parse_cpu(STAT).unwrap();
        assert_eq!((cpu.user, cpu.system), (2.5, 0.75));
        assert_eq!((cpu.children_user, cpu.children_system), (0.0, 0.0));
        assert!(parse_cpu("garbage").is_none());
    }

    #[test]
    fn proc_files_parse_into_prometheus_units() {
        let sample = parse(STAT, STATUS, BOOT).expect("parses");
        assert_eq!(sample.cpu_seconds, 3.25);
        assert_eq!(sample.resident_bytes, 12345 * 1024);
        assert_eq!(sample.virtual_bytes, 987_654_321);
        assert_eq!(sample.threads, 9);
        assert_eq!(sample.start_time_seconds, 1_700_000_000.0 + 1234.56);
        assert_eq!(soft_limit(LIMITS, "Max open files"), Some(1_048_576));
        assert_eq!(soft_limit(LIMITS, "Max cpu time"), None);
        assert_eq!(soft_limit(LIMITS, "Max locked memory"), None);
    }

    #[test]
    fn truncated_proc_files_give_nothing() {
        assert_eq!(parse("4242 (larder) S 1 2 3", STATUS, BOOT), None);
        assert_eq!(parse(STAT, STATUS, "cpu 1 2 3\n"), None);
        assert_eq!(parse("no parenthesis", STATUS, BOOT), None);
    }

    #[test]
    fn every_family_has_help_type_and_one_sample() {
        let sample = Sample {
            open_fds: Some(12),
            max_fds: None,
            ..parse(STAT, STATUS, BOOT).expect("parses")
        };
        let mut out = String::new();
        sample.render(&mut out);
        assert!(
            out.contains(
                "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 3.25\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("process_resident_memory_bytes 12641280\n"),
            "{out}"
        );
        assert!(
            out.contains("process_start_time_seconds 1700001234.56\n"),
            "{out}"
        );
        assert!(out.contains("process_open_fds 12\n"), "{out}");
        assert!(!out.contains("process_max_fds"), "{out}");
        assert_eq!(out.matches("# HELP ").count(), 6, "{out}");
        assert_eq!(out.matches("# TYPE ").count(), 6, "{out}");
    }

    #[test]
    fn build_info_escapes_its_labels() {
        let mut out = String::new();
        render_build_info(&mut out, "0.1.0", "abc\"d\\e");
        assert!(
            out.ends_with("larder_build_info{version=\"0.1.0\",commit=\"abc\\\"d\\\\e\"} 1\n"),
            "{out}"
        );
        assert!(out.starts_with("# HELP larder_build_info "), "{out}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_as_alive() {
        let sample = Sample::read().expect("/proc/self is readable on Linux");
        assert!(sample.resident_bytes > 0, "{sample:?}");
        assert!(sample.virtual_bytes >= sample.resident_bytes, "{sample:?}");
        assert!(sample.threads >= 1, "{sample:?}");
        assert!(sample.open_fds.is_some_and(|n| n >= 3), "{sample:?}");
        assert!(sample.max_fds.is_some_and(|n| n >= 3), "{sample:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        // Started before now, and (a test run being short) less than a day ago.
        assert!(
            sample.start_time_seconds <= now + 1.0,
            "{sample:?} now {now}"
        );
        assert!(
            sample.start_time_seconds > now - 86_400.0,
            "{sample:?} now {now}"
        );
        let mut out = String::new();
        render(&mut out);
        assert!(out.contains("\nprocess_cpu_seconds_total "), "{out}");
        assert!(
            out.contains(&format!("larder_build_info{{version=\"{VERSION}\",")),
            "{out}"
        );
    }
}
