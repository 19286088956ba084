//! The server's request parser: one command per call, from the start of the read buffer.
//!
//! A request is either a RESP array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) or, when
//! the first byte is not `*`, an inline line split as `redis-cli` would type it (see
//! [`inline`](super::inline)). Array arguments are recorded as ranges into the caller's buffer
//! and never copied; only inline arguments, which may contain escapes, are copied into the
//! [`Args`]' own scratch buffer. Both vectors keep their capacity, so a connection that has
//! seen its largest request parses every later one without allocating.
//!
//! A partial array request is resumed, not parsed again: the [`Args`] keep the arguments read
//! so far and the offset of the next header, so each call reads only the headers that are new,
//! and a request trickled in a few bytes at a time costs time linear in its length. A bulk
//! payload is skipped by its declared length, never searched. A partial inline line is searched
//! again from its start, which [`Limits::max_inline_len`] bounds.

use super::number::{Len, crlf_at, read_len};
use super::{Limits, RespError, inline, ready};

/// The arguments of the last request [`parse_request`] read, reused from call to call.
///
/// Arguments are read back with the same buffer that was parsed ([`Args::get`],
/// [`Args::iter`]); array arguments point into it, inline ones into the `Args` itself. Between
/// the calls that read one partial array request, the `Args` also hold how far it got.
#[derive(Debug, Clone, Default)]
pub struct Args {
    /// `start..end` of each argument of the last complete request, in the caller's buffer or in
    /// `scratch`.
    spans: Vec<(usize, usize)>,
    /// The arguments read so far of a partial array request, while `resume` is set; empty
    /// otherwise. Swapped with `spans` when the request is resumed, so that neither allocates
    /// and the accessors need not check for a partial request.
    pending: Vec<(usize, usize)>,
    /// Unescaped bytes of inline arguments.
    scratch: Vec<u8>,
    /// Whether `spans` index `scratch` rather than the caller's buffer.
    inline: bool,
    /// Where the partial array request in `pending` stopped, if the last call returned
    /// `Ok(None)` after its header.
    resume: Option<Resume>,
}

/// How far a partial array request got: enough to carry on from its next argument and to tell
/// whether the next buffer still holds the same request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Resume {
    /// The argument count the `*<count>\r\n` header declared.
    count: usize,
    /// The offset of the next bulk header to read; every argument before it is in `pending`.
    pos: usize,
    /// The [`Limits::max_bulk_len`] the arguments before `pos` were checked against.
    max_bulk_len: usize,
}

impl Resume {
    /// Whether `buf` still looks like the request this state was taken from: it holds at least
    /// the bytes already read, starts with the same header, has the CRLF that ended the last
    /// argument read in its place, and `limits` are the ones that checked them. A buffer that
    /// passes these checks but differs elsewhere before `pos` breaks [`parse_request`]'s
    /// contract undetected: its arguments may then be wrong, but stay within the buffer.
    #[inline]
    fn still_matches(&self, buf: &[u8], limits: &Limits) -> bool {
        if buf.len() < self.pos
            || buf.first() != Some(&b'*')
            || limits.max_bulk_len != self.max_bulk_len
        {
            return false;
        }
        #[cfg(test)]
        tests::count_header();
        // A count has one spelling (no sign, no leading zero), so the same count means the
        // same header bytes.
        match read_len(buf, 1, limits.max_array_len) {
            Ok(Some((Len::Value(count), header_end))) if count == self.count => {
                self.pos == header_end
                    || self.pos > header_end && buf.get(self.pos - 2..self.pos) == Some(b"\r\n")
            }
            _ => false,
        }
    }
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

    /// Forgets every argument, and any partial request, but keeps the allocated capacity.
    pub fn clear(&mut self) {
        self.spans.clear();
        self.scratch.clear();
        self.inline = false;
        self.pending.clear();
        self.resume = None;
    }

    /// Drops capacity above `spans` arguments and `bytes` inline bytes, for a connection that
    /// once received a huge request and should not keep its buffers while idle.
    pub fn shrink_to(&mut self, spans: usize, bytes: usize) {
        self.spans.shrink_to(spans);
        self.pending.shrink_to(spans);
        self.scratch.shrink_to(bytes);
    }

    /// Forgets the last request before a new one is parsed; no partial request is pending.
    #[inline]
    fn start(&mut self) {
        debug_assert!(self.resume.is_none() && self.pending.is_empty());
        self.spans.clear();
        self.scratch.clear();
        self.inline = false;
    }

    /// After a call to [`parse_request`] that returned `parsed`, not a whole request: if it was
    /// the partial array request in `buf`, sets the arguments read so far aside and records
    /// where to carry on; otherwise forgets everything. Kept off the hot path: it reads the
    /// array header again rather than have the parsing loop keep its values at hand.
    #[cold]
    #[inline(never)]
    fn settle(&mut self, buf: &[u8], limits: &Limits, parsed: &Result<Option<usize>, RespError>) {
        debug_assert!(self.resume.is_none() && self.pending.is_empty());
        if parsed == &Ok(None) && !self.inline && buf.first() == Some(&b'*') {
            #[cfg(test)]
            tests::count_header();
            if let Ok(Some((Len::Value(count), header_end))) =
                read_len(buf, 1, limits.max_array_len)
            {
                // Each argument read ends with CRLF; the next header starts after it.
                let pos = self.spans.last().map_or(header_end, |&(_, end)| end + 2);
                self.resume = Some(Resume {
                    count,
                    pos,
                    max_bulk_len: limits.max_bulk_len,
                });
                std::mem::swap(&mut self.spans, &mut self.pending);
                return;
            }
        }
        self.clear();
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
/// possibly none), and `Ok(None)` when `buf` holds only part of one: call again with the same
/// `args` once more bytes have arrived, with a buffer that starts at the same request and holds
/// at least the same bytes. Until a request is complete `args` shows no arguments, but it
/// remembers those read so far, so the next call reads only the new bytes' headers. A call that
/// breaks the contract (a shorter buffer, another request) is caught as far as a few cheap checks
/// allow (see below) and then parses from the start; calling [`Args::clear`] first makes sure of
/// it. The checks: the buffer is at least as long as the part already read, starts with the same
/// `*<count>` header, has CRLF just before where reading resumes, and `limits` are the same.
///
/// # Errors
///
/// A [`RespError`] whose text is the one Redis sends (`Protocol error: invalid bulk length` …)
/// when the bytes are not a valid request or exceed `limits`. The stream cannot be resumed: send
/// the error and close the connection. `args` is left empty and ready for a new stream.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
    args: &mut Args,
) -> Result<Option<usize>, RespError> {
    if args.resume.is_some()
        && let Some(parsed) = resume(buf, limits, args)
    {
        return parsed;
    }
    args.start();
    let parsed = match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_array(buf, limits, args),
        Some(_) => {
            args.inline = true;
            inline::parse_inline(buf, limits, args)
        }
    };
    if !matches!(parsed, Ok(Some(_))) {
        args.settle(buf, limits, &parsed);
    }
    parsed
}

/// Carries on with the partial array request `args` holds; `None` when `buf` no longer looks
/// like the same request, which must then be parsed from its start.
#[cold]
#[inline(never)]
fn resume(
    buf: &[u8],
    limits: &Limits,
    args: &mut Args,
) -> Option<Result<Option<usize>, RespError>> {
    let at = args.resume.take()?;
    if !at.still_matches(buf, limits) || args.pending.len() >= at.count {
        args.clear();
        return None;
    }
    // `spans` is empty while a request is pending: take the arguments read so far back.
    std::mem::swap(&mut args.spans, &mut args.pending);
    let read = args.spans.len();
    let parsed = read_bulks(buf, limits, args, at.pos, read, at.count);
    if !matches!(parsed, Ok(Some(_))) {
        args.settle(buf, limits, &parsed);
    }
    Some(parsed)
}

/// Parses `*<count>\r\n` followed by `count` bulk strings.
#[inline]
fn parse_array(buf: &[u8], limits: &Limits, args: &mut Args) -> Result<Option<usize>, RespError> {
    #[cfg(test)]
    tests::count_header();
    let header = read_len(buf, 1, limits.max_array_len);
    let (count, header_end) = ready!(header.map_err(|_| RespError::InvalidMultibulkLength));
    // Redis treats every count below one, not just `*-1`, as an empty request.
    let Len::Value(count) = count else {
        return Ok(Some(header_end));
    };
    read_bulks(buf, limits, args, header_end, 0, count)
}

/// Reads bulk strings from `pos` into `args`, which holds `read` of them, until it holds
/// `count`. Returns early as soon as the buffer ends or a header is wrong; the caller then
/// sorts out what `args` keeps ([`Args::settle`]), off this loop's path.
#[inline(always)]
fn read_bulks(
    buf: &[u8],
    limits: &Limits,
    args: &mut Args,
    mut pos: usize,
    read: usize,
    count: usize,
) -> Result<Option<usize>, RespError> {
    for _ in read..count {
        let (start, end) = ready!(read_bulk(buf, pos, limits));
        args.spans.push((start, end));
        pos = end + 2;
    }
    Ok(Some(pos))
}

/// Reads the bulk string at `pos`: returns its payload's `start..end`; CRLF follows `end`.
/// Always inlined: with two callers the compiler would otherwise call it on the hot path.
#[inline(always)]
fn read_bulk(buf: &[u8], pos: usize, limits: &Limits) -> Result<Option<(usize, usize)>, RespError> {
    #[cfg(test)]
    tests::count_header();
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
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// How many length headers this thread's parser has read (each at most 23 bytes).
        static HEADERS_READ: Cell<usize> = const { Cell::new(0) };
    }

    /// Counts one header read; called by the parser in test builds only.
    pub(super) fn count_header() {
        HEADERS_READ.with(|count| count.set(count.get() + 1));
    }

    fn headers_read() -> usize {
        HEADERS_READ.with(Cell::get)
    }

    /// The arguments read and the bytes consumed.
    type Parsed = Result<Option<(Vec<Vec<u8>>, usize)>, RespError>;

    fn parse(input: &[u8]) -> Parsed {
        parse_with(input, &Limits::default(), &mut Args::new())
    }

    fn parse_with(input: &[u8], limits: &Limits, args: &mut Args) -> Parsed {
        let consumed = parse_request(input, limits, args)?;
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

    /// `*<n>\r\n` followed by `n` arguments `x`: seven bytes each.
    fn many_x(n: usize) -> Vec<u8> {
        let mut wire = format!("*{n}\r\n").into_bytes();
        for _ in 0..n {
            wire.extend_from_slice(b"$1\r\nx\r\n");
        }
        wire
    }

    #[test]
    fn a_trickled_request_is_read_in_linear_time() {
        const N: usize = 100_000;
        let wire = many_x(N);
        let limits = Limits::default();
        let mut args = Args::new();
        let before = headers_read();
        let mut calls = 0;
        let mut len = 0;
        let consumed = loop {
            len = (len + 7).min(wire.len());
            calls += 1;
            if let Some(consumed) = parse_request(&wire[..len], &limits, &mut args).unwrap() {
                break consumed;
            }
            assert!(args.is_empty());
        };
        assert_eq!(consumed, wire.len());
        assert_eq!(args.len(), N);
        assert!(args.iter(&wire).all(|arg| arg == b"x"));
        assert_eq!(calls, wire.len().div_ceil(7));
        // Each argument's header is read once when complete, plus, per call, at most the array
        // header twice and one argument still incomplete. Parsing every call from the start
        // would read about N * N / 2 = 5e9 headers.
        let headers = headers_read() - before;
        assert!(
            headers <= N + 3 * calls,
            "{headers} headers for {calls} calls"
        );
    }

    #[test]
    fn growing_prefixes_with_one_args_read_like_the_whole() {
        let input = b"*3\r\n$3\r\nSET\r\n$10\r\nkey:000123\r\n$5\r\nvalue\r\n";
        for step in 1..input.len() {
            let mut args = Args::new();
            let mut len = 0;
            let consumed = loop {
                len = (len + step).min(input.len());
                if let Some(n) =
                    parse_request(&input[..len], &Limits::default(), &mut args).unwrap()
                {
                    break n;
                }
                assert!(args.is_empty() && args.get(input, 0).is_none(), "{len}");
            };
            assert_eq!(consumed, input.len());
            let read: Vec<&[u8]> = args.iter(input).collect();
            assert_eq!(read, [&b"SET"[..], b"key:000123", b"value"], "step {step}");
        }
    }

    /// Parses `second` with `args` left partial by `first`, and checks that the outcome is the
    /// one a fresh parse gives.
    fn resumed_like_fresh(first: &[u8], second: &[u8], limits: &Limits) {
        let mut args = Args::new();
        assert_eq!(
            parse_request(first, &Limits::default(), &mut args),
            Ok(None)
        );
        assert!(args.resume.is_some(), "{first:?} leaves no partial state");
        let resumed = parse_with(second, limits, &mut args);
        let expected = parse_with(second, limits, &mut Args::new());
        assert_eq!(resumed, expected, "{first:?} then {second:?}");
    }

    #[test]
    fn a_broken_resume_contract_parses_from_the_start() {
        let first: &[u8] = b"*3\r\n$3\r\nGET\r\n$1\r\nk\r\n$1";
        let tight = Limits {
            max_bulk_len: 2,
            ..Limits::default()
        };
        let cases: &[(&[u8], &Limits)] = &[
            // Shorter than the bytes already read.
            (b"*3\r\n$3\r\nGET\r\n$1\r\n", &Limits::default()),
            (b"", &Limits::default()),
            // Another request, or no longer an array.
            (
                b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n$1\r\nv\r\n",
                &Limits::default(),
            ),
            (
                b"*3\r\n$4\r\nGETX\r\n$1\r\nk\r\n$1\r\nv\r\n",
                &Limits::default(),
            ),
            (
                b"*3\r\n$3\r\nGET\r\n$2\r\nkk\r\n$1\r\nv\r\n",
                &Limits::default(),
            ),
            (b"GET k v\r\n$1\r\nk\r\n$1\r\nv\r\n", &Limits::default()),
            (
                b"+3\r\n$3\r\nGET\r\n$1\r\nk\r\n$1\r\nv\r\n",
                &Limits::default(),
            ),
            // Other limits: the three-byte argument is too long for them.
            (b"*3\r\n$3\r\nGET\r\n$1\r\nk\r\n$1\r\nv\r\n", &tight),
            // The contract kept: it carries on.
            (
                b"*3\r\n$3\r\nGET\r\n$1\r\nk\r\n$1\r\nv\r\n",
                &Limits::default(),
            ),
        ];
        for (second, limits) in cases {
            resumed_like_fresh(first, second, limits);
        }
    }

    #[test]
    fn clear_and_errors_forget_a_partial_request() {
        let limits = Limits::default();
        let mut args = Args::new();
        assert_eq!(
            parse_request(b"*2\r\n$1\r\na\r\n", &limits, &mut args),
            Ok(None)
        );
        args.clear();
        assert!(args.resume.is_none() && args.spans.is_empty() && args.pending.is_empty());
        assert_eq!(
            parse_request(b"*2\r\n$1\r\na\r\n", &limits, &mut args),
            Ok(None)
        );
        let error = parse_request(b"*2\r\n$1\r\na\r\n:1\r\n", &limits, &mut args);
        assert_eq!(error, Err(RespError::ExpectedDollar(b':')));
        assert!(args.resume.is_none() && args.spans.is_empty() && args.pending.is_empty());
        let ping = b"*1\r\n$4\r\nPING\r\n";
        assert_eq!(
            parse_request(ping, &limits, &mut args),
            Ok(Some(ping.len()))
        );
        assert_eq!(args.get(ping, 0), Some(&b"PING"[..]));
    }
}
