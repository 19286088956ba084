//! Writes of entries larger than one shard's share: the other shards lend capacity (see
//! `lend.rs` for the shard's side).

use std::sync::atomic::Ordering::Relaxed;

use super::Store;
use crate::StoreError;
use crate::clock::Now;
use crate::hook::EvictionHook;
use crate::policy::Weigher;
use crate::shard::{Ctx, Shard};

/// The longest value a store accepts unless told otherwise ([`Store::with_max_value_bytes`]):
/// 64 MiB, the cache node's default largest bulk string.
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 64 << 20;

impl<H: EvictionHook> Store<H> {
    /// Refuses a value longer than the maximum.
    pub(super) fn check_value(
        &self,
        key: &[u8],
        value_len: usize,
        has_ttl: bool,
    ) -> Result<(), StoreError> {
        if value_len as u64 <= self.max_value {
            return Ok(());
        }
        let weigh = |len: usize| Weigher::Bytes.weigh_parts(key.len(), len, has_ttl);
        Err(StoreError::TooLarge {
            size: weigh(value_len),
            limit: weigh(usize::try_from(self.max_value).unwrap_or(usize::MAX)),
        })
    }

    /// Passes `result` on unless its shard refused the entry as larger than the shard's
    /// capacity while the whole bound could hold it; then locks every shard, moves capacity to
    /// the key's shard from the spare and the other shards, and runs `op` again there.
    pub(super) fn or_lend<R>(
        &self,
        hash: u64,
        result: Result<R, StoreError>,
        op: impl Fn(&mut Shard, &Ctx<'_, H>, &mut Now<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let Err(StoreError::TooLarge { size, .. }) = result else {
            return result;
        };
        let total = self.settings.lock().1;
        if size > total {
            return Err(StoreError::TooLarge { size, limit: total });
        }
        let target = self.shard_of(hash);
        let mut guards: Vec<_> = self.shards.iter().map(|shard| shard.0.write()).collect();
        let ctx = self.ctx();
        let mut need = size.saturating_sub(guards[target].capacity());
        let from_spare = self
            .spare
            .fetch_update(Relaxed, Relaxed, |spare| Some(spare - spare.min(need)))
            .map_or(0, |before| before.min(need));
        need -= from_spare;
        let mut lent = from_spare;
        // Each other shard lends an equal part first, so no one shard is emptied; then any of
        // them makes up what pinned entries kept the others from lending.
        for even in [true, false] {
            let mut left = guards.len() as u64 - 1;
            for (i, guard) in guards.iter_mut().enumerate() {
                if i == target || need == 0 {
                    continue;
                }
                let ask = if even { need.div_ceil(left) } else { need };
                left = left.saturating_sub(1).max(1);
                let given = guard.lend(&ctx, ask);
                need -= given;
                lent += given;
            }
        }
        let shard = &mut guards[target];
        shard.borrow(lent);
        op(shard, &ctx, &mut self.now())
    }
}
