//! Wire formats shared by every larder process.
//!
//! This crate will hold the RESP2/RESP3 frame codec (bytes → frame, with "not enough bytes yet"
//! as a normal value), the Rust types generated from `proto/larder/cache/v1/cache.proto`, and the
//! one `ErrorCode` table that maps each failure to a RESP error, a gRPC status and an HTTP
//! problem type. It is filled in by the cache-node issue; nothing here does I/O.
