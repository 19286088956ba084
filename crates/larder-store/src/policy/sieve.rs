//! SIEVE (Zhang et al., NSDI 2024): one FIFO list, a visited bit set on hit and a hand that
//! walks from the oldest entry towards the newest, clearing visited bits, and evicts the first
//! unvisited entry it meets. Hits never move entries, so a hit only sets one bit.

use super::{Weigher, list::List};
use crate::slab::Slab;
use crate::slot::NIL;

#[derive(Debug)]
pub(crate) struct Sieve {
    list: List,
    hand: u32,
    weigher: Weigher,
}

impl Sieve {
    pub(crate) fn new(weigher: Weigher) -> Self {
        Self {
            list: List::default(),
            hand: NIL,
            weigher,
        }
    }

    pub(crate) fn on_insert(&mut self, slots: &mut Slab, idx: u32) {
        slots[idx as usize].set_visited(false);
        let weight = self.weigher.weigh(slots, idx);
        self.list.push_head(slots, idx, weight);
    }

    /// A hit sets one bit and needs only the shard's shared lock.
    pub(crate) fn on_hit(&self, slots: &Slab, idx: u32) {
        slots[idx as usize].mark_visited();
    }

    pub(crate) fn on_reweigh(&mut self, old: u64, new: u64) {
        self.list.weight = self.list.weight - old + new;
    }

    pub(crate) fn on_remove(&mut self, slots: &mut Slab, idx: u32) {
        if self.hand == idx {
            self.hand = slots[idx as usize].prev;
        }
        let weight = self.weigher.weigh(slots, idx);
        self.list.unlink(slots, idx, weight);
    }

    pub(crate) fn victim(&mut self, slots: &mut Slab) -> Option<u32> {
        if self.list.is_empty() {
            return None;
        }
        let mut at = if self.hand == NIL {
            self.list.tail
        } else {
            self.hand
        };
        while slots[at as usize].visited() {
            slots[at as usize].set_visited(false);
            at = slots[at as usize].prev;
            if at == NIL {
                at = self.list.tail;
            }
        }
        self.hand = at;
        Some(at)
    }

    pub(crate) fn on_pinned(&mut self, slots: &mut Slab, idx: u32) {
        // Step past the pinned entry; it is looked at again on the hand's next lap.
        let prev = slots[idx as usize].prev;
        self.hand = if prev == NIL { self.list.tail } else { prev };
    }
}
