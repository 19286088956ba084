//! The server's request parser: one command per call, from the start of the read buffer.
//!
//! A request is either a RESP array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) or, when
//! the first byte is not `*`, an inline line split as `redis-cli` would type it (see
//! [`inline`](super::inline)). Array arguments are recorded as ranges into the caller's buffer
//! and never copied; only inline arguments, which may contain escapes, are copied into the
//! [`Args`]' own scratch buffer. Both vectors keep their capacity, so a connection that has
//! seen its largest request parses every later one without allocating.
//!
//! A partial request is parsed again from its start when more bytes arrive. That rescans the
//! headers only: a bulk payload is skipped by its declared length, never searched.

use super::number::{Len, crlf_at, read_len};
use super::{Limits, RespError, inline, ready};

/// The arguments of the last request [`parse_request`] read, reused from call to call.
///
/// Arguments are read back with the same buffer that was parsed ([`Args::get`],
/// [`Args::iter`]); array arguments point into it, inline ones into the `Args` itself.
#[derive(Debug, Clone, Default)]
pub struct Args {
    /// `start..end` of each argument, in the caller's buffer or in `scratch`.
    spans: Vec<(usize, usize)>,
    /// Unescaped bytes of inline arguments.
    scratch: Vec<u8>,
    /// Whether `spans` index `scratch` rather than the caller's buffer.
    inline: bool,
}

impl Args {
    /// An empty argument list; it allocates only when the first request is parsed into it.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of arguments, the command name included.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the request had no arguments (an empty inline line, `*0` or `*-1`): the server
    /// skips such a request without replying, as Redis does.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Whether the request was an inline command rather than a RESP array.
    pub fn is_inline(&self) -> bool {
        self.inline
    }

    /// Argument `index`, read from `buf`, which must be the buffer given to [`parse_request`]
    /// (or one that starts with the same bytes). `None` past the last argument.
    #[inline]
    pub fn get<'a>(&'a self, buf: &'a [u8], index: usize) -> Option<&'a [u8]> {
        let &(start, end) = self.spans.get(index)?;
        self.source(buf).get(start..end)
    }

    /// All arguments in order, read from `buf` as for [`Args::get`].
    pub fn iter<'a>(
        &'a self,
        buf: &'a [u8],
    ) -> impl ExactSizeIterator<Item = &'a [u8]> + DoubleEndedIterator + 'a {
        let source = self.source(buf);
        self.spans
            .iter()
            .map(move |&(start, end)| source.get(start..end).unwrap_or_default())
    }

    /// Forgets every argument but keeps the allocated capacity.
    pub fn clear(&mut self) {
        self.spans.clear();
        self.scratch.clear();
        self.inline = false;
    }

    /// Drops capacity above `spans` arguments and `bytes` inline bytes, for a connection that
    /// once received a huge request and should not keep its buffers while idle.
    pub fn shrink_to(&mut self, spans: usize, bytes: usize) {
        self.spans.shrink_to(spans);
        self.scratch.shrink_to(bytes);
    }

    fn source<'a>(&'a self, buf: &'a [u8]) -> &'a [u8] {
        if self.inline { &self.scratch } else { buf }
    }

    /// Records an inline argument: the bytes appended to the scratch buffer since `start`.
    pub(super) fn push_scratch_arg(&mut self, start: usize) {
        self.spans.push((start, self.scratch.len()));
    }

    /// The scratch buffer inline arguments are unescaped into.
    pub(super) fn scratch(&mut self) -> &mut Vec<u8> {
        &mut self.scratch
    }
}

/// Parses one request from the start of `buf` into `args`.
///
/// Returns `Ok(Some(consumed))` when a whole request was read (`args` then holds its arguments,
/// possibly none), and `Ok(None)` when `buf` holds only part of one: call again from the same
/// start once more bytes have arrived. `args` is cleared by every call and stays empty unless
/// a request is complete.
///
/// # Errors
///
/// A [`RespError`] whose text is the one Redis sends (`Protocol error: invalid bulk length` …)
/// when the bytes are not a valid request or exceed `limits`. The stream cannot be resumed: send
/// the error and close the connection.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
    args: &mut Args,
) -> Result<Option<usize>, RespError> {
    args.clear();
    let parsed = match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_array(buf, limits, args),
        Some(_) => {
            args.inline = true;
            inline::parse_inline(buf, limits, args)
        }
    };
    if !matches!(parsed, Ok(Some(_))) {
        args.clear();
    }
    parsed
}

/// Parses `*<count>\r\n` followed by `count` bulk strings.
fn parse_array(buf: &[u8], limits: &Limits, args: &mut Args) -> Result<Option<usize>, RespError> {
    let header = read_len(buf, 1, limits.max_array_len);
    let (count, mut pos) = ready!(header.map_err(|_| RespError::InvalidMultibulkLength));
    // Redis treats every count below one, not just `*-1`, as an empty request.
    let Len::Value(count) = count else {
        return Ok(Some(pos));
    };
    for _ in 0..count {
        let (start, end) = ready!(read_bulk(buf, pos, limits));
        args.spans.push((start, end));
        pos = end + 2;
    }
    Ok(Some(pos))
}

/// Reads the bulk string at `pos`: returns its payload's `start..end`; CRLF follows `end`.
#[inline]
fn read_bulk(buf: &[u8], pos: usize, limits: &Limits) -> Result<Option<(usize, usize)>, RespError> {
    match buf.get(pos) {
        Some(b'$') => {}
        Some(&other) => return Err(RespError::ExpectedDollar(other)),
        None => return Ok(None),
    }
    let header = read_len(buf, pos + 1, limits.max_bulk_len);
    let (len, start) = ready!(header.map_err(|_| RespError::InvalidBulkLength));
    let Len::Value(len) = len else {
        return Err(RespError::InvalidBulkLength);
    };
    let end = start.checked_add(len).ok_or(RespError::InvalidBulkLength)?;
    match crlf_at(buf, end) {
        Some(true) => Ok(Some((start, end))),
        // Redis skips the two bytes unchecked; a payload that is not followed by CRLF means its
        // declared length was wrong, and reading on would misparse everything after it.
        Some(false) => Err(RespError::InvalidBulkLength),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The arguments read and the bytes consumed.
    type Parsed = Result<Option<(Vec<Vec<u8>>, usize)>, RespError>;

    fn parse(input: &[u8]) -> Parsed {
        let mut args = Args::new();
        let consumed = parse_request(input, &Limits::default(), &mut args)?;
        Ok(consumed.map(|n| (args.iter(input).map(<[u8]>::to_vec).collect(), n)))
    }

    type Outcome = Result<Option<usize>, RespError>;

    fn strings(args: &[&str]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn complete_arrays() {
        let cases: &[(&[u8], &[&str])] = &[
            (b"*1\r\n$4\r\nPING\r\n", &["PING"]),
            (b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", &["GET", "k"]),
            (
                b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$2\r\n\r\n\r\n",
                &["SET", "", "\r\n"],
            ),
            (b"*0\r\n", &[]),
            (b"*-1\r\n", &[]),
            (b"*-5\r\n", &[]),
        ];
        for (input, expected) in cases {
            let parsed = parse(input).unwrap().unwrap();
            assert_eq!(parsed, (strings(expected), input.len()), "{input:?}");
        }
    }

    #[test]
    fn every_prefix_of_a_request_is_partial() {
        let input = b"*3\r\n$3\r\nSET\r\n$10\r\nkey:000123\r\n$5\r\nvalue\r\n";
        for cut in 0..input.len() {
            assert_eq!(parse(&input[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse(input).unwrap().unwrap().1, input.len());
    }

    #[test]
    fn pipelined_requests_are_read_one_at_a_time() {
        let input = b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nECHO x\r\n";
        let mut args = Args::new();
        let mut rest = &input[..];
        let mut seen = Vec::new();
        while let Some(n) = parse_request(rest, &Limits::default(), &mut args).unwrap() {
            seen.push(args.iter(rest).map(<[u8]>::to_vec).collect::<Vec<_>>());
            rest = &rest[n..];
        }
        assert!(rest.is_empty());
        assert_eq!(
            seen,
            [
                strings(&["PING"]),
                strings(&["GET", "k"]),
                strings(&["ECHO", "x"])
            ]
        );
    }

    #[test]
    fn errors_carry_redis_texts() {
        let cases: &[(&[u8], &str)] = &[
            (b"*x\r\n", "Protocol error: invalid multibulk length"),
            (b"*\r\n", "Protocol error: invalid multibulk length"),
            (b"*01\r\n", "Protocol error: invalid multibulk length"),
            (b"*1\rx", "Protocol error: invalid multibulk length"),
            (b"*2\r\nx", "Protocol error: expected '$', got 'x'"),
            (b"*1\r\n:1\r\n", "Protocol error: expected '$', got ':'"),
            (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$x\r\n", "Protocol error: invalid bulk length"),
            (
                b"*1\r\n$3\r\nabcd\r\n",
                "Protocol error: invalid bulk length",
            ),
            (b"*1\r\n$3\r\nab\r\n", "Protocol error: invalid bulk length"),
        ];
        for (input, text) in cases {
            let error = parse(input).unwrap_err();
            assert_eq!(error.to_string(), *text, "{input:?}");
        }
    }

    #[test]
    fn lengths_past_the_limits_fail_before_their_payload_arrives() {
        let limits = Limits {
            max_bulk_len: 10,
            max_array_len: 3,
            ..Limits::default()
        };
        let mut args = Args::new();
        let cases: &[(&[u8], Outcome)] = &[
            (b"*3\r\n", Ok(None)),
            (b"*4", Err(RespError::InvalidMultibulkLength)),
            (b"*1\r\n$10\r\n", Ok(None)),
            (b"*1\r\n$11", Err(RespError::InvalidBulkLength)),
            (b"*1\r\n$99999999999", Err(RespError::InvalidBulkLength)),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_request(input, &limits, &mut args),
                *expected,
                "{input:?}"
            );
        }
    }

    #[test]
    fn args_are_empty_after_a_partial_or_failed_parse() {
        let mut args = Args::new();
        let limits = Limits::default();
        let full = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        assert_eq!(
            parse_request(full, &limits, &mut args),
            Ok(Some(full.len()))
        );
        assert_eq!(args.len(), 2);
        assert_eq!(parse_request(&full[..15], &limits, &mut args), Ok(None));
        assert!(args.is_empty());
        assert!(parse_request(b"*1\r\n$1\r\nxy", &limits, &mut args).is_err());
        assert!(args.is_empty());
    }

    #[test]
    fn get_reads_arguments_and_stops_past_the_end() {
        let buf = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
        let mut args = Args::new();
        parse_request(buf, &Limits::default(), &mut args).unwrap();
        assert!(!args.is_inline());
        assert_eq!(args.get(buf, 0), Some(&b"GET"[..]));
        assert_eq!(args.get(buf, 1), Some(&b"key"[..]));
        assert_eq!(args.get(buf, 2), None);
        // A shorter buffer than the one parsed cannot make `get` panic.
        assert_eq!(args.get(&buf[..5], 1), None);
        assert_eq!(args.iter(buf).next_back(), Some(&b"key"[..]));
    }

    #[test]
    fn steady_state_reuses_capacity() {
        let buf = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
        let mut args = Args::new();
        parse_request(buf, &Limits::default(), &mut args).unwrap();
        let spans = args.spans.as_ptr();
        for _ in 0..100 {
            parse_request(buf, &Limits::default(), &mut args).unwrap();
        }
        assert_eq!(args.spans.as_ptr(), spans);
    }
}
