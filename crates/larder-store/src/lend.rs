//! Capacity moving between shards, so that one entry may be larger than a shard's share while
//! the store's total stays within its bound.
//!
//! Every shard starts with a fair share of the bound. The sum of all shards' capacities and
//! the store's `spare` is always the bound. A write whose entry exceeds its shard's capacity
//! locks every shard (in ascending order, as multi-key writes do) and has the others lend it
//! capacity, each evicting what it must to shrink; a shard that later holds more capacity than
//! its fair share and more than it uses gives the excess to `spare`, and a shard below its fair
//! share takes from `spare` before it evicts anything.

use std::sync::atomic::Ordering::Relaxed;

use super::{Ctx, Shard};
use crate::hook::EvictionHook;

impl Shard {
    /// Takes from the spare capacity, up to this shard's fair share.
    pub(super) fn take_spare<H>(&mut self, ctx: &Ctx<'_, H>) {
        let want = self.fair.saturating_sub(self.capacity);
        if want == 0 {
            return;
        }
        let taken = ctx
            .spare
            .fetch_update(Relaxed, Relaxed, |spare| Some(spare - spare.min(want)))
            .map_or(0, |before| before.min(want));
        self.capacity += taken;
    }

    /// Gives capacity above the fair share that this shard does not use to the spare.
    pub(super) fn give_back<H>(&mut self, ctx: &Ctx<'_, H>) {
        let keep = self.fair.max(self.used);
        if self.capacity > keep {
            ctx.spare.fetch_add(self.capacity - keep, Relaxed);
            self.capacity = keep;
        }
    }

    /// Lends up to `amount` of this shard's capacity, evicting to make it free; returns how
    /// much it lent (less when the hook pins what would have to go).
    pub(crate) fn lend<H: EvictionHook>(&mut self, ctx: &Ctx<'_, H>, amount: u64) -> u64 {
        let before = self.capacity;
        self.capacity -= amount.min(self.capacity);
        if self.make_room(ctx, 0, crate::slot::NIL).is_err() {
            self.capacity = self.capacity.max(self.used);
        }
        self.tidy(ctx);
        before - self.capacity
    }

    /// Adds lent capacity.
    pub(crate) fn borrow(&mut self, amount: u64) {
        self.capacity += amount;
    }

    /// This shard's capacity now.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }
}
