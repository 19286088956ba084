//! Membership driven over chitchat's in-memory transport (the real codec, links that can be
//! cut) on tokio's paused clock: every duration asserted here is virtual time, the same on a
//! loaded machine as on an idle one.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chitchat::ChitchatEnvelope;
use chitchat::transport::{ChannelTransport, RecvOutcome, SendOutcome, Socket, Transport};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};

use super::*;

/// A resolver whose answers the test sets.
#[derive(Clone, Default)]
struct Names(Arc<Mutex<HashMap<String, Vec<SocketAddr>>>>);

impl Names {
    fn set(&self, name: &str, addrs: Vec<SocketAddr>) {
        self.0.lock().unwrap().insert(name.to_owned(), addrs);
    }
}

#[async_trait]
impl Resolve for Names {
    async fn resolve(&self, seed: &str) -> io::Result<Vec<SocketAddr>> {
        let found = self.0.lock().unwrap().get(seed).cloned();
        found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, seed.to_owned()))
    }
}

/// A simulated network: one in-memory transport, one resolver, and optionally a delay of up
/// to `jitter` on every datagram.
#[derive(Clone, Default)]
struct Net {
    transport: ChannelTransport,
    names: Names,
    jitter: Option<Duration>,
}

fn addr(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

fn me(id: &str) -> Member {
    Member {
        id: id.to_owned(),
        generation: 0,
        status: Status::Joining,
        resp: format!("{id}.test:6380"),
        grpc: format!("{id}.test:7070"),
        admin: format!("{id}.test:7071"),
    }
}

/// The test configuration of node `id` on port `port`, joining through `seeds`.
fn config(id: &str, port: u16, seeds: &[&str]) -> MembershipConfig {
    let mut config = MembershipConfig::new(me(id));
    config.listen_addr = addr(port);
    config.seeds = seeds.iter().map(|s| (*s).to_owned()).collect();
    config
}

impl Net {
    async fn start_config(&self, config: MembershipConfig) -> Result<Membership, MembershipError> {
        let resolver = Arc::new(self.names.clone());
        match self.jitter {
            None => Membership::start_with(config, &self.transport, resolver).await,
            Some(max) => {
                let seed = u64::from(config.listen_addr.port());
                let jitter = Jitter {
                    inner: self.transport.clone(),
                    max,
                    seed,
                };
                Membership::start_with(config, &jitter, resolver).await
            }
        }
    }

    async fn start_with_seeds(&self, id: &str, port: u16, seeds: &[&str]) -> Membership {
        self.start_config(config(id, port, seeds)).await.unwrap()
    }

    /// Starts node `id` on port `port`, joining through the node on port 1.
    async fn start(&self, id: &str, port: u16) -> Membership {
        let seed = addr(1).to_string();
        let seeds: &[&str] = if port == 1 { &[] } else { &[&seed] };
        self.start_with_seeds(id, port, seeds).await
    }

    /// Starts nodes "a", "b", … on ports 1, 2, …, a little apart, and waits until every one
    /// sees them all.
    async fn cluster(&self, size: u16) -> Vec<Membership> {
        let mut nodes = Vec::new();
        let mut all = Vec::new();
        for i in 0..size {
            let id = char::from(b'a' + u8::try_from(i).unwrap()).to_string();
            nodes.push(self.start(&id, i + 1).await);
            all.push(id);
            sleep(Duration::from_millis(37)).await;
        }
        let all = &all;
        let members = |ms: &[Member]| ms.iter().map(|m| m.id.clone()).collect::<Vec<_>>() == *all;
        wait_all(&nodes, Duration::from_secs(10), members).await;
        nodes
    }

    async fn cut(&self, a: u16, b: u16) {
        self.transport.remove_link(addr(a), addr(b)).await;
    }

    async fn heal(&self, a: u16, b: u16) {
        self.transport.add_link(addr(a), addr(b)).await;
    }
}

/// A transport over another that delivers each datagram after a delay of up to `max`, drawn
/// from a generator seeded by `seed` (so a run is repeatable): jitter, and reordering.
struct Jitter {
    inner: ChannelTransport,
    max: Duration,
    seed: u64,
}

#[async_trait]
impl Transport for Jitter {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        Ok(Box::new(JitterSocket {
            inner: self.inner.open(listen_addr).await?,
            max: self.max,
            state: self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            pending: Vec::new(),
        }))
    }
}

struct JitterSocket {
    inner: Box<dyn Socket>,
    max: Duration,
    /// Xorshift state.
    state: u64,
    /// Received datagrams and when to deliver them.
    pending: Vec<(Instant, RecvOutcome)>,
}

impl JitterSocket {
    fn delay(&mut self) -> Duration {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.max.mul_f64((self.state % 1_000) as f64 / 1_000.0)
    }
}

#[async_trait]
impl Socket for JitterSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        self.inner.send(to, envelope).await
    }

    /// Cancel-safe, as the server's `select!` needs: a datagram is either still in the inner
    /// socket or in `pending`.
    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            let now = Instant::now();
            if let Some(due) = self.pending.iter().position(|(at, _)| *at <= now) {
                return Ok(self.pending.swap_remove(due).1);
            }
            let next = self.pending.iter().map(|(at, _)| *at).min();
            tokio::select! {
                received = self.inner.recv() => {
                    let at = Instant::now() + self.delay();
                    self.pending.push((at, received?));
                }
                () = tokio::time::sleep_until(next.unwrap_or(now)), if next.is_some() => {}
            }
        }
    }
}

/// The ids of `members`.
fn ids(members: &[Member]) -> Vec<&str> {
    members.iter().map(|m| m.id.as_str()).collect()
}

/// Waits until `holds` is true of the members `node` sees; the virtual time it took.
async fn wait(node: &Membership, limit: Duration, holds: impl Fn(&[Member]) -> bool) -> Duration {
    let start = Instant::now();
    let mut members = node.members();
    let waited = timeout(limit, members.wait_for(|ms| holds(ms)))
        .await
        .is_ok();
    let now = members.borrow().clone();
    assert!(waited, "not within {limit:?}: {now:?}");
    start.elapsed()
}

/// Waits until `holds` is true on every node; the virtual time until the last one.
async fn wait_all(
    nodes: &[Membership],
    limit: Duration,
    holds: impl Fn(&[Member]) -> bool + Copy,
) -> Duration {
    let start = Instant::now();
    for node in nodes {
        wait(node, limit.saturating_sub(start.elapsed()), holds).await;
    }
    start.elapsed()
}

/// Records every member list `node` publishes from now on.
fn record(node: &Membership) -> Arc<Mutex<Vec<Vec<Member>>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut members: watch::Receiver<Vec<Member>> = node.members();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        log.lock()
            .unwrap()
            .push(members.borrow_and_update().clone());
        while members.changed().await.is_ok() {
            log.lock()
                .unwrap()
                .push(members.borrow_and_update().clone());
        }
    });
    seen
}

fn lacks(id: &str) -> impl Fn(&[Member]) -> bool + Copy + '_ {
    move |members| members.iter().all(|m| m.id != id)
}

/// The bound the issue sets on failure detection, on loopback.
const DETECTION_BOUND: Duration = Duration::from_secs(2);

#[tokio::test(start_paused = true)]
async fn a_node_alone_is_a_member_at_once() {
    let net = Net::default();
    let alone = net.start("a", 1).await;
    let members = alone.members().borrow().clone();
    assert_eq!(
        members,
        [Member {
            generation: alone.generation(),
            ..me("a")
        }]
    );
    sleep(Duration::from_secs(10)).await;
    assert_eq!(
        *alone.members().borrow(),
        members,
        "nobody else, nothing changed"
    );
}

#[tokio::test(start_paused = true)]
async fn three_nodes_join_and_agree() {
    let net = Net::default();
    let start = Instant::now();
    let nodes = net.cluster(3).await;
    let joined = start.elapsed();
    println!("3 nodes joined in {joined:?} (virtual)");
    assert!(joined < Duration::from_secs(1), "{joined:?}");
    let expected: Vec<Member> = ["a", "b", "c"]
        .iter()
        .zip(&nodes)
        .map(|(id, node)| Member {
            generation: node.generation(),
            ..me(id)
        })
        .collect();
    for node in &nodes {
        assert_eq!(*node.members().borrow(), expected);
    }
    let generations: Vec<u64> = nodes.iter().map(Membership::generation).collect();
    assert!(
        generations.windows(2).all(|w| w[0] < w[1]),
        "{generations:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn status_changes_reach_every_node() {
    let net = Net::default();
    let nodes = net.cluster(3).await;
    let status_of = |id: &'static str, status| {
        move |ms: &[Member]| ms.iter().any(|m| m.id == id && m.status == status)
    };
    for status in [Status::Ready, Status::Draining] {
        nodes[1].set_status(status);
        let own = wait(&nodes[1], Duration::from_millis(1), status_of("b", status)).await;
        assert!(own.is_zero(), "our own list shows it at once, took {own:?}");
        let everywhere = wait_all(&nodes, Duration::from_secs(1), status_of("b", status)).await;
        println!("{status} reached every node in {everywhere:?}");
        assert!(everywhere <= 3 * DEFAULT_GOSSIP_INTERVAL, "{everywhere:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_node_that_leaves_is_dropped_at_once() {
    let net = Net::default();
    let mut nodes = net.cluster(3).await;
    sleep(Duration::from_secs(5)).await;
    let leaving = nodes.pop().unwrap();
    let start = Instant::now();
    leaving.shutdown().await;
    let took = start.elapsed();
    assert!(
        took <= 2 * DEFAULT_GOSSIP_INTERVAL,
        "shutdown took {took:?}"
    );
    wait_all(&nodes, Duration::from_secs(5), lacks("c")).await;
    let gone = start.elapsed();
    println!("shutdown took {took:?}; the others had dropped the node {gone:?} after it began");
    // Well before failure detection (about 0.8 s here) could have done it.
    assert!(gone <= 2 * DEFAULT_GOSSIP_INTERVAL, "{gone:?}");
    sleep(Duration::from_secs(30)).await;
    for node in &nodes {
        assert_eq!(ids(&node.members().borrow()), ["a", "b"]);
    }
}

/// Kills the last of `nodes` (no goodbye) after they ran a while; how long until every other
/// node's list lacks it, after checking none of them dropped anyone before.
async fn kill_last(nodes: &mut Vec<Membership>, id: &str) -> Duration {
    let logs: Vec<_> = nodes.iter().map(record).collect();
    sleep(Duration::from_secs(30)).await;
    let size = nodes.len();
    for log in &logs {
        assert!(
            log.lock().unwrap().iter().all(|ms| ms.len() == size),
            "a member flapped"
        );
    }
    println!(
        "{size} nodes, detection timeouts on a: {:?}",
        nodes[0].detection_timeouts().await
    );
    nodes.pop().unwrap().abort();
    wait_all(nodes, Duration::from_secs(10), lacks(id)).await
}

#[tokio::test(start_paused = true)]
async fn a_killed_node_leaves_every_table_within_the_bound() {
    let mut times = Vec::new();
    for size in [2u16, 3, 5] {
        let net = Net::default();
        let mut nodes = net.cluster(size).await;
        let id = char::from(b'a' + u8::try_from(size - 1).unwrap()).to_string();
        let took = kill_last(&mut nodes, &id).await;
        times.push((size, took));
        assert!(took <= DETECTION_BOUND, "{size} nodes: {took:?}");
        // Failure detection, not a goodbye, and not a hair-trigger either.
        assert!(took >= Duration::from_millis(400), "{size} nodes: {took:?}");
        sleep(Duration::from_secs(30)).await;
        for node in &nodes {
            assert!(lacks(&id)(&node.members().borrow()), "{id} came back");
        }
    }
    println!("kill detected by every node after (size, virtual time): {times:?}");
}

#[tokio::test(start_paused = true)]
async fn a_restarted_node_is_a_new_generation_that_replaces_the_old() {
    let net = Net::default();
    let mut nodes = net.cluster(3).await;
    let logs: Vec<_> = nodes.iter().take(2).map(record).collect();
    let mut generations = vec![nodes[2].generation()];
    // At once (before the old one is detected), then after it has been dropped.
    for pause in [Duration::from_millis(1), Duration::from_secs(5)] {
        sleep(Duration::from_secs(10)).await;
        nodes.pop().unwrap().abort();
        sleep(pause).await;
        nodes.push(net.start("c", 3).await);
        let generation = nodes[2].generation();
        assert!(generation > *generations.last().unwrap());
        generations.push(generation);
        let is_new =
            move |ms: &[Member]| ms.iter().any(|m| m.id == "c" && m.generation == generation);
        let took = wait_all(&nodes, Duration::from_secs(2), is_new).await;
        println!("restarted after {pause:?}: new generation everywhere after {took:?}");
    }
    sleep(Duration::from_secs(60)).await;
    for log in logs {
        let seen: Vec<u64> = log
            .lock()
            .unwrap()
            .iter()
            .flat_map(|ms| {
                assert!(
                    ms.iter().filter(|m| m.id == "c").count() <= 1,
                    "two of c: {ms:?}"
                );
                ms.iter().filter(|m| m.id == "c").map(|m| m.generation)
            })
            .collect();
        assert!(
            seen.windows(2).all(|w| w[0] <= w[1]),
            "an old generation came back: {seen:?}"
        );
        assert_eq!(seen.last(), generations.last());
        for generation in &generations {
            assert!(seen.contains(generation));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn nodes_cut_apart_keep_each_other_through_a_third() {
    let net = Net::default();
    let nodes = net.cluster(3).await;
    let logs: Vec<_> = nodes.iter().map(record).collect();
    net.cut(1, 2).await;
    sleep(Duration::from_secs(60)).await;
    net.heal(1, 2).await;
    sleep(Duration::from_secs(10)).await;
    for log in logs {
        assert!(
            log.lock()
                .unwrap()
                .iter()
                .all(|ms| ids(ms) == ["a", "b", "c"])
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_node_cut_from_everyone_is_dropped_then_rejoins() {
    let net = Net::default();
    let nodes = net.cluster(3).await;
    sleep(Duration::from_secs(10)).await;
    net.cut(3, 1).await;
    net.cut(3, 2).await;
    let cut = Instant::now();
    wait(&nodes[2], DETECTION_BOUND, |ms| ids(ms) == ["c"]).await;
    let alone = cut.elapsed();
    wait_all(&nodes[..2], DETECTION_BOUND, lacks("c")).await;
    let dropped = cut.elapsed();
    println!("cut: alone after {alone:?}; dropped by the others after {dropped:?}");
    assert!(dropped <= DETECTION_BOUND && alone <= DETECTION_BOUND);
    sleep(Duration::from_secs(30)).await;
    net.heal(3, 1).await;
    net.heal(3, 2).await;
    let all = |ms: &[Member]| ids(ms) == ["a", "b", "c"];
    let back = wait_all(&nodes, Duration::from_secs(3), all).await;
    println!("healed: back everywhere after {back:?}");
}

#[tokio::test(start_paused = true)]
async fn a_partition_longer_than_the_grace_period_heals_through_the_seeds() {
    let net = Net::default();
    let nodes = net.cluster(3).await;
    net.cut(3, 1).await;
    net.cut(3, 2).await;
    // Long enough for every node to forget the other side entirely.
    sleep(DEFAULT_DEAD_NODE_GRACE_PERIOD + Duration::from_secs(60)).await;
    assert_eq!(ids(&nodes[2].members().borrow()), ["c"]);
    assert_eq!(ids(&nodes[0].members().borrow()), ["a", "b"]);
    net.heal(3, 1).await;
    net.heal(3, 2).await;
    let all = |ms: &[Member]| ids(ms) == ["a", "b", "c"];
    let back = wait_all(&nodes, Duration::from_secs(3), all).await;
    println!("healed after the grace period: back everywhere after {back:?}");
}

#[tokio::test(start_paused = true)]
async fn a_seed_name_that_resolves_late_is_resolved_again() {
    let net = Net::default();
    let a = net.start("a", 1).await;
    let name = "larder-headless.test:7946";
    let b = net.start_with_seeds("b", 2, &[name]).await;
    sleep(Duration::from_secs(20)).await;
    assert_eq!(
        ids(&b.members().borrow()),
        ["b"],
        "the name does not resolve yet"
    );
    assert_eq!(ids(&a.members().borrow()), ["a"]);
    net.names
        .set(name, vec![addr(2), addr(1), "[::1]:7946".parse().unwrap()]);
    let both = |ms: &[Member]| ids(ms) == ["a", "b"];
    let took = wait_all(&[a, b], DEFAULT_SEED_REFRESH + Duration::from_secs(1), both).await;
    println!("joined {took:?} after the name started resolving");
}

#[tokio::test(start_paused = true)]
async fn nodes_of_another_cluster_are_ignored() {
    let net = Net::default();
    let a = net.start("a", 1).await;
    let other = |id, port, seeds: &[&str]| {
        let mut config = config(id, port, seeds);
        config.cluster_id = "other".to_owned();
        config
    };
    let x = net
        .start_config(other("x", 2, &["127.0.0.1:1"]))
        .await
        .unwrap();
    let y = net
        .start_config(other("y", 3, &["127.0.0.1:1", "127.0.0.1:2"]))
        .await
        .unwrap();
    sleep(Duration::from_secs(20)).await;
    assert_eq!(ids(&a.members().borrow()), ["a"]);
    for node in [x, y] {
        assert_eq!(
            ids(&node.members().borrow()),
            ["x", "y"],
            "they gossip among themselves"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn no_flapping_under_heavy_jitter_and_kills_still_seen() {
    let net = Net {
        jitter: Some(Duration::from_millis(300)),
        ..Net::default()
    };
    let mut nodes = net.cluster(3).await;
    let logs: Vec<_> = nodes.iter().map(record).collect();
    sleep(Duration::from_secs(600)).await;
    for log in &logs {
        assert!(
            log.lock().unwrap().iter().all(|ms| ms.len() == 3),
            "a member flapped"
        );
    }
    let took = kill_last(&mut nodes, "c").await;
    println!("with up to 300 ms of jitter: kill detected after {took:?}");
    assert!(took <= DETECTION_BOUND, "{took:?}");
}

#[test]
fn membership_can_be_shared_between_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Membership>();
}

#[tokio::test(start_paused = true)]
async fn bad_configurations_are_refused() {
    let net = Net::default();
    let seed = net.start_config(config("a", 1, &["no-port"])).await;
    assert!(matches!(seed, Err(MembershipError::Seed(s)) if s == "no-port"));
    let mut member = config("a", 1, &[]);
    member.me.grpc = "nowhere".to_owned();
    assert!(matches!(
        net.start_config(member).await,
        Err(MembershipError::Member(_))
    ));
    let mut unspecified = config("a", 1, &[]);
    unspecified.listen_addr = ([0, 0, 0, 0], 1).into();
    let refused = net.start_config(unspecified).await;
    assert!(matches!(refused, Err(MembershipError::Advertise(_))));
    let _a = net.start("a", 1).await;
    let taken = net.start_config(config("b", 1, &[])).await;
    assert!(
        matches!(taken, Err(MembershipError::Bind { .. })),
        "port 1 is taken"
    );
}
