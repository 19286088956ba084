//! A subscriber of the tracking table: where its notices go ([`Inbox`]), how it is told
//! ([`Mode`]), what it has applied, and the [`Barrier`] an awaited write waits on.

use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a subscriber is told, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// The key changed, was deleted, evicted or expired; its new version (0: gone).
    Key(Bytes, u64),
    /// Every key was dropped.
    Flush,
    /// The answer to a gRPC ping, queued behind every notice sent before the ping arrived.
    Pong(u64),
    /// A RESP tracking connection's redirection target (this client id) is gone: a notice
    /// for it could not be delivered.
    RedirectBroken(u64),
}

/// Where a subscriber's notices go: a bounded queue, and the token that disconnects whoever
/// reads it when it overflows.
#[derive(Debug, Clone)]
pub(crate) struct Inbox {
    tx: mpsc::Sender<Notice>,
    /// Cancelled when the queue overflowed or a subscriber missed its ack deadline.
    pub(crate) cut: CancellationToken,
}

impl Inbox {
    /// A queue of `capacity` notices and its receiving end.
    pub(crate) fn new(capacity: usize) -> (Self, mpsc::Receiver<Notice>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let cut = CancellationToken::new();
        (Self { tx, cut }, rx)
    }

    /// Queues `notice`; a full queue cuts its reader off.
    pub(crate) fn send(&self, notice: Notice) -> Sent {
        match self.tx.try_send(notice) {
            Ok(()) => Sent::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.cut.cancel();
                Sent::Overflowed
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Sent::Gone,
        }
    }
}

/// What became of a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// It is in the queue.
    Queued,
    /// The queue was full: its reader is cut off.
    Overflowed,
    /// Its reader is gone.
    Gone,
}

/// How a subscriber is told.
#[derive(Debug, Clone, Default)]
pub(crate) struct Mode {
    /// Told of every change of every key under `prefixes`, not only of keys it read.
    pub(crate) broadcast: bool,
    /// With `broadcast`: the key prefixes (empty: every key).
    pub(crate) prefixes: Vec<Bytes>,
    /// Not told of changes its own connection made (RESP `NOLOOP`): the RESP client id whose
    /// writes are skipped, 0 for none.
    pub(crate) noloop: u64,
    /// A RESP redirection: the tracking connection's own inbox, told when the target
    /// (this client id) is gone, as Redis's `tracking-redir-broken` push.
    pub(crate) redirected_from: Option<(Inbox, u64)>,
}

thread_local! {
    /// The RESP client whose command is changing keys on this thread, for `NOLOOP`.
    static WRITER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Runs `f` as RESP client `id`'s command: a `NOLOOP` subscriber of that client is not told
/// of the changes it makes.
pub(crate) fn as_writer<R>(id: u64, f: impl FnOnce() -> R) -> R {
    /// Puts the previous writer back, even if `f` unwinds.
    struct Restore(u64);
    impl Drop for Restore {
        fn drop(&mut self) {
            WRITER.with(|w| w.set(self.0));
        }
    }
    let _restore = Restore(WRITER.with(|w| w.replace(id)));
    f()
}

/// One subscriber of the table.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pub(super) id: u64,
    pub(super) mode: Mode,
    /// Switched to broadcast of every key because the table was full.
    pub(super) fell_back: AtomicBool,
    pub(super) closed: AtomicBool,
    pub(super) undelivered: AtomicBool,
    pub(super) inbox: Inbox,
    /// gRPC subscribers: how long after a ping they may serve their copies. RESP subscribers
    /// have no lease and no acks, and writes do not wait for them.
    pub(super) lease: Option<Duration>,
    /// Invalidation notices queued so far, and applied so far (acked).
    pub(super) queued: AtomicU64,
    pub(super) applied: AtomicU64,
    pub(super) applied_changed: Notify,
    /// When the latest ping arrived, in nanoseconds since the table's epoch.
    pub(super) last_ping_ns: AtomicU64,
}

impl Subscriber {
    /// Whether it asked to be told of every change (of its prefixes).
    pub(crate) fn chose_broadcast(&self) -> bool {
        self.mode.broadcast
    }

    /// Tells it to drop every copy (its tracking is being turned off or restarted).
    pub(crate) fn flush_now(&self) {
        self.notify(Notice::Flush);
    }

    /// Whether it is told of every change (it asked to, or the table was full).
    pub(crate) fn broadcasting(&self) -> bool {
        self.mode.broadcast || self.fell_back.load(Relaxed)
    }

    /// Whether it is told of changes of `key` without having read it.
    pub(super) fn covers(&self, key: &[u8]) -> bool {
        self.fell_back.load(Relaxed)
            || (self.mode.broadcast
                && (self.mode.prefixes.is_empty()
                    || self.mode.prefixes.iter().any(|p| key.starts_with(p))))
    }

    /// The broadcast prefixes it registered.
    pub(crate) fn prefixes(&self) -> &[Bytes] {
        &self.mode.prefixes
    }

    pub(super) fn notify(&self, notice: Notice) {
        if self.closed.load(Relaxed)
            || (self.mode.noloop != 0 && WRITER.with(std::cell::Cell::get) == self.mode.noloop)
        {
            return;
        }
        // Counted before it is queued, so a barrier that reads the count after this change
        // covers it (see `Tracking::barrier`).
        self.queued.fetch_add(1, SeqCst);
        match self.inbox.send(notice) {
            Sent::Queued => {}
            Sent::Overflowed => self.undelivered.store(true, Relaxed),
            Sent::Gone => {
                self.undelivered.store(true, Relaxed);
                if let Some((home, target)) = &self.mode.redirected_from {
                    home.send(Notice::RedirectBroken(*target));
                }
            }
        }
    }

    /// Whether a notice could not be queued (the queue was full, or its reader is gone:
    /// a RESP redirection's target closed).
    pub(crate) fn undelivered(&self) -> bool {
        self.undelivered.load(Relaxed)
    }

    /// Queues a pong behind every notice queued so far.
    pub(crate) fn pong(&self, nonce: u64) {
        self.inbox.send(Notice::Pong(nonce));
    }

    /// Records that the subscriber applied `count` invalidation notices in all.
    pub(crate) fn applied(&self, count: u64) {
        self.applied.fetch_max(count, SeqCst);
        self.applied_changed.notify_waiters();
    }
}

/// The subscribers an awaited write waits for ([`Tracking::barrier`]).
#[derive(Debug)]
#[must_use = "a barrier does nothing unless waited for"]
pub(crate) struct Barrier {
    pub(super) waits: Vec<(Arc<Subscriber>, u64, Instant)>,
}

impl Barrier {
    /// Waits until every subscriber applied what it was sent, or its deadline passed; one that
    /// missed its deadline is cut off.
    pub(crate) async fn wait(self) {
        for (subscriber, target, deadline) in self.waits {
            loop {
                let changed = subscriber.applied_changed.notified();
                if subscriber.applied.load(SeqCst) >= target {
                    break;
                }
                if tokio::time::timeout_at(deadline, changed).await.is_err() {
                    if subscriber.applied.load(SeqCst) < target {
                        tracing::info!(
                            subscriber = subscriber.id,
                            "subscriber missed its invalidation deadline, disconnected"
                        );
                        subscriber.inbox.cut.cancel();
                    }
                    break;
                }
            }
        }
    }
}
