//! Membership over real UDP on loopback, in real time: three nodes join through a seed given
//! as a host name (`localhost`, resolved by the system), then one is killed (no goodbye) and
//! the time until both others drop it is measured, several times. Meanwhile no node may lose
//! sight of another.
//!
//! `LARDER_UDP_KILLS=20` runs more kills than the default 3.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use larder_cluster::{Member, Membership, MembershipConfig, Status};

/// The bound the issue sets on failure detection, on loopback.
const DETECTION_BOUND: Duration = Duration::from_secs(2);

async fn start(id: &str, seed: Option<u16>) -> Membership {
    let mut config = MembershipConfig::new(Member {
        id: id.to_owned(),
        generation: 0,
        status: Status::Ready,
        resp: "127.0.0.1:6380".to_owned(),
        grpc: "127.0.0.1:7070".to_owned(),
        admin: "127.0.0.1:7071".to_owned(),
    });
    config.listen_addr = ([127, 0, 0, 1], 0).into();
    config.seeds = seed
        .map(|port| format!("localhost:{port}"))
        .into_iter()
        .collect();
    Membership::start(config).await.unwrap()
}

/// Waits until every node's member ids are `ids`; how long it took.
async fn converge(nodes: &[&Membership], ids: &[&str], limit: Duration) -> Duration {
    let start = Instant::now();
    for node in nodes {
        let mut members = node.members();
        let left = limit.saturating_sub(start.elapsed());
        let same = |ms: &Vec<Member>| ms.iter().map(|m| m.id.as_str()).eq(ids.iter().copied());
        let done = tokio::time::timeout(left, members.wait_for(same))
            .await
            .is_ok();
        assert!(done, "not {ids:?} within {limit:?}: {:?}", members.borrow());
    }
    start.elapsed()
}

/// Returns when the member list shrinks: a flap, while every node runs.
async fn flaps(mut members: tokio::sync::watch::Receiver<Vec<Member>>) {
    let size = members.borrow_and_update().len();
    let _ = members.wait_for(|ms| ms.len() < size).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_leaves_every_table_within_two_seconds_over_udp() {
    let kills: usize = std::env::var("LARDER_UDP_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let a = start("a", None).await;
    let seed = Some(a.gossip_addr().port());
    let b = start("b", seed).await;
    let mut times = Vec::new();
    for _ in 0..kills {
        let c = start("c", seed).await;
        let joined = converge(&[&a, &b, &c], &["a", "b", "c"], Duration::from_secs(5)).await;
        assert!(joined < Duration::from_secs(2), "joined after {joined:?}");
        // Let the failure detectors gather samples of the new generation, and check that
        // meanwhile no node lost sight of another (a flap).
        let watchers: Vec<_> = [&a, &b, &c]
            .iter()
            .map(|n| tokio::spawn(flaps(n.members())))
            .collect();
        tokio::time::sleep(Duration::from_secs(3)).await;
        for watcher in watchers {
            watcher.abort();
            let still_watching = watcher.await.is_err_and(|e| e.is_cancelled());
            assert!(still_watching, "a node lost sight of another while all ran");
        }
        c.abort();
        let dropped = converge(&[&a, &b], &["a", "b"], Duration::from_secs(10)).await;
        times.push(dropped);
    }
    times.sort_unstable();
    let ms: Vec<u128> = times.iter().map(Duration::as_millis).collect();
    println!("udp kill detection, ms, sorted: {ms:?}");
    let worst = times.last().copied().unwrap_or_default();
    assert!(worst <= DETECTION_BOUND, "slowest detection {worst:?}");
    a.shutdown().await;
    b.shutdown().await;
}
