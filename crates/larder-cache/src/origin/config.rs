//! One origin's settings, as written under `[[cache.origins]]`.

use serde::{Deserialize, Serialize};

/// Default time a loaded value is fresh.
pub const DEFAULT_FRESH_TTL_MS: u64 = 60_000;
/// Default window after freshness in which the stale value is served while one background
/// load refreshes it.
pub const DEFAULT_STALE_WHILE_REVALIDATE_MS: u64 = 10_000;
/// Default window after freshness in which the stale value is served while the origin fails.
pub const DEFAULT_STALE_IF_ERROR_MS: u64 = 300_000;
/// Default time an origin's "not found" is remembered.
pub const DEFAULT_NOT_FOUND_TTL_MS: u64 = 5_000;
/// Default bound on one load or write, waiting for a slot included.
pub const DEFAULT_LOAD_TIMEOUT_MS: u64 = 2_000;
/// Default most loads and writes in flight to one origin.
pub const DEFAULT_MAX_CONCURRENT_LOADS: usize = 64;
/// Default consecutive failures that open the breaker.
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
/// Default time the breaker stays open before it lets one trial load through.
pub const DEFAULT_BREAKER_COOLDOWN_MS: u64 = 5_000;

/// Where the values of the keys matching one pattern come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OriginConfig {
    /// A short name for metrics and errors.
    pub name: String,
    /// The keys this origin serves, with named parts: `doc/{collection}/{id}`.
    pub pattern: String,
    /// `sql`, `http` or `grpc`.
    pub kind: String,
    /// `sql`: the database URL (`sqlite://path?mode=rwc`, `postgres://…`). `http`: a URL
    /// template whose `{part}`s are filled in percent-encoded. `grpc`: the address of a
    /// `larder.cache.v1.Origin` service (`http://host:port`).
    pub url: String,
    /// `sql` only: the query that loads a key, returning the value (text or bytes) and
    /// optionally a version (integer) as its first two columns; `:part` names a key part and is
    /// bound as a parameter.
    pub load: String,
    /// `sql` only: the statement that writes a key for write-through; `:value` is the value,
    /// `:part` a key part; a first column returned (`RETURNING version`) is the new version.
    pub store: String,
    /// Write `SET`s through to the origin before storing them.
    pub write_through: bool,
    /// Milliseconds a loaded value is fresh.
    pub fresh_ttl_ms: u64,
    /// Milliseconds after freshness in which the stale value is served and refreshed once in
    /// the background.
    pub stale_while_revalidate_ms: u64,
    /// Milliseconds after freshness in which the stale value is served while the origin fails.
    pub stale_if_error_ms: u64,
    /// Milliseconds an origin's "not found" is remembered.
    pub not_found_ttl_ms: u64,
    /// Milliseconds one load or write may take, waiting for a slot included.
    pub load_timeout_ms: u64,
    /// Most loads and writes in flight to this origin at once.
    pub max_concurrent_loads: usize,
    /// Consecutive failures that open the circuit breaker (0: never).
    pub breaker_failures: u32,
    /// Milliseconds the breaker stays open before one trial load is let through.
    pub breaker_cooldown_ms: u64,
}

impl Default for OriginConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            pattern: String::new(),
            kind: String::new(),
            url: String::new(),
            load: String::new(),
            store: String::new(),
            write_through: false,
            fresh_ttl_ms: DEFAULT_FRESH_TTL_MS,
            stale_while_revalidate_ms: DEFAULT_STALE_WHILE_REVALIDATE_MS,
            stale_if_error_ms: DEFAULT_STALE_IF_ERROR_MS,
            not_found_ttl_ms: DEFAULT_NOT_FOUND_TTL_MS,
            load_timeout_ms: DEFAULT_LOAD_TIMEOUT_MS,
            max_concurrent_loads: DEFAULT_MAX_CONCURRENT_LOADS,
            breaker_failures: DEFAULT_BREAKER_FAILURES,
            breaker_cooldown_ms: DEFAULT_BREAKER_COOLDOWN_MS,
        }
    }
}

/// `url` with the password of its user part, if any, replaced by `***`: for messages and
/// `--print-config`.
pub fn redact_url(url: &str) -> String {
    let url = &redact_query(url);
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// `password=…` in a URL's query (PostgreSQL accepts it there) replaced by `***`.
fn redact_query(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact_url("sqlite://data.db"), "sqlite://data.db");
        assert_eq!(
            redact_url("postgres://db/x?user=a&password=s3cret"),
            "postgres://db/x?user=a&password=***"
        );
    }
}
