//! One configured origin: its backend, its freshness windows, and every call to it bounded by
//! a slot (`max_concurrent_loads`), the circuit breaker and the timeout.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use larder_store::{Clock, Expiry, MAX_KEY_LEN, Windows};
use larder_util::breaker::{Breaker, BreakerState};
use tokio::sync::Semaphore;
use tonic::Status;

use super::config::OriginConfig;
use super::grpc::status_message;
use super::http::HttpError;
use super::pattern::{KeyPattern, Parts};
use super::sql::SqlError;
use super::stats::{Failure, OriginStats};
use super::{Fetched, Freshness, OriginConfigError, OriginError, check_one, grpc, http, sql};

/// Why one call to an origin failed: what clients read after `origin unavailable: <name>: `.
/// As every origin error, its text includes its cause's, so the cause is not also its
/// `source()`.
#[derive(Debug, thiserror::Error)]
enum CallError {
    /// No load slot came free within the timeout.
    #[error("every load slot stayed busy")]
    Busy,
    /// The breaker refused the call.
    #[error("circuit breaker open")]
    BreakerOpen,
    /// The call took the whole timeout.
    #[error("timed out after {} ms", .0.as_millis())]
    TimedOut(Duration),
    /// The sql origin failed.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// The http origin failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The grpc origin answered with an error status, or could not be reached.
    #[error("{}", status_message(.0))]
    Grpc(Status),
}

impl CallError {
    /// How the call failed, for the counters and the breaker.
    fn failure(&self) -> Failure {
        match self {
            Self::Busy | Self::BreakerOpen => Failure::Rejected,
            Self::TimedOut(_) => Failure::Timeout,
            Self::Sql(_) | Self::Http(_) | Self::Grpc(_) => Failure::Error,
        }
    }
}

/// An origin's backend.
#[derive(Debug)]
enum Backend {
    Sql(sql::SqlOrigin),
    Http(http::HttpOrigin),
    Grpc(grpc::GrpcOrigin),
}

/// One configured origin.
#[derive(Debug)]
pub(crate) struct Origin {
    name: String,
    pattern: KeyPattern,
    backend: Backend,
    write_through: bool,
    windows: Windows,
    pub(super) not_found_ms: u64,
    timeout: Duration,
    slots: Semaphore,
    breaker: Breaker,
    /// The node's clock, for the breaker's cooldown.
    clock: Arc<dyn Clock>,
    stats: OriginStats,
}

impl Origin {
    pub(super) fn new(
        config: &OriginConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OriginConfigError> {
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
            other => return Err(OriginConfigError::Kind(other.to_owned())),
        };
        Ok(Self {
            name: config.name.clone(),
            pattern,
            backend,
            write_through: config.write_through,
            windows: Windows {
                fresh_ms: config.fresh_ttl_ms,
                revalidate_ms: config.stale_while_revalidate_ms,
                if_error_ms: config.stale_if_error_ms,
            },
            not_found_ms: config.not_found_ttl_ms,
            timeout,
            slots: Semaphore::new(config.max_concurrent_loads),
            breaker: Breaker::new(config.breaker_failures, config.breaker_cooldown_ms),
            clock,
            stats: OriginStats::default(),
        })
    }

    /// The configured name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The counters.
    pub(crate) fn stats(&self) -> &OriginStats {
        &self.stats
    }

    /// The breaker's state, for `larder_breaker_state`.
    pub(crate) fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Whether this origin serves `key`; allocates nothing.
    pub(crate) fn claims(&self, key: &[u8]) -> bool {
        key.len() <= MAX_KEY_LEN && self.pattern.matches(key)
    }

    /// Whether `SET`s of this origin's keys go to it first.
    pub(crate) fn write_through(&self) -> bool {
        self.write_through
    }

    /// When an entry loaded or written `now` expires, in Unix ms.
    pub(super) fn expires_at(&self, now: u64) -> u64 {
        self.windows.expires_at(now)
    }

    /// The expiry of an entry loaded or written `now`.
    pub(super) fn expiry(&self, now: u64) -> Expiry {
        Expiry::At(self.expires_at(now))
    }

    /// How old an entry expiring at `expires_at` is `now`.
    pub(crate) fn freshness(&self, expires_at: Option<u64>, now: u64) -> Freshness {
        self.windows.freshness(expires_at, now)
    }

    /// Runs `work` once a slot is free (waiting for one is bounded by the timeout and, when it
    /// runs out, is a rejection the breaker does not see), then under the breaker and what is
    /// left of the timeout.
    async fn guarded<T>(
        &self,
        work: impl Future<Output = Result<T, CallError>>,
    ) -> Result<T, CallError> {
        let started = Instant::now();
        let _slot = tokio::time::timeout(self.timeout, self.slots.acquire())
            .await
            .map_err(|_| CallError::Busy)?
            .map_err(|_| CallError::Busy)?;
        let Some(permit) = self.breaker.admit(|| self.clock.now_ms()) else {
            return Err(CallError::BreakerOpen);
        };
        let left = self.timeout.saturating_sub(started.elapsed());
        let result = tokio::time::timeout(left, work)
            .await
            .unwrap_or(Err(CallError::TimedOut(self.timeout)));
        if result.is_ok() {
            permit.succeed();
        } else {
            permit.fail(self.clock.now_ms());
        }
        result
    }

    /// Loads `key` from the origin, counted.
    pub(super) async fn load(&self, key: &[u8]) -> Result<Fetched, OriginError> {
        let parts = self.parts(key)?;
        let started = Instant::now();
        let outcome = self
            .guarded(async {
                match &self.backend {
                    Backend::Sql(sql) => Ok(sql.load(&parts).await?),
                    Backend::Http(http) => Ok(http.load(&parts).await?),
                    Backend::Grpc(grpc) => grpc.load(key, &parts).await.map_err(CallError::Grpc),
                }
            })
            .await;
        if !outcome
            .as_ref()
            .is_err_and(|err| err.failure() == Failure::Rejected)
        {
            let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.stats.latency.observe(ns, 1);
        }
        let result = match &outcome {
            Ok(Fetched::Found { .. }) => 0,
            Ok(Fetched::NotFound) => 1,
            Err(err) => 2 + err.failure() as usize,
        };
        self.stats.loads[result].fetch_add(1, Relaxed);
        outcome.map_err(|err| {
            tracing::debug!(origin = %self.name, message = %err, "origin load failed");
            OriginError::Unavailable(format!("{}: {err}", self.name))
        })
    }

    /// Writes `key` to the origin, counted; the version it reported, if any.
    pub(super) async fn store(&self, key: &[u8], value: &[u8]) -> Result<Option<u64>, OriginError> {
        let parts = self.parts(key)?;
        let outcome = self
            .guarded(async {
                match &self.backend {
                    Backend::Sql(sql) => Ok(sql.store(&parts, value).await?),
                    Backend::Http(http) => Ok(http.store(&parts, value).await?),
                    Backend::Grpc(grpc) => grpc
                        .store(key, &parts, value)
                        .await
                        .map_err(CallError::Grpc),
                }
            })
            .await;
        let result = match &outcome {
            Ok(_) => 0,
            Err(err) => 1 + err.failure() as usize,
        };
        self.stats.writes[result].fetch_add(1, Relaxed);
        outcome.map_err(|err| OriginError::Unavailable(format!("{}: {err}", self.name)))
    }

    /// The key's parts, checked before any call so a client's bad key is its own error and
    /// never counts against the origin's breaker.
    fn parts<'k>(&'k self, key: &'k [u8]) -> Result<Parts<'k>, OriginError> {
        let parts = self.pattern.split(key).ok_or_else(|| {
            OriginError::Invalid(format!("key does not match the pattern {}", self.pattern))
        })?;
        let text = |(_, value): &&(&str, &[u8])| std::str::from_utf8(value).is_ok();
        if matches!(self.backend, Backend::Sql(_))
            && let Some((name, _)) = parts.iter().find(|part| !text(part))
        {
            return Err(OriginError::Invalid(format!(
                "key part {{{name}}} is not UTF-8 text, which a sql origin needs"
            )));
        }
        Ok(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_errors_are_counted_by_how_they_failed() {
        let cases = [
            (
                CallError::Busy,
                Failure::Rejected,
                "every load slot stayed busy",
            ),
            (
                CallError::BreakerOpen,
                Failure::Rejected,
                "circuit breaker open",
            ),
            (
                CallError::TimedOut(Duration::from_millis(250)),
                Failure::Timeout,
                "timed out after 250 ms",
            ),
            (
                CallError::Sql(SqlError::NoStore),
                Failure::Error,
                "this origin has no `store` statement",
            ),
            (
                CallError::Http(HttpError::MissingPart),
                Failure::Error,
                "the key lacks a part of the url",
            ),
            (
                CallError::Grpc(Status::unavailable("db down")),
                Failure::Error,
                "Unavailable: db down",
            ),
        ];
        for (err, failure, text) in cases {
            assert_eq!(err.failure(), failure, "{err}");
            assert_eq!(err.to_string(), text);
        }
    }
}
