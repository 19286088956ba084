//! S3-FIFO (Yang et al., SOSP 2023) and larder's adaptive variant.
//!
//! Both keep a small FIFO that filters one-hit wonders, a main FIFO whose entries earn up to
//! three "second chances" by being hit, and a ghost FIFO of hashes of keys recently evicted from
//! small, which sends a returning key straight to main. While main is below its share (warm-up),
//! entries leaving small move to main instead of being dropped.
//!
//! The adaptive variant (`Policy::Adaptive`) changes these things, each measured on the shared
//! traces (BENCHMARKS.md):
//! * the hits an entry needs in small to be promoted (one or two) follow the evidence: after
//!   two while entries hit once rarely come back, after one while they mostly do;
//! * the ghost remembers as many keys as the whole cache holds, not only main;
//! * a **loop rule**: every `capacity` inserts, if the small queue earned nothing (no hit on an
//!   entry in small, no key back from the ghost) it halves, and the ghost with it, so that on a
//!   loop or scan larger than the cache nearly all of it freezes a part of the working set (as
//!   LIRS does); as soon as small earns again it doubles back towards its 10% share;
//! * two **modes** for an entry leaving small without the hits it needs: *recency* lets any
//!   such entry fill a main queue below its share (warm-up), as S3-FIFO does; *frequency* lets
//!   only entries seen before (a count-min sketch of recent inserts) fill it, and once main is
//!   full admits an entry whose estimated frequency beats main's next victim (TinyLFU's test
//!   at S3-FIFO's door). A mode also sets the small queue's share of the capacity: S3-FIFO's
//!   10%, or a narrow 1% with which a scan or a loop passes through the cache leaving the rest
//!   of it alone (as LIRS keeps only 1% for blocks not yet proven). Which mode runs is
//!   decided by a [`Duel`]: miniature simulations of this policy, one per mode, replay a
//!   hash-sampled share of the same requests, and the mode whose simulation hit more over
//!   recent history is the one the cache uses.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use super::duel::{Duel, Simulated};
use super::mode::Mode;
use super::{Weigher, ghost::Ghost, list::List, sketch::Sketch};
use crate::slab::Slab;
use crate::slot::Slot;

const SMALL: u8 = 0;
const MAIN: u8 = 1;
/// Entries per 8-byte word of the frequency sketch (16 four-bit counters): two, so that each
/// entry has eight counters across the sketch's four rows. TinyLFU as Caffeine sizes it gives
/// each entry a word; half that costs 4 bytes per entry instead of 8. Against a word per entry
/// on the shared traces it did better on some cells and worse on others, within the spread that
/// the per-store hash key gives from run to run (BENCHMARKS.md).
const SKETCH_ENTRIES_PER_WORD: u64 = 2;
/// Inserts that make one sample of the small queue's usefulness, at the least.
const MIN_SAMPLE: u64 = 1_000;
/// Below this many earnings per insert in a sample, the small queue shrinks.
const EARN_THRESHOLD: f64 = 0.001;

/// Evidence on entries hit exactly once while in small: do they come back?
///
/// While two hits are needed, an entry evicted after one hit is remembered in the ghost with a
/// tag, and counted again if it returns. While one hit is enough, an entry promoted after one
/// hit is marked, and counted as useful if it is hit in main before it is evicted from there.
#[derive(Debug, Default)]
struct Once {
    evicted: u64,
    returned: u64,
    promoted_useful: AtomicU64,
    promoted_wasted: u64,
}

/// Evidence needed before the promotion threshold changes.
const ONCE_MIN_EVIDENCE: u64 = 64;
/// One hit is enough for promotion while at least this share of the entries hit once come back
/// (measured on the traces: 0.1–0.3 lose OLTP cells, 0.5–0.7 keep them).
const ONCE_RETURN_SHARE: f64 = 0.7;

#[derive(Debug)]
pub(crate) struct S3Fifo {
    small: List,
    main: List,
    ghost: Ghost,
    /// The small queue's size now; the adaptive variant moves it between 1 and `small_share`.
    small_target: u64,
    small_share: u64,
    capacity: u64,
    adaptive: bool,
    /// Inserts in the current sample, and the hits and ghost returns the small queue earned.
    sampled: u64,
    small_earned: AtomicU64,
    /// Hits an entry needs in small to be promoted (adaptive: 1 or 2, chosen by `Once`).
    promote_at: u8,
    once: Once,
    weigher: Weigher,
    /// Adaptive: the mode in use, a sketch of recent inserts, and the duel that picks the mode
    /// (`None` in the duel's own simulations).
    mode: Mode,
    sketch: Option<Sketch>,
    duel: Option<Box<Duel<S3Fifo>>>,
}

impl S3Fifo {
    pub(crate) fn new(weigher: Weigher, capacity: u64, adaptive: bool) -> Self {
        let mut policy = Self::with_mode(weigher, capacity, adaptive, Mode::RECENCY);
        if adaptive {
            policy.duel = Some(Box::new(Duel::new(weigher, capacity)));
        }
        policy
    }

    fn with_mode(weigher: Weigher, capacity: u64, adaptive: bool, mode: Mode) -> Self {
        let small_share = share(capacity, mode.small);
        // A byte-bounded cache does not know its size in entries yet, and has no use for a
        // sketch until it runs in frequency mode: it makes one then (`on_insert`).
        let sketch = (adaptive && weigher == Weigher::Items).then(|| {
            Sketch::new(usize::try_from(capacity / SKETCH_ENTRIES_PER_WORD).unwrap_or(usize::MAX))
        });
        Self {
            small: List::default(),
            main: List::default(),
            ghost: Ghost::default(),
            small_target: small_share,
            small_share,
            capacity,
            adaptive,
            sampled: 0,
            small_earned: AtomicU64::new(0),
            promote_at: if adaptive { 2 } else { 1 },
            once: Once::default(),
            weigher,
            mode,
            sketch,
            duel: None,
        }
    }

    pub(crate) fn on_insert(&mut self, slots: &mut Slab, idx: u32, hash: u64) {
        self.sample();
        let entries = self.small.len + self.main.len + 1;
        if let Some(duel) = &self.duel {
            let full = self.small.weight + self.main.weight >= self.capacity - self.capacity / 16;
            duel.on_request(hash, entries, full);
            let mode = duel.mode();
            if mode.small != self.mode.small {
                self.resize_small(mode.small);
            }
            self.mode = mode;
        }
        let words = entries / SKETCH_ENTRIES_PER_WORD as usize;
        if self.sketch.is_none() && self.adaptive && self.mode.admit {
            self.sketch = Some(Sketch::new(words));
        }
        if let Some(sketch) = &mut self.sketch {
            sketch.fit(words);
            sketch.increment(hash);
        }
        let weight = self.weigher.weigh(slots, idx);
        let slot = &mut slots[idx as usize];
        slot.set_freq(0);
        if let Some(tag) = self.ghost.take(hash) {
            self.once.returned += u64::from(tag);
            self.small_earned.fetch_add(1, Relaxed);
            slot.set_queue(MAIN);
            self.main.push_head(slots, idx, weight);
        } else {
            slot.set_queue(SMALL);
            self.small.push_head(slots, idx, weight);
        }
    }

    /// Drives the adaptive variant's loop rule, once per insert: inserts follow misses, and a
    /// cache that rarely misses has no use for resizing its small queue.
    fn sample(&mut self) {
        if !self.adaptive {
            return;
        }
        self.sampled += 1;
        if self.sampled < self.capacity.max(MIN_SAMPLE) {
            return;
        }
        self.choose_promotion();
        let earned =
            self.small_earned.swap(0, Relaxed) as f64 >= self.sampled as f64 * EARN_THRESHOLD;
        self.small_target = if earned {
            (self.small_target * 2).min(self.small_share)
        } else {
            (self.small_target / 2).max(1)
        };
        self.sampled = 0;
    }

    /// Gives the small queue the share of a newly chosen mode. A smaller share takes effect at
    /// once; a larger one only caps the loop rule, which grows the queue by doubling while it
    /// earns. Growing it at once would evict main's coldest entries for unproven ones, which on
    /// a loop is the working set that main holds (measured: a loop trace lost 8.6 points when
    /// the duel moved between shares).
    fn resize_small(&mut self, thousandths: u64) {
        self.small_share = share(self.capacity, thousandths);
        self.small_target = self.small_target.min(self.small_share);
    }

    /// A hit needs only the shard's shared lock: it bumps the entry's frequency (a write only
    /// when the count changes) and counts what the small queue earned.
    pub(crate) fn on_hit(&self, slots: &Slab, idx: u32, hash: u64) {
        if let Some(duel) = &self.duel
            && duel.samples(hash)
        {
            duel.on_request(hash, self.small.len + self.main.len, true);
        }
        let slot = &slots[idx as usize];
        if slot.bump_freq() && slot.queue() == SMALL {
            self.small_earned.fetch_add(1, Relaxed);
        }
        if slot.take_mark() {
            self.once.promoted_useful.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn on_reweigh(&mut self, slots: &Slab, idx: u32, old: u64, new: u64) {
        let list = self.list_of(&slots[idx as usize]);
        list.weight = list.weight - old + new;
    }

    pub(crate) fn on_remove(&mut self, slots: &mut Slab, idx: u32, hash: u64, evicted: bool) {
        let weight = self.weigher.weigh(slots, idx);
        let in_small = slots[idx as usize].queue() == SMALL;
        self.list_of(&slots[idx as usize])
            .unlink(slots, idx, weight);
        if evicted && in_small {
            let once = u8::from(slots[idx as usize].freq() == 1);
            self.once.evicted += u64::from(once);
            self.ghost.insert(hash, once, self.ghost_capacity());
        } else if evicted && slots[idx as usize].marked() {
            self.once.promoted_wasted += 1;
        }
    }

    pub(crate) fn victim(
        &mut self,
        slots: &mut Slab,
        hash_of: &dyn Fn(&[u8]) -> u64,
    ) -> Option<u32> {
        let promote_at = self.promote_at;
        loop {
            if self.small.is_empty() && self.main.is_empty() {
                return None;
            }
            if self.small.weight >= self.small_target || self.main.is_empty() {
                let tail = self.small.tail;
                if slots[tail as usize].freq() < promote_at && !self.passes(slots, tail, hash_of) {
                    return Some(tail);
                }
                self.promote(slots, tail);
            } else {
                let tail = self.main.tail;
                let freq = slots[tail as usize].freq();
                if freq == 0 {
                    return Some(tail);
                }
                slots[tail as usize].set_freq(freq - 1);
                let weight = self.weigher.weigh(slots, tail);
                self.main.move_to_head(slots, tail, weight);
            }
        }
    }

    pub(crate) fn on_pinned(&mut self, slots: &mut Slab, idx: u32) {
        if slots[idx as usize].queue() == SMALL {
            self.promote(slots, idx);
        } else {
            let weight = self.weigher.weigh(slots, idx);
            self.main.move_to_head(slots, idx, weight);
        }
    }

    /// Adaptive: promote after one hit while most entries hit once come back (evidence from
    /// [`Once`]), after two otherwise. Runs once per sample.
    fn choose_promotion(&mut self) {
        if !self.adaptive {
            return;
        }
        let threshold = ONCE_RETURN_SHARE;
        let once = &mut self.once;
        if self.promote_at == 2 && once.evicted >= ONCE_MIN_EVIDENCE {
            if once.returned as f64 >= threshold * once.evicted as f64 {
                self.promote_at = 1;
            }
            *once = Once::default();
        } else if self.promote_at == 1 {
            let useful = *once.promoted_useful.get_mut();
            if useful + once.promoted_wasted >= ONCE_MIN_EVIDENCE {
                if (useful as f64) < threshold * (useful + once.promoted_wasted) as f64 {
                    self.promote_at = 2;
                }
                *once = Once::default();
            }
        }
    }

    /// Whether `tail`, leaving small without the hits it needs, moves to main all the same.
    /// S3-FIFO lets it fill a main queue below its share (warm-up); the adaptive variant does so
    /// in recency mode and while the loop rule has shrunk small, and in frequency mode only for
    /// an entry seen before, and then admits it to a full main if it beats main's victim.
    fn passes(&self, slots: &Slab, tail: u32, hash_of: &dyn Fn(&[u8]) -> u64) -> bool {
        let under = self.main.weight < self.capacity.saturating_sub(self.small_target);
        if !self.adaptive {
            return under;
        }
        if under && (self.mode.fill_unproven || self.small_target < self.small_share) {
            return true;
        }
        let Some(sketch) = self.sketch.as_ref().filter(|_| self.mode.admit) else {
            return false;
        };
        // Hits not yet folded into the sketch sit in the slot's two-bit count.
        let estimate = |idx: u32| {
            let freq = slots[idx as usize].freq();
            u32::from(sketch.frequency(hash_of(slots.key(idx)))) + u32::from(freq)
        };
        let candidate = estimate(tail);
        if under {
            // Seen before (the sketch counts this insert too), or hit once in small.
            return candidate >= 2;
        }
        // Ties go to the incumbent, as in `tinylfu`.
        !self.main.is_empty() && candidate > estimate(self.main.tail)
    }

    /// How many evicted keys the ghost remembers: as many as main holds (the paper), or as the
    /// whole cache holds, scaled down while the loop rule has shrunk small (adaptive).
    fn ghost_capacity(&self) -> usize {
        if !self.adaptive {
            return self.main.len.max(1);
        }
        let scale = self.small_target as f64 / self.small_share as f64;
        (((self.main.len + self.small.len) as f64 * scale) as usize).max(1)
    }

    fn promote(&mut self, slots: &mut Slab, idx: u32) {
        let weight = self.weigher.weigh(slots, idx);
        self.small.unlink(slots, idx, weight);
        let once = self.adaptive && slots[idx as usize].freq() == 1;
        slots[idx as usize].set_mark(once);
        slots[idx as usize].set_queue(MAIN);
        slots[idx as usize].set_freq(0);
        self.main.push_head(slots, idx, weight);
    }

    fn list_of(&mut self, slot: &Slot) -> &mut List {
        if slot.queue() == SMALL {
            &mut self.small
        } else {
            &mut self.main
        }
    }
}

/// The adaptive variant fixed to a mode, without a duel: one of a duel's simulations.
impl Simulated for S3Fifo {
    fn simulation(capacity: u64, mode: Mode) -> Self {
        Self::with_mode(Weigher::Items, capacity, true, mode)
    }

    fn on_insert(&mut self, slots: &mut Slab, idx: u32, hash: u64) {
        S3Fifo::on_insert(self, slots, idx, hash);
    }

    fn on_hit(&self, slots: &Slab, idx: u32, hash: u64) {
        S3Fifo::on_hit(self, slots, idx, hash);
    }

    fn on_remove(&mut self, slots: &mut Slab, idx: u32, hash: u64, evicted: bool) {
        S3Fifo::on_remove(self, slots, idx, hash, evicted);
    }

    fn victim(&mut self, slots: &mut Slab, hash_of: &dyn Fn(&[u8]) -> u64) -> Option<u32> {
        S3Fifo::victim(self, slots, hash_of)
    }
}

/// `thousandths` of `capacity`, at least 1.
fn share(capacity: u64, thousandths: u64) -> u64 {
    (capacity.saturating_mul(thousandths) / 1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_narrower_mode_shrinks_small_at_once_and_a_wider_one_lets_it_grow() {
        let mut policy = S3Fifo::simulation(1_000, Mode::RECENCY);
        assert_eq!((policy.small_target, policy.small_share), (100, 100));
        policy.resize_small(Mode::NARROW.small);
        assert_eq!((policy.small_target, policy.small_share), (10, 10));
        policy.resize_small(Mode::RECENCY.small);
        assert_eq!(
            (policy.small_target, policy.small_share),
            (10, 100),
            "main is not evicted to make room for a wider small queue"
        );
    }
}
