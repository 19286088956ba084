//! Real cache nodes on loopback, each on its own runtime thread, stopped when dropped; and a
//! client configuration for them.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod certs;

use std::net::{SocketAddr, TcpListener, TcpStream};

use larder_cache::CacheConfig;
use larder_client::{Client, ClientConfig};

pub use larder_cache::testing::TestNode;

/// A node configuration on port 0 everywhere with a small memory bound and a short grace.
pub fn node_config() -> CacheConfig {
    CacheConfig {
        max_memory: "16mb".into(),
        shutdown_grace_ms: 300,
        ..larder_cache::testing::config()
    }
}

/// A node with [`node_config`].
pub fn start_node() -> TestNode {
    TestNode::with(node_config())
}

/// A node whose gRPC listener is on `grpc` (to restart a stopped node on its port).
pub fn node_on(grpc: SocketAddr) -> TestNode {
    TestNode::with(CacheConfig {
        grpc_addr: grpc.to_string(),
        ..node_config()
    })
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
