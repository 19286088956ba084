//! S3-FIFO (Yang et al., SOSP 2023): a small FIFO that filters one-hit wonders, a main FIFO
//! with two-bit frequency "second chances", and a ghost FIFO of recently evicted hashes that
//! sends returning keys straight to main.

use super::{Weigher, ghost::Ghost, list::List};
use crate::slot::{FREQ_MAX, Slot};

const SMALL: u8 = 0;
const MAIN: u8 = 1;
/// Share of the capacity given to the small queue.
const SMALL_SHARE: f64 = 0.10;
/// An entry leaving the small queue moves to main when it was hit at least this often.
const PROMOTE_AT: u8 = 1;

#[derive(Debug)]
pub(crate) struct S3Fifo {
    small: List,
    main: List,
    ghost: Ghost,
    small_target: u64,
    weigher: Weigher,
}

impl S3Fifo {
    pub(crate) fn new(weigher: Weigher, capacity: u64) -> Self {
        let small_target = ((capacity as f64 * SMALL_SHARE) as u64).max(1);
        Self {
            small: List::default(),
            main: List::default(),
            ghost: Ghost::default(),
            small_target,
            weigher,
        }
    }

    pub(crate) fn on_insert(&mut self, slots: &mut [Slot], idx: u32, hash: u64) {
        let weight = self.weigher.weigh(&slots[idx as usize]);
        let slot = &mut slots[idx as usize];
        slot.set_freq(0);
        if self.ghost.take(hash) {
            slot.set_queue(MAIN);
            self.main.push_head(slots, idx, weight);
        } else {
            slot.set_queue(SMALL);
            self.small.push_head(slots, idx, weight);
        }
    }

    pub(crate) fn on_hit(&mut self, slots: &mut [Slot], idx: u32) {
        let slot = &mut slots[idx as usize];
        slot.set_freq(slot.freq().saturating_add(1).min(FREQ_MAX));
    }

    pub(crate) fn on_reweigh(&mut self, slots: &[Slot], idx: u32, old: u64, new: u64) {
        let list = self.list_of(&slots[idx as usize]);
        list.weight = list.weight - old + new;
    }

    pub(crate) fn on_remove(&mut self, slots: &mut [Slot], idx: u32, hash: u64, evicted: bool) {
        let weight = self.weigher.weigh(&slots[idx as usize]);
        let in_small = slots[idx as usize].queue() == SMALL;
        self.list_of(&slots[idx as usize])
            .unlink(slots, idx, weight);
        if evicted && in_small {
            let capacity = self.main.len + self.small.len;
            self.ghost.insert(hash, capacity.max(1));
        }
    }

    pub(crate) fn victim(&mut self, slots: &mut [Slot]) -> Option<u32> {
        loop {
            if self.small.is_empty() && self.main.is_empty() {
                return None;
            }
            if self.small.weight >= self.small_target || self.main.is_empty() {
                let tail = self.small.tail;
                if slots[tail as usize].freq() < PROMOTE_AT {
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
                let weight = self.weigher.weigh(&slots[tail as usize]);
                self.main.move_to_head(slots, tail, weight);
            }
        }
    }

    pub(crate) fn on_pinned(&mut self, slots: &mut [Slot], idx: u32) {
        if slots[idx as usize].queue() == SMALL {
            self.promote(slots, idx);
        } else {
            let weight = self.weigher.weigh(&slots[idx as usize]);
            self.main.move_to_head(slots, idx, weight);
        }
    }

    fn promote(&mut self, slots: &mut [Slot], idx: u32) {
        let weight = self.weigher.weigh(&slots[idx as usize]);
        self.small.unlink(slots, idx, weight);
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
