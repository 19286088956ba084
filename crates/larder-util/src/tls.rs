//! TLS configuration from PEM files (rustls with the `ring` provider), re-read when the files
//! change, for every listener and client that speaks TLS: the gateway, the cache node's gRPC
//! and RESP listeners, and the clients of cache nodes.
//!
//! A server presents `cert` (a chain, leaf first) with `key`; with `client_ca`, it asks every
//! client for a certificate chaining to one of those CAs and refuses a handshake without one
//! (mutual TLS). A client trusts the CAs in `ca` and, with `cert` and `key`, presents a
//! certificate of its own.
//!
//! [`reloading_server`] and [`reloading_client`] keep the configuration built from the files
//! and rebuild it when one of them changes ([`Reloading`]): certificates are rotated without a
//! restart. Connections already open keep the configuration they started with.
//!
//! [`Connector`] opens a tonic channel's connections over TLS with a client configuration: the
//! client of cache nodes and a clustered node's calls to the other nodes both use it.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

pub use crate::reload::Reloading;
use hyper_util::rt::TokioIo;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// The files a TLS configuration is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain (PEM), leaf first. Empty for a client without a certificate.
    pub cert: PathBuf,
    /// Private key of `cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM): for a server, the CAs client certificates must chain to (empty:
    /// none asked); for a client, the CAs the server's certificate must chain to.
    pub ca: PathBuf,
}

impl TlsFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [&self.cert, &self.key, &self.ca]
            .into_iter()
            .filter(|p| !p.as_os_str().is_empty())
            .map(PathBuf::as_path)
    }
}

/// The protocols a server offers by ALPN, in order of preference.
pub const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError(format!("reading certificates from {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        TlsError(format!(
            "reading a private key from {}: {e}",
            path.display()
        ))
    })
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(path)? {
        roots
            .add(cert)
            .map_err(|e| TlsError(format!("a CA certificate in {}: {e}", path.display())))?;
    }
    Ok(Arc::new(roots))
}

/// A server configuration: `files.cert` and `files.key`, client certificates required when
/// `files.ca` is set, and `alpn` offered.
///
/// # Errors
/// [`TlsError`] naming the file that cannot be read or the part that does not fit.
pub fn server_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?;
    let builder = if files.ca.as_os_str().is_empty() {
        builder.with_no_client_auth()
    } else {
        let verifier = WebPkiClientVerifier::builder_with_provider(roots(&files.ca)?, provider)
            .build()
            .map_err(|e| TlsError(format!("client CA {}: {e}", files.ca.display())))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder
        .with_single_cert(certs(&files.cert)?, key(&files.key)?)
        .map_err(|e| {
            TlsError(format!(
                "{} and {}: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A client configuration: servers verified against `files.ca`; a client certificate from
/// `files.cert` and `files.key` when both are set.
///
/// # Errors
/// [`TlsError`] naming the file that cannot be read or the part that does not fit.
pub fn client_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<ClientConfig, TlsError> {
    if files.ca.as_os_str().is_empty() {
        return Err(TlsError(
            "a TLS client needs the CA to verify servers with".into(),
        ));
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots(&files.ca)?);
    let mut config = if files.cert.as_os_str().is_empty() {
        builder.with_no_client_auth()
    } else {
        builder
            .with_client_auth_cert(certs(&files.cert)?, key(&files.key)?)
            .map_err(|e| TlsError(format!("client certificate: {e}")))?
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A server configuration from `files`, rebuilt when they change (see [`Reloading`]).
///
/// # Errors
/// As [`server_config`], for the first build.
pub fn reloading_server(
    files: TlsFiles,
    alpn: &'static [&'static [u8]],
) -> Result<Arc<Reloading<ServerConfig>>, TlsError> {
    let paths = files.paths().map(Path::to_path_buf).collect();
    Reloading::new(paths, move || server_config(&files, alpn).map_err(|e| e.0)).map_err(TlsError)
}

/// A client configuration from `files`, rebuilt when they change (see [`Reloading`]).
///
/// # Errors
/// As [`client_config`], for the first build.
pub fn reloading_client(
    files: TlsFiles,
    alpn: &'static [&'static [u8]],
) -> Result<Arc<Reloading<ClientConfig>>, TlsError> {
    let paths = files.paths().map(Path::to_path_buf).collect();
    Reloading::new(paths, move || client_config(&files, alpn).map_err(|e| e.0)).map_err(TlsError)
}

/// Connects a tonic channel's HTTP/2 connections over TCP and then TLS with a client
/// configuration that may be reloaded (each connection takes the one current then).
#[derive(Clone)]
pub struct Connector {
    config: Arc<Reloading<ClientConfig>>,
    /// The name server certificates are checked against (`None`: each address's host).
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
    /// Connections with `config`, checking servers by `server_name` (`None`: the host of the
    /// address connected to), TCP and handshake together bounded by `connect_timeout`.
    pub fn new(
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

impl tower::Service<http::Uri> for Connector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Connecting {
        let config = self.config.current();
        let name = self.server_name.clone();
        let timeout = self.connect_timeout;
        Box::pin(async move {
            let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_owned());
            let host = uri
                .host()
                .ok_or_else(|| invalid("an address has no host"))?;
            let port = uri
                .port_u16()
                .ok_or_else(|| invalid("an address has no port"))?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let server_name = ServerName::try_from(name.unwrap_or_else(|| host.clone()))
                .map_err(|_| invalid("the server's name is not a DNS name or an IP address"))?;
            let connect = async {
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                tokio_rustls::TlsConnector::from(config)
                    .connect(server_name, tcp)
                    .await
            };
            match tokio::time::timeout(timeout, connect).await {
                Ok(stream) => stream.map(TokioIo::new),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connecting over TLS took too long",
                )),
            }
        })
    }
}
