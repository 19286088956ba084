//! CORS (the Fetch standard) for browser clients, configured per origin (`[[api.cors]]`).
//!
//! A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from a configured
//! origin, for a method and request headers it allows, is answered 204 with the origin's rules
//! and without credentials (browsers send none with a preflight); any other preflight gets a
//! 403 problem, which the browser reports as a CORS failure. Every other answer to a
//! configured origin — errors included, so scripts can read a 401 or a 429 — carries
//! `Access-Control-Allow-Origin` and the headers scripts may read. Requests without `Origin`,
//! or from origins not configured, are answered as they would be without CORS.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use larder_proto::ErrorCode;

use std::sync::Arc;

use crate::config::CorsConfig;
use crate::problem::ApiError;

/// One origin's rules, with its field values made once.
#[derive(Debug)]
pub(crate) struct Origin {
    origin: String,
    any: bool,
    methods: Vec<Method>,
    /// Lowercased request header names allowed.
    headers: Vec<String>,
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    expose: HeaderValue,
    credentials: bool,
    max_age: HeaderValue,
}

/// The configured origins.
#[derive(Debug, Default)]
pub(crate) struct Cors(Vec<Origin>);

impl Cors {
    /// The rules of `config`.
    ///
    /// # Errors
    /// A rule that cannot work: no origin, `*` with credentials, a method or header name that
    /// is not a token.
    pub(crate) fn new(config: &[CorsConfig]) -> Result<Self, String> {
        let mut origins = Vec::new();
        for rule in config {
            let what = format!("cors origin {:?}", rule.origin);
            if rule.origin.is_empty() {
                return Err("a cors rule needs an origin".into());
            }
            let any = rule.origin == "*";
            if any && rule.credentials {
                return Err(format!(
                    "{what}: credentials cannot be allowed for any origin"
                ));
            }
            if !any && (rule.origin.ends_with('/') || !rule.origin.contains("://")) {
                return Err(format!(
                    "{what}: an origin is scheme://host[:port], as browsers send it"
                ));
            }
            let methods = rule
                .methods
                .iter()
                .map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| format!("{what}: a method is not a token"))?;
            let value = |list: &[String]| {
                HeaderValue::from_str(&list.join(", "))
                    .map_err(|_| format!("{what}: a header name is not a token"))
            };
            let method_names: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
            origins.push(Origin {
                origin: rule.origin.clone(),
                any,
                headers: rule
                    .headers
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                allow_methods: value(&method_names)?,
                allow_headers: value(&rule.headers)?,
                expose: value(&rule.expose)?,
                methods,
                credentials: rule.credentials,
                max_age: HeaderValue::from(rule.max_age_secs),
            });
        }
        Ok(Self(origins))
    }

    /// Whether any origin is configured.
    pub(crate) fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    fn find(&self, origin: &HeaderValue) -> Option<&Origin> {
        let origin = origin.to_str().ok()?;
        self.0
            .iter()
            .find(|o| o.origin.eq_ignore_ascii_case(origin))
            .or_else(|| self.0.iter().find(|o| o.any))
    }
}

/// The middleware: answers preflights, marks answers to configured origins.
pub(crate) async fn layer(State(cors): State<Arc<Cors>>, request: Request, next: Next) -> Response {
    let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
        return next.run(request).await;
    };
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let rules = cors.find(&origin);
    if preflight {
        return match rules {
            Some(rules) => rules.preflight(&origin, request.headers()),
            None => refuse(format!(
                "the origin {:?} may not call this API",
                origin.to_str().unwrap_or("?")
            )),
        };
    }
    let mut response = next.run(request).await;
    if let Some(rules) = rules {
        rules.mark(&origin, response.headers_mut());
        response
            .headers_mut()
            .insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, rules.expose.clone());
    }
    response
}

impl Origin {
    fn preflight(&self, origin: &HeaderValue, asked: &HeaderMap) -> Response {
        let method = asked
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
        let Some(method) = method.filter(|m| self.methods.contains(m)) else {
            return refuse("the origin may not use this method".into());
        };
        let headers: Vec<String> = asked
            .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if let Some(header) = headers.iter().find(|h| !self.headers.contains(h)) {
            return refuse(format!("the origin may not send the header {header:?}"));
        }
        let _ = method;
        let mut response = StatusCode::NO_CONTENT.into_response();
        let out = response.headers_mut();
        self.mark(origin, out);
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.allow_methods.clone(),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            self.allow_headers.clone(),
        );
        out.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        response
    }

    fn mark(&self, origin: &HeaderValue, out: &mut HeaderMap) {
        let allowed = if self.any {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        };
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        if self.credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        out.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

fn refuse(detail: String) -> Response {
    ApiError::new(ErrorCode::PermissionDenied, detail).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_that_cannot_work_are_refused() {
        let rule = |origin: &str, credentials: bool| CorsConfig {
            origin: origin.into(),
            credentials,
            ..CorsConfig::default()
        };
        assert!(Cors::new(&[rule("https://app.example.com", true)]).is_ok());
        assert!(Cors::new(&[rule("*", false)]).is_ok());
        assert!(Cors::new(&[rule("*", true)]).is_err());
        assert!(Cors::new(&[rule("app.example.com", false)]).is_err());
        assert!(Cors::new(&[rule("https://app.example.com/", false)]).is_err());
        assert!(Cors::new(&[rule("", false)]).is_err());
    }
}
