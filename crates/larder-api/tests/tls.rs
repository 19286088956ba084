//! HTTP/2 and TLS with real clients: curl (`--http2-prior-knowledge`, `--http2` over TLS with
//! ALPN) and hyper's client over `tokio-rustls`; mutual TLS with certificates made in the test
//! (`rcgen`): a good client certificate, none, an expired one, one from another CA; a server
//! certificate that expired or comes from another CA; and certificates replaced on disk while
//! the gateway runs.
//!
//! curl must be installed (CI installs it); without it, and outside CI, the curl cases are
//! skipped with a message.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use larder_api::ApiConfig;
use larder_util::tls::{TlsFiles, client_config};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use support::*;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn scratch() -> PathBuf {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("larder-tls-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A certificate authority of the test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    /// Writes a leaf certificate for `name` (and 127.0.0.1) and its key into `dir`; an expired
    /// one if `expired`. Returns `(cert, key)`.
    fn leaf(&self, dir: &Path, file: &str, name: &str, expired: bool) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.distinguished_name.push(DnType::CommonName, name);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{file}.pem")),
            dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(format!("{file}.pem"));
        std::fs::write(&path, self.issuer.pem()).unwrap();
        path
    }
}

/// A gateway serving TLS with a certificate from `ca` (and asking for client certificates from
/// `client_ca`, if given).
async fn tls_gateway(dir: &Path, ca: &Ca, client_ca: Option<&Path>, reload_ms: u64) -> Gateway {
    let (cert, key) = ca.leaf(dir, "server", "localhost", false);
    start_tls(ApiConfig {
        tls_cert: cert.display().to_string(),
        tls_key: key.display().to_string(),
        tls_client_ca: client_ca
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        reload_ms,
        ..config()
    })
    .await
}

/// A TLS client trusting `ca`, presenting `client` `(cert, key)` if given, offering `alpn`.
fn connector(
    ca: &Path,
    client: Option<&(PathBuf, PathBuf)>,
    alpn: &'static [&'static [u8]],
) -> TlsConnector {
    let files = TlsFiles {
        cert: client.map(|c| c.0.clone()).unwrap_or_default(),
        key: client.map(|c| c.1.clone()).unwrap_or_default(),
        ca: ca.to_path_buf(),
    };
    TlsConnector::from(Arc::new(client_config(&files, alpn).unwrap()))
}

/// GET `path` over TLS with hyper's client; the HTTP version hyper spoke and the status, or the
/// error of the handshake or the request.
async fn get_tls(
    addr: SocketAddr,
    tls: &TlsConnector,
    path: &str,
) -> Result<(hyper::Version, u16, Vec<u8>), String> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let stream = tls.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    // hyper's connection-level client sends only what it is given: HTTP/1.1 needs its Host.
    let request = Request::get(format!("https://localhost{path}"))
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?
    };
    let (version, status) = (response.version(), response.status().as_u16());
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((version, status, body.to_bytes().to_vec()))
}

/// Whether curl can be run here; outside CI its absence skips the curl cases.
fn have_curl() -> bool {
    let found = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("HTTP2"));
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install curl with HTTP/2"
        );
        eprintln!("curl with HTTP/2 is not installed: curl cases skipped");
    }
    found
}

/// `curl -s -o /dev/null -w '%{http_version} %{http_code}' ARGS…`, off the runtime's thread.
async fn curl(args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let output = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
            ])
            .args(["--max-time", "10"])
            .args(&args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn h2c_and_http1_share_the_cleartext_port() {
    let gw = start(config()).await;
    assert_eq!(send(gw.addr, &create("h2", "over two")).await.status, 201);
    let one = send(gw.addr, "GET /v1/products/h2 HTTP/1.1\r\nHost: t\r\n\r\n").await;

    // hyper's client, HTTP/2 by prior knowledge.
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let request = Request::get(format!("http://{}/v1/products/h2", gw.addr))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["etag"], "\"1\"");
        bodies.push(response.into_body().collect().await.unwrap().to_bytes());
    }
    assert!(
        bodies.iter().all(|b| *b == one.body),
        "HTTP/2 and HTTP/1.1 serve the same bytes"
    );
    // A refusal is a problem document on HTTP/2 too.
    let request = Request::get(format!("http://{}/v1/products/nope", gw.addr))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );

    if have_curl() {
        let base = format!("http://{}", gw.addr);
        assert_eq!(
            curl(&["--http2-prior-knowledge", &format!("{base}/v1/products/h2")]).await,
            "2 200"
        );
        assert_eq!(
            curl(&["--http1.1", &format!("{base}/v1/products/h2")]).await,
            "1.1 200"
        );
        let post = curl(&[
            "--http2-prior-knowledge",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/vnd.api+json",
            "-d",
            r#"{"data":{"type":"products","attributes":{"name":"by curl"}}}"#,
            &format!("{base}/v1/products"),
        ])
        .await;
        assert_eq!(post, "2 201");
    }
    gw.stop.cancel();
}

#[tokio::test]
async fn tls_serves_h2_and_http1_by_alpn() {
    let dir = scratch();
    let ca = Ca::new("larder test CA");
    let ca_pem = ca.write(&dir, "ca");
    let gw = tls_gateway(&dir, &ca, None, 5_000).await;
    let h2 = connector(&ca_pem, None, &[b"h2"]);
    let (version, status, _) = get_tls(gw.addr, &h2, "/healthz").await.unwrap();
    assert_eq!((version, status), (hyper::Version::HTTP_2, 200));
    let http1 = connector(&ca_pem, None, &[b"http/1.1"]);
    let (version, status, body) = get_tls(gw.addr, &http1, "/healthz").await.unwrap();
    assert_eq!(
        (version, status, body),
        (hyper::Version::HTTP_11, 200, b"ok\n".to_vec())
    );
    let no_alpn = connector(&ca_pem, None, &[]);
    assert_eq!(get_tls(gw.addr, &no_alpn, "/healthz").await.unwrap().1, 200);
    // Cleartext on the TLS port is a failed handshake, not an answer.
    let reply = tokio::time::timeout(Duration::from_secs(5), async {
        let mut conn = TcpStream::connect(gw.addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut conn, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        read_responses(&mut conn, 1).await
    })
    .await
    .unwrap();
    assert!(reply.is_empty());
    if have_curl() {
        let port = gw.addr.port();
        let resolve = format!("localhost:{port}:127.0.0.1");
        let url = format!("https://localhost:{port}/healthz");
        let ca = ca_pem.display().to_string();
        assert_eq!(
            curl(&["--cacert", &ca, "--resolve", &resolve, "--http2", &url]).await,
            "2 200"
        );
        assert_eq!(
            curl(&["--cacert", &ca, "--resolve", &resolve, "--http1.1", &url]).await,
            "1.1 200"
        );
        // curl refuses a server its CA file does not vouch for.
        let other = Ca::new("another CA").write(&dir, "other-ca");
        let refused = curl(&[
            "--cacert",
            &other.display().to_string(),
            "--resolve",
            &resolve,
            &url,
        ])
        .await;
        assert_eq!(refused, "0 000");
    }
    gw.stop.cancel();
}

#[tokio::test]
async fn clients_refuse_expired_and_foreign_server_certificates() {
    let dir = scratch();
    let ca = Ca::new("larder test CA");
    let ca_pem = ca.write(&dir, "ca");
    let (cert, key) = ca.leaf(&dir, "expired", "localhost", true);
    let expired = start_tls(ApiConfig {
        tls_cert: cert.display().to_string(),
        tls_key: key.display().to_string(),
        ..config()
    })
    .await;
    let err = get_tls(
        expired.addr,
        &connector(&ca_pem, None, &[b"h2"]),
        "/healthz",
    )
    .await
    .unwrap_err();
    assert!(err.contains("certificate expired"), "{err}");
    expired.stop.cancel();
    let valid = tls_gateway(&dir, &ca, None, 5_000).await;
    assert!(
        get_tls(valid.addr, &connector(&ca_pem, None, &[b"h2"]), "/healthz")
            .await
            .is_ok()
    );
    let other = Ca::new("another CA").write(&dir, "other");
    let err = get_tls(valid.addr, &connector(&other, None, &[b"h2"]), "/healthz")
        .await
        .unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
    valid.stop.cancel();
}

#[tokio::test]
async fn mutual_tls_takes_only_client_certificates_from_its_ca() {
    let dir = scratch();
    let server_ca = Ca::new("server CA");
    let server_ca_pem = server_ca.write(&dir, "server-ca");
    let client_ca = Ca::new("client CA");
    let client_ca_pem = client_ca.write(&dir, "client-ca");
    let gw = tls_gateway(&dir, &server_ca, Some(&client_ca_pem), 5_000).await;
    let good = client_ca.leaf(&dir, "client", "svc-a", false);
    let expired = client_ca.leaf(&dir, "client-expired", "svc-b", true);
    let foreign = Ca::new("rogue CA").leaf(&dir, "client-foreign", "svc-c", false);
    let ok = get_tls(
        gw.addr,
        &connector(&server_ca_pem, Some(&good), &[b"h2"]),
        "/healthz",
    )
    .await;
    assert_eq!(ok.unwrap().1, 200);
    let ok = get_tls(
        gw.addr,
        &connector(&server_ca_pem, Some(&good), &[b"http/1.1"]),
        "/healthz",
    )
    .await;
    assert_eq!(ok.unwrap().1, 200);
    for (what, client) in [
        ("no certificate", None),
        ("expired", Some(&expired)),
        ("another CA", Some(&foreign)),
    ] {
        // With TLS 1.3 the client learns of the refusal on its first read.
        let result = get_tls(
            gw.addr,
            &connector(&server_ca_pem, client, &[b"h2"]),
            "/healthz",
        )
        .await;
        assert!(result.is_err(), "{what}: {result:?}");
    }
    let failures = metric_tls(gw.addr, &server_ca_pem, &good).await;
    assert!(failures >= 3, "{failures}");
    if have_curl() {
        let port = gw.addr.port();
        let resolve = format!("localhost:{port}:127.0.0.1");
        let url = format!("https://localhost:{port}/healthz");
        let ca = server_ca_pem.display().to_string();
        let (cert, key) = (good.0.display().to_string(), good.1.display().to_string());
        assert_eq!(
            curl(&[
                "--cacert",
                &ca,
                "--cert",
                &cert,
                "--key",
                &key,
                "--resolve",
                &resolve,
                "--http2",
                &url
            ])
            .await,
            "2 200"
        );
        assert_ne!(
            curl(&["--cacert", &ca, "--resolve", &resolve, &url]).await,
            "2 200"
        );
    }
    gw.stop.cancel();
}

/// `larder_api_tls_handshake_failures_total`, read over a good mutual-TLS connection.
async fn metric_tls(addr: SocketAddr, ca: &Path, client: &(PathBuf, PathBuf)) -> u64 {
    let (_, _, body) = get_tls(addr, &connector(ca, Some(client), &[b"h2"]), "/metrics")
        .await
        .unwrap();
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("larder_api_tls_handshake_failures_total "))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn certificates_changed_on_disk_are_served_without_a_restart() {
    let dir = scratch();
    let old_ca = Ca::new("old CA");
    let old_pem = old_ca.write(&dir, "old-ca");
    let gw = tls_gateway(&dir, &old_ca, None, 50).await;
    assert_eq!(
        get_tls(gw.addr, &connector(&old_pem, None, &[b"h2"]), "/healthz")
            .await
            .unwrap()
            .1,
        200
    );
    // Rotate: a new CA issues the certificate now in the same files.
    let new_ca = Ca::new("new CA");
    let new_pem = new_ca.write(&dir, "new-ca");
    let (fresh_cert, fresh_key) = new_ca.leaf(&dir, "fresh", "localhost", false);
    // A half-written pair (a key without its certificate) is not taken up.
    std::fs::copy(&fresh_key, dir.join("server.key")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        get_tls(gw.addr, &connector(&old_pem, None, &[b"h2"]), "/healthz")
            .await
            .unwrap()
            .1,
        200
    );
    std::fs::copy(&fresh_cert, dir.join("server.pem")).unwrap();
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if get_tls(gw.addr, &connector(&new_pem, None, &[b"h2"]), "/healthz")
            .await
            .is_ok()
        {
            served = true;
            break;
        }
    }
    assert!(served, "the new certificate was never served");
    assert!(
        get_tls(gw.addr, &connector(&old_pem, None, &[b"h2"]), "/healthz")
            .await
            .is_err()
    );
    gw.stop.cancel();
}

#[tokio::test]
async fn the_gateway_reaches_cache_nodes_over_mutual_tls() {
    let dir = scratch();
    let (node_ca, client_ca) = (Ca::new("node CA"), Ca::new("gateway CA"));
    let node_ca_pem = node_ca.write(&dir, "node-ca");
    let client_ca_pem = client_ca.write(&dir, "gateway-ca");
    let (node_cert, node_key) = node_ca.leaf(&dir, "node", "localhost", false);
    let node_config = larder_cache::CacheConfig {
        resp_addr: "127.0.0.1:0".into(),
        grpc_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        max_memory: "16mb".into(),
        shutdown_grace_ms: 300,
        tls_cert: node_cert.display().to_string(),
        tls_key: node_key.display().to_string(),
        tls_client_ca: client_ca_pem.display().to_string(),
        ..larder_cache::CacheConfig::default()
    };
    let listeners = larder_cache::Listeners::bind(&node_config).await.unwrap();
    let [_, grpc, _] = listeners.local_addrs().unwrap();
    let node_stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(larder_cache::run(node_config, listeners, node_stop.clone()));
    let (gw_cert, gw_key) = client_ca.leaf(&dir, "gateway", "gateway", false);
    let gw = start(ApiConfig {
        cache_nodes: vec![grpc.to_string()],
        cache_deadline_ms: 5_000,
        cache_tls_ca: node_ca_pem.display().to_string(),
        cache_tls_cert: gw_cert.display().to_string(),
        cache_tls_key: gw_key.display().to_string(),
        cache_tls_server_name: "localhost".into(),
        ..config()
    })
    .await;
    assert_eq!(send(gw.addr, &create("m1", "mutual")).await.status, 201);
    let read = send(gw.addr, "GET /v1/products/m1 HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(read.status, 200, "{}", read.text());
    // The write reached the node over TLS: the node holds the document.
    let client = larder_client::Client::new(larder_client::ClientConfig {
        nodes: vec![grpc.to_string()],
        deadline: Duration::from_secs(5),
        tls_ca: node_ca_pem.display().to_string(),
        tls_cert: gw_cert.display().to_string(),
        tls_key: gw_key.display().to_string(),
        tls_server_name: "localhost".into(),
        ..larder_client::ClientConfig::default()
    })
    .unwrap();
    let held = client
        .get("doc/products/m1")
        .await
        .unwrap()
        .expect("on the node");
    assert!(String::from_utf8_lossy(&held.value).contains("mutual"));
    gw.stop.cancel();
    node_stop.cancel();
}
