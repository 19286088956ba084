//! HTTP/1.1 request framing, for the gateway's server: the head (request line and headers,
//! tokenised by `httparse`) and how long the body is (RFC 9112 §6): `Content-Length`, or the chunked transfer coding, which
//! [`Chunked`] decodes. Anything ambiguous — both headers, two different lengths, a coding
//! other than chunked last — is refused rather than guessed, so a proxy in front and this
//! server can never disagree on where a request ends.

use std::mem::MaybeUninit;

use crate::ErrorCode;

/// The longest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header fields a request may have.
pub const MAX_HEADERS: usize = 100;
/// The longest chunk-size line (with extensions) or trailer section accepted.
const MAX_CHUNK_META: usize = 8 * 1024;

/// Room for a head's header fields; [`headers`] makes one (nothing to initialise).
pub type Headers<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

/// Empty room for [`parse_head`]'s header fields.
#[must_use]
pub const fn headers<'b>() -> Headers<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// A parsed request head; the strings borrow the connection's buffer.
#[derive(Debug)]
pub struct Head<'b> {
    /// The method token, as sent.
    pub method: &'b str,
    /// The request target, as sent.
    pub target: &'b str,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// The header fields, in order.
    pub headers: &'b [httparse::Header<'b>],
    /// Bytes of the head, blank line included.
    pub len: usize,
    /// How the body is delimited.
    pub body: BodyLength,
    /// Whether the connection stays open after the response (`Connection`, version).
    pub keep_alive: bool,
    /// Whether the client waits for `100 Continue` before sending the body.
    pub expect_continue: bool,
}

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// Exactly this many bytes (no body is `Length(0)`).
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
}

/// Why a request cannot be read; each is answered (with [`FramingError::code`]'s status) and
/// the connection closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The head is longer than [`MAX_HEAD`] or has more than [`MAX_HEADERS`] fields (431).
    #[error("the request head is over {MAX_HEAD} bytes or {MAX_HEADERS} header fields")]
    HeadTooLarge,
    /// The head does not parse, its framing headers contradict each other, or an HTTP/1.1
    /// request does not name one `Host` (400).
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// A version other than HTTP/1.0 and HTTP/1.1 (505).
    #[error("only HTTP/1.0 and HTTP/1.1 are served here")]
    Version,
    /// An `Expect` other than `100-continue` (417).
    #[error("the only expectation met here is 100-continue")]
    Expectation,
}

impl FramingError {
    /// The error code, and so the status, the refusal is answered with.
    #[must_use]
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::HeadTooLarge => ErrorCode::HeadersTooLarge,
            Self::Malformed(_) => ErrorCode::Protocol,
            Self::Version => ErrorCode::VersionNotSupported,
            Self::Expectation => ErrorCode::ExpectationFailed,
        }
    }
}

/// Whether `buf`, of which the first `seen` bytes were parsed and found to be part of a head,
/// can now parse differently: a line has ended since, or it has grown past [`MAX_HEAD`].
///
/// A head ends with a line end, so bytes without one cannot complete it; they can only turn it
/// into an error, which a parse at the next line end (or past [`MAX_HEAD`]) finds as well. A
/// caller that parses only when this is true parses a head at most once per line.
#[must_use]
pub fn may_complete_head(buf: &[u8], seen: usize) -> bool {
    buf.len() > MAX_HEAD
        || buf
            .get(seen..)
            .is_none_or(|new| memchr::memchr(b'\n', new).is_some())
}

/// Parses the head at the start of `buf`: `Ok(None)` while it is incomplete.
///
/// # Errors
/// [`FramingError`] for a head that can never become a valid request.
pub fn parse_head<'b>(
    buf: &'b [u8],
    headers: &'b mut Headers<'b>,
) -> Result<Option<Head<'b>>, FramingError> {
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(buf, headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(FramingError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(FramingError::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(FramingError::Version),
        Err(_) => return Err(FramingError::Malformed("the request line or a header")),
    };
    if len > MAX_HEAD {
        return Err(FramingError::HeadTooLarge);
    }
    // httparse takes a bare LF as a line end; a proxy that does not could see other headers.
    if memchr::memchr_iter(b'\n', &buf[..len]).any(|at| at == 0 || buf[at - 1] != b'\r') {
        return Err(FramingError::Malformed("a line that does not end in CRLF"));
    }
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(FramingError::Malformed("the request line"));
    };
    let headers: &'b [httparse::Header<'b>] = request.headers;
    let mut body = BodyLength::Length(0);
    let mut length: Option<(u64, &[u8])> = None;
    let mut chunked = false;
    let mut close = minor == 0;
    let mut expect_continue = false;
    let mut hosts = 0;
    for header in headers {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = content_length(header.value)?;
            if length.is_some_and(|(_, seen)| seen != header.value) {
                return Err(FramingError::Malformed(
                    "two different Content-Length values",
                ));
            }
            length = Some((n, header.value));
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if minor == 0 {
                return Err(FramingError::Malformed("Transfer-Encoding in HTTP/1.0"));
            }
            // Only `chunked`, once and last, is a coding this server can frame.
            if chunked || !last_coding_is_chunked(header.value) {
                return Err(FramingError::Malformed(
                    "a transfer coding other than a final chunked",
                ));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for option in tokens(header.value) {
                if option.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if option.eq_ignore_ascii_case(b"keep-alive") && minor == 0 {
                    close = false;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if header.value.eq_ignore_ascii_case(b"100-continue") {
                expect_continue = minor == 1;
            } else {
                return Err(FramingError::Expectation);
            }
        } else if name.eq_ignore_ascii_case("host") {
            if !header.value.iter().copied().all(is_authority) {
                return Err(FramingError::Malformed("a Host that is not host[:port]"));
            }
            hosts += 1;
        }
    }
    // RFC 9112 §3.2: exactly one Host in HTTP/1.1 (an HTTP/1.0 client may send none).
    if hosts > 1 || (hosts == 0 && minor == 1) {
        return Err(FramingError::Malformed(
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    if chunked {
        if length.is_some() {
            return Err(FramingError::Malformed(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        body = BodyLength::Chunked;
    } else if let Some((n, _)) = length {
        body = BodyLength::Length(n);
    }
    Ok(Some(Head {
        method,
        target,
        minor,
        headers,
        len,
        body,
        keep_alive: !close,
        expect_continue: expect_continue && body != BodyLength::Length(0),
    }))
}

/// A `Content-Length` value: decimal digits only, no sign, no list.
fn content_length(value: &[u8]) -> Result<u64, FramingError> {
    let bad = FramingError::Malformed("a Content-Length that is not a decimal number");
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    value
        .iter()
        .try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or(bad)
}

/// Whether the last coding of a `Transfer-Encoding` list is `chunked` and no other is.
fn last_coding_is_chunked(value: &[u8]) -> bool {
    let mut codings = tokens(value);
    matches!(codings.next(), Some(c) if c.eq_ignore_ascii_case(b"chunked"))
        && codings.next().is_none()
}

/// The items of a comma-separated header value, trimmed, empty ones skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Decodes a chunked body as it arrives.
#[derive(Debug, Clone, Default)]
pub struct Chunked {
    state: State,
    /// Bytes of the current chunk-size line or trailer section seen so far.
    meta: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size: the value so far and how many digits.
    #[default]
    Start,
    Size(u64, u8),
    /// Whitespace after the size, before `;` or CR.
    SizeSpace(u64),
    /// Chunk extensions (ignored) up to CR: visible characters and whitespace only.
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the final blank line.
    TrailerStart,
    /// A trailer field's name, up to its colon.
    TrailerName,
    /// A trailer field's value, up to CR.
    TrailerValue,
    TrailerLineLf,
    EndLf,
    Done,
}

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The body grew past the limit (413).
    #[error("the body is over the limit")]
    TooLarge,
    /// The coding is broken (400).
    #[error("malformed chunked body")]
    Malformed,
}

impl Chunked {
    /// Decodes what `input` holds, appending data to `out` (at most `limit` bytes in all).
    /// Returns how many input bytes were used and whether the body ended; a body that has
    /// ended uses no further input.
    ///
    /// # Errors
    /// [`ChunkError`] when the body is over `limit` or not valid chunked coding.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(usize, bool), ChunkError> {
        let mut at = 0;
        while at < input.len() && self.state != State::Done {
            if let State::Data(left) = self.state {
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - at);
                if out.len() + take > limit {
                    return Err(ChunkError::TooLarge);
                }
                out.extend_from_slice(&input[at..at + take]);
                at += take;
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data(left)
                };
                continue;
            }
            self.step(input[at])?;
            at += 1;
        }
        Ok((at, self.state == State::Done))
    }

    /// Whether the last chunk and trailers have been read.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    fn step(&mut self, byte: u8) -> Result<(), ChunkError> {
        use State::{
            DataCr, DataLf, Done, EndLf, Extension, Size, SizeLf, SizeSpace, Start, TrailerLineLf,
            TrailerName, TrailerStart, TrailerValue,
        };
        let bad = Err(ChunkError::Malformed);
        self.meta += 1;
        if self.meta > MAX_CHUNK_META {
            return bad;
        }
        self.state = match (self.state, byte) {
            (Start, b) => Size(u64::from(hex(b).ok_or(ChunkError::Malformed)?), 1),
            (Size(n, digits), b) if hex(b).is_some() => {
                // Sixteen hex digits fill a u64; a longer size is refused, not wrapped.
                if digits >= 16 {
                    return bad;
                }
                Size(n << 4 | u64::from(hex(b).unwrap_or(0)), digits + 1)
            }
            (Size(n, _) | SizeSpace(n), b' ' | b'\t') => SizeSpace(n),
            (Size(n, _) | SizeSpace(n), b';') => Extension(n),
            (Size(n, _) | SizeSpace(n) | Extension(n), b'\r') => SizeLf(n),
            (Extension(n), b) if visible_or_space(b) => Extension(n),
            (SizeLf(0), b'\n') => TrailerStart,
            (SizeLf(n), b'\n') => {
                self.meta = 0;
                State::Data(n)
            }
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => {
                self.meta = 0;
                Start
            }
            (TrailerStart, b'\r') => EndLf,
            // A field line: a token, a colon, a value (no line folding, no control bytes).
            (TrailerStart | TrailerName, b) if is_token(b) => TrailerName,
            (TrailerName, b':') => TrailerValue,
            (TrailerValue, b'\r') => TrailerLineLf,
            (TrailerValue, b) if visible_or_space(b) => TrailerValue,
            (TrailerLineLf, b'\n') => TrailerStart,
            (EndLf, b'\n') => Done,
            _ => return bad,
        };
        Ok(())
    }
}

/// Whether `b` may stand in a field value or chunk extension: visible, space, tab or obs-text.
fn visible_or_space(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// Whether `b` may appear in a URI authority without userinfo (RFC 3986 §3.2: unreserved,
/// percent-encoded, sub-delims, `:` and the brackets of an IPv6 literal).
fn is_authority(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&b)
}

/// Whether `b` is a token character (RFC 9110 §5.6.2).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Method, target, minor version, body length, keep-alive, expect-continue.
    type Parsed = (String, String, u8, BodyLength, bool, bool);

    fn head(raw: &str) -> Result<Option<Parsed>, FramingError> {
        let mut headers = headers();
        Ok(parse_head(raw.as_bytes(), &mut headers)?.map(|h| {
            (
                h.method.to_owned(),
                h.target.to_owned(),
                h.minor,
                h.body,
                h.keep_alive,
                h.expect_continue,
            )
        }))
    }

    #[test]
    fn a_plain_get_keeps_the_connection() {
        let parsed = head("GET /v1/products/42 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(
            parsed,
            Some((
                "GET".into(),
                "/v1/products/42".into(),
                1,
                BodyLength::Length(0),
                true,
                false
            ))
        );
        assert_eq!(
            head("GET / HTTP/1.1\r\nHost: x\r\n").unwrap(),
            None,
            "incomplete"
        );
    }

    #[test]
    fn connection_options_follow_the_version() {
        let keep = |raw: &str| head(raw).unwrap().unwrap().4;
        assert!(!keep("GET / HTTP/1.0\r\n\r\n"));
        assert!(keep("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
        assert!(!keep(
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, Close\r\n\r\n"
        ));
    }

    #[test]
    fn framing_headers_that_disagree_are_refused() {
        let malformed = |raw: &str| matches!(head(raw), Err(FramingError::Malformed(_)));
        assert!(malformed(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"
        ));
        assert!(malformed(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(malformed(
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"
        ));
        assert!(malformed(
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
        ));
        assert!(malformed(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n"
        ));
        assert!(malformed(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n"
        ));
        assert!(malformed(
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert_eq!(
            head("GET / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n"),
            Err(FramingError::Expectation)
        );
        assert!(malformed("GET / HTTP/1.1\r\n\r\n"), "no Host");
        for bad in ["a b", "a/b", "u@h", "h?q", "h#f", "h\u{7f}"] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
            assert!(malformed(&raw), "{bad}");
        }
        for good in [
            "",
            "example.com:8080",
            "[::1]:80",
            "127.0.0.1",
            "xn--d1a.example",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {good}\r\n\r\n");
            assert!(head(&raw).unwrap().is_some(), "{good:?}");
        }
        assert!(
            malformed("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            "two"
        );
        assert!(
            head("GET / HTTP/1.0\r\n\r\n").unwrap().is_some(),
            "1.0 needs none"
        );
        assert!(malformed(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 05\r\n\r\n"
        ));
        assert!(malformed("GET / HTTP/1.1\nX: a\r\n\r\n"), "bare LF");
        assert!(malformed(
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\nContent-Length: 5\r\n\r\n"
        ));
        assert!(malformed("GET /\0 HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_eq!(head("GET / HTTP/2.0\r\n\r\n"), Err(FramingError::Version));
    }

    #[test]
    fn repeated_equal_lengths_and_chunked_bodies_are_framed() {
        let body = |raw: &str| head(raw).unwrap().unwrap().3;
        assert_eq!(
            body("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n"),
            BodyLength::Length(5)
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            BodyLength::Chunked
        );
        let expect =
            head("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
        assert!(expect.unwrap().unwrap().5);
    }

    #[test]
    fn oversized_heads_are_refused_once_over_the_limit() {
        let long = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(head(&long), Err(FramingError::HeadTooLarge));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert_eq!(
            head(&format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n")),
            Err(FramingError::HeadTooLarge)
        );
    }

    /// The body and the input used, `None` if the input ends before the body does.
    fn decode_in_pieces(
        raw: &[u8],
        piece: usize,
        limit: usize,
    ) -> Result<Option<(Vec<u8>, usize)>, ChunkError> {
        let mut chunked = Chunked::default();
        let mut out = Vec::new();
        let mut used = 0;
        for part in raw.chunks(piece) {
            let (n, done) = chunked.decode(part, &mut out, limit)?;
            used += n;
            if done {
                assert!(chunked.done());
                return Ok(Some((out, used)));
            }
        }
        Ok(None)
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_reads_split() {
        let raw = b"5 ;name=\"v w\"\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for piece in 1..raw.len() {
            let (body, used) = decode_in_pieces(raw, piece, 1024).unwrap().unwrap();
            assert_eq!(body, b"hello, world", "pieces of {piece}");
            assert_eq!(used, raw.len() - 4, "the next request is left alone");
        }
    }

    #[test]
    fn chunked_bodies_over_the_limit_or_broken_are_refused() {
        let raw = b"5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(decode_in_pieces(raw, 3, 4), Err(ChunkError::TooLarge));
        assert_eq!(
            decode_in_pieces(&raw[..9], 1, 64),
            Ok(None),
            "incomplete, not broken"
        );
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloX\r\n",
            b"\r\n",
            b"5\nhello",
            b"fffffffffffffffff\r\n",
            b"5\r\nhello\r\r",
            b"5 zzz\r\n",
            b"5;a=\x01\r\n",
            b"0\r\nno-colon\r\n\r\n",
            b"0\r\n folded: x\r\n\r\n",
            b"0\r\nbad\n\r\n",
        ] {
            assert_eq!(
                decode_in_pieces(bad, 1, 1 << 20),
                Err(ChunkError::Malformed),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Feeds `data` a byte at a time, parsing after every byte or only when
    /// [`may_complete_head`] allows it: the verdict (a head's length or the error) and the
    /// number of parses.
    fn decide_a_byte_at_a_time(
        data: &[u8],
        per_line: bool,
    ) -> (Option<Result<usize, FramingError>>, usize) {
        let (mut partial, mut parses) = (0, 0);
        for end in 1..=data.len() {
            if per_line && partial > 0 && !may_complete_head(&data[..end], partial) {
                continue;
            }
            parses += 1;
            let mut headers = headers();
            match parse_head(&data[..end], &mut headers) {
                Ok(None) => partial = end,
                Ok(Some(head)) => return (Some(Ok(head.len)), parses),
                Err(err) => return (Some(Err(err)), parses),
            }
        }
        (None, parses)
    }

    #[test]
    fn a_long_head_sent_a_byte_at_a_time_is_parsed_once_per_line() {
        let raw = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nCookie: {}\r\n\r\n",
            "c".repeat(60_000)
        );
        let (verdict, parses) = decide_a_byte_at_a_time(raw.as_bytes(), true);
        assert_eq!(verdict, Some(Ok(raw.len())));
        assert_eq!(parses, 5, "the first byte, then each of four line ends");
        let bad = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nBad Name: {}\r\n",
            "c".repeat(100)
        );
        let (verdict, _) = decide_a_byte_at_a_time(bad.as_bytes(), true);
        assert!(matches!(verdict, Some(Err(FramingError::Malformed(_)))));
    }

    proptest::proptest! {
        /// What the fuzz target checks, on every test run: no input panics, a head is never
        /// longer than its input, and a chunked body decodes the same however it is split.
        #[test]
        fn any_input_frames_without_panics(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            piece in 1usize..64,
        ) {
            let mut headers = headers();
            if let Ok(Some(head)) = parse_head(&data, &mut headers) {
                proptest::prop_assert!(head.len <= data.len());
            }
            let whole = decode_in_pieces(&data, data.len().max(1), 256);
            proptest::prop_assert_eq!(whole, decode_in_pieces(&data, piece, 256));
        }

        /// A head parsed only when [`may_complete_head`] says so, a byte arriving at a time,
        /// is decided as it is when parsed after every byte, with at most one parse per line.
        #[test]
        fn heads_parsed_per_line_are_decided_as_per_byte(
            pieces in proptest::collection::vec(proptest::sample::select(vec![
                "GET ", "POST ", "/v1/a", " ", "HTTP/1.1", "HTTP/1.0", "HTTP/2", "\r\n", "\n",
                "\r", "Host: x", "Content-Length: 3", "X-A: b", ":", "a", "\0", "\u{1}", "é",
            ]), 0..40),
        ) {
            let mut data = pieces.concat().into_bytes();
            data.extend_from_slice(b"\r\n\r\n");
            let every = decide_a_byte_at_a_time(&data, false);
            let per_line = decide_a_byte_at_a_time(&data, true);
            proptest::prop_assert_eq!(&every.0, &per_line.0);
            let lines = data.iter().filter(|&&b| b == b'\n').count();
            proptest::prop_assert!(per_line.1 <= lines + 1, "{} parses", per_line.1);
        }

        /// Bodies cut into random chunks decode to themselves.
        #[test]
        fn chunked_coding_round_trips(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            cuts in proptest::collection::vec(1usize..100, 1..8),
            piece in 1usize..50,
        ) {
            let mut raw = Vec::new();
            let mut rest = &body[..];
            let mut cut = cuts.iter().cycle();
            while !rest.is_empty() {
                let n = (*cut.next().unwrap_or(&1)).min(rest.len());
                raw.extend_from_slice(format!("{n:X}\r\n").as_bytes());
                raw.extend_from_slice(&rest[..n]);
                raw.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            raw.extend_from_slice(b"0\r\n\r\n");
            let decoded = decode_in_pieces(&raw, piece, 600);
            proptest::prop_assert_eq!(decoded, Ok(Some((body, raw.len()))));
        }
    }
}
