//! Expiry commands: EXPIRE PEXPIRE EXPIREAT PEXPIREAT (with NX XX GT LT), TTL PTTL, EXPIRETIME
//! PEXPIRETIME and PERSIST, with Redis 7's semantics. The conditional ones check and change
//! the key in one `Node::update`, so no other writer comes between the check and the change.

use larder_proto::ErrorCode;
use larder_store::{Expiry, TtlState, Update};

use crate::node::write::Change;
use crate::resp::ctx::{CmdError, CmdResult, CommandSpec, Ctx, parse_i64, spec};

const READ_FAST: &[&str] = &["readonly", "fast"];
const WRITE_FAST: &[&str] = &["write", "fast"];

/// The expiry family's entries in the command table.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    spec(
        "expire",
        -3,
        WRITE_FAST,
        (1, 1, 1),
        "Sets a key's time to live in seconds.",
        "1.0.0",
        expire,
    ),
    spec(
        "pexpire",
        -3,
        WRITE_FAST,
        (1, 1, 1),
        "Sets a key's time to live in milliseconds.",
        "2.6.0",
        pexpire,
    ),
    spec(
        "expireat",
        -3,
        WRITE_FAST,
        (1, 1, 1),
        "Sets the Unix time, in seconds, at which a key expires.",
        "1.2.0",
        expireat,
    ),
    spec(
        "pexpireat",
        -3,
        WRITE_FAST,
        (1, 1, 1),
        "Sets the Unix time, in milliseconds, at which a key expires.",
        "2.6.0",
        pexpireat,
    ),
    spec(
        "ttl",
        2,
        READ_FAST,
        (1, 1, 1),
        "Returns a key's remaining time to live in seconds.",
        "1.0.0",
        ttl,
    ),
    spec(
        "pttl",
        2,
        READ_FAST,
        (1, 1, 1),
        "Returns a key's remaining time to live in milliseconds.",
        "2.6.0",
        pttl,
    ),
    spec(
        "expiretime",
        2,
        READ_FAST,
        (1, 1, 1),
        "Returns the Unix time, in seconds, at which a key expires.",
        "7.0.0",
        expiretime,
    ),
    spec(
        "pexpiretime",
        2,
        READ_FAST,
        (1, 1, 1),
        "Returns the Unix time, in milliseconds, at which a key expires.",
        "7.0.0",
        pexpiretime,
    ),
    spec(
        "persist",
        2,
        WRITE_FAST,
        (1, 1, 1),
        "Removes a key's expiry, so it lives until deleted or evicted.",
        "2.2.0",
        persist,
    ),
];

/// The `NX XX GT LT` options of the `EXPIRE` commands.
#[derive(Debug, Default, Clone, Copy)]
struct Conditions {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

impl Conditions {
    /// Reads the options after the time, refusing the combinations Redis refuses.
    fn parse(options: &[&[u8]]) -> Result<Self, CmdError> {
        let mut c = Self::default();
        for option in options {
            match option.to_ascii_uppercase().as_slice() {
                b"NX" => c.nx = true,
                b"XX" => c.xx = true,
                b"GT" => c.gt = true,
                b"LT" => c.lt = true,
                _ => {
                    let option = String::from_utf8_lossy(option);
                    return Err(invalid(format!("Unsupported option {option}")));
                }
            }
        }
        if c.nx && (c.xx || c.gt || c.lt) {
            return Err(invalid(
                "NX and XX, GT or LT options at the same time are not compatible",
            ));
        }
        if c.gt && c.lt {
            return Err(invalid(
                "GT and LT options at the same time are not compatible",
            ));
        }
        Ok(c)
    }

    /// Whether a key expiring at `current` (Unix ms; `None`: never) may take the deadline
    /// `when`. A key without expiry counts as expiring at infinity, as in Redis 7.
    fn allow(self, current: Option<i64>, when: i64) -> bool {
        let refused = match current {
            None => self.xx || self.gt,
            Some(at) => self.nx || (self.gt && when <= at) || (self.lt && when >= at),
        };
        !refused
    }
}

fn invalid(message: impl Into<std::borrow::Cow<'static, str>>) -> CmdError {
    CmdError::new(ErrorCode::InvalidArgument, message)
}

/// The absolute deadline in Unix ms that `arg` names: `arg` units of `unit_ms` after `base`.
/// Overflow is an error, as in Redis; a deadline in the past is not.
fn deadline(name: &str, arg: &[u8], unit_ms: i64, base: i64) -> Result<i64, CmdError> {
    let invalid = || CmdError::invalid_expire(name);
    parse_i64(arg)?
        .checked_mul(unit_ms)
        .ok_or_else(invalid)?
        .checked_add(base)
        .ok_or_else(invalid)
}

/// Runs one of the `EXPIRE` commands: `argv[2]` counts `unit_ms`, from now if `relative`, else
/// from the Unix epoch.
fn expire_with(
    ctx: &mut Ctx<'_>,
    argv: &[&[u8]],
    name: &str,
    unit_ms: i64,
    relative: bool,
) -> CmdResult {
    // Redis reads the options before the time, so an unknown option wins over a bad time.
    let conditions = Conditions::parse(&argv[3..])?;
    let now = i64::try_from(ctx.node.now_ms()).unwrap_or(i64::MAX);
    let when = deadline(name, argv[2], unit_ms, if relative { now } else { 0 })?;
    let changed = ctx.node.update(argv[1], Change::Copy, |entry| {
        let Some(entry) = entry else {
            return (Update::Keep, false);
        };
        let current = entry
            .expires_at
            .map(|at| i64::try_from(at).unwrap_or(i64::MAX));
        if !conditions.allow(current, when) {
            (Update::Keep, false)
        } else if when <= now {
            // A deadline already past deletes the key, and that counts as a change.
            (Update::Delete, true)
        } else {
            (Update::Expire(Expiry::At(when.unsigned_abs())), true)
        }
    })?;
    ctx.int(i64::from(changed));
    Ok(())
}

fn expire(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    expire_with(ctx, argv, "expire", 1000, true)
}

fn pexpire(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    expire_with(ctx, argv, "pexpire", 1, true)
}

fn expireat(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    expire_with(ctx, argv, "expireat", 1000, false)
}

fn pexpireat(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    expire_with(ctx, argv, "pexpireat", 1, false)
}

/// Replies with the remaining time to live: -2 without key, -1 without expiry.
fn ttl_with(ctx: &mut Ctx<'_>, argv: &[&[u8]], in_ms: bool) -> CmdResult {
    let reply = match ctx.node.ttl(argv[1]) {
        TtlState::Missing => -2,
        TtlState::Persistent => -1,
        TtlState::ExpiresIn(ms) => {
            let ms = i64::try_from(ms).unwrap_or(i64::MAX);
            // Redis rounds seconds to the nearest, not down.
            if in_ms {
                ms
            } else {
                ms.saturating_add(500) / 1000
            }
        }
    };
    ctx.int(reply);
    Ok(())
}

fn ttl(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    ttl_with(ctx, argv, false)
}

fn pttl(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    ttl_with(ctx, argv, true)
}

/// Replies with the absolute expiry in Unix time: -2 without key, -1 without expiry.
fn expiretime_with(ctx: &mut Ctx<'_>, argv: &[&[u8]], in_ms: bool) -> CmdResult {
    let deadline = ctx.node.expires_at(argv[1])?;
    let reply = match deadline {
        None => -2,
        Some(None) => -1,
        Some(Some(at)) => {
            let at = i64::try_from(at).unwrap_or(i64::MAX);
            if in_ms { at } else { at / 1000 }
        }
    };
    ctx.int(reply);
    Ok(())
}

fn expiretime(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    expiretime_with(ctx, argv, false)
}

fn pexpiretime(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    expiretime_with(ctx, argv, true)
}

fn persist(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let removed = ctx.node.persist(argv[1]);
    ctx.int(i64::from(removed));
    Ok(())
}

#[cfg(test)]
mod tests {
    use larder_store::TtlState;

    use super::super::testing::Harness;

    const NX_ERR: &str = "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n";
    const GT_LT_ERR: &str = "-ERR GT and LT options at the same time are not compatible\r\n";

    /// Asserts that `key`'s remaining time is in `(low, high]` milliseconds.
    fn assert_ttl(h: &Harness, key: &str, low: u64, high: u64) {
        let ttl = h.node.store.ttl(key.as_bytes());
        assert!(
            matches!(ttl, TtlState::ExpiresIn(ms) if ms > low && ms <= high),
            "{key}: {ttl:?}"
        );
    }

    #[test]
    fn expire_sets_and_reports_the_ttl() {
        let mut h = Harness::new();
        h.check(&[
            ("EXPIRE missing 100", ":0\r\n"),
            ("TTL missing", ":-2\r\n"),
            ("PTTL missing", ":-2\r\n"),
            ("EXPIRETIME missing", ":-2\r\n"),
            ("PEXPIRETIME missing", ":-2\r\n"),
            ("SET k v", "+OK\r\n"),
            ("TTL k", ":-1\r\n"),
            ("PTTL k", ":-1\r\n"),
            ("EXPIRETIME k", ":-1\r\n"),
            ("PEXPIRETIME k", ":-1\r\n"),
            ("EXPIRE k 100", ":1\r\n"),
            ("TTL k", ":100\r\n"),
            ("SET p v", "+OK\r\n"),
            ("PEXPIRE p 100400", ":1\r\n"),
            ("TTL p", ":100\r\n"),
            ("PEXPIRE p 100600", ":1\r\n"),
            ("TTL p", ":101\r\n"),
            ("SET a v", "+OK\r\n"),
            ("EXPIREAT a 4102444800", ":1\r\n"),
            ("EXPIRETIME a", ":4102444800\r\n"),
            ("PEXPIRETIME a", ":4102444800000\r\n"),
            ("PEXPIREAT a 4102444800999", ":1\r\n"),
            ("EXPIRETIME a", ":4102444800\r\n"),
            ("PEXPIRETIME a", ":4102444800999\r\n"),
            ("PEXPIREAT a 9223372036854775807", ":1\r\n"),
            ("PEXPIRETIME a", ":9223372036854775807\r\n"),
            ("GET a", "$1\r\nv\r\n"),
        ]);
        assert_ttl(&h, "k", 99_000, 100_000);
        let pttl = h.run(&["PTTL", "p"]);
        let ms: u64 = pttl.trim_start_matches(':').trim_end().parse().unwrap();
        assert!(ms > 99_000 && ms <= 100_600, "{pttl}");
    }

    #[test]
    fn times_in_the_past_delete_the_key() {
        Harness::new().check(&[
            ("MSET a 1 b 2 c 3 d 4 e 5", "+OK\r\n"),
            ("EXPIRE a 0", ":1\r\n"),
            ("EXPIRE b -5", ":1\r\n"),
            ("PEXPIRE c -1", ":1\r\n"),
            ("EXPIREAT d 1", ":1\r\n"),
            ("PEXPIREAT e 1000", ":1\r\n"),
            (
                "MGET a b c d e",
                "*5\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n",
            ),
            ("TTL a", ":-2\r\n"),
            ("EXPIRE a -1", ":0\r\n"),
            ("SET f v", "+OK\r\n"),
            ("PEXPIREAT f -9223372036854775808", ":1\r\n"),
            ("GET f", "$-1\r\n"),
        ]);
    }

    #[test]
    fn conditions_follow_redis_7() {
        let mut h = Harness::new();
        h.check(&[
            ("MSET n v x v g v l v", "+OK\r\n"),
            // NX: only without expiry.
            ("EXPIRE n 100 NX", ":1\r\n"),
            ("EXPIRE n 200 nx", ":0\r\n"),
            // XX: only with expiry.
            ("EXPIRE x 100 XX", ":0\r\n"),
            ("TTL x", ":-1\r\n"),
            ("EXPIRE x 100", ":1\r\n"),
            ("EXPIRE x 300 XX", ":1\r\n"),
            // GT: no expiry is infinite, so nothing is greater.
            ("EXPIRE g 100 GT", ":0\r\n"),
            ("EXPIRE g -1 GT", ":0\r\n"),
            ("TTL g", ":-1\r\n"),
            ("EXPIRE g 100", ":1\r\n"),
            ("EXPIRE g 50 GT", ":0\r\n"),
            // Not 100 again: a millisecond later, the same TTL is a later deadline.
            ("EXPIRE g 99 GT", ":0\r\n"),
            ("EXPIRE g 400 gt", ":1\r\n"),
            ("EXPIRE g 500 XX GT", ":1\r\n"),
            // LT: anything is less than infinite.
            ("EXPIRE l 600 LT", ":1\r\n"),
            ("EXPIRE l 700 LT", ":0\r\n"),
            ("EXPIRE l 600 LT", ":0\r\n"),
            ("EXPIRE l 500 XX LT", ":1\r\n"),
            ("EXPIRE missing 100 LT", ":0\r\n"),
            ("SET d v", "+OK\r\n"),
            ("EXPIRE d -1 LT", ":1\r\n"),
            ("GET d", "$-1\r\n"),
        ]);
        assert_ttl(&h, "n", 99_000, 100_000);
        assert_ttl(&h, "x", 299_000, 300_000);
        assert_ttl(&h, "g", 499_000, 500_000);
        assert_ttl(&h, "l", 499_000, 500_000);
    }

    #[test]
    fn errors_use_redis_texts_and_change_nothing() {
        let mut h = Harness::new();
        h.check(&[
            ("SET k v", "+OK\r\n"),
            ("EXPIRE k 100 NX XX", NX_ERR),
            ("EXPIRE k 100 NX GT", NX_ERR),
            ("EXPIRE k 100 LT NX", NX_ERR),
            ("EXPIRE k 100 GT LT", GT_LT_ERR),
            ("EXPIRE k 100 XX GT LT", GT_LT_ERR),
            ("EXPIRE k 100 BOGUS", "-ERR Unsupported option BOGUS\r\n"),
            ("PEXPIRE k 100 nx ex", "-ERR Unsupported option ex\r\n"),
            ("EXPIRE k abc BOGUS", "-ERR Unsupported option BOGUS\r\n"),
            (
                "EXPIRE k abc",
                "-ERR value is not an integer or out of range\r\n",
            ),
            (
                "EXPIRE k 1.5",
                "-ERR value is not an integer or out of range\r\n",
            ),
            (
                "EXPIRE k 9223372036854775807",
                "-ERR invalid expire time in 'expire' command\r\n",
            ),
            (
                "EXPIRE k -9223372036854776",
                "-ERR invalid expire time in 'expire' command\r\n",
            ),
            (
                "PEXPIRE k 9223372036854775807",
                "-ERR invalid expire time in 'pexpire' command\r\n",
            ),
            (
                "EXPIREAT k 9223372036854776",
                "-ERR invalid expire time in 'expireat' command\r\n",
            ),
            (
                "EXPIRE missing 9223372036854775807",
                "-ERR invalid expire time in 'expire' command\r\n",
            ),
            ("TTL k", ":-1\r\n"),
            (
                "EXPIRE k",
                "-ERR wrong number of arguments for 'expire' command\r\n",
            ),
            (
                "PEXPIREAT k",
                "-ERR wrong number of arguments for 'pexpireat' command\r\n",
            ),
            (
                "TTL",
                "-ERR wrong number of arguments for 'ttl' command\r\n",
            ),
            (
                "PTTL a b",
                "-ERR wrong number of arguments for 'pttl' command\r\n",
            ),
            (
                "EXPIRETIME",
                "-ERR wrong number of arguments for 'expiretime' command\r\n",
            ),
            (
                "PEXPIRETIME a b",
                "-ERR wrong number of arguments for 'pexpiretime' command\r\n",
            ),
            (
                "PERSIST a b",
                "-ERR wrong number of arguments for 'persist' command\r\n",
            ),
        ]);
    }

    #[test]
    fn persist_removes_the_expiry() {
        Harness::new().check(&[
            ("SET k v EX 100", "+OK\r\n"),
            ("PERSIST k", ":1\r\n"),
            ("PERSIST k", ":0\r\n"),
            ("TTL k", ":-1\r\n"),
            ("PERSIST missing", ":0\r\n"),
            ("GET k", "$1\r\nv\r\n"),
        ]);
    }
}
