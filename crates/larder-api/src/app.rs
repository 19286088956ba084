//! The router: document routes, health, metrics and problem pages, behind one stack of limits
//! (load shedding past `max_concurrency`, a request timeout), CORS, a metrics layer and,
//! outermost, the request's span when it is traced; the data and the metrics behind
//! credentials with scopes and rate limits. Every error, including unknown routes and methods,
//! is a problem document.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use larder_proto::ErrorCode;
use tower::{Service, ServiceBuilder};

use crate::auth;
use crate::layers::{Limited, Limits, Trace, Traced, Track, Tracked};
use crate::limits::Granted;
use crate::problem::{self, ApiError};
use crate::routes;
use crate::state::AppState;

/// The gateway's routes over `state`. The credentials and rate-limits middleware, and CORS,
/// are in the stack only when configured.
pub(crate) fn app(state: AppState) -> App {
    let timeout = Duration::from_millis(state.config.request_timeout_ms.max(1));
    let limits = Limits::new(state.config.max_concurrency, timeout);
    let guarded_routes = state.credentials.enabled() || state.limits.enabled();
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
            DOC_ROUTE,
            get(routes::read)
                .patch(routes::update)
                .delete(routes::delete),
        )
        .route("/metrics", get(metrics));
    if guarded_routes {
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
        .layer(limits.clone());
    if state.cors.enabled() {
        app = app.layer(middleware::from_fn_with_state(
            state.cors.clone(),
            crate::cors::layer,
        ));
    }
    // The same stack around the same handler, minus the routing (and CORS, whose answers to
    // browsers then all go through the router).
    let reads = (!state.cors.enabled()).then(|| {
        let read = ReadDoc {
            state: state.clone(),
            guarded: guarded_routes,
        };
        ServiceBuilder::new()
            .layer(Trace {
                route: Some(DOC_ROUTE),
            })
            .layer(Track::fixed(state.clone(), DOC_ROUTE))
            .layer(limits)
            .service(read)
    });
    let router = app
        .layer(Track::matched(state.clone()))
        .layer(Trace { route: None })
        .with_state(state);
    App { router, reads }
}

/// The route of a document read.
pub(crate) const DOC_ROUTE: &str = "/v1/{collection}/{id}";

/// What answers the gateway's requests: the router, and the commonest request (a document
/// read) without it. Routing, the path parameters it collects, and the boxed service and
/// future of each layer it wraps around every route were a tenth of the CPU of a cache hit;
/// [`DocReads`] is the same layers (span, metrics, limits, credentials and rate limits) around
/// the same handler, [`routes::read`], as types instead of boxes.
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) router: Router,
    /// `None` when CORS is configured (see [`app`]).
    pub(crate) reads: Option<DocReads>,
}

/// The stack that answers document reads without the router (see [`App`]).
pub(crate) type DocReads = Traced<Tracked<Limited<ReadDoc>>>;

/// Whether the router would send a request for `path` to [`routes::read`] on a `GET`: two
/// non-empty segments after `/v1/`, the second not the change feed's.
pub(crate) fn is_doc_read(path: &str) -> bool {
    let Some((collection, id)) = path.strip_prefix("/v1/").and_then(|p| p.split_once('/')) else {
        return false;
    };
    !collection.is_empty() && !id.is_empty() && !id.contains('/') && id != crate::feed::SEGMENT
}

/// [`routes::read`] behind the credentials check and the rate limits, as the router's
/// `guard` puts it.
#[derive(Clone)]
pub(crate) struct ReadDoc {
    state: AppState,
    guarded: bool,
}

impl Service<Request> for ReadDoc {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let state = self.state.clone();
        let guarded = self.guarded;
        Box::pin(async move {
            let granted = if guarded {
                match admit(&state, &request) {
                    Ok(granted) => granted,
                    Err(refused) => return Ok(refuse(&request, refused)),
                }
            } else {
                None
            };
            let mut response = routes::read(State(state), request).await.into_response();
            if let Some(granted) = granted {
                granted.write(response.headers_mut());
            }
            Ok(response)
        })
    }
}

async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let granted = match admit(&state, &request) {
        Ok(granted) => granted,
        Err(refused) => return refuse(&request, refused),
    };
    let mut response = next.run(request).await;
    if let Some(granted) = granted {
        granted.write(response.headers_mut());
    }
    response
}

/// The credentials check and the rate limits: what the answer must say of the limit, or the
/// refusal.
fn admit(state: &AppState, request: &Request) -> Result<Option<Granted>, ApiError> {
    let need = auth::need(request.method(), request.uri().path());
    let principal = if state.credentials.enabled() {
        let now = u64::try_from(state.now_ms() / 1000).unwrap_or(0);
        let authorization = request.headers().get(header::AUTHORIZATION);
        match state.credentials.authenticate(authorization, now) {
            Ok(principal) if principal.allows(&need) => Some(principal),
            Ok(principal) => return Err(auth::forbidden(&principal, &need)),
            Err(refusal) => return Err(refusal.into_error()),
        }
    } else {
        None
    };
    state
        .limits
        .check(principal.as_deref(), request.extensions(), &need)
}

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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{HeaderMap, Method, StatusCode};
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;
    use crate::config::{ApiConfig, ApiKeyConfig, CollectionConfig, RateLimitConfig};

    /// A gateway over a new SQLite file with one collection holding the document `42`.
    async fn gateway(name: &str, keys: Vec<ApiKeyConfig>, limits: Vec<RateLimitConfig>) -> App {
        let db = std::env::temp_dir().join(format!("larder-app-{name}-{}.db", std::process::id()));
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        let mut config = ApiConfig {
            database: format!("sqlite://{}?mode=rwc", db.display()),
            collections: vec![CollectionConfig {
                name: "products".into(),
                ..CollectionConfig::default()
            }],
            ..ApiConfig::default()
        };
        config.keys = keys;
        config.rate_limits = limits;
        let state = crate::build(config, crate::Options::default(), false)
            .await
            .unwrap();
        let app = app(state);
        let create = Request::builder()
            .method(Method::POST)
            .uri("/v1/products")
            .header(header::CONTENT_TYPE, "application/vnd.api+json")
            .header(header::AUTHORIZATION, "Bearer writer-secret")
            .body(Body::from(
                r#"{"data":{"type":"products","id":"42","attributes":{"name":"a"}}}"#,
            ))
            .unwrap();
        let created = app.router.clone().oneshot(create).await.unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        app
    }

    /// Status, headers and body; but `date`, and `content-length`, which the router's
    /// answers carry and hyper writes from the body's exact length when an answer does not.
    async fn answer(response: Response) -> (StatusCode, HeaderMap, Vec<u8>) {
        let (parts, body) = response.into_parts();
        let mut headers = parts.headers;
        headers.remove(header::DATE);
        headers.remove(header::CONTENT_LENGTH);
        let body = body.collect().await.unwrap().to_bytes().to_vec();
        (parts.status, headers, body)
    }

    fn get(path: &str, headers: &[(&str, &str)]) -> Request {
        let mut request = Request::builder().uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(Body::empty()).unwrap()
    }

    /// Every request that [`is_doc_read`] takes from the router gets from [`DocReads`] the
    /// answer the router gives it, credentials, scopes and rate limits included; the paths
    /// it leaves to the router include the change feed's and other shapes.
    #[tokio::test]
    async fn document_reads_without_the_router_answer_as_the_router_does() {
        let hash = |secret: &str| {
            let digest = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
            digest
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let key = |name: &str, scopes: &[&str]| ApiKeyConfig {
            name: name.into(),
            sha256: hash(&format!("{name}-secret")),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        };
        let keys = vec![
            key("writer", &["products:write", "products:read"]),
            key("reader", &["products:read"]),
            key("other", &["orders:read"]),
        ];
        let limits = vec![RateLimitConfig {
            scope: "products:read".into(),
            per_second: 1,
            burst: 1000,
        }];
        let paths = [
            "/v1/products/42",
            "/v1/products/43",
            "/v1/products/%34%32",
            "/v1/products/42?fields[products]=name",
            "/v1/products/42?bad=1",
            "/v1/nothing/42",
            "/v1/products/a%2Fb",
            "/v1/products/changes",
            "/v1/products/42/",
            "/v1/products//",
            "/v1//42",
            "/v1/products",
            "/healthz",
        ];
        let headers: [&[(&str, &str)]; 5] = [
            &[("authorization", "Bearer reader-secret")],
            &[
                ("authorization", "Bearer reader-secret"),
                ("if-none-match", "\"1\""),
            ],
            &[
                ("authorization", "Bearer reader-secret"),
                ("accept", "text/html"),
            ],
            &[("authorization", "Bearer other-secret")],
            &[],
        ];
        for (name, keys, limits) in [("open", Vec::new(), Vec::new()), ("guarded", keys, limits)] {
            let app = gateway(name, keys, limits).await;
            let reads = app.reads.clone().expect("no CORS: reads skip the router");
            let mut taken = 0;
            for path in paths {
                if !is_doc_read(path.split('?').next().unwrap()) {
                    continue;
                }
                taken += 1;
                for headers in headers {
                    let routed = app.router.clone().oneshot(get(path, headers));
                    let mut routed = answer(routed.await.unwrap()).await;
                    let read = reads.clone().oneshot(get(path, headers));
                    let mut read = answer(read.await.unwrap()).await;
                    // Both count against the same limit: the second answer has one less left
                    // (or as many, when the one request a second it earns came in between).
                    let left = |answer: &mut (StatusCode, HeaderMap, Vec<u8>)| {
                        let value = answer.1.remove("ratelimit")?;
                        let value = value.to_str().unwrap();
                        let (policy, rest) = value.split_once(";r=").unwrap();
                        let (left, _reset) = rest.split_once(';').unwrap();
                        Some((policy.to_owned(), left.parse::<i64>().unwrap()))
                    };
                    match (left(&mut routed), left(&mut read)) {
                        (Some((routed_policy, routed_left)), Some((read_policy, read_left))) => {
                            assert_eq!(routed_policy, read_policy);
                            let spent = routed_left - read_left;
                            assert!((0..=1).contains(&spent), "{name}: GET {path}: {spent}");
                        }
                        (None, None) => {}
                        other => panic!("{name}: GET {path}: ratelimit on one answer: {other:?}"),
                    }
                    assert_eq!(routed, read, "{name}: GET {path} with {headers:?}");
                }
            }
            assert_eq!(taken, 7, "{name}: the paths shaped as a document read");
        }
    }

    /// Reads without the router count against the rate limits: past the burst, 429.
    #[tokio::test]
    async fn document_reads_without_the_router_are_rate_limited() {
        let limits = vec![RateLimitConfig {
            scope: "*".into(),
            per_second: 1,
            burst: 3,
        }];
        let app = gateway("limited", Vec::new(), limits).await;
        let reads = app.reads.clone().unwrap();
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let read = reads
                .clone()
                .oneshot(get("/v1/products/42", &[]))
                .await
                .unwrap();
            statuses.push(read.status());
        }
        // The create in `gateway` took one of the three.
        assert_eq!(statuses[..2], [StatusCode::OK; 2]);
        assert_eq!(statuses[2], StatusCode::TOO_MANY_REQUESTS);
    }
}
