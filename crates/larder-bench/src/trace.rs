//! `larder bench trace`: replays a key trace through the store, every object of size 1, and
//! prints one line per (policy, capacity) run.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use larder_store::{Capacity, Policy, SetOptions, Store, StoreConfig};

use crate::args::TraceArgs;
use crate::error::{Error, Result, TraceError, Usage};

/// Capacities reported for the traces in `shared/traces`, by file-name prefix.
const KNOWN_CAPACITIES: &[(&str, &[u64])] = &[
    ("arc-oltp", &[1000, 2000, 5000, 10000, 15000]),
    ("arc-p3", &[10000, 50000, 100000]),
    ("cache2k-orm-busy", &[1000, 5000, 10000, 20000]),
    ("lirs-loop", &[256, 512, 1024]),
];

/// One replay's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) policy: Policy,
    pub(crate) capacity: u64,
    pub(crate) requests: u64,
    pub(crate) hits: u64,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ratio = if self.requests == 0 {
            0.0
        } else {
            100.0 * self.hits as f64 / self.requests as f64
        };
        write!(
            f,
            "policy={} capacity={} requests={} hits={} hit_ratio={ratio:.2}",
            self.policy, self.capacity, self.requests, self.hits
        )
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
    let keys = read_trace(&args.trace)?;
    let runs: Vec<(Policy, u64)> = policies
        .iter()
        .flat_map(|&p| capacities.iter().map(move |&c| (p, c)))
        .collect();
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let progress = bar(keys.len() as u64 * runs.len() as u64, "replaying");
    let outcomes = replay_all(&keys, &runs, jobs, &progress)?;
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

/// Reads a trace: one decimal key per line; zstd-compressed when the name ends in `.zst`.
pub(crate) fn read_trace(path: &Path) -> Result<Vec<u64>> {
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
    let keys = parse_keys(BufReader::new(reader)).map_err(|source| Error::Trace {
        path: path.to_owned(),
        source,
    })?;
    progress.finish_and_clear();
    Ok(keys)
}

fn parse_keys(reader: impl BufRead) -> Result<Vec<u64>, TraceError> {
    let mut keys = Vec::new();
    for (number, line) in reader.lines().enumerate() {
        let line = line?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let key = line.parse().map_err(|source| TraceError::Key {
            line: number + 1,
            text: line.to_owned(),
            source,
        })?;
        keys.push(key);
    }
    Ok(keys)
}

/// Runs every (policy, capacity) replay on `jobs` threads; results come back in `runs` order.
pub(crate) fn replay_all(
    keys: &[u64],
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
                    let outcome = replay(keys, policy, capacity, progress);
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

/// Replays `keys` as a look-aside cache would: a miss is followed by a set.
pub(crate) fn replay(
    keys: &[u64],
    policy: Policy,
    capacity: u64,
    progress: &ProgressBar,
) -> Result<Outcome> {
    let config = StoreConfig {
        capacity: Capacity::Items(capacity),
        shards: 1,
        policy,
    };
    let store = Store::new(config)?;
    for chunk in keys.chunks(64 * 1024) {
        for key in chunk {
            let key = key.to_le_bytes();
            if store.get_with(&key, |_| ()).is_none() {
                store.set(&key, b"", SetOptions::default())?;
            }
        }
        progress.inc(chunk.len() as u64);
    }
    let stats = store.stats();
    Ok(Outcome {
        policy,
        capacity,
        requests: keys.len() as u64,
        hits: stats.hits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_and_reports_bad_lines() {
        assert_eq!(
            parse_keys("1\n22\n\n333\n".as_bytes()).unwrap(),
            [1, 22, 333]
        );
        let err = parse_keys("1\nx\n".as_bytes()).unwrap_err();
        assert!(err.to_string().contains("line 2"));
    }

    #[test]
    fn replay_counts_hits_like_a_cache_of_that_size() {
        let keys: Vec<u64> = (0..10).cycle().take(100).collect();
        let hidden = ProgressBar::hidden();
        let all_fit = replay(&keys, Policy::Lru, 10, &hidden).unwrap();
        assert_eq!((all_fit.requests, all_fit.hits), (100, 90));
        let loop_too_big = replay(&keys, Policy::Lru, 9, &hidden).unwrap();
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
    fn known_traces_have_default_capacities() {
        assert_eq!(
            known_capacities(Path::new("x/lirs-loop.keys.zst")).unwrap(),
            [256, 512, 1024]
        );
        assert!(known_capacities(Path::new("mine.txt")).is_err());
    }
}
