//! `larder bench burst`: what a burst of concurrent misses of one key costs.
//!
//! Every client is connected first (RESP: one TCP connection each; gRPC: calls spread over a
//! few HTTP/2 connections) and parked on one [`Barrier`]; the barrier lets them all go at
//! once, and each sends `GET key` and reads its one reply. The node's `/metrics` is read
//! before and after, so the summary says how many origin loads the burst caused and how many
//! reads waited on a load another read had started.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use larder_proto::grpc::cache::v1::{GetRequest, cache_client::CacheClient};
use larder_proto::resp::{Limits, encode_request, frame_len, parse_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use crate::cli::{BurstArgs, Protocol};

/// `EMFILE`, the errno of "Too many open files" (Linux, macOS, the BSDs).
const EMFILE: i32 = 24;
/// Counter of origin loads, one series per origin and result.
const LOADS: &str = "larder_origin_loads_total";
/// Counter of reads that joined a load already in flight, one series per origin.
const COALESCED: &str = "larder_origin_coalesced_total";

/// Runs one burst as `args` says.
///
/// # Errors
/// When the node or its admin port cannot be reached, or the clients cannot all connect.
pub(crate) async fn run(args: &BurstArgs) -> anyhow::Result<Outcome> {
    ensure!(args.clients > 0, "--clients must be at least 1");
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

/// Prints the outcome; failure if any reply was an error.
pub(crate) fn finish(outcome: &Outcome) -> std::process::ExitCode {
    println!("{outcome}");
    if outcome.tally.errors > 0 {
        eprintln!(
            "larder: {} of {} replies were errors",
            outcome.tally.errors, outcome.clients
        );
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
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
async fn release(mut parked: Parked) -> anyhow::Result<Tally> {
    parked.barrier.wait().await;
    let mut tally = Tally::default();
    while let Some(answer) = parked.clients.join_next().await {
        tally.add(answer.context("a client task failed")?);
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
) -> anyhow::Result<Parked> {
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
async fn resp_connect(
    addr: &str,
    password: Option<&str>,
    opened: usize,
) -> anyhow::Result<TcpStream> {
    let mut stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(err) if err.raw_os_error() == Some(EMFILE) => bail!(
            "out of file descriptors after {opened} connections: raise the limit with \
             `ulimit -n` (the clients need one each, the node one per client too)"
        ),
        Err(err) => {
            return Err(err).with_context(|| {
                format!("cannot connect to {addr} after {opened} connections: is a cache node listening there?")
            });
        }
    };
    stream.set_nodelay(true)?;
    if let Some(password) = password {
        let mut auth = Vec::new();
        encode_request(&mut auth, &[b"AUTH", password.as_bytes()]);
        let reply = resp_get(&mut stream, &auth).await.context("AUTH")?;
        if let Reply::Error(why) = classify(&reply) {
            bail!("AUTH refused: {why}");
        }
    }
    Ok(stream)
}

/// Sends `request` and reads one whole reply.
async fn resp_get(stream: &mut TcpStream, request: &[u8]) -> anyhow::Result<Vec<u8>> {
    stream.write_all(request).await.context("sending")?;
    let mut reply = Vec::with_capacity(128);
    loop {
        if let Some(len) = frame_len(&reply, &Limits::default())? {
            reply.truncate(len);
            return Ok(reply);
        }
        let read = stream.read_buf(&mut reply).await.context("reading")?;
        ensure!(read > 0, "the server closed the connection");
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
) -> anyhow::Result<Parked> {
    let channels = grpc_connect(addr, args.clients.div_ceil(per_connection)).await?;
    let bearer = token
        .map(|token| MetadataValue::try_from(format!("Bearer {token}")))
        .transpose()
        .context("--token must be printable ASCII")?;
    let key = Bytes::copy_from_slice(args.key.as_bytes());
    let mut parked = Parked::new(args.clients);
    for number in 0..args.clients {
        let mut client = CacheClient::new(channels[number / per_connection].clone());
        let mut request = tonic::Request::new(GetRequest {
            key: key.clone(),
            lease: false,
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

/// Opens `count` HTTP/2 connections to `addr` (`host:port` or a URL).
async fn grpc_connect(addr: &str, count: usize) -> anyhow::Result<Vec<Channel>> {
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let endpoint = Endpoint::from_shared(uri)
        .with_context(|| format!("{addr:?} is neither host:port nor a URL"))?
        .tcp_nodelay(true);
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        let channel = endpoint.connect().await.with_context(|| {
            format!("cannot connect to {addr}: is a cache node listening there?")
        })?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Times one client's exchange from the moment it was released.
async fn answer<R>(timeout: Duration, exchange: impl Future<Output = anyhow::Result<R>>) -> Answer
where
    R: Into<Reply>,
{
    let sent = Instant::now();
    let reply = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(reply)) => reply.into(),
        Ok(Err(err)) => Reply::Error(format!("{err:#}")),
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

/// The origin counters of a node at one moment, summed over origins (and results).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OriginCounters {
    loads: u64,
    coalesced: u64,
}

impl OriginCounters {
    /// Reads the counters from Prometheus text; a node without origins has none, so zero.
    fn parse(text: &str) -> Self {
        Self {
            loads: sum_series(text, LOADS),
            coalesced: sum_series(text, COALESCED),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            loads: self.loads.saturating_sub(before.loads),
            coalesced: self.coalesced.saturating_sub(before.coalesced),
        }
    }
}

/// The sum of every series of metric `name` in Prometheus text.
fn sum_series(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = match rest.as_bytes().first()? {
                b'{' => &rest[rest.rfind('}')? + 1..],
                b' ' | b'\t' => rest,
                _ => return None,
            };
            let value: f64 = value.split_whitespace().next()?.parse().ok()?;
            Some(value as u64)
        })
        .sum()
}

/// Reads the node's origin counters from `http://{admin}/metrics`.
async fn scrape(admin: &str, token: Option<&str>) -> anyhow::Result<OriginCounters> {
    let url = format!("http://{admin}/metrics");
    let mut stream = TcpStream::connect(admin)
        .await
        .with_context(|| format!("cannot connect to {admin} for {url}: is it the admin port?"))?;
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let request =
        format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .with_context(|| format!("reading {url}"))?;
    let body =
        http_body(&String::from_utf8_lossy(&response)).with_context(|| format!("GET {url}"))?;
    Ok(OriginCounters::parse(&body))
}

/// The body of a whole HTTP/1.1 response with status 200.
fn http_body(response: &str) -> anyhow::Result<String> {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("not an HTTP response")?;
    let status = head.lines().next().unwrap_or_default();
    ensure!(status.split(' ').nth(1) == Some("200"), "{status}");
    Ok(body.to_owned())
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

    const METRICS: &str = "\
# HELP larder_origin_loads_total Origin loads by origin and result.
# TYPE larder_origin_loads_total counter
larder_origin_loads_total{origin=\"docs\",result=\"found\"} 3
larder_origin_loads_total{origin=\"docs\",result=\"not_found\"} 1
larder_origin_loads_total{origin=\"docs\",result=\"error\"} 0
larder_origin_loads_total{origin=\"users\",result=\"found\"} 2
larder_origin_loads_total_extra 100
larder_origin_coalesced_total{origin=\"docs\"} 9999
larder_origin_coalesced_total{origin=\"users\"} 1e3
larder_origin_load_duration_seconds_count{origin=\"docs\"} 4
";

    #[test]
    fn counters_sum_every_series_of_their_metric_only() {
        let counters = OriginCounters::parse(METRICS);
        assert_eq!(
            counters,
            OriginCounters {
                loads: 6,
                coalesced: 10_999
            }
        );
        assert_eq!(
            OriginCounters::parse("# no origins\n"),
            OriginCounters::default()
        );
        assert_eq!(sum_series("larder_origin_loads_total 7\n", LOADS), 7);
        let before = OriginCounters {
            loads: 5,
            coalesced: 10_000,
        };
        assert_eq!(
            counters.since(before),
            OriginCounters {
                loads: 1,
                coalesced: 999
            }
        );
    }

    #[test]
    fn only_a_200_response_gives_a_body() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc";
        assert_eq!(http_body(ok).unwrap(), "abc");
        let denied = "HTTP/1.1 401 Unauthorized\r\n\r\nbearer token required\n";
        assert!(http_body(denied).unwrap_err().to_string().contains("401"));
        assert!(http_body("garbage").is_err());
    }

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
    use crate::loadgen::runtime;

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
