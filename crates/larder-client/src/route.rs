//! A cluster's placement table as the client routes by it: each of the 1024 partitions (16 hash
//! slots each, as the nodes place them) and its owner.

use std::sync::Arc;

use larder_proto::grpc::cache::v1 as pb;

/// Partitions in a table.
const PARTITIONS: usize = 1_024;
/// Hash slots per partition.
const SLOTS_PER_PARTITION: u16 = 16;

/// A cluster table: the owner `N` of every partition.
#[derive(Debug)]
pub(crate) struct ClusterRoute<N> {
    pub(crate) epoch: u64,
    /// Each partition's owner.
    owners: Vec<Option<Arc<N>>>,
}

impl<N> ClusterRoute<N> {
    /// The route a table reply gives, each member's gRPC address made a node by `node`, or
    /// `None` while the table places nothing.
    pub(crate) fn from_reply(
        reply: &pb::TableReply,
        node: impl Fn(&str) -> Option<Arc<N>>,
    ) -> Option<Self> {
        if reply.owners.len() != PARTITIONS {
            return None;
        }
        let nodes: Vec<Option<Arc<N>>> = reply.members.iter().map(|m| node(&m.grpc)).collect();
        let owners = reply
            .owners
            .iter()
            .map(|&i| nodes.get(i as usize).cloned().flatten())
            .collect();
        Some(Self {
            epoch: reply.epoch,
            owners,
        })
    }

    /// Every partition's owner, in partition order (an owner of many appears many times).
    pub(crate) fn owners(&self) -> impl Iterator<Item = &Arc<N>> {
        self.owners.iter().flatten()
    }

    /// The owner of `key`'s partition.
    pub(crate) fn owner(&self, key: &[u8]) -> Option<&Arc<N>> {
        let slot = larder_cluster::key_slot(key);
        self.owners
            .get(usize::from(slot / SLOTS_PER_PARTITION))?
            .as_ref()
    }
}
