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
    /// Log lines as `human` text or one `json` object per line (`[telemetry] log_format`).
    #[arg(long, global = true, value_name = "FORMAT")]
    pub(crate) log_format: Option<crate::telemetry::LogFormat>,
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
    /// Inspect a cluster of cache nodes.
    Cluster {
        #[command(subcommand)]
        what: ClusterCommand,
    },
    /// Load generators and trace replay.
    Bench {
        #[command(subcommand)]
        what: larder_bench::Command,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Print the cluster as a node sees it: members, status, partitions, epoch.
    Status(crate::cluster::StatusArgs),
}

#[derive(Debug, Args)]
#[command(
    after_help = "Every setting can also come from the --config file or a LARDER_* \
environment variable, e.g. LARDER_API_LISTEN=127.0.0.1:9080 or LARDER_CACHE_RESP_ADDR; \
--print-config shows them all."
)]
pub(crate) struct UpArgs {
    /// Directory for the SQLite database and other state.
    #[arg(long, value_name = "DIR")]
    pub(crate) data: Option<PathBuf>,
    /// Gateway HTTP address [default: 127.0.0.1:8080] (also LARDER_API_LISTEN).
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<String>,
    /// Cache node Redis-protocol address [default: 127.0.0.1:6380] (also
    /// LARDER_CACHE_RESP_ADDR).
    #[arg(long, value_name = "ADDR")]
    pub(crate) resp_addr: Option<String>,
    /// Cache node gRPC address [default: 127.0.0.1:7070] (also LARDER_CACHE_GRPC_ADDR).
    #[arg(long, value_name = "ADDR")]
    pub(crate) grpc_addr: Option<String>,
    /// Cache node admin HTTP address [default: 127.0.0.1:7071] (also LARDER_CACHE_ADMIN_ADDR).
    #[arg(long, value_name = "ADDR")]
    pub(crate) admin_addr: Option<String>,
    /// Cache nodes to run (default 1); more than one form a cluster on this machine, node i
    /// on the configured ports plus i (RESP, gossip) or plus 2i (gRPC, admin).
    #[arg(long, value_name = "N")]
    pub(crate) nodes: Option<u16>,
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
    /// TLS certificate chain (PEM); with --tls-key the gRPC and RESP listeners speak only
    /// TLS, and both files are reloaded when they change (tls_client_ca asks clients for
    /// certificates).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<String>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<String>,
    /// Join a cluster (gossip on 127.0.0.1:7946 unless --cluster-addr says otherwise).
    #[arg(long)]
    pub(crate) cluster: bool,
    /// UDP gossip address; implies --cluster.
    #[arg(long, value_name = "ADDR")]
    pub(crate) cluster_addr: Option<String>,
    /// Gossip addresses of nodes to join through, comma-separated (DNS names are resolved
    /// again and again); implies --cluster.
    #[arg(long, value_name = "HOST:PORT,…", value_delimiter = ',')]
    pub(crate) seeds: Option<Vec<String>>,
    /// This node's id in the cluster, stable across restarts (default: its RESP address).
    #[arg(long, value_name = "ID")]
    pub(crate) node_id: Option<String>,
    /// The host other nodes and clients reach this node on (needed when listening on 0.0.0.0).
    #[arg(long, value_name = "HOST")]
    pub(crate) advertise_host: Option<String>,
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
    /// TLS certificate chain (PEM); with --tls-key the gateway serves HTTPS (HTTP/2 and
    /// HTTP/1.1), and reloads both files when they change.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<String>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<String>,
}
