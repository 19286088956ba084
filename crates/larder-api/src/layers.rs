//! The two layers every request passes, written for what a cache hit costs (one allocation-free
//! call each, no timer unless the request waits):
//!
//! * [`Limits`]: past `max_concurrency` requests in progress a request is shed at once with
//!   503 and `Retry-After`; a request that takes longer than `request_timeout_ms` gets 503. The
//!   timer is armed only when the request first has to wait (a cache hit never does), so a
//!   request that is answered at once costs two atomic operations here.
//! * [`Track`]: counts every answer by route template, method and status, and its latency.
//! * [`Trace`]: the request's span when it is traced; a request that is not (tracing off, or
//!   not sampled) passes straight through, with no boxed future and no span.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use larder_proto::ErrorCode;
use tokio::time::Sleep;
use tower::{Layer, Service};
use tracing::Instrument as _;

use crate::problem::ApiError;
use crate::state::AppState;

/// Sheds requests past a concurrency limit and bounds the time a request may take.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    in_progress: Arc<AtomicUsize>,
    max: usize,
    timeout: Duration,
}

impl Limits {
    pub(crate) fn new(max: usize, timeout: Duration) -> Self {
        Self {
            in_progress: Arc::default(),
            max: max.max(1),
            timeout,
        }
    }
}

impl<S> Layer<S> for Limits {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Limited<S> {
        Limited {
            inner,
            limits: self.clone(),
        }
    }
}

/// A service behind [`Limits`].
#[derive(Debug, Clone)]
pub(crate) struct Limited<S> {
    inner: S,
    limits: Limits,
}

impl<S> Service<Request> for Limited<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = LimitedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let limits = &self.limits;
        if limits.in_progress.fetch_add(1, Ordering::AcqRel) >= limits.max {
            limits.in_progress.fetch_sub(1, Ordering::AcqRel);
            return LimitedFuture::Shed;
        }
        LimitedFuture::Running {
            inner: self.inner.call(request),
            _slot: Slot(limits.in_progress.clone()),
            timeout: limits.timeout,
            timer: None,
        }
    }
}

/// A place among the requests in progress, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The answer of a [`Limited`] service.
pub(crate) enum LimitedFuture<F> {
    Shed,
    Running {
        inner: F,
        _slot: Slot,
        timeout: Duration,
        /// Armed the first time `inner` is not ready.
        timer: Option<Pin<Box<Sleep>>>,
    },
    Done,
}

impl<F> Future for LimitedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let answer = match this {
            LimitedFuture::Shed => ApiError {
                retry_after: Some(1),
                ..ApiError::new(ErrorCode::Overloaded, "too many requests in progress")
            }
            .into_response(),
            LimitedFuture::Running {
                inner,
                timeout,
                timer,
                ..
            } => match Pin::new(inner).poll(cx) {
                Poll::Ready(answer) => answer?,
                Poll::Pending => {
                    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(*timeout)));
                    ready!(timer.as_mut().poll(cx));
                    ApiError::new(ErrorCode::Overloaded, "the request took too long")
                        .into_response()
                }
            },
            LimitedFuture::Done => return Poll::Pending,
        };
        // The slot (if any) is given back as the answer leaves.
        *this = LimitedFuture::Done;
        Poll::Ready(Ok(answer))
    }
}

/// Counts answers in the gateway's metrics, by the route the router matched or, for a service
/// that answers one route without the router, by that route's template.
#[derive(Debug, Clone)]
pub(crate) struct Track {
    state: AppState,
    route: Option<&'static str>,
}

impl Track {
    /// Counts by the route the router matched (`unmatched` when none did).
    pub(crate) fn matched(state: AppState) -> Self {
        Self { state, route: None }
    }

    /// Counts every answer under `route`.
    pub(crate) fn fixed(state: AppState, route: &'static str) -> Self {
        Self {
            state,
            route: Some(route),
        }
    }
}

impl<S> Layer<S> for Track {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked {
            inner,
            state: self.state.clone(),
            route: self.route,
        }
    }
}

/// A service whose answers are counted.
#[derive(Debug, Clone)]
pub(crate) struct Tracked<S> {
    inner: S,
    state: AppState,
    route: Option<&'static str>,
}

/// The route an answer is counted under.
enum Route {
    Matched(Option<MatchedPath>),
    Fixed(&'static str),
}

impl Route {
    fn of(fixed: Option<&'static str>, request: &Request) -> Self {
        match fixed {
            Some(route) => Route::Fixed(route),
            None => Route::Matched(request.extensions().get::<MatchedPath>().cloned()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Route::Matched(matched) => matched.as_ref().map_or("unmatched", MatchedPath::as_str),
            Route::Fixed(route) => route,
        }
    }
}

impl<S> Service<Request> for Tracked<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // Both clones are cheap (an `Arc` and a standard method): counting allocates nothing.
        let route = Route::of(self.route, &request);
        let method = request.method().clone();
        TrackedFuture {
            inner: self.inner.call(request),
            state: self.state.clone(),
            route,
            method,
            started: Instant::now(),
        }
    }
}

/// The answer of a [`Tracked`] service.
pub(crate) struct TrackedFuture<F> {
    inner: F,
    state: AppState,
    route: Route,
    method: Method,
    started: Instant,
}

impl<F> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = ready!(Pin::new(&mut self.inner).poll(cx))?;
        let ns = crate::metrics::nanos(self.started.elapsed());
        let status = response.status().as_u16();
        self.state
            .metrics
            .record(self.route.as_str(), self.method.as_str(), status, ns);
        Poll::Ready(Ok(response))
    }
}

/// Opens the request's span when the request is traced (see [`larder_proto::trace::request`]),
/// named by the route the router matched or by a fixed route (as [`Track`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Trace {
    pub(crate) route: Option<&'static str>,
}

impl<S> Layer<S> for Trace {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Traced<S> {
        Traced {
            inner,
            route: self.route,
        }
    }
}

/// A service whose requests get a span when they are traced.
#[derive(Debug, Clone)]
pub(crate) struct Traced<S> {
    inner: S,
    route: Option<&'static str>,
}

impl<S> Service<Request> for Traced<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Unpin + Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = TracedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let span = larder_proto::trace::request(
            || larder_proto::trace::from_headers(request.headers()),
            || {
                let route = Route::of(self.route, &request);
                let route = route.as_str();
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
            return TracedFuture::Plain(self.inner.call(request));
        }
        let answer = span.in_scope(|| self.inner.call(request));
        TracedFuture::Spanned(Box::pin(async move {
            let started = Instant::now();
            let Ok(response) = answer.instrument(span.clone()).await;
            let status = response.status().as_u16();
            span.record("http.response.status_code", status);
            if status >= 500 {
                span.record("otel.status_code", "ERROR");
            }
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            span.in_scope(|| tracing::debug!(status, micros, "request answered"));
            Ok(response)
        }))
    }
}

/// The answer of a [`Traced`] service: the inner answer as it is, or inside its span.
pub(crate) enum TracedFuture<F> {
    Plain(F),
    Spanned(Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>),
}

impl<F> Future for TracedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut *self {
            TracedFuture::Plain(answer) => Pin::new(answer).poll(cx),
            TracedFuture::Spanned(answer) => answer.as_mut().poll(cx),
        }
    }
}
