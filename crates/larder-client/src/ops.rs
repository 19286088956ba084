//! The operations: single-key calls go to the key's node; multi-key calls are split by node,
//! sent concurrently (one call per node) and put back together in request order.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use larder_proto::grpc::cache::v1 as pb;
use tonic::Code;

use std::sync::Arc;

use crate::client::Node;
use crate::{Client, Error};

/// A cached value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The stored bytes.
    pub value: Bytes,
    /// The version the value carries (assigned by the node, or the writer's).
    pub version: u64,
    /// Remaining time to live in milliseconds; 0 when the value does not expire.
    pub ttl_ms: u64,
    /// Served from a read-through origin's stale window.
    pub stale: bool,
}

/// How [`Client::set`] writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetOpts {
    /// Time to live, rounded up to whole milliseconds; `None` for no expiry.
    pub ttl: Option<Duration>,
    /// Write only if the key is absent or holds an older version than this one, which the
    /// value then takes (must be non-zero); `None` writes always, with a version the node
    /// assigns.
    pub if_newer_version: Option<u64>,
    /// A fill under the lease [`Client::get_or_lease`] gave: written only if no change of the
    /// key reached the node since (then the answer is `(false, _)`).
    pub lease: Option<u64>,
    /// Answer only once every tracking subscriber the write invalidated has applied the
    /// invalidation, or its lease has lapsed (see [`Client::track`]).
    pub await_invalidation: bool,
}

/// What [`Client::get_or_lease`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The live value.
    Hit(Entry),
    /// A miss, with a fill lease when the node gave one: load the value elsewhere and write it
    /// with [`SetOpts::lease`]. `None`: another caller holds the lease; serve without filling.
    Miss(Option<u64>),
}

impl Client {
    /// The live value under `key`, if any (a node with a read-through origin loads it on a
    /// miss).
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] when the key's node cannot answer within the deadline,
    /// [`Error::Rejected`] when it refuses the call.
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<Entry>, Error> {
        let key = key.into();
        let node = self.owner(&key);
        let request = pb::GetRequest {
            key,
            lease: false,
            track: 0,
        };
        let reply = self
            .call(
                "Get",
                node,
                request,
                |mut c, r| async move { c.get(r).await },
            )
            .await?;
        Ok(reply.entry.map(entry))
    }

    /// The live value under `key`, or on a miss a lease to fill it with (see [`Lookup`]), so
    /// that a value loaded from elsewhere never replaces a change made meanwhile.
    ///
    /// # Errors
    ///
    /// As [`Client::get`].
    pub async fn get_or_lease(&self, key: impl Into<Bytes>) -> Result<Lookup, Error> {
        let (lookup, _) = self.lease_get(key.into(), 0).await?;
        Ok(lookup)
    }

    /// Like [`Client::get_or_lease`], but the read is tracked when tracking is on
    /// ([`Client::track`]); the bool says whether the node recorded it (keep a copy only then).
    ///
    /// # Errors
    ///
    /// As [`Client::get`].
    pub async fn get_or_lease_tracked(
        &self,
        key: impl Into<Bytes>,
    ) -> Result<(Lookup, bool), Error> {
        self.lease_get(key.into(), self.subscriber()).await
    }

    /// A `Get` with a fill lease, tracked for subscriber `track` (0: untracked); the lookup
    /// and whether the node recorded the read.
    async fn lease_get(&self, key: Bytes, track: u64) -> Result<(Lookup, bool), Error> {
        let node = self.owner(&key);
        let request = pb::GetRequest {
            key,
            lease: true,
            track,
        };
        let reply = self
            .call(
                "Get",
                node,
                request,
                |mut c, r| async move { c.get(r).await },
            )
            .await?;
        let tracked = reply.tracked;
        Ok((lookup(reply), tracked))
    }

    /// Sets the time to live of `key` (`None`: no expiry); answers whether it held a live
    /// value.
    ///
    /// # Errors
    ///
    /// As [`Client::get`].
    pub async fn expire(
        &self,
        key: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<bool, Error> {
        let key = key.into();
        let node = self.owner(&key);
        let request = pb::ExpireRequest {
            key,
            ttl_ms: ttl.map_or(0, ttl_ms),
        };
        let reply = self
            .call("Expire", node, request, |mut c, r| async move {
                c.expire(r).await
            })
            .await?;
        Ok(reply.found)
    }

    /// The live values under `keys`, in the same order: one `GetMany` per node involved, sent
    /// concurrently.
    ///
    /// # Errors
    ///
    /// As [`Client::get`]; the first node to fail fails the whole call.
    pub async fn get_many(&self, keys: &[Bytes]) -> Result<Vec<Option<Entry>>, Error> {
        let split = self.split(keys);
        let replies = try_join_all(split.batches.into_iter().map(|(node, keys)| {
            let request = pb::GetManyRequest { keys };
            self.call("GetMany", node, request, |mut c, r| async move {
                c.get_many(r).await
            })
        }))
        .await?;
        let mut results: Vec<_> = replies.into_iter().map(|r| r.results.into_iter()).collect();
        let mut entries = Vec::with_capacity(keys.len());
        for &batch in &split.batch_of_key {
            let result = results[batch].next().ok_or_else(short_reply)?;
            entries.push(result.entry.map(entry));
        }
        Ok(entries)
    }

    /// Writes `value` under `key`; answers whether it was written and the version the key holds
    /// afterwards (the newer one when `if_newer_version` lost).
    ///
    /// # Errors
    ///
    /// As [`Client::get`]; [`Error::Rejected`] with `INVALID_ARGUMENT` for
    /// `if_newer_version: Some(0)`.
    pub async fn set(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        opts: SetOpts,
    ) -> Result<(bool, u64), Error> {
        let key = key.into();
        let node = self.owner(&key);
        let (mode, version) = match opts.if_newer_version {
            Some(version) => (pb::SetMode::IfNewerVersion, version),
            None => (pb::SetMode::Always, 0),
        };
        let request = pb::SetRequest {
            key,
            value: value.into(),
            mode: mode as i32,
            version,
            ttl_ms: opts.ttl.map_or(0, ttl_ms),
            keep_ttl: false,
            lease: opts.lease.unwrap_or(0),
            await_invalidation: opts.await_invalidation,
        };
        let reply = self
            .call(
                "Set",
                node,
                request,
                |mut c, r| async move { c.set(r).await },
            )
            .await?;
        Ok((reply.stored, reply.version))
    }

    /// Removes `keys`; answers how many held a live value.
    ///
    /// # Errors
    ///
    /// As [`Client::get_many`]; nodes that answered before one failed have removed their keys.
    pub async fn delete(&self, keys: &[Bytes]) -> Result<u64, Error> {
        let split = self.split(keys);
        let replies = try_join_all(split.batches.into_iter().map(|(node, keys)| {
            let request = pb::DeleteRequest {
                keys,
                await_invalidation: false,
            };
            self.call("Delete", node, request, |mut c, r| async move {
                c.delete(r).await
            })
        }))
        .await?;
        Ok(replies.iter().map(|r| r.deleted).sum())
    }

    /// Drops `keys` from the cache and any loads of them in flight, so the next read of a key
    /// with a read-through origin loads it again; answers how many the cache held.
    ///
    /// # Errors
    ///
    /// As [`Client::delete`].
    pub async fn invalidate(&self, keys: &[Bytes]) -> Result<u64, Error> {
        self.invalidate_keys(keys, false).await
    }

    /// Invalidates and waits for the subscribers (`await_invalidation`): answers once every
    /// tracking subscriber the change invalidated has applied it, or its lease has lapsed.
    ///
    /// # Errors
    ///
    /// As [`Client::delete`].
    pub async fn invalidate_awaiting(&self, keys: &[Bytes]) -> Result<u64, Error> {
        self.invalidate_keys(keys, true).await
    }

    async fn invalidate_keys(
        &self,
        keys: &[Bytes],
        await_invalidation: bool,
    ) -> Result<u64, Error> {
        let split = self.split(keys);
        let replies = try_join_all(split.batches.into_iter().map(|(node, keys)| {
            let request = pb::InvalidateRequest {
                keys,
                await_invalidation,
            };
            self.call("Invalidate", node, request, |mut c, r| async move {
                c.invalidate(r).await
            })
        }))
        .await?;
        Ok(replies.iter().map(|r| r.invalidated).sum())
    }

    /// Groups `keys` by owning node, keeping their order within each group.
    fn split(&self, keys: &[Bytes]) -> Split {
        let mut batches: Vec<(Arc<Node>, Vec<Bytes>)> = Vec::new();
        let mut batch_of_key = Vec::with_capacity(keys.len());
        for key in keys {
            let node = self.owner(key);
            let batch = match batches.iter().position(|(n, _)| Arc::ptr_eq(n, &node)) {
                Some(batch) => batch,
                None => {
                    batches.push((node, Vec::new()));
                    batches.len() - 1
                }
            };
            batches[batch].1.push(key.clone());
            batch_of_key.push(batch);
        }
        Split {
            batches,
            batch_of_key,
        }
    }
}

/// Keys grouped by node.
struct Split {
    /// (node, its keys in request order), in order of each node's first key.
    batches: Vec<(Arc<Node>, Vec<Bytes>)>,
    /// For each requested key, the index of its batch.
    batch_of_key: Vec<usize>,
}

fn lookup(reply: pb::GetResponse) -> Lookup {
    match reply.entry {
        Some(e) => Lookup::Hit(entry(e)),
        None => Lookup::Miss((reply.lease != 0).then_some(reply.lease)),
    }
}

fn entry(e: pb::Entry) -> Entry {
    Entry {
        value: e.value,
        version: e.version,
        ttl_ms: e.ttl_ms,
        stale: e.stale,
    }
}

/// A TTL in whole milliseconds, rounded up and at least 1 (0 would mean "no expiry").
fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_nanos().div_ceil(1_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

fn short_reply() -> Error {
    Error::Rejected {
        code: Code::Internal,
        message: "node answered fewer results than keys".to_owned(),
    }
}

/// Runs the futures concurrently; their outputs in order, or the first error (dropping the
/// rest). A single future is awaited in place, without boxing.
async fn try_join_all<T, F>(futures: impl ExactSizeIterator<Item = F>) -> Result<Vec<T>, Error>
where
    F: Future<Output = Result<T, Error>>,
{
    if futures.len() <= 1 {
        let mut outputs = Vec::with_capacity(1);
        for future in futures {
            outputs.push(future.await?);
        }
        return Ok(outputs);
    }
    let mut pending: Vec<Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<T>> = pending.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut waiting = false;
        for (future, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if output.is_some() {
                continue;
            }
            match future.as_mut().poll(cx) {
                Poll::Ready(Ok(value)) => *output = Some(value),
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => waiting = true,
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    })
    .await?;
    Ok(outputs.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_whole_milliseconds() {
        assert_eq!(ttl_ms(Duration::ZERO), 1);
        assert_eq!(ttl_ms(Duration::from_micros(1)), 1);
        assert_eq!(ttl_ms(Duration::from_micros(1_001)), 2);
        assert_eq!(ttl_ms(Duration::from_secs(60)), 60_000);
        assert_eq!(ttl_ms(Duration::MAX), u64::MAX);
    }

    // Paused time: the delays order the futures without taking any real time.
    #[tokio::test(start_paused = true)]
    async fn join_keeps_order_and_stops_at_the_first_error() {
        let delays = [30u64, 10, 20];
        let futures = delays.iter().map(|&ms| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, Error>(ms)
        });
        assert_eq!(try_join_all(futures).await.unwrap(), delays);
        let failing = [1u64, 0].into_iter().map(|ms| async move {
            if ms == 0 {
                return Err(Error::Config(crate::ConfigError::NoNodes));
            }
            std::future::pending::<()>().await;
            Ok(ms)
        });
        assert!(matches!(try_join_all(failing).await, Err(Error::Config(_))));
    }
}
