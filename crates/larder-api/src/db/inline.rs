//! Point reads of one document from SQLite on the thread that asks.
//!
//! sqlx gives every SQLite connection a thread of its own and sends it each statement over a
//! channel, so one read wakes that thread and then wakes the requester again. Profiled under a
//! miss load, those hand-offs were about two thirds of the gateway's CPU per miss, and they put
//! the scheduler's latency into every miss; the B-tree lookup itself was under 2%. So the gateway
//! keeps a few connections of its own and runs a read of one row by primary key right where the
//! request is. It is a few microseconds of work against a WAL file the operating system keeps
//! in memory (a cold page is one `pread`), and the connection never waits on a writer: in WAL
//! mode readers read the last commit. Document writes have a thread of their own
//! ([`super::writer`]); everything else (lists, idempotency records, and all of PostgreSQL)
//! still goes through sqlx.
//!
//! When every connection is in use, or a read fails, the caller takes the sqlx path, which
//! gives the same answer or the error a user should see.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::Stored;

const GET: &str = "SELECT doc, version FROM larder_documents WHERE collection = ?1 AND id = ?2";

/// Read-only SQLite connections used from the requesting thread.
#[derive(Debug)]
pub(crate) struct InlineReader {
    conns: Box<[Mutex<Connection>]>,
    next: AtomicUsize,
    /// Reads answered here, and reads handed to sqlx (every connection busy, or an error).
    served: AtomicU64,
    handed_on: AtomicU64,
}

impl InlineReader {
    /// `count` connections to the database file at `path`, which must exist and hold the
    /// migrated schema.
    pub(crate) fn open(path: &Path, count: usize) -> rusqlite::Result<Self> {
        let conns = (0..count.max(1))
            .map(|_| {
                // Read-only (a WAL reader still maps the `-shm` index), and `query_only` as
                // well: a bug that tried to write would fail instead.
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.pragma_update(None, "query_only", true)?;
                // Busy (WAL recovery, a truncating checkpoint) means "ask sqlx", which may
                // wait; SQLite's own short read-start retries still happen.
                conn.busy_timeout(std::time::Duration::ZERO)?;
                // Compiled once here, so a bad schema shows at start and the first read is fast.
                conn.prepare_cached(GET)?;
                Ok(Mutex::new(conn))
            })
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Self {
            conns: conns.into_boxed_slice(),
            next: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            handed_on: AtomicU64::new(0),
        })
    }

    /// The document `(collection, id)`; `None` when no connection was free or the read
    /// failed, and the caller should ask sqlx instead.
    pub(crate) fn get(&self, collection: &str, id: &str) -> Option<Option<Stored>> {
        let found = self.read(collection, id);
        let counter = if found.is_some() {
            &self.served
        } else {
            &self.handed_on
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// `(served, handed_on)`: reads answered here, and reads left to sqlx.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.served.load(Ordering::Relaxed),
            self.handed_on.load(Ordering::Relaxed),
        )
    }

    fn read(&self, collection: &str, id: &str) -> Option<Option<Stored>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.conns.len();
        let conn = (0..n).find_map(|i| self.conns[start.wrapping_add(i) % n].try_lock())?;
        let read = conn.prepare_cached(GET).and_then(|mut statement| {
            statement
                .query_row([collection, id], |row| {
                    Ok(Stored {
                        doc: row.get(0)?,
                        version: row.get(1)?,
                    })
                })
                .optional()
        });
        match read {
            Ok(found) => Some(found),
            Err(err) => {
                tracing::debug!(%err, "inline SQLite read failed; asking sqlx");
                None
            }
        }
    }
}

#[cfg(test)]
impl InlineReader {
    pub(super) fn conns_for_test(&self) -> &[Mutex<Connection>] {
        &self.conns
    }
}
