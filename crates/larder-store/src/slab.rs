//! The shard's slot storage: fixed-size chunks instead of one growing vector, so growth never
//! copies slots or leaves a freed half-size array behind, and the slack is at most one chunk.

use std::ops::{Index, IndexMut};

use crate::slot::Slot;

const CHUNK_BITS: u32 = 10;
const CHUNK: usize = 1 << CHUNK_BITS;

#[derive(Debug, Default)]
pub(crate) struct Slab {
    chunks: Vec<Vec<Slot>>,
    len: usize,
}

impl Slab {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends a slot; returns its index.
    pub(crate) fn push(&mut self, slot: Slot) -> usize {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(slot);
        }
        self.len += 1;
        self.len - 1
    }

    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.chunks.iter().flatten()
    }
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
    use crate::slot::NIL;

    #[test]
    fn indexes_across_chunks() {
        let mut slab = Slab::default();
        for i in 0..(3 * CHUNK + 5) {
            assert_eq!(slab.push(Slot::free(i as u32)), i);
        }
        assert_eq!(slab.len(), 3 * CHUNK + 5);
        assert_eq!(slab[CHUNK + 7].next, (CHUNK + 7) as u32);
        slab[2 * CHUNK].next = NIL;
        assert_eq!(slab[2 * CHUNK].next, NIL);
        assert_eq!(slab.iter().count(), slab.len());
    }
}
