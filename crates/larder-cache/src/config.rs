//! The cache node's configuration: one serde struct, defaults as named consts, and the checks
//! that refuse a configuration that cannot work or would expose the node without a password.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use larder_proto::resp::Limits;
use larder_store::{Capacity, Policy, StoreConfig};
use larder_util::reload::Reloading;
use larder_util::tls::TlsFiles;
use serde::{Deserialize, Serialize};

pub use crate::cluster::config::*;
pub use crate::origin::config::*;
pub use crate::origin::{
    GrpcUrlError, HttpUrlError, OriginConfigError, OriginsError, PatternError, SqlConfigError,
};

/// Default gRPC listen address.
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:7070";
/// Default Redis-protocol listen address.
pub const DEFAULT_RESP_ADDR: &str = "127.0.0.1:6380";
/// Default admin HTTP listen address.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:7071";
/// Default memory bound.
pub const DEFAULT_MAX_MEMORY: &str = "256mb";
/// Default cap on simultaneous RESP connections (Redis's `maxclients`).
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;
/// Default largest RESP bulk string accepted.
pub const DEFAULT_MAX_BULK: &str = "64mb";
/// Default largest request or reply.
pub const DEFAULT_MAX_REQUEST: &str = "512mb";
/// Default most elements in one RESP request.
pub const DEFAULT_MAX_ARGS: usize = 1 << 20;
/// Default time a client may take to finish a request it has started sending.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Default interval of the active expiry sweep.
pub const DEFAULT_RECLAIM_INTERVAL_MS: u64 = 100;
/// Default time given to in-flight requests at shutdown.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;
/// Default bound of the tracking table: keys remembered for client-side caching subscribers.
pub const DEFAULT_TRACKING_MAX_KEYS: usize = 1_000_000;
/// Default lease of a Watch subscriber: how long after a ping it may serve its copies.
pub use larder_proto::grpc::DEFAULT_TRACKING_LEASE_MS;

/// The cache node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// gRPC listen address.
    pub grpc_addr: String,
    /// Redis-protocol listen address.
    pub resp_addr: String,
    /// Admin HTTP listen address (`/metrics`, `/healthz`, `/readyz`).
    pub admin_addr: String,
    /// Memory bound: bytes, or a size with a suffix (`k`/`m`/`g` = 1000ⁿ, `kb`/`mb`/`gb` = 1024ⁿ).
    pub max_memory: String,
    /// Eviction policy: lru, sieve, s3fifo, tinylfu, adaptive.
    pub policy: String,
    /// Store shards (a power of two); 0 picks from the core count.
    pub shards: usize,
    /// Password clients must give with RESP `AUTH` (empty: none). Required to listen beyond
    /// loopback.
    pub password: String,
    /// Bearer token gRPC and admin callers must send (empty: none). Required to listen beyond
    /// loopback.
    pub token: String,
    /// Most simultaneous RESP connections; past it new ones are told so and closed.
    pub max_clients: usize,
    /// Largest RESP bulk string (argument) accepted, as a size.
    pub max_bulk: String,
    /// Most arguments in one RESP request.
    pub max_args: usize,
    /// Largest request (RESP request, gRPC message) and largest reply to build, as a size;
    /// bigger requests close the connection, bigger replies are refused with an error.
    pub max_request: String,
    /// Milliseconds a client may take to finish sending a request it has started; a client that
    /// stalls mid-request longer is disconnected.
    pub request_timeout_ms: u64,
    /// Seconds an idle RESP client may stay connected; 0 means forever (Redis's `timeout`).
    pub idle_timeout_secs: u64,
    /// Threads serving the Redis protocol, each with its own connections; 0 means one per core.
    pub resp_threads: usize,
    /// Milliseconds between sweeps that reclaim expired entries in idle shards.
    pub reclaim_interval_ms: u64,
    /// Milliseconds in-flight requests get to finish at shutdown.
    pub shutdown_grace_ms: u64,
    /// Read-through (and optionally write-through) origins, by key pattern; the first whose
    /// pattern matches a key serves it.
    pub origins: Vec<OriginConfig>,
    /// TLS certificate chain (PEM, leaf first): with `tls_key`, the gRPC and RESP listeners
    /// speak only TLS (the admin listener stays plaintext HTTP for probes and scrapers).
    pub tls_cert: String,
    /// Private key (PEM) of `tls_cert`.
    pub tls_key: String,
    /// CA certificates (PEM) client certificates must chain to: with it, every gRPC and RESP
    /// client must present one (mutual TLS, as Redis's `tls-auth-clients yes`).
    pub tls_client_ca: String,
    /// CA certificates (PEM) the other nodes' certificates must chain to, for a clustered TLS
    /// node's calls to them (forwarded requests, shared reads, partition pulls), where it
    /// presents `tls_cert` as its client certificate; empty: `tls_client_ca`.
    pub tls_ca: String,
    /// Milliseconds between checks of the TLS files; changed files are loaded without a
    /// restart (new connections use them).
    pub tls_reload_ms: u64,
    /// Most keys the tracking table remembers for client-side caching (Watch subscribers,
    /// RESP `CLIENT TRACKING`); a subscriber whose read cannot be recorded once it is full is
    /// switched to broadcast (told of every change) instead of losing invalidations.
    pub tracking_max_keys: usize,
    /// Milliseconds a Watch subscriber may serve its copies after a ping the node answered;
    /// a write that awaits invalidation waits at most this long for a silent subscriber.
    pub tracking_lease_ms: u64,
    /// Membership of a cluster of nodes (`[cache.cluster]`).
    pub cluster: ClusterConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            grpc_addr: DEFAULT_GRPC_ADDR.into(),
            resp_addr: DEFAULT_RESP_ADDR.into(),
            admin_addr: DEFAULT_ADMIN_ADDR.into(),
            max_memory: DEFAULT_MAX_MEMORY.into(),
            policy: Policy::default().name().into(),
            shards: 0,
            password: String::new(),
            token: String::new(),
            max_clients: DEFAULT_MAX_CLIENTS,
            max_bulk: DEFAULT_MAX_BULK.into(),
            max_args: DEFAULT_MAX_ARGS,
            max_request: DEFAULT_MAX_REQUEST.into(),
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            idle_timeout_secs: 0,
            resp_threads: 0,
            reclaim_interval_ms: DEFAULT_RECLAIM_INTERVAL_MS,
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
            origins: Vec::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_client_ca: String::new(),
            tls_ca: String::new(),
            tls_reload_ms: DEFAULT_TLS_RELOAD_MS,
            tracking_max_keys: DEFAULT_TRACKING_MAX_KEYS,
            tracking_lease_ms: DEFAULT_TRACKING_LEASE_MS,
            cluster: ClusterConfig::default(),
        }
    }
}

/// Default time between checks of the TLS files.
pub const DEFAULT_TLS_RELOAD_MS: u64 = 5_000;

/// The TLS configurations of a node's listeners (see [`CacheConfig::tls`]).
#[derive(Debug, Clone)]
pub struct ListenerTls {
    /// gRPC: ALPN `h2`.
    pub grpc: Arc<Reloading<rustls::ServerConfig>>,
    /// RESP.
    pub resp: Arc<Reloading<rustls::ServerConfig>>,
}

/// A configuration the node cannot run with; the text says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A size that does not parse.
    #[error("{field} = {value:?}: {reason}")]
    Size {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: SizeError,
    },
    /// `max_request` below `max_bulk`: a request of one largest argument would not fit.
    #[error("max_request = {value:?}: must be at least max_bulk")]
    RequestBelowBulk {
        /// The value of `max_request`.
        value: String,
    },
    /// An unknown eviction policy.
    #[error("policy = {0:?}: expected one of lru, sieve, s3fifo, tinylfu, adaptive")]
    Policy(String),
    /// A listen address that does not resolve.
    #[error("{field} = {value:?} is not a listen address (host:port)")]
    Address {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// A listener beyond loopback without authentication (as Redis's protected mode).
    #[error(
        "refusing to listen on {value} ({field}) without authentication: anyone who can reach \
         that address could read and change the cache. Set {fix} in the [cache] configuration \
         (or the LARDER_CACHE_{upper} environment variable), or listen on 127.0.0.1",
        upper = fix.to_uppercase()
    )]
    Unprotected {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: String,
        /// The setting that would make it safe.
        fix: &'static str,
    },
    /// A limit of zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// An origin that cannot work; the text names it and the setting. (Its text is part of
    /// this one, so it is not also the `source()`.)
    #[error("origins: {0}")]
    Origin(OriginsError),
    /// The store refused the sizing.
    #[error("store: {0}")]
    Store(#[from] larder_store::ConfigError),
    /// TLS settings or files that cannot work.
    #[error("TLS: {0}")]
    Tls(String),
}

impl CacheConfig {
    /// The TLS configurations of the gRPC listener (ALPN `h2`) and the RESP listener, re-read
    /// when the files change; `None` without `tls_cert` and `tls_key`.
    ///
    /// # Errors
    /// [`ConfigError::Tls`] for half the settings, or files that do not load.
    pub fn tls(&self) -> Result<Option<ListenerTls>, ConfigError> {
        match (self.tls_cert.is_empty(), self.tls_key.is_empty()) {
            (true, true) if self.tls_client_ca.is_empty() => return Ok(None),
            (false, false) => {}
            (true, true) => {
                return Err(ConfigError::Tls(
                    "tls_client_ca asks for client certificates, but tls_cert and tls_key \
                     are not set"
                        .into(),
                ));
            }
            _ => {
                return Err(ConfigError::Tls(
                    "TLS needs both tls_cert and tls_key (--tls-cert FILE --tls-key FILE)".into(),
                ));
            }
        }
        let files = TlsFiles {
            cert: self.tls_cert.clone().into(),
            key: self.tls_key.clone().into(),
            ca: self.tls_client_ca.clone().into(),
        };
        let load = |alpn| {
            larder_util::tls::reloading_server(files.clone(), alpn)
                .map_err(|e| ConfigError::Tls(e.to_string()))
        };
        Ok(Some(ListenerTls {
            grpc: load(&[b"h2"])?,
            resp: load(&[])?,
        }))
    }

    /// The TLS configuration of a clustered node's calls to the other nodes: their
    /// certificates checked against `tls_ca` (else `tls_client_ca`), this node's `tls_cert`
    /// presented to those that ask; re-read when the files change. `None` when the node does
    /// not speak TLS or is not clustered: nodes of one cluster speak TLS, or none does.
    ///
    /// # Errors
    /// [`ConfigError::Tls`] for `tls_ca` without a certificate of the node's own, a clustered
    /// TLS node without a CA to check the others by, or files that do not load.
    pub fn peer_tls(&self) -> Result<Option<Arc<Reloading<rustls::ClientConfig>>>, ConfigError> {
        if self.tls_cert.is_empty() || self.tls_key.is_empty() {
            if !self.tls_ca.is_empty() {
                return Err(ConfigError::Tls(
                    "tls_ca checks the other nodes' certificates when this node calls them over \
                     TLS, which needs tls_cert and tls_key"
                        .into(),
                ));
            }
            return Ok(None);
        }
        if !self.cluster.enabled {
            return Ok(None);
        }
        let ca = if self.tls_ca.is_empty() {
            &self.tls_client_ca
        } else {
            &self.tls_ca
        };
        if ca.is_empty() {
            return Err(ConfigError::Tls(
                "a clustered node with TLS calls the other nodes over TLS: set tls_ca to the CA \
                 their certificates chain to (or tls_client_ca, when it is that CA)"
                    .into(),
            ));
        }
        let files = TlsFiles {
            cert: self.tls_cert.clone().into(),
            key: self.tls_key.clone().into(),
            ca: ca.into(),
        };
        larder_util::tls::reloading_client(files, &[b"h2"])
            .map(Some)
            .map_err(|e| ConfigError::Tls(format!("calls to the other nodes: {e}")))
    }

    /// The memory bound in bytes.
    ///
    /// # Errors
    /// [`ConfigError::Size`] when `max_memory` does not parse.
    pub fn max_memory_bytes(&self) -> Result<u64, ConfigError> {
        size_field("max_memory", &self.max_memory)
    }

    /// The store configuration this node runs.
    ///
    /// # Errors
    /// [`ConfigError`] for a bad size, policy or shard count.
    pub fn store(&self) -> Result<StoreConfig, ConfigError> {
        let policy = self
            .policy
            .parse::<Policy>()
            .map_err(|_| ConfigError::Policy(self.policy.clone()))?;
        let store = StoreConfig {
            capacity: Capacity::Bytes(self.max_memory_bytes()?),
            shards: self.shards,
            policy,
        };
        store.effective_shards()?;
        Ok(store)
    }

    /// The largest request or reply, in bytes.
    ///
    /// # Errors
    /// [`ConfigError::Size`] when `max_request` does not parse or is below `max_bulk`.
    pub fn max_request_bytes(&self) -> Result<usize, ConfigError> {
        let bytes = size_field("max_request", &self.max_request)?;
        if bytes < size_field("max_bulk", &self.max_bulk)? {
            return Err(ConfigError::RequestBelowBulk {
                value: self.max_request.clone(),
            });
        }
        Ok(usize::try_from(bytes).unwrap_or(usize::MAX))
    }

    /// The RESP parser limits.
    ///
    /// # Errors
    /// [`ConfigError`] for a bad `max_bulk` or a zero `max_args`.
    pub fn resp_limits(&self) -> Result<Limits, ConfigError> {
        let bulk = size_field("max_bulk", &self.max_bulk)?;
        if self.max_args == 0 {
            return Err(ConfigError::Zero("max_args"));
        }
        Ok(Limits {
            max_bulk_len: usize::try_from(bulk).unwrap_or(usize::MAX),
            max_array_len: self.max_args,
            ..Limits::default()
        })
    }

    /// The number of RESP threads in effect.
    pub fn resp_threads(&self) -> usize {
        match self.resp_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// How long a started request may take to arrive.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }

    /// Checks everything, including that no listener is exposed beyond loopback without
    /// authentication.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.store()?;
        self.resp_limits()?;
        self.max_request_bytes()?;
        if self.max_clients == 0 {
            return Err(ConfigError::Zero("max_clients"));
        }
        if self.tracking_lease_ms == 0 {
            return Err(ConfigError::Zero("tracking_lease_ms"));
        }
        crate::origin::check(&self.origins).map_err(ConfigError::Origin)?;
        let listeners = [
            (
                "resp_addr",
                &self.resp_addr,
                self.password.is_empty(),
                "password",
            ),
            ("grpc_addr", &self.grpc_addr, self.token.is_empty(), "token"),
            (
                // Gossip itself carries no credential; nodes call each other over gRPC with
                // the token, so a cluster beyond loopback needs one.
                "cluster.addr",
                &self.cluster.addr,
                self.cluster.enabled && self.token.is_empty(),
                "token",
            ),
            (
                "admin_addr",
                &self.admin_addr,
                self.token.is_empty(),
                "token",
            ),
        ];
        for (field, value, open, fix) in listeners {
            let addrs = resolve(field, value)?;
            if open && addrs.iter().any(|addr| !addr.ip().is_loopback()) {
                return Err(ConfigError::Unprotected {
                    field,
                    value: value.clone(),
                    fix,
                });
            }
        }
        Ok(())
    }
}

/// Resolves a listen address.
///
/// # Errors
/// [`ConfigError::Address`] when it does not resolve.
pub fn resolve(field: &'static str, value: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    let bad = || ConfigError::Address {
        field,
        value: value.to_owned(),
    };
    let addrs: Vec<_> = value.to_socket_addrs().map_err(|_| bad())?.collect();
    if addrs.is_empty() {
        return Err(bad());
    }
    Ok(addrs)
}

fn size_field(field: &'static str, value: &str) -> Result<u64, ConfigError> {
    parse_bytes(value).map_err(|reason| ConfigError::Size {
        field,
        value: value.to_owned(),
        reason,
    })
}

/// Why a size does not parse. The text is the size as read: trimmed and lowercased.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// No number where the size should start.
    #[error("{text:?} is not a size")]
    NotANumber {
        /// The size as read.
        text: String,
    },
    /// A suffix other than b, k, kb, m, mb, g or gb.
    #[error("unknown size unit {unit:?} (use b, k, kb, m, mb, g or gb)")]
    Unit {
        /// The suffix.
        unit: String,
    },
    /// More bytes than a `u64` holds.
    #[error("{text:?} is too large")]
    TooLarge {
        /// The size as read.
        text: String,
    },
}

/// Parses a byte size the way Redis's configuration does: `1k` = 1000, `1kb` = 1024, and so on.
///
/// # Errors
/// [`SizeError`] saying what is wrong with the text.
pub fn parse_bytes(text: &str) -> Result<u64, SizeError> {
    let text = text.trim().to_ascii_lowercase();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let Ok(number) = digits.parse::<u64>() else {
        return Err(SizeError::NotANumber { text });
    };
    let scale: u64 = match unit {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        other => {
            return Err(SizeError::Unit {
                unit: other.to_owned(),
            });
        }
    };
    number
        .checked_mul(scale)
        .ok_or(SizeError::TooLarge { text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_redis() {
        assert_eq!(parse_bytes("100"), Ok(100));
        assert_eq!(parse_bytes("1k"), Ok(1_000));
        assert_eq!(parse_bytes("1KB"), Ok(1_024));
        assert_eq!(parse_bytes("2gb"), Ok(2 << 30));
        assert!(parse_bytes("1tb").is_err());
        assert!(parse_bytes("mb").is_err());
        assert!(parse_bytes("99999999999gb").is_err());
    }

    #[test]
    fn size_errors_say_what_is_wrong() {
        assert_eq!(
            parse_bytes(" 1TB ").unwrap_err().to_string(),
            "unknown size unit \"tb\" (use b, k, kb, m, mb, g or gb)"
        );
        assert_eq!(
            parse_bytes("Lots").unwrap_err(),
            SizeError::NotANumber {
                text: "lots".into()
            }
        );
        assert_eq!(
            parse_bytes("99999999999gb").unwrap_err().to_string(),
            "\"99999999999gb\" is too large"
        );
        let bad = CacheConfig {
            max_memory: "lots".into(),
            ..CacheConfig::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "max_memory = \"lots\": \"lots\" is not a size"
        );
        let small = CacheConfig {
            max_request: "1mb".into(),
            ..CacheConfig::default()
        };
        assert_eq!(
            small.validate().unwrap_err().to_string(),
            "max_request = \"1mb\": must be at least max_bulk"
        );
    }

    #[test]
    fn origin_errors_name_the_origin_and_the_setting() {
        let origin = OriginConfig {
            name: "docs".into(),
            pattern: "doc/{id}".into(),
            kind: "http".into(),
            url: "http://h/{id}".into(),
            ..OriginConfig::default()
        };
        let with = |origins: Vec<OriginConfig>| CacheConfig {
            origins,
            ..CacheConfig::default()
        };
        with(vec![origin.clone()]).validate().unwrap();
        let err = with(vec![origin.clone(), origin.clone()])
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "origins: origin \"docs\": the name is used twice"
        );
        assert!(matches!(
            err,
            ConfigError::Origin(OriginsError::Config {
                index: 1,
                error: OriginConfigError::NameTwice,
                ..
            })
        ));
        let bad = OriginConfig {
            kind: "ftp".into(),
            ..origin.clone()
        };
        assert_eq!(
            with(vec![bad]).validate().unwrap_err().to_string(),
            "origins: origin \"docs\": kind = \"ftp\": expected sql, http or grpc"
        );
        let bad = OriginConfig {
            name: String::new(),
            ..origin.clone()
        };
        assert_eq!(
            with(vec![bad]).validate().unwrap_err().to_string(),
            "origins: origins[0]: needs a name without quotes or backslashes"
        );
        let bad = OriginConfig {
            pattern: "doc/{id".into(),
            ..origin
        };
        assert_eq!(
            with(vec![bad]).validate().unwrap_err().to_string(),
            "origins: origin \"docs\": pattern \"doc/{id\": '{' without '}'"
        );
    }

    #[test]
    fn defaults_are_valid_and_loopback() {
        CacheConfig::default().validate().unwrap();
    }

    #[test]
    fn open_listeners_need_credentials() {
        let exposed = CacheConfig {
            resp_addr: "0.0.0.0:6380".into(),
            ..CacheConfig::default()
        };
        let err = exposed.validate().unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Unprotected {
                fix: "password",
                ..
            }
        ));
        assert!(err.to_string().contains("Set password"), "{err}");
        let protected = CacheConfig {
            password: "s3cret".into(),
            ..exposed
        };
        protected.validate().unwrap();
        let grpc = CacheConfig {
            grpc_addr: "0.0.0.0:7070".into(),
            ..CacheConfig::default()
        };
        assert!(matches!(
            grpc.validate(),
            Err(ConfigError::Unprotected { fix: "token", .. })
        ));
    }

    #[test]
    fn bad_values_are_named() {
        let bad = CacheConfig {
            policy: "fifo".into(),
            ..CacheConfig::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("policy"));
        let bad = CacheConfig {
            max_memory: "lots".into(),
            ..CacheConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("max_memory")
        );
        let bad = CacheConfig {
            resp_addr: "nowhere".into(),
            ..CacheConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("resp_addr")
        );
    }

    #[test]
    fn calls_between_tls_nodes_need_a_ca_to_check_the_others_by() {
        let files = CacheConfig {
            tls_cert: "/nonexistent/node.pem".into(),
            tls_key: "/nonexistent/node.key".into(),
            ..CacheConfig::default()
        };
        // Not clustered: no calls to other nodes, nothing to check them by.
        assert!(matches!(files.peer_tls(), Ok(None)));
        let clustered = CacheConfig {
            cluster: ClusterConfig {
                enabled: true,
                ..ClusterConfig::default()
            },
            ..files
        };
        let err = clustered.peer_tls().unwrap_err().to_string();
        assert!(err.contains("set tls_ca"), "{err}");
        // With a CA (tls_client_ca serves), the files are read: here they do not exist.
        let with_ca = CacheConfig {
            tls_client_ca: "/nonexistent/ca.pem".into(),
            ..clustered.clone()
        };
        let err = with_ca.peer_tls().unwrap_err().to_string();
        assert!(err.contains("calls to the other nodes"), "{err}");
        let ca_alone = CacheConfig {
            tls_ca: "/nonexistent/ca.pem".into(),
            cluster: clustered.cluster.clone(),
            ..CacheConfig::default()
        };
        let err = ca_alone.peer_tls().unwrap_err().to_string();
        assert!(err.contains("needs tls_cert and tls_key"), "{err}");
        // Plaintext nodes call each other in plaintext.
        let plain = CacheConfig {
            cluster: clustered.cluster,
            ..CacheConfig::default()
        };
        assert!(matches!(plain.peer_tls(), Ok(None)));
    }
}
