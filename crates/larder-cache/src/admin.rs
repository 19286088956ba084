//! Admin HTTP: `/metrics` (Prometheus text), `/cluster` (the cluster as this node sees it, JSON),
//! `/healthz` (the process answers) and `/readyz` (the node takes traffic; 503 once shutdown
//! has begun). With a token configured, `/metrics` and `/cluster` ask for it as a bearer token;
//! the probes stay open for orchestrators.

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
        .route("/cluster", get(cluster))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(AdminState { node, shutdown })
}

/// Refuses a request without the node's token, when one is set.
fn refused(state: &AdminState, headers: &HeaderMap) -> Option<Response> {
    let given = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    (!larder_util::auth::authorized(&state.node.config.token, given))
        .then(|| (StatusCode::UNAUTHORIZED, "bearer token required\n").into_response())
}

async fn metrics(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(refused) = refused(&state, &headers) {
        return refused;
    }
    let mut body = state.node.metrics.render(&state.node.store.stats());
    if let Some(origins) = &state.node.origins {
        origins.render(&mut body);
    }
    if let Some(cluster) = &state.node.cluster {
        cluster.render(&mut body);
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

/// The cluster as this node sees it: its id, the table's epoch, every member with its status,
/// addresses and partition count, and the partitions moving here.
async fn cluster(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(refused) = refused(&state, &headers) {
        return refused;
    }
    let body = match &state.node.cluster {
        None => serde_json::json!({ "enabled": false }),
        Some(view) => {
            let snapshot = view.snapshot();
            let table = &snapshot.table;
            let members: Vec<_> = table
                .members()
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "id": m.id,
                        "generation": m.generation,
                        "status": m.status.as_str(),
                        "resp": m.resp,
                        "grpc": m.grpc,
                        "admin": m.admin,
                        "partitions": table.partitions_of(&m.id).len(),
                    })
                })
                .collect();
            serde_json::json!({
                "enabled": true,
                "self": view.me().id,
                "epoch": table.epoch(),
                "members": members,
                "partitions_moving": snapshot.moving_count(),
            })
        }
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
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
