//! The larder cache node.
//!
//! Listeners for gRPC (`larder.cache.v1.Cache`, health, reflection), the Redis protocol and
//! admin HTTP over one `larder_store::Store`. The library exposes [`run`]: give it a
//! configuration, the bound [`Listeners`] and a shutdown token; the `larder` binary does only
//! that.

mod admin;
mod clients;
pub mod config;
mod grpc;
mod incoming;
mod metrics;
mod node;
mod origin;
mod resp;
mod server;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{CacheConfig, ConfigError, SizeError, parse_bytes, resolve};
pub use node::{Mutation, MutationKind, MutationSink, NodeOptions};
pub use server::{Error, Listeners, run, run_with};
