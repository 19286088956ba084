//! Least recently used: one list, hits move to the head, the tail is evicted.

use super::{Weigher, list::List};
use crate::slab::Slab;

#[derive(Debug)]
pub(crate) struct Lru {
    list: List,
    weigher: Weigher,
}

impl Lru {
    pub(crate) fn new(weigher: Weigher) -> Self {
        Self {
            list: List::default(),
            weigher,
        }
    }

    pub(crate) fn on_insert(&mut self, slots: &mut Slab, idx: u32) {
        let weight = self.weigher.weigh(slots, idx);
        self.list.push_head(slots, idx, weight);
    }

    pub(crate) fn on_hit(&mut self, slots: &mut Slab, idx: u32) {
        let weight = self.weigher.weigh(slots, idx);
        self.list.move_to_head(slots, idx, weight);
    }

    pub(crate) fn on_reweigh(&mut self, old: u64, new: u64) {
        self.list.weight = self.list.weight - old + new;
    }

    pub(crate) fn on_remove(&mut self, slots: &mut Slab, idx: u32) {
        let weight = self.weigher.weigh(slots, idx);
        self.list.unlink(slots, idx, weight);
    }

    pub(crate) fn victim(&mut self) -> Option<u32> {
        (!self.list.is_empty()).then_some(self.list.tail)
    }

    pub(crate) fn on_pinned(&mut self, slots: &mut Slab, idx: u32) {
        self.on_hit(slots, idx);
    }
}
