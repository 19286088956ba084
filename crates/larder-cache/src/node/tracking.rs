//! The tracking table of server-assisted client-side caching, shared by gRPC `Watch` and RESP
//! `CLIENT TRACKING`: which subscriber read which key, and the notices every change of a
//! tracked key sends them. See docs/ARCHITECTURE.md, "Invalidation push".
//!
//! A key read with tracking is remembered for its readers until it next changes; then each
//! gets a [`Notice::Key`] and the key leaves the table (read it again to track it again).
//! Broadcast subscribers get every change (of their prefixes). When the table is full, a
//! subscriber whose read cannot be recorded becomes a broadcast subscriber of every key
//! rather than miss a change. With no subscriber, a change costs one relaxed atomic load.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod subscriber;

pub(crate) use subscriber::{Barrier, Inbox, Mode, Notice, Subscriber, as_writer};

/// Shards of the key table, each under its own lock.
const SHARDS: usize = 16;

/// One shard of the key table: each tracked key and the subscribers that read it.
type Readers = HashMap<Bytes, Vec<u64>>;

/// The tracking table of one node.
#[derive(Debug)]
pub(crate) struct Tracking {
    /// Live subscribers (the write path's only cost when it is 0).
    live: AtomicUsize,
    /// Broadcasting subscribers among them.
    broadcasting: AtomicUsize,
    keys: Box<[Mutex<Readers>]>,
    hasher: RandomState,
    tracked_keys: AtomicUsize,
    max_keys: usize,
    lease: Duration,
    subscribers: RwLock<HashMap<u64, Arc<Subscriber>>>,
    /// gRPC subscribers by the id their client chose.
    named: Mutex<HashMap<u64, Arc<Subscriber>>>,
    next_id: AtomicU64,
    epoch: Instant,
    /// Cancelled when the node shuts down: every Watch stream ends.
    closing: CancellationToken,
}

impl Tracking {
    /// A table of at most `max_keys` keys whose gRPC subscribers have leases of `lease`.
    pub(crate) fn new(max_keys: usize, lease: Duration) -> Self {
        Self {
            live: AtomicUsize::new(0),
            broadcasting: AtomicUsize::new(0),
            keys: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            tracked_keys: AtomicUsize::new(0),
            max_keys,
            lease,
            subscribers: RwLock::default(),
            named: Mutex::default(),
            next_id: AtomicU64::new(1),
            epoch: Instant::now(),
            closing: CancellationToken::new(),
        }
    }

    /// Ends every Watch stream (the node is shutting down).
    pub(crate) fn close(&self) {
        self.closing.cancel();
    }

    /// Cancelled once the node shuts down.
    pub(crate) fn closing(&self) -> &CancellationToken {
        &self.closing
    }

    /// The lease of gRPC subscribers.
    pub(crate) fn lease(&self) -> Duration {
        self.lease
    }

    /// Whether any subscriber is live: the one check a change makes without them.
    #[inline]
    pub(crate) fn active(&self) -> bool {
        self.live.load(Relaxed) != 0
    }

    /// How many subscribers are live (gRPC streams and RESP connections).
    pub(crate) fn subscribers(&self) -> usize {
        self.live.load(Relaxed)
    }

    /// How many keys the table remembers.
    pub(crate) fn tracked_keys(&self) -> usize {
        self.tracked_keys.load(Relaxed)
    }

    /// Adds a subscriber whose notices go to `inbox`; `lease` for gRPC subscribers.
    pub(crate) fn subscribe(
        &self,
        mode: Mode,
        inbox: Inbox,
        lease: Option<Duration>,
    ) -> Arc<Subscriber> {
        let subscriber = Arc::new(Subscriber {
            id: self.next_id.fetch_add(1, Relaxed),
            fell_back: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            undelivered: AtomicBool::new(false),
            inbox,
            lease,
            queued: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            applied_changed: Notify::new(),
            last_ping_ns: AtomicU64::new(self.since_epoch(Instant::now())),
            mode,
        });
        if subscriber.mode.broadcast {
            self.broadcasting.fetch_add(1, SeqCst);
        }
        self.subscribers
            .write()
            .insert(subscriber.id, subscriber.clone());
        self.live.fetch_add(1, SeqCst);
        subscriber
    }

    /// Adds the gRPC subscriber its client calls `name`, replacing (and cutting off) a
    /// previous one of that name.
    pub(crate) fn subscribe_named(&self, name: u64, mode: Mode, inbox: Inbox) -> Arc<Subscriber> {
        let subscriber = self.subscribe(mode, inbox, Some(self.lease));
        let previous = self.named.lock().insert(name, subscriber.clone());
        if let Some(previous) = previous {
            previous.inbox.cut.cancel();
            self.unsubscribe(&previous);
        }
        subscriber
    }

    /// Removes the gRPC subscriber `name` if it is still `subscriber`.
    pub(crate) fn unsubscribe_named(&self, name: u64, subscriber: &Arc<Subscriber>) {
        {
            let mut named = self.named.lock();
            if named.get(&name).is_some_and(|s| Arc::ptr_eq(s, subscriber)) {
                named.remove(&name);
            }
        }
        self.unsubscribe(subscriber);
    }

    /// Removes a subscriber. Its keys leave the table lazily, when they change or when the
    /// table fills. It stays listed (closed) until its lease has surely lapsed, so a write that
    /// awaits invalidation still waits for what it may not have applied.
    pub(crate) fn unsubscribe(&self, subscriber: &Arc<Subscriber>) {
        if subscriber.closed.swap(true, SeqCst) {
            return;
        }
        self.live.fetch_sub(1, SeqCst);
        if subscriber.broadcasting() {
            self.broadcasting.fetch_sub(1, SeqCst);
        }
        let unapplied = subscriber.applied.load(SeqCst) < subscriber.queued.load(SeqCst);
        if subscriber.lease.is_none() || !unapplied {
            self.subscribers.write().remove(&subscriber.id);
        }
    }

    /// The gRPC subscriber its client calls `name`, if its stream is open.
    pub(crate) fn named(&self, name: u64) -> Option<Arc<Subscriber>> {
        self.named.lock().get(&name).cloned()
    }

    /// Records that `subscriber` read `key`, before the read: a change after this is
    /// notified, and the read sees any change before it. Whether the read is tracked (false
    /// only for a closed subscriber or a broadcast one whose prefixes miss the key).
    pub(crate) fn track(&self, subscriber: &Subscriber, key: &[u8]) -> bool {
        if subscriber.closed.load(Relaxed) {
            return false;
        }
        if subscriber.broadcasting() {
            return subscriber.covers(key);
        }
        let mut shard = self.keys[self.shard(key)].lock();
        if let Some(readers) = shard.get_mut(key) {
            if !readers.contains(&subscriber.id) {
                readers.push(subscriber.id);
            }
            return true;
        }
        if self.tracked_keys.load(Relaxed) >= self.max_keys {
            drop(shard);
            self.sweep();
            if self.tracked_keys.load(Relaxed) >= self.max_keys {
                self.fall_back(subscriber);
                return true;
            }
            shard = self.keys[self.shard(key)].lock();
        }
        let readers = shard.entry(Bytes::copy_from_slice(key)).or_default();
        if readers.is_empty() {
            self.tracked_keys.fetch_add(1, Relaxed);
        }
        if !readers.contains(&subscriber.id) {
            readers.push(subscriber.id);
        }
        true
    }

    /// Switches `subscriber` to broadcast of every key: the table cannot take its reads.
    fn fall_back(&self, subscriber: &Subscriber) {
        if !subscriber.fell_back.swap(true, SeqCst) && !subscriber.mode.broadcast {
            self.broadcasting.fetch_add(1, SeqCst);
            tracing::warn!(
                subscriber = subscriber.id,
                "tracking table full, subscriber switched to broadcast"
            );
        }
    }

    /// Drops closed subscribers from the key table.
    fn sweep(&self) {
        let live: Vec<u64> = {
            let subscribers = self.subscribers.read();
            subscribers
                .values()
                .filter(|s| !s.closed.load(Relaxed))
                .map(|s| s.id)
                .collect()
        };
        for shard in &self.keys {
            let mut shard = shard.lock();
            shard.retain(|_, readers| {
                readers.retain(|id| live.contains(id));
                if readers.is_empty() {
                    self.tracked_keys.fetch_sub(1, Relaxed);
                }
                !readers.is_empty()
            });
        }
    }

    /// `key` changed (its version is now `version`, 0 when gone): its readers and the
    /// broadcast subscribers that cover it are told, and it leaves the table.
    pub(crate) fn changed(&self, key: &[u8], version: u64) {
        if !self.active() {
            return;
        }
        let readers = self.keys[self.shard(key)].lock().remove(key);
        let broadcasting = self.broadcasting.load(SeqCst) != 0;
        if readers.is_none() && !broadcasting {
            return;
        }
        if readers.is_some() {
            self.tracked_keys.fetch_sub(1, Relaxed);
        }
        let readers = readers.unwrap_or_default();
        let key = Bytes::copy_from_slice(key);
        let subscribers = self.subscribers.read();
        for id in &readers {
            if let Some(subscriber) = subscribers.get(id) {
                subscriber.notify(Notice::Key(key.clone(), version));
            }
        }
        if broadcasting {
            for subscriber in subscribers.values() {
                if subscriber.covers(&key) && !readers.contains(&subscriber.id) {
                    subscriber.notify(Notice::Key(key.clone(), version));
                }
            }
        }
    }

    /// Every key was dropped: every subscriber is told, and the table empties.
    pub(crate) fn flushed(&self) {
        if !self.active() {
            return;
        }
        for shard in &self.keys {
            let mut shard = shard.lock();
            self.tracked_keys.fetch_sub(shard.len(), Relaxed);
            shard.clear();
        }
        for subscriber in self.subscribers.read().values() {
            subscriber.notify(Notice::Flush);
        }
    }

    /// Notes that `subscriber` pinged now.
    pub(crate) fn pinged(&self, subscriber: &Subscriber) {
        let now = self.since_epoch(Instant::now());
        subscriber.last_ping_ns.fetch_max(now, SeqCst);
    }

    /// What a write that awaits invalidation waits for, taken after the write: every gRPC
    /// subscriber with notices not yet applied, until it applies them or its lease lapses.
    /// This covers every notice the write sent, and possibly earlier ones too.
    pub(crate) fn barrier(&self) -> Barrier {
        let mut waits = Vec::new();
        if self.subscribers.read().is_empty() {
            return Barrier { waits };
        }
        let now = Instant::now();
        let mut lapsed = Vec::new();
        for subscriber in self.subscribers.read().values() {
            let Some(lease) = subscriber.lease else {
                continue;
            };
            let target = subscriber.queued.load(SeqCst);
            let last_ping = self.epoch + Duration::from_nanos(subscriber.last_ping_ns.load(SeqCst));
            let deadline = (last_ping + lease).max(now) + lease / 20;
            if subscriber.applied.load(SeqCst) >= target {
                if subscriber.closed.load(Relaxed) {
                    lapsed.push(subscriber.id);
                }
                continue;
            }
            if subscriber.closed.load(Relaxed) && last_ping + lease + lease / 20 < now {
                lapsed.push(subscriber.id);
                continue;
            }
            waits.push((subscriber.clone(), target, deadline));
        }
        if !lapsed.is_empty() {
            let mut subscribers = self.subscribers.write();
            for id in lapsed {
                subscribers.remove(&id);
            }
        }
        Barrier { waits }
    }

    fn since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn shard(&self, key: &[u8]) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }
}

/// Evictions and expirations are changes too: the key is gone.
impl larder_store::RemovalListener for Tracking {
    fn removed(&self, key: &[u8], _why: larder_store::Removal) {
        self.changed(key, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(1_000);

    fn table(max_keys: usize) -> Tracking {
        Tracking::new(max_keys, LEASE)
    }

    fn reader(
        tracking: &Tracking,
        mode: Mode,
    ) -> (Arc<Subscriber>, tokio::sync::mpsc::Receiver<Notice>) {
        let (inbox, rx) = Inbox::new(8);
        (tracking.subscribe(mode, inbox, Some(LEASE)), rx)
    }

    fn key(k: &str, version: u64) -> Notice {
        Notice::Key(Bytes::from(k.to_owned()), version)
    }

    #[tokio::test]
    async fn a_change_tells_each_reader_once_and_nothing_without_readers() {
        let tracking = table(10);
        tracking.changed(b"k", 1);
        assert!(!tracking.active());
        let (a, mut rx_a) = reader(&tracking, Mode::default());
        let (b, mut rx_b) = reader(&tracking, Mode::default());
        assert!(tracking.track(&a, b"k") && tracking.track(&b, b"k") && tracking.track(&a, b"k"));
        assert_eq!(tracking.tracked_keys(), 1);
        tracking.changed(b"other", 1);
        tracking.changed(b"k", 7);
        tracking.changed(b"k", 8);
        assert_eq!(rx_a.try_recv().unwrap(), key("k", 7));
        assert_eq!(rx_b.try_recv().unwrap(), key("k", 7));
        assert!(rx_a.try_recv().is_err() && rx_b.try_recv().is_err());
        assert_eq!(tracking.tracked_keys(), 0);

        tracking.unsubscribe(&a);
        assert!(!tracking.track(&a, b"k"));
        tracking.flushed();
        assert_eq!(rx_b.try_recv().unwrap(), Notice::Flush);
        assert!(rx_a.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_full_table_switches_the_reader_to_broadcast_after_sweeping_the_closed() {
        let tracking = table(2);
        let (gone, _rx) = reader(&tracking, Mode::default());
        assert!(tracking.track(&gone, b"a") && tracking.track(&gone, b"b"));
        tracking.unsubscribe(&gone);
        let (live, mut rx) = reader(&tracking, Mode::default());
        // The closed subscriber's keys are swept to make room.
        assert!(tracking.track(&live, b"c"));
        assert!(!live.broadcasting());
        assert!(tracking.track(&live, b"d"));
        assert!(tracking.track(&live, b"e"));
        assert!(live.broadcasting());
        tracking.changed(b"never-read", 3);
        assert_eq!(rx.try_recv().unwrap(), key("never-read", 3));
        // A tracked key is told once, not once as a reader and once as a broadcaster.
        tracking.changed(b"c", 4);
        assert_eq!(rx.try_recv().unwrap(), key("c", 4));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn noloop_skips_the_subscribers_own_writes() {
        let tracking = table(10);
        let mode = Mode {
            noloop: 42,
            ..Mode::default()
        };
        let (sub, mut rx) = reader(&tracking, mode);
        tracking.track(&sub, b"k");
        as_writer(42, || tracking.changed(b"k", 2));
        assert!(rx.try_recv().is_err());
        tracking.track(&sub, b"k");
        as_writer(7, || tracking.changed(b"k", 3));
        assert_eq!(rx.try_recv().unwrap(), key("k", 3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_barrier_waits_for_the_ack_or_the_lease() {
        let tracking = table(10);
        let (sub, mut rx) = reader(&tracking, Mode::default());
        // Nothing outstanding: nothing to wait for.
        tokio::time::timeout(Duration::from_millis(1), tracking.barrier().wait())
            .await
            .unwrap();

        tracking.track(&sub, b"k");
        tracking.changed(b"k", 1);
        let barrier = tokio::spawn(tracking.barrier().wait());
        tokio::time::sleep(LEASE / 2).await;
        assert!(!barrier.is_finished());
        sub.applied(1);
        tokio::time::timeout(Duration::from_millis(1), barrier)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rx.try_recv().unwrap(), key("k", 1));

        // No ack: the barrier ends once the lease of the last ping has lapsed, and the
        // subscriber is cut off.
        tracking.pinged(&sub);
        let pinged = Instant::now();
        tracking.track(&sub, b"k");
        tracking.changed(b"k", 2);
        tracking.barrier().wait().await;
        assert!(pinged.elapsed() >= LEASE && pinged.elapsed() <= LEASE + LEASE / 10);
        assert!(sub.inbox.cut.is_cancelled());
    }
}
