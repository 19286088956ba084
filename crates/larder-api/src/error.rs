//! What keeps the gateway from starting: a configuration that cannot work, or a database that
//! cannot be opened. Each error's text includes its cause's, so the cause is not also its
//! `source()`: the binary prints an error with its chain, and would print the cause twice.

use std::net::SocketAddr;

use crate::db::DbError;
use crate::doc::SchemaError;

/// A gateway setting that cannot work; the text says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A listener beyond loopback without credentials.
    #[error(
        "refusing to listen on {addr} without credentials: anyone who can reach that \
         address could read and change every collection. Configure a credential in [api] \
         (token, [[api.keys]] or [api.jwt]; or LARDER_API_TOKEN), or listen on 127.0.0.1"
    )]
    Unprotected {
        /// The address listened on.
        addr: SocketAddr,
    },
    /// `max_connections = 0`.
    #[error("max_connections is 0: the gateway could serve no connection")]
    NoConnections,
    /// A collection's name, attributes or schema.
    #[error("{0}")]
    Collection(CollectionError),
    /// An API key or JWT setting that cannot work.
    #[error("{0}")]
    Credentials(String),
    /// A rate limit that cannot work.
    #[error("{0}")]
    RateLimits(String),
    /// A CORS rule that cannot work.
    #[error("{0}")]
    Cors(String),
    /// `tls_client_ca` without a certificate of the gateway's own.
    #[error("tls_client_ca asks for client certificates, but tls_cert and tls_key are not set")]
    ClientCaWithoutTls,
    /// One of `tls_cert` and `tls_key` without the other.
    #[error("TLS needs both tls_cert and tls_key (--tls-cert FILE --tls-key FILE)")]
    HalfTls,
    /// TLS files that cannot be read or do not fit together.
    #[error("TLS: {0}")]
    TlsFiles(String),
    /// No database URL.
    #[error("database is empty: give a sqlite:// or postgres:// URL")]
    NoDatabase,
    /// The in-process cache refused its sizing.
    #[error("{0}")]
    LocalCache(larder_store::ConfigError),
    /// The cache client refused the cache node settings.
    #[error("{0}")]
    Client(larder_client::Error),
}

/// Why the database could not be opened or migrated. Its text starts "database unavailable: ".
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DatabaseError(DbError);

impl From<DbError> for DatabaseError {
    fn from(err: DbError) -> Self {
        Self(err)
    }
}

/// Why a configured collection was refused; each names the collection.
#[derive(Debug, thiserror::Error)]
pub enum CollectionError {
    /// A name that is not 1-64 of `A-Z a-z 0-9 - _`.
    #[error("collection {name:?}: names are 1-64 of A-Z a-z 0-9 - _")]
    Name {
        /// The name.
        name: String,
    },
    /// A filterable or sortable attribute that is not `A-Z a-z 0-9 _`.
    #[error(
        "collection {collection:?}: attribute {attribute:?} in filterable/sortable must be \
         A-Z a-z 0-9 _"
    )]
    Attribute {
        /// The collection.
        collection: String,
        /// The attribute.
        attribute: String,
    },
    /// A schema that does not compile. (Its text is part of this one, so it is not also the
    /// `source()`.)
    #[error("collection {collection:?}: {error}")]
    Schema {
        /// The collection.
        collection: String,
        /// Why the schema was refused.
        error: SchemaError,
    },
    /// Two collections with one name.
    #[error("collection {name:?} is declared twice")]
    Twice {
        /// The name.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;
    use crate::doc::Schema;

    #[test]
    fn texts_name_the_setting_and_keep_their_causes() {
        let err = crate::Error::Config(ConfigError::NoConnections);
        assert_eq!(
            err.to_string(),
            "configuration: max_connections is 0: the gateway could serve no connection"
        );
        let schema = Schema::compile(&serde_json::json!("{nope")).unwrap_err();
        let err = crate::Error::Config(ConfigError::Collection(CollectionError::Schema {
            collection: "books".into(),
            error: schema,
        }));
        let text = err.to_string();
        assert!(
            text.starts_with("configuration: collection \"books\": schema is not JSON: "),
            "{text}"
        );
        assert!(err.source().is_none());
        let err = crate::Error::Database(DbError::Scheme.into());
        assert_eq!(
            err.to_string(),
            "database: database unavailable: database must be sqlite://… or postgres://…"
        );
    }
}
