//! Real cache nodes on loopback, each on its own runtime thread, stopped when dropped; and a
//! client configuration for them.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use larder_cache::{CacheConfig, Listeners};
use larder_client::{Client, ClientConfig};
use tokio_util::sync::CancellationToken;

/// A running node.
pub struct TestNode {
    pub grpc: SocketAddr,
    shutdown: CancellationToken,
    thread: Option<JoinHandle<Result<(), String>>>,
}

/// A node configuration on port 0 everywhere with a small memory bound.
pub fn node_config() -> CacheConfig {
    CacheConfig {
        resp_addr: "127.0.0.1:0".into(),
        grpc_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        max_memory: "16mb".into(),
        shutdown_grace_ms: 300,
        ..CacheConfig::default()
    }
}

impl TestNode {
    pub fn start() -> Self {
        Self::with(node_config())
    }

    /// A node whose gRPC listener is on `grpc` (to restart a stopped node on its port).
    pub fn on(grpc: SocketAddr) -> Self {
        Self::with(CacheConfig {
            grpc_addr: grpc.to_string(),
            ..node_config()
        })
    }

    pub fn with(config: CacheConfig) -> Self {
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
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
        let [_, grpc, _] = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("node started");
        Self {
            grpc,
            shutdown,
            thread: Some(thread),
        }
    }

    /// Cancels the node and waits for it to stop.
    pub fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            thread.join().expect("node thread").expect("node ran");
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A client configuration for these nodes with the defaults otherwise.
pub fn client_config(nodes: &[&TestNode]) -> ClientConfig {
    ClientConfig {
        nodes: nodes.iter().map(|n| n.grpc.to_string()).collect(),
        ..ClientConfig::default()
    }
}

pub fn client(nodes: &[&TestNode]) -> Client {
    Client::new(client_config(nodes)).unwrap()
}

/// A listener that accepts connections and never answers: calls to it can only time out.
pub struct BlackHole {
    pub addr: SocketAddr,
}

impl BlackHole {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
            }
        });
        Self { addr }
    }
}

/// A loopback address nothing listens on (bound once, then released).
pub fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
