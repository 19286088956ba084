//! Server commands: TIME here, COMMAND (in the `command_cmd` module), INFO (in `info`) and
//! CONFIG (in `config_cmd`).

#[path = "command_cmd.rs"]
mod command_cmd;
#[path = "config_cmd.rs"]
mod config_cmd;
#[path = "info.rs"]
mod info;

use crate::resp::ctx::{CmdResult, CommandSpec, Ctx, spec};

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
    )
    .with_subcommands(command_cmd::SUBCOMMANDS),
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
    )
    .with_subcommands(config_cmd::SUBCOMMANDS),
];

fn time(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    let micros = ctx.node.now_us();
    ctx.array(2);
    ctx.bulk((micros / 1_000_000).to_string().as_bytes());
    ctx.bulk((micros % 1_000_000).to_string().as_bytes());
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
            help.starts_with("*15\r\n+COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n+COUNT\r\n+    "),
            "{help}"
        );
    }
}
