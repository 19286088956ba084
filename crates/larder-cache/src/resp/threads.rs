//! RESP runs thread-per-core: each thread has its own single-threaded tokio runtime and serves
//! the connections handed to it start to finish. One acceptor on the node's main runtime takes
//! every connection, applies `max_clients`, and deals connections to the threads in turn.
//! Nothing a connection does crosses threads afterwards except the store's shard locks and the
//! metrics' atomics. On a runtime with one thread the connection loop may also clear a
//! socket's read readiness after a short read instead of paying for a read that fails (see
//! `conn.rs`).
//!
//! One listening socket, rather than one per thread with `SO_REUSEPORT`, keeps the port
//! exclusive: a second node started on the same address fails to bind instead of silently
//! sharing the connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::conn;
use crate::node::Node;

/// A connection on its way to the thread that will serve it, with its `max_clients` slot.
pub(crate) struct Handoff {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
}

/// The started threads, and the senders that hand each its connections.
pub(crate) type Started = (Vec<JoinHandle<()>>, Vec<UnboundedSender<Handoff>>);

/// Starts `count` RESP threads; each serves what arrives on its sender until `shutdown` is
/// cancelled, then gives its connections up to `grace` to finish.
///
/// # Errors
/// When a thread cannot be started; the threads started before it stop with `shutdown`.
pub(crate) fn start(
    node: &Arc<Node>,
    count: usize,
    shutdown: &CancellationToken,
    grace: Duration,
) -> std::io::Result<Started> {
    let mut threads = Vec::with_capacity(count.max(1));
    let mut senders = Vec::with_capacity(count.max(1));
    for i in 0..count.max(1) {
        let (sender, receiver) = unbounded_channel();
        let (node, shutdown) = (node.clone(), shutdown.clone());
        let thread = std::thread::Builder::new()
            .name(format!("larder-resp-{i}"))
            .spawn(move || run_thread(node, receiver, shutdown, grace))?;
        threads.push(thread);
        senders.push(sender);
    }
    Ok((threads, senders))
}

fn run_thread(
    node: Arc<Node>,
    mut incoming: UnboundedReceiver<Handoff>,
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
        let tracker = TaskTracker::new();
        loop {
            let handoff = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                handoff = incoming.recv() => match handoff {
                    Some(handoff) => handoff,
                    None => break,
                },
            };
            let (node, shutdown) = (node.clone(), shutdown.clone());
            tracker.spawn(async move {
                // Registering with this thread's runtime fails only if the socket is unusable.
                if let Ok(stream) = TcpStream::from_std(handoff.stream) {
                    conn::run(&node, stream, handoff.peer, &shutdown).await;
                }
                drop(handoff.permit);
            });
        }
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(?grace, "resp connections did not finish in time");
        }
    });
}

/// Accepts RESP connections until `shutdown` is cancelled and deals them to the threads; past
/// `max_clients` a connection is told so and closed.
pub(crate) async fn accept(
    node: Arc<Node>,
    listener: TcpListener,
    threads: Vec<UnboundedSender<Handoff>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(node.config.max_clients));
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(%err, "resp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            node.metrics.rejected_connections.fetch_add(1, Relaxed);
            tracker.spawn(conn::refuse(stream));
            continue;
        };
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        let Some(thread) = threads.get(next % threads.len().max(1)) else {
            return;
        };
        next = next.wrapping_add(1);
        if thread
            .send(Handoff {
                stream,
                peer,
                permit,
            })
            .is_err()
        {
            // The thread has stopped: the node is shutting down.
            return;
        }
    }
}
