//! `INVALIDATE`: drops keys from the cache and any load of them in flight, so the next read
//! loads them from their origin.

use crate::resp::ctx::{CmdResult, CommandSpec, Ctx, spec};

pub(crate) static COMMANDS: &[CommandSpec] = &[spec(
    "invalidate",
    -2,
    &["write", "fast"],
    (1, -1, 1),
    "Drops keys from the cache and any load of them in flight, so the next read loads them \
     from their origin. Replies with how many the cache held.",
    "0.1.0",
    invalidate,
)];

fn invalidate(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let node = ctx.node;
    let dropped = argv[1..].iter().filter(|key| node.invalidate(key)).count();
    ctx.uint(dropped as u64);
    Ok(())
}
