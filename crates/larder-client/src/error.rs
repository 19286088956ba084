//! What a call can fail with, and which failures count against a node's circuit breaker.

use std::borrow::Cow;
use std::error::Error as _;
use std::sync::Arc;

use tonic::metadata::errors::InvalidMetadataValue;
use tonic::{Code, Status};

/// A failed client call or construction.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The node could not serve the call: its breaker is open, the deadline passed, the
    /// transport failed or it answered `UNAVAILABLE`. Callers fall back to the database.
    #[error("cache node {node} unavailable: {message}")]
    Unavailable {
        /// The node (`host:port`); shared, so failing fast allocates nothing.
        node: Arc<str>,
        /// What happened.
        message: Cow<'static, str>,
    },
    /// The node answered with an application error (`INVALID_ARGUMENT`, `UNAUTHENTICATED`,
    /// `RESOURCE_EXHAUSTED`, …); retrying elsewhere will not help.
    #[error("cache node rejected the call ({code:?}): {message}")]
    Rejected {
        /// The gRPC status code.
        code: Code,
        /// The node's message.
        message: String,
    },
    /// The client configuration cannot work. (Its text is part of this one, so it is not also
    /// the `source()`.)
    #[error("cache client configuration: {0}")]
    Config(ConfigError),
}

impl From<ConfigError> for Error {
    fn from(err: ConfigError) -> Self {
        Self::Config(err)
    }
}

/// Why a client configuration cannot work; the text says how to fix it. tonic's errors are
/// shared, so that [`Error`] stays cheap to clone.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    /// `nodes` is empty.
    #[error("nodes is empty: list at least one cache node")]
    NoNodes,
    /// A duration that must be positive is zero.
    #[error("{0} must be positive")]
    NotPositive(&'static str),
    /// A count that must be at least 1 is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// The token has characters a header cannot carry.
    #[error("token must be visible ASCII")]
    Token,
    /// The deadline does not make a `grpc-timeout` header.
    #[error("deadline: {0}")]
    Deadline(Arc<InvalidMetadataValue>),
    /// A node address with `https://`: TLS is chosen by `tls_ca`, not by the address.
    #[error(
        "node {address:?}: use host:port or http://host:port; set tls_ca to speak TLS to the \
         nodes"
    )]
    Tls {
        /// The address as configured.
        address: String,
    },
    /// A node address that is not `host:port` or `http://host:port`.
    #[error("node {address:?}: expected host:port or http://host:port")]
    Address {
        /// The address as configured.
        address: String,
    },
    /// A node address without a port, or with one that is not a number.
    #[error("node {address:?}: expected host:port with a numeric port")]
    Port {
        /// The address as configured.
        address: String,
    },
    /// tonic refused a node's endpoint.
    #[error("node {node:?}: {error}")]
    Endpoint {
        /// The node (`host:port`).
        node: String,
        /// What tonic said.
        error: Arc<tonic::transport::Error>,
    },
    /// The same node twice in `nodes`.
    #[error("node {0} is listed twice")]
    Twice(String),
    /// Two nodes whose placement hashes collide, so their keys' owner would depend on the
    /// order of the list.
    #[error("nodes {0} and {1} have the same placement hash; list one differently")]
    SameHash(String, String),
    /// `tls_cert` without `tls_key`, or the other way round.
    #[error("a client certificate needs both tls_cert and tls_key")]
    HalfCertificate,
    /// A client certificate without the CA to check the nodes by.
    #[error("tls_cert is for TLS, which needs tls_ca (the CA of the nodes)")]
    CertificateWithoutCa,
    /// The TLS files could not be read or do not fit together.
    #[error("TLS to the nodes: {0}")]
    TlsFiles(String),
    /// The channels need a Tokio runtime to drive them.
    #[error("Client::new must be called inside a Tokio runtime")]
    NoRuntime,
}

impl Error {
    /// Whether this is [`Error::Unavailable`]: the call may succeed later or elsewhere.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// The breaker of `node` is open.
    pub(crate) fn breaker_open(node: &Arc<str>) -> Self {
        Self::Unavailable {
            node: Arc::clone(node),
            message: Cow::Borrowed("circuit breaker open"),
        }
    }

    /// The call to `node` did not finish within the deadline.
    pub(crate) fn deadline(node: &Arc<str>) -> Self {
        Self::Unavailable {
            node: Arc::clone(node),
            message: Cow::Borrowed("deadline exceeded"),
        }
    }

    /// The error a status from `node` stands for.
    pub(crate) fn from_status(node: &Arc<str>, status: Status) -> Self {
        if is_timeout(&status) {
            Self::deadline(node)
        } else if is_availability_failure(&status) {
            Self::Unavailable {
                node: Arc::clone(node),
                message: Cow::Owned(format!("{:?}: {}", status.code(), status.message())),
            }
        } else {
            Self::Rejected {
                code: status.code(),
                message: status.message().to_owned(),
            }
        }
    }
}

/// Whether a status reports a passed deadline: the node's `DEADLINE_EXCEEDED`, or the channel's
/// own enforcement of the `grpc-timeout` this client sends (which can fire just before the
/// client's timer).
fn is_timeout(status: &Status) -> bool {
    if status.code() == Code::DeadlineExceeded {
        return true;
    }
    let mut source = status.source();
    while let Some(err) = source {
        if err.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Whether a status means the node could not serve the call (and counts against its breaker)
/// rather than that it refused this particular request.
///
/// `CANCELLED` counts because the node cancels a call whose `grpc-timeout` has passed, and this
/// client never cancels a call it still waits for. A status carrying a local source error was
/// made by the transport (a reset connection, an HTTP/2 error), not sent by the node.
fn is_availability_failure(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
    ) || status.source().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_failures_and_rejections() {
        let node: Arc<str> = Arc::from("n:1");
        for code in [Code::Unavailable, Code::DeadlineExceeded, Code::Cancelled] {
            let err = Error::from_status(&node, Status::new(code, "x"));
            assert!(err.is_unavailable(), "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::Unauthenticated,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Internal,
        ] {
            let err = Error::from_status(&node, Status::new(code, "x"));
            assert!(matches!(err, Error::Rejected { code: c, .. } if c == code));
        }
        let timeout = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        let err = Error::from_status(&node, timeout);
        assert_eq!(
            err.to_string(),
            "cache node n:1 unavailable: deadline exceeded"
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let transport = Status::from_error(Box::new(io));
        assert!(Error::from_status(&node, transport).is_unavailable());
    }

    #[test]
    fn configuration_errors_say_what_to_fix() {
        let cases = [
            (
                ConfigError::NoNodes,
                "nodes is empty: list at least one cache node",
            ),
            (
                ConfigError::NotPositive("deadline_ms"),
                "deadline_ms must be positive",
            ),
            (
                ConfigError::Zero("breaker_failures"),
                "breaker_failures must be at least 1",
            ),
            (
                ConfigError::Tls {
                    address: "https://a:1".into(),
                },
                "node \"https://a:1\": use host:port or http://host:port; set tls_ca to speak TLS \
                 to the nodes",
            ),
            (
                ConfigError::Port {
                    address: "a".into(),
                },
                "node \"a\": expected host:port with a numeric port",
            ),
            (
                ConfigError::SameHash("a:1".into(), "b:2".into()),
                "nodes a:1 and b:2 have the same placement hash; list one differently",
            ),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
        }
        let err = Error::from(ConfigError::Twice("a:1".into()));
        assert_eq!(
            err.to_string(),
            "cache client configuration: node a:1 is listed twice"
        );
        assert!(err.source().is_none());
    }

    #[test]
    fn messages_name_the_node() {
        let node: Arc<str> = Arc::from("cache-a:7070");
        let text = Error::breaker_open(&node).to_string();
        assert_eq!(
            text,
            "cache node cache-a:7070 unavailable: circuit breaker open"
        );
    }
}
