//! Load generators and trace replay behind `larder bench`: the options of every subcommand as
//! clap types ([`Command`] and the `*Args` it holds), and one function per subcommand that
//! carries it out, shows progress on stderr and prints what it measured on stdout ([`run`]
//! picks the one a [`Command`] names).
//!
//! The `summary key=value` line each load generator prints last is what `bench/*.sh` parse; its
//! fields are fixed.

mod args;
mod error;
mod load;
mod trace;

pub use args::{
    BurstArgs, Command, DEFAULT_KEY_PREFIX, DEFAULT_KEYS, DEFAULT_READ_RATIO, DEFAULT_VALUE_SIZE,
    GrpcArgs, HttpArgs, LoadArgs, Protocol, RespArgs, TraceArgs, TraceFormat,
};
pub use error::{CpuError, Error, Peer, Result, TraceError, Usage, WireError};
use load::report::{Progress, Summary};
use load::run::runtime;

/// Runs one `larder bench` subcommand.
///
/// # Errors
/// As the subcommand's own function says.
pub fn run(command: &Command) -> Result<()> {
    match command {
        Command::Trace(args) => trace(args),
        Command::Resp(args) => resp(args),
        Command::Grpc(args) => grpc(args),
        Command::Burst(args) => burst(args),
        Command::Http(args) => http(args),
    }
}

/// `larder bench trace`: replays the trace once per (policy, capacity), on `--jobs` threads,
/// and prints one line per replay.
///
/// # Errors
/// When the trace cannot be read, or the options name no policy or no capacity.
pub fn trace(args: &TraceArgs) -> Result<()> {
    trace::run(args)
}

/// `larder bench resp`: runs the load and prints its summary.
///
/// # Errors
/// When the options cannot work, the node cannot be reached, `AUTH` or the prefill fails, or
/// no request succeeded in the measured window ([`Error::NothingSucceeded`], after the
/// summary).
pub fn resp(args: &RespArgs) -> Result<()> {
    let run = load::resp::bench(args, Progress::for_stderr());
    finish(&runtime(args.load.threads)?.block_on(run)?)
}

/// `larder bench grpc`: runs the load and prints its summary.
///
/// # Errors
/// When the options cannot work, the node cannot be reached or the prefill fails, or no
/// request succeeded in the measured window ([`Error::NothingSucceeded`], after the summary).
pub fn grpc(args: &GrpcArgs) -> Result<()> {
    let run = load::grpc::bench(args, Progress::for_stderr());
    finish(&runtime(args.load.threads)?.block_on(run)?)
}

/// `larder bench http`: runs the load and prints its summary.
///
/// # Errors
/// When the options cannot work or the server cannot be reached, or no request succeeded in
/// the measured window ([`Error::NothingSucceeded`], after the summary).
pub fn http(args: &HttpArgs) -> Result<()> {
    let run = load::http::bench(args, Progress::for_stderr());
    finish(&runtime(args.load.threads)?.block_on(run)?)
}

/// `larder bench burst`: runs one burst and prints what it cost.
///
/// # Errors
/// When the node or its admin port cannot be reached or the clients cannot all connect, or
/// when any reply was an error ([`Error::ErrorReplies`], after the outcome).
pub fn burst(args: &BurstArgs) -> Result<()> {
    let outcome = runtime(1)?.block_on(load::burst::run(args))?;
    load::burst::finish(&outcome)
}

/// Prints the summary; a run in which nothing succeeded fails.
fn finish(summary: &Summary) -> Result<()> {
    println!("{summary}");
    if summary.ops == 0 {
        return Err(Error::NothingSucceeded);
    }
    Ok(())
}
