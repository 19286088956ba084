//! The gRPC listener's accepted connections: each gets `TCP_NODELAY` (tonic leaves that to
//! whoever supplies the incoming stream) and is counted in the connection metrics while open.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::metrics::Wire;
use crate::node::Node;

/// Accepted gRPC connections, as a stream for `serve_with_incoming_shutdown`.
pub(crate) fn accept(
    listener: TcpListener,
    node: Arc<Node>,
) -> impl Stream<Item = io::Result<Counted>> {
    let accepted = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio_stream::StreamExt::map(accepted, move |accepted| {
        let stream = accepted?;
        let _ = stream.set_nodelay(true);
        Ok(Counted::new(stream, node.clone()))
    })
}

/// A gRPC connection, counted open until dropped.
#[derive(Debug)]
pub(crate) struct Counted {
    stream: TcpStream,
    node: Arc<Node>,
}

impl Counted {
    fn new(stream: TcpStream, node: Arc<Node>) -> Self {
        let metrics = &node.metrics;
        metrics.connections[Wire::Grpc as usize].fetch_add(1, Relaxed);
        metrics.connections_total[Wire::Grpc as usize].fetch_add(1, Relaxed);
        Self { stream, node }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.node.metrics.connections[Wire::Grpc as usize].fetch_sub(1, Relaxed);
    }
}

impl Connected for Counted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
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
}
