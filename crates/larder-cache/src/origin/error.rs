//! What origins fail with: settings that cannot work (at startup), and a read or write that
//! failed (for clients).
//!
//! Every origin error's text includes its cause's, as the operator or client is shown it, so
//! a cause is never also returned by `source()`: the binary prints an error with its chain,
//! and would print the cause twice.

use larder_proto::ErrorCode;

use super::grpc::GrpcUrlError;
use super::http::HttpUrlError;
use super::pattern::PatternError;
use super::sql::SqlConfigError;

/// Why the configured origins cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum OriginsError {
    /// One origin's settings cannot work.
    #[error("{}: {error}", label(.index, .name))]
    Config {
        /// Its place in the list.
        index: usize,
        /// Its name as configured (perhaps empty).
        name: String,
        /// What is wrong.
        error: OriginConfigError,
    },
    /// Origins load on the tokio runtime they are created in, and there is none.
    #[error("{0}")]
    NoRuntime(tokio::runtime::TryCurrentError),
}

/// How an origin is named in messages: by its name, or by its place when it has none.
fn label(index: &usize, name: &str) -> String {
    if name.is_empty() {
        format!("origins[{index}]")
    } else {
        format!("origin {name:?}")
    }
}

/// Why one origin's settings cannot work.
#[derive(Debug, thiserror::Error)]
pub enum OriginConfigError {
    /// The name is empty or has a quote, a backslash or a line break.
    #[error("needs a name without quotes or backslashes")]
    Name,
    /// An earlier origin has the same name.
    #[error("the name is used twice")]
    NameTwice,
    /// The key pattern does not parse.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// The `kind` is not one of `sql`, `http` or `grpc`.
    #[error("kind = {0:?}: expected sql, http or grpc")]
    Kind(String),
    /// An `http` or `grpc` origin without a `url`.
    #[error("needs a url")]
    NoUrl,
    /// The settings of a `sql` origin.
    #[error(transparent)]
    Sql(#[from] SqlConfigError),
    /// The URL template of an `http` origin.
    #[error(transparent)]
    Http(#[from] HttpUrlError),
    /// The URL of a `grpc` origin, or no runtime to drive its channel.
    #[error(transparent)]
    Grpc(#[from] GrpcUrlError),
    /// `write_through` on a `sql` origin without a `store` statement.
    #[error("write_through needs a `store` statement")]
    NoStoreStatement,
    /// A setting that must be at least 1 is 0.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A duration above its bound.
    #[error("{setting} = {value} is more than the most allowed, {max}")]
    TooLarge {
        /// The setting.
        setting: &'static str,
        /// Its value.
        value: u64,
        /// Its bound.
        max: u64,
    },
}

/// Why an origin read or write failed. Nothing is cached for a failure. Both carry the text a
/// client is shown, since a load's result is shared by every reader of the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OriginError {
    /// The origin failed, timed out, is refusing calls (breaker open) or is at its limit.
    #[error("origin unavailable: {0}")]
    Unavailable(String),
    /// The key or the request cannot go to this origin.
    #[error("{0}")]
    Invalid(String),
}

impl OriginError {
    /// The kind of error, for the protocols' error codes.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Invalid(_) => ErrorCode::InvalidArgument,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_named_or_numbered() {
        let named = OriginsError::Config {
            index: 2,
            name: "docs".into(),
            error: OriginConfigError::Zero("fresh_ttl_ms"),
        };
        assert_eq!(
            named.to_string(),
            "origin \"docs\": fresh_ttl_ms must be at least 1"
        );
        let unnamed = OriginsError::Config {
            index: 2,
            name: String::new(),
            error: OriginConfigError::Name,
        };
        assert_eq!(
            unnamed.to_string(),
            "origins[2]: needs a name without quotes or backslashes"
        );
        let quoted = OriginsError::Config {
            index: 0,
            name: "a\"b".into(),
            error: OriginConfigError::Name,
        };
        assert_eq!(
            quoted.to_string(),
            "origin \"a\\\"b\": needs a name without quotes or backslashes"
        );
    }

    #[test]
    fn causes_are_in_the_text_and_not_repeated_as_sources() {
        use std::error::Error as _;
        let pattern = super::super::pattern::KeyPattern::parse("{id}").unwrap_err();
        let err = OriginsError::Config {
            index: 0,
            name: "o".into(),
            error: OriginConfigError::Pattern(pattern.clone()),
        };
        assert!(err.to_string().ends_with(&pattern.to_string()), "{err}");
        assert!(err.source().is_none());
        let too_large = OriginConfigError::TooLarge {
            setting: "load_timeout_ms",
            value: 600_001,
            max: 600_000,
        };
        assert_eq!(
            too_large.to_string(),
            "load_timeout_ms = 600001 is more than the most allowed, 600000"
        );
    }
}
