//! Document writes to a SQLite file through one connection of the gateway's own, with group
//! commit.
//!
//! Through sqlx, a create on SQLite was five statements (`BEGIN`, two inserts, the counter,
//! `COMMIT`), each a channel hand-off to the connection's thread and back, and the pool's four
//! connections queued for SQLite's single write lock in its busy handler, which sleeps. That
//! capped a gateway near 1,750 creates a second. Here one thread owns one read-write
//! connection and is the only writer of documents: it waits for a request, takes whatever else
//! is queued (up to [`MAX_BATCH`] requests or [`MAX_BATCH_BYTES`] of documents), and runs them
//! all in one `BEGIN IMMEDIATE … COMMIT`, each inside a savepoint so that one that fails (a
//! taken id or idempotency key, a stale version) is rolled back alone while the others commit.
//! Only after `COMMIT` has returned does it answer each request and wake the change feed once,
//! so a write is never acknowledged before it is durable. The connection keeps sqlx's settings
//! (`synchronous` at SQLite's default, `FULL`; foreign keys on; a 5 s busy timeout), so
//! grouping saves statements and syncs, not durability.
//!
//! The change log's positions stay gap-free and in commit order: each request increments the
//! one-row counter inside its savepoint (a rolled-back request undoes its increment), and the
//! batch is one transaction on the only connection writing documents.
//!
//! Other writes to the file (migrations, idempotency and change-log housekeeping) stay on
//! sqlx and take turns with this connection through SQLite's lock and busy timeout; no other
//! gateway writes the file ([`super::lock`]). If a statement fails in a way that makes SQLite
//! abandon the whole transaction, or `COMMIT` fails, every request of the batch gets the
//! error. A request whose caller has gone is still written (as it would be had it reached
//! `COMMIT` through sqlx). When this connection cannot be opened the writes go through sqlx,
//! as on PostgreSQL; so do writes after the thread has died (the callers it held get
//! [`DbError::WriterStopped`]). The thread ends when the last clone of the database is dropped.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use larder_store::Clock;
use rusqlite::{Connection, OpenFlags, OptionalExtension, ffi, params};
use tokio::sync::{Notify, oneshot};

use super::{DbError, IdemRecord, Op};

/// Requests per transaction at most: enough that a commit's sync is shared by every request a
/// busy gateway queues meanwhile, few enough that the first one does not wait long on the rest.
const MAX_BATCH: usize = 256;
/// Bytes of documents per transaction at most (one request may exceed it alone), so a batch
/// of large documents does not hold the write lock for long.
const MAX_BATCH_BYTES: usize = 8 << 20;
/// As long as sqlx's SQLite connections wait for the lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Statements kept compiled: every one below fits.
const STATEMENT_CACHE: usize = 32;

const INSERT_IDEM: &str = "INSERT INTO larder_idempotency \
    (collection, idem_key, fingerprint, status, location, etag, body, expires_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
const INSERT_DOC: &str = "INSERT INTO larder_documents \
    (collection, id, doc, version, created_at, updated_at) VALUES (?1, ?2, ?3, 1, ?4, ?4)";
const UPDATE_DOC: &str = "UPDATE larder_documents SET doc = ?1, version = version + 1, \
    updated_at = ?2 WHERE collection = ?3 AND id = ?4 AND version = ?5";
const DELETE_AT: &str = "DELETE FROM larder_documents \
    WHERE collection = ?1 AND id = ?2 AND version = ?3 RETURNING version";
const DELETE_ANY: &str =
    "DELETE FROM larder_documents WHERE collection = ?1 AND id = ?2 RETURNING version";
const NEXT_SEQ: &str = "UPDATE larder_change_seq SET seq = seq + 1 WHERE one = 1 RETURNING seq";
const INSERT_CHANGE: &str = "INSERT INTO larder_changes (seq, collection, id, op, version, at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// A write of one document, with what `Db::create`, `update` and `delete` were given.
#[derive(Debug)]
pub(super) enum Write {
    Create {
        collection: String,
        id: String,
        doc: String,
        now: String,
        /// The idempotency key, its record and when it expires.
        idem: Option<(String, IdemRecord, i64)>,
    },
    Update {
        collection: String,
        id: String,
        expected: i64,
        doc: String,
        now: String,
    },
    Delete {
        collection: String,
        id: String,
        expected: Option<i64>,
    },
}

impl Write {
    fn bytes(&self) -> usize {
        match self {
            Write::Create { doc, .. } | Write::Update { doc, .. } => doc.len(),
            Write::Delete { .. } => 0,
        }
    }
}

/// A write and where its outcome goes: whether it changed the document.
#[derive(Debug)]
struct Job {
    write: Write,
    reply: oneshot::Sender<Result<bool, DbError>>,
}

/// The writer thread and the way to it.
#[derive(Debug)]
pub(super) struct Writer {
    /// `None` only while dropping, which is what ends the thread.
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    counts: Arc<Counts>,
}

/// Transactions committed and the requests they held.
#[derive(Debug, Default)]
struct Counts {
    commits: AtomicU64,
    writes: AtomicU64,
}

impl Writer {
    /// Opens a read-write connection to the migrated database at `path` (a WAL file) and
    /// starts the thread that owns it. `changed` is woken after each commit.
    pub(super) fn open(
        path: &Path,
        clock: Arc<dyn Clock>,
        changed: Arc<Notify>,
    ) -> std::io::Result<Self> {
        let conn = connect(path).map_err(std::io::Error::other)?;
        let (jobs, queue) = mpsc::channel();
        let counts = Arc::new(Counts::default());
        let counted = counts.clone();
        let thread = std::thread::Builder::new()
            .name("larder-sqlite-writer".into())
            .spawn(move || run(&conn, &queue, &*clock, &changed, &counted))?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
            counts,
        })
    }

    /// Runs `write` in the next batch: whether it changed the document, once its transaction
    /// has committed. `None` when the thread is gone and the caller should use sqlx.
    pub(super) async fn write(&self, write: Write) -> Option<Result<bool, DbError>> {
        let (reply, answer) = oneshot::channel();
        self.jobs.as_ref()?.send(Job { write, reply }).ok()?;
        Some(answer.await.unwrap_or(Err(DbError::WriterStopped)))
    }

    /// Appends the writer's metrics (Prometheus text) to `out`.
    pub(super) fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let commits = self.counts.commits.load(Ordering::Relaxed);
        let writes = self.counts.writes.load(Ordering::Relaxed);
        let name = "larder_api_sqlite_writer_commits_total";
        let _ = writeln!(
            out,
            "# HELP {name} Transactions committed by the SQLite writer (each a group of \
             writes).\n# TYPE {name} counter\n{name} {commits}"
        );
        let name = "larder_api_sqlite_writer_writes_total";
        let _ = writeln!(
            out,
            "# HELP {name} Document writes committed by the SQLite writer, including those \
             refused (a taken id, a stale version).\n# TYPE {name} counter\n{name} {writes}"
        );
    }
}

impl Drop for Writer {
    /// Closes the queue and waits for the thread to finish the batch in hand, so a database
    /// dropped is one whose thread and file handles are gone.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("the SQLite writer thread had panicked");
        }
    }
}

/// The writer's connection, set up as sqlx sets up its own.
fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Compiled once here, so a schema that does not fit shows at start.
    for sql in [
        INSERT_IDEM,
        INSERT_DOC,
        UPDATE_DOC,
        DELETE_AT,
        DELETE_ANY,
        NEXT_SEQ,
    ] {
        conn.prepare_cached(sql)?;
    }
    conn.prepare_cached(INSERT_CHANGE)?;
    Ok(conn)
}

/// The thread: a batch at a time until every sender is gone.
fn run(
    conn: &Connection,
    queue: &mpsc::Receiver<Job>,
    clock: &dyn Clock,
    changed: &Notify,
    counts: &Counts,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = queue.recv() {
        let mut bytes = first.write.bytes();
        batch.push(first);
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            let Ok(job) = queue.try_recv() else { break };
            bytes += job.write.bytes();
            batch.push(job);
        }
        match transaction(conn, &batch, clock) {
            Ok(outcomes) => {
                counts.commits.fetch_add(1, Ordering::Relaxed);
                counts
                    .writes
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                let any = outcomes.iter().any(|o| matches!(o, Ok(true)));
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    // A caller that has gone needs no answer.
                    let _ = job.reply.send(outcome);
                }
                if any {
                    changed.notify_one();
                }
            }
            Err(err) => {
                tracing::warn!(%err, writes = batch.len(), "a SQLite write batch failed");
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                let err = Arc::new(err);
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(DbError::Sqlite(err.clone())));
                }
            }
        }
    }
}

/// Runs `batch` in one transaction; each request's outcome, or the error that failed them all.
fn transaction(
    conn: &Connection,
    batch: &[Job],
    clock: &dyn Clock,
) -> rusqlite::Result<Vec<Result<bool, DbError>>> {
    run_cached(conn, "BEGIN IMMEDIATE")?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        run_cached(conn, "SAVEPOINT one")?;
        let outcome = match apply(conn, &job.write, clock) {
            Ok(outcome) => outcome,
            // SQLite gave up the whole transaction (a full disk, an I/O error).
            Err(err) if conn.is_autocommit() => return Err(err),
            Err(err) => Err(DbError::Sqlite(Arc::new(err))),
        };
        if !matches!(outcome, Ok(true)) {
            run_cached(conn, "ROLLBACK TO one")?;
        }
        run_cached(conn, "RELEASE one")?;
        outcomes.push(outcome);
    }
    run_cached(conn, "COMMIT")?;
    Ok(outcomes)
}

fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// One request's statements: `Err` for a failure of SQLite, `Ok(Err(..))` for one of the
/// request (a taken id or key).
fn apply(
    conn: &Connection,
    write: &Write,
    clock: &dyn Clock,
) -> rusqlite::Result<Result<bool, DbError>> {
    let (collection, id, op, version) = match write {
        Write::Create {
            collection,
            id,
            doc,
            now,
            idem,
        } => {
            if let Err(refused) = create(conn, collection, id, doc, now, idem.as_ref())? {
                return Ok(Err(refused));
            }
            (collection, id, Op::Create, 1)
        }
        Write::Update {
            collection,
            id,
            expected,
            doc,
            now,
        } => {
            let updated = conn
                .prepare_cached(UPDATE_DOC)?
                .execute(params![doc, now, collection, id, expected])?;
            if updated != 1 {
                return Ok(Ok(false));
            }
            (collection, id, Op::Update, expected + 1)
        }
        Write::Delete {
            collection,
            id,
            expected,
        } => {
            let deleted: Option<i64> = match expected {
                Some(version) => conn
                    .prepare_cached(DELETE_AT)?
                    .query_row(params![collection, id, version], |row| row.get(0)),
                None => conn
                    .prepare_cached(DELETE_ANY)?
                    .query_row(params![collection, id], |row| row.get(0)),
            }
            .optional()?;
            let Some(version) = deleted else {
                return Ok(Ok(false));
            };
            (collection, id, Op::Delete, version)
        }
    };
    record_change(conn, collection, id, op, version, clock)?;
    Ok(Ok(true))
}

/// The inserts of a create; a taken key or id is the request's failure.
fn create(
    conn: &Connection,
    collection: &str,
    id: &str,
    doc: &str,
    now: &str,
    idem: Option<&(String, IdemRecord, i64)>,
) -> rusqlite::Result<Result<(), DbError>> {
    if let Some((key, record, expires_at)) = idem {
        let inserted = conn.prepare_cached(INSERT_IDEM)?.execute(params![
            collection,
            key,
            record.fingerprint,
            i64::from(record.status),
            record.location,
            record.etag,
            record.body,
            expires_at,
        ]);
        match inserted {
            Err(err) if unique_violation(&err) => return Ok(Err(DbError::KeyTaken)),
            other => other?,
        };
    }
    match conn
        .prepare_cached(INSERT_DOC)?
        .execute(params![collection, id, doc, now])
    {
        Err(err) if unique_violation(&err) => Ok(Err(DbError::Conflict)),
        other => other.map(|_| Ok(())),
    }
}

/// The change log's entry, as `Db::record_change` writes it on SQLite.
fn record_change(
    conn: &Connection,
    collection: &str,
    id: &str,
    op: Op,
    version: i64,
    clock: &dyn Clock,
) -> rusqlite::Result<()> {
    let at = i64::try_from(clock.now_ms()).unwrap_or(i64::MAX);
    let seq: i64 = conn
        .prepare_cached(NEXT_SEQ)?
        .query_row([], |row| row.get(0))?;
    conn.prepare_cached(INSERT_CHANGE)?.execute(params![
        seq,
        collection,
        id,
        op.as_str(),
        version,
        at
    ])?;
    Ok(())
}

/// What sqlx calls a unique violation on SQLite.
fn unique_violation(err: &rusqlite::Error) -> bool {
    err.sqlite_error().is_some_and(|e| {
        matches!(
            e.extended_code,
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::HashSet;
    use std::path::PathBuf;
    use std::sync::atomic::AtomicU32;

    use larder_store::SystemClock;

    use super::super::{Db, Page};
    use super::*;

    /// A database in a directory of its own, removed when the test is done.
    struct Fresh {
        db: Db,
        dir: PathBuf,
    }

    impl Drop for Fresh {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    async fn fresh() -> Fresh {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("larder-writer-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("db").display());
        let db = Db::open(&url, Arc::new(SystemClock)).await.unwrap();
        assert!(db.writer.is_some(), "a WAL file gets the writer");
        Fresh { db, dir }
    }

    fn commits(db: &Db) -> u64 {
        db.writer
            .as_ref()
            .unwrap()
            .counts
            .commits
            .load(Ordering::Relaxed)
    }

    /// The whole change log, checked to be numbered 1, 2, … without a gap.
    async fn log(db: &Db) -> Vec<Change> {
        let mut all = Vec::new();
        loop {
            let after = all.last().map_or(0, |c: &Change| c.seq);
            let Page::Next(page) = db.changes_after(after, 1000, None).await.unwrap() else {
                panic!("a gap after {after}");
            };
            if page.is_empty() {
                break;
            }
            all.extend(page);
        }
        assert!(all.iter().zip(1..).all(|(c, seq)| c.seq == seq));
        all
    }

    use super::super::Change;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_creates_all_commit_with_gap_free_positions() {
        const TASKS: usize = 64;
        const EACH: usize = 50;
        let fresh = fresh().await;
        let db = &fresh.db;
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..EACH {
                    let id = format!("{t}-{i}");
                    db.create("things", &id, "{}", "t0", None, None)
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let log = log(db).await;
        assert_eq!(log.len(), TASKS * EACH);
        let ids: HashSet<_> = log
            .iter()
            .inspect(|c| assert_eq!((c.op, c.version), (Op::Create, 1)))
            .map(|c| c.id.clone())
            .collect();
        assert_eq!(ids.len(), TASKS * EACH);
        assert_eq!(db.change_head().await.unwrap(), (TASKS * EACH) as i64);
        let stored = db.get("things", "63-49").await.unwrap().unwrap();
        assert_eq!((stored.doc.as_str(), stored.version), ("{}", 1));
        // Writes queued behind a commit share the next one.
        assert!(commits(db) < (TASKS * EACH) as u64, "{}", commits(db));
    }

    fn create(id: &str, key: Option<&str>) -> Write {
        let record = IdemRecord {
            fingerprint: "f".into(),
            status: 201,
            location: format!("/v1/things/{id}"),
            etag: "\"1\"".into(),
            body: "{}".into(),
        };
        Write::Create {
            collection: "things".into(),
            id: id.into(),
            doc: format!("{{\"id\":\"{id}\"}}"),
            now: "t1".into(),
            idem: key.map(|key| (key.to_owned(), record, i64::MAX)),
        }
    }

    /// Sends every write before the writer can start on any (another connection holds the
    /// write lock meanwhile), so they share at most two transactions; the outcomes in order.
    async fn in_one_go(fresh: &Fresh, writes: Vec<Write>) -> Vec<Result<bool, DbError>> {
        let writer = fresh.db.writer.as_ref().unwrap();
        let blocker = Connection::open(fresh.dir.join("db")).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let before = commits(&fresh.db);
        let answers: Vec<_> = writes
            .into_iter()
            .map(|write| {
                let (reply, answer) = oneshot::channel();
                let job = Job { write, reply };
                writer.jobs.as_ref().unwrap().send(job).unwrap();
                answer
            })
            .collect();
        blocker.execute_batch("COMMIT").unwrap();
        let mut outcomes = Vec::new();
        for answer in answers {
            outcomes.push(answer.await.unwrap());
        }
        assert!(commits(&fresh.db) - before <= 2);
        outcomes
    }

    #[tokio::test]
    async fn a_refused_write_in_a_batch_leaves_the_others_committed() {
        let fresh = fresh().await;
        let db = &fresh.db;
        db.create("things", "taken", "{}", "t0", None, None)
            .await
            .unwrap();
        let outcomes = in_one_go(
            &fresh,
            vec![
                create("a", Some("k1")),
                create("taken", None),
                create("b", Some("k2")),
                create("c", Some("k1")),
                Write::Update {
                    collection: "things".into(),
                    id: "taken".into(),
                    expected: 7,
                    doc: "{}".into(),
                    now: "t1".into(),
                },
                Write::Delete {
                    collection: "things".into(),
                    id: "nowhere".into(),
                    expected: None,
                },
                create("d", None),
            ],
        )
        .await;
        let shown: Vec<String> = outcomes
            .iter()
            .map(|o| format!("{o:?}").replace(' ', ""))
            .collect();
        assert_eq!(
            shown,
            [
                "Ok(true)",
                "Err(Conflict)",
                "Ok(true)",
                "Err(KeyTaken)",
                "Ok(false)",
                "Ok(false)",
                "Ok(true)"
            ]
        );
        for (id, there) in [("a", true), ("b", true), ("c", false), ("d", true)] {
            assert_eq!(db.get("things", id).await.unwrap().is_some(), there, "{id}");
        }
        let taken = db.get("things", "taken").await.unwrap().unwrap();
        assert_eq!((taken.doc.as_str(), taken.version), ("{}", 1));
        let k1 = db.idempotency("things", "k1", 0).await.unwrap().unwrap();
        assert_eq!(k1.location, "/v1/things/a");
        let logged: Vec<_> = log(db).await.into_iter().map(|c| c.id).collect();
        assert_eq!(logged, ["taken", "a", "b", "d"]);
    }

    #[tokio::test]
    async fn versions_are_checked_and_logged() {
        let fresh = fresh().await;
        let db = &fresh.db;
        db.create("things", "x", "{}", "t0", None, None)
            .await
            .unwrap();
        assert!(!db.update("things", "x", 2, "{}", "t1", None).await.unwrap());
        assert!(db.update("things", "x", 1, "[]", "t1", None).await.unwrap());
        assert!(!db.update("things", "y", 1, "{}", "t1", None).await.unwrap());
        assert!(!db.delete("things", "x", Some(1), None).await.unwrap());
        assert!(db.delete("things", "x", Some(2), None).await.unwrap());
        assert!(!db.delete("things", "x", None, None).await.unwrap());
        db.create("things", "x", "{}", "t2", None, None)
            .await
            .unwrap();
        assert!(db.delete("things", "x", None, None).await.unwrap());
        let log: Vec<_> = log(db)
            .await
            .into_iter()
            .map(|c| (c.op, c.version))
            .collect();
        assert_eq!(
            log,
            [
                (Op::Create, 1),
                (Op::Update, 2),
                (Op::Delete, 2),
                (Op::Create, 1),
                (Op::Delete, 1)
            ]
        );
        db.create("things", "y", "{}", "t3", None, None)
            .await
            .unwrap();
        assert!(matches!(
            db.create("things", "y", "{}", "t3", None, None).await,
            Err(DbError::Conflict)
        ));
    }

    #[tokio::test]
    async fn the_connection_is_as_durable_as_sqlx_makes_its_own() {
        let fresh = fresh().await;
        let conn = connect(&fresh.dir.join("db")).unwrap();
        for pragma in [
            "synchronous",
            "foreign_keys",
            "busy_timeout",
            "journal_mode",
        ] {
            let ours: String = conn
                .query_row(&format!("PRAGMA {pragma}"), [], |row| {
                    Ok(row
                        .get_ref(0)?
                        .as_str()
                        .map_or_else(|_| row.get::<_, i64>(0).unwrap().to_string(), str::to_owned))
                })
                .unwrap();
            let row = fresh.db.q(&format!("PRAGMA {pragma}"));
            let theirs = row.fetch_one(&fresh.db.pool).await.unwrap();
            use sqlx::Row as _;
            let theirs = theirs
                .try_get::<String, _>(0)
                .or_else(|_| theirs.try_get::<i64, _>(0).map(|n| n.to_string()))
                .unwrap();
            assert_eq!(ours, theirs, "{pragma}");
        }
        // FULL: a commit is synced before it returns.
        let synchronous: i64 = conn
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap();
        assert_eq!(synchronous, 2);
    }

    #[tokio::test]
    async fn dropping_the_database_ends_the_thread() {
        let mut changed = Vec::new();
        for _ in 0..20 {
            let fresh = fresh().await;
            changed.push(fresh.db.changed());
            fresh
                .db
                .clone()
                .create("t", "x", "{}", "t0", None, None)
                .await
                .unwrap();
        }
        // The thread held a clone of each; joined, it has let go.
        assert!(changed.iter().all(|c| Arc::strong_count(c) == 1));
    }

    #[tokio::test]
    async fn a_writer_that_stops_fails_its_callers_instead_of_hanging_them() {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::spawn(move || queue.iter().for_each(drop));
        let writer = Writer {
            jobs: Some(jobs),
            thread: Some(thread),
            counts: Arc::default(),
        };
        let write = Write::Delete {
            collection: "c".into(),
            id: "x".into(),
            expected: None,
        };
        assert!(matches!(
            writer.write(write).await,
            Some(Err(DbError::WriterStopped))
        ));
        // Gone altogether: the caller is told to use sqlx.
        let (jobs, queue) = mpsc::channel::<Job>();
        drop(queue);
        let gone = Writer {
            jobs: Some(jobs),
            thread: None,
            counts: Arc::default(),
        };
        let write = Write::Delete {
            collection: "c".into(),
            id: "x".into(),
            expected: None,
        };
        assert!(gone.write(write).await.is_none());
    }
}
