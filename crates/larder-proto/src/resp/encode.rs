//! Reply encoders: each function appends one RESP value (or an aggregate's header, whose
//! elements the caller appends next) to `out`.
//!
//! Types that RESP2 lacks are written the way Redis writes them to a RESP2 client: maps and
//! sets as flat arrays, doubles, big numbers and verbatim strings as bulk strings, booleans as
//! `:1`/`:0`, pushes as arrays. Numbers are written with `itoa`/`ryu`; nothing here goes
//! through `format!`. Simple strings and errors have any CR or LF replaced by a space, so no
//! message can break the reply stream.

/// The protocol a connection speaks, chosen with `HELLO`; it decides how replies are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// RESP2, what a connection speaks until it sends `HELLO 3`.
    #[default]
    Resp2,
    /// RESP3.
    Resp3,
}

const CRLF: &[u8] = b"\r\n";

/// Appends `+text`; CR and LF in `text` become spaces.
pub fn simple(out: &mut Vec<u8>, text: &[u8]) {
    line(out, b'+', text);
}

/// Appends `-message`, where `message` starts with its prefix (`ERR unknown command`,
/// `WRONGTYPE …`); CR and LF in it become spaces.
pub fn error(out: &mut Vec<u8>, message: &[u8]) {
    line(out, b'-', message);
}

/// Appends `:value`.
#[inline]
pub fn integer(out: &mut Vec<u8>, value: i64) {
    header(out, b':', value);
}

/// Appends a bulk string holding `bytes`.
#[inline]
pub fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 16);
    bulk_header(out, bytes.len());
    out.extend_from_slice(bytes);
    out.extend_from_slice(CRLF);
}

/// Appends only the `$len\r\n` of a bulk string, for a caller that writes the `len` payload
/// bytes and the closing `\r\n` itself (e.g. straight from the store into the write buffer).
#[inline]
pub fn bulk_header(out: &mut Vec<u8>, len: usize) {
    header(out, b'$', len);
}

/// Appends a null: `$-1` in RESP2 (a null bulk string), `_` in RESP3.
pub fn null(out: &mut Vec<u8>, protocol: Protocol) {
    out.extend_from_slice(match protocol {
        Protocol::Resp2 => b"$-1\r\n",
        Protocol::Resp3 => b"_\r\n",
    });
}

/// Appends a null array: `*-1` in RESP2, `_` in RESP3.
pub fn null_array(out: &mut Vec<u8>, protocol: Protocol) {
    out.extend_from_slice(match protocol {
        Protocol::Resp2 => b"*-1\r\n",
        Protocol::Resp3 => b"_\r\n",
    });
}

/// Appends the header of an array of `len` elements.
pub fn array(out: &mut Vec<u8>, len: usize) {
    header(out, b'*', len);
}

/// Appends the header of a map of `len` key-value pairs: `%len` in RESP3, an array of
/// `2 * len` elements in RESP2. The caller appends key, value, key, value …
pub fn map(out: &mut Vec<u8>, protocol: Protocol, len: usize) {
    match protocol {
        Protocol::Resp2 => header(out, b'*', len.saturating_mul(2)),
        Protocol::Resp3 => header(out, b'%', len),
    }
}

/// Appends the header of a set of `len` elements: `~len` in RESP3, `*len` in RESP2.
pub fn set(out: &mut Vec<u8>, protocol: Protocol, len: usize) {
    let prefix = match protocol {
        Protocol::Resp2 => b'*',
        Protocol::Resp3 => b'~',
    };
    header(out, prefix, len);
}

/// Appends the header of a push message of `len` elements: `>len` in RESP3, `*len` in RESP2
/// (as Redis sends pub/sub messages to RESP2 clients).
pub fn push(out: &mut Vec<u8>, protocol: Protocol, len: usize) {
    let prefix = match protocol {
        Protocol::Resp2 => b'*',
        Protocol::Resp3 => b'>',
    };
    header(out, prefix, len);
}

/// Appends the header of a RESP3 attribute map of `len` pairs; the pairs and then the value
/// they annotate follow. RESP2 has no attributes: do not send them to a RESP2 client.
pub fn attribute(out: &mut Vec<u8>, len: usize) {
    header(out, b'|', len);
}

/// Appends a double: `,value` in RESP3, a bulk string in RESP2. Integral values are written
/// without a fraction (`1`, as Redis does), others in their shortest exact form; infinities
/// and NaN as `inf`, `-inf` and `nan`.
pub fn double(out: &mut Vec<u8>, protocol: Protocol, value: f64) {
    let mut ints = itoa::Buffer::new();
    let mut floats = ryu::Buffer::new();
    let text = double_text(value, &mut ints, &mut floats);
    match protocol {
        Protocol::Resp2 => bulk(out, text),
        Protocol::Resp3 => line(out, b',', text),
    }
}

/// Appends a boolean: `#t`/`#f` in RESP3, `:1`/`:0` in RESP2.
pub fn boolean(out: &mut Vec<u8>, protocol: Protocol, value: bool) {
    out.extend_from_slice(match (protocol, value) {
        (Protocol::Resp2, true) => b":1\r\n",
        (Protocol::Resp2, false) => b":0\r\n",
        (Protocol::Resp3, true) => b"#t\r\n",
        (Protocol::Resp3, false) => b"#f\r\n",
    });
}

/// Appends a verbatim string with a three-byte `format` (`txt`, `mkd`): `=` in RESP3, a bulk
/// string of `text` alone in RESP2.
pub fn verbatim(out: &mut Vec<u8>, protocol: Protocol, format: &[u8; 3], text: &[u8]) {
    match protocol {
        Protocol::Resp2 => bulk(out, text),
        Protocol::Resp3 => {
            out.reserve(text.len() + 20);
            header(out, b'=', text.len() + 4);
            out.extend_from_slice(format);
            out.push(b':');
            out.extend_from_slice(text);
            out.extend_from_slice(CRLF);
        }
    }
}

/// Appends a big number given as its decimal `digits`: `(digits` in RESP3, a bulk string in
/// RESP2.
pub fn big_number(out: &mut Vec<u8>, protocol: Protocol, digits: &[u8]) {
    match protocol {
        Protocol::Resp2 => bulk(out, digits),
        Protocol::Resp3 => line(out, b'(', digits),
    }
}

/// Appends an error that may contain any bytes: `!len` in RESP3; in RESP2, a simple error with
/// CR and LF replaced by spaces.
pub fn bulk_error(out: &mut Vec<u8>, protocol: Protocol, message: &[u8]) {
    match protocol {
        Protocol::Resp2 => error(out, message),
        Protocol::Resp3 => {
            out.reserve(message.len() + 16);
            header(out, b'!', message.len());
            out.extend_from_slice(message);
            out.extend_from_slice(CRLF);
        }
    }
}

/// Appends a client request: an array of bulk strings, one per argument.
pub fn encode_request(out: &mut Vec<u8>, args: &[&[u8]]) {
    let payload: usize = args.iter().map(|arg| arg.len() + 16).sum();
    out.reserve(payload + 16);
    array(out, args.len());
    for arg in args {
        bulk(out, arg);
    }
}

/// Appends `prefix`, the decimal `value` and CRLF.
#[inline]
fn header(out: &mut Vec<u8>, prefix: u8, value: impl itoa::Integer) {
    let mut digits = itoa::Buffer::new();
    out.push(prefix);
    out.extend_from_slice(digits.format(value).as_bytes());
    out.extend_from_slice(CRLF);
}

/// Appends `prefix`, `text` with CR and LF replaced by spaces, and CRLF.
fn line(out: &mut Vec<u8>, prefix: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.push(prefix);
    let start = out.len();
    out.extend_from_slice(text);
    if memchr::memchr2(b'\r', b'\n', text).is_some() {
        for byte in &mut out[start..] {
            if matches!(*byte, b'\r' | b'\n') {
                *byte = b' ';
            }
        }
    }
    out.extend_from_slice(CRLF);
}

/// The text of a double, as Redis's `%.17g` would give it for integral values below 10^17
/// and in `ryu`'s shortest round-tripping form otherwise.
fn double_text<'a>(
    value: f64,
    ints: &'a mut itoa::Buffer,
    floats: &'a mut ryu::Buffer,
) -> &'a [u8] {
    if value.is_nan() {
        b"nan"
    } else if value.is_infinite() {
        if value > 0.0 { b"inf" } else { b"-inf" }
    } else if value == 0.0 && value.is_sign_negative() {
        b"-0"
    } else if value.fract() == 0.0 && value.abs() < 1e17 {
        // Exact: an integral double below 10^17 fits an i64 without rounding.
        ints.format(value as i64).as_bytes()
    } else {
        floats.format_finite(value).as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::Protocol::{Resp2, Resp3};
    use super::*;

    fn written(write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out);
        out
    }

    #[test]
    fn protocol_independent_values() {
        let cases: Vec<(Vec<u8>, &[u8])> = vec![
            (written(|o| simple(o, b"OK")), b"+OK\r\n"),
            (written(|o| simple(o, b"a\r\nb")), b"+a  b\r\n"),
            (
                written(|o| error(o, b"ERR unknown command")),
                b"-ERR unknown command\r\n",
            ),
            (written(|o| error(o, b"ERR x\r\n+OK")), b"-ERR x  +OK\r\n"),
            (written(|o| error(o, b"WRONGTYPE\n")), b"-WRONGTYPE \r\n"),
            (written(|o| integer(o, 0)), b":0\r\n"),
            (
                written(|o| integer(o, i64::MIN)),
                b":-9223372036854775808\r\n",
            ),
            (written(|o| bulk(o, b"")), b"$0\r\n\r\n"),
            (written(|o| bulk(o, b"a\r\nb")), b"$4\r\na\r\nb\r\n"),
            (written(|o| bulk_header(o, 5)), b"$5\r\n"),
            (written(|o| array(o, 3)), b"*3\r\n"),
            (written(|o| attribute(o, 1)), b"|1\r\n"),
            (
                written(|o| encode_request(o, &[b"GET", b"k"])),
                b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
            ),
            (written(|o| encode_request(o, &[])), b"*0\r\n"),
        ];
        for (got, expected) in &cases {
            assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(expected));
        }
    }

    #[test]
    fn protocol_dependent_values() {
        type Case = (fn(&mut Vec<u8>, Protocol), &'static [u8], &'static [u8]);
        let cases: &[Case] = &[
            (|o, p| null(o, p), b"$-1\r\n", b"_\r\n"),
            (|o, p| null_array(o, p), b"*-1\r\n", b"_\r\n"),
            (|o, p| map(o, p, 2), b"*4\r\n", b"%2\r\n"),
            (|o, p| set(o, p, 2), b"*2\r\n", b"~2\r\n"),
            (|o, p| push(o, p, 3), b"*3\r\n", b">3\r\n"),
            (|o, p| boolean(o, p, true), b":1\r\n", b"#t\r\n"),
            (|o, p| boolean(o, p, false), b":0\r\n", b"#f\r\n"),
            (|o, p| double(o, p, 1.5), b"$3\r\n1.5\r\n", b",1.5\r\n"),
            (|o, p| double(o, p, 3.0), b"$1\r\n3\r\n", b",3\r\n"),
            (|o, p| double(o, p, -0.0), b"$2\r\n-0\r\n", b",-0\r\n"),
            (|o, p| double(o, p, 1e20), b"$4\r\n1e20\r\n", b",1e20\r\n"),
            (|o, p| double(o, p, 0.1), b"$3\r\n0.1\r\n", b",0.1\r\n"),
            (
                |o, p| double(o, p, f64::INFINITY),
                b"$3\r\ninf\r\n",
                b",inf\r\n",
            ),
            (
                |o, p| double(o, p, f64::NEG_INFINITY),
                b"$4\r\n-inf\r\n",
                b",-inf\r\n",
            ),
            (|o, p| double(o, p, f64::NAN), b"$3\r\nnan\r\n", b",nan\r\n"),
            (
                |o, p| verbatim(o, p, b"txt", b"hi"),
                b"$2\r\nhi\r\n",
                b"=6\r\ntxt:hi\r\n",
            ),
            (
                |o, p| big_number(o, p, b"-123"),
                b"$4\r\n-123\r\n",
                b"(-123\r\n",
            ),
            (
                |o, p| bulk_error(o, p, b"ERR a\nb"),
                b"-ERR a b\r\n",
                b"!7\r\nERR a\nb\r\n",
            ),
        ];
        for (write, resp2, resp3) in cases {
            assert_eq!(written(|o| write(o, Resp2)), *resp2);
            assert_eq!(written(|o| write(o, Resp3)), *resp3);
        }
    }

    #[test]
    fn the_default_protocol_is_resp2() {
        assert_eq!(Protocol::default(), Resp2);
    }

    #[test]
    fn encoders_append() {
        let mut out = b"+OK\r\n".to_vec();
        integer(&mut out, 12);
        bulk(&mut out, b"x");
        assert_eq!(out, b"+OK\r\n:12\r\n$1\r\nx\r\n");
    }
}
