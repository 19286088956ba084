//! Client-side caching against real nodes: `track`, `serving`, tracked reads, awaited writes
//! and what the sink sees when a node goes away.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use larder_cache::CacheConfig;
use larder_client::{Invalidations, Lookup, SetOpts, Tracking};
use parking_lot::Mutex;
use support::{TestNode, client, node_config};
use tokio::time::Instant;

/// What the sink was told, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Told {
    Keys(Vec<(Bytes, u64)>),
    Flush,
}

#[derive(Default)]
struct Sink(Mutex<Vec<Told>>);

impl Invalidations for Sink {
    fn invalidate(&self, keys: &[(Bytes, u64)], emitted_at_unix_us: u64) {
        assert!(emitted_at_unix_us > 0);
        self.0.lock().push(Told::Keys(keys.to_vec()));
    }

    fn flush(&self) {
        self.0.lock().push(Told::Flush);
    }
}

impl Sink {
    fn told(&self) -> Vec<Told> {
        self.0.lock().clone()
    }

    fn keys(&self) -> Vec<(Bytes, u64)> {
        self.told()
            .into_iter()
            .filter_map(|t| match t {
                Told::Keys(keys) => Some(keys),
                Told::Flush => None,
            })
            .flatten()
            .collect()
    }
}

fn leased(lease_ms: u64) -> TestNode {
    TestNode::with(CacheConfig {
        tracking_lease_ms: lease_ms,
        ..node_config()
    })
}

/// Waits up to `within` for `what`.
async fn eventually(within: Duration, what: impl Fn() -> bool) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if what() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    what()
}

async fn serving(tracking: &Tracking) {
    assert!(
        eventually(Duration::from_secs(5), || tracking.serving()).await,
        "serving within 5 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracked_reads_and_awaited_writes_reach_the_sink_first() {
    let (a, b) = (leased(2_000), leased(2_000));
    let reader = client(&[&a, &b]);
    let writer = client(&[&a, &b]);

    // Before tracking: nothing is recorded.
    let (lookup, tracked) = reader.get_or_lease_tracked("k0").await.unwrap();
    assert!(matches!(lookup, Lookup::Miss(Some(_))));
    assert!(!tracked);

    let sink = Arc::new(Sink::default());
    let tracking = reader.track(sink.clone());
    assert!(!tracking.serving(), "serving before any pong");
    serving(&tracking).await;
    // One flush per stream as it connected.
    assert!(sink.told().iter().filter(|t| **t == Told::Flush).count() >= 2);

    let keys: Vec<Bytes> = (0..8).map(|i| Bytes::from(format!("k{i}"))).collect();
    for key in &keys {
        writer
            .set(key.clone(), "v1", SetOpts::default())
            .await
            .unwrap();
        let (lookup, tracked) = reader.get_or_lease_tracked(key.clone()).await.unwrap();
        assert!(matches!(lookup, Lookup::Hit(_)) && tracked);
    }

    // An awaited invalidation answers only once the sink has applied it, on both nodes.
    assert_eq!(writer.invalidate_awaiting(&keys[..4]).await.unwrap(), 4);
    let told = sink.keys();
    for key in &keys[..4] {
        assert!(told.contains(&(key.clone(), 0)), "{key:?} not in {told:?}");
    }
    // So does an awaited set, with the new version.
    let awaited = SetOpts {
        await_invalidation: true,
        ..SetOpts::default()
    };
    let (_, version) = writer.set(keys[5].clone(), "v2", awaited).await.unwrap();
    assert!(sink.keys().contains(&(keys[5].clone(), version)));
    drop(tracking);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_ends_serving_within_a_lease_and_flushes() {
    let lease = Duration::from_millis(600);
    let (mut a, b) = (leased(600), leased(600));
    let reader = client(&[&a, &b]);
    let sink = Arc::new(Sink::default());
    let tracking = reader.track(sink.clone());
    serving(&tracking).await;
    let flushes = sink.told().len();

    let stopped = Instant::now();
    tokio::task::spawn_blocking(move || a.stop())
        .await
        .unwrap()
        .unwrap();
    assert!(
        eventually(lease * 2, || !tracking.serving()).await,
        "still serving after the node stopped"
    );
    assert!(stopped.elapsed() < lease * 2);
    assert!(
        eventually(Duration::from_secs(2), || sink.told().len() > flushes).await,
        "no flush on the break"
    );
    assert_eq!(sink.told().last(), Some(&Told::Flush));
    // The other node's stream is still up, but one node down means no serving.
    tokio::time::sleep(lease).await;
    assert!(!tracking.serving());
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_not_tracked_once_tracking_stops() {
    let node = leased(1_000);
    let reader = client(&[&node]);
    let tracking = reader.track(Arc::new(Sink::default()));
    serving(&tracking).await;
    assert!(reader.get_or_lease_tracked("k").await.unwrap().1);
    drop(tracking);
    let until = Instant::now() + Duration::from_secs(3);
    while reader.get_or_lease_tracked("k").await.unwrap().1 {
        assert!(
            Instant::now() < until,
            "reads still tracked 3 s after tracking stopped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_reconnects_to_a_restarted_node_and_serves_again() {
    let mut node = support::node_on("127.0.0.1:0".parse().unwrap());
    let addr = node.grpc;
    let reader = client(&[&node]);
    let sink = Arc::new(Sink::default());
    let tracking = reader.track(sink.clone());
    serving(&tracking).await;
    tokio::task::spawn_blocking(move || node.stop())
        .await
        .unwrap()
        .unwrap();
    assert!(eventually(Duration::from_secs(2), || !tracking.serving()).await);
    let flushes = sink.told().len();

    let _restarted = support::node_on(addr);
    serving(&tracking).await;
    // Flushed on the break and again on the new stream.
    assert!(sink.told().len() > flushes);
    let (_, tracked) = reader.get_or_lease_tracked("k").await.unwrap();
    assert!(tracked, "reads are tracked on the new stream");
}

/// A clustered node `id` gossiping on `gossip` through `seed`.
fn clustered(id: &str, gossip: u16, seed: u16) -> TestNode {
    TestNode::with(CacheConfig {
        cluster: larder_cache::config::ClusterConfig {
            enabled: true,
            node_id: id.to_owned(),
            addr: format!("127.0.0.1:{gossip}"),
            seeds: vec![format!("127.0.0.1:{seed}")],
            drain_deadline_ms: 200,
            ..larder_cache::config::ClusterConfig::default()
        },
        ..node_config()
    })
}

fn free_udp() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_tracking_watches_every_owner_the_table_names() {
    let (ga, gb) = (free_udp(), free_udp());
    let a = clustered("a", ga, ga);
    let b = clustered("b", gb, ga);
    // The reader knows only `a`; the table names `b` too.
    let reader = client(&[&a]);
    let writer = client(&[&a]);
    let until = Instant::now() + Duration::from_secs(30);
    let (on_a, on_b) = loop {
        let _ = reader.get("probe").await;
        let _ = writer.get("probe").await;
        let keys: Vec<String> = (0..64).map(|i| format!("k{i}")).collect();
        let on = |grpc: &str| {
            keys.iter()
                .find(|k| reader.node_for(k.as_bytes()) == grpc)
                .cloned()
        };
        if let (Some(x), Some(y)) = (on(&a.grpc.to_string()), on(&b.grpc.to_string())) {
            break (x, y);
        }
        assert!(Instant::now() < until, "no table naming both nodes in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let sink = Arc::new(Sink::default());
    let tracking = reader.track(sink.clone());
    serving(&tracking).await;
    for key in [&on_a, &on_b] {
        let (_, tracked) = reader.get_or_lease_tracked(key.clone()).await.unwrap();
        assert!(tracked, "{key} not tracked");
    }
    let keys = [Bytes::from(on_a.clone()), Bytes::from(on_b.clone())];
    writer.invalidate_awaiting(&keys).await.unwrap();
    let told = sink.keys();
    for key in &keys {
        assert!(told.contains(&(key.clone(), 0)), "{key:?} not in {told:?}");
    }
}
