//! Admin HTTP: `/metrics` (Prometheus text), `/healthz` (the process answers) and `/readyz`
//! (the node takes traffic; 503 once shutdown has begun). With a token configured, `/metrics`
//! asks for it as a bearer token; the probes stay open for orchestrators.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::node::Node;

#[derive(Clone)]
struct AdminState {
    node: Arc<Node>,
    shutdown: CancellationToken,
}

/// The admin routes.
pub(crate) fn router(node: Arc<Node>, shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(AdminState { node, shutdown })
}

async fn metrics(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let given = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if !larder_util::auth::authorized(&state.node.config.token, given) {
        return (StatusCode::UNAUTHORIZED, "bearer token required\n").into_response();
    }
    let mut body = state.node.metrics.render(&state.node.store.stats());
    if let Some(origins) = &state.node.origins {
        origins.render(&mut body);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn ready(State(state): State<AdminState>) -> Response {
    if state.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        "ready\n".into_response()
    }
}
