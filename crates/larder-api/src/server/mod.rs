//! The gateway's HTTP server: the router on hyper, HTTP/1.1 and HTTP/2 on one port (h2c by
//! prior knowledge in cleartext; ALPN `h2` / `http/1.1` over TLS).
//!
//! What it keeps from the server it replaced: at most `max_connections` connections at once
//! (past it the listener is not read and new connections wait in the kernel's queue); request
//! heads of at most [`MAX_HEAD`] bytes and [`MAX_HEADERS`] fields (431); the waits on the
//! client bounded by `client_timeout_ms` ([`io`]); a guarded write refused before its body is
//! read (the credentials check runs before the handler touches the body, and hyper sends
//! `100 Continue` only when a body is first read); and a graceful drain: on shutdown the
//! listener closes, idle connections close, HTTP/1 requests in progress are answered with
//! `connection: close` and HTTP/2 connections get a GOAWAY and finish their streams.
//!
//! Every request goes through the router, but for document reads, which take the same layers
//! around the same handler without the routing ([`crate::app::App`]); the read handler alone
//! decides a read.

mod io;
mod service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::state::AppState;
use io::{Activity, Closing, Guarded};
use larder_util::tls::Reloading;
use rustls::ServerConfig;
use service::Handler;

/// The longest request head accepted (request line and header fields, HTTP/1), and the largest
/// header list (HTTP/2).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// The most header fields an HTTP/1 request may have.
pub(crate) const MAX_HEADERS: usize = 100;
/// Streams an HTTP/2 client may have open at once on one connection.
const MAX_STREAMS: u32 = 256;

/// What every connection task shares.
struct Shared {
    app: App,
    state: AppState,
    tls: Option<Arc<Reloading<ServerConfig>>>,
    /// Cleartext: HTTP/1.1, or HTTP/2 when the client opens with its preface.
    auto: auto::Builder<TokioExecutor>,
    /// TLS with ALPN `http/1.1` (or none).
    http1: auto::Builder<TokioExecutor>,
    /// TLS with ALPN `h2`.
    http2: auto::Builder<TokioExecutor>,
    timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown`, then drains (see the module documentation).
///
/// # Errors
/// Never at present: a failed `accept` is logged and retried, so the server keeps serving
/// when the process runs out of descriptors for a moment.
pub(crate) async fn serve(
    listener: TcpListener,
    app: App,
    state: AppState,
    tls: Option<Arc<Reloading<ServerConfig>>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // At most a day, so that deadlines never overflow.
    let timeout = Duration::from_millis(state.config.client_timeout_ms.clamp(1, 86_400_000));
    let auto = builder();
    let tracker = TaskTracker::new();
    let shared = Arc::new(Shared {
        app,
        tls,
        http1: auto.clone().http1_only(),
        http2: auto.clone().http2_only(),
        auto,
        timeout,
        state,
    });
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
            Ok((stream, peer)) => {
                let closing = Closing {
                    tracker: tracker.clone(),
                    slot,
                };
                let task = connection(stream, peer, shared.clone(), closing, shutdown.clone());
                tracker.spawn(task);
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

/// The connection settings: heads up to [`MAX_HEAD`], no pipelined answers held back (an
/// answer leaves as soon as it is ready), hyper's own head timer off (the socket's idle
/// deadline covers it, with one timer per connection instead of one per request).
fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS)
        .keep_alive(true)
        // One `send` of head and body copied together, not a `writev` of the two: measured
        // 10–16% less server CPU per cache hit (the copy is a few hundred bytes; the kernel's
        // vectored path costs more than that here).
        .writev(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(u32::try_from(MAX_HEAD).unwrap_or(u32::MAX));
    builder
}

/// Serves one connection until it ends or, after `shutdown`, until it has drained.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    closing: Closing,
    shutdown: CancellationToken,
) {
    // Answers leave whole, so there is nothing for Nagle's algorithm to merge.
    let _ = stream.set_nodelay(true);
    let activity = Activity::new();
    let io = Guarded::new(
        stream,
        activity.clone(),
        shared.timeout,
        shared.state.clone(),
        closing,
    );
    let handler = Handler::new(&shared.app, &shared.state, activity, peer);
    let Some(tls) = &shared.tls else {
        drive(&shared.auto, io, handler, &shared, &shutdown).await;
        return;
    };
    let accepted = tokio::select! {
        () = shutdown.cancelled() => return,
        accepted = tokio_rustls::TlsAcceptor::from(tls.current()).accept(io) => accepted,
    };
    let stream = match accepted {
        Ok(stream) => stream,
        Err(err) => {
            tracing::debug!(%err, %peer, "TLS handshake failed");
            shared.state.metrics.record_tls_failure();
            return;
        }
    };
    let builder = if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        &shared.http2
    } else {
        &shared.http1
    };
    drive(builder, stream, handler, &shared, &shutdown).await;
}

/// Runs hyper on `io`; on `shutdown`, asks the connection to finish gracefully and waits.
async fn drive<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    handler: Handler,
    shared: &Shared,
    shutdown: &CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = builder.serve_connection(TokioIo::new(io), handler);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        service::record_connection_error(&shared.state, err.as_ref());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use axum::body::Body;
    use axum::routing::get;
    use bytes::Bytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    use super::*;
    use crate::config::{ApiConfig, CollectionConfig};
    use crate::feed::stream::Chunks;
    use axum::Router;

    use crate::layers::{Limits, Track};

    /// Reads from `conn` until what was read contains `end`.
    async fn read_until(conn: &mut TcpStream, end: &str) -> String {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains(end) {
            let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut chunk))
                .await
                .expect("the server sends in time")
                .unwrap();
            assert!(
                n > 0,
                "closed before {end:?}: {:?}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    }

    /// What a change feed needs: an answer's body leaves as the handler produces it, through
    /// the gateway's own layers, and outlives the request timeout (which bounds the wait for
    /// the answer's head, not its body).
    #[tokio::test]
    async fn an_answer_streams_as_its_body_is_produced() {
        let db = std::env::temp_dir().join(format!("larder-stream-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&db);
        let config = ApiConfig {
            database: format!("sqlite://{}?mode=rwc", db.display()),
            collections: vec![CollectionConfig {
                name: "products".into(),
                ..CollectionConfig::default()
            }],
            ..ApiConfig::default()
        };
        let state = crate::build(config, crate::Options::default(), false)
            .await
            .unwrap();
        let (events, feed) = mpsc::channel(1);
        let feed = Arc::new(parking_lot::Mutex::new(Some(feed)));
        let timeout = Duration::from_millis(300);
        let router = Router::new()
            .route(
                "/feed",
                get(move || {
                    let feed = feed.lock().take().expect("one request");
                    async move { Body::new(Chunks(feed)) }
                }),
            )
            .layer(Limits::new(4, timeout))
            .layer(Track::matched(state.clone()));
        let app = App {
            router,
            reads: None,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, app, state, None, stop.clone()));

        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /feed HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        events
            .send(Bytes::from_static(b"first event\n"))
            .await
            .unwrap();
        let head = read_until(&mut conn, "first event\n").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        tokio::time::sleep(timeout * 2).await;
        events
            .send(Bytes::from_static(b"second event\n"))
            .await
            .unwrap();
        drop(events);
        let rest = read_until(&mut conn, "0\r\n\r\n").await;
        assert!(rest.contains("second event\n"), "{rest}");
        stop.cancel();
        drop(conn);
        server.await.unwrap().unwrap();
        let _ = std::fs::remove_file(&db);
    }
}
