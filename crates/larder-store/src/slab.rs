//! The shard's entries: 16-byte slots in fixed-size chunks (growth never copies slots), and
//! the arena that holds their bytes. A freed slot is reused lowest number first, so that
//! after the number of entries falls the top chunks empty out and are given back.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::{Index, IndexMut};

use crate::arena::{self, Arena, Chunk, EXPIRY, HEADER, LARGE, SEGMENT};
use crate::slot::{NIL, Slot};

const CHUNK_BITS: u32 = 10;
const CHUNK: usize = 1 << CHUNK_BITS;

#[derive(Debug)]
pub(crate) struct Slab {
    chunks: Vec<Vec<Slot>>,
    /// Occupied slots per chunk, so an empty top chunk can be given back.
    occupied: Vec<u32>,
    len: usize,
    /// Free slot numbers; numbers at or past `len` are stale and skipped.
    free: BinaryHeap<Reverse<u32>>,
    arena: Arena,
    /// For a slab of key hashes only (a policy's simulation): each slot's key, no arena.
    hashes: Option<Vec<[u8; 8]>>,
}

impl Default for Slab {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            occupied: Vec::new(),
            len: 0,
            free: BinaryHeap::new(),
            arena: Arena::new(),
            hashes: None,
        }
    }
}

impl Slab {
    /// A slab whose keys are 8-byte hashes kept beside the slots, without an arena.
    pub(crate) fn hashes_only() -> Self {
        Self {
            hashes: Some(Vec::new()),
            ..Self::default()
        }
    }

    /// Stores a key hash in a [`Slab::hashes_only`] slab; returns its slot.
    pub(crate) fn insert_hash(&mut self, hash: u64) -> u32 {
        let idx = self.take_slot();
        self[idx as usize] = Slot::occupied(NIL, 8, false);
        if let Some(hashes) = &mut self.hashes {
            hashes.resize(self.len, [0; 8]);
            hashes[idx as usize] = hash.to_le_bytes();
        }
        idx
    }

    /// Slot numbers in use or free: every occupied slot is below this.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Stores an entry; returns its slot, or `None` when the arena has no room for it without
    /// more entries going first.
    pub(crate) fn insert(
        &mut self,
        key: &[u8],
        value: &[u8],
        version: u64,
        expires_at: Option<u64>,
    ) -> Option<u32> {
        let len = arena::entry_len(key.len(), value.len(), expires_at.is_some());
        let loc = self.alloc(len)?;
        let idx = self.take_slot();
        self[idx as usize] = Slot::occupied(loc, key.len(), expires_at.is_some());
        self.write(loc, len, idx, key, value, version, expires_at);
        Some(idx)
    }

    /// Replaces an entry's bytes, keeping its slot and policy state; `false` (and nothing
    /// changed) when the arena has no room for the new bytes.
    pub(crate) fn rewrite(
        &mut self,
        idx: u32,
        value: &[u8],
        version: u64,
        expires_at: Option<u64>,
    ) -> bool {
        let old_len = self.entry_len(idx);
        let old_loc = self[idx as usize].loc;
        let key_len = self[idx as usize].key_len();
        let len = arena::entry_len(key_len, value.len(), expires_at.is_some());
        if len == old_len && self[idx as usize].has_ttl() == expires_at.is_some() {
            // Same shape: the key stays where it is.
            let bytes = self.arena.get_mut(old_loc, len);
            bytes[..8].copy_from_slice(&version.to_le_bytes());
            if let Some(expires_at) = expires_at {
                bytes[HEADER..HEADER + EXPIRY].copy_from_slice(&expires_at.to_le_bytes());
            }
            bytes[len - value.len()..].copy_from_slice(value);
            return true;
        }
        let key = self.key(idx).to_vec();
        let loc = if len == old_len {
            old_loc
        } else {
            // The old bytes stay until the new ones are written: sliding may move them.
            self[idx as usize].loc = NIL;
            let Some(loc) = self.alloc(len) else {
                self[idx as usize].loc = old_loc;
                return false;
            };
            let old_loc = self[idx as usize].loc_or(old_loc);
            self.arena.free(old_loc, old_len);
            loc
        };
        self[idx as usize].rewrite(loc, expires_at.is_some());
        self.write(loc, len, idx, &key, value, version, expires_at);
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        loc: u32,
        len: usize,
        idx: u32,
        key: &[u8],
        value: &[u8],
        version: u64,
        expires_at: Option<u64>,
    ) {
        let bytes = self.arena.get_mut(loc, len);
        bytes[..8].copy_from_slice(&version.to_le_bytes());
        bytes[8..12].copy_from_slice(&(value.len() as u32).to_le_bytes());
        bytes[12..16].copy_from_slice(&idx.to_le_bytes());
        let mut at = HEADER;
        if let Some(expires_at) = expires_at {
            bytes[at..at + EXPIRY].copy_from_slice(&expires_at.to_le_bytes());
            at += EXPIRY;
        }
        bytes[at..at + key.len()].copy_from_slice(key);
        bytes[at + key.len()..].copy_from_slice(value);
    }

    /// Frees an entry's slot and bytes.
    pub(crate) fn release(&mut self, idx: u32) {
        let len = self.entry_len(idx);
        let loc = self[idx as usize].loc;
        if loc != NIL {
            self.arena.free(loc, len);
        }
        self[idx as usize] = Slot::free();
        self.free.push(Reverse(idx));
        let chunk = idx as usize >> CHUNK_BITS;
        self.occupied[chunk] -= 1;
        while self.occupied.last() == Some(&0) {
            self.occupied.pop();
            self.chunks.pop();
            self.len = self.chunks.len() * CHUNK;
            if let Some(hashes) = &mut self.hashes {
                hashes.truncate(self.len);
            }
        }
        if self.free.len() > 2 * (self.len + CHUNK) {
            let len = self.len as u32;
            self.free.retain(|&Reverse(i)| i < len);
            self.free.shrink_to_fit();
        }
    }

    fn take_slot(&mut self) -> u32 {
        while let Some(Reverse(idx)) = self.free.pop() {
            if (idx as usize) < self.len {
                self.occupied[idx as usize >> CHUNK_BITS] += 1;
                return idx;
            }
        }
        self.chunks
            .push((0..CHUNK).map(|_| Slot::free()).collect::<Vec<_>>());
        self.occupied.push(1);
        let first = self.len as u32;
        self.len += CHUNK;
        self.free.extend((first + 1..self.len as u32).map(Reverse));
        first
    }

    /// Room for `len` bytes: at the head; in a segment slid together when one frees at least
    /// half of itself; in a new segment while the dead bytes stay within the slack; in any
    /// segment slid together that then fits. `None` when none of that works.
    /// A slide updates the `loc` of each entry it moves, through the slot number the entry
    /// records; a slot being rewritten is parked at `NIL` so its caller sees whether it moved.
    fn alloc(&mut self, len: usize) -> Option<u32> {
        if len > LARGE {
            return Some(self.arena.alloc_large(len));
        }
        if let Some(loc) = self.arena.bump(len) {
            return Some(loc);
        }
        // Bytes held beyond the live ones: a sixteenth of the live bytes, at least a segment.
        let slack = SEGMENT.max(self.live_bytes() / 16);
        let emptiest = self.arena.emptiest();
        let slide_first = emptiest.is_some_and(|(_, free)| free >= SEGMENT / 2);
        if !slide_first && self.arena.may_grow(slack) {
            self.arena.grow();
            return self.arena.bump(len);
        }
        let (seg, free) = emptiest?;
        if free < len {
            return None;
        }
        self.slide(seg);
        self.arena.set_head(seg);
        self.arena.bump(len)
    }

    fn live_bytes(&self) -> usize {
        self.arena.held().saturating_sub(self.arena.dead())
    }

    /// Slides segment `seg`'s live entries to its start, updating their slots.
    fn slide(&mut self, seg: u32) {
        let (mut from, mut to) = (0, 0);
        while let Some(chunk) = self.arena.chunk_at(seg, from) {
            match chunk {
                Chunk::Dead(len) => from += len,
                Chunk::Live { slot, value_len } => {
                    let len = self.entry_len_with(slot, value_len);
                    if from != to {
                        self.arena.slide(seg, from, to, len);
                        self[slot as usize].loc = arena::join(seg as usize, to);
                    }
                    from += len;
                    to += len;
                }
            }
        }
        self.arena.set_top(seg, to);
    }

    fn entry_len_with(&self, idx: u32, value_len: usize) -> usize {
        let slot = &self[idx as usize];
        arena::entry_len(slot.key_len(), value_len, slot.has_ttl())
    }

    /// Whether the arena holds many more bytes than its live entries need; then the sparsest
    /// segment's entries are moved out (see [`Slab::evacuate`]).
    pub(crate) fn wants_shrink(&self) -> bool {
        self.arena.dead() > 2 * SEGMENT.max(self.live_bytes() / 16) + SEGMENT
    }

    /// Moves the live entries of the sparsest segment elsewhere so that it is released;
    /// returns the slots of entries that found no room (the caller evicts them). Never opens a
    /// segment.
    pub(crate) fn evacuate(&mut self) -> Vec<u32> {
        let Some((seg, _)) = self.arena.sparsest() else {
            return Vec::new();
        };
        let mut homeless = Vec::new();
        let mut from = 0;
        let mut movers = Vec::new();
        while let Some(chunk) = self.arena.chunk_at(seg, from) {
            match chunk {
                Chunk::Dead(len) => from += len,
                Chunk::Live { slot, value_len } => {
                    let len = self.entry_len_with(slot, value_len);
                    movers.push((slot, len));
                    from += len;
                }
            }
        }
        for (slot, len) in movers {
            let loc = self[slot as usize].loc;
            match self.arena.bump(len) {
                Some(to) => {
                    self.arena.copy(loc, to, len);
                    self.arena.free(loc, len);
                    self[slot as usize].loc = to;
                }
                None => homeless.push(slot),
            }
        }
        homeless
    }

    fn entry_len(&self, idx: u32) -> usize {
        let slot = &self[idx as usize];
        if slot.loc == NIL {
            return 0;
        }
        let header = self.arena.get(slot.loc, HEADER);
        arena::entry_len(slot.key_len(), word(header, 8) as usize, slot.has_ttl())
    }

    /// What the entry is charged in the arena (see [`arena::charged_len`]).
    pub(crate) fn charged_len(&self, idx: u32) -> u64 {
        arena::charged_len(self.entry_len(idx))
    }

    fn key_start(&self, idx: u32) -> usize {
        HEADER
            + if self[idx as usize].has_ttl() {
                EXPIRY
            } else {
                0
            }
    }

    pub(crate) fn key(&self, idx: u32) -> &[u8] {
        if let Some(hashes) = &self.hashes {
            return &hashes[idx as usize];
        }
        let start = self.key_start(idx);
        let slot = &self[idx as usize];
        &self.arena.get(slot.loc, start + slot.key_len())[start..]
    }

    pub(crate) fn value(&self, idx: u32) -> &[u8] {
        let len = self.entry_len(idx);
        let start = self.key_start(idx) + self[idx as usize].key_len();
        &self.arena.get(self[idx as usize].loc, len)[start..]
    }

    pub(crate) fn version(&self, idx: u32) -> u64 {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&self.arena.get(self[idx as usize].loc, 8)[..8]);
        u64::from_le_bytes(bytes)
    }

    /// The absolute expiry in Unix milliseconds, if the entry has one.
    pub(crate) fn expires_at(&self, idx: u32) -> Option<u64> {
        self[idx as usize].has_ttl().then(|| {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(
                &self.arena.get(self[idx as usize].loc, HEADER + EXPIRY)[HEADER..],
            );
            u64::from_le_bytes(bytes)
        })
    }

    /// Whether slot `idx` holds `key`. Short keys are compared in registers: a call to `memcmp`
    /// costs more than the comparison itself for the typical key.
    #[inline]
    pub(crate) fn key_is(&self, idx: u32, key: &[u8]) -> bool {
        if self[idx as usize].key_len() != key.len() {
            return false;
        }
        let mine = self.key(idx);
        if key.len() <= 16 {
            return short_eq(mine, key);
        }
        mine == key
    }
}

impl Slot {
    fn loc_or(&self, other: u32) -> u32 {
        if self.loc == NIL { other } else { self.loc }
    }
}

fn word(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// Equality of two slices of the same length, at most 16 bytes, without a library call.
#[inline]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n >= 8 {
        // Two overlapping 8-byte words cover 8..=16 bytes.
        read_u64(a, 0) == read_u64(b, 0) && read_u64(a, n - 8) == read_u64(b, n - 8)
    } else if n >= 4 {
        word(a, 0) == word(b, 0) && word(a, n - 4) == word(b, n - 4)
    } else {
        a.iter().zip(b).all(|(x, y)| x == y)
    }
}

fn read_u64(data: &[u8], at: usize) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&data[at..at + 8]);
    u64::from_le_bytes(bytes)
}

impl Index<usize> for Slab {
    type Output = Slot;

    #[inline]
    fn index(&self, idx: usize) -> &Slot {
        &self.chunks[idx >> CHUNK_BITS][idx & (CHUNK - 1)]
    }
}

impl IndexMut<usize> for Slab {
    #[inline]
    fn index_mut(&mut self, idx: usize) -> &mut Slot {
        &mut self.chunks[idx >> CHUNK_BITS][idx & (CHUNK - 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(slab: &Slab, idx: u32) -> (Vec<u8>, Vec<u8>, u64, Option<u64>) {
        (
            slab.key(idx).to_vec(),
            slab.value(idx).to_vec(),
            slab.version(idx),
            slab.expires_at(idx),
        )
    }

    #[test]
    fn round_trips_entries_with_and_without_ttl() {
        let mut slab = Slab::default();
        let a = slab.insert(b"key", b"value", 7, None).unwrap();
        let b = slab.insert(b"other", b"", 8, Some(1_234)).unwrap();
        assert_eq!(
            item(&slab, a),
            (b"key".to_vec(), b"value".to_vec(), 7, None)
        );
        assert_eq!(item(&slab, b), (b"other".to_vec(), vec![], 8, Some(1_234)));
        assert!(slab.rewrite(a, b"longer value", 9, Some(5)));
        assert_eq!(
            item(&slab, a),
            (b"key".to_vec(), b"longer value".to_vec(), 9, Some(5))
        );
        assert!(slab.rewrite(a, b"", 10, None));
        assert_eq!(item(&slab, a), (b"key".to_vec(), vec![], 10, None));
        assert_eq!(item(&slab, b).0, b"other");
    }

    #[test]
    fn key_is_compares_every_length() {
        let mut slab = Slab::default();
        for n in 0..40usize {
            let key: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(7)).collect();
            let idx = slab.insert(&key, b"v", 1, None).unwrap();
            assert!(slab.key_is(idx, &key));
            for i in 0..n {
                let mut other = key.clone();
                other[i] ^= 1;
                assert!(!slab.key_is(idx, &other), "len {n} differs at {i}");
            }
            assert!(!slab.key_is(idx, &[key.as_slice(), b"x"].concat()));
        }
    }

    #[test]
    fn sliding_a_segment_keeps_every_live_entry() {
        let mut slab = Slab::default();
        let value = vec![3u8; 1_000];
        let mut live = Vec::new();
        // Fill well past one segment, then free every other entry.
        for i in 0..2_000u32 {
            let idx = slab
                .insert(&i.to_le_bytes(), &value, u64::from(i), None)
                .unwrap();
            live.push((i, idx));
        }
        let (gone, kept): (Vec<_>, Vec<_>) = live.into_iter().partition(|(i, _)| i % 2 == 0);
        for (_, idx) in gone {
            slab.release(idx);
        }
        // New entries must now reuse freed space: the arena may not grow much.
        let held = slab.arena.held();
        for i in 2_000..2_900u32 {
            slab.insert(&i.to_le_bytes(), &value, u64::from(i), None)
                .unwrap();
        }
        assert!(
            slab.arena.held() <= held + SEGMENT,
            "the arena grew instead of sliding"
        );
        for (i, idx) in kept {
            assert_eq!(slab.key(idx), i.to_le_bytes());
            assert_eq!(
                (slab.value(idx), slab.version(idx)),
                (&value[..], u64::from(i))
            );
        }
    }

    #[test]
    fn freed_bytes_beyond_the_slack_are_taken_back_before_growing() {
        let mut slab = Slab::default();
        let mut idx = Vec::new();
        for i in 0..(3 * SEGMENT / 32) as u32 {
            idx.push(slab.insert(&i.to_le_bytes(), &[1; 12], 0, None).unwrap());
        }
        assert_eq!(slab.arena.held(), 3 * SEGMENT);
        // Free two entries in five: more than a segment's worth (the slack) is dead.
        for (n, &i) in idx.iter().enumerate() {
            if n % 5 < 2 {
                slab.release(i);
            }
        }
        for i in 0..(SEGMENT / 32) as u32 {
            assert!(
                slab.insert(&(1_000_000 + i).to_le_bytes(), &[2; 12], 0, None)
                    .is_some()
            );
        }
        // 2.8 segments are live; the dead bytes stay within the slack (one segment) plus the
        // segment being filled.
        assert!(
            slab.arena.dead() <= 2 * SEGMENT,
            "dead {}",
            slab.arena.dead()
        );
        assert!(
            slab.arena.held() <= 4 * SEGMENT,
            "held {}",
            slab.arena.held()
        );
    }

    #[test]
    fn entries_that_do_not_divide_a_segment_still_fill_many() {
        // 148-byte entries leave a few bytes unused at the end of every segment; those must not
        // stop the arena from growing while nothing has been removed.
        let mut slab = Slab::default();
        for i in 0..100_000u32 {
            assert!(
                slab.insert(&i.to_le_bytes(), &[5; 128], 0, None).is_some(),
                "entry {i} found no room"
            );
        }
        assert!(slab.arena.held() < 100_000 * 148 + 2 * SEGMENT);
    }

    #[test]
    fn large_entries_have_their_own_allocation_and_give_it_back() {
        let mut slab = Slab::default();
        let big = vec![9u8; 1 << 20];
        let idx = slab.insert(b"big", &big, 1, None).unwrap();
        assert!(Arena::is_large(slab[idx as usize].loc));
        assert_eq!(slab.value(idx), &big[..]);
        assert_eq!(
            slab.charged_len(idx),
            ((HEADER + 3 + (1 << 20)) as u64).next_multiple_of(4096)
        );
        slab.release(idx);
        assert_eq!(slab.arena.held(), 0);
    }

    #[test]
    fn freed_slots_are_reused_lowest_first_and_empty_top_chunks_go() {
        let mut slab = Slab::hashes_only();
        let slots: Vec<u32> = (0..3 * CHUNK as u64).map(|h| slab.insert_hash(h)).collect();
        assert_eq!(slab.len(), 3 * CHUNK);
        for &idx in &slots[CHUNK..] {
            slab.release(idx);
        }
        assert_eq!(slab.len(), CHUNK, "the two empty top chunks are given back");
        slab.release(5);
        assert_eq!(slab.insert_hash(99), 5);
        assert_eq!(slab.key(5), 99u64.to_le_bytes());
    }
}
