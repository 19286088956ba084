//! `larder`: one binary for the whole stack. Parses arguments, loads the configuration and
//! hands off to the libraries; nothing else lives here.

mod cli;
mod config;
mod loadgen;
mod serve;
mod trace;
mod up;

use std::process::ExitCode;

use clap::Parser;

use cli::{BenchCommand, Cli, Command};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("larder: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = config::load(cli.config.as_deref(), &cli.command)?;
    if cli.print_config {
        print!("{}", config::render(&config)?);
        return Ok(ExitCode::SUCCESS);
    }
    match cli.command {
        Some(Command::Bench {
            what: BenchCommand::Trace(args),
        }) => {
            trace::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench {
            what: BenchCommand::Resp(args),
        }) => loadgen::resp(&args),
        Some(Command::Bench {
            what: BenchCommand::Grpc(args),
        }) => loadgen::grpc(&args),
        Some(Command::Bench {
            what: BenchCommand::Burst(args),
        }) => loadgen::burst(&args),
        Some(Command::Bench {
            what: BenchCommand::Http(args),
        }) => loadgen::http(&args),
        Some(Command::Up(_)) => up::run(&config),
        Some(Command::Cache(_)) => serve::cache(config.cache),
        Some(Command::Api(_)) => serve::api(config.api),
        None => {
            eprintln!("larder: no command given; try `larder --help`");
            Ok(ExitCode::from(2))
        }
    }
}
