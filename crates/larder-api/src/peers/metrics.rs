//! The peers' metrics, declared here next to the code that updates them.

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use larder_proto::metrics::Histogram;

use super::table::By;

/// Counters of the listener and the strong writes.
#[derive(Debug, Default)]
pub(super) struct Stats {
    received: AtomicU64,
    lag: Histogram,
    by_acks: AtomicU64,
    by_leases: AtomicU64,
}

impl Stats {
    /// A peer's change dropped now, emitted at `emitted_us` on its clock.
    pub(super) fn received(&self, emitted_us: u64) {
        self.received.fetch_add(1, Relaxed);
        let now_us = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        self.lag
            .observe(now_us.saturating_sub(emitted_us).saturating_mul(1000), 1);
    }

    /// A strong write answered.
    pub(super) fn settled(&self, by: By) {
        match by {
            By::Acks => &self.by_acks,
            By::Leases => &self.by_leases,
        }
        .fetch_add(1, Relaxed);
    }

    /// Prometheus text: this gateway's id, the peers live, whether the local cache serves.
    pub(super) fn render(&self, out: &mut String, me: &str, live: usize, serving: bool) {
        let name = "larder_api_peer_info";
        let _ = writeln!(
            out,
            "# HELP {name} This gateway's id among the gateways over one PostgreSQL database \
             (its listener's application_name is \"larder listener <id>\").\n\
             # TYPE {name} gauge\n{name}{{id=\"{me}\"}} 1"
        );
        let name = "larder_api_peers_live";
        let _ = writeln!(
            out,
            "# HELP {name} Other gateways heard from within a lease.\n# TYPE {name} gauge\n\
             {name} {live}"
        );
        let name = "larder_api_local_cache_serving";
        let _ = writeln!(
            out,
            "# HELP {name} 1 while the in-process cache may serve its copies (its lease is \
             live), 0 while reads go to the database.\n# TYPE {name} gauge\n{name} {}",
            u8::from(serving)
        );
        let name = "larder_api_invalidations_received_total";
        let _ = writeln!(
            out,
            "# HELP {name} Other gateways' writes this gateway dropped its copy of.\n\
             # TYPE {name} counter\n{name} {}",
            self.received.load(Relaxed)
        );
        let name = "larder_api_invalidation_lag_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} From a write's announcement (the writer's clock) to its copy \
             dropped here.\n# TYPE {name} histogram"
        );
        self.lag.render(out, name, "");
        let name = "larder_api_strong_writes_settled_total";
        let _ = writeln!(
            out,
            "# HELP {name} Strong writes answered once every live peer acknowledged them \
             (acks) or after a peer's lease lapsed (leases).\n# TYPE {name} counter\n\
             {name}{{by=\"acks\"}} {}\n{name}{{by=\"leases\"}} {}",
            self.by_acks.load(Relaxed),
            self.by_leases.load(Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series() {
        let stats = Stats::default();
        stats.received(0);
        stats.settled(By::Acks);
        stats.settled(By::Leases);
        stats.settled(By::Leases);
        let mut out = String::new();
        stats.render(&mut out, "g1", 2, true);
        for line in [
            "larder_api_peer_info{id=\"g1\"} 1",
            "larder_api_peers_live 2",
            "larder_api_local_cache_serving 1",
            "larder_api_invalidations_received_total 1",
            "larder_api_invalidation_lag_seconds_count 1",
            "larder_api_strong_writes_settled_total{by=\"leases\"} 2",
        ] {
            assert!(out.lines().any(|l| l == line), "{line}\n{out}");
        }
    }
}
