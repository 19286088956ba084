//! `Watch`: a subscriber's stream of invalidations from the tracking table
//! ([`crate::node::tracking`]). One task per stream reads the client's messages (hello, acks,
//! pings) and sends the events: `ready`, then invalidations (every key notice ready at once
//! in one event), flushes and pongs, in the order the table queued them. Events are numbered
//! per stream; an ack of seq `n` tells the table every notice up to `n` was applied.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use larder_proto::grpc::cache::v1 as pb;
use pb::watch_event::Event;
use pb::watch_request::Msg;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::node::Node;
use crate::node::tracking::{Inbox, Mode, Notice, Subscriber};

/// Notices one subscriber may have queued before it is cut off.
const QUEUE: usize = 65_536;
/// Keys in one `Invalidated` event at most.
const KEYS_PER_EVENT: usize = 1_024;

/// The events of one `Watch` stream.
pub(super) type Events = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

/// Starts serving a `Watch` stream once its first message, the hello, has come.
pub(super) async fn start(
    node: Arc<Node>,
    mut incoming: Streaming<pb::WatchRequest>,
) -> Result<Events, Status> {
    let hello = match incoming.message().await? {
        Some(pb::WatchRequest {
            msg: Some(Msg::Hello(hello)),
        }) => hello,
        _ => return Err(super::invalid("the first Watch message must be a hello")),
    };
    if hello.subscriber == 0 {
        return Err(super::invalid("a Watch subscriber id must not be 0"));
    }
    if !hello.broadcast && !hello.prefixes.is_empty() {
        return Err(super::invalid("prefixes need broadcast"));
    }
    let mode = Mode {
        broadcast: hello.broadcast,
        prefixes: hello.prefixes,
        ..Mode::default()
    };
    let (inbox, notices) = Inbox::new(QUEUE);
    let subscriber = node
        .tracking
        .subscribe_named(hello.subscriber, mode, inbox.clone());
    let (events, stream) = mpsc::channel(16);
    let mut watch = Watch {
        node,
        subscriber,
        name: hello.subscriber,
        inbox,
        events,
        seq: 0,
        sent: 0,
        unacked: VecDeque::new(),
    };
    tokio::spawn(async move {
        let why = watch.run(incoming, notices).await;
        tracing::debug!(subscriber = watch.name, why, "watch stream ended");
        watch
            .node
            .tracking
            .unsubscribe_named(watch.name, &watch.subscriber);
        let _ = watch.events.try_send(Err(Status::unavailable(why)));
    });
    Ok(Box::pin(ReceiverStream::new(stream)))
}

/// One open stream.
struct Watch {
    node: Arc<Node>,
    subscriber: Arc<Subscriber>,
    name: u64,
    inbox: Inbox,
    events: mpsc::Sender<Result<pb::WatchEvent, Status>>,
    /// The last event's seq.
    seq: u64,
    /// Invalidation notices sent so far.
    sent: u64,
    /// (seq, notices sent up to it) of the events not yet acked.
    unacked: VecDeque<(u64, u64)>,
}

impl Watch {
    /// Serves the stream until it ends; why it ended.
    async fn run(
        &mut self,
        mut incoming: Streaming<pb::WatchRequest>,
        mut notices: mpsc::Receiver<Notice>,
    ) -> &'static str {
        let lease_ms = u64::try_from(self.node.tracking.lease().as_millis()).unwrap_or(u64::MAX);
        if !self.send(Event::Ready(pb::WatchReady { lease_ms })).await {
            return "subscriber gone";
        }
        let cut = self.inbox.cut.clone();
        let closing = self.node.tracking.closing().clone();
        loop {
            tokio::select! {
                () = cut.cancelled() => return "subscriber fell behind or missed an ack deadline",
                () = closing.cancelled() => return "node shutting down",
                message = incoming.message() => match message {
                    Ok(Some(request)) => {
                        if let Err(why) = self.receive(request) {
                            return why;
                        }
                    }
                    Ok(None) | Err(_) => return "subscriber closed the stream",
                },
                notice = notices.recv() => {
                    let Some(notice) = notice else { return "queue closed" };
                    if !self.forward(notice, &mut notices).await {
                        return "subscriber gone";
                    }
                }
            }
        }
    }

    /// Handles one client message.
    fn receive(&mut self, request: pb::WatchRequest) -> Result<(), &'static str> {
        match request.msg {
            Some(Msg::Ack(seq)) => {
                let mut applied = None;
                while let Some(&(at, sent)) = self.unacked.front() {
                    if at > seq {
                        break;
                    }
                    applied = Some(sent);
                    self.unacked.pop_front();
                }
                if let Some(applied) = applied {
                    self.subscriber.applied(applied);
                }
                Ok(())
            }
            Some(Msg::Ping(nonce)) => {
                self.node.tracking.pinged(&self.subscriber);
                self.subscriber.pong(nonce);
                Ok(())
            }
            Some(Msg::Hello(_)) => Err("a second hello on one stream"),
            None => Err("an empty Watch message"),
        }
    }

    /// Sends `first` and every key notice queued right behind it, as events.
    async fn forward(&mut self, first: Notice, notices: &mut mpsc::Receiver<Notice>) -> bool {
        let mut next = Some(first);
        let mut keys = Vec::new();
        while let Some(notice) = next.take() {
            match notice {
                Notice::Key(key, version) => {
                    keys.push(pb::InvalidatedKey { key, version });
                    if keys.len() < KEYS_PER_EVENT {
                        next = notices.try_recv().ok();
                    }
                }
                // Only RESP redirections break this way.
                Notice::RedirectBroken(_) => next = notices.try_recv().ok(),
                Notice::Flush | Notice::Pong(_) => {
                    if !self.invalidated(&mut keys).await {
                        return false;
                    }
                    let event = match notice {
                        Notice::Pong(nonce) => Event::Pong(nonce),
                        _ => {
                            self.sent += 1;
                            Event::Flush(pb::WatchFlush {})
                        }
                    };
                    if !self.send(event).await {
                        return false;
                    }
                    next = notices.try_recv().ok();
                }
            }
        }
        self.invalidated(&mut keys).await
    }

    /// Sends the keys gathered so far, if any, as one event.
    async fn invalidated(&mut self, keys: &mut Vec<pb::InvalidatedKey>) -> bool {
        if keys.is_empty() {
            return true;
        }
        self.sent += keys.len() as u64;
        let keys = std::mem::take(keys);
        self.send(Event::Invalidated(pb::Invalidated { keys }))
            .await
    }

    /// Sends one event, numbered; false when the subscriber is gone or cut off.
    async fn send(&mut self, event: Event) -> bool {
        self.seq += 1;
        if !matches!(event, Event::Pong(_) | Event::Ready(_)) {
            self.unacked.push_back((self.seq, self.sent));
        }
        let event = pb::WatchEvent {
            seq: self.seq,
            at_unix_us: self.node.now_us(),
            event: Some(event),
        };
        tokio::select! {
            sent = self.events.send(Ok(event)) => sent.is_ok(),
            () = self.inbox.cut.cancelled() => false,
        }
    }
}
