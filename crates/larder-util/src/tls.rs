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

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::reload::Reloading;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

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
