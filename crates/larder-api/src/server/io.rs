//! A connection's socket, with the waits on the client bounded and a polite close.
//!
//! * **Idle and slow heads**: while no request of the connection is open (none read, or every
//!   response sent), the client must send the next request within `client_timeout` of the last
//!   response (or of connecting). A head sent slowly does not extend that time: progress does
//!   not reset it, only a request does. This also bounds a TLS handshake and idle HTTP/2
//!   connections.
//! * **Slow readers**: a write that cannot proceed for `client_timeout` ends the connection.
//! * **Bodies**: a request's body must arrive within `client_timeout` of its head; the handler
//!   reading it enforces that (`routes::read_body`), since only it knows it is waiting.
//!
//! One timer per connection serves every deadline; it is re-armed only when it fires early
//! (the deadline moved on since) or a nearer deadline is needed, so a busy connection touches
//! the timer wheel about once per `client_timeout`, not once per request.
//!
//! When the connection is dropped without the client having closed its side, the socket is
//! shut for writing and what the client still sends is read and dropped for up to [`LINGER`]:
//! closing a socket with unread input resets it, and the client could lose the last answer.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tokio_util::task::TaskTracker;

use crate::state::AppState;

/// How long, and for how many bytes, a closed connection's unread input is drained.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 16 << 20;

/// What the connection's requests tell its socket: how many are open, and when the last one
/// ended. Shared by the socket and the service that answers the connection's requests.
#[derive(Debug)]
pub(crate) struct Activity {
    open: AtomicUsize,
    /// Nanoseconds from `epoch` to the end of the last request.
    last_end: AtomicU64,
    epoch: Instant,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            last_end: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// A request is open until the guard is dropped (its response sent, or abandoned).
    pub(crate) fn begin(self: &Arc<Self>) -> OpenRequest {
        self.open.fetch_add(1, Ordering::AcqRel);
        OpenRequest(self.clone())
    }

    /// The idle deadline: `None` while a request is open.
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.open.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_nanos(self.last_end.load(Ordering::Acquire));
        Some(self.epoch + since + timeout)
    }
}

/// An open request of a connection; dropping it ends the request.
#[derive(Debug)]
pub(crate) struct OpenRequest(Arc<Activity>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        let activity = &self.0;
        let ns = u64::try_from(activity.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        activity.last_end.fetch_max(ns, Ordering::AcqRel);
        activity.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a closing connection still needs: the tracker that lingering is spawned on (so that a
/// server's shutdown waits for it) and the connection's slot, freed when the socket is.
pub(crate) struct Closing {
    pub(crate) tracker: TaskTracker,
    pub(crate) slot: OwnedSemaphorePermit,
}

/// A TCP connection with deadlines on the client (see the module documentation).
pub(crate) struct Guarded {
    /// `None` only once dropped.
    stream: Option<TcpStream>,
    activity: Arc<Activity>,
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
    /// When the current write started waiting for the client.
    write_stalled: Option<Instant>,
    /// The client closed its side (a read returned end of stream).
    client_closed: bool,
    state: AppState,
    closing: Option<Closing>,
}

impl Guarded {
    pub(crate) fn new(
        stream: TcpStream,
        activity: Arc<Activity>,
        timeout: Duration,
        state: AppState,
        closing: Closing,
    ) -> Self {
        let first = activity.epoch + timeout;
        Self {
            stream: Some(stream),
            activity,
            timeout,
            timer: Box::pin(tokio::time::sleep_until(first)),
            write_stalled: None,
            client_closed: false,
            state,
            closing: Some(closing),
        }
    }

    /// The socket (only `Drop` takes it away).
    fn stream(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        self.stream
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    /// Whether `deadline` has passed, arranging a wake-up at it otherwise.
    fn expired(&mut self, cx: &mut Context<'_>, deadline: Instant) -> bool {
        if self.timer.deadline() > deadline {
            self.timer.as_mut().reset(deadline);
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            if Instant::now() >= deadline {
                self.state.metrics.record_client_timeout();
                return true;
            }
            // The timer was armed for an earlier deadline that has moved on.
            self.timer.as_mut().reset(deadline);
        }
        false
    }

    /// A write's outcome: progress clears the stall; waiting past the timeout fails it.
    fn written<T>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match outcome {
            Poll::Ready(result) => {
                self.write_stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let since = *self.write_stalled.get_or_insert_with(Instant::now);
                if self.expired(cx, since + self.timeout) {
                    Poll::Ready(Err(timed_out("the client took no response data")))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what} within client_timeout_ms"),
    )
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = match self.stream() {
            Ok(stream) => stream.poll_read(cx, buf),
            Err(err) => return Poll::Ready(Err(err)),
        };
        match read {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() == before {
                    self.client_closed = true;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                let timeout = self.timeout;
                match self.activity.idle_deadline(timeout) {
                    Some(deadline) if self.expired(cx, deadline) => {
                        Poll::Ready(Err(timed_out("no request arrived")))
                    }
                    _ => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let outcome = match self.stream() {
            Ok(stream) => stream.poll_write(cx, buf),
            Err(err) => return Poll::Ready(Err(err)),
        };
        self.written(cx, outcome)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let outcome = match self.stream() {
            Ok(stream) => stream.poll_write_vectored(cx, bufs),
            Err(err) => return Poll::Ready(Err(err)),
        };
        self.written(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(TcpStream::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = match self.stream() {
            Ok(stream) => stream.poll_flush(cx),
            Err(err) => return Poll::Ready(Err(err)),
        };
        self.written(cx, outcome)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = match self.stream() {
            Ok(stream) => stream.poll_shutdown(cx),
            Err(err) => return Poll::Ready(Err(err)),
        };
        ready!(self.written(cx, outcome))?;
        Poll::Ready(Ok(()))
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let (Some(stream), Some(closing)) = (self.stream.take(), self.closing.take()) else {
            return;
        };
        if self.client_closed || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let Closing { tracker, slot } = closing;
        tracker.spawn(async move {
            linger(stream).await;
            drop(slot);
        });
    }
}

/// Shuts `stream` for writing and reads what the client still sends until it closes, for at
/// most [`LINGER`] and [`LINGER_BYTES`].
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let until = Instant::now() + LINGER;
    let mut budget = LINGER_BYTES;
    let mut buf = vec![0u8; 16 * 1024];
    while budget > 0 {
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => budget = budget.saturating_sub(n),
            _ => return,
        }
    }
}
