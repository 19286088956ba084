//! Keyspace commands: DEL UNLINK EXISTS TYPE KEYS SCAN RANDOMKEY DBSIZE FLUSHALL FLUSHDB.
//! Every value is a string, so `TYPE` and `SCAN … TYPE` know only `string` and `none`.

use std::hash::{BuildHasher, RandomState};

use larder_proto::ErrorCode;
use larder_store::Store;

use super::glob;
use crate::resp::ctx::{CmdError, CmdResult, CommandSpec, Ctx, parse_i64, parse_u64, spec};

const READ: &[&str] = &["readonly"];
const READ_FAST: &[&str] = &["readonly", "fast"];
const WRITE: &[&str] = &["write"];
const NO_KEYS: (i32, i32, i32) = (0, 0, 0);
const ALL_KEYS: (i32, i32, i32) = (1, -1, 1);

/// The keyspace family's entries in the command table.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    spec(
        "del",
        -2,
        WRITE,
        ALL_KEYS,
        "Deletes keys; returns how many existed.",
        "1.0.0",
        del,
    ),
    spec(
        "unlink",
        -2,
        &["write", "fast"],
        ALL_KEYS,
        "Deletes keys like DEL (memory is always freed at once here).",
        "4.0.0",
        del,
    ),
    spec(
        "exists",
        -2,
        READ_FAST,
        ALL_KEYS,
        "Counts the given keys that exist, repeats included.",
        "1.0.0",
        exists,
    ),
    spec(
        "type",
        2,
        READ_FAST,
        (1, 1, 1),
        "Returns the type of a key's value: string, or none without a key.",
        "1.0.0",
        type_of,
    ),
    spec(
        "keys",
        2,
        READ,
        NO_KEYS,
        "Returns every key matching a glob pattern (walks the whole keyspace).",
        "1.0.0",
        keys,
    ),
    spec(
        "scan",
        -2,
        READ,
        NO_KEYS,
        "Returns a page of keys and the cursor of the next page.",
        "2.8.0",
        scan,
    ),
    spec(
        "randomkey",
        1,
        READ,
        NO_KEYS,
        "Returns a key picked at random, or nothing if there are none.",
        "1.0.0",
        randomkey,
    ),
    spec(
        "dbsize",
        1,
        READ_FAST,
        NO_KEYS,
        "Returns the number of keys.",
        "1.0.0",
        dbsize,
    ),
    spec(
        "flushall",
        -1,
        WRITE,
        NO_KEYS,
        "Removes every key.",
        "1.0.0",
        flush,
    ),
    spec(
        "flushdb",
        -1,
        WRITE,
        NO_KEYS,
        "Removes every key (there is one database).",
        "1.0.0",
        flush,
    ),
];

fn del(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let node = ctx.node;
    let deleted = argv[1..].iter().filter(|key| node.delete(key)).count();
    ctx.uint(deleted as u64);
    Ok(())
}

fn exists(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let node = ctx.node;
    let found = argv[1..].iter().filter(|key| node.contains(key)).count();
    ctx.uint(found as u64);
    Ok(())
}

fn type_of(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let name: &[u8] = if ctx.node.contains(argv[1]) {
        b"string"
    } else {
        b"none"
    };
    ctx.simple(name);
    Ok(())
}

/// Keys per store scan while `KEYS` walks the keyspace: each page holds a shard's read lock
/// only briefly, so writers are not stalled for the whole walk.
const KEYS_PAGE: usize = 1024;

fn keys(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let pattern = argv[1];
    let everything = pattern == b"*";
    let mut found = Vec::new();
    let mut cursor = 0;
    loop {
        let (next, page) = ctx.node.store.scan(cursor, KEYS_PAGE);
        found.extend(
            page.into_iter()
                .filter(|key| everything || glob::matches(pattern, key)),
        );
        if next == 0 {
            break;
        }
        cursor = next;
    }
    // A scan may return a key twice if the store moved it meanwhile; KEYS lists each once.
    found.sort_unstable();
    found.dedup();
    write_keys(ctx, &found);
    Ok(())
}

fn write_keys(ctx: &mut Ctx<'_>, keys: &[Vec<u8>]) {
    ctx.array(keys.len());
    for key in keys {
        ctx.bulk(key);
    }
}

/// The options of `SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]`.
struct ScanOptions<'a> {
    /// `None` matches every key (no pattern, or a lone `*`).
    pattern: Option<&'a [u8]>,
    count: usize,
    /// Whether the `TYPE` filter (if any) admits strings, the only type there is.
    strings: bool,
}

impl<'a> ScanOptions<'a> {
    /// Reads option pairs; the last of a repeated option wins, as in Redis.
    fn parse(options: &[&'a [u8]]) -> Result<Self, CmdError> {
        let mut parsed = Self {
            pattern: None,
            count: 10,
            strings: true,
        };
        for pair in options.chunks(2) {
            let &[name, value] = pair else {
                return Err(CmdError::syntax());
            };
            match name.to_ascii_uppercase().as_slice() {
                b"MATCH" => parsed.pattern = (value != b"*").then_some(value),
                b"COUNT" => {
                    let count = parse_i64(value)?;
                    if count < 1 {
                        return Err(CmdError::syntax());
                    }
                    parsed.count = usize::try_from(count).unwrap_or(usize::MAX);
                }
                b"TYPE" => parsed.strings = value.eq_ignore_ascii_case(b"string"),
                _ => return Err(CmdError::syntax()),
            }
        }
        Ok(parsed)
    }
}

fn scan(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let cursor = parse_u64(argv[1])
        .map_err(|_| CmdError::new(ErrorCode::InvalidArgument, "invalid cursor"))?;
    let options = ScanOptions::parse(&argv[2..])?;
    let store = &ctx.node.store;
    // The store reserves room for `count` keys: never ask for more than there are. The one
    // extra lets a page that holds every key also report the end of the scan.
    let count = options.count.min(store.len().saturating_add(1));
    let (next, mut keys) = store.scan(cursor, count);
    // Filters apply after the page is taken, so a page can come back short or empty while
    // the cursor still moves on, as in Redis.
    keys.retain(|key| {
        options.strings
            && options
                .pattern
                .is_none_or(|pattern| glob::matches(pattern, key))
    });
    ctx.array(2);
    ctx.bulk(next.to_string().as_bytes());
    write_keys(ctx, &keys);
    Ok(())
}

fn randomkey(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    let key = random_key(&ctx.node.store);
    ctx.opt_bulk(key.as_deref());
    Ok(())
}

/// A key picked at random, without walking the store: one page of one key from a random
/// cursor. The store's cursor holds the shard above bit 40 and the slot below it, so a random
/// shard and a slot below the average shard's item count land on a random live region. If the
/// layout ever changes the answer stays a live key, only less random.
fn random_key(store: &Store) -> Option<Vec<u8>> {
    let items = u64::try_from(store.len()).unwrap_or(u64::MAX);
    if items == 0 {
        return None;
    }
    let shards = u64::try_from(store.shard_count()).unwrap_or(1).max(1);
    let per_shard = items.div_ceil(shards);
    // Each `RandomState` is freshly keyed, so hashing anything gives a new random number.
    let random = RandomState::new().hash_one(items);
    let shard = random % shards;
    let slot = (random / shards) % per_shard;
    let cursor = (shard << 40) | (slot & ((1 << 40) - 1));
    let (_, mut keys) = store.scan(cursor, 1);
    if keys.is_empty() {
        // The random position was past the last live key: take the first one instead.
        keys = store.scan(0, 1).1;
    }
    keys.pop()
}

fn dbsize(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    ctx.uint(u64::try_from(ctx.node.store.len()).unwrap_or(u64::MAX));
    Ok(())
}

fn flush(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    // ASYNC and SYNC are accepted for compatibility; clearing is always immediate here.
    match &argv[1..] {
        [] => {}
        [mode] if mode.eq_ignore_ascii_case(b"ASYNC") || mode.eq_ignore_ascii_case(b"SYNC") => {}
        _ => return Err(CmdError::syntax()),
    }
    ctx.node.flush();
    ctx.ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::testing::Harness;

    const EMPTY_SCAN: &str = "*2\r\n$1\r\n0\r\n*0\r\n";

    /// The bulk strings of a flat array reply, sorted.
    fn strings_of(reply: &str) -> Vec<String> {
        let mut lines = reply.split("\r\n");
        let header = lines.next().unwrap();
        let n: usize = header.strip_prefix('*').unwrap().parse().unwrap();
        let mut out: Vec<String> = (0..n)
            .map(|_| {
                lines.next().unwrap();
                lines.next().unwrap().to_owned()
            })
            .collect();
        out.sort();
        out
    }

    /// The cursor and keys of a SCAN reply.
    fn scan_page(reply: &str) -> (String, Vec<String>) {
        let rest = reply.strip_prefix("*2\r\n$").unwrap();
        let (_, rest) = rest.split_once("\r\n").unwrap();
        let (cursor, keys) = rest.split_once("\r\n").unwrap();
        (cursor.to_owned(), strings_of(keys))
    }

    #[test]
    fn delete_exists_and_type() {
        Harness::new().check(&[
            ("MSET a 1 b 2 c 3", "+OK\r\n"),
            ("EXISTS a", ":1\r\n"),
            ("EXISTS a a b x", ":3\r\n"),
            ("TYPE a", "+string\r\n"),
            ("TYPE x", "+none\r\n"),
            ("DEL a x", ":1\r\n"),
            ("DEL a", ":0\r\n"),
            ("DEL b b", ":1\r\n"),
            ("UNLINK c x", ":1\r\n"),
            ("EXISTS a b c", ":0\r\n"),
            (
                "DEL",
                "-ERR wrong number of arguments for 'del' command\r\n",
            ),
            (
                "UNLINK",
                "-ERR wrong number of arguments for 'unlink' command\r\n",
            ),
            (
                "EXISTS",
                "-ERR wrong number of arguments for 'exists' command\r\n",
            ),
            (
                "TYPE a b",
                "-ERR wrong number of arguments for 'type' command\r\n",
            ),
        ]);
    }

    #[test]
    fn keys_filters_by_glob() {
        let mut h = Harness::new();
        h.check(&[("MSET hello 1 hallo 2 hxllo 3 hllo 4 heeello 5", "+OK\r\n")]);
        for (pattern, want) in [
            ("*", &["hallo", "heeello", "hello", "hllo", "hxllo"][..]),
            ("h?llo", &["hallo", "hello", "hxllo"]),
            ("h*llo", &["hallo", "heeello", "hello", "hllo", "hxllo"]),
            ("h[ae]llo", &["hallo", "hello"]),
            ("h[^e]llo", &["hallo", "hxllo"]),
            ("h[a-b]llo", &["hallo"]),
            ("nothing*", &[]),
        ] {
            assert_eq!(strings_of(&h.run(&["KEYS", pattern])), want, "{pattern}");
        }
        h.check(&[
            ("SET h*llo 6", "+OK\r\n"),
            ("KEYS h\\*llo", "*1\r\n$5\r\nh*llo\r\n"),
            (
                "KEYS",
                "-ERR wrong number of arguments for 'keys' command\r\n",
            ),
        ]);
        assert_eq!(h.run(&["KEYS", "*"]).lines().next(), Some("*6"));
    }

    #[test]
    fn keys_sees_the_empty_key_only_for_a_lone_star() {
        let mut h = Harness::new();
        assert_eq!(h.run(&["SET", "", "v"]), "+OK\r\n");
        assert_eq!(h.run(&["KEYS", "*"]), "*1\r\n$0\r\n\r\n");
        assert_eq!(h.run(&["KEYS", "**"]), "*0\r\n");
        assert_eq!(
            h.run(&["SCAN", "0", "MATCH", "*"]),
            "*2\r\n$1\r\n0\r\n*1\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn scan_visits_every_key_once_with_filters() {
        let mut h = Harness::new();
        for i in 0..300 {
            let key = format!("key:{i}");
            assert_eq!(h.run(&["SET", &key, "v"]), "+OK\r\n");
        }
        let mut seen = BTreeSet::new();
        let mut matched = 0;
        let mut cursor = "0".to_owned();
        for page in 0.. {
            assert!(page < 1000, "scan does not end");
            let reply = h.run(&["SCAN", &cursor, "MATCH", "key:1*", "COUNT", "7"]);
            let (next, keys) = scan_page(&reply);
            assert!(keys.len() <= 7, "{reply}");
            matched += keys.len();
            seen.extend(keys);
            cursor = next;
            if cursor == "0" {
                break;
            }
        }
        // key:1, key:10..19, key:100..199.
        assert_eq!(seen.len(), 111);
        assert_eq!(matched, 111);
        assert!(seen.iter().all(|key| key.starts_with("key:1")));

        let (_, all) = scan_page(&h.run(&["SCAN", "0", "COUNT", "1000", "TYPE", "STRING"]));
        assert_eq!(all.len(), 300);
        let (_, first) = scan_page(&h.run(&["SCAN", "0"]));
        assert!(!first.is_empty() && first.len() <= 10);
        let (_, hashes) = scan_page(&h.run(&["SCAN", "0", "COUNT", "1000", "TYPE", "hash"]));
        assert!(hashes.is_empty());
        let (_, one) =
            scan_page(&h.run(&["SCAN", "0", "count", "1", "match", "nope", "MATCH", "*"]));
        assert_eq!(one.len(), 1);
        let (cursor, every) = scan_page(&h.run(&["SCAN", "0", "COUNT", "9223372036854775807"]));
        assert_eq!((cursor.as_str(), every.len()), ("0", 300));
    }

    #[test]
    fn scan_errors_and_odd_cursors() {
        Harness::new().check(&[
            ("SCAN 0", EMPTY_SCAN),
            ("SCAN 18446744073709551615", EMPTY_SCAN),
            ("SCAN 00", EMPTY_SCAN),
            ("SCAN abc", "-ERR invalid cursor\r\n"),
            ("SCAN -1", "-ERR invalid cursor\r\n"),
            ("SCAN 18446744073709551616", "-ERR invalid cursor\r\n"),
            ("SCAN 0 COUNT 0", "-ERR syntax error\r\n"),
            ("SCAN 0 COUNT -1", "-ERR syntax error\r\n"),
            (
                "SCAN 0 COUNT x",
                "-ERR value is not an integer or out of range\r\n",
            ),
            ("SCAN 0 COUNT", "-ERR syntax error\r\n"),
            ("SCAN 0 MATCH", "-ERR syntax error\r\n"),
            ("SCAN 0 MATCH a TYPE", "-ERR syntax error\r\n"),
            ("SCAN 0 BOGUS 1", "-ERR syntax error\r\n"),
            ("SCAN abc BOGUS", "-ERR invalid cursor\r\n"),
            (
                "SCAN",
                "-ERR wrong number of arguments for 'scan' command\r\n",
            ),
        ]);
    }

    #[test]
    fn randomkey_picks_live_keys_at_random() {
        let mut h = Harness::new();
        h.check(&[
            ("RANDOMKEY", "$-1\r\n"),
            ("SET only v", "+OK\r\n"),
            ("RANDOMKEY", "$4\r\nonly\r\n"),
            ("DEL only", ":1\r\n"),
            ("RANDOMKEY", "$-1\r\n"),
            (
                "RANDOMKEY x",
                "-ERR wrong number of arguments for 'randomkey' command\r\n",
            ),
        ]);
        for i in 0..100 {
            assert_eq!(h.run(&["SET", &format!("k{i}"), "v"]), "+OK\r\n");
        }
        let picks: BTreeSet<String> = (0..200)
            .map(|_| {
                let reply = h.run(&["RANDOMKEY"]);
                let key = reply.split("\r\n").nth(1).unwrap().to_owned();
                assert!(h.node.store.contains(key.as_bytes()), "{reply}");
                key
            })
            .collect();
        assert!(picks.len() > 20, "{picks:?}");
    }

    #[test]
    fn dbsize_and_flush() {
        Harness::new().check(&[
            ("DBSIZE", ":0\r\n"),
            ("MSET a 1 b 2", "+OK\r\n"),
            ("DBSIZE", ":2\r\n"),
            ("FLUSHALL BOGUS", "-ERR syntax error\r\n"),
            ("FLUSHDB ASYNC SYNC", "-ERR syntax error\r\n"),
            ("DBSIZE", ":2\r\n"),
            ("FLUSHALL", "+OK\r\n"),
            ("DBSIZE", ":0\r\n"),
            ("SET a 1", "+OK\r\n"),
            ("FLUSHDB", "+OK\r\n"),
            ("EXISTS a", ":0\r\n"),
            ("FLUSHALL async", "+OK\r\n"),
            ("FLUSHDB SYNC", "+OK\r\n"),
            ("FLUSHALL SYNC", "+OK\r\n"),
            (
                "DBSIZE x",
                "-ERR wrong number of arguments for 'dbsize' command\r\n",
            ),
        ]);
    }
}
