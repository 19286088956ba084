//! The gateway's HTTP/1.1 server.
//!
//! Each connection runs one task that reads requests into a buffer, frames them
//! (`larder_proto::http1`), and answers them in order: a fresh in-process cache hit of a document is
//! written straight from the cache ([`fast`]); every other request is handed to the axum router
//! with its whole body and the router's response is written back ([`respond`]). Pipelined
//! requests are answered in order and their responses leave in one write, unless the router
//! has to wait for one of them: then those before it are sent first.
//!
//! Limits, so that no client can hold the server: at most `max_connections` connections are
//! served at once (more wait in the listen queue); a request head is at most `MAX_HEAD`
//! (64 KiB) bytes (431), a body at most `max_body_bytes` (413 without reading it), a guarded
//! write's body is not read at all without the token (401, and no `100 Continue`), and every
//! wait on the client — for the next request, for the rest of a head or body, for the
//! client to take a response — ends the connection after `client_timeout_ms` (see
//! [`crate::ApiConfig`]; counted in `larder_api_client_timeouts_total`). Requests refused
//! here are counted under the route `unrouted`.
//! On shutdown the listener closes at once, idle connections close, and requests in progress
//! are answered (with `connection: close`) before their connections close.
//!
//! Why not hyper's server, which the router was written for: a cache hit costs a third less
//! CPU this way (BENCHMARKS.md, "API gateway"), and hyper's per-request work — building a
//! `Request` with its header map, the service stack, a `Response` — is most of what a hit
//! costs. Everything but the hit still goes through the same router.

mod fast;
mod respond;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, Uri, Version};
use axum::response::IntoResponse;
use bytes::{Buf, BytesMut};
use larder_proto::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::problem::ApiError;
use crate::state::AppState;
use larder_proto::http1::{self as framing, BodyLength, ChunkError, Chunked};
use respond::{DateLine, Persist};

/// A connection's buffers start this large.
const INPUT_START: usize = 8 * 1024;
/// Input capacity an idle connection keeps; more (after a large body) is given back.
const INPUT_KEEP: usize = 64 * 1024;
/// How much more room a body being read gets at a time.
const INPUT_STEP: usize = 64 * 1024;
/// Pipelined answers are sent once this many bytes wait.
const OUTPUT_HIGH: usize = 64 * 1024;
/// Output capacity kept after a flush; more (after a large response) is given back.
const OUTPUT_KEEP: usize = 256 * 1024;
/// How long, and for how many bytes, a refused request's unread body is drained.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 16 << 20;

/// Serves `router` (and the fast path over `state`) on `listener` until `shutdown`.
///
/// # Errors
/// Never at present: a failed `accept` is logged and retried, so the server keeps serving
/// when the process runs out of descriptors for a moment.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    state: AppState,
    shutdown: CancellationToken,
) -> io::Result<()> {
    // At most a day, so that deadlines never overflow.
    let timeout = Duration::from_millis(state.config.client_timeout_ms.clamp(1, 86_400_000));
    let shared = Arc::new(Shared {
        router,
        state,
        timeout,
    });
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(
        shared
            .state
            .config
            .max_connections
            .clamp(1, Semaphore::MAX_PERMITS),
    ));
    loop {
        // A slot first: at the limit the listener is not read, and the kernel queues.
        let slot = tokio::select! {
            () = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                // Responses leave whole, so there is nothing for Nagle's algorithm to merge.
                let _ = stream.set_nodelay(true);
                let connection = Connection::new(stream, shared.clone(), shutdown.clone());
                tracker.spawn(async move {
                    connection.run().await;
                    drop(slot);
                });
            }
            Err(err) => {
                tracing::warn!(%err, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

struct Shared {
    router: Router,
    state: AppState,
    /// How long a connection may wait on its client without progress.
    timeout: Duration,
}

/// Why a connection stops.
enum End {
    /// The client closed, timed out, or the server is shutting down: close quietly.
    Quiet,
    /// The request cannot be served: answer this, then close.
    Refuse(ApiError),
}

struct Connection {
    stream: TcpStream,
    shared: Arc<Shared>,
    input: BytesMut,
    output: Vec<u8>,
    /// Fires at the current wait's deadline (re-armed lazily, see [`Connection::wait`]).
    timer: Pin<Box<Sleep>>,
    shutdown: CancellationToken,
    stopping: Pin<Box<WaitForCancellationFutureOwned>>,
    date: DateLine,
    key: String,
    /// Whether the request being answered through the router is a `HEAD` (its refusal, too,
    /// has no body).
    head_request: bool,
    /// The method of the request being read (as metrics label it), for counting a refusal.
    method: &'static str,
}

impl Connection {
    fn new(stream: TcpStream, shared: Arc<Shared>, shutdown: CancellationToken) -> Self {
        let timeout = shared.timeout;
        Self {
            stream,
            shared,
            input: BytesMut::with_capacity(INPUT_START),
            output: Vec::with_capacity(INPUT_START),
            timer: Box::pin(tokio::time::sleep(timeout)),
            stopping: Box::pin(shutdown.clone().cancelled_owned()),
            shutdown,
            date: DateLine::default(),
            key: String::with_capacity(128),
            head_request: false,
            method: "",
        }
    }

    async fn run(mut self) {
        let end = self.serve().await;
        let refused = matches!(end, End::Refuse(_));
        if let End::Refuse(error) = end {
            let status = error.code.http_status();
            self.shared
                .state
                .metrics
                .record_refusal(self.method, status);
            let response = error.into_response();
            let _ = respond::write(
                response,
                self.head_request,
                Persist::Close,
                &mut self.date,
                &mut self.output,
            )
            .await;
        }
        if !self.output.is_empty() {
            let _ = self.flush(Instant::now() + self.shared.timeout).await;
        }
        let _ = self.stream.shutdown().await;
        // Input left unread (a refused body, requests pipelined behind a last answer) would
        // make the close a reset.
        if refused || !self.input.is_empty() {
            self.linger().await;
        }
    }

    /// After the last answer, when the client may still be sending (a refused body, pipelined
    /// requests): reads and drops what it sends for a moment, because closing a socket with
    /// unread input resets the connection, and the client could lose the answer before it
    /// reads it.
    async fn linger(&mut self) {
        let mut budget = LINGER_BYTES;
        let until = Instant::now() + LINGER;
        while budget > 0 {
            self.input.clear();
            match tokio::time::timeout_at(until, self.stream.read_buf(&mut self.input)).await {
                Ok(Ok(n)) if n > 0 => budget = budget.saturating_sub(n),
                _ => return,
            }
        }
    }

    /// Answers requests until the connection ends.
    async fn serve(&mut self) -> End {
        // The next head (or the rest of it) is due within the timeout of the last answer (or
        // of connecting), so sending a head slowly cannot hold a connection for longer.
        let mut last_answer = Instant::now();
        // The length of input that was last found to hold only part of a head. A head is
        // parsed again only once a line of it has ended since, so a head sent a byte at a time
        // costs one parse per line (at most `MAX_HEADERS` + 1 of them), not one per byte.
        let mut partial = 0;
        loop {
            let until = last_answer + self.shared.timeout;
            // Pipelined answers wait in `output` only up to a bound: past it they are sent (the
            // client must take them) before another request is read, and the task yields to
            // the others now and then, so a deep pipeline costs neither memory nor fairness.
            if self.output.len() >= OUTPUT_HIGH {
                if self.flush(until).await.is_err() {
                    return End::Quiet;
                }
                tokio::task::coop::consume_budget().await;
            }
            if partial > 0 && !framing::may_complete_head(&self.input, partial) {
                match self.read(false, until).await {
                    Ok(true) => continue,
                    Ok(false) | Err(_) => return End::Quiet,
                }
            }
            let mut headers = framing::headers();
            let head = match framing::parse_head(&self.input, &mut headers) {
                Ok(Some(head)) => {
                    partial = 0;
                    head
                }
                Ok(None) => {
                    partial = self.input.len();
                    // Nothing more to answer for now: read (which sends what is waiting).
                    let idle = self.input.is_empty();
                    if idle && self.input.capacity() > INPUT_KEEP {
                        // A large body grew the buffer; an idle connection gives it back.
                        self.input = BytesMut::with_capacity(INPUT_START);
                    }
                    match self.read(idle, until).await {
                        Ok(true) => continue,
                        // A client may close between requests; mid-head it loses its request.
                        Ok(false) | Err(_) => return End::Quiet,
                    }
                }
                Err(err) => {
                    self.head_request = false;
                    // The method, as far as the refused bytes have one, for the count.
                    let method = self.input[..]
                        .split(|&b| b == b' ')
                        .next()
                        .unwrap_or_default();
                    self.method =
                        crate::metrics::method_label(std::str::from_utf8(method).unwrap_or(""));
                    return End::Refuse(ApiError::new(err.code(), err.to_string()));
                }
            };
            let started = Instant::now();
            let persist =
                Persist::new(head.keep_alive && !self.shutdown.is_cancelled(), head.minor);
            let state = &self.shared.state;
            let out = (&mut self.date, &mut self.key, &mut self.output);
            if fast::read(state, &head, persist, SystemTime::now(), out) {
                last_answer = Instant::now();
                let ns = crate::metrics::nanos(last_answer - started);
                state.metrics.record_direct(head.method, ns);
                let len = head.len;
                self.input.advance(len);
                if persist == Persist::Close {
                    return End::Quiet;
                }
                continue;
            }
            self.head_request = head.method == "HEAD";
            self.method = crate::metrics::method_label(head.method);
            let request = match request(&head) {
                Ok(request) => request,
                Err(end) => return end,
            };
            if head.body != BodyLength::Length(0) && !self.may_send_body(&head, request.uri()) {
                return End::Refuse(crate::app::unauthorized());
            }
            let (len, body, expect_continue) = (head.len, head.body, head.expect_continue);
            let (keep_alive, minor) = (head.keep_alive, head.minor);
            let head_only = head.method == "HEAD";
            self.input.advance(len);
            let body = match self.body(body, expect_continue).await {
                Ok(body) => body,
                Err(end) => return end,
            };
            let call = self.shared.router.clone().oneshot(request.map(|()| body));
            let mut call = std::pin::pin!(call);
            let response =
                match std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
                    Poll::Ready(done) => done,
                    Poll::Pending => {
                        // The router waits (the database, a cache node): the answers before this
                        // one need not wait with it.
                        if !self.output.is_empty()
                            && self
                                .flush(Instant::now() + self.shared.timeout)
                                .await
                                .is_err()
                        {
                            return End::Quiet;
                        }
                        call.await
                    }
                };
            let response = match response {
                Ok(response) => response,
                Err(never) => match never {},
            };
            // Shutdown may have begun while the router worked: then this is the last answer.
            let persist = Persist::new(keep_alive && !self.shutdown.is_cancelled(), minor);
            if !respond::write(
                response,
                head_only,
                persist,
                &mut self.date,
                &mut self.output,
            )
            .await
            {
                return End::Quiet;
            }
            last_answer = Instant::now();
            if persist == Persist::Close {
                return End::Quiet;
            }
        }
    }

    /// Whether a request's body may be read: not for the writes the token guards (the router
    /// would refuse them anyway), so that nobody without it can make the server take in
    /// bodies. Checked before `100 Continue` is sent.
    fn may_send_body(&self, head: &framing::Head<'_>, uri: &Uri) -> bool {
        let token = &self.shared.state.config.token;
        token.is_empty()
            || !crate::app::guarded_write(head.method, uri.path())
            || crate::app::authorized(
                token,
                head.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                    .map(|h| h.value),
            )
    }

    /// Reads a request's body as `length` says, asking for it first if the client waits for
    /// `100 Continue`.
    async fn body(&mut self, length: BodyLength, expect_continue: bool) -> Result<Body, End> {
        let limit = self.shared.state.config.max_body_bytes;
        let too_large = || {
            End::Refuse(ApiError::new(
                ErrorCode::TooLarge,
                format!("the body is over {limit} bytes"),
            ))
        };
        if let BodyLength::Length(n) = length
            && usize::try_from(n).map_or(true, |n| n > limit)
        {
            return Err(too_large());
        }
        let until = Instant::now() + self.shared.timeout;
        if expect_continue {
            self.output
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            self.flush(until).await.map_err(|_| End::Quiet)?;
        }
        match length {
            BodyLength::Length(0) => Ok(Body::empty()),
            BodyLength::Length(n) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                while self.input.len() < n {
                    // Room as the body arrives, not all that its header declares at once.
                    self.input.reserve((n - self.input.len()).min(INPUT_STEP));
                    if !self.read(false, until).await.map_err(|_| End::Quiet)? {
                        return Err(End::Quiet);
                    }
                }
                Ok(Body::from(self.input.split_to(n).freeze()))
            }
            BodyLength::Chunked => {
                let mut decoder = Chunked::default();
                let mut body = Vec::new();
                loop {
                    match decoder.decode(&self.input, &mut body, limit) {
                        Ok((used, done)) => {
                            self.input.advance(used);
                            if done {
                                return Ok(Body::from(body));
                            }
                        }
                        Err(ChunkError::TooLarge) => return Err(too_large()),
                        Err(ChunkError::Malformed) => {
                            return Err(End::Refuse(ApiError::new(
                                ErrorCode::Protocol,
                                "malformed chunked body",
                            )));
                        }
                    }
                    if !self.read(false, until).await.map_err(|_| End::Quiet)? {
                        return Err(End::Quiet);
                    }
                }
            }
        }
    }

    /// Reads more input: `Ok(false)` at end of stream, or when shutting down and `idle`.
    /// Answers waiting in the output are sent first: the client may be waiting for them
    /// before it sends more (a body after pipelined reads, say).
    async fn read(&mut self, idle: bool, until: Instant) -> io::Result<bool> {
        if !self.output.is_empty() {
            self.flush(until).await?;
        }
        if self.input.capacity() - self.input.len() < 1024 {
            self.input.reserve(INPUT_START);
        }
        let Self {
            stream,
            input,
            timer,
            stopping,
            ..
        } = self;
        let read = wait(timer, until, async {
            tokio::select! {
                biased;
                read = stream.read_buf(input) => read.map(|n| n > 0),
                () = stopping.as_mut(), if idle => Ok(false),
            }
        });
        let read = read.await;
        self.count_timeout(read)
    }

    /// Passes `waited` on, counting a client timeout.
    fn count_timeout<T>(&self, waited: io::Result<io::Result<T>>) -> io::Result<T> {
        if let Err(err) = &waited
            && err.kind() == io::ErrorKind::TimedOut
        {
            self.shared.state.metrics.record_client_timeout();
        }
        waited?
    }

    /// Writes all pending output.
    async fn flush(&mut self, until: Instant) -> io::Result<()> {
        let Self {
            stream,
            output,
            timer,
            ..
        } = self;
        let written = wait(timer, until, stream.write_all(output)).await;
        output.clear();
        if output.capacity() > OUTPUT_KEEP {
            output.shrink_to(INPUT_START);
        }
        self.count_timeout(written)
    }
}

/// Runs `work` until `until`. The timer is only re-armed when it fires early (its deadline
/// belonged to an earlier wait), so a busy connection touches the timer wheel about once per
/// timeout instead of once per request.
async fn wait<T>(
    timer: &mut Pin<Box<Sleep>>,
    until: Instant,
    work: impl Future<Output = io::Result<T>>,
) -> io::Result<io::Result<T>> {
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            biased;
            done = &mut work => return Ok(done),
            () = timer.as_mut() => {
                if Instant::now() >= until {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                timer.as_mut().reset(until);
            }
        }
    }
}

/// The router's request for a head; the body follows.
fn request(head: &framing::Head<'_>) -> Result<Request<()>, End> {
    let bad = |what: &str| {
        End::Refuse(ApiError::new(
            ErrorCode::Protocol,
            format!("malformed request: {what}"),
        ))
    };
    let method = Method::from_bytes(head.method.as_bytes()).map_err(|_| bad("the method"))?;
    let uri = head.target.parse::<Uri>().map_err(|_| bad("the target"))?;
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .version(if head.minor == 0 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        })
        .body(())
        .map_err(|_| bad("the request line"))?;
    let headers = request.headers_mut();
    headers.reserve(head.headers.len());
    for h in head.headers {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("a header name"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| bad("a header value"))?;
        headers.append(name, value);
    }
    Ok(request)
}
