//! Read-through and write-through against real databases: a SQLite file, and the PostgreSQL
//! that `.ci/postgres` starts (its URL in `LARDER_TEST_POSTGRES_URL`). Loads are counted by the
//! database itself: the load query is an `UPDATE … SET reads = reads + 1 … RETURNING`, so a
//! row's `reads` column says how many queries reached it. A database outage is a real one for
//! PostgreSQL (a TCP proxy in front of it stops passing traffic) and a broken table for SQLite.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use larder_cache::NodeOptions;
use larder_cache::config::OriginConfig;
use larder_proto::grpc::cache::v1 as pb;
use larder_store::{Clock, ManualClock, SystemClock};
use parking_lot::Mutex;
use pb::cache_client::CacheClient;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, AssertSqlSafe, Row};
use support::{TestNode, admin_get, config};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tonic::Code;
use tonic::transport::Channel;

static NEXT_TABLE: AtomicUsize = AtomicUsize::new(0);

/// One test's table in one database.
struct Db {
    kind: &'static str,
    /// The URL the cache node uses (through the proxy for PostgreSQL).
    node_url: String,
    pool: AnyPool,
    table: String,
    proxy: Option<Proxy>,
}

/// The databases to run a test against: SQLite always, PostgreSQL when configured (always in
/// CI, where its absence fails the test rather than skipping it).
async fn databases() -> Vec<Db> {
    sqlx::any::install_default_drivers();
    let n = NEXT_TABLE.fetch_add(1, Ordering::Relaxed);
    let table = format!("docs_{}_{n}", std::process::id());
    let path = std::env::temp_dir().join(format!("larder-origin-{}-{n}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let sqlite_url = format!("sqlite://{}?mode=rwc", path.display());
    let mut dbs = vec![Db::open("sqlite", &sqlite_url, sqlite_url.clone(), &table, None).await];
    match std::env::var("LARDER_TEST_POSTGRES_URL") {
        Ok(url) => {
            let upstream = url
                .split('@')
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .expect("host:port in LARDER_TEST_POSTGRES_URL")
                .to_owned();
            let proxy = Proxy::start(&upstream).await;
            let node_url = url.replacen(&upstream, &proxy.addr, 1);
            dbs.push(Db::open("postgres", &url, node_url, &table, Some(proxy)).await);
        }
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI must set LARDER_TEST_POSTGRES_URL (eval \"$(.ci/postgres)\")")
        }
        Err(_) => eprintln!("LARDER_TEST_POSTGRES_URL unset: PostgreSQL cases skipped"),
    }
    dbs
}

impl Db {
    async fn open(
        kind: &'static str,
        url: &str,
        node_url: String,
        table: &str,
        proxy: Option<Proxy>,
    ) -> Self {
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await
            .unwrap();
        let db = Self {
            kind,
            node_url,
            pool,
            table: table.to_owned(),
            proxy,
        };
        db.exec(&format!(
            "CREATE TABLE {table} (collection TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, \
             version BIGINT NOT NULL, reads BIGINT NOT NULL DEFAULT 0, \
             PRIMARY KEY (collection, id))"
        ))
        .await;
        db
    }

    async fn exec(&self, sql: &str) {
        sqlx::query(AssertSqlSafe(sql.to_owned()))
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn insert(&self, collection: &str, id: &str, body: &str, version: i64) {
        let (a, b, c, d) = self.placeholders();
        let sql = format!(
            "INSERT INTO {} (collection, id, body, version) VALUES ({a}, {b}, {c}, {d})",
            self.table
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(collection.to_owned())
            .bind(id.to_owned())
            .bind(body.to_owned())
            .bind(version)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    async fn update(&self, collection: &str, id: &str, body: &str) {
        let (a, b, c, _) = self.placeholders();
        let sql = format!(
            "UPDATE {} SET body = {a}, version = version + 1 WHERE collection = {b} AND id = {c}",
            self.table
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(body.to_owned())
            .bind(collection.to_owned())
            .bind(id.to_owned())
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// `(body, version, reads)` of a row.
    async fn row(&self, collection: &str, id: &str) -> Option<(String, i64, i64)> {
        let (a, b, _, _) = self.placeholders();
        let sql = format!(
            "SELECT body, version, reads FROM {} WHERE collection = {a} AND id = {b}",
            self.table
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(collection.to_owned())
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await
            .unwrap()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
    }

    async fn reads(&self, collection: &str, id: &str) -> i64 {
        self.row(collection, id).await.map_or(-1, |r| r.2)
    }

    fn placeholders(&self) -> (&str, &str, &str, &str) {
        if self.kind == "sqlite" {
            ("?1", "?2", "?3", "?4")
        } else {
            ("$1", "$2", "$3", "$4")
        }
    }

    /// Makes the database fail for the node: PostgreSQL goes unreachable, SQLite's table goes.
    async fn break_it(&self) {
        match &self.proxy {
            Some(proxy) => proxy.down(),
            None => {
                let t = &self.table;
                self.exec(&format!("ALTER TABLE {t} RENAME TO {t}_away"))
                    .await;
            }
        }
    }

    async fn mend(&self) {
        match &self.proxy {
            Some(proxy) => proxy.up(),
            None => {
                let t = &self.table;
                self.exec(&format!("ALTER TABLE {t}_away RENAME TO {t}"))
                    .await;
            }
        }
    }

    /// An origin for `doc/{collection}/{id}` over this table; `spin` makes each load take a
    /// while (a recursive count inside the query), so concurrent readers overlap with it.
    fn origin(&self, spin: bool) -> OriginConfig {
        let t = &self.table;
        let (with, cond) = if spin {
            (
                "WITH RECURSIVE spin(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM spin \
                 WHERE x < 400000) ",
                " AND (SELECT count(*) FROM spin) > 0",
            )
        } else {
            ("", "")
        };
        OriginConfig {
            name: "docs".into(),
            pattern: "doc/{collection}/{id}".into(),
            kind: "sql".into(),
            url: self.node_url.clone(),
            load: format!(
                "{with}UPDATE {t} SET reads = reads + 1 \
                 WHERE collection = :collection AND id = :id{cond} RETURNING body, version"
            ),
            store: format!(
                "INSERT INTO {t} (collection, id, body, version) VALUES (:collection, :id, :value, 1) \
                 ON CONFLICT (collection, id) DO UPDATE SET body = excluded.body, \
                 version = {t}.version + 1 RETURNING version"
            ),
            breaker_cooldown_ms: 100,
            // Generous: a busy CI machine must not turn a slow load into a failed one.
            load_timeout_ms: 30_000,
            ..OriginConfig::default()
        }
    }
}

/// A TCP proxy that can stop passing traffic: a database outage as the node sees one.
struct Proxy {
    addr: String,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (flag, list, upstream) = (up.clone(), conns.clone(), upstream.to_owned());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused in effect
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                list.lock().push(task.abort_handle());
            }
        });
        Self { addr, up, conns }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for conn in self.conns.lock().drain(..) {
            conn.abort();
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn node_with(origin: OriginConfig) -> TestNode {
    TestNode::with(larder_cache::CacheConfig {
        origins: vec![origin],
        ..config()
    })
}

/// A node whose one clock (store, freshness windows, breaker) is `clock`, moved by hand.
fn node_on_clock(origin: OriginConfig, clock: &Arc<ManualClock>) -> TestNode {
    let config = larder_cache::CacheConfig {
        origins: vec![origin],
        ..config()
    };
    let options = NodeOptions {
        clock: Some(clock.clone()),
        ..NodeOptions::default()
    };
    TestNode::with_options(config, options)
}

/// A hand-moved clock that starts at the real time.
fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(SystemClock.now_ms()))
}

async fn grpc(node: &TestNode) -> CacheClient<Channel> {
    CacheClient::connect(format!("http://{}", node.grpc))
        .await
        .unwrap()
}

/// A RESP connection that waits as long as a load may take (the client's own default gives
/// up after half a second, less than a spinning load on a busy machine).
async fn resp(node: &TestNode) -> redis::aio::MultiplexedConnection {
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    redis::Client::open(format!("redis://{}", node.resp))
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
}

async fn get(
    c: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> redis::RedisResult<Option<String>> {
    redis::cmd("GET").arg(key).query_async(c).await
}

/// A sample of `/metrics`, 0 when absent.
fn metric(node: &TestNode, line_start: &str) -> u64 {
    let (_, body) = admin_get(node, "/metrics", None);
    body.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_gets_of_a_missing_key_cause_one_query() {
    for db in databases().await {
        db.insert("books", "1", "{\"title\":\"Dune\"}", 1).await;
        db.insert("books", "2", "{\"title\":\"Emma\"}", 1).await;
        let node = node_with(db.origin(true));

        // gRPC: 200 calls over one HTTP/2 connection.
        let client = grpc(&node).await;
        let mut calls = Vec::new();
        for _ in 0..200 {
            let mut c = client.clone();
            calls.push(tokio::spawn(async move {
                c.get(pb::GetRequest {
                    key: "doc/books/1".into(),
                    lease: false,
                    track: 0,
                })
                .await
                .map(|r| r.into_inner().entry.map(|e| (e.value, e.version)))
            }));
        }
        for call in calls {
            let (value, version) = call.await.unwrap().unwrap().expect("found");
            assert_eq!(&value[..], b"{\"title\":\"Dune\"}", "{}", db.kind);
            assert_eq!(version, 1);
        }
        assert_eq!(db.reads("books", "1").await, 1, "{}: one query", db.kind);

        // RESP: 200 connections, one GET each.
        let mut conns = Vec::new();
        for _ in 0..200 {
            conns.push(resp(&node).await);
        }
        let mut calls = Vec::new();
        for mut c in conns {
            calls.push(tokio::spawn(
                async move { get(&mut c, "doc/books/2").await },
            ));
        }
        for call in calls {
            let got = call.await.unwrap().unwrap();
            assert_eq!(got.as_deref(), Some("{\"title\":\"Emma\"}"), "{}", db.kind);
        }
        assert_eq!(db.reads("books", "2").await, 1, "{}: one query", db.kind);
        assert_eq!(
            metric(
                &node,
                "larder_origin_loads_total{origin=\"docs\",result=\"found\"}"
            ),
            2
        );
        let coalesced = metric(&node, "larder_origin_coalesced_total{origin=\"docs\"}");
        assert!(
            coalesced > 0,
            "{}: readers joined the loads ({coalesced})",
            db.kind
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_is_remembered_briefly_and_errors_are_never_cached() {
    for db in databases().await {
        let clock = manual_clock();
        let node = node_on_clock(
            OriginConfig {
                not_found_ttl_ms: 1_500,
                ..db.origin(false)
            },
            &clock,
        );
        let mut c = resp(&node).await;
        assert_eq!(get(&mut c, "doc/books/9").await.unwrap(), None);
        db.insert("books", "9", "late", 1).await;
        assert_eq!(
            get(&mut c, "doc/books/9").await.unwrap(),
            None,
            "{}: not-found is remembered",
            db.kind
        );
        let not_found = "larder_origin_loads_total{origin=\"docs\",result=\"not_found\"}";
        assert_eq!(metric(&node, not_found), 1);
        clock.advance(Duration::from_millis(1_499));
        assert_eq!(get(&mut c, "doc/books/9").await.unwrap(), None, "still");
        clock.advance(Duration::from_millis(1));
        assert_eq!(
            get(&mut c, "doc/books/9").await.unwrap().as_deref(),
            Some("late")
        );

        // A failing origin: an error, not cached, and the next read after repair succeeds.
        db.insert("books", "10", "ten", 1).await;
        db.break_it().await;
        let err = get(&mut c, "doc/books/10").await.unwrap_err();
        assert!(
            err.to_string().contains("origin unavailable"),
            "{}: {err}",
            db.kind
        );
        let mut g = grpc(&node).await;
        let status = g
            .get(pb::GetRequest {
                key: "doc/books/10".into(),
                lease: false,
                track: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{}", db.kind);
        db.mend().await;
        clock.advance(Duration::from_millis(100)); // the breaker's cooldown
        assert_eq!(
            get(&mut c, "doc/books/10").await.unwrap().as_deref(),
            Some("ten"),
            "{}: the error was not cached",
            db.kind
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_values_are_served_in_the_window_and_refreshed_once() {
    for db in databases().await {
        db.insert("books", "1", "v1", 1).await;
        let clock = manual_clock();
        let node = node_on_clock(
            OriginConfig {
                fresh_ttl_ms: 300,
                stale_while_revalidate_ms: 5_000,
                stale_if_error_ms: 0,
                ..db.origin(false)
            },
            &clock,
        );
        let mut c = resp(&node).await;
        let mut g = grpc(&node).await;
        assert_eq!(
            get(&mut c, "doc/books/1").await.unwrap().as_deref(),
            Some("v1")
        );
        db.update("books", "1", "v2").await;
        clock.advance(Duration::from_millis(299));
        assert_eq!(
            get(&mut c, "doc/books/1").await.unwrap().as_deref(),
            Some("v1"),
            "{}: fresh until its fresh time",
            db.kind
        );
        assert_eq!(
            db.reads("books", "1").await,
            1,
            "{}: no reload yet",
            db.kind
        );
        clock.advance(Duration::from_millis(1));

        // Stale: served as it was, flagged over gRPC, and refreshed by one background load.
        let entry = g
            .get(pb::GetRequest {
                key: "doc/books/1".into(),
                lease: false,
                track: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .entry
            .unwrap();
        assert_eq!(&entry.value[..], b"v1", "{}", db.kind);
        assert!(entry.stale, "{}: flagged stale", db.kind);
        for _ in 0..20 {
            let got = get(&mut c, "doc/books/1").await.unwrap().unwrap();
            assert!(got == "v1" || got == "v2", "{got}");
        }
        // The refresh runs in the background; wait for it (bounded).
        let mut entry = pb::Entry::default();
        for _ in 0..100 {
            entry = g
                .get(pb::GetRequest {
                    key: "doc/books/1".into(),
                    lease: false,
                    track: 0,
                })
                .await
                .unwrap()
                .into_inner()
                .entry
                .unwrap();
            if &entry.value[..] == b"v2" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(&entry.value[..], b"v2", "{}: refreshed", db.kind);
        assert!(!entry.stale);
        assert_eq!(entry.version, 2);
        assert_eq!(
            db.reads("books", "1").await,
            2,
            "{}: refreshed once",
            db.kind
        );
        assert!(metric(&node, "larder_origin_stale_served_total{origin=\"docs\"}") >= 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_serves_until_the_window_ends_then_unavailable() {
    for db in databases().await {
        db.insert("books", "1", "kept", 1).await;
        let clock = manual_clock();
        let node = node_on_clock(
            OriginConfig {
                fresh_ttl_ms: 200,
                stale_while_revalidate_ms: 0,
                stale_if_error_ms: 3_000,
                ..db.origin(false)
            },
            &clock,
        );
        let mut c = resp(&node).await;
        let mut g = grpc(&node).await;
        assert_eq!(
            get(&mut c, "doc/books/1").await.unwrap().as_deref(),
            Some("kept")
        );
        db.break_it().await;
        clock.advance(Duration::from_millis(200));
        for _ in 0..3 {
            assert_eq!(
                get(&mut c, "doc/books/1").await.unwrap().as_deref(),
                Some("kept"),
                "{}: stale while the database is down",
                db.kind
            );
        }
        let entry = g
            .get(pb::GetRequest {
                key: "doc/books/1".into(),
                lease: false,
                track: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .entry
            .unwrap();
        assert!(entry.stale && &entry.value[..] == b"kept");
        clock.advance(Duration::from_millis(2_999));
        assert_eq!(
            get(&mut c, "doc/books/1").await.unwrap().as_deref(),
            Some("kept"),
            "{}: to the window's last millisecond",
            db.kind
        );
        clock.advance(Duration::from_millis(1));
        let err = get(&mut c, "doc/books/1").await.unwrap_err();
        assert!(err.to_string().contains("origin unavailable"), "{err}");
        let status = g
            .get(pb::GetRequest {
                key: "doc/books/1".into(),
                lease: false,
                track: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        db.mend().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_through_commits_before_the_ack_and_a_failed_write_changes_nothing() {
    for db in databases().await {
        let node = node_with(OriginConfig {
            write_through: true,
            ..db.origin(false)
        });
        let mut c = resp(&node).await;
        let ok: String = redis::cmd("SET")
            .arg("doc/books/7")
            .arg("first")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(ok, "OK");
        let row = db.row("books", "7").await.expect("row written");
        assert_eq!((row.0.as_str(), row.1), ("first", 1), "{}", db.kind);
        assert_eq!(
            get(&mut c, "doc/books/7").await.unwrap().as_deref(),
            Some("first")
        );

        let mut g = grpc(&node).await;
        let set = g
            .set(pb::SetRequest {
                key: "doc/books/7".into(),
                value: "second".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(set.stored);
        assert_eq!(set.version, 2, "{}: the database's version", db.kind);
        assert_eq!(db.row("books", "7").await.unwrap().0, "second");
        assert_eq!(db.reads("books", "7").await, 0, "served from the cache");

        // Other writes would change the cache behind the database's back.
        let err = redis::cmd("APPEND")
            .arg("doc/books/7")
            .arg("x")
            .query_async::<i64>(&mut c)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("write-through"), "{err}");
        let err = redis::cmd("SET")
            .arg("doc/books/7")
            .arg("x")
            .arg("NX")
            .query_async::<String>(&mut c)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("write-through"), "{err}");

        db.break_it().await;
        let err = redis::cmd("SET")
            .arg("doc/books/7")
            .arg("third")
            .query_async::<String>(&mut c)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("origin unavailable"),
            "{}: {err}",
            db.kind
        );
        let status = g
            .set(pb::SetRequest {
                key: "doc/books/7".into(),
                value: "third".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            get(&mut c, "doc/books/7").await.unwrap().as_deref(),
            Some("second"),
            "{}: the cache is unchanged",
            db.kind
        );
        db.mend().await;
        assert_eq!(db.row("books", "7").await.unwrap().0, "second");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_parts_with_quotes_slashes_and_sql_are_bound_safely() {
    for db in databases().await {
        let ids = [
            "a/b/c",
            "it's",
            "\"quoted\"",
            "'; DROP TABLE docs; --",
            "Robert'); DROP TABLE students;--",
            "x' OR '1'='1",
            "% _ \\ ?1 $1 :id",
        ];
        for (i, id) in ids.iter().enumerate() {
            db.insert("books", id, &format!("body {i}"), 1).await;
        }
        let node = node_with(db.origin(false));
        let mut c = resp(&node).await;
        for (i, id) in ids.iter().enumerate() {
            let key = format!("doc/books/{id}");
            assert_eq!(
                get(&mut c, &key).await.unwrap(),
                Some(format!("body {i}")),
                "{}: {id}",
                db.kind
            );
        }
        assert_eq!(get(&mut c, "doc/books/x' OR 'a'='a").await.unwrap(), None);
        assert_eq!(
            db.row("books", "a/b/c").await.unwrap().2,
            1,
            "the table is intact"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_drops_the_key_so_the_next_read_reloads() {
    for db in databases().await {
        db.insert("books", "1", "old", 1).await;
        let node = node_with(db.origin(false));
        let mut c = resp(&node).await;
        assert_eq!(
            get(&mut c, "doc/books/1").await.unwrap().as_deref(),
            Some("old")
        );
        db.update("books", "1", "new").await;
        assert_eq!(
            get(&mut c, "doc/books/1").await.unwrap().as_deref(),
            Some("old")
        );
        let dropped: i64 = redis::cmd("INVALIDATE")
            .arg("doc/books/1")
            .arg("doc/books/none")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(dropped, 1);
        assert_eq!(
            get(&mut c, "doc/books/1").await.unwrap().as_deref(),
            Some("new")
        );
        assert_eq!(db.reads("books", "1").await, 2, "{}", db.kind);

        db.update("books", "1", "newer").await;
        let mut g = grpc(&node).await;
        let reply = g
            .invalidate(pb::InvalidateRequest {
                keys: vec!["doc/books/1".into()],
                await_invalidation: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.invalidated, 1);
        let many = g
            .get_many(pb::GetManyRequest {
                keys: vec![
                    "doc/books/1".into(),
                    "plain".into(),
                    "doc/books/none".into(),
                ],
            })
            .await
            .unwrap()
            .into_inner();
        let values: Vec<Option<Vec<u8>>> = many
            .results
            .into_iter()
            .map(|r| r.entry.map(|e| e.value.to_vec()))
            .collect();
        assert_eq!(values, [Some(b"newer".to_vec()), None, None]);
        let mget: Vec<Option<String>> = redis::cmd("MGET")
            .arg("doc/books/1")
            .arg("plain")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(mget, [Some("newer".to_owned()), None]);
        assert_eq!(db.reads("books", "1").await, 3, "{}", db.kind);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_after_failures_and_metrics_show_it() {
    let db = databases().await.remove(0);
    db.insert("books", "1", "v", 1).await;
    let node = node_with(OriginConfig {
        breaker_failures: 3,
        breaker_cooldown_ms: 60_000,
        ..db.origin(false)
    });
    let mut c = resp(&node).await;
    db.break_it().await;
    for _ in 0..5 {
        assert!(get(&mut c, "doc/books/1").await.is_err());
    }
    assert_eq!(
        metric(&node, "larder_breaker_state{target=\"origin:docs\"}"),
        1
    );
    assert_eq!(
        metric(
            &node,
            "larder_origin_loads_total{origin=\"docs\",result=\"rejected\"}"
        ),
        2,
        "calls after the third failure are refused without reaching the database"
    );
    db.mend().await;
    assert!(get(&mut c, "doc/books/1").await.is_err(), "still open");
    let (_, body) = admin_get(&node, "/metrics", None);
    assert!(
        body.contains("larder_origin_load_duration_seconds_count{origin=\"docs\"} 3"),
        "{body}"
    );
}

/// A client's change of a key while its load is in flight, over either wire.
#[derive(Debug, Clone, Copy)]
enum Change {
    GrpcInvalidate,
    GrpcExpire,
    RespExpire,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_during_a_load_keeps_its_result_out_of_the_cache() {
    for change in [
        Change::GrpcInvalidate,
        Change::GrpcExpire,
        Change::RespExpire,
    ] {
        for db in databases().await {
            change_during_a_load(&db, change).await;
        }
    }
}

async fn change_during_a_load(db: &Db, change: Change) {
    db.insert("books", "1", "before", 1).await;
    let node = node_with(db.origin(true));
    let mut g = grpc(&node).await;
    let reader = {
        let mut g = g.clone();
        tokio::spawn(async move {
            g.get(pb::GetRequest {
                key: "doc/books/1".into(),
                lease: false,
                track: 0,
            })
            .await
        })
    };
    // The load spins for a while inside its query: change the key while it runs (the cache
    // does not hold it yet), then change the row.
    for _ in 0..1_000 {
        if metric(&node, "larder_origin_loads_in_flight") > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let held = match change {
        Change::GrpcInvalidate => {
            let keys = vec!["doc/books/1".into()];
            let reply = g
                .invalidate(pb::InvalidateRequest {
                    keys,
                    await_invalidation: false,
                })
                .await
                .unwrap();
            reply.into_inner().invalidated > 0
        }
        Change::GrpcExpire => {
            let req = pb::ExpireRequest {
                key: "doc/books/1".into(),
                ttl_ms: 60_000,
            };
            g.expire(req).await.unwrap().into_inner().found
        }
        Change::RespExpire => {
            let mut c = resp(&node).await;
            redis::cmd("PEXPIRE")
                .arg("doc/books/1")
                .arg(60_000)
                .query_async::<bool>(&mut c)
                .await
                .unwrap()
        }
    };
    assert!(
        !held,
        "{} {change:?}: the load was still in flight",
        db.kind
    );
    db.update("books", "1", "after").await;
    let first = reader.await.unwrap().unwrap().into_inner().entry.unwrap();
    // The load may have read the row before or after the update; either way it answered
    // its caller, and only a load that began after the change may fill the cache.
    assert!(&first.value[..] == b"before" || &first.value[..] == b"after");
    let mut c = resp(&node).await;
    assert_eq!(
        get(&mut c, "doc/books/1").await.unwrap().as_deref(),
        Some("after"),
        "{} {change:?}: the load that began before the change was not kept",
        db.kind
    );
    db.exec(&format!("DELETE FROM {}", db.table)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_replies_keep_their_order_around_a_load() {
    let db = databases().await.remove(0);
    db.insert("books", "1", "loaded", 1).await;
    let node = node_with(db.origin(true));
    let mut c = resp(&node).await;
    let (a, b, d, e): (String, Option<String>, Option<String>, Option<String>) = redis::pipe()
        .cmd("SET")
        .arg("plain")
        .arg("p")
        .cmd("GET")
        .arg("doc/books/1")
        .cmd("GET")
        .arg("plain")
        .cmd("GET")
        .arg("doc/books/none")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(
        (a.as_str(), b.as_deref(), d.as_deref(), e.as_deref()),
        ("OK", Some("loaded"), Some("p"), None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_is_the_clients_error_and_never_trips_the_breaker() {
    let db = databases().await.remove(0);
    db.insert("books", "1", "fine", 1).await;
    let node = node_with(OriginConfig {
        breaker_failures: 2,
        breaker_cooldown_ms: 60_000,
        ..db.origin(false)
    });
    let mut c = resp(&node).await;
    for _ in 0..5 {
        let err = redis::cmd("GET")
            .arg(&b"doc/books/\xff\xfe"[..])
            .query_async::<Option<Vec<u8>>>(&mut c)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }
    assert_eq!(
        metric(&node, "larder_breaker_state{target=\"origin:docs\"}"),
        0
    );
    assert_eq!(
        get(&mut c, "doc/books/1").await.unwrap().as_deref(),
        Some("fine")
    );
}
