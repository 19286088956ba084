//! The near-cache over real sockets: gateways in front of a real cache node keep copies of
//! what they read, the node pushes invalidations, and a write acknowledged through one gateway
//! is never read older through another; a node that goes away takes the copies with it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use larder_api::config::Consistency;
use larder_api::{ApiConfig, CollectionConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

mod support;
use support::{Reply, eventually, metric, read_responses, start, start_node};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The PostgreSQL the gateways share; `None` (and the test is skipped) outside CI without one.
fn postgres() -> Option<String> {
    match std::env::var("LARDER_TEST_POSTGRES_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI must set LARDER_TEST_POSTGRES_URL")
        }
        Err(_) => {
            eprintln!("LARDER_TEST_POSTGRES_URL unset: skipped");
            None
        }
    }
}

/// A gateway configuration with one fresh collection over `database` and `node`.
fn gateway(database: &str, node: SocketAddr, name: &str, consistency: Consistency) -> ApiConfig {
    ApiConfig {
        database: database.into(),
        cache_nodes: vec![node.to_string()],
        collections: vec![CollectionConfig {
            name: name.into(),
            consistency,
            ..CollectionConfig::default()
        }],
        ..ApiConfig::default()
    }
}

fn fresh_name() -> String {
    format!(
        "near_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// One keep-alive HTTP/1.1 connection, reopened when the server closes it.
struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Self {
        Self { addr, stream: None }
    }

    async fn send(&mut self, method: &str, path: &str, body: Option<&str>) -> Reply {
        let body = body.unwrap_or("");
        let raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/vnd.api+json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        for _ in 0..2 {
            if self.stream.is_none() {
                self.stream = Some(TcpStream::connect(self.addr).await.unwrap());
            }
            let stream = self.stream.as_mut().unwrap();
            if stream.write_all(raw.as_bytes()).await.is_ok()
                && let Some(reply) = read_responses(stream, 1).await.pop()
            {
                if reply.header("connection") == Some("close") {
                    self.stream = None;
                }
                return reply;
            }
            self.stream = None;
        }
        panic!("{method} {path}: no response");
    }

    /// Writes `n` into the document and answers the version the write was acknowledged with.
    async fn write(&mut self, name: &str, id: &str, n: u64) -> i64 {
        let body =
            format!(r#"{{"data":{{"type":"{name}","id":"{id}","attributes":{{"n":{n}}}}}}}"#);
        let reply = self
            .send("PATCH", &format!("/v1/{name}/{id}"), Some(&body))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        version(&reply)
    }

    /// Reads the document: its version.
    async fn read(&mut self, name: &str, id: &str) -> i64 {
        let reply = self.send("GET", &format!("/v1/{name}/{id}"), None).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        version(&reply)
    }

    async fn create(&mut self, name: &str, id: &str) {
        let body = format!(r#"{{"data":{{"type":"{name}","id":"{id}","attributes":{{"n":0}}}}}}"#);
        let reply = self.send("POST", &format!("/v1/{name}"), Some(&body)).await;
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
}

fn version(reply: &Reply) -> i64 {
    let etag = reply.header("etag").expect("an ETag");
    etag.trim_matches(|c| c == '"' || c == 'W' || c == '/')
        .parse()
        .unwrap_or_else(|_| panic!("ETag {etag}"))
}

/// A small random number generator (xorshift), seeded per task so runs differ.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_answered_from_the_near_cache() {
    let (node, admin, stop_node) = start_node("127.0.0.1:0").await;
    let name = fresh_name();
    let mut config = support::config();
    config.cache_nodes = vec![node.to_string()];
    config.collections[0].name = name.clone();
    let gw = start(config).await;
    let mut conn = Conn::new(gw.addr);
    conn.create(&name, "one").await;
    let mut reads = 0;
    eventually("reads come from the near-cache", async || {
        reads += 1;
        assert_eq!(conn.read(&name, "one").await, 1);
        metric(gw.addr, "larder_api_near_cache_hits_total").await >= 20
    })
    .await;
    let node_reads = metric(admin, "larder_cache_hits_total").await;
    assert!(
        node_reads < reads / 2,
        "{node_reads} of {reads} reads reached the node"
    );
    gw.stop.cancel();
    stop_node.cancel();
}

/// Writers and readers on two gateways over one node and one PostgreSQL, 10,000 operations
/// in random interleavings: every read that starts after a write was acknowledged (through
/// either gateway) sees that write or a later one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_gateway_is_never_read_older_through_the_other() {
    let Some(database) = postgres() else { return };
    let (node, _, stop_node) = start_node("127.0.0.1:0").await;
    let name = fresh_name();
    let a = start(gateway(&database, node, &name, Consistency::Strong)).await;
    let b = start(gateway(&database, node, &name, Consistency::Strong)).await;
    const DOCS: usize = 6;
    let acked: Arc<[AtomicI64; DOCS]> = Arc::new(std::array::from_fn(|_| AtomicI64::new(1)));
    let mut setup = Conn::new(a.addr);
    for d in 0..DOCS {
        setup.create(&name, &format!("d{d}")).await;
    }
    const TASKS: u64 = 4;
    const OPS: u64 = 10_000 / TASKS;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (acked, name) = (acked.clone(), name.clone());
        let mut conns = [Conn::new(a.addr), Conn::new(b.addr)];
        let seed = 0x9e37_79b9_7f4a_7c15 ^ (t + 1) ^ u64::from(std::process::id()) << 20;
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(seed);
            let mut stale_checks = 0;
            for i in 0..OPS {
                let d = rng.below(DOCS as u64) as usize;
                let id = format!("d{d}");
                let conn = &mut conns[rng.below(2) as usize];
                if rng.below(4) == 0 {
                    let v = conn.write(&name, &id, i).await;
                    acked[d].fetch_max(v, Ordering::SeqCst);
                } else {
                    let floor = acked[d].load(Ordering::SeqCst);
                    let seen = conn.read(&name, &id).await;
                    assert!(
                        seen >= floor,
                        "read version {seen} of {id} after version {floor} was acknowledged"
                    );
                    stale_checks += 1;
                }
            }
            stale_checks
        }));
    }
    let mut checks = 0;
    for task in tasks {
        checks += task.await.unwrap();
    }
    assert!(checks > 5_000, "{checks} reads checked");
    // The reads did use the near-cache (else the test proves nothing about it).
    for gw in [&a, &b] {
        let hits = metric(gw.addr, "larder_api_near_cache_hits_total").await;
        let invalidations = metric(gw.addr, "larder_api_near_cache_invalidations_total").await;
        assert!(
            hits > 100 && invalidations > 100,
            "{hits} near hits, {invalidations} invalidations"
        );
    }
    a.stop.cancel();
    b.stop.cancel();
    stop_node.cancel();
}

/// A node that goes away takes the copies read from it with it: a write made while it is down
/// is not read older afterwards, and once it is back the near-cache fills again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_goes_away_takes_the_near_copies_with_it() {
    let Some(database) = postgres() else { return };
    let (node, _, stop_node) = start_node("127.0.0.1:0").await;
    let name = fresh_name();
    let mut api = gateway(&database, node, &name, Consistency::Strong);
    api.cache_deadline_ms = 200;
    let a = start(api.clone()).await;
    let b = start(api).await;
    let (mut to_a, mut to_b) = (Conn::new(a.addr), Conn::new(b.addr));
    to_a.create(&name, "one").await;
    eventually("b holds a copy", async || {
        assert_eq!(to_b.read(&name, "one").await, 1);
        metric(b.addr, "larder_api_near_cache_hits_total").await >= 3
    })
    .await;
    let flushes = metric(b.addr, "larder_api_near_cache_flushes_total").await;
    stop_node.cancel();
    eventually("b drops its copies", async || {
        metric(b.addr, "larder_api_near_cache_flushes_total").await > flushes
    })
    .await;
    let written = to_a.write(&name, "one", 7).await;
    assert_eq!(written, 2);
    assert_eq!(
        to_b.read(&name, "one").await,
        2,
        "read older after the write"
    );

    let (_, _, stop_node) = start_node(&node.to_string()).await;
    let hits = metric(b.addr, "larder_api_near_cache_hits_total").await;
    eventually("b fills its near-cache again", async || {
        assert_eq!(to_b.read(&name, "one").await, 2);
        metric(b.addr, "larder_api_near_cache_hits_total").await > hits + 3
    })
    .await;
    a.stop.cancel();
    b.stop.cancel();
    stop_node.cancel();
}

/// An eventual collection's writes are not waited for, but the other gateway drops its copy
/// soon after (within the lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eventual_write_reaches_the_other_gateways_copy_soon() {
    let Some(database) = postgres() else { return };
    let (node, _, stop_node) = start_node("127.0.0.1:0").await;
    let name = fresh_name();
    let a = start(gateway(&database, node, &name, Consistency::Eventual)).await;
    let b = start(gateway(&database, node, &name, Consistency::Eventual)).await;
    let (mut to_a, mut to_b) = (Conn::new(a.addr), Conn::new(b.addr));
    to_a.create(&name, "one").await;
    eventually("b holds a copy", async || {
        to_b.read(&name, "one").await == 1
            && metric(b.addr, "larder_api_near_cache_hits_total").await >= 3
    })
    .await;
    to_a.write(&name, "one", 5).await;
    let started = tokio::time::Instant::now();
    eventually("b reads the write", async || {
        to_b.read(&name, "one").await == 2
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    a.stop.cancel();
    b.stop.cancel();
    stop_node.cancel();
}
