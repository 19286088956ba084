//! What every request handler shares: the configuration, the collections with their compiled
//! schemas, the database, the cache, the idempotency keys in progress and the metrics.

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::Arc;

use larder_store::Clock;
use parking_lot::Mutex;

use crate::cache::DocCache;
use crate::config::{ApiConfig, CollectionConfig, valid_name};
use crate::db::Db;
use crate::doc::Schema;
use crate::metrics::Metrics;
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
    /// The gateway's one clock (the in-process store reads it too).
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Metrics,
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
pub(crate) fn collections(config: &ApiConfig) -> Result<HashMap<String, Arc<Collection>>, String> {
    let mut out = HashMap::new();
    for c in &config.collections {
        if !valid_name(&c.name) {
            return Err(format!(
                "collection {:?}: names are 1-64 of A-Z a-z 0-9 - _",
                c.name
            ));
        }
        for attr in c.filterable.iter().chain(&c.sortable) {
            if attr.is_empty() || !attr.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "collection {:?}: attribute {attr:?} in filterable/sortable must be A-Z a-z 0-9 _",
                    c.name
                ));
            }
        }
        let schema = match &c.schema {
            Some(schema) => {
                Some(Schema::compile(schema).map_err(|e| format!("collection {:?}: {e}", c.name))?)
            }
            None => None,
        };
        let collection = Collection {
            config: c.clone(),
            schema,
        };
        if out.insert(c.name.clone(), Arc::new(collection)).is_some() {
            return Err(format!("collection {:?} is declared twice", c.name));
        }
    }
    Ok(out)
}

impl AppState {
    pub(crate) fn new(
        config: ApiConfig,
        collections: HashMap<String, Arc<Collection>>,
        db: Db,
        cache: Arc<DocCache>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self(Arc::new(Inner {
            config,
            collections,
            db,
            cache,
            clock,
            metrics: Metrics::default(),
            in_flight: Mutex::default(),
        }))
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
