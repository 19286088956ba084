//! gRPC `Watch` over a real socket: tracked reads, invalidations with versions, writes that
//! await invalidation, subscribers that stop answering, and the full table's broadcast.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use larder_cache::CacheConfig;
use larder_proto::grpc::cache::v1 as pb;
use pb::cache_client::CacheClient;
use pb::watch_event::Event;
use pb::watch_request::Msg;
use support::{TestNode, config};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

async fn connect(node: &TestNode) -> CacheClient<Channel> {
    CacheClient::connect(format!("http://{}", node.grpc))
        .await
        .unwrap()
}

/// One open Watch stream, driven by hand.
struct Watcher {
    requests: mpsc::Sender<pb::WatchRequest>,
    events: Streaming<pb::WatchEvent>,
}

impl Watcher {
    async fn open(node: &TestNode, hello: pb::WatchHello) -> Self {
        let (requests, outgoing) = mpsc::channel(16);
        requests
            .send(pb::WatchRequest {
                msg: Some(Msg::Hello(hello)),
            })
            .await
            .unwrap();
        let mut events = connect(node)
            .await
            .watch(ReceiverStream::new(outgoing))
            .await
            .unwrap()
            .into_inner();
        let ready = events.message().await.unwrap().unwrap();
        assert_eq!(ready.seq, 1);
        assert!(matches!(ready.event, Some(Event::Ready(_))), "{ready:?}");
        Self { requests, events }
    }

    async fn subscriber(node: &TestNode, id: u64) -> Self {
        let hello = pb::WatchHello {
            subscriber: id,
            ..pb::WatchHello::default()
        };
        Self::open(node, hello).await
    }

    async fn send(&self, msg: Msg) {
        self.requests
            .send(pb::WatchRequest { msg: Some(msg) })
            .await
            .unwrap();
    }

    async fn next(&mut self) -> pb::WatchEvent {
        timeout(Duration::from_secs(5), self.events.message())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .expect("the stream is open")
    }

    /// The keys (and versions) of the next event, which must be an invalidation.
    async fn invalidated(&mut self) -> (u64, Vec<(Bytes, u64)>) {
        let event = self.next().await;
        match event.event {
            Some(Event::Invalidated(i)) => (
                event.seq,
                i.keys.into_iter().map(|k| (k.key, k.version)).collect(),
            ),
            other => panic!("expected an invalidation, got {other:?}"),
        }
    }

    /// Pings and asserts the pong is the very next event: nothing was queued before it.
    async fn quiet(&mut self, nonce: u64) {
        self.send(Msg::Ping(nonce)).await;
        let event = self.next().await;
        assert_eq!(event.event, Some(Event::Pong(nonce)), "{event:?}");
    }
}

fn get(key: &str, track: u64) -> pb::GetRequest {
    pb::GetRequest {
        key: Bytes::from(key.to_owned()),
        track,
        ..pb::GetRequest::default()
    }
}

fn set(key: &str, value: &str, await_invalidation: bool) -> pb::SetRequest {
    pb::SetRequest {
        key: Bytes::from(key.to_owned()),
        value: Bytes::from(value.to_owned()),
        await_invalidation,
        ..pb::SetRequest::default()
    }
}

fn with_lease(lease_ms: u64) -> CacheConfig {
    CacheConfig {
        tracking_lease_ms: lease_ms,
        ..config()
    }
}

#[tokio::test]
async fn a_tracked_read_is_invalidated_with_the_new_version_once() {
    let node = TestNode::start();
    let mut c = connect(&node).await;
    c.set(set("k", "v1", false)).await.unwrap();
    let mut watcher = Watcher::subscriber(&node, 7).await;

    let read = c.get(get("k", 7)).await.unwrap().into_inner();
    assert!(read.tracked);
    assert_eq!(&read.entry.unwrap().value[..], b"v1");
    // No stream for subscriber 8, and an untracked read: neither is recorded.
    assert!(!c.get(get("k", 8)).await.unwrap().into_inner().tracked);
    assert!(!c.get(get("k", 0)).await.unwrap().into_inner().tracked);
    // A miss is tracked too: the key's arrival is a change.
    assert!(c.get(get("absent", 7)).await.unwrap().into_inner().tracked);

    let written = c.set(set("k", "v2", false)).await.unwrap().into_inner();
    let (_, keys) = watcher.invalidated().await;
    assert_eq!(keys, vec![(Bytes::from("k"), written.version)]);

    // The key left the table: a second change is not told until it is read again.
    c.set(set("k", "v3", false)).await.unwrap();
    watcher.quiet(1).await;
    assert!(c.get(get("k", 7)).await.unwrap().into_inner().tracked);
    c.delete(pb::DeleteRequest {
        keys: vec![Bytes::from("k")],
        await_invalidation: false,
    })
    .await
    .unwrap();
    let (_, keys) = watcher.invalidated().await;
    assert_eq!(keys, vec![(Bytes::from("k"), 0)]);

    c.set(set("absent", "here", false)).await.unwrap();
    let (_, keys) = watcher.invalidated().await;
    assert_eq!(keys[0].0, Bytes::from("absent"));
}

#[tokio::test]
async fn an_awaited_write_answers_only_after_the_ack() {
    let node = TestNode::with(with_lease(10_000));
    let mut c = connect(&node).await;
    let mut watcher = Watcher::subscriber(&node, 1).await;
    assert!(c.get(get("k", 1)).await.unwrap().into_inner().tracked);

    let mut writer = c.clone();
    let write = tokio::spawn(async move { writer.set(set("k", "v", true)).await });
    let (seq, keys) = watcher.invalidated().await;
    assert_eq!(keys[0].0, Bytes::from("k"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!write.is_finished(), "the write answered before the ack");
    // Pings alone do not release it.
    watcher.send(Msg::Ping(5)).await;
    assert_eq!(watcher.next().await.event, Some(Event::Pong(5)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!write.is_finished(), "the write answered before the ack");

    watcher.send(Msg::Ack(seq)).await;
    let written = timeout(Duration::from_secs(2), write)
        .await
        .expect("the write answers after the ack")
        .unwrap()
        .unwrap();
    assert!(written.into_inner().stored);

    // A write that nobody tracked does not wait, awaited or not.
    let started = Instant::now();
    c.set(set("other", "v", true)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_silent_subscriber_delays_an_awaited_write_by_its_lease_and_is_dropped() {
    let lease = Duration::from_millis(800);
    let node = TestNode::with(with_lease(800));
    let mut c = connect(&node).await;
    let mut watcher = Watcher::subscriber(&node, 3).await;
    // A ping now: the lease the subscriber holds ends 800 ms from when it sent it.
    let pinged = Instant::now();
    watcher.send(Msg::Ping(1)).await;
    assert_eq!(watcher.next().await.event, Some(Event::Pong(1)));
    assert!(c.get(get("k", 3)).await.unwrap().into_inner().tracked);

    // From here the subscriber neither reads nor acks nor pings.
    let started = Instant::now();
    c.invalidate(pb::InvalidateRequest {
        keys: vec![Bytes::from("k")],
        await_invalidation: true,
    })
    .await
    .unwrap();
    let waited = started.elapsed();
    assert!(
        pinged.elapsed() >= lease,
        "answered before the lease lapsed"
    );
    assert!(waited < lease * 2, "waited {waited:?}");

    // It was disconnected: after the invalidation it was sent, the stream ends.
    let (_, keys) = watcher.invalidated().await;
    assert_eq!(keys[0].0, Bytes::from("k"));
    let end = timeout(Duration::from_secs(5), watcher.events.message())
        .await
        .unwrap();
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
    // Its id no longer tracks reads.
    assert!(!c.get(get("k", 3)).await.unwrap().into_inner().tracked);
}

#[tokio::test]
async fn a_full_table_turns_the_reader_into_a_broadcast_subscriber() {
    let node = TestNode::with(CacheConfig {
        tracking_max_keys: 2,
        ..config()
    });
    let mut c = connect(&node).await;
    let mut watcher = Watcher::subscriber(&node, 9).await;
    for key in ["a", "b", "c"] {
        assert!(c.get(get(key, 9)).await.unwrap().into_inner().tracked);
    }
    // "c" did not fit, so every change is told now, of keys never read too.
    c.set(set("c", "1", false)).await.unwrap();
    assert_eq!(watcher.invalidated().await.1[0].0, Bytes::from("c"));
    c.set(set("never-read", "1", false)).await.unwrap();
    assert_eq!(
        watcher.invalidated().await.1[0].0,
        Bytes::from("never-read")
    );
    c.set(set("a", "1", false)).await.unwrap();
    let (_, keys) = watcher.invalidated().await;
    assert_eq!(keys.len(), 1, "told once, not once per way: {keys:?}");
    assert_eq!(keys[0].0, Bytes::from("a"));
}

#[tokio::test]
async fn broadcast_prefixes_flushes_and_a_replaced_stream() {
    let node = TestNode::start();
    let mut c = connect(&node).await;
    let hello = pb::WatchHello {
        subscriber: 4,
        broadcast: true,
        prefixes: vec![Bytes::from("user:")],
    };
    let mut watcher = Watcher::open(&node, hello.clone()).await;
    c.set(set("order:1", "x", false)).await.unwrap();
    c.set(set("user:1", "x", false)).await.unwrap();
    assert_eq!(watcher.invalidated().await.1[0].0, Bytes::from("user:1"));
    // A read outside the prefixes is not tracked.
    assert!(!c.get(get("order:1", 4)).await.unwrap().into_inner().tracked);
    assert!(c.get(get("user:2", 4)).await.unwrap().into_inner().tracked);

    let mut plain = Watcher::subscriber(&node, 5).await;
    let mut resp = redis::Client::open(format!("redis://{}", node.resp))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut resp).await.unwrap();
    assert_eq!(
        watcher.next().await.event,
        Some(Event::Flush(pb::WatchFlush {}))
    );
    assert_eq!(
        plain.next().await.event,
        Some(Event::Flush(pb::WatchFlush {}))
    );

    // A second stream with the same id replaces the first, which ends.
    let _again = Watcher::open(&node, hello).await;
    let end = timeout(Duration::from_secs(5), watcher.events.message())
        .await
        .unwrap();
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
}

#[tokio::test]
async fn a_stream_must_start_with_a_hello() {
    let node = TestNode::start();
    let (requests, outgoing) = mpsc::channel(1);
    requests
        .send(pb::WatchRequest {
            msg: Some(Msg::Ping(1)),
        })
        .await
        .unwrap();
    let refused = connect(&node)
        .await
        .watch(ReceiverStream::new(outgoing))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let zero = Watcher::open_raw(&node, 0).await.unwrap_err();
    assert_eq!(zero.code(), tonic::Code::InvalidArgument);
}

impl Watcher {
    async fn open_raw(node: &TestNode, id: u64) -> Result<(), tonic::Status> {
        let (requests, outgoing) = mpsc::channel(1);
        requests
            .send(pb::WatchRequest {
                msg: Some(Msg::Hello(pb::WatchHello {
                    subscriber: id,
                    ..pb::WatchHello::default()
                })),
            })
            .await
            .unwrap();
        connect(node)
            .await
            .watch(ReceiverStream::new(outgoing))
            .await
            .map(|_| ())
    }
}

#[tokio::test]
async fn expiry_and_eviction_invalidate_tracked_keys() {
    let node = TestNode::with(CacheConfig {
        reclaim_interval_ms: 10,
        max_memory: "1mb".into(),
        shards: 1,
        policy: "lru".into(),
        ..config()
    });
    let mut c = connect(&node).await;
    let mut watcher = Watcher::subscriber(&node, 2).await;
    let short = pb::SetRequest {
        ttl_ms: 50,
        ..set("short", "v", false)
    };
    c.set(short).await.unwrap();
    assert!(c.get(get("short", 2)).await.unwrap().into_inner().tracked);
    // The expiry sweep removes it: told, with nothing left.
    let (_, keys) = watcher.invalidated().await;
    assert_eq!(keys, vec![(Bytes::from("short"), 0)]);

    c.set(set("first", "v", false)).await.unwrap();
    assert!(c.get(get("first", 2)).await.unwrap().into_inner().tracked);
    let big = "x".repeat(64 << 10);
    for i in 0..40 {
        c.set(set(&format!("filler{i}"), &big, false))
            .await
            .unwrap();
    }
    let (_, keys) = watcher.invalidated().await;
    assert_eq!(keys, vec![(Bytes::from("first"), 0)]);
}
