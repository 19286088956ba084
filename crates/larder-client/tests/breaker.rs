//! Deadlines and the circuit breaker against nodes that stop, restart and never answer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use larder_client::{BreakerState, Client, ClientConfig, Error, SetOpts};
use larder_util::clock::ManualClock;
use support::{BlackHole, client_config, node_on, start_node};

const DEADLINE: Duration = Duration::from_millis(200);
/// Scheduling slack on a busy machine.
const SLACK: Duration = Duration::from_millis(400);

#[tokio::test]
async fn a_node_that_never_answers_is_unavailable_at_the_deadline() {
    let hole = BlackHole::start();
    let c = Client::new(ClientConfig {
        nodes: vec![hole.addr.to_string()],
        deadline: DEADLINE,
        ..ClientConfig::default()
    })
    .unwrap();
    for _ in 0..2 {
        let started = Instant::now();
        let err = c.get("k").await.unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(&err, Error::Unavailable { message, .. } if message == "deadline exceeded"),
            "{err:?}"
        );
        assert!(took >= DEADLINE && took < DEADLINE + SLACK, "{took:?}");
    }
}

#[tokio::test]
async fn breaker_opens_fails_fast_and_closes_after_the_node_restarts() {
    let cooldown = Duration::from_millis(600);
    let mut node = start_node();
    let addr = node.grpc;
    // The breaker's cooldown runs on this clock, moved by hand.
    let clock = Arc::new(ManualClock::new(1_000));
    let config = ClientConfig {
        deadline: DEADLINE,
        breaker_failures: 3,
        breaker_cooldown: cooldown,
        ..client_config(&[&node])
    };
    let c = Client::with_clock(config, clock.clone()).unwrap();
    c.set("k", "v", SetOpts::default()).await.unwrap();
    assert_eq!(
        c.breaker_states(),
        [(addr.to_string(), BreakerState::Closed)]
    );

    node.stop().expect("node ran");
    for attempt in 0..3 {
        let started = Instant::now();
        let err = c.get("k").await.unwrap_err();
        assert!(err.is_unavailable(), "attempt {attempt}: {err:?}");
        assert!(
            started.elapsed() < DEADLINE + SLACK,
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(c.breaker_states()[0].1, BreakerState::Open);
    assert_eq!(c.breaker_states()[0].1.metric_value(), 1);
    assert!(!c.healthy());

    // While open: no network, an immediate answer. The median is judged, so one preemption
    // on a busy machine does not fail the test; the slowest must still be far from a deadline.
    let mut times = Vec::new();
    for _ in 0..11 {
        let started = Instant::now();
        let err = c.get("k").await.unwrap_err();
        times.push(started.elapsed());
        match err {
            Error::Unavailable { node, message } => {
                assert_eq!(
                    (&*node, &*message),
                    (&*addr.to_string(), "circuit breaker open")
                );
            }
            other => panic!("{other:?}"),
        }
    }
    times.sort();
    assert!(
        times[5] < Duration::from_millis(5),
        "fail-fast took {times:?}"
    );
    assert!(times[10] < DEADLINE / 4, "fail-fast took {times:?}");

    let _restarted = node_on(addr);
    // Still cooling down: the restarted node is not tried yet.
    clock.advance(cooldown - Duration::from_millis(1));
    assert!(c.get("k").await.unwrap_err().is_unavailable());
    clock.advance(Duration::from_millis(1));

    // The trial call reaches the restarted (empty) node and closes the breaker. A trial that
    // misses the deadline on a busy machine reopens it; the next cooldown brings another.
    let mut trials = 0;
    let answer = loop {
        trials += 1;
        match c.get("k").await {
            Err(e) if e.is_unavailable() && trials < 3 => clock.advance(cooldown),
            other => break other,
        }
    };
    assert_eq!(answer.unwrap(), None);
    assert_eq!(c.breaker_states()[0].1, BreakerState::Closed);
    assert!(c.healthy());
    assert!(c.set("k", "again", SetOpts::default()).await.unwrap().0);
}

#[tokio::test]
async fn one_stopped_node_does_not_affect_the_other() {
    let up = start_node();
    let mut down = start_node();
    let c = Client::new(ClientConfig {
        deadline: DEADLINE,
        breaker_failures: 1,
        ..client_config(&[&up, &down])
    })
    .unwrap();
    down.stop().expect("node ran");
    let keys: Vec<bytes::Bytes> = (0..40).map(|i| format!("k{i}").into()).collect();
    let up_name = up.grpc.to_string();
    let (on_up, on_down): (Vec<_>, Vec<_>) = keys.iter().partition(|k| c.node_for(k) == up_name);
    assert!(!on_up.is_empty() && !on_down.is_empty());

    for k in &on_up {
        c.set((*k).clone(), "v", SetOpts::default()).await.unwrap();
    }
    assert!(
        c.get(on_down[0].clone())
            .await
            .unwrap_err()
            .is_unavailable()
    );
    let states: Vec<_> = c.breaker_states().into_iter().map(|(_, s)| s).collect();
    assert_eq!(states, [BreakerState::Closed, BreakerState::Open]);

    let found = c
        .get_many(&on_up.iter().map(|k| (*k).clone()).collect::<Vec<_>>())
        .await;
    assert!(found.unwrap().iter().all(Option::is_some));
    // A batch that needs the stopped node fails as a whole, at once.
    let started = Instant::now();
    assert!(c.get_many(&keys).await.unwrap_err().is_unavailable());
    assert!(started.elapsed() < DEADLINE + SLACK);
}
