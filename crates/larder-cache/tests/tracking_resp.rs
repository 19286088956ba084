//! RESP client-side caching over real sockets: RESP3 pushes on the tracking connection, a
//! redirection to a RESP2 connection subscribed to `__redis__:invalidate`, BCAST with
//! prefixes, NOLOOP, and a gRPC write invalidating a RESP reader (one table for both wires).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod support;

use std::time::Duration;

use larder_proto::grpc::cache::v1 as pb;
use larder_proto::resp::encode_request;
use support::{TestNode, config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// A raw RESP connection: commands out, bytes in, compared exactly.
struct Raw {
    stream: TcpStream,
    buffered: Vec<u8>,
}

impl Raw {
    async fn connect(node: &TestNode) -> Self {
        let stream = TcpStream::connect(node.resp).await.unwrap();
        Self {
            stream,
            buffered: Vec::new(),
        }
    }

    async fn send(&mut self, words: &[&str]) {
        let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        let mut out = Vec::new();
        encode_request(&mut out, &args);
        self.stream.write_all(&out).await.unwrap();
    }

    /// Reads until exactly `want` has arrived (more is kept for the next call).
    async fn expect(&mut self, want: &str) {
        let want = want.as_bytes();
        let read = async {
            while self.buffered.len() < want.len() {
                let mut chunk = [0u8; 4096];
                let n = self.stream.read(&mut chunk).await.unwrap();
                assert!(
                    n > 0,
                    "closed; had {:?}",
                    String::from_utf8_lossy(&self.buffered)
                );
                self.buffered.extend_from_slice(&chunk[..n]);
            }
        };
        if timeout(Duration::from_secs(5), read).await.is_err() {
            panic!(
                "timed out waiting for {:?}, had {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&self.buffered)
            );
        }
        let got: Vec<u8> = self.buffered.drain(..want.len()).collect();
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    }

    async fn run(&mut self, words: &[&str], want: &str) {
        self.send(words).await;
        self.expect(want).await;
    }

    /// Asserts nothing more arrives within a short while.
    async fn silent(&mut self) {
        let mut chunk = [0u8; 256];
        let read = timeout(Duration::from_millis(200), self.stream.read(&mut chunk)).await;
        assert!(
            read.is_err() && self.buffered.is_empty(),
            "unexpected {:?}",
            read.map(|n| String::from_utf8_lossy(&chunk[..n.unwrap()]).into_owned())
        );
    }

    async fn id(&mut self) -> String {
        self.send(&["CLIENT", "ID"]).await;
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            let mut byte = [0u8; 1];
            self.stream.read_exact(&mut byte).await.unwrap();
            line.push(byte[0]);
        }
        String::from_utf8(line[1..line.len() - 2].to_vec()).unwrap()
    }
}

fn push(keys: &[&str]) -> String {
    let mut text = format!(">2\r\n$10\r\ninvalidate\r\n*{}\r\n", keys.len());
    for key in keys {
        text.push_str(&format!("${}\r\n{key}\r\n", key.len()));
    }
    text
}

fn message(key: &str) -> String {
    format!(
        "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n${}\r\n{key}\r\n",
        key.len()
    )
}

async fn resp3(node: &TestNode) -> Raw {
    let mut raw = Raw::connect(node).await;
    raw.send(&["HELLO", "3"]).await;
    let mut chunk = [0u8; 1024];
    let n = raw.stream.read(&mut chunk).await.unwrap();
    assert!(chunk[..n].starts_with(b"%7\r\n"));
    raw
}

#[tokio::test]
async fn resp3_reader_gets_an_invalidate_push_once_per_read() {
    let node = TestNode::with(config());
    let mut reader = resp3(&node).await;
    let mut writer = Raw::connect(&node).await;
    writer.run(&["SET", "k", "v1"], "+OK\r\n").await;
    reader.run(&["CLIENT", "TRACKING", "ON"], "+OK\r\n").await;
    reader.run(&["GET", "k"], "$2\r\nv1\r\n").await;

    writer.run(&["SET", "k", "v2"], "+OK\r\n").await;
    reader.expect(&push(&["k"])).await;
    // Not read again, so not told again.
    writer.run(&["SET", "k", "v3"], "+OK\r\n").await;
    reader.silent().await;

    reader
        .run(&["MGET", "k", "other"], "*2\r\n$2\r\nv3\r\n_\r\n")
        .await;
    writer.run(&["DEL", "k", "other"], ":1\r\n").await;
    reader.expect(&push(&["k"])).await;
    reader.silent().await;
    writer.run(&["SET", "other", "x"], "+OK\r\n").await;
    reader.expect(&push(&["other"])).await;

    // FLUSHALL: a null for the keys.
    reader.run(&["GET", "k"], "_\r\n").await;
    writer.run(&["FLUSHALL"], "+OK\r\n").await;
    reader.expect(">2\r\n$10\r\ninvalidate\r\n_\r\n").await;
}

#[tokio::test]
async fn redirect_to_a_subscribed_resp2_connection() {
    let node = TestNode::start();
    let mut target = Raw::connect(&node).await;
    let target_id = target.id().await;
    let mut reader = Raw::connect(&node).await;
    let mut writer = Raw::connect(&node).await;

    target
        .run(
            &["SUBSCRIBE", "__redis__:invalidate"],
            "*3\r\n$9\r\nsubscribe\r\n$20\r\n__redis__:invalidate\r\n:1\r\n",
        )
        .await;
    reader
        .run(
            &["CLIENT", "TRACKING", "ON", "REDIRECT", &target_id],
            "+OK\r\n",
        )
        .await;
    reader
        .run(&["CLIENT", "GETREDIR"], &format!(":{target_id}\r\n"))
        .await;
    reader.run(&["GET", "a"], "$-1\r\n").await;
    reader.run(&["GET", "b"], "$-1\r\n").await;
    writer.run(&["SET", "a", "1"], "+OK\r\n").await;
    target.expect(&message("a")).await;
    writer.run(&["SET", "b", "1"], "+OK\r\n").await;
    target.expect(&message("b")).await;
    // The RESP2 reader itself is told nothing.
    reader.silent().await;

    // Once unsubscribed, a RESP2 target can no longer be told.
    target
        .run(
            &["UNSUBSCRIBE"],
            "*3\r\n$11\r\nunsubscribe\r\n$20\r\n__redis__:invalidate\r\n:0\r\n",
        )
        .await;
    reader.run(&["GET", "a"], "$1\r\n1\r\n").await;
    writer.run(&["SET", "a", "2"], "+OK\r\n").await;
    target.silent().await;
}

#[tokio::test]
async fn bcast_prefixes_and_noloop() {
    let node = TestNode::start();
    let mut reader = resp3(&node).await;
    let mut writer = Raw::connect(&node).await;
    reader
        .run(
            &[
                "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "user:", "PREFIX", "cfg:",
            ],
            "+OK\r\n",
        )
        .await;
    writer.run(&["SET", "order:1", "x"], "+OK\r\n").await;
    writer.run(&["SET", "user:1", "x"], "+OK\r\n").await;
    reader.expect(&push(&["user:1"])).await;
    writer.run(&["SET", "cfg:theme", "dark"], "+OK\r\n").await;
    reader.expect(&push(&["cfg:theme"])).await;
    // Without reading, every change is told again.
    writer.run(&["SET", "user:1", "y"], "+OK\r\n").await;
    reader.expect(&push(&["user:1"])).await;
    reader.silent().await;

    // NOLOOP: its own writes are not told back to it; other connections' are.
    reader.run(&["CLIENT", "TRACKING", "OFF"], "+OK\r\n").await;
    reader.expect(">2\r\n$10\r\ninvalidate\r\n_\r\n").await;
    reader
        .run(&["CLIENT", "TRACKING", "ON", "NOLOOP"], "+OK\r\n")
        .await;
    reader.run(&["GET", "mine"], "_\r\n").await;
    reader.run(&["SET", "mine", "1"], "+OK\r\n").await;
    reader.silent().await;
    reader.run(&["GET", "mine"], "$1\r\n1\r\n").await;
    writer.run(&["SET", "mine", "2"], "+OK\r\n").await;
    reader.expect(&push(&["mine"])).await;
}

#[tokio::test]
async fn a_grpc_write_invalidates_a_resp_reader() {
    let node = TestNode::start();
    let mut reader = resp3(&node).await;
    reader.run(&["CLIENT", "TRACKING", "ON"], "+OK\r\n").await;
    reader.run(&["GET", "shared"], "_\r\n").await;
    let mut grpc = pb::cache_client::CacheClient::connect(format!("http://{}", node.grpc))
        .await
        .unwrap();
    grpc.set(pb::SetRequest {
        key: "shared".into(),
        value: "x".into(),
        ..pb::SetRequest::default()
    })
    .await
    .unwrap();
    reader.expect(&push(&["shared"])).await;
}

#[tokio::test]
async fn redirect_to_a_resp3_connection_and_tracking_ends_with_the_connection() {
    let node = TestNode::start();
    let mut target = resp3(&node).await;
    let target_id = target.id().await;
    let mut reader = Raw::connect(&node).await;
    let mut writer = Raw::connect(&node).await;
    reader
        .run(
            &["CLIENT", "TRACKING", "ON", "REDIRECT", &target_id],
            "+OK\r\n",
        )
        .await;
    reader.run(&["GET", "k"], "$-1\r\n").await;
    writer.run(&["SET", "k", "1"], "+OK\r\n").await;
    // A RESP3 target gets the push without subscribing.
    target.expect(&push(&["k"])).await;

    writer.send(&["INFO", "clients"]).await;
    let info = writer.read_some().await;
    assert!(info.contains("tracking_clients:1\r\n"), "{info}");
    drop(reader);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        writer.send(&["INFO", "clients"]).await;
        if writer.read_some().await.contains("tracking_clients:0\r\n") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tracking outlived its connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Raw {
    /// Whatever one read returns (a short reply arrives in one piece on loopback).
    async fn read_some(&mut self) -> String {
        let mut chunk = [0u8; 8192];
        let n = timeout(Duration::from_secs(5), self.stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&chunk[..n]).into_owned()
    }
}

#[tokio::test]
async fn a_gone_redirection_target_is_reported_to_a_resp3_tracker() {
    let node = TestNode::start();
    let mut target = Raw::connect(&node).await;
    let target_id = target.id().await;
    let mut reader = resp3(&node).await;
    let mut writer = Raw::connect(&node).await;
    reader
        .run(
            &["CLIENT", "TRACKING", "ON", "REDIRECT", &target_id],
            "+OK\r\n",
        )
        .await;
    reader.run(&["GET", "k"], "_\r\n").await;
    drop(target);
    tokio::time::sleep(Duration::from_millis(100)).await;
    writer.run(&["SET", "k", "1"], "+OK\r\n").await;
    reader
        .expect(&format!(
            ">2\r\n$21\r\ntracking-redir-broken\r\n:{target_id}\r\n"
        ))
        .await;
    reader.send(&["CLIENT", "TRACKINGINFO"]).await;
    let info = reader.read_some().await;
    assert!(info.contains("broken_redirect"), "{info}");
}
