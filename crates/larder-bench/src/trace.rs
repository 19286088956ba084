//! `larder bench trace`: replays a trace through the store and prints one line per (policy,
//! capacity) run: the object hit ratio, and the byte hit ratio when the trace has object sizes.
//! By default every object counts 1 against a capacity in objects; with `--sized` the capacity
//! is in bytes and each object is stored with a value that makes its charged size its size in
//! the trace.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use larder_store::{Capacity, ENTRY_OVERHEAD, Policy, SetOptions, Store, StoreConfig, StoreError};

use crate::args::{TraceArgs, TraceFormat};
use crate::error::{Error, Result, Usage};

mod format;
use format::{Columns, Trace};

/// Capacities reported for the traces in `shared/traces`, by file-name prefix.
const KNOWN_CAPACITIES: &[(&str, &[u64])] = &[
    ("arc-oltp", &[1000, 2000, 5000, 10000, 15000]),
    ("arc-p3", &[10000, 50000, 100000]),
    ("cache2k-orm-busy", &[1000, 5000, 10000, 20000]),
    ("lirs-loop", &[256, 512, 1024]),
    ("arc-p2", &[10000, 40000, 100000]),
    ("cache2k-orm-night", &[500, 3000, 10000]),
    ("cache2k-web07", &[200, 1000, 3000]),
    ("lirs-multi2", &[100, 250, 1000]),
    ("lirs-gli", &[100, 250, 500]),
];

/// One replay's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) policy: Policy,
    pub(crate) capacity: u64,
    pub(crate) requests: u64,
    pub(crate) hits: u64,
    /// Bytes requested and bytes hit, when the trace has object sizes.
    pub(crate) bytes: Option<(u64, u64)>,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "policy={} capacity={} requests={} hits={} hit_ratio={:.2}",
            self.policy,
            self.capacity,
            self.requests,
            self.hits,
            percent(self.hits, self.requests)
        )?;
        if let Some((bytes, hit_bytes)) = self.bytes {
            write!(
                f,
                " bytes={bytes} hit_bytes={hit_bytes} byte_hit_ratio={:.2}",
                percent(hit_bytes, bytes)
            )?;
        }
        Ok(())
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

pub(crate) fn run(args: &TraceArgs) -> Result<()> {
    let policies = if args.policy.eq_ignore_ascii_case("all") {
        Policy::ALL.to_vec()
    } else {
        vec![args.policy.parse::<Policy>().map_err(Usage::Policy)?]
    };
    let capacities = if args.capacity.is_empty() {
        known_capacities(&args.trace)?
    } else {
        args.capacity.clone()
    };
    Usage::require(!capacities.contains(&0), "capacities", "at least 1")?;
    let columns = match args.csv_columns[..] {
        [key, size] if key >= 1 && size >= 1 => Columns {
            key: key - 1,
            size: size - 1,
        },
        _ => return Err(Usage::CsvColumns.into()),
    };
    let trace = read_trace(&args.trace, args.format, columns)?;
    if args.sized && trace.sizes.is_none() {
        return Err(Usage::NoSizes.into());
    }
    let keys = &trace;
    let runs: Vec<(Policy, u64)> = policies
        .iter()
        .flat_map(|&p| capacities.iter().map(move |&c| (p, c)))
        .collect();
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let progress = bar(keys.keys.len() as u64 * runs.len() as u64, "replaying");
    let outcomes = replay_all(keys, args.sized, args.seed, &runs, jobs, &progress)?;
    progress.finish_and_clear();
    for outcome in outcomes {
        println!("{outcome}");
    }
    Ok(())
}

fn known_capacities(trace: &Path) -> Result<Vec<u64>, Usage> {
    let name = trace
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    KNOWN_CAPACITIES
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|(_, caps)| caps.to_vec())
        .ok_or_else(|| Usage::Capacities {
            name: name.to_owned(),
        })
}

fn bar(len: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len).with_message(message);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {percent}% {per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Reads a trace in `format` (see [`TraceFormat`]); zstd-compressed when the name ends in
/// `.zst`.
pub(crate) fn read_trace(path: &Path, format: TraceFormat, columns: Columns) -> Result<Trace> {
    let opening = |what: &str| Error::io(format!("opening {}{what}", path.display()));
    let file = File::open(path).map_err(opening(""))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let progress = bar(size, "reading");
    let reader = progress.wrap_read(file);
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "zst") {
        Box::new(zstd::Decoder::new(reader).map_err(opening(" as zstd"))?)
    } else {
        Box::new(reader)
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let format = format::resolve(format, name);
    let trace =
        format::parse(BufReader::new(reader), format, columns).map_err(|source| Error::Trace {
            path: path.to_owned(),
            source,
        })?;
    progress.finish_and_clear();
    Ok(trace)
}

/// Runs every (policy, capacity) replay on `jobs` threads; results come back in `runs` order.
pub(crate) fn replay_all(
    trace: &Trace,
    sized: bool,
    seed: u64,
    runs: &[(Policy, u64)],
    jobs: usize,
    progress: &ProgressBar,
) -> Result<Vec<Outcome>> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new((0..runs.len()).map(|_| None).collect::<Vec<_>>());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(runs.len()) {
            scope.spawn(|| {
                loop {
                    let at = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(policy, capacity)) = runs.get(at) else {
                        break;
                    };
                    let outcome = replay(trace, sized, seed, policy, capacity, progress);
                    if let Ok(mut results) = results.lock() {
                        results[at] = Some(outcome);
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| Error::Internal("a replay thread panicked"))?;
    results
        .into_iter()
        .map(|r| r.ok_or(Error::Internal("a replay did not finish"))?)
        .collect()
}

/// Replays a trace as a look-aside cache would: a miss is followed by a set. With `sized`,
/// the capacity is in bytes and each object is stored with a value that makes its charged size
/// (key, value and [`ENTRY_OVERHEAD`]) its size in the trace, or as near as the overhead allows
/// for objects smaller than that; an object larger than the whole cache is not stored. The
/// store's hash is keyed with `seed`, so the same replay gives the same result every time.
pub(crate) fn replay(
    trace: &Trace,
    sized: bool,
    seed: u64,
    policy: Policy,
    capacity: u64,
    progress: &ProgressBar,
) -> Result<Outcome> {
    let config = StoreConfig {
        capacity: if sized {
            Capacity::Bytes(capacity)
        } else {
            Capacity::Items(capacity)
        },
        // One shard, as a simulator runs one cache; a shard holds up to 1 GiB.
        shards: if sized && capacity > 1 << 30 { 0 } else { 1 },
        policy,
    };
    let store = Store::new(config)?.with_hash_seed(seed);
    let filler = vec![0u8; if sized { 1 << 20 } else { 0 }];
    let mut big = Vec::new();
    let (mut bytes, mut hit_bytes) = (0u64, 0u64);
    let sizes = trace.sizes.as_deref();
    for (at, chunk) in trace.keys.chunks(64 * 1024).enumerate() {
        for (i, key) in chunk.iter().enumerate() {
            let size = sizes
                .and_then(|s| s.get(at * 64 * 1024 + i))
                .copied()
                .unwrap_or(1);
            bytes += u64::from(size);
            let key = key.to_le_bytes();
            if store.get_with(&key, |_| ()).is_some() {
                hit_bytes += u64::from(size);
                continue;
            }
            let value_len = if sized {
                (u64::from(size)).saturating_sub(key.len() as u64 + ENTRY_OVERHEAD) as usize
            } else {
                0
            };
            let value = if value_len <= filler.len() {
                &filler[..value_len]
            } else {
                big.resize(value_len, 0);
                &big[..]
            };
            match store.set(&key, value, SetOptions::default()) {
                Ok(_) | Err(StoreError::TooLarge { .. }) => {}
                Err(other) => return Err(other.into()),
            }
        }
        progress.inc(chunk.len() as u64);
    }
    let stats = store.stats();
    Ok(Outcome {
        policy,
        capacity,
        requests: trace.keys.len() as u64,
        hits: stats.hits,
        bytes: sizes.map(|_| (bytes, hit_bytes)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_counts_hits_like_a_cache_of_that_size() {
        let keys = Trace {
            keys: (0..10).cycle().take(100).collect(),
            sizes: None,
        };
        let hidden = ProgressBar::hidden();
        let all_fit = replay(&keys, false, 0, Policy::Lru, 10, &hidden).unwrap();
        assert_eq!((all_fit.requests, all_fit.hits), (100, 90));
        let loop_too_big = replay(&keys, false, 0, Policy::Lru, 9, &hidden).unwrap();
        assert_eq!(
            loop_too_big.hits, 0,
            "LRU on a loop one larger than the cache never hits"
        );
        assert_eq!(
            all_fit.to_string(),
            "policy=lru capacity=10 requests=100 hits=90 hit_ratio=90.00"
        );
    }

    #[test]
    fn a_replay_gives_the_same_result_every_time_and_the_seed_changes_it() {
        // A skewed, looping trace in a cache larger than the duel's simulations, so that the
        // adaptive policy's duel sees a hash-chosen sample of the requests (and its sketch
        // counts by hash): with a random hash key its hits would vary from run to run.
        let mut state = 7u64;
        let keys = (0..200_000)
            .map(|i| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                if i % 3 == 0 {
                    i % 6000
                } else {
                    (state >> 33) % ((state >> 20) % 4000 + 1)
                }
            })
            .collect();
        let trace = Trace { keys, sizes: None };
        let hidden = ProgressBar::hidden();
        let run = |seed| replay(&trace, false, seed, Policy::Adaptive, 2000, &hidden).unwrap();
        let first = run(0);
        assert_eq!(first, run(0));
        assert!(
            (1..8).any(|seed| run(seed).hits != first.hits),
            "the seed is the hash's key"
        );
    }

    #[test]
    fn known_traces_have_default_capacities() {
        assert_eq!(
            known_capacities(Path::new("x/lirs-loop.keys.zst")).unwrap(),
            [256, 512, 1024]
        );
        assert!(known_capacities(Path::new("mine.txt")).is_err());
    }

    #[test]
    fn sized_replays_charge_each_object_its_size_and_count_bytes() {
        // Two objects of 1000 bytes and one of 100 000, requested in turn: a 150 000-byte
        // cache holds all three, a 50 000-byte one only the small two.
        let trace = Trace {
            keys: [1, 2, 3].repeat(10),
            sizes: Some([1_000, 1_000, 100_000].repeat(10)),
        };
        let hidden = ProgressBar::hidden();
        let all = replay(&trace, true, 0, Policy::Lru, 150_000, &hidden).unwrap();
        assert_eq!((all.hits, all.bytes), (27, Some((1_020_000, 918_000))));
        let small = replay(&trace, true, 0, Policy::Lru, 50_000, &hidden).unwrap();
        assert_eq!((small.hits, small.bytes), (18, Some((1_020_000, 18_000))));
        assert!(
            small
                .to_string()
                .ends_with("hit_bytes=18000 byte_hit_ratio=1.76"),
            "{small}"
        );
        let by_count = replay(&trace, false, 0, Policy::Lru, 2, &hidden).unwrap();
        assert_eq!(by_count.hits, 0, "LRU of two objects on a loop of three");
        assert!(
            by_count.bytes.is_some(),
            "sizes known: bytes are counted even so"
        );
    }
}
