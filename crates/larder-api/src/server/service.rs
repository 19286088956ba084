//! The hyper service of one connection: checks each request's `Host` and `Expect`
//! ([`crate::checks`]: refusals are counted under the route `unrouted`), hands a document read
//! to [`crate::app::DocReads`] and every other request to the router, tells the socket a request is open until its response body is done
//! ([`super::io::Activity`]), and gives the handlers the client's address when the rate limits
//! key by it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, Request, Response, header};
use axum::response::IntoResponse;
use axum::routing::future::RouteFuture;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tower::Service;

use super::io::{Activity, OpenRequest};
use crate::app::{self, App, DocReads};
use crate::checks;
use crate::state::AppState;

/// Answers a connection's requests.
#[derive(Clone)]
pub(super) struct Handler {
    app: App,
    state: AppState,
    activity: Arc<Activity>,
    /// The client's address, given to handlers that key by it (rate limits without
    /// credentials) when `keyed_by_address`.
    peer: SocketAddr,
    keyed_by_address: bool,
}

impl Handler {
    pub(super) fn new(
        app: &App,
        state: &AppState,
        activity: Arc<Activity>,
        peer: SocketAddr,
    ) -> Self {
        Self {
            app: app.clone(),
            keyed_by_address: state.limits.keys_by_address(),
            state: state.clone(),
            activity,
            peer,
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for Handler {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: Request<Incoming>) -> Answer {
        let open = Some(self.activity.begin());
        let max_body = self.state.config.max_body_bytes;
        if let Err(error) = checks::check(request.version(), request.headers(), max_body) {
            let method = crate::metrics::method_label(request.method().as_str());
            self.state
                .metrics
                .record_refusal(method, error.code.http_status());
            // The client is not speaking the protocol as it should: this answer is its last.
            let error = error.with_header(header::CONNECTION, HeaderValue::from_static("close"));
            return Answer {
                inner: Inner::Refused(Some(error.into_response())),
                open,
            };
        }
        let mut request = request.map(Body::new);
        if self.keyed_by_address {
            request.extensions_mut().insert(ConnectInfo(self.peer));
        }
        let inner = match &self.app.reads {
            Some(reads)
                if request.method() == Method::GET && app::is_doc_read(request.uri().path()) =>
            {
                Inner::Read(reads.clone().call(request))
            }
            _ => Inner::Routed(self.app.router.clone().call(request)),
        };
        Answer { inner, open }
    }
}

/// The answer to one request, still open.
pub(super) struct Answer {
    inner: Inner,
    open: Option<OpenRequest>,
}

enum Inner {
    Routed(RouteFuture<Infallible>),
    Read(<DocReads as Service<axum::extract::Request>>::Future),
    /// Refused before routing (taken when answered).
    Refused(Option<axum::response::Response>),
}

impl Future for Answer {
    type Output = Result<Response<Tracked>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match &mut self.inner {
            Inner::Routed(call) => match ready!(Pin::new(call).poll(cx)) {
                Ok(response) => response,
                Err(never) => match never {},
            },
            Inner::Read(read) => match ready!(Pin::new(read).poll(cx)) {
                Ok(response) => response,
                Err(never) => match never {},
            },
            Inner::Refused(response) => response.take().unwrap_or_default(),
        };
        let open = self.open.take();
        Poll::Ready(Ok(response.map(|body| Tracked { body, _open: open })))
    }
}

/// A response body that keeps its request open until hyper is done with it.
pub(super) struct Tracked {
    body: Body,
    _open: Option<OpenRequest>,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Counts what ended a connection with an error the client caused: a request hyper could not
/// parse was answered by hyper itself (400, or 431 for a head over the limits), under the route
/// `unrouted`.
pub(super) fn record_connection_error(state: &AppState, err: &(dyn std::error::Error + 'static)) {
    let Some(err) = err.downcast_ref::<hyper::Error>() else {
        return;
    };
    if err.is_parse_too_large() {
        state.metrics.record_refusal("OTHER", 431);
    } else if err.is_parse() {
        state.metrics.record_refusal("OTHER", 400);
    } else {
        tracing::debug!(%err, "connection ended with an error");
    }
}
