//! Reading replies: [`parse_frame`] builds one [`Frame`]; [`frame_len`] only measures it.
//!
//! Both decode each frame's header with the same [`head`] function and differ only in what
//! they do with an aggregate's elements, so they accept and refuse exactly the same bytes.
//! Nesting is followed by recursion, one level per aggregate, bounded by
//! [`Limits::max_depth`].

use super::number::{Len, crlf_at, is_big_number, parse_i64, read_len, read_line};
use super::{Frame, Limits, RespError, ready};

/// Parses one frame from the start of `buf`.
///
/// Returns the frame and the number of bytes it took, or `Ok(None)` if `buf` holds only part of
/// it. RESP2 and RESP3 frames are both understood; see [`Frame`] for how nulls and attributes
/// are represented.
///
/// # Errors
///
/// A [`RespError`] if the bytes are not RESP or exceed `limits`.
pub fn parse_frame(buf: &[u8], limits: &Limits) -> Result<Option<(Frame, usize)>, RespError> {
    Builder { buf, limits }.frame(0, 0)
}

/// Returns the length of the one complete frame at the start of `buf`, without building it and
/// without allocating, or `Ok(None)` if `buf` holds only part of it.
///
/// # Errors
///
/// Exactly those of [`parse_frame`] on the same bytes.
pub fn frame_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, RespError> {
    skip(buf, limits, 0, 0)
}

/// One frame's header: a whole scalar, or an aggregate's kind and element count.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Head<'a> {
    Simple(&'a [u8]),
    Error(&'a [u8]),
    Integer(i64),
    Bulk(&'a [u8]),
    BulkError(&'a [u8]),
    Verbatim([u8; 3], &'a [u8]),
    Null,
    Boolean(bool),
    Double(f64),
    BigNumber(&'a [u8]),
    Aggregate(Kind, usize),
}

/// The kinds of aggregate; maps and attributes count pairs, the others single elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Array,
    Map,
    Set,
    Attribute,
    Push,
}

type Step<T> = Result<Option<(T, usize)>, RespError>;

/// Decodes the header of the frame at `pos`, and the whole frame if it is not an aggregate.
fn head<'a>(buf: &'a [u8], pos: usize, limits: &Limits) -> Step<Head<'a>> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let body = pos + 1;
    match kind {
        b'$' | b'!' | b'=' => blob(buf, kind, body, limits),
        b'*' | b'%' | b'~' | b'|' | b'>' => aggregate(buf, kind, body, limits),
        b'+' | b'-' | b':' | b',' | b'#' | b'(' | b'_' => {
            let (line, next) = ready!(read_line(buf, body, limits.max_inline_len));
            Ok(Some((scalar(kind, line)?, next)))
        }
        other => Err(RespError::InvalidType(other)),
    }
}

/// Decodes a single-line frame of type `kind` from its `line`.
fn scalar(kind: u8, line: &[u8]) -> Result<Head<'_>, RespError> {
    Ok(match kind {
        b'+' => Head::Simple(line),
        b'-' => Head::Error(line),
        b':' => Head::Integer(parse_i64(line).ok_or(RespError::InvalidInteger)?),
        b',' => Head::Double(parse_double(line).ok_or(RespError::InvalidDouble)?),
        b'#' => match line {
            b"t" => Head::Boolean(true),
            b"f" => Head::Boolean(false),
            _ => return Err(RespError::InvalidBoolean),
        },
        b'(' if is_big_number(line) => Head::BigNumber(line),
        b'(' => return Err(RespError::InvalidBigNumber),
        _ if line.is_empty() => Head::Null,
        _ => return Err(RespError::InvalidNull),
    })
}

/// Decodes a length-prefixed frame (`$`, `!`, `=`) whose length starts at `body`.
fn blob<'a>(buf: &'a [u8], kind: u8, body: usize, limits: &Limits) -> Step<Head<'a>> {
    let header = read_len(buf, body, limits.max_bulk_len);
    let (len, start) = ready!(header.map_err(|_| RespError::InvalidBulkLength));
    let len = match len {
        Len::Value(len) => len,
        Len::Negative(1) if kind == b'$' => return Ok(Some((Head::Null, start))),
        Len::Negative(_) => return Err(RespError::InvalidBulkLength),
    };
    let end = start.checked_add(len).ok_or(RespError::InvalidBulkLength)?;
    match crlf_at(buf, end) {
        Some(true) => {}
        Some(false) => return Err(RespError::InvalidBulkLength),
        None => return Ok(None),
    }
    let data = buf.get(start..end).unwrap_or_default();
    let head = match (kind, data) {
        (b'$', _) => Head::Bulk(data),
        (b'!', _) => Head::BulkError(data),
        (_, [a, b, c, b':', text @ ..]) => Head::Verbatim([*a, *b, *c], text),
        _ => return Err(RespError::InvalidVerbatim),
    };
    Ok(Some((head, end + 2)))
}

/// Decodes an aggregate's header (`*`, `%`, `~`, `|`, `>`) whose count starts at `body`.
fn aggregate<'a>(buf: &'a [u8], kind: u8, body: usize, limits: &Limits) -> Step<Head<'a>> {
    let header = read_len(buf, body, limits.max_array_len);
    let (len, next) = ready!(header.map_err(|_| RespError::InvalidMultibulkLength));
    let count = match len {
        Len::Value(count) => count,
        Len::Negative(1) if kind == b'*' => return Ok(Some((Head::Null, next))),
        Len::Negative(_) => return Err(RespError::InvalidMultibulkLength),
    };
    let kind = match kind {
        b'*' => Kind::Array,
        b'%' => Kind::Map,
        b'~' => Kind::Set,
        b'|' => Kind::Attribute,
        _ => Kind::Push,
    };
    Ok(Some((Head::Aggregate(kind, count), next)))
}

/// A RESP3 double: any float Rust reads, which includes `inf`, `-inf` and `nan`.
fn parse_double(line: &[u8]) -> Option<f64> {
    std::str::from_utf8(line).ok()?.parse().ok()
}

/// Skips the frame at `pos`, nested `depth` aggregates deep; returns the index after it.
fn skip(buf: &[u8], limits: &Limits, pos: usize, depth: usize) -> Result<Option<usize>, RespError> {
    let (head, mut next) = ready!(head(buf, pos, limits));
    let Head::Aggregate(kind, count) = head else {
        return Ok(Some(next));
    };
    if depth >= limits.max_depth {
        return Err(RespError::TooDeep);
    }
    let children = match kind {
        Kind::Array | Kind::Set | Kind::Push => count,
        Kind::Map => count.saturating_mul(2),
        // The pairs, then the value they annotate.
        Kind::Attribute => count.saturating_mul(2).saturating_add(1),
    };
    for _ in 0..children {
        next = ready!(skip(buf, limits, next, depth + 1));
    }
    Ok(Some(next))
}

/// Builds frames from one buffer.
struct Builder<'a> {
    buf: &'a [u8],
    limits: &'a Limits,
}

impl Builder<'_> {
    /// Builds the frame at `pos`, nested `depth` aggregates deep.
    fn frame(&self, pos: usize, depth: usize) -> Step<Frame> {
        let (head, next) = ready!(head(self.buf, pos, self.limits));
        let Head::Aggregate(kind, count) = head else {
            return Ok(Some((owned(head), next)));
        };
        if depth >= self.limits.max_depth {
            return Err(RespError::TooDeep);
        }
        let depth = depth + 1;
        Ok(match kind {
            Kind::Array => self
                .items(next, count, depth)?
                .map(|(v, n)| (Frame::Array(v), n)),
            Kind::Set => self
                .items(next, count, depth)?
                .map(|(v, n)| (Frame::Set(v), n)),
            Kind::Push => self
                .items(next, count, depth)?
                .map(|(v, n)| (Frame::Push(v), n)),
            Kind::Map => self
                .pairs(next, count, depth)?
                .map(|(v, n)| (Frame::Map(v), n)),
            Kind::Attribute => self.attribute(next, count, depth)?,
        })
    }

    /// Builds an attribute of `count` pairs starting at `pos`, and the value that follows it.
    fn attribute(&self, pos: usize, count: usize, depth: usize) -> Step<Frame> {
        let (attributes, next) = ready!(self.pairs(pos, count, depth));
        let (value, next) = ready!(self.frame(next, depth));
        let value = Box::new(value);
        Ok(Some((Frame::Attribute { attributes, value }, next)))
    }

    /// Builds `count` frames starting at `pos`.
    fn items(&self, mut pos: usize, count: usize, depth: usize) -> Step<Vec<Frame>> {
        let mut items = Vec::with_capacity(self.capacity(pos, count, 3));
        for _ in 0..count {
            let (item, next) = ready!(self.frame(pos, depth));
            items.push(item);
            pos = next;
        }
        Ok(Some((items, pos)))
    }

    /// Builds `count` key-value pairs starting at `pos`.
    fn pairs(&self, mut pos: usize, count: usize, depth: usize) -> Step<Vec<(Frame, Frame)>> {
        let mut pairs = Vec::with_capacity(self.capacity(pos, count, 6));
        for _ in 0..count {
            let (key, next) = ready!(self.frame(pos, depth));
            let (value, next) = ready!(self.frame(next, depth));
            pairs.push((key, value));
            pos = next;
        }
        Ok(Some((pairs, pos)))
    }

    /// How many of `count` elements of at least `min_size` bytes each could fit in the rest of
    /// the buffer: a declared count alone must not make us reserve memory.
    fn capacity(&self, pos: usize, count: usize, min_size: usize) -> usize {
        count.min(self.buf.len().saturating_sub(pos) / min_size)
    }
}

/// Copies a scalar header into an owned frame.
fn owned(head: Head<'_>) -> Frame {
    match head {
        Head::Simple(text) => Frame::Simple(text.to_vec()),
        Head::Error(message) => Frame::Error(message.to_vec()),
        Head::Integer(value) => Frame::Integer(value),
        Head::Bulk(bytes) => Frame::Bulk(bytes.to_vec()),
        Head::BulkError(message) => Frame::BulkError(message.to_vec()),
        Head::Verbatim(format, text) => Frame::Verbatim {
            format,
            text: text.to_vec(),
        },
        // Aggregates are built element by element by the caller and never reach here.
        Head::Null | Head::Aggregate(..) => Frame::Null,
        Head::Boolean(value) => Frame::Boolean(value),
        Head::Double(value) => Frame::Double(value),
        Head::BigNumber(digits) => Frame::BigNumber(digits.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses with both functions, checks that they agree, and returns `parse_frame`'s answer.
    fn parse_with(input: &[u8], limits: &Limits) -> Result<Option<(Frame, usize)>, RespError> {
        let parsed = parse_frame(input, limits);
        let measured = frame_len(input, limits);
        assert_eq!(
            measured,
            parsed.clone().map(|p| p.map(|(_, n)| n)),
            "{input:?}"
        );
        parsed
    }

    fn parse(input: &[u8]) -> Result<Option<(Frame, usize)>, RespError> {
        parse_with(input, &Limits::default())
    }

    fn bulk(text: &str) -> Frame {
        Frame::bulk(text)
    }

    fn complete_cases() -> Vec<(&'static [u8], Frame)> {
        vec![
            (b"+OK\r\n", Frame::simple("OK")),
            (b"+\r\n", Frame::simple("")),
            (b"-ERR bad\r\n", Frame::Error(b"ERR bad".to_vec())),
            (b":-42\r\n", Frame::Integer(-42)),
            (b":+7\r\n", Frame::Integer(7)),
            (b"$5\r\nhello\r\n", bulk("hello")),
            (b"$0\r\n\r\n", bulk("")),
            (b"$2\r\n\r\n\r\n", bulk("\r\n")),
            (b"$-1\r\n", Frame::Null),
            (b"*-1\r\n", Frame::Null),
            (b"_\r\n", Frame::Null),
            (b"*0\r\n", Frame::Array(vec![])),
            (
                b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
                Frame::Array(vec![bulk("a"), Frame::Array(vec![Frame::Integer(1)])]),
            ),
            (b"#t\r\n", Frame::Boolean(true)),
            (b"#f\r\n", Frame::Boolean(false)),
            (b",1.5\r\n", Frame::Double(1.5)),
            (b",-inf\r\n", Frame::Double(f64::NEG_INFINITY)),
            (b",10\r\n", Frame::Double(10.0)),
            (b",1e-3\r\n", Frame::Double(0.001)),
            (
                b"(123456789012345678901234\r\n",
                Frame::BigNumber(b"123456789012345678901234".to_vec()),
            ),
            (b"!5\r\nERR x\r\n", Frame::BulkError(b"ERR x".to_vec())),
            (
                b"=7\r\ntxt:a\r\n\r\n",
                Frame::Verbatim {
                    format: *b"txt",
                    text: b"a\r\n".to_vec(),
                },
            ),
            (
                b"%1\r\n+k\r\n:1\r\n",
                Frame::Map(vec![(Frame::simple("k"), Frame::Integer(1))]),
            ),
            (
                b"~2\r\n:1\r\n:2\r\n",
                Frame::Set(vec![Frame::Integer(1), Frame::Integer(2)]),
            ),
            (
                b">2\r\n+message\r\n$2\r\nhi\r\n",
                Frame::Push(vec![Frame::simple("message"), bulk("hi")]),
            ),
            (
                b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n",
                Frame::Attribute {
                    attributes: vec![(Frame::simple("ttl"), Frame::Integer(3))],
                    value: Box::new(bulk("v")),
                },
            ),
        ]
    }

    #[test]
    fn complete_frames() {
        for (input, frame) in complete_cases() {
            assert_eq!(parse(input), Ok(Some((frame, input.len()))), "{input:?}");
        }
    }

    #[test]
    fn every_prefix_is_partial() {
        for (input, _) in complete_cases() {
            for cut in 0..input.len() {
                assert_eq!(parse(&input[..cut]), Ok(None), "{input:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn trailing_bytes_are_left_alone() {
        let input = b"+OK\r\n:1\r\n";
        assert_eq!(parse(input), Ok(Some((Frame::simple("OK"), 5))));
    }

    #[test]
    fn encode_then_parse_round_trips() {
        for (_, frame) in complete_cases() {
            let mut out = Vec::new();
            frame.encode(&mut out);
            assert_eq!(
                parse(&out),
                Ok(Some((frame.clone(), out.len()))),
                "{frame:?}"
            );
        }
    }

    #[test]
    fn errors() {
        let cases: &[(&[u8], RespError)] = &[
            (b"?x\r\n", RespError::InvalidType(b'?')),
            (b"\r\n", RespError::InvalidType(b'\r')),
            (b":1x\r\n", RespError::InvalidInteger),
            (b":\r\n", RespError::InvalidInteger),
            (b":99999999999999999999\r\n", RespError::InvalidInteger),
            (b",abc\r\n", RespError::InvalidDouble),
            (b"#x\r\n", RespError::InvalidBoolean),
            (b"(12a\r\n", RespError::InvalidBigNumber),
            (b"_x\r\n", RespError::InvalidNull),
            (b"=3\r\ntxt\r\n", RespError::InvalidVerbatim),
            (b"=4\r\ntxt;\r\n", RespError::InvalidVerbatim),
            (b"$-2\r\n", RespError::InvalidBulkLength),
            (b"!-1\r\n", RespError::InvalidBulkLength),
            (b"$?\r\n", RespError::InvalidBulkLength),
            (b"$1\r\nab\r\n", RespError::InvalidBulkLength),
            (b"~-1\r\n", RespError::InvalidMultibulkLength),
            (b"*x\r\n", RespError::InvalidMultibulkLength),
            (b"+a\nb\r\n", RespError::ExpectedCrlf),
            (b"+a\rb\r\n", RespError::ExpectedCrlf),
            (b"*2\r\n:1\r\n?\r\n", RespError::InvalidType(b'?')),
        ];
        for (input, error) in cases {
            assert_eq!(parse(input), Err(*error), "{input:?}");
        }
    }

    #[test]
    fn limits() {
        let limits = Limits {
            max_bulk_len: 4,
            max_array_len: 2,
            max_inline_len: 4,
            max_depth: 2,
        };
        type Outcome = Result<Option<usize>, RespError>;
        let cases: &[(&[u8], Outcome)] = &[
            (b"$4\r\n", Ok(None)),
            (b"$5", Err(RespError::InvalidBulkLength)),
            (b"*2\r\n", Ok(None)),
            (b"*3", Err(RespError::InvalidMultibulkLength)),
            (b"%3", Err(RespError::InvalidMultibulkLength)),
            (b"+abcd", Ok(None)),
            (b"+abcde", Err(RespError::LineTooLong)),
            (b"*1\r\n*1\r\n:1\r\n", Ok(Some(12))),
            (b"*1\r\n*1\r\n*0\r\n", Err(RespError::TooDeep)),
            (b"|1\r\n:1\r\n:2\r\n*0\r\n", Ok(Some(16))),
            (b"|0\r\n|0\r\n|0\r\n:1\r\n", Err(RespError::TooDeep)),
        ];
        for (input, expected) in cases {
            let parsed = parse_with(input, &limits).map(|p| p.map(|(_, n)| n));
            assert_eq!(parsed, *expected, "{input:?}");
        }
    }

    #[test]
    fn deep_nesting_fails_without_overflowing_the_stack() {
        let input = b"*1\r\n".repeat(100_000);
        assert_eq!(parse(&input), Err(RespError::TooDeep));
    }

    #[test]
    fn a_huge_declared_count_reserves_nothing_up_front() {
        assert_eq!(parse(b"*1000000\r\n:1\r\n"), Ok(None));
        assert_eq!(parse(b"%1000000\r\n"), Ok(None));
    }
}
