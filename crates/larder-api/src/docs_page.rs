//! `GET /docs`: a page, served from the binary, that renders `/openapi.json` readably (paths,
//! parameters, schemas, curl examples) with a small inline script and nothing from elsewhere.

use axum::http::header;
use axum::routing::{MethodRouter, get};

use crate::state::AppState;

/// The page: inline script and style only.
const DOCS_HTML: &str = include_str!("../assets/docs.html");
/// The page may run its own inline code and fetch from this origin, nothing else.
const DOCS_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
                        style-src 'unsafe-inline'; connect-src 'self'";

/// The `/docs` route.
pub(crate) fn route() -> MethodRouter<AppState> {
    get(|| async {
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CONTENT_SECURITY_POLICY, DOCS_CSP),
            ],
            DOCS_HTML,
        )
    })
}
