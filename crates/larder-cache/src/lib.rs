//! The larder cache node.
//!
//! Listeners for gRPC (`larder.cache.v1.Cache`), the Redis protocol and admin HTTP over one
//! `larder_store::Store`, plus read-through origins with per-key load coalescing and
//! write-through. The library exposes `run(config, listeners, shutdown)`; the `larder` binary
//! calls it. Filled in by the cache-node and read-through issues.
