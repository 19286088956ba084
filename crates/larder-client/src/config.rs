//! The client's configuration: one serde struct, defaults as named consts, and the checks that
//! turn node addresses into names and endpoints.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use larder_util::reload::Reloading;
use larder_util::tls::TlsFiles;

use serde::{Deserialize, Serialize};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Endpoint;

use crate::error::ConfigError;

/// Default node: a cache node's default gRPC address.
pub const DEFAULT_NODE: &str = "127.0.0.1:7070";
/// Default time one call may take, including any connection it needs.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(250);
/// Default time to establish a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default consecutive failures that open a node's breaker.
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
/// Default time a breaker stays open before one trial call.
pub const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_secs(2);
/// Default HTTP/2 connections per node.
pub const DEFAULT_CONNECTIONS_PER_NODE: usize = 2;
/// Interval of HTTP/2 pings, so a connection to a vanished host is noticed and replaced.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Time a ping may go unanswered before its connection is dropped.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach the cache nodes. In a file, durations are whole milliseconds (`deadline_ms`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// The cache nodes' gRPC addresses, `host:port` or `http://host:port`. Keys are spread over
    /// them by rendezvous hashing of `host:port`, so every gateway replica must list the same
    /// nodes spelled the same way (in any order).
    pub nodes: Vec<String>,
    /// Bearer token sent as `authorization: Bearer <token>` on every call (`None` or empty:
    /// none); the nodes' `token` setting.
    pub token: Option<String>,
    /// Time one call may take, connection included; also sent to the node as `grpc-timeout`.
    #[serde(rename = "deadline_ms", with = "millis")]
    pub deadline: Duration,
    /// Time to establish a connection to a node.
    #[serde(rename = "connect_timeout_ms", with = "millis")]
    pub connect_timeout: Duration,
    /// Consecutive failed calls (unavailable, deadline, transport) that open a node's breaker.
    pub breaker_failures: u32,
    /// Time an open breaker fails calls fast before it lets one trial call through.
    #[serde(rename = "breaker_cooldown_ms", with = "millis")]
    pub breaker_cooldown: Duration,
    /// HTTP/2 connections kept to each node; calls take them in turn.
    pub connections_per_node: usize,
    /// CA certificates (PEM) node certificates must chain to: with it, the client speaks TLS
    /// to every node (empty: plaintext).
    pub tls_ca: String,
    /// Client certificate chain (PEM) for nodes that ask for one (mutual TLS); with `tls_key`.
    pub tls_cert: String,
    /// Private key (PEM) of `tls_cert`.
    pub tls_key: String,
    /// The name node certificates are checked against (empty: each node's host).
    pub tls_server_name: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            nodes: vec![DEFAULT_NODE.to_owned()],
            token: None,
            deadline: DEFAULT_DEADLINE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            breaker_failures: DEFAULT_BREAKER_FAILURES,
            breaker_cooldown: DEFAULT_BREAKER_COOLDOWN,
            connections_per_node: DEFAULT_CONNECTIONS_PER_NODE,
            tls_ca: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_server_name: String::new(),
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("nodes", &self.nodes)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("deadline", &self.deadline)
            .field("connect_timeout", &self.connect_timeout)
            .field("breaker_failures", &self.breaker_failures)
            .field("breaker_cooldown", &self.breaker_cooldown)
            .field("connections_per_node", &self.connections_per_node)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_server_name", &self.tls_server_name)
            .finish()
    }
}

impl ClientConfig {
    /// Refuses settings that cannot work.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.nodes.is_empty() {
            return Err(ConfigError::NoNodes);
        }
        if self.deadline.is_zero() {
            return Err(ConfigError::NotPositive("deadline_ms"));
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::NotPositive("connect_timeout_ms"));
        }
        if self.breaker_failures == 0 {
            return Err(ConfigError::Zero("breaker_failures"));
        }
        if self.connections_per_node == 0 {
            return Err(ConfigError::Zero("connections_per_node"));
        }
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            return Err(ConfigError::HalfCertificate);
        }
        if !self.tls_cert.is_empty() && self.tls_ca.is_empty() {
            return Err(ConfigError::CertificateWithoutCa);
        }
        Ok(())
    }

    /// The nodes' names (see [`node_name`]), in configuration order.
    pub(crate) fn node_names(&self) -> Result<Vec<String>, ConfigError> {
        self.nodes
            .iter()
            .map(|address| node_name(address))
            .collect()
    }

    /// The `authorization` value (when a non-empty token is set) and the `grpc-timeout` value
    /// every call carries, formatted once.
    pub(crate) fn headers(
        &self,
    ) -> Result<(Option<AsciiMetadataValue>, AsciiMetadataValue), ConfigError> {
        let token = self.token.as_deref().filter(|t| !t.is_empty());
        let authorization = token
            .map(|token| format!("Bearer {token}").parse::<AsciiMetadataValue>())
            .transpose()
            .map_err(|_| ConfigError::Token)?;
        let timeout = grpc_timeout(self.deadline)
            .parse::<AsciiMetadataValue>()
            .map_err(|e| ConfigError::Deadline(e.into()))?;
        Ok((authorization, timeout))
    }

    /// The TLS configuration for the nodes, re-read when its files change; `None` without
    /// `tls_ca`.
    pub(crate) fn tls(&self) -> Result<Option<Arc<Reloading<rustls::ClientConfig>>>, ConfigError> {
        if self.tls_ca.is_empty() {
            return Ok(None);
        }
        let files = TlsFiles {
            cert: self.tls_cert.clone().into(),
            key: self.tls_key.clone().into(),
            ca: self.tls_ca.clone().into(),
        };
        larder_util::tls::reloading_client(files, &[b"h2"])
            .map(Some)
            .map_err(|e| ConfigError::TlsFiles(e.to_string()))
    }

    /// The endpoint for a node's (normalized) name.
    pub(crate) fn endpoint(&self, name: &str) -> Result<Endpoint, ConfigError> {
        let endpoint =
            Endpoint::from_shared(format!("http://{name}")).map_err(|e| ConfigError::Endpoint {
                node: name.to_owned(),
                error: e.into(),
            })?;
        Ok(endpoint
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true))
    }
}

/// A node address as its name: `host:port` without a scheme or trailing slash.
///
/// # Errors
///
/// [`ConfigError`] for `https://` (TLS is chosen by `tls_ca`, not by the address), a path, or
/// a missing port.
fn node_name(address: &str) -> Result<String, ConfigError> {
    let trimmed = address.trim();
    if trimmed.starts_with("https://") {
        return Err(ConfigError::Tls {
            address: address.to_owned(),
        });
    }
    let name = trimmed.strip_prefix("http://").unwrap_or(trimmed);
    let name = name.strip_suffix('/').unwrap_or(name);
    if name.is_empty() || name.contains(['/', '?', '#', '@']) || name.contains("://") {
        return Err(ConfigError::Address {
            address: address.to_owned(),
        });
    }
    let port = name.rsplit_once(':').map(|(_, port)| port);
    if port.is_none_or(|p| p.parse::<u16>().is_err()) {
        return Err(ConfigError::Port {
            address: address.to_owned(),
        });
    }
    Ok(name.to_owned())
}

/// The grpc-timeout header value for a deadline: at most 8 digits and a unit.
fn grpc_timeout(deadline: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let micros = deadline.as_micros();
    if micros <= MAX {
        format!("{micros}u")
    } else if deadline.as_millis() <= MAX {
        format!("{}m", deadline.as_millis())
    } else {
        format!("{}S", deadline.as_secs().min(99_999_999))
    }
}

/// Durations as whole milliseconds, as every larder configuration writes them.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_drop_the_scheme_and_need_a_port() {
        assert_eq!(node_name("10.0.0.1:7070").unwrap(), "10.0.0.1:7070");
        assert_eq!(node_name("http://cache-a:7070/").unwrap(), "cache-a:7070");
        assert_eq!(node_name(" [::1]:7070 ").unwrap(), "[::1]:7070");
        for bad in [
            "",
            "cache-a",
            "cache-a:x",
            "https://a:1",
            "http://a:1/path",
            "ftp://a:1",
        ] {
            assert!(
                matches!(
                    node_name(bad),
                    Err(ConfigError::Tls { .. }
                        | ConfigError::Address { .. }
                        | ConfigError::Port { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn defaults_pass_and_bad_values_are_refused() {
        assert!(ClientConfig::default().check().is_ok());
        let bad = [
            ClientConfig {
                nodes: vec![],
                ..Default::default()
            },
            ClientConfig {
                deadline: Duration::ZERO,
                ..Default::default()
            },
            ClientConfig {
                breaker_failures: 0,
                ..Default::default()
            },
            ClientConfig {
                connections_per_node: 0,
                ..Default::default()
            },
        ];
        for config in bad {
            assert!(config.check().is_err(), "{config:?}");
        }
    }

    #[test]
    fn grpc_timeouts_fit_eight_digits() {
        assert_eq!(grpc_timeout(Duration::from_millis(250)), "250000u");
        assert_eq!(grpc_timeout(Duration::from_secs(1_000)), "1000000m");
        assert_eq!(grpc_timeout(Duration::from_secs(1 << 40)), "99999999S");
    }

    #[test]
    fn files_write_durations_in_milliseconds() {
        let text = r#"
            nodes = ["10.0.0.1:7070", "http://10.0.0.2:7070"]
            token = "s3cret"
            deadline_ms = 100
            breaker_cooldown_ms = 5000
        "#;
        let config: ClientConfig = toml::from_str(text).unwrap();
        assert_eq!(config.nodes.len(), 2);
        assert_eq!(config.token.as_deref(), Some("s3cret"));
        assert_eq!(config.deadline, Duration::from_millis(100));
        assert_eq!(config.breaker_cooldown, Duration::from_secs(5));
        assert_eq!(config.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(config.connections_per_node, DEFAULT_CONNECTIONS_PER_NODE);
        let back: ClientConfig = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
        assert_eq!(back, config);
        assert!(toml::from_str::<ClientConfig>("deadline = 5").is_err());
    }

    #[test]
    fn debug_hides_the_token() {
        let config = ClientConfig {
            token: Some("s3cret".into()),
            ..Default::default()
        };
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
