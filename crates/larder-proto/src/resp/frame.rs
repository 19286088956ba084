//! [`Frame`]: one owned RESP2/RESP3 value, as clients, tests and the load generator see replies.
//!
//! RESP2's two nulls (`$-1`, `*-1`) and RESP3's `_` all become [`Frame::Null`]. Attributes
//! (`|`) are kept: the attribute map and the value it annotates form one
//! [`Frame::Attribute`]. Streamed strings and aggregates (`$?`, `*?`) are not supported; Redis
//! never sends them.

use super::encode::{self, Protocol};

/// One RESP2/RESP3 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+OK`: a simple string (no CR or LF inside).
    Simple(Vec<u8>),
    /// `-ERR message`: an error, its prefix (`ERR`, `WRONGTYPE` …) included.
    Error(Vec<u8>),
    /// `:42`: a signed 64-bit integer.
    Integer(i64),
    /// `$5\r\nhello`: a binary-safe string.
    Bulk(Vec<u8>),
    /// RESP3 `_`, or RESP2's null bulk string `$-1` and null array `*-1`.
    Null,
    /// `*n`: an ordered list of values.
    Array(Vec<Frame>),
    /// RESP3 `#t` / `#f`.
    Boolean(bool),
    /// RESP3 `,1.5` (also `inf`, `-inf`, `nan`).
    Double(f64),
    /// RESP3 `(12345…`: an integer of any size, kept as its decimal digits (with sign, if any).
    BigNumber(Vec<u8>),
    /// RESP3 `!n`: a binary-safe error.
    BulkError(Vec<u8>),
    /// RESP3 `=n\r\ntxt:…`: a string with a three-byte format such as `txt` or `mkd`.
    Verbatim {
        /// The format, e.g. `*b"txt"`.
        format: [u8; 3],
        /// The text after `format:`.
        text: Vec<u8>,
    },
    /// RESP3 `%n`: key-value pairs in the order received.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~n`: an unordered collection, in the order received.
    Set(Vec<Frame>),
    /// RESP3 `|n`: attribute pairs together with the value they annotate.
    Attribute {
        /// The attribute map.
        attributes: Vec<(Frame, Frame)>,
        /// The value that followed the attributes.
        value: Box<Frame>,
    },
    /// RESP3 `>n`: an out-of-band message (pub/sub, invalidation).
    Push(Vec<Frame>),
}

impl Frame {
    /// A simple string frame.
    pub fn simple(text: impl Into<Vec<u8>>) -> Self {
        Self::Simple(text.into())
    }

    /// A bulk string frame.
    pub fn bulk(bytes: impl Into<Vec<u8>>) -> Self {
        Self::Bulk(bytes.into())
    }

    /// The bytes of a simple string, bulk string or verbatim string's text.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Simple(bytes) | Self::Bulk(bytes) | Self::Verbatim { text: bytes, .. } => {
                Some(bytes)
            }
            _ => None,
        }
    }

    /// The message of a simple or bulk error.
    pub fn as_error(&self) -> Option<&[u8]> {
        match self {
            Self::Error(message) | Self::BulkError(message) => Some(message),
            _ => None,
        }
    }

    /// The value of an integer frame.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Integer(value) => Some(*value),
            _ => None,
        }
    }

    /// The elements of an array, set or push.
    pub fn as_array(&self) -> Option<&[Frame]> {
        match self {
            Self::Array(items) | Self::Set(items) | Self::Push(items) => Some(items),
            _ => None,
        }
    }

    /// Whether this is a null of either protocol.
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// Whether this is a simple or bulk error.
    pub fn is_error(&self) -> bool {
        matches!(self, Self::Error(_) | Self::BulkError(_))
    }

    /// Appends this frame to `out` in RESP3 form (nulls as `_`). CR and LF inside simple
    /// strings and errors become spaces, as in [`encode::simple`].
    pub fn encode(&self, out: &mut Vec<u8>) {
        const P: Protocol = Protocol::Resp3;
        match self {
            Self::Simple(text) => encode::simple(out, text),
            Self::Error(message) => encode::error(out, message),
            Self::Integer(value) => encode::integer(out, *value),
            Self::Bulk(bytes) => encode::bulk(out, bytes),
            Self::Null => encode::null(out, P),
            Self::Array(items) => {
                encode::array(out, items.len());
                encode_all(out, items);
            }
            Self::Boolean(value) => encode::boolean(out, P, *value),
            Self::Double(value) => encode::double(out, P, *value),
            Self::BigNumber(digits) => encode::big_number(out, P, digits),
            Self::BulkError(message) => encode::bulk_error(out, P, message),
            Self::Verbatim { format, text } => encode::verbatim(out, P, format, text),
            Self::Map(pairs) => {
                encode::map(out, P, pairs.len());
                encode_pairs(out, pairs);
            }
            Self::Set(items) => {
                encode::set(out, P, items.len());
                encode_all(out, items);
            }
            Self::Attribute { attributes, value } => {
                encode::attribute(out, attributes.len());
                encode_pairs(out, attributes);
                value.encode(out);
            }
            Self::Push(items) => {
                encode::push(out, P, items.len());
                encode_all(out, items);
            }
        }
    }
}

/// Appends each of `items`.
fn encode_all(out: &mut Vec<u8>, items: &[Frame]) {
    for item in items {
        item.encode(out);
    }
}

/// Appends each key and value of `pairs`.
fn encode_pairs(out: &mut Vec<u8>, pairs: &[(Frame, Frame)]) {
    for (key, value) in pairs {
        key.encode(out);
        value.encode(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(frame: &Frame) -> Vec<u8> {
        let mut out = Vec::new();
        frame.encode(&mut out);
        out
    }

    #[test]
    fn encode_table() {
        let cases: Vec<(Frame, &[u8])> = vec![
            (Frame::simple("OK"), b"+OK\r\n"),
            (Frame::Error(b"ERR no\r\nway".to_vec()), b"-ERR no  way\r\n"),
            (Frame::Integer(-7), b":-7\r\n"),
            (Frame::bulk("hi"), b"$2\r\nhi\r\n"),
            (Frame::Null, b"_\r\n"),
            (
                Frame::Array(vec![Frame::Integer(1), Frame::Null]),
                b"*2\r\n:1\r\n_\r\n",
            ),
            (Frame::Boolean(true), b"#t\r\n"),
            (Frame::Double(1.5), b",1.5\r\n"),
            (Frame::Double(f64::NEG_INFINITY), b",-inf\r\n"),
            (
                Frame::BigNumber(b"-12345678901234567890".to_vec()),
                b"(-12345678901234567890\r\n",
            ),
            (
                Frame::BulkError(b"SYNTAX x".to_vec()),
                b"!8\r\nSYNTAX x\r\n",
            ),
            (
                Frame::Verbatim {
                    format: *b"txt",
                    text: b"Some".to_vec(),
                },
                b"=8\r\ntxt:Some\r\n",
            ),
            (
                Frame::Map(vec![(Frame::simple("a"), Frame::Integer(1))]),
                b"%1\r\n+a\r\n:1\r\n",
            ),
            (Frame::Set(vec![Frame::Boolean(false)]), b"~1\r\n#f\r\n"),
            (
                Frame::Attribute {
                    attributes: vec![(Frame::simple("ttl"), Frame::Integer(3))],
                    value: Box::new(Frame::simple("OK")),
                },
                b"|1\r\n+ttl\r\n:3\r\n+OK\r\n",
            ),
            (Frame::Push(vec![Frame::bulk("m")]), b">1\r\n$1\r\nm\r\n"),
        ];
        for (frame, bytes) in &cases {
            assert_eq!(encoded(frame), *bytes, "{frame:?}");
        }
    }

    #[test]
    fn accessors() {
        assert_eq!(Frame::simple("OK").as_bytes(), Some(&b"OK"[..]));
        assert_eq!(Frame::bulk("v").as_bytes(), Some(&b"v"[..]));
        assert_eq!(Frame::Integer(3).as_bytes(), None);
        assert_eq!(Frame::Integer(3).as_int(), Some(3));
        assert_eq!(Frame::Null.as_int(), None);
        assert!(Frame::Null.is_null());
        assert!(Frame::Error(b"ERR x".to_vec()).is_error());
        assert_eq!(Frame::BulkError(b"E".to_vec()).as_error(), Some(&b"E"[..]));
        let set = Frame::Set(vec![Frame::Integer(1)]);
        assert_eq!(set.as_array(), Some(&[Frame::Integer(1)][..]));
    }
}
