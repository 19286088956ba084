//! Read-through and write-through against real origins over sockets: a small HTTP server
//! (axum) and a `larder.cache.v1.Origin` gRPC server (tonic) run in the test, a cache node is
//! configured with both, and clients talk to the node over RESP (`redis`) and gRPC.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use larder_cache::CacheConfig;
use larder_cache::config::OriginConfig;
use larder_proto::grpc::cache::v1 as pb;
use pb::cache_client::CacheClient;
use pb::origin_server::{Origin, OriginServer};
use support::{TestNode, config};
use tokio::runtime::Runtime;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// What one origin holds and what it was asked.
#[derive(Debug, Default)]
struct Docs {
    /// `(collection, id)` → value and version.
    docs: Mutex<HashMap<(String, String), (Bytes, u64)>>,
    loads: AtomicUsize,
    stores: AtomicUsize,
    /// Every write: collection, id, value.
    written: Mutex<Vec<(String, String, Bytes)>>,
}

impl Docs {
    fn with(docs: &[(&str, &str, &str, u64)]) -> Arc<Self> {
        let state = Self::default();
        for (collection, id, value, version) in docs {
            state.docs.lock().unwrap().insert(
                ((*collection).into(), (*id).into()),
                (Bytes::from((*value).to_owned()), *version),
            );
        }
        Arc::new(state)
    }

    fn get(&self, collection: &str, id: &str) -> Option<(Bytes, u64)> {
        let key = (collection.to_owned(), id.to_owned());
        self.docs.lock().unwrap().get(&key).cloned()
    }

    /// Keeps a written value under the next version (100 for a new key).
    fn put(&self, collection: &str, id: &str, value: Bytes) -> u64 {
        self.stores.fetch_add(1, SeqCst);
        let mut written = self.written.lock().unwrap();
        written.push((collection.into(), id.into(), value.clone()));
        let mut docs = self.docs.lock().unwrap();
        let slot = docs
            .entry((collection.into(), id.into()))
            .or_insert((Bytes::new(), 99));
        *slot = (value, slot.1 + 1);
        slot.1
    }
}

/// The documents every origin starts with; the etag column is for HTTP only.
const DOCS: &[(&str, &str, &str, u64)] = &[
    ("books", "1", "dune", 5),
    ("books", "2", "emma", 9),
    ("books", "3", "ulysses", 0),
];

// ---- the HTTP origin ----

/// `GET`/`PUT /docs/{collection}/{id}`. Special collections: `echo` answers the id as decoded
/// by axum, `fail` answers 500, `gone` 410; `books/2` has a weak etag and `books/3` a
/// non-numeric one. `/docs/bytes/{id}` decodes the raw path itself, for non-UTF-8 ids.
fn http_app(docs: Arc<Docs>) -> Router {
    Router::new()
        .route("/docs/bytes/{id}", get(http_bytes))
        .route("/docs/{collection}/{id}", get(http_load).put(http_store))
        .with_state(docs)
}

async fn http_load(
    State(docs): State<Arc<Docs>>,
    Path((collection, id)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Response {
    docs.loads.fetch_add(1, SeqCst);
    assert_eq!(headers[header::ACCEPT], "*/*");
    match collection.as_str() {
        "echo" => return (StatusCode::OK, id).into_response(),
        "fail" => return (StatusCode::INTERNAL_SERVER_ERROR, "db down").into_response(),
        "gone" => return StatusCode::GONE.into_response(),
        _ => {}
    }
    let Some((value, version)) = docs.get(&collection, &id) else {
        return (StatusCode::NOT_FOUND, "no such document").into_response();
    };
    let etag = match id.as_str() {
        "2" => format!("W/\"{version}\""),
        "3" => "\"abc-def\"".to_owned(),
        _ => format!("\"{version}\""),
    };
    (StatusCode::OK, [(header::ETAG, etag)], value).into_response()
}

async fn http_bytes(State(docs): State<Arc<Docs>>, uri: Uri) -> Response {
    docs.loads.fetch_add(1, SeqCst);
    let raw = uri.path().strip_prefix("/docs/bytes/").unwrap();
    (StatusCode::OK, percent_decode(raw)).into_response()
}

async fn http_store(
    State(docs): State<Arc<Docs>>,
    Path((collection, id)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
    if collection == "fail" {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let version = docs.put(&collection, &id, body);
    (
        StatusCode::NO_CONTENT,
        [(header::ETAG, format!("\"{version}\""))],
    )
        .into_response()
}

/// `%XX` → byte; everything else as is.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

// ---- the gRPC origin ----

/// `Origin` over [`Docs`]. Special collections: `echo` answers `origin|key|id`, `fail` is
/// UNAVAILABLE, `absent` answers NOT_FOUND as a status rather than `found = false`.
#[derive(Debug, Clone)]
struct GrpcDocs(Arc<Docs>);

fn part(parts: &HashMap<String, Bytes>, name: &str) -> String {
    String::from_utf8(parts[name].to_vec()).unwrap()
}

#[tonic::async_trait]
impl Origin for GrpcDocs {
    async fn load(
        &self,
        request: Request<pb::LoadRequest>,
    ) -> Result<tonic::Response<pb::LoadResponse>, Status> {
        self.0.loads.fetch_add(1, SeqCst);
        let request = request.into_inner();
        assert_eq!(request.origin, "rpc");
        let reply = |value: Bytes, version| pb::LoadResponse {
            found: true,
            value,
            version,
        };
        let collection = part(&request.parts, "collection");
        let reply = match collection.as_str() {
            "echo" => {
                let mut value = format!("{}|", request.origin).into_bytes();
                value.extend_from_slice(&request.key);
                value.push(b'|');
                value.extend_from_slice(&request.parts["id"]);
                reply(value.into(), 0)
            }
            "fail" => return Err(Status::unavailable("db down")),
            "absent" => return Err(Status::not_found("no such document")),
            _ => match self.0.get(&collection, &part(&request.parts, "id")) {
                Some((value, version)) => reply(value, version + 10),
                None => pb::LoadResponse::default(),
            },
        };
        Ok(tonic::Response::new(reply))
    }

    async fn store(
        &self,
        request: Request<pb::StoreRequest>,
    ) -> Result<tonic::Response<pb::StoreResponse>, Status> {
        let request = request.into_inner();
        assert_eq!(request.origin, "rpc");
        let collection = part(&request.parts, "collection");
        if collection == "fail" {
            return Err(Status::unavailable("db down"));
        }
        let version = self
            .0
            .put(&collection, &part(&request.parts, "id"), request.value);
        Ok(tonic::Response::new(pb::StoreResponse { version }))
    }
}

// ---- the harness ----

/// Both origins, their runtime, and a node configured with them: keys `doc/…` go to HTTP,
/// `rpc/…` to gRPC, both write-through.
struct Setup {
    http: Arc<Docs>,
    grpc: Arc<Docs>,
    node: TestNode,
    runtime: Runtime,
}

impl Setup {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let http = Docs::with(DOCS);
        let grpc = Docs::with(DOCS);
        let (http_addr, grpc_addr) = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let http_addr = listener.local_addr().unwrap();
            tokio::spawn(axum::serve(listener, http_app(http.clone())).into_future());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let grpc_addr = listener.local_addr().unwrap();
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let server = tonic::transport::Server::builder()
                .add_service(OriginServer::new(GrpcDocs(grpc.clone())))
                .serve_with_incoming(incoming);
            tokio::spawn(server);
            (http_addr, grpc_addr)
        });
        let node = TestNode::with(CacheConfig {
            origins: origins(http_addr, grpc_addr),
            ..config()
        });
        Self {
            http,
            grpc,
            node,
            runtime,
        }
    }

    fn redis(&self) -> redis::Connection {
        redis::Client::open(format!("redis://{}/", self.node.resp))
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// gRPC `Get`: the entry, or the status code.
    fn grpc_get(&self, key: &[u8]) -> Result<Option<pb::Entry>, Code> {
        let addr = format!("http://{}", self.node.grpc);
        let key = Bytes::copy_from_slice(key);
        self.runtime.block_on(async move {
            let mut client: CacheClient<Channel> = CacheClient::connect(addr).await.unwrap();
            match client
                .get(pb::GetRequest {
                    key,
                    lease: false,
                    track: 0,
                })
                .await
            {
                Ok(reply) => Ok(reply.into_inner().entry),
                Err(status) => Err(status.code()),
            }
        })
    }
}

fn origins(http: SocketAddr, grpc: SocketAddr) -> Vec<OriginConfig> {
    vec![
        OriginConfig {
            name: "docs".into(),
            pattern: "doc/{collection}/{id}".into(),
            kind: "http".into(),
            url: format!("http://{http}/docs/{{collection}}/{{id}}"),
            write_through: true,
            // No breaker: the failure tests must reach the origin every time.
            breaker_failures: 0,
            ..OriginConfig::default()
        },
        OriginConfig {
            name: "rpc".into(),
            pattern: "rpc/{collection}/{id}".into(),
            kind: "grpc".into(),
            url: format!("http://{grpc}"),
            write_through: true,
            breaker_failures: 0,
            ..OriginConfig::default()
        },
    ]
}

fn resp_get(
    con: &mut redis::Connection,
    key: impl redis::ToRedisArgs,
) -> redis::RedisResult<Option<Vec<u8>>> {
    redis::cmd("GET").arg(key).query(con)
}

fn assert_unavailable(result: redis::RedisResult<Option<Vec<u8>>>) {
    let err = result.unwrap_err();
    assert_eq!(err.code(), Some("ERR"), "{err}");
    assert!(
        err.detail()
            .unwrap_or_default()
            .starts_with("origin unavailable"),
        "{err}"
    );
}

// ---- the tests ----

#[test]
fn a_hit_after_the_first_load_does_not_call_the_origin_again() {
    let s = Setup::start();
    let mut con = s.redis();
    for _ in 0..3 {
        assert_eq!(
            resp_get(&mut con, "doc/books/1").unwrap().as_deref(),
            Some(&b"dune"[..])
        );
        assert_eq!(
            resp_get(&mut con, "rpc/books/1").unwrap().as_deref(),
            Some(&b"dune"[..])
        );
    }
    for key in ["doc/books/1", "rpc/books/1"] {
        let entry = s.grpc_get(key.as_bytes()).unwrap().unwrap();
        assert_eq!(&entry.value[..], b"dune");
        assert!(entry.ttl_ms > 0, "a loaded entry expires");
        assert!(!entry.stale);
    }
    assert_eq!(s.http.loads.load(SeqCst), 1);
    assert_eq!(s.grpc.loads.load(SeqCst), 1);

    // A key that matches no origin is an ordinary miss and calls nobody.
    assert_eq!(resp_get(&mut con, "other/books/1").unwrap(), None);
    assert_eq!(s.http.loads.load(SeqCst) + s.grpc.loads.load(SeqCst), 2);
}

#[test]
fn not_found_is_nil_and_an_empty_entry() {
    let s = Setup::start();
    let mut con = s.redis();
    // 404, 410, found = false and the NOT_FOUND status all mean "no such key".
    for key in [
        "doc/books/404",
        "doc/gone/1",
        "rpc/books/404",
        "rpc/absent/1",
    ] {
        assert_eq!(resp_get(&mut con, key).unwrap(), None, "{key}");
        assert_eq!(s.grpc_get(key.as_bytes()), Ok(None), "{key}");
    }
    // "Not found" is remembered for a while: the second reads did not call again.
    assert_eq!(s.http.loads.load(SeqCst), 2);
    assert_eq!(s.grpc.loads.load(SeqCst), 2);
}

#[test]
fn key_parts_reach_the_origin_intact() {
    let s = Setup::start();
    let mut con = s.redis();
    for id in [
        "a/b",
        "it's",
        "what?x=1&y=2#frag",
        "two words",
        "100%25",
        "..",
        "é/ü",
    ] {
        let key = format!("doc/echo/{id}");
        let got = resp_get(&mut con, &key).unwrap().unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), id, "{key}");

        let key = format!("rpc/echo/{id}");
        let got = resp_get(&mut con, &key).unwrap().unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), format!("rpc|{key}|{id}"));
    }
    // Bytes that are not UTF-8 survive too.
    let raw: &[u8] = b"\xff\x00 /?\xc3";
    let mut key = b"doc/bytes/".to_vec();
    key.extend_from_slice(raw);
    assert_eq!(resp_get(&mut con, &key).unwrap().as_deref(), Some(raw));
    let mut key = b"rpc/echo/".to_vec();
    key.extend_from_slice(raw);
    let got = resp_get(&mut con, &key).unwrap().unwrap();
    assert!(got.ends_with(raw), "{got:?}");
}

#[test]
fn versions_come_from_the_etag_and_the_load_response() {
    let s = Setup::start();
    let version = |key: &str| s.grpc_get(key.as_bytes()).unwrap().unwrap().version;
    assert_eq!(version("doc/books/1"), 5);
    assert_eq!(version("doc/books/2"), 9, "a weak etag");
    assert_eq!(version("rpc/books/1"), 15);
    assert_eq!(version("rpc/books/2"), 19);
    // Without a numeric etag (or with version 0) the cache assigns a version of its own.
    let entry = s.grpc_get(b"doc/books/3").unwrap().unwrap();
    assert_eq!(&entry.value[..], b"ulysses");
    assert!(entry.version > 0);
    let entry = s.grpc_get(b"rpc/echo/x").unwrap().unwrap();
    assert!(entry.version > 0);
}

#[test]
fn a_failing_origin_is_unavailable_and_nothing_is_cached() {
    let s = Setup::start();
    let mut con = s.redis();
    for key in ["doc/fail/1", "rpc/fail/1"] {
        assert_unavailable(resp_get(&mut con, key));
        assert_eq!(s.grpc_get(key.as_bytes()), Err(Code::Unavailable), "{key}");
    }
    // Each read asked again: an error is never stored.
    assert_eq!(s.http.loads.load(SeqCst), 2);
    assert_eq!(s.grpc.loads.load(SeqCst), 2);
    // The connection and the other keys are fine.
    assert_eq!(
        resp_get(&mut con, "doc/books/1").unwrap().as_deref(),
        Some(&b"dune"[..])
    );
}

#[test]
fn a_node_starts_while_its_origins_are_down() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let node = TestNode::with(CacheConfig {
        origins: origins(closed, closed),
        ..config()
    });
    let mut con = redis::Client::open(format!("redis://{}/", node.resp))
        .unwrap()
        .get_connection()
        .unwrap();
    assert_unavailable(resp_get(&mut con, "doc/books/1"));
    assert_unavailable(resp_get(&mut con, "rpc/books/1"));
    let _: () = redis::cmd("SET")
        .arg("plain")
        .arg("v")
        .query(&mut con)
        .unwrap();
}

#[test]
fn write_through_reaches_the_origin_before_ok() {
    let s = Setup::start();
    let mut con = s.redis();
    for (key, docs) in [("doc/books/new", &s.http), ("rpc/books/new", &s.grpc)] {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("hello world")
            .query(&mut con)
            .unwrap();
        // The origin had it before OK came back.
        let written = docs.written.lock().unwrap().clone();
        assert_eq!(
            written,
            [(
                "books".to_owned(),
                "new".to_owned(),
                Bytes::from("hello world")
            )],
            "{key}"
        );
        // The cache holds it under the origin's version, without loading it back.
        let entry = s.grpc_get(key.as_bytes()).unwrap().unwrap();
        assert_eq!(&entry.value[..], b"hello world");
        assert_eq!(entry.version, 100, "{key}");
        assert_eq!(docs.loads.load(SeqCst), 0, "{key}");
    }
    // An update gets the next version; a refused write fails and leaves the cache as it was.
    let _: () = redis::cmd("SET")
        .arg("doc/books/new")
        .arg("v2")
        .query(&mut con)
        .unwrap();
    assert_eq!(s.grpc_get(b"doc/books/new").unwrap().unwrap().version, 101);
    for key in ["doc/fail/1", "rpc/fail/1"] {
        let err = redis::cmd("SET")
            .arg(key)
            .arg("x")
            .query::<()>(&mut con)
            .unwrap_err();
        assert!(
            err.detail()
                .unwrap_or_default()
                .starts_with("origin unavailable"),
            "{err}"
        );
    }
    assert_eq!(s.http.stores.load(SeqCst), 2);
    assert_eq!(s.grpc.stores.load(SeqCst), 1);
}
