//! `larder bench http`: GET load against any HTTP/1.1 server, for the latency of the gateway and
//! its peers where wrk2 is not at hand.
//!
//! Each connection is a lane with one request in flight (keep-alive, no pipelining). Closed
//! loop, a lane sends its next request as soon as the last one is answered, as wrk does. Open
//! loop (`--rate`), lane `c`'s request `n` is due at a fixed time ([`Schedule`]); a request that
//! falls due while the previous one is still out leaves when that one is answered, and its
//! latency counts from when it was due, so a slow response also charges the requests it held
//! up (the coordinated-omission correction of wrk2).
//!
//! A status other than 2xx or 304, a malformed response and a lost connection each count as a
//! failed request; after a lost connection, or a response that announces the close, the lane
//! connects again for its next request (the time to connect counts as latency).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use larder_proto::http_url::HttpUrl;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{Duration, Instant};

use super::cpu::CpuWatch;
use super::http_request::Requests;
use super::http_response::{Response, response_len};
use super::inbox::Inbox;
use super::report::{Progress, Recorder, Summary};
use super::run;
use super::window::{self, Pacing, Schedule, Window};
use crate::args::{DEFAULT_KEYS, DEFAULT_READ_RATIO, DEFAULT_VALUE_SIZE, HttpArgs, LoadArgs};
use crate::error::{self, Error, Peer, Result, Usage};

/// Pause after a failed reconnect, so that a closed port is not hammered in a closed loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);
/// Bytes of a failed response's body kept for the report.
const BODY_EXCERPT: usize = 200;

/// Runs the load described by `args` and returns what was measured.
///
/// # Errors
/// When the options cannot work or the server cannot be reached.
pub(crate) async fn bench(args: &HttpArgs, progress: Progress) -> Result<Summary> {
    let load = &args.load;
    run::check(load, args.connections, 1)?;
    refuse_cache_options(load)?;
    let target = HttpUrl::parse(&args.url).map_err(|err| Usage::Url {
        url: args.url.clone(),
        problem: err.problem,
    })?;
    let requests = Requests::new(&target, &args.headers, args.paths_from)?;
    let cpu = CpuWatch::new(load.server_pid)?;
    let mut streams = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        streams.push(connect(&target.addr).await?);
    }
    let title = title(args);
    let addr: Arc<str> = target.addr.into();
    let spawn =
        |window, completed: &_| spawn_lanes(args, &addr, &requests, streams, window, completed);
    run::measure(load, cpu, progress, "http", title, spawn).await
}

/// The cache workload options mean nothing here; refuse them rather than ignore them.
fn refuse_cache_options(load: &LoadArgs) -> Result<(), Usage> {
    let defaults = load.keys == DEFAULT_KEYS
        && load.value_size == DEFAULT_VALUE_SIZE
        && load.read_ratio.total_cmp(&DEFAULT_READ_RATIO).is_eq();
    if defaults {
        Ok(())
    } else {
        Err(Usage::NotForHttp)
    }
}

fn title(args: &HttpArgs) -> String {
    let load = &args.load;
    let pacing = match load.rate {
        Some(rate) => format!("open loop at {rate:.0} requests/s"),
        None => "closed loop".to_owned(),
    };
    let paths = match args.paths_from {
        Some(count) => format!(" + id 0…{} in order", count - 1),
        None => String::new(),
    };
    format!(
        "http GET {}{paths}: {} connections, {pacing}, {} s after {} s warmup",
        args.url, args.connections, load.duration, load.warmup
    )
}

async fn connect(addr: &str) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(Error::connect(addr, Peer::HttpServer))?;
    stream
        .set_nodelay(true)
        .map_err(Error::io("setting TCP_NODELAY"))?;
    Ok(stream)
}

/// Starts one lane per connection, each, in an open-loop run, with its place in the schedule.
fn spawn_lanes(
    args: &HttpArgs,
    addr: &Arc<str>,
    requests: &Requests,
    streams: Vec<TcpStream>,
    window: Window,
    completed: &Arc<AtomicU64>,
) -> JoinSet<Recorder> {
    let mut lanes = JoinSet::new();
    for (index, stream) in streams.into_iter().enumerate() {
        let pacing = args
            .load
            .rate
            .map(|rate| Pacing::new(Schedule::new(window.origin, rate, index, args.connections)));
        let lane = Lane {
            addr: addr.clone(),
            stream: Some(stream),
            requests: requests.clone(),
            out: Vec::with_capacity(requests.max_len()),
            inbox: Inbox::new(),
            pacing,
        };
        lanes.spawn(lane.run(window, completed.clone()));
    }
    lanes
}

/// One connection's loop.
#[derive(Debug)]
struct Lane {
    addr: Arc<str>,
    /// `None` after the connection was lost, until the next request reconnects.
    stream: Option<TcpStream>,
    requests: Requests,
    out: Vec<u8>,
    inbox: Inbox,
    /// `None`: closed loop.
    pacing: Option<Pacing>,
}

impl Lane {
    /// Sends requests until the window ends; the one in flight then is not counted.
    async fn run(mut self, window: Window, completed: Arc<AtomicU64>) -> Recorder {
        let mut recorded = Recorder::new();
        let driven = self.drive(&mut recorded, window, &completed);
        let _ = tokio::time::timeout_at(window.end, driven).await;
        recorded
    }

    async fn drive(&mut self, recorded: &mut Recorder, window: Window, completed: &AtomicU64) {
        loop {
            let from = self.next_turn().await;
            let outcome = self.exchange().await;
            let now = Instant::now();
            completed.fetch_add(1, Ordering::Relaxed);
            let measured = window.measures(now);
            match outcome {
                Ok(response) => {
                    if measured {
                        tally(recorded, &response, self.inbox.pending(), now - from);
                    }
                    self.inbox.consume(response.len);
                    if response.close {
                        self.stream = None;
                    }
                }
                Err(why) => {
                    if measured {
                        recorded.failure(1, || error::chain(&why));
                    }
                    self.inbox.consume(self.inbox.pending().len());
                    if self.stream.take().is_none() {
                        tokio::time::sleep(RECONNECT_PAUSE).await;
                    }
                }
            }
        }
    }

    /// Waits until the next request may leave; returns where its latency counts from.
    async fn next_turn(&mut self) -> Instant {
        let Some(pacing) = &mut self.pacing else {
            return Instant::now();
        };
        let due = pacing.due();
        if !window::may_leave(due, Instant::now()) {
            tokio::time::sleep_until(window::wake_at(due)).await;
        }
        pacing.take();
        window::counted_from(due, Instant::now())
    }

    /// Sends one request, connecting first if needed, and reads its whole response.
    async fn exchange(&mut self) -> Result<Response> {
        if !self.inbox.pending().is_empty() {
            return Err(Error::Protocol(
                "the server sent bytes that answer no request",
            ));
        }
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => self.stream.insert(connect(&self.addr).await?),
        };
        self.out.clear();
        self.requests.push(&mut self.out);
        stream
            .write_all(&self.out)
            .await
            .map_err(Error::io("sending the request"))?;
        loop {
            if let Some(response) = response_len(self.inbox.pending())? {
                return Ok(response);
            }
            let n = stream
                .read(self.inbox.spare())
                .await
                .map_err(Error::io("reading the response"))?;
            if n == 0 {
                return Err(Error::Closed);
            }
            self.inbox.filled(n);
        }
    }
}

/// Counts one response: 2xx and 304 succeed, any other status fails.
fn tally(recorded: &mut Recorder, response: &Response, bytes: &[u8], latency: Duration) {
    if (200..300).contains(&response.status) || response.status == 304 {
        recorded.success(latency, 1);
    } else {
        recorded.failure(1, || failure_text(response, bytes));
    }
}

/// The status line and the start of the body of a failed response.
fn failure_text(response: &Response, bytes: &[u8]) -> String {
    let head = &bytes[..response.head_len];
    let status_line = head.split(|&b| b == b'\n').next().unwrap_or(head);
    let body = &bytes[response.head_len..response.len];
    let body = &body[..body.len().min(BODY_EXCERPT)];
    format!(
        "{}: {}",
        String::from_utf8_lossy(status_line).trim(),
        String::from_utf8_lossy(body).trim()
    )
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::sync::mpsc;
    use std::thread::JoinHandle;

    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::load::run::runtime;

    /// How the test server answers every request.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Answer {
        /// 200 with a Content-Length.
        Fixed,
        /// 200, chunked, the head and each chunk written separately.
        Chunked,
        /// 500 with a short body.
        Error,
        /// 200, then the connection closes without warning.
        HangUp,
        /// 200 with `Connection: close`, then the connection closes.
        SaysClose,
    }

    /// A tiny HTTP server on its own runtime thread, stopped when dropped. It records each
    /// request's target, and the header lines of the first request.
    struct Server {
        addr: SocketAddr,
        targets: Arc<Mutex<Vec<String>>>,
        first_head: Arc<Mutex<Vec<String>>>,
        shutdown: CancellationToken,
        thread: Option<JoinHandle<()>>,
    }

    impl Server {
        fn start(answer: Answer) -> Self {
            let (targets, first_head) = (Arc::default(), Arc::default());
            let seen = (Arc::clone(&targets), Arc::clone(&first_head));
            let shutdown = CancellationToken::new();
            let stop = shutdown.clone();
            let (tx, rx) = mpsc::channel();
            let thread = std::thread::spawn(move || {
                let serve = async move {
                    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    tx.send(listener.local_addr().unwrap()).unwrap();
                    loop {
                        let (stream, _) = tokio::select! {
                            accepted = listener.accept() => accepted.unwrap(),
                            () = stop.cancelled() => return,
                        };
                        tokio::spawn(serve(stream, answer, seen.clone()));
                    }
                };
                runtime(1).unwrap().block_on(serve);
            });
            let addr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            Self {
                addr,
                targets,
                first_head,
                shutdown,
                thread: Some(thread),
            }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.shutdown.cancel();
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    type Seen = (Arc<Mutex<Vec<String>>>, Arc<Mutex<Vec<String>>>);

    async fn serve(mut stream: TcpStream, answer: Answer, (targets, first_head): Seen) {
        let (read, mut write) = stream.split();
        let mut read = BufReader::new(read);
        let mut line = String::new();
        loop {
            line.clear();
            if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let target = line.split(' ').nth(1).unwrap_or("").to_owned();
            let mut head = Vec::new();
            loop {
                line.clear();
                if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_owned());
            }
            targets.lock().unwrap().push(target);
            {
                let mut first = first_head.lock().unwrap();
                if first.is_empty() {
                    *first = head;
                }
            }
            if respond(&mut write, answer).await.is_err() || answer == Answer::HangUp {
                return;
            }
            if answer == Answer::SaysClose {
                return;
            }
        }
    }

    async fn respond(
        write: &mut (impl AsyncWriteExt + Unpin),
        answer: Answer,
    ) -> std::io::Result<()> {
        const FIXED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let parts: &[&[u8]] = match answer {
            Answer::Fixed | Answer::HangUp => &[FIXED],
            Answer::Chunked => &[
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"5\r\nhello\r\n",
                b"7;ext=1\r\n, world\r\n",
                b"0\r\n\r\n",
            ],
            Answer::Error => {
                &[b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops\n"]
            }
            Answer::SaysClose => {
                &[b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"]
            }
        };
        for part in parts {
            write.write_all(part).await?;
            write.flush().await?;
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    /// Half a second after a short warmup, CPU measured on this very process.
    fn args(url: String, rate: Option<f64>) -> HttpArgs {
        HttpArgs {
            url,
            connections: 4,
            paths_from: None,
            headers: Vec::new(),
            load: LoadArgs {
                keys: DEFAULT_KEYS,
                value_size: DEFAULT_VALUE_SIZE,
                read_ratio: DEFAULT_READ_RATIO,
                duration: 0.5,
                warmup: 0.2,
                rate,
                prefill: true,
                threads: 1,
                server_pid: Some(std::process::id()),
            },
        }
    }

    fn run(args: &HttpArgs) -> Result<Summary> {
        runtime(1)?.block_on(bench(args, Progress::Quiet))
    }

    fn assert_clean(summary: &Summary) {
        super::super::report::assert_sound(summary);
        assert_eq!(summary.requests, summary.ops, "{summary}");
    }

    #[test]
    fn closed_and_open_loop() {
        let server = Server::start(Answer::Fixed);
        let closed = run(&args(server.url("/doc"), None)).unwrap();
        assert_clean(&closed);

        let open = run(&args(server.url("/doc"), Some(2000.0))).unwrap();
        assert_clean(&open);
        // 2000 requests/s for half a second, give or take the window's edges.
        assert!((800..=1200).contains(&open.ops), "{open}");
        assert!(server.targets.lock().unwrap().iter().all(|t| t == "/doc"));
    }

    #[test]
    fn error_statuses_are_failures() {
        let server = Server::start(Answer::Error);
        let closed = run(&args(server.url("/"), None)).unwrap();
        assert_eq!(closed.ops, 0, "{closed}");
        assert!(closed.errors > 0, "{closed}");
        let why = closed.first_error.as_deref().unwrap_or("");
        assert_eq!(why, "HTTP/1.1 500 Internal Server Error: oops");

        let open = run(&args(server.url("/"), Some(2000.0))).unwrap();
        assert_eq!(open.ops, 0, "{open}");
        assert!((800..=1200).contains(&open.errors), "{open}");
    }

    #[test]
    fn chunked_responses_distinct_paths_and_headers() {
        let server = Server::start(Answer::Chunked);
        let mut args = args(server.url("/v1/things/"), None);
        args.paths_from = Some(1_000_000);
        args.headers = vec!["Authorization: Bearer t0ken".into()];
        let summary = run(&args).unwrap();
        assert_clean(&summary);

        let targets = server.targets.lock().unwrap().clone();
        let mut ids: Vec<u64> = targets
            .iter()
            .map(|t| t.strip_prefix("/v1/things/").unwrap().parse().unwrap())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), targets.len(), "every request names its own id");
        assert!(ids.len() as u64 >= summary.ops, "{summary}");
        // Ids are handed out in order: the ones not seen were in flight when the run ended.
        let last = *ids.last().unwrap();
        assert!(last < (ids.len() + args.connections) as u64, "{last}");
        let head = server.first_head.lock().unwrap().clone();
        let host = format!("Host: {}", server.addr);
        assert_eq!(head, ["Authorization: Bearer t0ken", host.as_str()]);
    }

    #[test]
    fn ids_wrap_at_the_count() {
        let server = Server::start(Answer::Fixed);
        let mut args = args(server.url("/k"), None);
        args.paths_from = Some(3);
        assert_clean(&run(&args).unwrap());
        let targets = server.targets.lock().unwrap().clone();
        for id in ["/k0", "/k1", "/k2"] {
            assert!(targets.iter().any(|t| t == id), "{id}");
        }
        assert!(
            targets
                .iter()
                .all(|t| ["/k0", "/k1", "/k2"].contains(&t.as_str()))
        );
    }

    #[test]
    fn lanes_reconnect_after_a_close() {
        let server = Server::start(Answer::HangUp);
        let summary = run(&args(server.url("/"), None)).unwrap();
        assert!(summary.ops > 0, "reconnected: {summary}");
        assert!(
            summary.errors > 0,
            "the unannounced close fails a request: {summary}"
        );
        let why = summary.first_error.as_deref().unwrap_or("");
        // The close shows as an end of stream or, if the request crossed it, as a reset.
        assert!(
            why.contains("closed the connection") || why.contains("reset"),
            "{why}"
        );

        let server = Server::start(Answer::SaysClose);
        assert_clean(&run(&args(server.url("/"), Some(1000.0))).unwrap());
    }

    #[test]
    fn bad_options_and_no_server_say_so() {
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let err = run(&args(format!("http://{closed}/"), None)).unwrap_err();
        assert!(format!("{err:#}").contains("cannot connect"), "{err:#}");

        let err = run(&args("https://example.com/".into(), None)).unwrap_err();
        assert!(err.to_string().contains("only http://"), "{err}");
        let mut keys = args(format!("http://{closed}/"), None);
        keys.load.keys = 10;
        let err = run(&keys).unwrap_err();
        assert!(err.to_string().contains("--keys"), "{err}");
        let mut header = args(format!("http://{closed}/"), None);
        header.headers = vec!["no colon".into()];
        let err = run(&header).unwrap_err();
        assert!(err.to_string().contains("Name: value"), "{err}");
    }
}
