//! Many threads on one store: the byte bound holds throughout, every hit returns a value some
//! writer wrote for that key, and the counters add up.

use std::sync::Arc;

use larder_store::{Capacity, Policy, SetOptions, Store, StoreConfig};

#[test]
fn threads_share_a_store_without_breaking_its_bound() {
    for policy in Policy::ALL {
        let capacity = 64 * 1024;
        let store = Arc::new(
            Store::new(StoreConfig {
                capacity: Capacity::Bytes(capacity),
                shards: 4,
                policy,
            })
            .unwrap(),
        );
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut reads = 0u64;
                    for i in 0..20_000u64 {
                        let key = ((i * 7 + t * 13) % 2_000).to_le_bytes();
                        if i % 3 == 0 {
                            // A value names its key, so a reader can tell a wrong one.
                            let value = [key.as_slice(), &[t as u8; 40]].concat();
                            store.set(&key, &value, SetOptions::default()).unwrap();
                        } else {
                            reads += 1;
                            if let Some(item) = store.get(&key) {
                                assert_eq!(
                                    &item.value[..8],
                                    key.as_slice(),
                                    "{policy}: a hit returned another key's value"
                                );
                            }
                        }
                        if i % 1_000 == 0 {
                            assert!(store.stats().used <= capacity, "{policy}: over the bound");
                        }
                    }
                    reads
                })
            })
            .collect();
        let reads: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        let stats = store.stats();
        assert_eq!(
            stats.hits + stats.misses,
            reads,
            "{policy}: every read counted once"
        );
        assert!(
            stats.used <= capacity && stats.evictions > 0,
            "{policy}: {stats:?}"
        );
    }
}
