//! Client-side caching with invalidations the nodes push ([`Client::track`]): one `Watch`
//! stream to every node, each with pings, acks and reconnection, and [`Tracking::serving`],
//! which says whether copies may be served now. See the node's docs/ARCHITECTURE.md,
//! "Invalidation push", for the protocol and why it makes copies safe to serve.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher as _;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use larder_proto::grpc::DEFAULT_TRACKING_LEASE_MS;
use larder_proto::grpc::cache::v1 as pb;
use parking_lot::Mutex;
use pb::watch_event::Event;
use pb::watch_request::Msg;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::Client;
use crate::client::Node;

/// How often the set of nodes is checked for nodes learned from a cluster's table.
const DISCOVER_EVERY: Duration = Duration::from_millis(500);
/// The wait before reconnecting a broken stream, doubled up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// The lease [`Tracking::lease`] assumes before any node has announced one: the nodes'
/// default `tracking_lease_ms`.
const DEFAULT_LEASE: Duration = Duration::from_millis(DEFAULT_TRACKING_LEASE_MS);

/// What a tracking client calls when nodes push invalidations.
pub trait Invalidations: Send + Sync + 'static {
    /// These keys changed on a node (or were evicted/expired); `version` is the new one, 0
    /// when gone. `emitted_at_unix_us` is when the node sent them. Called before the client
    /// acks them.
    fn invalidate(&self, keys: &[(Bytes, u64)], emitted_at_unix_us: u64);
    /// Drop every copy: a stream to some node (re)started, broke, or the node asked.
    fn flush(&self);
}

/// A running [`Client::track`]: tracking stops when every clone is dropped.
#[derive(Clone)]
pub struct Tracking {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Tracking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracking")
            .field("subscriber", &self.handle.shared.subscriber)
            .field("serving", &self.serving())
            .finish_non_exhaustive()
    }
}

/// Stops the streams when the last [`Tracking`] goes.
struct Handle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.shared.serving_until.store(0, SeqCst);
    }
}

/// What the streams share.
struct Shared {
    subscriber: u64,
    sink: Arc<dyn Invalidations>,
    epoch: Instant,
    /// Each stream's lease end (nanoseconds since `epoch`; 0: not serving), by node.
    leases: Mutex<HashMap<Arc<str>, Arc<AtomicU64>>>,
    /// The earliest of them: copies may be served before it.
    serving_until: AtomicU64,
    /// The longest lease any node has announced, in milliseconds (0: none yet).
    longest_lease_ms: AtomicU64,
}

impl Tracking {
    /// Whether cached copies may be served now: every node's stream is up, has had its first
    /// pong, and the lease of the latest pong has not lapsed. An atomic load and a clock read.
    pub fn serving(&self) -> bool {
        let shared = &self.handle.shared;
        let until = shared.serving_until.load(SeqCst);
        until != 0 && shared.since_epoch(Instant::now()) < until
    }

    /// The longest lease a node has announced (the nodes' default until one has): how long
    /// any subscriber of these nodes may go on serving a copy after it last heard from its
    /// node.
    pub fn lease(&self) -> Duration {
        match self.handle.shared.longest_lease_ms.load(SeqCst) {
            0 => DEFAULT_LEASE,
            ms => Duration::from_millis(ms),
        }
    }

    /// The subscriber id this client's tracked reads name.
    pub fn subscriber(&self) -> u64 {
        self.handle.shared.subscriber
    }
}

impl Shared {
    fn since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Sets one node's lease end and recomputes the earliest.
    fn set_lease(&self, lease: &AtomicU64, until: u64) {
        let leases = self.leases.lock();
        lease.store(until, SeqCst);
        let earliest = leases.values().map(|l| l.load(SeqCst)).min().unwrap_or(0);
        self.serving_until.store(earliest, SeqCst);
    }
}

impl Client {
    /// Starts tracking: a Watch stream to every node of the client (and nodes the client
    /// learns later), with pings, acks and reconnection (flush on every (re)connect and on
    /// every break). Tracking stops when every clone of the returned handle is dropped.
    pub fn track(&self, sink: Arc<dyn Invalidations>) -> Tracking {
        let subscriber = std::collections::hash_map::RandomState::new()
            .hash_one((std::process::id(), std::time::SystemTime::now()))
            .max(1);
        let shared = Arc::new(Shared {
            subscriber,
            sink,
            epoch: Instant::now(),
            leases: Mutex::default(),
            serving_until: AtomicU64::new(0),
            longest_lease_ms: AtomicU64::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        self.set_subscriber(subscriber);
        tokio::spawn(discover(self.clone(), shared.clone(), stopped));
        Tracking {
            handle: Arc::new(Handle { shared, stop }),
        }
    }
}

/// Keeps a stream to every node reads go to (the owners in the cluster's table, or the
/// configured nodes), starting streams as nodes appear and stopping them as they go, until
/// tracking stops.
async fn discover(client: Client, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    // Each stream stops when its sender here is dropped.
    let mut links: HashMap<Arc<str>, watch::Sender<bool>> = HashMap::new();
    loop {
        let nodes = client.read_nodes();
        links.retain(|name, _| nodes.iter().any(|n| n.name == *name));
        {
            let mut leases = shared.leases.lock();
            leases.retain(|name, _| links.contains_key(name));
        }
        for node in nodes {
            if links.contains_key(&node.name) {
                continue;
            }
            let lease = Arc::new(AtomicU64::new(0));
            shared
                .leases
                .lock()
                .insert(node.name.clone(), lease.clone());
            shared.serving_until.store(0, SeqCst);
            let (link, unlinked) = watch::channel(false);
            links.insert(node.name.clone(), link);
            tokio::spawn(follow(
                client.clone(),
                node,
                shared.clone(),
                lease,
                unlinked,
            ));
        }
        tokio::select! {
            _ = stopped.changed() => break,
            () = tokio::time::sleep(DISCOVER_EVERY) => {}
        }
    }
    client.clear_subscriber(shared.subscriber);
}

/// Keeps one node's stream up until tracking stops.
async fn follow(
    client: Client,
    node: Arc<Node>,
    shared: Arc<Shared>,
    lease: Arc<AtomicU64>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut retry = RETRY_MIN;
    loop {
        shared.sink.flush();
        let started = Instant::now();
        let outcome = tokio::select! {
            _ = stopped.changed() => None,
            why = stream(&client, &node, &shared, &lease) => Some(why),
        };
        shared.set_lease(&lease, 0);
        shared.sink.flush();
        let Some(why) = outcome else { break };
        tracing::debug!(node = %node.name, why, "watch stream ended");
        if started.elapsed() > RETRY_MAX {
            retry = RETRY_MIN;
        }
        tokio::select! {
            _ = stopped.changed() => break,
            () = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(RETRY_MAX);
    }
}

/// One stream's life: hello, ready, then events, acks and pings until it breaks; why it did.
async fn stream(client: &Client, node: &Node, shared: &Shared, lease: &AtomicU64) -> String {
    let (requests, outgoing) = mpsc::channel(64);
    let hello = Msg::Hello(pb::WatchHello {
        subscriber: shared.subscriber,
        ..pb::WatchHello::default()
    });
    let _ = requests.try_send(pb::WatchRequest { msg: Some(hello) });
    let call = client.authorized(ReceiverStream::new(outgoing));
    let mut events = match node.watch_client().watch(call).await {
        Ok(response) => response.into_inner(),
        Err(status) => return format!("watch refused: {status}"),
    };
    let lease_ms = match events.message().await {
        Ok(Some(pb::WatchEvent {
            event: Some(Event::Ready(ready)),
            ..
        })) => ready.lease_ms.max(1),
        Ok(_) => return "the node did not answer ready".into(),
        Err(status) => return format!("watch failed: {status}"),
    };
    shared.longest_lease_ms.fetch_max(lease_ms, SeqCst);
    let lease_for = Duration::from_millis(lease_ms);
    let mut pings = tokio::time::interval(lease_for / 4);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut nonce = 0u64;
    loop {
        tokio::select! {
            _ = pings.tick() => {
                // A node that stopped answering (a stream that silently broke) is left: the
                // lease lapsed long ago, and reconnecting finds out.
                if sent.front().is_some_and(|&(_, at)| at.elapsed() > lease_for * 2) {
                    return "no pong within two leases".into();
                }
                nonce += 1;
                sent.push_back((nonce, Instant::now()));
                if requests.try_send(pb::WatchRequest { msg: Some(Msg::Ping(nonce)) }).is_err() {
                    return "the stream stopped taking pings".into();
                }
            }
            event = events.message() => {
                let mut event = match event {
                    Ok(Some(event)) => event,
                    Ok(None) => return "the node ended the stream".into(),
                    Err(status) => return format!("watch broke: {status}"),
                };
                // Everything already here is applied before one ack covers it.
                let mut last = 0;
                loop {
                    last = last.max(event.seq);
                    apply(event, shared, lease, lease_for, &mut sent);
                    match events.message().now_or_never() {
                        Some(Ok(Some(next))) => event = next,
                        Some(Ok(None)) => return "the node ended the stream".into(),
                        Some(Err(status)) => return format!("watch broke: {status}"),
                        None => break,
                    }
                }
                if requests.try_send(pb::WatchRequest { msg: Some(Msg::Ack(last)) }).is_err() {
                    return "the stream stopped taking acks".into();
                }
            }
        }
    }
}

/// Applies one event: invalidations and flushes go to the sink, a pong extends the lease.
fn apply(
    event: pb::WatchEvent,
    shared: &Shared,
    lease: &AtomicU64,
    lease_for: Duration,
    sent: &mut VecDeque<(u64, Instant)>,
) {
    match event.event {
        Some(Event::Invalidated(invalidated)) => {
            let keys: Vec<(Bytes, u64)> = invalidated
                .keys
                .into_iter()
                .map(|k| (k.key, k.version))
                .collect();
            shared.sink.invalidate(&keys, event.at_unix_us);
        }
        Some(Event::Flush(_)) => shared.sink.flush(),
        Some(Event::Pong(nonce)) => {
            while let Some(&(n, at)) = sent.front() {
                if n > nonce {
                    break;
                }
                sent.pop_front();
                if n == nonce {
                    shared.set_lease(lease, shared.since_epoch(at + lease_for));
                }
            }
        }
        Some(Event::Ready(_)) | None => {}
    }
}
