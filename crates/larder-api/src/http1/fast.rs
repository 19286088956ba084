//! The one request served without the router: `GET` (or `HEAD`) of a document that the
//! in-process cache holds fresh, with no query, no conditional header and an `Accept` that
//! needs no negotiation. The answer is written from the cache entry straight into the
//! connection's output, byte for byte what the router's read handler would send; any other
//! request, and any outcome but a fresh hit, goes to the router.
//!
//! Such a request never waits, so the router's concurrency limit and request timeout (which
//! bound waiting) do not apply to it; it is counted in the metrics like any other.

use crate::media::JSON_API;
use crate::state::AppState;
use std::time::SystemTime;

use crate::{app, cache, doc};

use super::respond::{self, DateLine, Persist};
use larder_proto::http1::{BodyLength, Head};

/// Serves `head` into `out` if it is a fresh in-process cache hit; `false` (with `out`
/// unchanged) for the router to answer. `key` is scratch space for the cache key.
/// `now` dates the response and decides freshness.
pub(crate) fn read(
    state: &AppState,
    head: &Head<'_>,
    persist: Persist,
    now: SystemTime,
    (date, key, out): (&mut DateLine, &mut String, &mut Vec<u8>),
) -> bool {
    let head_only = match head.method {
        "GET" => false,
        "HEAD" => true,
        _ => return false,
    };
    if head.body != BodyLength::Length(0) {
        return false;
    }
    let Some((name, id)) = head
        .target
        .strip_prefix("/v1/")
        .and_then(|rest| rest.split_once('/'))
    else {
        return false;
    };
    // A valid id has no '/', '?', '%' or '#': nothing to decode and no query.
    if !doc::valid_id(id) || !plain(head.headers, &state.config.token) {
        return false;
    }
    let Some(collection) = state.collections.get(name) else {
        return false;
    };
    cache::write_key(key, name, id);
    let served = state
        .cache
        .read_fresh(&collection.config, key.as_bytes(), |stored, version| {
            let Ok(stored) = std::str::from_utf8(stored) else {
                return false; // the router answers 500
            };
            let parts = doc::single_parts(stored, name, id);
            respond::status_line(axum::http::StatusCode::OK, persist, date, now, out);
            out.extend_from_slice(b"content-type: ");
            out.extend_from_slice(JSON_API.as_bytes());
            out.extend_from_slice(b"\r\netag: \"");
            out.extend_from_slice(itoa::Buffer::new().format(version).as_bytes());
            out.extend_from_slice(b"\"\r\n");
            respond::end_head(parts.iter().map(|p| p.len()).sum(), out);
            if !head_only {
                parts
                    .iter()
                    .for_each(|p| out.extend_from_slice(p.as_bytes()));
            }
            true
        });
    served == Some(true)
}

/// Whether the request's headers ask for nothing the read handler would have to weigh: the
/// token if one is set, no conditional header, and an `Accept` (if any) that is exactly one
/// servable type.
fn plain(headers: &[httparse::Header<'_>], token: &str) -> bool {
    let mut authorization = None;
    let simple = headers.iter().all(|h| {
        if h.name.eq_ignore_ascii_case("accept") {
            let value = h.value.trim_ascii();
            value == b"*/*" || value == JSON_API.as_bytes() || value == b"application/json"
        } else if h.name.eq_ignore_ascii_case("authorization") {
            authorization.replace(h.value).is_none()
        } else {
            !h.name.eq_ignore_ascii_case("if-none-match")
        }
    });
    simple && app::authorized(token, authorization)
}
