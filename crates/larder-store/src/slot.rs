//! The per-entry record kept in a shard's slab, and its byte layout.
//!
//! An occupied slot owns one heap allocation laid out as
//! `[version: u64 LE][expires_at: u64 LE, only if the entry has a TTL][key][value]`,
//! so an entry costs one allocation and the fixed part of a slot stays at 32 bytes.
//! `prev`/`next` thread the slot through one intrusive list of the eviction policy; a free slot
//! uses `next` for the shard's free list.

use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;

/// Index of "no slot" in the intrusive lists.
pub(crate) const NIL: u32 = u32::MAX;

const VERSION_LEN: usize = 8;
const EXPIRY_LEN: usize = 8;

const OCCUPIED: u32 = 1 << 0;
const HAS_TTL: u32 = 1 << 1;
const VISITED: u32 = 1 << 2;
const QUEUE_SHIFT: u32 = 3;
const QUEUE_MASK: u32 = 0b11 << QUEUE_SHIFT;
const FREQ_SHIFT: u32 = 5;
const FREQ_MASK: u32 = 0b11 << FREQ_SHIFT;
const MARK: u32 = 1 << 7;
/// The largest frequency a slot's two-bit counter holds.
pub(crate) const FREQ_MAX: u8 = 3;

/// One entry of a shard's slab.
#[derive(Debug)]
pub(crate) struct Slot {
    data: Box<[u8]>,
    pub(crate) prev: u32,
    pub(crate) next: u32,
    klen: u32,
    meta: AtomicU32,
}

impl Slot {
    /// An unoccupied slot linked into the free list before `next`.
    pub(crate) fn free(next: u32) -> Self {
        Self {
            data: Box::default(),
            prev: NIL,
            next,
            klen: 0,
            meta: AtomicU32::new(0),
        }
    }

    /// An occupied slot holding `key`/`value` (not yet in any policy list).
    pub(crate) fn occupied(
        key: &[u8],
        value: &[u8],
        version: u64,
        expires_at: Option<u64>,
    ) -> Self {
        let mut slot = Self {
            data: Box::default(),
            prev: NIL,
            next: NIL,
            klen: 0,
            meta: AtomicU32::new(OCCUPIED),
        };
        slot.write(key, value, version, expires_at);
        slot
    }

    /// Replaces the contents, keeping the policy state (list links, queue, frequency).
    pub(crate) fn write(
        &mut self,
        key: &[u8],
        value: &[u8],
        version: u64,
        expires_at: Option<u64>,
    ) {
        let head = VERSION_LEN + if expires_at.is_some() { EXPIRY_LEN } else { 0 };
        let mut data = Vec::with_capacity(head + key.len() + value.len());
        data.extend_from_slice(&version.to_le_bytes());
        if let Some(at) = expires_at {
            data.extend_from_slice(&at.to_le_bytes());
            *self.meta.get_mut() |= HAS_TTL;
        } else {
            *self.meta.get_mut() &= !HAS_TTL;
        }
        data.extend_from_slice(key);
        data.extend_from_slice(value);
        self.data = data.into_boxed_slice();
        // Keys are bounded by `MAX_KEY_LEN`, which fits in u32.
        self.klen = key.len() as u32;
    }

    /// Forgets every policy's state (links, queue, frequency, marks), keeping the entry; for
    /// handing the slot to a freshly built policy.
    pub(crate) fn reset_policy(&mut self) {
        self.prev = NIL;
        self.next = NIL;
        *self.meta.get_mut() &= OCCUPIED | HAS_TTL;
    }

    /// Empties the slot and links it into the free list before `next`.
    pub(crate) fn release(&mut self, next: u32) {
        *self = Self::free(next);
    }

    pub(crate) fn is_occupied(&self) -> bool {
        self.meta.load(Relaxed) & OCCUPIED != 0
    }

    fn head_len(&self) -> usize {
        VERSION_LEN + if self.has_ttl() { EXPIRY_LEN } else { 0 }
    }

    pub(crate) fn key(&self) -> &[u8] {
        let start = self.head_len();
        &self.data[start..start + self.klen as usize]
    }

    pub(crate) fn value(&self) -> &[u8] {
        &self.data[self.head_len() + self.klen as usize..]
    }

    /// Whether the slot holds `key`. Short keys are compared in registers: a call to `memcmp`
    /// costs more than the comparison itself for the typical key.
    #[inline]
    pub(crate) fn key_is(&self, key: &[u8]) -> bool {
        let mine = self.key();
        if mine.len() != key.len() {
            return false;
        }
        if key.len() <= 16 {
            return short_eq(mine, key);
        }
        mine == key
    }

    pub(crate) fn key_len(&self) -> usize {
        self.klen as usize
    }

    pub(crate) fn value_len(&self) -> usize {
        self.data.len() - self.head_len() - self.klen as usize
    }

    pub(crate) fn version(&self) -> u64 {
        read_u64(&self.data, 0)
    }

    pub(crate) fn has_ttl(&self) -> bool {
        self.meta.load(Relaxed) & HAS_TTL != 0
    }

    /// The absolute expiry in Unix milliseconds, if the entry has one.
    pub(crate) fn expires_at(&self) -> Option<u64> {
        self.has_ttl().then(|| read_u64(&self.data, VERSION_LEN))
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

/// Equality of two slices of the same length, at most 16 bytes, without a library call.
#[inline]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n >= 8 {
        // Two overlapping 8-byte words cover 8..=16 bytes.
        read_u64(a, 0) == read_u64(b, 0) && read_u64(a, n - 8) == read_u64(b, n - 8)
    } else if n >= 4 {
        read_u32(a, 0) == read_u32(b, 0) && read_u32(a, n - 4) == read_u32(b, n - 4)
    } else {
        a.iter().zip(b).all(|(x, y)| x == y)
    }
}

fn read_u32(data: &[u8], at: usize) -> u32 {
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&data[at..at + 4]);
    u32::from_le_bytes(bytes)
}

fn read_u64(data: &[u8], at: usize) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&data[at..at + 8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_stays_32_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
    }

    #[test]
    fn round_trips_fields_with_and_without_ttl() {
        let mut slot = Slot::occupied(b"key", b"value", 7, None);
        assert_eq!(
            (slot.key(), slot.value(), slot.version()),
            (&b"key"[..], &b"value"[..], 7)
        );
        assert_eq!(slot.expires_at(), None);
        slot.set_queue(2);
        slot.set_freq(9);
        slot.write(b"key", b"longer value", 8, Some(1_234));
        assert_eq!(slot.value(), b"longer value");
        assert_eq!(slot.expires_at(), Some(1_234));
        assert_eq!(
            (slot.queue(), slot.freq(), slot.value_len()),
            (2, FREQ_MAX, 12)
        );
        slot.write(b"key", b"", 9, None);
        assert_eq!((slot.value(), slot.expires_at()), (&b""[..], None));
    }

    #[test]
    fn key_is_compares_every_length() {
        let keys: Vec<Vec<u8>> = (0..40)
            .map(|n| (0..n).map(|i| (i as u8).wrapping_mul(7)).collect())
            .collect();
        for key in &keys {
            let slot = Slot::occupied(key, b"v", 1, None);
            assert!(slot.key_is(key));
            for (i, _) in key.iter().enumerate() {
                let mut other = key.clone();
                other[i] ^= 1;
                assert!(!slot.key_is(&other), "len {} differs at {i}", key.len());
            }
            assert!(!slot.key_is(&[key.as_slice(), b"x"].concat()));
        }
    }

    #[test]
    fn release_clears_everything() {
        let mut slot = Slot::occupied(b"k", b"v", 1, Some(5));
        slot.release(3);
        assert!(!slot.is_occupied());
        assert_eq!((slot.next, slot.key_len()), (3, 0));
    }
}
