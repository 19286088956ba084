//! What a command is and what it works with: its [`CommandSpec`] (name, arity, flags, key
//! positions, documentation, handler, subcommands), the [`Table`] of every command, and the
//! [`Ctx`] a handler runs in: the node, the connection's session, the output buffer and the
//! table itself, which introspection commands (`COMMAND`, `INFO commandstats`) read. They are
//! kept in one module because a handler's type names the context and the context names the
//! table of handlers.

use std::ops::Deref;
use std::sync::Arc;

use larder_proto::resp::Protocol;
use larder_proto::resp::encode;

use super::deferred::Deferred;
pub(crate) use super::error::{CmdError, CmdResult};
use super::tracked::Tracked;
use crate::clients::ClientEntry;
use crate::cluster::Snapshot;
use crate::node::Node;

/// Per-connection state that commands read and change.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) protocol: Protocol,
    pub(crate) authed: bool,
    /// Close the connection once the replies so far are written (`QUIT`).
    pub(crate) closing: bool,
    /// `ASKING` came just before: the next command is served here whoever owns its slot.
    pub(crate) asking: bool,
    /// The cluster snapshot this connection routes by, and its version.
    pub(crate) route: Option<(u64, Arc<Snapshot>)>,
    /// `CLIENT TRACKING ON`'s state.
    pub(crate) tracking: Option<Box<Tracked>>,
    /// `CLIENT CACHING`'s answer, for the next command only.
    pub(crate) caching: Option<bool>,
    /// Subscribed to `__redis__:invalidate`.
    pub(crate) subscribed: bool,
}

impl Session {
    /// A new connection's session.
    pub(crate) fn new(authed: bool) -> Self {
        Self {
            protocol: Protocol::Resp2,
            authed,
            closing: false,
            asking: false,
            route: None,
            tracking: None,
            caching: None,
            subscribed: false,
        }
    }
}

/// A command's view of the world while it runs.
pub(crate) struct Ctx<'a> {
    pub(crate) node: &'a Node,
    pub(crate) session: &'a mut Session,
    pub(crate) client: &'a ClientEntry,
    pub(crate) out: &'a mut Vec<u8>,
    /// Every command.
    pub(crate) table: &'a Table,
    /// A reply that waits for an origin; the connection finishes it before the next request.
    pub(crate) deferred: Option<Deferred>,
}

/// A command's handler: arguments include the command name at index 0.
pub(crate) type Handler = fn(&mut Ctx<'_>, &[&[u8]]) -> CmdResult;

/// One command, described as `COMMAND INFO` and `COMMAND DOCS` report it.
#[derive(Debug)]
pub(crate) struct CommandSpec {
    /// Lower-case name.
    pub(crate) name: &'static str,
    /// Redis's arity: `n` exactly n arguments (name included), `-n` at least n.
    pub(crate) arity: i32,
    /// Redis's command flags (`write`, `readonly`, `fast`, `denyoom`, `no_auth`, …).
    pub(crate) flags: &'static [&'static str],
    /// Position of the first key, the last key (-1: the last argument) and the step.
    pub(crate) keys: (i32, i32, i32),
    /// One line of documentation.
    pub(crate) summary: &'static str,
    /// The Redis version that introduced it.
    pub(crate) since: &'static str,
    pub(crate) handler: Handler,
    /// A container command's subcommands (`CLIENT`, `COMMAND`, `CONFIG`); empty otherwise.
    pub(crate) subcommands: &'static [CommandSpec],
}

/// Describes a command; each family module lists its commands with this.
pub(crate) const fn spec(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    keys: (i32, i32, i32),
    summary: &'static str,
    since: &'static str,
    handler: Handler,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        keys,
        summary,
        since,
        handler,
        subcommands: &[],
    }
}

impl CommandSpec {
    /// The same command as a container of `subcommands`.
    pub(crate) const fn with_subcommands(self, subcommands: &'static [CommandSpec]) -> Self {
        Self {
            subcommands,
            ..self
        }
    }

    /// Whether `argc` arguments (name included) satisfy the arity.
    pub(crate) fn arity_ok(&self, argc: usize) -> bool {
        let argc = i64::try_from(argc).unwrap_or(i64::MAX);
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    /// Whether the command runs before `AUTH`.
    pub(crate) fn no_auth(&self) -> bool {
        self.flags.contains(&"no_auth")
    }

    /// The subcommand called `name` (any case).
    pub(crate) fn subcommand(&self, name: &[u8]) -> Option<&'static CommandSpec> {
        self.subcommands
            .iter()
            .find(|sub| sub.name.as_bytes().eq_ignore_ascii_case(name))
    }
}

/// A command and the Redis command group (`string`, `generic`, …) of its family.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Command {
    pub(crate) group: &'static str,
    pub(crate) spec: &'static CommandSpec,
}

impl Deref for Command {
    type Target = CommandSpec;

    fn deref(&self) -> &CommandSpec {
        self.spec
    }
}

/// The longest command name the lookup indexes.
const MAX_NAME: usize = 24;

/// Every command, in the order metrics index them, and a lookup by name that neither hashes
/// nor allocates (candidates grouped by name length).
#[derive(Debug)]
pub(crate) struct Table {
    commands: Vec<Command>,
    /// By name length: each command's name and index.
    by_len: Vec<Vec<(&'static [u8], usize)>>,
}

impl Table {
    /// The table of `families`: (group, the family's specs).
    pub(crate) fn new(families: &[(&'static str, &'static [CommandSpec])]) -> Self {
        let commands: Vec<Command> = families
            .iter()
            .flat_map(|&(group, specs)| specs.iter().map(move |spec| Command { group, spec }))
            .collect();
        let mut by_len = vec![Vec::new(); MAX_NAME + 1];
        for (index, command) in commands.iter().enumerate() {
            by_len[command.name.len()].push((command.name.as_bytes(), index));
        }
        Self { commands, by_len }
    }

    /// The index of the command named `name` (any case).
    pub(crate) fn lookup(&self, name: &[u8]) -> Option<usize> {
        let candidates = self.by_len.get(name.len())?;
        let mut lower = [0u8; MAX_NAME];
        let lower = &mut lower[..name.len()];
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        candidates
            .iter()
            .find(|(candidate, _)| *candidate == &*lower)
            .map(|&(_, index)| index)
    }

    /// The names the metrics count commands under: every command, then `unknown`.
    pub(crate) fn metric_names(&self) -> Vec<&'static str> {
        self.commands
            .iter()
            .map(|c| c.name)
            .chain(["unknown"])
            .collect()
    }
}

impl Deref for Table {
    type Target = [Command];

    fn deref(&self) -> &[Command] {
        &self.commands
    }
}

impl Ctx<'_> {
    pub(crate) fn protocol(&self) -> Protocol {
        self.session.protocol
    }

    pub(crate) fn ok(&mut self) {
        encode::simple(self.out, b"OK");
    }

    pub(crate) fn simple(&mut self, text: &[u8]) {
        encode::simple(self.out, text);
    }

    pub(crate) fn int(&mut self, value: i64) {
        encode::integer(self.out, value);
    }

    pub(crate) fn uint(&mut self, value: u64) {
        encode::integer(self.out, i64::try_from(value).unwrap_or(i64::MAX));
    }

    pub(crate) fn bulk(&mut self, bytes: &[u8]) {
        encode::bulk(self.out, bytes);
    }

    pub(crate) fn null(&mut self) {
        encode::null(self.out, self.session.protocol);
    }

    pub(crate) fn array(&mut self, len: usize) {
        encode::array(self.out, len);
    }

    pub(crate) fn map(&mut self, len: usize) {
        encode::map(self.out, self.session.protocol, len);
    }

    pub(crate) fn set_header(&mut self, len: usize) {
        encode::set(self.out, self.session.protocol, len);
    }

    pub(crate) fn verbatim(&mut self, text: &[u8]) {
        encode::verbatim(self.out, self.session.protocol, b"txt", text);
    }

    /// A bulk string or null.
    pub(crate) fn opt_bulk(&mut self, bytes: Option<&[u8]>) {
        match bytes {
            Some(bytes) => self.bulk(bytes),
            None => self.null(),
        }
    }
}

/// Parses a decimal `i64` as Redis does (no `+`, no spaces, no leading zeros).
pub(crate) fn parse_i64(arg: &[u8]) -> Result<i64, CmdError> {
    larder_store::parse_i64(arg).ok_or_else(CmdError::not_integer)
}

/// Parses a non-negative integer argument (counts, cursors).
pub(crate) fn parse_u64(arg: &[u8]) -> Result<u64, CmdError> {
    std::str::from_utf8(arg)
        .ok()
        .filter(|s| !s.starts_with('+'))
        .and_then(|s| s.parse().ok())
        .ok_or_else(CmdError::not_integer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_like_redis() {
        for (text, want) in [
            (&b"0"[..], Some(0)),
            (b"-5", Some(-5)),
            (b"9223372036854775807", Some(i64::MAX)),
            (b"-9223372036854775808", Some(i64::MIN)),
            (b"9223372036854775808", None),
            (b"+1", None),
            (b"01", None),
            (b" 1", None),
            (b"", None),
            (b"-", None),
            (b"1.5", None),
        ] {
            assert_eq!(
                parse_i64(text).ok(),
                want,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }
}
