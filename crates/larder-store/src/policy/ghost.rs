//! A bounded FIFO of key hashes: the "ghost" queue of recently evicted keys.
//!
//! Only hashes are kept (8 bytes each, plus the index), never keys or values.

use std::collections::VecDeque;

use hashbrown::HashMap;

#[derive(Debug, Default)]
pub(crate) struct Ghost {
    order: VecDeque<u64>,
    present: HashMap<u64, u32, foldhash::fast::FixedState>,
}

impl Ghost {
    /// Remembers `hash`, forgetting the oldest hashes beyond `capacity`.
    pub(crate) fn insert(&mut self, hash: u64, capacity: usize) {
        if capacity == 0 {
            return;
        }
        self.order.push_back(hash);
        *self.present.entry(hash).or_insert(0) += 1;
        while self.order.len() > capacity {
            if let Some(old) = self.order.pop_front() {
                self.forget_one(old);
            }
        }
    }

    /// Whether `hash` is remembered; a found hash is consumed (stays in the FIFO order only as
    /// a dead record that is skipped when it ages out).
    pub(crate) fn take(&mut self, hash: u64) -> bool {
        match self.present.get_mut(&hash) {
            Some(count) if *count > 0 => {
                *count = 0;
                true
            }
            _ => false,
        }
    }

    fn forget_one(&mut self, hash: u64) {
        if let Some(count) = self.present.get_mut(&hash) {
            if *count <= 1 {
                self.present.remove(&hash);
            } else {
                *count -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_newest_hashes_only_and_consumes_on_take() {
        let mut ghost = Ghost::default();
        for hash in 0..5 {
            ghost.insert(hash, 3);
        }
        assert!(!ghost.take(0) && !ghost.take(1));
        assert!(ghost.take(4));
        assert!(!ghost.take(4), "a taken hash is consumed");
        assert!(ghost.take(2));
    }
}
