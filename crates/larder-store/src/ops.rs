//! The arguments and answers of store operations.

use std::time::Duration;

/// A borrowed view of a stored entry, valid while its shard is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// The value bytes.
    pub value: &'a [u8],
    /// The entry's version: assigned by the store on each write, or given by the writer.
    pub version: u64,
    /// Absolute expiry in Unix milliseconds, if any.
    pub expires_at: Option<u64>,
}

impl EntryRef<'_> {
    /// An owned copy.
    pub fn to_item(&self) -> Item {
        Item {
            value: self.value.to_vec(),
            version: self.version,
            expires_at: self.expires_at,
        }
    }
}

/// An owned copy of a stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The value bytes.
    pub value: Vec<u8>,
    /// The entry's version.
    pub version: u64,
    /// Absolute expiry in Unix milliseconds, if any.
    pub expires_at: Option<u64>,
}

/// When a written entry expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expiry {
    /// Never (clears any expiry the entry had).
    #[default]
    Never,
    /// Keep the existing entry's expiry (none for a new entry), as Redis's `KEEPTTL`.
    Keep,
    /// After this long from now.
    In(Duration),
    /// At this Unix time in milliseconds. A time already past deletes the entry.
    At(u64),
}

/// When a set takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetMode {
    /// Always.
    #[default]
    Always,
    /// Only if the key holds no live entry (`NX`).
    IfAbsent,
    /// Only if the key holds a live entry (`XX`).
    IfPresent,
    /// Only if the key is absent or holds an older version than this one, which the new entry
    /// takes. An older document never replaces a newer one.
    IfNewerVersion(u64),
    /// As [`SetMode::IfNewerVersion`], but an entry holding this same version is replaced too:
    /// a reload of an unchanged document renews its entry.
    IfNotOlderVersion(u64),
}

/// How to write an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetOptions {
    /// When the write takes effect.
    pub mode: SetMode,
    /// When the written entry expires.
    pub expiry: Expiry,
    /// The version to store. `None` lets the store assign one greater than any the key had.
    /// Ignored for [`SetMode::IfNewerVersion`], which carries its own.
    pub version: Option<u64>,
    /// Return the entry that was there before (Redis's `SET … GET`, `GETSET`).
    pub return_previous: bool,
}

impl SetOptions {
    /// Options with this mode and otherwise defaults.
    pub fn mode(mode: SetMode) -> Self {
        Self {
            mode,
            ..Self::default()
        }
    }

    /// Options that expire the entry after `ttl`.
    pub fn ttl(ttl: Duration) -> Self {
        Self {
            expiry: Expiry::In(ttl),
            ..Self::default()
        }
    }
}

/// What a set did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOutcome {
    /// Whether the value was written (false when the mode's condition failed).
    pub stored: bool,
    /// The version the key holds afterwards (`None` if it holds nothing).
    pub version: Option<u64>,
    /// The previous live entry, when asked for.
    pub previous: Option<Item>,
}

/// What a compare-and-set did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasOutcome {
    /// The expected version matched; the key now holds this version.
    Swapped(u64),
    /// The key holds another version, or nothing (`None`); nothing changed.
    Mismatch(Option<u64>),
}

/// A key's remaining time to live, as Redis's `PTTL` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlState {
    /// No live entry (`-2`).
    Missing,
    /// A live entry without expiry (`-1`).
    Persistent,
    /// A live entry that expires in this many milliseconds.
    ExpiresIn(u64),
}

/// Totals across shards since the store was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Reads that found a live entry.
    pub hits: u64,
    /// Reads that found nothing.
    pub misses: u64,
    /// Writes that stored a value.
    pub sets: u64,
    /// Entries evicted to make room.
    pub evictions: u64,
    /// Entries removed because their time ran out.
    pub expirations: u64,
    /// Accounted bytes (or items, for an item-bounded store) in use.
    pub used: u64,
    /// The configured bound, in the same unit as `used`.
    pub capacity: u64,
    /// Live entries.
    pub items: u64,
}

/// Per-shard write counters, summed into [`StoreStats`] (reads are counted by the store).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) sets: u64,
    pub(crate) evictions: u64,
    pub(crate) expirations: u64,
}
