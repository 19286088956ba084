//! What every change of a node's keys emits: a [`Mutation`] record to the node's
//! [`MutationSink`], if one is attached, and an invalidation to the subscribers of the
//! tracking table that read the key. Replication consumes these records; with no sink
//! attached and no subscriber, recording costs a test of `Option::is_none` and one relaxed
//! atomic load.

use std::fmt::Debug;
use std::sync::Arc;

use larder_store::Store;

use super::tracking::Tracking;

/// What a write did to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MutationKind {
    /// A value was stored (any set mode, a counter, a read-modify-write command, a load from
    /// the origin, a write-through).
    Set,
    /// The key was deleted by a client.
    Delete,
    /// The key's expiry changed (`expires_at` is the new one; `None`: it no longer expires).
    Expire,
    /// The key was dropped so that the next read loads it from its origin.
    Invalidate,
    /// Every key was dropped (`FLUSHALL`); the record's key is empty.
    Flush,
}

/// One change of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mutation<'a> {
    /// The key.
    pub key: &'a [u8],
    /// What happened to it.
    pub kind: MutationKind,
    /// The entry's version after the change (0 when no entry is left).
    pub version: u64,
    /// The entry's expiry after the change, in Unix milliseconds.
    pub expires_at: Option<u64>,
}

/// Where a node sends its mutation records. Called on the writer's thread, after the change
/// and outside any store lock: keep it quick (copy and hand off).
pub trait MutationSink: Send + Sync + Debug + 'static {
    /// Takes one record.
    fn record(&self, mutation: &Mutation<'_>);
}

/// Sends records to the node's sink, if it has one, and invalidations to the tracking table;
/// cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    sink: Option<Arc<dyn MutationSink>>,
    tracking: Arc<Tracking>,
}

impl Recorder {
    pub(crate) fn new(sink: Option<Arc<dyn MutationSink>>, tracking: Arc<Tracking>) -> Self {
        Self { sink, tracking }
    }

    /// Records one change.
    pub(crate) fn record(
        &self,
        key: &[u8],
        kind: MutationKind,
        version: u64,
        expires_at: Option<u64>,
    ) {
        if self.tracking.active() {
            if kind == MutationKind::Flush {
                self.tracking.flushed();
            } else {
                self.tracking.changed(key, version);
            }
        }
        if let Some(sink) = &self.sink {
            sink.record(&Mutation {
                key,
                kind,
                version,
                expires_at,
            });
        }
    }

    /// Records a change whose version and expiry the operation did not return: they are read
    /// back from `store`, and only when a sink is attached.
    pub(crate) fn record_current(&self, store: &Store, key: &[u8], kind: MutationKind) {
        if self.sink.is_some() || self.tracking.active() {
            let (version, expires_at) = store
                .peek_with(key, |e| (e.version, e.expires_at))
                .unwrap_or((0, None));
            self.record(key, kind, version, expires_at);
        }
    }
}
