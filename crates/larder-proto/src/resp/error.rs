//! Protocol errors. Each one's `Display` is the text a client should see after `-ERR `; the
//! request-side texts are Redis's own, so clients see what Redis would say. Errors are `Copy`
//! and never allocate, so a flood of garbage costs no memory.

/// Why bytes could not be parsed as RESP. The stream cannot be resynchronised after one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RespError {
    /// An array's element count is malformed or above [`Limits::max_array_len`](super::Limits).
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A bulk string's length is malformed, above [`Limits::max_bulk_len`](super::Limits), or
    /// its payload is not followed by CRLF.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// An element of a request array is not a bulk string; holds the byte found instead.
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedDollar(u8),
    /// An inline command has an unterminated quote, or a closing quote followed by a non-space.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// An inline command is longer than [`Limits::max_inline_len`](super::Limits).
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    /// A reply starts with a byte that is not a RESP2/RESP3 type; holds that byte.
    #[error("Protocol error: invalid reply type '{}'", char::from(*.0))]
    InvalidType(u8),
    /// A reply line is not ended by CRLF (a bare CR or LF inside it).
    #[error("Protocol error: expected CRLF")]
    ExpectedCrlf,
    /// A single-line reply is longer than [`Limits::max_inline_len`](super::Limits).
    #[error("Protocol error: too big line in reply")]
    LineTooLong,
    /// A `:` reply is not a 64-bit signed integer.
    #[error("Protocol error: invalid integer")]
    InvalidInteger,
    /// A `,` reply is not a floating-point number, `inf`, `-inf` or `nan`.
    #[error("Protocol error: invalid double")]
    InvalidDouble,
    /// A `#` reply is neither `t` nor `f`.
    #[error("Protocol error: invalid boolean")]
    InvalidBoolean,
    /// A `(` reply is not an optionally signed string of digits.
    #[error("Protocol error: invalid big number")]
    InvalidBigNumber,
    /// A `_` reply has bytes before its CRLF.
    #[error("Protocol error: invalid null")]
    InvalidNull,
    /// A `=` reply is shorter than four bytes or lacks the `:` after its format.
    #[error("Protocol error: invalid verbatim string")]
    InvalidVerbatim,
    /// Aggregates are nested deeper than [`Limits::max_depth`](super::Limits).
    #[error("Protocol error: reply nested too deeply")]
    TooDeep,
}

#[cfg(test)]
mod tests {
    use super::RespError::{self, *};

    #[test]
    fn display_is_the_text_after_err() {
        let cases: &[(RespError, &str)] = &[
            (
                InvalidMultibulkLength,
                "Protocol error: invalid multibulk length",
            ),
            (InvalidBulkLength, "Protocol error: invalid bulk length"),
            (
                ExpectedDollar(b'x'),
                "Protocol error: expected '$', got 'x'",
            ),
            (
                UnbalancedQuotes,
                "Protocol error: unbalanced quotes in request",
            ),
            (TooBigInline, "Protocol error: too big inline request"),
            (InvalidType(b'?'), "Protocol error: invalid reply type '?'"),
            (TooDeep, "Protocol error: reply nested too deeply"),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), *text);
        }
    }

    #[test]
    fn errors_are_small_and_copy() {
        fn is_copy<T: Copy>() {}
        is_copy::<RespError>();
        assert!(std::mem::size_of::<RespError>() <= 2);
    }
}
