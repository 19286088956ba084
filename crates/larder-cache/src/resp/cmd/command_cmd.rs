//! COMMAND and its subcommands: every command's description (`COMMAND INFO`, in Redis 7's
//! ten-field shape with key specifications and nested subcommands), documentation (`DOCS`),
//! names (`LIST`), count, and the keys of a command line (`GETKEYS`).

use larder_proto::ErrorCode;

use super::config_cmd;
use crate::resp::cmd::container::{HELP, dispatch};
use crate::resp::ctx::{CmdError, CmdResult, CommandSpec, Ctx, Table, spec};
use crate::resp::route::key_positions;

const STALE: &[&str] = &["loading", "stale"];

/// COMMAND's subcommands.
pub(super) static SUBCOMMANDS: &[CommandSpec] = &[
    spec(
        "count",
        2,
        STALE,
        (0, 0, 0),
        "Replies how many commands there are.",
        "2.8.13",
        count,
    ),
    spec(
        "info",
        -2,
        STALE,
        (0, 0, 0),
        "Describes the named commands, or all of them.",
        "2.8.13",
        command_info,
    ),
    spec(
        "docs",
        -2,
        STALE,
        (0, 0, 0),
        "Documents the named commands, or all of them.",
        "7.0.0",
        docs,
    ),
    spec(
        "list",
        -2,
        STALE,
        (0, 0, 0),
        "Lists command names, optionally FILTERBY MODULE, ACLCAT or PATTERN.",
        "7.0.0",
        list,
    ),
    spec(
        "getkeys",
        -3,
        STALE,
        (0, 0, 0),
        "Extracts the key names from a full command line.",
        "2.8.13",
        getkeys,
    ),
    spec(
        "getkeysandflags",
        -3,
        STALE,
        (0, 0, 0),
        "Extracts the key names and their access flags from a full command line.",
        "7.0.0",
        getkeysandflags,
    ),
    HELP,
];

/// COMMAND: with no subcommand, every command's description.
pub(super) fn command(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    if argv.len() == 1 {
        return command_info(ctx, &[b"command", b"info"]);
    }
    dispatch(ctx, argv)
}

/// A command as COMMAND's subcommands report it: full name (`config|get`), spec and group.
type Described = (String, &'static CommandSpec, &'static str);

/// Every top-level command.
fn top_level(table: &Table) -> Vec<Described> {
    table
        .iter()
        .map(|c| (c.name.to_owned(), c.spec, c.group))
        .collect()
}

/// A command or `container|subcommand` by name, in any case.
fn resolve(table: &Table, name: &[u8]) -> Option<Described> {
    let (top, sub) = match name.iter().position(|&b| b == b'|') {
        Some(at) => (&name[..at], Some(&name[at + 1..])),
        None => (name, None),
    };
    let command = table.get(table.lookup(top)?)?;
    match sub {
        None => Some((command.name.to_owned(), command.spec, command.group)),
        Some(sub) => {
            let spec = command.spec.subcommand(sub)?;
            let name = format!("{}|{}", command.name, spec.name);
            Some((name, spec, command.group))
        }
    }
}

/// The ACL categories Redis would file a command under, derived from its flags and group.
fn categories(spec: &CommandSpec, group: &str) -> Vec<&'static str> {
    let has = |flag: &str| spec.flags.contains(&flag);
    let mut cats = Vec::with_capacity(5);
    if has("write") {
        cats.push("@write");
    }
    if has("readonly") {
        cats.push("@read");
    }
    match group {
        "string" => cats.push("@string"),
        "generic" => cats.push("@keyspace"),
        "connection" => cats.push("@connection"),
        _ => {}
    }
    if has("admin") {
        cats.extend(["@admin", "@dangerous"]);
    }
    cats.push(if has("fast") { "@fast" } else { "@slow" });
    cats
}

/// One command's `COMMAND INFO` entry: Redis 7's ten fields, subcommands nested.
fn write_info(ctx: &mut Ctx<'_>, name: &str, spec: &CommandSpec, group: &str) {
    ctx.array(10);
    ctx.bulk(name.as_bytes());
    ctx.int(spec.arity.into());
    ctx.set_header(spec.flags.len());
    for flag in spec.flags {
        ctx.simple(flag.as_bytes());
    }
    let (first, last, step) = spec.keys;
    for position in [first, last, step] {
        ctx.int(position.into());
    }
    let cats = categories(spec, group);
    ctx.set_header(cats.len());
    for cat in cats {
        ctx.simple(cat.as_bytes());
    }
    ctx.array(0); // tips
    write_key_spec(ctx, spec);
    let subs = spec.subcommands;
    ctx.array(subs.len());
    for sub in subs {
        write_info(ctx, &format!("{name}|{}", sub.name), sub, group);
    }
}

/// The key specification equivalent to a command's first/last/step key positions.
fn write_key_spec(ctx: &mut Ctx<'_>, spec: &CommandSpec) {
    let (first, last, step) = spec.keys;
    if first <= 0 {
        ctx.array(0);
        return;
    }
    ctx.array(1);
    ctx.map(3);
    ctx.bulk(b"flags");
    let flags: &[&[u8]] = if spec.flags.contains(&"write") {
        &[b"RW", b"UPDATE"]
    } else {
        &[b"RO", b"ACCESS"]
    };
    ctx.set_header(flags.len());
    for flag in flags {
        ctx.simple(flag);
    }
    ctx.bulk(b"begin_search");
    write_search(ctx, "index", &[("index", first)]);
    ctx.bulk(b"find_keys");
    // The range's last key counts from the first one; a negative one from the end.
    let last = if last < 0 { last } else { last - first };
    write_search(
        ctx,
        "range",
        &[("lastkey", last), ("keystep", step), ("limit", 0)],
    );
}

fn write_search(ctx: &mut Ctx<'_>, kind: &str, fields: &[(&str, i32)]) {
    ctx.map(2);
    ctx.bulk(b"type");
    ctx.bulk(kind.as_bytes());
    ctx.bulk(b"spec");
    ctx.map(fields.len());
    for (field, value) in fields {
        ctx.bulk(field.as_bytes());
        ctx.int((*value).into());
    }
}

fn count(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    ctx.uint(ctx.table.len() as u64);
    Ok(())
}

fn command_info(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let names = &argv[2..];
    if names.is_empty() {
        let all = top_level(ctx.table);
        ctx.array(all.len());
        for (name, spec, group) in all {
            write_info(ctx, &name, spec, group);
        }
        return Ok(());
    }
    ctx.array(names.len());
    for name in names {
        match resolve(ctx.table, name) {
            Some((name, spec, group)) => write_info(ctx, &name, spec, group),
            None => ctx.null(),
        }
    }
    Ok(())
}

/// One command's `COMMAND DOCS` map: summary, since, group, and its subcommands' docs.
fn write_docs(ctx: &mut Ctx<'_>, name: &str, spec: &CommandSpec, group: &str) {
    let subs = spec.subcommands;
    ctx.map(3 + usize::from(!subs.is_empty()));
    for (field, value) in [
        ("summary", spec.summary),
        ("since", spec.since),
        ("group", group),
    ] {
        ctx.bulk(field.as_bytes());
        ctx.bulk(value.as_bytes());
    }
    if !subs.is_empty() {
        ctx.bulk(b"subcommands");
        ctx.map(subs.len());
        for sub in subs {
            let full = format!("{name}|{}", sub.name);
            ctx.bulk(full.as_bytes());
            write_docs(ctx, &full, sub, group);
        }
    }
}

fn docs(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    // Unknown names are left out, as Redis does.
    let found = match &argv[2..] {
        [] => top_level(ctx.table),
        names => names
            .iter()
            .filter_map(|name| resolve(ctx.table, name))
            .collect(),
    };
    ctx.map(found.len());
    for (name, spec, group) in found {
        ctx.bulk(name.as_bytes());
        write_docs(ctx, &name, spec, group);
    }
    Ok(())
}

/// Every command followed by its subcommands, in the order `COMMAND LIST` names them.
fn with_subcommands(table: &Table) -> Vec<Described> {
    let mut all = Vec::new();
    for (name, spec, group) in top_level(table) {
        let nested: Vec<Described> = spec
            .subcommands
            .iter()
            .map(|sub| (format!("{name}|{}", sub.name), sub, group))
            .collect();
        all.push((name, spec, group));
        all.extend(nested);
    }
    all
}

/// Which names `COMMAND LIST` keeps.
enum ListFilter {
    All,
    Pattern(Vec<u8>),
    AclCategory(Vec<u8>),
    /// `FILTERBY MODULE`: larder has no modules.
    Nothing,
}

impl ListFilter {
    fn parse(args: &[&[u8]]) -> Result<Self, CmdError> {
        match args {
            [] => Ok(Self::All),
            [by, kind, value] if by.eq_ignore_ascii_case(b"FILTERBY") => {
                match kind.to_ascii_uppercase().as_slice() {
                    b"PATTERN" => Ok(Self::Pattern(value.to_vec())),
                    b"ACLCAT" => Ok(Self::AclCategory(value.to_vec())),
                    b"MODULE" => Ok(Self::Nothing),
                    _ => Err(CmdError::syntax()),
                }
            }
            _ => Err(CmdError::syntax()),
        }
    }

    fn keeps(&self, (name, spec, group): &Described) -> bool {
        match self {
            Self::All => true,
            Self::Pattern(pattern) => config_cmd::glob_match(pattern, name.as_bytes()),
            Self::AclCategory(wanted) => categories(spec, group).iter().any(|cat| {
                cat.trim_start_matches('@')
                    .as_bytes()
                    .eq_ignore_ascii_case(wanted)
            }),
            Self::Nothing => false,
        }
    }
}

fn list(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let filter = ListFilter::parse(&argv[2..])?;
    let mut names = with_subcommands(ctx.table);
    names.retain(|described| filter.keeps(described));
    ctx.array(names.len());
    for (name, _, _) in names {
        ctx.bulk(name.as_bytes());
    }
    Ok(())
}

/// The command a `GETKEYS` line names and the positions of its keys, checked as Redis does.
fn line_keys(ctx: &Ctx<'_>, line: &[&[u8]]) -> Result<(&'static str, Vec<usize>), CmdError> {
    let invalid = |text: &'static str| CmdError::new(ErrorCode::InvalidArgument, text);
    let command = ctx
        .table
        .lookup(line[0])
        .and_then(|index| ctx.table.get(index))
        .ok_or_else(|| invalid("Invalid command specified"))?;
    if !command.arity_ok(line.len()) {
        return Err(invalid("Invalid number of arguments specified for command"));
    }
    let keys: Vec<usize> = key_positions(command.keys, line.len()).collect();
    if keys.is_empty() {
        return Err(invalid("The command has no key arguments"));
    }
    Ok((command.name, keys))
}

fn getkeys(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let line = &argv[2..];
    let (_, keys) = line_keys(ctx, line)?;
    ctx.array(keys.len());
    for index in keys {
        ctx.bulk(line[index]);
    }
    Ok(())
}

fn getkeysandflags(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let line = &argv[2..];
    let (name, keys) = line_keys(ctx, line)?;
    let flags = key_flags(name, line);
    ctx.array(keys.len());
    for index in keys {
        ctx.array(2);
        ctx.bulk(line[index]);
        ctx.array(flags.len());
        for flag in flags {
            ctx.simple(flag.as_bytes());
        }
    }
    Ok(())
}

/// The key flags Redis 7's key specifications give a command's keys: how the key is used
/// (`RO` read, `RW` read and written, `OW` overwritten, `RM` removed) and what happens to its
/// value (`access`, `update`, `insert`, `delete`).
fn key_flags(name: &str, line: &[&[u8]]) -> &'static [&'static str] {
    match name {
        "set" if line.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"GET")) => {
            &["RW", "access", "update"]
        }
        "set" | "setex" | "psetex" | "mset" => &["OW", "update"],
        "setnx" | "msetnx" => &["OW", "insert"],
        "append" => &["RW", "insert"],
        "setrange" => &["RW", "update"],
        "getdel" => &["RW", "access", "delete"],
        "del" | "unlink" | "invalidate" => &["RM", "delete"],
        "expire" | "pexpire" | "expireat" | "pexpireat" | "persist" => &["RW", "update"],
        "exists" | "type" | "strlen" => &["RO"],
        "getset" | "getex" | "incr" | "decr" | "incrby" | "decrby" | "incrbyfloat" => {
            &["RW", "access", "update"]
        }
        _ => &["RO", "access"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::cmd::connection;
    use crate::resp::cmd::testing::Harness;

    fn bulk(text: &str) -> String {
        format!("${}\r\n{text}\r\n", text.len())
    }

    const GET_INFO: &str = "*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n\
        *3\r\n+@read\r\n+@string\r\n+@fast\r\n*0\r\n\
        *1\r\n*6\r\n$5\r\nflags\r\n*2\r\n+RO\r\n+ACCESS\r\n\
        $12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n\
        $9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n\
        *6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n*0\r\n";

    #[test]
    fn command_info_has_redis_7_shape() {
        let mut h = Harness::new();
        h.check(&[
            ("COMMAND INFO get", &format!("*1\r\n{GET_INFO}")),
            (
                "COMMAND INFO GET nosuch",
                &format!("*2\r\n{GET_INFO}$-1\r\n"),
            ),
            (
                "COMMAND INFO config|get",
                "*1\r\n*10\r\n$10\r\nconfig|get\r\n:-3\r\n*4\r\n+admin\r\n+noscript\r\n\
                 +loading\r\n+stale\r\n:0\r\n:0\r\n:0\r\n*3\r\n+@admin\r\n+@dangerous\r\n\
                 +@slow\r\n*0\r\n*0\r\n*0\r\n",
            ),
            ("COMMAND INFO config|nosuch", "*1\r\n$-1\r\n"),
            (
                "COMMAND FROB",
                "-ERR unknown subcommand 'FROB'. Try COMMAND HELP.\r\n",
            ),
            (
                "COMMAND COUNT x",
                "-ERR wrong number of arguments for 'command|count' command\r\n",
            ),
        ]);
        let count = crate::resp::table::COMMANDS.len();
        h.check(&[("COMMAND COUNT", &format!(":{count}\r\n"))]);
        let all = h.run(&["COMMAND"]);
        assert!(all.starts_with(&format!("*{count}\r\n*10\r\n")), "{all}");
        assert!(all.contains(GET_INFO));
        // CONFIG's entry nests its subcommands' entries.
        assert!(all.contains("*5\r\n*10\r\n$10\r\nconfig|get\r\n"), "{all}");
        assert_eq!(h.run(&["COMMAND", "INFO"]), all);
        assert!(h.run(&["HELLO", "3"]).starts_with("%7\r\n"));
        let resp3 = h.run(&["COMMAND", "INFO", "get"]);
        assert!(
            resp3.starts_with("*1\r\n*10\r\n$3\r\nget\r\n:2\r\n~2\r\n+readonly\r\n"),
            "{resp3}"
        );
        assert!(
            resp3.contains("*1\r\n%3\r\n$5\r\nflags\r\n~2\r\n"),
            "{resp3}"
        );
        h.check(&[("COMMAND INFO nosuch", "*1\r\n_\r\n")]);
    }

    #[test]
    fn command_docs_list_and_getkeys() {
        let mut h = Harness::new();
        let get = super::super::COMMANDS
            .iter()
            .chain(crate::resp::cmd::string::COMMANDS);
        let summary = get.clone().find(|s| s.name == "get").unwrap().summary;
        let time = get.clone().find(|s| s.name == "time").unwrap().summary;
        h.check(&[
            (
                "COMMAND DOCS get nosuch TIME",
                &format!(
                    "*4\r\n$3\r\nget\r\n*6\r\n$7\r\nsummary\r\n{}$5\r\nsince\r\n$5\r\n1.0.0\r\n\
                     $5\r\ngroup\r\n$6\r\nstring\r\n\
                     $4\r\ntime\r\n*6\r\n$7\r\nsummary\r\n{}$5\r\nsince\r\n$5\r\n2.6.0\r\n\
                     $5\r\ngroup\r\n$6\r\nserver\r\n",
                    bulk(summary),
                    bulk(time)
                ),
            ),
            ("COMMAND DOCS nosuch", "*0\r\n"),
            (
                "COMMAND LIST FILTERBY PATTERN conf*",
                "*6\r\n$6\r\nconfig\r\n$10\r\nconfig|get\r\n$10\r\nconfig|set\r\n\
                 $16\r\nconfig|resetstat\r\n$14\r\nconfig|rewrite\r\n$11\r\nconfig|help\r\n",
            ),
            ("COMMAND LIST FILTERBY MODULE json", "*0\r\n"),
            ("COMMAND LIST FILTERBY NAME x", "-ERR syntax error\r\n"),
            ("COMMAND LIST FILTERBY", "-ERR syntax error\r\n"),
            ("COMMAND GETKEYS GET k", "*1\r\n$1\r\nk\r\n"),
            ("COMMAND GETKEYS SET k v EX 10", "*1\r\n$1\r\nk\r\n"),
            (
                "COMMAND GETKEYS MSET a 1 b 2",
                "*2\r\n$1\r\na\r\n$1\r\nb\r\n",
            ),
            (
                "COMMAND GETKEYS MGET a b c",
                "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n",
            ),
            (
                "COMMAND GETKEYS PING",
                "-ERR The command has no key arguments\r\n",
            ),
            (
                "COMMAND GETKEYS NOSUCH k",
                "-ERR Invalid command specified\r\n",
            ),
            (
                "COMMAND GETKEYS GET",
                "-ERR Invalid number of arguments specified for command\r\n",
            ),
            (
                "COMMAND GETKEYSANDFLAGS SET k v",
                "*1\r\n*2\r\n$1\r\nk\r\n*2\r\n+OW\r\n+update\r\n",
            ),
            (
                "COMMAND GETKEYSANDFLAGS GET k",
                "*1\r\n*2\r\n$1\r\nk\r\n*2\r\n+RO\r\n+access\r\n",
            ),
            (
                "COMMAND GETKEYSANDFLAGS DEL a b",
                "*2\r\n*2\r\n$1\r\na\r\n*2\r\n+RM\r\n+delete\r\n\
                 *2\r\n$1\r\nb\r\n*2\r\n+RM\r\n+delete\r\n",
            ),
            (
                "COMMAND GETKEYSANDFLAGS PING",
                "-ERR The command has no key arguments\r\n",
            ),
        ]);
        let docs = h.run(&["COMMAND", "DOCS", "client"]);
        assert!(
            docs.contains("$11\r\nsubcommands\r\n*26\r\n$9\r\nclient|id\r\n"),
            "{docs}"
        );
        let list = h.run(&["COMMAND", "LIST"]);
        let names = list.matches("\r\n$").count();
        let table = &crate::resp::table::COMMANDS;
        let subs: usize = table.iter().map(|c| c.subcommands.len()).sum();
        assert!(subs >= connection::CLIENT_SUBCOMMANDS.len() + SUBCOMMANDS.len() + 5);
        assert_eq!(names, table.len() + subs, "{list}");
        let read = h.run(&["COMMAND", "LIST", "FILTERBY", "ACLCAT", "read"]);
        assert!(
            read.contains("$3\r\nget\r\n") && !read.contains("$3\r\nset\r\n"),
            "{read}"
        );
        let all_docs = h.run(&["COMMAND", "DOCS"]);
        assert!(all_docs.starts_with(&format!("*{}\r\n", 2 * crate::resp::table::COMMANDS.len())));
    }
}
