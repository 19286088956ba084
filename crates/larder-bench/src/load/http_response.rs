//! What an HTTP/1.1 connection of the load generator reads: [`response_len`] measures one
//! response in the received bytes without building anything, so the steady state allocates
//! nothing.
//!
//! The parser is stateless like `frame_len` for RESP: it is run again over the whole pending
//! response after every read, and "not all of it yet" is `Ok(None)`. Responses of a few hundred
//! bytes arrive in one read; a long one costs a rescan of its head (and chunk sizes) per read.

use crate::error::WireError;

/// Largest response head (status line, header fields and the blank line) accepted.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Largest response body accepted, chunked encoding included.
pub(crate) const MAX_BODY: usize = 64 << 20;
/// Longest chunk-size line accepted (size and extensions).
const MAX_CHUNK_LINE: usize = 1024;
/// How every response starts.
const VERSION: &[u8] = b"HTTP/1.";

/// One whole response found at the start of the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    /// Bytes of the head; the body (as framed on the wire) follows.
    pub(crate) head_len: usize,
    /// Bytes of the whole response.
    pub(crate) len: usize,
    /// Whether the server closes the connection after it (`Connection: close`, or HTTP/1.0
    /// without `keep-alive`).
    pub(crate) close: bool,
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(usize),
    Chunked,
}

/// What the head says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    status: u16,
    len: usize,
    framing: Framing,
    close: bool,
}

/// The response at the start of `buf`, once all of it is there.
///
/// # Errors
/// When the bytes are not a response this client can read; the connection is then unusable.
pub(crate) fn response_len(buf: &[u8]) -> Result<Option<Response>, WireError> {
    let Some(head) = parse_head(buf)? else {
        return Ok(None);
    };
    let body = &buf[head.len..];
    let body_len = match head.framing {
        Framing::Empty => Some(0),
        Framing::Length(len) => (body.len() >= len).then_some(len),
        Framing::Chunked => chunked_len(body)?,
    };
    Ok(body_len.map(|body_len| Response {
        status: head.status,
        head_len: head.len,
        len: head.len + body_len,
        close: head.close,
    }))
}

/// The complete lines of `buf` (ended by LF or CRLF, given without it), each with the offset
/// just past its end.
fn lines(buf: &[u8]) -> impl Iterator<Item = (&[u8], usize)> {
    let mut start = 0;
    std::iter::from_fn(move || {
        let at = buf[start..].iter().position(|&b| b == b'\n')?;
        let line = &buf[start..start + at];
        start += at + 1;
        Some((line.strip_suffix(b"\r").unwrap_or(line), start))
    })
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, WireError> {
    let start = buf.len().min(VERSION.len());
    if buf[..start] != VERSION[..start] {
        return Err(WireError::BadStatusLine);
    }
    let mut lines = lines(&buf[..buf.len().min(MAX_HEAD)]);
    let Some((status_line, _)) = lines.next() else {
        return incomplete(buf.len(), MAX_HEAD, WireError::HeadTooLarge);
    };
    let (minor, status) = status_line_parts(status_line).ok_or(WireError::BadStatusLine)?;
    let mut fields = Fields::default();
    for (line, end) in lines {
        if line.is_empty() {
            return Ok(Some(fields.head(status, minor, end)?));
        }
        fields.add(line)?;
    }
    incomplete(buf.len(), MAX_HEAD, WireError::HeadTooLarge)
}

/// Not all there yet, unless `have` bytes already reach `limit` without the end in sight.
fn incomplete<T>(have: usize, limit: usize, error: WireError) -> Result<Option<T>, WireError> {
    if have >= limit { Err(error) } else { Ok(None) }
}

/// `HTTP/1.x NNN reason`: the minor version and the status.
fn status_line_parts(line: &[u8]) -> Option<(u8, u16)> {
    let rest = line.strip_prefix(VERSION)?;
    let (&minor, rest) = rest.split_first()?;
    let rest = rest.strip_prefix(b" ")?;
    let (code, reason) = rest.split_at_checked(3)?;
    if !minor.is_ascii_digit() || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !(reason.is_empty() || reason.starts_with(b" ")) {
        return None;
    }
    let status = code.iter().fold(0, |n, &d| n * 10 + u16::from(d - b'0'));
    (100..=999)
        .contains(&status)
        .then_some((minor - b'0', status))
}

/// The header fields that decide framing and keep-alive.
#[derive(Debug, Default)]
struct Fields {
    length: Option<usize>,
    /// `Some(true)` when the last transfer coding is `chunked`.
    chunked: Option<bool>,
    close: bool,
    keep_alive: bool,
}

impl Fields {
    fn add(&mut self, line: &[u8]) -> Result<(), WireError> {
        let colon = line.iter().position(|&b| b == b':');
        let (name, value) = line.split_at(colon.ok_or(WireError::BadHeader)?);
        let value = value[1..].trim_ascii();
        if name.is_empty()
            || name
                .iter()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(WireError::BadHeader);
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let length = decimal(value).ok_or(WireError::BadContentLength)?;
            if self.length.is_some_and(|seen| seen != length) {
                return Err(WireError::BadContentLength);
            }
            self.length = Some(length);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value.rsplit(|&b| b == b',').next().unwrap_or(value);
            self.chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        Ok(())
    }

    /// The head these fields end, `len` bytes long (RFC 9112 §6.3 for the framing).
    fn head(&self, status: u16, minor: u8, len: usize) -> Result<Head, WireError> {
        let framing = if status < 200 || status == 204 || status == 304 {
            Framing::Empty
        } else {
            match (self.chunked, self.length) {
                (Some(true), _) => Framing::Chunked,
                (Some(false), _) => return Err(WireError::UnsupportedTransferEncoding),
                (None, Some(length)) if length > MAX_BODY => return Err(WireError::BodyTooLarge),
                (None, Some(length)) => Framing::Length(length),
                (None, None) => return Err(WireError::NoLength),
            }
        };
        Ok(Head {
            status,
            len,
            framing,
            close: self.close || (minor == 0 && !self.keep_alive),
        })
    }
}

/// A non-empty run of decimal digits.
fn decimal(text: &[u8]) -> Option<usize> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0usize, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(usize::from(d - b'0')))
            .flatten()
    })
}

/// The length of a chunked body at the start of `body`, trailers included, once it is all
/// there.
fn chunked_len(body: &[u8]) -> Result<Option<usize>, WireError> {
    let mut at = 0;
    loop {
        let Some(nl) = body[at..].iter().position(|&b| b == b'\n') else {
            return incomplete(body.len() - at, MAX_CHUNK_LINE, WireError::BadChunk);
        };
        let line = &body[at..at + nl];
        let size = chunk_size(line.strip_suffix(b"\r").unwrap_or(line))?;
        at += nl + 1;
        if size == 0 {
            return trailers_len(&body[at..]).map(|len| len.map(|len| at + len));
        }
        let end = at.saturating_add(size);
        if end > MAX_BODY {
            return Err(WireError::BodyTooLarge);
        }
        match body.get(end..(end + 2).min(body.len())) {
            None | Some(b"" | b"\r") => return Ok(None),
            Some([b'\n', ..]) => at = end + 1,
            Some(b"\r\n") => at = end + 2,
            Some(_) => return Err(WireError::BadChunk),
        }
    }
}

/// A chunk-size line: hex digits, then optional whitespace and `;extensions`.
fn chunk_size(line: &[u8]) -> Result<usize, WireError> {
    let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let hex = line[..end].trim_ascii_end();
    if hex.is_empty() || hex.len() > 15 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(WireError::BadChunk);
    }
    let size = hex.iter().fold(0usize, |n, &d| {
        let digit = char::from(d).to_digit(16).unwrap_or(0) as usize;
        n << 4 | digit
    });
    if size > MAX_BODY {
        return Err(WireError::BodyTooLarge);
    }
    Ok(size)
}

/// The trailer section after the last chunk, up to and including its blank line.
fn trailers_len(rest: &[u8]) -> Result<Option<usize>, WireError> {
    for (line, end) in lines(&rest[..rest.len().min(MAX_HEAD)]) {
        if line.is_empty() {
            return Ok(Some(end));
        }
        if !line.contains(&b':') {
            return Err(WireError::BadChunk);
        }
    }
    incomplete(rest.len(), MAX_HEAD, WireError::HeadTooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXED: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n\
        5\r\nhello\r\n7 ; name=\"v\"\r\n, world\r\n10\r\n0123456789abcdef\r\n0\r\nX-Sum: 1\r\n\r\n";

    fn len(bytes: &[u8]) -> Result<Option<usize>, WireError> {
        response_len(bytes).map(|r| r.map(|r| r.len))
    }

    /// Every strict prefix of `whole` is incomplete, and `whole` (then more) is one response.
    fn assert_found_only_when_whole(whole: &[u8]) -> Response {
        for end in 0..whole.len() {
            assert_eq!(len(&whole[..end]), Ok(None), "prefix of {end} bytes");
        }
        let found = response_len(whole).unwrap().unwrap();
        assert_eq!(found.len, whole.len());
        let mut two = whole.to_vec();
        two.extend_from_slice(FIXED);
        assert_eq!(
            response_len(&two).unwrap(),
            Some(found),
            "stops at its own end"
        );
        found
    }

    #[test]
    fn content_length_responses_end_after_the_body() {
        let found = assert_found_only_when_whole(FIXED);
        assert_eq!(
            (found.status, found.head_len, found.close),
            (200, 64, false)
        );
        assert_eq!(&FIXED[found.head_len..], b"hello");
    }

    #[test]
    fn chunked_responses_end_after_the_trailers() {
        let found = assert_found_only_when_whole(CHUNKED);
        assert_eq!((found.status, found.close), (200, false));
        let lf_only = b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n";
        assert_found_only_when_whole(lf_only);
    }

    #[test]
    fn bodiless_statuses_and_closes() {
        let not_modified =
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\nETag: \"1\"\r\n\r\n";
        assert_eq!(assert_found_only_when_whole(not_modified).status, 304);
        let no_content = b"HTTP/1.1 204 \r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(assert_found_only_when_whole(no_content).status, 204);
        let close = |bytes: &[u8]| response_len(bytes).unwrap().unwrap().close;
        assert!(close(
            b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(close(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!close(
            b"HTTP/1.0 200\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
        ));
        let same_twice = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx";
        assert_found_only_when_whole(same_twice);
    }

    #[test]
    fn bad_responses_are_errors() {
        use WireError::*;
        let big_head = [&b"HTTP/1.1 200 OK\r\nX: "[..], &[b'a'; MAX_HEAD]].concat();
        let chunked_head = response_len(CHUNKED).unwrap().unwrap().head_len;
        let big_chunk_line = [&CHUNKED[..chunked_head], &[b'0'; MAX_CHUNK_LINE + 1]].concat();
        let cases: &[(&[u8], WireError)] = &[
            (b"HTTX", BadStatusLine),
            (b"<html>", BadStatusLine),
            (b"\r\n\r\n", BadStatusLine),
            (b"HTTP/1.1 20 OK\r\n\r\n", BadStatusLine),
            (b"HTTP/1.1 2000 OK\r\n\r\n", BadStatusLine),
            (b"HTTP/1.1 099 Low\r\n\r\n", BadStatusLine),
            (b"HTTP/1.x 200 OK\r\n\r\n", BadStatusLine),
            (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", BadHeader),
            (b"HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\nx", BadHeader),
            (b"HTTP/1.1 200 OK\r\n: v\r\n\r\n", BadHeader),
            (b"HTTP/1.1 200 OK\r\n folded\r\n\r\n", BadHeader),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
                BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\nx",
                BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
                BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
                BodyTooLarge,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                UnsupportedTransferEncoding,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\nbody until close", NoLength),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                BadChunk,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
                BadChunk,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
                BadChunk,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n",
                BadChunk,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
                BadChunk,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8000000\r\n",
                BodyTooLarge,
            ),
            (&big_head, HeadTooLarge),
            (&big_chunk_line, BadChunk),
        ];
        for (bytes, error) in cases {
            let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]);
            assert_eq!(len(bytes), Err(*error), "{shown:?}");
            for end in 0..bytes.len().min(300) {
                let _ = len(&bytes[..end]); // no prefix panics
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        // Mutations of valid responses: flipped, dropped and duplicated bytes.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        let alphabet = b"HTTP/1.0 2:\r\n;-fF9\t ";
        for round in 0..20_000 {
            let mut bytes = if round % 2 == 0 { CHUNKED } else { FIXED }.to_vec();
            for _ in 0..1 + next(4) {
                let at = next(bytes.len());
                match next(3) {
                    0 => bytes[at] = alphabet[next(alphabet.len())],
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, bytes[at]),
                }
            }
            if let Ok(Some(found)) = response_len(&bytes) {
                assert!(found.head_len <= found.len && found.len <= bytes.len());
            }
        }
    }
}
