//! Writes, one operation per command family. Each first passes the origin guard: a key whose
//! origin writes through takes only a plain set (which goes to the origin first) and changes
//! that touch only the cached copy (delete, expiry, invalidate); anything else would change
//! the cache behind the origin's back and is refused. Every client write to a key an origin
//! claims also retires the origin load in flight, so what the load read before the write
//! cannot replace it. Then the store changes, and a [`MutationKind`] record goes to the sink.

use larder_proto::ErrorCode;
use larder_store::{CasOutcome, EntryRef, Expiry, SetMode, SetOptions, SetOutcome, Update};
use tokio::task::JoinHandle;

use super::Node;
use super::error::OpError;
use super::mutation::MutationKind;
use crate::origin::OriginError;

/// What a write does to a key, for the origin guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// A new value: refused on a write-through key.
    Value,
    /// Only the cached copy is dropped or re-timed: allowed on a write-through key.
    Copy,
}

/// A set's result: done, or waiting for a write-through origin.
#[derive(Debug)]
pub(crate) enum SetResult {
    Done(SetOutcome),
    Origin(PendingWrite),
}

/// A write-through in progress (on its own task, so a client that leaves cannot stop it
/// between the origin and the cache).
#[derive(Debug)]
pub(crate) struct PendingWrite(JoinHandle<Result<u64, OriginError>>);

impl PendingWrite {
    /// The version the origin reported (0 if it keeps none), once the cache has it too.
    pub(crate) async fn finish(self) -> Result<u64, OpError> {
        let written = self
            .0
            .await
            .unwrap_or_else(|_| Err(OriginError::Unavailable("write abandoned".into())));
        Ok(written?)
    }
}

fn write_through_refused() -> OpError {
    OpError::refused(
        ErrorCode::Conflict,
        "this command cannot change a write-through key; only a plain set writes it, through \
         its origin",
    )
}

/// Whether a set is plain: mode always, no version, no expiry, no previous value asked for.
fn plain(opts: &SetOptions) -> bool {
    opts.mode == SetMode::Always
        && opts.version.is_none()
        && opts.expiry == Expiry::Never
        && !opts.return_previous
}

impl Node {
    /// The origin guard for a client's write of `keys`: refuses the whole write if any key
    /// writes through and `change` would change its value, before anything is retired; then
    /// retires the loads in flight of the keys an origin claims.
    fn guard<K: AsRef<[u8]>>(&self, keys: &[K], change: Change) -> Result<(), OpError> {
        let Some(origins) = &self.origins else {
            for key in keys {
                self.leases.retire(key.as_ref());
            }
            return Ok(());
        };
        let claimed = |key: &K| origins.find(key.as_ref());
        if change == Change::Value
            && keys
                .iter()
                .any(|key| claimed(key).is_some_and(|o| o.write_through()))
        {
            return Err(write_through_refused());
        }
        for key in keys {
            self.leases.retire(key.as_ref());
            if claimed(key).is_some() {
                origins.retire(key.as_ref());
            }
        }
        Ok(())
    }

    /// Sets `key` as `opts` say. On a write-through key only a plain set is taken, and it goes
    /// to the origin first ([`SetResult::Origin`]).
    pub(crate) fn set(
        &self,
        key: &[u8],
        value: &[u8],
        opts: SetOptions,
    ) -> Result<SetResult, OpError> {
        if let Some((origins, origin)) = self.origin_of(key)
            && origin.write_through()
        {
            if !plain(&opts) {
                return Err(OpError::refused(
                    ErrorCode::InvalidArgument,
                    "a write-through key takes a plain set: no mode, version, expiry or GET",
                ));
            }
            return Ok(SetResult::Origin(PendingWrite(
                origins.write(origin, key, value),
            )));
        }
        self.guard(&[key], Change::Value)?;
        let outcome = self.store.set(key, value, opts)?;
        if outcome.stored {
            self.recorder
                .record_current(&self.store, key, MutationKind::Set);
        }
        Ok(SetResult::Done(outcome))
    }

    /// Fills `key` under the lease `token` a missed read was given: stored as `opts` say only
    /// if no change of the key came since (see [`lease`](super::lease)).
    pub(crate) fn fill(
        &self,
        key: &[u8],
        value: &[u8],
        opts: SetOptions,
        token: u64,
    ) -> Result<SetOutcome, OpError> {
        let Some(lease) = self.leases.redeem(key, token, self.now_ms()) else {
            let version = self.store.peek_with(key, |e| e.version);
            return Ok(SetOutcome {
                stored: false,
                version,
                previous: None,
            });
        };
        let outcome = self.store.set(key, value, opts)?;
        drop(lease);
        if outcome.stored {
            self.recorder
                .record_current(&self.store, key, MutationKind::Set);
        }
        Ok(outcome)
    }

    /// Sets every pair (`MSET`), or none if any key writes through.
    pub(crate) fn set_each(&self, pairs: &[(&[u8], &[u8])]) -> Result<(), OpError> {
        let keys: Vec<&[u8]> = pairs.iter().map(|&(key, _)| key).collect();
        self.guard(&keys, Change::Value)?;
        for &(key, value) in pairs {
            self.store.set(key, value, SetOptions::default())?;
            self.recorder
                .record_current(&self.store, key, MutationKind::Set);
        }
        Ok(())
    }

    /// Sets every pair if no key exists yet, atomically (`MSETNX`); whether it did.
    pub(crate) fn set_all_if_absent(&self, pairs: &[(&[u8], &[u8])]) -> Result<bool, OpError> {
        let keys: Vec<&[u8]> = pairs.iter().map(|&(key, _)| key).collect();
        self.guard(&keys, Change::Value)?;
        let stored = self.store.set_all_if_absent(pairs)?;
        if stored {
            for key in keys {
                self.recorder
                    .record_current(&self.store, key, MutationKind::Set);
            }
        }
        Ok(stored)
    }

    /// Reads `key` and changes it in one step (`APPEND`, `GETDEL`, `GETEX`, `INCRBYFLOAT`,
    /// `SETRANGE`, the conditional `EXPIRE`s): `decide` sees the live entry and picks the
    /// [`Update`]. `change` says what the command may do, for the origin guard.
    pub(crate) fn update<R>(
        &self,
        key: &[u8],
        change: Change,
        decide: impl FnOnce(Option<EntryRef<'_>>) -> (Update, R),
    ) -> Result<R, OpError> {
        self.guard(&[key], change)?;
        let (made, kind) = self.store.update(key, |entry| {
            let (update, made) = decide(entry);
            let kind = match &update {
                Update::Keep => None,
                Update::Write { .. } => Some(MutationKind::Set),
                Update::Expire(_) => Some(MutationKind::Expire),
                Update::Delete => Some(MutationKind::Delete),
            };
            (update, (made, kind))
        })?;
        match kind {
            Some(MutationKind::Delete) => {
                self.recorder.record(key, MutationKind::Delete, 0, None);
            }
            Some(kind) => self.recorder.record_current(&self.store, key, kind),
            None => {}
        }
        Ok(made)
    }

    /// Adds `delta` to the integer under `key`; the new value.
    pub(crate) fn incr(&self, key: &[u8], delta: i64) -> Result<i64, OpError> {
        self.guard(&[key], Change::Value)?;
        let value = self.store.incr(key, delta)?;
        self.recorder
            .record_current(&self.store, key, MutationKind::Set);
        Ok(value)
    }

    /// Writes `value` only if `key` holds version `expected`.
    pub(crate) fn compare_and_set(
        &self,
        key: &[u8],
        expected: u64,
        value: &[u8],
        expiry: Expiry,
    ) -> Result<CasOutcome, OpError> {
        self.guard(&[key], Change::Value)?;
        let outcome = self.store.compare_and_set(key, expected, value, expiry)?;
        if matches!(outcome, CasOutcome::Swapped(_)) {
            self.recorder
                .record_current(&self.store, key, MutationKind::Set);
        }
        Ok(outcome)
    }

    /// Deletes `key`; whether it held a live entry.
    pub(crate) fn delete(&self, key: &[u8]) -> bool {
        // Deleting only touches the cached copy, which the guard always allows.
        let _ = self.guard(&[key], Change::Copy);
        let deleted = self.store.delete(key);
        if deleted {
            self.recorder.record(key, MutationKind::Delete, 0, None);
        }
        deleted
    }

    /// Sets or clears the expiry of a live `key`; whether there was one. A time already past
    /// deletes the key.
    pub(crate) fn expire(&self, key: &[u8], expiry: Expiry) -> Result<bool, OpError> {
        self.guard(&[key], Change::Copy)?;
        let found = self.store.expire(key, expiry)?;
        if found {
            self.recorder
                .record_current(&self.store, key, MutationKind::Expire);
        }
        Ok(found)
    }

    /// Clears the expiry of a live `key`; whether it had one.
    pub(crate) fn persist(&self, key: &[u8]) -> bool {
        let _ = self.guard(&[key], Change::Copy);
        let removed = self.store.persist(key);
        if removed {
            self.recorder
                .record_current(&self.store, key, MutationKind::Expire);
        }
        removed
    }

    /// Drops `key` from the cache, with any load of it in flight and any remembered "not
    /// found", so the next read loads it again; whether the cache held it.
    pub(crate) fn invalidate(&self, key: &[u8]) -> bool {
        let _ = self.guard(&[key], Change::Copy);
        let held = self.store.delete(key);
        self.recorder.record(key, MutationKind::Invalidate, 0, None);
        held
    }

    /// Drops every key (`FLUSHALL`), and every origin load in flight.
    pub(crate) fn flush(&self) {
        if let Some(origins) = &self.origins {
            origins.retire_all();
        }
        self.leases.retire_all();
        self.store.clear();
        self.recorder.record(b"", MutationKind::Flush, 0, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_set_without_options_is_plain() {
        assert!(plain(&SetOptions::default()));
        assert!(!plain(&SetOptions::mode(SetMode::IfAbsent)));
        assert!(!plain(&SetOptions::ttl(std::time::Duration::from_secs(1))));
        let keep = SetOptions {
            expiry: Expiry::Keep,
            ..SetOptions::default()
        };
        assert!(!plain(&keep));
        let get = SetOptions {
            return_previous: true,
            ..SetOptions::default()
        };
        assert!(!plain(&get));
    }
}
