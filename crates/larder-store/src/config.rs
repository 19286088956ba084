//! How a store is sized and which policy it runs.

use crate::Policy;

/// The store's bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// Accounted bytes: key + value + [`crate::ENTRY_OVERHEAD`] per entry
    /// (+ [`crate::TTL_OVERHEAD`] for an entry with an expiry).
    Bytes(u64),
    /// Entries, each counting 1 whatever its size (trace replay).
    Items(u64),
}

impl Capacity {
    /// The bound as a number, in its own unit.
    pub fn value(self) -> u64 {
        match self {
            Capacity::Bytes(n) | Capacity::Items(n) => n,
        }
    }
}

/// Default bound: 64 MiB.
pub const DEFAULT_CAPACITY: Capacity = Capacity::Bytes(64 << 20);
/// A byte-bounded store gets no more shards than keep each at least this large: one entry can
/// fill at most one shard, and 1 MiB is memcached's default item limit.
pub const MIN_SHARD_BYTES: u64 = 1 << 20;
/// The most a byte-bounded shard is given when the shard count is automatic: half of what one
/// shard's arena can address (8192 segments of 256 KiB), so lent capacity still fits.
const MAX_SHARD_BYTES: u64 = 1 << 30;
/// Shards per available core when the shard count is automatic. Each shard has fixed costs
/// beside its entries (a partly filled arena segment, the adaptive policy's simulations), so
/// no more shards than keep two threads on different shards nearly always.
pub const SHARDS_PER_CORE: usize = 8;

/// A store's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// The bound; each shard gets an equal share.
    pub capacity: Capacity,
    /// Number of shards, a power of two; 0 chooses one from the core count and capacity.
    pub shards: usize,
    /// The eviction policy.
    pub policy: Policy,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            capacity: DEFAULT_CAPACITY,
            shards: 0,
            policy: Policy::default(),
        }
    }
}

/// A configuration that cannot make a store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The shard count is not a power of two (or is too large).
    #[error("shard count must be a power of two up to 65536, got {0}")]
    Shards(usize),
    /// The capacity is zero or smaller than the shard count.
    #[error("capacity {capacity} is too small for {shards} shards")]
    Capacity {
        /// The configured capacity.
        capacity: u64,
        /// The shard count in effect.
        shards: usize,
    },
}

impl StoreConfig {
    /// The shard count in effect.
    ///
    /// # Errors
    /// [`ConfigError`] when the shard count or capacity cannot work.
    pub fn effective_shards(&self) -> Result<usize, ConfigError> {
        let shards = if self.shards == 0 {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let by_cores = (cores * SHARDS_PER_CORE).next_power_of_two();
            let (by_size, at_least) = match self.capacity {
                Capacity::Bytes(bytes) => (
                    prev_power_of_two(bytes / MIN_SHARD_BYTES).max(1),
                    bytes.div_ceil(MAX_SHARD_BYTES).next_power_of_two(),
                ),
                Capacity::Items(items) => (prev_power_of_two(items / 1024).max(1), 1),
            };
            by_cores.min(by_size as usize).max(at_least as usize)
        } else {
            self.shards
        };
        if !shards.is_power_of_two() || shards > 1 << 16 {
            return Err(ConfigError::Shards(shards));
        }
        let capacity = self.capacity.value();
        if capacity == 0 || capacity < shards as u64 {
            return Err(ConfigError::Capacity { capacity, shards });
        }
        Ok(shards)
    }
}

fn prev_power_of_two(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        1 << (63 - n.leading_zeros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_shards_respect_cores_and_size() {
        let small = StoreConfig {
            capacity: Capacity::Bytes(1 << 20),
            ..StoreConfig::default()
        };
        assert_eq!(small.effective_shards(), Ok(1));
        let big = StoreConfig {
            capacity: Capacity::Bytes(1 << 40),
            ..StoreConfig::default()
        };
        let shards = big.effective_shards().unwrap();
        assert!(shards.is_power_of_two() && shards >= SHARDS_PER_CORE);
        assert!(
            (1u64 << 40) / shards as u64 <= MAX_SHARD_BYTES,
            "{shards} shards"
        );
    }

    #[test]
    fn rejects_bad_shard_counts_and_capacities() {
        let odd = StoreConfig {
            shards: 3,
            ..StoreConfig::default()
        };
        assert_eq!(odd.effective_shards(), Err(ConfigError::Shards(3)));
        let tiny = StoreConfig {
            capacity: Capacity::Items(2),
            shards: 4,
            ..StoreConfig::default()
        };
        assert!(matches!(
            tiny.effective_shards(),
            Err(ConfigError::Capacity { .. })
        ));
    }
}
