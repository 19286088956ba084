//! Replies that wait for an origin: a `GET` that needs a load, an `MGET` with a key that has
//! an origin, a `SET` of a write-through key. Handlers run synchronously on a batch of
//! requests; one whose reply waits leaves a [`Deferred`] in its context, and the connection
//! writes the replies so far, awaits it, appends its reply, and goes on with the rest of the
//! batch, so replies keep request order.

use larder_proto::resp::{Protocol, encode};

use super::error::CmdError;
use crate::node::Node;
use crate::node::read::Pending;
use crate::node::write::PendingWrite;

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
