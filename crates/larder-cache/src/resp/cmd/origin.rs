//! Read-through and write-through over RESP: `GET`, `MGET` and `SET` of keys with an origin,
//! the `INVALIDATE` command, and the guard that keeps other writes off write-through keys.
//!
//! Handlers run synchronously on a batch of requests. A `GET` whose value is fresh (or stale
//! inside the revalidate window) is answered there; one that needs a load leaves a
//! [`Deferred`] in its context, and the connection writes the replies so far, awaits it,
//! appends its reply, and goes on with the rest of the batch, so replies keep request order.

use std::sync::Arc;

use larder_proto::ErrorCode;
use larder_proto::resp::{Protocol, encode};

use crate::node::{Node, unix_ms};
use crate::origin::{Freshness, Origin, OriginError, Origins, Step, served};
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

/// Commands that may change a write-through key: `SET` goes to the origin, the others only
/// drop or re-time the cached copy.
const WRITE_THROUGH_OK: &[&str] = &[
    "set",
    "del",
    "unlink",
    "invalidate",
    "getdel",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "persist",
];

/// A reply that waits for an origin.
#[derive(Debug)]
pub(crate) enum Deferred {
    /// `GET` of a key that needs a load.
    Get { origin: Arc<Origin>, key: Box<[u8]> },
    /// `MGET` with at least one key that has an origin.
    MGet { keys: Vec<Box<[u8]>> },
    /// `SET` of a write-through key.
    Set {
        origin: Arc<Origin>,
        key: Box<[u8]>,
        value: Box<[u8]>,
    },
}

fn origin_error(err: &OriginError) -> CmdError {
    CmdError::new(err.code(), err.to_string())
}

/// `GET` of a key `origin` serves.
pub(crate) fn get(
    ctx: &mut Ctx<'_>,
    origins: &Arc<Origins>,
    origin: &Arc<Origin>,
    key: &[u8],
) -> CmdResult {
    let now = unix_ms();
    let out = &mut *ctx.out;
    let found = ctx.node.store.get_with(key, |entry| {
        let freshness = origin.freshness(entry.expires_at, now);
        if freshness != Freshness::IfError {
            encode::bulk(out, entry.value);
        }
        freshness
    });
    match found {
        Some(Freshness::Fresh) => {}
        Some(Freshness::Revalidate) => origins.served_stale(origin, key),
        None if origins.known_missing(key, now) => ctx.null(),
        _ => {
            ctx.deferred = Some(Deferred::Get {
                origin: origin.clone(),
                key: key.into(),
            });
        }
    }
    Ok(())
}

/// `MGET` when origins are configured: deferred if any key has one.
pub(crate) fn mget(ctx: &mut Ctx<'_>, origins: &Origins, keys: &[&[u8]]) -> Option<()> {
    keys.iter().any(|key| origins.find(key).is_some()).then(|| {
        ctx.deferred = Some(Deferred::MGet {
            keys: keys.iter().map(|&key| key.into()).collect(),
        });
    })
}

/// `SET` of a write-through key: plain `SET key value` only.
pub(crate) fn set(ctx: &mut Ctx<'_>, origin: &Arc<Origin>, argv: &[&[u8]]) -> CmdResult {
    if argv.len() != 3 {
        return Err(CmdError::new(
            ErrorCode::InvalidArgument,
            "write-through keys take a plain SET key value (no options)",
        ));
    }
    ctx.deferred = Some(Deferred::Set {
        origin: origin.clone(),
        key: argv[1].into(),
        value: argv[2].into(),
    });
    Ok(())
}

/// The write-through origin of `key`, if it has one.
pub(crate) fn write_through<'n>(node: &'n Node, key: &[u8]) -> Option<&'n Arc<Origin>> {
    node.origins
        .as_ref()?
        .find(key)
        .filter(|origin| origin.write_through())
}

/// Before a write command on keys an origin claims: refuses it on a write-through key unless
/// it is in [`WRITE_THROUGH_OK`] (others would change the cache behind the origin's back), and
/// retires any load of the key in flight, so what a load read before this write cannot
/// replace it.
pub(crate) fn guard_writes(node: &Node, spec: &CommandSpec, argv: &[&[u8]]) -> CmdResult {
    let Some(origins) = &node.origins else {
        return Ok(());
    };
    let (first, last, step) = spec.keys;
    if !spec.flags.contains(&"write") || first <= 0 || step <= 0 {
        return Ok(());
    }
    let argc = i64::try_from(argv.len()).unwrap_or(i64::MAX);
    let last = if last < 0 {
        argc + i64::from(last)
    } else {
        i64::from(last)
    };
    let allowed = WRITE_THROUGH_OK.contains(&spec.name);
    let keys = (i64::from(first)..=last)
        .step_by(usize::try_from(step).unwrap_or(1))
        .filter_map(|at| usize::try_from(at).ok().and_then(|i| argv.get(i)).copied());
    // Checked before anything is retired, so a refused command changes nothing; no
    // allocation on the common path where no key is claimed.
    if !allowed
        && keys
            .clone()
            .any(|key| origins.find(key).is_some_and(|o| o.write_through()))
    {
        return Err(CmdError::new(
            ErrorCode::Conflict,
            format!("'{}' cannot change a write-through key; use SET", spec.name),
        ));
    }
    for key in keys {
        if origins.find(key).is_some() {
            origins.retire(key);
        }
    }
    Ok(())
}

fn invalidate(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let node = ctx.node;
    let dropped = argv[1..]
        .iter()
        .filter(|key| match &node.origins {
            Some(origins) => origins.invalidate(key),
            None => node.store.delete(key),
        })
        .count();
    ctx.uint(dropped as u64);
    Ok(())
}

impl Deferred {
    /// Waits for the origin and writes the reply to `out`; returns whether it succeeded.
    pub(crate) async fn finish(self, node: &Node, protocol: Protocol, out: &mut Vec<u8>) -> bool {
        let Some(origins) = &node.origins else {
            return false;
        };
        let result = match self {
            Self::Get { origin, key } => {
                origins.read(&origin, &key).await.map(|found| match found {
                    Some(served) => encode::bulk(out, &served.value),
                    None => encode::null(out, protocol),
                })
            }
            Self::MGet { keys } => mget_through(node, origins, &keys, protocol, out).await,
            Self::Set { origin, key, value } => origins
                .write(&origin, &key, &value)
                .await
                .map(|_| encode::simple(out, b"OK")),
        };
        match result {
            Ok(()) => true,
            Err(err) => {
                encode::error(out, origin_error(&err).to_string().as_bytes());
                false
            }
        }
    }
}

/// Every key's read begins (joining or starting its load) before any is awaited.
async fn mget_through(
    node: &Node,
    origins: &Arc<Origins>,
    keys: &[Box<[u8]>],
    protocol: Protocol,
    out: &mut Vec<u8>,
) -> Result<(), OriginError> {
    let steps: Vec<Step> = keys
        .iter()
        .map(|key| match origins.find(key) {
            Some(origin) => origins.begin(origin, key),
            None => Step::Done(Ok(node.store.get_with(key, served))),
        })
        .collect();
    let start = out.len();
    encode::array(out, keys.len());
    for step in steps {
        let found = match Origins::finish(step).await {
            Ok(found) => found,
            Err(err) => {
                out.truncate(start);
                return Err(err);
            }
        };
        match found {
            Some(served) => encode::bulk(out, &served.value),
            None => encode::null(out, protocol),
        }
        if out.len() - start > node.max_request {
            out.truncate(start);
            return Err(OriginError::Invalid(
                "reply larger than max_request; ask for fewer keys".into(),
            ));
        }
    }
    Ok(())
}
