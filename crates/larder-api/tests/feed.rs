//! The change feed, `GET /v1/{collection}/changes`, over real sockets against SQLite and
//! PostgreSQL: events in commit order with their operations and versions, resuming with
//! `Last-Event-ID` while writes go on, errors, credentials, a second gateway's writes, and
//! concurrent writers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use larder_api::config::ApiKeyConfig;
use larder_api::{ApiConfig, CollectionConfig};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Database URLs to run against: a fresh SQLite file, and PostgreSQL when configured.
fn databases() -> Vec<String> {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("larder-feed-{}-{n}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut out = vec![format!("sqlite://{}?mode=rwc", path.display())];
    match std::env::var("LARDER_TEST_POSTGRES_URL") {
        Ok(url) => out.push(url),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI must set LARDER_TEST_POSTGRES_URL")
        }
        Err(_) => eprintln!("LARDER_TEST_POSTGRES_URL unset: PostgreSQL cases skipped"),
    }
    out
}

/// A unique collection name (the PostgreSQL database is shared).
fn unique(base: &str) -> String {
    format!(
        "{base}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn config(database: &str, names: &[&str]) -> ApiConfig {
    ApiConfig {
        database: database.to_owned(),
        changes_heartbeat_ms: 100,
        collections: names
            .iter()
            .map(|n| CollectionConfig {
                name: (*n).to_owned(),
                ..CollectionConfig::default()
            })
            .collect(),
        ..ApiConfig::default()
    }
}

struct Gateway {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), larder_api::Error>>,
}

async fn start(config: ApiConfig) -> Gateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(larder_api::run(config, listener, stop.clone()));
    // Serving (its database migrated) before the next gateway opens the same database.
    let ready = request(addr, "GET", "/healthz", &[], None).await;
    assert_eq!(ready.status(), 200);
    Gateway { addr, stop, task }
}

/// Sends one request on a connection of its own.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Response<Incoming> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "t");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = match body {
        Some(body) => {
            builder = builder.header("content-type", "application/vnd.api+json");
            Bytes::from(body.to_string())
        }
        None => Bytes::new(),
    };
    sender
        .send_request(builder.body(Full::new(body)).unwrap())
        .await
        .unwrap()
}

/// A write through the gateway; its status.
async fn write(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> u16 {
    let response = request(addr, method, path, &[], body).await;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

async fn create(addr: SocketAddr, collection: &str, id: &str) {
    let doc = json!({"data": {"type": collection, "id": id, "attributes": {"n": 1}}});
    let status = write(addr, "POST", &format!("/v1/{collection}"), Some(doc)).await;
    assert_eq!(status, 201, "create {collection}/{id}");
}

async fn update(addr: SocketAddr, collection: &str, id: &str) {
    let doc = json!({"data": {"type": collection, "id": id, "attributes": {"n": 2}}});
    let status = write(addr, "PATCH", &format!("/v1/{collection}/{id}"), Some(doc)).await;
    assert_eq!(status, 200, "update {collection}/{id}");
}

/// One event as the feed sent it.
#[derive(Debug, Clone, PartialEq)]
struct Event {
    seq: i64,
    op: String,
    data: Value,
}

/// A client's side of one feed stream.
struct Feed {
    body: Incoming,
    text: String,
    comments: usize,
}

impl Feed {
    async fn open(addr: SocketAddr, collection: &str, headers: &[(&str, &str)]) -> Self {
        Self::open_path(addr, &format!("/v1/{collection}/changes"), headers).await
    }

    async fn open_path(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Self {
        let response = request(addr, "GET", path, headers, None).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            body: response.into_body(),
            text: String::new(),
            comments: 0,
        }
    }

    /// The next event (comments counted and skipped); `None` when the stream ends.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                if block.starts_with(':') {
                    self.comments += 1;
                    continue;
                }
                return Some(parse(&block));
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("the feed sends within 10 s")?
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.text.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    async fn take(&mut self, n: usize) -> Vec<Event> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.push(self.next().await.expect("the stream goes on"));
        }
        out
    }
}

fn parse(block: &str) -> Event {
    let mut seq = None;
    let mut op = None;
    let mut data = None;
    for line in block.lines().filter(|l| !l.is_empty()) {
        match line.split_once(": ") {
            Some(("id", v)) => seq = Some(v.parse().unwrap()),
            Some(("event", v)) => op = Some(v.to_owned()),
            Some(("data", v)) => data = Some(serde_json::from_str(v).unwrap()),
            _ => panic!("unexpected line {line:?} in {block:?}"),
        }
    }
    Event {
        seq: seq.expect("id"),
        op: op.expect("event"),
        data: data.expect("data"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_appear_in_order_with_their_operations_and_versions() {
    for database in databases() {
        let (books, other) = (unique("books"), unique("other"));
        let gw = start(config(&database, &[&books, &other])).await;
        let mut feed = Feed::open(gw.addr, &books, &[]).await;
        create(gw.addr, &books, "a").await;
        create(gw.addr, &other, "x").await;
        update(gw.addr, &books, "a").await;
        create(gw.addr, &books, "b").await;
        let deleted = request(
            gw.addr,
            "DELETE",
            &format!("/v1/{books}/a"),
            &[("if-match", "\"2\"")],
            None,
        )
        .await;
        assert_eq!(deleted.status(), 204);
        let events = feed.take(4).await;
        let seen: Vec<(&str, &str, i64)> = events
            .iter()
            .map(|e| {
                assert_eq!(e.data["type"], books.as_str());
                assert!(e.data["time"].as_str().unwrap().ends_with('Z'));
                let id = e.data["id"].as_str().unwrap();
                (e.op.as_str(), id, e.data["version"].as_i64().unwrap())
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("create", "a", 1),
                ("update", "a", 2),
                ("create", "b", 1),
                ("delete", "a", 2)
            ],
            "{database}"
        );
        assert!(events.windows(2).all(|w| w[0].seq < w[1].seq), "{events:?}");
        // The other collection's create lies between the first two: it is skipped, not lost.
        assert!(events[1].seq - events[0].seq >= 2, "{events:?}");
        // Idle, the stream carries comments that keep proxies from closing it.
        let quiet = tokio::time::timeout(Duration::from_millis(400), feed.next()).await;
        assert!(quiet.is_err(), "no event without a write");
        assert!(feed.comments >= 2, "heartbeats: {}", feed.comments);
        gw.stop.cancel();
        // The stream ends on shutdown, so the server drains and stops.
        assert!(feed.next().await.is_none());
        tokio::time::timeout(Duration::from_secs(5), gw.task)
            .await
            .expect("the gateway drains with a feed open")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_after_a_disconnect_loses_and_repeats_nothing_while_writes_go_on() {
    const WRITES: usize = 300;
    for database in databases() {
        let books = unique("books");
        let gw = start(config(&database, &[&books])).await;
        let mut feed = Feed::open(gw.addr, &books, &[]).await;
        let (addr, name) = (gw.addr, books.clone());
        let writer = tokio::spawn(async move {
            for i in 0..WRITES {
                create(addr, &name, &format!("d{i}")).await;
            }
        });
        let mut seen: Vec<Event> = Vec::new();
        let mut round = 0;
        while seen.len() < WRITES {
            let n = (WRITES - seen.len()).min(37);
            seen.extend(feed.take(n).await);
            // Hang up and come back after the last event seen: by header, or by query.
            let last = seen.last().unwrap().seq.to_string();
            round += 1;
            feed = if round % 2 == 0 {
                Feed::open(gw.addr, &books, &[("last-event-id", &last)]).await
            } else {
                let path = format!("/v1/{books}/changes?after={last}");
                Feed::open_path(gw.addr, &path, &[]).await
            };
        }
        writer.await.unwrap();
        let ids: Vec<String> = seen
            .iter()
            .map(|e| e.data["id"].as_str().unwrap().to_owned())
            .collect();
        let expected: Vec<String> = (0..WRITES).map(|i| format!("d{i}")).collect();
        assert_eq!(ids, expected, "{database}: every event once, in order");
        assert!(seen.windows(2).all(|w| w[0].seq < w[1].seq));
        gw.stop.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_positions_are_400_and_other_media_types_406() {
    let database = databases().remove(0);
    let books = unique("books");
    let gw = start(config(&database, &[&books])).await;
    let path = format!("/v1/{books}/changes");
    for (headers, status) in [
        (vec![("last-event-id", "abc")], 400),
        (vec![("last-event-id", "-3")], 400),
        (vec![("accept", "application/vnd.api+json")], 406),
    ] {
        let response = request(gw.addr, "GET", &path, &headers, None).await;
        assert_eq!(response.status(), status, "{headers:?}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    let response = request(gw.addr, "GET", &format!("{path}?after=x"), &[], None).await;
    assert_eq!(response.status(), 400);
    // A position the log never reached cannot be resumed after.
    let response = request(gw.addr, "GET", &format!("{path}?after=999999"), &[], None).await;
    assert_eq!(response.status(), 410);
    // The id of the feed cannot be a document's.
    let doc = json!({"data": {"type": books, "id": "changes", "attributes": {}}});
    assert_eq!(
        write(gw.addr, "POST", &format!("/v1/{books}"), Some(doc)).await,
        400
    );
    let response = request(gw.addr, "PATCH", &path, &[], None).await;
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    gw.stop.cancel();
}

fn sha256_hex(secret: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, secret.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_needs_what_reads_of_its_collection_need() {
    let database = databases().remove(0);
    let books = unique("books");
    let key = |name: &str, scopes: &[&str]| ApiKeyConfig {
        name: name.to_owned(),
        sha256: sha256_hex(name),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    };
    let mut config = config(&database, &[&books]);
    config.keys = vec![
        key("reader", &[&format!("{books}:read")]),
        key("writer", &[&format!("{books}:write")]),
        key("elsewhere", &["other:read"]),
    ];
    let gw = start(config).await;
    let path = format!("/v1/{books}/changes");
    for (credential, status) in [
        (None, 401),
        (Some("Bearer nope"), 401),
        (Some("Bearer writer"), 403),
        (Some("Bearer elsewhere"), 403),
        (Some("Bearer reader"), 200),
    ] {
        let headers: Vec<(&str, &str)> = credential
            .map(|c| ("authorization", c))
            .into_iter()
            .collect();
        let response = request(gw.addr, "GET", &path, &headers, None).await;
        assert_eq!(response.status(), status, "{credential:?}");
    }
    gw.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_gateways_writes_reach_this_gateways_feed() {
    // Over PostgreSQL only: a second gateway on one SQLite file is refused.
    for database in databases()
        .into_iter()
        .filter(|d| d.starts_with("postgres"))
    {
        let books = unique("books");
        let first = start(config(&database, &[&books])).await;
        let second = start(config(&database, &[&books])).await;
        let mut feed = Feed::open(first.addr, &books, &[]).await;
        for i in 0..20 {
            create(second.addr, &books, &format!("d{i}")).await;
        }
        let events = feed.take(20).await;
        let ids: Vec<&str> = events
            .iter()
            .map(|e| e.data["id"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
        assert_eq!(ids, expected, "{database}");
        first.stop.cancel();
        second.stop.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_through_two_gateways_leave_no_gap_a_reader_skips() {
    const WRITERS: usize = 8;
    const EACH: usize = 40;
    // Over PostgreSQL only: a second gateway on one SQLite file is refused.
    for database in databases()
        .into_iter()
        .filter(|d| d.starts_with("postgres"))
    {
        let books = unique("books");
        let first = start(config(&database, &[&books])).await;
        let second = start(config(&database, &[&books])).await;
        let mut feed = Feed::open(first.addr, &books, &[]).await;
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let addr = if w % 2 == 0 { first.addr } else { second.addr };
            let name = books.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..EACH {
                    create(addr, &name, &format!("w{w}-{i}")).await;
                    if i % 4 == 0 {
                        update(addr, &name, &format!("w{w}-{i}")).await;
                    }
                }
            }));
        }
        let per_writer = EACH + EACH.div_ceil(4);
        let events = feed.take(WRITERS * per_writer).await;
        for writer in writers {
            writer.await.unwrap();
        }
        assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
        let distinct: HashSet<(String, i64)> = events
            .iter()
            .map(|e| {
                let id = e.data["id"].as_str().unwrap().to_owned();
                (id, e.data["version"].as_i64().unwrap())
            })
            .collect();
        assert_eq!(distinct.len(), WRITERS * per_writer, "{database}");
        // A reader that starts from the beginning of these writes gets the same events.
        let before = (events[0].seq - 1).to_string();
        let mut again = Feed::open(first.addr, &books, &[("last-event-id", &before)]).await;
        assert_eq!(again.take(events.len()).await, events, "{database}");
        first.stop.cancel();
        second.stop.cancel();
    }
}
