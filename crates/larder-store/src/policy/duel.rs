//! Which of the adaptive policy's modes to run, decided by miniature simulations
//! (Waldspurger et al., "Cache Modeling and Optimization using Miniature Simulations", USENIX
//! ATC 2017): each mode runs on a small cache of key hashes that sees only the requests whose
//! hash falls in a sample, sized so that it stands for the whole cache; the mode whose
//! simulation hit more over recent history is the one the real cache uses.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use hashbrown::HashMap;
use parking_lot::Mutex;

use super::Weigher;
use super::mode::Mode;
use crate::slab::Slab;

/// Entries each simulation holds at most. A cache larger than this is simulated on a hash
/// sample of its requests at the rate `SIMULATED_ENTRIES / entries`; simulations of about a
/// thousand entries follow the real hit ratio to within about a point (the paper's finding),
/// and cost one small cache of hashes per mode per shard.
const SIMULATED_ENTRIES: u64 = 1024;
/// The modes the duel chooses between, in the order the simulations run them; the first is
/// the one a cache starts with.
/// (Also tried, on the shared traces: a simulation with W-TinyLFU's 1% window, others
/// promoting after a single hit, with a small queue of half the cache, or frequency mode with
/// a narrow small queue, and a margin the leader must clear before the mode changes. Each won
/// some cells and lost others by more; see BENCHMARKS.md.)
const MODES: [Mode; 3] = [Mode::RECENCY, Mode::FREQUENCY, Mode::NARROW];

/// A policy the duel can simulate: one fixed to a mode, over a slab of key hashes.
pub(crate) trait Simulated: Sized {
    /// The policy fixed to `mode`, for a cache of `capacity` entries.
    fn simulation(capacity: u64, mode: Mode) -> Self;
    fn on_insert(&mut self, slots: &mut Slab, idx: u32, hash: u64);
    fn on_hit(&self, slots: &Slab, idx: u32, hash: u64);
    fn on_remove(&mut self, slots: &mut Slab, idx: u32, hash: u64, evicted: bool);
    fn victim(&mut self, slots: &mut Slab, hash_of: &dyn Fn(&[u8]) -> u64) -> Option<u32>;
}

/// The duel of one shard's policy `P`. Requests reach it from inserts (exclusive) and from
/// hits under the shared lock, so its state sits behind a mutex that only sampled requests
/// take.
#[derive(Debug)]
pub(crate) struct Duel<P> {
    /// A request is simulated when [`sample_point`] of its hash is below this (0: not yet).
    threshold: AtomicU64,
    /// The index in [`MODES`] of the mode in use, published for readers without the lock.
    chosen: AtomicUsize,
    weigher: Weigher,
    state: Mutex<State<P>>,
}

#[derive(Debug)]
struct State<P> {
    sims: Option<Box<[Simulation<P>; MODES.len()]>>,
    /// Hits of each simulation this period, and halved-per-period totals of earlier ones.
    hits: [u64; MODES.len()],
    score: [u64; MODES.len()],
    /// Misses of the chosen mode's simulation this period, and how many make a period.
    misses: u64,
    period: u64,
    chosen: usize,
}

impl<P: Simulated> Duel<P> {
    pub(crate) fn new(weigher: Weigher, capacity: u64) -> Self {
        let duel = Self {
            threshold: AtomicU64::new(0),
            chosen: AtomicUsize::new(0),
            weigher,
            state: Mutex::new(State {
                sims: None,
                hits: [0; MODES.len()],
                score: [0; MODES.len()],
                misses: 0,
                period: 0,
                chosen: 0,
            }),
        };
        if weigher == Weigher::Items {
            duel.start(capacity);
        }
        duel
    }

    /// Sizes the simulations for a cache of `entries`. Byte-bounded caches call this once they
    /// first fill, when their size in entries is known.
    fn start(&self, entries: u64) {
        let entries = entries.max(1);
        let simulated = entries.min(SIMULATED_ENTRIES);
        let threshold = ((1u128 << 32) * u128::from(simulated) / u128::from(entries)) as u64;
        let mut state = self.state.lock();
        state.sims = Some(Box::new(MODES.map(|mode| Simulation::new(simulated, mode))));
        // One period is as many misses of the chosen simulation as it holds entries: the time
        // its contents take to turn over, long enough for the simulations to differ and short
        // enough to follow a change of workload. Counting misses rather than requests makes a
        // period as long in turnover whatever the hit ratio.
        state.period = simulated;
        self.threshold.store(threshold, Relaxed);
    }

    /// Whether a request for `hash` is simulated.
    pub(crate) fn samples(&self, hash: u64) -> bool {
        sample_point(hash) < self.threshold.load(Relaxed)
    }

    /// A request for `hash` (a hit, or an insert after a miss) in a cache of `entries`;
    /// `full` says whether a byte-bounded cache has filled, so the duel can size itself.
    pub(crate) fn on_request(&self, hash: u64, entries: usize, full: bool) {
        if self.threshold.load(Relaxed) == 0 {
            if self.weigher == Weigher::Bytes && full {
                self.start(entries as u64);
            }
            return;
        }
        if self.samples(hash) {
            let mut state = self.state.lock();
            state.request(hash);
            self.chosen.store(state.chosen, Relaxed);
        }
    }

    /// The mode the cache should run.
    pub(crate) fn mode(&self) -> Mode {
        MODES[self.chosen.load(Relaxed) % MODES.len()]
    }
}

impl<P: Simulated> State<P> {
    fn request(&mut self, hash: u64) {
        let Some(sims) = &mut self.sims else {
            return;
        };
        for (mode, (hits, sim)) in self.hits.iter_mut().zip(sims.iter_mut()).enumerate() {
            let hit = sim.request(hash);
            *hits += u64::from(hit);
            self.misses += u64::from(!hit && mode == self.chosen);
        }
        if self.misses < self.period {
            return;
        }
        for (score, hits) in self.score.iter_mut().zip(&mut self.hits) {
            *score = *score / 2 + std::mem::take(hits);
        }
        self.misses = 0;
        for (mode, &score) in self.score.iter().enumerate() {
            if score > self.score[self.chosen] {
                self.chosen = mode;
            }
        }
    }
}

/// Where a hash falls in the sample space `0..2³²`. Multiplying mixes every bit in, so the
/// sample does not follow the bits that chose the shard.
fn sample_point(hash: u64) -> u64 {
    hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32
}

/// A cache of key hashes run by the policy fixed to one mode.
#[derive(Debug)]
struct Simulation<P> {
    slots: Slab,
    index: HashMap<u64, u32, foldhash::fast::FixedState>,
    policy: P,
    capacity: u64,
}

impl<P: Simulated> Simulation<P> {
    fn new(capacity: u64, mode: Mode) -> Self {
        Self {
            slots: Slab::hashes_only(),
            index: HashMap::default(),
            policy: P::simulation(capacity, mode),
            capacity,
        }
    }

    /// Runs one request as a look-aside cache would (a miss is followed by an insert); returns
    /// whether it hit.
    fn request(&mut self, hash: u64) -> bool {
        if let Some(&idx) = self.index.get(&hash) {
            self.policy.on_hit(&self.slots, idx, hash);
            return true;
        }
        while self.index.len() as u64 >= self.capacity {
            let Some(victim) = self.policy.victim(&mut self.slots, &key_hash) else {
                break;
            };
            let victim_hash = key_hash(self.slots.key(victim));
            self.index.remove(&victim_hash);
            self.policy
                .on_remove(&mut self.slots, victim, victim_hash, true);
            self.slots.release(victim);
        }
        let idx = self.slots.insert_hash(hash);
        self.index.insert(hash, idx);
        self.policy.on_insert(&mut self.slots, idx, hash);
        false
    }
}

/// A simulated entry's key is its hash.
fn key_hash(key: &[u8]) -> u64 {
    let mut bytes = [0; 8];
    let n = key.len().min(8);
    bytes[..n].copy_from_slice(&key[..n]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::s3fifo::S3Fifo;

    #[test]
    fn small_caches_simulate_every_request_and_large_ones_a_sample() {
        let small = Duel::<S3Fifo>::new(Weigher::Items, 100);
        assert!((0..1_000u64).all(|h| small.samples(h.wrapping_mul(0x1234_5678_9ABC_DEF1))));
        let large = Duel::<S3Fifo>::new(Weigher::Items, 100 * SIMULATED_ENTRIES);
        let sampled = (0..100_000u64)
            .filter(|h| large.samples(h.wrapping_mul(0x1234_5678_9ABC_DEF1)))
            .count();
        assert!(
            (500..1_500).contains(&sampled),
            "{sampled} of 100000 sampled"
        );
    }

    #[test]
    fn a_byte_bounded_duel_starts_once_the_cache_fills() {
        let duel = Duel::<S3Fifo>::new(Weigher::Bytes, 1 << 20);
        duel.on_request(7, 10, false);
        assert!(!duel.samples(7));
        duel.on_request(7, 10, true);
        assert!(duel.samples(7), "ten entries are all simulated");
    }
}
