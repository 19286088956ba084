//! The small scanners both parsers share: length headers, reply lines and integers.
//!
//! Lengths follow Redis's `string2ll` rules (an optional `-`, no leading zeros, no `-0`, at
//! most 2^63 in magnitude), checked digit by digit so that a length above the caller's bound is
//! refused as soon as its digits arrive, before any payload is buffered.

use super::RespError;

/// The value of a length header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Len {
    /// Zero or a positive length, at most the caller's bound.
    Value(usize),
    /// A negative number (`-1` is RESP2's null); holds its magnitude.
    Negative(u64),
}

/// A length header that breaks the rules; each caller reports it with its own error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Malformed;

/// Reads the decimal that starts at `start` and the CRLF after it, refusing values above `max`.
///
/// Returns the value and the index just past the CRLF, or `None` if the buffer ends first.
/// Inlined so that the nested `Result<Option<…>>` dissolves into branches at each call site.
#[inline(always)]
pub(super) fn read_len(
    buf: &[u8],
    start: usize,
    max: usize,
) -> Result<Option<(Len, usize)>, Malformed> {
    let rest = buf.get(start..).unwrap_or_default();
    // Most lengths on the wire have one to three digits: read those without a loop.
    let (value, next) = match *rest {
        [d1 @ b'0'..=b'9', b'\r', b'\n', ..] => (digit(d1), 3),
        [d1 @ b'1'..=b'9', d2 @ b'0'..=b'9', b'\r', b'\n', ..] => (digit(d1) * 10 + digit(d2), 4),
        [
            d1 @ b'1'..=b'9',
            d2 @ b'0'..=b'9',
            d3 @ b'0'..=b'9',
            b'\r',
            b'\n',
            ..,
        ] => (digit(d1) * 100 + digit(d2) * 10 + digit(d3), 5),
        _ => return read_len_slow(buf, start, max),
    };
    if value > max {
        return Err(Malformed);
    }
    Ok(Some((Len::Value(value), start + next)))
}

/// The value of an ASCII digit (the caller's pattern has checked that it is one).
#[inline(always)]
fn digit(byte: u8) -> usize {
    usize::from(byte.wrapping_sub(b'0'))
}

/// [`read_len`] for signed or long numbers, and for headers not yet complete.
fn read_len_slow(buf: &[u8], start: usize, max: usize) -> Result<Option<(Len, usize)>, Malformed> {
    let negative = buf.get(start) == Some(&b'-');
    let digits = start + usize::from(negative);
    let bound = if negative {
        1 << 63
    } else {
        u64::try_from(max).unwrap_or(u64::MAX)
    };
    let rest = buf.get(digits..).unwrap_or_default();
    // 2^63 has 19 digits and 19 digits cannot overflow a u64; a 20th fails below, where a CR
    // is expected.
    let mut value = 0_u64;
    let mut count = 0;
    for &byte in rest.iter().take(19) {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        value = value * 10 + u64::from(digit);
        count += 1;
    }
    // Checked before waiting for the CRLF, so an oversized length fails at once. A zero is
    // only allowed as the whole, unsigned number.
    if value > bound || rest.first() == Some(&b'0') && (count > 1 || negative) {
        return Err(Malformed);
    }
    match (rest.get(count), rest.get(count + 1)) {
        (None, _) => return Ok(None),
        (Some(b'\r'), _) if count == 0 => return Err(Malformed),
        (Some(b'\r'), None) => return Ok(None),
        (Some(b'\r'), Some(b'\n')) => {}
        _ => return Err(Malformed),
    }
    let len = if negative {
        Len::Negative(value)
    } else {
        Len::Value(usize::try_from(value).map_err(|_| Malformed)?)
    };
    Ok(Some((len, digits + count + 2)))
}

/// Finds the line that starts at `start` and ends with CRLF, at most `max_len` bytes long.
///
/// Returns the line without its CRLF and the index just past it. A bare CR or LF inside the line
/// is an error, as is a line that has grown past `max_len` without ending.
pub(super) fn read_line(
    buf: &[u8],
    start: usize,
    max_len: usize,
) -> Result<Option<(&[u8], usize)>, RespError> {
    let rest = buf.get(start..).unwrap_or_default();
    let window = &rest[..rest.len().min(max_len.saturating_add(1))];
    let Some(end) = memchr::memchr2(b'\r', b'\n', window) else {
        return if rest.len() > max_len {
            Err(RespError::LineTooLong)
        } else {
            Ok(None)
        };
    };
    match (window.get(end), rest.get(end + 1)) {
        (Some(b'\r'), Some(b'\n')) => Ok(Some((&window[..end], start + end + 2))),
        (Some(b'\r'), None) => Ok(None),
        _ => Err(RespError::ExpectedCrlf),
    }
}

/// Whether the CRLF that must follow a payload ending at `end` is there: `Some(true)` if it
/// is, `Some(false)` if another byte stands in its place, `None` if the buffer ends first.
#[inline]
pub(super) fn crlf_at(buf: &[u8], end: usize) -> Option<bool> {
    match buf.get(end)? {
        b'\r' => buf.get(end + 1).map(|&byte| byte == b'\n'),
        _ => Some(false),
    }
}

/// Parses a whole slice as an optionally signed decimal `i64` (RESP3 allows a leading `+`).
pub(super) fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0_i64, |value, &digit| {
        let digit = i64::from(digit.checked_sub(b'0').filter(|d| *d <= 9)?);
        let value = value.checked_mul(10)?;
        // Accumulating negative numbers downwards reaches i64::MIN without overflowing.
        if negative {
            value.checked_sub(digit)
        } else {
            value.checked_add(digit)
        }
    })
}

/// Whether a slice is an optionally signed, non-empty run of decimal digits.
pub(super) fn is_big_number(text: &[u8]) -> bool {
    let digits = match text {
        [b'-' | b'+', rest @ ..] => rest,
        _ => text,
    };
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_len_table() {
        let complete: &[(&[u8], Len, usize)] = &[
            (b"0\r\n", Len::Value(0), 3),
            (b"3\r\nabc", Len::Value(3), 3),
            (b"100\r\n", Len::Value(100), 5),
            (b"-1\r\n", Len::Negative(1), 4),
            (b"-9223372036854775808\r\n", Len::Negative(1 << 63), 22),
        ];
        for (input, len, next) in complete {
            assert_eq!(
                read_len(input, 0, 1000),
                Ok(Some((*len, *next))),
                "{input:?}"
            );
        }
        let partial: &[&[u8]] = &[b"", b"-", b"1", b"12", b"12\r", b"-1\r"];
        for input in partial {
            assert_eq!(read_len(input, 0, 1000), Ok(None), "{input:?}");
        }
        let malformed: &[&[u8]] = &[
            b"\r\n",
            b"-\r\n",
            b"01\r\n",
            b"00",
            b"-0\r\n",
            b"+1\r\n",
            b" 1\r\n",
            b"1 \r\n",
            b"1\rx",
            b"1\n",
            b"1001",
            b"-9223372036854775809\r\n",
            b"99999999999999999999999",
        ];
        for input in malformed {
            assert_eq!(read_len(input, 0, 1000), Err(Malformed), "{input:?}");
        }
    }

    #[test]
    fn the_fast_path_agrees_with_the_general_one() {
        const ALPHABET: &[u8] = b"0123456789-\r\nx";
        let mut input = Vec::new();
        for len in 0..=5_u32 {
            for mut code in 0..ALPHABET.len().pow(len) {
                input.clear();
                for _ in 0..len {
                    input.push(ALPHABET[code % ALPHABET.len()]);
                    code /= ALPHABET.len();
                }
                for max in [0, 9, 10, 99, 100, 999, usize::MAX] {
                    let slow = read_len_slow(&input, 0, max);
                    assert_eq!(read_len(&input, 0, max), slow, "{input:?} max {max}");
                }
            }
        }
    }

    #[test]
    fn read_len_refuses_a_length_past_the_bound_before_it_ends() {
        assert_eq!(read_len(b"$1025", 1, 1024), Err(Malformed));
        assert_eq!(read_len(b"$1024", 1, 1024), Ok(None));
        assert_eq!(read_len(b"$1", 1, 0), Err(Malformed));
    }

    #[test]
    fn read_line_table() {
        let limit = 8;
        assert_eq!(read_line(b"+OK\r\n", 1, limit), Ok(Some((&b"OK"[..], 5))));
        assert_eq!(read_line(b"+\r\n", 1, limit), Ok(Some((&b""[..], 3))));
        assert_eq!(
            read_line(b"+12345678\r\n", 1, limit),
            Ok(Some((&b"12345678"[..], 11)))
        );
        assert_eq!(read_line(b"+OK", 1, limit), Ok(None));
        assert_eq!(read_line(b"+OK\r", 1, limit), Ok(None));
        assert_eq!(read_line(b"+12345678", 1, limit), Ok(None));
        assert_eq!(
            read_line(b"+123456789", 1, limit),
            Err(RespError::LineTooLong)
        );
        assert_eq!(
            read_line(b"+O\nK\r\n", 1, limit),
            Err(RespError::ExpectedCrlf)
        );
        assert_eq!(
            read_line(b"+O\rK\r\n", 1, limit),
            Err(RespError::ExpectedCrlf)
        );
        assert_eq!(read_line(b"+", 5, limit), Ok(None));
    }

    #[test]
    fn crlf_at_table() {
        assert_eq!(crlf_at(b"ab\r\n", 2), Some(true));
        assert_eq!(crlf_at(b"ab\r", 2), None);
        assert_eq!(crlf_at(b"ab", 2), None);
        assert_eq!(crlf_at(b"ab", usize::MAX), None);
        assert_eq!(crlf_at(b"abc", 2), Some(false));
        assert_eq!(crlf_at(b"ab\rx", 2), Some(false));
    }

    #[test]
    fn parse_i64_table() {
        let cases: &[(&[u8], Option<i64>)] = &[
            (b"0", Some(0)),
            (b"42", Some(42)),
            (b"+42", Some(42)),
            (b"-42", Some(-42)),
            (b"007", Some(7)),
            (b"9223372036854775807", Some(i64::MAX)),
            (b"-9223372036854775808", Some(i64::MIN)),
            (b"9223372036854775808", None),
            (b"", None),
            (b"-", None),
            (b"1a", None),
            (b"1.5", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_i64(input), *expected, "{input:?}");
        }
    }

    #[test]
    fn big_number_table() {
        for ok in [&b"1"[..], b"-123456789012345678901234567890", b"+5"] {
            assert!(is_big_number(ok), "{ok:?}");
        }
        for bad in [&b""[..], b"-", b"1.0", b"12a"] {
            assert!(!is_big_number(bad), "{bad:?}");
        }
    }
}
