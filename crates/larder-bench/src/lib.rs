//! Load generators and trace replay behind `larder bench`: the options of every subcommand as
//! clap types ([`Command`]), and [`run`], which carries one out and prints what it measured.

mod args;
mod load;
mod trace;

use std::process::ExitCode;

pub use args::{
    BurstArgs, Command, DEFAULT_KEYS, DEFAULT_READ_RATIO, DEFAULT_VALUE_SIZE, GrpcArgs, HttpArgs,
    LoadArgs, Protocol, RespArgs, TraceArgs,
};

/// Runs one `larder bench` subcommand.
///
/// # Errors
/// When the options cannot work or the server cannot be reached.
pub fn run(command: &Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Trace(args) => {
            trace::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Resp(args) => load::resp(args),
        Command::Grpc(args) => load::grpc(args),
        Command::Burst(args) => load::burst(args),
        Command::Http(args) => load::http(args),
    }
}
