//! Wire formats shared by every larder process: the RESP2/RESP3 codec (bytes → frame, with "not
//! enough bytes yet" as a normal value), the HTTP/1.1 request framing the gateway serves with, the Rust types generated from
//! `proto/larder/cache/v1/cache.proto`, and the one [`ErrorCode`] table that maps each failure to
//! a RESP error, a gRPC status, an HTTP status and a problem type; [`secrets_match`], how
//! every listener compares a presented password or token; and the latency histogram every
//! `/metrics` renders ([`metrics`]). Nothing here does I/O.

mod error;
pub mod grpc;
pub mod http1;
pub mod metrics;
pub mod resp;

pub use error::ErrorCode;

/// Compares a presented secret with the configured one without an early exit, so response
/// times do not tell how much of a guess was right.
#[must_use]
pub fn secrets_match(given: &[u8], expected: &[u8]) -> bool {
    let Some(last) = expected.len().checked_sub(1) else {
        return given.is_empty();
    };
    // The work follows the guess's length, never the secret's, so timing tells neither how
    // long the secret is nor how much of it a guess got right.
    let mut diff = u8::from(given.len() != expected.len());
    for (i, g) in given.iter().enumerate() {
        diff |= g ^ expected[i.min(last)];
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::secrets_match;

    #[test]
    fn only_the_exact_secret_matches() {
        assert!(secrets_match(b"s3cret", b"s3cret"));
        assert!(secrets_match(b"", b""));
        for wrong in [
            &b""[..],
            b"s3cre",
            b"s3cret!",
            b"s3creT",
            b"S3cret",
            b"s3crettt",
            b"x",
        ] {
            assert!(!secrets_match(wrong, b"s3cret"), "{wrong:?}");
        }
        assert!(!secrets_match(b"x", b""));
        // A guess whose tail repeats the secret's last byte is still too long.
        assert!(!secrets_match(b"s3crettttt", b"s3cret"));
    }
}
