//! The Rust client for larder cache nodes.
//!
//! Routes each key to the node that owns its partition, pools gRPC connections, applies
//! deadlines and wraps the nodes in a circuit breaker so callers can fall back to the database.
//! Filled in by the gateway issue.
