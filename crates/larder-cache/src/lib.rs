//! The larder cache node.
//!
//! Listeners for gRPC (`larder.cache.v1.Cache`), the Redis protocol and admin HTTP over one
//! `larder_store::Store`. The library exposes [`run`]: give it a configuration, the bound
//! listeners and a shutdown token; the `larder` binary does only that.

mod config;
mod metrics;
mod node;
mod resp;

pub use config::{CacheConfig, ConfigError, parse_bytes, resolve};
