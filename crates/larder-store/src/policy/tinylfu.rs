//! W-TinyLFU with an adaptive window (Einziger, Friedman & Manes; the hill climber follows
//! Caffeine's design). New entries enter a small LRU window; entries leaving the window must
//! beat the main cache's victim on estimated frequency to be admitted. The main cache is a
//! segmented LRU (probation, protected). A hill climber resizes the window every sample period,
//! stepping in whichever direction raised the hit ratio.

use super::{Weigher, list::List, sketch::Sketch};
use crate::slab::Slab;
use crate::slot::NIL;

const WINDOW: u8 = 0;
const PROBATION: u8 = 1;
const PROTECTED: u8 = 2;

const INITIAL_WINDOW_SHARE: f64 = 0.01;
const PROTECTED_SHARE: f64 = 0.80;
const STEP_SHARE: f64 = 0.0625;
const STEP_DECAY: f64 = 0.98;
const RESTART_THRESHOLD: f64 = 0.05;

#[derive(Debug)]
pub(crate) struct TinyLfu {
    window: List,
    probation: List,
    protected: List,
    sketch: Sketch,
    capacity: u64,
    window_max: f64,
    protected_max: u64,
    climber: Climber,
    /// Victims the hook has refused in a row; past the main cache's size the window is tried.
    pinned_streak: usize,
    weigher: Weigher,
}

#[derive(Debug)]
struct Climber {
    hits: usize,
    misses: usize,
    prev_hit_rate: f64,
    step: f64,
}

impl TinyLfu {
    pub(crate) fn new(weigher: Weigher, capacity: u64) -> Self {
        let expected_entries = match weigher {
            Weigher::Items => capacity as usize,
            Weigher::Bytes => 1024,
        };
        let window_max = (capacity as f64 * INITIAL_WINDOW_SHARE).max(1.0);
        let mut policy = Self {
            window: List::default(),
            probation: List::default(),
            protected: List::default(),
            sketch: Sketch::new(expected_entries),
            capacity,
            window_max,
            protected_max: 0,
            climber: Climber {
                hits: 0,
                misses: 0,
                prev_hit_rate: 0.0,
                step: -(capacity as f64) * STEP_SHARE,
            },
            pinned_streak: 0,
            weigher,
        };
        policy.resize_main();
        policy
    }

    pub(crate) fn on_insert(&mut self, slots: &mut Slab, idx: u32, hash: u64) {
        let weight = self.weigher.weigh(slots, idx);
        slots[idx as usize].set_queue(WINDOW);
        self.window.push_head(slots, idx, weight);
        self.sketch
            .ensure_capacity(self.window.len + self.probation.len + self.protected.len);
        self.sketch.increment(hash);
        self.drain_window_into_free_main(slots);
    }

    pub(crate) fn on_hit(&mut self, slots: &mut Slab, idx: u32, hash: u64, read: bool) {
        self.sketch.increment(hash);
        if read {
            self.climber.hits += 1;
            self.maybe_climb();
        }
        let weight = self.weigher.weigh(slots, idx);
        match slots[idx as usize].queue() {
            WINDOW => self.window.move_to_head(slots, idx, weight),
            PROBATION => {
                self.probation.unlink(slots, idx, weight);
                self.protect(slots, idx, weight);
            }
            _ => self.protected.move_to_head(slots, idx, weight),
        }
    }

    pub(crate) fn on_miss(&mut self) {
        self.climber.misses += 1;
        self.maybe_climb();
    }

    pub(crate) fn on_reweigh(&mut self, slots: &Slab, idx: u32, old: u64, new: u64) {
        let list = self.list_of(slots[idx as usize].queue());
        list.weight = list.weight - old + new;
    }

    pub(crate) fn on_remove(&mut self, slots: &mut Slab, idx: u32) {
        self.pinned_streak = 0;
        let weight = self.weigher.weigh(slots, idx);
        let queue = slots[idx as usize].queue();
        self.list_of(queue).unlink(slots, idx, weight);
    }

    pub(crate) fn victim(
        &mut self,
        slots: &mut Slab,
        hash_of: &dyn Fn(&[u8]) -> u64,
    ) -> Option<u32> {
        if self.pinned_streak >= self.probation.len + self.protected.len && !self.window.is_empty()
        {
            return Some(self.window.tail);
        }
        // Room is made before the new entry joins the window, so a full window duels now.
        if self.window.weight as f64 >= self.window_max && !self.window.is_empty() {
            let candidate = self.window.tail;
            let victim = self.main_tail();
            if victim == NIL {
                return Some(candidate);
            }
            let candidate_freq = self.sketch.frequency(hash_of(slots.key(candidate)));
            let victim_freq = self.sketch.frequency(hash_of(slots.key(victim)));
            if self.admit(candidate_freq, victim_freq) {
                let weight = self.weigher.weigh(slots, candidate);
                self.window.unlink(slots, candidate, weight);
                slots[candidate as usize].set_queue(PROBATION);
                self.probation.push_head(slots, candidate, weight);
                return Some(victim);
            }
            return Some(candidate);
        }
        match self.main_tail() {
            NIL if self.window.is_empty() => None,
            NIL => Some(self.window.tail),
            victim => Some(victim),
        }
    }

    pub(crate) fn on_pinned(&mut self, slots: &mut Slab, idx: u32) {
        self.pinned_streak += 1;
        let weight = self.weigher.weigh(slots, idx);
        match slots[idx as usize].queue() {
            // A kept window entry joins the main cache so the window's next duel has another.
            WINDOW => {
                self.window.unlink(slots, idx, weight);
                slots[idx as usize].set_queue(PROBATION);
                self.probation.push_head(slots, idx, weight);
            }
            PROBATION => {
                self.probation.unlink(slots, idx, weight);
                self.protect(slots, idx, weight);
            }
            _ => self.protected.move_to_head(slots, idx, weight),
        }
    }

    fn main_tail(&self) -> u32 {
        if !self.probation.is_empty() {
            self.probation.tail
        } else {
            self.protected.tail
        }
    }

    fn protect(&mut self, slots: &mut Slab, idx: u32, weight: u64) {
        slots[idx as usize].set_queue(PROTECTED);
        self.protected.push_head(slots, idx, weight);
        while self.protected.weight > self.protected_max && self.protected.len > 1 {
            let demoted = self.protected.tail;
            let weight = self.weigher.weigh(slots, demoted);
            self.protected.unlink(slots, demoted, weight);
            slots[demoted as usize].set_queue(PROBATION);
            self.probation.push_head(slots, demoted, weight);
        }
    }

    /// While the cache is filling, entries leaving the window need not duel for a place.
    fn drain_window_into_free_main(&mut self, slots: &mut Slab) {
        let main_max = self.capacity.saturating_sub(self.window_max as u64);
        while self.window.weight as f64 > self.window_max && self.window.len > 1 {
            let tail = self.window.tail;
            let weight = self.weigher.weigh(slots, tail);
            if self.probation.weight + self.protected.weight + weight > main_max {
                break;
            }
            self.window.unlink(slots, tail, weight);
            slots[tail as usize].set_queue(PROBATION);
            self.probation.push_head(slots, tail, weight);
        }
    }

    /// Ties go to the incumbent: on loops and scans a frozen main cache is what keeps hits.
    /// (Caffeine admits a strong candidate at random now and then to blunt hash flooding; here
    /// the sketch's hashes are keyed per store, so an attacker cannot aim collisions.)
    fn admit(&self, candidate: u8, victim: u8) -> bool {
        candidate > victim
    }

    fn maybe_climb(&mut self) {
        let Climber {
            hits,
            misses,
            prev_hit_rate,
            step,
        } = self.climber;
        let requests = hits + misses;
        if requests < self.sketch.sample_size() {
            return;
        }
        let hit_rate = hits as f64 / requests as f64;
        let change = hit_rate - prev_hit_rate;
        let amount = if change >= 0.0 { step } else { -step };
        let next_step = if change.abs() >= RESTART_THRESHOLD {
            self.capacity as f64 * STEP_SHARE * amount.signum()
        } else {
            amount * STEP_DECAY
        };
        let upper = (self.capacity as f64 - 1.0).max(1.0);
        self.window_max = (self.window_max + amount).clamp(1.0, upper);
        self.climber = Climber {
            hits: 0,
            misses: 0,
            prev_hit_rate: hit_rate,
            step: next_step,
        };
        self.resize_main();
    }

    fn resize_main(&mut self) {
        let main_max = (self.capacity as f64 - self.window_max).max(0.0);
        self.protected_max = (main_max * PROTECTED_SHARE) as u64;
    }

    fn list_of(&mut self, queue: u8) -> &mut List {
        match queue {
            WINDOW => &mut self.window,
            PROBATION => &mut self.probation,
            _ => &mut self.protected,
        }
    }
}
