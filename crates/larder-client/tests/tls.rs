//! TLS between clients and cache nodes, with certificates made in the test (`rcgen`): this
//! client over gRPC to a node asking for client certificates (a good one, none, an expired
//! one, one from another CA; a node certificate from a CA the client does not trust), RESP over
//! TLS spoken by a `tokio-rustls` client, and node certificates replaced on disk while the
//! node runs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use larder_cache::CacheConfig;
use larder_client::{Client, ClientConfig, SetOpts};
use larder_util::tls::{TlsFiles, client_config};
use support::certs::{Ca, path, scratch};
use support::{TestNode, node_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

/// A node serving gRPC and RESP over TLS with `cert`, asking for client certificates from
/// `client_ca` if given.
fn tls_node(cert: &(PathBuf, PathBuf), client_ca: Option<&Path>) -> TestNode {
    TestNode::with(CacheConfig {
        tls_cert: path(&cert.0),
        tls_key: path(&cert.1),
        tls_client_ca: client_ca.map(path).unwrap_or_default(),
        tls_reload_ms: 50,
        ..node_config()
    })
}

fn tls_client(node: SocketAddr, ca: &Path, cert: Option<&(PathBuf, PathBuf)>) -> Client {
    Client::new(ClientConfig {
        nodes: vec![node.to_string()],
        deadline: Duration::from_secs(5),
        tls_ca: path(ca),
        tls_cert: cert.map(|c| path(&c.0)).unwrap_or_default(),
        tls_key: cert.map(|c| path(&c.1)).unwrap_or_default(),
        tls_server_name: "localhost".into(),
        ..ClientConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn the_client_speaks_mutual_tls_to_nodes_and_is_refused_without_a_good_certificate() {
    let dir = scratch();
    let (server_ca, client_ca) = (Ca::new("node CA"), Ca::new("client CA"));
    let server_ca_pem = server_ca.write(&dir, "node-ca");
    let client_ca_pem = client_ca.write(&dir, "client-ca");
    let node = tls_node(&server_ca.leaf(&dir, "node", false), Some(&client_ca_pem));
    let good = client_ca.leaf(&dir, "gateway", false);

    let client = tls_client(node.grpc, &server_ca_pem, Some(&good));
    let (stored, _) = client
        .set("k", "over tls", SetOpts::default())
        .await
        .unwrap();
    assert!(stored);
    let entry = client.get("k").await.unwrap().unwrap();
    assert_eq!(entry.value, Bytes::from("over tls"));

    let expired = client_ca.leaf(&dir, "expired", true);
    let rogue = Ca::new("rogue CA").leaf(&dir, "rogue", false);
    for (what, cert) in [
        ("none", None),
        ("expired", Some(&expired)),
        ("another CA", Some(&rogue)),
    ] {
        let refused = tls_client(node.grpc, &server_ca_pem, cert).get("k").await;
        assert!(refused.is_err(), "{what}: {refused:?}");
    }
    // A client that does not trust the node's CA refuses the node.
    let other = Ca::new("other CA").write(&dir, "other-ca");
    assert!(
        tls_client(node.grpc, &other, Some(&good))
            .get("k")
            .await
            .is_err()
    );
    // Plaintext to a TLS node fails.
    let plain = Client::new(ClientConfig {
        nodes: vec![node.grpc.to_string()],
        ..ClientConfig::default()
    })
    .unwrap();
    assert!(plain.get("k").await.is_err());
}

/// A RESP client over TLS (`tokio-rustls`), presenting `cert` if given.
async fn resp_tls(
    addr: SocketAddr,
    ca: &Path,
    cert: Option<&(PathBuf, PathBuf)>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let files = TlsFiles {
        cert: cert.map(|c| c.0.clone()).unwrap_or_default(),
        key: cert.map(|c| c.1.clone()).unwrap_or_default(),
        ca: ca.to_path_buf(),
    };
    let connector = TlsConnector::from(Arc::new(client_config(&files, &[]).unwrap()));
    let tcp = TcpStream::connect(addr).await?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// Sends `request` and reads until `expected` bytes arrived (or the connection ends).
async fn exchange<S>(stream: &mut S, request: &[u8], expected: usize) -> Vec<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(request).await.unwrap();
    let mut reply = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    while reply.len() < expected {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("a reply in time")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&chunk[..n]);
    }
    reply
}

#[tokio::test]
async fn resp_is_served_over_tls() {
    let dir = scratch();
    let (server_ca, client_ca) = (Ca::new("node CA"), Ca::new("client CA"));
    let server_ca_pem = server_ca.write(&dir, "node-ca");
    let client_ca_pem = client_ca.write(&dir, "client-ca");
    let node = tls_node(&server_ca.leaf(&dir, "node", false), Some(&client_ca_pem));
    let good = client_ca.leaf(&dir, "app", false);

    let mut conn = resp_tls(node.resp, &server_ca_pem, Some(&good))
        .await
        .unwrap();
    assert_eq!(
        exchange(&mut conn, b"*1\r\n$4\r\nPING\r\n", 7).await,
        b"+PONG\r\n"
    );
    // A value larger than a TLS record, and a pipeline whose replies fill many records.
    let value = "v".repeat(100_000);
    let set = format!(
        "*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${}\r\n{value}\r\n",
        value.len()
    );
    assert_eq!(exchange(&mut conn, set.as_bytes(), 5).await, b"+OK\r\n");
    let one = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n";
    let reply_len = format!("${}\r\n{value}\r\n", value.len()).len();
    let replies = exchange(&mut conn, &one.repeat(50), reply_len * 50).await;
    assert_eq!(replies.len(), reply_len * 50);
    assert!(replies.starts_with(b"$100000\r\nvvv"));
    // Inline commands work too.
    assert_eq!(exchange(&mut conn, b"PING\r\n", 7).await, b"+PONG\r\n");

    // Without a client certificate the handshake (or its first read) fails.
    let refused = match resp_tls(node.resp, &server_ca_pem, None).await {
        Err(_) => true,
        Ok(mut conn) => exchange(&mut conn, b"*1\r\n$4\r\nPING\r\n", 7)
            .await
            .is_empty(),
    };
    assert!(refused, "a RESP client without a certificate was served");
    // Plaintext RESP to the TLS port gets no RESP answer.
    let mut plain = TcpStream::connect(node.resp).await.unwrap();
    let reply = exchange(&mut plain, b"*1\r\n$4\r\nPING\r\n", 7).await;
    assert!(!reply.starts_with(b"+PONG"), "{reply:?}");
}

#[tokio::test]
async fn node_certificates_are_reloaded_without_a_restart() {
    let dir = scratch();
    let old_ca = Ca::new("old CA");
    let old_pem = old_ca.write(&dir, "old-ca");
    let cert = old_ca.leaf(&dir, "node", false);
    let node = tls_node(&cert, None);
    assert!(resp_tls(node.resp, &old_pem, None).await.is_ok());
    let new_ca = Ca::new("new CA");
    let new_pem = new_ca.write(&dir, "new-ca");
    let fresh = new_ca.leaf(&dir, "fresh", false);
    std::fs::copy(&fresh.1, &cert.1).unwrap();
    std::fs::copy(&fresh.0, &cert.0).unwrap();
    let mut reloaded = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if resp_tls(node.resp, &new_pem, None).await.is_ok() {
            reloaded = true;
            break;
        }
    }
    assert!(
        reloaded,
        "the RESP listener never served the new certificate"
    );
    let client = tls_client(node.grpc, &new_pem, None);
    assert!(
        client.get("anything").await.unwrap().is_none(),
        "gRPC serves it too"
    );
}
