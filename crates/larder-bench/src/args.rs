//! The options of `larder bench`: one clap [`Args`] type per subcommand, gathered in
//! [`Command`], which the binary embeds as its `bench` subcommand.

use std::path::PathBuf;

use clap::{ArgAction, Args, Subcommand};

/// `larder bench …`: what to run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay a key trace through the store and report hit ratios.
    Trace(TraceArgs),
    /// Load a cache node over the Redis protocol and report throughput and latency.
    Resp(RespArgs),
    /// Load a cache node over gRPC and report throughput and latency.
    Grpc(GrpcArgs),
    /// Send one key's GET from many clients at once and report how many origin loads it cost.
    Burst(BurstArgs),
    /// Load an HTTP/1.1 server with GETs, closed or open loop, and report throughput and latency.
    Http(HttpArgs),
}

/// `larder bench trace`.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Trace file: one decimal key per line, libCacheSim oracleGeneral records, or CSV; plain or
    /// zstd-compressed (`.zst`).
    #[arg(long, value_name = "FILE")]
    pub trace: PathBuf,
    /// The trace's format (`auto`: from the file name).
    #[arg(long, value_enum, default_value_t = TraceFormat::Auto)]
    pub format: TraceFormat,
    /// CSV's key and size columns, counted from 1.
    #[arg(
        long,
        value_name = "KEY,SIZE",
        value_delimiter = ',',
        default_value = "1,2"
    )]
    pub csv_columns: Vec<usize>,
    /// Capacities in bytes and each object charged its size from the trace (oracleGeneral, CSV),
    /// instead of capacities in objects of size 1.
    #[arg(long)]
    pub sized: bool,
    /// Capacities in objects (or bytes with `--sized`), comma-separated (defaults known for the
    /// shared traces).
    #[arg(long, value_name = "N,…", value_delimiter = ',')]
    pub capacity: Vec<u64>,
    /// Policy name, or `all`.
    #[arg(long, default_value = "all")]
    pub policy: String,
    /// Runs replayed at once (default: the number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Key of the store's hash in every replay. The policies sample, fingerprint and count
    /// keys by their hash, so a replay is only repeatable with a fixed key; another seed shows
    /// how much of a result is the luck of the hash.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// How a trace file is laid out (`larder bench trace --format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceFormat {
    /// From the file name: `oracleGeneral` in it means that format, `.csv` CSV, else keys.
    Auto,
    /// One decimal key per line; every object has size 1.
    Keys,
    /// libCacheSim's oracleGeneral: 24-byte little-endian records
    /// `[time u32][object id u64][object size u32][next access i64]`.
    Oracle,
    /// Comma-separated lines with a key column and a size column (`--csv-columns`); a first
    /// line whose size is not a number is taken for a header.
    Csv,
}

/// `larder bench resp`.
#[derive(Debug, Clone, Args)]
pub struct RespArgs {
    /// Redis-protocol address of the cache node.
    #[arg(long, default_value = "127.0.0.1:6380", value_name = "HOST:PORT")]
    pub addr: String,
    /// TCP connections.
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Requests in flight per connection, written together in one batch.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Password sent with `AUTH` on every connection.
    #[arg(long)]
    pub password: Option<String>,
    /// The workload and measurement options.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `larder bench grpc`.
#[derive(Debug, Clone, Args)]
pub struct GrpcArgs {
    /// gRPC address of the cache node (`host:port` or `http://host:port`).
    #[arg(long, default_value = "127.0.0.1:7070", value_name = "HOST:PORT")]
    pub addr: String,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Calls in flight per connection.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Bearer token sent with every call.
    #[arg(long)]
    pub token: Option<String>,
    /// Keys per read: above 1, reads are `GetMany` calls of this many keys (ops count keys).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// The workload and measurement options.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `larder bench http`. Of the shared load options, `--keys`, `--key-prefix`, `--value-size` and
/// `--read-ratio` mean nothing for HTTP GETs: they are hidden and refused unless left at their
/// defaults; `--prefill` is hidden and ignored.
#[derive(Debug, Clone, Args)]
#[command(
    mut_arg("keys", |arg| arg.hide(true)),
    mut_arg("key_prefix", |arg| arg.hide(true)),
    mut_arg("value_size", |arg| arg.hide(true)),
    mut_arg("read_ratio", |arg| arg.hide(true)),
    mut_arg("prefill", |arg| arg.hide(true))
)]
pub struct HttpArgs {
    /// What to GET: `http://HOST[:PORT]/PATH` (plain HTTP/1.1, no TLS).
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// TCP connections, each with one request in flight (keep-alive, no pipelining).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// GET `{URL}{i}` with i = 0, 1, 2, … in order across all connections, wrapping at N, so
    /// that every request names a different id (cache misses).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub paths_from: Option<u64>,
    /// A request header, `'Name: value'`, sent with every request; repeatable.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The workload and measurement options.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// The wire `larder bench burst` uses: the Redis protocol or gRPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[allow(
    missing_docs,
    reason = "clap would show a variant's doc comment as that value's help in `--help`"
)]
pub enum Protocol {
    Resp,
    Grpc,
}

/// `larder bench burst`.
#[derive(Debug, Clone, Args)]
pub struct BurstArgs {
    /// Wire protocol of the burst.
    #[arg(long, value_enum, default_value_t = Protocol::Resp)]
    pub protocol: Protocol,
    /// Shorthand for `--protocol grpc`.
    #[arg(long, conflicts_with = "protocol")]
    pub grpc: bool,
    /// Address of the cache node [default: 127.0.0.1:6380 (resp), 127.0.0.1:7070 (grpc)].
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Clients, each sending one GET: RESP connections, or gRPC calls.
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// gRPC calls per HTTP/2 connection.
    #[arg(long, default_value_t = 1000)]
    pub calls_per_connection: usize,
    /// The one key every client reads.
    #[arg(long, default_value = "key:burst")]
    pub key: String,
    /// Admin HTTP address of the node, read for its origin metrics before and after.
    #[arg(long, default_value = "127.0.0.1:7071", value_name = "HOST:PORT")]
    pub admin: String,
    /// Password sent with `AUTH` on every RESP connection.
    #[arg(long)]
    pub password: Option<String>,
    /// Bearer token sent with every gRPC call and to `/metrics`.
    #[arg(long)]
    pub token: Option<String>,
    /// Seconds to wait for every reply; a reply not in by then counts as an error.
    #[arg(long, default_value_t = 30.0, value_parser = positive, value_name = "SECONDS")]
    pub timeout: f64,
}

/// Default of `--keys`.
pub const DEFAULT_KEYS: u64 = 100_000;
/// Default of `--key-prefix`.
pub const DEFAULT_KEY_PREFIX: &str = "key:";
/// Default of `--value-size`.
pub const DEFAULT_VALUE_SIZE: usize = 32;
/// Default of `--read-ratio`.
pub const DEFAULT_READ_RATIO: f64 = 0.9;

/// The workload and measurement options the load generators share.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Distinct keys, named `{PREFIX}0…` with a fixed width and chosen uniformly at random.
    #[arg(long, default_value_t = DEFAULT_KEYS)]
    pub keys: u64,
    /// What every key name starts with; a `{hash tag}` in it puts every key in one cluster
    /// slot, so the load goes to one node's partition.
    #[arg(long, default_value = DEFAULT_KEY_PREFIX, value_name = "PREFIX")]
    pub key_prefix: String,
    /// Bytes per value written.
    #[arg(long, default_value_t = DEFAULT_VALUE_SIZE, value_name = "BYTES")]
    pub value_size: usize,
    /// Fraction of requests that are reads (0.0–1.0); the rest are sets.
    #[arg(long, default_value_t = DEFAULT_READ_RATIO, value_parser = fraction)]
    pub read_ratio: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0, value_parser = seconds, value_name = "SECONDS")]
    pub duration: f64,
    /// Seconds of load before the measurement starts.
    #[arg(long, default_value_t = 1.0, value_parser = seconds, value_name = "SECONDS")]
    pub warmup: f64,
    /// Requests per second in total: an open-loop run whose latencies count from each
    /// request's scheduled send time. Without it, each connection sends as fast as replies come.
    #[arg(long, value_parser = positive, value_name = "OPS/S")]
    pub rate: Option<f64>,
    /// Write every key once before the run (`--prefill false` to skip).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub prefill: bool,
    /// Runtime worker threads of the load generator.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// The server's process id: report its CPU time per operation over the measured window.
    /// Several, comma-separated (a cluster's nodes): their CPU times are added.
    #[arg(long, value_name = "PID,…", value_delimiter = ',')]
    pub server_pid: Vec<u32>,
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
