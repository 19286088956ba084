//! Cluster nodes in one process for tests: each with its store, its view of the cluster and
//! a real gRPC server on loopback, and no gossip: a test installs the tables gossip would
//! produce, in the order it chooses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use larder_cluster::{Member, Status, Table};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{ClusterConfig, ClusterView, handoff};
use crate::config::CacheConfig;
use crate::metrics::Metrics;
use crate::node::{Node, NodeOptions};

/// One node: its state, its view, and its gRPC server (stopped on drop).
pub(crate) struct TestNode {
    pub(crate) node: Arc<Node>,
    pub(crate) view: Arc<ClusterView>,
    pub(crate) me: Member,
    _stop: tokio_util::sync::DropGuard,
}

impl TestNode {
    pub(crate) async fn start(id: &str, handoff_rate: u64) -> Self {
        Self::with_origins(id, handoff_rate, Vec::new()).await
    }

    /// A node with read-through `origins`.
    pub(crate) async fn with_origins(
        id: &str,
        handoff_rate: u64,
        origins: Vec<crate::config::OriginConfig>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = listener.local_addr().unwrap().to_string();
        let me = Member {
            id: id.into(),
            generation: 1,
            // As a node starts: joining, so it owns nothing before its first table.
            status: Status::Joining,
            resp: format!("{id}:6380"),
            grpc,
            admin: format!("{id}:7071"),
        };
        let cluster = ClusterConfig {
            enabled: true,
            handoff_rate,
            ..ClusterConfig::default()
        };
        let view = Arc::new(ClusterView::new(me.clone(), cluster.clone(), "", None));
        let config = CacheConfig {
            cluster,
            origins,
            ..CacheConfig::default()
        };
        let metrics = Metrics::new(
            crate::resp::table::metric_names(),
            crate::grpc::METHODS.to_vec(),
        );
        let node = Node::new(config, metrics, NodeOptions::default(), Some(view.clone()));
        let node = Arc::new(node.unwrap());
        let stop = CancellationToken::new();
        let server = tonic::transport::Server::builder()
            .add_routes(crate::grpc::routes(node.clone()).await.unwrap())
            .serve_with_incoming_shutdown(
                crate::incoming::accept(listener, node.clone()),
                stop.clone().cancelled_owned(),
            );
        tokio::spawn(server);
        Self {
            node,
            view,
            me,
            _stop: stop.drop_guard(),
        }
    }

    pub(crate) fn member(&self, status: Status) -> Member {
        Member {
            status,
            ..self.me.clone()
        }
    }

    pub(crate) fn apply(&self, table: &Table) {
        handoff::apply(&self.view, &self.node, table.clone());
    }

    pub(crate) fn value(&self, key: &str) -> Option<(Vec<u8>, u64, Option<u64>)> {
        self.node.store.peek_with(key.as_bytes(), |e| {
            (e.value.to_vec(), e.version, e.expires_at)
        })
    }

    /// Waits until no partition is moving here.
    pub(crate) async fn settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.view.snapshot().moving_count() > 0 {
            assert!(Instant::now() < deadline, "partitions still moving");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
