//! One shard: a hash index over a slab of slots, the policy's queues, byte accounting and the
//! expiry heap. Every method runs under the shard's lock; none does I/O.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::clock::Now;
use crate::ops::{Counters, EntryRef, Expiry, Item, SetMode, SetOptions, SetOutcome};
use crate::policy::{Policy, PolicyState, Weigher};
use crate::slab::Slab;
use crate::slot::NIL;
use crate::{EvictionHook, MAX_KEY_LEN, StoreError};

/// Expired entries reclaimed, at most, by each write on the side.
const RECLAIM_PER_WRITE: usize = 4;
/// Victims the hook may refuse in a row before the shard sweeps its slab for one instead.
const PINNED_BEFORE_SWEEP: usize = 16;
/// Index buckets a shard keeps without shrinking its index, however few entries it holds.
const INDEX_SLACK: usize = 1024;

/// The answer of a read under the shared lock.
pub(crate) enum SharedRead<R> {
    Hit(R),
    Missing,
    /// The entry's time is up; only the exclusive path may remove it.
    Expired,
}

/// What a shard operation borrows from its store.
pub(crate) struct Ctx<'a, H> {
    pub(crate) hasher: &'a foldhash::fast::SeedableRandomState,
    pub(crate) hook: &'a H,
    /// Capacity no shard holds: given back by shards above their fair share, taken by shards
    /// below it (see `lend.rs`).
    pub(crate) spare: &'a std::sync::atomic::AtomicU64,
    /// Told of evictions and expirations.
    pub(crate) removals: Option<&'a dyn crate::RemovalListener>,
}

impl<H> Ctx<'_, H> {
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn removed(&self, key: &[u8], why: crate::Removal) {
        if let Some(listener) = self.removals {
            listener.removed(key, why);
        }
    }
}

#[derive(Debug)]
pub(crate) struct Shard {
    table: HashTable<u32>,
    slots: Slab,
    policy: PolicyState,
    weigher: Weigher,
    /// This shard's bound now, and its fair share of the store's (the two differ while it
    /// has lent capacity to, or borrowed it from, other shards for a large entry).
    capacity: u64,
    fair: u64,
    used: u64,
    /// Min-heap of (expiry, slot); entries may be stale and are checked when popped.
    expiry: BinaryHeap<Reverse<(u64, u32)>>,
    ttl_items: usize,
    next_version: u64,
    /// Where the next sweep for an unpinned victim starts.
    sweep_from: usize,
    pub(crate) counters: Counters,
}

impl Shard {
    pub(crate) fn new(policy: Policy, weigher: Weigher, capacity: u64) -> Self {
        Self {
            table: HashTable::new(),
            slots: Slab::default(),
            policy: PolicyState::new(policy, weigher, capacity),
            weigher,
            capacity,
            fair: capacity,
            used: 0,
            expiry: BinaryHeap::new(),
            ttl_items: 0,
            next_version: 1,
            sweep_from: 0,
            counters: Counters::default(),
        }
    }

    pub(crate) fn used(&self) -> u64 {
        self.used
    }

    pub(crate) fn items(&self) -> usize {
        self.table.len()
    }

    /// Looks up a live entry, expiring it on the way if its time is up.
    fn find_live(&mut self, hash: u64, key: &[u8], now: &mut Now<'_>) -> Option<u32> {
        let slots = &self.slots;
        let idx = *self.table.find(hash, |&i| slots.key_is(i, key))?;
        match self.slots.expires_at(idx) {
            Some(at) if at <= now.get() => {
                self.remove_at(idx, hash, false);
                self.counters.expirations += 1;
                None
            }
            _ => Some(idx),
        }
    }

    /// Reads a live entry under the exclusive lock, telling the policy of the hit or miss.
    /// The caller counts it.
    pub(crate) fn get<R>(
        &mut self,
        hash: u64,
        key: &[u8],
        now: &mut Now<'_>,
        read: impl FnOnce(EntryRef<'_>) -> R,
    ) -> Option<R> {
        match self.find_live(hash, key, now) {
            Some(idx) => {
                self.policy.on_hit(&mut self.slots, idx, hash, true);
                Some(read(entry_ref(&self.slots, idx)))
            }
            None => {
                self.policy.on_miss();
                None
            }
        }
    }

    /// Whether this shard's policy records hits under the shared lock.
    pub(crate) fn shared_hits(&self) -> bool {
        self.policy.shared_hits()
    }

    /// Reads under the shared lock; only for policies with [`Shard::shared_hits`]. An expired
    /// entry cannot be removed here, so it is reported for the caller to retry exclusively.
    pub(crate) fn get_shared<R>(
        &self,
        hash: u64,
        key: &[u8],
        now: &mut Now<'_>,
        read: impl FnOnce(EntryRef<'_>) -> R,
    ) -> SharedRead<R> {
        let slots = &self.slots;
        let Some(&idx) = self.table.find(hash, |&i| slots.key_is(i, key)) else {
            return SharedRead::Missing;
        };
        if slots.expires_at(idx).is_some_and(|at| at <= now.get()) {
            return SharedRead::Expired;
        }
        self.policy.on_shared_hit(slots, idx, hash);
        SharedRead::Hit(read(entry_ref(slots, idx)))
    }

    /// Reads a live entry without counting it or touching the policy.
    pub(crate) fn peek(&mut self, hash: u64, key: &[u8], now: &mut Now<'_>) -> Option<Item> {
        self.peek_with(hash, key, now, |entry| entry.to_item())
    }

    /// Reads a live entry through `read`, without copying, counting it or touching the policy.
    pub(crate) fn peek_with<R>(
        &mut self,
        hash: u64,
        key: &[u8],
        now: &mut Now<'_>,
        read: impl FnOnce(EntryRef<'_>) -> R,
    ) -> Option<R> {
        self.read_with(hash, key, now, |entry| entry.map(read))
    }

    /// Calls `read` with the live entry under `key`, or `None`; without copying, counting or
    /// touching the policy.
    pub(crate) fn read_with<R>(
        &mut self,
        hash: u64,
        key: &[u8],
        now: &mut Now<'_>,
        read: impl FnOnce(Option<EntryRef<'_>>) -> R,
    ) -> R {
        let idx = self.find_live(hash, key, now);
        read(idx.map(|idx| entry_ref(&self.slots, idx)))
    }

    /// The accounted weight of an entry, if it could fit in this shard at all.
    pub(crate) fn check_fits(
        &self,
        key: &[u8],
        value: &[u8],
        has_ttl: bool,
    ) -> Result<u64, StoreError> {
        if key.len() > MAX_KEY_LEN {
            return Err(StoreError::KeyTooLong(key.len()));
        }
        let weight = self.weigher.weigh_parts(key.len(), value.len(), has_ttl);
        if weight > self.capacity {
            return Err(StoreError::TooLarge {
                size: weight,
                limit: self.capacity,
            });
        }
        Ok(weight)
    }

    pub(crate) fn set<H: EvictionHook>(
        &mut self,
        ctx: &Ctx<'_, H>,
        hash: u64,
        key: &[u8],
        value: &[u8],
        opts: &SetOptions,
        now: &mut Now<'_>,
    ) -> Result<SetOutcome, StoreError> {
        self.reclaim_expired(ctx, now, RECLAIM_PER_WRITE);
        let existing = self.find_live(hash, key, now);
        let current = existing.map(|idx| entry_ref(&self.slots, idx));
        let allowed = match (opts.mode, current) {
            (SetMode::Always, _) | (SetMode::IfAbsent, None) => true,
            (SetMode::IfPresent, current) => current.is_some(),
            (SetMode::IfAbsent, Some(_)) => false,
            (SetMode::IfNewerVersion(v), current) => current.is_none_or(|entry| entry.version < v),
            (SetMode::IfNotOlderVersion(v), current) => {
                current.is_none_or(|entry| entry.version <= v)
            }
        };
        let previous = if opts.return_previous {
            current.map(|entry| entry.to_item())
        } else {
            None
        };
        if !allowed {
            return Ok(SetOutcome {
                stored: false,
                version: current.map(|entry| entry.version),
                previous,
            });
        }
        let expires_at = match opts.expiry {
            Expiry::Never => None,
            Expiry::Keep => current.and_then(|entry| entry.expires_at),
            Expiry::At(at) => Some(at),
            Expiry::In(ttl) => Some(now.get().saturating_add(crate::clock::millis(ttl))),
        };
        let version = match (opts.mode, opts.version) {
            (SetMode::IfNewerVersion(v) | SetMode::IfNotOlderVersion(v), _) | (_, Some(v)) => v,
            (_, None) => self
                .next_version
                .max(current.map_or(0, |entry| entry.version.saturating_add(1))),
        };
        self.check_fits(key, value, expires_at.is_some())?;
        if expires_at.is_some_and(|at| at <= now.get()) {
            // Written already expired: the key ends up empty, as Redis does for a past EXPIREAT.
            if let Some(idx) = existing {
                self.remove_at(idx, hash, false);
            }
            self.counters.sets += 1;
            return Ok(SetOutcome {
                stored: true,
                version: None,
                previous,
            });
        }
        match existing {
            Some(idx) => self.overwrite(ctx, idx, hash, key, value, version, expires_at)?,
            None => self.insert(ctx, hash, key, value, version, expires_at)?,
        }
        self.next_version = self.next_version.max(version.saturating_add(1));
        self.counters.sets += 1;
        self.tidy(ctx);
        Ok(SetOutcome {
            stored: true,
            version: Some(version),
            previous,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn overwrite<H: EvictionHook>(
        &mut self,
        ctx: &Ctx<'_, H>,
        idx: u32,
        hash: u64,
        key: &[u8],
        value: &[u8],
        version: u64,
        expires_at: Option<u64>,
    ) -> Result<(), StoreError> {
        let old = self.weigher.weigh(&self.slots, idx);
        let new = self
            .weigher
            .weigh_parts(key.len(), value.len(), expires_at.is_some());
        self.make_room(ctx, new.saturating_sub(old), idx)?;
        let had_ttl = self.slots[idx as usize].has_ttl();
        self.place(ctx, idx, |slots| {
            slots.rewrite(idx, value, version, expires_at).then_some(())
        })?;
        self.policy.on_reweigh(&self.slots, idx, old, new);
        self.used = self.used - old + new;
        self.track_expiry(idx, had_ttl, expires_at);
        self.policy.on_hit(&mut self.slots, idx, hash, false);
        Ok(())
    }

    fn insert<H: EvictionHook>(
        &mut self,
        ctx: &Ctx<'_, H>,
        hash: u64,
        key: &[u8],
        value: &[u8],
        version: u64,
        expires_at: Option<u64>,
    ) -> Result<(), StoreError> {
        let weight = self
            .weigher
            .weigh_parts(key.len(), value.len(), expires_at.is_some());
        self.make_room(ctx, weight, NIL)?;
        let idx = self.place(ctx, NIL, |slots| {
            slots.insert(key, value, version, expires_at)
        })?;
        let slots = &self.slots;
        self.table
            .insert_unique(hash, idx, |&i| ctx.hash(slots.key(i)));
        self.used += weight;
        self.track_expiry(idx, false, expires_at);
        self.policy.on_insert(&mut self.slots, idx, hash);
        Ok(())
    }

    /// Changes a live entry's expiry in place; returns whether the key held a live entry.
    pub(crate) fn expire<H: EvictionHook>(
        &mut self,
        ctx: &Ctx<'_, H>,
        hash: u64,
        key: &[u8],
        expiry: Expiry,
        now: &mut Now<'_>,
    ) -> Result<bool, StoreError> {
        let Some(idx) = self.find_live(hash, key, now) else {
            return Ok(false);
        };
        if expiry == Expiry::Keep {
            return Ok(true);
        }
        let entry = entry_ref(&self.slots, idx).to_item();
        let opts = SetOptions {
            expiry,
            version: Some(entry.version),
            ..SetOptions::default()
        };
        self.set(ctx, hash, key, &entry.value, &opts, now)?;
        // A rewrite is not a new write for the counters.
        self.counters.sets -= 1;
        Ok(true)
    }

    /// Removes the key; returns whether it held a live entry.
    pub(crate) fn delete<H: EvictionHook>(
        &mut self,
        ctx: &Ctx<'_, H>,
        hash: u64,
        key: &[u8],
        now: &mut Now<'_>,
    ) -> bool {
        self.reclaim_expired(ctx, now, RECLAIM_PER_WRITE);
        match self.find_live(hash, key, now) {
            Some(idx) => {
                self.remove_at(idx, hash, false);
                self.tidy(ctx);
                true
            }
            None => false,
        }
    }

    /// Evicts until `need` more units fit, never choosing `protect`.
    fn make_room<H: EvictionHook>(
        &mut self,
        ctx: &Ctx<'_, H>,
        need: u64,
        protect: u32,
    ) -> Result<(), StoreError> {
        let mut refusals = 0;
        if self.used + need > self.capacity {
            self.take_spare(ctx);
        }
        while self.used + need > self.capacity {
            self.evict_one(ctx, protect, &mut refusals)?;
        }
        Ok(())
    }

    /// Runs `alloc` on the slab, evicting entries (never `protect`) until it finds room in
    /// the arena: its bytes can be short of contiguous room while the bound has room enough.
    fn place<H: EvictionHook, T>(
        &mut self,
        ctx: &Ctx<'_, H>,
        protect: u32,
        mut alloc: impl FnMut(&mut Slab) -> Option<T>,
    ) -> Result<T, StoreError> {
        let mut refusals = 0;
        loop {
            if let Some(placed) = alloc(&mut self.slots) {
                return Ok(placed);
            }
            self.evict_one(ctx, protect, &mut refusals)?;
        }
    }

    /// Evicts the policy's next victim that the hook lets go (never `protect`), counting
    /// refusals; after many in a row it sweeps the slab instead.
    fn evict_one<H: EvictionHook>(
        &mut self,
        ctx: &Ctx<'_, H>,
        protect: u32,
        refusals: &mut usize,
    ) -> Result<(), StoreError> {
        loop {
            let victim = if *refusals < PINNED_BEFORE_SWEEP {
                let hash_of = |key: &[u8]| ctx.hash(key);
                self.policy.victim(&mut self.slots, &hash_of)
            } else {
                self.sweep_for_victim(ctx, protect)
            };
            let Some(victim) = victim else {
                return Err(StoreError::AllPinned);
            };
            let key = self.slots.key(victim);
            if victim == protect || !ctx.hook.may_evict(key, &entry_ref(&self.slots, victim)) {
                *refusals += 1;
                self.policy.on_pinned(&mut self.slots, victim);
                continue;
            }
            let hash = ctx.hash(key);
            ctx.removed(key, crate::Removal::Evicted);
            self.remove_at(victim, hash, true);
            self.counters.evictions += 1;
            return Ok(());
        }
    }

    /// Gives back memory once far fewer bytes are live than held: moves the entries of the
    /// sparsest arena segment out so the segment is released (evicting those that find no
    /// room), and shrinks a hash index left mostly empty.
    fn tidy<H>(&mut self, ctx: &Ctx<'_, H>) {
        if self.slots.wants_shrink() {
            for idx in self.slots.evacuate() {
                ctx.removed(self.slots.key(idx), crate::Removal::Evicted);
                let hash = ctx.hash(self.slots.key(idx));
                self.remove_at(idx, hash, true);
                self.counters.evictions += 1;
            }
        }
        if self.table.capacity() > 4 * self.table.len() + INDEX_SLACK {
            let slots = &self.slots;
            self.table
                .shrink_to(2 * self.table.len(), |&i| ctx.hash(slots.key(i)));
        }
        self.give_back(ctx);
    }

    /// After many refusals in a row, walks the slab for any entry the hook lets go, so that
    /// [`StoreError::AllPinned`] means exactly that.
    fn sweep_for_victim<H: EvictionHook>(&mut self, ctx: &Ctx<'_, H>, protect: u32) -> Option<u32> {
        let len = self.slots.len();
        for step in 0..len {
            let idx = (self.sweep_from + step) % len;
            if idx as u32 != protect
                && self.slots[idx].is_occupied()
                && ctx.hook.may_evict(
                    self.slots.key(idx as u32),
                    &entry_ref(&self.slots, idx as u32),
                )
            {
                self.sweep_from = idx + 1;
                return Some(idx as u32);
            }
        }
        None
    }

    fn remove_at(&mut self, idx: u32, hash: u64, evicted: bool) {
        if let Ok(entry) = self.table.find_entry(hash, |&i| i == idx) {
            entry.remove();
        }
        self.policy.on_remove(&mut self.slots, idx, hash, evicted);
        self.used -= self.weigher.weigh(&self.slots, idx);
        if self.slots[idx as usize].has_ttl() {
            self.ttl_items -= 1;
        }
        self.slots.release(idx);
    }

    fn track_expiry(&mut self, idx: u32, had_ttl: bool, expires_at: Option<u64>) {
        match (had_ttl, expires_at) {
            (false, Some(_)) => self.ttl_items += 1,
            (true, None) => self.ttl_items -= 1,
            _ => {}
        }
        if let Some(at) = expires_at {
            self.expiry.push(Reverse((at, idx)));
        }
    }

    /// Removes up to `budget` entries whose time is up; returns how many went.
    pub(crate) fn reclaim_expired<H>(
        &mut self,
        ctx: &Ctx<'_, H>,
        now: &mut Now<'_>,
        budget: usize,
    ) -> usize {
        let mut reclaimed = 0;
        while reclaimed < budget {
            let Some(&Reverse((at, idx))) = self.expiry.peek() else {
                break;
            };
            if at > now.get() {
                break;
            }
            self.expiry.pop();
            // The heap keeps stale records of overwritten entries; only a matching expiry counts.
            if self.live_expiry(idx) == Some(at) {
                ctx.removed(self.slots.key(idx), crate::Removal::Expired);
                let hash = ctx.hash(self.slots.key(idx));
                self.remove_at(idx, hash, false);
                self.counters.expirations += 1;
                reclaimed += 1;
            }
        }
        if self.expiry.len() > 2 * self.ttl_items + 64 {
            let mut expiry = std::mem::take(&mut self.expiry);
            expiry.retain(|Reverse((at, idx))| self.live_expiry(*idx) == Some(*at));
            self.expiry = expiry;
        }
        reclaimed
    }

    /// The expiry of the entry in slot `idx`, if one is there.
    fn live_expiry(&self, idx: u32) -> Option<u64> {
        ((idx as usize) < self.slots.len() && self.slots[idx as usize].is_occupied())
            .then(|| self.slots.expires_at(idx))
            .flatten()
    }

    /// Up to `count` live keys from slot `from` on, and the slot to continue from (`None`: done).
    pub(crate) fn scan(
        &self,
        from: usize,
        count: usize,
        now_ms: u64,
        out: &mut Vec<Vec<u8>>,
    ) -> Option<usize> {
        let mut at = from;
        let mut taken = 0;
        while at < self.slots.len() {
            let idx = at as u32;
            at += 1;
            if self.slots[idx as usize].is_occupied()
                && self.slots.expires_at(idx).is_none_or(|t| t > now_ms)
            {
                out.push(self.slots.key(idx).to_vec());
                taken += 1;
                if taken == count {
                    return (at < self.slots.len()).then_some(at);
                }
            }
        }
        None
    }

    /// Drops every entry, keeping counters and the policy choice.
    pub(crate) fn clear(&mut self, policy: Policy) {
        let counters = self.counters;
        let next_version = self.next_version;
        let fair = self.fair;
        *self = Self::new(policy, self.weigher, self.capacity);
        self.counters = counters;
        self.next_version = next_version;
        self.fair = fair;
    }

    /// Gives the shard a new policy and share of the capacity, keeping its entries: every
    /// live entry enters the new policy (in slab order), then the shard evicts down to the new
    /// share.
    ///
    /// # Errors
    /// [`StoreError::AllPinned`] when the hook keeps the shard above its new share; it then
    /// shrinks as pinned entries go.
    pub(crate) fn rebuild<H: EvictionHook>(
        &mut self,
        ctx: &Ctx<'_, H>,
        policy: Policy,
        capacity: u64,
    ) -> Result<(), StoreError> {
        self.capacity = capacity;
        self.fair = capacity;
        self.policy = PolicyState::new(policy, self.weigher, capacity);
        for idx in 0..self.slots.len() {
            let slot = &mut self.slots[idx];
            if !slot.is_occupied() {
                continue;
            }
            slot.reset_policy();
            let hash = ctx.hash(self.slots.key(idx as u32));
            self.policy.on_insert(&mut self.slots, idx as u32, hash);
        }
        self.make_room(ctx, 0, NIL)
    }

    /// Checks the shard's invariants; for tests.
    #[cfg(test)]
    pub(crate) fn check(&self) {
        let live: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&i| self.slots[i as usize].is_occupied())
            .collect();
        assert_eq!(live.len(), self.table.len());
        let used: u64 = live
            .iter()
            .map(|&i| self.weigher.weigh(&self.slots, i))
            .sum();
        assert_eq!(used, self.used);
        assert!(self.used <= self.capacity);
        let ttl = live.iter().filter(|&&i| self.slots[i as usize].has_ttl());
        assert_eq!(ttl.count(), self.ttl_items);
    }
}

#[path = "lend.rs"]
mod lend;

fn entry_ref(slots: &Slab, idx: u32) -> EntryRef<'_> {
    EntryRef {
        value: slots.value(idx),
        version: slots.version(idx),
        expires_at: slots.expires_at(idx),
    }
}
