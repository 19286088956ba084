//! Placeholder while this family is written.
use crate::resp::table::CommandSpec;
pub(crate) static COMMANDS: &[CommandSpec] = &[];
