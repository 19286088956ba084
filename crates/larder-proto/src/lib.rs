//! Wire formats shared by every larder process: the RESP2/RESP3 codec (bytes → frame, with "not
//! enough bytes yet" as a normal value), the HTTP/1.1 request framing the gateway serves with, the Rust types generated from
//! `proto/larder/cache/v1/cache.proto`, and the one [`ErrorCode`] table that maps each failure to
//! a RESP error, a gRPC status, an HTTP status and a problem type; and [`secrets_match`], how
//! every listener compares a presented password or token. Nothing here does I/O.

mod error;
pub mod grpc;
pub mod http1;
pub mod resp;

pub use error::ErrorCode;

/// Compares a presented secret with the configured one without an early exit, so response
/// times do not tell how much of a guess was right.
#[must_use]
pub fn secrets_match(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}
