//! Compile-time eviction hooks: a store is generic over an [`EvictionHook`] that is asked before
//! any entry is evicted and may keep ("pin") it. The default, [`NoHook`], always agrees and
//! compiles away.

use crate::EntryRef;

/// Consulted before the store evicts an entry to make room.
///
/// Return `false` to keep the entry; the policy then treats it as recently used and offers
/// another victim. Expiry and explicit deletes are not subject to the hook. If every candidate
/// is refused, the write that needed room fails with [`crate::StoreError::AllPinned`].
///
/// ```
/// use larder_store::{Capacity, EntryRef, EvictionHook, SetOptions, Store, StoreConfig};
///
/// /// Never evicts keys under `config/`.
/// struct PinConfig;
///
/// impl EvictionHook for PinConfig {
///     fn may_evict(&self, key: &[u8], _entry: &EntryRef<'_>) -> bool {
///         !key.starts_with(b"config/")
///     }
/// }
///
/// let config = StoreConfig { capacity: Capacity::Items(3), shards: 1, ..StoreConfig::default() };
/// let store = Store::with_hook(config, PinConfig).unwrap();
/// store.set(b"config/theme", b"dark", SetOptions::default()).unwrap();
/// for i in 0..10 {
///     store.set(format!("page/{i}").as_bytes(), b"...", SetOptions::default()).unwrap();
/// }
/// assert!(store.get(b"config/theme").is_some());
/// assert_eq!(store.stats().items, 3);
/// ```
pub trait EvictionHook: Send + Sync + 'static {
    /// Whether the entry under `key` may be evicted now.
    fn may_evict(&self, key: &[u8], entry: &EntryRef<'_>) -> bool;
}

/// Why the store removed an entry on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Evicted to make room.
    Evicted,
    /// Its time was up (found by the expiry sweep).
    Expired,
}

/// Told of every entry the store removes on its own (evictions, expiry sweeps), not of
/// deletes and overwrites, which whoever made them knows of. Called under the shard's lock:
/// keep it quick, and never call the store from it.
pub trait RemovalListener: Send + Sync + std::fmt::Debug + 'static {
    /// `key` left the store.
    fn removed(&self, key: &[u8], why: Removal);
}

/// The default hook: every entry may be evicted.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHook;

impl EvictionHook for NoHook {
    #[inline(always)]
    fn may_evict(&self, _key: &[u8], _entry: &EntryRef<'_>) -> bool {
        true
    }
}
