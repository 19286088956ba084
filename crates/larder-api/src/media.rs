//! JSON:API 1.1 media type rules (the version this gateway serves, named in every document's
//! top-level `jsonapi` member).
//!
//! * `Content-Type` of a body: `application/vnd.api+json`, whose only parameters may be
//!   `profile` (ignored: profiles do not change what the server does) and `ext` (415: no
//!   extension is supported), or `application/json`; anything else is 415.
//! * `Accept`: when it lists the JSON:API media type, at least one instance must be servable —
//!   no parameter but `profile` (and `q`), no `ext`, a weight above 0 — or the answer is 406,
//!   whatever else the header allows (`*/*` included). Without a JSON:API instance, `*/*`,
//!   `application/*` and `application/json` are served.
//!
//! Field values are read as RFC 9110 lists: commas and semicolons inside quoted strings do not
//! split them.

use axum::http::{HeaderMap, header};
use larder_proto::ErrorCode;

use crate::problem::ApiError;

/// The JSON:API media type.
pub(crate) const JSON_API: &str = "application/vnd.api+json";

/// One media type or range with its parameters (names lowercased, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MediaRange {
    pub(crate) essence: String,
    pub(crate) params: Vec<(String, String)>,
}

impl MediaRange {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn is(&self, essence: &str) -> bool {
        self.essence.eq_ignore_ascii_case(essence)
    }

    /// The weight (`q`), 1 when absent; an unreadable weight counts as 1.
    fn weight(&self) -> f32 {
        self.param("q")
            .and_then(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0)
    }
}

/// Checks a request body's `Content-Type`.
pub(crate) fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |detail: String| Err(ApiError::new(ErrorCode::UnsupportedMediaType, detail));
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return refuse(format!("a body needs Content-Type: {JSON_API}"));
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let types = media_ranges(value.as_bytes());
    let [media] = types.as_slice() else {
        return refuse(format!("Content-Type {text:?} is not one media type"));
    };
    if media.is("application/json") {
        return Ok(());
    }
    if !media.is(JSON_API) {
        return refuse(format!(
            "Content-Type {text:?} is not {JSON_API} or application/json"
        ));
    }
    if let Some((name, _)) = media
        .params
        .iter()
        .find(|(n, _)| n != "ext" && n != "profile")
    {
        return refuse(format!(
            "{JSON_API} takes no parameter {name:?} (only ext and profile)"
        ));
    }
    if media.param("ext").is_some_and(|ext| !ext.trim().is_empty()) {
        return refuse(format!(
            "no JSON:API extension is supported here (Content-Type {text:?})"
        ));
    }
    Ok(())
}

/// Checks `Accept`: fine when absent or when the rules above find a type this API serves.
pub(crate) fn check_accept(headers: &HeaderMap) -> Result<(), ApiError> {
    let mut listed = false;
    let mut json_api = false;
    let mut json_api_servable = false;
    let mut other_servable = false;
    for value in headers.get_all(header::ACCEPT) {
        for media in media_ranges(value.as_bytes()) {
            listed = true;
            if media.is(JSON_API) {
                json_api = true;
                json_api_servable |= media.weight() > 0.0
                    && media.params.iter().all(|(n, v)| {
                        n == "q" || n == "profile" || (n == "ext" && v.trim().is_empty())
                    });
            } else if ["*/*", "application/*", "application/json"]
                .iter()
                .any(|t| media.is(t))
            {
                other_servable |= media.weight() > 0.0;
            }
        }
    }
    let ok = if json_api {
        json_api_servable
    } else {
        !listed || other_servable
    };
    if ok {
        return Ok(());
    }
    let detail = if json_api {
        format!(
            "every {JSON_API} in Accept has parameters this API cannot honour (JSON:API 1.1 \
             allows only profile; no extension is supported); ask for {JSON_API} without them"
        )
    } else {
        format!("Accept allows nothing this API serves; ask for {JSON_API}")
    };
    Err(ApiError::new(ErrorCode::NotAcceptable, detail))
}

/// The media types or ranges of a field value: comma-separated, each `type/subtype` followed by
/// `;name=value` parameters (values may be quoted strings). Elements without a `/` are left
/// out; parameter names are lowercased.
pub(crate) fn media_ranges(value: &[u8]) -> Vec<MediaRange> {
    split_outside_quotes(value, b',')
        .into_iter()
        .filter_map(|element| {
            let mut parts = split_outside_quotes(element, b';').into_iter();
            let essence = String::from_utf8_lossy(parts.next()?.trim_ascii()).into_owned();
            if !essence.contains('/') {
                return None;
            }
            let params = parts
                .filter_map(|p| {
                    let (name, value) = match p.iter().position(|&b| b == b'=') {
                        Some(i) => (&p[..i], &p[i + 1..]),
                        None => (p, &b""[..]),
                    };
                    let name = String::from_utf8_lossy(name.trim_ascii()).to_ascii_lowercase();
                    (!name.is_empty()).then(|| (name, unquote(value.trim_ascii())))
                })
                .collect();
            Some(MediaRange { essence, params })
        })
        .collect()
}

/// Splits `value` at every `sep` that is not inside a quoted string (a backslash escapes the
/// next byte inside quotes).
fn split_outside_quotes(value: &[u8], sep: u8) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &b) in value.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            out.push(&value[start..i]);
            start = i + 1;
        }
    }
    out.push(&value[start..]);
    out
}

/// A parameter value: a quoted string without its quotes and escapes, or the token as it is.
fn unquote(value: &[u8]) -> String {
    let Some(inner) = value
        .strip_prefix(b"\"")
        .map(|v| v.strip_suffix(b"\"").unwrap_or(v))
    else {
        return String::from_utf8_lossy(value).into_owned();
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut escaped = false;
    for &b in inner {
        if !escaped && b == b'\\' {
            escaped = true;
        } else {
            out.push(b);
            escaped = false;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    fn content_types_follow_json_api_1_1() {
        let ok = |v: &str| check_content_type(&headers(header::CONTENT_TYPE, v)).is_ok();
        assert!(ok("application/vnd.api+json"));
        assert!(ok("Application/Vnd.Api+JSON"));
        assert!(ok("application/json"));
        assert!(ok("application/json; charset=utf-8"));
        assert!(ok(
            r#"application/vnd.api+json; profile="https://example.com/p""#
        ));
        assert!(!ok("application/vnd.api+json; charset=utf-8"));
        assert!(!ok(
            r#"application/vnd.api+json; ext="https://example.com/e""#
        ));
        assert!(!ok("text/plain"));
        assert!(!ok("application/json, text/plain"));
        assert!(check_content_type(&HeaderMap::new()).is_err());
    }

    #[test]
    fn accept_follows_json_api_1_1() {
        let ok = |v: &str| check_accept(&headers(header::ACCEPT, v)).is_ok();
        assert!(check_accept(&HeaderMap::new()).is_ok());
        assert!(ok("application/vnd.api+json"));
        assert!(ok("*/*"));
        assert!(ok("application/json"));
        assert!(ok("text/html, application/*;q=0.5"));
        assert!(ok(
            "application/vnd.api+json; ext=x, application/vnd.api+json"
        ));
        assert!(ok(
            r#"application/vnd.api+json; profile="https://a, https://b""#
        ));
        assert!(ok("application/vnd.api+json;q=0.9"));
        // Every JSON:API instance has a parameter it cannot honour: 406, even beside */*.
        assert!(!ok("application/vnd.api+json; charset=utf-8, */*"));
        assert!(!ok(r#"application/vnd.api+json; ext="https://x", */*"#));
        assert!(!ok("application/vnd.api+json;q=0, */*"));
        assert!(!ok("text/html"));
        assert!(!ok("application/json;q=0"));
    }

    #[test]
    fn lists_split_outside_quotes() {
        let ranges = media_ranges(br#"a/b; x="1,2;3" ; Y=z, c/d,nothing, e/f;q"#);
        assert_eq!(ranges.len(), 3);
        assert_eq!(
            ranges[0].params,
            [("x".into(), "1,2;3".into()), ("y".into(), "z".into())]
        );
        assert_eq!(ranges[1].essence, "c/d");
        assert_eq!(ranges[2].params, [("q".into(), String::new())]);
        assert_eq!(media_ranges(br#"a/b;x="un\"ter"#)[0].params[0].1, "un\"ter");
    }
}
