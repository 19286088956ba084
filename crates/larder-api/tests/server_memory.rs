//! The gateway's memory under a client that pipelines requests and never reads the answers.
//! Alone in its test binary, because it measures the resident size of the whole process.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod support;

use std::time::Duration;

use larder_api::ApiConfig;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test]
async fn a_client_that_never_reads_cannot_pile_up_answers() {
    let gw = start(ApiConfig {
        max_body_bytes: 2 << 20,
        client_timeout_ms: 5_000,
        ..config()
    })
    .await;
    let description = send(gw.addr, "GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert!(description.body.len() > 2_000, "{}", description.body.len());
    let before = resident_bytes();
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    // A large body first grows the server's input buffer, so that one read then takes tens
    // of thousands of pipelined requests, each answered with the whole API description.
    let body = vec![b' '; 1 << 20];
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body).await.unwrap();
    let one = b"GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n";
    let requests = one.repeat((1 << 20) / one.len());
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.write_all(&requests)).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let grown = resident_bytes().saturating_sub(before);
    assert!(
        grown < 24 << 20,
        "the server holds {} MiB of answers nobody reads",
        grown >> 20
    );
    // It gives up on the client after the client timeout, and keeps serving others.
    assert!(closes(&mut conn, Duration::from_secs(15)).await);
    assert_eq!(
        send(gw.addr, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .status,
        200
    );
    gw.stop.cancel();
}
