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

mod breaker;
pub(crate) mod config;
mod grpc;
mod http;
mod pattern;
mod sql;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use larder_proto::ErrorCode;
use larder_store::{EntryRef, Expiry, SetMode, SetOptions, Store};
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, watch};

use crate::metrics::Histogram;
use crate::node::unix_ms;
use breaker::Breaker;
use config::OriginConfig;
use pattern::{KeyPattern, Parts};

/// Most remembered "not found" answers; past it the expired ones are dropped, then all.
const MAX_NOT_FOUND: usize = 1 << 16;

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

/// How old a stored entry of an origin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Serve it.
    Fresh,
    /// Serve it and refresh it in the background.
    Revalidate,
    /// Load; serve it only if the load fails.
    IfError,
}

/// An origin's backend.
#[derive(Debug)]
enum Backend {
    Sql(sql::SqlOrigin),
    Http(http::HttpOrigin),
    Grpc(grpc::GrpcOrigin),
}

/// Load outcomes counted per origin, in `larder_origin_loads_total`'s `result` order.
const LOAD_RESULTS: [&str; 5] = ["found", "not_found", "error", "timeout", "rejected"];
/// Write outcomes, in `larder_origin_writes_total`'s `result` order.
const WRITE_RESULTS: [&str; 4] = ["ok", "error", "timeout", "rejected"];

/// How a guarded call ended, indexed like the result labels after `found`/`not_found`.
#[derive(Debug, Clone, Copy)]
enum Failure {
    Error = 0,
    Timeout = 1,
    Rejected = 2,
}

#[derive(Debug, Default)]
struct OriginStats {
    loads: [AtomicU64; LOAD_RESULTS.len()],
    writes: [AtomicU64; WRITE_RESULTS.len()],
    coalesced: AtomicU64,
    stale_served: AtomicU64,
    latency: Histogram,
}

/// One configured origin.
#[derive(Debug)]
pub(crate) struct Origin {
    name: String,
    pattern: KeyPattern,
    backend: Backend,
    write_through: bool,
    fresh_ms: u64,
    revalidate_ms: u64,
    if_error_ms: u64,
    not_found_ms: u64,
    timeout: Duration,
    slots: Semaphore,
    breaker: Breaker,
    stats: OriginStats,
}

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
    Ok(pattern)
}

impl Origin {
    fn new(config: &OriginConfig) -> Result<Self, String> {
        let pattern = check_one(config)?;
        let timeout = Duration::from_millis(config.load_timeout_ms.max(1));
        let backend = match config.kind.as_str() {
            "sql" => Backend::Sql(sql::SqlOrigin::new(
                &config.url,
                &config.load,
                &config.store,
                &pattern,
                timeout,
            )?),
            "http" => Backend::Http(http::HttpOrigin::new(&config.url, &pattern, timeout)?),
            "grpc" => Backend::Grpc(grpc::GrpcOrigin::new(&config.name, &config.url, timeout)?),
            other => return Err(format!("kind = {other:?}: expected sql, http or grpc")),
        };
        Ok(Self {
            name: config.name.clone(),
            pattern,
            backend,
            write_through: config.write_through,
            fresh_ms: config.fresh_ttl_ms,
            revalidate_ms: config.stale_while_revalidate_ms,
            if_error_ms: config.stale_if_error_ms,
            not_found_ms: config.not_found_ttl_ms,
            timeout,
            slots: Semaphore::new(config.max_concurrent_loads),
            breaker: Breaker::new(
                config.breaker_failures,
                Duration::from_millis(config.breaker_cooldown_ms),
            ),
            stats: OriginStats::default(),
        })
    }

    /// Whether `SET`s of this origin's keys go to it first.
    pub(crate) fn write_through(&self) -> bool {
        self.write_through
    }

    /// How long a loaded entry stays after its fresh time.
    fn stale_span(&self) -> u64 {
        self.revalidate_ms.max(self.if_error_ms)
    }

    /// The expiry of an entry loaded or written `now`.
    fn expiry(&self, now: u64) -> Expiry {
        Expiry::At(
            now.saturating_add(self.fresh_ms)
                .saturating_add(self.stale_span()),
        )
    }

    /// How old an entry expiring at `expires_at` is `now`. Entries without an expiry were set
    /// by a client and are always fresh.
    pub(crate) fn freshness(&self, expires_at: Option<u64>, now: u64) -> Freshness {
        let Some(expires_at) = expires_at else {
            return Freshness::Fresh;
        };
        let stale_from = expires_at.saturating_sub(self.stale_span());
        if now < stale_from {
            Freshness::Fresh
        } else if now - stale_from < self.revalidate_ms {
            Freshness::Revalidate
        } else {
            Freshness::IfError
        }
    }

    /// Runs `work` under the breaker, a slot and the timeout.
    async fn guarded<T>(
        &self,
        work: impl Future<Output = Result<T, String>>,
    ) -> Result<T, (Failure, String)> {
        let Some(permit) = self.breaker.try_call(Instant::now()) else {
            return Err((Failure::Rejected, "circuit breaker open".into()));
        };
        let outcome = tokio::time::timeout(self.timeout, async {
            let _slot = self.slots.acquire().await.map_err(|e| e.to_string())?;
            work.await
        })
        .await;
        let (result, ok) = match outcome {
            Ok(Ok(value)) => (Ok(value), true),
            Ok(Err(message)) => (Err((Failure::Error, message)), false),
            Err(_) => {
                let ms = self.timeout.as_millis();
                (
                    Err((Failure::Timeout, format!("timed out after {ms} ms"))),
                    false,
                )
            }
        };
        self.breaker.record(permit, ok, Instant::now());
        result
    }

    /// Loads `key` from the origin, counted.
    async fn load(&self, key: &[u8]) -> Result<Fetched, OriginError> {
        let parts = self.parts(key)?;
        let started = Instant::now();
        let outcome = self
            .guarded(async {
                match &self.backend {
                    Backend::Sql(sql) => sql.load(&parts).await,
                    Backend::Http(http) => http.load(&parts).await,
                    Backend::Grpc(grpc) => grpc.load(key, &parts).await,
                }
            })
            .await;
        if !matches!(outcome, Err((Failure::Rejected, _))) {
            let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.stats.latency.observe(ns, 1);
        }
        let result = match &outcome {
            Ok(Fetched::Found { .. }) => 0,
            Ok(Fetched::NotFound) => 1,
            Err((failure, _)) => 2 + *failure as usize,
        };
        self.stats.loads[result].fetch_add(1, Relaxed);
        outcome.map_err(|(_, message)| {
            tracing::debug!(origin = %self.name, %message, "origin load failed");
            OriginError::Unavailable(format!("{}: {message}", self.name))
        })
    }

    /// Writes `key` to the origin, counted; the version it reported, if any.
    async fn store(&self, key: &[u8], value: &[u8]) -> Result<Option<u64>, OriginError> {
        let parts = self.parts(key)?;
        let outcome = self
            .guarded(async {
                match &self.backend {
                    Backend::Sql(sql) => sql.store(&parts, value).await,
                    Backend::Http(http) => http.store(&parts, value).await,
                    Backend::Grpc(grpc) => grpc.store(key, &parts, value).await,
                }
            })
            .await;
        let result = match &outcome {
            Ok(_) => 0,
            Err((failure, _)) => 1 + *failure as usize,
        };
        self.stats.writes[result].fetch_add(1, Relaxed);
        outcome
            .map_err(|(_, message)| OriginError::Unavailable(format!("{}: {message}", self.name)))
    }

    fn parts<'k>(&'k self, key: &'k [u8]) -> Result<Parts<'k>, OriginError> {
        self.pattern.split(key).ok_or_else(|| {
            OriginError::Invalid(format!("key does not match the pattern {}", self.pattern))
        })
    }
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

/// Every origin of one node, the loads in flight and the remembered "not found"s.
#[derive(Debug)]
pub(crate) struct Origins {
    list: Vec<Arc<Origin>>,
    store: Arc<Store>,
    flights: Mutex<HashMap<Box<[u8]>, Arc<Flight>>>,
    /// Keys an origin said it does not have, until when (Unix ms).
    not_found: Mutex<HashMap<Box<[u8]>, u64>>,
    /// Loads run here, not on the runtime of the connection that asked.
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
            let origin =
                Origin::new(config).map_err(|err| format!("origin {:?}: {err}", config.name))?;
            list.push(Arc::new(origin));
        }
        let runtime = Handle::try_current().map_err(|err| err.to_string())?;
        Ok(Some(Arc::new(Self {
            list,
            store,
            flights: Mutex::default(),
            not_found: Mutex::default(),
            runtime,
        })))
    }

    /// The origin that serves `key`, if any: the first whose pattern matches.
    pub(crate) fn find(&self, key: &[u8]) -> Option<&Arc<Origin>> {
        self.list
            .iter()
            .find(|o| o.pattern.claims(key) && o.pattern.split(key).is_some())
    }

    /// Whether the origin recently said it has no `key`.
    pub(crate) fn known_missing(&self, key: &[u8], now: u64) -> bool {
        self.not_found
            .lock()
            .get(key)
            .is_some_and(|&until| now < until)
    }

    /// Counts a stale value served from the store and refreshes it in the background, once:
    /// a refresh already in flight is not started again.
    pub(crate) fn served_stale(self: &Arc<Self>, origin: &Arc<Origin>, key: &[u8]) {
        origin.stats.stale_served.fetch_add(1, Relaxed);
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
            Ok(result) => result.clone().unwrap_or_else(unreachable_result),
            Err(_) => unreachable_result(),
        };
        match (result, fallback) {
            (Err(_), Some(stale)) if stale.expires_at.is_none_or(|at| unix_ms() < at) => {
                origin.stats.stale_served.fetch_add(1, Relaxed);
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
        let mut flights = self.flights.lock();
        if let Some(flight) = flights.get(key) {
            if waiter {
                origin.stats.coalesced.fetch_add(1, Relaxed);
            }
            return flight.done.subscribe();
        }
        // A load may have finished between the caller's look at the store and this lock: it
        // stores before it leaves the map, so a second look under the lock settles it.
        let now = unix_ms();
        let fresh = self.store.peek_with(key, |entry| {
            (origin.freshness(entry.expires_at, now) == Freshness::Fresh).then(|| Served {
                value: Bytes::copy_from_slice(entry.value),
                version: entry.version,
                expires_at: entry.expires_at,
                stale: false,
            })
        });
        match fresh {
            Some(Some(served)) => return watch::channel(Some(Ok(Some(served)))).1,
            None if waiter && self.known_missing(key, now) => {
                return watch::channel(Some(Ok(None))).1;
            }
            _ => {}
        }
        let (done, receiver) = watch::channel(None);
        let flight = Arc::new(Flight { done });
        let key: Box<[u8]> = key.into();
        flights.insert(key.clone(), flight.clone());
        drop(flights);
        self.runtime
            .spawn(self.clone().fly(origin.clone(), key, flight));
        receiver
    }

    /// One load: ask the origin, store what it found unless the key was invalidated or
    /// written meanwhile, then answer the waiters.
    async fn fly(self: Arc<Self>, origin: Arc<Origin>, key: Box<[u8]>, flight: Arc<Flight>) {
        let fetched = origin.load(&key).await;
        let result = {
            let mut flights = self.flights.lock();
            // A write or an invalidation since the load began removed this flight: what it
            // read may be older than the origin now holds, so it is answered but not kept.
            let current = flights.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight));
            let result = match fetched {
                Ok(Fetched::Found { value, version }) => Ok(Some(if current {
                    self.keep(&origin, &key, value, version)
                } else {
                    Served {
                        value,
                        version: version.unwrap_or(0),
                        expires_at: None,
                        stale: false,
                    }
                })),
                Ok(Fetched::NotFound) => {
                    if current {
                        self.store.delete(&key);
                        self.remember_missing(&key, unix_ms().saturating_add(origin.not_found_ms));
                    }
                    Ok(None)
                }
                Err(err) => Err(err),
            };
            if current {
                flights.remove(&key);
            }
            result
        };
        flight.done.send_replace(Some(result));
    }

    /// Stores a loaded value, unless the cache already holds a newer version.
    fn keep(&self, origin: &Origin, key: &[u8], value: Bytes, version: Option<u64>) -> Served {
        let now = unix_ms();
        let opts = SetOptions {
            mode: version.map_or(SetMode::Always, SetMode::IfNotOlderVersion),
            expiry: origin.expiry(now),
            ..SetOptions::default()
        };
        match self.store.set(key, &value, opts) {
            Ok(outcome) if outcome.stored => Served {
                value,
                version: outcome.version.unwrap_or(0),
                expires_at: Some(now + origin.fresh_ms + origin.stale_span()),
                stale: false,
            },
            Ok(_) => match self.store.peek(key) {
                // A newer version was written meanwhile; serve that.
                Some(item) => Served {
                    value: item.value.into(),
                    version: item.version,
                    expires_at: item.expires_at,
                    stale: false,
                },
                None => Served {
                    value,
                    version: version.unwrap_or(0),
                    expires_at: None,
                    stale: false,
                },
            },
            Err(err) => {
                tracing::warn!(origin = %origin.name, %err, "loaded value not cached");
                Served {
                    value,
                    version: version.unwrap_or(0),
                    expires_at: None,
                    stale: false,
                }
            }
        }
    }

    fn remember_missing(&self, key: &[u8], until: u64) {
        let mut not_found = self.not_found.lock();
        if not_found.len() >= MAX_NOT_FOUND {
            let now = unix_ms();
            not_found.retain(|_, &mut at| at > now);
            if not_found.len() >= MAX_NOT_FOUND {
                not_found.clear();
            }
        }
        not_found.insert(key.into(), until);
    }

    /// Writes `value` to the origin, then, once it confirmed, to the cache; returns the
    /// cached version. On failure the cache is unchanged.
    pub(crate) async fn write(
        self: &Arc<Self>,
        origin: &Arc<Origin>,
        key: &[u8],
        value: &[u8],
    ) -> Result<u64, OriginError> {
        let version = origin.store(key, value).await?;
        let now = unix_ms();
        let mut flights = self.flights.lock();
        // A load in flight read the origin before this write: let it answer, not store.
        flights.remove(key);
        self.not_found.lock().remove(key);
        let opts = SetOptions {
            mode: version.map_or(SetMode::Always, SetMode::IfNotOlderVersion),
            expiry: origin.expiry(now),
            ..SetOptions::default()
        };
        match self.store.set(key, value, opts) {
            Ok(outcome) => Ok(outcome.version.unwrap_or(0)),
            Err(err) => {
                // The origin has the value; make sure no older one is served instead.
                self.store.delete(key);
                tracing::warn!(origin = %origin.name, %err, "written value not cached");
                Ok(version.unwrap_or(0))
            }
        }
    }

    /// Drops `key` from the cache, any remembered "not found" and any load in flight, so the
    /// next read loads it again. Returns whether the cache held it.
    pub(crate) fn invalidate(&self, key: &[u8]) -> bool {
        let mut flights = self.flights.lock();
        flights.remove(key);
        self.not_found.lock().remove(key);
        self.store.delete(key)
    }

    /// Prometheus text for every origin.
    pub(crate) fn render(&self, out: &mut String) {
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        let name = "larder_origin_loads_total";
        family(out, name, "counter", "Origin loads by origin and result.");
        for o in &self.list {
            for (result, n) in LOAD_RESULTS.iter().zip(&o.stats.loads) {
                let n = n.load(Relaxed);
                let _ = writeln!(
                    out,
                    "{name}{{origin=\"{}\",result=\"{result}\"}} {n}",
                    o.name
                );
            }
        }
        let name = "larder_origin_writes_total";
        family(
            out,
            name,
            "counter",
            "Write-through writes by origin and result.",
        );
        for o in &self.list {
            for (result, n) in WRITE_RESULTS.iter().zip(&o.stats.writes) {
                let n = n.load(Relaxed);
                let _ = writeln!(
                    out,
                    "{name}{{origin=\"{}\",result=\"{result}\"}} {n}",
                    o.name
                );
            }
        }
        let name = "larder_origin_coalesced_total";
        family(
            out,
            name,
            "counter",
            "Reads that waited on a load another read started.",
        );
        for o in &self.list {
            let n = o.stats.coalesced.load(Relaxed);
            let _ = writeln!(out, "{name}{{origin=\"{}\"}} {n}", o.name);
        }
        let name = "larder_origin_stale_served_total";
        family(out, name, "counter", "Values served past their fresh time.");
        for o in &self.list {
            let n = o.stats.stale_served.load(Relaxed);
            let _ = writeln!(out, "{name}{{origin=\"{}\"}} {n}", o.name);
        }
        let name = "larder_origin_load_duration_seconds";
        family(out, name, "histogram", "Time one origin load took.");
        for o in &self.list {
            o.stats
                .latency
                .render(out, name, &format!("origin=\"{}\"", o.name));
        }
        let name = "larder_breaker_state";
        family(
            out,
            name,
            "gauge",
            "Circuit breakers: 0 closed, 1 open, 2 half-open.",
        );
        for o in &self.list {
            let state = o.breaker.state() as u8;
            let _ = writeln!(out, "{name}{{target=\"origin:{}\"}} {state}", o.name);
        }
    }
}

/// A flight's sender is dropped only after it sent; kept as an error rather than a panic.
fn unreachable_result() -> ReadResult {
    Err(OriginError::Unavailable("load abandoned".into()))
}
