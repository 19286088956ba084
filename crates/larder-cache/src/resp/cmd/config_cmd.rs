//! CONFIG: the parameters Redis clients read (`maxmemory`, `maxmemory-policy`, `save`,
//! `appendonly`, …) with their live values, and Redis's glob matching for `CONFIG GET`.
//!
//! `CONFIG SET` changes `maxmemory` and `maxmemory-policy` while the node runs (the store
//! rebuilds one shard at a time and evicts down to a smaller bound at once). Other parameters
//! are accepted only at the value in effect (clients and test suites often send
//! `CONFIG SET save ""`); anything else is refused with Redis's `CONFIG SET failed` error,
//! naming what to change instead. Every pair is checked before anything changes, so a refused
//! `CONFIG SET` with several parameters leaves all of them as they were.

use larder_proto::ErrorCode;
use larder_store::Policy;

use crate::config::parse_bytes;
use crate::resp::cmd::container::{HELP, dispatch};
use crate::resp::ctx::{CmdError, CmdResult, CommandSpec, Ctx, spec};

const ADMIN: &[&str] = &["admin", "noscript", "loading", "stale"];

/// CONFIG's subcommands.
pub(super) static SUBCOMMANDS: &[CommandSpec] = &[
    spec(
        "get",
        -3,
        ADMIN,
        (0, 0, 0),
        "Replies the parameters matching any of the glob patterns, with their values.",
        "2.0.0",
        get,
    ),
    spec(
        "set",
        -4,
        ADMIN,
        (0, 0, 0),
        "Sets parameters; larder accepts only the values already in effect.",
        "2.0.0",
        set,
    ),
    spec(
        "resetstat",
        2,
        ADMIN,
        (0, 0, 0),
        "Accepted for compatibility; larder's counters run from start.",
        "2.0.0",
        resetstat,
    ),
    spec(
        "rewrite",
        2,
        ADMIN,
        (0, 0, 0),
        "Refused: larder does not write its configuration file.",
        "2.8.0",
        rewrite,
    ),
    HELP,
];

/// CONFIG: runs the subcommand.
pub(super) fn config(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    dispatch(ctx, argv)
}

/// The parameters larder reports, in the order replies list them.
const PARAMS: [&str; 8] = [
    "maxmemory",
    "maxmemory-policy",
    "maxclients",
    "timeout",
    "proto-max-bulk-len",
    "save",
    "appendonly",
    "databases",
];

/// A parameter's value as `CONFIG GET` shows it; memory and policy are the store's live ones.
fn current(ctx: &Ctx<'_>, param: &str) -> String {
    let config = &ctx.node.config;
    match param {
        "maxmemory" => ctx.node.store.stats().capacity.to_string(),
        "maxmemory-policy" => ctx.node.store.policy().name().to_owned(),
        "maxclients" => config.max_clients.to_string(),
        "timeout" => config.idle_timeout_secs.to_string(),
        "proto-max-bulk-len" => ctx.node.limits.max_bulk_len.to_string(),
        "save" => String::new(),
        "appendonly" => "no".to_owned(),
        _ => "1".to_owned(),
    }
}

fn get(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let patterns = &argv[2..];
    let found: Vec<&str> = PARAMS
        .into_iter()
        .filter(|param| patterns.iter().any(|p| glob_match(p, param.as_bytes())))
        .collect();
    ctx.map(found.len());
    for param in found {
        ctx.bulk(param.as_bytes());
        let value = current(ctx, param);
        ctx.bulk(value.as_bytes());
    }
    Ok(())
}

/// Redis's error for a value `CONFIG SET` will not take.
fn failed(name: &str, why: &str) -> CmdError {
    CmdError::new(
        ErrorCode::InvalidArgument,
        format!("CONFIG SET failed (possibly related to argument '{name}') - {why}"),
    )
}

fn set(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    if !argv.len().is_multiple_of(2) {
        return Err(CmdError::arity("config|set"));
    }
    // Every name is checked before any value, as Redis does.
    let mut pairs: Vec<(&str, String, &[u8])> = Vec::new();
    for pair in argv[2..].chunks_exact(2) {
        let name = String::from_utf8_lossy(pair[0]).into_owned();
        let Some(param) = PARAMS
            .into_iter()
            .find(|param| param.as_bytes().eq_ignore_ascii_case(pair[0]))
        else {
            return Err(CmdError::new(
                ErrorCode::InvalidArgument,
                format!("Unknown option or number of arguments for CONFIG SET - '{name}'"),
            ));
        };
        if pairs.iter().any(|(seen, _, _)| *seen == param) {
            return Err(failed(&name, "duplicate parameter"));
        }
        pairs.push((param, name, pair[1]));
    }
    let (mut policy, mut memory) = (None, None);
    for (param, name, value) in &pairs {
        match check(ctx, param, name, value)? {
            Some(Change::Memory(bytes)) => memory = Some(bytes),
            Some(Change::Policy(to)) => policy = Some(to),
            None => {}
        }
    }
    if policy.is_some() || memory.is_some() {
        ctx.node
            .store
            .reconfigure(policy, memory)
            .map_err(|e| failed("maxmemory", &e.to_string()))?;
    }
    ctx.ok();
    Ok(())
}

/// A setting `CONFIG SET` changes while the node runs.
enum Change {
    Memory(u64),
    Policy(Policy),
}

/// The policies `CONFIG SET maxmemory-policy` understands, in Redis's error wording.
const POLICY_CHOICES: &str = "argument(s) must be one of the following: lru, sieve, s3fifo, \
                              tinylfu, adaptive, allkeys-lru, allkeys-lfu";

/// A policy by larder's name or the Redis name of its nearest equivalent.
fn parse_policy(name: &str) -> Option<Policy> {
    match name.to_ascii_lowercase().as_str() {
        "allkeys-lru" => Some(Policy::Lru),
        "allkeys-lfu" => Some(Policy::TinyLfu),
        other => other.parse().ok(),
    }
}

/// What setting `param` to `value` would change; a value that cannot change is accepted only
/// if it is the one in effect.
fn check(ctx: &Ctx<'_>, param: &str, name: &str, value: &[u8]) -> Result<Option<Change>, CmdError> {
    let text = String::from_utf8_lossy(value);
    match param {
        "maxmemory" => {
            let bytes =
                parse_bytes(&text).map_err(|_| failed(name, "argument must be a memory value"))?;
            if bytes == 0 {
                return Err(failed(
                    name,
                    "larder needs a memory bound; 0 (unlimited) is not one",
                ));
            }
            return Ok(Some(Change::Memory(bytes)));
        }
        "maxmemory-policy" => {
            let policy = parse_policy(&text).ok_or_else(|| failed(name, POLICY_CHOICES))?;
            return Ok(Some(Change::Policy(policy)));
        }
        _ => {}
    }
    let unchanged = match param {
        "appendonly" => text.eq_ignore_ascii_case("no"),
        _ => text == current(ctx, param),
    };
    if unchanged {
        return Ok(None);
    }
    let why = match param {
        "save" | "appendonly" => "larder keeps no data on disk",
        "databases" => "larder has only database 0",
        _ => {
            "larder reads this from the node's configuration at start; change it there and restart"
        }
    };
    Err(failed(name, why))
}

/// Resets what `INFO` counts (stats, commandstats, keyspace hits and misses); `/metrics`
/// keeps its counters monotonic, as Prometheus wants them.
fn resetstat(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    ctx.node.metrics.reset(&ctx.node.store.stats());
    ctx.ok();
    Ok(())
}

fn rewrite(_ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    Err(CmdError::new(
        ErrorCode::InvalidArgument,
        "The server is running without a config file",
    ))
}

/// Redis's glob matching, case-insensitive as `CONFIG GET` and `COMMAND LIST` need (every
/// parameter and command name is lower-case).
pub(super) fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    crate::resp::cmd::glob::matches(&pattern.to_ascii_lowercase(), text)
}

#[cfg(test)]
mod tests {
    use super::glob_match;
    use crate::config::CacheConfig;
    use crate::resp::cmd::testing::Harness;

    #[test]
    fn globs_match_like_redis() {
        for (pattern, text, want) in [
            ("*", "maxmemory", true),
            ("max*", "maxmemory", true),
            ("MAX*", "maxmemory", true),
            ("*policy", "maxmemory-policy", true),
            ("max?emory", "maxmemory", true),
            ("max?emory", "maxmmemory", false),
            ("maxmemory", "maxmemory-policy", false),
            ("*mem*pol*", "maxmemory-policy", true),
            ("[a-m]axmemory", "maxmemory", true),
            ("[^m]axmemory", "maxmemory", false),
            ("[xyz]axmemory", "maxmemory", false),
            ("[mn]ax*", "maxclients", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("", "x", false),
            ("[", "x", false),
            ("x[", "x", false),
            ("*a*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaa", false),
        ] {
            assert_eq!(
                glob_match(pattern.as_bytes(), text.as_bytes()),
                want,
                "{pattern} ~ {text}"
            );
        }
    }

    #[test]
    fn config_get_reports_live_values() {
        let mut h = Harness::new();
        h.check(&[
            (
                "CONFIG GET maxmemory",
                "*2\r\n$9\r\nmaxmemory\r\n$8\r\n16777216\r\n",
            ),
            (
                "CONFIG GET maxmemory-policy",
                "*2\r\n$16\r\nmaxmemory-policy\r\n$8\r\nadaptive\r\n",
            ),
            (
                "config get save appendonly",
                "*4\r\n$4\r\nsave\r\n$0\r\n\r\n$10\r\nappendonly\r\n$2\r\nno\r\n",
            ),
            (
                "CONFIG GET max* MAXCLIENTS",
                "*6\r\n$9\r\nmaxmemory\r\n$8\r\n16777216\r\n$16\r\nmaxmemory-policy\r\n\
                 $8\r\nadaptive\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n",
            ),
            (
                "CONFIG GET databases timeout",
                "*4\r\n$7\r\ntimeout\r\n$1\r\n0\r\n$9\r\ndatabases\r\n$1\r\n1\r\n",
            ),
            ("CONFIG GET nothing*", "*0\r\n"),
            (
                "CONFIG GET",
                "-ERR wrong number of arguments for 'config|get' command\r\n",
            ),
            (
                "CONFIG",
                "-ERR wrong number of arguments for 'config' command\r\n",
            ),
            (
                "CONFIG FROB",
                "-ERR unknown subcommand 'FROB'. Try CONFIG HELP.\r\n",
            ),
        ]);
        assert_eq!(h.run(&["CONFIG", "GET", "*"]).lines().count(), 1 + 4 * 8);
        assert!(h.run(&["HELLO", "3"]).starts_with("%7\r\n"));
        h.check(&[(
            "CONFIG GET maxmemory",
            "%1\r\n$9\r\nmaxmemory\r\n$8\r\n16777216\r\n",
        )]);
    }

    #[test]
    fn config_set_changes_memory_and_policy_and_refuses_the_rest() {
        let mut h = Harness::with_config(CacheConfig {
            max_memory: "16mb".into(),
            policy: "lru".into(),
            ..CacheConfig::default()
        });
        let failed = |name: &str, why: &str| {
            format!("-ERR CONFIG SET failed (possibly related to argument '{name}') - {why}\r\n")
        };
        h.check(&[
            ("CONFIG SET maxmemory 16mb", "+OK\r\n"),
            ("CONFIG SET maxmemory 16777216", "+OK\r\n"),
            ("CONFIG SET maxmemory-policy allkeys-lru", "+OK\r\n"),
            ("CONFIG SET MAXMEMORY-POLICY LRU", "+OK\r\n"),
            ("CONFIG SET appendonly no timeout 0 databases 1", "+OK\r\n"),
            ("CONFIG SET maxmemory 32mb", "+OK\r\n"),
            (
                "CONFIG GET maxmemory",
                "*2\r\n$9\r\nmaxmemory\r\n$8\r\n33554432\r\n",
            ),
            (
                "CONFIG SET maxmemory 0",
                &failed(
                    "maxmemory",
                    "larder needs a memory bound; 0 (unlimited) is not one",
                ),
            ),
            (
                "CONFIG SET maxmemory lots",
                &failed("maxmemory", "argument must be a memory value"),
            ),
            ("CONFIG SET maxmemory-policy allkeys-lfu", "+OK\r\n"),
            (
                "CONFIG GET maxmemory-policy",
                "*2\r\n$16\r\nmaxmemory-policy\r\n$7\r\ntinylfu\r\n",
            ),
            (
                "CONFIG SET maxmemory-policy sieve maxmemory 8mb appendonly yes",
                &failed("appendonly", "larder keeps no data on disk"),
            ),
            (
                "CONFIG GET maxmemory-policy",
                "*2\r\n$16\r\nmaxmemory-policy\r\n$7\r\ntinylfu\r\n",
            ),
            (
                "CONFIG SET maxmemory-policy volatile-ttl",
                &failed(
                    "maxmemory-policy",
                    "argument(s) must be one of the following: lru, sieve, s3fifo, tinylfu, \
                     adaptive, allkeys-lru, allkeys-lfu",
                ),
            ),
            (
                "CONFIG SET appendonly yes",
                &failed("appendonly", "larder keeps no data on disk"),
            ),
            (
                "CONFIG SET timeout 0 Timeout 0",
                &failed("Timeout", "duplicate parameter"),
            ),
            (
                "CONFIG SET bogus 1 maxmemory 32mb",
                "-ERR Unknown option or number of arguments for CONFIG SET - 'bogus'\r\n",
            ),
            (
                "CONFIG SET maxmemory",
                "-ERR wrong number of arguments for 'config|set' command\r\n",
            ),
            (
                "CONFIG SET maxmemory 16mb timeout",
                "-ERR wrong number of arguments for 'config|set' command\r\n",
            ),
            ("CONFIG RESETSTAT", "+OK\r\n"),
            (
                "CONFIG REWRITE",
                "-ERR The server is running without a config file\r\n",
            ),
        ]);
        assert_eq!(h.run(&["CONFIG", "SET", "save", ""]), "+OK\r\n");
        assert_eq!(
            h.run(&["CONFIG", "SET", "save", "3600 1"]),
            failed("save", "larder keeps no data on disk")
        );
        let help = h.run(&["CONFIG", "HELP"]);
        assert!(help.starts_with("*11\r\n+CONFIG <subcommand>"), "{help}");
    }
}
