//! A real cache node for other crates' tests (feature `testing`): on loopback ports the
//! system picks, on a runtime thread of its own, stopped when dropped.

#![allow(clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{CacheConfig, Listeners};

/// A running node.
#[derive(Debug)]
pub struct TestNode {
    /// The RESP listener.
    pub resp: SocketAddr,
    /// The gRPC listener.
    pub grpc: SocketAddr,
    /// The admin HTTP listener.
    pub admin: SocketAddr,
    /// Cancelling it starts the node's graceful shutdown.
    pub shutdown: CancellationToken,
    thread: Option<JoinHandle<Result<(), String>>>,
}

/// Port 0 everywhere, 32 MiB of memory, a two-second shutdown grace.
#[must_use]
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
    /// A node with [`config`].
    ///
    /// # Panics
    /// If the node does not start within ten seconds.
    #[must_use]
    pub fn start() -> Self {
        Self::with(config())
    }

    /// A node with `config`.
    ///
    /// # Panics
    /// If the node does not start within ten seconds.
    #[must_use]
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
                crate::run(config, listeners, token)
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
    ///
    /// # Errors
    /// What `run` failed with.
    ///
    /// # Panics
    /// If the node's thread panicked.
    pub fn stop(&mut self) -> Result<(), String> {
        self.shutdown.cancel();
        match self.thread.take() {
            Some(thread) => thread.join().expect("node thread"),
            None => Ok(()),
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
