//! Read-through and write-through origins.
//!
//! Each configured origin claims the keys matching its pattern (`doc/{collection}/{id}`). A
//! read of such a key that misses, or finds a value too stale to serve, joins the one load of
//! that key in flight on this node, starting it if there is none; the load runs as its own
//! task on the node's main runtime, so a caller that goes away does not cancel it for the
//! others. What it found is stored before the waiters are answered; "not found" is remembered
//! for `not_found_ttl_ms`; an error is never stored.
//!
//! The flights are [`larder_util::flight::Flights`], the freshness windows
//! [`larder_store::Windows`]: the mechanisms the gateway's in-process cache uses too.
//!
//! A loaded entry's expiry is set to the end of its last window, `fresh + max(swr, sie)`, so
//! the store reclaims it like any other entry, and its age is read back from that expiry:
//! fresh, then stale-while-revalidate (served, refreshed once in the background), then
//! stale-if-error (a read loads, and serves the stale value only if the load fails).

pub(crate) mod config;
mod error;
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
use larder_store::{Clock, EntryRef, SetMode, SetOptions, Store};
use larder_util::flight::{Flights, Joined, Ticket, Waiter};
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tracing::{Instrument as _, Span};

use crate::node::mutation::{MutationKind, Recorder};
use config::OriginConfig;
pub(crate) use error::OriginError;
pub use error::{OriginConfigError, OriginsError};
pub use grpc::GrpcUrlError;
pub use http::HttpUrlError;
use pattern::KeyPattern;
pub use pattern::PatternError;
pub(crate) use source::Origin;
pub use sql::SqlConfigError;

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
pub(crate) fn check(configs: &[OriginConfig]) -> Result<(), OriginsError> {
    for (index, config) in configs.iter().enumerate() {
        let refuse = |error| OriginsError::Config {
            index,
            name: config.name.clone(),
            error,
        };
        if config.name.is_empty() || config.name.contains(['"', '\\', '\n']) {
            return Err(refuse(OriginConfigError::Name));
        }
        if configs[..index].iter().any(|o| o.name == config.name) {
            return Err(refuse(OriginConfigError::NameTwice));
        }
        check_one(config).map_err(refuse)?;
    }
    Ok(())
}

/// Checks one origin's settings; returns its pattern.
fn check_one(config: &OriginConfig) -> Result<KeyPattern, OriginConfigError> {
    let pattern = KeyPattern::parse(&config.pattern)?;
    match config.kind.as_str() {
        "sql" => sql::check(&config.url, &config.load, &config.store, &pattern)?,
        "http" | "grpc" if config.url.is_empty() => return Err(OriginConfigError::NoUrl),
        "http" | "grpc" => {}
        other => return Err(OriginConfigError::Kind(other.to_owned())),
    }
    if config.write_through && config.kind == "sql" && config.store.trim().is_empty() {
        return Err(OriginConfigError::NoStoreStatement);
    }
    if config.fresh_ttl_ms == 0 {
        return Err(OriginConfigError::Zero("fresh_ttl_ms"));
    }
    if config.max_concurrent_loads == 0 {
        return Err(OriginConfigError::Zero("max_concurrent_loads"));
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
    for (setting, value, max) in durations {
        if value > max {
            return Err(OriginConfigError::TooLarge {
                setting,
                value,
                max,
            });
        }
    }
    Ok(pattern)
}

/// The first half of a read: answered at once, or waiting for a load.
#[derive(Debug)]
pub(crate) enum Step {
    Done(ReadResult),
    Wait {
        origin: Arc<Origin>,
        done: Waiter<ReadResult>,
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
    clock: Arc<dyn Clock>,
    flights: Arc<Flights<Box<[u8]>, ReadResult>>,
    /// Keys an origin said it does not have, until when (Unix ms), and their bytes.
    not_found: Mutex<NotFound>,
    writes: Mutex<HashMap<Box<[u8]>, Writes>>,
    next_ticket: std::sync::atomic::AtomicU64,
    recorder: Recorder,
    /// Loads and writes run here, not on the runtime of the connection that asked.
    runtime: Handle,
}

impl Origins {
    /// The origins of `configs` over `store` (whose clock they read), recording what they
    /// store to `recorder`, or `None` if there are none. Call within the runtime that should
    /// run the loads.
    pub(crate) fn new(
        configs: &[OriginConfig],
        store: Arc<Store>,
        recorder: Recorder,
    ) -> Result<Option<Arc<Self>>, OriginsError> {
        if configs.is_empty() {
            return Ok(None);
        }
        check(configs)?;
        let clock = store.clock().clone();
        let mut list = Vec::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            let origin =
                Origin::new(config, clock.clone()).map_err(|error| OriginsError::Config {
                    index,
                    name: config.name.clone(),
                    error,
                })?;
            list.push(Arc::new(origin));
        }
        let runtime = Handle::try_current().map_err(OriginsError::NoRuntime)?;
        Ok(Some(Arc::new(Self {
            list,
            store,
            clock,
            flights: Arc::new(Flights::new(MAX_FLIGHTS)),
            not_found: Mutex::default(),
            writes: Mutex::default(),
            next_ticket: std::sync::atomic::AtomicU64::new(0),
            recorder,
            runtime,
        })))
    }

    /// The origin that serves `key`, if any: the first whose pattern matches.
    pub(crate) fn find(&self, key: &[u8]) -> Option<&Arc<Origin>> {
        self.list.iter().find(|o| o.claims(key))
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
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

    /// The part of a read that does not wait: a store lookup, or joining the key's load.
    pub(crate) fn begin(self: &Arc<Self>, origin: &Arc<Origin>, key: &[u8]) -> Step {
        let now = self.now_ms();
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
        self.load(origin, key, fallback)
    }

    /// Joins the load of `key` (or starts one); `fallback` is served if it fails.
    pub(crate) fn load(
        self: &Arc<Self>,
        origin: &Arc<Origin>,
        key: &[u8],
        fallback: Option<Served>,
    ) -> Step {
        match self.join(origin, key, true) {
            Ok(done) => Step::Wait {
                origin: origin.clone(),
                done,
                fallback,
            },
            Err(result) => Step::Done(result),
        }
    }

    /// Waits for the load a [`Step::Wait`] joined.
    pub(crate) async fn finish(&self, step: Step) -> ReadResult {
        let (origin, done, fallback) = match step {
            Step::Done(result) => return result,
            Step::Wait {
                origin,
                done,
                fallback,
            } => (origin, done, fallback),
        };
        let result = done.wait().await.unwrap_or_else(abandoned);
        match (result, fallback) {
            (Err(_), Some(stale)) if stale.expires_at.is_none_or(|at| self.now_ms() < at) => {
                origin.stats().stale();
                Ok(Some(stale))
            }
            (result, _) => result,
        }
    }

    /// Joins the load of `key` in flight, or starts one; an answer known at once is `Err`.
    fn join(
        self: &Arc<Self>,
        origin: &Arc<Origin>,
        key: &[u8],
        waiter: bool,
    ) -> Result<Waiter<ReadResult>, ReadResult> {
        let key: Box<[u8]> = key.into();
        // A load may have finished between the caller's look at the store and the map's lock:
        // it stores before it leaves the map, so a second look under the lock settles it.
        let check = || {
            let now = self.now_ms();
            let fresh = self.store.peek_with(&key, |entry| {
                (origin.freshness(entry.expires_at, now) == Freshness::Fresh).then(|| served(entry))
            });
            match fresh {
                Some(Some(served)) => Some(Ok(Some(served))),
                None if waiter && self.known_missing(&key, now) => Some(Ok(None)),
                _ => None,
            }
        };
        match self.flights.join(&key, check) {
            Joined::Wait(done) => {
                if waiter {
                    origin.stats().coalesced.fetch_add(1, Relaxed);
                }
                Ok(done)
            }
            Joined::Lead(ticket, done) => {
                let span = origin_span("origin load", origin, &key);
                self.runtime
                    .spawn(fly(self.clone(), origin.clone(), ticket).instrument(span));
                Ok(done)
            }
            Joined::Ready(result) => Err(result),
            Joined::Full => {
                let busy = format!("{}: too many keys loading at once", origin.name());
                Err(Err(OriginError::Unavailable(busy)))
            }
        }
    }

    /// Stores a loaded value, unless the cache already holds a newer version.
    fn keep(&self, origin: &Origin, key: &[u8], value: Bytes, version: Option<u64>) -> Served {
        let now = self.now_ms();
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
            Ok(outcome) if outcome.stored => {
                let version = outcome.version.unwrap_or(0);
                let expires_at = Some(origin.expires_at(now));
                self.recorder
                    .record(key, MutationKind::Set, version, expires_at);
                Served {
                    value,
                    version,
                    expires_at,
                    stale: false,
                }
            }
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
            let now = self.now_ms();
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

    /// Starts writing `value` to the origin, then, once it confirmed, to the cache; the
    /// task's result is the cached version. On failure the cache is unchanged. The write runs
    /// on its own task, so a caller that goes away cannot leave the origin written and the
    /// cache stale.
    pub(crate) fn write(
        self: &Arc<Self>,
        origin: &Arc<Origin>,
        key: &[u8],
        value: &[u8],
    ) -> tokio::task::JoinHandle<Result<u64, OriginError>> {
        let (this, origin, key, value) = (
            self.clone(),
            origin.clone(),
            Box::<[u8]>::from(key),
            Bytes::copy_from_slice(value),
        );
        let span = origin_span("origin write", &origin, &key);
        self.runtime
            .spawn(async move { this.write_now(&origin, &key, &value).await }.instrument(span))
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
                    self.drop_copy(key);
                }
                return Err(err);
            }
        };
        // A load in flight read the origin before this write: let it answer, not store.
        self.retire(key);
        if !alone {
            self.drop_copy(key);
            return Ok(version.unwrap_or(0));
        }
        let expires_at = origin.expires_at(self.now_ms());
        let opts = SetOptions {
            mode: version.map_or(SetMode::Always, SetMode::IfNotOlderVersion),
            expiry: larder_store::Expiry::At(expires_at),
            ..SetOptions::default()
        };
        match self.store.set(key, value, opts) {
            Ok(outcome) => {
                let cached = outcome.version.unwrap_or(0);
                if outcome.stored {
                    self.recorder
                        .record(key, MutationKind::Set, cached, Some(expires_at));
                }
                Ok(cached)
            }
            Err(err) => {
                // The origin has the value; make sure no older one is served instead.
                self.drop_copy(key);
                tracing::warn!(origin = %origin.name(), %err, "written value not cached");
                Ok(version.unwrap_or(0))
            }
        }
    }

    /// Drops the cached copy of `key` (its origin holds a newer value, or may).
    fn drop_copy(&self, key: &[u8]) {
        if self.store.delete(key) {
            self.recorder.record(key, MutationKind::Delete, 0, None);
        }
    }

    /// Forgets any load in flight and "not found" of `key`, before a client writes the key
    /// itself: what a load read before the write must not replace it.
    pub(crate) fn retire(&self, key: &[u8]) {
        self.flights.retire(&Box::from(key));
        self.forget_missing(key);
    }

    /// Forgets every load in flight and every "not found" (the store is being emptied).
    pub(crate) fn retire_all(&self) {
        self.flights.retire_all();
        *self.not_found.lock() = NotFound::default();
    }

    /// Prometheus text for every origin.
    pub(crate) fn render(&self, out: &mut String) {
        let shown: Vec<_> = self
            .list
            .iter()
            .map(|o| stats::Shown {
                name: o.name(),
                stats: o.stats(),
                breaker: o.breaker_state(),
            })
            .collect();
        stats::render(&shown, out);
        let name = "larder_origin_loads_in_flight";
        let n = self.flights.len();
        let _ = writeln!(
            out,
            "# HELP {name} Keys being loaded now, all origins.\n# TYPE {name} gauge\n{name} {n}"
        );
    }
}

/// One load: ask the origin, then land the flight: store what it found unless the key was
/// invalidated or written meanwhile (the flight was retired), and answer the waiters. A load
/// whose task is dropped (runtime shutdown) answers its waiters with "abandoned".
async fn fly(origins: Arc<Origins>, origin: Arc<Origin>, ticket: Ticket<Box<[u8]>, ReadResult>) {
    let fetched = origin.load(ticket.key()).await;
    let key = ticket.key().clone();
    ticket.land(|current| match fetched {
        Ok(Fetched::Found { value, version }) if current => {
            Ok(Some(origins.keep(&origin, &key, value, version)))
        }
        // What it read may be older than the origin now holds: answered, not kept.
        Ok(Fetched::Found { value, version }) => Ok(Some(Served {
            value,
            version: version.unwrap_or(0),
            expires_at: None,
            stale: false,
        })),
        Ok(Fetched::NotFound) => {
            if current {
                origins.drop_copy(&key);
                let until = origins.now_ms().saturating_add(origin.not_found_ms);
                origins.remember_missing(&key, until);
            }
            Ok(None)
        }
        Err(err) => Err(err),
    });
}

/// The span of a load or write of `key` inside a traced request ([`Span::none`] otherwise); the
/// key is shown up to 128 bytes.
fn origin_span(what: &'static str, origin: &Origin, key: &[u8]) -> Span {
    larder_proto::trace::child(|| {
        let shown = String::from_utf8_lossy(&key[..key.len().min(128)]);
        tracing::info_span!(
            "origin",
            otel.name = %format_args!("{what} {}", origin.name()),
            otel.kind = "client",
            origin = origin.name(),
            key = %shown,
        )
    })
}

/// The answer of a load that never reported.
fn abandoned() -> ReadResult {
    Err(OriginError::Unavailable("load abandoned".into()))
}
