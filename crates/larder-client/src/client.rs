//! The client: one pool of lazy gRPC channels and one circuit breaker per node, and the call
//! path every operation goes through (breaker, deadline, metadata, outcome).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use std::collections::HashMap;

use larder_proto::grpc::cache::v1::cache_client::CacheClient;
use larder_proto::grpc::cache::v1::cluster_client::ClusterClient;
use larder_util::reload::Reloading;
use parking_lot::RwLock;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::config::ClientConfig;
use crate::error::{ConfigError, Error};
use crate::placement::Placement;
use crate::route::ClusterRoute;
use larder_util::breaker::{Breaker, BreakerState, Transition};
use larder_util::clock::Clock;

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

pub(crate) struct Inner {
    /// The configured nodes: the seeds of a cluster, or the whole set for standalone nodes.
    nodes: Box<[Arc<Node>]>,
    placement: Placement,
    /// Routing by a cluster's table, once a configured node gave one (see [`crate::cluster`]'s `follow`).
    pub(crate) cluster: RwLock<Option<Arc<ClusterRoute<Node>>>>,
    /// Every node a cluster table named, by gRPC address.
    members: RwLock<HashMap<String, Arc<Node>>>,
    config: ClientConfig,
    /// TLS to the nodes (`tls_ca` set), for the members a table names as well.
    tls: Option<Arc<Reloading<rustls::ClientConfig>>>,
    deadline: Duration,
    /// The deadline as a `grpc-timeout` value, formatted once.
    timeout_header: AsciiMetadataValue,
    /// `Bearer <token>`, formatted once.
    authorization: Option<AsciiMetadataValue>,
    /// The clock the breakers time their cooldowns on.
    clock: Arc<dyn Clock>,
    /// The Watch subscriber id tracked reads name while [`Client::track`] runs (0: none).
    subscriber: AtomicU64,
}

/// Shows the node's name.
impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Node {
    pub(crate) name: Arc<str>,
    channels: Box<[CacheClient<Channel>]>,
    /// The node's `Cluster` service, for its table.
    pub(crate) cluster: ClusterClient<Channel>,
    next: AtomicUsize,
    breaker: Breaker,
}

impl Client {
    /// The client's state for `config`, with its nodes made but not yet following a cluster's
    /// table ([`Client::with_clock`] starts that).
    pub(crate) fn assemble(config: ClientConfig, clock: Arc<dyn Clock>) -> Result<Self, Error> {
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
        let tls = config.tls()?;
        let nodes = names
            .into_iter()
            .map(|name| Node::new(name, &config, tls.as_ref()).map(Arc::new))
            .collect::<Result<Box<[_]>, _>>()?;
        let client = Self {
            inner: Arc::new(Inner {
                nodes,
                placement,
                cluster: RwLock::new(None),
                members: RwLock::default(),
                deadline: config.deadline,
                timeout_header,
                authorization,
                clock,
                config,
                tls,
                subscriber: AtomicU64::new(0),
            }),
        };
        Ok(client)
    }

    /// The node (`host:port`) that owns `key`.
    pub fn node_for(&self, key: &[u8]) -> String {
        self.owner(key).name.to_string()
    }

    /// Every node's name and breaker state, configured nodes first, then the other members of
    /// a cluster: the `larder_breaker_state{target="cache:<node>"}` gauges (see
    /// [`BreakerState::metric_value`]).
    pub fn breaker_states(&self) -> Vec<(String, BreakerState)> {
        let mut states: Vec<(String, BreakerState)> = self
            .inner
            .nodes
            .iter()
            .map(|node| (node.name.to_string(), node.breaker.state()))
            .collect();
        let members = self.inner.members.read();
        let mut more: Vec<_> = members
            .values()
            .filter(|m| !states.iter().any(|(name, _)| **name == *m.name))
            .map(|m| (m.name.to_string(), m.breaker.state()))
            .collect();
        more.sort_by(|a, b| a.0.cmp(&b.0));
        states.extend(more);
        states
    }

    /// Whether every node's breaker is closed.
    pub fn healthy(&self) -> bool {
        self.breaker_states()
            .iter()
            .all(|(_, state)| *state == BreakerState::Closed)
    }

    /// The epoch of the cluster table keys are routed by, once a node gave one.
    pub fn cluster_epoch(&self) -> Option<u64> {
        self.inner.cluster.read().as_ref().map(|route| route.epoch)
    }

    /// The node that owns `key`: by the cluster's table when there is one, else by rendezvous
    /// hashing over the configured nodes.
    pub(crate) fn owner(&self, key: &[u8]) -> Arc<Node> {
        if let Some(route) = &*self.inner.cluster.read()
            && let Some(node) = route.owner(key)
        {
            return node.clone();
        }
        self.inner.nodes[self.inner.placement.owner(key)].clone()
    }

    /// The node for a cluster member's gRPC address, made on first use.
    pub(crate) fn member(&self, grpc: &str) -> Result<Arc<Node>, Error> {
        if let Some(node) = self.inner.nodes.iter().find(|n| &*n.name == grpc) {
            return Ok(node.clone());
        }
        if let Some(node) = self.inner.members.read().get(grpc) {
            return Ok(node.clone());
        }
        let node = Arc::new(Node::new(
            grpc.to_owned(),
            &self.inner.config,
            self.inner.tls.as_ref(),
        )?);
        let mut members = self.inner.members.write();
        Ok(members.entry(grpc.to_owned()).or_insert(node).clone())
    }

    /// The configured nodes.
    pub(crate) fn seeds(&self) -> &[Arc<Node>] {
        &self.inner.nodes
    }

    /// The nodes reads go to: the owners in the cluster's table once there is one, else the
    /// configured nodes.
    pub(crate) fn read_nodes(&self) -> Vec<Arc<Node>> {
        if let Some(route) = &*self.inner.cluster.read() {
            let mut nodes: Vec<Arc<Node>> = Vec::new();
            for owner in route.owners() {
                if !nodes.iter().any(|n| Arc::ptr_eq(n, owner)) {
                    nodes.push(owner.clone());
                }
            }
            if !nodes.is_empty() {
                return nodes;
            }
        }
        self.inner.nodes.to_vec()
    }

    /// The subscriber id tracked reads name (0: tracking is off).
    pub(crate) fn subscriber(&self) -> u64 {
        self.inner.subscriber.load(Ordering::Relaxed)
    }

    /// Tracked reads name `subscriber` from now on.
    pub(crate) fn set_subscriber(&self, subscriber: u64) {
        self.inner.subscriber.store(subscriber, Ordering::Relaxed);
    }

    /// Tracked reads stop naming `subscriber`, unless a newer tracking replaced it.
    pub(crate) fn clear_subscriber(&self, subscriber: u64) {
        let _ = self.inner.subscriber.compare_exchange(
            subscriber,
            0,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Installs a cluster table to route by.
    pub(crate) fn set_route(&self, route: Option<Arc<ClusterRoute<Node>>>) {
        *self.inner.cluster.write() = route;
    }

    /// A handle that does not keep the client alive.
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    /// The client of a handle, while it lives.
    pub(crate) fn upgrade(weak: &std::sync::Weak<Inner>) -> Option<Self> {
        weak.upgrade().map(|inner| Self { inner })
    }

    /// A request with the client's token.
    pub(crate) fn authorized<M>(&self, message: M) -> Request<M> {
        let mut request = Request::new(message);
        if let Some(authorization) = &self.inner.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        request
    }

    /// Makes one call of `method` to `node`: fails fast while its breaker is open, bounds the
    /// call by the deadline and reports the outcome to the breaker. Inside a traced request
    /// the call has its span, whose context goes to the node in `traceparent`.
    pub(crate) async fn call<M, T, F, Fut>(
        &self,
        method: &'static str,
        node: Arc<Node>,
        message: M,
        rpc: F,
    ) -> Result<T, Error>
    where
        F: FnOnce(CacheClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let span = larder_proto::trace::child(|| {
            tracing::info_span!(
                "cache call",
                otel.name = %format_args!("larder.cache.v1.Cache/{method}"),
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                rpc.system = "grpc",
                rpc.service = "larder.cache.v1.Cache",
                rpc.method = method,
                server.address = &*node.name,
            )
        });
        let result = self
            .call_node(node, message, rpc)
            .instrument(span.clone())
            .await;
        if result.is_err() && !span.is_none() {
            span.record("otel.status_code", "ERROR");
        }
        result
    }

    async fn call_node<M, T, F, Fut>(&self, node: Arc<Node>, message: M, rpc: F) -> Result<T, Error>
    where
        F: FnOnce(CacheClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let inner = &*self.inner;
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
        larder_proto::trace::inject_metadata(metadata);
        request
    }
}

impl Node {
    fn new(
        name: String,
        config: &ClientConfig,
        tls: Option<&Arc<Reloading<rustls::ClientConfig>>>,
    ) -> Result<Self, Error> {
        let endpoint = config.endpoint(&name)?;
        let server_name =
            (!config.tls_server_name.is_empty()).then(|| config.tls_server_name.clone());
        let connect = || match tls {
            None => endpoint.connect_lazy(),
            Some(tls) => endpoint.connect_with_connector_lazy(larder_util::tls::Connector::new(
                tls.clone(),
                server_name.clone(),
                config.connect_timeout,
            )),
        };
        let cluster = ClusterClient::new(connect());
        let channels = (0..config.connections_per_node)
            .map(|_| {
                CacheClient::new(connect())
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE)
            })
            .collect();
        let cooldown = u64::try_from(config.breaker_cooldown.as_millis()).unwrap_or(u64::MAX);
        Ok(Self {
            name: Arc::from(name),
            channels,
            cluster,
            next: AtomicUsize::new(0),
            breaker: Breaker::new(config.breaker_failures, cooldown),
        })
    }

    /// A channel for a long-lived stream: no message size bound beyond the nodes'.
    pub(crate) fn watch_client(&self) -> CacheClient<Channel> {
        self.pick()
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
