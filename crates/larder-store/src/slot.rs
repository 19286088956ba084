//! The per-entry record kept in a shard's slab: where the entry's bytes are, its links in one
//! of the eviction policy's intrusive lists, and its policy bits.
//!
//! A slot is 16 bytes. The entry itself (version, expiry, key, value) lives in the shard's
//! arena (`arena.rs`) at `loc`; the key length sits in the upper bits of `meta`. `prev`/`next`
//! thread the slot through one list of the eviction policy.

use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;

/// Index of "no slot" in the intrusive lists.
pub(crate) const NIL: u32 = u32::MAX;

const OCCUPIED: u32 = 1 << 0;
const HAS_TTL: u32 = 1 << 1;
const VISITED: u32 = 1 << 2;
const QUEUE_SHIFT: u32 = 3;
const QUEUE_MASK: u32 = 0b11 << QUEUE_SHIFT;
const FREQ_SHIFT: u32 = 5;
const FREQ_MASK: u32 = 0b11 << FREQ_SHIFT;
const MARK: u32 = 1 << 7;
/// The key length takes the bits above the policy's eight.
const KLEN_SHIFT: u32 = 8;
/// The largest frequency a slot's two-bit counter holds.
pub(crate) const FREQ_MAX: u8 = 3;

/// One entry of a shard's slab.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Where the entry's bytes are in the shard's arena.
    pub(crate) loc: u32,
    pub(crate) prev: u32,
    pub(crate) next: u32,
    meta: AtomicU32,
}

impl Slot {
    /// An unoccupied slot.
    pub(crate) fn free() -> Self {
        Self {
            loc: NIL,
            prev: NIL,
            next: NIL,
            meta: AtomicU32::new(0),
        }
    }

    /// An occupied slot for an entry at `loc` (not yet in any policy list). Keys are bounded by
    /// `MAX_KEY_LEN`, which fits in the 24 bits above the policy's.
    pub(crate) fn occupied(loc: u32, key_len: usize, has_ttl: bool) -> Self {
        let ttl = if has_ttl { HAS_TTL } else { 0 };
        Self {
            loc,
            prev: NIL,
            next: NIL,
            meta: AtomicU32::new(OCCUPIED | ttl | ((key_len as u32) << KLEN_SHIFT)),
        }
    }

    /// Points the slot at rewritten bytes, keeping the policy state (links, queue, frequency).
    pub(crate) fn rewrite(&mut self, loc: u32, has_ttl: bool) {
        self.loc = loc;
        let meta = self.meta.get_mut();
        *meta = if has_ttl {
            *meta | HAS_TTL
        } else {
            *meta & !HAS_TTL
        };
    }

    /// Forgets every policy's state (links, queue, frequency, marks), keeping the entry; for
    /// handing the slot to a freshly built policy.
    pub(crate) fn reset_policy(&mut self) {
        self.prev = NIL;
        self.next = NIL;
        *self.meta.get_mut() &= OCCUPIED | HAS_TTL | !((1 << KLEN_SHIFT) - 1);
    }

    pub(crate) fn is_occupied(&self) -> bool {
        self.meta.load(Relaxed) & OCCUPIED != 0
    }

    pub(crate) fn key_len(&self) -> usize {
        (self.meta.load(Relaxed) >> KLEN_SHIFT) as usize
    }

    pub(crate) fn has_ttl(&self) -> bool {
        self.meta.load(Relaxed) & HAS_TTL != 0
    }

    pub(crate) fn visited(&self) -> bool {
        self.meta.load(Relaxed) & VISITED != 0
    }

    pub(crate) fn set_visited(&mut self, on: bool) {
        if on {
            *self.meta.get_mut() |= VISITED;
        } else {
            *self.meta.get_mut() &= !VISITED;
        }
    }

    /// Which of the policy's queues the slot is in (policy-defined, 0..=3).
    pub(crate) fn queue(&self) -> u8 {
        ((self.meta.load(Relaxed) & QUEUE_MASK) >> QUEUE_SHIFT) as u8
    }

    pub(crate) fn set_queue(&mut self, queue: u8) {
        let meta = self.meta.get_mut();
        *meta = (*meta & !QUEUE_MASK) | ((u32::from(queue) << QUEUE_SHIFT) & QUEUE_MASK);
    }

    /// Adds one to the frequency unless it is at `FREQ_MAX`; returns whether it changed. Takes
    /// `&self` so hits under a shared lock can record it; a lost race only loses a count.
    pub(crate) fn bump_freq(&self) -> bool {
        let meta = self.meta.load(Relaxed);
        let freq = (meta & FREQ_MASK) >> FREQ_SHIFT;
        if freq >= u32::from(FREQ_MAX) {
            return false;
        }
        self.meta
            .store((meta & !FREQ_MASK) | ((freq + 1) << FREQ_SHIFT), Relaxed);
        true
    }

    /// Sets the visited bit unless it is set; takes `&self` as [`Slot::bump_freq`] does.
    pub(crate) fn mark_visited(&self) {
        let meta = self.meta.load(Relaxed);
        if meta & VISITED == 0 {
            self.meta.store(meta | VISITED, Relaxed);
        }
    }

    /// A policy-defined mark (S3-FIFO: promoted after a single hit).
    pub(crate) fn marked(&self) -> bool {
        self.meta.load(Relaxed) & MARK != 0
    }

    pub(crate) fn set_mark(&mut self, on: bool) {
        let meta = self.meta.get_mut();
        *meta = if on { *meta | MARK } else { *meta & !MARK };
    }

    /// Clears the mark under a shared borrow; returns whether it was set.
    pub(crate) fn take_mark(&self) -> bool {
        self.meta.load(Relaxed) & MARK != 0 && self.meta.fetch_and(!MARK, Relaxed) & MARK != 0
    }

    /// A saturating access counter in 0..=`FREQ_MAX`.
    pub(crate) fn freq(&self) -> u8 {
        ((self.meta.load(Relaxed) & FREQ_MASK) >> FREQ_SHIFT) as u8
    }

    pub(crate) fn set_freq(&mut self, freq: u8) {
        let freq = u32::from(freq.min(FREQ_MAX));
        let meta = self.meta.get_mut();
        *meta = (*meta & !FREQ_MASK) | (freq << FREQ_SHIFT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_stays_16_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 16);
    }

    #[test]
    fn policy_bits_leave_the_key_length_alone() {
        let mut slot = Slot::occupied(5, crate::MAX_KEY_LEN, true);
        slot.set_queue(2);
        slot.set_freq(9);
        slot.set_mark(true);
        slot.set_visited(true);
        assert!(!slot.bump_freq() && slot.take_mark());
        assert_eq!(
            (slot.key_len(), slot.queue(), slot.freq(), slot.has_ttl()),
            (crate::MAX_KEY_LEN, 2, FREQ_MAX, true)
        );
        slot.reset_policy();
        assert_eq!(
            (slot.key_len(), slot.queue(), slot.freq(), slot.visited()),
            (crate::MAX_KEY_LEN, 0, 0, false)
        );
        slot.rewrite(9, false);
        assert!(!slot.has_ttl() && slot.is_occupied() && slot.loc == 9);
    }
}
