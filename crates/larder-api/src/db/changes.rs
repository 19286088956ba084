//! The change log behind `GET /v1/{collection}/changes`: one row per committed create, update
//! and delete, written in the write's own transaction, numbered by a sequence that is gap-free
//! and in commit order on both databases.
//!
//! The number comes from a one-row counter (`larder_change_seq`) that each write increments as
//! its last statement before `COMMIT`. The increment locks the row until the transaction ends,
//! so a second writer waits there until the first has committed (or rolled back, which undoes
//! its increment): numbers are handed out in commit order and none is lost. A `bigserial`
//! would not do on PostgreSQL: it is drawn at insert, so a transaction holding number 7 can
//! commit after the one holding 8, and a reader that has seen 8 would never look for 7. The
//! price is that writes of all collections serialise for the time between the increment and
//! the commit (one round trip on PostgreSQL, the statement is the last before `COMMIT`); SQLite
//! serialises writers anyway. See docs/ARCHITECTURE.md, "Change feed".
//!
//! Because numbers are gap-free, a reader can tell a pruned stretch from one not yet written:
//! rows after `n` must start at `n + 1` and follow one another, or what is missing is gone.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{Db, DbError};

/// The schema: the log and its counter (migration 2).
pub(super) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS larder_changes (
        seq BIGINT PRIMARY KEY,
        collection TEXT NOT NULL,
        id TEXT NOT NULL,
        op TEXT NOT NULL,
        version BIGINT NOT NULL,
        at BIGINT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS larder_change_seq (
        one BIGINT PRIMARY KEY,
        seq BIGINT NOT NULL
    );
    INSERT INTO larder_change_seq (one, seq) VALUES (1, 0)";

/// Rows dropped per statement when pruning, so no statement holds locks for long.
const PRUNE_BATCH: i64 = 10_000;

/// What a write did to a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Create,
    Update,
    Delete,
}

impl Op {
    /// The name in the log and in the feed's `event:` field.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "create" => Some(Op::Create),
            "update" => Some(Op::Update),
            "delete" => Some(Op::Delete),
            _ => None,
        }
    }
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    /// Position in the log: gap-free, in commit order.
    pub(crate) seq: i64,
    pub(crate) collection: String,
    pub(crate) id: String,
    pub(crate) op: Op,
    /// The document's version after the write (for a delete, the version deleted).
    pub(crate) version: i64,
    /// Unix milliseconds of the write, by the writing gateway's clock.
    pub(crate) at: i64,
}

/// What a page of the log after some position holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Page {
    /// The entries that follow, consecutive from the position on (empty: none yet).
    Next(Vec<Change>),
    /// Entries after the position were pruned (or the position is past the log's end).
    Gone,
}

impl Db {
    /// Records a write in the log, inside the write's transaction; call it as the last
    /// statement before `COMMIT` (it serialises writers until then).
    pub(super) async fn record_change(
        &self,
        tx: &mut Transaction<'static, Any>,
        collection: &str,
        id: &str,
        op: Op,
        version: i64,
    ) -> Result<(), DbError> {
        let at = i64::try_from(self.clock.now_ms()).unwrap_or(i64::MAX);
        if self.sqlite {
            // One writer at a time already; two statements cost nothing over the network.
            let seq: i64 = sqlx::query(
                "UPDATE larder_change_seq SET seq = seq + 1 WHERE one = 1 RETURNING seq",
            )
            .fetch_one(&mut **tx)
            .await?
            .get(0);
            self.q(
                "INSERT INTO larder_changes (seq, collection, id, op, version, at) \
                    VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(seq)
            .bind(collection.to_owned())
            .bind(id.to_owned())
            .bind(op.as_str())
            .bind(version)
            .bind(at)
            .execute(&mut **tx)
            .await?;
        } else {
            // One round trip: the counter row stays locked only until the COMMIT that follows.
            self.q(
                "WITH next AS (UPDATE larder_change_seq SET seq = seq + 1 WHERE one = 1 \
                 RETURNING seq) \
                 INSERT INTO larder_changes (seq, collection, id, op, version, at) \
                 SELECT seq, $1, $2, $3, $4, $5 FROM next",
            )
            .bind(collection.to_owned())
            .bind(id.to_owned())
            .bind(op.as_str())
            .bind(version)
            .bind(at)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// The last position handed out (0 before the first write).
    pub(crate) async fn change_head(&self) -> Result<i64, DbError> {
        Ok(
            sqlx::query("SELECT seq FROM larder_change_seq WHERE one = 1")
                .fetch_one(&self.pool)
                .await?
                .get(0),
        )
    }

    /// Up to `limit` entries after `after`, checked to follow on from it. `head` is a
    /// [`Db::change_head`] read before this call, or `None` when the caller knows `after` was
    /// a position of the log (an event it delivered).
    pub(crate) async fn changes_after(
        &self,
        after: i64,
        limit: i64,
        head: Option<i64>,
    ) -> Result<Page, DbError> {
        let rows = self
            .q(
                "SELECT seq, collection, id, op, version, at FROM larder_changes \
                WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let changes: Vec<Change> = rows.iter().filter_map(change).collect();
        Ok(follow_on(after, changes, head))
    }

    /// Drops entries written before `cutoff_ms`, oldest first; how many.
    pub(crate) async fn prune_changes(&self, cutoff_ms: i64) -> Result<u64, DbError> {
        let mut dropped = 0;
        loop {
            let done = self
                .q("DELETE FROM larder_changes WHERE seq IN \
                    (SELECT seq FROM larder_changes ORDER BY seq LIMIT $1) AND at < $2")
                .bind(PRUNE_BATCH)
                .bind(cutoff_ms)
                .execute(&self.pool)
                .await?;
            dropped += done.rows_affected();
            if done.rows_affected() < u64::try_from(PRUNE_BATCH).unwrap_or(u64::MAX) {
                return Ok(dropped);
            }
        }
    }
}

/// `changes` as a [`Page`] after `after`: they must start at `after + 1` and be consecutive;
/// none at all is right only if nothing was written after `after` (as far as `head` knows).
fn follow_on(after: i64, changes: Vec<Change>, head: Option<i64>) -> Page {
    if head.is_some_and(|head| after > head) {
        return Page::Gone;
    }
    if changes.is_empty() && head.is_some_and(|head| after < head) {
        return Page::Gone;
    }
    let consecutive = changes
        .iter()
        .zip(after + 1..)
        .all(|(change, seq)| change.seq == seq);
    if consecutive {
        Page::Next(changes)
    } else {
        Page::Gone
    }
}

fn change(row: &AnyRow) -> Option<Change> {
    let op: String = row.get(3);
    Some(Change {
        seq: row.get(0),
        collection: row.get(1),
        id: row.get(2),
        op: Op::parse(&op)?,
        version: row.get(4),
        at: row.get(5),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use larder_store::SystemClock;

    use super::*;

    /// Held by each test here: one prunes the whole log, which the PostgreSQL database shares.
    static LOG: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// A fresh SQLite file, and the PostgreSQL database when configured.
    async fn databases() -> Vec<Db> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("larder-log-{}-{n}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut urls = vec![format!("sqlite://{}?mode=rwc", path.display())];
        urls.extend(std::env::var("LARDER_TEST_POSTGRES_URL").ok());
        let mut out = Vec::new();
        for url in urls {
            out.push(Db::open(&url, Arc::new(SystemClock)).await.unwrap());
        }
        out
    }

    /// Many writers at once, and a reader that follows the log as it grows: a position the
    /// reader passes must never be filled in later (it would have skipped it), which the
    /// reader sees as a page that does not follow on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_never_leave_a_gap_behind_a_reader() {
        const WRITERS: usize = 16;
        const EACH: usize = 25;
        let _log = LOG.lock().await;
        for db in databases().await {
            let collection = format!("gaps_{}", std::process::id());
            let start = db.change_head().await.unwrap();
            let mut writers = Vec::new();
            for w in 0..WRITERS {
                let (db, collection) = (db.clone(), collection.clone());
                writers.push(tokio::spawn(async move {
                    for i in 0..EACH {
                        let id = format!("{w}-{i}-{start}");
                        db.create(&collection, &id, "{}", "t", None, None)
                            .await
                            .unwrap();
                    }
                }));
            }
            let mut last = start;
            let mut mine = 0;
            while mine < WRITERS * EACH {
                match db.changes_after(last, 50, None).await.unwrap() {
                    Page::Next(changes) => {
                        for change in changes {
                            last = change.seq;
                            mine += usize::from(change.collection == collection);
                        }
                    }
                    Page::Gone => panic!("a gap after {last}: a later commit took an earlier seq"),
                }
            }
            for writer in writers {
                writer.await.unwrap();
            }
        }
    }

    #[tokio::test]
    async fn pruning_drops_old_entries_and_a_reader_behind_them_is_told() {
        let _log = LOG.lock().await;
        for db in databases().await {
            let collection = format!("prune_{}", std::process::id());
            let before = db.change_head().await.unwrap();
            for i in 0..3 {
                let id = format!("{i}-{before}");
                db.create(&collection, &id, "{}", "t", None, None)
                    .await
                    .unwrap();
            }
            let head = db.change_head().await.unwrap();
            assert_eq!(head, before + 3);
            // Nothing is old enough yet.
            assert_eq!(db.prune_changes(0).await.unwrap(), 0);
            let Page::Next(all) = db.changes_after(before, 10, Some(head)).await.unwrap() else {
                panic!("the entries are there");
            };
            assert_eq!(all.len(), 3);
            assert!(db.prune_changes(i64::MAX).await.unwrap() >= 3);
            let page = db.changes_after(before, 10, Some(head)).await.unwrap();
            assert_eq!(page, Page::Gone);
            // At the end of the log there is nothing missing.
            let page = db.changes_after(head, 10, Some(head)).await.unwrap();
            assert_eq!(page, Page::Next(Vec::new()));
        }
    }

    fn at(seq: i64) -> Change {
        Change {
            seq,
            collection: "c".into(),
            id: "x".into(),
            op: Op::Update,
            version: 1,
            at: 0,
        }
    }

    #[test]
    fn a_page_must_follow_on_from_its_position() {
        assert_eq!(
            follow_on(4, vec![at(5), at(6)], Some(6)),
            Page::Next(vec![at(5), at(6)])
        );
        assert_eq!(follow_on(6, vec![], Some(6)), Page::Next(vec![]));
        assert_eq!(follow_on(6, vec![], None), Page::Next(vec![]));
        // Pruned: the first one after the position is missing, or one in the middle.
        assert_eq!(follow_on(3, vec![at(5), at(6)], Some(6)), Page::Gone);
        assert_eq!(follow_on(4, vec![at(5), at(7)], Some(7)), Page::Gone);
        // Everything after the position pruned, or a position the log never reached.
        assert_eq!(follow_on(4, vec![], Some(6)), Page::Gone);
        assert_eq!(follow_on(9, vec![], Some(6)), Page::Gone);
    }

    #[test]
    fn ops_round_trip() {
        for op in [Op::Create, Op::Update, Op::Delete] {
            assert_eq!(Op::parse(op.as_str()), Some(op));
        }
        assert_eq!(Op::parse("upsert"), None);
    }
}
