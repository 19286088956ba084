//! Credentials and scopes.
//!
//! A client sends `Authorization: Bearer <credential>`: the gateway's token (every scope), an
//! API key (the configuration holds its SHA-256 and its scopes), or a JWT (see [`jwt`]). A
//! scope names a collection and a verb — `products:read` (GET and HEAD), `products:write`
//! (POST, PATCH, DELETE), `*:read` for every collection — or `admin` (`/metrics`).
//!
//! Missing or invalid credentials get 401 with `WWW-Authenticate: Bearer` (RFC 6750, with
//! `error="invalid_token"` when one was sent); a credential without the scope a request needs
//! gets 403 (`error="insufficient_scope"` and the scope). Every comparison of a presented
//! secret is constant-time (`larder_util::auth`). A verified JWT is remembered by the SHA-256
//! of its text until it expires, so its signature is checked once, not on every request.

pub(crate) mod jwt;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::http::{HeaderValue, Method, header};
use larder_proto::ErrorCode;
use larder_util::auth::{bearer, secrets_match};
use larder_util::reload::Reloading;
use parking_lot::Mutex;
use ring::digest;

use crate::config::ApiConfig;
use crate::problem::ApiError;

/// What a credential may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// `/metrics`.
    Admin,
    /// Read a collection (`None`: every collection).
    Read(Option<String>),
    /// Write a collection (`None`: every collection).
    Write(Option<String>),
}

impl Scope {
    /// Parses `admin`, `<collection>:read`, `<collection>:write` (`*` for any collection).
    ///
    /// # Errors
    /// The text, for anything else.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        if text == "admin" {
            return Ok(Self::Admin);
        }
        let bad =
            || format!("{text:?} is not a scope (admin, <collection>:read, <collection>:write)");
        let (collection, verb) = text.rsplit_once(':').ok_or_else(bad)?;
        let collection = match collection {
            "*" => None,
            name if crate::config::valid_name(name) => Some(name.to_owned()),
            _ => return Err(bad()),
        };
        match verb {
            "read" => Ok(Self::Read(collection)),
            "write" => Ok(Self::Write(collection)),
            _ => Err(bad()),
        }
    }

    fn grants(&self, need: &Need<'_>) -> bool {
        let covers = |c: &Option<String>, name: &str| c.as_deref().is_none_or(|c| c == name);
        match (self, need) {
            (Self::Admin, Need::Admin) => true,
            (Self::Read(c), Need::Read(name)) | (Self::Write(c), Need::Write(name)) => {
                covers(c, name.as_ref())
            }
            _ => false,
        }
    }
}

/// What a request needs, by route and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Need<'a> {
    Read(Cow<'a, str>),
    Write(Cow<'a, str>),
    Admin,
    /// A method no route takes (answered 405): any credential.
    Authenticated,
}

impl Need<'_> {
    /// The scope text a 403 names.
    pub(crate) fn scope(&self) -> String {
        match self {
            Need::Read(c) => format!("{c}:read"),
            Need::Write(c) => format!("{c}:write"),
            Need::Admin => "admin".into(),
            Need::Authenticated => String::new(),
        }
    }
}

/// What `method` on `path` needs.
pub(crate) fn need<'a>(method: &Method, path: &'a str) -> Need<'a> {
    let Some(rest) = path.strip_prefix("/v1/") else {
        return if path == "/metrics" {
            Need::Admin
        } else {
            Need::Authenticated
        };
    };
    let collection = percent_decode(rest.split('/').next().unwrap_or_default());
    match *method {
        Method::GET | Method::HEAD => Need::Read(collection),
        Method::POST | Method::PATCH | Method::DELETE => Need::Write(collection),
        _ => Need::Authenticated,
    }
}

/// `%XX` sequences decoded (as the router decodes path parameters); invalid ones kept.
pub(crate) fn percent_decode(segment: &str) -> Cow<'_, str> {
    if !segment.contains('%') {
        return Cow::Borrowed(segment);
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Who made a request, and what they may do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Principal {
    /// `token`, `key:<name>` or `jwt:<sub>`: in logs, and the key of rate limits.
    pub(crate) id: Arc<str>,
    /// The gateway's token may do everything.
    all: bool,
    scopes: Vec<Scope>,
}

impl Principal {
    pub(crate) fn allows(&self, need: &Need<'_>) -> bool {
        self.all || *need == Need::Authenticated || self.scopes.iter().any(|s| s.grants(need))
    }
}

/// Why a request's credentials are not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No `Authorization: Bearer` credential.
    Missing,
    /// A credential that is not valid, and why (safe to show).
    Invalid(&'static str),
}

impl Refusal {
    /// The 401 problem.
    pub(crate) fn into_error(self) -> ApiError {
        let (detail, challenge) = match self {
            Refusal::Missing => (
                "this gateway needs Authorization: Bearer <token, API key or JWT>",
                HeaderValue::from_static("Bearer realm=\"larder\""),
            ),
            Refusal::Invalid(why) => (
                why,
                HeaderValue::from_static("Bearer realm=\"larder\", error=\"invalid_token\""),
            ),
        };
        ApiError::new(ErrorCode::Unauthenticated, detail)
            .with_header(header::WWW_AUTHENTICATE, challenge)
    }
}

/// The 403 for a credential without the scope `need` names.
pub(crate) fn forbidden(principal: &Principal, need: &Need<'_>) -> ApiError {
    let scope = need.scope();
    let challenge =
        format!("Bearer realm=\"larder\", error=\"insufficient_scope\", scope=\"{scope}\"");
    let error = ApiError::new(
        ErrorCode::PermissionDenied,
        format!("the credential {} lacks the scope {scope}", principal.id),
    );
    match HeaderValue::from_str(&challenge) {
        Ok(value) => error.with_header(header::WWW_AUTHENTICATE, value),
        Err(_) => error,
    }
}

/// The configured credentials.
pub(crate) struct Credentials {
    token: Option<(String, Arc<Principal>)>,
    keys: Vec<([u8; 32], Arc<Principal>)>,
    jwt: Option<Jwt>,
}

struct Jwt {
    keys: Arc<Reloading<Vec<jwt::Key>>>,
    expect: jwt::Expect,
    /// Verified tokens by the SHA-256 of their text, with when they expire.
    verified: Mutex<Verified>,
}

/// Verified tokens by the SHA-256 of their text: who they name and when they expire.
type Verified = HashMap<[u8; 32], (Arc<Principal>, u64)>;

/// Tokens remembered at most; past it the memory is cleared and refilled.
const VERIFIED_MAX: usize = 4096;

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.token.is_some())
            .field("keys", &self.keys.len())
            .field("jwt", &self.jwt.is_some())
            .finish()
    }
}

impl Credentials {
    /// The credentials `config` names, its JWKS file loaded.
    ///
    /// # Errors
    /// What is wrong with a key, a scope or the JWKS file.
    pub(crate) fn from_config(config: &ApiConfig) -> Result<Self, String> {
        let token = (!config.token.is_empty()).then(|| {
            let principal = Principal {
                id: "token".into(),
                all: true,
                scopes: Vec::new(),
            };
            (config.token.clone(), Arc::new(principal))
        });
        let mut keys = Vec::new();
        for key in &config.keys {
            let what = format!("api key {:?}", key.name);
            if key.name.is_empty() {
                return Err("an api key needs a name".into());
            }
            let digest = hex32(&key.sha256)
                .ok_or_else(|| format!("{what}: sha256 must be 64 hexadecimal digits"))?;
            let scopes = key
                .scopes
                .iter()
                .map(|s| Scope::parse(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{what}: {e}"))?;
            let principal = Principal {
                id: format!("key:{}", key.name).into(),
                all: false,
                scopes,
            };
            keys.push((digest, Arc::new(principal)));
        }
        let jwt = if config.jwt.jwks.is_empty() {
            None
        } else {
            Some(Jwt {
                keys: jwks_file(&config.jwt.jwks)?,
                expect: jwt::Expect {
                    issuer: config.jwt.issuer.clone(),
                    audience: config.jwt.audience.clone(),
                    leeway_secs: config.jwt.leeway_secs,
                },
                verified: Mutex::default(),
            })
        };
        Ok(Self { token, keys, jwt })
    }

    /// Whether any credential is configured; without one, every request is let through.
    pub(crate) fn enabled(&self) -> bool {
        self.token.is_some() || !self.keys.is_empty() || self.jwt.is_some()
    }

    /// The JWKS file to watch for changes, if JWTs are accepted.
    pub(crate) fn jwks(&self) -> Option<Arc<Reloading<Vec<jwt::Key>>>> {
        self.jwt.as_ref().map(|j| j.keys.clone())
    }

    /// Who `authorization` (the header's value) names, at `now` (seconds since the epoch).
    ///
    /// # Errors
    /// [`Refusal`] for a missing or invalid credential.
    pub(crate) fn authenticate(
        &self,
        authorization: Option<&HeaderValue>,
        now: u64,
    ) -> Result<Arc<Principal>, Refusal> {
        let credential = authorization
            .and_then(|v| bearer(v.as_bytes()))
            .ok_or(Refusal::Missing)?;
        if let Some((token, principal)) = &self.token
            && secrets_match(credential, token.as_bytes())
        {
            return Ok(principal.clone());
        }
        if let Some(jwt) = &self.jwt
            && jwt::looks_like_jwt(credential)
        {
            return jwt.check(credential, now);
        }
        let hash = digest::digest(&digest::SHA256, credential);
        self.keys
            .iter()
            .find(|(digest, _)| secrets_match(hash.as_ref(), digest))
            .map(|(_, principal)| principal.clone())
            .ok_or(Refusal::Invalid("the credential is not valid here"))
    }
}

impl Jwt {
    fn check(&self, token: &[u8], now: u64) -> Result<Arc<Principal>, Refusal> {
        let hash: [u8; 32] = sha256(token);
        let remembered = self.verified.lock().get(&hash).cloned();
        if let Some((principal, expires)) = remembered
            && expires > now
        {
            return Ok(principal);
        }
        let keys = self.keys.current();
        let grant =
            jwt::verify(token, &keys, &self.expect, now).map_err(|e| Refusal::Invalid(e.0))?;
        let principal = Arc::new(Principal {
            id: format!("jwt:{}", grant.subject).into(),
            all: false,
            scopes: grant.scopes,
        });
        let mut verified = self.verified.lock();
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        verified.insert(hash, (principal.clone(), grant.expires));
        Ok(principal)
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

/// 64 hexadecimal digits as 32 bytes.
fn hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The JWKS file's keys, reloaded when it changes.
fn jwks_file(path: &str) -> Result<Arc<Reloading<Vec<jwt::Key>>>, String> {
    let file = PathBuf::from(path);
    let read = file.clone();
    Reloading::new(vec![file], move || {
        let shown = read.display();
        let text = std::fs::read(&read).map_err(|e| format!("reading {shown}: {e}"))?;
        let (keys, skipped) = jwt::jwks(&text).map_err(|e| format!("JWKS {shown}: {e}"))?;
        if skipped > 0 {
            tracing::warn!(skipped, file = %shown, "JWKS keys of other types or uses left out");
        }
        if keys.is_empty() {
            return Err(format!(
                "JWKS {shown} has no HS256, RS256 or Ed25519 signing key"
            ));
        }
        Ok(keys)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKeyConfig;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn credentials() -> Credentials {
        let key = |name: &str, secret: &str, scopes: &[&str]| ApiKeyConfig {
            name: name.into(),
            sha256: hex(&sha256(secret.as_bytes())),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        };
        Credentials::from_config(&ApiConfig {
            token: "root-token".into(),
            keys: vec![
                key("reader", "lk_reader", &["products:read"]),
                key("ops", "lk_ops", &["*:write", "admin"]),
            ],
            ..ApiConfig::default()
        })
        .unwrap()
    }

    fn bearer_value(v: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {v}")).unwrap()
    }

    #[test]
    fn keys_carry_their_scopes_and_the_token_all() {
        let creds = credentials();
        let who = |v: &str| creds.authenticate(Some(&bearer_value(v)), 0);
        let reader = who("lk_reader").unwrap();
        assert_eq!(&*reader.id, "key:reader");
        let read = |c: &'static str| Need::Read(c.into());
        let write = |c: &'static str| Need::Write(c.into());
        assert!(reader.allows(&read("products")));
        assert!(!reader.allows(&write("products")));
        assert!(!reader.allows(&read("orders")));
        assert!(!reader.allows(&Need::Admin));
        let ops = who("lk_ops").unwrap();
        assert!(ops.allows(&write("orders")) && ops.allows(&Need::Admin));
        assert!(!ops.allows(&read("orders")));
        assert!(who("root-token").unwrap().allows(&Need::Admin));
        assert_eq!(
            who("lk_nope"),
            Err(Refusal::Invalid("the credential is not valid here"))
        );
        assert_eq!(creds.authenticate(None, 0), Err(Refusal::Missing));
        let basic = HeaderValue::from_static("Basic bGs6cmVhZGVy");
        assert_eq!(creds.authenticate(Some(&basic), 0), Err(Refusal::Missing));
    }

    #[test]
    fn routes_need_their_scope() {
        let (read, write) = (
            Need::Read("products".into()),
            Need::Write("products".into()),
        );
        assert_eq!(need(&Method::GET, "/v1/products/1"), read);
        assert_eq!(need(&Method::HEAD, "/v1/products"), read);
        assert_eq!(need(&Method::POST, "/v1/products"), write);
        assert_eq!(need(&Method::DELETE, "/v1/%70roducts/1"), write);
        assert_eq!(need(&Method::PUT, "/v1/products/1"), Need::Authenticated);
        assert_eq!(need(&Method::GET, "/metrics"), Need::Admin);
    }

    #[test]
    fn bad_configuration_is_refused() {
        for (sha, scopes) in [
            ("abc", vec!["admin"]),
            (&"0".repeat(64)[..], vec!["products:delete"]),
        ] {
            let config = ApiConfig {
                keys: vec![ApiKeyConfig {
                    name: "k".into(),
                    sha256: sha.into(),
                    scopes: scopes.into_iter().map(String::from).collect(),
                }],
                ..ApiConfig::default()
            };
            assert!(Credentials::from_config(&config).is_err());
        }
        assert!(Scope::parse("*:read").is_ok());
        assert!(Scope::parse("a/b:read").is_err());
        assert!(Scope::parse("read").is_err());
    }
}
