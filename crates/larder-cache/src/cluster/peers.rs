//! Calls from this node to the others: forwarded requests and partition pulls, over one lazy
//! gRPC channel per peer, carrying the node token and the mark that a request was forwarded.
//! A node that speaks TLS calls the others over TLS ([`CacheConfig::peer_tls`]), presenting
//! its own certificate to nodes that ask for one.
//!
//! [`CacheConfig::peer_tls`]: crate::config::CacheConfig::peer_tls
//!
//! Forwarded reads are the common forwarded call, and a call costs both nodes far more than
//! a read does, so reads for one peer queue up and go together: a task per peer sends
//! whatever is waiting as one `GetEach` call, at most [`READ_CALLS`] at a time. Under load
//! the queue fills while calls are out, so each call carries many reads; a lone read goes at
//! once, alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use larder_proto::grpc::cache::v1 as pb;
use larder_util::reload::Reloading;
use larder_util::tls::Connector;
use parking_lot::Mutex;
use pb::cache_client::CacheClient;
use pb::cluster_client::ClusterClient;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};
use tracing::{Instrument, Span};

/// The metadata key that marks a request as forwarded by another node, carrying that node's
/// table epoch: a node never forwards such a request again.
pub(crate) const FORWARDED: &str = "larder-forwarded";

/// How long a forwarded call may take.
const FORWARD_DEADLINE: Duration = Duration::from_secs(5);
/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest message a peer call sends or takes (the node's own default request bound).
const MAX_MESSAGE: usize = 512 << 20;
/// `GetEach` calls in flight to one peer; reads arriving meanwhile wait for the next call.
const READ_CALLS: usize = 4;
/// Reads in one `GetEach` call.
const READS_PER_CALL: usize = 256;

/// A forwarded read waiting to go: the read, its sender's table epoch, where its answer goes,
/// and the span of the request it serves (`Span::none()` unless that request is traced).
type Waiting = (
    pb::GetRequest,
    u64,
    oneshot::Sender<Result<pb::GetResponse, Status>>,
    Span,
);

/// One channel per peer gRPC address, made on first use, and one queue of reads per peer.
#[derive(Debug)]
pub(crate) struct Peers {
    authorization: Option<AsciiMetadataValue>,
    /// TLS to the other nodes; `None`: plaintext.
    tls: Option<Arc<Reloading<rustls::ClientConfig>>>,
    channels: Mutex<HashMap<String, Channel>>,
    reads: Mutex<HashMap<String, mpsc::UnboundedSender<Waiting>>>,
}

/// Whether `metadata` marks a request as forwarded by another node.
pub(crate) fn forwarded(metadata: &MetadataMap) -> bool {
    metadata.contains_key(FORWARDED)
}

impl Peers {
    /// Peers called with `token` (empty: none), over TLS with `tls` when given.
    pub(crate) fn new(token: &str, tls: Option<Arc<Reloading<rustls::ClientConfig>>>) -> Self {
        let authorization = (!token.is_empty())
            .then(|| format!("Bearer {token}").parse().ok())
            .flatten();
        Self {
            authorization,
            tls,
            channels: Mutex::default(),
            reads: Mutex::default(),
        }
    }

    /// Reads `get` from the peer at `grpc` (marked forwarded, with `epoch`), in one call with
    /// the other reads waiting for that peer.
    pub(crate) async fn get(
        &self,
        grpc: &str,
        get: pb::GetRequest,
        epoch: u64,
    ) -> Result<pb::GetResponse, Status> {
        let (answer, answered) = oneshot::channel();
        let queue = {
            let mut reads = self.reads.lock();
            match reads.get(grpc) {
                Some(queue) if !queue.is_closed() => queue.clone(),
                _ => {
                    let (queue, waiting) = mpsc::unbounded_channel();
                    let sender = ReadSender {
                        client: self.cache(grpc)?,
                        peer: grpc.into(),
                        authorization: self.authorization.clone(),
                    };
                    tokio::spawn(sender.run(waiting));
                    reads.insert(grpc.to_owned(), queue.clone());
                    queue
                }
            }
        };
        queue
            .send((get, epoch, answer, larder_proto::trace::carried()))
            .map_err(|_| Status::unavailable("the node is shutting down"))?;
        answered
            .await
            .unwrap_or_else(|_| Err(Status::unavailable("the forwarded read was dropped")))
    }

    fn channel(&self, grpc: &str) -> Result<Channel, Status> {
        let mut channels = self.channels.lock();
        if let Some(channel) = channels.get(grpc) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{grpc}"))
            .map_err(|e| Status::unavailable(format!("peer {grpc}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        let channel = match &self.tls {
            None => endpoint.connect_lazy(),
            Some(tls) => endpoint.connect_with_connector_lazy(Connector::new(
                tls.clone(),
                None,
                CONNECT_TIMEOUT,
            )),
        };
        channels.insert(grpc.to_owned(), channel.clone());
        Ok(channel)
    }

    /// The `Cache` service of the peer at `grpc`.
    pub(crate) fn cache(&self, grpc: &str) -> Result<CacheClient<Channel>, Status> {
        Ok(CacheClient::new(self.channel(grpc)?)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }

    /// The `Cluster` service of the peer at `grpc`.
    pub(crate) fn cluster(&self, grpc: &str) -> Result<ClusterClient<Channel>, Status> {
        Ok(ClusterClient::new(self.channel(grpc)?)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }

    /// `message` as a request to a peer: the token, the forwarded mark with `epoch`, and a
    /// deadline.
    pub(crate) fn request<T>(&self, message: T, epoch: u64) -> Request<T> {
        forwarded_request(self.authorization.as_ref(), message, epoch)
    }

    /// `message` as a node-to-node request that is not a forwarded client request (a pull).
    pub(crate) fn internal<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        request
    }
}

fn forwarded_request<T>(
    authorization: Option<&AsciiMetadataValue>,
    message: T,
    epoch: u64,
) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(FORWARD_DEADLINE);
    let metadata = request.metadata_mut();
    if let Some(authorization) = authorization {
        metadata.insert("authorization", authorization.clone());
    }
    if let Ok(epoch) = epoch.to_string().parse() {
        metadata.insert(FORWARDED, epoch);
    }
    larder_proto::trace::inject_metadata(metadata);
    request
}

/// The task that sends one peer's queued reads.
struct ReadSender {
    client: CacheClient<Channel>,
    /// The peer's gRPC address, for the call's span.
    peer: Arc<str>,
    authorization: Option<AsciiMetadataValue>,
}

impl ReadSender {
    /// Sends what is waiting, a call at a time per free slot, until every sender is gone.
    async fn run(self, mut waiting: mpsc::UnboundedReceiver<Waiting>) {
        let slots = Arc::new(Semaphore::new(READ_CALLS));
        while let Some(first) = waiting.recv().await {
            // Reads that arrive while every slot is busy go in the next call.
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < READS_PER_CALL {
                match waiting.try_recv() {
                    Ok(read) => batch.push(read),
                    Err(_) => break,
                }
            }
            let call = self.call(batch);
            tokio::spawn(async move {
                call.await;
                drop(slot);
            });
        }
    }

    /// One `GetEach` call for `batch`; every read gets its answer, or the call's failure.
    /// When reads in it are traced, the call's span is the first traced read's child and
    /// links to the others', and the owner's span continues that trace.
    fn call(&self, batch: Vec<Waiting>) -> impl Future<Output = ()> + Send + 'static {
        let span = larder_proto::trace::batch(batch.iter().map(|waiting| &waiting.3), || {
            tracing::info_span!(
                "forwarded reads",
                otel.name = "larder.cache.v1.Cache/GetEach",
                otel.kind = "client",
                rpc.system = "grpc",
                rpc.service = "larder.cache.v1.Cache",
                rpc.method = "GetEach",
                server.address = &*self.peer,
                larder.reads = batch.len(),
                otel.status_code = tracing::field::Empty,
            )
        });
        let mut gets = Vec::with_capacity(batch.len());
        let mut answers = Vec::with_capacity(batch.len());
        let mut epoch = 0;
        for (get, sent_at, answer, _) in batch {
            gets.push(get);
            answers.push(Some(answer));
            // The mark carries the table the latest read was routed by.
            epoch = sent_at;
        }
        let request = span.in_scope(|| {
            forwarded_request(
                self.authorization.as_ref(),
                pb::GetEachRequest { gets },
                epoch,
            )
        });
        let mut client = self.client.clone();
        let traced = span.clone();
        let call = async move {
            let failure = match client.get_each(request).await {
                Ok(replies) => {
                    let mut replies = replies.into_inner();
                    loop {
                        match replies.message().await {
                            Ok(Some(reply)) => deliver(&mut answers, reply),
                            Ok(None) => break None,
                            Err(status) => break Some(status),
                        }
                    }
                }
                Err(status) => Some(status),
            };
            if failure.is_some() && !traced.is_none() {
                traced.record("otel.status_code", "ERROR");
            }
            let failure =
                failure.unwrap_or_else(|| Status::internal("the owner left a read unanswered"));
            for answer in answers.into_iter().flatten() {
                let _ = answer.send(Err(failure.clone()));
            }
        };
        call.instrument(span)
    }
}

/// Hands each result of `reply` to the read it answers.
fn deliver(
    answers: &mut [Option<oneshot::Sender<Result<pb::GetResponse, Status>>>],
    reply: pb::GetEachReply,
) {
    use pb::get_each_result::Result as One;
    for result in reply.results {
        let Some(answer) = answers
            .get_mut(result.index as usize)
            .and_then(Option::take)
        else {
            continue;
        };
        let _ = answer.send(match result.result {
            Some(One::Ok(response)) => Ok(response),
            Some(One::Error(failure)) => {
                Err(Status::new(Code::from(failure.code), failure.message))
            }
            None => Err(Status::internal("the owner sent an empty result")),
        });
    }
}
