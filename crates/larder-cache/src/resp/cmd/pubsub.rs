//! SUBSCRIBE and UNSUBSCRIBE, for the one channel larder publishes on: `__redis__:invalidate`,
//! where a RESP2 connection that another connection's `CLIENT TRACKING … REDIRECT` names
//! receives its invalidations, as in Redis 6. Any other channel is refused: larder has no
//! general pub/sub.

use larder_proto::ErrorCode;
use larder_proto::resp::encode;

use crate::resp::ctx::{CmdError, CmdResult, CommandSpec, Ctx, spec};
use crate::resp::tracking::CHANNEL;

const FLAGS: &[&str] = &["pubsub", "noscript", "loading", "stale"];

/// The family's commands.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    spec(
        "subscribe",
        -2,
        FLAGS,
        (0, 0, 0),
        "Receives invalidation messages on __redis__:invalidate (the only channel).",
        "2.0.0",
        subscribe,
    ),
    spec(
        "unsubscribe",
        -1,
        FLAGS,
        (0, 0, 0),
        "Stops receiving messages on the channels named, or on every channel.",
        "2.0.0",
        unsubscribe,
    ),
];

/// One confirmation: `[kind, channel or null, subscriptions left]`.
fn confirm(ctx: &mut Ctx<'_>, kind: &[u8], channel: Option<&[u8]>) {
    let protocol = ctx.protocol();
    encode::push(ctx.out, protocol, 3);
    ctx.bulk(kind);
    ctx.opt_bulk(channel);
    ctx.int(i64::from(ctx.session.subscribed));
}

fn subscribe(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    if let Some(other) = argv[1..].iter().find(|c| **c != CHANNEL) {
        return Err(CmdError::new(
            ErrorCode::InvalidArgument,
            format!(
                "larder has no pub/sub: only {} can be subscribed (client-side caching), not '{}'",
                String::from_utf8_lossy(CHANNEL),
                String::from_utf8_lossy(other)
            ),
        ));
    }
    // Invalidations for this connection start flowing to it now.
    let _ = ctx.client.inbox();
    for _ in &argv[1..] {
        ctx.session.subscribed = true;
        confirm(ctx, b"subscribe", Some(CHANNEL));
    }
    Ok(())
}

fn unsubscribe(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    if argv.len() == 1 {
        let channel = ctx.session.subscribed.then_some(CHANNEL);
        ctx.session.subscribed = false;
        confirm(ctx, b"unsubscribe", channel);
        return Ok(());
    }
    for &channel in &argv[1..] {
        if channel == CHANNEL {
            ctx.session.subscribed = false;
        }
        confirm(ctx, b"unsubscribe", Some(channel));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::Harness;

    const SUBSCRIBED: &str = "*3\r\n$9\r\nsubscribe\r\n$20\r\n__redis__:invalidate\r\n:1\r\n";
    const UNSUBSCRIBED: &str = "*3\r\n$11\r\nunsubscribe\r\n$20\r\n__redis__:invalidate\r\n:0\r\n";

    #[test]
    fn only_the_invalidation_channel() {
        let mut h = Harness::new();
        h.check(&[
            (
                "subscribe news",
                "-ERR larder has no pub/sub: only __redis__:invalidate can be subscribed (client-side caching), not 'news'\r\n",
            ),
            ("unsubscribe", "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"),
            ("subscribe __redis__:invalidate", SUBSCRIBED),
            (
                "get k",
                "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
            ),
            ("ping", "*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
            ("ping hi", "*2\r\n$4\r\npong\r\n$2\r\nhi\r\n"),
            ("unsubscribe news", "*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:1\r\n"),
            ("unsubscribe", UNSUBSCRIBED),
            ("get k", "$-1\r\n"),
            ("subscribe __redis__:invalidate", SUBSCRIBED),
            ("unsubscribe __redis__:invalidate", UNSUBSCRIBED),
        ]);
    }

    #[test]
    fn resp3_confirmations_are_pushes_and_other_commands_run() {
        let mut h = Harness::new();
        h.run(&["hello", "3"]);
        h.check(&[
            (
                "subscribe __redis__:invalidate",
                ">3\r\n$9\r\nsubscribe\r\n$20\r\n__redis__:invalidate\r\n:1\r\n",
            ),
            ("get k", "_\r\n"),
        ]);
    }
}
