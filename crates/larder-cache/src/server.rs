//! Starting and stopping a node: bind the listeners, serve RESP, gRPC and admin HTTP until the
//! shutdown token is cancelled, then let in-flight work finish within the grace period.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::{ClusterError, ClusterView};
use crate::config::{CacheConfig, ConfigError, resolve};
use crate::metrics::Metrics;
use crate::node::{Node, NodeOptions};

/// Expired entries reclaimed per shard by each sweep of the timer.
const RECLAIM_BUDGET: usize = 256;

/// Why a node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({field}): {source}")]
    Bind {
        /// The setting.
        field: &'static str,
        /// The address.
        addr: String,
        /// The system's reason.
        source: io::Error,
    },
    /// The gRPC server failed.
    #[error("grpc: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// Server reflection could not load the descriptors.
    #[error("grpc reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// An I/O failure of a listener.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The node could not join its cluster.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// The node's three bound listeners.
#[derive(Debug)]
pub struct Listeners {
    /// Redis protocol.
    pub resp: TcpListener,
    /// gRPC.
    pub grpc: TcpListener,
    /// Admin HTTP.
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds the addresses the configuration names (port 0 picks a free port).
    ///
    /// # Errors
    /// [`Error::Config`] for an address that does not resolve, [`Error::Bind`] when it cannot be
    /// bound.
    pub async fn bind(config: &CacheConfig) -> Result<Self, Error> {
        Ok(Self {
            resp: bind("resp_addr", &config.resp_addr).await?,
            grpc: bind("grpc_addr", &config.grpc_addr).await?,
            admin: bind("admin_addr", &config.admin_addr).await?,
        })
    }

    /// The bound addresses: RESP, gRPC, admin.
    ///
    /// # Errors
    /// When the system cannot tell a socket's address.
    pub fn local_addrs(&self) -> io::Result<[SocketAddr; 3]> {
        Ok([
            self.resp.local_addr()?,
            self.grpc.local_addr()?,
            self.admin.local_addr()?,
        ])
    }
}

async fn bind(field: &'static str, addr: &str) -> Result<TcpListener, Error> {
    let addrs = resolve(field, addr)?;
    TcpListener::bind(addrs.as_slice())
        .await
        .map_err(|source| Error::Bind {
            field,
            addr: addr.to_owned(),
            source,
        })
}

/// Runs a node on `listeners` until `shutdown` is cancelled; then (a clustered node first
/// drains: it says so, and waits for other nodes to take its partitions over) stops accepting,
/// gives in-flight requests `shutdown_grace_ms` to finish, and returns.
///
/// # Errors
/// [`Error`] when the configuration is invalid or a server fails.
pub async fn run(
    config: CacheConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    run_with(config, listeners, shutdown, NodeOptions::default()).await
}

/// [`run`] with a clock and a mutation sink of the caller's.
///
/// # Errors
/// As [`run`].
pub async fn run_with(
    config: CacheConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
    options: NodeOptions,
) -> Result<(), Error> {
    config.validate()?;
    let tls = config.tls()?;
    let peer_tls = config.peer_tls()?;
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    let reclaim_every = Duration::from_millis(config.reclaim_interval_ms.max(1));
    let metrics = Metrics::new(
        crate::resp::table::metric_names(),
        crate::grpc::METHODS.to_vec(),
    );
    let addrs = listeners.local_addrs()?;
    let cluster = if config.cluster.enabled {
        let me = crate::cluster::run::member(&config.cluster, addrs)?;
        let view = ClusterView::new(me, config.cluster.clone(), &config.token, peer_tls.clone());
        Some(Arc::new(view))
    } else {
        None
    };
    let node = Arc::new(Node::new(config, metrics, options, cluster.clone())?);
    let tracker = TaskTracker::new();
    let [resp_addr, grpc_addr, admin_addr] = addrs;
    tracing::info!(%resp_addr, %grpc_addr, %admin_addr, "cache node listening");
    // Listeners stop on `stop`; `shutdown` first drains a clustered node.
    let stop = CancellationToken::new();
    let membership = match &cluster {
        Some(view) => Some(crate::cluster::run::join_cluster(view, &node, &tracker, &stop).await?),
        None => None,
    };
    let shutdown_ = shutdown.clone();
    let shutdown = stop.clone();

    let (threads, handoff) =
        crate::resp::threads::start(&node, node.config.resp_threads(), &shutdown, grace)
            .inspect_err(|_| shutdown.cancel())?;
    for thread in threads {
        tracker.spawn_blocking(move || {
            if thread.join().is_err() {
                tracing::error!("a resp thread panicked");
            }
        });
    }
    tracker.spawn(crate::resp::threads::accept(
        node.clone(),
        listeners.resp,
        handoff,
        tls.as_ref().map(|tls| tls.resp.clone()),
        shutdown.clone(),
        tracker.clone(),
    ));
    if let Some(tls) = &tls {
        let every = Duration::from_millis(node.config.tls_reload_ms.max(10));
        for files in [tls.grpc.clone(), tls.resp.clone()] {
            tracker.spawn(files.watch(every, shutdown.clone().cancelled_owned()));
        }
        if let Some(files) = peer_tls {
            tracker.spawn(files.watch(every, shutdown.clone().cancelled_owned()));
        }
    }
    tracker.spawn(reclaim(node.clone(), reclaim_every, shutdown.clone()));
    let admin = axum::serve(
        listeners.admin,
        crate::admin::router(node.clone(), shutdown_.clone()),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let admin = tracker.spawn(async move { admin.await });
    let grpc = tonic::transport::Server::builder()
        .trace_fn(crate::grpc::span)
        .add_routes(crate::grpc::routes(node.clone()).await?);
    let grpc = match &tls {
        None => tracker.spawn(grpc.serve_with_incoming_shutdown(
            crate::incoming::accept(listeners.grpc, node.clone()),
            shutdown.clone().cancelled_owned(),
        )),
        Some(tls) => tracker.spawn(grpc.serve_with_incoming_shutdown(
            crate::incoming::accept_tls(
                listeners.grpc,
                node.clone(),
                tls.grpc.clone(),
                shutdown.clone(),
                tracker.clone(),
            ),
            shutdown.clone().cancelled_owned(),
        )),
    };
    tracker.close();

    shutdown_.cancelled().await;
    if let (Some(view), Some(membership)) = (&cluster, membership) {
        crate::cluster::run::leave(view, membership).await;
    }
    stop.cancel();
    node.tracking.close();
    tracing::info!("cache node shutting down");
    // The RESP threads give their connections `grace` and are then joined; wait a little longer.
    let deadline = grace + Duration::from_millis(500);
    if tokio::time::timeout(deadline, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "in-flight work did not finish in time; closing anyway"
        );
        return Ok(());
    }
    if let Ok(Err(err)) = grpc.await {
        return Err(err.into());
    }
    if let Ok(Err(err)) = admin.await {
        return Err(err.into());
    }
    Ok(())
}

/// Reclaims expired entries in idle shards so their memory comes back without traffic.
async fn reclaim(node: Arc<Node>, every: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {
                node.store.reclaim_expired(RECLAIM_BUDGET);
            }
        }
    }
}
