//! Routing by a cluster's table. When the configured nodes are a cluster, the client asks one of
//! them for the placement table (`Cluster.Watch`) and from then on sends each key straight to
//! its owner, following every change the node streams; if the stream breaks it asks the next
//! configured node. Until a table arrives, and for nodes that are not clustered, keys go by
//! rendezvous hashing over the configured nodes (a clustered node forwards what it does not
//! own, so even a key sent to the wrong node is answered).

use std::sync::Arc;
use std::time::Duration;

use larder_proto::grpc::cache::v1 as pb;
use tonic::Code;

use crate::Client;
use crate::client::Node;
use crate::route::ClusterRoute;

/// Pause before asking the next node after a failed watch.
const RETRY: Duration = Duration::from_millis(500);

/// Starts following the cluster's table in the background, for as long as the client lives.
pub(crate) fn follow(client: &Client) {
    let weak = client.downgrade();
    tokio::spawn(async move {
        let mut turn = 0usize;
        let mut standalone = 0usize;
        loop {
            let Some(client) = Client::upgrade(&weak) else {
                return;
            };
            let seeds = client.seeds().len();
            let node = client.seeds()[turn % seeds].clone();
            turn += 1;
            match watch(&client, &node).await {
                // Not a cluster (or an older node): route by the configured list, and stop
                // asking once every configured node said so.
                Err(status)
                    if matches!(
                        status.code(),
                        Code::FailedPrecondition | Code::Unimplemented
                    ) =>
                {
                    standalone += 1;
                    if standalone >= seeds {
                        client.set_route(None);
                        return;
                    }
                    continue;
                }
                Err(status) => {
                    tracing::debug!(node = %node.name, error = %status.message(), "cluster table watch ended");
                }
                Ok(()) => {}
            }
            drop(client);
            tokio::time::sleep(RETRY).await;
        }
    });
}

/// Follows `node`'s table until its stream ends.
async fn watch(client: &Client, node: &Node) -> Result<(), tonic::Status> {
    let mut cluster = node.cluster.clone();
    let request = client.authorized(pb::TableRequest {});
    let mut stream = cluster.watch(request).await?.into_inner();
    while let Some(reply) = stream.message().await? {
        if let Some(route) = ClusterRoute::from_reply(&reply, |grpc| client.member(grpc).ok()) {
            tracing::debug!(epoch = route.epoch, via = %node.name, "routing by the cluster table");
            client.set_route(Some(Arc::new(route)));
        }
    }
    Ok(())
}
