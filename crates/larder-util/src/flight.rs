//! Single-flight loads: however many callers miss the same key at once, one of them loads it
//! and the others wait for that load.
//!
//! [`Flights::join`] either makes the caller the leader of a new flight (it gets a [`Ticket`]
//! and starts the load, usually on a task of its own so that a caller who leaves does not
//! cancel it for the others) or adds it to the flight in progress. Every caller, leader
//! included, then awaits a [`Waiter`].
//!
//! A flight can be *retired* while it runs ([`Flights::retire`]): a write of the key made the
//! load's answer possibly older than the source now holds. A retired flight still answers its
//! waiters, but [`Ticket::land`] tells the leader it is no longer current, so it does not
//! store what it read; and the next caller starts a new flight. Landing runs under the map's
//! lock and removes the flight only afterwards, so a caller that finds no flight finds what the
//! last one stored.
//!
//! A ticket dropped without landing (its task dropped at shutdown) still leaves the map and
//! wakes its waiters, who get `None`: no waiter is left hanging.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

/// Loads in flight, by key.
#[derive(Debug)]
pub struct Flights<K, V> {
    map: Mutex<HashMap<K, Arc<Flight<V>>>>,
    limit: usize,
}

#[derive(Debug)]
struct Flight<V> {
    done: watch::Sender<Option<V>>,
}

/// What [`Flights::join`] made of a caller.
#[derive(Debug)]
pub enum Joined<K: Eq + Hash, V> {
    /// No flight was running: the caller leads a new one. Start the load with the ticket and
    /// await the waiter like any other caller.
    Lead(Ticket<K, V>, Waiter<V>),
    /// A flight was running; await its answer.
    Wait(Waiter<V>),
    /// No flight was running, and the check made under the map's lock answered at once.
    Ready(V),
    /// As many keys as the limit allows are loading already.
    Full,
}

/// The leader's handle on its flight: land it with the answer.
#[derive(Debug)]
#[must_use = "a ticket dropped unlanded answers its waiters with nothing"]
pub struct Ticket<K: Eq + Hash, V> {
    flights: Arc<Flights<K, V>>,
    key: Option<K>,
    flight: Arc<Flight<V>>,
}

/// A caller's wait for a flight's answer.
#[derive(Debug)]
pub struct Waiter<V> {
    done: watch::Receiver<Option<V>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Flights<K, V> {
    /// An empty map that lets at most `limit` keys load at once.
    #[must_use]
    pub fn new(limit: usize) -> Self {
        Self {
            map: Mutex::default(),
            limit,
        }
    }

    /// Joins the flight of `key`, or starts one. When none is running, `check` runs under the
    /// map's lock first: an answer from it (a value a flight stored just before it left the
    /// map) is returned as [`Joined::Ready`] and nothing starts.
    pub fn join(self: &Arc<Self>, key: &K, check: impl FnOnce() -> Option<V>) -> Joined<K, V> {
        let mut map = self.map.lock();
        if let Some(flight) = map.get(key) {
            return Joined::Wait(Waiter {
                done: flight.done.subscribe(),
            });
        }
        if let Some(value) = check() {
            return Joined::Ready(value);
        }
        if map.len() >= self.limit {
            return Joined::Full;
        }
        let (done, receiver) = watch::channel(None);
        let flight = Arc::new(Flight { done });
        map.insert(key.clone(), flight.clone());
        let ticket = Ticket {
            flights: self.clone(),
            key: Some(key.clone()),
            flight,
        };
        Joined::Lead(ticket, Waiter { done: receiver })
    }

    /// Retires the flight of `key`, if one runs: it still answers its waiters, but its leader
    /// learns that it is no longer current, and the next caller starts a new flight. Returns
    /// whether there was one.
    pub fn retire(&self, key: &K) -> bool {
        self.map.lock().remove(key).is_some()
    }

    /// Retires every flight.
    pub fn retire_all(&self) {
        self.map.lock().clear();
    }

    /// How many keys are loading now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Whether no key is loading.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Eq + Hash, V> Ticket<K, V> {
    /// The key this flight loads.
    ///
    /// # Panics
    /// Never: the key is only taken when the ticket is consumed.
    #[must_use]
    pub fn key(&self) -> &K {
        #[allow(clippy::expect_used)] // taken only in `land` and `drop`, which consume it
        self.key.as_ref().expect("a live ticket has its key")
    }

    /// Lands the flight: `answer` runs under the map's lock, told whether the flight is still
    /// current (not retired), so it can store what was loaded only then; its result goes to
    /// every waiter once the flight has left the map.
    pub fn land(mut self, answer: impl FnOnce(bool) -> V) {
        let Some(key) = self.key.take() else {
            return;
        };
        let mut map = self.flights.map.lock();
        let current = map.get(&key).is_some_and(|f| Arc::ptr_eq(f, &self.flight));
        let value = answer(current);
        if current {
            map.remove(&key);
        }
        drop(map);
        self.flight.done.send_replace(Some(value));
    }
}

impl<K: Eq + Hash, V> Drop for Ticket<K, V> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let mut map = self.flights.map.lock();
        if map.get(&key).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) {
            map.remove(&key);
        }
        // The sender goes with the flight once the waiters' receivers notice it closed.
    }
}

impl<V: Clone> Waiter<V> {
    /// The flight's answer, or `None` if its leader dropped the ticket without landing it.
    pub async fn wait(mut self) -> Option<V> {
        match self.done.wait_for(Option::is_some).await {
            Ok(value) => value.clone(),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Map = Arc<Flights<&'static str, u32>>;

    fn lead(flights: &Map, key: &'static str) -> (Ticket<&'static str, u32>, Waiter<u32>) {
        match flights.join(&key, || None) {
            Joined::Lead(ticket, waiter) => (ticket, waiter),
            other => panic!("expected to lead, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn one_leader_and_every_waiter_gets_its_answer() {
        let flights: Map = Arc::new(Flights::new(16));
        let (ticket, first) = lead(&flights, "k");
        let others: Vec<_> = (0..3)
            .map(|_| match flights.join(&"k", || Some(0)) {
                Joined::Wait(waiter) => waiter,
                other => panic!("expected to wait, got {other:?}"),
            })
            .collect();
        let mut stored = None;
        ticket.land(|current| {
            stored = current.then_some(7);
            7
        });
        assert_eq!(stored, Some(7), "a current flight stores");
        assert_eq!(first.wait().await, Some(7));
        for waiter in others {
            assert_eq!(waiter.wait().await, Some(7));
        }
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn a_retired_flight_answers_but_is_not_current_and_a_new_one_starts() {
        let flights: Map = Arc::new(Flights::new(16));
        let (old, old_waiter) = lead(&flights, "k");
        assert!(flights.retire(&"k"));
        let (new, new_waiter) = lead(&flights, "k");
        old.land(|current| {
            assert!(!current, "retired");
            1
        });
        assert_eq!(
            flights.len(),
            1,
            "landing the old flight leaves the new one"
        );
        new.land(|current| {
            assert!(current);
            2
        });
        assert_eq!(old_waiter.wait().await, Some(1));
        assert_eq!(new_waiter.wait().await, Some(2));
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn a_dropped_ticket_wakes_its_waiters_and_leaves_the_map() {
        let flights: Map = Arc::new(Flights::new(16));
        let (ticket, waiter) = lead(&flights, "k");
        drop(ticket);
        assert_eq!(waiter.wait().await, None);
        assert!(flights.is_empty());
    }

    #[test]
    fn the_check_under_the_lock_answers_and_the_limit_holds() {
        let flights: Map = Arc::new(Flights::new(1));
        assert!(matches!(flights.join(&"a", || Some(3)), Joined::Ready(3)));
        assert!(flights.is_empty());
        let _held = lead(&flights, "a");
        assert!(matches!(flights.join(&"b", || None), Joined::Full));
        assert!(matches!(flights.join(&"a", || None), Joined::Wait(_)));
        flights.retire_all();
        assert!(flights.is_empty());
    }
}
