//! The command table: every RESP command family's entries joined, in the order the metrics
//! index them.

use std::sync::LazyLock;

use super::cmd;
use super::ctx::Table;

/// Every command.
pub(crate) static COMMANDS: LazyLock<Table> = LazyLock::new(|| {
    Table::new(&[
        ("string", cmd::string::COMMANDS),
        ("string", cmd::counter::COMMANDS),
        ("generic", cmd::keyspace::COMMANDS),
        ("generic", cmd::expiry::COMMANDS),
        ("generic", cmd::origin::COMMANDS),
        ("connection", cmd::connection::COMMANDS),
        ("server", cmd::server::COMMANDS),
        ("cluster", cmd::cluster::COMMANDS),
        ("pubsub", cmd::pubsub::COMMANDS),
    ])
});

/// The names the metrics count commands under: every command in table order, then `unknown`.
pub(crate) fn metric_names() -> Vec<&'static str> {
    COMMANDS.metric_names()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_found_in_any_case_and_names_are_unique() {
        for (i, spec) in COMMANDS.iter().enumerate() {
            assert!(spec.name.len() <= 24);
            assert_eq!(
                COMMANDS.lookup(spec.name.as_bytes()),
                Some(i),
                "{}",
                spec.name
            );
            assert_eq!(
                COMMANDS.lookup(spec.name.to_uppercase().as_bytes()),
                Some(i)
            );
        }
        assert_eq!(COMMANDS.lookup(b"NOSUCHCOMMAND"), None);
        assert_eq!(COMMANDS.lookup(&[b'x'; 100]), None);
        assert_eq!(COMMANDS.lookup(b""), None);
    }

    #[test]
    fn arity_follows_redis_rules() {
        let get = COMMANDS[COMMANDS.lookup(b"get").unwrap()];
        assert!(get.arity_ok(2));
        assert!(!get.arity_ok(1) && !get.arity_ok(3));
        let mget = COMMANDS[COMMANDS.lookup(b"mget").unwrap()];
        assert!(mget.arity_ok(2) && mget.arity_ok(10));
        assert!(!mget.arity_ok(1));
    }
}
