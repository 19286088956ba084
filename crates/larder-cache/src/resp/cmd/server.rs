//! Server commands: TIME here, COMMAND (in the `command_cmd` module), INFO (in `info`) and
//! CONFIG (in `config_cmd`). Also the subcommand dispatch and `HELP` replies that the container
//! commands CLIENT, COMMAND and CONFIG share.

#[path = "command_cmd.rs"]
mod command_cmd;
#[path = "config_cmd.rs"]
mod config_cmd;
#[path = "info.rs"]
mod info;

use std::time::{SystemTime, UNIX_EPOCH};

use larder_proto::ErrorCode;

use super::connection;
use crate::resp::ctx::{CmdError, CmdResult, Ctx};
use crate::resp::table::{CommandSpec, spec};

const STALE: &[&str] = &["loading", "stale"];

/// The server family's entries in the command table.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    spec(
        "command",
        -1,
        STALE,
        (0, 0, 0),
        "Describes every command the server knows.",
        "2.8.13",
        command_cmd::command,
    ),
    spec(
        "info",
        -1,
        STALE,
        (0, 0, 0),
        "Describes the server in sections of field:value lines.",
        "1.0.0",
        info::info,
    ),
    spec(
        "time",
        1,
        &["loading", "stale", "fast"],
        (0, 0, 0),
        "Replies the server's clock as Unix seconds and microseconds.",
        "2.6.0",
        time,
    ),
    spec(
        "config",
        -2,
        &[],
        (0, 0, 0),
        "Reads and changes server parameters.",
        "2.0.0",
        config_cmd::config,
    ),
];

/// The `HELP` subcommand every container command (CLIENT, COMMAND, CONFIG) lists.
pub(crate) const HELP: CommandSpec = spec(
    "help",
    2,
    STALE,
    (0, 0, 0),
    "Lists the subcommands.",
    "5.0.0",
    help_subcommand,
);

/// `<container> HELP`: the container is the command the client named.
fn help_subcommand(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let container = String::from_utf8_lossy(argv[0]).to_ascii_lowercase();
    help(ctx, &container, subcommands(&container));
    Ok(())
}

/// The subcommands of a container command, by its full name (none for other commands).
fn subcommands(name: &str) -> &'static [CommandSpec] {
    match name {
        "client" => connection::CLIENT_SUBCOMMANDS,
        "command" => command_cmd::SUBCOMMANDS,
        "config" => config_cmd::SUBCOMMANDS,
        _ => &[],
    }
}

fn find_sub(subs: &'static [CommandSpec], name: &[u8]) -> Option<&'static CommandSpec> {
    subs.iter()
        .find(|sub| sub.name.as_bytes().eq_ignore_ascii_case(name))
}

/// Runs subcommand `argv[1]` of the container command `container`, checking its arity as
/// Redis does: counted from the container's name, and reported as `container|sub`.
pub(crate) fn dispatch(
    ctx: &mut Ctx<'_>,
    argv: &[&[u8]],
    container: &str,
    subs: &'static [CommandSpec],
) -> CmdResult {
    let Some(&name) = argv.get(1) else {
        return Err(CmdError::arity(container));
    };
    let Some(sub) = find_sub(subs, name) else {
        let name = String::from_utf8_lossy(&name[..name.len().min(128)]);
        return Err(CmdError::new(
            ErrorCode::InvalidArgument,
            format!(
                "unknown subcommand '{name}'. Try {} HELP.",
                container.to_ascii_uppercase()
            ),
        ));
    };
    if !sub.arity_ok(argv.len()) {
        return Err(CmdError::arity(&format!("{container}|{}", sub.name)));
    }
    (sub.handler)(ctx, argv)
}

/// A container's `HELP` reply: a heading, then each subcommand and its summary indented.
pub(crate) fn help(ctx: &mut Ctx<'_>, container: &str, subs: &[CommandSpec]) {
    ctx.array(1 + 2 * subs.len());
    let heading = format!(
        "{} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        container.to_ascii_uppercase()
    );
    ctx.simple(heading.as_bytes());
    for sub in subs {
        ctx.simple(sub.name.to_ascii_uppercase().as_bytes());
        ctx.simple(format!("    {}", sub.summary).as_bytes());
    }
}

fn time(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    ctx.array(2);
    ctx.bulk(now.as_secs().to_string().as_bytes());
    ctx.bulk(now.subsec_micros().to_string().as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::resp::cmd::testing::Harness;

    #[test]
    fn time_and_help() {
        let mut h = Harness::new();
        let reply = h.run(&["TIME"]);
        let parts: Vec<&str> = reply.split("\r\n").collect();
        assert_eq!(parts[0], "*2");
        let secs: u64 = parts[2].parse().unwrap();
        let micros: u32 = parts[4].parse().unwrap();
        assert!(secs > 1_700_000_000 && micros < 1_000_000, "{reply}");
        h.check(&[(
            "TIME x",
            "-ERR wrong number of arguments for 'time' command\r\n",
        )]);
        let help = h.run(&["COMMAND", "HELP"]);
        assert!(
            help.starts_with("*13\r\n+COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n+COUNT\r\n+    "),
            "{help}"
        );
    }
}
