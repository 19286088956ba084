//! Reads: one key ([`Node::read`], the hot path: the caller reads the entry in place) and many
//! ([`Node::read_all`], every load started before any is awaited). A key with an origin is
//! served by its freshness: fresh, or stale inside the revalidate window (served and
//! refreshed once in the background), or loaded (a stale value inside the if-error window is
//! the fallback if the load fails).

use std::sync::Arc;

use larder_store::{EntryRef, Freshness, TtlState, Update};

use super::Node;
use super::error::OpError;
use crate::origin::{Origin, Origins, Served, Step, served};

/// What a read of one key found.
#[derive(Debug)]
pub(crate) enum Read<R> {
    /// Served from memory: what the caller made of the entry.
    Found(R),
    /// No such key (and its origin, if it has one, recently said so).
    Missing,
    /// The key's origin must be asked; await [`Pending::finish`].
    Load(Pending),
}

/// A read waiting for an origin load (joined or started already).
#[derive(Debug)]
pub(crate) struct Pending {
    origins: Arc<Origins>,
    step: Step,
}

impl Pending {
    /// The loaded value, the stale fallback if the load failed, `None` if the origin has no
    /// such key, or the origin's error.
    pub(crate) async fn finish(self) -> Result<Option<Served>, OpError> {
        Ok(self.origins.finish(self.step).await?)
    }
}

impl Node {
    /// The origin that claims `key`, if any.
    pub(crate) fn origin_of(&self, key: &[u8]) -> Option<(&Arc<Origins>, &Arc<Origin>)> {
        let origins = self.origins.as_ref()?;
        Some((origins, origins.find(key)?))
    }

    /// Reads `key`: `found` sees the entry in place (and whether it is served stale) when it
    /// may be served from memory. Never waits; a read that needs the origin is returned as
    /// [`Read::Load`].
    pub(crate) fn read<R>(
        &self,
        key: &[u8],
        found: impl FnOnce(EntryRef<'_>, bool) -> R,
    ) -> Read<R> {
        let Some((origins, origin)) = self.origin_of(key) else {
            return match self.store.get_with(key, |entry| found(entry, false)) {
                Some(made) => Read::Found(made),
                None => Read::Missing,
            };
        };
        let now = self.now_ms();
        let looked =
            self.store
                .get_with(key, |entry| match origin.freshness(entry.expires_at, now) {
                    Freshness::Fresh => Ok((found(entry, false), false)),
                    Freshness::Revalidate => Ok((found(entry, true), true)),
                    Freshness::IfError => Err(Served {
                        stale: true,
                        ..served(entry)
                    }),
                });
        let load = |fallback| {
            Read::Load(Pending {
                origins: origins.clone(),
                step: origins.load(origin, key, fallback),
            })
        };
        match looked {
            Some(Ok((made, stale))) => {
                if stale {
                    origins.served_stale(origin, key);
                }
                Read::Found(made)
            }
            Some(Err(stale)) => load(Some(stale)),
            None if origins.known_missing(key, now) => Read::Missing,
            None => load(None),
        }
    }

    /// Reads `key` like [`Node::read`]; a miss of a key without an origin also hands out a
    /// fill lease, if one is free (0 otherwise).
    pub(crate) fn read_leased<R>(
        &self,
        key: &[u8],
        found: impl FnOnce(EntryRef<'_>, bool) -> R,
    ) -> (Read<R>, u64) {
        match self.read(key, found) {
            Read::Missing if self.origin_of(key).is_none() => {
                (Read::Missing, self.leases.grant(key, self.now_ms()))
            }
            read => (read, 0),
        }
    }

    /// Whether any of `keys` has an origin, so that reading them may wait.
    pub(crate) fn any_origin<K: AsRef<[u8]>>(&self, keys: &[K]) -> bool {
        self.origins
            .as_ref()
            .is_some_and(|o| keys.iter().any(|key| o.find(key.as_ref()).is_some()))
    }

    /// Reads every key, starting each key's origin load before awaiting any. Refused when the
    /// values together would pass `max_request` (a small request can ask for an enormous
    /// reply: the same big key many times).
    pub(crate) async fn read_all<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
    ) -> Result<Vec<Option<Served>>, OpError> {
        let steps: Vec<_> = keys
            .iter()
            .map(|key| match self.origin_of(key.as_ref()) {
                Some((origins, origin)) => Err((origins, origins.begin(origin, key.as_ref()))),
                None => Ok(self.store.get_with(key.as_ref(), served)),
            })
            .collect();
        let (mut values, mut bytes) = (Vec::with_capacity(keys.len()), 0usize);
        for step in steps {
            let value = match step {
                Ok(value) => value,
                Err((origins, step)) => origins.finish(step).await?,
            };
            bytes += value.as_ref().map_or(0, |v| v.value.len());
            if bytes > self.max_request {
                return Err(OpError::reply_too_large());
            }
            values.push(value);
        }
        Ok(values)
    }
}

/// Reads of what the cache holds, without asking any origin (`STRLEN`, `GETRANGE`, `EXISTS`,
/// `TTL`, `SCAN`, …).
impl Node {
    /// Calls `read` with the live entry under `key`, if there is one.
    pub(crate) fn inspect<R>(&self, key: &[u8], read: impl FnOnce(EntryRef<'_>) -> R) -> Option<R> {
        self.store.get_with(key, read)
    }

    /// The expiry of `key` in Unix ms: `None` without the key, `Some(None)` without an expiry.
    /// Reads without copying the value or counting an access.
    pub(crate) fn expires_at(&self, key: &[u8]) -> Result<Option<Option<u64>>, OpError> {
        let keep = |entry: Option<EntryRef<'_>>| (Update::Keep, entry.map(|e| e.expires_at));
        Ok(self.store.update(key, keep)?)
    }

    /// Whether `key` holds a live entry.
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        self.store.contains(key)
    }

    /// The remaining time to live of `key`.
    pub(crate) fn ttl(&self, key: &[u8]) -> TtlState {
        self.store.ttl(key)
    }
}
