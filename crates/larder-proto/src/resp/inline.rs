//! Inline commands: a line typed by hand (`SET k "a b"\r\n`), split into arguments the way
//! Redis's `sdssplitargs` does it.
//!
//! * Arguments are separated by runs of whitespace; a line that ends in `\n` alone is accepted.
//! * `"double quotes"` understand `\n \r \t \b \a \\ \"` and `\xHH`; any other escaped byte
//!   stands for itself.
//! * `'single quotes'` understand only `\'`.
//! * A quote may start in the middle of an argument (`a"b c"` is `ab c`), but a closing quote
//!   must be followed by whitespace or the end of the line; that, or a quote left open, is
//!   `unbalanced quotes`.
//! * A NUL byte ends the line, as it ends the C string Redis splits.

use super::{Args, Limits, RespError};

/// Parses the inline command at the start of `buf` into `args`' scratch buffer.
pub(super) fn parse_inline(
    buf: &[u8],
    limits: &Limits,
    args: &mut Args,
) -> Result<Option<usize>, RespError> {
    let window = &buf[..buf.len().min(limits.max_inline_len.saturating_add(1))];
    let Some(newline) = memchr::memchr(b'\n', window) else {
        return if buf.len() > limits.max_inline_len {
            Err(RespError::TooBigInline)
        } else {
            Ok(None)
        };
    };
    let mut line = &window[..newline];
    if let [rest @ .., b'\r'] = line {
        line = rest;
    }
    if let Some(nul) = memchr::memchr(0, line) {
        line = &line[..nul];
    }
    split_args(line, args)?;
    Ok(Some(newline + 1))
}

/// Splits `line` into arguments, unescaping them into `args`' scratch buffer.
fn split_args(line: &[u8], args: &mut Args) -> Result<(), RespError> {
    let mut i = 0;
    loop {
        while line.get(i).is_some_and(|&b| is_space(b)) {
            i += 1;
        }
        if i >= line.len() {
            return Ok(());
        }
        let start = args.scratch().len();
        i = read_arg(line, i, args.scratch())?;
        args.push_scratch_arg(start);
    }
}

/// Appends the argument starting at `i` to `out`; returns the index just past it.
fn read_arg(line: &[u8], mut i: usize, out: &mut Vec<u8>) -> Result<usize, RespError> {
    loop {
        match line.get(i) {
            // Only these end a bare argument; `\v` and `\f` are skipped between arguments but
            // kept inside one, as in Redis.
            None | Some(b' ' | b'\n' | b'\r' | b'\t') => return Ok(i),
            Some(b'"') => return read_double_quoted(line, i + 1, out),
            Some(b'\'') => return read_single_quoted(line, i + 1, out),
            Some(&byte) => {
                out.push(byte);
                i += 1;
            }
        }
    }
}

/// Reads a double-quoted run whose opening quote precedes `i`.
fn read_double_quoted(line: &[u8], mut i: usize, out: &mut Vec<u8>) -> Result<usize, RespError> {
    loop {
        match line.get(i) {
            None => return Err(RespError::UnbalancedQuotes),
            Some(b'"') => return after_closing_quote(line, i + 1),
            Some(b'\\') => {
                let (byte, width) = unescape(line.get(i + 1..).unwrap_or_default());
                out.push(byte);
                i += width;
            }
            Some(&byte) => {
                out.push(byte);
                i += 1;
            }
        }
    }
}

/// Decodes the escape after a backslash inside double quotes; `rest` starts after the
/// backslash. Returns the byte and how many bytes the escape took, backslash included.
fn unescape(rest: &[u8]) -> (u8, usize) {
    match rest {
        [b'x', high, low, ..] if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {
            (hex_value(*high) << 4 | hex_value(*low), 4)
        }
        [b'n', ..] => (b'\n', 2),
        [b'r', ..] => (b'\r', 2),
        [b't', ..] => (b'\t', 2),
        [b'b', ..] => (0x08, 2),
        [b'a', ..] => (0x07, 2),
        [other, ..] => (*other, 2),
        // A backslash at the very end stays; the quote is then left open.
        [] => (b'\\', 1),
    }
}

/// Reads a single-quoted run whose opening quote precedes `i`.
fn read_single_quoted(line: &[u8], mut i: usize, out: &mut Vec<u8>) -> Result<usize, RespError> {
    loop {
        match (line.get(i), line.get(i + 1)) {
            (None, _) => return Err(RespError::UnbalancedQuotes),
            (Some(b'\\'), Some(b'\'')) => {
                out.push(b'\'');
                i += 2;
            }
            (Some(b'\''), _) => return after_closing_quote(line, i + 1),
            (Some(&byte), _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
}

/// Checks that a closing quote (just before `i`) ends its argument.
fn after_closing_quote(line: &[u8], i: usize) -> Result<usize, RespError> {
    match line.get(i) {
        Some(&byte) if !is_space(byte) => Err(RespError::UnbalancedQuotes),
        _ => Ok(i),
    }
}

/// C's `isspace` in the "C" locale.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// The value of an ASCII hex digit (callers check that it is one).
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_request;
    use super::*;

    /// The arguments read and the bytes consumed.
    type Parsed = Result<Option<(Vec<Vec<u8>>, usize)>, RespError>;

    fn parse(input: &[u8]) -> Parsed {
        parse_with(input, &Limits::default())
    }

    fn parse_with(input: &[u8], limits: &Limits) -> Parsed {
        let mut args = Args::new();
        let consumed = parse_request(input, limits, &mut args)?;
        if consumed.is_some() {
            assert!(args.is_inline());
        }
        Ok(consumed.map(|n| (args.iter(input).map(<[u8]>::to_vec).collect(), n)))
    }

    #[test]
    fn splitting_and_quoting() {
        let cases: &[(&[u8], &[&[u8]])] = &[
            (b"PING\r\n", &[b"PING"]),
            (b"PING\n", &[b"PING"]),
            (b"GET key\r\n", &[b"GET", b"key"]),
            (b"  SET \t k   v  \r\n", &[b"SET", b"k", b"v"]),
            (b"\r\n", &[]),
            (b"\n", &[]),
            (b"   \r\n", &[]),
            (b"SET k \"a b\"\r\n", &[b"SET", b"k", b"a b"]),
            (b"SET k \"\"\r\n", &[b"SET", b"k", b""]),
            (
                b"ECHO \"\\n\\r\\t\\b\\a\\\\\\\"\"\n",
                &[b"ECHO", b"\n\r\t\x08\x07\\\""],
            ),
            (b"ECHO \"\\x41\\x7a\\xff\"\n", &[b"ECHO", b"Az\xff"]),
            (b"ECHO \"\\x4\"\n", &[b"ECHO", b"x4"]),
            (b"ECHO \"\\q\"\n", &[b"ECHO", b"q"]),
            (b"ECHO 'it\\'s'\n", &[b"ECHO", b"it's"]),
            (b"ECHO 'a\\nb'\n", &[b"ECHO", b"a\\nb"]),
            (b"ECHO 'say \"hi\"'\n", &[b"ECHO", b"say \"hi\""]),
            (b"ECHO a\"b c\"\n", &[b"ECHO", b"ab c"]),
            (b"ECHO a\x0bb\n", &[b"ECHO", b"a\x0bb"]),
            (b"\x0bECHO\x0c\n", &[b"ECHO\x0c"]),
            (b"ECHO a\rb\n", &[b"ECHO", b"a", b"b"]),
            (b"ECHO a\0 ignored\n", &[b"ECHO", b"a"]),
            (b"ECHO \"x\"\x0b\n", &[b"ECHO", b"x"]),
        ];
        for (input, expected) in cases {
            let expected: Vec<Vec<u8>> = expected.iter().map(|a| a.to_vec()).collect();
            assert_eq!(parse(input), Ok(Some((expected, input.len()))), "{input:?}");
        }
    }

    #[test]
    fn unbalanced_quotes() {
        let cases: &[&[u8]] = &[
            b"ECHO \"abc\n",
            b"ECHO 'abc\n",
            b"ECHO \"a\"b\n",
            b"ECHO 'a'b\n",
            b"ECHO \"a\"\"b\"\n",
            b"ECHO \"abc\\\"\n",
            b"ECHO \"a\0\"\n",
        ];
        for input in cases {
            let error = parse(input).unwrap_err();
            assert_eq!(
                error.to_string(),
                "Protocol error: unbalanced quotes in request"
            );
        }
    }

    #[test]
    fn partial_lines_wait() {
        let input = b"SET k \"a b\"\r\n";
        for cut in 0..input.len() {
            assert_eq!(parse(&input[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn the_line_length_is_bounded() {
        let limits = Limits {
            max_inline_len: 8,
            ..Limits::default()
        };
        assert_eq!(parse_with(b"12345678", &limits), Ok(None));
        assert_eq!(
            parse_with(b"12345678\n", &limits),
            Ok(Some((vec![b"12345678".to_vec()], 9)))
        );
        let error = parse_with(b"123456789", &limits).unwrap_err();
        assert_eq!(error.to_string(), "Protocol error: too big inline request");
        assert_eq!(
            parse_with(b"123456789\n", &limits),
            Err(RespError::TooBigInline)
        );
    }

    #[test]
    fn unescape_table() {
        let cases: &[(&[u8], (u8, usize))] = &[
            (b"x41", (b'A', 4)),
            (b"xAf", (0xaf, 4)),
            (b"xg1", (b'x', 2)),
            (b"x", (b'x', 2)),
            (b"n", (b'\n', 2)),
            (b"\"", (b'"', 2)),
            (b"", (b'\\', 1)),
        ];
        for (rest, expected) in cases {
            assert_eq!(unescape(rest), *expected, "{rest:?}");
        }
    }
}
