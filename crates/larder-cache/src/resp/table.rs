//! The command table: every RESP command's name, arity, flags, key positions, documentation and
//! handler. Each command family's module declares its own entries; this module joins them,
//! checks arity, and finds a command by name without allocating.

use std::sync::LazyLock;

use super::cmd;
use super::ctx::{CmdResult, Ctx};

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
    }
}

impl CommandSpec {
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
}

/// A command and the Redis command group (`string`, `generic`, …) of its family.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Command {
    pub(crate) group: &'static str,
    pub(crate) spec: &'static CommandSpec,
}

impl std::ops::Deref for Command {
    type Target = CommandSpec;

    fn deref(&self) -> &CommandSpec {
        self.spec
    }
}

/// Every command, in the order metrics index them.
pub(crate) static COMMANDS: LazyLock<Vec<Command>> = LazyLock::new(|| {
    let families: [(&'static str, &'static [CommandSpec]); 7] = [
        ("string", cmd::string::COMMANDS),
        ("string", cmd::counter::COMMANDS),
        ("generic", cmd::keyspace::COMMANDS),
        ("generic", cmd::expiry::COMMANDS),
        ("generic", cmd::origin::COMMANDS),
        ("connection", cmd::connection::COMMANDS),
        ("server", cmd::server::COMMANDS),
    ];
    families
        .into_iter()
        .flat_map(|(group, specs)| specs.iter().map(move |spec| Command { group, spec }))
        .collect()
});

/// The names the metrics count commands under: every command in table order, then `unknown`.
pub(crate) fn metric_names() -> Vec<&'static str> {
    COMMANDS.iter().map(|c| c.name).chain(["unknown"]).collect()
}

/// The longest command name the lookup indexes.
const MAX_NAME: usize = 24;

/// A command's name and its index in [`COMMANDS`].
type Named = (&'static [u8], usize);

/// Command indexes by name length, for lookup without hashing or allocating.
static BY_LEN: LazyLock<Vec<Vec<Named>>> = LazyLock::new(|| {
    let mut by_len = vec![Vec::new(); MAX_NAME + 1];
    for (index, spec) in COMMANDS.iter().enumerate() {
        by_len[spec.name.len()].push((spec.name.as_bytes(), index));
    }
    by_len
});

/// The index of the command named `name` (any case).
pub(crate) fn lookup(name: &[u8]) -> Option<usize> {
    let candidates = BY_LEN.get(name.len())?;
    let mut lower = [0u8; MAX_NAME];
    let lower = &mut lower[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    candidates
        .iter()
        .find(|(candidate, _)| *candidate == &*lower)
        .map(|&(_, index)| index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_found_in_any_case_and_names_are_unique() {
        for (i, spec) in COMMANDS.iter().enumerate() {
            assert!(spec.name.len() <= MAX_NAME);
            assert_eq!(lookup(spec.name.as_bytes()), Some(i), "{}", spec.name);
            assert_eq!(lookup(spec.name.to_uppercase().as_bytes()), Some(i));
        }
        assert_eq!(lookup(b"NOSUCHCOMMAND"), None);
        assert_eq!(lookup(&[b'x'; 100]), None);
        assert_eq!(lookup(b""), None);
    }

    #[test]
    fn arity_follows_redis_rules() {
        let get = COMMANDS[lookup(b"get").unwrap()];
        assert!(get.arity_ok(2));
        assert!(!get.arity_ok(1) && !get.arity_ok(3));
        let mget = COMMANDS[lookup(b"mget").unwrap()];
        assert!(mget.arity_ok(2) && mget.arity_ok(10));
        assert!(!mget.arity_ok(1));
    }
}
