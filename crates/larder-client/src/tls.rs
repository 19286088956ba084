//! TLS to cache nodes: each channel connects over TCP and then TLS (rustls, ALPN `h2`), with the
//! CA that node certificates must chain to and, for nodes that ask for one (mutual TLS), a
//! client certificate. The files are re-read when they change (`larder_util::reload`): a
//! rotated client certificate is used by the next connection a channel opens.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use larder_util::reload::Reloading;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::transport::Uri;

/// Connects a channel's HTTP/2 connection over TLS.
#[derive(Clone)]
pub(crate) struct Connector {
    config: Arc<Reloading<ClientConfig>>,
    /// The name node certificates are checked against (`None`: each node's host).
    server_name: Option<String>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Connector {
    pub(crate) fn new(
        config: Arc<Reloading<ClientConfig>>,
        server_name: Option<String>,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            config,
            server_name,
            connect_timeout,
        }
    }
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TokioIo<TlsStream<TcpStream>>>> + Send>>;

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let config = self.config.current();
        let name = self.server_name.clone();
        let timeout = self.connect_timeout;
        Box::pin(async move {
            let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_owned());
            let host = uri
                .host()
                .ok_or_else(|| invalid("a node address has no host"))?;
            let port = uri
                .port_u16()
                .ok_or_else(|| invalid("a node address has no port"))?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let server_name = ServerName::try_from(name.unwrap_or_else(|| host.clone()))
                .map_err(|_| invalid("the node's name is not a DNS name or an IP address"))?;
            let connect = async {
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                TlsConnector::from(config).connect(server_name, tcp).await
            };
            match tokio::time::timeout(timeout, connect).await {
                Ok(stream) => stream.map(TokioIo::new),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connecting to the node over TLS took too long",
                )),
            }
        })
    }
}
