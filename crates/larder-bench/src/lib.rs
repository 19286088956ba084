//! Load generators and trace replay behind `larder bench`: the options of every subcommand as
//! clap types ([`Command`] and the `*Args` it holds), and one function per subcommand that
//! carries it out, shows progress on stderr and prints what it measured on stdout ([`run`]
//! picks the one a [`Command`] names).
//!
//! The `summary key=value` line each load generator prints last is what `bench/*.sh` parse; its
//! fields are fixed.

mod args;
mod load;
mod trace;

use std::process::ExitCode;

pub use args::{
    BurstArgs, Command, DEFAULT_KEYS, DEFAULT_READ_RATIO, DEFAULT_VALUE_SIZE, GrpcArgs, HttpArgs,
    LoadArgs, Protocol, RespArgs, TraceArgs,
};
use load::report::{Progress, Summary};
use load::run::runtime;

/// Runs one `larder bench` subcommand.
///
/// # Errors
/// When the options cannot work or the server cannot be reached.
pub fn run(command: &Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Trace(args) => {
            trace(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Resp(args) => resp(args),
        Command::Grpc(args) => grpc(args),
        Command::Burst(args) => burst(args),
        Command::Http(args) => http(args),
    }
}

/// `larder bench trace`: replays the trace, prints one line per (policy, capacity).
///
/// # Errors
/// When the trace cannot be read or the options cannot work.
pub fn trace(args: &TraceArgs) -> anyhow::Result<()> {
    trace::run(args)
}

/// `larder bench resp`: runs the load, prints the summary.
///
/// # Errors
/// When the server cannot be reached or the options cannot work.
pub fn resp(args: &RespArgs) -> anyhow::Result<ExitCode> {
    let summary =
        runtime(args.load.threads)?.block_on(load::resp::bench(args, Progress::for_stderr()))?;
    Ok(finish(&summary))
}

/// `larder bench grpc`: runs the load, prints the summary.
///
/// # Errors
/// When the server cannot be reached or the options cannot work.
pub fn grpc(args: &GrpcArgs) -> anyhow::Result<ExitCode> {
    let summary =
        runtime(args.load.threads)?.block_on(load::grpc::bench(args, Progress::for_stderr()))?;
    Ok(finish(&summary))
}

/// `larder bench http`: runs the load, prints the summary.
///
/// # Errors
/// When the server cannot be reached or the options cannot work.
pub fn http(args: &HttpArgs) -> anyhow::Result<ExitCode> {
    let summary =
        runtime(args.load.threads)?.block_on(load::http::bench(args, Progress::for_stderr()))?;
    Ok(finish(&summary))
}

/// `larder bench burst`: runs one burst, prints what it cost; fails if any reply was an error.
///
/// # Errors
/// When the node or its admin port cannot be reached.
pub fn burst(args: &BurstArgs) -> anyhow::Result<ExitCode> {
    let outcome = runtime(1)?.block_on(load::burst::run(args))?;
    Ok(load::burst::finish(&outcome))
}

fn finish(summary: &Summary) -> ExitCode {
    println!("{summary}");
    if summary.ops == 0 {
        eprintln!("larder: no request succeeded in the measured window");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
