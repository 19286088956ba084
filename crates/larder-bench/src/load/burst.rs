//! `larder bench burst`: what a burst of concurrent misses of one key costs.
//!
//! Every client is connected first (RESP: one TCP connection each; gRPC: calls spread over a
//! few HTTP/2 connections) and parked on one [`Barrier`]; the barrier lets them all go at
//! once, and each sends `GET key` and reads its one reply. The node's `/metrics` is read
//! before and after ([`super::metrics`]), so the summary says how many origin loads the burst
//! caused and how many reads waited on a load another read had started.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use larder_proto::grpc::cache::v1::{GetRequest, cache_client::CacheClient};
use larder_proto::resp::{Limits, encode_request, frame_len, parse_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::grpc;
use super::metrics::{OriginCounters, scrape};
use crate::args::{BurstArgs, Protocol};
use crate::error::{self, Error, Peer, Result, Usage};

/// `EMFILE`, the errno of "Too many open files" (Linux, macOS, the BSDs).
const EMFILE: i32 = 24;
/// Runs one burst as `args` says.
///
/// # Errors
/// When the node or its admin port cannot be reached, or the clients cannot all connect.
pub(crate) async fn run(args: &BurstArgs) -> Result<Outcome> {
    Usage::require(args.clients > 0, "--clients", "at least 1")?;
    let protocol = if args.grpc {
        Protocol::Grpc
    } else {
        args.protocol
    };
    let timeout = Duration::from_secs_f64(args.timeout);
    let token = args.token.as_deref().filter(|t| !t.is_empty());
    let before = scrape(&args.admin, token).await?;
    let tally = match protocol {
        Protocol::Resp => {
            let addr = args.addr.as_deref().unwrap_or("127.0.0.1:6380");
            let password = args.password.as_deref().filter(|p| !p.is_empty());
            let clients = resp_clients(addr, password, &args.key, args.clients, timeout).await?;
            release(clients).await?
        }
        Protocol::Grpc => {
            let addr = args.addr.as_deref().unwrap_or("127.0.0.1:7070");
            let per_connection = args.calls_per_connection.max(1);
            let clients = grpc_clients(addr, token, args, per_connection, timeout).await?;
            release(clients).await?
        }
    };
    let after = scrape(&args.admin, token).await?;
    Ok(Outcome {
        protocol,
        clients: args.clients,
        origin: after.since(before),
        tally,
    })
}

/// Prints the outcome; a burst with error replies fails.
pub(crate) fn finish(outcome: &Outcome) -> Result<()> {
    println!("{outcome}");
    if outcome.tally.errors > 0 {
        return Err(Error::ErrorReplies {
            errors: outcome.tally.errors,
            clients: outcome.clients,
        });
    }
    Ok(())
}

/// Clients parked on their barrier, and the barrier (which counts one more: the releaser).
struct Parked {
    barrier: Arc<Barrier>,
    clients: JoinSet<Answer>,
}

impl Parked {
    fn new(count: usize) -> Self {
        Self {
            barrier: Arc::new(Barrier::new(count + 1)),
            clients: JoinSet::new(),
        }
    }
}

/// Lets every parked client go and gathers their answers.
async fn release(mut parked: Parked) -> Result<Tally> {
    parked.barrier.wait().await;
    let mut tally = Tally::default();
    while let Some(answer) = parked.clients.join_next().await {
        tally.add(answer.map_err(|source| Error::Task {
            task: "a client task",
            source,
        })?);
    }
    Ok(tally)
}

/// Opens `count` RESP connections, each parked until released, then sending `GET key`.
async fn resp_clients(
    addr: &str,
    password: Option<&str>,
    key: &str,
    count: usize,
    timeout: Duration,
) -> Result<Parked> {
    let mut get = Vec::new();
    encode_request(&mut get, &[b"GET", key.as_bytes()]);
    let get: Arc<[u8]> = get.into();
    let mut parked = Parked::new(count);
    for opened in 0..count {
        let stream = resp_connect(addr, password, opened).await?;
        let (get, barrier) = (get.clone(), parked.barrier.clone());
        parked.clients.spawn(async move {
            let mut stream = stream;
            barrier.wait().await;
            answer(timeout, resp_get(&mut stream, &get)).await
        });
    }
    Ok(parked)
}

/// One connection, authenticated when there is a password; `opened` connections are already up.
async fn resp_connect(addr: &str, password: Option<&str>, opened: usize) -> Result<TcpStream> {
    let mut stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(err) if err.raw_os_error() == Some(EMFILE) => {
            return Err(Error::OutOfFiles { opened });
        }
        Err(err) => {
            return Err(Error::Connect {
                addr: addr.to_owned(),
                peer: Peer::CacheNode,
                opened: Some(opened),
                source: Box::new(err),
            });
        }
    };
    stream
        .set_nodelay(true)
        .map_err(Error::io("setting TCP_NODELAY"))?;
    if let Some(password) = password {
        let mut auth = Vec::new();
        encode_request(&mut auth, &[b"AUTH", password.as_bytes()]);
        let reply = resp_get(&mut stream, &auth).await;
        let reply = reply.map_err(Error::during("AUTH"))?;
        if let Reply::Error(why) = classify(&reply) {
            return Err(Error::Refused {
                request: "AUTH",
                why,
            });
        }
    }
    Ok(stream)
}

/// Sends `request` and reads one whole reply.
async fn resp_get(stream: &mut TcpStream, request: &[u8]) -> Result<Vec<u8>> {
    stream
        .write_all(request)
        .await
        .map_err(Error::io("sending"))?;
    let mut reply = Vec::with_capacity(128);
    loop {
        if let Some(len) = frame_len(&reply, &Limits::default())? {
            reply.truncate(len);
            return Ok(reply);
        }
        let read = stream.read_buf(&mut reply).await;
        if read.map_err(Error::io("reading"))? == 0 {
            return Err(Error::Closed);
        }
    }
}

/// Spreads `args.clients` calls over HTTP/2 connections of `per_connection` calls each, each
/// call parked until released.
async fn grpc_clients(
    addr: &str,
    token: Option<&str>,
    args: &BurstArgs,
    per_connection: usize,
    timeout: Duration,
) -> Result<Parked> {
    let channels = grpc::connect(addr, args.clients.div_ceil(per_connection)).await?;
    let bearer = grpc::token(token)?;
    let key = Bytes::copy_from_slice(args.key.as_bytes());
    let mut parked = Parked::new(args.clients);
    for number in 0..args.clients {
        let mut client = CacheClient::new(channels[number / per_connection].clone());
        let mut request = tonic::Request::new(GetRequest {
            key: key.clone(),
            lease: false,
            track: 0,
        });
        if let Some(bearer) = &bearer {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
        }
        let barrier = parked.barrier.clone();
        parked.clients.spawn(async move {
            barrier.wait().await;
            answer(timeout, async move {
                let reply = client.get(request).await;
                Ok(match reply {
                    Ok(reply) if reply.get_ref().entry.is_some() => Reply::Value,
                    Ok(_) => Reply::Nil,
                    Err(status) => {
                        Reply::Error(format!("{:?}: {}", status.code(), status.message()))
                    }
                })
            })
            .await
        });
    }
    Ok(parked)
}

/// Times one client's exchange from the moment it was released.
async fn answer<R>(timeout: Duration, exchange: impl Future<Output = Result<R>>) -> Answer
where
    R: Into<Reply>,
{
    let sent = Instant::now();
    let reply = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(reply)) => reply.into(),
        Ok(Err(err)) => Reply::Error(error::chain(&err)),
        Err(_) => Reply::Error(format!(
            "no reply within {timeout:?} (if the node ran out of file descriptors, raise \
             `ulimit -n` where it runs)"
        )),
    };
    Answer {
        reply,
        sent,
        done: Instant::now(),
    }
}

/// What one reply was.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Value,
    Nil,
    Error(String),
}

impl From<Vec<u8>> for Reply {
    fn from(reply: Vec<u8>) -> Self {
        classify(&reply)
    }
}

/// Sorts a whole RESP reply into value, nil or error.
fn classify(reply: &[u8]) -> Reply {
    match reply.first() {
        Some(b'-' | b'!') => Reply::Error(match parse_frame(reply, &Limits::default()) {
            Ok(Some((frame, _))) => {
                String::from_utf8_lossy(frame.as_error().unwrap_or(reply)).into()
            }
            _ => String::from_utf8_lossy(reply).trim_end().to_owned(),
        }),
        _ if reply.starts_with(b"$-1") || reply.starts_with(b"*-1") || reply.starts_with(b"_") => {
            Reply::Nil
        }
        _ => Reply::Value,
    }
}

/// One client's reply and when it left and came back.
#[derive(Debug)]
struct Answer {
    reply: Reply,
    sent: Instant,
    done: Instant,
}

/// Every client's reply, counted.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    values: u64,
    nils: u64,
    errors: u64,
    first_error: Option<String>,
    /// Each client's time from its send to its reply, sorted once all are in.
    latencies: Vec<Duration>,
    first_sent: Option<Instant>,
    last_done: Option<Instant>,
}

impl Tally {
    fn add(&mut self, answer: Answer) {
        match answer.reply {
            Reply::Value => self.values += 1,
            Reply::Nil => self.nils += 1,
            Reply::Error(why) => {
                self.errors += 1;
                self.first_error.get_or_insert(why);
            }
        }
        self.latencies.push(answer.done - answer.sent);
        self.first_sent = Some(self.first_sent.map_or(answer.sent, |t| t.min(answer.sent)));
        self.last_done = Some(self.last_done.map_or(answer.done, |t| t.max(answer.done)));
    }

    /// From the first send to the last reply.
    fn wall(&self) -> Duration {
        match (self.first_sent, self.last_done) {
            (Some(first), Some(last)) => last - first,
            _ => Duration::ZERO,
        }
    }

    /// The latency at `quantile` (nearest rank), or zero with no replies.
    fn latency(&self, quantile: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let rank = (quantile * sorted.len() as f64).ceil() as usize;
        sorted
            .get(rank.saturating_sub(1).min(sorted.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }
}

/// What one burst cost.
#[derive(Debug)]
pub(crate) struct Outcome {
    protocol: Protocol,
    clients: usize,
    /// The origin counters' growth over the burst.
    origin: OriginCounters,
    tally: Tally,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let t = &self.tally;
        let protocol = match self.protocol {
            Protocol::Resp => "resp",
            Protocol::Grpc => "grpc",
        };
        if let Some(why) = &t.first_error {
            writeln!(f, "  first error   {why}")?;
        }
        write!(
            f,
            "summary protocol={protocol} clients={} loads={} coalesced={} values={} nils={} \
             errors={} wall_ms={:.1} max_ms={:.1} p50_ms={:.1} p99_ms={:.1}",
            self.clients,
            self.origin.loads,
            self.origin.coalesced,
            t.values,
            t.nils,
            t.errors,
            ms(t.wall()),
            ms(t.latency(1.0)),
            ms(t.latency(0.5)),
            ms(t.latency(0.99)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_values_nils_or_errors() {
        assert_eq!(classify(b"$5\r\nhello\r\n"), Reply::Value);
        assert_eq!(classify(b"$-1\r\n"), Reply::Nil);
        assert_eq!(classify(b"_\r\n"), Reply::Nil);
        assert_eq!(
            classify(b"-ERR origin docs: timeout\r\n"),
            Reply::Error("ERR origin docs: timeout".into())
        );
        assert_eq!(classify(b"!3\r\nbad\r\n"), Reply::Error("bad".into()));
    }

    #[test]
    fn the_tally_counts_kinds_and_times() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut tally = Tally::default();
        for (i, reply) in [
            Reply::Value,
            Reply::Nil,
            Reply::Error("x".into()),
            Reply::Value,
        ]
        .into_iter()
        .enumerate()
        {
            let sent = start + ms(i as u64);
            tally.add(Answer {
                reply,
                sent,
                done: sent + ms(10 * (i as u64 + 1)),
            });
        }
        assert_eq!((tally.values, tally.nils, tally.errors), (2, 1, 1));
        assert_eq!(tally.first_error.as_deref(), Some("x"));
        assert_eq!(tally.wall(), ms(43));
        assert_eq!(tally.latency(1.0), ms(40));
        assert_eq!(tally.latency(0.5), ms(20));
        assert_eq!(Tally::default().latency(0.99), Duration::ZERO);
    }
}

/// Bursts against a real cache node started in this process, whose origin is a tiny HTTP
/// server that answers slowly and counts what it is asked.
#[cfg(test)]
mod against_a_node {
    use larder_cache::CacheConfig;
    use larder_cache::config::OriginConfig;
    use larder_cache::testing::TestNode;
    use std::io::{Read, Write};
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::load::run::runtime;

    /// An HTTP origin on its own threads: every `GET` is counted and answered `hello` after
    /// `delay`.
    fn slow_origin(delay: Duration) -> (SocketAddr, Arc<AtomicU64>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let asked = Arc::new(AtomicU64::new(0));
        let counter = asked.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let (Ok(mut stream), counter) = (stream, counter.clone()) else {
                    return;
                };
                std::thread::spawn(move || {
                    let (mut head, mut chunk) = (Vec::new(), [0; 4096]);
                    while let Ok(n @ 1..) = stream.read(&mut chunk) {
                        head.extend_from_slice(&chunk[..n]);
                        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                            head.drain(..end + 4);
                            counter.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(delay);
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
                            let _ = stream.write_all(reply);
                        }
                    }
                });
            }
        });
        (addr, asked)
    }

    /// A cache node with `origins`.
    fn node(origins: Vec<OriginConfig>) -> TestNode {
        TestNode::with(CacheConfig {
            shutdown_grace_ms: 1_000,
            origins,
            ..larder_cache::testing::config()
        })
    }

    /// 200 clients reading `key` at once from `node` over `protocol`.
    fn burst_on(node: &TestNode, protocol: Protocol, key: &str) -> Outcome {
        let addr = match protocol {
            Protocol::Resp => node.resp,
            Protocol::Grpc => node.grpc,
        };
        let args = BurstArgs {
            protocol,
            grpc: false,
            addr: Some(addr.to_string()),
            clients: 200,
            calls_per_connection: 64,
            key: key.into(),
            admin: node.admin.to_string(),
            password: None,
            token: None,
            timeout: 10.0,
        };
        runtime(1).unwrap().block_on(run(&args)).unwrap()
    }

    #[test]
    fn a_burst_of_misses_costs_one_load_per_protocol() {
        let (origin, asked) = slow_origin(Duration::from_millis(300));
        let node = node(vec![OriginConfig {
            name: "docs".into(),
            pattern: "key:{id}".into(),
            kind: "http".into(),
            url: format!("http://{origin}/docs/{{id}}"),
            ..Default::default()
        }]);
        for (protocol, key) in [(Protocol::Resp, "key:a"), (Protocol::Grpc, "key:b")] {
            let before = asked.load(Ordering::SeqCst);
            let outcome = burst_on(&node, protocol, key);
            let t = &outcome.tally;
            assert_eq!((t.values, t.nils, t.errors), (200, 0, 0), "{outcome}");
            assert_eq!(outcome.origin.loads, 1, "{outcome}");
            assert_eq!(asked.load(Ordering::SeqCst) - before, 1, "{outcome}");
            // Reads that arrived while the 300 ms load was in flight joined it (on a busy CI
            // machine not all 199 may be sent in time; the one load above is what matters).
            assert!(outcome.origin.coalesced >= 1, "{outcome}");
            assert!(t.latency(1.0) >= Duration::from_millis(300), "{outcome}");
        }
    }

    #[test]
    fn without_origins_a_burst_reads_nils_and_loads_nothing() {
        let node = node(Vec::new());
        for protocol in [Protocol::Resp, Protocol::Grpc] {
            let outcome = burst_on(&node, protocol, "key:burst");
            let t = &outcome.tally;
            assert_eq!((t.values, t.nils, t.errors), (0, 200, 0), "{outcome}");
            assert_eq!(outcome.origin, OriginCounters::default(), "{outcome}");
            assert!(
                outcome.to_string().contains("clients=200 loads=0"),
                "{outcome}"
            );
        }
    }

    #[test]
    fn a_closed_port_is_reported_as_such() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let args = BurstArgs {
            protocol: Protocol::Resp,
            grpc: false,
            addr: Some(closed.to_string()),
            clients: 1,
            calls_per_connection: 1,
            key: "key:x".into(),
            admin: closed.to_string(),
            password: None,
            token: None,
            timeout: 1.0,
        };
        let err = runtime(1).unwrap().block_on(run(&args)).unwrap_err();
        assert!(format!("{err:#}").contains("admin port"), "{err:#}");
    }
}
