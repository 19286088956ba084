//! Invalidation lag against a running cache node: how long after a write is acknowledged the
//! other subscriber has dropped its copy (negative: dropped before the acknowledgement, as an
//! awaited write guarantees).
//!
//! One client (the reader) tracks `KEYS` keys it has read; another (the writer) overwrites them
//! in turn at `RATE` writes per second, open loop, each write either awaiting the invalidation
//! (`strong`, as a gateway's strong collection writes) or not (`eventual`). The reader's sink
//! notes when each key's invalidation is applied and reads the key again, tracked, so that the
//! next write of it is invalidated too.
//!
//! Usage: `invalidation_lag NODE_GRPC_ADDR [RATE] [SECS] [strong|eventual] [KEYS]`; prints one
//! JSON line: writes acknowledged, lags measured, p50/p99/max lag in microseconds.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use larder_client::{Client, ClientConfig, Invalidations, SetOpts};
use parking_lot::Mutex;

/// When the current write of each key was acknowledged and when its invalidation was applied.
#[derive(Default)]
struct Slot {
    acked: Option<Instant>,
    dropped: Option<Instant>,
}

struct Lags {
    slots: Vec<Mutex<Slot>>,
    /// Drop time minus acknowledgement time, in microseconds.
    lags: Mutex<Vec<i64>>,
    reread: tokio::sync::mpsc::UnboundedSender<usize>,
}

impl Lags {
    fn settle(&self, slot: &mut Slot) {
        if let (Some(acked), Some(dropped)) = (slot.acked, slot.dropped) {
            let lag = if dropped >= acked {
                i64::try_from((dropped - acked).as_micros()).unwrap_or(i64::MAX)
            } else {
                -i64::try_from((acked - dropped).as_micros()).unwrap_or(i64::MAX)
            };
            self.lags.lock().push(lag);
            *slot = Slot::default();
        }
    }
}

struct Sink(Arc<Lags>);

impl Invalidations for Sink {
    fn invalidate(&self, keys: &[(Bytes, u64)], _emitted_at_unix_us: u64) {
        let now = Instant::now();
        for (key, _) in keys {
            let Some(i) = index(key) else { continue };
            let mut slot = self.0.slots[i].lock();
            slot.dropped = Some(now);
            self.0.settle(&mut slot);
            drop(slot);
            let _ = self.0.reread.send(i);
        }
    }

    fn flush(&self) {}
}

fn key(i: usize) -> Bytes {
    Bytes::from(format!("lag/{i}"))
}

fn index(key: &[u8]) -> Option<usize> {
    std::str::from_utf8(key.strip_prefix(b"lag/")?)
        .ok()?
        .parse()
        .ok()
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let node = args.first().expect("the node's gRPC address").clone();
    let rate: u64 = args.get(1).map_or(5000, |s| s.parse().expect("RATE"));
    let secs: u64 = args.get(2).map_or(10, |s| s.parse().expect("SECS"));
    let strong = args.get(3).is_none_or(|m| m == "strong");
    let keys: usize = args.get(4).map_or(1000, |s| s.parse().expect("KEYS"));
    let config = ClientConfig {
        nodes: vec![node],
        deadline: Duration::from_secs(2),
        ..ClientConfig::default()
    };
    let writer = Client::new(config.clone()).expect("writer");
    let reader = Client::new(config).expect("reader");

    let (reread, mut rereads) = tokio::sync::mpsc::unbounded_channel();
    let lags = Arc::new(Lags {
        slots: (0..keys).map(|_| Mutex::new(Slot::default())).collect(),
        lags: Mutex::new(Vec::new()),
        reread,
    });
    let tracking = reader.track(Arc::new(Sink(lags.clone())));
    let started = Instant::now();
    while !tracking.serving() {
        assert!(started.elapsed() < Duration::from_secs(10), "no lease");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for i in 0..keys {
        writer
            .set(key(i), Bytes::from_static(b"v"), SetOpts::default())
            .await
            .expect("seed");
        let (_, tracked) = reader.get_or_lease_tracked(key(i)).await.expect("read");
        assert!(tracked, "the read of {i} was not tracked");
    }
    let tracker = reader.clone();
    tokio::spawn(async move {
        while let Some(i) = rereads.recv().await {
            let reader = tracker.clone();
            tokio::spawn(async move { reader.get_or_lease_tracked(key(i)).await });
        }
    });

    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let total = rate * secs;
    let begin = tokio::time::Instant::now();
    let mut writes = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for n in 0..total {
        tokio::time::sleep_until(begin + interval * u32::try_from(n).unwrap_or(u32::MAX)).await;
        let (writer, lags) = (writer.clone(), lags.clone());
        let i = usize::try_from(n).unwrap_or(0) % keys;
        writes.push(tokio::spawn(async move {
            let opts = SetOpts {
                await_invalidation: strong,
                ..SetOpts::default()
            };
            let value = Bytes::from(n.to_le_bytes().to_vec());
            writer.set(key(i), value, opts).await.is_ok().then(|| {
                let mut slot = lags.slots[i].lock();
                slot.acked = Some(Instant::now());
                lags.settle(&mut slot);
            })
        }));
    }
    let mut acked = 0;
    for w in writes {
        acked += u64::from(w.await.ok().flatten().is_some());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut sorted = lags.lags.lock().clone();
    sorted.sort_unstable();
    println!(
        "{{\"mode\":\"{}\",\"rate\":{rate},\"secs\":{secs},\"keys\":{keys},\"acked\":{acked},\
         \"measured\":{},\"lag_us_p50\":{},\"lag_us_p99\":{},\"lag_us_max\":{}}}",
        if strong { "strong" } else { "eventual" },
        sorted.len(),
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.99),
        sorted.last().copied().unwrap_or(0),
    );
    drop(tracking);
}
