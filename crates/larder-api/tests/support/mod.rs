//! What the gateway's socket tests share: a gateway on a free port over a fresh SQLite file,
//! raw HTTP/1.1 requests, and a reader of responses that checks framing.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use larder_api::{ApiConfig, CollectionConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub fn config() -> ApiConfig {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("larder-server-{}-{n}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    ApiConfig {
        database: format!("sqlite://{}?mode=rwc", path.display()),
        max_body_bytes: 4096,
        collections: vec![CollectionConfig {
            name: "products".into(),
            ..CollectionConfig::default()
        }],
        ..ApiConfig::default()
    }
}

/// A cache node as `larder cache` starts one: no origins of its own (the gateway loads what it
/// misses), on `grpc` (port 0 for any). Answers its gRPC and admin addresses.
pub async fn start_node(grpc: &str) -> (SocketAddr, SocketAddr, CancellationToken) {
    let config = larder_cache::CacheConfig {
        resp_addr: "127.0.0.1:0".into(),
        grpc_addr: grpc.into(),
        admin_addr: "127.0.0.1:0".into(),
        max_memory: "32mb".into(),
        shutdown_grace_ms: 500,
        ..larder_cache::CacheConfig::default()
    };
    let listeners = larder_cache::Listeners::bind(&config).await.unwrap();
    let [_, grpc, admin] = listeners.local_addrs().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(larder_cache::run(config, listeners, stop.clone()));
    (grpc, admin, stop)
}

pub struct Gateway {
    pub addr: SocketAddr,
    pub stop: CancellationToken,
    pub task: JoinHandle<Result<(), larder_api::Error>>,
}

pub async fn start(config: ApiConfig) -> Gateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(larder_api::run(config, listener, stop.clone()));
    for _ in 0..100 {
        if let Ok(mut conn) = TcpStream::connect(addr).await {
            conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                .await
                .unwrap();
            if !read_responses(&mut conn, 1).await.is_empty() {
                return Gateway { addr, stop, task };
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the gateway did not start");
}

/// A gateway whose listener speaks TLS: started without a cleartext probe (connections made
/// before it serves wait in the listen queue).
pub async fn start_tls(config: ApiConfig) -> Gateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(larder_api::run(config, listener, stop.clone()));
    Gateway { addr, stop, task }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads up to `n` responses (fewer if the connection closes); `head_only` responses have no
/// body whatever their length says.
pub async fn read_replies(conn: &mut TcpStream, n: usize, head_only: bool) -> Vec<Reply> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while out.len() < n {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(len)) = response.parse(&buf) {
            let status = response.code.unwrap();
            let headers: Vec<(String, String)> = response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let length = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
            let length = if head_only { 0 } else { length };
            if buf.len() >= len + length {
                let body = buf[len..len + length].to_vec();
                buf.drain(..len + length);
                out.push(Reply {
                    status,
                    headers,
                    body,
                });
                continue;
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(k)) => buf.extend_from_slice(&chunk[..k]),
            Err(_) => panic!("no response within 10 s"),
        }
    }
    out
}

pub async fn read_responses(conn: &mut TcpStream, n: usize) -> Vec<Reply> {
    read_replies(conn, n, false).await
}

/// Whether the server closes the connection within `within`.
pub async fn closes(conn: &mut TcpStream, within: Duration) -> bool {
    let mut chunk = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

pub async fn send(addr: SocketAddr, raw: &str) -> Reply {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(raw.as_bytes()).await.unwrap();
    read_responses(&mut conn, 1)
        .await
        .pop()
        .expect("a response")
}

pub fn create(id: &str, name: &str) -> String {
    let body =
        format!(r#"{{"data":{{"type":"products","id":"{id}","attributes":{{"name":"{name}"}}}}}}"#);
    format!(
        "POST /v1/products HTTP/1.1\r\nHost: t\r\nContent-Type: application/vnd.api+json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub fn without_date(reply: &Reply) -> Reply {
    let mut reply = reply.clone();
    reply.headers.retain(|(n, _)| n != "date");
    reply.headers.sort();
    reply
}

/// Polls `done` every few milliseconds until it holds; fails after ten seconds.
pub async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of the metric (name and labels) `series`, 0 if it has none yet.
pub async fn metric(addr: SocketAddr, series: &str) -> u64 {
    let text = send(addr, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.parse().unwrap())
}
