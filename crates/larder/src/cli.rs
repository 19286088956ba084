//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Larder: a private API stack — cache nodes, a JSON:API gateway, one binary.
#[derive(Debug, Parser)]
#[command(name = "larder", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// TOML configuration file (overridden by LARDER_* environment variables, then by flags).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long, global = true)]
    pub(crate) print_config: bool,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a cache node and the gateway on this machine with embedded defaults.
    Up(UpArgs),
    /// Run a cache node.
    Cache(CacheArgs),
    /// Run the API gateway.
    Api(ApiArgs),
    /// GET an HTTP URL and exit 0 if it answers 2xx (a health check for containers).
    Probe(crate::probe::ProbeArgs),
    /// Load generators and trace replay.
    Bench {
        #[command(subcommand)]
        what: larder_bench::Command,
    },
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Directory for the SQLite database and other state.
    #[arg(long, value_name = "DIR")]
    pub(crate) data: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct CacheArgs {
    /// gRPC listen address.
    #[arg(long, value_name = "ADDR")]
    pub(crate) grpc_addr: Option<String>,
    /// Redis-protocol listen address.
    #[arg(long, value_name = "ADDR")]
    pub(crate) resp_addr: Option<String>,
    /// Admin HTTP listen address.
    #[arg(long, value_name = "ADDR")]
    pub(crate) admin_addr: Option<String>,
    /// Memory bound, in bytes or with a suffix (`100mb`, `2gb`; `1k` = 1000, `1kb` = 1024).
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_memory: Option<String>,
    /// Eviction policy: lru, sieve, s3fifo, tinylfu, adaptive.
    #[arg(long, value_name = "NAME")]
    pub(crate) policy: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ApiArgs {
    /// HTTP listen address.
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<String>,
    /// Database URL: `sqlite://PATH` or `postgres://…`.
    #[arg(long, value_name = "URL")]
    pub(crate) database: Option<String>,
    /// Cache node gRPC addresses, comma-separated; none means an in-process cache.
    #[arg(long, value_name = "ADDR,…", value_delimiter = ',')]
    pub(crate) cache_nodes: Option<Vec<String>>,
}
