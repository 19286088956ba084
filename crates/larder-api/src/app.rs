//! The router: document routes, health, metrics and problem pages, behind one stack of limits
//! (load shedding past `max_concurrency`, a request timeout), CORS, a metrics layer and,
//! outermost, the request's span when it is traced; the data and the metrics behind
//! credentials with scopes and rate limits. Every error, including unknown routes and methods,
//! is a problem document.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderValue, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use larder_proto::ErrorCode;
use tracing::Instrument as _;

use crate::auth;
use crate::layers::{Limits, Track};
use crate::problem::{self, ApiError};
use crate::routes;
use crate::state::AppState;

/// The gateway's routes over `state`. The credentials and rate-limits middleware, and CORS,
/// are in the stack only when configured.
pub(crate) fn app(state: AppState) -> Router {
    let timeout = Duration::from_millis(state.config.request_timeout_ms.max(1));
    let limits = Limits::new(state.config.max_concurrency, timeout);
    // The data and the metrics need a credential with the right scope (when credentials are
    // configured) and count against the rate limits; the probes, the problem pages and the
    // API's description stay open.
    let mut guarded = Router::new()
        .route("/v1/{collection}", get(routes::list).post(routes::create))
        // A static segment wins over `{id}`: no document may have the id `changes`.
        .route(
            "/v1/{collection}/changes",
            get(crate::feed::stream::changes),
        )
        .route(
            "/v1/{collection}/{id}",
            get(routes::read)
                .patch(routes::update)
                .delete(routes::delete),
        )
        .route("/metrics", get(metrics));
    if state.credentials.enabled() || state.limits.enabled() {
        guarded = guarded.route_layer(middleware::from_fn_with_state(state.clone(), guard));
    }
    let mut app = Router::new()
        .merge(guarded)
        .route("/", get(index))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/problems/{slug}", get(problem_page))
        .route("/openapi.json", crate::openapi::route(&state.config))
        .route("/docs", crate::docs_page::route())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(limits);
    if state.cors.enabled() {
        app = app.layer(middleware::from_fn_with_state(
            state.cors.clone(),
            crate::cors::layer,
        ));
    }
    app.layer(Track(state.clone()))
        .layer(middleware::from_fn(trace))
        .with_state(state)
}

/// Lets a request through when its credential has the scope it needs and its rate limit has
/// room; answers 401, 403 or 429 otherwise. The body is not read before: a refused write's body
/// never is.
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let need = auth::need(request.method(), request.uri().path());
    let principal = if state.credentials.enabled() {
        let now = u64::try_from(state.now_ms() / 1000).unwrap_or(0);
        let authorization = request.headers().get(header::AUTHORIZATION);
        match state.credentials.authenticate(authorization, now) {
            Ok(principal) if principal.allows(&need) => Some(principal),
            Ok(principal) => return refuse(&request, auth::forbidden(&principal, &need)),
            Err(refusal) => return refuse(&request, refusal.into_error()),
        }
    } else {
        None
    };
    let granted = match state
        .limits
        .check(principal.as_deref(), request.extensions(), &need)
    {
        Ok(granted) => granted,
        Err(refused) => return refuse(&request, refused),
    };
    let mut response = next.run(request).await;
    if let Some(granted) = granted {
        granted.write(response.headers_mut());
    }
    response
}

/// The answer to a refused request. Its body (if it has one) is not read, so on HTTP/1 the
/// connection closes after the answer rather than take in a body nobody asked for.
fn refuse(request: &Request, error: ApiError) -> Response {
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|l| l.as_bytes() != b"0");
    let error = if has_body && request.version() <= axum::http::Version::HTTP_11 {
        error.with_header(header::CONNECTION, HeaderValue::from_static("close"))
    } else {
        error
    };
    error.into_response()
}

/// `GET /`: where to go from here.
async fn index(State(state): State<AppState>) -> Response {
    let mut names: Vec<&str> = state.collections.keys().map(String::as_str).collect();
    names.sort_unstable();
    let collections: Vec<String> = names.iter().map(|n| format!("/v1/{n}")).collect();
    let body = serde_json::json!({
        "name": "larder api",
        "docs": "/docs",
        "openapi": "/openapi.json",
        "collections": collections,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
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
        tracing::warn!(%err, "readiness: the database does not answer");
        return ApiError::unavailable("the database does not answer").into_response();
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
    let mut text = state.metrics.render(&breakers, state.db.inline_counts());
    state.db.render_writer(&mut text);
    if let Some(near) = state.cache.near() {
        near.render(&mut text);
    }
    if let Some(peers) = &state.peers {
        peers.render(&mut text);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
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
    let feed = uri.path().trim_end_matches('/').ends_with("/changes");
    let allow = match (uri.path().starts_with("/v1/"), segments) {
        (true, 2) => "GET, HEAD, POST",
        (true, 3) if feed => "GET, HEAD",
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
    response
}
