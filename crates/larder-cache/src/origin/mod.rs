//! Read-through and write-through origins.
//!
//! Each configured origin claims the keys matching its pattern (`doc/{collection}/{id}`). A
//! read of such a key that misses, or finds a value too stale to serve, joins the one load of
//! that key in flight on this node, starting it if there is none; the load runs as its own
//! task on the node's main runtime, so a caller that goes away does not cancel it for the
//! others. What it found is stored before the waiters are answered; "not found" is remembered
//! for `not_found_ttl_ms`; an error is never stored.
//!
//! A loaded entry's expiry is set to the end of its last window, `fresh + max(swr, sie)`, so
//! the store reclaims it like any other entry, and its age is read back from that expiry:
//! fresh, then stale-while-revalidate (served, refreshed once in the background), then
//! stale-if-error (a read loads, and serves the stale value only if the load fails).

pub(crate) mod config;
mod grpc;
mod http;
mod pattern;
mod source;
mod sql;
mod stats;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use larder_proto::ErrorCode;
use larder_store::{EntryRef, SetMode, SetOptions, Store};
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::node::unix_ms;
use config::OriginConfig;
use pattern::KeyPattern;
pub(crate) use source::Origin;

/// Bytes of keys remembered as "not found"; past it the expired ones are dropped, then all.
const MAX_NOT_FOUND_BYTES: usize = 16 << 20;
/// Distinct keys loading at once on one node; reads of further keys are answered
/// unavailable at once (without touching any breaker) until loads finish.
const MAX_FLIGHTS: usize = 16_384;
/// Upper bound of every duration setting: ten years.
const MAX_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// What an origin said about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fetched {
    /// The value and, if the origin keeps one, its version.
    Found { value: Bytes, version: Option<u64> },
    /// The origin has no such key.
    NotFound,
}

/// Why an origin read or write failed. Nothing is cached for a failure.
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

/// A value as served to a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Served {
    pub(crate) value: Bytes,
    pub(crate) version: u64,
    /// Absolute expiry in Unix milliseconds.
    pub(crate) expires_at: Option<u64>,
    /// Past its fresh time.
    pub(crate) stale: bool,
}

/// A stored entry as served, not stale.
pub(crate) fn served(entry: EntryRef<'_>) -> Served {
    Served {
        value: Bytes::copy_from_slice(entry.value),
        version: entry.version,
        expires_at: entry.expires_at,
        stale: false,
    }
}

/// What a read gets.
pub(crate) type ReadResult = Result<Option<Served>, OriginError>;

pub(crate) use larder_store::Freshness;

/// Checks every origin's settings without connecting to anything.
pub(crate) fn check(configs: &[OriginConfig]) -> Result<(), String> {
    for (i, config) in configs.iter().enumerate() {
        let label = if config.name.is_empty() {
            format!("origins[{i}]")
        } else {
            format!("origin {:?}", config.name)
        };
        if config.name.is_empty() || config.name.contains(['"', '\\', '\n']) {
            return Err(format!(
                "{label}: needs a name without quotes or backslashes"
            ));
        }
        if configs[..i].iter().any(|o| o.name == config.name) {
            return Err(format!("{label}: the name is used twice"));
        }
        check_one(config).map_err(|err| format!("{label}: {err}"))?;
    }
    Ok(())
}

/// Checks one origin's settings; returns its pattern.
fn check_one(config: &OriginConfig) -> Result<KeyPattern, String> {
    let pattern = KeyPattern::parse(&config.pattern)?;
    match config.kind.as_str() {
        "sql" => sql::check(&config.url, &config.load, &config.store, &pattern)?,
        "http" | "grpc" if config.url.is_empty() => return Err("needs a url".into()),
        "http" | "grpc" => {}
        other => return Err(format!("kind = {other:?}: expected sql, http or grpc")),
    }
    if config.write_through && config.kind == "sql" && config.store.trim().is_empty() {
        return Err("write_through needs a `store` statement".into());
    }
    if config.fresh_ttl_ms == 0 {
        return Err("fresh_ttl_ms must be at least 1".into());
    }
    if config.max_concurrent_loads == 0 {
        return Err("max_concurrent_loads must be at least 1".into());
    }
    let durations = [
        ("fresh_ttl_ms", config.fresh_ttl_ms, MAX_MS),
        (
            "stale_while_revalidate_ms",
            config.stale_while_revalidate_ms,
            MAX_MS,
        ),
        ("stale_if_error_ms", config.stale_if_error_ms, MAX_MS),
        ("not_found_ttl_ms", config.not_found_ttl_ms, MAX_MS),
        ("load_timeout_ms", config.load_timeout_ms, 600_000),
        (
            "breaker_cooldown_ms",
            config.breaker_cooldown_ms,
            86_400_000,
        ),
    ];
    for (name, value, max) in durations {
        if value > max {
            return Err(format!(
                "{name} = {value} is more than the most allowed, {max}"
            ));
        }
    }
    Ok(pattern)
}

/// One load in flight; its waiters watch for the result.
#[derive(Debug)]
struct Flight {
    done: watch::Sender<Option<ReadResult>>,
}

/// The first half of a read: answered at once, or waiting for a load.
#[derive(Debug)]
pub(crate) enum Step {
    Done(ReadResult),
    Wait {
        origin: Arc<Origin>,
        done: watch::Receiver<Option<ReadResult>>,
        /// A stale value to serve if the load fails.
        fallback: Option<Served>,
    },
}

/// Keys an origin said it does not have, until when (Unix ms), and the bytes of those keys.
type NotFound = (HashMap<Box<[u8]>, u64>, usize);

/// Write-throughs of one key in progress: how many, and the ticket of the latest to start.
#[derive(Debug, Default)]
struct Writes {
    running: u32,
    latest: u64,
}

/// Every origin of one node, the loads in flight and the remembered "not found"s.
#[derive(Debug)]
pub(crate) struct Origins {
    list: Vec<Arc<Origin>>,
    store: Arc<Store>,
    flights: Mutex<HashMap<Box<[u8]>, Arc<Flight>>>,
    /// Keys an origin said it does not have, until when (Unix ms), and their bytes.
    not_found: Mutex<NotFound>,
    writes: Mutex<HashMap<Box<[u8]>, Writes>>,
    next_ticket: std::sync::atomic::AtomicU64,
    /// Loads and writes run here, not on the runtime of the connection that asked.
    runtime: Handle,
}

impl Origins {
    /// The origins of `configs` over `store`, or `None` if there are none. Call within the
    /// runtime that should run the loads.
    pub(crate) fn new(
        configs: &[OriginConfig],
        store: Arc<Store>,
    ) -> Result<Option<Arc<Self>>, String> {
        if configs.is_empty() {
            return Ok(None);
        }
        check(configs)?;
        let mut list = Vec::with_capacity(configs.len());
        for config in configs {
            let origin = Origin::new(config, store.clock().clone())
                .map_err(|err| format!("origin {:?}: {err}", config.name))?;
            list.push(Arc::new(origin));
        }
        let runtime = Handle::try_current().map_err(|err| err.to_string())?;
        Ok(Some(Arc::new(Self {
            list,
            store,
            flights: Mutex::default(),
            not_found: Mutex::default(),
            writes: Mutex::default(),
            next_ticket: std::sync::atomic::AtomicU64::new(0),
            runtime,
        })))
    }

    /// The origin that serves `key`, if any: the first whose pattern matches.
    pub(crate) fn find(&self, key: &[u8]) -> Option<&Arc<Origin>> {
        self.list.iter().find(|o| o.claims(key))
    }

    /// Whether the origin recently said it has no `key`.
    pub(crate) fn known_missing(&self, key: &[u8], now: u64) -> bool {
        self.not_found
            .lock()
            .0
            .get(key)
            .is_some_and(|&until| now < until)
    }

    /// Counts a stale value served from the store and refreshes it in the background, once:
    /// a refresh already in flight is not started again.
    pub(crate) fn served_stale(self: &Arc<Self>, origin: &Arc<Origin>, key: &[u8]) {
        origin.stats().stale();
        drop(self.join(origin, key, false));
    }

    /// Reads `key` through `origin`: from the store if fresh enough, else by a load.
    pub(crate) async fn read(self: &Arc<Self>, origin: &Arc<Origin>, key: &[u8]) -> ReadResult {
        Self::finish(self.begin(origin, key)).await
    }

    /// The part of a read that does not wait: a store lookup, or joining the key's load.
    pub(crate) fn begin(self: &Arc<Self>, origin: &Arc<Origin>, key: &[u8]) -> Step {
        let now = unix_ms();
        let found = self.store.get_with(key, served);
        let fallback = match found {
            Some(served) => match origin.freshness(served.expires_at, now) {
                Freshness::Fresh => return Step::Done(Ok(Some(served))),
                Freshness::Revalidate => {
                    self.served_stale(origin, key);
                    return Step::Done(Ok(Some(Served {
                        stale: true,
                        ..served
                    })));
                }
                Freshness::IfError => Some(Served {
                    stale: true,
                    ..served
                }),
            },
            None if self.known_missing(key, now) => return Step::Done(Ok(None)),
            None => None,
        };
        Step::Wait {
            origin: origin.clone(),
            done: self.join(origin, key, true),
            fallback,
        }
    }

    /// Waits for the load a [`Step::Wait`] joined.
    pub(crate) async fn finish(step: Step) -> ReadResult {
        let (origin, mut done, fallback) = match step {
            Step::Done(result) => return result,
            Step::Wait {
                origin,
                done,
                fallback,
            } => (origin, done, fallback),
        };
        let result = match done.wait_for(Option::is_some).await {
            Ok(result) => result.clone().unwrap_or_else(abandoned),
            Err(_) => abandoned(),
        };
        match (result, fallback) {
            (Err(_), Some(stale)) if stale.expires_at.is_none_or(|at| unix_ms() < at) => {
                origin.stats().stale();
                Ok(Some(stale))
            }
            (result, _) => result,
        }
    }

    /// Joins the load of `key` in flight, or starts one.
    fn join(
        self: &Arc<Self>,
        origin: &Arc<Origin>,
        key: &[u8],
        waiter: bool,
    ) -> watch::Receiver<Option<ReadResult>> {
        let ready = |result: ReadResult| watch::channel(Some(result)).1;
        let mut flights = self.flights.lock();
        if let Some(flight) = flights.get(key) {
            if waiter {
                origin.stats().coalesced.fetch_add(1, Relaxed);
            }
            return flight.done.subscribe();
        }
        // A load may have finished between the caller's look at the store and this lock: it
        // stores before it leaves the map, so a second look under the lock settles it.
        let now = unix_ms();
        let fresh = self.store.peek_with(key, |entry| {
            (origin.freshness(entry.expires_at, now) == Freshness::Fresh).then(|| served(entry))
        });
        match fresh {
            Some(Some(served)) => return ready(Ok(Some(served))),
            None if waiter && self.known_missing(key, now) => return ready(Ok(None)),
            _ => {}
        }
        if flights.len() >= MAX_FLIGHTS {
            let busy = format!("{}: too many keys loading at once", origin.name());
            return ready(Err(OriginError::Unavailable(busy)));
        }
        let (done, receiver) = watch::channel(None);
        let flight = Arc::new(Flight { done });
        let key: Box<[u8]> = key.into();
        flights.insert(key.clone(), flight.clone());
        drop(flights);
        let guard = Landing {
            origins: self.clone(),
            key,
            flight,
            result: None,
        };
        self.runtime.spawn(fly(origin.clone(), guard));
        receiver
    }

    /// Stores a loaded value, unless the cache already holds a newer version.
    fn keep(&self, origin: &Origin, key: &[u8], value: Bytes, version: Option<u64>) -> Served {
        let now = unix_ms();
        let opts = SetOptions {
            mode: version.map_or(SetMode::Always, SetMode::IfNotOlderVersion),
            expiry: origin.expiry(now),
            ..SetOptions::default()
        };
        let uncached = |value: Bytes| Served {
            value,
            version: version.unwrap_or(0),
            expires_at: None,
            stale: false,
        };
        match self.store.set(key, &value, opts) {
            Ok(outcome) if outcome.stored => Served {
                value,
                version: outcome.version.unwrap_or(0),
                expires_at: Some(origin.expires_at(now)),
                stale: false,
            },
            // A newer version was written meanwhile; serve that.
            Ok(_) => self
                .store
                .peek_with(key, served)
                .unwrap_or_else(|| uncached(value)),
            Err(err) => {
                tracing::warn!(origin = %origin.name(), %err, "loaded value not cached");
                uncached(value)
            }
        }
    }

    fn remember_missing(&self, key: &[u8], until: u64) {
        let mut guard = self.not_found.lock();
        let (map, bytes) = &mut *guard;
        if *bytes + key.len() > MAX_NOT_FOUND_BYTES {
            let now = unix_ms();
            map.retain(|_, &mut at| at > now);
            *bytes = map.keys().map(|k| k.len()).sum();
            if *bytes + key.len() > MAX_NOT_FOUND_BYTES {
                map.clear();
                *bytes = 0;
            }
        }
        if map.insert(key.into(), until).is_none() {
            *bytes += key.len();
        }
    }

    fn forget_missing(&self, key: &[u8]) {
        let mut guard = self.not_found.lock();
        if guard.0.remove(key).is_some() {
            guard.1 -= key.len();
        }
    }

    /// Writes `value` to the origin, then, once it confirmed, to the cache; returns the
    /// cached version. On failure the cache is unchanged. The write runs on its own task, so
    /// a caller that goes away cannot leave the origin written and the cache stale.
    pub(crate) async fn write(
        self: &Arc<Self>,
        origin: &Arc<Origin>,
        key: &[u8],
        value: &[u8],
    ) -> Result<u64, OriginError> {
        let (this, origin, key, value) = (
            self.clone(),
            origin.clone(),
            Box::<[u8]>::from(key),
            Bytes::copy_from_slice(value),
        );
        let task = self
            .runtime
            .spawn(async move { this.write_now(&origin, &key, &value).await });
        task.await
            .unwrap_or_else(|_| Err(OriginError::Unavailable("write abandoned".into())))
    }

    async fn write_now(
        &self,
        origin: &Origin,
        key: &[u8],
        value: &[u8],
    ) -> Result<u64, OriginError> {
        let ticket = self.next_ticket.fetch_add(1, Relaxed) + 1;
        {
            let mut writes = self.writes.lock();
            let entry = writes.entry(key.into()).or_default();
            entry.running += 1;
            entry.latest = ticket;
        }
        let written = origin.store(key, value).await;
        let mut flights = self.flights.lock();
        // Only the last write to start, with none other running, may set the cache: writes
        // can reach the origin in another order than they finish here.
        let alone = {
            let mut writes = self.writes.lock();
            let alone = writes
                .get(key)
                .is_some_and(|w| w.running == 1 && w.latest == ticket);
            if let Some(entry) = writes.get_mut(key) {
                entry.running -= 1;
                if entry.running == 0 {
                    writes.remove(key);
                }
            }
            alone
        };
        let version = match written {
            Ok(version) => version,
            // Unknown whether a timed-out write landed: drop the cached copy to be safe.
            Err(err) => {
                if !alone {
                    self.store.delete(key);
                }
                return Err(err);
            }
        };
        // A load in flight read the origin before this write: let it answer, not store.
        flights.remove(key);
        self.forget_missing(key);
        if !alone {
            self.store.delete(key);
            return Ok(version.unwrap_or(0));
        }
        let opts = SetOptions {
            mode: version.map_or(SetMode::Always, SetMode::IfNotOlderVersion),
            expiry: origin.expiry(unix_ms()),
            ..SetOptions::default()
        };
        match self.store.set(key, value, opts) {
            Ok(outcome) => Ok(outcome.version.unwrap_or(0)),
            Err(err) => {
                // The origin has the value; make sure no older one is served instead.
                self.store.delete(key);
                tracing::warn!(origin = %origin.name(), %err, "written value not cached");
                Ok(version.unwrap_or(0))
            }
        }
    }

    /// Forgets any load in flight and "not found" of `key`, before a client writes the key
    /// itself: what a load read before the write must not replace it.
    pub(crate) fn retire(&self, key: &[u8]) {
        let mut flights = self.flights.lock();
        flights.remove(key);
        self.forget_missing(key);
    }

    /// Drops `key` from the cache, any remembered "not found" and any load in flight, so the
    /// next read loads it again. Returns whether the cache held it.
    pub(crate) fn invalidate(&self, key: &[u8]) -> bool {
        let mut flights = self.flights.lock();
        flights.remove(key);
        self.forget_missing(key);
        self.store.delete(key)
    }

    /// Prometheus text for every origin.
    pub(crate) fn render(&self, out: &mut String) {
        stats::render(&self.list, out);
        let name = "larder_origin_loads_in_flight";
        let n = self.flights.lock().len();
        let _ = writeln!(
            out,
            "# HELP {name} Keys being loaded now, all origins.\n# TYPE {name} gauge\n{name} {n}"
        );
    }
}

/// A load's landing: stores what it found and answers the waiters, also if the load task is
/// dropped before it finished (runtime shutdown), so no waiter is left hanging.
struct Landing {
    origins: Arc<Origins>,
    key: Box<[u8]>,
    flight: Arc<Flight>,
    result: Option<ReadResult>,
}

impl Drop for Landing {
    fn drop(&mut self) {
        let result = self.result.take().unwrap_or_else(abandoned);
        {
            let mut flights = self.origins.flights.lock();
            if flights
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                flights.remove(&self.key);
            }
        }
        self.flight.done.send_replace(Some(result));
    }
}

/// One load: ask the origin, store what it found unless the key was invalidated or written
/// meanwhile, then answer the waiters (when `landing` drops).
async fn fly(origin: Arc<Origin>, mut landing: Landing) {
    let fetched = origin.load(&landing.key).await;
    let origins = landing.origins.clone();
    let flights = origins.flights.lock();
    // A write or an invalidation since the load began removed this flight: what it read may
    // be older than the origin now holds, so it is answered but not kept.
    let current = flights
        .get(&landing.key)
        .is_some_and(|f| Arc::ptr_eq(f, &landing.flight));
    let key = &landing.key;
    landing.result = Some(match fetched {
        Ok(Fetched::Found { value, version }) if current => {
            Ok(Some(origins.keep(&origin, key, value, version)))
        }
        Ok(Fetched::Found { value, version }) => Ok(Some(Served {
            value,
            version: version.unwrap_or(0),
            expires_at: None,
            stale: false,
        })),
        Ok(Fetched::NotFound) => {
            if current {
                origins.store.delete(key);
                let until = unix_ms().saturating_add(origin.not_found_ms);
                origins.remember_missing(key, until);
            }
            Ok(None)
        }
        Err(err) => Err(err),
    });
    // Stored before the flight leaves the map (in `Landing::drop`, after this lock is
    // released), so a reader that finds no flight finds the value.
    drop(flights);
}

/// The answer of a load that never reported.
fn abandoned() -> ReadResult {
    Err(OriginError::Unavailable("load abandoned".into()))
}
