//! The replies that wait for an origin (a `GET` that needs a load, an `MGET` with a key that
//! has an origin, a `SET` of a write-through key), and the `INVALIDATE` command.
//!
//! Handlers run synchronously on a batch of requests. One whose reply waits leaves a
//! [`Deferred`] in its context, and the connection writes the replies so far, awaits it,
//! appends its reply, and goes on with the rest of the batch, so replies keep request order.

use larder_proto::resp::{Protocol, encode};

use crate::node::Node;
use crate::node::read::Pending;
use crate::node::write::PendingWrite;
use crate::resp::ctx::{CmdError, CmdResult, Ctx};
use crate::resp::table::{CommandSpec, spec};

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

/// A reply that waits for an origin.
#[derive(Debug)]
pub(crate) enum Deferred {
    /// `GET` of a key that needs a load.
    Get(Pending),
    /// `MGET` with at least one key that has an origin.
    MGet(Vec<Box<[u8]>>),
    /// `SET` of a write-through key.
    Set(PendingWrite),
}

fn invalidate(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let node = ctx.node;
    let dropped = argv[1..].iter().filter(|key| node.invalidate(key)).count();
    ctx.uint(dropped as u64);
    Ok(())
}

impl Deferred {
    /// Waits for the origin and writes the reply to `out`; returns whether it succeeded.
    pub(crate) async fn finish(self, node: &Node, protocol: Protocol, out: &mut Vec<u8>) -> bool {
        let result = match self {
            Self::Get(pending) => pending.finish().await.map(|found| match found {
                Some(served) => encode::bulk(out, &served.value),
                None => encode::null(out, protocol),
            }),
            Self::MGet(keys) => node.read_all(&keys).await.map(|values| {
                encode::array(out, values.len());
                for value in values {
                    match value {
                        Some(served) => encode::bulk(out, &served.value),
                        None => encode::null(out, protocol),
                    }
                }
            }),
            Self::Set(pending) => pending.finish().await.map(|_| encode::simple(out, b"OK")),
        };
        match result {
            Ok(()) => true,
            Err(err) => {
                encode::error(out, CmdError::from(err).to_string().as_bytes());
                false
            }
        }
    }
}
