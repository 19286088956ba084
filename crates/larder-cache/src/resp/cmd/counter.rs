//! Counter commands: INCR DECR INCRBY DECRBY INCRBYFLOAT.
//!
//! The integer commands go through `Node::incr`, which keeps the TTL and reports
//! not-an-integer and overflow with Redis's texts. `INCRBYFLOAT` adds exact decimals and prints
//! the sum as Redis does (`%.17Lf`, trailing zeros trimmed), so `0.1 + 0.2` is `0.3` as on a
//! Redis server, not the `0.30000000000000004` binary doubles would give. Where Redis's own
//! `long double` shows rounding noise (on x86, `1000 + 0.1` prints `1000.09999999999999998`)
//! this prints the exact sum, as Redis does on platforms with a wider `long double`.

use larder_proto::ErrorCode;
use larder_store::{Expiry, Update};

use crate::node::write::Change;
use crate::resp::ctx::{CmdError, CmdResult, CommandSpec, Ctx, parse_i64, spec};

const WRITE_FAST: &[&str] = &["write", "denyoom", "fast"];

/// The counter family's entries in the command table.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    spec(
        "incr",
        2,
        WRITE_FAST,
        (1, 1, 1),
        "Adds one to the integer stored at a key, starting from 0 if it is missing.",
        "1.0.0",
        incr,
    ),
    spec(
        "decr",
        2,
        WRITE_FAST,
        (1, 1, 1),
        "Subtracts one from the integer stored at a key, starting from 0 if it is missing.",
        "1.0.0",
        decr,
    ),
    spec(
        "incrby",
        3,
        WRITE_FAST,
        (1, 1, 1),
        "Adds an integer to the integer stored at a key, starting from 0 if it is missing.",
        "1.0.0",
        incrby,
    ),
    spec(
        "decrby",
        3,
        WRITE_FAST,
        (1, 1, 1),
        "Subtracts an integer from the integer stored at a key, starting from 0 if it is missing.",
        "1.0.0",
        decrby,
    ),
    spec(
        "incrbyfloat",
        3,
        WRITE_FAST,
        (1, 1, 1),
        "Adds a decimal number to the number stored at a key, starting from 0 if it is missing.",
        "2.6.0",
        incrbyfloat,
    ),
];

fn add(ctx: &mut Ctx<'_>, key: &[u8], delta: i64) -> CmdResult {
    let value = ctx.node.incr(key, delta)?;
    ctx.int(value);
    Ok(())
}

fn incr(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    add(ctx, argv[1], 1)
}

fn decr(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    add(ctx, argv[1], -1)
}

fn incrby(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let delta = parse_i64(argv[2])?;
    add(ctx, argv[1], delta)
}

fn decrby(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let delta = parse_i64(argv[2])?;
    // i64::MIN has no negation; Redis refuses it with its own text before touching the key.
    let negated = delta
        .checked_neg()
        .ok_or_else(|| CmdError::new(ErrorCode::Overflow, "decrement would overflow"))?;
    add(ctx, argv[1], negated)
}

fn incrbyfloat(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let increment = Operand::parse(argv[2])?;
    let sum = ctx.node.update(argv[1], Change::Value, |entry| {
        match float_sum(entry.map(|e| e.value), &increment) {
            Ok(text) => {
                let value = text.clone().into_bytes();
                let expiry = Expiry::Keep;
                (Update::Write { value, expiry }, Ok(text))
            }
            Err(err) => (Update::Keep, Err(err)),
        }
    })??;
    ctx.bulk(sum.as_bytes());
    Ok(())
}

/// The text `INCRBYFLOAT` stores and replies: the stored number (0 if none) plus `increment`.
fn float_sum(current: Option<&[u8]>, increment: &Operand) -> Result<String, CmdError> {
    let current = match current {
        Some(value) => Operand::parse(value)?,
        None => Operand::Finite(Decimal::default()),
    };
    let (Operand::Finite(a), Operand::Finite(b)) = (current, increment) else {
        return Err(nan_or_infinity());
    };
    let sum = a.add(b);
    if sum.top_exp().is_some_and(|top| top > MAX_EXP10) {
        return Err(nan_or_infinity());
    }
    Ok(sum.to_redis_text())
}

fn nan_or_infinity() -> CmdError {
    CmdError::new(
        ErrorCode::Overflow,
        "increment would produce NaN or Infinity",
    )
}

/// Redis refuses float texts this long or longer (its `MAX_LONG_DOUBLE_CHARS` buffer).
const MAX_FLOAT_LEN: usize = 5 * 1024;
/// Digits after the point Redis prints for an `INCRBYFLOAT` result.
const FRACTION_DIGITS: i64 = 17;
/// Powers of ten of the largest and smallest magnitudes Redis's `long double` (x86's 80-bit
/// format) holds: texts outside this range are not valid floats, sums above it are infinite.
const MAX_EXP10: i64 = 4932;
const MIN_EXP10: i64 = -4951;
/// Exponents are clamped to this before range checks so huge ones cannot overflow; anything
/// this far out is out of range whatever the mantissa.
const EXP_CLAMP: i64 = 100_000;

/// A number as `INCRBYFLOAT` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Operand {
    Finite(Decimal),
    /// `inf`, `+infinity`, `-inf`…: accepted, but any sum with one is refused.
    Infinite,
}

impl Operand {
    /// Parses a float the way Redis's `string2ld` accepts it: optional sign, digits with an
    /// optional point, optional exponent; no spaces; `inf` but not `nan`.
    fn parse(text: &[u8]) -> Result<Self, CmdError> {
        if text.is_empty() || text.len() >= MAX_FLOAT_LEN {
            return Err(CmdError::not_float());
        }
        let (negative, body) = match text.split_first() {
            Some((b'-', rest)) => (true, rest),
            Some((b'+', rest)) => (false, rest),
            _ => (false, text),
        };
        if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
            return Ok(Self::Infinite);
        }
        let (mantissa, exponent) = match body.iter().position(|&b| b == b'e' || b == b'E') {
            Some(at) => (&body[..at], parse_exponent(&body[at + 1..])?),
            None => (body, 0),
        };
        let (int, frac) = match mantissa.iter().position(|&b| b == b'.') {
            Some(at) => (&mantissa[..at], &mantissa[at + 1..]),
            None => (mantissa, &b""[..]),
        };
        let digits: Vec<u8> = int
            .iter()
            .chain(frac)
            .rev()
            .map(|d| d.wrapping_sub(b'0'))
            .collect();
        if digits.is_empty() || digits.iter().any(|&d| d > 9) {
            return Err(CmdError::not_float());
        }
        let frac_len = i64::try_from(frac.len()).map_err(|_| CmdError::not_float())?;
        let value = Decimal::new(negative, digits, exponent - frac_len);
        match value.top_exp() {
            Some(top) if !(MIN_EXP10..=MAX_EXP10).contains(&top) => Err(CmdError::not_float()),
            _ => Ok(Self::Finite(value)),
        }
    }
}

/// The exponent after `e`: optional sign and at least one digit, clamped to ±[`EXP_CLAMP`].
fn parse_exponent(text: &[u8]) -> Result<i64, CmdError> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(CmdError::not_float());
    }
    let magnitude = digits
        .iter()
        .fold(0i64, |n, &d| (n * 10 + i64::from(d - b'0')).min(EXP_CLAMP));
    Ok(if negative { -magnitude } else { magnitude })
}

/// An exact decimal number: `digits × 10^exp`, negative if `negative`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Decimal {
    negative: bool,
    /// Base-10 digits, least significant first, with no zero at either end (empty for 0).
    digits: Vec<u8>,
    /// The power of ten of the first digit.
    exp: i64,
}

impl Decimal {
    /// A normalised decimal: zeros at either end of `digits` are dropped, zero has no sign.
    fn new(negative: bool, mut digits: Vec<u8>, exp: i64) -> Self {
        while digits.last() == Some(&0) {
            digits.pop();
        }
        let low_zeros = digits.iter().take_while(|&&d| d == 0).count();
        digits.drain(..low_zeros);
        if digits.is_empty() {
            return Self::default();
        }
        let exp = exp.saturating_add(i64::try_from(low_zeros).unwrap_or(i64::MAX));
        Self {
            negative,
            digits,
            exp,
        }
    }

    /// The power of ten of the most significant digit; `None` for zero.
    fn top_exp(&self) -> Option<i64> {
        let len = i64::try_from(self.digits.len()).ok()?;
        (len > 0).then(|| self.exp.saturating_add(len - 1))
    }

    /// This number's digits scaled to `exp` (at most its own exponent); none for zero, so
    /// comparing lengths compares magnitudes.
    fn digits_at(&self, exp: i64) -> Vec<u8> {
        if self.digits.is_empty() {
            return Vec::new();
        }
        let zeros = usize::try_from(self.exp.saturating_sub(exp)).unwrap_or(0);
        let mut digits = vec![0; zeros];
        digits.extend_from_slice(&self.digits);
        digits
    }

    /// The exact sum. Operands are range-checked, so the alignment below stays within
    /// about 15,000 digits.
    fn add(&self, other: &Self) -> Self {
        let exp = self.exp.min(other.exp);
        let (a, b) = (self.digits_at(exp), other.digits_at(exp));
        if self.negative == other.negative {
            return Self::new(self.negative, add_digits(&a, &b), exp);
        }
        let a_smaller = a
            .len()
            .cmp(&b.len())
            .then_with(|| a.iter().rev().cmp(b.iter().rev()))
            .is_lt();
        if a_smaller {
            Self::new(other.negative, sub_digits(&b, &a), exp)
        } else {
            Self::new(self.negative, sub_digits(&a, &b), exp)
        }
    }

    /// Rounds to [`FRACTION_DIGITS`] places, half to even as `printf` does.
    fn rounded(self) -> Self {
        let drop = usize::try_from(-FRACTION_DIGITS - self.exp).unwrap_or(0);
        if drop == 0 {
            return self;
        }
        let len = self.digits.len();
        let (low, kept) = self.digits.split_at(drop.min(len));
        // Beyond the digits, the first dropped digit is a leading zero: round down.
        let (first, rest) = match low.split_last() {
            Some((&first, rest)) if drop <= len => (first, rest.iter().any(|&d| d != 0)),
            _ => (0, false),
        };
        let odd = kept.first().is_some_and(|d| d % 2 == 1);
        let up = first > 5 || (first == 5 && (rest || odd));
        let kept = if up {
            add_digits(kept, &[1])
        } else {
            kept.to_vec()
        };
        Self::new(self.negative, kept, -FRACTION_DIGITS)
    }

    /// Redis's text for an `INCRBYFLOAT` result: fixed point, at most 17 decimals, no trailing
    /// zeros or point, and `0` rather than `-0`.
    fn to_redis_text(&self) -> String {
        let value = self.clone().rounded();
        if value.digits.is_empty() {
            return "0".to_owned();
        }
        let mut digits: String = value
            .digits
            .iter()
            .rev()
            .map(|&d| char::from(b'0' + d))
            .collect();
        let fraction = usize::try_from(-value.exp).unwrap_or(0);
        if fraction == 0 {
            digits.extend(std::iter::repeat_n(
                '0',
                usize::try_from(value.exp).unwrap_or(0),
            ));
        } else if digits.len() > fraction {
            digits.insert(digits.len() - fraction, '.');
        } else {
            let zeros = "0".repeat(fraction - digits.len());
            digits = format!("0.{zeros}{digits}");
        }
        if value.negative {
            digits.insert(0, '-');
        }
        digits
    }
}

/// Sum of two little-endian digit strings.
fn add_digits(a: &[u8], b: &[u8]) -> Vec<u8> {
    let len = a.len().max(b.len());
    let mut sum = Vec::with_capacity(len + 1);
    let mut carry = 0;
    for i in 0..len {
        let d = a.get(i).copied().unwrap_or(0) + b.get(i).copied().unwrap_or(0) + carry;
        sum.push(d % 10);
        carry = d / 10;
    }
    if carry > 0 {
        sum.push(carry);
    }
    sum
}

/// Difference of two little-endian digit strings, `a` not smaller than `b`.
fn sub_digits(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut difference = Vec::with_capacity(a.len());
    let mut borrow = 0;
    for (i, &x) in a.iter().enumerate() {
        let y = b.get(i).copied().unwrap_or(0) + borrow;
        borrow = u8::from(x < y);
        difference.push(x + 10 * borrow - y);
    }
    difference
}

#[cfg(test)]
mod tests {
    use super::super::testing::Harness;
    use super::*;

    const NOT_INT: &str = "-ERR value is not an integer or out of range\r\n";
    const NOT_FLOAT: &str = "-ERR value is not a valid float\r\n";
    const NAN_INF: &str = "-ERR increment would produce NaN or Infinity\r\n";
    const OVERFLOW: &str = "-ERR increment or decrement would overflow\r\n";

    #[test]
    fn integer_counters_follow_redis() {
        Harness::new().check(&[
            ("INCR c", ":1\r\n"),
            ("INCR c", ":2\r\n"),
            ("DECR c", ":1\r\n"),
            ("INCRBY c 10", ":11\r\n"),
            ("DECRBY c 20", ":-9\r\n"),
            ("INCRBY c -1", ":-10\r\n"),
            ("DECRBY c -10", ":0\r\n"),
            ("DECR fresh", ":-1\r\n"),
            ("GET c", "$1\r\n0\r\n"),
            ("INCRBY c x", NOT_INT),
            ("INCRBY c 1.5", NOT_INT),
            ("INCRBY c +1", NOT_INT),
            ("DECRBY c 99999999999999999999", NOT_INT),
            ("SET s abc", "+OK\r\n"),
            ("INCR s", NOT_INT),
            ("SET z 01", "+OK\r\n"),
            ("DECR z", NOT_INT),
            ("SET f 1.0", "+OK\r\n"),
            ("INCRBY f 1", NOT_INT),
            ("SET max 9223372036854775807", "+OK\r\n"),
            ("INCR max", OVERFLOW),
            ("DECRBY max -1", OVERFLOW),
            ("GET max", "$19\r\n9223372036854775807\r\n"),
            ("SET min -9223372036854775808", "+OK\r\n"),
            ("DECR min", OVERFLOW),
            ("INCRBY min -1", OVERFLOW),
            (
                "INCRBY low -9223372036854775808",
                ":-9223372036854775808\r\n",
            ),
            (
                "DECRBY c -9223372036854775808",
                "-ERR decrement would overflow\r\n",
            ),
            (
                "DECRBY missing -9223372036854775808",
                "-ERR decrement would overflow\r\n",
            ),
            ("GET missing", "$-1\r\n"),
            (
                "INCR",
                "-ERR wrong number of arguments for 'incr' command\r\n",
            ),
            (
                "INCRBY c",
                "-ERR wrong number of arguments for 'incrby' command\r\n",
            ),
            (
                "DECR a b",
                "-ERR wrong number of arguments for 'decr' command\r\n",
            ),
            (
                "DECRBY a",
                "-ERR wrong number of arguments for 'decrby' command\r\n",
            ),
        ]);
    }

    #[test]
    fn incrbyfloat_prints_like_redis() {
        Harness::new().check(&[
            ("INCRBYFLOAT f 10.5", "$4\r\n10.5\r\n"),
            ("INCRBYFLOAT f 0.1", "$4\r\n10.6\r\n"),
            ("GET f", "$4\r\n10.6\r\n"),
            ("SET g 5.0e3", "+OK\r\n"),
            ("INCRBYFLOAT g 2.0e2", "$4\r\n5200\r\n"),
            ("SET h 0.1", "+OK\r\n"),
            ("INCRBYFLOAT h 0.2", "$3\r\n0.3\r\n"),
            ("SET i 1", "+OK\r\n"),
            ("INCRBYFLOAT i -1.1", "$4\r\n-0.1\r\n"),
            ("INCRBYFLOAT i 0.1", "$1\r\n0\r\n"),
            ("INCRBYFLOAT tiny 1e-20", "$1\r\n0\r\n"),
            ("INCRBYFLOAT neg -1e-20", "$1\r\n0\r\n"),
            ("INCRBYFLOAT nz -0.0", "$1\r\n0\r\n"),
            (
                "INCRBYFLOAT small 0.00001234567890123456789",
                "$19\r\n0.00001234567890123\r\n",
            ),
            ("INCRBYFLOAT l 1.5e17", "$18\r\n150000000000000000\r\n"),
            ("INCRBYFLOAT l 0.5", "$20\r\n150000000000000000.5\r\n"),
            ("INCRBYFLOAT big 1e20", "$21\r\n100000000000000000000\r\n"),
            ("INCRBYFLOAT p .5", "$3\r\n0.5\r\n"),
            ("INCRBYFLOAT p 5.", "$3\r\n5.5\r\n"),
            ("INCRBYFLOAT p +1", "$3\r\n6.5\r\n"),
            ("INCRBYFLOAT p 1E1", "$4\r\n16.5\r\n"),
            ("INCRBYFLOAT p -1e+1", "$3\r\n6.5\r\n"),
            ("INCRBYFLOAT p 0e999999999999999999999", "$3\r\n6.5\r\n"),
            ("SET n 7", "+OK\r\n"),
            ("INCRBYFLOAT n 3", "$2\r\n10\r\n"),
        ]);
    }

    #[test]
    fn incrbyfloat_refuses_what_redis_refuses() {
        Harness::new().check(&[
            ("SET n 1", "+OK\r\n"),
            ("INCRBYFLOAT n inf", NAN_INF),
            ("INCRBYFLOAT n +Infinity", NAN_INF),
            ("INCRBYFLOAT n -INF", NAN_INF),
            ("INCRBYFLOAT n nan", NOT_FLOAT),
            ("INCRBYFLOAT n abc", NOT_FLOAT),
            ("INCRBYFLOAT n 1e", NOT_FLOAT),
            ("INCRBYFLOAT n e5", NOT_FLOAT),
            ("INCRBYFLOAT n .", NOT_FLOAT),
            ("INCRBYFLOAT n -", NOT_FLOAT),
            ("INCRBYFLOAT n ", NOT_FLOAT),
            ("INCRBYFLOAT n 1.5.2", NOT_FLOAT),
            ("INCRBYFLOAT n 1,5", NOT_FLOAT),
            ("INCRBYFLOAT n 1e5000", NOT_FLOAT),
            ("INCRBYFLOAT n 1e-5000", NOT_FLOAT),
            ("INCRBYFLOAT n 1e99999999999999999999", NOT_FLOAT),
            ("GET n", "$1\r\n1\r\n"),
            ("SET s abc", "+OK\r\n"),
            ("INCRBYFLOAT s 1", NOT_FLOAT),
            ("SET huge 1e4932", "+OK\r\n"),
            ("INCRBYFLOAT huge 9e4932", NAN_INF),
            ("SET inf inf", "+OK\r\n"),
            ("INCRBYFLOAT inf 1", NAN_INF),
            ("GET inf", "$3\r\ninf\r\n"),
            (
                "INCRBYFLOAT n",
                "-ERR wrong number of arguments for 'incrbyfloat' command\r\n",
            ),
        ]);
        let mut h = Harness::new();
        let long = format!("1{}", "0".repeat(MAX_FLOAT_LEN));
        assert_eq!(h.run(&["INCRBYFLOAT", "k", &long]), NOT_FLOAT);
    }

    #[test]
    fn counters_keep_the_ttl() {
        let mut h = Harness::new();
        h.check(&[
            ("SET i 1 EX 100", "+OK\r\n"),
            ("INCR i", ":2\r\n"),
            ("DECRBY i 5", ":-3\r\n"),
            ("SET f 1 EX 100", "+OK\r\n"),
            ("INCRBYFLOAT f 1.5", "$3\r\n2.5\r\n"),
        ]);
        for key in [&b"i"[..], b"f"] {
            let ttl = h.node.store.ttl(key);
            assert!(
                matches!(ttl, larder_store::TtlState::ExpiresIn(ms) if ms > 99_000 && ms <= 100_000),
                "{ttl:?}"
            );
        }
    }

    #[test]
    fn decimal_sums_round_half_to_even() {
        let sum = |a: &str, b: &str| {
            let (Ok(Operand::Finite(a)), Ok(Operand::Finite(b))) =
                (Operand::parse(a.as_bytes()), Operand::parse(b.as_bytes()))
            else {
                panic!("{a} {b}");
            };
            a.add(&b).to_redis_text()
        };
        for (a, b, want) in [
            ("0.000000000000000015", "0", "0.00000000000000002"),
            ("0.000000000000000025", "0", "0.00000000000000002"),
            ("0.0000000000000000250001", "0", "0.00000000000000003"),
            ("0.000000000000000005", "0", "0"),
            ("0.99999999999999999999", "0", "1"),
            ("-0.99999999999999999999", "0", "-1"),
            ("99.99", "0.01", "100"),
            ("1000", "0.1", "1000.1"),
            ("-5", "3", "-2"),
            ("3", "-5", "-2"),
            ("-2.5", "-2.5", "-5"),
            ("1e3", "-1000", "0"),
            ("0", "-1e-10", "-0.0000000001"),
            ("-1e-10", "0", "-0.0000000001"),
            ("0", "-7", "-7"),
            ("0.5e-16", "0", "0.00000000000000005"),
        ] {
            assert_eq!(sum(a, b), want, "{a} + {b}");
        }
    }
}
