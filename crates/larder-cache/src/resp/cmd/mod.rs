//! The RESP commands, one module per family. Each module declares its `COMMANDS` entries next
//! to their handlers and keeps a table of byte-string cases in its tests.

pub(crate) mod cluster;
pub(crate) mod connection;
mod container;
pub(crate) mod counter;
pub(crate) mod expiry;
pub(crate) mod glob;
pub(crate) mod keyspace;
pub(crate) mod origin;
pub(crate) mod pubsub;
pub(crate) mod server;
pub(crate) mod string;
pub(crate) mod tracking;

#[cfg(test)]
pub(crate) mod testing;
