//! Load for the change feed (`bench/feed.sh` runs it against a `larder api`): holds
//! SUBSCRIBERS streams of `GET /v1/{collection}/changes`, then creates documents through the
//! gateway at a fixed RATE (open loop: each write is sent when it is due, on one of CONNECTIONS
//! keep-alive connections), and measures for every event at every stream the time from the
//! write's acknowledgement (its 201 read by the writer) to the event's arrival. An event that
//! arrives before its write is acknowledged counts as 0 (`early=` says how many).
//!
//! Usage: `feed_load URL COLLECTION RATE SECS SUBSCRIBERS CONNECTIONS`, URL as
//! `http://127.0.0.1:8080`. Prints one `summary key=value …` line on stdout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What every task shares: the start, and each write's acknowledgement time.
struct Run {
    start: Instant,
    /// Nanoseconds from `start` to the 201 of write `n`, plus one (0: not acknowledged yet).
    acked: Vec<AtomicU64>,
    next: AtomicUsize,
    failed: AtomicU64,
}

impl Run {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, collection, rate, secs, subscribers, connections] = &args[..] else {
        panic!("usage: feed_load URL COLLECTION RATE SECS SUBSCRIBERS CONNECTIONS");
    };
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let rate: f64 = rate.parse().unwrap();
    let secs: f64 = secs.parse().unwrap();
    let subscribers: usize = subscribers.parse().unwrap();
    let connections: usize = connections.parse().unwrap();
    let writes = (rate * secs) as usize;
    let run = Arc::new(Run {
        start: Instant::now(),
        acked: (0..writes).map(|_| AtomicU64::new(0)).collect(),
        next: AtomicUsize::new(0),
        failed: AtomicU64::new(0),
    });

    let mut streams = Vec::new();
    for _ in 0..subscribers {
        let body = open_feed(&addr, collection).await;
        streams.push(tokio::spawn(follow(body, run.clone(), writes)));
    }
    eprintln!("{subscribers} streams open; writing {writes} documents at {rate}/s");
    let begin = run.now();
    let mut writers = Vec::new();
    for _ in 0..connections {
        let (addr, collection, run) = (addr.clone(), collection.clone(), run.clone());
        writers.push(tokio::spawn(write(addr, collection, run, rate, begin)));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let written = run.now();
    let mut latencies: Vec<u64> = Vec::new();
    let (mut delivered, mut early, mut last_arrival) = (0u64, 0u64, 0u64);
    for stream in streams {
        let seen = stream.await.unwrap();
        delivered += seen.latencies.len() as u64;
        early += seen.early;
        last_arrival = last_arrival.max(seen.last_arrival);
        latencies.extend(seen.latencies);
    }
    latencies.sort_unstable();
    let pick = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
        latencies.get(i).map_or(0.0, |ns| *ns as f64 / 1e6)
    };
    let failed = run.failed.load(Ordering::Relaxed);
    let acked = writes as u64 - failed;
    let expected = acked * subscribers as u64;
    let write_secs = (written - begin) as f64 / 1e9;
    let deliver_secs = (last_arrival.max(written) - begin) as f64 / 1e9;
    println!(
        "summary writes={writes} acked={acked} failed={failed} write_rate={:.0} \
         subscribers={subscribers} delivered={delivered} expected={expected} \
         delivered_rate={:.0} p50_ms={:.2} p99_ms={:.2} p999_ms={:.2} max_ms={:.2} early={early}",
        acked as f64 / write_secs,
        delivered as f64 / deliver_secs,
        pick(0.5),
        pick(0.99),
        pick(0.999),
        pick(1.0),
    );
}

/// Opens one feed stream; its body once the head has arrived.
async fn open_feed(addr: &str, collection: &str) -> hyper::body::Incoming {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::get(format!("/v1/{collection}/changes"))
        .header("host", addr)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200, "the feed answers");
    response.into_body()
}

/// Creates documents `w{n}` as they fall due, on one connection.
async fn write(addr: String, collection: String, run: Arc<Run>, rate: f64, begin: u64) {
    let stream = TcpStream::connect(&addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    loop {
        let n = run.next.fetch_add(1, Ordering::Relaxed);
        if n >= run.acked.len() {
            return;
        }
        let due = begin + (n as f64 * 1e9 / rate) as u64;
        let now = run.now();
        if due > now {
            tokio::time::sleep(Duration::from_nanos(due - now)).await;
        }
        let body =
            format!(r#"{{"data":{{"type":"{collection}","id":"w{n}","attributes":{{"n":{n}}}}}}}"#);
        let request = Request::post(format!("/v1/{collection}"))
            .header("host", &addr)
            .header("content-type", "application/vnd.api+json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let ok = response.status() == 201;
        let _ = response.into_body().collect().await;
        if ok {
            run.acked[n].store(run.now() + 1, Ordering::Release);
        } else {
            run.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What one stream saw.
struct Seen {
    latencies: Vec<u64>,
    early: u64,
    last_arrival: u64,
}

/// Reads a stream until it has seen the last write, or has been idle for 10 s.
async fn follow(mut body: hyper::body::Incoming, run: Arc<Run>, writes: usize) -> Seen {
    let mut seen = Seen {
        latencies: Vec::with_capacity(writes),
        early: 0,
        last_arrival: 0,
    };
    let mut carry = String::new();
    let mut done = vec![false; writes];
    let mut count = 0;
    while count < writes {
        let frame = match tokio::time::timeout(Duration::from_secs(10), body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            _ => break,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let now = run.now();
        carry.push_str(std::str::from_utf8(&data).unwrap());
        let Some(end) = carry.rfind("\n\n") else {
            continue;
        };
        for event in carry[..end].split("\n\n") {
            let Some(n) = written_id(event) else { continue };
            if n >= writes || std::mem::replace(&mut done[n], true) {
                continue;
            }
            count += 1;
            seen.last_arrival = now;
            match run.acked[n].load(Ordering::Acquire) {
                0 => {
                    seen.early += 1;
                    seen.latencies.push(0);
                }
                at => seen.latencies.push(now.saturating_sub(at - 1)),
            }
        }
        carry.drain(..end + 2);
    }
    seen
}

/// `n` of the document `w{n}` an event names.
fn written_id(event: &str) -> Option<usize> {
    let rest = &event[event.find("\"id\":\"w")? + 7..];
    rest[..rest.find('"')?].parse().ok()
}
