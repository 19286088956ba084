//! The sharded store: routes each key to its shard by hash and runs the operation under that
//! shard's lock.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use parking_lot::{Mutex, RwLock};

use crate::StoreError;
use crate::clock::{Clock, Now, SystemClock};
use crate::config::{Capacity, ConfigError, StoreConfig};
use crate::hook::{EvictionHook, NoHook, RemovalListener};
use crate::ops::{
    CasOutcome, EntryRef, Expiry, Item, SetMode, SetOptions, SetOutcome, StoreStats, TtlState,
};
use crate::policy::{Policy, Weigher};
use crate::shard::{Ctx, Shard, SharedRead};
use crate::stripes::ReadCounters;

/// Keeps each shard's lock on its own cache lines so neighbours do not false-share.
#[repr(align(128))]
#[derive(Debug)]
struct Padded(RwLock<Shard>);

/// A sharded, bounded, in-memory key-value store. Cheap to share behind an `Arc`; every method
/// takes `&self`.
#[derive(Debug)]
pub struct Store<H = NoHook> {
    shards: Box<[Padded]>,
    shard_bits: u32,
    /// Keyed at random per store, so nobody can aim collisions at it; trace replay fixes the
    /// key ([`Store::with_hash_seed`]) so that a replay gives the same result every time.
    hasher: foldhash::fast::SeedableRandomState,
    hook: H,
    clock: Arc<dyn Clock>,
    /// The policy and the bound, which `reconfigure` changes while the store is in use.
    settings: Mutex<(Policy, u64)>,
    reads: ReadCounters,
    /// Capacity lent by no shard (see `lend.rs`).
    spare: AtomicU64,
    /// The longest value accepted.
    max_value: u64,
    /// Told of evictions and expirations, if set.
    removals: Option<Arc<dyn RemovalListener>>,
}

impl Store<NoHook> {
    /// A store without an eviction hook.
    ///
    /// # Errors
    /// [`ConfigError`] for a shard count that is not a power of two or a capacity too small.
    pub fn new(config: StoreConfig) -> Result<Self, ConfigError> {
        Self::with_hook(config, NoHook)
    }
}

impl<H: EvictionHook> Store<H> {
    /// A store that consults `hook` before every eviction.
    ///
    /// # Errors
    /// As [`Store::new`].
    pub fn with_hook(config: StoreConfig, hook: H) -> Result<Self, ConfigError> {
        let count = config.effective_shards()?;
        let weigher = match config.capacity {
            Capacity::Bytes(_) => Weigher::Bytes,
            Capacity::Items(_) => Weigher::Items,
        };
        let per_shard = config.capacity.value() / count as u64;
        let shards = (0..count)
            .map(|_| Padded(RwLock::new(Shard::new(config.policy, weigher, per_shard))))
            .collect();
        Ok(Self {
            shards,
            shard_bits: count.trailing_zeros(),
            hasher: foldhash::fast::SeedableRandomState::random(),
            hook,
            clock: Arc::new(SystemClock),
            settings: Mutex::new((config.policy, per_shard * count as u64)),
            reads: ReadCounters::default(),
            spare: AtomicU64::new(0),
            max_value: DEFAULT_MAX_VALUE_BYTES,
            removals: None,
        })
    }

    /// Sets the longest value accepted (default [`DEFAULT_MAX_VALUE_BYTES`]). A value up to
    /// this long is stored even when it is larger than one shard's share of the bound, as
    /// long as the whole bound can hold it: the other shards lend capacity, evicting what they
    /// must.
    pub fn with_max_value_bytes(mut self, bytes: u64) -> Self {
        self.max_value = bytes;
        self
    }

    /// Keys the store's hash with `seed` instead of at random: for simulations that must give
    /// the same result every run (the policies sample, fingerprint and count keys by their
    /// hash, so a random key moves a hit ratio by chance). Not for a store that serves
    /// untrusted keys, which could then aim collisions at one bucket. Call it on a new store:
    /// the entries already in it would no longer be found.
    pub fn with_hash_seed(mut self, seed: u64) -> Self {
        self.hasher = foldhash::fast::SeedableRandomState::with_seed(
            seed,
            foldhash::SharedSeed::global_fixed(),
        );
        self
    }

    /// Tells `listener` of every entry the store evicts or expires on its own.
    pub fn with_removal_listener(mut self, listener: Arc<dyn RemovalListener>) -> Self {
        self.removals = Some(listener);
        self
    }

    /// The clock the store reads: the one source of wall-clock time for whatever serves it.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Replaces the clock (for tests and simulations).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The eviction policy in use.
    pub fn policy(&self) -> Policy {
        self.settings.lock().0
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    fn route(&self, key: &[u8]) -> (u64, &RwLock<Shard>) {
        let hash = self.hasher.hash_one(key);
        (hash, &self.shards[self.shard_of(hash)].0)
    }

    /// The shard a hash belongs to. The top bits pick it; the index inside a shard uses the low
    /// bits and the top seven as tags, which are the same within a shard, so take bits just
    /// below those.
    fn shard_of(&self, hash: u64) -> usize {
        if self.shard_bits == 0 {
            0
        } else {
            ((hash << 7) >> (64 - self.shard_bits)) as usize
        }
    }

    fn ctx(&self) -> Ctx<'_, H> {
        Ctx {
            hasher: &self.hasher,
            hook: &self.hook,
            spare: &self.spare,
            removals: self.removals.as_deref(),
        }
    }

    fn now(&self) -> Now<'_> {
        Now::new(self.clock.as_ref())
    }

    /// Reads the live entry under `key` through `read`, without copying it.
    ///
    /// With `sieve`, `s3fifo` and `adaptive` a hit takes only the shard's shared lock, so
    /// readers of one shard do not wait for each other; `lru` and `tinylfu` reorder their lists
    /// on every hit and take it exclusively.
    pub fn get_with<R>(&self, key: &[u8], read: impl FnOnce(EntryRef<'_>) -> R) -> Option<R> {
        let (hash, shard) = self.route(key);
        let mut now = self.now();
        let mut read = Some(read);
        {
            let guard = shard.read();
            if guard.shared_hits() {
                let found = guard.get_shared(hash, key, &mut now, |entry| {
                    read.take().map(|read| read(entry))
                });
                match found {
                    SharedRead::Hit(answer) => {
                        self.reads.record(true);
                        return answer;
                    }
                    SharedRead::Missing => {
                        self.reads.record(false);
                        return None;
                    }
                    SharedRead::Expired => {}
                }
            }
        }
        let read = read?;
        let answer = shard.write().get(hash, key, &mut now, read);
        self.reads.record(answer.is_some());
        answer
    }

    /// A copy of the live entry under `key`.
    pub fn get(&self, key: &[u8]) -> Option<Item> {
        self.get_with(key, |entry| entry.to_item())
    }

    /// Copies of the live entries under `keys`, in order.
    pub fn get_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Option<Item>> {
        keys.iter().map(|key| self.get(key.as_ref())).collect()
    }

    /// Whether `key` holds a live entry; neither a hit nor a miss, and not an access.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.peek_with(key, |_| ()).is_some()
    }

    /// Reads the live entry under `key` through `read` without copying it; counts as neither
    /// a hit nor an access.
    pub fn peek_with<R>(&self, key: &[u8], read: impl FnOnce(EntryRef<'_>) -> R) -> Option<R> {
        let (hash, shard) = self.route(key);
        shard.write().peek_with(hash, key, &mut self.now(), read)
    }

    /// A copy of the live entry under `key` that counts as neither a hit nor an access.
    pub fn peek(&self, key: &[u8]) -> Option<Item> {
        let (hash, shard) = self.route(key);
        shard.write().peek(hash, key, &mut self.now())
    }

    /// Writes `value` under `key` as `opts` say.
    ///
    /// # Errors
    /// [`StoreError::TooLarge`] for a value longer than the maximum
    /// ([`Store::with_max_value_bytes`]) or an entry bigger than the whole bound,
    /// [`StoreError::KeyTooLong`], or [`StoreError::AllPinned`] when the hook kept every
    /// entry that could make room. The store is unchanged on error.
    pub fn set(
        &self,
        key: &[u8],
        value: &[u8],
        opts: SetOptions,
    ) -> Result<SetOutcome, StoreError> {
        self.check_value(key, value.len(), opts.expiry != Expiry::Never)?;
        let (hash, shard) = self.route(key);
        let result = shard
            .write()
            .set(&self.ctx(), hash, key, value, &opts, &mut self.now());
        self.or_lend(hash, result, |shard, ctx, now| {
            shard.set(ctx, hash, key, value, &opts, now)
        })
    }

    /// Removes `key`; returns whether it held a live entry.
    pub fn delete(&self, key: &[u8]) -> bool {
        let (hash, shard) = self.route(key);
        shard
            .write()
            .delete(&self.ctx(), hash, key, &mut self.now())
    }

    /// Sets or clears the expiry of a live entry; returns whether there was one. A time in the
    /// past deletes the entry.
    ///
    /// # Errors
    /// As [`Store::set`] (adding an expiry can need room).
    pub fn expire(&self, key: &[u8], expiry: Expiry) -> Result<bool, StoreError> {
        let (hash, shard) = self.route(key);
        shard
            .write()
            .expire(&self.ctx(), hash, key, expiry, &mut self.now())
    }

    /// Clears the expiry of a live entry; returns whether it had one.
    pub fn persist(&self, key: &[u8]) -> bool {
        let (hash, shard) = self.route(key);
        let mut shard = shard.write();
        let mut now = self.now();
        let had_ttl = shard
            .peek_with(hash, key, &mut now, |entry| entry.expires_at.is_some())
            .unwrap_or(false);
        // Dropping the expiry shrinks the entry, so it needs no room and cannot fail.
        had_ttl
            && shard
                .expire(&self.ctx(), hash, key, Expiry::Never, &mut now)
                .is_ok()
    }

    /// The remaining time to live of `key`.
    pub fn ttl(&self, key: &[u8]) -> TtlState {
        let (hash, shard) = self.route(key);
        let mut now = self.now();
        match shard
            .write()
            .peek_with(hash, key, &mut now, |e| e.expires_at)
        {
            None => TtlState::Missing,
            Some(None) => TtlState::Persistent,
            Some(Some(at)) => TtlState::ExpiresIn(at.saturating_sub(now.get())),
        }
    }

    /// Adds `delta` to the decimal integer under `key` (0 if absent), keeping its expiry.
    ///
    /// # Errors
    /// [`StoreError::NotAnInteger`] if the value is not a decimal `i64`,
    /// [`StoreError::Overflow`] if the result leaves the `i64` range, or a set error.
    pub fn incr(&self, key: &[u8], delta: i64) -> Result<i64, StoreError> {
        let (hash, shard) = self.route(key);
        let mut shard = shard.write();
        let mut now = self.now();
        let current = match shard.peek_with(hash, key, &mut now, |e| parse_i64(e.value)) {
            Some(parsed) => parsed.ok_or(StoreError::NotAnInteger)?,
            None => 0,
        };
        let next = current.checked_add(delta).ok_or(StoreError::Overflow)?;
        let opts = SetOptions {
            expiry: Expiry::Keep,
            ..SetOptions::default()
        };
        shard.set(
            &self.ctx(),
            hash,
            key,
            next.to_string().as_bytes(),
            &opts,
            &mut now,
        )?;
        Ok(next)
    }

    /// Writes `value` only if `key` holds version `expected`.
    ///
    /// # Errors
    /// As [`Store::set`].
    pub fn compare_and_set(
        &self,
        key: &[u8],
        expected: u64,
        value: &[u8],
        expiry: Expiry,
    ) -> Result<CasOutcome, StoreError> {
        self.check_value(key, value.len(), expiry != Expiry::Never)?;
        let (hash, shard) = self.route(key);
        let cas = |shard: &mut Shard, ctx: &Ctx<'_, H>, now: &mut Now<'_>| match shard.peek_with(
            hash,
            key,
            now,
            |e| e.version,
        ) {
            Some(version) if version == expected => {
                let opts = SetOptions {
                    mode: SetMode::IfPresent,
                    expiry,
                    ..SetOptions::default()
                };
                let outcome = shard.set(ctx, hash, key, value, &opts, now)?;
                Ok(outcome
                    .version
                    .map_or(CasOutcome::Mismatch(None), CasOutcome::Swapped))
            }
            other => Ok(CasOutcome::Mismatch(other)),
        };
        let result = cas(&mut shard.write(), &self.ctx(), &mut self.now());
        self.or_lend(hash, result, cas)
    }

    /// One page of a scan over live keys. Start with cursor 0; a returned cursor of 0 means the
    /// scan is complete. Keys present for the whole scan are returned at least once.
    pub fn scan(&self, cursor: u64, count: usize) -> (u64, Vec<Vec<u8>>) {
        let count = count.max(1);
        let mut keys = Vec::with_capacity(count);
        let mut shard_idx = (cursor >> 40) as usize;
        let mut from = (cursor & ((1 << 40) - 1)) as usize;
        let now_ms = self.clock.now_ms();
        while shard_idx < self.shards.len() {
            let want = count - keys.len();
            let next = self.shards[shard_idx]
                .0
                .read()
                .scan(from, want, now_ms, &mut keys);
            match next {
                Some(at) => return (((shard_idx as u64) << 40) | at as u64, keys),
                None => {
                    shard_idx += 1;
                    from = 0;
                }
            }
            if keys.len() >= count {
                break;
            }
        }
        let cursor = if shard_idx < self.shards.len() {
            (shard_idx as u64) << 40
        } else {
            0
        };
        (cursor, keys)
    }

    /// Reclaims up to `budget` expired entries per shard; returns how many went. Writes already
    /// do this a few entries at a time; a server calls it from a timer so idle shards shrink too.
    pub fn reclaim_expired(&self, budget: usize) -> usize {
        let ctx = self.ctx();
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .0
                    .write()
                    .reclaim_expired(&ctx, &mut self.now(), budget)
            })
            .sum()
    }

    /// Drops every entry.
    pub fn clear(&self) {
        let settings = self.settings.lock();
        for shard in self.shards.iter() {
            shard.0.write().clear(settings.0);
        }
    }

    /// Counters and sizes summed over all shards.
    pub fn stats(&self) -> StoreStats {
        let (hits, misses) = self.reads.totals();
        let mut stats = StoreStats {
            capacity: self.settings.lock().1,
            hits,
            misses,
            ..StoreStats::default()
        };
        for shard in self.shards.iter() {
            let shard = shard.0.read();
            let c = shard.counters;
            stats.sets += c.sets;
            stats.evictions += c.evictions;
            stats.expirations += c.expirations;
            stats.used += shard.used();
            stats.items += shard.items() as u64;
        }
        stats
    }

    /// The number of live entries (expired ones not yet reclaimed included).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.0.read().items()).sum()
    }

    /// Whether the store holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    pub(crate) fn check(&self) {
        let mut capacity = self.spare.load(std::sync::atomic::Ordering::Relaxed);
        for shard in self.shards.iter() {
            let shard = shard.0.read();
            shard.check();
            capacity += shard.capacity();
        }
        assert_eq!(capacity, self.settings.lock().1, "capacity is conserved");
    }
}

/// Parses a decimal `i64` the way Redis does: optional `-`, digits, no spaces, no `+`, no
/// leading zeros. This is the form `incr` requires of a stored value; servers use it for
/// integer arguments too, so both agree on what an integer is.
pub fn parse_i64(bytes: &[u8]) -> Option<i64> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    if digits.is_empty() || digits.len() > 19 || (digits[0] == b'0' && bytes.len() > 1) {
        return None;
    }
    std::str::from_utf8(bytes)
        .ok()?
        .parse()
        .ok()
        .filter(|_| digits.iter().all(u8::is_ascii_digit))
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

#[path = "lending.rs"]
mod lending;
#[path = "reconfigure.rs"]
mod reconfigure;
pub use lending::DEFAULT_MAX_VALUE_BYTES;
#[path = "update.rs"]
mod update;
pub use update::Update;
