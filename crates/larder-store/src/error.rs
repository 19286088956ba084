//! The engine's errors. Each variant's text is what a client is shown, so it follows Redis's
//! wording where Redis has one.

/// A store operation that could not be carried out. The store is unchanged when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The entry would not fit even in an empty shard.
    #[error("entry of {size} bytes is larger than the {limit}-byte limit for one entry")]
    TooLarge {
        /// The entry's accounted size.
        size: u64,
        /// The largest accounted size one entry may have (one shard's share of the capacity).
        limit: u64,
    },
    /// The key is longer than [`crate::MAX_KEY_LEN`].
    #[error("key of {0} bytes is longer than the {max}-byte limit", max = crate::MAX_KEY_LEN)]
    KeyTooLong(usize),
    /// An increment met a value that is not a decimal 64-bit integer.
    #[error("value is not an integer or out of range")]
    NotAnInteger,
    /// An increment or decrement would leave the 64-bit range.
    #[error("increment or decrement would overflow")]
    Overflow,
    /// Room was needed but the eviction hook pinned every entry that could have gone.
    #[error("out of memory: every entry that could be evicted is pinned")]
    AllPinned,
}
