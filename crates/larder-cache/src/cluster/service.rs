//! The gRPC `Cluster` service: the placement table (`Table`, and `Watch` for its changes),
//! which `larder-client` routes by, and `Pull`, which a new owner takes a partition over by.

use std::pin::Pin;
use std::sync::Arc;

use larder_cluster::{PARTITIONS, Table};
use larder_proto::grpc::cache::v1 as pb;
use pb::cluster_server::Cluster;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, WatchStream};
use tonic::{Request, Response, Status};

use super::{ClusterView, handoff};
use crate::node::Node;

/// The `Cluster` service of one node.
#[derive(Debug, Clone)]
pub(crate) struct ClusterService {
    node: Arc<Node>,
}

impl ClusterService {
    pub(crate) fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    fn view(&self) -> Result<&Arc<ClusterView>, Status> {
        self.node
            .cluster
            .as_ref()
            .ok_or_else(|| Status::failed_precondition("this node is not clustered"))
    }
}

/// A table as the wire carries it.
pub(crate) fn table_reply(table: &Table, self_id: &str) -> pb::TableReply {
    let members = table
        .members()
        .iter()
        .map(|m| pb::Member {
            id: m.id.clone(),
            generation: m.generation,
            status: m.status.as_str().to_owned(),
            resp: m.resp.clone(),
            grpc: m.grpc.clone(),
            admin: m.admin.clone(),
        })
        .collect();
    let placed = table.owner_index(0).is_some();
    let owners = if placed {
        (0..PARTITIONS)
            .map(|p| table.owner_index(p).map_or(u32::MAX, |i| i as u32))
            .collect()
    } else {
        Vec::new()
    };
    pb::TableReply {
        epoch: table.epoch(),
        members,
        owners,
        self_id: self_id.to_owned(),
    }
}

type Replies<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn table(
        &self,
        _: Request<pb::TableRequest>,
    ) -> Result<Response<pb::TableReply>, Status> {
        let view = self.view()?;
        let snapshot = view.snapshot();
        Ok(Response::new(table_reply(&snapshot.table, &view.me().id)))
    }

    type WatchStream = Replies<pb::TableReply>;

    async fn watch(
        &self,
        _: Request<pb::TableRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let view = self.view()?;
        let me = view.me().id.clone();
        let tables = WatchStream::new(view.tables()).map(move |t| Ok(table_reply(&t, &me)));
        Ok(Response::new(Box::pin(tables)))
    }

    type PullStream = Replies<pb::PullReply>;

    async fn pull(
        &self,
        request: Request<pb::PullRequest>,
    ) -> Result<Response<Self::PullStream>, Status> {
        let view = self.view()?.clone();
        let request = request.into_inner();
        let partitions = request
            .partitions
            .iter()
            .map(|&p| u16::try_from(p).ok().filter(|&p| p < PARTITIONS))
            .collect::<Option<Vec<u16>>>()
            .ok_or_else(|| Status::invalid_argument("partitions are 0 to 1023"))?;
        tracing::info!(to = %request.from_id, partitions = partitions.len(), "handing partitions off");
        let (tx, rx) = mpsc::channel(4);
        let rate = view.config.handoff_rate;
        tokio::spawn(handoff::send(view, self.node.clone(), partitions, rate, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
