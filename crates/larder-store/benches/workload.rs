//! Shared workload for the store benches: Zipf-distributed keys drawn once, up front.

#![allow(dead_code, unreachable_pub)]

/// Keys in the workload's key space.
pub const KEY_SPACE: usize = 1_000_000;
/// Key size used by every bench.
pub const KEY_LEN: usize = 16;
/// Value size used by every bench.
pub const VALUE_LEN: usize = 32;

/// SplitMix64: a small, fast, reproducible generator.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `count` key indices drawn from Zipf(`skew`) over `KEY_SPACE` keys (rank 0 hottest), by
/// inverting the cumulative distribution.
pub fn zipf_indices(count: usize, skew: f64, seed: u64) -> Vec<u32> {
    let mut cdf = Vec::with_capacity(KEY_SPACE);
    let mut total = 0.0;
    for rank in 1..=KEY_SPACE {
        total += 1.0 / (rank as f64).powf(skew);
        cdf.push(total);
    }
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| {
            let target = rng.next_f64() * total;
            cdf.partition_point(|&c| c < target).min(KEY_SPACE - 1) as u32
        })
        .collect()
}

/// The fixed-width key for index `i`; ranks are scattered so hot keys do not share shards.
pub fn key(i: u32) -> [u8; KEY_LEN] {
    let mut key = [b'k'; KEY_LEN];
    let mixed = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    key[..8].copy_from_slice(&mixed.to_le_bytes());
    key[8..12].copy_from_slice(&i.to_le_bytes());
    key
}

/// Resident set size of this process in bytes, from `/proc/self/statm`.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
