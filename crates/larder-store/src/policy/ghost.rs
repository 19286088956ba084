//! A bounded FIFO of key hashes: the "ghost" queue of recently evicted keys.
//!
//! Only hashes are kept (8 bytes each, plus the index), never keys or values.

use std::collections::VecDeque;

use hashbrown::HashMap;

#[derive(Debug, Default)]
pub(crate) struct Ghost {
    order: VecDeque<u64>,
    /// How many live records each hash has in `order`, and the tag of its newest.
    present: HashMap<u64, (u32, u8), foldhash::fast::FixedState>,
}

impl Ghost {
    /// Remembers `hash` with a small `tag`, forgetting the oldest hashes beyond `capacity`.
    pub(crate) fn insert(&mut self, hash: u64, tag: u8, capacity: usize) {
        if capacity == 0 {
            return;
        }
        self.order.push_back(hash);
        let record = self.present.entry(hash).or_insert((0, tag));
        *record = (record.0 + 1, tag);
        while self.order.len() > capacity {
            if let Some(old) = self.order.pop_front() {
                self.forget_one(old);
            }
        }
    }

    /// The tag of `hash` if it is remembered; a found hash is consumed (it stays in the FIFO
    /// order only as a dead record that is skipped when it ages out).
    pub(crate) fn take(&mut self, hash: u64) -> Option<u8> {
        match self.present.get_mut(&hash) {
            Some((count, tag)) if *count > 0 => {
                *count = 0;
                Some(*tag)
            }
            _ => None,
        }
    }

    fn forget_one(&mut self, hash: u64) {
        if let Some((count, _)) = self.present.get_mut(&hash) {
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
            ghost.insert(hash, hash as u8 % 2, 3);
        }
        assert_eq!((ghost.take(0), ghost.take(1)), (None, None));
        assert_eq!(ghost.take(4), Some(0));
        assert_eq!(ghost.take(4), None, "a taken hash is consumed");
        assert_eq!(ghost.take(3), Some(1));
    }
}
