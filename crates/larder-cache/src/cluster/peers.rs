//! Calls from this node to the others: forwarded requests and partition pulls, over one lazy
//! gRPC channel per peer, carrying the node token and the mark that a request was forwarded.

use std::collections::HashMap;
use std::time::Duration;

use larder_proto::grpc::cache::v1::cache_client::CacheClient;
use larder_proto::grpc::cache::v1::cluster_client::ClusterClient;
use parking_lot::Mutex;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// The metadata key that marks a request as forwarded by another node, carrying that node's
/// table epoch: a node never forwards such a request again.
pub(crate) const FORWARDED: &str = "larder-forwarded";

/// How long a forwarded call may take.
const FORWARD_DEADLINE: Duration = Duration::from_secs(5);
/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest message a peer call sends or takes (the node's own default request bound).
const MAX_MESSAGE: usize = 512 << 20;

/// One channel per peer gRPC address, made on first use.
#[derive(Debug)]
pub(crate) struct Peers {
    authorization: Option<AsciiMetadataValue>,
    channels: Mutex<HashMap<String, Channel>>,
}

/// Whether `metadata` marks a request as forwarded by another node.
pub(crate) fn forwarded(metadata: &MetadataMap) -> bool {
    metadata.contains_key(FORWARDED)
}

impl Peers {
    /// Peers called with `token` (empty: none).
    pub(crate) fn new(token: &str) -> Self {
        let authorization = (!token.is_empty())
            .then(|| format!("Bearer {token}").parse().ok())
            .flatten();
        Self {
            authorization,
            channels: Mutex::default(),
        }
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
        let channel = endpoint.connect_lazy();
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
        let mut request = Request::new(message);
        request.set_timeout(FORWARD_DEADLINE);
        let metadata = request.metadata_mut();
        if let Some(authorization) = &self.authorization {
            metadata.insert("authorization", authorization.clone());
        }
        if let Ok(epoch) = epoch.to_string().parse() {
            metadata.insert(FORWARDED, epoch);
        }
        request
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
