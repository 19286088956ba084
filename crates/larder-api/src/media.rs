//! JSON:API media type rules. Requests with a body must say `application/vnd.api+json`
//! without media type parameters (415 otherwise; `application/json` is accepted too). An
//! `Accept` that lists the JSON:API type only with parameters is refused with 406, as the
//! specification requires; `*/*`, `application/*` and `application/json` are served.

use axum::http::{HeaderMap, header};
use larder_proto::ErrorCode;

use crate::problem::ApiError;

/// The JSON:API media type.
pub(crate) const JSON_API: &str = "application/vnd.api+json";

/// Checks a request body's `Content-Type`.
pub(crate) fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("a body needs Content-Type: {JSON_API}"),
        ));
    };
    let text = value.to_str().unwrap_or_default();
    let (essence, params) = split(text);
    let ok = if essence.eq_ignore_ascii_case(JSON_API) {
        params.is_empty()
    } else {
        essence.eq_ignore_ascii_case("application/json")
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "Content-Type {text:?} is not {JSON_API} without parameters or application/json"
            ),
        ))
    }
}

/// Checks `Accept`: fine when absent or when any listed type is servable.
pub(crate) fn check_accept(headers: &HeaderMap) -> Result<(), ApiError> {
    let mut listed = false;
    for value in headers.get_all(header::ACCEPT) {
        let text = value.to_str().unwrap_or_default();
        for item in text.split(',') {
            let (essence, params) = split(item);
            if essence.is_empty() {
                continue;
            }
            listed = true;
            let quality_zero = params.iter().any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("q") && v.trim().parse::<f32>() == Ok(0.0)
                })
            });
            if quality_zero {
                continue;
            }
            let servable = if essence.eq_ignore_ascii_case(JSON_API) {
                params
                    .iter()
                    .all(|p| p.trim_start().to_ascii_lowercase().starts_with("q="))
            } else {
                ["*/*", "application/*", "application/json"]
                    .iter()
                    .any(|t| essence.eq_ignore_ascii_case(t))
            };
            if servable {
                return Ok(());
            }
        }
    }
    if listed {
        Err(ApiError::new(
            ErrorCode::NotAcceptable,
            format!("Accept allows nothing this API serves; ask for {JSON_API}"),
        ))
    } else {
        Ok(())
    }
}

/// A media type's essence and its parameters.
fn split(text: &str) -> (&str, Vec<&str>) {
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    let params = parts.map(str::trim).filter(|p| !p.is_empty()).collect();
    (essence, params)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn content_types_follow_json_api() {
        let ok = |v: &str| check_content_type(&headers(header::CONTENT_TYPE, v)).is_ok();
        assert!(ok("application/vnd.api+json"));
        assert!(ok("application/json"));
        assert!(ok("application/json; charset=utf-8"));
        assert!(!ok("application/vnd.api+json; charset=utf-8"));
        assert!(!ok("text/plain"));
        assert!(check_content_type(&HeaderMap::new()).is_err());
    }

    #[test]
    fn accept_follows_json_api() {
        let ok = |v: &str| check_accept(&headers(header::ACCEPT, v)).is_ok();
        assert!(check_accept(&HeaderMap::new()).is_ok());
        assert!(ok("application/vnd.api+json"));
        assert!(ok("*/*"));
        assert!(ok("application/json"));
        assert!(ok(
            "application/vnd.api+json; ext=x, application/vnd.api+json"
        ));
        assert!(!ok("application/vnd.api+json; ext=\"https://x\""));
        assert!(!ok("text/html"));
        assert!(!ok("application/json;q=0"));
    }
}
