//! The gRPC listener's accepted connections: tonic's own `TcpIncoming` with `TCP_NODELAY`
//! (tonic leaves that to whoever supplies the incoming stream), counted as they arrive; or,
//! with TLS configured, the connections whose handshake completed ([`accept_tls`]).
//!
//! The connections are handed to tonic as plain `TcpStream`s: wrapping each in a type that
//! counts it until it closes cost about 0.6 µs of server CPU per call in
//! `bench/compare-grpc.sh`, so the gRPC side reports connections accepted, not open.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use larder_util::reload::Reloading;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

use crate::metrics::Wire;
use crate::node::Node;

/// Accepted gRPC connections, as a stream for `serve_with_incoming_shutdown`.
pub(crate) fn accept(
    listener: TcpListener,
    node: Arc<Node>,
) -> impl Stream<Item = io::Result<TcpStream>> {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map(move |accepted| {
            if accepted.is_ok() {
                node.metrics.connections_total[Wire::Grpc as usize].fetch_add(1, Relaxed);
            }
            accepted
        })
}

/// Accepted gRPC connections over TLS: each TCP connection's handshake runs on its own task
/// (bounded by the request timeout), so a slow or silent client holds up no other, and only
/// completed handshakes reach tonic. The configuration in use when a connection arrives
/// (`tls.current()`) is the one it gets, so a reload applies to new connections.
pub(crate) fn accept_tls(
    listener: TcpListener,
    node: Arc<Node>,
    tls: Arc<Reloading<ServerConfig>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) -> impl Stream<Item = io::Result<TlsConn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let handshake_timeout = node.config.request_timeout();
    tracker.clone().spawn(async move {
        loop {
            let accepted = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, remote) = match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!(%err, "grpc accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            node.metrics.connections_total[Wire::Grpc as usize].fetch_add(1, Relaxed);
            let _ = stream.set_nodelay(true);
            let info = TcpConnectInfo {
                local_addr: stream.local_addr().ok(),
                remote_addr: Some(remote),
            };
            let (acceptor, tx) = (TlsAcceptor::from(tls.current()), tx.clone());
            tracker.spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(TlsConn { stream, info })).await;
                    }
                    Ok(Err(err)) => tracing::debug!(%err, %remote, "grpc TLS handshake failed"),
                    Err(_) => tracing::debug!(%remote, "grpc TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A gRPC connection over TLS.
pub(crate) struct TlsConn {
    stream: TlsStream<TcpStream>,
    info: TcpConnectInfo,
}

impl Connected for TlsConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
