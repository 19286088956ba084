//! Rate limits per credential (per client address when no credential is configured): token
//! buckets from the `governor` crate, one bucket per credential and rule.
//!
//! A rule counts the requests that need a scope (`products:read`, `*:write`, `admin`, or `*`
//! for all); a request counts against the most specific rule that covers it, and only that one.
//! Answers of requests a rule counted carry `RateLimit-Policy` and `RateLimit`
//! (draft-ietf-httpapi-ratelimit-headers: the quota `q` per window `w` seconds, the remaining
//! requests `r` and the seconds `t` until the bucket is full again); a request over the limit
//! gets 429 with the same fields and `Retry-After`.
//!
//! A bucket of `burst` requests refilled at `per_second` is advertised as a quota of `burst`
//! per `ceil(burst / per_second)` seconds.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap, HeaderName, HeaderValue};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota};
use larder_proto::ErrorCode;

use crate::auth::{Need, Principal};
use crate::config::RateLimitConfig;
use crate::problem::ApiError;

/// The `RateLimit-Policy` field.
pub(crate) const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The `RateLimit` field.
pub(crate) const STATE: HeaderName = HeaderName::from_static("ratelimit");

/// Which requests a rule counts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Covers {
    All,
    Admin,
    Read(Option<String>),
    Write(Option<String>),
}

impl Covers {
    fn parse(scope: &str) -> Result<Self, String> {
        if scope == "*" {
            return Ok(Self::All);
        }
        match crate::auth::Scope::parse(scope)? {
            crate::auth::Scope::Admin => Ok(Self::Admin),
            crate::auth::Scope::Read(c) => Ok(Self::Read(c)),
            crate::auth::Scope::Write(c) => Ok(Self::Write(c)),
        }
    }

    /// How specifically this rule covers `need`: `None` if not at all, higher is closer.
    fn covers(&self, need: &Need<'_>) -> Option<u8> {
        let named = |c: &Option<String>, name: &str| match c {
            Some(c) if c == name => Some(3),
            Some(_) => None,
            None => Some(2),
        };
        match (self, need) {
            (Self::All, _) => Some(1),
            (Self::Admin, Need::Admin) => Some(3),
            (Self::Read(c), Need::Read(name)) | (Self::Write(c), Need::Write(name)) => {
                named(c, name.as_ref())
            }
            _ => None,
        }
    }
}

struct Rule {
    covers: Covers,
    /// The policy's name (its scope) as a structured-field string, quoted.
    name: String,
    per_second: u32,
    burst: u32,
    policy: HeaderValue,
    limiter: DefaultKeyedRateLimiter<Arc<str>, StateInformationMiddleware>,
}

/// The configured rate limits.
pub(crate) struct Limits {
    rules: Vec<Rule>,
    /// Without credentials, buckets are per client address.
    by_address: bool,
    clock: DefaultClock,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("rules", &self.rules.len())
            .field("by_address", &self.by_address)
            .finish()
    }
}

/// A request a rule let through: the fields its answer carries.
#[derive(Debug)]
pub(crate) struct Granted {
    policy: HeaderValue,
    state: HeaderValue,
}

impl Granted {
    pub(crate) fn write(self, headers: &mut HeaderMap) {
        headers.insert(POLICY, self.policy);
        headers.insert(STATE, self.state);
    }
}

impl Limits {
    /// The rules of `config`; `credentials` says whether requests carry credentials to key
    /// buckets by.
    ///
    /// # Errors
    /// A rule with an unknown scope or a zero rate.
    pub(crate) fn new(config: &[RateLimitConfig], credentials: bool) -> Result<Self, String> {
        let mut rules = Vec::new();
        for rule in config {
            let what = format!("rate limit {:?}", rule.scope);
            let covers = Covers::parse(&rule.scope).map_err(|e| format!("{what}: {e}"))?;
            let per_second =
                NonZeroU32::new(rule.per_second).ok_or(format!("{what}: per_second is 0"))?;
            let burst = NonZeroU32::new(rule.burst).unwrap_or(per_second);
            let quota = Quota::per_second(per_second).allow_burst(burst);
            let window = burst.get().div_ceil(per_second.get());
            let name = format!("\"{}\"", rule.scope);
            let policy = HeaderValue::from_str(&format!("{name};q={burst};w={window}"))
                .map_err(|_| format!("{what}: the scope cannot be a header value"))?;
            rules.push(Rule {
                covers,
                name,
                per_second: per_second.get(),
                burst: burst.get(),
                policy,
                limiter: DefaultKeyedRateLimiter::keyed(quota)
                    .with_middleware::<StateInformationMiddleware>(),
            });
        }
        Ok(Self {
            by_address: !rules.is_empty() && !credentials,
            rules,
            clock: DefaultClock::default(),
        })
    }

    /// Whether any rule is configured.
    pub(crate) fn enabled(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Whether buckets are keyed by the client's address (no credentials configured).
    pub(crate) fn keys_by_address(&self) -> bool {
        self.by_address
    }

    /// Counts a request needing `need` from `principal` (or, without credentials, from the
    /// address in `extensions`): `Ok(None)` when no rule covers it, `Ok(Some(_))` with the
    /// fields to add, or the 429.
    ///
    /// # Errors
    /// The 429 of a request over its limit.
    pub(crate) fn check(
        &self,
        principal: Option<&Principal>,
        extensions: &Extensions,
        need: &Need<'_>,
    ) -> Result<Option<Granted>, ApiError> {
        let Some(rule) = self
            .rules
            .iter()
            .filter_map(|r| Some((r.covers.covers(need)?, r)))
            .max_by_key(|(specificity, _)| *specificity)
            .map(|(_, r)| r)
        else {
            return Ok(None);
        };
        let key: Arc<str> = match principal {
            Some(principal) => principal.id.clone(),
            None => match extensions.get::<ConnectInfo<SocketAddr>>() {
                Some(ConnectInfo(addr)) => addr.ip().to_string().into(),
                None => "anonymous".into(),
            },
        };
        match rule.limiter.check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let full_in = (rule.burst - remaining.min(rule.burst)).div_ceil(rule.per_second);
                Ok(Some(Granted {
                    policy: rule.policy.clone(),
                    state: state_value(&rule.name, remaining, u64::from(full_in)),
                }))
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let secs = secs.max(1);
                let error = ApiError {
                    retry_after: Some(secs),
                    ..ApiError::new(
                        ErrorCode::RateLimited,
                        format!(
                            "over the rate limit for {} ({} per second, bursts of {}); retry in {secs} s",
                            rule.name.trim_matches('"'),
                            rule.per_second,
                            rule.burst
                        ),
                    )
                };
                Err(error
                    .with_header(POLICY, rule.policy.clone())
                    .with_header(STATE, state_value(&rule.name, 0, secs)))
            }
        }
    }

    /// Forgets buckets that are full again, so that the memory follows the active clients.
    pub(crate) fn forget_idle(&self) {
        for rule in &self.rules {
            rule.limiter.retain_recent();
            rule.limiter.shrink_to_fit();
        }
    }
}

/// `RateLimit`'s value, written on every answer a limit covers: built without `format!`
/// (whose machinery was a fifth of what credentials and limits add to a cache hit) into the
/// buffer the header keeps.
fn state_value(name: &str, remaining: u32, reset_secs: u64) -> HeaderValue {
    let mut digits = itoa::Buffer::new();
    let mut value = String::with_capacity(name.len() + 26);
    value.push_str(name);
    value.push_str(";r=");
    value.push_str(digits.format(remaining));
    value.push_str(";t=");
    value.push_str(digits.format(reset_secs));
    HeaderValue::from_maybe_shared(bytes::Bytes::from(value))
        .unwrap_or(HeaderValue::from_static("\"\";r=0;t=1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(scope: &str, per_second: u32, burst: u32) -> RateLimitConfig {
        RateLimitConfig {
            scope: scope.into(),
            per_second,
            burst,
        }
    }

    #[test]
    fn the_most_specific_rule_counts_and_a_burst_ends_in_429() {
        let limits = Limits::new(
            &[
                rule("*", 1000, 1000),
                rule("*:write", 1, 3),
                rule("products:write", 1, 2),
            ],
            false,
        )
        .unwrap();
        let ext = Extensions::new();
        let write = Need::Write("products".into());
        for left in [1, 0] {
            let granted = limits.check(None, &ext, &write).unwrap().unwrap();
            assert_eq!(granted.policy, "\"products:write\";q=2;w=2");
            assert_eq!(
                granted.state,
                format!("\"products:write\";r={left};t={}", 2 - left)
            );
        }
        let refused = limits.check(None, &ext, &write).unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert_eq!(refused.retry_after, Some(1));
        // Another collection's writes have their own rule; reads the catch-all.
        assert!(
            limits
                .check(None, &ext, &Need::Write("orders".into()))
                .unwrap()
                .is_some()
        );
        let read = limits
            .check(None, &ext, &Need::Read("products".into()))
            .unwrap()
            .unwrap();
        assert_eq!(read.policy, "\"*\";q=1000;w=1");
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(Limits::new(&[rule("products:delete", 1, 1)], true).is_err());
        assert!(Limits::new(&[rule("*", 0, 1)], true).is_err());
        assert!(!Limits::new(&[], false).unwrap().keys_by_address());
        assert!(
            Limits::new(&[rule("*", 1, 1)], false)
                .unwrap()
                .keys_by_address()
        );
    }
}
