//! The RESP2/RESP3 codec: plain synchronous functions over byte slices, no I/O.
//!
//! * [`parse_request`] is the server's hot path: it reads one command (a RESP array of bulk
//!   strings, or an inline line) into a reusable [`Args`] without allocating in steady state.
//! * [`parse_frame`] and [`frame_len`] read any RESP2/RESP3 reply; clients, tests and the load
//!   generator use them.
//! * [`encode`] appends replies (and client requests) to a `Vec<u8>`, in the form the
//!   connection's [`Protocol`] calls for.
//!
//! "Not enough bytes yet" is `Ok(None)`, never an error. A declared length past a [`Limits`]
//! bound is an error at once, so a peer cannot make us buffer without end. After an error the
//! stream cannot be resynchronised: reply with the error and close the connection, as Redis does.

pub mod encode;
mod error;
mod frame;
mod inline;
mod number;
mod parse;
mod request;

pub use encode::{Protocol, encode_request};
pub use error::RespError;
pub use frame::Frame;
pub use parse::{frame_len, parse_frame};
pub use request::{Args, parse_request};

/// Default for [`Limits::max_bulk_len`]: 64 MiB.
pub const DEFAULT_MAX_BULK_LEN: usize = 64 << 20;
/// Default for [`Limits::max_array_len`]: 1,048,576 elements.
pub const DEFAULT_MAX_ARRAY_LEN: usize = 1 << 20;
/// Default for [`Limits::max_inline_len`]: 64 KiB, as Redis's `PROTO_INLINE_MAX_SIZE`.
pub const DEFAULT_MAX_INLINE_LEN: usize = 64 << 10;
/// Default for [`Limits::max_depth`]: 64 levels of nested aggregates.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Bounds on what a peer may declare or send; anything past them is a protocol error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string (request argument or reply payload), in bytes.
    pub max_bulk_len: usize,
    /// Most elements in one array, set or push, or pairs in one map or attribute.
    pub max_array_len: usize,
    /// Longest inline command or single-line reply (`+`, `-`, `:` …), excluding its line end.
    pub max_inline_len: usize,
    /// Deepest nesting of aggregates in a reply frame. Parsing recurses once per level, so keep
    /// this modest (hundreds, not millions).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bulk_len: DEFAULT_MAX_BULK_LEN,
            max_array_len: DEFAULT_MAX_ARRAY_LEN,
            max_inline_len: DEFAULT_MAX_INLINE_LEN,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Returns early with `Ok(None)` when a step needs more bytes, and with the error when it fails.
macro_rules! ready {
    ($step:expr) => {
        match $step? {
            Some(value) => value,
            None => return Ok(None),
        }
    };
}
use ready;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_match_the_documented_values() {
        let limits = Limits::default();
        assert_eq!(limits.max_bulk_len, 64 * 1024 * 1024);
        assert_eq!(limits.max_array_len, 1_048_576);
        assert_eq!(limits.max_inline_len, 65_536);
        assert_eq!(limits.max_depth, 64);
    }
}
