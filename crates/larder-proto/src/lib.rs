//! Wire formats shared by every larder process: the RESP2/RESP3 codec (bytes → frame, with "not
//! enough bytes yet" as a normal value), the Rust types generated from
//! `proto/larder/cache/v1/cache.proto`, and the one [`ErrorCode`] table that maps each failure to
//! a RESP error, a gRPC status, an HTTP status and a problem type; and the latency histogram
//! every `/metrics` renders ([`metrics`]); W3C trace context and the sampling decision of every
//! request entry point ([`trace`]). Nothing here does I/O.

mod error;
pub mod grpc;
pub mod http_url;
pub mod metrics;
pub mod resp;
pub mod trace;

pub use error::ErrorCode;
