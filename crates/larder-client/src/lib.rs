//! The Rust client for larder cache nodes (`larder.cache.v1.Cache` over gRPC), made for the
//! gateway's hot path.
//!
//! * **Routing**: each key goes to one node, chosen by rendezvous hashing with a fixed hash, so
//!   every gateway replica with the same node list agrees without talking to the others (see
//!   [Routing](#routing)).
//! * **Pooling**: `connections_per_node` lazy HTTP/2 channels per node, taken in turn. Nothing
//!   connects until the first call, so the gateway starts while the nodes are down.
//! * **Deadlines**: every call is bounded by `deadline` on the client and tells the node the
//!   same deadline (`grpc-timeout`).
//! * **Circuit breaker** per node: `breaker_failures` consecutive availability failures open
//!   it, calls then fail fast with [`Error::Unavailable`] without touching the network, and one
//!   trial call after `breaker_cooldown` closes it again if it succeeds.
//! * **Client-side caching**: [`Client::track`] keeps a `Watch` stream to every node, through
//!   which the nodes push invalidations of the keys read with
//!   [`Client::get_or_lease_tracked`] to an [`Invalidations`] sink; [`Tracking::serving`]
//!   says whether copies may be served now, and writes with `await_invalidation`
//!   ([`SetOpts::await_invalidation`], [`Client::invalidate_awaiting`]) answer only once
//!   every subscriber applied them or its lease lapsed.
//!
//! # Routing
//!
//! A node's weight for a key is `fmix64(fnv1a64(name) ^ fnv1a64(key))`, where `name` is the
//! node's address as `host:port` (any `http://` prefix and trailing `/` removed), `fnv1a64` is
//! 64-bit FNV-1a and `fmix64` is MurmurHash3's 64-bit finalizer; the key goes to the node with
//! the highest weight. This is part of the contract between gateway replicas: it does not
//! depend on the order of the node list, the platform or the version of any dependency, and a
//! unit test pins its results. Replicas must spell node names alike (`localhost:7070` and
//! `127.0.0.1:7070` are different names). Removing a node moves only the keys it owned.
//! [`Client::node_for`] tells which node owns a key.
//!
//! ```no_run
//! # async fn demo() -> Result<(), larder_client::Error> {
//! use larder_client::{Client, ClientConfig, SetOpts};
//!
//! let client = Client::new(ClientConfig {
//!     nodes: vec!["10.0.0.1:7070".into(), "10.0.0.2:7070".into()],
//!     ..ClientConfig::default()
//! })?;
//! let opts = SetOpts { if_newer_version: Some(7), ..SetOpts::default() };
//! client.set("doc/users/1", r#"{"name":"Ada"}"#, opts).await?;
//! match client.get("doc/users/1").await {
//!     Ok(Some(entry)) => println!("hit, version {}", entry.version),
//!     Ok(None) => println!("miss"),
//!     Err(e) if e.is_unavailable() => println!("cache down, ask the database"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```

mod client;
mod cluster;
mod config;
mod connect;
mod error;
mod ops;
mod placement;
mod route;
mod tracking;

pub use client::Client;
pub use config::{
    ClientConfig, DEFAULT_BREAKER_COOLDOWN, DEFAULT_BREAKER_FAILURES, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_CONNECTIONS_PER_NODE, DEFAULT_DEADLINE, DEFAULT_NODE,
};
pub use error::{ConfigError, Error};
pub use larder_util::breaker::BreakerState;
pub use ops::{Entry, Lookup, SetOpts};
pub use tracking::{Invalidations, Tracking};
