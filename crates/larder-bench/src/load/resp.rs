//! `larder bench resp`: GET/SET load over the Redis protocol.
//!
//! Requests come from pre-encoded templates ([`Requests`]); a batch (the pipeline) leaves in
//! one write, and replies are only measured with [`frame_len`], never built, so the steady
//! state allocates nothing.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use larder_proto::resp::{Frame, Limits, encode_request, frame_len, parse_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{Duration, Instant};

use super::cpu::CpuWatch;
use super::inbox::Inbox;
use super::keys::{self, KeySpace, Mix, Rng};
use super::report::{Progress, Recorder, Summary};
use super::resp_wire::Requests;
use super::run;
use super::window::{self, Pacing, Schedule, Window};
use crate::args::RespArgs;
use crate::error::{self, Error, Peer, Result};

/// Keys per `MSET` when prefilling.
const PREFILL_KEYS: u64 = 1000;
/// `MSET`s sent together when prefilling (bounds the buffer for very large key counts).
const PREFILL_PIPELINE: usize = 64;

/// Runs the load described by `args` and returns what was measured.
///
/// # Errors
/// When the options cannot work, the server cannot be reached, `AUTH` or the prefill fails.
pub(crate) async fn bench(args: &RespArgs, progress: Progress) -> Result<Summary> {
    let load = &args.load;
    run::check(load, args.connections, args.pipeline)?;
    let cpu = CpuWatch::new(load.server_pid)?;
    let keys = KeySpace::new(load.keys);
    let value = keys::value(load.value_size);
    let mut streams = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        streams.push(connect(&args.addr, args.password.as_deref()).await?);
    }
    if let (true, Some(first)) = (load.prefill, streams.first_mut()) {
        prefill(first, keys, &value).await?;
    }
    let requests = Requests::new(keys, &value, Mix::new(load.read_ratio))?;
    let spawn = |window, completed: &_| spawn_lanes(args, &requests, streams, window, completed);
    run::measure(load, cpu, progress, "resp", title(args), spawn).await
}

/// Starts one lane per connection, each with its own random stream and, in an open-loop run,
/// its own place in the schedule.
fn spawn_lanes(
    args: &RespArgs,
    requests: &Requests,
    streams: Vec<TcpStream>,
    window: Window,
    completed: &Arc<AtomicU64>,
) -> JoinSet<Recorder> {
    let mut lanes = JoinSet::new();
    for (index, stream) in streams.into_iter().enumerate() {
        let requests = requests.with_rng(Rng::from_clock(index as u64));
        let pacing = args
            .load
            .rate
            .map(|rate| Pacing::new(Schedule::new(window.origin, rate, index, args.connections)));
        let lane = Lane::new(stream, requests, args.pipeline, pacing);
        lanes.spawn(lane.run(window, completed.clone()));
    }
    lanes
}

fn title(args: &RespArgs) -> String {
    format!(
        "resp {}: {} connections × pipeline {}, {}",
        args.addr,
        args.connections,
        args.pipeline,
        run::describe(&args.load)
    )
}

/// Opens one connection and authenticates it when a password is given.
async fn connect(addr: &str, password: Option<&str>) -> Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(Error::connect(addr, Peer::CacheNode))?;
    stream
        .set_nodelay(true)
        .map_err(Error::io("setting TCP_NODELAY"))?;
    if let Some(password) = password {
        let mut request = Vec::new();
        encode_request(&mut request, &[b"AUTH", password.as_bytes()]);
        let replies = exchange(&mut stream, &request, 1)
            .await
            .map_err(Error::during("AUTH"))?;
        refused("AUTH", &replies)?;
    }
    Ok(stream)
}

/// The server's refusal of `request`, if one of `replies` is an error.
fn refused(request: &'static str, replies: &[Frame]) -> Result<()> {
    match replies.iter().find_map(Frame::as_error) {
        Some(why) => Err(Error::Refused {
            request,
            why: String::from_utf8_lossy(why).into_owned(),
        }),
        None => Ok(()),
    }
}

/// Writes every key once with pipelined `MSET`s.
async fn prefill(stream: &mut TcpStream, keys: KeySpace, value: &[u8]) -> Result<()> {
    let mut next = 0;
    let mut request = Vec::new();
    while next < keys.count() {
        request.clear();
        let mut sent = 0;
        while sent < PREFILL_PIPELINE && next < keys.count() {
            let end = (next + PREFILL_KEYS).min(keys.count());
            let names: Vec<Vec<u8>> = (next..end).map(|index| keys.name(index)).collect();
            let mut args: Vec<&[u8]> = vec![b"MSET"];
            for name in &names {
                args.extend([name.as_slice(), value]);
            }
            encode_request(&mut request, &args);
            (next, sent) = (end, sent + 1);
        }
        let replies = exchange(stream, &request, sent).await;
        replies
            .and_then(|replies| refused("MSET", &replies))
            .map_err(Error::during("prefill"))?;
    }
    Ok(())
}

/// Sends `request` and reads `count` whole replies: for setup, where allocating is fine.
async fn exchange(stream: &mut TcpStream, request: &[u8], count: usize) -> Result<Vec<Frame>> {
    stream
        .write_all(request)
        .await
        .map_err(Error::io("sending"))?;
    let (mut buf, mut start, mut frames) = (Vec::new(), 0, Vec::with_capacity(count));
    while frames.len() < count {
        match parse_frame(&buf[start..], &Limits::default())? {
            Some((frame, used)) => {
                frames.push(frame);
                start += used;
            }
            None => {
                let read = stream.read_buf(&mut buf).await;
                if read.map_err(Error::io("reading"))? == 0 {
                    return Err(Error::Closed);
                }
            }
        }
    }
    Ok(frames)
}

/// An open-loop connection's place in its [`Schedule`].
/// One connection's loop.
#[derive(Debug)]
struct Lane {
    stream: TcpStream,
    requests: Requests,
    out: Vec<u8>,
    inbox: Inbox,
    /// Where the latency of each request awaiting its reply counts from, oldest first.
    sent: VecDeque<Instant>,
    depth: usize,
    /// `None`: closed loop.
    pacing: Option<Pacing>,
}

impl Lane {
    fn new(stream: TcpStream, requests: Requests, depth: usize, pacing: Option<Pacing>) -> Self {
        let out = Vec::with_capacity(depth * requests.max_len());
        Self {
            stream,
            requests,
            out,
            inbox: Inbox::new(),
            sent: VecDeque::with_capacity(depth),
            depth,
            pacing,
        }
    }

    /// Drives the connection until the window ends; a lost connection counts its requests in
    /// flight as errors and ends the lane.
    async fn run(mut self, window: Window, completed: Arc<AtomicU64>) -> Recorder {
        let mut recorded = Recorder::new();
        let driven = self.drive(&mut recorded, window, &completed);
        let outcome = tokio::time::timeout_at(window.end, driven).await;
        if let Ok(Err(why)) = outcome {
            let lost = self.sent.len().max(1) as u64;
            recorded.failure(lost, || error::chain(&why));
        }
        recorded
    }

    async fn drive(
        &mut self,
        recorded: &mut Recorder,
        window: Window,
        completed: &AtomicU64,
    ) -> Result<()> {
        let pace = tokio::time::sleep_until(window.end);
        tokio::pin!(pace);
        loop {
            self.send_due(Instant::now()).await?;
            let wake = self.next_due().map(window::wake_at);
            if let Some(at) = wake.filter(|&at| at != pace.deadline()) {
                pace.as_mut().reset(at);
            }
            tokio::select! {
                biased;
                read = self.stream.read(self.inbox.spare()) => {
                    let n = read.map_err(Error::io("reading replies"))?;
                    if n == 0 {
                        return Err(Error::Closed);
                    }
                    self.inbox.filled(n);
                    completed.fetch_add(self.settle(recorded, window)?, Ordering::Relaxed);
                }
                () = &mut pace, if wake.is_some() => {}
            }
        }
    }

    /// When the next request may be sent while waiting for replies (open loop with room).
    fn next_due(&self) -> Option<Instant> {
        let pacing = self.pacing.as_ref()?;
        (self.sent.len() < self.depth).then(|| pacing.due())
    }

    /// Writes, in one batch, every request that is due and fits in the pipeline.
    async fn send_due(&mut self, now: Instant) -> Result<()> {
        self.out.clear();
        match &mut self.pacing {
            None if self.sent.is_empty() => {
                for _ in 0..self.depth {
                    self.requests.push(&mut self.out);
                    self.sent.push_back(now);
                }
            }
            None => {}
            Some(pacing) => {
                while self.sent.len() < self.depth && window::may_leave(pacing.due(), now) {
                    self.sent
                        .push_back(window::counted_from(pacing.take(), now));
                    self.requests.push(&mut self.out);
                }
            }
        }
        if !self.out.is_empty() {
            self.stream
                .write_all(&self.out)
                .await
                .map_err(Error::io("sending requests"))?;
        }
        Ok(())
    }

    /// Matches every complete reply to its request; returns how many there were.
    fn settle(&mut self, recorded: &mut Recorder, window: Window) -> Result<u64> {
        let now = Instant::now();
        let limits = Limits::default();
        let mut done = 0;
        while let Some(len) = frame_len(self.inbox.pending(), &limits)? {
            let sent = self.sent.pop_front();
            let sent = sent.ok_or(Error::Protocol("a reply to no request"))?;
            if window.measures(now) {
                tally(recorded, &self.inbox.pending()[..len], now - sent);
            }
            self.inbox.consume(len);
            done += 1;
        }
        Ok(done)
    }
}

/// Counts one reply: an error, or a success (a null being a miss).
fn tally(recorded: &mut Recorder, reply: &[u8], latency: Duration) {
    match reply.first() {
        Some(b'-' | b'!') => recorded.failure(1, || error_text(reply)),
        _ => {
            recorded.success(latency, 1);
            if reply.starts_with(b"$-1") || reply.starts_with(b"_") {
                recorded.misses += 1;
            }
        }
    }
}

fn error_text(reply: &[u8]) -> String {
    match parse_frame(reply, &Limits::default()) {
        Ok(Some((frame, _))) => String::from_utf8_lossy(frame.as_error().unwrap_or(reply)).into(),
        _ => String::from_utf8_lossy(reply).trim_end().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_tallied_by_kind() {
        let mut recorded = Recorder::new();
        let latency = Duration::from_micros(5);
        for reply in [&b"+OK\r\n"[..], b"$1\r\nv\r\n", b"$-1\r\n", b"_\r\n"] {
            tally(&mut recorded, reply, latency);
        }
        tally(&mut recorded, b"-ERR nope\r\n", latency);
        tally(&mut recorded, b"!3\r\nbad\r\n", latency);
        assert_eq!((recorded.ops, recorded.misses, recorded.errors), (4, 2, 2));
        assert_eq!(recorded.first_error.as_deref(), Some("ERR nope"));
    }
}
