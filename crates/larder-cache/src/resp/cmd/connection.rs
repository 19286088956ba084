//! Connection commands: PING ECHO HELLO AUTH SELECT QUIT RESET, and CLIENT with its
//! subcommands (in the `client` module).

#[path = "client.rs"]
mod client;

use larder_proto::ErrorCode;
use larder_proto::resp::{Protocol, encode};

#[cfg(test)]
pub(crate) use client::SUBCOMMANDS as CLIENT_SUBCOMMANDS;

use crate::resp::ctx::{CmdError, CmdResult, CommandSpec, Ctx, parse_i64, spec};

/// The Redis version larder answers as; clients enable features by it.
pub(crate) const REDIS_VERSION: &str = "7.2.0";

/// Commands a client may send before it authenticates.
const BEFORE_AUTH: &[&str] = &[
    "noscript",
    "loading",
    "stale",
    "fast",
    "no_auth",
    "allow_busy",
];

/// The connection family's entries in the command table.
pub(crate) static COMMANDS: &[CommandSpec] = &[
    spec(
        "ping",
        -1,
        &["fast"],
        (0, 0, 0),
        "Checks that the server answers; replies PONG or the given message.",
        "1.0.0",
        ping,
    ),
    spec(
        "echo",
        2,
        &["fast"],
        (0, 0, 0),
        "Replies the given message.",
        "1.0.0",
        echo,
    ),
    spec(
        "hello",
        -1,
        BEFORE_AUTH,
        (0, 0, 0),
        "Chooses the protocol version, optionally authenticates and names the connection, and describes the server.",
        "6.0.0",
        hello,
    ),
    spec(
        "auth",
        -2,
        BEFORE_AUTH,
        (0, 0, 0),
        "Authenticates the connection.",
        "1.0.0",
        auth,
    ),
    spec(
        "select",
        2,
        &["loading", "stale", "fast"],
        (0, 0, 0),
        "Chooses the database; larder has only database 0.",
        "1.0.0",
        select,
    ),
    spec(
        "quit",
        -1,
        BEFORE_AUTH,
        (0, 0, 0),
        "Closes the connection once the replies so far are sent.",
        "1.0.0",
        quit,
    ),
    spec(
        "reset",
        1,
        BEFORE_AUTH,
        (0, 0, 0),
        "Returns the connection to its initial state: RESP2, no name, unauthenticated if a password is set.",
        "6.2.0",
        reset,
    ),
    spec(
        "client",
        -2,
        &[],
        (0, 0, 0),
        "Inspects and configures client connections.",
        "2.4.0",
        client::client,
    )
    .with_subcommands(client::SUBCOMMANDS),
];

fn ping(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    // A subscribed RESP2 connection reads only arrays: Redis answers `[pong, message]`.
    if ctx.session.subscribed && ctx.protocol() == larder_proto::resp::Protocol::Resp2 {
        let message: &[u8] = argv.get(1).copied().unwrap_or_default();
        if argv.len() > 2 {
            return Err(CmdError::arity("ping"));
        }
        ctx.array(2);
        ctx.bulk(b"pong");
        ctx.bulk(message);
        return Ok(());
    }
    match argv {
        [_] => ctx.simple(b"PONG"),
        [_, message] => ctx.bulk(message),
        _ => return Err(CmdError::arity("ping")),
    }
    Ok(())
}

fn echo(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    ctx.bulk(argv[1]);
    Ok(())
}

/// What `HELLO` was asked to do besides choosing the protocol.
#[derive(Default)]
struct HelloOptions<'a> {
    auth: Option<(&'a [u8], &'a [u8])>,
    name: Option<&'a [u8]>,
}

fn hello_options<'a>(args: &[&'a [u8]]) -> Result<HelloOptions<'a>, CmdError> {
    let mut opts = HelloOptions::default();
    let mut i = 0;
    while let Some(&option) = args.get(i) {
        let rest = &args[i + 1..];
        if option.eq_ignore_ascii_case(b"AUTH") && rest.len() >= 2 {
            opts.auth = Some((rest[0], rest[1]));
            i += 3;
        } else if option.eq_ignore_ascii_case(b"SETNAME") && !rest.is_empty() {
            opts.name = Some(rest[0]);
            i += 2;
        } else {
            let option = String::from_utf8_lossy(option);
            return Err(CmdError::new(
                ErrorCode::InvalidArgument,
                format!("Syntax error in HELLO option '{option}'"),
            ));
        }
    }
    Ok(opts)
}

fn hello(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let protocol = match argv.get(1).map(|v| parse_i64(v)) {
        None => None,
        Some(Ok(2)) => Some(Protocol::Resp2),
        Some(Ok(3)) => Some(Protocol::Resp3),
        Some(Ok(_)) => {
            // NOPROTO has no ErrorCode of its own, so the reply is written here.
            encode::error(ctx.out, b"NOPROTO unsupported protocol version");
            return Ok(());
        }
        Some(Err(_)) => {
            return Err(CmdError::new(
                ErrorCode::InvalidArgument,
                "Protocol version is not an integer or out of range",
            ));
        }
    };
    let opts = hello_options(argv.get(2..).unwrap_or_default())?;
    match opts.auth {
        Some((user, pass)) => check_credentials(ctx, user, pass)?,
        None if !ctx.session.authed => return Err(hello_unauthenticated()),
        None => {}
    }
    if let Some(name) = opts.name {
        client::check_name(name)?;
    }
    // Everything is checked: nothing changes unless the whole command succeeds.
    ctx.session.authed = true;
    if let Some(name) = opts.name {
        client::set_name(ctx, name);
    }
    if let Some(protocol) = protocol {
        set_protocol(ctx, protocol);
    }
    describe_server(ctx);
    Ok(())
}

fn hello_unauthenticated() -> CmdError {
    CmdError::new(
        ErrorCode::Unauthenticated,
        "HELLO must be called with the client already authenticated, otherwise the HELLO \
         <proto> AUTH <user> <pass> option can be used to authenticate the client and select \
         the RESP protocol version at the same time",
    )
}

/// `HELLO`'s reply: a map describing the server and this connection.
fn describe_server(ctx: &mut Ctx<'_>) {
    ctx.map(7);
    for (key, value) in [("server", "redis"), ("version", REDIS_VERSION)] {
        ctx.bulk(key.as_bytes());
        ctx.bulk(value.as_bytes());
    }
    ctx.bulk(b"proto");
    ctx.int(match ctx.protocol() {
        Protocol::Resp2 => 2,
        Protocol::Resp3 => 3,
    });
    ctx.bulk(b"id");
    ctx.uint(ctx.client.id);
    for (key, value) in [("mode", "standalone"), ("role", "master")] {
        ctx.bulk(key.as_bytes());
        ctx.bulk(value.as_bytes());
    }
    ctx.bulk(b"modules");
    ctx.array(0);
}

fn set_protocol(ctx: &mut Ctx<'_>, protocol: Protocol) {
    ctx.session.protocol = protocol;
    let version = match protocol {
        Protocol::Resp2 => 2,
        Protocol::Resp3 => 3,
    };
    ctx.client
        .protocol
        .store(version, std::sync::atomic::Ordering::Relaxed);
}

/// Checks a user and password against the node's: larder has one user, `default`, whose
/// password is the configured one (any password when none is configured).
fn check_credentials(ctx: &Ctx<'_>, user: &[u8], pass: &[u8]) -> CmdResult {
    let password = ctx.node.config.password.as_bytes();
    let pass_ok = password.is_empty() || larder_util::auth::secrets_match(pass, password);
    if user == b"default" && pass_ok {
        Ok(())
    } else {
        Err(CmdError::new(
            ErrorCode::WrongPassword,
            "invalid username-password pair or user is disabled.",
        ))
    }
}

/// Compares two secrets in time that depends only on their lengths, so the time a wrong
/// guess takes does not tell how much of it was right.
fn auth(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    let (user, pass): (&[u8], &[u8]) = match argv {
        [_, pass] => {
            if ctx.node.config.password.is_empty() {
                return Err(CmdError::new(
                    ErrorCode::InvalidArgument,
                    "AUTH <password> called without any password configured for the default \
                     user. Are you sure your configuration is correct?",
                ));
            }
            (b"default", pass)
        }
        [_, user, pass] => (user, pass),
        _ => return Err(CmdError::syntax()),
    };
    check_credentials(ctx, user, pass)?;
    ctx.session.authed = true;
    ctx.ok();
    Ok(())
}

fn select(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> CmdResult {
    if parse_i64(argv[1])? != 0 {
        return Err(CmdError::new(
            ErrorCode::InvalidArgument,
            "DB index is out of range",
        ));
    }
    ctx.ok();
    Ok(())
}

fn quit(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    ctx.ok();
    ctx.session.closing = true;
    Ok(())
}

fn reset(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> CmdResult {
    set_protocol(ctx, Protocol::Resp2);
    ctx.session.authed = ctx.node.config.password.is_empty();
    ctx.session.asking = false;
    ctx.session.subscribed = false;
    super::tracking::stop(ctx);
    ctx.client.meta.lock().name.clear();
    ctx.simple(b"RESET");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::Harness;
    use crate::config::CacheConfig;

    /// `HELLO`'s map for client 1, in RESP3 (`%`) or RESP2 (`*`).
    fn hello_reply(proto: u8) -> String {
        let header = if proto == 3 { "%7" } else { "*14" };
        format!(
            "{header}\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.0\r\n\
             $5\r\nproto\r\n:{proto}\r\n$2\r\nid\r\n:1\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n\
             $4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
        )
    }

    fn with_password() -> Harness {
        Harness::with_config(CacheConfig {
            password: "pw".into(),
            max_memory: "16mb".into(),
            ..Default::default()
        })
    }

    const NOAUTH: &str = "-NOAUTH Authentication required.\r\n";
    const WRONGPASS: &str = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";

    #[test]
    fn ping_echo_select_quit() {
        let mut h = Harness::new();
        h.check(&[
            ("PING", "+PONG\r\n"),
            ("ping hello", "$5\r\nhello\r\n"),
            (
                "PING a b",
                "-ERR wrong number of arguments for 'ping' command\r\n",
            ),
            ("ECHO hi", "$2\r\nhi\r\n"),
            (
                "ECHO",
                "-ERR wrong number of arguments for 'echo' command\r\n",
            ),
            ("SELECT 0", "+OK\r\n"),
            ("SELECT 1", "-ERR DB index is out of range\r\n"),
            ("SELECT -1", "-ERR DB index is out of range\r\n"),
            (
                "SELECT x",
                "-ERR value is not an integer or out of range\r\n",
            ),
        ]);
        assert!(!h.session.closing);
        h.check(&[("QUIT", "+OK\r\n")]);
        assert!(h.session.closing);
    }

    #[test]
    fn hello_switches_protocol() {
        let mut h = Harness::new();
        h.check(&[
            ("HELLO", &hello_reply(2)),
            ("HELLO 3", &hello_reply(3)),
            ("PING", "+PONG\r\n"),
            ("CLIENT GETNAME", "_\r\n"),
            ("GET missing", "_\r\n"),
            ("HELLO 4", "-NOPROTO unsupported protocol version\r\n"),
            ("HELLO 1", "-NOPROTO unsupported protocol version\r\n"),
            (
                "HELLO three",
                "-ERR Protocol version is not an integer or out of range\r\n",
            ),
            (
                "HELLO 2 BOGUS",
                "-ERR Syntax error in HELLO option 'BOGUS'\r\n",
            ),
            (
                "HELLO 2 AUTH default",
                "-ERR Syntax error in HELLO option 'AUTH'\r\n",
            ),
            (
                "HELLO 2 SETNAME",
                "-ERR Syntax error in HELLO option 'SETNAME'\r\n",
            ),
            ("CLIENT GETNAME", "_\r\n"),
            ("HELLO 2 SETNAME app", &hello_reply(2)),
            ("CLIENT GETNAME", "$3\r\napp\r\n"),
            ("GET missing", "$-1\r\n"),
        ]);
        let reply = h.run(&["HELLO", "3", "SETNAME", "bad name"]);
        assert_eq!(
            reply,
            "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
        );
        h.check(&[("PING", "+PONG\r\n"), ("GET missing", "$-1\r\n")]);
        let entry = &h.node.clients.snapshot()[0];
        assert_eq!(entry.protocol.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    #[test]
    fn auth_without_a_password() {
        Harness::new().check(&[
            (
                "AUTH x",
                "-ERR AUTH <password> called without any password configured for the default \
                 user. Are you sure your configuration is correct?\r\n",
            ),
            ("AUTH default anything", "+OK\r\n"),
            ("AUTH bob anything", WRONGPASS),
            ("AUTH a b c", "-ERR syntax error\r\n"),
            (
                "AUTH",
                "-ERR wrong number of arguments for 'auth' command\r\n",
            ),
            ("HELLO 3 AUTH default x", &hello_reply(3)),
        ]);
    }

    #[test]
    fn auth_with_a_password() {
        let mut h = with_password();
        h.check(&[
            ("PING", NOAUTH),
            ("GET k", NOAUTH),
            ("CLIENT ID", NOAUTH),
            ("SELECT 0", NOAUTH),
            (
                "HELLO 3",
                "-NOAUTH HELLO must be called with the client already authenticated, otherwise \
                 the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the \
                 client and select the RESP protocol version at the same time\r\n",
            ),
            ("AUTH wrong", WRONGPASS),
            ("AUTH p", WRONGPASS),
            ("AUTH pww", WRONGPASS),
            ("AUTH bob pw", WRONGPASS),
            ("AUTH DEFAULT pw", WRONGPASS),
            ("HELLO 3 AUTH default nope", WRONGPASS),
            ("PING", NOAUTH),
            ("AUTH pw", "+OK\r\n"),
            ("PING", "+PONG\r\n"),
            ("AUTH wrong", WRONGPASS),
            ("PING", "+PONG\r\n"),
            ("CLIENT SETNAME app", "+OK\r\n"),
            ("RESET", "+RESET\r\n"),
            ("PING", NOAUTH),
            ("HELLO 3 AUTH default pw SETNAME svc", &hello_reply(3)),
            ("CLIENT GETNAME", "$3\r\nsvc\r\n"),
            ("GET k", "_\r\n"),
            ("RESET", "+RESET\r\n"),
            ("AUTH default pw", "+OK\r\n"),
            ("CLIENT GETNAME", "$-1\r\n"),
            ("GET k", "$-1\r\n"),
            ("RESET", "+RESET\r\n"),
            ("QUIT", "+OK\r\n"),
        ]);
        assert!(h.session.closing);
    }
}
