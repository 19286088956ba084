//! `larder`: one binary for the whole stack. Parses arguments, loads the configuration and
//! hands off to the libraries; nothing else lives here.

mod cli;
mod cluster;
mod config;
mod listen;
mod probe;
mod serve;
mod telemetry;
mod up;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Raises the soft limit on open files to the hard one, as Go's runtime does: the servers'
/// connection caps (10,000 by default) are far above the usual soft limit of 1,024, and a
/// server at that limit fails to accept, and to open database and peer connections too.
fn raise_open_files() {
    if let Err(err) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("larder: could not raise the open-file limit: {err}");
    }
}

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
    raise_open_files();
    let config = config::load(cli.config.as_deref(), &cli.command, cli.log_format)?;
    if cli.print_config {
        print!("{}", config::render(&config)?);
        return Ok(ExitCode::SUCCESS);
    }
    match cli.command {
        Some(Command::Bench { what }) => {
            larder_bench::run(&what)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Probe(args)) => probe::run(&args),
        Some(Command::Cluster {
            what: cli::ClusterCommand::Status(args),
        }) => cluster::status(&args, &config.cache.token),
        Some(Command::Up(_)) => up::run(&config),
        Some(Command::Cache(_)) => serve::cache(config.cache, &config.telemetry),
        Some(Command::Api(_)) => serve::api(config.api, &config.telemetry),
        None => {
            eprintln!("larder: no command given; try `larder --help`");
            Ok(ExitCode::from(2))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        use rlimit::Resource;
        let (_, hard) = Resource::NOFILE.get().unwrap_or_default();
        // Lowering the soft limit is always allowed (and 4,096 is plenty for the tests that
        // run beside this one).
        assert_eq!(Resource::NOFILE.set(hard.min(4_096), hard).ok(), Some(()));
        super::raise_open_files();
        assert_eq!(Resource::NOFILE.get().ok(), Some((hard, hard)));
    }
}
