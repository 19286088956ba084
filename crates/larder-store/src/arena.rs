//! Where a shard keeps its entries' bytes: fixed-size segments the shard owns, written by
//! bumping a pointer, with space freed by removals taken back by sliding a segment's live
//! entries together; and a separate allocation for each entry too large for a segment.
//!
//! An entry is laid out `[version u64 LE][value length u32 LE][slot u32 LE]`, then
//! `[expiry u64 LE]` if it has one, then the key and the value, packed without padding. A
//! removed entry's bytes become a dead chunk that records its own length, so a segment can be
//! walked from its start. Segments, and the allocations of entries over 64 KiB, are larger
//! than the blocks allocators hand out from shared pages (mimalloc 2.3 keeps blocks up to
//! 64 KiB in 512 KiB pages of one size class), so freeing one gives its memory back to the
//! operating system rather than leaving a hole between blocks that are still in use.

use crate::slot::NIL;

/// Bytes in one segment.
pub(crate) const SEGMENT: usize = 1 << OFFSET_BITS;
/// Entries longer than this get an allocation of their own: a quarter segment, so that a
/// segment with room for one is found without sliding much.
pub(crate) const LARGE: usize = SEGMENT / 4;
/// Bytes of the header before the optional expiry, the key and the value.
pub(crate) const HEADER: usize = 16;
/// Bytes of the optional expiry.
pub(crate) const EXPIRY: usize = 8;
/// A location's low bits are the offset in its segment...
const OFFSET_BITS: u32 = 18;
/// ...its top bit marks an entry with an allocation of its own (the rest is its index)...
const LARGE_BIT: u32 = 1 << 31;
/// ...and the bits between number the segment.
pub(crate) const MAX_SEGMENTS: usize = 1 << (31 - OFFSET_BITS);
/// The slot field of a dead chunk; its length is kept where a value length would be.
const DEAD: u32 = u32::MAX;

/// The bytes an entry takes in the arena.
pub(crate) fn entry_len(key_len: usize, value_len: usize, has_ttl: bool) -> usize {
    HEADER + if has_ttl { EXPIRY } else { 0 } + key_len + value_len
}

/// What an entry of `len` bytes really costs in memory: its bytes in a segment, or, for an
/// allocation of its own, whole 4 KiB pages (the unit in which such an allocation is resident).
pub(crate) fn charged_len(len: usize) -> u64 {
    if len > LARGE {
        len.next_multiple_of(4096) as u64
    } else {
        len as u64
    }
}

#[derive(Debug)]
struct Segment {
    /// Empty while the segment is released.
    data: Box<[u8]>,
    /// Bytes written from the start (live and dead).
    top: usize,
    /// Bytes of live entries.
    live: usize,
}

/// One shard's entry bytes.
#[derive(Debug, Default)]
pub(crate) struct Arena {
    segments: Vec<Segment>,
    /// Released segments, for reuse of their numbers.
    released: Vec<u32>,
    /// The segment new entries are bumped into, or `NIL`.
    head: u32,
    large: Vec<Box<[u8]>>,
    large_free: Vec<u32>,
    /// Live bytes in segments, and bytes held by segments and large allocations.
    live: usize,
    held: usize,
}

/// A chunk met while walking a segment: live (with its slot) or dead.
pub(crate) enum Chunk {
    Live { slot: u32, value_len: usize },
    Dead(usize),
}

impl Arena {
    pub(crate) fn new() -> Self {
        Self {
            head: NIL,
            ..Self::default()
        }
    }

    /// Bytes the arena holds (segments in use and large allocations).
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    pub(crate) fn is_large(loc: u32) -> bool {
        loc != NIL && loc & LARGE_BIT != 0
    }

    pub(crate) fn get(&self, loc: u32, len: usize) -> &[u8] {
        if Self::is_large(loc) {
            &self.large[(loc & !LARGE_BIT) as usize][..len]
        } else {
            let (seg, off) = split(loc);
            &self.segments[seg].data[off..off + len]
        }
    }

    pub(crate) fn get_mut(&mut self, loc: u32, len: usize) -> &mut [u8] {
        if Self::is_large(loc) {
            &mut self.large[(loc & !LARGE_BIT) as usize][..len]
        } else {
            let (seg, off) = split(loc);
            &mut self.segments[seg].data[off..off + len]
        }
    }

    /// An allocation of its own for an entry of `len > LARGE` bytes.
    pub(crate) fn alloc_large(&mut self, len: usize) -> u32 {
        let data = vec![0; len].into_boxed_slice();
        self.held += len.next_multiple_of(4096);
        match self.large_free.pop() {
            Some(idx) => {
                self.large[idx as usize] = data;
                LARGE_BIT | idx
            }
            None => {
                self.large.push(data);
                LARGE_BIT | (self.large.len() - 1) as u32
            }
        }
    }

    /// Room for `len` bytes at the head, if it has it.
    pub(crate) fn bump(&mut self, len: usize) -> Option<u32> {
        let head = self.segments.get_mut(self.head as usize)?;
        if head.data.len() - head.top < len {
            return None;
        }
        let off = head.top;
        head.top += len;
        head.live += len;
        self.live += len;
        Some(join(self.head as usize, off))
    }

    /// Whether a new segment may be opened: only while the bytes segments hold beyond the live
    /// ones (dead chunks, and the unused ends of full segments) are within `slack`.
    pub(crate) fn may_grow(&self, slack: usize) -> bool {
        let segments = self.segments.len() - self.released.len();
        segments < MAX_SEGMENTS && self.dead() <= slack
    }

    /// Opens a fresh segment and makes it the head.
    pub(crate) fn grow(&mut self) {
        let data = vec![0; SEGMENT].into_boxed_slice();
        self.held += SEGMENT;
        let seg = Segment {
            data,
            top: 0,
            live: 0,
        };
        self.head = match self.released.pop() {
            Some(idx) => {
                self.segments[idx as usize] = seg;
                idx
            }
            None => {
                self.segments.push(seg);
                (self.segments.len() - 1) as u32
            }
        };
    }

    /// The segment (the head included) with the most bytes that sliding would free, and how
    /// many.
    pub(crate) fn emptiest(&self) -> Option<(u32, usize)> {
        self.segments
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.data.is_empty())
            .map(|(i, s)| (i as u32, s.data.len() - s.live))
            .max_by_key(|&(_, free)| free)
    }

    /// The segment (not the head) with the fewest live bytes, and how many.
    pub(crate) fn sparsest(&self) -> Option<(u32, usize)> {
        self.segments
            .iter()
            .enumerate()
            .filter(|(i, s)| *i as u32 != self.head && !s.data.is_empty())
            .map(|(i, s)| (i as u32, s.live))
            .min_by_key(|&(_, live)| live)
    }

    pub(crate) fn set_head(&mut self, seg: u32) {
        self.head = seg;
    }

    /// Bytes held by segments beyond their live bytes.
    pub(crate) fn dead(&self) -> usize {
        (self.segments.len() - self.released.len()) * SEGMENT - self.live
    }

    /// Marks the `len` bytes at `loc` free. A segment left with nothing live is released,
    /// unless it is the head, which just starts over.
    pub(crate) fn free(&mut self, loc: u32, len: usize) {
        if Self::is_large(loc) {
            let idx = loc & !LARGE_BIT;
            self.large[idx as usize] = Box::default();
            self.large_free.push(idx);
            self.held -= len.next_multiple_of(4096);
            return;
        }
        let (seg, off) = split(loc);
        self.live -= len;
        let segment = &mut self.segments[seg];
        segment.live -= len;
        if segment.live == 0 {
            if seg as u32 == self.head {
                segment.top = 0;
            } else {
                *segment = Segment {
                    data: Box::default(),
                    top: 0,
                    live: 0,
                };
                self.released.push(seg as u32);
                self.held -= SEGMENT;
            }
            return;
        }
        if off + len == segment.top {
            segment.top = off;
            return;
        }
        let chunk = &mut segment.data[off..off + len];
        chunk[8..12].copy_from_slice(&(len as u32).to_le_bytes());
        chunk[12..16].copy_from_slice(&DEAD.to_le_bytes());
    }

    /// The chunks of segment `seg` in order, from offset `from`: what is at `from`.
    pub(crate) fn chunk_at(&self, seg: u32, from: usize) -> Option<Chunk> {
        let segment = &self.segments[seg as usize];
        if from >= segment.top {
            return None;
        }
        let header = &segment.data[from..from + HEADER];
        let word = |at: usize| {
            let mut bytes = [0; 4];
            bytes.copy_from_slice(&header[at..at + 4]);
            u32::from_le_bytes(bytes)
        };
        Some(match word(12) {
            DEAD => Chunk::Dead(word(8) as usize),
            slot => Chunk::Live {
                slot,
                value_len: word(8) as usize,
            },
        })
    }

    /// Moves `len` bytes at `from` to `to` within segment `seg` (`to <= from`).
    pub(crate) fn slide(&mut self, seg: u32, from: usize, to: usize, len: usize) {
        self.segments[seg as usize]
            .data
            .copy_within(from..from + len, to);
    }

    /// Ends a slide of segment `seg`: everything from `top` on is free.
    pub(crate) fn set_top(&mut self, seg: u32, top: usize) {
        self.segments[seg as usize].top = top;
    }

    /// Copies an entry to a new location (both in the arena).
    pub(crate) fn copy(&mut self, from: u32, to: u32, len: usize) {
        let bytes = self.get(from, len).to_vec();
        self.get_mut(to, len).copy_from_slice(&bytes);
    }
}

pub(crate) fn join(seg: usize, off: usize) -> u32 {
    ((seg as u32) << OFFSET_BITS) | off as u32
}

fn split(loc: u32) -> (usize, usize) {
    (
        (loc >> OFFSET_BITS) as usize,
        (loc & ((1 << OFFSET_BITS) - 1)) as usize,
    )
}
