//! Two gateways without cache nodes over one PostgreSQL database, each with its in-process
//! cache, over real sockets: a strong write answered by one is never read older through the
//! other, however the writes and reads interleave; a gateway whose listener stops hearing
//! stops serving its copies and delays strong writes by at most a lease; one whose listener
//! connection is killed flushes and serves fresh data once it listens again; an eventual
//! write is stale elsewhere at most a lease. And on SQLite a second gateway is refused.
//!
//! Each PostgreSQL case makes a database of its own (so only its gateways are peers).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use larder_api::{ApiConfig, CollectionConfig, Consistency};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const LEASE_MS: u64 = 400;
/// The lease and the tenth the writer adds for clock rates.
const GRACE: Duration = Duration::from_millis(LEASE_MS + LEASE_MS / 10);

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A fresh database on the test server, or `None` to skip.
async fn fresh_database() -> Option<String> {
    let base = match std::env::var("LARDER_TEST_POSTGRES_URL") {
        Ok(url) => url,
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI must set LARDER_TEST_POSTGRES_URL")
        }
        Err(_) => {
            eprintln!("LARDER_TEST_POSTGRES_URL unset: skipped");
            return None;
        }
    };
    let name = format!(
        "larder_peers_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let admin = sqlx::PgPool::connect(&base).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    let (server, _) = base.rsplit_once('/').unwrap();
    Some(format!("{server}/{name}"))
}

fn config(url: &str) -> ApiConfig {
    ApiConfig {
        database: url.to_owned(),
        local_cache_lease_ms: LEASE_MS,
        collections: vec![
            CollectionConfig {
                name: "docs".into(),
                ..CollectionConfig::default()
            },
            CollectionConfig {
                name: "notes".into(),
                consistency: Consistency::Eventual,
                ..CollectionConfig::default()
            },
        ],
        ..ApiConfig::default()
    }
}

struct Gateway {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), larder_api::Error>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(url: &str) -> Gateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gateway = larder_api::Gateway::open(config(url), listener)
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(gateway.serve(stop.clone()));
    Gateway { addr, stop, task }
}

/// One HTTP/1.1 connection to a gateway.
struct Client(SendRequest<Full<Bytes>>);

struct Reply {
    status: u16,
    version: i64,
    body: String,
}

impl Client {
    async fn to(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Self(sender)
    }

    async fn send(&mut self, method: &str, path: &str, body: Option<serde_json::Value>) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "larder");
        if body.is_some() {
            request = request.header("content-type", "application/vnd.api+json");
        }
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        self.0.ready().await.unwrap();
        let response = self
            .0
            .send_request(request.body(Full::new(body)).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let version = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_matches('"').parse().ok())
            .unwrap_or(0);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            version,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// The version `collection/id` reads at (0: not found).
    async fn version(&mut self, collection: &str, id: &str) -> i64 {
        let reply = self
            .send("GET", &format!("/v1/{collection}/{id}"), None)
            .await;
        match reply.status {
            200 => reply.version,
            404 => 0,
            other => panic!("GET {collection}/{id}: {other} {}", reply.body),
        }
    }

    async fn create(&mut self, collection: &str, id: &str) {
        let body = json!({"data": {"type": collection, "id": id, "attributes": {"n": 0}}});
        let reply = self
            .send("POST", &format!("/v1/{collection}"), Some(body))
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }

    /// Sets attribute `n`; the version written.
    async fn update(&mut self, collection: &str, id: &str, n: u64) -> i64 {
        let body = json!({"data": {"type": collection, "id": id, "attributes": {"n": n}}});
        let path = format!("/v1/{collection}/{id}");
        let reply = self.send("PATCH", &path, Some(body)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.version
    }

    async fn metrics(&mut self) -> String {
        self.send("GET", "/metrics", None).await.body
    }

    /// The value of the unlabelled series `name` (or `name{labels}`).
    async fn metric(&mut self, series: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    /// This gateway's id among its peers.
    async fn peer_id(&mut self) -> String {
        let text = self.metrics().await;
        let line = text
            .lines()
            .find(|l| l.starts_with("larder_api_peer_info{"))
            .unwrap();
        line.split('"').nth(1).unwrap().to_owned()
    }
}

/// Polls `check` every 10 ms until it holds, for at most `limit`; how long it took.
async fn within<F: AsyncFnMut() -> bool>(what: &str, limit: Duration, mut check: F) -> Duration {
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until every gateway serves from its cache, hears the others, and has listened a
/// whole lease (so that its strong writes wait for acknowledgements, not for the lease).
async fn warm(clients: &mut [&mut Client]) {
    for client in clients.iter_mut() {
        within("warm", Duration::from_secs(10), async || {
            client.metric("larder_api_local_cache_serving").await == 1.0
                && client.metric("larder_api_peers_live").await >= 1.0
        })
        .await;
    }
    tokio::time::sleep(GRACE).await;
}

/// A small xorshift generator, seeded per worker, so a failure can be replayed by its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The strong writes a gateway answered after waiting out a peer's lease.
const BY_LEASES: &str = "larder_api_strong_writes_settled_total{by=\"leases\"}";

const WORKERS: u64 = 8;
const ROUNDS: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strong_writes_are_never_read_older_through_the_other_gateway() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let gateways = [start(&url).await, start(&url).await];
    let addrs = [gateways[0].addr, gateways[1].addr];
    warm(&mut [
        &mut Client::to(addrs[0]).await,
        &mut Client::to(addrs[1]).await,
    ])
    .await;
    // The version each document was last acknowledged at: no read sent later may see less.
    let acked: Arc<Vec<AtomicI64>> = Arc::new((0..WORKERS).map(|_| AtomicI64::new(0)).collect());
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut readers = Vec::new();
    for r in 0..2u64 {
        let (acked, done) = (acked.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            let mut clients = [Client::to(addrs[0]).await, Client::to(addrs[1]).await];
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (r + 1));
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) {
                let doc = rng.below(WORKERS);
                let floor = acked[doc as usize].load(Ordering::SeqCst);
                let via = rng.below(2) as usize;
                let seen = clients[via].version("docs", &format!("d{doc}")).await;
                assert!(
                    seen >= floor,
                    "reader {r} via {via}: d{doc} at {seen} after {floor}"
                );
                reads += 1;
            }
            reads
        }));
    }
    let mut writers = Vec::new();
    for w in 0..WORKERS {
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            let mut clients = [Client::to(addrs[0]).await, Client::to(addrs[1]).await];
            let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ (w + 1));
            let id = format!("d{w}");
            clients[0].create("docs", &id).await;
            acked[w as usize].store(1, Ordering::SeqCst);
            for round in 0..ROUNDS / WORKERS {
                // The other gateway holds a copy from the last round's read (or from its
                // read of the round before, where this one wrote): the write must reach it
                // before it is answered. A quarter of the time the writer is read too.
                let writer = rng.below(2) as usize;
                let version = clients[writer].update("docs", &id, round).await;
                acked[w as usize].store(version, Ordering::SeqCst);
                let mut via = vec![1 - writer];
                if rng.below(4) == 0 {
                    via.insert(rng.below(2) as usize, writer);
                }
                for via in via {
                    let seen = clients[via].version("docs", &id).await;
                    assert_eq!(
                        seen, version,
                        "worker {w} round {round}: via {writer}, read via {via}"
                    );
                }
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.unwrap();
    }
    let elapsed = started.elapsed();
    let mut a = Client::to(addrs[0]).await;
    let mut b = Client::to(addrs[1]).await;
    let dropped = a.metric("larder_api_invalidations_received_total").await
        + b.metric("larder_api_invalidations_received_total").await;
    let by_acks = a
        .metric("larder_api_strong_writes_settled_total{by=\"acks\"}")
        .await
        + b.metric("larder_api_strong_writes_settled_total{by=\"acks\"}")
            .await;
    eprintln!(
        "{ROUNDS} writes, {reads} concurrent reads in {elapsed:?}; {dropped} copies dropped, \
         {by_acks} writes settled by acks"
    );
    assert!(
        dropped >= ROUNDS as f64,
        "every write reached the other gateway"
    );
    // Both gateways were up throughout: writes ended on acknowledgements, not on leases
    // (a few may, if this machine stalls a gateway's pings for a lease).
    assert!(by_acks >= ROUNDS as f64 * 0.9, "{by_acks}");
}

/// A TCP proxy to PostgreSQL that can stop passing what the server sends to listening
/// connections (those whose client sent `LISTEN`), as if the listener's link had stalled.
struct Proxy {
    addr: SocketAddr,
    freeze: watch::Sender<bool>,
}

impl Proxy {
    async fn to(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (freeze, frozen) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(upstream).await.unwrap();
                tokio::spawn(pass(client, server, frozen.clone()));
            }
        });
        Self { addr, freeze }
    }
}

async fn pass(client: TcpStream, server: TcpStream, mut frozen: watch::Receiver<bool>) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let listening = Arc::new(AtomicBool::new(false));
    let marks = listening.clone();
    let up = async move {
        let mut buf = vec![0; 64 << 10];
        while let Ok(n @ 1..) = client_rx.read(&mut buf).await {
            if buf[..n].windows(7).any(|w| w == b"LISTEN ") {
                marks.store(true, Ordering::SeqCst);
            }
            if server_tx.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let down = async move {
        let mut buf = vec![0; 64 << 10];
        while let Ok(n @ 1..) = server_rx.read(&mut buf).await {
            if listening.load(Ordering::SeqCst) {
                let _ = frozen.wait_for(|f| !f).await;
            }
            if client_tx.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(up, down);
}

fn via_proxy(url: &str, proxy: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, rest) = rest.split_once('@').unwrap();
    let (_, path) = rest.split_once('/').unwrap();
    format!("{scheme}://{userinfo}@{proxy}/{path}")
}

fn server_addr(url: &str) -> SocketAddr {
    let rest = url.split_once('@').unwrap().1;
    rest.split('/').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_hearing_stops_serving_and_delays_strong_writes_by_at_most_a_lease() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let proxy = Proxy::to(server_addr(&url)).await;
    let ga = start(&url).await;
    let gb = start(&via_proxy(&url, proxy.addr)).await;
    let mut a = Client::to(ga.addr).await;
    let mut b = Client::to(gb.addr).await;
    warm(&mut [&mut a, &mut b]).await;
    a.create("docs", "x").await;
    a.create("notes", "y").await;
    assert_eq!(b.version("docs", "x").await, 1);
    assert_eq!(b.version("notes", "y").await, 1);

    proxy.freeze.send_replace(true);
    let started = Instant::now();
    assert_eq!(a.update("docs", "x", 1).await, 2);
    let delay = started.elapsed();
    // B was heard from just now: A waits for its lease, no longer.
    assert!(delay <= GRACE + Duration::from_millis(300), "{delay:?}");
    assert_eq!(
        a.metric(BY_LEASES).await,
        1.0,
        "the write waited for B's lease"
    );
    assert_eq!(b.version("docs", "x").await, 2, "B reads the database");
    assert_eq!(b.metric("larder_api_local_cache_serving").await, 0.0);

    // Unheard, B stops pinging; once its lease has lapsed for A, A's writes do not wait.
    tokio::time::sleep(2 * GRACE).await;
    assert_eq!(a.metric("larder_api_peers_live").await, 0.0);
    let started = Instant::now();
    assert_eq!(a.update("docs", "x", 2).await, 3);
    assert!(started.elapsed() < GRACE, "{:?}", started.elapsed());
    assert_eq!(a.metric(BY_LEASES).await, 1.0, "no peer left to wait for");
    assert_eq!(b.version("docs", "x").await, 3);

    // Heard again, B catches up on what it missed and serves from its cache again.
    proxy.freeze.send_replace(false);
    within("B serves again", Duration::from_secs(5), async || {
        b.metric("larder_api_local_cache_serving").await == 1.0
    })
    .await;
    assert_eq!(b.version("docs", "x").await, 3);
    assert_eq!(b.version("notes", "y").await, 1);

    // An eventual write does not wait; B, unheard again, serves its old copy no longer
    // than a lease.
    proxy.freeze.send_replace(true);
    let started = Instant::now();
    assert_eq!(a.update("notes", "y", 1).await, 2);
    within("B stops serving the old note", GRACE, async || {
        b.version("notes", "y").await == 2
    })
    .await;
    let stale = started.elapsed();
    eprintln!("strong write delayed {delay:?}; eventual write stale on B for {stale:?}");
    assert!(stale <= Duration::from_millis(LEASE_MS + 150), "{stale:?}");
    proxy.freeze.send_replace(false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_listener_is_killed_flushes_and_serves_fresh_data_again() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let ga = start(&url).await;
    let gb = start(&url).await;
    let mut a = Client::to(ga.addr).await;
    let mut b = Client::to(gb.addr).await;
    warm(&mut [&mut a, &mut b]).await;
    a.create("docs", "x").await;
    assert_eq!(b.version("docs", "x").await, 1);
    // Changed behind every gateway's back (no announcement): B's copy stays.
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(
        "UPDATE larder_documents SET version = 2, doc = replace(doc, '\"n\":0', '\"n\":9') \
         WHERE collection = 'docs' AND id = 'x'",
    )
    .execute(&db)
    .await
    .unwrap();
    assert_eq!(b.version("docs", "x").await, 1, "B serves its copy");

    let name = format!("larder listener {}", b.peer_id().await);
    let old: i32 =
        sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
            .bind(&name)
            .fetch_one(&db)
            .await
            .unwrap();
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(old)
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(killed, "{name}");
    // A new listening connection (the killed one may stay listed while it exits), and B
    // serving again.
    let took = within("B listens again", Duration::from_secs(10), async || {
        let listening: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND pid <> $2",
        )
        .bind(&name)
        .bind(old)
        .fetch_one(&db)
        .await
        .unwrap();
        listening == 1 && b.metric("larder_api_local_cache_serving").await == 1.0
    })
    .await;
    eprintln!("listening and serving again after {took:?}");
    let reply = b.send("GET", "/v1/docs/x", None).await;
    assert_eq!(reply.version, 2, "flushed: {}", reply.body);
    assert!(reply.body.contains("\"n\":9"), "{}", reply.body);
    // And B is a peer again: a strong write through A reaches it.
    assert_eq!(a.update("docs", "x", 3).await, 3);
    assert_eq!(b.version("docs", "x").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_stops_says_goodbye_and_is_waited_for_no_more() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let ga = start(&url).await;
    let mut gb = start(&url).await;
    let mut a = Client::to(ga.addr).await;
    let mut b = Client::to(gb.addr).await;
    warm(&mut [&mut a, &mut b]).await;
    a.create("docs", "x").await;
    assert_eq!(b.version("docs", "x").await, 1);
    drop(b);
    gb.stop.cancel();
    (&mut gb.task).await.unwrap().unwrap();
    // Without the goodbye A would wait out B's lease.
    let started = Instant::now();
    assert_eq!(a.update("docs", "x", 1).await, 2);
    let took = started.elapsed();
    assert!(took < GRACE, "{took:?}");
    assert_eq!(a.metric(BY_LEASES).await, 0.0, "{took:?}");
    assert_eq!(a.metric("larder_api_peers_live").await, 0.0);
}

#[tokio::test]
async fn a_second_gateway_on_one_sqlite_file_is_refused() {
    let path = std::env::temp_dir().join(format!("larder-peers-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let config = ApiConfig {
        database: format!("sqlite://{}", path.display()),
        ..ApiConfig::default()
    };
    let open = async |config: ApiConfig| {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        larder_api::Gateway::open(config, listener).await
    };
    let first = open(config.clone()).await.unwrap();
    let err = open(config.clone()).await.expect_err("a second gateway");
    let text = err.to_string();
    assert!(
        text.contains("another gateway already serves the SQLite database")
            && text.contains(&format!("{}.lock", path.display())),
        "{text}"
    );
    drop(first);
    let again = open(config).await.unwrap();
    drop(again);
}
