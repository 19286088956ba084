//! Where the store reads the time: the [`Clock`] it was given (see [`larder_util::clock`]),
//! read at most once per operation.

use std::time::Duration;

pub use larder_util::clock::{Clock, ManualClock, SystemClock};

/// A time read at most once per operation, and only if the operation needs it.
pub(crate) struct Now<'a> {
    clock: &'a dyn Clock,
    read: Option<u64>,
}

impl<'a> Now<'a> {
    pub(crate) fn new(clock: &'a dyn Clock) -> Self {
        Self { clock, read: None }
    }

    pub(crate) fn get(&mut self) -> u64 {
        *self.read.get_or_insert_with(|| self.clock.now_ms())
    }
}

/// Milliseconds in `duration`, saturating.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
