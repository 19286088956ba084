//! Where reads go first: cache nodes over gRPC (`larder-client`), or, with no nodes
//! configured, an in-process `larder-store`. Either way the gateway itself loads a document
//! the cache does not hold, from its database, one load per key however many requests wait
//! ([`larder_util::flight`], the mechanism the nodes' read-through origins use too), and
//! serves it by the collection's freshness windows: fresh, stale-while-revalidate (served and
//! refreshed once in the background), stale-if-error (served only while the database fails).
//!
//! Filling never puts back a document older than a change made meanwhile. In process, a write
//! retires the load in flight, which then answers its waiters but does not store. On cache
//! nodes, a miss comes with a fill lease that any change of the key on the node retires
//! (`Lookup::Miss`), and a refresh of a stale entry only re-times it when the database still
//! holds the same version, and drops it otherwise.
//!
//! In front of the nodes sits the near-cache ([`crate::near`]): reads are tracked on the key's
//! node, answered from the near copy while the nodes' lease is live, and dropped when a node
//! pushes an invalidation. A `strong` write waits for every gateway holding a copy to drop it
//! (or for its lease to lapse) before it is answered.

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

use bytes::Bytes;
use larder_client::{Lookup, SetOpts};
use larder_store::{Clock, Expiry, Freshness, SetMode, SetOptions, Store};
use larder_util::flight::{Flights, Joined, Ticket, Waiter};

use crate::config::{CollectionConfig, Consistency};
use crate::db::Db;
use crate::near::NearCache;
use crate::peers::lease::Lease;

/// Distinct documents loading at once; past it, reads go to the database without joining.
const MAX_FLIGHTS: usize = 16_384;

/// A document as the cache gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cached {
    pub(crate) doc: Bytes,
    pub(crate) version: i64,
}

/// Why a read could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReadError {
    /// The database failed and nothing cached may be served.
    #[error("the database is unavailable")]
    Unavailable,
}

type LoadResult = Result<Option<Cached>, ReadError>;

/// The cache in front of the database.
#[derive(Debug)]
pub(crate) struct DocCache {
    tier: Tier,
    db: Db,
    clock: Arc<dyn Clock>,
    flights: Arc<Flights<String, LoadResult>>,
    /// In process over PostgreSQL: copies are served only while this lease is live
    /// ([`crate::peers`]); `None` serves them always (SQLite, one gateway).
    lease: Option<Arc<Lease>>,
}

#[derive(Debug)]
enum Tier {
    Local(Store),
    Remote(larder_client::Client, Option<Near>),
}

/// The near-cache in front of the nodes, and the tracking that keeps it fresh (its streams
/// stop when this is dropped).
#[derive(Debug)]
struct Near {
    cache: Arc<NearCache>,
    tracking: larder_client::Tracking,
}

/// What joining a load came to.
enum Joining {
    Wait(Waiter<LoadResult>),
    Ready(LoadResult),
    /// Too many loads at once: read the database alone.
    Full,
}

/// What a load puts in the cache once it has read the database.
#[derive(Debug, Clone, Copy)]
enum Fill {
    /// In process: the store, if the flight is still current.
    Local,
    /// On a node, under the lease its miss gave.
    Lease(u64),
    /// On a node, after a stale entry of this version: re-time it if the database still holds
    /// this version, else drop it.
    Refresh(i64),
    /// Nothing (no lease, or the node is unreachable).
    None,
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
    /// An in-process cache of `bytes` over `db`, on `clock`.
    pub(crate) fn local(
        db: Db,
        bytes: u64,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, larder_store::ConfigError> {
        let store = Store::new(larder_store::StoreConfig {
            capacity: larder_store::Capacity::Bytes(bytes),
            ..larder_store::StoreConfig::default()
        })?
        .with_clock(clock.clone());
        Ok(Self::with(Tier::Local(store), db, clock))
    }

    /// Cache nodes reached through `client`, with a near-cache of `near_bytes` in front of
    /// them (0: none).
    pub(crate) fn remote(
        db: Db,
        client: larder_client::Client,
        near_bytes: u64,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, larder_store::ConfigError> {
        let near = if near_bytes == 0 {
            None
        } else {
            let cache = Arc::new(NearCache::new(near_bytes, clock.clone())?);
            let tracking = client.track(cache.clone());
            Some(Near { cache, tracking })
        };
        Ok(Self::with(Tier::Remote(client, near), db, clock))
    }

    fn with(tier: Tier, db: Db, clock: Arc<dyn Clock>) -> Self {
        Self {
            tier,
            db,
            clock,
            flights: Arc::new(Flights::new(MAX_FLIGHTS)),
            lease: None,
        }
    }

    /// The same in-process cache, serving its copies only while `lease` is live.
    pub(crate) fn with_lease(self, lease: Arc<Lease>) -> Self {
        Self {
            lease: Some(lease),
            ..self
        }
    }

    /// Whether in-process copies may be served now.
    fn local_serving(&self) -> bool {
        self.lease.as_ref().is_none_or(|lease| lease.live())
    }

    /// Drops the in-process copy of a document another gateway changed, and keeps a load in
    /// flight from storing what it read before.
    pub(crate) fn forget_local(&self, collection: &str, id: &str) {
        if let Tier::Local(store) = &self.tier {
            let key = key(collection, id);
            self.flights.retire(&key);
            store.delete(key.as_bytes());
        }
    }

    /// Drops every in-process copy, and keeps every load in flight from storing.
    pub(crate) fn flush_local(&self) {
        if let Tier::Local(store) = &self.tier {
            self.flights.retire_all();
            store.clear();
        }
    }

    /// The cache nodes' client, if reads go to nodes.
    pub(crate) fn client(&self) -> Option<&larder_client::Client> {
        match &self.tier {
            Tier::Remote(client, _) => Some(client),
            Tier::Local(_) => None,
        }
    }

    /// The near-cache, if reads from nodes keep copies.
    pub(crate) fn near(&self) -> Option<&NearCache> {
        match &self.tier {
            Tier::Remote(_, Some(near)) => Some(&near.cache),
            _ => None,
        }
    }

    /// Reads a document: from the cache when it may be served, else from the database.
    pub(crate) async fn read(
        self: &Arc<Self>,
        collection: &CollectionConfig,
        id: &str,
    ) -> LoadResult {
        let key = key(&collection.name, id);
        let (cached, miss) = match &self.tier {
            // No lease: neither served nor filled, the database answers.
            Tier::Local(_) if !self.local_serving() => {
                return self.read_db(&collection.name, id).await;
            }
            Tier::Local(store) => (local_entry(store, &key), Fill::Local),
            Tier::Remote(client, near) => {
                if let Some(hit) = near.as_ref().and_then(|n| near_hit(n, collection, &key)) {
                    return Ok(Some(hit));
                }
                self.read_node(client, near.as_ref(), &key).await
            }
        };
        let Some((doc, expires_at)) = cached else {
            return self.load(collection, id, key, miss).await;
        };
        let stale = match &self.tier {
            Tier::Local(_) => Fill::Local,
            Tier::Remote(..) => Fill::Refresh(doc.version),
        };
        let now = self.clock.now_ms();
        match collection.windows().freshness(expires_at, now) {
            Freshness::Fresh => Ok(Some(doc)),
            Freshness::Revalidate => {
                drop(self.join(collection, id, key, stale));
                Ok(Some(doc))
            }
            Freshness::IfError => match self.load(collection, id, key, stale).await {
                Err(_) => Ok(Some(doc)),
                result => result,
            },
        }
    }

    /// Reads `key` from its node, tracked when there is a near-cache, and keeps a copy of a
    /// hit the node tracked.
    async fn read_node(
        &self,
        client: &larder_client::Client,
        near: Option<&Near>,
        key: &str,
    ) -> (Option<(Cached, Option<u64>)>, Fill) {
        let fill = near.map(|n| n.cache.begin(key));
        let found = match near {
            Some(_) => client.get_or_lease_tracked(key.to_owned()).await,
            None => client
                .get_or_lease(key.to_owned())
                .await
                .map(|l| (l, false)),
        };
        let (lookup, tracked) = match found {
            Ok(found) => found,
            // The breaker or the deadline: the database answers, and nothing is filled.
            Err(err) => {
                tracing::debug!(%err, "cache unavailable; reading the database");
                if let (Some(near), Some(fill)) = (near, fill) {
                    near.cache.cancel(fill);
                }
                return (None, Fill::None);
            }
        };
        match lookup {
            Lookup::Hit(entry) => {
                let now = self.clock.now_ms();
                let expires_at = (entry.ttl_ms > 0).then(|| now.saturating_add(entry.ttl_ms));
                if let (Some(near), Some(fill)) = (near, fill) {
                    if tracked {
                        near.cache
                            .finish(fill, &entry.value, entry.version, expires_at);
                    } else {
                        near.cache.cancel(fill);
                    }
                }
                let version = i64::try_from(entry.version).unwrap_or(i64::MAX);
                let cached = Cached {
                    doc: entry.value,
                    version,
                };
                (Some((cached, expires_at)), Fill::None)
            }
            Lookup::Miss(lease) => {
                if let (Some(near), Some(fill)) = (near, fill) {
                    near.cache.cancel(fill);
                }
                (None, lease.map_or(Fill::None, Fill::Lease))
            }
        }
    }

    /// Joins the load of `key`, or starts one, and waits for it.
    async fn load(
        self: &Arc<Self>,
        collection: &CollectionConfig,
        id: &str,
        key: String,
        fill: Fill,
    ) -> LoadResult {
        match self.join(collection, id, key, fill) {
            Joining::Wait(waiter) => waiter.wait().await.unwrap_or(Err(ReadError::Unavailable)),
            Joining::Ready(result) => result,
            Joining::Full => self.read_db(&collection.name, id).await,
        }
    }

    /// Joins the load of `key` in flight, or starts one on its own task (so a request that
    /// goes away does not cancel it for the others).
    fn join(
        self: &Arc<Self>,
        collection: &CollectionConfig,
        id: &str,
        key: String,
        fill: Fill,
    ) -> Joining {
        // In process, a load may have stored the document between the look and the lock.
        let check = || match &self.tier {
            Tier::Local(store) if self.local_serving() => {
                let now = self.clock.now_ms();
                let windows = collection.windows();
                local_entry(store, &key)
                    .filter(|(_, at)| windows.freshness(*at, now) == Freshness::Fresh)
                    .map(|(doc, _)| Ok(Some(doc)))
            }
            Tier::Local(_) | Tier::Remote(..) => None,
        };
        match self.flights.join(&key, check) {
            Joined::Wait(waiter) => Joining::Wait(waiter),
            Joined::Lead(ticket, waiter) => {
                let (this, collection, id) = (self.clone(), collection.clone(), id.to_owned());
                // The load outlives the request that started it, so it has its own span.
                let span = larder_proto::trace::child(|| {
                    tracing::info_span!(
                        "document load",
                        larder.collection = %collection.name,
                        larder.id = %id,
                    )
                });
                let load = async move { this.fly(&collection, &id, ticket, fill).await };
                tokio::spawn(load.instrument(span));
                Joining::Wait(waiter)
            }
            Joined::Ready(result) => Joining::Ready(result),
            Joined::Full => Joining::Full,
        }
    }

    /// One load: read the database, fill the cache as `fill` says, answer the waiters.
    async fn fly(
        &self,
        collection: &CollectionConfig,
        id: &str,
        ticket: Ticket<String, LoadResult>,
        fill: Fill,
    ) {
        let result = self.read_db(&collection.name, id).await;
        let key = ticket.key().clone();
        if let Tier::Remote(client, _) = &self.tier {
            fill_node(client, collection, &key, &result, fill).await;
        }
        ticket.land(|current| {
            if let (Tier::Local(store), Ok(Some(doc)), true) = (&self.tier, &result, current) {
                keep(store, collection, &key, doc, SetMode::IfNotOlderVersion);
            }
            result
        });
    }

    /// A document straight from the database, not cached.
    async fn read_db(&self, collection: &str, id: &str) -> LoadResult {
        match self.db.get(collection, id).await {
            Ok(found) => Ok(found.map(|stored| Cached {
                doc: Bytes::from(stored.doc),
                version: stored.version,
            })),
            Err(err) => {
                tracing::warn!(%err, collection, id, "document read failed");
                Err(ReadError::Unavailable)
            }
        }
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
        // A load in flight read the database before this write; it must not store.
        self.flights.retire(&key);
        let cached = Cached {
            doc: Bytes::copy_from_slice(doc.as_bytes()),
            version,
        };
        match &self.tier {
            Tier::Local(store) => {
                keep(store, collection, &key, &cached, SetMode::IfNewerVersion);
            }
            Tier::Remote(client, near) => {
                if let Some(near) = near {
                    near.cache.invalidate([key.as_bytes()], 0);
                }
                let strong = collection.consistency == Consistency::Strong;
                let await_invalidation = strong && near.is_some();
                let opts = SetOpts {
                    ttl: Some(Duration::from_millis(collection.cache_ttl_ms())),
                    if_newer_version: Some(version.unsigned_abs()),
                    lease: None,
                    // The node answers once every gateway holding a copy has dropped it.
                    await_invalidation,
                };
                let key = Bytes::from(key);
                if let Err(err) = client.set(key.clone(), cached.doc, opts).await {
                    // The next read loads from the database, so nothing is lost.
                    tracing::debug!(%err, "cache update failed; invalidating");
                    let keys = [key];
                    let invalidated = if await_invalidation {
                        client.invalidate_awaiting(&keys).await
                    } else {
                        client.invalidate(&keys).await
                    };
                    // Not confirmed (the node gone, or the other gateways slower than the
                    // call's deadline): copies elsewhere may outlive the write until their
                    // leases lapse, so the answer waits that long.
                    if invalidated.is_err() && strong {
                        outlive_leases(near.as_ref()).await;
                    }
                }
            }
        }
    }

    /// Drops a document from the cache (after a delete).
    pub(crate) async fn remove(&self, collection: &CollectionConfig, id: &str) {
        let key = key(&collection.name, id);
        self.flights.retire(&key);
        match &self.tier {
            Tier::Local(store) => {
                store.delete(key.as_bytes());
            }
            Tier::Remote(client, near) => {
                if let Some(near) = near {
                    near.cache.invalidate([key.as_bytes()], 0);
                }
                let keys = [Bytes::from(key.clone())];
                let strong = collection.consistency == Consistency::Strong;
                let done = if strong && near.is_some() {
                    client.invalidate_awaiting(&keys).await
                } else {
                    client.invalidate(&keys).await
                };
                if let Err(err) = done {
                    tracing::warn!(%err, key, "cache invalidation failed");
                    if strong {
                        outlive_leases(near.as_ref()).await;
                    }
                }
            }
        }
    }
}

/// The near copy of `key`, when it may be served: the nodes' lease is live and the copy is
/// fresh (a stale one goes to the node, which refreshes it as the windows say).
fn near_hit(near: &Near, collection: &CollectionConfig, key: &str) -> Option<Cached> {
    if !near.tracking.serving() {
        return None;
    }
    let (cached, expires_at) = near.cache.get_with(key, copy_entry)?;
    let now = near.cache.now_ms();
    (collection.windows().freshness(expires_at, now) == Freshness::Fresh).then_some(cached)
}

/// A strong write whose node could not be told: other gateways may hold copies the node can
/// no longer invalidate, and they stop serving them once their lease on that node lapses.
/// Waiting that long before answering keeps the write from being read older afterwards.
async fn outlive_leases(near: Option<&Near>) {
    if let Some(near) = near {
        // A tenth more for clocks that run at slightly different rates.
        let lease = near.tracking.lease();
        tokio::time::sleep(lease + lease / 10).await;
    }
}

fn copy_entry(entry: larder_store::EntryRef<'_>) -> (Cached, Option<u64>) {
    let cached = Cached {
        doc: Bytes::copy_from_slice(entry.value),
        version: i64::try_from(entry.version).unwrap_or(i64::MAX),
    };
    (cached, entry.expires_at)
}

/// The in-process entry under `key`, copied, with its expiry.
fn local_entry(store: &Store, key: &str) -> Option<(Cached, Option<u64>)> {
    store.get_with(key.as_bytes(), copy_entry)
}

/// Puts what a load read on the key's node, as `fill` says; a failure only costs a later
/// load, so it is logged and dropped.
async fn fill_node(
    client: &larder_client::Client,
    collection: &CollectionConfig,
    key: &str,
    result: &LoadResult,
    fill: Fill,
) {
    let key = Bytes::from(key.to_owned());
    let ttl = Duration::from_millis(collection.cache_ttl_ms());
    let outcome = match (fill, result) {
        (Fill::Lease(lease), Ok(Some(doc))) => {
            let opts = SetOpts {
                ttl: Some(ttl),
                if_newer_version: Some(doc.version.unsigned_abs()),
                lease: Some(lease),
                ..SetOpts::default()
            };
            client.set(key, doc.doc.clone(), opts).await.map(drop)
        }
        // The same version: the stale copy is right, and lives another window.
        (Fill::Refresh(seen), Ok(Some(doc))) if doc.version == seen => {
            client.expire(key, Some(ttl)).await.map(drop)
        }
        // Changed or gone: drop the copy; the next read fills it under a lease.
        (Fill::Refresh(_), Ok(_)) => client.invalidate(&[key]).await.map(drop),
        _ => Ok(()),
    };
    if let Err(err) = outcome {
        tracing::debug!(%err, "cache fill failed");
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
