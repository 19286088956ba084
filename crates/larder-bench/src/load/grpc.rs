//! `larder bench grpc`: Get, GetMany and Set load over gRPC.
//!
//! Each connection is one HTTP/2 channel shared by `--concurrency` call slots. A slot is a task
//! that sends its next call as soon as its last one is answered (closed loop) or when the
//! connection's next scheduled time comes: the slots of a connection draw tickets from one
//! counter, so together they follow the connection's [`Schedule`] with up to `--concurrency`
//! calls in flight. Keys are slices of one shared buffer and the value is one shared `Bytes`,
//! so building a request copies no key or value bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use larder_proto::grpc::cache::v1::{
    GetManyRequest, GetRequest, SetManyRequest, SetRequest, cache_client::CacheClient,
    set_many_result::Result as OneResult,
};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use super::cpu::CpuWatch;
use super::keys::{self, KeySpace, KeyTable, Mix, Rng};
use super::report::{Progress, Recorder, Summary};
use super::run;
use super::window::{self, Schedule, Window};
use crate::args::GrpcArgs;
use crate::error::{Error, Peer, Result, Usage};

/// Keys per `SetMany` when prefilling.
const PREFILL_KEYS: u64 = 1000;
/// Largest reply accepted: room for big `GetMany` batches of big values.
const MAX_REPLY: usize = 256 << 20;

/// Runs the load described by `args` and returns what was measured.
///
/// # Errors
/// When the options cannot work, the server cannot be reached or the prefill fails.
pub(crate) async fn bench(args: &GrpcArgs, progress: Progress) -> Result<Summary> {
    let load = &args.load;
    run::check(load, args.connections, args.concurrency)?;
    Usage::require(args.batch > 0, "--batch", "at least 1")?;
    let cpu = CpuWatch::new(&load.server_pid)?;
    let channels = connect(&args.addr, args.connections).await?;
    let keys = KeySpace::new(load.keys).with_prefix(load.key_prefix.as_bytes());
    let mut first = Slot {
        client: client(channels[0].clone()),
        table: keys.table(),
        keys,
        value: Bytes::from(keys::value(load.value_size)),
        mix: Mix::new(load.read_ratio),
        batch: args.batch,
        token: token(args.token.as_deref())?,
        rng: Rng::new(0),
        pacing: None,
    };
    if load.prefill {
        first.prefill().await.map_err(Error::during("prefill"))?;
    }
    let spawn = |window, completed: &_| spawn_slots(args, &first, channels, window, completed);
    run::measure(load, cpu, progress, "grpc", title(args), spawn).await
}

/// Opens `count` HTTP/2 connections (at least one) to `addr` (`host:port` or a URL).
pub(crate) async fn connect(addr: &str, count: usize) -> Result<Vec<Channel>> {
    let endpoint = endpoint(addr)?;
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let channel = endpoint.connect().await;
        channels.push(channel.map_err(Error::connect(addr, Peer::CacheNode))?);
    }
    Ok(channels)
}

fn title(args: &GrpcArgs) -> String {
    format!(
        "grpc {}: {} connections × {} calls in flight, batch {}, {}",
        args.addr,
        args.connections,
        args.concurrency,
        args.batch,
        run::describe(&args.load)
    )
}

/// Starts `--concurrency` slots on each channel, each a copy of `template` with its own
/// random stream and, in an open-loop run, its connection's schedule.
fn spawn_slots(
    args: &GrpcArgs,
    template: &Slot,
    channels: Vec<Channel>,
    window: Window,
    completed: &Arc<AtomicU64>,
) -> JoinSet<Recorder> {
    let mut slots = JoinSet::new();
    for (index, channel) in channels.into_iter().enumerate() {
        let pacing = args.load.rate.map(|rate| Pacing {
            schedule: Schedule::new(window.origin, rate, index, args.connections),
            tickets: Arc::new(AtomicU64::new(0)),
        });
        for number in 0..args.concurrency {
            let slot = Slot {
                client: client(channel.clone()),
                rng: Rng::from_clock((index * args.concurrency + number) as u64),
                pacing: pacing.clone(),
                ..template.clone()
            };
            slots.spawn(slot.run(window, completed.clone()));
        }
    }
    slots
}

/// `host:port` or a URL.
fn endpoint(addr: &str) -> Result<Endpoint, Usage> {
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let endpoint = Endpoint::from_shared(uri).map_err(|source| Usage::Address {
        addr: addr.to_owned(),
        source,
    })?;
    Ok(endpoint.tcp_nodelay(true))
}

fn client(channel: Channel) -> CacheClient<Channel> {
    CacheClient::new(channel).max_decoding_message_size(MAX_REPLY)
}

/// The `authorization` value for a bearer `token`.
pub(crate) fn token(token: Option<&str>) -> Result<Option<MetadataValue<Ascii>>, Usage> {
    token
        .map(|token| MetadataValue::try_from(format!("Bearer {token}")).map_err(Usage::Token))
        .transpose()
}

fn status_text(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// The schedule of one connection, shared by its slots.
#[derive(Debug, Clone)]
struct Pacing {
    schedule: Schedule,
    tickets: Arc<AtomicU64>,
}

/// What a successful call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Done {
    /// Keys read or written.
    ops: u64,
    /// Keys read that held no value.
    misses: u64,
}

/// One call slot: sends a call, waits for its answer, records it, again.
#[derive(Debug, Clone)]
struct Slot {
    client: CacheClient<Channel>,
    keys: KeySpace,
    table: KeyTable,
    value: Bytes,
    mix: Mix,
    batch: usize,
    token: Option<MetadataValue<Ascii>>,
    rng: Rng,
    /// `None`: closed loop.
    pacing: Option<Pacing>,
}

impl Slot {
    /// Calls until the window ends.
    async fn run(mut self, window: Window, completed: Arc<AtomicU64>) -> Recorder {
        let mut recorded = Recorder::new();
        let endless = self.drive(&mut recorded, window, &completed);
        let _ = tokio::time::timeout_at(window.end, endless).await;
        recorded
    }

    async fn drive(&mut self, recorded: &mut Recorder, window: Window, completed: &AtomicU64) {
        loop {
            let since = self.next_send().await;
            let outcome = self.call().await;
            let now = Instant::now();
            let ops = outcome.as_ref().map_or(0, |done| done.ops);
            completed.fetch_add(ops, Ordering::Relaxed);
            if !window.measures(now) {
                continue;
            }
            match outcome {
                Ok(done) => {
                    recorded.success(now - since, done.ops);
                    recorded.misses += done.misses;
                }
                Err(status) => recorded.failure(1, || status_text(&status)),
            }
        }
    }

    /// Waits until the next call may leave: at once (closed loop), or at the connection's next
    /// ticket. Returns where the call's latency counts from.
    async fn next_send(&self) -> Instant {
        let Some(pacing) = &self.pacing else {
            return Instant::now();
        };
        let due = pacing
            .schedule
            .at(pacing.tickets.fetch_add(1, Ordering::Relaxed));
        if !window::may_leave(due, Instant::now()) {
            tokio::time::sleep_until(window::wake_at(due)).await;
        }
        window::counted_from(due, Instant::now())
    }

    async fn call(&mut self) -> Result<Done, Status> {
        if !self.mix.is_read(&mut self.rng) {
            self.set().await
        } else if self.batch > 1 {
            self.get_many().await
        } else {
            self.get().await
        }
    }

    async fn get(&mut self) -> Result<Done, Status> {
        let key = self.random_key();
        let request = self.request(GetRequest {
            key,
            lease: false,
            track: 0,
        });
        let reply = self.client.get(request).await?.into_inner();
        Ok(Done {
            ops: 1,
            misses: u64::from(reply.entry.is_none()),
        })
    }

    async fn get_many(&mut self) -> Result<Done, Status> {
        let keys = (0..self.batch).map(|_| self.random_key()).collect();
        let request = self.request(GetManyRequest { keys });
        let reply = self.client.get_many(request).await?.into_inner();
        let found = reply.results.iter().filter(|r| r.entry.is_some()).count();
        let asked = self.batch as u64;
        Ok(Done {
            ops: asked,
            misses: asked.saturating_sub(found as u64),
        })
    }

    async fn set(&mut self) -> Result<Done, Status> {
        let key = self.random_key();
        let request = self.request(SetRequest {
            key,
            value: self.value.clone(),
            ..SetRequest::default()
        });
        self.client.set(request).await?;
        Ok(Done { ops: 1, misses: 0 })
    }

    fn random_key(&mut self) -> Bytes {
        let index = self.keys.pick(&mut self.rng);
        self.table.key(index)
    }

    /// Wraps a message, with the bearer token when one is set.
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        request
    }

    /// Writes every key once with `SetMany` calls.
    async fn prefill(&mut self) -> Result<()> {
        let count = self.keys.count();
        let mut next = 0;
        while next < count {
            let end = (next + PREFILL_KEYS).min(count);
            let items = (next..end)
                .map(|index| SetRequest {
                    key: self.table.key(index),
                    value: self.value.clone(),
                    ..SetRequest::default()
                })
                .collect();
            let request = self.request(SetManyRequest { items });
            let reply = self.client.set_many(request).await;
            let reply = reply.map_err(|status| Error::Call {
                call: "SetMany",
                code: status.code(),
                message: status.message().to_owned(),
            })?;
            let failed = reply
                .into_inner()
                .results
                .into_iter()
                .find_map(|r| match r.result {
                    Some(OneResult::Error(failure)) => Some(failure.message),
                    _ => None,
                });
            if let Some(why) = failed {
                let request = "SetMany";
                return Err(Error::Refused { request, why });
            }
            next = end;
        }
        Ok(())
    }
}
