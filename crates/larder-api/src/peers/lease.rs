//! The lease under which a gateway without cache nodes serves its in-process copies: renewed
//! by [`super::Peers`] when its own pings come back, read by the cache on every read.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use tokio::time::Instant;

/// Whether the local cache may serve its copies: until the lease this gateway last renewed.
/// Shared by the listener, which renews and revokes it, and the cache, which reads it.
#[derive(Debug)]
pub(crate) struct Lease {
    base: Instant,
    /// Milliseconds after `base` the lease runs to; 0 for none.
    until_ms: AtomicU64,
}

impl Lease {
    pub(super) fn new() -> Self {
        Self {
            base: Instant::now(),
            until_ms: AtomicU64::new(0),
        }
    }

    /// Whether cached copies may be served now.
    pub(crate) fn live(&self) -> bool {
        let now = millis(self.base, Instant::now());
        now < self.until_ms.load(Relaxed)
    }

    pub(super) fn set(&self, until: Option<Instant>) {
        let ms = until.map_or(0, |u| millis(self.base, u).max(1));
        self.until_ms.store(ms, Relaxed);
    }
}

fn millis(base: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(base).as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_lease_is_live_until_it_runs_out_or_is_revoked() {
        let lease = Lease {
            base: Instant::now() - Duration::from_secs(10),
            until_ms: AtomicU64::new(0),
        };
        assert!(!lease.live(), "none at first");
        lease.set(Some(Instant::now() + Duration::from_secs(60)));
        assert!(lease.live());
        lease.set(Some(Instant::now() - Duration::from_millis(1)));
        assert!(!lease.live());
        lease.set(Some(Instant::now() + Duration::from_secs(60)));
        lease.set(None);
        assert!(!lease.live());
    }
}
