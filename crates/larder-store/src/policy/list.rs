//! Intrusive doubly linked lists threaded through the slab's `prev`/`next` fields.
//!
//! Every policy keeps its queues as `List`s; the head is the newest (most recently used or
//! inserted) end, the tail the oldest. Each list also tracks the total weight of its members so
//! policies can size their queues in the store's capacity unit.

use crate::slab::Slab;
use crate::slot::NIL;

/// One queue: head (newest), tail (oldest), member count and total weight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct List {
    pub(crate) head: u32,
    pub(crate) tail: u32,
    pub(crate) len: usize,
    pub(crate) weight: u64,
}

impl Default for List {
    fn default() -> Self {
        Self {
            head: NIL,
            tail: NIL,
            len: 0,
            weight: 0,
        }
    }
}

impl List {
    /// Links `idx` at the head.
    pub(crate) fn push_head(&mut self, slots: &mut Slab, idx: u32, weight: u64) {
        let slot = &mut slots[idx as usize];
        slot.prev = NIL;
        slot.next = self.head;
        if self.head == NIL {
            self.tail = idx;
        } else {
            slots[self.head as usize].prev = idx;
        }
        self.head = idx;
        self.len += 1;
        self.weight += weight;
    }

    /// Unlinks `idx`, which must be a member.
    pub(crate) fn unlink(&mut self, slots: &mut Slab, idx: u32, weight: u64) {
        let (prev, next) = {
            let slot = &slots[idx as usize];
            (slot.prev, slot.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            slots[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            slots[next as usize].prev = prev;
        }
        let slot = &mut slots[idx as usize];
        slot.prev = NIL;
        slot.next = NIL;
        self.len -= 1;
        self.weight -= weight;
    }

    /// Moves a member to the head.
    pub(crate) fn move_to_head(&mut self, slots: &mut Slab, idx: u32, weight: u64) {
        if self.head != idx {
            self.unlink(slots, idx, weight);
            self.push_head(slots, idx, weight);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(list: &List, slots: &Slab) -> Vec<u32> {
        let mut out = Vec::new();
        let mut at = list.head;
        while at != NIL {
            out.push(at);
            at = slots[at as usize].next;
        }
        out
    }

    #[test]
    fn push_unlink_and_move_keep_links_and_weights() {
        let mut slots = Slab::hashes_only();
        for hash in 0..4 {
            assert_eq!(slots.insert_hash(hash), hash as u32);
        }
        let mut list = List::default();
        for idx in 0..4 {
            list.push_head(&mut slots, idx, u64::from(idx) + 1);
        }
        assert_eq!(order(&list, &slots), [3, 2, 1, 0]);
        list.unlink(&mut slots, 2, 3);
        list.move_to_head(&mut slots, 0, 1);
        assert_eq!(order(&list, &slots), [0, 3, 1]);
        assert_eq!((list.tail, list.len, list.weight), (1, 3, 7));
        list.unlink(&mut slots, 1, 2);
        list.unlink(&mut slots, 0, 1);
        list.unlink(&mut slots, 3, 4);
        assert!(list.is_empty());
        assert_eq!((list.head, list.tail, list.weight), (NIL, NIL, 0));
    }
}
