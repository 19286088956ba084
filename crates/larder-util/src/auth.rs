//! Bearer credentials, read and checked the same way by every listener: the gateway's HTTP
//! routes, the cache node's gRPC service and its admin `/metrics`.
//!
//! The scheme name is matched without regard to case (RFC 9110 §11.1: `Bearer`, `bearer` and
//! `BEARER` are one scheme) and followed by one or more spaces; the credential itself is
//! compared exactly, in constant time.

use subtle::ConstantTimeEq;

/// The credential of an `Authorization: Bearer <credential>` value, or `None` for another
/// scheme or a value without a credential.
#[must_use]
pub fn bearer(authorization: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = authorization.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let start = rest.iter().position(|&b| b != b' ')?;
    Some(&rest[start..])
}

/// Whether `authorization` (the header's value, if the request had one) carries `expected`.
/// An empty `expected` means no credential is configured, and every request passes.
#[must_use]
pub fn authorized(expected: &str, authorization: Option<&[u8]>) -> bool {
    expected.is_empty()
        || authorization
            .and_then(bearer)
            .is_some_and(|given| secrets_match(given, expected.as_bytes()))
}

/// Compares a presented secret with the configured one in constant time (`subtle`), so
/// response times tell neither how much of a guess was right nor how long the secret is: the
/// work follows the guess's length, never the secret's.
#[must_use]
pub fn secrets_match(given: &[u8], expected: &[u8]) -> bool {
    let Some(last) = expected.len().checked_sub(1) else {
        return given.is_empty();
    };
    let mut same = (given.len() as u64).ct_eq(&(expected.len() as u64));
    for (i, byte) in given.iter().enumerate() {
        same &= byte.ct_eq(&expected[i.min(last)]);
    }
    same.into()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_scheme_is_case_insensitive_and_the_credential_is_not() {
        for value in [
            &b"Bearer s3cret"[..],
            b"bearer s3cret",
            b"BEARER s3cret",
            b"bEaReR   s3cret",
        ] {
            assert_eq!(bearer(value), Some(&b"s3cret"[..]), "{value:?}");
            assert!(authorized("s3cret", Some(value)));
        }
        for value in [
            &b"Bearer S3CRET"[..],
            b"Bearers3cret",
            b"Bearer",
            b"Bearer ",
            b"Basic czNjcmV0",
            b"s3cret",
            b"",
        ] {
            assert!(!authorized("s3cret", Some(value)), "{value:?}");
        }
        assert!(!authorized("s3cret", None));
        assert!(authorized("", None), "no credential configured");
    }
}
