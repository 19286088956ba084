//! What the load generators ask for: a small fast PRNG, fixed-width key names written in place,
//! and the read/write mix. Nothing here allocates per request.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// Every key name starts with this.
pub(crate) const KEY_PREFIX: &[u8] = b"key:";

/// wyrand: one multiply per number, statistically fine for picking keys, not for secrets.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator that yields the same sequence for the same seed.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator seeded from the clock and `stream`, so parallel connections differ.
    pub(crate) fn from_clock(stream: u64) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut mixer = Self::new(nanos ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        Self::new(mixer.next_u64())
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let product = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        (product >> 64) as u64 ^ product as u64
    }

    /// A number in `0..n` (multiply-shift; the bias is below 2^-32 for any `n` we use).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Keys `key:0…0` to `key:9…9`, every name the same length, so requests can be pre-encoded
/// and a key's digits overwritten in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeySpace {
    count: u64,
    digits: usize,
}

impl KeySpace {
    /// `count` keys (at least one).
    pub(crate) fn new(count: u64) -> Self {
        let count = count.max(1);
        let digits = (count - 1)
            .checked_ilog10()
            .map_or(1, |log| log as usize + 1);
        Self { count, digits }
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Length of every key name.
    pub(crate) fn width(&self) -> usize {
        KEY_PREFIX.len() + self.digits
    }

    /// A key chosen uniformly at random.
    pub(crate) fn pick(&self, rng: &mut Rng) -> u64 {
        rng.below(self.count)
    }

    /// Writes key `index`'s zero-padded digits over the start of `dst`.
    pub(crate) fn write_digits(&self, dst: &mut [u8], mut index: u64) {
        for byte in dst[..self.digits].iter_mut().rev() {
            *byte = b'0' + (index % 10) as u8;
            index /= 10;
        }
    }

    /// The name of key `index`, allocated (for prefill and tables, not the hot path).
    pub(crate) fn name(&self, index: u64) -> Vec<u8> {
        let mut name = KEY_PREFIX.to_vec();
        name.resize(self.width(), b'0');
        self.write_digits(&mut name[KEY_PREFIX.len()..], index);
        name
    }

    /// Every key name in one buffer, so a key is a cheap `Bytes` slice of it.
    pub(crate) fn table(&self) -> KeyTable {
        let width = self.width();
        let mut all = Vec::with_capacity(width * self.count as usize);
        let template = self.name(0);
        for index in 0..self.count {
            let start = all.len();
            all.extend_from_slice(&template);
            self.write_digits(&mut all[start + KEY_PREFIX.len()..], index);
        }
        KeyTable {
            all: Bytes::from(all),
            width,
        }
    }
}

/// All key names back to back; [`KeyTable::key`] hands out slices without copying.
#[derive(Debug, Clone)]
pub(crate) struct KeyTable {
    all: Bytes,
    width: usize,
}

impl KeyTable {
    /// The name of key `index` (which must be below the key count).
    pub(crate) fn key(&self, index: u64) -> Bytes {
        let start = index as usize * self.width;
        self.all.slice(start..start + self.width)
    }
}

/// The read/write mix: a random draw below the threshold is a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mix {
    /// `read_ratio × 2^64`; 2^64 itself means "always read".
    threshold: u128,
}

impl Mix {
    /// `read_ratio` is clamped to 0.0–1.0.
    pub(crate) fn new(read_ratio: f64) -> Self {
        let ratio = read_ratio.clamp(0.0, 1.0);
        Self {
            threshold: (ratio * 2f64.powi(64)) as u128,
        }
    }

    /// Whether the next request is a read.
    pub(crate) fn is_read(&self, rng: &mut Rng) -> bool {
        u128::from(rng.next_u64()) < self.threshold
    }
}

/// A value of `size` bytes: a repeated printable pattern, so captures stay readable.
pub(crate) fn value(size: usize) -> Vec<u8> {
    (b'a'..=b'z').cycle().take(size).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let first: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        assert!(first.iter().all(|&x| x == b.next_u64()));
        assert_ne!(first[0], first[1]);
        assert_ne!(Rng::new(8).next_u64(), first[0]);
    }

    #[test]
    fn picks_are_in_range_and_roughly_uniform() {
        let keys = KeySpace::new(10);
        let mut rng = Rng::new(42);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[keys.pick(&mut rng) as usize] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{counts:?}");
        }
        let mut one = Rng::new(1);
        assert!((0..1000).all(|_| one.below(1) == 0));
    }

    #[test]
    fn key_names_have_a_fixed_width() {
        let keys = KeySpace::new(100_000);
        assert_eq!((keys.digits, keys.width()), (5, 9));
        assert_eq!(keys.name(42), b"key:00042");
        assert_eq!(keys.name(99_999), b"key:99999");
        assert_eq!(KeySpace::new(1).name(0), b"key:0");
        assert_eq!(KeySpace::new(10).name(9), b"key:9");
        assert_eq!(KeySpace::new(11).name(3), b"key:03");
        assert_eq!(KeySpace::new(0).count(), 1);
    }

    #[test]
    fn digits_are_overwritten_in_place() {
        let keys = KeySpace::new(1000);
        let mut buf = *b"GET key:000 rest";
        keys.write_digits(&mut buf[8..], 7);
        assert_eq!(&buf, b"GET key:007 rest");
        keys.write_digits(&mut buf[8..], 999);
        assert_eq!(&buf, b"GET key:999 rest");
    }

    #[test]
    fn the_table_slices_every_key() {
        let table = KeySpace::new(12).table();
        assert_eq!(&table.key(0)[..], b"key:00");
        assert_eq!(&table.key(11)[..], b"key:11");
    }

    #[test]
    fn the_mix_follows_the_read_ratio() {
        let mut rng = Rng::new(3);
        assert!((0..1000).all(|_| Mix::new(1.0).is_read(&mut rng)));
        assert!((0..1000).all(|_| !Mix::new(0.0).is_read(&mut rng)));
        let mix = Mix::new(0.9);
        let reads = (0..100_000).filter(|_| mix.is_read(&mut rng)).count();
        assert!((89_000..91_000).contains(&reads), "{reads}");
    }

    #[test]
    fn values_have_the_asked_size() {
        assert_eq!(value(3), b"abc");
        assert_eq!(value(30).len(), 30);
        assert!(value(0).is_empty());
    }
}
