//! Where reads go first: cache nodes over gRPC (`larder-client`; the nodes load misses from
//! the database themselves through their SQL origin), or, with no nodes configured, an
//! in-process `larder-store` with the same semantics: one database load per key however many
//! requests wait, fresh / stale-while-revalidate / stale-if-error windows, and version-guarded
//! writes so an older document never replaces a newer one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use larder_store::{Expiry, Freshness, SetMode, SetOptions, Store};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::config::CollectionConfig;
use crate::db::{Db, DbError};
use crate::time::now_ms;

/// A document as the cache gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cached {
    pub(crate) doc: Bytes,
    pub(crate) version: i64,
}

/// Why a read could not be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The database failed and nothing cached may be served.
    Unavailable(String),
}

type LoadResult = Result<Option<Cached>, ReadError>;

/// The cache in front of the database.
#[derive(Debug)]
pub(crate) struct DocCache {
    kind: Kind,
    db: Db,
    flights: Mutex<HashMap<String, watch::Receiver<Option<LoadResult>>>>,
}

#[derive(Debug)]
enum Kind {
    Local(Store),
    Remote(larder_client::Client),
}

/// The cache key of a document.
pub(crate) fn key(collection: &str, id: &str) -> String {
    let mut out = String::with_capacity(collection.len() + id.len() + 5);
    write_key(&mut out, collection, id);
    out
}

/// Writes the cache key of a document into `out` (cleared first), so that a caller can keep
/// one buffer for every key.
pub(crate) fn write_key(out: &mut String, collection: &str, id: &str) {
    out.clear();
    for part in ["doc/", collection, "/", id] {
        out.push_str(part);
    }
}

impl DocCache {
    /// An in-process cache of `bytes` over `db`.
    pub(crate) fn local(db: Db, bytes: u64) -> Result<Self, String> {
        let store = Store::new(larder_store::StoreConfig {
            capacity: larder_store::Capacity::Bytes(bytes),
            ..larder_store::StoreConfig::default()
        })
        .map_err(|e| e.to_string())?;
        Ok(Self::with(Kind::Local(store), db))
    }

    /// Cache nodes reached through `client`.
    pub(crate) fn remote(db: Db, client: larder_client::Client) -> Self {
        Self::with(Kind::Remote(client), db)
    }

    fn with(kind: Kind, db: Db) -> Self {
        Self {
            kind,
            db,
            flights: Mutex::default(),
        }
    }

    /// The cache nodes' client, if reads go to nodes.
    pub(crate) fn client(&self) -> Option<&larder_client::Client> {
        match &self.kind {
            Kind::Remote(client) => Some(client),
            Kind::Local(_) => None,
        }
    }

    /// Reads a document: from the cache when it may be served, else from the database.
    pub(crate) async fn read(
        self: &Arc<Self>,
        collection: &CollectionConfig,
        id: &str,
    ) -> LoadResult {
        let key = key(&collection.name, id);
        match &self.kind {
            Kind::Remote(client) => match client.get(Bytes::from(key)).await {
                Ok(found) => Ok(found.map(|entry| Cached {
                    doc: entry.value,
                    version: i64::try_from(entry.version).unwrap_or(i64::MAX),
                })),
                // The breaker or the deadline: the database answers instead.
                Err(err) => {
                    tracing::debug!(%err, "cache unavailable; reading the database");
                    self.load(&collection.name, id).await
                }
            },
            Kind::Local(store) => {
                let now = u64::try_from(now_ms()).unwrap_or(0);
                let found = store.get_with(key.as_bytes(), |entry| {
                    let cached = Cached {
                        doc: Bytes::copy_from_slice(entry.value),
                        version: i64::try_from(entry.version).unwrap_or(i64::MAX),
                    };
                    (
                        cached,
                        collection.windows().freshness(entry.expires_at, now),
                    )
                });
                match found {
                    Some((cached, Freshness::Fresh)) => Ok(Some(cached)),
                    Some((cached, Freshness::Revalidate)) => {
                        drop(self.join(collection, id, key));
                        Ok(Some(cached))
                    }
                    Some((stale, Freshness::IfError)) => match self.wait(collection, id, key).await
                    {
                        Err(_) => Ok(Some(stale)),
                        result => result,
                    },
                    None => self.wait(collection, id, key).await,
                }
            }
        }
    }

    /// A document straight from the database, not cached.
    async fn load(&self, collection: &str, id: &str) -> LoadResult {
        match self.db.get(collection, id).await {
            Ok(found) => Ok(found.map(|stored| Cached {
                doc: Bytes::from(stored.doc),
                version: stored.version,
            })),
            Err(err) => Err(ReadError::Unavailable(err.to_string())),
        }
    }

    async fn wait(
        self: &Arc<Self>,
        collection: &CollectionConfig,
        id: &str,
        key: String,
    ) -> LoadResult {
        let mut done = self.join(collection, id, key);
        match done.wait_for(Option::is_some).await {
            Ok(result) => result.clone().unwrap_or_else(abandoned),
            Err(_) => abandoned(),
        }
    }

    /// Joins the load of `key` in flight, or starts one on its own task.
    fn join(
        self: &Arc<Self>,
        collection: &CollectionConfig,
        id: &str,
        key: String,
    ) -> watch::Receiver<Option<LoadResult>> {
        let mut flights = self.flights.lock();
        if let Some(done) = flights.get(&key) {
            return done.clone();
        }
        let (tx, rx) = watch::channel(None);
        flights.insert(key.clone(), rx.clone());
        drop(flights);
        let (this, collection, id) = (self.clone(), collection.clone(), id.to_owned());
        tokio::spawn(async move {
            let result = this.load(&collection.name, &id).await;
            {
                let mut flights = this.flights.lock();
                if let (Ok(Some(cached)), Kind::Local(store)) = (&result, &this.kind) {
                    keep(store, &collection, &key, cached, SetMode::IfNotOlderVersion);
                }
                flights.remove(&key);
            }
            tx.send_replace(Some(result));
        });
        rx
    }

    /// Stores a document just written, unless the cache holds a newer version.
    pub(crate) async fn put(
        &self,
        collection: &CollectionConfig,
        id: &str,
        doc: &str,
        version: i64,
    ) {
        let key = key(&collection.name, id);
        let cached = Cached {
            doc: Bytes::copy_from_slice(doc.as_bytes()),
            version,
        };
        match &self.kind {
            Kind::Local(store) => {
                // A load in flight read the database before this write; it must not store.
                self.flights.lock().remove(&key);
                keep(store, collection, &key, &cached, SetMode::IfNewerVersion);
            }
            Kind::Remote(client) => {
                let opts = larder_client::SetOpts {
                    ttl: Some(Duration::from_millis(collection.cache_ttl_ms())),
                    if_newer_version: Some(version.unsigned_abs()),
                };
                let key = Bytes::from(key);
                if let Err(err) = client.set(key.clone(), cached.doc, opts).await {
                    // The next read loads from the database, so nothing is lost.
                    tracing::debug!(%err, "cache update failed; invalidating");
                    let _ = client.invalidate(&[key]).await;
                }
            }
        }
    }

    /// Drops a document from the cache (after a delete).
    pub(crate) async fn remove(&self, collection: &CollectionConfig, id: &str) {
        let key = key(&collection.name, id);
        match &self.kind {
            Kind::Local(store) => {
                self.flights.lock().remove(&key);
                store.delete(key.as_bytes());
            }
            Kind::Remote(client) => {
                if let Err(err) = client.invalidate(&[Bytes::from(key.clone())]).await {
                    tracing::warn!(%err, key, "cache invalidation failed");
                }
            }
        }
    }
}

fn keep(
    store: &Store,
    collection: &CollectionConfig,
    key: &str,
    cached: &Cached,
    mode: fn(u64) -> SetMode,
) {
    let opts = SetOptions {
        mode: mode(cached.version.unsigned_abs()),
        expiry: Expiry::In(Duration::from_millis(collection.cache_ttl_ms())),
        ..SetOptions::default()
    };
    if let Err(err) = store.set(key.as_bytes(), &cached.doc, opts) {
        tracing::debug!(%err, key, "document not cached");
    }
}

fn abandoned() -> LoadResult {
    Err(ReadError::Unavailable("load abandoned".into()))
}

impl From<DbError> for ReadError {
    fn from(err: DbError) -> Self {
        Self::Unavailable(err.to_string())
    }
}
