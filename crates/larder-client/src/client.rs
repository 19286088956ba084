//! The client: one pool of lazy gRPC channels and one circuit breaker per node, and the call
//! path every operation goes through (breaker, deadline, metadata, outcome).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use larder_proto::grpc::cache::v1::cache_client::CacheClient;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::config::ClientConfig;
use crate::error::{ConfigError, Error};
use crate::placement::Placement;
use larder_util::breaker::{Breaker, BreakerState, Transition};
use larder_util::clock::{Clock, SystemClock};

/// Largest message sent or accepted: the nodes' default request bound, which they enforce.
const MAX_MESSAGE: usize = 512 << 20;

/// A client for a set of cache nodes. Cloning is cheap and clones share connections and
/// breakers.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Shows the nodes, their breakers and the deadline; never the token.
impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("nodes", &self.breaker_states())
            .field("deadline", &self.inner.deadline)
            .finish_non_exhaustive()
    }
}

struct Inner {
    nodes: Box<[Node]>,
    placement: Placement,
    deadline: Duration,
    /// The deadline as a `grpc-timeout` value, formatted once.
    timeout_header: AsciiMetadataValue,
    /// `Bearer <token>`, formatted once.
    authorization: Option<AsciiMetadataValue>,
    /// The clock the breakers time their cooldowns on.
    clock: Arc<dyn Clock>,
}

struct Node {
    name: Arc<str>,
    channels: Box<[CacheClient<Channel>]>,
    next: AtomicUsize,
    breaker: Breaker,
}

impl Client {
    /// A client for `config.nodes`. Nothing connects here: each channel connects on its first
    /// call (and reconnects after failures), so this succeeds while the nodes are down.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an empty or malformed node list, a node listed twice, a token that
    /// is not visible ASCII, a zero deadline, timeout, breaker threshold or pool size, or when
    /// called outside a Tokio runtime (the channels are driven by tasks spawned here).
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// [`Client::new`] whose breakers time their cooldowns on `clock` (the gateway's one
    /// clock; a [`larder_util::clock::ManualClock`] in tests).
    ///
    /// # Errors
    ///
    /// As [`Client::new`].
    pub fn with_clock(config: ClientConfig, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        config.check()?;
        let names = config.node_names()?;
        let placement = Placement::new(&names).map_err(|(a, b)| {
            if a == b {
                ConfigError::Twice(a)
            } else {
                ConfigError::SameHash(a, b)
            }
        })?;
        let (authorization, timeout_header) = config.headers()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::NoRuntime.into());
        }
        let nodes = names
            .into_iter()
            .map(|name| Node::new(name, &config))
            .collect::<Result<Box<[_]>, _>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                nodes,
                placement,
                deadline: config.deadline,
                timeout_header,
                authorization,
                clock,
            }),
        })
    }

    /// The node (`host:port`) that owns `key`.
    pub fn node_for(&self, key: &[u8]) -> &str {
        &self.inner.nodes[self.owner(key)].name
    }

    /// Every node's name and breaker state, in configuration order: the
    /// `larder_breaker_state{target="cache:<node>"}` gauges (see
    /// [`BreakerState::metric_value`]).
    pub fn breaker_states(&self) -> Vec<(String, BreakerState)> {
        let nodes = self.inner.nodes.iter();
        nodes
            .map(|node| (node.name.to_string(), node.breaker.state()))
            .collect()
    }

    /// Whether every node's breaker is closed.
    pub fn healthy(&self) -> bool {
        let mut nodes = self.inner.nodes.iter();
        nodes.all(|node| node.breaker.state() == BreakerState::Closed)
    }

    /// How many nodes keys are spread over.
    pub(crate) fn node_count(&self) -> usize {
        self.inner.nodes.len()
    }

    /// The index of the node that owns `key`.
    pub(crate) fn owner(&self, key: &[u8]) -> usize {
        self.inner.placement.owner(key)
    }

    /// Makes one call to node `index`: fails fast while its breaker is open, bounds the call by
    /// the deadline and reports the outcome to the breaker.
    pub(crate) async fn call<M, T, F, Fut>(
        &self,
        index: usize,
        message: M,
        rpc: F,
    ) -> Result<T, Error>
    where
        F: FnOnce(CacheClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let inner = &*self.inner;
        let node = &inner.nodes[index];
        let Some(permit) = node.breaker.admit(|| inner.now_ms()) else {
            return Err(Error::breaker_open(&node.name));
        };
        let request = inner.request(message);
        let outcome = tokio::time::timeout(inner.deadline, rpc(node.pick(), request)).await;
        match outcome {
            Ok(Ok(response)) => {
                node.log(permit.succeed());
                Ok(response.into_inner())
            }
            Ok(Err(status)) => {
                let err = Error::from_status(&node.name, status);
                let transition = if err.is_unavailable() {
                    permit.fail(inner.now_ms())
                } else {
                    permit.succeed()
                };
                node.log(transition);
                Err(err)
            }
            Err(_elapsed) => {
                node.log(permit.fail(inner.now_ms()));
                Err(Error::deadline(&node.name))
            }
        }
    }
}

impl Inner {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn request<M>(&self, message: M) -> Request<M> {
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert("grpc-timeout", self.timeout_header.clone());
        if let Some(authorization) = &self.authorization {
            metadata.insert("authorization", authorization.clone());
        }
        request
    }
}

impl Node {
    fn new(name: String, config: &ClientConfig) -> Result<Self, Error> {
        let endpoint = config.endpoint(&name)?;
        let channels = (0..config.connections_per_node)
            .map(|_| {
                CacheClient::new(endpoint.connect_lazy())
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE)
            })
            .collect();
        let cooldown = u64::try_from(config.breaker_cooldown.as_millis()).unwrap_or(u64::MAX);
        Ok(Self {
            name: Arc::from(name),
            channels,
            next: AtomicUsize::new(0),
            breaker: Breaker::new(config.breaker_failures, cooldown),
        })
    }

    /// The next channel in turn.
    fn pick(&self) -> CacheClient<Channel> {
        let index = match self.channels.len() {
            1 => 0,
            n => self.next.fetch_add(1, Ordering::Relaxed) % n,
        };
        self.channels[index].clone()
    }

    fn log(&self, transition: Transition) {
        match transition {
            Transition::None => {}
            Transition::Opened => {
                tracing::warn!(node = %self.name, "cache node circuit breaker opened");
            }
            Transition::Reopened => {
                tracing::debug!(node = %self.name, "cache node trial call failed, breaker stays open");
            }
            Transition::Closed => {
                tracing::info!(node = %self.name, "cache node circuit breaker closed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SetOpts;

    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    fn assert_send<T: Send>(_: &T) {}

    #[tokio::test]
    async fn futures_are_send_and_debug_hides_the_token() {
        let client = Client::new(ClientConfig {
            token: Some("s3cret".into()),
            ..ClientConfig::default()
        })
        .unwrap();
        assert_send_sync(&client);
        assert_send(&client.get("k"));
        assert_send(&client.get_many(&[]));
        assert_send(&client.set("k", "v", SetOpts::default()));
        assert_send(&client.delete(&[]));
        assert_send(&client.invalidate(&[]));
        let text = format!("{client:?}");
        assert!(
            text.contains("127.0.0.1:7070") && !text.contains("s3cret"),
            "{text}"
        );
    }
}
