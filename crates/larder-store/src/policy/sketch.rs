//! A count-min sketch of 4-bit counters that estimates how often each key hash was seen
//! recently: the frequency filter of TinyLFU (Einziger, Friedman & Manes, 2017).
//!
//! Counters saturate at 15 and are all halved once `10 × width` increments have been
//! recorded, so the estimate favours recent popularity ("aging").

const SEEDS: [u64; 4] = [
    0x9E37_79B9_7F4A_7C15,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0x85EB_CA77_C2B2_AE63,
];
const RESET_FACTOR: usize = 10;

#[derive(Debug)]
pub(crate) struct Sketch {
    words: Vec<u64>,
    mask: usize,
    additions: usize,
    sample_size: usize,
}

impl Sketch {
    /// A sketch sized for about `entries` distinct hot keys.
    pub(crate) fn new(entries: usize) -> Self {
        let width = entries.max(16).next_power_of_two();
        Self {
            words: vec![0; width],
            mask: width - 1,
            additions: 0,
            sample_size: RESET_FACTOR * width,
        }
    }

    /// How many increments make one aging period; also the hill climber's sample length.
    pub(crate) fn sample_size(&self) -> usize {
        self.sample_size
    }

    /// Grows the sketch (forgetting what it counted) when the cache holds more entries than it
    /// was sized for.
    pub(crate) fn ensure_capacity(&mut self, entries: usize) {
        if entries > self.words.len() {
            *self = Self::new(entries);
        }
    }

    /// As [`Sketch::ensure_capacity`], and also starts over smaller once the cache holds far
    /// fewer entries than the sketch was sized for, so it gives memory back.
    pub(crate) fn fit(&mut self, entries: usize) {
        let wanted = entries.max(16).next_power_of_two();
        if entries > self.words.len() || self.words.len() > 4 * wanted {
            *self = Self::new(entries);
        }
    }

    pub(crate) fn frequency(&self, hash: u64) -> u8 {
        SEEDS
            .iter()
            .map(|&seed| self.counter(hash, seed))
            .min()
            .unwrap_or(0)
    }

    pub(crate) fn increment(&mut self, hash: u64) {
        let mut added = false;
        for seed in SEEDS {
            let (word, shift) = self.position(hash, seed);
            if (self.words[word] >> shift) & 0xF < 15 {
                self.words[word] += 1 << shift;
                added = true;
            }
        }
        if added {
            self.additions += 1;
            if self.additions >= self.sample_size {
                self.age();
            }
        }
    }

    fn counter(&self, hash: u64, seed: u64) -> u8 {
        let (word, shift) = self.position(hash, seed);
        ((self.words[word] >> shift) & 0xF) as u8
    }

    fn position(&self, hash: u64, seed: u64) -> (usize, u32) {
        let mixed = (hash ^ seed).wrapping_mul(0x2127_599B_F432_5C37);
        let mixed = mixed ^ (mixed >> 29);
        (
            (mixed as usize) & self.mask,
            ((mixed >> 58) as u32 & 0xF) * 4,
        )
    }

    fn age(&mut self) {
        for word in &mut self.words {
            *word = (*word >> 1) & 0x7777_7777_7777_7777;
        }
        self.additions /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_saturate_and_age() {
        let mut sketch = Sketch::new(64);
        for _ in 0..20 {
            sketch.increment(42);
        }
        assert_eq!(sketch.frequency(42), 15);
        assert!(sketch.frequency(7) <= 1);
        sketch.age();
        assert_eq!(sketch.frequency(42), 7);
    }

    #[test]
    fn ages_after_a_sample_of_increments() {
        let mut sketch = Sketch::new(16);
        for _ in 0..8 {
            sketch.increment(1);
        }
        for hash in 100..100 + sketch.sample_size() as u64 {
            sketch.increment(hash);
        }
        assert!(sketch.frequency(1) < 8, "old counts are halved");
    }
}
