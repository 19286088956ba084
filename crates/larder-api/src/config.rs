//! The gateway's configuration: one serde struct for the service and one per collection, with
//! defaults as named consts.

use serde::{Deserialize, Serialize};

/// Default gateway address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default largest request body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Default time a request may take before it is answered 503.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Default requests in progress at once; more are shed with 503.
pub const DEFAULT_MAX_CONCURRENCY: usize = 1_024;
/// Default time a connection may wait on its client (for a request head, a body, or for the
/// client to take a response) before it is closed.
pub const DEFAULT_CLIENT_TIMEOUT_MS: u64 = 30_000;
/// Default connections served at once; more wait in the listen queue.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default time an `Idempotency-Key` is remembered.
pub const DEFAULT_IDEMPOTENCY_TTL_SECS: u64 = 24 * 3600;
/// Default memory of the in-process cache used without cache nodes.
pub const DEFAULT_LOCAL_CACHE_BYTES: u64 = 64 << 20;
/// Default [`ApiConfig::near_cache_bytes`]: 64 MiB.
pub const DEFAULT_NEAR_CACHE_BYTES: u64 = 64 << 20;
/// Default lease of a gateway's in-process cache over PostgreSQL: how long it may serve its
/// copies without hearing from the database.
pub const DEFAULT_LOCAL_CACHE_LEASE_MS: u64 = 1_000;
/// Default time an entry of the change log (`GET /v1/{collection}/changes`) is kept.
pub const DEFAULT_CHANGES_RETENTION_SECS: u64 = 24 * 3600;
/// Default time between two reads of the change log for writes of other gateways.
pub const DEFAULT_CHANGES_POLL_MS: u64 = 20;
/// Default time between two comment lines on an idle change feed.
pub const DEFAULT_CHANGES_HEARTBEAT_MS: u64 = 15_000;
/// Default time between checks of the TLS and JWKS files for changes.
pub const DEFAULT_RELOAD_MS: u64 = 5_000;
/// Default page size of list requests.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// Largest page size a client may ask for.
pub const MAX_PAGE_SIZE: usize = 1_000;

/// The API gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// HTTP listen address.
    pub listen: String,
    /// Database URL (`sqlite://path?mode=rwc` or `postgres://…`).
    pub database: String,
    /// Cache node gRPC addresses; empty means an in-process cache.
    pub cache_nodes: Vec<String>,
    /// Bearer token for the cache nodes' gRPC (empty: none).
    pub cache_token: String,
    /// CA certificates (PEM) the cache nodes' certificates must chain to: with it, the
    /// gateway speaks TLS to the nodes (empty: plaintext).
    pub cache_tls_ca: String,
    /// Client certificate (PEM) for nodes that ask for one (mutual TLS); with `cache_tls_key`.
    pub cache_tls_cert: String,
    /// Private key (PEM) of `cache_tls_cert`.
    pub cache_tls_key: String,
    /// The name node certificates are checked against (empty: each node's host).
    pub cache_tls_server_name: String,
    /// Milliseconds a cache call may take before the database is asked instead.
    pub cache_deadline_ms: u64,
    /// Bytes of the in-process cache used when `cache_nodes` is empty.
    pub local_cache_bytes: u64,
    /// Bytes of the near-cache in front of `cache_nodes`: copies of what the nodes answered,
    /// kept fresh by the invalidations the nodes push (0: every read goes to a node).
    pub near_cache_bytes: u64,
    /// Over PostgreSQL, milliseconds the in-process cache may serve its copies after the
    /// gateway last heard back from the database; it renews this every quarter lease. A
    /// `strong` write waits at most about this long for a gateway that stopped answering, and
    /// an `eventual` one is stale elsewhere at most this long.
    pub local_cache_lease_ms: u64,
    /// Largest request body in bytes; bigger ones get 413.
    pub max_body_bytes: usize,
    /// Milliseconds a request may take; slower ones get 503.
    pub request_timeout_ms: u64,
    /// Requests in progress at once; past it new ones get 503 at once.
    pub max_concurrency: usize,
    /// Milliseconds a connection may wait on its client: the next request's head must arrive
    /// in full within this time of the previous answer (or of connecting), a body within this
    /// time of its head, and the client must take a response within it (at most a day).
    pub client_timeout_ms: u64,
    /// Connections served at once; past it the gateway stops accepting, and new connections
    /// wait in the operating system's listen queue until one closes.
    pub max_connections: usize,
    /// Seconds an `Idempotency-Key` and its response are kept.
    pub idempotency_ttl_secs: u64,
    /// Seconds an entry of the change log is kept: a feed client can resume with
    /// `Last-Event-ID` within this time of the event, later it gets 410. Older entries are
    /// dropped once a minute.
    pub changes_retention_secs: u64,
    /// Milliseconds between two reads of the change log for writes committed by other
    /// gateways on the same database (this gateway's own writes wake the feed at once).
    pub changes_poll_ms: u64,
    /// Milliseconds between two comment lines on a change feed with no events, which keep
    /// proxies from closing the stream as idle.
    pub changes_heartbeat_ms: u64,
    /// A bearer token with every scope (`Authorization: Bearer <token>`; empty: none): the
    /// simplest credential. `keys` and `jwt` give credentials with scopes. With any credential
    /// configured, `/v1/…` and `/metrics` need one; the probes, the problem pages and the API's
    /// description (`/`, `/openapi.json`, `/docs`) stay open. Listening beyond loopback needs a
    /// credential.
    pub token: String,
    /// API keys, each stored as the SHA-256 of the key (`[[api.keys]]`).
    pub keys: Vec<ApiKeyConfig>,
    /// JSON Web Tokens signed by the keys of a JWKS file (`[api.jwt]`; off without `jwks`).
    pub jwt: JwtConfig,
    /// Request rates per credential, by scope (`[[api.rate_limits]]`).
    pub rate_limits: Vec<RateLimitConfig>,
    /// Browser origins allowed to call the API, each with its CORS rules (`[[api.cors]]`).
    pub cors: Vec<CorsConfig>,
    /// TLS certificate chain (PEM, leaf first); with `tls_key`, the listener speaks only TLS
    /// (ALPN `h2` and `http/1.1`).
    pub tls_cert: String,
    /// Private key (PEM) of `tls_cert`.
    pub tls_key: String,
    /// CA certificates (PEM) that client certificates must chain to: with it, every client
    /// must present one (mutual TLS). Empty: no client certificates asked for.
    pub tls_client_ca: String,
    /// Milliseconds between checks of the TLS and JWKS files; a changed file is loaded without
    /// a restart (new connections use it).
    pub reload_ms: u64,
    /// The collections served under `/v1/{name}`.
    pub collections: Vec<CollectionConfig>,
}

/// One API key: a client sends the key as `Authorization: Bearer <key>`; the configuration
/// holds only its SHA-256 (`printf %s "$KEY" | sha256sum`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who holds the key: shown in logs and keying its rate limits.
    pub name: String,
    /// SHA-256 of the key, 64 hexadecimal digits.
    pub sha256: String,
    /// What the key may do: `<collection>:read`, `<collection>:write` (`*` for every
    /// collection), `admin` (`/metrics`).
    pub scopes: Vec<String>,
}

/// JSON Web Tokens (RFC 7519) the gateway accepts as bearer credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// A JWKS file (RFC 7517) with the verification keys: `oct` (HS256), `RSA` (RS256) and
    /// `OKP` Ed25519 (EdDSA). Empty: JWTs are not accepted. Re-read when it changes.
    pub jwks: String,
    /// The `iss` a token must carry (empty: not checked).
    pub issuer: String,
    /// A value the token's `aud` must hold (empty: not checked).
    pub audience: String,
    /// Seconds of clock skew allowed when checking `exp` and `nbf`.
    pub leeway_secs: u64,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            jwks: String::new(),
            issuer: String::new(),
            audience: String::new(),
            leeway_secs: 30,
        }
    }
}

/// A request rate per credential (per client address without credentials), token bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The requests it counts, by the scope they need: `products:read`, `*:write`, `admin`,
    /// or `*` for all. A request counts against the most specific rule that covers it.
    pub scope: String,
    /// Requests per second, sustained.
    pub per_second: u32,
    /// Requests allowed at once after a quiet spell (default: `per_second`).
    pub burst: u32,
}

/// CORS rules for one browser origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// The origin, as browsers send it (`https://app.example.com`), or `*` for any.
    pub origin: String,
    /// Methods the origin may use.
    pub methods: Vec<String>,
    /// Request headers the origin may send.
    pub headers: Vec<String>,
    /// Response headers the origin's scripts may read.
    pub expose: Vec<String>,
    /// Whether the browser may send cookies and HTTP authentication (not with `*`).
    pub credentials: bool,
    /// Seconds a browser may cache a preflight's answer.
    pub max_age_secs: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
        Self {
            origin: String::new(),
            methods: strings(&["GET", "HEAD", "POST", "PATCH", "DELETE"]),
            headers: strings(&[
                "Authorization",
                "Content-Type",
                "If-Match",
                "If-None-Match",
                "Idempotency-Key",
                "Last-Event-ID",
            ]),
            expose: strings(&[
                "ETag",
                "Location",
                "Retry-After",
                "RateLimit",
                "RateLimit-Policy",
            ]),
            credentials: false,
            max_age_secs: 600,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.into(),
            database: String::new(),
            cache_nodes: Vec::new(),
            cache_token: String::new(),
            cache_tls_ca: String::new(),
            cache_tls_cert: String::new(),
            cache_tls_key: String::new(),
            cache_tls_server_name: String::new(),
            cache_deadline_ms: 250,
            local_cache_bytes: DEFAULT_LOCAL_CACHE_BYTES,
            near_cache_bytes: DEFAULT_NEAR_CACHE_BYTES,
            local_cache_lease_ms: DEFAULT_LOCAL_CACHE_LEASE_MS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            client_timeout_ms: DEFAULT_CLIENT_TIMEOUT_MS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idempotency_ttl_secs: DEFAULT_IDEMPOTENCY_TTL_SECS,
            changes_retention_secs: DEFAULT_CHANGES_RETENTION_SECS,
            changes_poll_ms: DEFAULT_CHANGES_POLL_MS,
            changes_heartbeat_ms: DEFAULT_CHANGES_HEARTBEAT_MS,
            token: String::new(),
            keys: Vec::new(),
            jwt: JwtConfig::default(),
            rate_limits: Vec::new(),
            cors: Vec::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_client_ca: String::new(),
            reload_ms: DEFAULT_RELOAD_MS,
            collections: Vec::new(),
        }
    }
}

/// How a collection's writes reach the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// The cache is updated before the write is answered; over PostgreSQL, no gateway's
    /// in-process cache serves an older copy once it is answered.
    #[default]
    Strong,
    /// The cache is updated right after the answer, asynchronously; over PostgreSQL, other
    /// gateways' in-process caches serve older copies for at most `local_cache_lease_ms`.
    Eventual,
}

/// One collection of JSON documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectionConfig {
    /// The name in URLs and the JSON:API `type`: letters, digits, `-` and `_`.
    pub name: String,
    /// A JSON Schema (draft 2020-12) for the attributes, as a JSON string or a TOML table;
    /// absent means any JSON object.
    pub schema: Option<serde_json::Value>,
    /// `strong` or `eventual`.
    pub consistency: Consistency,
    /// Milliseconds a cached document is fresh.
    pub fresh_ttl_ms: u64,
    /// Milliseconds after that a stale document is served while it is refreshed.
    pub stale_while_revalidate_ms: u64,
    /// Milliseconds after freshness a stale document is served while the database fails.
    pub stale_if_error_ms: u64,
    /// Top-level attributes `filter[attr]=value` may test.
    pub filterable: Vec<String>,
    /// Top-level attributes `sort` may order by.
    pub sortable: Vec<String>,
    /// Updates and deletes must carry `If-Match` (428 without it).
    pub require_if_match: bool,
}

impl Default for CollectionConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            schema: None,
            consistency: Consistency::Strong,
            fresh_ttl_ms: 60_000,
            stale_while_revalidate_ms: 10_000,
            stale_if_error_ms: 300_000,
            filterable: Vec::new(),
            sortable: Vec::new(),
            require_if_match: false,
        }
    }
}

impl CollectionConfig {
    /// The cache entry's whole life: fresh, then the longer stale window.
    pub fn cache_ttl_ms(&self) -> u64 {
        self.windows().ttl_ms()
    }

    /// The fresh and stale windows of the collection's cached documents.
    pub fn windows(&self) -> larder_store::Windows {
        larder_store::Windows {
            fresh_ms: self.fresh_ttl_ms,
            revalidate_ms: self.stale_while_revalidate_ms,
            if_error_ms: self.stale_if_error_ms,
        }
    }
}

/// A name usable in a URL path segment and as a JSON:API type.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl ApiConfig {
    /// Whether any credential is configured (token, API key or JWT keys).
    pub fn has_credentials(&self) -> bool {
        !self.token.is_empty() || !self.keys.is_empty() || !self.jwt.jwks.is_empty()
    }
}
