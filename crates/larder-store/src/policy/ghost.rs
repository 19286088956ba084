//! A bounded FIFO of key fingerprints: the "ghost" queue of recently evicted keys.
//!
//! Only 30-bit fingerprints of the key hashes are kept, in a ring (4 bytes each) with an index
//! of ring positions (about 7 bytes each), never keys or values: the ghost of a cache of many
//! small entries must stay small beside them. Two keys share a fingerprint about once in a
//! billion lookups per remembered key, which at worst sends a key to main that had not earned
//! it.

use std::collections::VecDeque;

use hashbrown::HashTable;

/// The fingerprint bit that is always set, so a fingerprint is never 0 (a consumed record).
const PRESENT: u32 = 1 << 1;
/// The fingerprint bit that carries the caller's one-bit tag.
const TAG: u32 = 1;

#[derive(Debug, Default)]
pub(crate) struct Ghost {
    /// Fingerprints (with their tag) in FIFO order; 0 marks a record taken since.
    ring: VecDeque<u32>,
    /// The sequence number of `ring[0]`.
    base: u64,
    /// Sequence numbers (low 32 bits) of the live records, found by fingerprint.
    index: HashTable<u32>,
}

impl Ghost {
    /// Remembers `hash` with a one-bit `tag`, forgetting the oldest hashes beyond `capacity`.
    pub(crate) fn insert(&mut self, hash: u64, tag: u8, capacity: usize) {
        if capacity == 0 {
            return;
        }
        let print = fingerprint(hash);
        self.forget(print);
        let seq = self.base + self.ring.len() as u64;
        self.ring.push_back(print | u32::from(tag & 1));
        let ring = &self.ring;
        let base = self.base;
        self.index
            .insert_unique(spread(print), seq as u32, |&s| spread(ring[pos(base, s)]));
        while self.ring.len() > capacity {
            self.pop_oldest();
        }
        if self.ring.capacity() > 4 * self.ring.len().max(64) {
            self.ring.shrink_to_fit();
            let (ring, base) = (&self.ring, self.base);
            self.index.shrink_to(0, |&s| spread(ring[pos(base, s)]));
        }
    }

    /// The tag of `hash` if it is remembered; a found hash is consumed.
    pub(crate) fn take(&mut self, hash: u64) -> Option<u8> {
        let print = fingerprint(hash);
        let record = self.forget(print)?;
        Some((record & TAG) as u8)
    }

    /// Removes the live record of `print`, returning it.
    fn forget(&mut self, print: u32) -> Option<u32> {
        let (ring, base) = (&self.ring, self.base);
        let entry = self
            .index
            .find_entry(spread(print), |&s| ring[pos(base, s)] & !TAG == print)
            .ok()?;
        let (seq, _) = entry.remove();
        let at = pos(self.base, seq);
        Some(std::mem::take(&mut self.ring[at]))
    }

    fn pop_oldest(&mut self) {
        let Some(record) = self.ring.pop_front() else {
            return;
        };
        let seq = self.base as u32;
        self.base += 1;
        if record != 0
            && let Ok(entry) = self.index.find_entry(spread(record & !TAG), |&s| s == seq)
        {
            entry.remove();
        }
    }
}

fn fingerprint(hash: u64) -> u32 {
    ((hash >> 32) as u32 & !(TAG | PRESENT)) | PRESENT
}

/// The index's hash of a fingerprint (hashbrown takes its top 7 bits as tags).
fn spread(print: u32) -> u64 {
    u64::from(print & !TAG).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Where sequence number `seq` (low 32 bits) sits in a ring starting at `base`.
fn pos(base: u64, seq: u32) -> usize {
    seq.wrapping_sub(base as u32) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u64) -> u64 {
        n << 34
    }

    #[test]
    fn remembers_the_newest_hashes_only_and_consumes_on_take() {
        let mut ghost = Ghost::default();
        for n in 0..5 {
            ghost.insert(hash(n), n as u8 % 2, 3);
        }
        assert_eq!((ghost.take(hash(0)), ghost.take(hash(1))), (None, None));
        assert_eq!(ghost.take(hash(4)), Some(0));
        assert_eq!(ghost.take(hash(4)), None, "a taken hash is consumed");
        assert_eq!(ghost.take(hash(3)), Some(1));
    }

    #[test]
    fn a_hash_remembered_again_moves_to_the_new_end() {
        let mut ghost = Ghost::default();
        ghost.insert(hash(1), 0, 2);
        ghost.insert(hash(2), 0, 2);
        ghost.insert(hash(1), 1, 2);
        ghost.insert(hash(3), 0, 2);
        assert_eq!(ghost.take(hash(2)), None, "2 was the oldest live record");
        assert_eq!(ghost.take(hash(1)), Some(1));
        assert_eq!(ghost.take(hash(3)), Some(0));
    }

    #[test]
    fn shrinks_when_its_capacity_falls() {
        let mut ghost = Ghost::default();
        for n in 0..10_000 {
            ghost.insert(hash(n), 0, 10_000);
        }
        for n in 10_000..10_100 {
            ghost.insert(hash(n), 0, 10);
        }
        assert_eq!(ghost.ring.len(), 10);
        assert!(ghost.ring.capacity() < 1_000 && ghost.index.len() == 10);
        assert_eq!(ghost.take(hash(10_099)), Some(0));
    }
}
