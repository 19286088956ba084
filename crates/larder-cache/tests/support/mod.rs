//! Starts a real cache node on loopback ports chosen by the system, on its own runtime thread,
//! and stops it when dropped.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use larder_cache::{CacheConfig, Listeners};
use tokio_util::sync::CancellationToken;

/// A running node.
pub struct TestNode {
    pub resp: SocketAddr,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    pub shutdown: CancellationToken,
    thread: Option<JoinHandle<Result<(), String>>>,
}

/// A configuration on port 0 everywhere with a small memory bound.
pub fn config() -> CacheConfig {
    CacheConfig {
        resp_addr: "127.0.0.1:0".into(),
        grpc_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        max_memory: "32mb".into(),
        shutdown_grace_ms: 2_000,
        ..CacheConfig::default()
    }
}

impl TestNode {
    pub fn start() -> Self {
        Self::with(config())
    }

    pub fn with(config: CacheConfig) -> Self {
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let listeners = Listeners::bind(&config).await.map_err(|e| e.to_string())?;
                tx.send(listeners.local_addrs().map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
                larder_cache::run(config, listeners, token)
                    .await
                    .map_err(|e| e.to_string())
            })
        });
        let [resp, grpc, admin] = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("node started");
        Self {
            resp,
            grpc,
            admin,
            shutdown,
            thread: Some(thread),
        }
    }

    /// Cancels the node and waits for `run` to return; its result.
    pub fn stop(&mut self) -> Result<(), String> {
        self.shutdown.cancel();
        match self.thread.take() {
            Some(thread) => thread.join().expect("node thread"),
            None => Ok(()),
        }
    }

    /// `GET path` on the admin port: (status, body).
    pub fn admin_get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        http_get(self.admin, path, token)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A minimal HTTP/1.1 GET, so the tests need no HTTP client crate.
pub fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect admin");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Sends raw bytes and reads what comes back until the server closes or `wait` passes.
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> (Vec<u8>, bool) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.write_all(bytes).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}
