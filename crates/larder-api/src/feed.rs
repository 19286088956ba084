//! The change feed's hub: one tailer per gateway reads the change log ([`crate::db::Change`])
//! and fans each entry out, rendered once as a Server-Sent Event, to every subscriber through
//! a bounded broadcast. The tailer is woken at once by this gateway's committed writes and reads
//! the log every `changes_poll_ms` for the writes of other gateways on the same database; it
//! runs only while someone listens. A subscriber that falls behind the broadcast reads what it
//! missed from the log ([`stream`]), so nothing is dropped. See docs/ARCHITECTURE.md, "Change
//! feed".

pub(crate) mod stream;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::db::{Change, Db, Page};

/// Events the broadcast holds for a subscriber that has not taken them yet; one that falls
/// further behind reads the log instead.
const BROADCAST_EVENTS: usize = 4096;
/// Entries read from the log at once.
pub(crate) const PAGE: i64 = 1000;
/// The last path segment of the feed, `/v1/{collection}/changes`: no document can have it as
/// its id.
pub(crate) const SEGMENT: &str = "changes";

/// Refuses [`SEGMENT`] as the id of a new document: `GET /v1/{collection}/changes` is the
/// feed, so such a document could not be read. (Generated ids are UUIDs and never clash.)
///
/// # Errors
/// 400 pointing at `/data/id`.
pub(crate) fn reserved(id: Option<&str>) -> Result<(), crate::problem::ApiError> {
    if id == Some(SEGMENT) {
        return Err(crate::problem::ApiError::invalid_at(
            "/data/id",
            "the id \"changes\" is reserved: /v1/{collection}/changes is the collection's \
             change feed",
        ));
    }
    Ok(())
}

/// One entry of the log, ready to send.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) seq: i64,
    pub(crate) collection: String,
    /// The whole event, `id:` to the blank line.
    pub(crate) frame: Bytes,
}

impl Event {
    /// `change` as a Server-Sent Event: its position as `id`, its operation as `event`, and a
    /// line of JSON with the document's type, id and version and the time of the write.
    pub(crate) fn of(change: &Change) -> Self {
        let data = serde_json::json!({
            "type": change.collection,
            "id": change.id,
            "version": change.version,
            "time": crate::time::rfc3339(change.at),
        });
        let frame = format!(
            "id: {}\nevent: {}\ndata: {data}\n\n",
            change.seq,
            change.op.as_str()
        );
        Self {
            seq: change.seq,
            collection: change.collection.clone(),
            frame: Bytes::from(frame),
        }
    }
}

/// The feed of one gateway.
#[derive(Debug)]
pub(crate) struct Feed {
    db: Db,
    events: broadcast::Sender<Arc<Event>>,
    /// Woken by the database after each committed write.
    changed: Arc<Notify>,
    /// Wakes a tailer that paused for want of subscribers.
    subscribed: Notify,
    /// Cancelled when the gateway shuts down: the tailer and every stream end.
    stop: CancellationToken,
    tailing: AtomicBool,
    poll: Duration,
}

impl Feed {
    pub(crate) fn new(db: Db, poll_ms: u64) -> Arc<Self> {
        Arc::new(Self {
            changed: db.changed(),
            db,
            events: broadcast::channel(BROADCAST_EVENTS).0,
            subscribed: Notify::new(),
            stop: CancellationToken::new(),
            tailing: AtomicBool::new(false),
            poll: Duration::from_millis(poll_ms.max(1)),
        })
    }

    /// A new subscription to the live events, starting the tailer if it is not running.
    pub(crate) fn subscribe(self: &Arc<Self>) -> broadcast::Receiver<Arc<Event>> {
        let receiver = self.events.subscribe();
        if !self.tailing.swap(true, Ordering::AcqRel) {
            tokio::spawn(self.clone().tail());
        }
        self.subscribed.notify_one();
        receiver
    }

    /// Ends the tailer and every stream when `shutdown` is cancelled.
    pub(crate) async fn stop_on(self: Arc<Self>, shutdown: CancellationToken) {
        shutdown.cancelled().await;
        self.stop.cancel();
    }

    /// Cancelled when the feed stops.
    pub(crate) fn stopped(&self) -> &CancellationToken {
        &self.stop
    }

    /// The database the log is in.
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Reads the log and broadcasts what is new until the feed stops.
    async fn tail(self: Arc<Self>) {
        let mut last = None;
        loop {
            if self.events.receiver_count() == 0 {
                // Nobody listens: wait for a subscriber, then start from the log's end (a
                // subscriber reads what came before from the log itself).
                last = None;
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    () = self.subscribed.notified() => {}
                }
            }
            let position = match last {
                Some(seq) => seq,
                None => match self.db.change_head().await {
                    Ok(head) => head,
                    Err(err) => {
                        tracing::warn!(%err, "change feed: cannot read the log's end");
                        self.pause().await;
                        continue;
                    }
                },
            };
            last = Some(self.publish(position).await);
            if self.stop.is_cancelled() {
                return;
            }
            self.pause().await;
        }
    }

    /// Waits for a write of this gateway, or for the poll interval.
    async fn pause(&self) {
        tokio::select! {
            () = self.stop.cancelled() => {}
            () = self.changed.notified() => {}
            () = tokio::time::sleep(self.poll) => {}
        }
    }

    /// Broadcasts every entry after `after`; the last one broadcast.
    async fn publish(&self, mut after: i64) -> i64 {
        loop {
            match self.db.changes_after(after, PAGE, None).await {
                Ok(Page::Next(changes)) => {
                    let full = changes.len() == usize::try_from(PAGE).unwrap_or(usize::MAX);
                    for change in &changes {
                        after = change.seq;
                        // No receiver is not an error: the next subscriber reads the log.
                        let _ = self.events.send(Arc::new(Event::of(change)));
                    }
                    if !full {
                        return after;
                    }
                }
                // Pruned under the tailer (it paused for longer than the retention): start
                // again at the end; subscribers see the gap and end their streams.
                Ok(Page::Gone) => return self.db.change_head().await.unwrap_or(after),
                Err(err) => {
                    tracing::warn!(%err, "change feed: reading the log failed");
                    return after;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Op;

    #[test]
    fn an_event_is_one_sse_frame_with_a_line_of_json() {
        let change = Change {
            seq: 42,
            collection: "products".into(),
            id: "desk-lamp".into(),
            op: Op::Delete,
            version: 3,
            at: 1_700_000_000_123,
        };
        let event = Event::of(&change);
        assert_eq!(event.seq, 42);
        assert_eq!(
            std::str::from_utf8(&event.frame).unwrap_or_default(),
            "id: 42\nevent: delete\ndata: {\"id\":\"desk-lamp\",\"time\":\
             \"2023-11-14T22:13:20.123Z\",\"type\":\"products\",\"version\":3}\n\n"
        );
    }
}
