//! The gRPC listener's accepted connections: tonic's own `TcpIncoming` with `TCP_NODELAY`
//! (tonic leaves that to whoever supplies the incoming stream), counted as they arrive.
//!
//! The connections are handed to tonic as plain `TcpStream`s: wrapping each in a type that
//! counts it until it closes cost about 0.6 µs of server CPU per call in
//! `bench/compare-grpc.sh`, so the gRPC side reports connections accepted, not open.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::net::{TcpListener, TcpStream};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::TcpIncoming;

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
