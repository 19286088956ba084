//! Hit and miss counters striped by thread, so that readers on different cores do not write the
//! same cache line on every read.

use std::cell::Cell;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};

const STRIPES: usize = 16;

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD: Cell<usize> = Cell::new(NEXT_THREAD.fetch_add(1, Relaxed));
}

#[repr(align(128))]
#[derive(Debug, Default)]
struct Stripe {
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Read counters for one store.
#[derive(Debug)]
pub(crate) struct ReadCounters {
    stripes: Box<[Stripe]>,
}

impl Default for ReadCounters {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
        }
    }
}

impl ReadCounters {
    fn mine(&self) -> &Stripe {
        &self.stripes[THREAD.with(Cell::get) % STRIPES]
    }

    pub(crate) fn record(&self, hit: bool) {
        let stripe = self.mine();
        let counter = if hit { &stripe.hits } else { &stripe.misses };
        // Usually only this thread writes its stripe, so the line stays in this core's cache.
        counter.fetch_add(1, Relaxed);
    }

    /// (hits, misses) so far.
    pub(crate) fn totals(&self) -> (u64, u64) {
        self.stripes.iter().fold((0, 0), |(h, m), s| {
            (h + s.hits.load(Relaxed), m + s.misses.load(Relaxed))
        })
    }
}
