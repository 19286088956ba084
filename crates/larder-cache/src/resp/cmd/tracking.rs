//! Client-side caching's CLIENT subcommands, as Redis 6 defines them: `TRACKING` turns
//! tracking on or off (with `REDIRECT`, `PREFIX`, `BCAST`, `OPTIN`, `OPTOUT`, `NOLOOP`),
//! `CACHING` answers OPTIN/OPTOUT for the next command, `GETREDIR` and `TRACKINGINFO` report.
//! The table itself is the node's ([`crate::node::tracking`]); gRPC `Watch` uses the same.

use bytes::Bytes;
use larder_proto::ErrorCode;

use crate::node::tracking::Mode;
use crate::resp::ctx::{CmdError, CmdResult, CommandSpec, Ctx, parse_i64, spec};
use crate::resp::tracking::Tracked;

const FLAGS: &[&str] = &["noscript", "loading", "stale"];

/// `CLIENT TRACKING`, listed among CLIENT's subcommands.
pub(crate) const TRACKING: CommandSpec = spec(
    "tracking",
    -3,
    FLAGS,
    (0, 0, 0),
    "Turns server-assisted client-side caching on or off for the connection.",
    "6.0.0",
    tracking,
);
/// `CLIENT CACHING`, listed among CLIENT's subcommands.
pub(crate) const CACHING: CommandSpec = spec(
    "caching",
    3,
    FLAGS,
    (0, 0, 0),
    "Tells whether the next command's keys are tracked (OPTIN: YES, OPTOUT: NO).",
    "6.0.0",
    caching,
);
/// `CLIENT GETREDIR`, listed among CLIENT's subcommands.
pub(crate) const GETREDIR: CommandSpec = spec(
    "getredir",
    2,
    FLAGS,
    (0, 0, 0),
    "Replies the client id tracking notifications are redirected to: 0 none, -1 off.",
    "6.0.0",
    getredir,
);
/// `CLIENT TRACKINGINFO`, listed among CLIENT's subcommands.
pub(crate) const TRACKINGINFO: CommandSpec = spec(
    "trackinginfo",
    2,
    FLAGS,
    (0, 0, 0),
    "Describes the connection's tracking: flags, redirection and prefixes.",
    "6.2.0",
    trackinginfo,
);

fn error(text: &'static str) -> CmdError {
    CmdError::new(ErrorCode::InvalidArgument, text)
}

/// What `CLIENT TRACKING` asked for.
#[derive(Debug, Default)]
struct Options {
    on: bool,
    redirect: Option<i64>,
    bcast: bool,
    optin: bool,
    optout: bool,
    noloop: bool,
    prefixes: Vec<Bytes>,
}

fn options(argv: &[&[u8]]) -> Result<Options, CmdError> {
    let on = match argv[2] {
        on if on.eq_ignore_ascii_case(b"on") => true,
        off if off.eq_ignore_ascii_case(b"off") => false,
        _ => return Err(CmdError::syntax()),
    };
    let mut opts = Options {
        on,
        ..Options::default()
    };
    let mut rest = argv[3..].iter();
    while let Some(&option) = rest.next() {
        let is = |name: &[u8]| option.eq_ignore_ascii_case(name);
        if is(b"redirect") {
            if opts.redirect.is_some() {
                return Err(error("A client can only redirect to a single other client"));
            }
            let id = rest.next().ok_or_else(CmdError::syntax)?;
            opts.redirect = Some(parse_i64(id)?);
        } else if is(b"prefix") {
            let prefix = rest.next().ok_or_else(CmdError::syntax)?;
            opts.prefixes.push(Bytes::copy_from_slice(prefix));
        } else if is(b"bcast") {
            opts.bcast = true;
        } else if is(b"optin") {
            opts.optin = true;
        } else if is(b"optout") {
            opts.optout = true;
        } else if is(b"noloop") {
            opts.noloop = true;
        } else {
            return Err(CmdError::syntax());
        }
    }
    Ok(opts)
}

/// Redis's checks of a `CLIENT TRACKING ON`, in its order, against the current state.
fn check(opts: &Options, current: Option<&Tracked>) -> Result<(), CmdError> {
    if opts.bcast {
        for (i, a) in opts.prefixes.iter().enumerate() {
            for b in &opts.prefixes[i + 1..] {
                if a.starts_with(b) || b.starts_with(a) {
                    return Err(CmdError::new(
                        ErrorCode::InvalidArgument,
                        format!(
                            "Prefix '{}' overlaps with another provided prefix '{}'. \
                             Prefixes for a single client must not overlap.",
                            String::from_utf8_lossy(a),
                            String::from_utf8_lossy(b)
                        ),
                    ));
                }
            }
        }
    } else if !opts.prefixes.is_empty() {
        return Err(error("PREFIX option requires BCAST mode to be enabled"));
    }
    if let Some(current) = current
        && current.subscriber.chose_broadcast() != opts.bcast
    {
        return Err(error(
            "You can't switch BCAST mode on/off before disabling tracking for this \
             client, and then re-enabling it with a different mode.",
        ));
    }
    if opts.bcast && (opts.optin || opts.optout) {
        return Err(error("OPTIN and OPTOUT are not compatible with BCAST"));
    }
    if opts.optin && opts.optout {
        return Err(error("You can't use both OPTIN and OPTOUT"));
    }
    if let Some(current) = current
        && ((current.optin && opts.optout) || (current.optout && opts.optin))
    {
        return Err(error(
            "You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, \
             and then re-enabling it with a different mode.",
        ));
    }
    Ok(())
}

/// `CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN] [OPTOUT] [NOLOOP]`.
fn tracking(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let opts = options(argv)?;
    if !opts.on {
        stop(ctx);
        ctx.ok();
        return Ok(());
    }
    let redirect = match opts.redirect {
        Some(id) => {
            let target = u64::try_from(id)
                .ok()
                .and_then(|id| ctx.node.clients.get(id));
            let Some(target) = target else {
                return Err(error("The client ID you want redirect to does not exist"));
            };
            Some(target)
        }
        None => None,
    };
    check(&opts, ctx.session.tracking.as_deref())?;
    let inbox = match &redirect {
        Some(target) => target.inbox(),
        None => ctx.client.inbox(),
    };
    let mode = Mode {
        broadcast: opts.bcast,
        prefixes: opts.prefixes,
        noloop: if opts.noloop { ctx.client.id } else { 0 },
        redirected_from: redirect
            .as_ref()
            .map(|target| (ctx.client.inbox(), target.id)),
    };
    // Turning it on again starts over: the copies made so far are dropped first, since the
    // keys recorded for them are not carried over.
    stop(ctx);
    let subscriber = ctx.node.tracking.subscribe(mode, inbox, None);
    ctx.session.tracking = Some(Box::new(Tracked {
        subscriber,
        redirect: redirect.map_or(0, |target| target.id),
        optin: opts.optin,
        optout: opts.optout,
        noloop: opts.noloop,
    }));
    ctx.ok();
    Ok(())
}

/// Turns the connection's tracking off, telling its receiver to drop what it cached.
pub(crate) fn stop(ctx: &mut Ctx<'_>) {
    ctx.session.caching = None;
    if let Some(tracked) = ctx.session.tracking.take() {
        tracked.subscriber.flush_now();
        ctx.node.tracking.unsubscribe(&tracked.subscriber);
    }
}

/// `CLIENT CACHING YES|NO`.
fn caching(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let Some(tracked) = &ctx.session.tracking else {
        return Err(error(
            "CLIENT CACHING can be called only when the client is in tracking mode with \
             OPTIN or OPTOUT mode enabled",
        ));
    };
    let answer = argv[2];
    if answer.eq_ignore_ascii_case(b"yes") {
        if !tracked.optin {
            return Err(error(
                "CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
            ));
        }
        ctx.session.caching = Some(true);
    } else if answer.eq_ignore_ascii_case(b"no") {
        if !tracked.optout {
            return Err(error(
                "CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
            ));
        }
        ctx.session.caching = Some(false);
    } else {
        return Err(CmdError::syntax());
    }
    ctx.ok();
    Ok(())
}

/// The redirection as GETREDIR and TRACKINGINFO report it: -1 off, 0 none, else the id.
fn redirection(ctx: &Ctx<'_>) -> i64 {
    ctx.session.tracking.as_ref().map_or(-1, |tracked| {
        i64::try_from(tracked.redirect).unwrap_or(i64::MAX)
    })
}

fn getredir(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    ctx.int(redirection(ctx));
    Ok(())
}

fn trackinginfo(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    let mut flags: Vec<&[u8]> = Vec::new();
    let mut prefixes = Vec::new();
    match &ctx.session.tracking {
        None => flags.push(b"off"),
        Some(tracked) => {
            flags.push(b"on");
            if tracked.subscriber.chose_broadcast() {
                flags.push(b"bcast");
            }
            if tracked.optin {
                flags.push(b"optin");
                if ctx.session.caching == Some(true) {
                    flags.push(b"caching-yes");
                }
            }
            if tracked.optout {
                flags.push(b"optout");
                if ctx.session.caching == Some(false) {
                    flags.push(b"caching-no");
                }
            }
            if tracked.noloop {
                flags.push(b"noloop");
            }
            if tracked.redirect != 0 && tracked.subscriber.undelivered() {
                flags.push(b"broken_redirect");
            }
            prefixes = tracked.subscriber.prefixes().to_vec();
        }
    }
    let redirect = redirection(ctx);
    ctx.map(3);
    ctx.bulk(b"flags");
    ctx.set_header(flags.len());
    for flag in flags {
        ctx.bulk(flag);
    }
    ctx.bulk(b"redirect");
    ctx.int(redirect);
    ctx.bulk(b"prefixes");
    ctx.array(prefixes.len());
    for prefix in &prefixes {
        ctx.bulk(prefix);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::Harness;

    const OFF_INFO: &str =
        "*6\r\n$5\r\nflags\r\n*1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n$8\r\nprefixes\r\n*0\r\n";

    #[test]
    fn tracking_options_and_their_errors() {
        let mut h = Harness::new();
        h.check(&[
            ("client getredir", ":-1\r\n"),
            ("client trackinginfo", OFF_INFO),
            ("client tracking maybe", "-ERR syntax error\r\n"),
            ("client tracking on whatever", "-ERR syntax error\r\n"),
            ("client tracking on redirect", "-ERR syntax error\r\n"),
            (
                "client tracking on redirect x",
                "-ERR value is not an integer or out of range\r\n",
            ),
            (
                "client tracking on redirect 999",
                "-ERR The client ID you want redirect to does not exist\r\n",
            ),
            (
                "client tracking on redirect 1 redirect 1",
                "-ERR A client can only redirect to a single other client\r\n",
            ),
            (
                "client tracking on prefix a",
                "-ERR PREFIX option requires BCAST mode to be enabled\r\n",
            ),
            (
                "client tracking on bcast prefix ab prefix a",
                "-ERR Prefix 'ab' overlaps with another provided prefix 'a'. Prefixes for a single client must not overlap.\r\n",
            ),
            (
                "client tracking on bcast optin",
                "-ERR OPTIN and OPTOUT are not compatible with BCAST\r\n",
            ),
            (
                "client tracking on optin optout",
                "-ERR You can't use both OPTIN and OPTOUT\r\n",
            ),
            (
                "client caching yes",
                "-ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled\r\n",
            ),
            ("client trackinginfo", OFF_INFO),
        ]);
    }

    #[test]
    fn optin_caching_and_info() {
        let mut h = Harness::new();
        h.check(&[
            ("client tracking on optin noloop", "+OK\r\n"),
            ("client getredir", ":0\r\n"),
            (
                "client caching no",
                "-ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.\r\n",
            ),
            ("client caching maybe", "-ERR syntax error\r\n"),
            ("client caching yes", "+OK\r\n"),
            (
                "client trackinginfo",
                "*6\r\n$5\r\nflags\r\n*4\r\n$2\r\non\r\n$5\r\noptin\r\n$11\r\ncaching-yes\r\n$6\r\nnoloop\r\n$8\r\nredirect\r\n:0\r\n$8\r\nprefixes\r\n*0\r\n",
            ),
            (
                "client tracking on optout",
                "-ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode.\r\n",
            ),
            (
                "client tracking on bcast",
                "-ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.\r\n",
            ),
            ("client tracking off", "+OK\r\n"),
            ("client tracking on bcast prefix a prefix b", "+OK\r\n"),
            (
                "client trackinginfo",
                "*6\r\n$5\r\nflags\r\n*2\r\n$2\r\non\r\n$5\r\nbcast\r\n$8\r\nredirect\r\n:0\r\n$8\r\nprefixes\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n",
            ),
            ("client tracking off", "+OK\r\n"),
            ("client trackinginfo", OFF_INFO),
        ]);
    }

    #[test]
    fn optin_reads_are_recorded_only_after_caching_yes() {
        let mut h = Harness::new();
        h.check(&[
            ("client tracking on optin", "+OK\r\n"),
            ("get a", "$-1\r\n"),
        ]);
        assert_eq!(h.node.tracking.tracked_keys(), 0);
        h.check(&[("client caching yes", "+OK\r\n"), ("get b", "$-1\r\n")]);
        assert_eq!(h.node.tracking.tracked_keys(), 1);
        // The answer is used up by the one command after it.
        h.check(&[("get c", "$-1\r\n")]);
        assert_eq!(h.node.tracking.tracked_keys(), 1);
        h.check(&[
            ("client tracking off", "+OK\r\n"),
            ("client tracking on", "+OK\r\n"),
        ]);
        h.check(&[("mget d e", "*2\r\n$-1\r\n$-1\r\n")]);
        assert_eq!(h.node.tracking.tracked_keys(), 3);
    }
}
