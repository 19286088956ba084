//! RESP runs thread-per-core: each thread has its own single-threaded tokio runtime and its own
//! listening socket on the same address (`SO_REUSEPORT`, so the kernel spreads connections
//! over the threads), and serves its connections start to finish. Nothing a connection does
//! crosses threads except the store's shard locks and the metrics' atomics. On a runtime with
//! one thread the connection loop may also clear a socket's read readiness after a short read
//! instead of paying for a read that fails (see `conn.rs`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::node::Node;

/// Backlog of each RESP listening socket.
const BACKLOG: u32 = 1024;

/// A RESP listening socket that other threads may bind beside it.
pub(crate) fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Starts `count` RESP threads: the first serves `first` (already bound), the others bind the
/// same address beside it. Each returns once `shutdown` is cancelled and its connections have
/// finished, or `grace` has passed.
pub(crate) fn start(
    node: &Arc<Node>,
    first: std::net::TcpListener,
    count: usize,
    shutdown: &CancellationToken,
    grace: Duration,
) -> io::Result<Vec<JoinHandle<()>>> {
    let addr = first.local_addr()?;
    let slots = Arc::new(Semaphore::new(node.config.max_clients));
    let mut first = Some(first);
    let mut threads = Vec::with_capacity(count);
    for i in 0..count.max(1) {
        let listener = first.take();
        let (node, slots, shutdown) = (node.clone(), slots.clone(), shutdown.clone());
        let thread = std::thread::Builder::new()
            .name(format!("larder-resp-{i}"))
            .spawn(move || run_thread(node, listener, addr, slots, shutdown, grace))?;
        threads.push(thread);
    }
    Ok(threads)
}

fn run_thread(
    node: Arc<Node>,
    listener: Option<std::net::TcpListener>,
    addr: SocketAddr,
    slots: Arc<Semaphore>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(%err, "cannot start a resp thread");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match listener {
            Some(listener) => TcpListener::from_std(listener),
            None => listen(addr),
        };
        let listener = match listener {
            Ok(listener) => listener,
            Err(err) => {
                tracing::error!(%err, %addr, "a resp thread cannot listen");
                return;
            }
        };
        let tracker = TaskTracker::new();
        super::serve(node, listener, slots, shutdown, tracker.clone()).await;
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(?grace, "resp connections did not finish in time");
        }
    });
}
