//! Memory per entry: 1M and 10M entries of 16-byte keys and 32-byte values, and 1M entries of
//! 100-byte and 1 KiB values, each in a store large enough to keep them all. Reports larder's
//! accounted overhead per entry and, for larder, quick_cache and moka, the growth of process
//! RSS per entry. Each cache and size is measured in a fresh child process.
//! Run: `cargo bench -p larder-store --bench memory` (`LARDER_MEMORY_BENCH_CASES=1000000x32`
//! picks cases: entries×value bytes, comma-separated).

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

mod workload;

use std::sync::Arc;

use larder_store::{Capacity, SetOptions, Store, StoreConfig};
use workload::{KEY_LEN, key, rss_bytes};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_CASES: &str = "1000000x32,10000000x32,1000000x100,1000000x1024";
const CHILD_ENV: &str = "LARDER_MEMORY_BENCH_TARGET";

fn main() {
    match std::env::var(CHILD_ENV) {
        Ok(target) => {
            let mut parts = target.split(':');
            let name = parts.next().unwrap_or_default();
            let entries = parts
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1_000_000);
            let value_len = parts.next().and_then(|n| n.parse().ok()).unwrap_or(32);
            measure(name, entries, value_len);
        }
        Err(_) => {
            let cases =
                std::env::var("LARDER_MEMORY_BENCH_CASES").unwrap_or_else(|_| DEFAULT_CASES.into());
            let exe = std::env::current_exe().expect("own path");
            for case in cases.split(',') {
                let (entries, value_len) = case.split_once('x').expect("ENTRIESxVALUE");
                println!(
                    "memory per entry: {entries} entries, {KEY_LEN}-byte keys, {value_len}-byte values"
                );
                for target in ["larder", "quick_cache", "moka"] {
                    let status = std::process::Command::new(&exe)
                        .env(CHILD_ENV, format!("{target}:{entries}:{value_len}"))
                        .status()
                        .expect("spawn child");
                    assert!(status.success(), "{target} child failed");
                }
            }
        }
    }
}

fn measure(target: &str, entries: u32, value_len: usize) {
    let value = vec![b'v'; value_len];
    let before = rss_bytes();
    let mut accounted = None;
    let keep: Box<dyn std::any::Any> = match target {
        "larder" => {
            let per_entry = (KEY_LEN + value_len) as u64 * 2 + 256;
            let store = Store::new(StoreConfig {
                capacity: Capacity::Bytes(u64::from(entries) * per_entry),
                ..StoreConfig::default()
            })
            .expect("store");
            for i in 0..entries {
                store
                    .set(&key(i), &value, SetOptions::default())
                    .expect("set");
            }
            let stats = store.stats();
            assert_eq!(stats.items, u64::from(entries), "nothing evicted");
            accounted = Some(stats.used);
            Box::new(store)
        }
        "quick_cache" => {
            let cache = quick_cache::sync::Cache::<Vec<u8>, Arc<[u8]>>::new(entries as usize);
            for i in 0..entries {
                cache.insert(key(i).to_vec(), Arc::from(value.as_slice()));
            }
            Box::new(cache)
        }
        _ => {
            let cache = moka::sync::Cache::<Vec<u8>, Arc<[u8]>>::new(u64::from(entries));
            for i in 0..entries {
                cache.insert(key(i).to_vec(), Arc::from(value.as_slice()));
            }
            cache.run_pending_tasks();
            Box::new(cache)
        }
    };
    // Let the allocator return what growth freed (old tables) before reading RSS.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let grown = rss_bytes().saturating_sub(before);
    let per_entry = grown as f64 / f64::from(entries);
    let data = (KEY_LEN + value_len) as f64;
    print!(
        "{target:<12} rss/entry={per_entry:.1} bytes (overhead beyond key+value {:.1})",
        per_entry - data
    );
    if let Some(used) = accounted {
        print!(
            " accounted overhead/entry={:.1} bytes",
            used as f64 / f64::from(entries) - data
        );
    }
    println!();
    drop(keep);
}
