//! The adaptive policy's modes ([`super::s3fifo`]), among which its [`super::duel::Duel`]
//! chooses per workload.

/// Share of the capacity given to the small queue, in thousandths (S3-FIFO's 10%).
const SMALL_SHARE: u64 = 100;
/// The small queue's share in the narrow recency mode, in thousandths: 1%, what LIRS gives to
/// blocks not yet proven and where W-TinyLFU starts its window. (2% did slightly worse on the
/// shared traces: BENCHMARKS.md.)
const NARROW_SMALL_SHARE: u64 = 10;

/// What the adaptive variant does with an entry that leaves small without the hits it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mode {
    /// Admit it to a full main if its estimated frequency beats main's next victim's.
    pub(crate) admit: bool,
    /// Let it fill a main below its share even if it was never seen before.
    pub(crate) fill_unproven: bool,
    /// The small queue's share of the capacity, in thousandths.
    pub(crate) small: u64,
}

impl Mode {
    /// S3-FIFO's own rule: any entry may fill an under-full main; none is admitted to a full one.
    pub(crate) const RECENCY: Mode = Mode {
        admit: false,
        fill_unproven: true,
        small: SMALL_SHARE,
    };
    /// A frequency sketch decides: seen-before entries fill main, and beat its victim to enter.
    pub(crate) const FREQUENCY: Mode = Mode {
        admit: true,
        fill_unproven: false,
        small: SMALL_SHARE,
    };
    /// Recency with a narrow small queue, so that a scan or a loop longer than the cache churns
    /// only that queue while main keeps what it holds.
    pub(crate) const NARROW: Mode = Mode {
        small: NARROW_SMALL_SHARE,
        ..Mode::RECENCY
    };
}
