//! What the container commands (`CLIENT`, `COMMAND`, `CONFIG`) share: running a subcommand
//! named in `argv[1]`, and the `HELP` subcommand every one of them lists.

use larder_proto::ErrorCode;

use crate::resp::ctx::{CmdError, CmdResult, CommandSpec, Ctx, spec};

const STALE: &[&str] = &["loading", "stale"];

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

/// The container command the client named (`argv[0]`).
fn container(ctx: &Ctx<'_>, argv: &[&[u8]]) -> Option<&'static CommandSpec> {
    let index = ctx.table.lookup(argv.first()?)?;
    Some(ctx.table.get(index)?.spec)
}

/// `<container> HELP`: the container is the command the client named.
fn help_subcommand(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    if let Some(container) = container(ctx, argv) {
        help(ctx, container);
    }
    Ok(())
}

/// Runs subcommand `argv[1]` of the container command `argv[0]`, checking its arity as Redis
/// does: counted from the container's name, and reported as `container|sub`.
pub(crate) fn dispatch(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let Some(spec) = container(ctx, argv) else {
        return Err(CmdError::syntax());
    };
    let container = spec.name;
    let Some(&name) = argv.get(1) else {
        return Err(CmdError::arity(container));
    };
    let Some(sub) = spec.subcommand(name) else {
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
fn help(ctx: &mut Ctx<'_>, container: &CommandSpec) {
    let subs = container.subcommands;
    ctx.array(1 + 2 * subs.len());
    let heading = format!(
        "{} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        container.name.to_ascii_uppercase()
    );
    ctx.simple(heading.as_bytes());
    for sub in subs {
        ctx.simple(sub.name.to_ascii_uppercase().as_bytes());
        ctx.simple(format!("    {}", sub.summary).as_bytes());
    }
}
