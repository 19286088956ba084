//! Announcing a write to the other gateways over PostgreSQL (see [`crate::peers`]): the
//! notification is sent in the write's transaction, so it is delivered when, and only if,
//! the write commits.

use sqlx::{Any, Transaction};

use super::{Db, DbError};

/// The PostgreSQL channel gateways announce their writes on (see [`crate::peers`]).
pub(crate) const CHANNEL: &str = "larder_changes";

impl Db {
    /// Notifies `note` (a payload), if any, on [`CHANNEL`] inside `tx`.
    pub(super) async fn announce(
        &self,
        tx: &mut Transaction<'static, Any>,
        note: Option<&str>,
    ) -> Result<(), DbError> {
        let Some(note) = note else { return Ok(()) };
        self.q("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(note.to_owned())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}
