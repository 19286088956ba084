//! The larder API gateway.
//!
//! Stateless JSON:API CRUD over collections of JSON documents kept in SQLite or PostgreSQL,
//! with RFC 9457 problem details, ETags and conditional requests, idempotent POSTs, JSON Schema
//! validation and reads served through the cache (cache nodes over gRPC, or an in-process
//! store); served by hyper over HTTP/1.1 and HTTP/2, optionally over TLS, behind credentials
//! with scopes, rate limits and CORS. The library exposes [`Gateway`] (and [`run`], which
//! opens one and serves it); the `larder` binary does only that.

mod app;
mod auth;
mod cache;
mod checks;
mod conditional;
pub mod config;
mod cors;
mod db;
mod doc;
mod docs_page;
mod error;
mod feed;
#[doc(hidden)]
pub mod fuzzing;
mod layers;
mod limits;
mod list;
mod media;
mod metrics;
mod near;
mod openapi;
mod peers;
mod problem;
mod routes;
mod server;
mod state;
mod time;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use larder_store::{Clock, SystemClock};
use larder_util::reload::Reloading;
use larder_util::tls::{SERVER_ALPN, TlsFiles};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

pub use config::{ApiConfig, CollectionConfig, Consistency};
pub use doc::SchemaError;
pub use error::{ConfigError, DatabaseError};
pub use state::CollectionError;

/// What the gateway runs with besides its configuration.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The gateway's one clock: document timestamps, idempotency expiry, cache freshness and
    /// token expiry (`None`: the system clock).
    pub clock: Option<Arc<dyn Clock>>,
}

/// Connections the kernel queues for the gateway while it is at `max_connections` (or busy):
/// the listen backlog of [`bind`] (Linux caps it at `net.core.somaxconn`).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Why the gateway could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting that cannot work. (The texts of this and the next variant include their
    /// causes', so those are not also the `source()`.)
    #[error("configuration: {0}")]
    Config(ConfigError),
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Database(DatabaseError),
    /// Serving failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// Binds a listener for the gateway on `addr` with a backlog of [`LISTEN_BACKLOG`].
///
/// # Errors
/// When `addr` does not resolve or cannot be bound (the error of the last address tried).
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        match bind_one(addr) {
            Ok(listener) => return Ok(listener),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A gateway ready to serve: its database open and migrated, its credentials, TLS files and
/// collections loaded, its listener bound.
pub struct Gateway {
    state: state::AppState,
    listener: TcpListener,
    tls: Option<Arc<Reloading<ServerConfig>>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Checks `config` against `listener`, opens the database and the cache and loads every
    /// file the configuration names, so that what can fail fails here, before serving.
    ///
    /// # Errors
    /// [`Error::Config`] for a setting that cannot work (listening beyond loopback without
    /// credentials among them), [`Error::Database`] for a database that cannot be opened.
    pub async fn open(config: ApiConfig, listener: TcpListener) -> Result<Self, Error> {
        Self::open_with(config, listener, Options::default()).await
    }

    /// [`Gateway::open`] with [`Options`] of the caller's (a clock for tests).
    ///
    /// # Errors
    /// As [`Gateway::open`].
    pub async fn open_with(
        config: ApiConfig,
        listener: TcpListener,
        options: Options,
    ) -> Result<Self, Error> {
        let addr = listener.local_addr()?;
        if !config.has_credentials() && !addr.ip().is_loopback() {
            return Err(Error::Config(ConfigError::Unprotected { addr }));
        }
        if config.max_connections == 0 {
            return Err(Error::Config(ConfigError::NoConnections));
        }
        let tls = tls(&config)?;
        let state = build(config, options, true).await?;
        Ok(Self {
            state,
            listener,
            tls,
        })
    }

    /// The address the gateway listens on.
    ///
    /// # Errors
    /// When the system cannot tell the socket's address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Whether the listener speaks TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` is cancelled, then lets requests in progress finish.
    ///
    /// # Errors
    /// [`Error::Io`] when serving fails.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), Error> {
        let Self {
            state,
            listener,
            tls,
        } = self;
        let every = Duration::from_millis(state.config.reload_ms.max(10));
        let mut watched: Vec<tokio::task::JoinHandle<()>> = Vec::new();
        if let Some(tls) = &tls {
            let stop = shutdown.clone().cancelled_owned();
            watched.push(tokio::spawn(tls.clone().watch(every, stop)));
        }
        if let Some(jwks) = state.credentials.jwks() {
            let stop = shutdown.clone().cancelled_owned();
            watched.push(tokio::spawn(jwks.watch(every, stop)));
        }
        watched.push(tokio::spawn(housekeeping(state.clone(), shutdown.clone())));
        // The feed's streams end on shutdown, so their connections can drain.
        tokio::spawn(state.feed.clone().stop_on(shutdown.clone()));
        let app = app::app(state.clone());
        let served = server::serve(listener, app, state.clone(), tls, shutdown).await;
        for task in watched {
            task.abort();
        }
        if let Some(peers) = &state.peers {
            peers.bye().await;
        }
        Ok(served?)
    }
}

/// Drops expired idempotency records, change log entries past their retention and idle
/// rate-limit buckets once a minute.
async fn housekeeping(state: state::AppState, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        if let Err(err) = state.db.purge_idempotency(state.now_ms()).await {
            tracing::debug!(%err, "idempotency purge failed");
        }
        let retention = i64::try_from(state.config.changes_retention_secs.saturating_mul(1000));
        let cutoff = state.now_ms().saturating_sub(retention.unwrap_or(i64::MAX));
        if let Err(err) = state.db.prune_changes(cutoff).await {
            tracing::debug!(%err, "change log prune failed");
        }
        state.limits.forget_idle();
    }
}

/// The listener's TLS configuration, if `tls_cert` and `tls_key` are set.
fn tls(config: &ApiConfig) -> Result<Option<Arc<Reloading<ServerConfig>>>, Error> {
    match (config.tls_cert.is_empty(), config.tls_key.is_empty()) {
        (true, true) if config.tls_client_ca.is_empty() => Ok(None),
        (true, true) => Err(Error::Config(ConfigError::ClientCaWithoutTls)),
        (false, false) => {
            let files = TlsFiles {
                cert: PathBuf::from(&config.tls_cert),
                key: PathBuf::from(&config.tls_key),
                ca: PathBuf::from(&config.tls_client_ca),
            };
            larder_util::tls::reloading_server(files, &SERVER_ALPN)
                .map(Some)
                .map_err(|e| Error::Config(ConfigError::TlsFiles(e.to_string())))
        }
        _ => Err(Error::Config(ConfigError::HalfTls)),
    }
}

/// Serves the gateway on `listener` until `shutdown` is cancelled, then lets requests in
/// progress finish: [`Gateway::open`] then [`Gateway::serve`].
///
/// # Errors
/// [`Error`] for a bad configuration, a database that cannot be opened, or a failed listener.
pub async fn run(
    config: ApiConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    run_with(config, listener, shutdown, Options::default()).await
}

/// [`run`] with [`Options`] of the caller's (a clock for tests).
///
/// # Errors
/// As [`run`].
pub async fn run_with(
    config: ApiConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
    options: Options,
) -> Result<(), Error> {
    Gateway::open_with(config, listener, options)
        .await?
        .serve(shutdown)
        .await
}

/// Opens the database and the cache and compiles the collections; over PostgreSQL with
/// `with_peers`, joins the other gateways over the database ([`peers`]).
async fn build(
    config: ApiConfig,
    options: Options,
    with_peers: bool,
) -> Result<state::AppState, Error> {
    let clock = options.clock.unwrap_or_else(|| Arc::new(SystemClock));
    if config.database.is_empty() {
        return Err(Error::Config(ConfigError::NoDatabase));
    }
    // Everything that needs no I/O is checked before the database is touched.
    state::collections(&config).map_err(|e| Error::Config(ConfigError::Collection(e)))?;
    let db = db::Db::open(&config.database, clock.clone())
        .await
        .map_err(|e| Error::Database(e.into()))?;
    // Gateways with cache nodes are kept right by the nodes' invalidations (the near-cache);
    // only gateways without them announce to and listen for each other.
    let lease =
        (with_peers && !db.is_sqlite() && config.cache_nodes.is_empty()).then(peers::Peers::lease);
    let cache = if config.cache_nodes.is_empty() {
        let cache = cache::DocCache::local(db.clone(), config.local_cache_bytes, clock.clone())
            .map_err(|e| Error::Config(ConfigError::LocalCache(e)))?;
        match &lease {
            Some(lease) => cache.with_lease(lease.clone()),
            None => cache,
        }
    } else {
        let client_config = larder_client::ClientConfig {
            nodes: config.cache_nodes.clone(),
            token: (!config.cache_token.is_empty()).then(|| config.cache_token.clone()),
            deadline: Duration::from_millis(config.cache_deadline_ms.max(1)),
            tls_ca: config.cache_tls_ca.clone(),
            tls_cert: config.cache_tls_cert.clone(),
            tls_key: config.cache_tls_key.clone(),
            tls_server_name: config.cache_tls_server_name.clone(),
            ..larder_client::ClientConfig::default()
        };
        let client = larder_client::Client::with_clock(client_config, clock.clone())
            .map_err(|e| Error::Config(ConfigError::Client(e)))?;
        cache::DocCache::remote(db.clone(), client, config.near_cache_bytes, clock.clone())
            .map_err(|e| Error::Config(ConfigError::LocalCache(e)))?
    };
    let cache = Arc::new(cache);
    let peers = match lease {
        Some(lease) => Some(
            peers::Peers::start(
                &config.database,
                config.local_cache_lease_ms,
                lease,
                cache.clone(),
            )
            .map_err(|e| Error::Database(e.into()))?,
        ),
        None => None,
    };
    let opened = state::Opened {
        db,
        cache,
        peers,
        clock,
    };
    state::AppState::new(config, opened).map_err(Error::Config)
}

/// The router over a configuration, for tests that call it without a socket. It does not
/// join other gateways over PostgreSQL (its in-process cache assumes it is the only writer);
/// [`Gateway`] does.
///
/// # Errors
/// As [`run`].
pub async fn router(config: ApiConfig) -> Result<axum::Router, Error> {
    router_with(config, Options::default()).await
}

/// [`router`] with [`Options`] of the caller's.
///
/// # Errors
/// As [`run`].
pub async fn router_with(config: ApiConfig, options: Options) -> Result<axum::Router, Error> {
    Ok(app::app(build(config, options, false).await?).router)
}
