//! The gateway end to end over real sockets, with a real cache node (its SQL origin reading the
//! gateway's database) as `larder up` runs them, against SQLite and PostgreSQL; and what
//! happens to reads when the cache node goes away and comes back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use larder_api::{ApiConfig, CollectionConfig};
use larder_store::{Clock, ManualClock, SystemClock};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

mod support;
use support::{eventually, start_node};

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn databases() -> Vec<String> {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("larder-e2e-{}-{n}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut out = vec![format!("sqlite://{}?mode=rwc", path.display())];
    match std::env::var("LARDER_TEST_POSTGRES_URL") {
        Ok(url) => out.push(url),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI must set LARDER_TEST_POSTGRES_URL")
        }
        Err(_) => eprintln!("LARDER_TEST_POSTGRES_URL unset: PostgreSQL cases skipped"),
    }
    out
}

fn collection() -> CollectionConfig {
    CollectionConfig {
        name: format!(
            "e2e_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ),
        ..CollectionConfig::default()
    }
}

/// A gateway on a listener bound here, so requests can be sent at once (they wait in the
/// listen queue until it serves), with `clock` as its one clock.
async fn start_gateway(api: ApiConfig, clock: Arc<dyn Clock>) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let options = larder_api::Options { clock: Some(clock) };
    tokio::spawn(larder_api::run_with(api, listener, stop.clone(), options));
    (addr, stop)
}

/// A minimal HTTP/1.1 exchange: (status, headers text, body).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let content = if body.is_empty() {
        String::new()
    } else {
        format!(
            "Content-Type: application/vnd.api+json\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{content}\r\n{body}");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// A sample from a node's `/metrics`, summed over every line starting with `prefix`.
async fn metric(admin: SocketAddr, prefix: &str) -> u64 {
    let (_, _, body) = http(admin, "GET", "/metrics", None).await;
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_over_sockets_through_a_cache_node() {
    for database in databases() {
        let products = collection();
        let name = products.name.clone();
        let mut api = ApiConfig {
            listen: "127.0.0.1:0".into(),
            database: database.clone(),
            collections: vec![products],
            ..ApiConfig::default()
        };
        let (grpc, admin, node) = start_node("127.0.0.1:0").await;
        api.cache_nodes = vec![grpc.to_string()];
        let (gw, gateway) = start_gateway(api, Arc::new(SystemClock)).await;

        let create = json!({"data": {"type": name, "attributes": {"title": "Dune"}}});
        let (status, head, body) = http(gw, "POST", &format!("/v1/{name}"), Some(&create)).await;
        assert_eq!(status, 201, "{database}: {head}\n{body}");
        let id = serde_json::from_str::<Value>(&body).unwrap()["data"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = format!("/v1/{name}/{id}");
        for _ in 0..3 {
            let (status, _, body) = http(gw, "GET", &path, None).await;
            assert_eq!(status, 200);
            assert!(body.contains("Dune"));
        }
        // Each read was a hit on the node or in the gateway's near-cache (filled from a
        // tracked node hit), none a database read.
        let hits = metric(admin, "larder_cache_hits_total").await;
        let near = metric(gw, "larder_api_near_cache_hits_total").await;
        assert!(
            hits >= 1 && hits + near >= 3,
            "{database}: reads came from the caches ({hits} node hits, {near} near hits)"
        );

        let patch =
            json!({"data": {"type": name, "id": id, "attributes": {"title": "Dune Messiah"}}});
        let (status, head, _) = http(gw, "PATCH", &path, Some(&patch)).await;
        assert_eq!(status, 200);
        assert!(head.contains("etag: \"2\""), "{head}");
        let (_, _, body) = http(gw, "GET", &path, None).await;
        assert!(
            body.contains("Messiah"),
            "{database}: strong consistency: {body}"
        );
        assert_eq!(http(gw, "DELETE", &path, None).await.0, 204);
        assert_eq!(
            http(gw, "GET", &path, None).await.0,
            404,
            "{database}: deleted, not served stale"
        );
        gateway.cancel();
        node.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_survive_the_cache_node_going_away_and_use_it_again_when_it_returns() {
    let database = databases().remove(0);
    let products = collection();
    let name = products.name.clone();
    let mut api = ApiConfig {
        listen: "127.0.0.1:0".into(),
        database,
        collections: vec![products],
        cache_deadline_ms: 200,
        ..ApiConfig::default()
    };
    let (grpc, _, node) = start_node("127.0.0.1:0").await;
    api.cache_nodes = vec![grpc.to_string()];
    // The client's breaker times its cooldown on this clock, moved by hand.
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let (gw, _gateway) = start_gateway(api.clone(), clock.clone()).await;
    let create = json!({"data": {"type": name, "id": "one", "attributes": {"n": 1}}});
    assert_eq!(
        http(gw, "POST", &format!("/v1/{name}"), Some(&create))
            .await
            .0,
        201
    );

    // Readers run throughout; every read must succeed.
    let running = Arc::new(AtomicBool::new(true));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (running, ok, failed, path) = (
            running.clone(),
            ok.clone(),
            failed.clone(),
            format!("/v1/{name}/one"),
        );
        readers.push(tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                let (status, _, body) = http(gw, "GET", &path, None).await;
                if status == 200 && body.contains("\"n\":1") {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    eventually("reads succeed", async || ok.load(Ordering::Relaxed) > 10).await;
    node.cancel(); // the cache node goes away under load
    let open = format!("larder_breaker_state{{target=\"cache:{grpc}\"}} 1");
    eventually("the breaker opens", async || {
        http(gw, "GET", "/metrics", None).await.2.contains(&open)
    })
    .await;
    let before = ok.load(Ordering::Relaxed);
    eventually("reads go on while the node is down", async || {
        ok.load(Ordering::Relaxed) > before + 10
    })
    .await;

    // The node comes back on the same address; after the cooldown the breaker closes and
    // reads reach it again.
    let (_, admin, node) = start_node(&grpc.to_string()).await;
    clock.advance(larder_client::DEFAULT_BREAKER_COOLDOWN);
    let gets = "larder_cache_requests_total{protocol=\"grpc\",command=\"Get\"";
    eventually("reads reach the restarted node", async || {
        metric(admin, gets).await > 0
    })
    .await;
    running.store(false, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "every read succeeded");
    let (_, _, metrics) = http(gw, "GET", "/metrics", None).await;
    assert!(
        metrics.contains(&format!(
            "larder_breaker_state{{target=\"cache:{grpc}\"}} 0"
        )),
        "{metrics}"
    );
    node.cancel();
}
