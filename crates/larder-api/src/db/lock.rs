//! One gateway per SQLite database. A gateway's in-process cache is kept right by the writes
//! it makes itself; a second gateway writing the same file would leave the first serving
//! versions it never heard of. So a gateway holds an exclusive advisory lock on a file next
//! to the database (`<database>.lock`) for as long as it has the database open, and a second
//! one is refused at start. The lock file is left in place: its lock, not its existence, is
//! what counts, and the operating system releases it when the process ends.
//!
//! Readers that are not gateways (a cache node's SQL origin) do not take it.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use super::DbError;

/// The lock file of the SQLite database at `db`.
pub(super) fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the gateway's lock on the SQLite database at `db`; held while the file is open.
///
/// # Errors
/// [`DbError::Opening`] when another gateway holds it, or the lock file cannot be made.
pub(super) fn exclusive(db: &Path) -> Result<File, DbError> {
    let path = lock_path(db);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|err| {
            DbError::Opening(format!(
                "cannot make the lock file {}: {err}; check that its directory is writable",
                path.display()
            ))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(DbError::Opening(format!(
            "another gateway already serves the SQLite database {} (it holds {}): a SQLite \
             database takes one gateway; run more gateways over PostgreSQL",
            db.display(),
            path.display()
        ))),
        Err(TryLockError::Error(err)) => Err(DbError::Opening(format!(
            "cannot lock {}: {err}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let db = std::env::temp_dir().join(format!("larder-lock-{}.db", std::process::id()));
        let first = exclusive(&db).unwrap();
        let err = exclusive(&db).expect_err("held").to_string();
        assert!(err.contains("another gateway already serves"), "{err}");
        assert!(err.contains(&lock_path(&db).display().to_string()), "{err}");
        drop(first);
        let again = exclusive(&db).unwrap();
        drop(again);
        let _ = std::fs::remove_file(lock_path(&db));
    }
}
