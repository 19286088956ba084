//! RESP's side of client-side caching over the node's tracking table
//! ([`crate::node::tracking`]): a connection's `CLIENT TRACKING` state, the keys a read-only
//! command records before it runs, and the invalidation messages Redis 6 defines (a RESP3
//! `invalidate` push, or a RESP2 `message` on `__redis__:invalidate` to a subscribed
//! redirection target).

use bytes::Bytes;
use larder_proto::resp::{Protocol, encode};
use tokio::sync::mpsc;

use super::ctx::{Command, Ctx};
pub(crate) use super::tracked::Tracked;
use crate::node::tracking::Notice;

/// The pub/sub channel RESP2 connections subscribe to for redirected invalidations.
pub(crate) const CHANNEL: &[u8] = b"__redis__:invalidate";
/// Notices written in one go at most, so one connection's pushes hold up no other for long.
const NOTICES_PER_WRITE: usize = 4_096;

/// Before a command runs on a tracking connection: a read-only command records its keys (so
/// that a change after this is told, and the read sees any change before it).
pub(crate) fn before(ctx: &Ctx<'_>, command: &Command, argv: &[&[u8]]) {
    let Some(tracked) = &ctx.session.tracking else {
        return;
    };
    if command.flags.contains(&"readonly") && tracked.records(ctx.session.caching) {
        for key in keys(command, argv) {
            ctx.node.tracking.track(&tracked.subscriber, key);
        }
    }
}

/// After a command: `CLIENT CACHING`'s answer is used up, unless this was that command.
pub(crate) fn after(ctx: &mut Ctx<'_>, command: &Command, argv: &[&[u8]]) {
    let caching = command.name == "client"
        && argv
            .get(1)
            .is_some_and(|sub| sub.eq_ignore_ascii_case(b"caching"));
    if !caching {
        ctx.session.caching = None;
    }
}

/// The keys of a command by its key positions (first, last, step; a negative last counts
/// from the end).
fn keys<'a>(command: &Command, argv: &'a [&'a [u8]]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let (first, last, step) = command.keys;
    let len = i64::try_from(argv.len()).unwrap_or(0);
    let first = i64::from(first);
    let last = match i64::from(last) {
        last if last < 0 => len + last,
        last => last,
    };
    let step = usize::try_from(step.max(1)).unwrap_or(1);
    let range = if first <= 0 || last < first {
        0..0
    } else {
        usize::try_from(first).unwrap_or(0)..usize::try_from(last + 1).unwrap_or(0)
    };
    range
        .step_by(step)
        .filter_map(move |i| argv.get(i).copied())
}

/// Appends the messages for `first` and the notices queued behind it (up to a bound), as
/// this connection's `protocol` and subscription call for; nothing for a RESP2 connection
/// that is not subscribed to [`CHANNEL`], as in Redis.
pub(crate) fn write_notices(
    out: &mut Vec<u8>,
    protocol: Protocol,
    subscribed: bool,
    first: Notice,
    queued: &mut mpsc::Receiver<Notice>,
) {
    let deliver = protocol == Protocol::Resp3 || subscribed;
    let mut keys: Vec<Bytes> = Vec::new();
    let mut next = Some(first);
    let mut taken = 0;
    while let Some(notice) = next.take() {
        taken += 1;
        match notice {
            Notice::Key(key, _) => keys.push(key),
            Notice::Flush => {
                if deliver {
                    message(out, protocol, &keys);
                    flush_message(out, protocol);
                }
                keys.clear();
            }
            Notice::RedirectBroken(target) => {
                if protocol == Protocol::Resp3 {
                    message(out, protocol, &keys);
                    keys.clear();
                    encode::push(out, protocol, 2);
                    encode::bulk(out, b"tracking-redir-broken");
                    encode::integer(out, i64::try_from(target).unwrap_or(i64::MAX));
                }
            }
            Notice::Pong(_) => {}
        }
        if taken < NOTICES_PER_WRITE {
            next = queued.try_recv().ok();
        }
    }
    if deliver {
        message(out, protocol, &keys);
    }
}

/// The header of an invalidation message: a RESP3 push, or a RESP2 pub/sub message.
fn header(out: &mut Vec<u8>, protocol: Protocol) {
    if protocol == Protocol::Resp3 {
        encode::push(out, protocol, 2);
        encode::bulk(out, b"invalidate");
    } else {
        encode::array(out, 3);
        encode::bulk(out, b"message");
        encode::bulk(out, CHANNEL);
    }
}

/// One message naming `keys` (nothing for none).
fn message(out: &mut Vec<u8>, protocol: Protocol, keys: &[Bytes]) {
    if keys.is_empty() {
        return;
    }
    header(out, protocol);
    encode::array(out, keys.len());
    for key in keys {
        encode::bulk(out, key);
    }
}

/// The message of a flush: the keys are a null.
fn flush_message(out: &mut Vec<u8>, protocol: Protocol) {
    header(out, protocol);
    encode::null(out, protocol);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(protocol: Protocol, subscribed: bool, notices: Vec<Notice>) -> String {
        let (tx, mut rx) = mpsc::channel(16);
        let mut notices = notices.into_iter();
        let first = notices.next().unwrap();
        for notice in notices {
            tx.try_send(notice).unwrap();
        }
        let mut out = Vec::new();
        write_notices(&mut out, protocol, subscribed, first, &mut rx);
        String::from_utf8(out).unwrap()
    }

    fn key(k: &str) -> Notice {
        Notice::Key(Bytes::from(k.to_owned()), 3)
    }

    #[test]
    fn messages_as_redis_writes_them() {
        assert_eq!(
            written(Protocol::Resp3, false, vec![key("a"), key("bc")]),
            ">2\r\n$10\r\ninvalidate\r\n*2\r\n$1\r\na\r\n$2\r\nbc\r\n"
        );
        assert_eq!(
            written(Protocol::Resp3, false, vec![key("a"), Notice::Flush]),
            ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n>2\r\n$10\r\ninvalidate\r\n_\r\n"
        );
        assert_eq!(
            written(Protocol::Resp2, true, vec![key("k")]),
            "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$1\r\nk\r\n"
        );
        assert_eq!(
            written(Protocol::Resp2, true, vec![Notice::Flush]),
            "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$-1\r\n"
        );
        // A RESP2 connection that did not subscribe cannot be told.
        assert_eq!(written(Protocol::Resp2, false, vec![key("k")]), "");
        assert_eq!(
            written(Protocol::Resp3, false, vec![Notice::RedirectBroken(9)]),
            ">2\r\n$21\r\ntracking-redir-broken\r\n:9\r\n"
        );
        assert_eq!(
            written(Protocol::Resp2, false, vec![Notice::RedirectBroken(9)]),
            ""
        );
    }

    #[test]
    fn key_positions() {
        let table = &*super::super::table::COMMANDS;
        let command = |name: &str| table[table.lookup(name.as_bytes()).unwrap()];
        let argv: Vec<&[u8]> = vec![b"mget", b"a", b"b", b"c"];
        let got: Vec<&[u8]> = keys(&command("mget"), &argv).collect();
        assert_eq!(got, vec![&b"a"[..], b"b", b"c"]);
        let argv: Vec<&[u8]> = vec![b"get", b"a"];
        assert_eq!(keys(&command("get"), &argv).count(), 1);
        let argv: Vec<&[u8]> = vec![b"ping"];
        assert_eq!(keys(&command("ping"), &argv).count(), 0);
    }
}
