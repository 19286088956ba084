//! The near-cache: a bounded in-process copy of documents read from the cache nodes, so that a
//! hit in `larder up` costs what a hit in the in-process mode costs. The nodes keep it honest:
//! a read is tracked on the key's node, and the node pushes an invalidation when the key
//! changes there (`Watch`, see `larder_client::Client::track`). A copy is served only while
//! the client's lease on every node is live, so a gateway that stops hearing from a node stops
//! serving what it may no longer be told about.
//!
//! A fill races the invalidations of its key: the node may change the key after answering the
//! tracked read but before the answer arrives here, and the invalidation (on another stream)
//! may arrive first. So a fill registers before it reads ([`NearCache::begin`]), every
//! invalidation and flush retires the registrations of its keys, and a fill only stores when
//! its registration is still the current one ([`NearCache::finish`]), checked and stored under
//! the registration's lock, which an invalidation takes too.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use larder_proto::metrics::Histogram;
use larder_store::{Clock, ConfigError, EntryRef, Expiry, SetMode, SetOptions, Store};
use parking_lot::Mutex;

/// Locks over the fills in progress; a fill and an invalidation of one key meet on one.
const SHARDS: usize = 16;

/// Fills in progress per shard; past it, a new fill is not kept (the read is still served).
const MAX_PENDING_PER_SHARD: usize = 4096;

/// The registration of one fill in progress.
#[derive(Debug)]
#[must_use = "a fill is finished or cancelled"]
pub(crate) struct Fill {
    key: Bytes,
    token: u64,
    epoch: u64,
}

/// Counters of the near-cache, rendered at `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct NearStats {
    hits: AtomicU64,
    misses: AtomicU64,
    fills: AtomicU64,
    invalidations: AtomicU64,
    flushes: AtomicU64,
    /// From the node emitting an invalidation to its key leaving the near-cache.
    lag: Histogram,
}

/// The near-cache.
#[derive(Debug)]
pub(crate) struct NearCache {
    store: Store,
    clock: Arc<dyn Clock>,
    pending: [Mutex<HashMap<Bytes, u64>>; SHARDS],
    next_token: AtomicU64,
    /// Bumped by every flush: a fill registered before it cannot store after it.
    epoch: AtomicU64,
    stats: NearStats,
}

impl NearCache {
    /// A near-cache of at most `bytes`.
    pub(crate) fn new(bytes: u64, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let store = Store::new(larder_store::StoreConfig {
            capacity: larder_store::Capacity::Bytes(bytes),
            ..larder_store::StoreConfig::default()
        })?
        .with_clock(clock.clone());
        Ok(Self {
            store,
            clock,
            pending: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            next_token: AtomicU64::new(1),
            epoch: AtomicU64::new(0),
            stats: NearStats::default(),
        })
    }

    /// Reads the copy under `key`, if there is one, through `read`.
    pub(crate) fn get_with<R>(&self, key: &str, read: impl FnOnce(EntryRef<'_>) -> R) -> Option<R> {
        let found = self.store.get_with(key.as_bytes(), read);
        let counter = if found.is_some() {
            &self.stats.hits
        } else {
            &self.stats.misses
        };
        counter.fetch_add(1, Relaxed);
        found
    }

    /// The near-cache's clock, in Unix milliseconds.
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Registers a fill of `key`, before the read whose answer it will store.
    pub(crate) fn begin(&self, key: &str) -> Fill {
        let key = Bytes::copy_from_slice(key.as_bytes());
        let token = self.next_token.fetch_add(1, Relaxed);
        // Read before registering: a flush after this point either clears the registration
        // or is seen by `finish` as a newer epoch.
        let epoch = self.epoch.load(SeqCst);
        let mut pending = self.shard(&key).lock();
        if pending.len() < MAX_PENDING_PER_SHARD || pending.contains_key(&key) {
            pending.insert(key.clone(), token);
        }
        Fill { key, token, epoch }
    }

    /// Stores what the fill read — `value` at `version`, expiring at `expires_at` (Unix ms) —
    /// unless an invalidation or a flush came since [`NearCache::begin`]. Answers whether it
    /// stored.
    pub(crate) fn finish(
        &self,
        fill: Fill,
        value: &[u8],
        version: u64,
        expires_at: Option<u64>,
    ) -> bool {
        let mut pending = self.shard(&fill.key).lock();
        let current =
            pending.get(&fill.key) == Some(&fill.token) && self.epoch.load(SeqCst) == fill.epoch;
        if !current {
            return false;
        }
        pending.remove(&fill.key);
        let opts = SetOptions {
            mode: SetMode::IfNewerVersion(version.max(1)),
            expiry: expires_at.map_or(Expiry::Never, Expiry::At),
            ..SetOptions::default()
        };
        // Stored under the lock, so an invalidation of the key comes wholly before (and the
        // check above fails) or wholly after (and drops what was stored).
        let stored = self.store.set(&fill.key, value, opts).is_ok();
        drop(pending);
        if stored {
            self.stats.fills.fetch_add(1, Relaxed);
        }
        stored
    }

    /// Gives up a fill (the read failed, missed, or was not tracked).
    pub(crate) fn cancel(&self, fill: Fill) {
        let mut pending = self.shard(&fill.key).lock();
        if pending.get(&fill.key) == Some(&fill.token) {
            pending.remove(&fill.key);
        }
    }

    /// Drops the copies of `keys` and retires their fills in progress; `emitted_at_us` is when
    /// a node sent the invalidation (0: it did not come from a node).
    pub(crate) fn invalidate<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k [u8]>,
        emitted_at_us: u64,
    ) {
        let mut n = 0;
        for key in keys {
            let mut pending = self.shard(key).lock();
            pending.remove(key);
            self.store.delete(key);
            drop(pending);
            n += 1;
        }
        self.stats.invalidations.fetch_add(n, Relaxed);
        if emitted_at_us > 0 {
            let lag_us = self.clock.now_us().saturating_sub(emitted_at_us);
            self.stats.lag.observe(lag_us.saturating_mul(1000), n);
        }
    }

    /// Drops every copy and retires every fill in progress.
    pub(crate) fn flush(&self) {
        self.epoch.fetch_add(1, SeqCst);
        // A fill that checked the old epoch holds its shard's lock until it has stored, so
        // taking every lock in turn orders each such store before the clear below.
        for shard in &self.pending {
            shard.lock().clear();
        }
        self.store.clear();
        self.stats.flushes.fetch_add(1, Relaxed);
    }

    fn shard(&self, key: &[u8]) -> &Mutex<HashMap<Bytes, u64>> {
        // FNV-1a: keys are short and spread well enough over 16 locks.
        let hash = key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        &self.pending[(hash % SHARDS as u64) as usize]
    }

    /// Prometheus text of the near-cache's counters.
    pub(crate) fn render(&self, out: &mut String) {
        let s = &self.stats;
        let counters = [
            (
                "larder_api_near_cache_hits_total",
                "Reads answered from the near-cache.",
                &s.hits,
            ),
            (
                "larder_api_near_cache_misses_total",
                "Reads the near-cache did not hold (or could not serve) and sent to a node.",
                &s.misses,
            ),
            (
                "larder_api_near_cache_fills_total",
                "Copies stored after a tracked read from a node.",
                &s.fills,
            ),
            (
                "larder_api_near_cache_invalidations_total",
                "Keys dropped because a node said they changed, were evicted or expired.",
                &s.invalidations,
            ),
            (
                "larder_api_near_cache_flushes_total",
                "Times every copy was dropped (a node stream started or broke).",
                &s.flushes,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let name = "larder_api_near_cache_invalidation_lag_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} From a node sending an invalidation to its key leaving the \
             near-cache.\n# TYPE {name} histogram"
        );
        s.lag.render(out, name, "");
    }
}

impl larder_client::Invalidations for NearCache {
    fn invalidate(&self, keys: &[(Bytes, u64)], emitted_at_unix_us: u64) {
        NearCache::invalidate(self, keys.iter().map(|(k, _)| &k[..]), emitted_at_unix_us);
    }

    fn flush(&self) {
        NearCache::flush(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use larder_store::ManualClock;

    fn near() -> NearCache {
        NearCache::new(1 << 20, Arc::new(ManualClock::new(1_000_000))).unwrap()
    }

    fn read(near: &NearCache, key: &str) -> Option<(Vec<u8>, u64)> {
        near.get_with(key, |e| (e.value.to_vec(), e.version))
    }

    #[test]
    fn a_fill_stores_what_it_read() {
        let near = near();
        let fill = near.begin("doc/a/1");
        assert!(near.finish(fill, b"v1", 1, None));
        assert_eq!(read(&near, "doc/a/1"), Some((b"v1".to_vec(), 1)));
    }

    #[test]
    fn an_invalidation_during_a_fill_keeps_the_old_read_out() {
        let near = near();
        let fill = near.begin("doc/a/1");
        // The node changed the key after answering the read; its push arrived first.
        near.invalidate([&b"doc/a/1"[..]], 0);
        assert!(!near.finish(fill, b"v1", 1, None));
        assert_eq!(read(&near, "doc/a/1"), None);
    }

    #[test]
    fn an_invalidation_after_a_fill_drops_the_copy() {
        let near = near();
        let fill = near.begin("doc/a/1");
        assert!(near.finish(fill, b"v1", 1, None));
        near.invalidate([&b"doc/a/1"[..]], 0);
        assert_eq!(read(&near, "doc/a/1"), None);
    }

    #[test]
    fn a_flush_during_a_fill_keeps_the_read_out_and_drops_the_rest() {
        let near = near();
        let done = near.begin("doc/a/2");
        assert!(near.finish(done, b"old", 3, None));
        let fill = near.begin("doc/a/1");
        near.flush();
        assert!(!near.finish(fill, b"v1", 1, None));
        assert_eq!(read(&near, "doc/a/1"), None);
        assert_eq!(read(&near, "doc/a/2"), None);
    }

    #[test]
    fn of_two_fills_of_one_key_only_the_later_stores() {
        let near = near();
        let first = near.begin("doc/a/1");
        let second = near.begin("doc/a/1");
        assert!(!near.finish(first, b"v1", 1, None));
        assert!(near.finish(second, b"v2", 2, None));
        assert_eq!(read(&near, "doc/a/1"), Some((b"v2".to_vec(), 2)));
    }

    #[test]
    fn a_cancelled_fill_leaves_no_registration_behind() {
        let near = near();
        let fill = near.begin("doc/a/1");
        near.cancel(fill);
        assert!(near.pending.iter().all(|s| s.lock().is_empty()));
    }

    #[test]
    fn an_expired_copy_is_not_read() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let near = NearCache::new(1 << 20, clock.clone()).unwrap();
        let fill = near.begin("doc/a/1");
        assert!(near.finish(fill, b"v1", 1, Some(1_000_500)));
        assert!(read(&near, "doc/a/1").is_some());
        clock.advance(std::time::Duration::from_millis(600));
        assert_eq!(read(&near, "doc/a/1"), None);
    }

    #[test]
    fn invalidations_are_counted_and_timed() {
        let near = near();
        near.invalidate([&b"a"[..], &b"b"[..]], 999_000);
        let mut out = String::new();
        near.render(&mut out);
        assert!(
            out.contains("larder_api_near_cache_invalidations_total 2"),
            "{out}"
        );
        assert!(
            out.contains("larder_api_near_cache_invalidation_lag_seconds_count 2"),
            "{out}"
        );
    }

    /// Fills and invalidations of the same keys from several threads: once an invalidation
    /// of a key has returned, no copy of a version read before it is ever found.
    #[test]
    fn concurrent_fills_never_outlive_a_later_invalidation() {
        let near = Arc::new(near());
        let versions: Arc<[AtomicU64; 4]> = Arc::new(std::array::from_fn(|_| AtomicU64::new(1)));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let fillers: Vec<_> = (0..2)
            .map(|t| {
                let (near, versions, stop) = (near.clone(), versions.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut i = t;
                    while !stop.load(Relaxed) {
                        let k = i % 4;
                        let key = format!("k{k}");
                        let fill = near.begin(&key);
                        // The "node" answers with the version current when it read.
                        let v = versions[k].load(SeqCst);
                        let _ = near.finish(fill, &v.to_le_bytes(), v, None);
                        i += 1;
                    }
                })
            })
            .collect();
        for round in 0..20_000_u64 {
            let k = (round % 4) as usize;
            let key = format!("k{k}");
            // A write: the version moves on, then the node pushes the invalidation.
            let new = versions[k].fetch_add(1, SeqCst) + 1;
            near.invalidate([key.as_bytes()], 0);
            if let Some((_, seen)) = read(&near, &key) {
                assert!(seen >= new, "read version {seen} after {new} was written");
            }
        }
        stop.store(true, Relaxed);
        for f in fillers {
            f.join().unwrap();
        }
    }
}
