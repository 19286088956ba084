//! The database: SQLite or PostgreSQL through sqlx's `Any` driver, one code path for both.
//! Documents live in one table keyed by `(collection, id)`; each row holds the serialized
//! JSON:API resource object (`doc`), its version, and timestamps. Idempotency records live
//! beside them and are written in the same transaction as the document they created. Every
//! write also records itself in the change log ([`changes`]) in its transaction. On a SQLite
//! file in WAL mode, point reads ([`inline`]) and document writes ([`writer`]) skip sqlx.

mod changes;
mod inline;
mod lock;
mod notify;
mod writer;

pub(crate) use notify::CHANNEL;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use larder_store::Clock;
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, AssertSqlSafe, Row};
use tokio::sync::Notify;
use tracing::Instrument as _;

pub(crate) use changes::{Change, Op, Page};
use inline::InlineReader;
use writer::{Write, Writer};

/// Migrations, in order; each runs once and is recorded in `larder_migrations`.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE IF NOT EXISTS larder_documents (
        collection TEXT NOT NULL,
        id TEXT NOT NULL,
        doc TEXT NOT NULL,
        version BIGINT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (collection, id)
    );
    CREATE TABLE IF NOT EXISTS larder_idempotency (
        collection TEXT NOT NULL,
        idem_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        status BIGINT NOT NULL,
        location TEXT NOT NULL,
        etag TEXT NOT NULL,
        body TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (collection, idem_key)
    )",
    ),
    (2, changes::SCHEMA),
];

/// Why a database call failed. A cause's text is part of the error's, so it is not also its
/// `source()`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    /// A row with this key exists already.
    #[error("already exists")]
    Conflict,
    /// Another request recorded this idempotency key first.
    #[error("idempotency key taken")]
    KeyTaken,
    /// The database could not be reached or failed.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// SQLite failed in the gateway's own writer ([`writer`]); shared by every write of a
    /// batch that failed as a whole.
    #[error("database unavailable: {0}")]
    Sqlite(Arc<rusqlite::Error>),
    /// The writer thread stopped before it answered: whether the write committed is unknown.
    #[error("database unavailable: the SQLite writer stopped before answering")]
    WriterStopped,
    /// The database could not be opened: what was tried, why, and (for a SQLite file) what to
    /// check. (The server's password is never part of it.)
    #[error("database unavailable: {0}")]
    Opening(String),
    /// The URL names neither SQLite nor PostgreSQL.
    #[error("database unavailable: database must be sqlite://… or postgres://…")]
    Scheme,
    /// A SQLite database that would vanish with its connections.
    #[error(
        "database unavailable: a SQLite database in memory or in a temporary file is not \
         supported: give a file, sqlite://PATH"
    )]
    InMemory,
}

impl From<sqlx::Error> for DbError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            _ => Self::Unavailable(err),
        }
    }
}

/// `url` with `mode=rwc` added when it names a SQLite file and no mode: sqlx's default
/// (`rw`) cannot make a database that does not exist yet.
fn sqlite_create(url: &str) -> String {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let in_memory = path.contains(":memory:")
        || path
            .trim_start_matches("sqlite:")
            .trim_start_matches('/')
            .is_empty();
    if in_memory || query.split('&').any(|p| p.starts_with("mode=")) {
        return url.to_owned();
    }
    let sep = if query.is_empty() { "?" } else { "&" };
    format!("{url}{sep}mode=rwc")
}

/// Why a database could not be opened, naming the SQLite file (and what to check) or the
/// server (its password left out).
fn opening(url: &str, err: impl std::fmt::Display) -> DbError {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return DbError::Opening(format!("cannot connect: {err}"));
    };
    let path = rest
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    let path = std::path::Path::new(path);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let hint = if !dir.is_dir() {
        format!("; the directory {} does not exist", dir.display())
    } else if std::fs::metadata(dir).is_ok_and(|m| m.permissions().readonly())
        || path.exists() && std::fs::metadata(path).is_ok_and(|m| m.permissions().readonly())
    {
        format!("; {} is read-only", dir.display())
    } else {
        format!(
            "; check that {} is writable (SQLite makes the file and its -wal and -shm files there)",
            dir.display()
        )
    };
    DbError::Opening(format!(
        "cannot open the SQLite database {}: {err}{hint}",
        path.display()
    ))
}

/// A stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) doc: String,
    pub(crate) version: i64,
}

/// A recorded response to an idempotent request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdemRecord {
    pub(crate) fingerprint: String,
    pub(crate) status: u16,
    pub(crate) location: String,
    pub(crate) etag: String,
    pub(crate) body: String,
}

/// The database of one gateway.
#[derive(Debug, Clone)]
pub(crate) struct Db {
    pool: AnyPool,
    sqlite: bool,
    /// Point reads without sqlx's thread hand-off (SQLite on a WAL file only).
    inline: Option<Arc<InlineReader>>,
    /// Document writes without sqlx, in group commits (SQLite on a WAL file only).
    writer: Option<Arc<Writer>>,
    /// The lock that keeps other gateways off a SQLite file (see [`lock`]).
    _lock: Option<Arc<std::fs::File>>,
    /// The gateway's clock: the time of change log entries.
    clock: Arc<dyn Clock>,
    /// Woken after each committed write, for the change feed's tailer.
    changed: Arc<Notify>,
}

impl Db {
    /// Connects and applies the migrations. A SQLite file that does not exist yet is made
    /// (unless the URL sets its own `mode`).
    pub(crate) async fn open(url: &str, clock: Arc<dyn Clock>) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        if !sqlite && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(DbError::Scheme);
        }
        let url = if sqlite {
            sqlite_create(url)
        } else {
            url.to_owned()
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 16 })
            .acquire_timeout(Duration::from_secs(5))
            // A PostgreSQL connection can break between uses; a SQLite file cannot, and the
            // check would cost a round trip to the connection's thread on every statement.
            .test_before_acquire(!sqlite)
            .connect(&url)
            .await
            .map_err(|e| opening(&url, e))?;
        let mut db = Self {
            pool,
            sqlite,
            inline: None,
            writer: None,
            _lock: None,
            clock,
            changed: Arc::default(),
        };
        let file = if sqlite {
            db.sqlite_file().await?
        } else {
            None
        };
        if sqlite && file.is_none() {
            // In memory it vanishes with the pool's connections; a temporary database (an
            // empty path) is even private to each connection.
            return Err(DbError::InMemory);
        }
        if let Some(path) = &file {
            db._lock = Some(Arc::new(lock::exclusive(path)?));
        }
        let applied_ms = i64::try_from(db.clock.now_ms()).unwrap_or(i64::MAX);
        db.migrate(applied_ms).await.map_err(|e| match e {
            DbError::Unavailable(text) if sqlite => opening(&url, text),
            other => other,
        })?;
        // Inline reads only where readers never wait for writers: a file in WAL mode.
        if let Some(path) = file
            && db.is_wal().await?
        {
            let count = std::thread::available_parallelism().map_or(2, usize::from);
            match InlineReader::open(&path, count) {
                Ok(reader) => db.inline = Some(Arc::new(reader)),
                Err(err) => tracing::warn!(%err, "SQLite reads will all go through sqlx"),
            }
            match Writer::open(&path, db.clock.clone(), db.changed.clone()) {
                Ok(writer) => db.writer = Some(Arc::new(writer)),
                Err(err) => tracing::warn!(%err, "SQLite writes will go through sqlx"),
            }
        }
        Ok(db)
    }

    /// Whether the SQLite database is in WAL mode.
    async fn is_wal(&self) -> Result<bool, DbError> {
        let mode: String = sqlx::query("PRAGMA journal_mode")
            .fetch_one(&self.pool)
            .await?
            .get(0);
        Ok(mode.eq_ignore_ascii_case("wal"))
    }

    /// The file SQLite has open as the main database; `None` in memory or for a temporary
    /// database.
    async fn sqlite_file(&self) -> Result<Option<PathBuf>, DbError> {
        let file: String = sqlx::query("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_one(&self.pool)
            .await?
            .get(0);
        Ok((!file.is_empty()).then(|| PathBuf::from(file)))
    }

    /// `(served, handed_on)` of the inline SQLite reads (see [`inline`]); `None` without them.
    pub(crate) fn inline_counts(&self) -> Option<(u64, u64)> {
        self.inline.as_ref().map(|reader| reader.counts())
    }

    /// Appends the SQLite writer's metrics, if it has one, to `out` (Prometheus text).
    pub(crate) fn render_writer(&self, out: &mut String) {
        if let Some(writer) = &self.writer {
            writer.render(out);
        }
    }

    /// What is woken after each committed write (one waiter: the change feed's tailer).
    pub(crate) fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// The SQLite writer, for a write without a note (a note is a PostgreSQL notification).
    fn writer(&self, note: Option<&str>) -> Option<&Writer> {
        self.writer.as_deref().filter(|_| note.is_none())
    }

    /// Whether this is SQLite (for the few statements that differ).
    pub(crate) fn is_sqlite(&self) -> bool {
        self.sqlite
    }

    async fn migrate(&self, applied_ms: i64) -> Result<(), DbError> {
        if self.sqlite {
            // WAL lets the cache node read while the gateway writes; it is a property of the file.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&self.pool)
                .await?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS larder_migrations (version BIGINT PRIMARY KEY, applied TEXT NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        for &(version, script) in MIGRATIONS {
            let done = self
                .q("SELECT version FROM larder_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&self.pool)
                .await?;
            if done.is_some() {
                continue;
            }
            let mut tx = self.pool.begin().await?;
            for statement in script.split(';').filter(|s| !s.trim().is_empty()) {
                sqlx::query(AssertSqlSafe(statement.to_owned()))
                    .execute(&mut *tx)
                    .await?;
            }
            self.q("INSERT INTO larder_migrations (version, applied) VALUES ($1, $2)")
                .bind(version)
                .bind(crate::time::rfc3339(applied_ms))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// A statement written with `$n` placeholders, rewritten to `?n` for SQLite.
    pub(crate) fn q(&self, sql: &str) -> Query<'static, Any, AnyArguments> {
        sqlx::query(AssertSqlSafe(self.sql(sql)))
    }

    /// `sql` with `$n` turned into `?n` on SQLite (only `$` followed by a digit).
    pub(crate) fn sql(&self, sql: &str) -> String {
        if !self.sqlite {
            return sql.to_owned();
        }
        let bytes = sql.as_bytes();
        let mut out = String::with_capacity(sql.len());
        for (i, c) in sql.char_indices() {
            if c == '$' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                out.push('?');
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Runs `query`, inside a span of its own when the request is traced.
    async fn traced<T>(
        &self,
        operation: &'static str,
        table: &'static str,
        collection: &str,
        query: impl Future<Output = T>,
    ) -> T {
        let span = larder_proto::trace::child(|| {
            let system = if self.is_sqlite() {
                "sqlite"
            } else {
                "postgresql"
            };
            tracing::info_span!(
                "db",
                otel.name = %format_args!("{operation} {table}"),
                otel.kind = "client",
                db.system.name = system,
                db.operation.name = operation,
                db.collection.name = table,
                larder.collection = collection,
            )
        });
        query.instrument(span).await
    }

    /// Answers if the database does.
    pub(crate) async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// One document.
    pub(crate) async fn get(&self, collection: &str, id: &str) -> Result<Option<Stored>, DbError> {
        self.traced(
            "SELECT",
            "larder_documents",
            collection,
            self.get_query(collection, id),
        )
        .await
    }

    /// One document.
    async fn get_query(&self, collection: &str, id: &str) -> Result<Option<Stored>, DbError> {
        if let Some(found) = self.inline.as_ref().and_then(|r| r.get(collection, id)) {
            return Ok(found);
        }
        let row = self
            .q("SELECT doc, version FROM larder_documents WHERE collection = $1 AND id = $2")
            .bind(collection.to_owned())
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| Stored {
            doc: row.get(0),
            version: row.get(1),
        }))
    }

    /// Inserts a new document (version 1) and, if given, the idempotency record of the
    /// request that created it, in one transaction that announces `note`.
    pub(crate) async fn create(
        &self,
        collection: &str,
        id: &str,
        doc: &str,
        now: &str,
        idem: Option<(&str, &IdemRecord, i64)>,
        note: Option<&str>,
    ) -> Result<(), DbError> {
        self.traced(
            "INSERT",
            "larder_documents",
            collection,
            self.create_query(collection, id, doc, now, idem, note),
        )
        .await
    }

    /// Inserts a new document (version 1) and, if given, the idempotency record of the
    /// request that created it, in one transaction.
    async fn create_query(
        &self,
        collection: &str,
        id: &str,
        doc: &str,
        now: &str,
        idem: Option<(&str, &IdemRecord, i64)>,
        note: Option<&str>,
    ) -> Result<(), DbError> {
        if let Some(writer) = self.writer(note) {
            let write = Write::Create {
                collection: collection.to_owned(),
                id: id.to_owned(),
                doc: doc.to_owned(),
                now: now.to_owned(),
                idem: idem.map(|(key, record, expires)| (key.to_owned(), record.clone(), expires)),
            };
            if let Some(done) = writer.write(write).await {
                return done.map(|_| ());
            }
        }
        let mut tx = self.pool.begin().await?;
        if let Some((key, record, expires_at)) = idem {
            self.q("INSERT INTO larder_idempotency \
                 (collection, idem_key, fingerprint, status, location, etag, body, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(collection.to_owned())
                .bind(key.to_owned())
                .bind(record.fingerprint.clone())
                .bind(i64::from(record.status))
                .bind(record.location.clone())
                .bind(record.etag.clone())
                .bind(record.body.clone())
                .bind(expires_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| match DbError::from(e) {
                    DbError::Conflict => DbError::KeyTaken,
                    other => other,
                })?;
        }
        self.q(
            "INSERT INTO larder_documents (collection, id, doc, version, created_at, updated_at) \
             VALUES ($1, $2, $3, 1, $4, $4)",
        )
        .bind(collection.to_owned())
        .bind(id.to_owned())
        .bind(doc.to_owned())
        .bind(now.to_owned())
        .execute(&mut *tx)
        .await?;
        self.announce(&mut tx, note).await?;
        self.record_change(&mut tx, collection, id, Op::Create, 1)
            .await?;
        tx.commit().await?;
        self.changed.notify_one();
        Ok(())
    }

    /// Replaces a document if it still has version `expected`; whether it did. A replacement
    /// announces `note` in its transaction.
    pub(crate) async fn update(
        &self,
        collection: &str,
        id: &str,
        expected: i64,
        doc: &str,
        now: &str,
        note: Option<&str>,
    ) -> Result<bool, DbError> {
        self.traced(
            "UPDATE",
            "larder_documents",
            collection,
            self.update_query(collection, id, expected, doc, now, note),
        )
        .await
    }

    /// Replaces a document if it still has version `expected`; whether it did.
    async fn update_query(
        &self,
        collection: &str,
        id: &str,
        expected: i64,
        doc: &str,
        now: &str,
        note: Option<&str>,
    ) -> Result<bool, DbError> {
        if let Some(writer) = self.writer(note) {
            let write = Write::Update {
                collection: collection.to_owned(),
                id: id.to_owned(),
                expected,
                doc: doc.to_owned(),
                now: now.to_owned(),
            };
            if let Some(done) = writer.write(write).await {
                return done;
            }
        }
        let mut tx = self.pool.begin().await?;
        let done = self
            .q(
                "UPDATE larder_documents SET doc = $1, version = version + 1, updated_at = $2 \
                WHERE collection = $3 AND id = $4 AND version = $5",
            )
            .bind(doc.to_owned())
            .bind(now.to_owned())
            .bind(collection.to_owned())
            .bind(id.to_owned())
            .bind(expected)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        self.announce(&mut tx, note).await?;
        self.record_change(&mut tx, collection, id, Op::Update, expected + 1)
            .await?;
        tx.commit().await?;
        self.changed.notify_one();
        Ok(true)
    }

    /// Deletes a document (only at version `expected`, if given); whether it did. A deletion
    /// announces `note` in its transaction.
    pub(crate) async fn delete(
        &self,
        collection: &str,
        id: &str,
        expected: Option<i64>,
        note: Option<&str>,
    ) -> Result<bool, DbError> {
        self.traced(
            "DELETE",
            "larder_documents",
            collection,
            self.delete_query(collection, id, expected, note),
        )
        .await
    }

    /// Deletes a document (only at version `expected`, if given); whether it did.
    async fn delete_query(
        &self,
        collection: &str,
        id: &str,
        expected: Option<i64>,
        note: Option<&str>,
    ) -> Result<bool, DbError> {
        if let Some(writer) = self.writer(note) {
            let write = Write::Delete {
                collection: collection.to_owned(),
                id: id.to_owned(),
                expected,
            };
            if let Some(done) = writer.write(write).await {
                return done;
            }
        }
        let mut tx = self.pool.begin().await?;
        // The version deleted comes back for the change log.
        let done = match expected {
            Some(version) => {
                self.q("DELETE FROM larder_documents WHERE collection = $1 AND id = $2 AND version = $3 \
                        RETURNING version")
                    .bind(collection.to_owned())
                    .bind(id.to_owned())
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => {
                self.q("DELETE FROM larder_documents WHERE collection = $1 AND id = $2 RETURNING version")
                    .bind(collection.to_owned())
                    .bind(id.to_owned())
                    .fetch_optional(&mut *tx)
                    .await?
            }
        };
        let Some(row) = done else { return Ok(false) };
        self.announce(&mut tx, note).await?;
        self.record_change(&mut tx, collection, id, Op::Delete, row.get(0))
            .await?;
        tx.commit().await?;
        self.changed.notify_one();
        Ok(true)
    }

    /// The live idempotency record of `key`, dropping it if it has expired.
    pub(crate) async fn idempotency(
        &self,
        collection: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<IdemRecord>, DbError> {
        self.traced(
            "SELECT",
            "larder_idempotency",
            collection,
            self.idempotency_query(collection, key, now_ms),
        )
        .await
    }

    /// The live idempotency record of `key`, dropping it if it has expired.
    async fn idempotency_query(
        &self,
        collection: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<IdemRecord>, DbError> {
        let row = self
            .q("SELECT fingerprint, status, location, etag, body, expires_at FROM larder_idempotency \
                WHERE collection = $1 AND idem_key = $2")
            .bind(collection.to_owned())
            .bind(key.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let expires_at: i64 = row.get(5);
        if expires_at <= now_ms {
            self.q("DELETE FROM larder_idempotency WHERE collection = $1 AND idem_key = $2")
                .bind(collection.to_owned())
                .bind(key.to_owned())
                .execute(&self.pool)
                .await?;
            return Ok(None);
        }
        Ok(Some(idem_record(&row)))
    }

    /// Drops expired idempotency records; how many.
    pub(crate) async fn purge_idempotency(&self, now_ms: i64) -> Result<u64, DbError> {
        let done = self
            .q("DELETE FROM larder_idempotency WHERE expires_at <= $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Runs a list query built by `crate::list`.
    pub(crate) async fn rows(
        &self,
        query: Query<'static, Any, AnyArguments>,
    ) -> Result<Vec<AnyRow>, DbError> {
        self.traced("SELECT", "larder_documents", "", self.rows_query(query))
            .await
    }

    /// Runs a list query built by `crate::list`.
    async fn rows_query(
        &self,
        query: Query<'static, Any, AnyArguments>,
    ) -> Result<Vec<AnyRow>, DbError> {
        Ok(query.fetch_all(&self.pool).await?)
    }
}

fn idem_record(row: &AnyRow) -> IdemRecord {
    let status: i64 = row.get(1);
    IdemRecord {
        fingerprint: row.get(0),
        status: u16::try_from(status).unwrap_or(500),
        location: row.get(2),
        etag: row.get(3),
        body: row.get(4),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicU32, Ordering};

    use larder_store::SystemClock;

    use super::*;

    async fn file_db() -> Db {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("larder-db-{}-{n}.db", std::process::id()));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        Db::open(
            &format!("sqlite://{}?mode=rwc", path.display()),
            Arc::new(SystemClock),
        )
        .await
        .unwrap()
    }

    /// What sqlx alone answers, with every inline connection held so that `get` must fall back.
    async fn through_sqlx(db: &Db, id: &str) -> Option<Stored> {
        let reader = db.inline.as_ref().unwrap();
        let _held: Vec<_> = reader.conns_for_test().iter().map(|c| c.lock()).collect();
        assert_eq!(reader.get("things", id), None, "no connection was free");
        db.get("things", id).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inline_reads_see_every_commit_and_agree_with_sqlx() {
        let db = file_db().await;
        let reader = db.inline.clone().expect("a WAL file gets inline reads");
        assert_eq!(reader.get("things", "a"), Some(None));

        db.create("things", "a", r#"{"v":1}"#, "t0", None, None)
            .await
            .unwrap();
        let first = Stored {
            doc: r#"{"v":1}"#.into(),
            version: 1,
        };
        assert_eq!(reader.get("things", "a"), Some(Some(first.clone())));
        assert_eq!(db.get("things", "a").await.unwrap(), Some(first.clone()));
        assert_eq!(through_sqlx(&db, "a").await, Some(first));

        // A write (through the SQLite writer) is visible to the very next inline read.
        assert!(
            db.update("things", "a", 1, r#"{"v":2}"#, "t1", None)
                .await
                .unwrap()
        );
        let second = Stored {
            doc: r#"{"v":2}"#.into(),
            version: 2,
        };
        assert_eq!(reader.get("things", "a"), Some(Some(second.clone())));
        assert_eq!(through_sqlx(&db, "a").await, Some(second));

        assert!(db.delete("things", "a", Some(2), None).await.unwrap());
        assert_eq!(reader.get("things", "a"), Some(None));
        assert_eq!(through_sqlx(&db, "a").await, None);
        // Five reads answered inline (four direct, one `db.get`); each `through_sqlx` handed
        // two on (its own check and `db.get`'s attempt).
        assert_eq!(db.inline_counts(), Some((5, 6)));
    }

    #[tokio::test]
    async fn inline_connections_refuse_to_write() {
        let db = file_db().await;
        let reader = db.inline.as_ref().unwrap();
        let conn = reader.conns_for_test()[0].lock();
        let err = conn
            .execute("DELETE FROM larder_documents", [])
            .expect_err("query_only");
        assert!(err.to_string().contains("readonly"), "{err}");
    }

    #[tokio::test]
    async fn databases_that_are_not_files_are_refused_clearly() {
        for url in ["sqlite::memory:", "sqlite://x.db?mode=memory", "sqlite://"] {
            let err = Db::open(url, Arc::new(SystemClock))
                .await
                .expect_err(url)
                .to_string();
            assert!(
                err.contains("in memory or in a temporary file"),
                "{url}: {err}"
            );
        }
    }
}
