//! The router: document routes, health, metrics and problem pages, behind one stack of limits
//! (load shedding past `max_concurrency`, a request timeout), a metrics layer and, outermost,
//! the request's span when it is traced. Every error,
//! including unknown routes and methods, is a problem document.

use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use larder_proto::ErrorCode;
use tower::ServiceBuilder;
use tracing::Instrument as _;

use crate::problem::{self, ApiError};
use crate::routes;
use crate::state::AppState;

/// The gateway's routes over `state`.
pub(crate) fn app(state: AppState) -> Router {
    let timeout = Duration::from_millis(state.config.request_timeout_ms.max(1));
    let limits = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|err: tower::BoxError| async move {
            if err.is::<tower::timeout::error::Elapsed>() {
                ApiError::new(ErrorCode::Overloaded, "the request took too long")
            } else {
                ApiError {
                    retry_after: Some(1),
                    ..ApiError::new(ErrorCode::Overloaded, "too many requests in progress")
                }
            }
        }))
        .load_shed()
        .concurrency_limit(state.config.max_concurrency.max(1))
        .timeout(timeout);
    // The data and the metrics need the token (when one is set); the probes, the problem
    // pages and the API's description stay open.
    let guarded = Router::new()
        .route("/v1/{collection}", get(routes::list).post(routes::create))
        .route(
            "/v1/{collection}/{id}",
            get(routes::read)
                .patch(routes::update)
                .delete(routes::delete),
        )
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(guarded)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/problems/{slug}", get(problem_page))
        .route("/openapi.json", crate::openapi::route(&state.config))
        .route("/docs", crate::docs_page::route())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(limits)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(middleware::from_fn(trace))
        .with_state(state)
}

/// Refuses a request without the configured bearer token with 401.
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if authorized(
        &state.config.token,
        request
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
    ) {
        next.run(request).await
    } else {
        unauthorized().into_response()
    }
}

/// Whether `method` on `path` is a write the token guards: `POST /v1/{collection}`, `PATCH`
/// or `DELETE /v1/{collection}/{id}` (what the router's guarded routes take with a body).
pub(crate) fn guarded_write(method: &str, path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/v1/") else {
        return false;
    };
    let mut parts = rest.split('/');
    match (method, parts.next(), parts.next(), parts.next()) {
        ("POST", Some(collection), None, None) => !collection.is_empty(),
        ("PATCH" | "DELETE", Some(collection), Some(id), None) => {
            !collection.is_empty() && !id.is_empty()
        }
        _ => false,
    }
}

/// The answer to a request without the token.
pub(crate) fn unauthorized() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthenticated,
        "this gateway needs Authorization: Bearer <token>",
    )
}

pub(crate) use larder_util::auth::authorized;

/// Counts every response by route template, method and status.
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Both clones are cheap (an `Arc` and a standard method), so counting allocates nothing.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    let ns = crate::metrics::nanos(started.elapsed());
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let status = response.status().as_u16();
    state.metrics.record(route, method.as_str(), status, ns);
    response
}

/// The span of a traced request (see `larder_proto::trace`) around everything the router does
/// for it, child of the caller's span when the request carries a `traceparent`; untraced
/// requests pass straight through.
async fn trace(request: Request, next: Next) -> Response {
    let span = larder_proto::trace::request(
        || larder_proto::trace::from_headers(request.headers()),
        || {
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str);
            let method = crate::metrics::method_label(request.method().as_str());
            tracing::info_span!(
                "http",
                otel.name = %format_args!("{method} {route}"),
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                http.request.method = method,
                http.route = route,
                url.path = request.uri().path(),
                http.response.status_code = tracing::field::Empty,
            )
        },
    );
    if span.is_none() {
        return next.run(request).await;
    }
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    span.in_scope(|| tracing::debug!(status, micros, "request answered"));
    response
}

async fn ready(State(state): State<AppState>) -> Response {
    if let Err(err) = state.db.ping().await {
        return ApiError::unavailable(format!("database: {err}")).into_response();
    }
    if let Some(client) = state.cache.client()
        && !client.healthy()
    {
        return ApiError::unavailable("cache nodes unreachable; reads go to the database")
            .into_response();
    }
    "ready\n".into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let breakers: Vec<(String, u8)> = state
        .cache
        .client()
        .map(|client| {
            client
                .breaker_states()
                .into_iter()
                .map(|(node, s)| (format!("cache:{node}"), s as u8))
                .collect()
        })
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&breakers, state.db.inline_counts()),
    )
        .into_response()
}

async fn problem_page(Path(slug): Path<String>) -> Response {
    match problem::describe(&slug) {
        Some((code, text)) => {
            format!("{} ({}): {text}\n", code.title(), code.http_status()).into_response()
        }
        None => ApiError::not_found(format!("no problem type {slug:?}")).into_response(),
    }
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route {}", uri.path()))
}

async fn method_not_allowed(uri: Uri) -> Response {
    let segments = uri.path().trim_matches('/').split('/').count();
    let allow = match (uri.path().starts_with("/v1/"), segments) {
        (true, 2) => "GET, HEAD, POST",
        (true, 3) => "GET, HEAD, PATCH, DELETE",
        _ => "GET, HEAD",
    };
    let mut response = ApiError {
        allow: Some(allow),
        ..ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("{} does not take this method", uri.path()),
        )
    }
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    let _ = StatusCode::METHOD_NOT_ALLOWED;
    response
}

#[cfg(test)]
mod tests {
    use super::guarded_write;

    #[test]
    fn guarded_writes_are_the_routes_that_take_bodies() {
        assert!(guarded_write("POST", "/v1/products"));
        assert!(guarded_write("PATCH", "/v1/products/42"));
        assert!(guarded_write("DELETE", "/v1/products/42"));
        for (method, path) in [
            ("POST", "/v1/products/42"),
            ("PUT", "/v1/products/42"),
            ("PATCH", "/v1/products"),
            ("POST", "/v1/a/b/c"),
            ("POST", "/v1/"),
            ("POST", "/v1/products/"),
            ("POST", "/healthz"),
            ("GET", "/v1/products"),
        ] {
            assert!(!guarded_write(method, path), "{method} {path}");
        }
    }
}
