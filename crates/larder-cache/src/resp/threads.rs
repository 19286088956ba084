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
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use larder_util::reload::Reloading;
use tokio_rustls::TlsAcceptor;

use super::conn;
use super::transport::Tls;
use crate::node::Node;

/// A connection on its way to the thread that will serve it, with its `max_clients` slot and,
/// over TLS, the state of its finished handshake.
pub(crate) struct Handoff {
    stream: std::net::TcpStream,
    tls: Option<rustls::ServerConnection>,
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
                    match handoff.tls {
                        None => conn::run(&node, stream, handoff.peer, &shutdown).await,
                        Some(tls) => {
                            let stream = Tls::new(stream, tls);
                            conn::run(&node, stream, handoff.peer, &shutdown).await;
                        }
                    }
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
/// `max_clients` a connection is told so and closed. With `tls`, each connection's handshake
/// runs on a task of its own (within the request timeout) before it is dealt; one that fails
/// is closed, and one past `max_clients` is closed without a word (it could not be read).
pub(crate) async fn accept(
    node: Arc<Node>,
    listener: TcpListener,
    threads: Vec<UnboundedSender<Handoff>>,
    tls: Option<Arc<Reloading<rustls::ServerConfig>>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let threads = Arc::new(Dealer {
        threads,
        next: AtomicUsize::new(0),
    });
    let slots = Arc::new(Semaphore::new(node.config.max_clients));
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
            if tls.is_none() {
                tracker.spawn(conn::refuse(stream));
            }
            continue;
        };
        let Some(tls) = &tls else {
            let Ok(stream) = stream.into_std() else {
                continue;
            };
            if !threads.deal(stream, None, peer, permit) {
                // The threads have stopped: the node is shutting down.
                return;
            }
            continue;
        };
        let (acceptor, threads) = (TlsAcceptor::from(tls.current()), threads.clone());
        let timeout = node.config.request_timeout();
        tracker.spawn(async move {
            let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => return tracing::debug!(%err, %peer, "resp TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "resp TLS handshake timed out"),
            };
            let (stream, tls) = stream.into_inner();
            if let Ok(stream) = stream.into_std() {
                threads.deal(stream, Some(tls), peer, permit);
            }
        });
    }
}

/// The threads' senders, dealt connections in turn.
struct Dealer {
    threads: Vec<UnboundedSender<Handoff>>,
    next: AtomicUsize,
}

impl Dealer {
    /// Hands a connection to the next thread; `false` when the threads have stopped.
    fn deal(
        &self,
        stream: std::net::TcpStream,
        tls: Option<rustls::ServerConnection>,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) -> bool {
        let next = self.next.fetch_add(1, Relaxed);
        let Some(thread) = self.threads.get(next % self.threads.len().max(1)) else {
            return false;
        };
        thread
            .send(Handoff {
                stream,
                tls,
                peer,
                permit,
            })
            .is_ok()
    }
}
