//! The larder storage engine: an in-memory key-value store bounded in bytes, with TTLs,
//! eviction policies chosen at runtime and compile-time eviction hooks. No I/O, no async.
//!
//! Keys and values are byte strings. The store is split into a power-of-two number of shards,
//! each behind its own lock, so operations on different shards never contend. Each shard owns
//! an equal share of the capacity and evicts *before* it inserts, so the accounted total never
//! exceeds the bound. See `docs/ARCHITECTURE.md` for the layout and the reasons behind it.
//!
//! ```
//! use std::time::Duration;
//! use larder_store::{SetOptions, Store, StoreConfig};
//!
//! let store = Store::new(StoreConfig::default()).unwrap();
//! store.set(b"greeting", b"hello", SetOptions::ttl(Duration::from_secs(60))).unwrap();
//! assert_eq!(store.get(b"greeting").unwrap().value, b"hello");
//! assert_eq!(store.incr(b"visits", 5), Ok(5));
//! ```

mod arena;
mod clock;
mod config;
mod error;
mod freshness;
mod hook;
mod ops;
mod policy;
mod shard;
mod slab;
mod slot;
mod store;
mod stripes;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    Capacity, ConfigError, DEFAULT_CAPACITY, MIN_SHARD_BYTES, SHARDS_PER_CORE, StoreConfig,
};
pub use error::StoreError;
pub use freshness::{Freshness, Windows};
pub use hook::{EvictionHook, NoHook, Removal, RemovalListener};
pub use ops::{
    CasOutcome, EntryRef, Expiry, Item, SetMode, SetOptions, SetOutcome, StoreStats, TtlState,
};
pub use policy::{Policy, UnknownPolicy};
pub use store::{DEFAULT_MAX_VALUE_BYTES, Store, Update, parse_i64};

/// Bytes charged per entry beyond its key and value: its 16-byte slot and the 16-byte header
/// of its bytes in the shard's arena (version, value length, slot number). An entry larger
/// than a quarter of an arena segment (64 KiB) has an allocation of its own and is charged its
/// bytes rounded up to whole 4 KiB pages instead. The hash index's 4-byte slot numbers and
/// control bytes are not charged; see BENCHMARKS.md for the process RSS per entry.
pub const ENTRY_OVERHEAD: u64 = 32;
/// Extra bytes charged for an entry with an expiry: the 8-byte deadline and its 16-byte record
/// in the expiry heap.
pub const TTL_OVERHEAD: u64 = 24;
/// The longest key accepted, in bytes (Redis allows 512 MiB; nobody should need more than this).
pub const MAX_KEY_LEN: usize = 64 << 10;
