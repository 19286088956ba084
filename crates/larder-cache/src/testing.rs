//! A real cache node for other crates' tests (feature `testing`): on loopback ports the
//! system picks, on a runtime thread of its own, stopped when dropped.

#![allow(clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use parking_lot::Mutex;

use crate::{CacheConfig, Error, Listeners, Mutation, MutationKind, MutationSink, NodeOptions};

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
    thread: Option<JoinHandle<Result<(), Error>>>,
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
        Self::with_options(config, NodeOptions::default())
    }

    /// A node with `config` and `options` (a clock, a mutation sink).
    ///
    /// # Panics
    /// If the node does not start within ten seconds.
    #[must_use]
    pub fn with_options(config: CacheConfig, options: NodeOptions) -> Self {
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let listeners = Listeners::bind(&config).await?;
                if tx.send(listeners.local_addrs()?).is_err() {
                    // The caller stopped waiting for the node (and panicked): do not start it.
                    return Ok(());
                }
                crate::run_with(config, listeners, token, options).await
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
    pub fn stop(&mut self) -> Result<(), Error> {
        self.shutdown.cancel();
        match self.thread.take() {
            Some(thread) => thread.join().expect("node thread"),
            None => Ok(()),
        }
    }
}

/// Starts the node's shutdown without waiting for it: a test's own connections to the node
/// may live on the same (now blocked) thread, and waiting would hold the node for its whole
/// grace period. [`TestNode::stop`] waits and reports.
impl Drop for TestNode {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A mutation record with its key copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The key.
    pub key: Vec<u8>,
    /// What happened to it.
    pub kind: MutationKind,
    /// The version after the change.
    pub version: u64,
    /// The expiry after the change.
    pub expires_at: Option<u64>,
}

/// A [`MutationSink`] that keeps every record, for tests to read.
#[derive(Debug, Default)]
pub struct Recorder(Mutex<Vec<Recorded>>);

impl Recorder {
    /// A recorder to attach with [`NodeOptions::mutations`].
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Every record so far, emptying the list.
    pub fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.0.lock())
    }
}

impl MutationSink for Recorder {
    fn record(&self, mutation: &Mutation<'_>) {
        self.0.lock().push(Recorded {
            key: mutation.key.to_vec(),
            kind: mutation.kind,
            version: mutation.version,
            expires_at: mutation.expires_at,
        });
    }
}
