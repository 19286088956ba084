//! The Redis protocol: connections accepted up to `max_clients` and served thread-per-core
//! ([`threads`]), each on its own task ([`conn`]), every request dispatched through the
//! command [`table`].

mod cmd;
mod conn;
pub(crate) mod ctx;
mod deferred;
mod error;
pub(crate) mod route;
pub(crate) mod table;
pub(crate) mod threads;
mod tracked;
pub(crate) mod tracking;
mod transport;

use std::sync::atomic::Ordering::Relaxed;

use larder_proto::resp::encode;

use crate::metrics::{LocalCounts, Wire};
use crate::node::Node;
use ctx::{CmdError, Ctx};
use deferred::Deferred;
use table::COMMANDS;

/// A request whose reply waits for an origin: its command index (for the metrics) and what
/// it waits for.
pub(crate) type Pending = (usize, Deferred);

/// Runs one request and counts it, unless its reply waits for an origin: then it is returned,
/// and counted when finished. `argv[0]` is the command name.
fn execute(ctx: &mut Ctx<'_>, argv: &[&[u8]], local: &mut LocalCounts) -> Option<Pending> {
    let &name = argv.first()?;
    // Clients repeat commands, so try the connection's previous one before the table.
    let previous = usize::from(ctx.client.last_cmd.load(Relaxed));
    let found = match COMMANDS.get(previous) {
        Some(command) if command.name.as_bytes().eq_ignore_ascii_case(name) => Some(previous),
        _ => COMMANDS.lookup(name),
    };
    let Some(index) = found else {
        let err = CmdError::new(larder_proto::ErrorCode::UnknownCommand, unknown(argv));
        encode::error(ctx.out, err.to_string().as_bytes());
        local.add(COMMANDS.len(), false);
        return None;
    };
    let spec = COMMANDS[index];
    let node = ctx.node;
    // Redis checks arity before authentication, so clients see the same error first.
    let result = if !spec.arity_ok(argv.len()) {
        Err(CmdError::arity(spec.name))
    } else if !ctx.session.authed && !spec.no_auth() {
        Err(CmdError::new(
            larder_proto::ErrorCode::Unauthenticated,
            "Authentication required.",
        ))
    } else if let Some(redirect) = node
        .cluster
        .as_ref()
        .and_then(|view| route::check(ctx, view, &spec, argv))
    {
        encode::error(ctx.out, redirect.as_bytes());
        local.add(index, false);
        return None;
    } else if let Some(refused) = subscribed_refuses(ctx, &spec) {
        Err(refused)
    } else if ctx.session.tracking.is_some() {
        tracking::before(ctx, &spec, argv);
        let noloop = ctx.session.tracking.as_ref().is_some_and(|t| t.noloop);
        let result = if noloop {
            crate::node::tracking::as_writer(ctx.client.id, || (spec.handler)(ctx, argv))
        } else {
            (spec.handler)(ctx, argv)
        };
        tracking::after(ctx, &spec, argv);
        result
    } else {
        (spec.handler)(ctx, argv)
    };
    if spec.name != "asking" {
        ctx.session.asking = false;
    }
    if let Err(err) = &result {
        encode::error(ctx.out, err.to_string().as_bytes());
    }
    if index != previous {
        let index = u16::try_from(index).unwrap_or(u16::MAX);
        ctx.client.last_cmd.store(index, Relaxed);
    }
    match ctx.deferred.take() {
        Some(deferred) if result.is_ok() => Some((index, deferred)),
        _ => {
            local.add(index, result.is_ok());
            None
        }
    }
}

/// A RESP2 connection subscribed to invalidations takes only the pub/sub commands, PING,
/// QUIT and RESET, as Redis's subscribed mode.
fn subscribed_refuses(ctx: &Ctx<'_>, spec: &ctx::Command) -> Option<CmdError> {
    if !ctx.session.subscribed || ctx.session.protocol == larder_proto::resp::Protocol::Resp3 {
        return None;
    }
    if matches!(
        spec.name,
        "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "ping" | "quit" | "reset"
    ) {
        return None;
    }
    Some(CmdError::new(
        larder_proto::ErrorCode::InvalidArgument,
        format!(
            "Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET \
             are allowed in this context",
            spec.name
        ),
    ))
}

/// Redis's text for an unknown command: the name and the first arguments, each cut short.
fn unknown(argv: &[&[u8]]) -> String {
    let quote = |arg: &[u8]| {
        let text = String::from_utf8_lossy(&arg[..arg.len().min(128)]).into_owned();
        text.replace(['\r', '\n'], " ")
    };
    let mut text = format!(
        "unknown command '{}', with args beginning with: ",
        quote(argv[0])
    );
    for arg in argv.iter().skip(1).take(16) {
        text.push_str(&format!("'{}' ", quote(arg)));
    }
    text
}

/// Marks a connection open or closed in the metrics.
fn count_connection(node: &Node, open: bool) {
    let gauge = &node.metrics.connections[Wire::Resp as usize];
    if open {
        gauge.fetch_add(1, Relaxed);
        node.metrics.connections_total[Wire::Resp as usize].fetch_add(1, Relaxed);
    } else {
        gauge.fetch_sub(1, Relaxed);
    }
}
