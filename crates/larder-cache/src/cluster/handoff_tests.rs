//! Handoff between nodes in one process, driven table by table ([`TestNode`]): the nodes
//! move entries over real gRPC on loopback. No gossip runs, so nothing here depends on
//! timing but the pulls themselves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use larder_cluster::{Member, Status, Table};
use larder_store::{Expiry, SetOptions};
use tokio::net::TcpListener;

use super::handoff::{self, BATCH};
use super::test_nodes::TestNode;

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user:{i}")).collect()
}

/// Every tenth key expires in an hour; the others never do.
fn fill(node: &TestNode, keys: &[String]) {
    for (i, key) in keys.iter().enumerate() {
        let expiry = if i % 10 == 0 {
            Expiry::In(Duration::from_secs(3600))
        } else {
            Expiry::Never
        };
        let opts = SetOptions {
            expiry,
            ..SetOptions::default()
        };
        node.node
            .set(key.as_bytes(), format!("v-{key}").as_bytes(), opts)
            .unwrap();
    }
}

fn owned_by<'a>(table: &Table, id: &str, keys: &'a [String]) -> Vec<&'a String> {
    keys.iter()
        .filter(|k| table.owner_of_key(k.as_bytes()).unwrap().id == id)
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn a_joining_node_pulls_its_partitions_and_keeps_what_clients_wrote_meanwhile() {
    let rate = 20_000;
    let a = TestNode::start("a", rate).await;
    let b = TestNode::start("b", rate).await;
    let alone = Table::new([a.member(Status::Ready)]);
    a.apply(&alone);
    let keys = keys(4_000);
    fill(&a, &keys);
    let before: Vec<_> = keys.iter().map(|k| a.value(k).unwrap()).collect();

    let both = Table::new([a.member(Status::Ready), b.member(Status::Ready)]);
    let moving = owned_by(&both, "b", &keys);
    assert!(
        moving.len() > 1_000 && moving.len() < 3_000,
        "{}",
        moving.len()
    );
    a.apply(&both);
    let started = Instant::now();
    b.apply(&both);
    // The pull is spawned but has not run (one thread, no await yet): the move has begun.
    let (written, asked) = (moving[0].as_str(), moving[1].as_str());
    assert_eq!(
        b.view.snapshot().moving_count(),
        both.partitions_of("b").len()
    );
    assert_eq!(b.view.ask_target(asked.as_bytes()).unwrap().id, "a");
    assert!(b.value(asked).is_none());
    // A client writes a key of a moving partition on the new owner before its entry arrives.
    b.node
        .set(written.as_bytes(), b"client", SetOptions::default())
        .unwrap();

    b.settled().await;
    let took = started.elapsed();
    for (key, (value, version, expires_at)) in keys.iter().zip(&before) {
        if !moving.contains(&key) {
            continue;
        }
        let (got, got_version, got_expiry) = b.value(key).unwrap();
        if key == written {
            assert_eq!(got, b"client");
            continue;
        }
        assert_eq!((&got, got_version), (value, *version), "{key}");
        // The expiry travels as time left, so it lands within the move's duration.
        match (expires_at, got_expiry) {
            (None, None) => {}
            (Some(was), Some(now)) => assert!(now.abs_diff(*was) <= 5_000, "{key}"),
            other => panic!("{key}: expiry {other:?}"),
        }
    }
    assert!(b.view.ask_target(asked.as_bytes()).is_none());
    let adopted = b
        .view
        .metrics
        .handoff_entries
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(adopted, moving.len() as u64 - 1);
    // The sender keeps to its rate: all but the last batch are paced.
    let paced = Duration::from_secs_f64((moving.len() - BATCH) as f64 / rate as f64);
    assert!(took >= paced, "{took:?} < {paced:?}");

    // The old owner keeps what it lost until it is handed off in full, then drops it and
    // keeps its own.
    assert!(a.value(asked).is_some());
    handoff::sweep(&a.view, &a.node, Duration::from_secs(3600));
    for key in &keys {
        let mine = both.owner_of_key(key.as_bytes()).unwrap().id == "a";
        assert_eq!(a.value(key).is_some(), mine, "{key}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_draining_node_is_drained_once_every_partition_is_pulled() {
    let a = TestNode::start("a", 0).await;
    let b = TestNode::start("b", 0).await;
    let both = Table::new([a.member(Status::Ready), b.member(Status::Ready)]);
    a.apply(&both);
    b.apply(&both);
    let all = keys(2_000);
    let keys: Vec<String> = owned_by(&both, "a", &all).into_iter().cloned().collect();
    fill(&a, &keys);
    let owned = both.partitions_of("a");

    // Nobody has pulled yet: draining waits, up to its deadline.
    let leaving = Table::new([a.member(Status::Draining), b.member(Status::Ready)]);
    a.apply(&leaving);
    assert!(!handoff::drained(&a.view, owned.clone(), Duration::from_millis(50)).await);

    b.apply(&leaving);
    assert!(handoff::drained(&a.view, owned, Duration::from_secs(20)).await);
    b.settled().await;
    for key in &keys {
        assert_eq!(
            b.value(key).unwrap().0,
            format!("v-{key}").as_bytes(),
            "{key}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_pull_from_an_unreachable_owner_ends_the_move_and_misses_are_misses() {
    let b = TestNode::start("b", 0).await;
    // A member whose gRPC port nothing listens on (bound, then closed).
    let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = Member {
        grpc: gone.local_addr().unwrap().to_string(),
        ..b.member(Status::Ready)
    };
    drop(gone);
    let dead = Member {
        id: "a".into(),
        ..dead
    };
    b.apply(&Table::new([dead.clone()]));
    b.apply(&Table::new([dead, b.member(Status::Ready)]));
    assert!(b.view.snapshot().moving_count() > 0);
    b.settled().await;
    let key = keys(2_000)
        .into_iter()
        .find(|k| {
            b.view
                .snapshot()
                .table
                .owner_of_key(k.as_bytes())
                .unwrap()
                .id
                == "b"
        })
        .unwrap();
    assert!(b.view.ask_target(key.as_bytes()).is_none());
    assert!(b.value(&key).is_none());
}

#[tokio::test(flavor = "current_thread")]
async fn a_partition_lost_and_regained_comes_back_without_its_old_entries() {
    let a = TestNode::start("a", 0).await;
    let b = TestNode::start("b", 0).await;
    let alone = Table::new([a.member(Status::Ready)]);
    a.apply(&alone);
    let keys = keys(1_000);
    fill(&a, &keys);
    let both = Table::new([a.member(Status::Ready), b.member(Status::Ready)]);
    let lost: Vec<&String> = owned_by(&both, "b", &keys);
    // B never pulls (it is not told); A loses the partitions, then B leaves again before A
    // dropped them: what A kept may be older than what B served meanwhile, so A drops it.
    a.apply(&both);
    assert!(a.value(lost[0]).is_some());
    a.apply(&alone);
    for key in &lost {
        assert!(a.value(key).is_none(), "{key}");
    }
    for key in keys.iter().filter(|k| !lost.contains(k)) {
        assert!(a.value(key).is_some(), "{key}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_pull_that_comes_before_the_old_owner_hears_of_the_change_still_lets_it_drop() {
    let a = TestNode::start("a", 0).await;
    let b = TestNode::start("b", 0).await;
    let alone = Table::new([a.member(Status::Ready)]);
    a.apply(&alone);
    let keys = keys(1_000);
    fill(&a, &keys);
    let both = Table::new([a.member(Status::Ready), b.member(Status::Ready)]);
    // B hears of the new table first and pulls everything while A still owns it.
    b.apply(&both);
    b.settled().await;
    let moved = owned_by(&both, "b", &keys);
    assert!(moved.iter().all(|k| b.value(k).is_some()));
    a.apply(&both);
    handoff::sweep(&a.view, &a.node, Duration::from_secs(3600));
    for key in &keys {
        assert_eq!(a.value(key).is_some(), !moved.contains(&key), "{key}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_node_losing_partitions_flushes_its_subscribers_and_completes_once_they_applied_it() {
    use crate::node::tracking::{Inbox, Mode, Notice};

    let a = TestNode::start("a", 0).await;
    let b = TestNode::start("b", 0).await;
    let alone = Table::new([a.member(Status::Ready)]);
    a.apply(&alone);
    let keys = keys(200);
    fill(&a, &keys);
    let both = Table::new([a.member(Status::Ready), b.member(Status::Ready)]);
    let moving = owned_by(&both, "b", &keys);

    // A Watch subscriber of `a` that read a key which moves to `b`.
    let (inbox, mut notices) = Inbox::new(16);
    let subscriber = a.node.tracking.subscribe_named(7, Mode::default(), inbox);
    assert!(a.node.tracking.track(&subscriber, moving[0].as_bytes()));

    a.apply(&both);
    assert_eq!(notices.try_recv().unwrap(), Notice::Flush);
    let started = Instant::now();
    b.apply(&both);
    // The pull's last batch waits for the subscriber: not yet applied.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        b.view.snapshot().moving_count() > 0,
        "completed before the subscriber applied"
    );
    subscriber.applied(1);
    b.settled().await;
    assert!(started.elapsed() < a.node.tracking.lease());
    assert_eq!(
        b.value(moving[0]).map(|v| v.0),
        a.value(moving[0]).map(|v| v.0)
    );
}
