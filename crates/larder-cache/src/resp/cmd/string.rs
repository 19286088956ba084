//! String commands: GET SET SETNX SETEX PSETEX GETSET GETDEL GETEX MGET MSET MSETNX APPEND
//! STRLEN GETRANGE SETRANGE.

use std::time::Duration;

use larder_proto::ErrorCode;
use larder_proto::resp::encode;
use larder_store::{Expiry, SetMode, SetOptions, SetOutcome, Update};

use crate::node::read::Read;
use crate::node::write::{Change, SetResult};
use crate::resp::ctx::{CmdError, CmdResult, CommandSpec, Ctx, parse_i64, spec};
use crate::resp::deferred::Deferred;

const READ: &[&str] = &["readonly", "fast"];
const WRITE: &[&str] = &["write", "denyoom"];
const WRITE_FAST: &[&str] = &["write", "denyoom", "fast"];

/// The string family's entries in the command table.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    spec(
        "get",
        2,
        READ,
        (1, 1, 1),
        "Returns the string value of a key.",
        "1.0.0",
        get,
    ),
    spec(
        "set",
        -3,
        WRITE,
        (1, 1, 1),
        "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.",
        "1.0.0",
        set,
    ),
    spec(
        "setnx",
        3,
        WRITE_FAST,
        (1, 1, 1),
        "Set the string value of a key only when the key doesn't exist.",
        "1.0.0",
        setnx,
    ),
    spec(
        "setex",
        4,
        WRITE,
        (1, 1, 1),
        "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.",
        "2.0.0",
        setex,
    ),
    spec(
        "psetex",
        4,
        WRITE,
        (1, 1, 1),
        "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.",
        "2.6.0",
        psetex,
    ),
    spec(
        "getset",
        3,
        WRITE_FAST,
        (1, 1, 1),
        "Returns the previous string value of a key after setting it to a new value.",
        "1.0.0",
        getset,
    ),
    spec(
        "getdel",
        2,
        &["write", "fast"],
        (1, 1, 1),
        "Returns the string value of a key after deleting the key.",
        "6.2.0",
        getdel,
    ),
    spec(
        "getex",
        -2,
        &["write", "fast"],
        (1, 1, 1),
        "Returns the string value of a key after setting its expiration time.",
        "6.2.0",
        getex,
    ),
    spec(
        "mget",
        -2,
        READ,
        (1, -1, 1),
        "Atomically returns the string values of one or more keys.",
        "1.0.0",
        mget,
    ),
    spec(
        "mset",
        -3,
        WRITE,
        (1, -1, 2),
        "Atomically creates or modifies the string values of one or more keys.",
        "1.0.1",
        mset,
    ),
    spec(
        "msetnx",
        -3,
        WRITE,
        (1, -1, 2),
        "Atomically modifies the string values of one or more keys only when all keys don't exist.",
        "1.0.1",
        msetnx,
    ),
    spec(
        "append",
        3,
        WRITE_FAST,
        (1, 1, 1),
        "Appends a string to the value of a key. Creates the key if it doesn't exist.",
        "2.0.0",
        append,
    ),
    spec(
        "strlen",
        2,
        READ,
        (1, 1, 1),
        "Returns the length of a string value.",
        "2.2.0",
        strlen,
    ),
    spec(
        "getrange",
        4,
        &["readonly"],
        (1, 1, 1),
        "Returns a substring of the string stored at a key.",
        "2.4.0",
        getrange,
    ),
    spec(
        "setrange",
        4,
        WRITE,
        (1, 1, 1),
        "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.",
        "2.2.0",
        setrange,
    ),
];

fn get(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let out = &mut *ctx.out;
    match ctx
        .node
        .read(argv[1], |entry, _| encode::bulk(out, entry.value))
    {
        Read::Found(()) => {}
        Read::Missing => ctx.null(),
        Read::Load(pending) => ctx.deferred = Some(Deferred::Get(pending)),
    }
    Ok(())
}

/// Runs a set through the node: a write-through set is deferred until its origin confirms.
/// Returns the outcome of a set done at once.
fn set_with(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    value: &[u8],
    opts: SetOptions,
) -> Result<Option<SetOutcome>, CmdError> {
    match ctx.node.set(key, value, opts)? {
        SetResult::Done(outcome) => Ok(Some(outcome)),
        SetResult::Origin(pending) => {
            ctx.deferred = Some(Deferred::Set(pending));
            Ok(None)
        }
    }
}

/// Reads an expiry option's argument (`EX 10`, `PXAT 1700000000000`) as an [`Expiry`], with
/// Redis's checks: positive, and no overflow once in milliseconds.
pub(crate) fn expiry_option(command: &str, option: &[u8], arg: &[u8]) -> Result<Expiry, CmdError> {
    let n = parse_i64(arg)?;
    let invalid = || CmdError::invalid_expire(command);
    if n <= 0 {
        return Err(invalid());
    }
    let n = n.unsigned_abs();
    let ms = |scale: u64| n.checked_mul(scale).filter(|&ms| ms <= i64::MAX as u64);
    match option.to_ascii_uppercase().as_slice() {
        b"EX" => ms(1000).map(|ms| Expiry::In(Duration::from_millis(ms))),
        b"PX" => ms(1).map(|ms| Expiry::In(Duration::from_millis(ms))),
        b"EXAT" => ms(1000).map(Expiry::At),
        b"PXAT" => ms(1).map(Expiry::At),
        _ => return Err(CmdError::syntax()),
    }
    .ok_or_else(invalid)
}

fn set(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let mut opts = SetOptions::default();
    let mut expiry_given = false;
    let mut i = 3;
    while i < argv.len() {
        let option = argv[i].to_ascii_uppercase();
        match option.as_slice() {
            b"NX" if opts.mode == SetMode::Always => opts.mode = SetMode::IfAbsent,
            b"XX" if opts.mode == SetMode::Always => opts.mode = SetMode::IfPresent,
            b"GET" => opts.return_previous = true,
            b"KEEPTTL" if !expiry_given => {
                opts.expiry = Expiry::Keep;
                expiry_given = true;
            }
            b"EX" | b"PX" | b"EXAT" | b"PXAT" if !expiry_given => {
                let arg = argv.get(i + 1).ok_or_else(CmdError::syntax)?;
                opts.expiry = expiry_option("set", &option, arg)?;
                expiry_given = true;
                i += 1;
            }
            _ => return Err(CmdError::syntax()),
        }
        i += 1;
    }
    let Some(outcome) = set_with(ctx, argv[1], argv[2], opts)? else {
        return Ok(());
    };
    if opts.return_previous {
        ctx.opt_bulk(outcome.previous.as_ref().map(|item| item.value.as_slice()));
    } else if outcome.stored {
        ctx.ok();
    } else {
        ctx.null();
    }
    Ok(())
}

fn setnx(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let opts = SetOptions::mode(SetMode::IfAbsent);
    if let Some(outcome) = set_with(ctx, argv[1], argv[2], opts)? {
        ctx.int(i64::from(outcome.stored));
    }
    Ok(())
}

fn setex_with(ctx: &mut Ctx<'_>, argv: &[&[u8]], name: &str, option: &[u8]) -> CmdResult {
    let expiry = expiry_option(name, option, argv[2])?;
    let opts = SetOptions {
        expiry,
        ..SetOptions::default()
    };
    if set_with(ctx, argv[1], argv[3], opts)?.is_some() {
        ctx.ok();
    }
    Ok(())
}

fn setex(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    setex_with(ctx, argv, "setex", b"EX")
}

fn psetex(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    setex_with(ctx, argv, "psetex", b"PX")
}

fn getset(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let opts = SetOptions {
        return_previous: true,
        ..SetOptions::default()
    };
    if let Some(outcome) = set_with(ctx, argv[1], argv[2], opts)? {
        ctx.opt_bulk(outcome.previous.as_ref().map(|item| item.value.as_slice()));
    }
    Ok(())
}

fn getdel(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let value = ctx
        .node
        .update(argv[1], Change::Copy, |entry| match entry {
            Some(entry) => (Update::Delete, Some(entry.value.to_vec())),
            None => (Update::Keep, None),
        })?;
    ctx.opt_bulk(value.as_deref());
    Ok(())
}

fn getex(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let change = match argv.get(2..).unwrap_or_default() {
        [] => None,
        [persist] if persist.eq_ignore_ascii_case(b"PERSIST") => Some(Expiry::Never),
        [option, arg] => Some(expiry_option("getex", option, arg)?),
        _ => return Err(CmdError::syntax()),
    };
    // GETEX changes only the expiry, but is refused on a write-through key like other
    // commands that are not plain SETs or deletes (see `Change`).
    let value = ctx
        .node
        .update(argv[1], Change::Value, |entry| match (entry, change) {
            (Some(entry), Some(expiry)) => (Update::Expire(expiry), Some(entry.value.to_vec())),
            (Some(entry), None) => (Update::Keep, Some(entry.value.to_vec())),
            (None, _) => (Update::Keep, None),
        })?;
    ctx.opt_bulk(value.as_deref());
    Ok(())
}

fn mget(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let keys = &argv[1..];
    if ctx.node.any_origin(keys) {
        let keys = keys.iter().map(|&key| key.into()).collect();
        ctx.deferred = Some(Deferred::MGet(keys));
        return Ok(());
    }
    let start = ctx.out.len();
    ctx.array(keys.len());
    for key in keys {
        let out = &mut *ctx.out;
        if let Read::Missing = ctx
            .node
            .read(key, |entry, _| encode::bulk(out, entry.value))
        {
            ctx.null();
        }
        // A small request can ask for an enormous reply (the same big key many times).
        if ctx.out.len() - start > ctx.node.max_request {
            ctx.out.truncate(start);
            return Err(CmdError::new(
                ErrorCode::TooLarge,
                "reply larger than max_request; ask for fewer keys",
            ));
        }
    }
    Ok(())
}

/// A key and its value.
type Pair<'a> = (&'a [u8], &'a [u8]);

/// The key/value pairs of `MSET`-like commands.
fn pairs<'a>(argv: &[&'a [u8]], name: &str) -> Result<Vec<Pair<'a>>, CmdError> {
    if argv.len().is_multiple_of(2) {
        return Err(CmdError::arity(name));
    }
    Ok(argv[1..].chunks_exact(2).map(|kv| (kv[0], kv[1])).collect())
}

fn mset(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    ctx.node.set_each(&pairs(argv, "mset")?)?;
    ctx.ok();
    Ok(())
}

fn msetnx(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let stored = ctx.node.set_all_if_absent(&pairs(argv, "msetnx")?)?;
    ctx.int(i64::from(stored));
    Ok(())
}

/// Refuses a string that would grow past the largest bulk string the node accepts.
fn check_len(ctx: &Ctx<'_>, len: usize) -> CmdResult {
    if len > ctx.node.limits.max_bulk_len {
        return Err(CmdError::new(
            ErrorCode::TooLarge,
            "string exceeds maximum allowed size (max_bulk)",
        ));
    }
    Ok(())
}

fn append(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let limit = ctx.node.limits.max_bulk_len;
    let len = ctx.node.update(argv[1], Change::Value, |entry| {
        let mut value = entry.map(|e| e.value.to_vec()).unwrap_or_default();
        if value.len() + argv[2].len() > limit {
            return (Update::Keep, None);
        }
        value.extend_from_slice(argv[2]);
        let len = value.len();
        let expiry = Expiry::Keep;
        (Update::Write { value, expiry }, Some(len))
    })?;
    match len {
        Some(len) => ctx.uint(len as u64),
        None => check_len(ctx, usize::MAX)?,
    }
    Ok(())
}

fn strlen(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let len = ctx.node.inspect(argv[1], |entry| entry.value.len());
    ctx.uint(len.unwrap_or(0) as u64);
    Ok(())
}

/// Redis's `GETRANGE` bounds: negative indexes count from the end; the range is clamped.
fn range(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    let len = i64::try_from(len).ok()?;
    if len == 0 || (start < 0 && end < 0 && start > end) {
        return None;
    }
    let fix = |i: i64| if i < 0 { (len + i).max(0) } else { i };
    let (start, end) = (fix(start), fix(end).min(len - 1));
    if start > end {
        return None;
    }
    Some((usize::try_from(start).ok()?, usize::try_from(end).ok()?))
}

fn getrange(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let (start, end) = (parse_i64(argv[2])?, parse_i64(argv[3])?);
    let out = &mut *ctx.out;
    let found = ctx.node.inspect(argv[1], |entry| {
        let part = range(entry.value.len(), start, end)
            .and_then(|(s, e)| entry.value.get(s..=e))
            .unwrap_or_default();
        encode::bulk(out, part);
    });
    if found.is_none() {
        ctx.bulk(b"");
    }
    Ok(())
}

fn setrange(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let offset = parse_i64(argv[2])?;
    let offset = usize::try_from(offset)
        .map_err(|_| CmdError::new(ErrorCode::InvalidArgument, "offset is out of range"))?;
    let patch = argv[3];
    if !patch.is_empty() {
        check_len(ctx, offset.saturating_add(patch.len()))?;
    }
    let len = ctx.node.update(argv[1], Change::Value, |entry| {
        let mut value = entry.map(|e| e.value.to_vec()).unwrap_or_default();
        if patch.is_empty() {
            return (Update::Keep, value.len());
        }
        let end = offset + patch.len();
        if value.len() < end {
            value.resize(end, 0);
        }
        value[offset..end].copy_from_slice(patch);
        let len = value.len();
        (
            Update::Write {
                value,
                expiry: Expiry::Keep,
            },
            len,
        )
    })?;
    ctx.uint(len as u64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::Harness;

    #[test]
    fn get_and_set_follow_redis() {
        Harness::new().check(&[
            ("GET k", "$-1\r\n"),
            ("SET k v", "+OK\r\n"),
            ("GET k", "$1\r\nv\r\n"),
            ("SET k w NX", "$-1\r\n"),
            ("SET k w XX", "+OK\r\n"),
            ("SET n w XX", "$-1\r\n"),
            ("SET k x GET", "$1\r\nw\r\n"),
            ("SET k y NX GET", "$1\r\nx\r\n"),
            (
                "SET k v EX 0",
                "-ERR invalid expire time in 'set' command\r\n",
            ),
            (
                "SET k v EX -1",
                "-ERR invalid expire time in 'set' command\r\n",
            ),
            (
                "SET k v EX 9223372036854775807",
                "-ERR invalid expire time in 'set' command\r\n",
            ),
            (
                "SET k v EX ten",
                "-ERR value is not an integer or out of range\r\n",
            ),
            ("SET k v NX XX", "-ERR syntax error\r\n"),
            ("SET k v EX 10 PX 10", "-ERR syntax error\r\n"),
            ("SET k v EX 10 KEEPTTL", "-ERR syntax error\r\n"),
            ("SET k v BOGUS", "-ERR syntax error\r\n"),
            ("SET k v EX", "-ERR syntax error\r\n"),
            (
                "SET k",
                "-ERR wrong number of arguments for 'set' command\r\n",
            ),
            ("get k", "$1\r\nx\r\n"),
        ]);
    }

    #[test]
    fn expiry_variants() {
        let mut h = Harness::new();
        h.check(&[
            ("SET k v EX 100", "+OK\r\n"),
            ("SET k v2 KEEPTTL", "+OK\r\n"),
            ("SETEX s 100 v", "+OK\r\n"),
            (
                "SETEX s 0 v",
                "-ERR invalid expire time in 'setex' command\r\n",
            ),
            ("PSETEX p 100000 v", "+OK\r\n"),
            ("SET old v PXAT 1", "+OK\r\n"),
            ("GET old", "$-1\r\n"),
            ("GETEX k PERSIST", "$2\r\nv2\r\n"),
            ("GETEX k EX 50", "$2\r\nv2\r\n"),
            ("GETEX k EX", "-ERR syntax error\r\n"),
            ("GETEX missing EX 5", "$-1\r\n"),
        ]);
        let ttl = h.node.store.ttl(b"k");
        assert!(
            matches!(ttl, larder_store::TtlState::ExpiresIn(ms) if ms > 49_000 && ms <= 50_000)
        );
        assert!(matches!(
            h.node.store.ttl(b"s"),
            larder_store::TtlState::ExpiresIn(_)
        ));
    }

    #[test]
    fn multi_key_and_read_modify_write() {
        Harness::new().check(&[
            ("MSET a 1 b 2", "+OK\r\n"),
            (
                "MSET a 1 b",
                "-ERR wrong number of arguments for 'mset' command\r\n",
            ),
            ("MGET a b c", "*3\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n"),
            (
                "MSETNX c 3 a",
                "-ERR wrong number of arguments for 'msetnx' command\r\n",
            ),
            ("MSETNX c 3 d 4", ":1\r\n"),
            ("MSETNX e 5 a 9", ":0\r\n"),
            ("GET e", "$-1\r\n"),
            ("SETNX a x", ":0\r\n"),
            ("SETNX f x", ":1\r\n"),
            ("GETSET a z", "$1\r\n1\r\n"),
            ("GETDEL a", "$1\r\nz\r\n"),
            ("GETDEL a", "$-1\r\n"),
            ("APPEND s Hello", ":5\r\n"),
            ("APPEND s _World", ":11\r\n"),
            ("STRLEN s", ":11\r\n"),
            ("STRLEN nothing", ":0\r\n"),
            ("GETRANGE s 0 4", "$5\r\nHello\r\n"),
            ("GETRANGE s -5 -1", "$5\r\nWorld\r\n"),
            ("GETRANGE s 5 1", "$0\r\n\r\n"),
            ("GETRANGE s 0 100", "$11\r\nHello_World\r\n"),
            ("GETRANGE s -1 -5", "$0\r\n\r\n"),
            ("GETRANGE nothing 0 -1", "$0\r\n\r\n"),
            (
                "GETRANGE s x 1",
                "-ERR value is not an integer or out of range\r\n",
            ),
            ("SETRANGE s 6 Redis", ":11\r\n"),
            ("GET s", "$11\r\nHello_Redis\r\n"),
            ("SETRANGE pad 3 x", ":4\r\n"),
            ("GET pad", "$4\r\n\0\0\0x\r\n"),
            ("SETRANGE none 5 ", ":0\r\n"),
            ("SETRANGE s -1 x", "-ERR offset is out of range\r\n"),
            (
                "SETRANGE s 99999999999 x",
                "-ERR string exceeds maximum allowed size (max_bulk)\r\n",
            ),
        ]);
    }

    #[test]
    fn the_store_keeps_values_up_to_max_bulk_whatever_the_wire() {
        use larder_store::{SetOptions, StoreError};
        let h = Harness::with_config(crate::config::CacheConfig {
            max_memory: "16mb".into(),
            max_bulk: "1kb".into(),
            ..crate::config::CacheConfig::default()
        });
        let store = &h.node.store;
        assert!(
            store
                .set(b"fits", &[b'v'; 1024], SetOptions::default())
                .is_ok()
        );
        assert!(matches!(
            store.set(b"long", &[b'v'; 1025], SetOptions::default()),
            Err(StoreError::TooLarge { .. })
        ));
        let h = Harness::new();
        let five_mb = vec![b'v'; 5 << 20];
        assert!(
            h.node
                .store
                .set(b"big", &five_mb, SetOptions::default())
                .is_ok(),
            "a value larger than a 1 MiB shard's share of 16 MB is kept"
        );
    }

    #[test]
    fn replies_past_max_request_are_refused_whole() {
        let mut h = Harness::with_config(crate::config::CacheConfig {
            max_memory: "16mb".into(),
            max_bulk: "1kb".into(),
            max_request: "4kb".into(),
            ..crate::config::CacheConfig::default()
        });
        let value = "v".repeat(1000);
        assert_eq!(h.run(&["SET", "big", &value]), "+OK\r\n");
        let mut words = vec!["MGET"];
        words.extend(std::iter::repeat_n("big", 5));
        assert_eq!(
            h.run(&words),
            "-ERR reply larger than max_request; ask for fewer keys\r\n"
        );
        words.truncate(4);
        assert!(h.run(&words).starts_with("*3\r\n$1000\r\n"));
    }

    #[test]
    fn oversized_values_are_refused_and_nothing_changes() {
        let mut h = Harness::new();
        h.check(&[("SET k small", "+OK\r\n")]);
        let big = vec![b'x'; 17 << 20];
        let reply = h.run_bytes(&[b"SET", b"k", &big]);
        assert!(reply.starts_with("-ERR entry of "), "{reply}");
        h.check(&[("GET k", "$5\r\nsmall\r\n")]);
    }
}
