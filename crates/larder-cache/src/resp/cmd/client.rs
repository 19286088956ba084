//! CLIENT and its subcommands: the connection's id and name, the library it says it is, and
//! the connected clients in Redis's `CLIENT LIST` line format.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use larder_proto::ErrorCode;

use crate::clients::ClientEntry;
use crate::resp::cmd::container::{HELP, dispatch};
use crate::resp::cmd::tracking;
use crate::resp::ctx::{CmdError, CmdResult, CommandSpec, Ctx, Table, parse_u64, spec};

const FLAGS: &[&str] = &["noscript", "loading", "stale"];
const ADMIN: &[&str] = &["admin", "noscript", "loading", "stale"];

/// CLIENT's subcommands, dispatched by [`client`].
pub(crate) static SUBCOMMANDS: &[CommandSpec] = &[
    spec(
        "id",
        2,
        FLAGS,
        (0, 0, 0),
        "Replies the connection's id.",
        "5.0.0",
        id,
    ),
    spec(
        "setname",
        3,
        FLAGS,
        (0, 0, 0),
        "Names the connection; an empty name removes it.",
        "2.6.9",
        setname,
    ),
    tracking::TRACKING,
    tracking::CACHING,
    tracking::GETREDIR,
    tracking::TRACKINGINFO,
    spec(
        "getname",
        2,
        FLAGS,
        (0, 0, 0),
        "Replies the connection's name, or null.",
        "2.6.9",
        getname,
    ),
    spec(
        "setinfo",
        4,
        FLAGS,
        (0, 0, 0),
        "Records the client library's name (LIB-NAME) or version (LIB-VER).",
        "7.2.0",
        setinfo,
    ),
    spec(
        "info",
        2,
        FLAGS,
        (0, 0, 0),
        "Describes this connection in the CLIENT LIST format.",
        "6.2.0",
        info,
    ),
    spec(
        "list",
        -2,
        ADMIN,
        (0, 0, 0),
        "Describes the connected clients, optionally only those of a TYPE or with given IDs.",
        "2.4.0",
        list,
    ),
    spec(
        "no-evict",
        3,
        ADMIN,
        (0, 0, 0),
        "Accepted for compatibility (ON or OFF); larder never evicts clients.",
        "7.0.0",
        on_off,
    ),
    spec(
        "no-touch",
        3,
        FLAGS,
        (0, 0, 0),
        "Accepted for compatibility (ON or OFF); reads still count as accesses.",
        "7.2.0",
        on_off,
    ),
    HELP,
];

/// CLIENT: runs the subcommand.
pub(super) fn client(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    dispatch(ctx, argv)
}

fn id(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    ctx.uint(ctx.client.id);
    Ok(())
}

/// Whether a name or library attribute uses only the printable, non-space ASCII Redis allows,
/// so that `CLIENT LIST` lines stay parseable.
fn printable(text: &[u8]) -> bool {
    text.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

/// Checks a connection name as `CLIENT SETNAME` and `HELLO … SETNAME` do.
pub(super) fn check_name(name: &[u8]) -> CmdResult {
    if printable(name) {
        Ok(())
    } else {
        Err(CmdError::new(
            ErrorCode::InvalidArgument,
            "Client names cannot contain spaces, newlines or special characters.",
        ))
    }
}

/// Names the connection (an empty name clears it); the name must have passed [`check_name`].
pub(super) fn set_name(ctx: &Ctx<'_>, name: &[u8]) {
    ctx.client.meta.lock().name = String::from_utf8_lossy(name).into_owned();
}

fn setname(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    check_name(argv[2])?;
    set_name(ctx, argv[2]);
    ctx.ok();
    Ok(())
}

fn getname(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    let name = ctx.client.meta.lock().name.clone();
    ctx.opt_bulk(Some(name.as_bytes()).filter(|name| !name.is_empty()));
    Ok(())
}

fn setinfo(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let (attr, value) = (argv[2], argv[3]);
    let is_name = attr.eq_ignore_ascii_case(b"LIB-NAME");
    if !is_name && !attr.eq_ignore_ascii_case(b"LIB-VER") {
        let attr = String::from_utf8_lossy(attr);
        return Err(CmdError::new(
            ErrorCode::InvalidArgument,
            format!("Unrecognized option '{attr}'"),
        ));
    }
    if !printable(value) {
        let attr = String::from_utf8_lossy(attr);
        return Err(CmdError::new(
            ErrorCode::InvalidArgument,
            format!("{attr} cannot contain spaces, newlines or special characters."),
        ));
    }
    let value = String::from_utf8_lossy(value).into_owned();
    let mut meta = ctx.client.meta.lock();
    if is_name {
        meta.lib_name = value;
    } else {
        meta.lib_ver = value;
    }
    drop(meta);
    ctx.ok();
    Ok(())
}

fn info(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    let mut text = String::new();
    describe(&mut text, ctx.client, "client|info", ctx.node.now_ms());
    ctx.verbatim(text.as_bytes());
    Ok(())
}

/// Which clients `CLIENT LIST` shows.
enum Filter {
    All,
    /// A type larder has no clients of (master, replica, pubsub).
    None,
    Ids(Vec<u64>),
}

fn list_filter(args: &[&[u8]]) -> Result<Filter, CmdError> {
    match args {
        [] => Ok(Filter::All),
        [by, kind] if by.eq_ignore_ascii_case(b"TYPE") => {
            match kind.to_ascii_lowercase().as_slice() {
                b"normal" => Ok(Filter::All),
                b"master" | b"replica" | b"slave" | b"pubsub" => Ok(Filter::None),
                _ => Err(CmdError::new(
                    ErrorCode::InvalidArgument,
                    format!("Unknown client type '{}'", String::from_utf8_lossy(kind)),
                )),
            }
        }
        [by, ids @ ..] if by.eq_ignore_ascii_case(b"ID") && !ids.is_empty() => {
            let invalid = || CmdError::new(ErrorCode::InvalidArgument, "Invalid client ID");
            let ids = ids
                .iter()
                .map(|id| parse_u64(id).ok().filter(|&id| id > 0).ok_or_else(invalid))
                .collect::<Result<_, _>>()?;
            Ok(Filter::Ids(ids))
        }
        _ => Err(CmdError::syntax()),
    }
}

fn list(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let filter = list_filter(&argv[2..])?;
    let now = ctx.node.now_ms();
    let mut text = String::new();
    for entry in ctx.node.clients.snapshot() {
        let shown = match &filter {
            Filter::All => true,
            Filter::None => false,
            Filter::Ids(ids) => ids.contains(&entry.id),
        };
        if !shown {
            continue;
        }
        // The caller's last command is this one; the registry records it only afterwards.
        let current = if entry.id == ctx.client.id {
            "client|list"
        } else {
            last_command(ctx.table, &entry)
        };
        describe(&mut text, &entry, current, now);
    }
    ctx.verbatim(text.as_bytes());
    Ok(())
}

fn last_command(table: &Table, entry: &ClientEntry) -> &'static str {
    let index = usize::from(entry.last_cmd.load(Relaxed));
    table.get(index).map_or("NULL", |command| command.name)
}

/// Appends one client's `CLIENT LIST` line, newline included. Fields larder has no notion of
/// (pub/sub, transactions, buffers) show the values Redis shows for an idle normal client.
fn describe(out: &mut String, entry: &ClientEntry, cmd: &str, now_ms: u64) {
    let meta = entry.meta.lock().clone();
    let age = now_ms.saturating_sub(entry.created_ms) / 1000;
    let idle = now_ms.saturating_sub(entry.last_ms.load(Relaxed)) / 1000;
    let _ = writeln!(
        out,
        "id={} addr={} laddr={} fd=-1 name={} age={age} idle={idle} flags=N db=0 sub=0 psub=0 \
         ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 \
         oll=0 omem=0 tot-mem=0 events=r cmd={cmd} user=default redir=-1 resp={} lib-name={} \
         lib-ver={}",
        entry.id,
        entry.peer,
        entry.local,
        meta.name,
        entry.protocol.load(Relaxed),
        meta.lib_name,
        meta.lib_ver,
    );
}

/// Accepts `ON` or `OFF` and changes nothing: larder neither evicts clients nor skips access
/// tracking, so either setting is already as good as honoured for a cache client.
fn on_off(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let arg = argv[2];
    if !arg.eq_ignore_ascii_case(b"ON") && !arg.eq_ignore_ascii_case(b"OFF") {
        return Err(CmdError::syntax());
    }
    ctx.ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::resp::cmd::testing::Harness;

    /// A `CLIENT LIST` line with the fields larder fills in and the rest as Redis shows them
    /// for an idle client.
    fn line(
        id: u64,
        addrs: (&str, &str),
        name: &str,
        cmd: &str,
        resp: u8,
        lib: (&str, &str),
    ) -> String {
        let (addr, laddr) = addrs;
        format!(
            "id={id} addr={addr} laddr={laddr} fd=-1 name={name} age=0 idle=0 flags=N db=0 sub=0 \
             psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 \
             rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={cmd} user=default redir=-1 \
             resp={resp} lib-name={} lib-ver={}\n",
            lib.0, lib.1
        )
    }

    /// This test's own connection, named `app` by a redis-rs 1.0 client.
    fn mine(cmd: &str, resp: u8) -> String {
        let addr = ("127.0.0.1:9", "127.0.0.1:9");
        line(1, addr, "app", cmd, resp, ("redis-rs", "1.0"))
    }

    fn bulk(text: &str) -> String {
        format!("${}\r\n{text}\r\n", text.len())
    }

    #[test]
    fn names_ids_and_library_info() {
        let mut h = Harness::new();
        h.check(&[
            ("CLIENT ID", ":1\r\n"),
            ("client id", ":1\r\n"),
            ("CLIENT GETNAME", "$-1\r\n"),
            ("CLIENT SETNAME conn-1", "+OK\r\n"),
            ("CLIENT GETNAME", "$6\r\nconn-1\r\n"),
            (
                "CLIENT SETNAME a b",
                "-ERR wrong number of arguments for 'client|setname' command\r\n",
            ),
            (
                "CLIENT ID 5",
                "-ERR wrong number of arguments for 'client|id' command\r\n",
            ),
            ("CLIENT SETINFO LIB-NAME redis-py", "+OK\r\n"),
            ("CLIENT SETINFO lib-ver 5.0.1", "+OK\r\n"),
            (
                "CLIENT SETINFO color red",
                "-ERR Unrecognized option 'color'\r\n",
            ),
            ("CLIENT NO-EVICT on", "+OK\r\n"),
            ("CLIENT NO-TOUCH OFF", "+OK\r\n"),
            ("CLIENT NO-EVICT maybe", "-ERR syntax error\r\n"),
            (
                "CLIENT KILL x",
                "-ERR unknown subcommand 'KILL'. Try CLIENT HELP.\r\n",
            ),
            (
                "CLIENT",
                "-ERR wrong number of arguments for 'client' command\r\n",
            ),
        ]);
        let spaced = h.run(&["CLIENT", "SETNAME", "a b"]);
        assert_eq!(
            spaced,
            "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
        );
        let newline = h.run(&["CLIENT", "SETINFO", "lib-name", "x\ny"]);
        assert_eq!(
            newline,
            "-ERR lib-name cannot contain spaces, newlines or special characters.\r\n"
        );
        h.check(&[("CLIENT GETNAME", "$6\r\nconn-1\r\n")]);
        assert_eq!(h.run(&["CLIENT", "SETNAME", ""]), "+OK\r\n");
        h.check(&[("CLIENT GETNAME", "$-1\r\n")]);
        let help = h.run(&["CLIENT", "HELP"]);
        assert!(help.starts_with("*27\r\n+CLIENT <subcommand>"), "{help}");
        h.check(&[("CLIENT GETREDIR", ":-1\r\n")]);
        assert!(help.contains("+SETNAME\r\n"), "{help}");
    }

    #[test]
    fn info_and_list_in_redis_format() {
        let mut h = Harness::new();
        h.check(&[
            ("CLIENT SETNAME app", "+OK\r\n"),
            ("CLIENT SETINFO LIB-NAME redis-rs", "+OK\r\n"),
            ("CLIENT SETINFO LIB-VER 1.0", "+OK\r\n"),
        ]);
        let me = mine("client|info", 2);
        h.check(&[("CLIENT INFO", &bulk(&me))]);
        let other = h.node.clients.register(
            "10.0.0.2:5000".parse().unwrap(),
            "10.0.0.1:6380".parse().unwrap(),
            h.node.now_ms(),
        );
        assert_eq!(other.entry.id, 2);
        let me = mine("client|list", 2);
        let addr = ("10.0.0.2:5000", "10.0.0.1:6380");
        let other_line = line(2, addr, "", "NULL", 2, ("", ""));
        h.check(&[
            ("CLIENT LIST", &bulk(&format!("{me}{other_line}"))),
            (
                "CLIENT LIST TYPE normal",
                &bulk(&format!("{me}{other_line}")),
            ),
            ("CLIENT LIST ID 2", &bulk(&other_line)),
            ("CLIENT LIST ID 2 1 7", &bulk(&format!("{me}{other_line}"))),
            ("CLIENT LIST TYPE pubsub", "$0\r\n\r\n"),
            ("CLIENT LIST TYPE master", "$0\r\n\r\n"),
            (
                "CLIENT LIST TYPE bogus",
                "-ERR Unknown client type 'bogus'\r\n",
            ),
            ("CLIENT LIST ID x", "-ERR Invalid client ID\r\n"),
            ("CLIENT LIST ID 0", "-ERR Invalid client ID\r\n"),
            ("CLIENT LIST ID", "-ERR syntax error\r\n"),
            ("CLIENT LIST bogus", "-ERR syntax error\r\n"),
        ]);
        assert!(h.run(&["HELLO", "3"]).starts_with("%7\r\n"));
        let me = mine("client|info", 3);
        let verbatim = format!("={}\r\ntxt:{me}\r\n", me.len() + 4);
        h.check(&[("CLIENT INFO", &verbatim)]);
        drop(other);
        h.check(&[("CLIENT LIST ID 2", "=4\r\ntxt:\r\n")]);
    }
}
