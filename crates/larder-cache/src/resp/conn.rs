//! One RESP connection: read what the client sent, run every complete request in it, write all
//! the replies with one write, repeat. Pipelined requests cost one read and one write per
//! batch. A client that stalls mid-request, stops reading its replies, or idles past the
//! configured timeouts is disconnected; malformed input gets Redis's error and a close.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use larder_proto::resp::{Args, encode, parse_request};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, Span};

use super::ctx::{Ctx, Session};
use super::table::COMMANDS;
use super::tracking;
use super::transport::Transport;
use super::{Pending, count_connection, execute};
use crate::clients::ClientEntry;
use crate::metrics::LocalCounts;
use crate::node::Node;
use crate::node::tracking::Notice;
use tokio::sync::mpsc;

/// Bytes read per call at least.
const READ_CHUNK: usize = 16 << 10;
/// Replies buffered before they are written even if more requests are waiting.
const WRITE_HIGH_WATER: usize = 1 << 20;
/// Argument slots kept after a request with very many arguments.
const KEPT_ARGS: usize = 64;
/// Buffers above this are shrunk back once they empty.
const KEEP_CAPACITY: usize = 1 << 20;

/// Tells a client over `max_clients` why it is turned away, then closes.
pub(super) async fn refuse(mut stream: TcpStream) {
    let reply = b"-ERR max number of clients reached\r\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(reply)).await;
}

/// Serves one connection (a plain socket or TLS over one) until the client leaves,
/// misbehaves, or the node shuts down.
pub(super) async fn run<S: Transport>(
    node: &Node,
    mut stream: S,
    peer: SocketAddr,
    shutdown: &CancellationToken,
) {
    let _ = stream.socket().set_nodelay(true);
    let local = stream.socket().local_addr().unwrap_or(peer);
    let guard = node.clients.register(peer, local, node.now_ms());
    count_connection(node, true);
    let mut conn = Conn {
        node,
        entry: &guard.entry,
        session: Session::new(node.config.password.is_empty()),
        rbuf: Vec::with_capacity(READ_CHUNK),
        wbuf: Vec::with_capacity(READ_CHUNK),
        args: Args::new(),
        argv: Vec::new(),
        local: LocalCounts::default(),
        single_threaded: Handle::current().runtime_flavor() == RuntimeFlavor::CurrentThread,
        partial_since: None,
        peer,
        notices: None,
    };
    if let Err(err) = conn.serve(&mut stream, shutdown).await {
        tracing::debug!(%peer, %err, "resp connection closed");
    }
    if let Some(tracked) = conn.session.tracking.take() {
        node.tracking.unsubscribe(&tracked.subscriber);
    }
    count_connection(node, false);
}

/// What the connection does after a batch.
#[derive(Debug)]
enum Flow {
    /// Wait for more bytes.
    Read,
    /// Complete requests are still buffered; write the replies so far, then run them.
    Drain,
    /// Write the replies so far, then close.
    Close,
    /// Write the replies so far, wait for an origin, add its reply, then run what is buffered.
    Wait(Pending),
}

struct Conn<'a> {
    node: &'a Node,
    entry: &'a ClientEntry,
    session: Session,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    args: Args,
    /// Storage for one request's argument slices, reused across requests.
    argv: Vec<&'static [u8]>,
    local: LocalCounts,
    /// Whether this connection's runtime has one thread (see [`forget_readable`]).
    single_threaded: bool,
    /// When the partly received request at the start of the read buffer began arriving.
    partial_since: Option<Instant>,
    peer: SocketAddr,
    /// Tracking notices for this connection, once it has an inbox, and the token that cuts
    /// it off when the inbox overflows.
    notices: Option<(mpsc::Receiver<Notice>, CancellationToken)>,
}

impl Conn<'_> {
    async fn serve<S: Transport>(
        &mut self,
        stream: &mut S,
        shutdown: &CancellationToken,
    ) -> io::Result<()> {
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        // Registered once, not per batch: an inbox is made at most once per connection.
        let entry = self.entry;
        let inbox_made = entry.inbox_made.notified();
        tokio::pin!(inbox_made);
        loop {
            let ready = tokio::select! {
                biased;
                () = &mut cancelled => return Ok(()),
                () = &mut inbox_made, if self.notices.is_none() => {
                    self.notices = entry.take_inbox();
                    inbox_made.set(entry.inbox_made.notified());
                    continue;
                }
                notice = next_notice(&mut self.notices) => {
                    let Some(notice) = notice else {
                        return Err(io::Error::other("fell behind its invalidations"));
                    };
                    self.push(notice);
                    self.flush(stream, shutdown).await?;
                    continue;
                }
                ready = wait_readable(self.node, self.partial_since, stream) => ready?,
            };
            if !ready {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "client timed out"));
            }
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                self.rbuf.reserve(READ_CHUNK);
            }
            let room = self.rbuf.capacity() - self.rbuf.len();
            match stream.try_read_buf(&mut self.rbuf) {
                Ok(0) => return Ok(()),
                Ok(read) if read < room && self.single_threaded && S::SHORT_READ_DRAINS => {
                    forget_readable(stream.socket());
                }
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Err(err),
            }
            if self.rbuf.len() > self.node.max_request {
                // One request bigger than the node accepts: refuse it rather than buffer on.
                self.node.metrics.protocol_errors.fetch_add(1, Relaxed);
                let reply = b"-ERR Protocol error: request larger than max_request\r\n";
                self.wbuf.extend_from_slice(reply);
                return self.flush(stream, shutdown).await;
            }
            let started = Instant::now();
            self.entry.last_ms.store(self.node.now_ms(), Relaxed);
            let mut mark = started;
            // One span per batch, and none unless the batch is traced.
            let span = self.batch_span();
            let mut traced = BatchSummary::default();
            loop {
                let flow = span.in_scope(|| self.process());
                self.local.exec_ns += nanos(mark.elapsed());
                self.flush(stream, shutdown).await?;
                mark = Instant::now();
                let waited = nanos(mark.duration_since(started));
                if !span.is_none() {
                    traced.add(&self.local);
                }
                self.node.metrics.flush(&mut self.local, waited);
                match flow {
                    Flow::Read => break,
                    Flow::Drain => {}
                    Flow::Close => {
                        traced.record(&span);
                        return Ok(());
                    }
                    Flow::Wait((index, deferred)) => {
                        let protocol = self.session.protocol;
                        let finish = deferred.finish(self.node, protocol, &mut self.wbuf);
                        let ok = finish.instrument(span.clone()).await;
                        self.local.add(index, ok);
                    }
                }
            }
            traced.record(&span);
            // The request timeout runs from the first byte of a request, not from the last
            // read, so trickling a byte at a time cannot keep a request open forever.
            self.partial_since = match (self.rbuf.is_empty(), self.partial_since) {
                (true, _) => None,
                (false, None) => Some(started),
                (false, since) => since,
            };
            if self.rbuf.is_empty() && self.rbuf.capacity() > KEEP_CAPACITY {
                self.rbuf = Vec::with_capacity(READ_CHUNK);
                self.args.shrink_to(KEPT_ARGS, READ_CHUNK);
                self.argv.shrink_to(KEPT_ARGS);
            }
        }
    }

    /// Writes the invalidation messages of `first` and the notices queued behind it.
    fn push(&mut self, first: Notice) {
        if let Some((queued, _)) = &mut self.notices {
            let (protocol, subscribed) = (self.session.protocol, self.session.subscribed);
            tracking::write_notices(&mut self.wbuf, protocol, subscribed, first, queued);
        }
    }

    /// The span of the batch about to run, or [`Span::none`] unless it is traced.
    fn batch_span(&self) -> Span {
        larder_proto::trace::request(
            || None,
            || {
                tracing::info_span!(
                    "resp",
                    otel.name = tracing::field::Empty,
                    otel.kind = "server",
                    db.system.name = "redis",
                    network.peer.address = %self.peer.ip(),
                    network.peer.port = self.peer.port(),
                    db.operation.batch.size = tracing::field::Empty,
                )
            },
        )
    }

    /// Runs the complete requests at the start of the read buffer and removes them from it.
    fn process(&mut self) -> Flow {
        let mut pos = 0;
        let flow = loop {
            if self.session.closing {
                break Flow::Close;
            }
            if self.wbuf.len() >= WRITE_HIGH_WATER {
                break Flow::Drain;
            }
            let rest = &self.rbuf[pos..];
            match parse_request(rest, &self.node.limits, &mut self.args) {
                Ok(None) => break Flow::Read,
                Ok(Some(used)) => {
                    let mut argv = recycle(std::mem::take(&mut self.argv));
                    argv.extend(self.args.iter(&rest[..used]));
                    let mut ctx = Ctx {
                        node: self.node,
                        session: &mut self.session,
                        client: self.entry,
                        out: &mut self.wbuf,
                        table: &COMMANDS,
                        deferred: None,
                    };
                    let pending = execute(&mut ctx, &argv, &mut self.local);
                    self.argv = recycle(argv);
                    pos += used;
                    if let Some(pending) = pending {
                        break Flow::Wait(pending);
                    }
                }
                Err(err) => {
                    self.node.metrics.protocol_errors.fetch_add(1, Relaxed);
                    encode::error(&mut self.wbuf, format!("ERR {err}").as_bytes());
                    break Flow::Close;
                }
            }
        };
        self.rbuf.drain(..pos);
        flow
    }

    /// Writes every buffered reply; a client that does not read them in time is dropped.
    async fn flush<S: Transport>(
        &mut self,
        stream: &mut S,
        shutdown: &CancellationToken,
    ) -> io::Result<()> {
        let mut written = 0;
        // TLS may hold bytes after all of `wbuf` was taken: push them out too.
        while written < self.wbuf.len() || stream.pending() {
            match stream.try_write(&self.wbuf[written..]) {
                Ok(n) => written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    let limit = self.node.config.request_timeout();
                    let stalled = || io::Error::new(io::ErrorKind::TimedOut, "client not reading");
                    // A client that does not read its replies must not hold up shutdown either.
                    tokio::select! {
                        () = shutdown.cancelled() => return Err(stalled()),
                        writable = tokio::time::timeout(limit, stream.writable()) => {
                            writable.map_err(|_| stalled())??;
                        }
                    }
                }
                Err(err) => return Err(err),
            }
        }
        self.wbuf.clear();
        if self.wbuf.capacity() > KEEP_CAPACITY {
            self.wbuf = Vec::with_capacity(READ_CHUNK);
        }
        Ok(())
    }
}

/// What a traced batch ran: how many commands, and the first one's table index.
#[derive(Debug, Default)]
struct BatchSummary {
    commands: u64,
    first: Option<usize>,
}

impl BatchSummary {
    fn add(&mut self, local: &LocalCounts) {
        let (commands, first) = local.summary();
        self.commands += commands;
        self.first = self.first.or(first);
    }

    /// Names the span after its command (`GET`), or `pipeline` for more than one.
    fn record(&self, span: &Span) {
        if span.is_none() {
            return;
        }
        let name = match (self.commands, self.first.and_then(|i| COMMANDS.get(i))) {
            (1, Some(spec)) => spec.name.to_ascii_uppercase(),
            (1, None) => "unknown".to_owned(),
            _ => "pipeline".to_owned(),
        };
        span.record("otel.name", name.as_str());
        span.record("db.operation.batch.size", self.commands);
    }
}

/// Waits until the connection is readable; `false` when a timeout ran out first: the
/// request timeout while part of a request is buffered (since `partial_since`), else the idle
/// timeout if set.
async fn wait_readable<S: Transport>(
    node: &Node,
    partial_since: Option<Instant>,
    stream: &mut S,
) -> io::Result<bool> {
    let limit = if let Some(since) = partial_since {
        Some(
            node.config
                .request_timeout()
                .saturating_sub(since.elapsed()),
        )
    } else if node.config.idle_timeout_secs > 0 {
        Some(Duration::from_secs(node.config.idle_timeout_secs))
    } else {
        None
    };
    match limit {
        None => stream.readable().await.map(|()| true),
        Some(limit) => match tokio::time::timeout(limit, stream.readable()).await {
            Ok(ready) => ready.map(|()| true),
            Err(_) => Ok(false),
        },
    }
}

/// The next tracking notice, `None` once the inbox overflowed (the connection is cut off);
/// never ready for a connection without an inbox.
async fn next_notice(
    notices: &mut Option<(mpsc::Receiver<Notice>, CancellationToken)>,
) -> Option<Notice> {
    let Some((queued, cut)) = notices else {
        return std::future::pending().await;
    };
    // An overflow leaves the queue full, so it is noticed with the next notice, without a
    // waiter on the token.
    match queued.recv().await {
        Some(_) if cut.is_cancelled() => None,
        Some(notice) => Some(notice),
        None => std::future::pending().await,
    }
}

fn nanos(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

/// Marks the socket not readable after a read that returned less than it asked for, which
/// (almost always) drained the socket: the next read would only fail with `WouldBlock`, one
/// system call per batch for nothing. Data that arrives later raises a new edge in the
/// runtime's epoll, which marks the socket readable again.
///
/// Sound only on a single-threaded runtime: this takes a fresh readiness snapshot and clears
/// it, so it would also clear an event the I/O driver recorded after the read; on one thread
/// the driver cannot run between the read and this call, so there is no such event.
///
/// Known gap: a read also comes back short when it stops at TCP urgent data (`MSG_OOB`), which
/// no Redis client sends; a client that sends it may wait for its next write before the bytes
/// after the mark are read.
fn forget_readable(stream: &TcpStream) {
    let _ = stream.try_io(Interest::READABLE, || {
        Err::<(), _>(io::ErrorKind::WouldBlock.into())
    });
}

/// Empties a vector of slices and gives its allocation a new lifetime (the in-place collect
/// keeps the buffer), so argument lists need no allocation per request.
fn recycle<'b>(mut v: Vec<&[u8]>) -> Vec<&'b [u8]> {
    v.clear();
    v.into_iter().map(|_| &[][..]).collect()
}
