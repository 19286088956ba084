//! Memory per entry: 1M entries of 16-byte keys and 32-byte values in a store large enough to
//! keep them all. Reports larder's accounted overhead per entry and, for larder, quick_cache and
//! moka, the growth of process RSS per entry. Each cache is measured in a fresh child process.
//! Run: `cargo bench -p larder-store --bench memory`.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

mod workload;

use std::sync::Arc;

use larder_store::{Capacity, SetOptions, Store, StoreConfig};
use workload::{KEY_LEN, VALUE_LEN, key, rss_bytes};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ENTRIES: u32 = 1_000_000;
const CHILD_ENV: &str = "LARDER_MEMORY_BENCH_TARGET";

fn main() {
    match std::env::var(CHILD_ENV) {
        Ok(target) => measure(&target),
        Err(_) => {
            println!(
                "memory per entry: {ENTRIES} entries, {KEY_LEN}-byte keys, {VALUE_LEN}-byte values"
            );
            let exe = std::env::current_exe().expect("own path");
            for target in ["larder", "quick_cache", "moka"] {
                let status = std::process::Command::new(&exe)
                    .env(CHILD_ENV, target)
                    .status()
                    .expect("spawn child");
                assert!(status.success(), "{target} child failed");
            }
        }
    }
}

fn measure(target: &str) {
    let value = vec![b'v'; VALUE_LEN];
    let before = rss_bytes();
    let mut accounted = None;
    let keep: Box<dyn std::any::Any> = match target {
        "larder" => {
            let store = Store::new(StoreConfig {
                capacity: Capacity::Bytes(1 << 30),
                ..StoreConfig::default()
            })
            .expect("store");
            for i in 0..ENTRIES {
                store
                    .set(&key(i), &value, SetOptions::default())
                    .expect("set");
            }
            let stats = store.stats();
            assert_eq!(stats.items, u64::from(ENTRIES), "nothing evicted");
            accounted = Some(stats.used);
            Box::new(store)
        }
        "quick_cache" => {
            let cache = quick_cache::sync::Cache::<Vec<u8>, Arc<[u8]>>::new(ENTRIES as usize);
            for i in 0..ENTRIES {
                cache.insert(key(i).to_vec(), Arc::from(value.as_slice()));
            }
            Box::new(cache)
        }
        _ => {
            let cache = moka::sync::Cache::<Vec<u8>, Arc<[u8]>>::new(u64::from(ENTRIES));
            for i in 0..ENTRIES {
                cache.insert(key(i).to_vec(), Arc::from(value.as_slice()));
            }
            cache.run_pending_tasks();
            Box::new(cache)
        }
    };
    // Let the allocator return what growth freed (old tables) before reading RSS.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let grown = rss_bytes().saturating_sub(before);
    let per_entry = grown as f64 / f64::from(ENTRIES);
    let data = (KEY_LEN + VALUE_LEN) as f64;
    print!(
        "{target:<12} rss/entry={per_entry:.1} bytes (overhead beyond key+value {:.1})",
        per_entry - data
    );
    if let Some(used) = accounted {
        print!(
            " accounted overhead/entry={:.1} bytes",
            used as f64 / f64::from(ENTRIES) - data
        );
    }
    println!();
    drop(keep);
}
