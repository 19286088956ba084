//! Read-modify-write operations that must be atomic per key (`APPEND`, `GETDEL`, `GETEX`,
//! `INCRBYFLOAT`, conditional expiry) or across keys (`MSETNX`): each runs under the exclusive
//! lock of every shard it touches, so no other writer can come between the read and the write.

use std::hash::BuildHasher;

use super::Store;
use crate::StoreError;
use crate::hook::EvictionHook;
use crate::ops::{EntryRef, Expiry, SetOptions};

/// What [`Store::update`] does to the entry after reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Leave it as it is.
    Keep,
    /// Store this value (with a new version) and this expiry.
    Write {
        /// The new value.
        value: Vec<u8>,
        /// Its expiry; [`Expiry::Keep`] keeps the current one.
        expiry: Expiry,
    },
    /// Change only the expiry of a live entry.
    Expire(Expiry),
    /// Remove the entry.
    Delete,
}

impl<H: EvictionHook> Store<H> {
    /// Reads the live entry under `key` (or `None`), lets `decide` choose an [`Update`], and
    /// applies it before any other writer of the key can run. The read counts as neither a hit
    /// nor a miss. Returns what `decide` returned beside its update.
    ///
    /// # Errors
    /// As [`Store::set`] when the update writes; the entry is unchanged on error.
    pub fn update<R>(
        &self,
        key: &[u8],
        decide: impl FnOnce(Option<EntryRef<'_>>) -> (Update, R),
    ) -> Result<R, StoreError> {
        let (hash, shard) = self.route(key);
        let mut shard = shard.write();
        let mut now = self.now();
        let (update, answer) = shard.read_with(hash, key, &mut now, decide);
        let ctx = self.ctx();
        match update {
            Update::Keep => {}
            Update::Write { value, expiry } => {
                let opts = SetOptions {
                    expiry,
                    ..SetOptions::default()
                };
                shard.set(&ctx, hash, key, &value, &opts, &mut now)?;
            }
            Update::Expire(expiry) => {
                shard.expire(&ctx, hash, key, expiry, &mut now)?;
            }
            Update::Delete => {
                shard.delete(&ctx, hash, key, &mut now);
            }
        }
        Ok(answer)
    }

    /// Writes every pair only if none of the keys holds a live entry (Redis's `MSETNX`);
    /// returns whether they were written. All shards involved are locked for the whole check
    /// and write, in ascending order so concurrent callers cannot deadlock.
    ///
    /// # Errors
    /// As [`Store::set`]. Every entry's size is checked before anything is written, so only
    /// [`StoreError::AllPinned`] (an eviction hook refusing every victim) can leave the pairs
    /// before the failing one written.
    pub fn set_all_if_absent(&self, pairs: &[(&[u8], &[u8])]) -> Result<bool, StoreError> {
        let hashed: Vec<(u64, usize)> = pairs
            .iter()
            .map(|(key, _)| {
                let hash = self.hasher.hash_one(key);
                (hash, self.shard_of(hash))
            })
            .collect();
        let mut order: Vec<usize> = hashed.iter().map(|&(_, shard)| shard).collect();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<_> = order.iter().map(|&i| self.shards[i].0.write()).collect();
        let mut now = self.now();
        let guard_of = |shard: usize| order.binary_search(&shard).unwrap_or_default();
        for ((key, value), &(hash, shard)) in pairs.iter().zip(&hashed) {
            let guard = &mut guards[guard_of(shard)];
            guard.check_fits(key, value, false)?;
            if guard.peek(hash, key, &mut now).is_some() {
                return Ok(false);
            }
        }
        let ctx = self.ctx();
        for ((key, value), &(hash, shard)) in pairs.iter().zip(&hashed) {
            let opts = SetOptions::default();
            guards[guard_of(shard)].set(&ctx, hash, key, value, &opts, &mut now)?;
        }
        Ok(true)
    }
}
