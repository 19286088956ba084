//! Command-line arguments.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

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
        what: BenchCommand,
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

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Replay a key trace through the store and report hit ratios.
    Trace(TraceArgs),
    /// Load a cache node over the Redis protocol and report throughput and latency.
    Resp(RespBenchArgs),
    /// Load a cache node over gRPC and report throughput and latency.
    Grpc(GrpcBenchArgs),
    /// Send one key's GET from many clients at once and report how many origin loads it cost.
    Burst(BurstArgs),
    /// Load an HTTP/1.1 server with GETs, closed or open loop, and report throughput and latency.
    Http(HttpBenchArgs),
}

#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// Trace file: one decimal key per line, libCacheSim oracleGeneral records, or CSV; plain or
    /// zstd-compressed (`.zst`).
    #[arg(long, value_name = "FILE")]
    pub(crate) trace: PathBuf,
    /// The trace's format (`auto`: from the file name).
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) format: crate::trace::Format,
    /// CSV's key and size columns, counted from 1.
    #[arg(
        long,
        value_name = "KEY,SIZE",
        value_delimiter = ',',
        default_value = "1,2"
    )]
    pub(crate) csv_columns: Vec<usize>,
    /// Capacities in bytes and each object charged its size from the trace (oracleGeneral, CSV),
    /// instead of capacities in objects of size 1.
    #[arg(long)]
    pub(crate) sized: bool,
    /// Capacities in objects (or bytes with `--sized`), comma-separated (defaults known for the
    /// shared traces).
    #[arg(long, value_name = "N,…", value_delimiter = ',')]
    pub(crate) capacity: Vec<u64>,
    /// Policy name, or `all`.
    #[arg(long, default_value = "all")]
    pub(crate) policy: String,
    /// Runs replayed at once (default: the number of cores).
    #[arg(long)]
    pub(crate) jobs: Option<usize>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct RespBenchArgs {
    /// Redis-protocol address of the cache node.
    #[arg(long, default_value = "127.0.0.1:6380", value_name = "HOST:PORT")]
    pub(crate) addr: String,
    /// TCP connections.
    #[arg(long, default_value_t = 50)]
    pub(crate) connections: usize,
    /// Requests in flight per connection, written together in one batch.
    #[arg(long, default_value_t = 1)]
    pub(crate) pipeline: usize,
    /// Password sent with `AUTH` on every connection.
    #[arg(long)]
    pub(crate) password: Option<String>,
    #[command(flatten)]
    pub(crate) load: LoadArgs,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct GrpcBenchArgs {
    /// gRPC address of the cache node (`host:port` or `http://host:port`).
    #[arg(long, default_value = "127.0.0.1:7070", value_name = "HOST:PORT")]
    pub(crate) addr: String,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 4)]
    pub(crate) connections: usize,
    /// Calls in flight per connection.
    #[arg(long, default_value_t = 16)]
    pub(crate) concurrency: usize,
    /// Bearer token sent with every call.
    #[arg(long)]
    pub(crate) token: Option<String>,
    /// Keys per read: above 1, reads are `GetMany` calls of this many keys (ops count keys).
    #[arg(long, default_value_t = 1)]
    pub(crate) batch: usize,
    #[command(flatten)]
    pub(crate) load: LoadArgs,
}

/// `larder bench http`. Of the shared load options, `--keys`, `--value-size` and
/// `--read-ratio` mean nothing for HTTP GETs: they are hidden and refused unless left at their
/// defaults; `--prefill` is hidden and ignored.
#[derive(Debug, Clone, Args)]
#[command(
    mut_arg("keys", |arg| arg.hide(true)),
    mut_arg("value_size", |arg| arg.hide(true)),
    mut_arg("read_ratio", |arg| arg.hide(true)),
    mut_arg("prefill", |arg| arg.hide(true))
)]
pub(crate) struct HttpBenchArgs {
    /// What to GET: `http://HOST[:PORT]/PATH` (plain HTTP/1.1, no TLS).
    #[arg(long, value_name = "URL")]
    pub(crate) url: String,
    /// TCP connections, each with one request in flight (keep-alive, no pipelining).
    #[arg(long, default_value_t = 32)]
    pub(crate) connections: usize,
    /// GET `{URL}{i}` with i = 0, 1, 2, … in order across all connections, wrapping at N, so
    /// that every request names a different id (cache misses).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) paths_from: Option<u64>,
    /// A request header, `'Name: value'`, sent with every request; repeatable.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub(crate) headers: Vec<String>,
    #[command(flatten)]
    pub(crate) load: LoadArgs,
}

/// The wire `larder bench burst` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Protocol {
    Resp,
    Grpc,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct BurstArgs {
    /// Wire protocol of the burst.
    #[arg(long, value_enum, default_value_t = Protocol::Resp)]
    pub(crate) protocol: Protocol,
    /// Shorthand for `--protocol grpc`.
    #[arg(long, conflicts_with = "protocol")]
    pub(crate) grpc: bool,
    /// Address of the cache node [default: 127.0.0.1:6380 (resp), 127.0.0.1:7070 (grpc)].
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) addr: Option<String>,
    /// Clients, each sending one GET: RESP connections, or gRPC calls.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) clients: usize,
    /// gRPC calls per HTTP/2 connection.
    #[arg(long, default_value_t = 1000)]
    pub(crate) calls_per_connection: usize,
    /// The one key every client reads.
    #[arg(long, default_value = "key:burst")]
    pub(crate) key: String,
    /// Admin HTTP address of the node, read for its origin metrics before and after.
    #[arg(long, default_value = "127.0.0.1:7071", value_name = "HOST:PORT")]
    pub(crate) admin: String,
    /// Password sent with `AUTH` on every RESP connection.
    #[arg(long)]
    pub(crate) password: Option<String>,
    /// Bearer token sent with every gRPC call and to `/metrics`.
    #[arg(long)]
    pub(crate) token: Option<String>,
    /// Seconds to wait for every reply; a reply not in by then counts as an error.
    #[arg(long, default_value_t = 30.0, value_parser = positive, value_name = "SECONDS")]
    pub(crate) timeout: f64,
}

/// Default of `--keys`.
pub(crate) const DEFAULT_KEYS: u64 = 100_000;
/// Default of `--value-size`.
pub(crate) const DEFAULT_VALUE_SIZE: usize = 32;
/// Default of `--read-ratio`.
pub(crate) const DEFAULT_READ_RATIO: f64 = 0.9;

/// The workload and measurement options the load generators share.
#[derive(Debug, Clone, Args)]
pub(crate) struct LoadArgs {
    /// Distinct keys, named `key:0…` with a fixed width and chosen uniformly at random.
    #[arg(long, default_value_t = DEFAULT_KEYS)]
    pub(crate) keys: u64,
    /// Bytes per value written.
    #[arg(long, default_value_t = DEFAULT_VALUE_SIZE, value_name = "BYTES")]
    pub(crate) value_size: usize,
    /// Fraction of requests that are reads (0.0–1.0); the rest are sets.
    #[arg(long, default_value_t = DEFAULT_READ_RATIO, value_parser = fraction)]
    pub(crate) read_ratio: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0, value_parser = seconds, value_name = "SECONDS")]
    pub(crate) duration: f64,
    /// Seconds of load before the measurement starts.
    #[arg(long, default_value_t = 1.0, value_parser = seconds, value_name = "SECONDS")]
    pub(crate) warmup: f64,
    /// Requests per second in total: an open-loop run whose latencies count from each
    /// request's scheduled send time. Without it, each connection sends as fast as replies come.
    #[arg(long, value_parser = positive, value_name = "OPS/S")]
    pub(crate) rate: Option<f64>,
    /// Write every key once before the run (`--prefill false` to skip).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub(crate) prefill: bool,
    /// Runtime worker threads of the load generator.
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// The server's process id: report its CPU time per operation over the measured window.
    #[arg(long, value_name = "PID")]
    pub(crate) server_pid: Option<u32>,
}

fn fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!("{text:?} is not a number from 0.0 to 1.0")),
    }
}

fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err(format!("{text:?} is not a number of seconds")),
    }
}

fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}
