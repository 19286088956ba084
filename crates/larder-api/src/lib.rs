//! The larder API gateway.
//!
//! Stateless JSON:API CRUD over collections of JSON documents kept in SQLite or PostgreSQL,
//! with RFC 9457 problem details, ETags and conditional requests, idempotent POSTs, JSON Schema
//! validation and reads served through the cache (cache nodes over gRPC, or an in-process
//! store). The library exposes [`run`]; the `larder` binary does only that.

mod app;
mod cache;
pub mod config;
mod db;
mod doc;
mod docs_page;
mod error;
mod http1;
mod list;
mod media;
mod metrics;
mod openapi;
mod problem;
mod routes;
mod state;
mod time;

use std::sync::Arc;
use std::time::Duration;

use larder_store::{Clock, SystemClock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{ApiConfig, CollectionConfig, Consistency};
pub use doc::SchemaError;
pub use error::{ConfigError, DatabaseError};
pub use state::CollectionError;

/// What the gateway runs with besides its configuration.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The gateway's one clock: document timestamps, idempotency expiry and cache freshness
    /// (`None`: the system clock).
    pub clock: Option<Arc<dyn Clock>>,
}

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

/// Serves the gateway on `listener` until `shutdown` is cancelled, then lets requests in
/// progress finish.
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
    let addr = listener.local_addr()?;
    if config.token.is_empty() && !addr.ip().is_loopback() {
        return Err(Error::Config(ConfigError::Unprotected { addr }));
    }
    if config.max_connections == 0 {
        return Err(Error::Config(ConfigError::NoConnections));
    }
    let state = build(config, options).await?;
    let purge = {
        let (db, stop, state) = (state.db.clone(), shutdown.clone(), state.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = every.tick() => {
                        if let Err(err) = db.purge_idempotency(state.now_ms()).await {
                            tracing::debug!(%err, "idempotency purge failed");
                        }
                    }
                }
            }
        })
    };
    let app = app::app(state.clone());
    http1::serve(listener, app, state, shutdown).await?;
    purge.abort();
    Ok(())
}

/// Opens the database and the cache and compiles the collections.
async fn build(config: ApiConfig, options: Options) -> Result<state::AppState, Error> {
    let clock = options.clock.unwrap_or_else(|| Arc::new(SystemClock));
    let collections =
        state::collections(&config).map_err(|e| Error::Config(ConfigError::Collection(e)))?;
    if config.database.is_empty() {
        return Err(Error::Config(ConfigError::NoDatabase));
    }
    let db = db::Db::open(&config.database, clock.as_ref())
        .await
        .map_err(|e| Error::Database(e.into()))?;
    let cache = if config.cache_nodes.is_empty() {
        cache::DocCache::local(db.clone(), config.local_cache_bytes, clock.clone())
            .map_err(|e| Error::Config(ConfigError::LocalCache(e)))?
    } else {
        let client_config = larder_client::ClientConfig {
            nodes: config.cache_nodes.clone(),
            token: (!config.cache_token.is_empty()).then(|| config.cache_token.clone()),
            deadline: Duration::from_millis(config.cache_deadline_ms.max(1)),
            ..larder_client::ClientConfig::default()
        };
        let client = larder_client::Client::with_clock(client_config, clock.clone())
            .map_err(|e| Error::Config(ConfigError::Client(e)))?;
        cache::DocCache::remote(db.clone(), client, clock.clone())
    };
    Ok(state::AppState::new(
        config,
        collections,
        db,
        Arc::new(cache),
        clock,
    ))
}

/// The router over a configuration, for tests that call it without a socket.
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
    Ok(app::app(build(config, options).await?))
}
