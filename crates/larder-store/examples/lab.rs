//! Lab: replays the nine shared traces (decompressed text in target/tmp/traces) at the
//! reference capacities and prints each policy's hit ratio beside the best reference.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use larder_store::{Capacity, Policy, SetOptions, Store, StoreConfig};
use std::sync::Mutex;

const CELLS: &[(&str, u64, f64)] = &[
    ("arc-oltp", 1000, 40.86),
    ("arc-oltp", 2000, 47.03),
    ("arc-oltp", 5000, 55.75),
    ("arc-oltp", 10000, 62.69),
    ("arc-oltp", 15000, 65.98),
    ("arc-p3", 10000, 5.95),
    ("arc-p3", 50000, 24.19),
    ("arc-p3", 100000, 42.53),
    ("cache2k-orm-busy", 1000, 78.78),
    ("cache2k-orm-busy", 5000, 86.64),
    ("cache2k-orm-busy", 10000, 90.54),
    ("cache2k-orm-busy", 20000, 94.56),
    ("lirs-loop", 256, 25.07),
    ("lirs-loop", 512, 50.05),
    ("lirs-loop", 1024, 99.80),
    ("arc-p2", 10000, 13.54),
    ("arc-p2", 40000, 35.14),
    ("arc-p2", 100000, 55.25),
    ("cache2k-orm-night", 500, 63.92),
    ("cache2k-orm-night", 3000, 80.82),
    ("cache2k-orm-night", 10000, 94.58),
    ("cache2k-web07", 200, 43.62),
    ("cache2k-web07", 1000, 54.12),
    ("cache2k-web07", 3000, 60.55),
    ("lirs-multi2", 100, 27.81),
    ("lirs-multi2", 250, 37.54),
    ("lirs-multi2", 1000, 57.52),
    ("lirs-gli", 100, 6.22),
    ("lirs-gli", 250, 16.03),
    ("lirs-gli", 500, 33.22),
];

fn load(name: &str) -> Vec<u64> {
    let dir = std::env::var("TRACES").unwrap_or_else(|_| "target/tmp/traces".into());
    let text = std::fs::read_to_string(format!("{dir}/{name}.txt")).expect("trace");
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

fn replay(keys: &[u64], policy: Policy, capacity: u64) -> f64 {
    let store = Store::new(StoreConfig {
        capacity: Capacity::Items(capacity),
        shards: 1,
        policy,
    })
    .unwrap();
    for key in keys {
        let key = key.to_le_bytes();
        if store.get_with(&key, |_| ()).is_none() {
            store.set(&key, b"", SetOptions::default()).unwrap();
        }
    }
    100.0 * store.stats().hits as f64 / keys.len() as f64
}

fn main() {
    let policies: Vec<Policy> = std::env::args()
        .skip(1)
        .map(|p| p.parse().unwrap())
        .collect();
    let only = std::env::var("ONLY").ok();
    let names: Vec<&str> = {
        let mut v: Vec<&str> = CELLS.iter().map(|c| c.0).collect();
        v.dedup();
        v.into_iter()
            .filter(|n| {
                only.as_deref()
                    .is_none_or(|o| o.split(',').any(|x| x == *n))
            })
            .collect()
    };
    let jobs: Vec<(usize, usize)> = CELLS
        .iter()
        .enumerate()
        .filter(|(_, c)| names.contains(&c.0))
        .flat_map(|(i, _)| (0..policies.len()).map(move |p| (i, p)))
        .collect();
    let traces: Vec<(&str, Vec<u64>)> = names.iter().map(|n| (*n, load(n))).collect();
    let results = Mutex::new(vec![vec![f64::NAN; policies.len()]; CELLS.len()]);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads: usize = std::env::var("JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(2);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(cell, p)) = jobs.get(at) else {
                        break;
                    };
                    let (name, cap, _) = CELLS[cell];
                    let keys = &traces.iter().find(|t| t.0 == name).unwrap().1;
                    let r = replay(keys, policies[p], cap);
                    results.lock().unwrap()[cell][p] = r;
                }
            });
        }
    });
    let results = results.into_inner().unwrap();
    print!("{:<18} {:>7} {:>6}", "trace", "cap", "best");
    for p in &policies {
        print!(" {:>9}", p.name());
    }
    println!();
    let mut wins = vec![0; policies.len()];
    let mut worst = vec![f64::INFINITY; policies.len()];
    let mut sum = vec![0.0; policies.len()];
    for (i, (name, cap, best)) in CELLS.iter().enumerate() {
        if !names.contains(name) {
            continue;
        }
        print!("{name:<18} {cap:>7} {best:>6.2}");
        for (p, r) in results[i].iter().enumerate() {
            let d = (r * 100.0).round() / 100.0 - best;
            if d >= -1e-9 {
                wins[p] += 1;
            }
            worst[p] = f64::min(worst[p], d);
            sum[p] += d;
            print!(" {r:>6.2}{d:>+6.2}");
        }
        println!();
    }
    for (p, policy) in policies.iter().enumerate() {
        println!(
            "{}: at/above best {} cells, worst {:+.2}, mean delta {:+.3}",
            policy.name(),
            wins[p],
            worst[p],
            sum[p] / results.iter().filter(|r| !r[p].is_nan()).count() as f64
        );
    }
}
