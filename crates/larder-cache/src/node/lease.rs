//! Fill leases: how a client that loads a missing key from somewhere else (the gateway, from
//! its database) puts it in the cache without ever putting back a value that a write, delete or
//! invalidation has made stale meanwhile.
//!
//! A `Get` that misses may ask for a lease; the node hands out a token for the key unless a
//! live lease for it is out already (another caller is loading it). Any client change of the
//! key retires its lease. A `Set` carrying the token is stored only if the lease is still
//! there, and redeeming it and storing happen under one lock, so a change either comes first
//! (and the fill is refused) or after (and replaces the fill). This is the lease of Facebook's
//! memcache (NSDI 2013) without the waiting: a second caller simply gets no token and serves
//! what it loaded without filling.

use std::collections::HashMap;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use parking_lot::{Mutex, MutexGuard};

/// Leases out at once; past it, misses get no lease (their callers serve without filling).
const MAX_LEASES: usize = 65_536;
/// How long a lease stays good: a caller that has not filled by then has failed or given up,
/// and the next miss may get a new lease.
pub(crate) const LEASE_MS: u64 = 10_000;

/// Key → (token, when it was given, Unix ms).
type Map = HashMap<Box<[u8]>, (u64, u64)>;

/// The node's leases.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    /// How many leases are out, read without the lock so writes pay one load when none is.
    out: AtomicUsize,
    next: AtomicU64,
    map: Mutex<Map>,
}

/// The lock on the leases while a fill is stored.
pub(crate) struct Redeemed<'a> {
    _lock: MutexGuard<'a, Map>,
}

impl Leases {
    /// A lease on `key` at `now`, or 0 when a live one is out already or too many are.
    pub(crate) fn grant(&self, key: &[u8], now: u64) -> u64 {
        let mut map = self.map.lock();
        if let Some(&(_, given)) = map.get(key)
            && now.saturating_sub(given) < LEASE_MS
        {
            return 0;
        }
        if map.len() >= MAX_LEASES {
            map.retain(|_, &mut (_, given)| now.saturating_sub(given) < LEASE_MS);
            if map.len() >= MAX_LEASES {
                return 0;
            }
        }
        let token = self.next.fetch_add(1, SeqCst) + 1;
        map.insert(key.into(), (token, now));
        self.out.store(map.len(), SeqCst);
        token
    }

    /// Retires the lease on `key`, if any: a client changed the key.
    pub(crate) fn retire(&self, key: &[u8]) {
        if self.out.load(SeqCst) == 0 {
            return;
        }
        let mut map = self.map.lock();
        map.remove(key);
        self.out.store(map.len(), SeqCst);
    }

    /// Retires every lease (the cache was emptied).
    pub(crate) fn retire_all(&self) {
        let mut map = self.map.lock();
        map.clear();
        self.out.store(0, SeqCst);
    }

    /// Takes the lease `token` on `key` if it is still out and live at `now`; the returned
    /// lock must be held while the fill is stored.
    pub(crate) fn redeem(&self, key: &[u8], token: u64, now: u64) -> Option<Redeemed<'_>> {
        let mut map = self.map.lock();
        match map.get(key) {
            Some(&(t, given)) if t == token && now.saturating_sub(given) < LEASE_MS => {
                map.remove(key);
                self.out.store(map.len(), SeqCst);
                Some(Redeemed { _lock: map })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_live_lease_per_key_and_a_change_retires_it() {
        let leases = Leases::default();
        let token = leases.grant(b"k", 0);
        assert_ne!(token, 0);
        assert_eq!(leases.grant(b"k", 1), 0, "a second caller gets none");
        assert_ne!(leases.grant(b"other", 1), 0);
        leases.retire(b"k");
        assert!(
            leases.redeem(b"k", token, 2).is_none(),
            "retired by a change"
        );
        let again = leases.grant(b"k", 3);
        assert!(leases.redeem(b"k", token, 4).is_none(), "an old token");
        assert!(leases.redeem(b"k", again, 4).is_some());
        assert!(leases.redeem(b"k", again, 5).is_none(), "used once");
    }

    #[test]
    fn a_lease_not_used_in_time_lapses() {
        let leases = Leases::default();
        let token = leases.grant(b"k", 0);
        assert!(leases.redeem(b"k", token, LEASE_MS).is_none());
        assert_ne!(
            leases.grant(b"k", LEASE_MS),
            0,
            "the next miss gets a new one"
        );
        leases.retire_all();
        assert_eq!(leases.out.load(SeqCst), 0);
    }
}
