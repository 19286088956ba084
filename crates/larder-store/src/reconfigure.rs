//! Changing a live store's eviction policy and bound (Redis's `CONFIG SET maxmemory` and
//! `maxmemory-policy`): each shard in turn takes its new share and a freshly built policy that
//! starts from the entries it holds, then evicts down to the new share.

use super::Store;
use crate::config::ConfigError;
use crate::hook::EvictionHook;
use crate::policy::Policy;

impl<H: EvictionHook> Store<H> {
    /// Switches to `policy` and/or a bound of `capacity` (in the store's unit: bytes, or items
    /// for an item-bounded store; `None` keeps what is in effect), keeping the entries that
    /// fit. Shards are changed one at a time, so the store serves other keys meanwhile;
    /// concurrent calls are applied one after the other, each on top of the last. A new policy
    /// starts without history: what the old one had learnt about recency and frequency is lost.
    ///
    /// If the eviction hook pins more than a shrunken shard's share, that shard stays above it
    /// until the pinned entries go.
    ///
    /// # Errors
    /// [`ConfigError::Capacity`] when `capacity` is smaller than the shard count; nothing
    /// changes then.
    pub fn reconfigure(
        &self,
        policy: Option<Policy>,
        capacity: Option<u64>,
    ) -> Result<(), ConfigError> {
        let shards = self.shards.len();
        let mut settings = self.settings.lock();
        let policy = policy.unwrap_or(settings.0);
        let capacity = capacity.unwrap_or(settings.1);
        let per_shard = capacity / shards as u64;
        if per_shard == 0 {
            return Err(ConfigError::Capacity { capacity, shards });
        }
        let ctx = self.ctx();
        // All shards at once, so that capacity lent between them is settled exactly.
        let mut guards: Vec<_> = self.shards.iter().map(|shard| shard.0.write()).collect();
        for shard in &mut guards {
            // A hook that pins everything is reported by the next write that needs room.
            let _ = shard.rebuild(&ctx, policy, per_shard);
        }
        self.spare.store(0, std::sync::atomic::Ordering::Relaxed);
        drop(guards);
        *settings = (policy, per_shard * shards as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{Capacity, Policy, SetOptions, Store, StoreConfig};

    fn filled(policy: Policy) -> Store {
        let store = Store::new(StoreConfig {
            capacity: Capacity::Bytes(4 << 20),
            shards: 4,
            policy,
        })
        .unwrap();
        for i in 0..10_000u32 {
            store
                .set(
                    format!("key:{i}").as_bytes(),
                    &[7u8; 100],
                    SetOptions::default(),
                )
                .unwrap();
        }
        store
    }

    #[test]
    fn shrinking_evicts_down_to_the_new_bound_at_once() {
        let store = filled(Policy::Adaptive);
        let before = store.stats();
        assert_eq!(before.evictions, 0);
        store.reconfigure(None, Some(1 << 20)).unwrap();
        let after = store.stats();
        assert_eq!(after.capacity, 1 << 20);
        assert!(after.used <= 1 << 20, "{} > bound", after.used);
        assert!(after.items < before.items && after.items > 0);
        assert_eq!(after.evictions, before.items - after.items);
        store.check();
    }

    #[test]
    fn every_policy_switch_keeps_the_entries_and_keeps_working() {
        let all = [
            Policy::Lru,
            Policy::Sieve,
            Policy::S3Fifo,
            Policy::TinyLfu,
            Policy::Adaptive,
        ];
        for from in all {
            for to in all {
                let store = filled(from);
                let items = store.stats().items;
                store.reconfigure(Some(to), None).unwrap();
                assert_eq!(store.policy(), to);
                assert_eq!(
                    store.stats().items,
                    items,
                    "{from:?} -> {to:?} keeps entries"
                );
                assert!(store.get(b"key:9999").is_some());
                // The new policy evicts correctly once the store overflows.
                for i in 10_000..30_000u32 {
                    store
                        .set(
                            format!("key:{i}").as_bytes(),
                            &[1u8; 100],
                            SetOptions::default(),
                        )
                        .unwrap();
                }
                assert!(store.stats().used <= 4 << 20);
                store.check();
            }
        }
    }

    #[test]
    fn a_bound_below_the_shard_count_is_refused_without_change() {
        let store = filled(Policy::Lru);
        assert!(store.reconfigure(Some(Policy::Sieve), Some(3)).is_err());
        assert_eq!(store.policy(), Policy::Lru);
        assert_eq!(store.stats().capacity, 4 << 20);
    }
}
