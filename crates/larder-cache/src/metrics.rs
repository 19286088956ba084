//! The node's metrics, declared once here and rendered as Prometheus text at `/metrics`.
//!
//! Request counters are plain atomics indexed by protocol and command. RESP connections count
//! into a [`LocalCounts`] while they work through a batch of pipelined commands and add it to
//! the shared atomics once per batch, so a busy connection does not write a shared line for
//! every command. Latency histograms are kept per RESP command and per gRPC method, in slices
//! fixed at start and indexed like the counters: an observation is three relaxed atomic adds,
//! with no lock or map on the way.

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use larder_store::StoreStats;
use parking_lot::Mutex;

/// Which wire a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    Resp = 0,
    Grpc = 1,
}

impl Wire {
    fn label(self) -> &'static str {
        match self {
            Wire::Resp => "resp",
            Wire::Grpc => "grpc",
        }
    }
}

pub(crate) use larder_proto::metrics::Histogram;

/// Every metric of one node.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// `[ok, error]` per RESP command (indexed like the command table, unknown last).
    resp: Vec<[AtomicU64; 2]>,
    /// Nanoseconds spent executing each RESP command (the batch's execution time shared out
    /// among its commands).
    resp_ns: Vec<AtomicU64>,
    /// What `CONFIG RESETSTAT` zeroed: `INFO` shows the counters minus these, while
    /// `/metrics` keeps its counters monotonic, as Prometheus wants them.
    baseline: Mutex<Baseline>,
    resp_names: Vec<&'static str>,
    /// `[ok, error]` per gRPC method.
    grpc: Vec<[AtomicU64; 2]>,
    grpc_names: Vec<&'static str>,
    /// Latency per RESP command (indexed like `resp`): every command of a batch waited the
    /// batch's time, from the read to the write of its replies.
    resp_latency: Box<[Histogram]>,
    /// Latency per gRPC method (indexed like `grpc`).
    grpc_latency: Box<[Histogram]>,
    /// Open connections; only RESP's are tracked (see `incoming.rs`).
    pub(crate) connections: [AtomicU64; 2],
    pub(crate) connections_total: [AtomicU64; 2],
    pub(crate) rejected_connections: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
}

impl Metrics {
    /// Metrics for these RESP command names and gRPC method names.
    pub(crate) fn new(resp_names: Vec<&'static str>, grpc_names: Vec<&'static str>) -> Self {
        let pairs = |n: usize| (0..n).map(|_| Default::default()).collect();
        Self {
            resp: pairs(resp_names.len()),
            resp_ns: (0..resp_names.len()).map(|_| AtomicU64::new(0)).collect(),
            baseline: Mutex::default(),
            resp_latency: (0..resp_names.len())
                .map(|_| Histogram::default())
                .collect(),
            resp_names,
            grpc: pairs(grpc_names.len()),
            grpc_latency: (0..grpc_names.len())
                .map(|_| Histogram::default())
                .collect(),
            grpc_names,
            connections: Default::default(),
            connections_total: Default::default(),
            rejected_connections: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
        }
    }

    /// Calls of gRPC method `method` so far, answered with success or not.
    #[cfg(test)]
    pub(crate) fn grpc_calls(&self, method: usize) -> u64 {
        self.grpc
            .get(method)
            .map_or(0, |[ok, failed]| ok.load(Relaxed) + failed.load(Relaxed))
    }

    /// Counts one gRPC call of method `method` and its latency.
    pub(crate) fn grpc_call(&self, method: usize, ok: bool, ns: u64) {
        if let Some(counts) = self.grpc.get(method) {
            counts[usize::from(!ok)].fetch_add(1, Relaxed);
        }
        if let Some(latency) = self.grpc_latency.get(method) {
            latency.observe(ns, 1);
        }
    }

    /// Adds a RESP connection's batch counts; every command in the batch waited `ns`, and
    /// the batch's execution time is shared out among its commands.
    pub(crate) fn flush(&self, local: &mut LocalCounts, ns: u64) {
        let total: u64 = local.counts.iter().map(|&(_, ok, err)| ok + err).sum();
        for &(cmd, ok, err) in &local.counts {
            if let Some(latency) = self.resp_latency.get(cmd) {
                latency.observe(ns, ok + err);
            }
            if let Some(counts) = self.resp.get(cmd) {
                if ok > 0 {
                    counts[0].fetch_add(ok, Relaxed);
                }
                if err > 0 {
                    counts[1].fetch_add(err, Relaxed);
                }
            }
            if let Some(spent) = self.resp_ns.get(cmd)
                && local.exec_ns > 0
            {
                let share = u128::from(local.exec_ns) * u128::from(ok + err) / u128::from(total);
                spent.fetch_add(u64::try_from(share).unwrap_or(u64::MAX), Relaxed);
            }
        }
        local.counts.clear();
        local.exec_ns = 0;
    }

    /// Requests of one RESP command so far: `(ok, error)`.
    #[cfg(test)]
    pub(crate) fn resp_count(&self, cmd: usize) -> (u64, u64) {
        self.resp
            .get(cmd)
            .map_or((0, 0), |c| (c[0].load(Relaxed), c[1].load(Relaxed)))
    }

    /// What `INFO` shows: the counters since the last `CONFIG RESETSTAT` (or the start).
    pub(crate) fn since_reset(&self, store: &StoreStats) -> Counters {
        let now = self.counters(store);
        let base = &self.baseline.lock().0;
        Counters {
            commands: now
                .commands
                .iter()
                .zip(base.commands.iter().chain(std::iter::repeat(&[0; 3])))
                .map(|(n, b)| [0, 1, 2].map(|i| n[i].saturating_sub(b[i])))
                .collect(),
            connections: now.connections.saturating_sub(base.connections),
            rejected: now.rejected.saturating_sub(base.rejected),
            hits: now.hits.saturating_sub(base.hits),
            misses: now.misses.saturating_sub(base.misses),
            expired: now.expired.saturating_sub(base.expired),
            evicted: now.evicted.saturating_sub(base.evicted),
        }
    }

    /// `CONFIG RESETSTAT`: `INFO`'s counters start again from zero.
    pub(crate) fn reset(&self, store: &StoreStats) {
        self.baseline.lock().0 = self.counters(store);
    }

    fn counters(&self, store: &StoreStats) -> Counters {
        Counters {
            commands: self
                .resp
                .iter()
                .zip(&self.resp_ns)
                .map(|(c, ns)| [c[0].load(Relaxed), c[1].load(Relaxed), ns.load(Relaxed)])
                .collect(),
            connections: self.connections_total[Wire::Resp as usize].load(Relaxed),
            rejected: self.rejected_connections.load(Relaxed),
            hits: store.hits,
            misses: store.misses,
            expired: store.expirations,
            evicted: store.evictions,
        }
    }

    /// Prometheus text for everything, with the store's figures.
    pub(crate) fn render(&self, store: &StoreStats) -> String {
        let mut out = String::with_capacity(16 << 10);
        self.render_requests(&mut out);
        self.render_latency(&mut out);
        // Each family's samples must follow its own header, so the two are written apart.
        let name = "larder_cache_connections";
        header(&mut out, name, "gauge", "Open RESP connections.");
        let open = self.connections[Wire::Resp as usize].load(Relaxed);
        let _ = writeln!(out, "{name}{{protocol=\"resp\"}} {open}");
        let name = "larder_cache_connections_total";
        header_total(&mut out, name, "Client connections accepted.");
        for wire in [Wire::Resp, Wire::Grpc] {
            let total = self.connections_total[wire as usize].load(Relaxed);
            let _ = writeln!(out, "{name}{{protocol=\"{}\"}} {total}", wire.label());
        }
        counter(
            &mut out,
            "larder_cache_rejected_connections_total",
            "Connections refused at max_clients.",
            self.rejected_connections.load(Relaxed),
        );
        counter(
            &mut out,
            "larder_cache_protocol_errors_total",
            "Connections closed for malformed or oversized input.",
            self.protocol_errors.load(Relaxed),
        );
        render_store(&mut out, store);
        larder_proto::metrics::process::render(&mut out);
        out
    }

    /// `larder_cache_request_duration_seconds{protocol,command}`, for the commands and methods
    /// called at least once.
    fn render_latency(&self, out: &mut String) {
        let name = "larder_cache_request_duration_seconds";
        header(
            out,
            name,
            "histogram",
            "Time from a request's arrival to its reply being written, by protocol and command.",
        );
        let tables = [
            (Wire::Resp, &self.resp_latency, &self.resp_names),
            (Wire::Grpc, &self.grpc_latency, &self.grpc_names),
        ];
        let mut labels = String::with_capacity(64);
        for (wire, histograms, names) in tables {
            for (histogram, cmd) in histograms.iter().zip(names.iter()) {
                if histogram.count() == 0 {
                    continue;
                }
                labels.clear();
                let _ = write!(labels, "protocol=\"{}\",command=\"{cmd}\"", wire.label());
                histogram.render(out, name, &labels);
            }
        }
    }

    fn render_requests(&self, out: &mut String) {
        let name = "larder_cache_requests_total";
        header_total(out, name, "Requests by protocol, command and result.");
        let tables = [
            ("resp", &self.resp, &self.resp_names),
            ("grpc", &self.grpc, &self.grpc_names),
        ];
        for (wire, counts, names) in tables {
            for (counts, cmd) in counts.iter().zip(names.iter()) {
                for (result, count) in ["ok", "error"].iter().zip(counts) {
                    let n = count.load(Relaxed);
                    if n > 0 {
                        let _ = writeln!(
                            out,
                            "{name}{{protocol=\"{wire}\",command=\"{cmd}\",result=\"{result}\"}} {n}"
                        );
                    }
                }
            }
        }
    }
}

fn render_store(out: &mut String, s: &StoreStats) {
    counter(
        out,
        "larder_cache_hits_total",
        "Reads that found a live entry.",
        s.hits,
    );
    counter(
        out,
        "larder_cache_misses_total",
        "Reads that found nothing.",
        s.misses,
    );
    counter(
        out,
        "larder_cache_sets_total",
        "Writes that stored a value.",
        s.sets,
    );
    counter(
        out,
        "larder_cache_evictions_total",
        "Entries evicted to make room.",
        s.evictions,
    );
    counter(
        out,
        "larder_cache_expirations_total",
        "Entries removed at expiry.",
        s.expirations,
    );
    gauge(
        out,
        "larder_cache_memory_bytes",
        "Accounted bytes in use.",
        s.used,
    );
    gauge(
        out,
        "larder_cache_max_memory_bytes",
        "The memory bound.",
        s.capacity,
    );
    gauge(out, "larder_cache_items", "Live entries.", s.items);
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn header_total(out: &mut String, name: &str, help: &str) {
    header(out, name, "counter", help);
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

/// The counters `INFO` shows, at one moment or since the last reset.
#[derive(Debug, Default, Clone)]
pub(crate) struct Counters {
    /// Per RESP command (table order, unknown last): `[ok, error, nanoseconds]`.
    pub(crate) commands: Vec<[u64; 3]>,
    pub(crate) connections: u64,
    pub(crate) rejected: u64,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) expired: u64,
    pub(crate) evicted: u64,
}

#[derive(Debug, Default)]
struct Baseline(Counters);

/// A connection's counts for the batch it is working through: `(command, ok, error)`, and
/// how long executing the batch took.
#[derive(Debug, Default)]
pub(crate) struct LocalCounts {
    counts: Vec<(usize, u64, u64)>,
    pub(crate) exec_ns: u64,
}

impl LocalCounts {
    /// How many commands are counted, and the first one's index.
    pub(crate) fn summary(&self) -> (u64, Option<usize>) {
        let total = self.counts.iter().map(|&(_, ok, err)| ok + err).sum();
        (total, self.counts.first().map(|&(cmd, _, _)| cmd))
    }

    /// Counts one command.
    pub(crate) fn add(&mut self, cmd: usize, ok: bool) {
        let slot = match self.counts.iter_mut().find(|(c, _, _)| *c == cmd) {
            Some(slot) => slot,
            None => {
                self.counts.push((cmd, 0, 0));
                let last = self.counts.len() - 1;
                &mut self.counts[last]
            }
        };
        if ok {
            slot.1 += 1;
        } else {
            slot.2 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_flush_into_labelled_counters() {
        let m = Metrics::new(vec!["get", "set"], vec!["Get"]);
        let mut local = LocalCounts::default();
        local.add(0, true);
        local.add(0, true);
        local.add(1, false);
        m.flush(&mut local, 1_000);
        m.grpc_call(0, true, 1_000);
        assert_eq!(m.resp_count(0), (2, 0));
        assert_eq!(m.resp_count(1), (0, 1));
        let text = m.render(&StoreStats::default());
        assert!(text.contains(
            "larder_cache_requests_total{protocol=\"resp\",command=\"get\",result=\"ok\"} 2"
        ));
        assert!(text.contains(
            "larder_cache_requests_total{protocol=\"grpc\",command=\"Get\",result=\"ok\"} 1"
        ));
        assert!(text.contains("larder_cache_memory_bytes 0"));
        for (labels, n) in [
            ("protocol=\"resp\",command=\"get\"", 2),
            ("protocol=\"resp\",command=\"set\"", 1),
            ("protocol=\"grpc\",command=\"Get\"", 1),
        ] {
            let line = format!("larder_cache_request_duration_seconds_count{{{labels}}} {n}\n");
            assert!(text.contains(&line), "{line} in {text}");
        }
    }

    #[test]
    fn latency_is_kept_per_command_and_per_method() {
        let m = Metrics::new(vec!["get", "set", "del"], vec!["Get", "Set"]);
        let mut local = LocalCounts::default();
        for _ in 0..3 {
            local.add(0, true);
        }
        m.flush(&mut local, 5_000); // three GETs in a 5 µs batch
        local.add(1, true);
        local.add(0, false);
        m.flush(&mut local, 2_000_000); // a SET and a failed GET in a 2 ms batch
        m.grpc_call(1, true, 40_000);
        let text = m.render(&StoreStats::default());
        let name = "larder_cache_request_duration_seconds";
        for line in [
            "_bucket{protocol=\"resp\",command=\"get\",le=\"0.00001\"} 3",
            "_bucket{protocol=\"resp\",command=\"get\",le=\"0.0025\"} 4",
            "_count{protocol=\"resp\",command=\"get\"} 4",
            "_bucket{protocol=\"resp\",command=\"set\",le=\"0.001\"} 0",
            "_bucket{protocol=\"resp\",command=\"set\",le=\"0.0025\"} 1",
            "_bucket{protocol=\"grpc\",command=\"Set\",le=\"0.00005\"} 1",
            "_sum{protocol=\"grpc\",command=\"Set\"} 0.00004",
        ] {
            assert!(
                text.contains(&format!("{name}{line}\n")),
                "{line} in {text}"
            );
        }
        // Commands and methods never called have no series; the family has one header.
        assert!(!text.contains("command=\"del\",le"), "{text}");
        assert!(
            !text.contains("protocol=\"grpc\",command=\"Get\",le"),
            "{text}"
        );
        assert_eq!(text.matches(&format!("# TYPE {name} histogram")).count(), 1);
    }

    #[test]
    fn execution_time_is_shared_out_and_reset_only_for_info() {
        let m = Metrics::new(vec!["get", "set"], vec![]);
        let mut local = LocalCounts::default();
        for _ in 0..3 {
            local.add(0, true);
        }
        local.add(1, true);
        local.exec_ns = 4_000;
        m.flush(&mut local, 9_000);
        let stats = StoreStats {
            hits: 5,
            ..StoreStats::default()
        };
        let before = m.since_reset(&stats);
        assert_eq!(before.commands[0], [3, 0, 3_000]);
        assert_eq!(before.commands[1], [1, 0, 1_000]);
        m.reset(&stats);
        let after = m.since_reset(&StoreStats {
            hits: 7,
            ..StoreStats::default()
        });
        assert_eq!(after.commands[0], [0, 0, 0]);
        assert_eq!(after.hits, 2);
        assert_eq!(
            m.resp_count(0),
            (3, 0),
            "the Prometheus counters keep counting"
        );
    }
}
