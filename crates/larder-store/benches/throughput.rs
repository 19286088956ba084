//! Throughput of larder-store against quick_cache and moka at equal capacity (in entries):
//! 90% get / 10% set, Zipf(0.99) keys over 1M keys, 16-byte keys, 32-byte values, 1 and 2
//! threads. Run: `cargo bench -p larder-store --bench throughput`.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

mod workload;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use larder_store::{Capacity, ENTRY_OVERHEAD, SetOptions, Store, StoreConfig};
use workload::{KEY_LEN, VALUE_LEN, key, zipf_indices};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Entries each cache may hold: a tenth of the key space, so sets evict.
const CAPACITY: u64 = 100_000;
const OPS: usize = 1 << 21;

/// The operations the benches share, so all three run the same code around the cache.
trait Cache: Send + Sync {
    fn get(&self, key: &[u8]) -> bool;
    fn set(&self, key: &[u8], value: &Arc<[u8]>);
}

impl Cache for Store {
    fn get(&self, key: &[u8]) -> bool {
        self.get_with(key, |entry| black_box(entry.value.len()))
            .is_some()
    }
    fn set(&self, key: &[u8], value: &Arc<[u8]>) {
        let _ = self.set(key, value, SetOptions::default());
    }
}

/// Our store when every hit is copied out (`Store::get`), for the cost of an owned value.
struct Copying(Store);

impl Cache for Copying {
    fn get(&self, key: &[u8]) -> bool {
        self.0.get(key).is_some()
    }
    fn set(&self, key: &[u8], value: &Arc<[u8]>) {
        let _ = self.0.set(key, value, SetOptions::default());
    }
}

impl Cache for quick_cache::sync::Cache<Vec<u8>, Arc<[u8]>> {
    fn get(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }
    fn set(&self, key: &[u8], value: &Arc<[u8]>) {
        self.insert(key.to_vec(), value.clone());
    }
}

impl Cache for moka::sync::Cache<Vec<u8>, Arc<[u8]>> {
    fn get(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }
    fn set(&self, key: &[u8], value: &Arc<[u8]>) {
        self.insert(key.to_vec(), value.clone());
    }
}

fn larder() -> Store {
    let per_entry = (KEY_LEN + VALUE_LEN) as u64 + ENTRY_OVERHEAD;
    Store::new(StoreConfig {
        capacity: Capacity::Bytes(CAPACITY * per_entry),
        ..StoreConfig::default()
    })
    .expect("store config")
}

/// Runs `iters` operations on each of `threads` threads; returns the wall time.
fn drive(cache: &dyn Cache, ops: &[u32], is_set: &[bool], threads: usize, iters: u64) -> Duration {
    let value: Arc<[u8]> = Arc::from(vec![b'v'; VALUE_LEN]);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let value = value.clone();
            scope.spawn(move || {
                let mut at = (t * OPS / threads) % OPS;
                for _ in 0..iters {
                    let k = key(ops[at]);
                    if is_set[at] {
                        cache.set(&k, &value);
                    } else {
                        black_box(cache.get(&k));
                    }
                    at = (at + 1) & (OPS - 1);
                }
            });
        }
    });
    start.elapsed()
}

fn throughput(c: &mut Criterion) {
    let ops = zipf_indices(OPS, 0.99, 7);
    let mut rng = workload::Rng::new(11);
    let is_set: Vec<bool> = (0..OPS)
        .map(|_| rng.next_u64().is_multiple_of(10))
        .collect();
    let caches: Vec<(&str, Box<dyn Cache>)> = vec![
        ("larder", Box::new(larder())),
        ("larder-copying-get", Box::new(Copying(larder()))),
        (
            "quick_cache",
            Box::new(quick_cache::sync::Cache::<Vec<u8>, Arc<[u8]>>::new(
                CAPACITY as usize,
            )),
        ),
        (
            "moka",
            Box::new(moka::sync::Cache::<Vec<u8>, Arc<[u8]>>::new(CAPACITY)),
        ),
    ];
    let mut group = c.benchmark_group("zipf0.99_90get_10set");
    group
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    for (name, cache) in &caches {
        // Fill to capacity before measuring so sets evict from the start.
        drive(cache.as_ref(), &ops, &vec![true; OPS], 1, OPS as u64);
        for threads in [1, 2] {
            group.throughput(Throughput::Elements(threads as u64));
            group.bench_function(BenchmarkId::new(*name, format!("{threads}t")), |b| {
                b.iter_custom(|iters| drive(cache.as_ref(), &ops, &is_set, threads, iters));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
