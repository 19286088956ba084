//! What every request handler shares: the configuration, the collections with their compiled
//! schemas, the database, the cache, the credentials, rate limits and CORS rules, the
//! idempotency keys in progress and the metrics.

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::Arc;

use larder_store::Clock;
use parking_lot::Mutex;

use crate::auth::Credentials;
use crate::cache::DocCache;
use crate::config::{ApiConfig, CollectionConfig, valid_name};
use crate::cors::Cors;
use crate::db::Db;
use crate::doc::Schema;
pub use crate::error::CollectionError;
use crate::error::ConfigError;
use crate::feed::Feed;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::peers::Peers;
use crate::problem::ApiError;

/// A collection and its compiled schema.
#[derive(Debug)]
pub(crate) struct Collection {
    pub(crate) config: CollectionConfig,
    pub(crate) schema: Option<Schema>,
}

/// The shared state, cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct AppState(Arc<Inner>);

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: ApiConfig,
    pub(crate) collections: HashMap<String, Arc<Collection>>,
    pub(crate) db: Db,
    pub(crate) cache: Arc<DocCache>,
    /// The other gateways over a PostgreSQL database (`None` on SQLite, and for [`crate::router`]).
    pub(crate) peers: Option<Peers>,
    pub(crate) credentials: Credentials,
    pub(crate) limits: Limits,
    pub(crate) cors: Arc<Cors>,
    /// The gateway's one clock (the in-process store reads it too).
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Metrics,
    /// The change feed's hub.
    pub(crate) feed: Arc<Feed>,
    /// `(collection, idempotency key)` of creates in progress on this gateway.
    in_flight: Mutex<HashSet<(String, String)>>,
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Compiles every collection's schema and checks names and attributes.
pub(crate) fn collections(
    config: &ApiConfig,
) -> Result<HashMap<String, Arc<Collection>>, CollectionError> {
    let mut out = HashMap::new();
    for c in &config.collections {
        if !valid_name(&c.name) {
            return Err(CollectionError::Name {
                name: c.name.clone(),
            });
        }
        for attr in c.filterable.iter().chain(&c.sortable) {
            if attr.is_empty() || !attr.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(CollectionError::Attribute {
                    collection: c.name.clone(),
                    attribute: attr.clone(),
                });
            }
        }
        let schema = match &c.schema {
            Some(schema) => {
                Some(
                    Schema::compile(schema).map_err(|error| CollectionError::Schema {
                        collection: c.name.clone(),
                        error,
                    })?,
                )
            }
            None => None,
        };
        let collection = Collection {
            config: c.clone(),
            schema,
        };
        if out.insert(c.name.clone(), Arc::new(collection)).is_some() {
            return Err(CollectionError::Twice {
                name: c.name.clone(),
            });
        }
    }
    Ok(out)
}

/// The parts of the state that need I/O to make (the database and the cache) and the clock
/// they were made with.
pub(crate) struct Opened {
    pub(crate) db: Db,
    pub(crate) cache: Arc<DocCache>,
    pub(crate) peers: Option<Peers>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl AppState {
    /// The state for `config` over `opened`.
    ///
    /// # Errors
    /// A collection, credential, rate limit or CORS rule that cannot work.
    pub(crate) fn new(config: ApiConfig, opened: Opened) -> Result<Self, ConfigError> {
        let credentials = Credentials::from_config(&config).map_err(ConfigError::Credentials)?;
        let limits = Limits::new(&config.rate_limits, credentials.enabled())
            .map_err(ConfigError::RateLimits)?;
        let cors = Arc::new(Cors::new(&config.cors).map_err(ConfigError::Cors)?);
        Ok(Self(Arc::new(Inner {
            collections: collections(&config).map_err(ConfigError::Collection)?,
            feed: Feed::new(opened.db.clone(), config.changes_poll_ms),
            db: opened.db,
            cache: opened.cache,
            peers: opened.peers,
            clock: opened.clock,
            credentials,
            limits,
            cors,
            metrics: Metrics::default(),
            in_flight: Mutex::default(),
            config,
        })))
    }

    /// The time now, in Unix milliseconds.
    pub(crate) fn now_ms(&self) -> i64 {
        i64::try_from(self.clock.now_ms()).unwrap_or(i64::MAX)
    }

    /// The collection named `name`, or 404.
    pub(crate) fn collection(&self, name: &str) -> Result<Arc<Collection>, ApiError> {
        self.collections
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no collection {name:?}")))
    }
}

/// Marks an idempotency key in progress until dropped.
pub(crate) struct InFlight {
    state: AppState,
    entry: (String, String),
}

impl InFlight {
    /// `None` if the key is already in progress here.
    pub(crate) fn enter(state: &AppState, collection: &str, key: &str) -> Option<Self> {
        let entry = (collection.to_owned(), key.to_owned());
        state.in_flight.lock().insert(entry.clone()).then(|| Self {
            state: state.clone(),
            entry,
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.in_flight.lock().remove(&self.entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::SchemaError;

    fn refused(list: Vec<CollectionConfig>) -> CollectionError {
        let config = ApiConfig {
            collections: list,
            ..ApiConfig::default()
        };
        collections(&config).unwrap_err()
    }

    fn named(name: &str) -> CollectionConfig {
        CollectionConfig {
            name: name.into(),
            ..CollectionConfig::default()
        }
    }

    #[test]
    fn collection_errors_name_the_collection() {
        assert_eq!(
            refused(vec![named("a b")]).to_string(),
            "collection \"a b\": names are 1-64 of A-Z a-z 0-9 - _"
        );
        let bad_attribute = CollectionConfig {
            sortable: vec!["x-y".into()],
            ..named("books")
        };
        assert_eq!(
            refused(vec![bad_attribute]).to_string(),
            "collection \"books\": attribute \"x-y\" in filterable/sortable must be A-Z a-z 0-9 _"
        );
        let bad_schema = CollectionConfig {
            schema: Some(serde_json::json!({"type": 5})),
            ..named("books")
        };
        let err = refused(vec![bad_schema]);
        assert!(
            matches!(&err, CollectionError::Schema { collection, error: SchemaError::Invalid(_) }
                if collection == "books"),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("collection \"books\": schema: "),
            "{err}"
        );
        assert_eq!(
            refused(vec![named("books"), named("books")]).to_string(),
            "collection \"books\" is declared twice"
        );
    }
}
