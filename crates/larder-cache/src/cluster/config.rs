//! The `[cache.cluster]` settings: whether and how the node joins a cluster.

use serde::{Deserialize, Serialize};

/// Default UDP gossip address.
pub const DEFAULT_CLUSTER_ADDR: &str = "127.0.0.1:7946";
/// Default name of the cluster.
pub const DEFAULT_CLUSTER_ID: &str = "larder";
/// Default time a draining node waits for its partitions to be taken over.
pub const DEFAULT_DRAIN_DEADLINE_MS: u64 = 30_000;
/// Default entries per second a node sends when it hands partitions off.
pub const DEFAULT_HANDOFF_RATE: u64 = 200_000;
/// Default time a node keeps the entries of a partition it no longer owns, for the new owner
/// to pull.
pub const DEFAULT_KEEP_LOST_MS: u64 = 60_000;

/// How the node takes part in a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Join a cluster (`--cluster-addr` or `--seeds` on the command line turn it on).
    pub enabled: bool,
    /// This node's id, stable across restarts; empty: its advertised RESP address.
    pub node_id: String,
    /// The cluster's name; gossip from nodes of another cluster is ignored.
    pub cluster_id: String,
    /// UDP gossip listen address.
    pub addr: String,
    /// The host other nodes and clients reach this node's listeners on; empty: the listeners'
    /// own host, or the gossip address's host when they listen on every interface.
    pub advertise_host: String,
    /// Nodes to gossip with first, `host:port` of their gossip address (DNS names are
    /// resolved again and again, so a headless Service's name works).
    pub seeds: Vec<String>,
    /// Milliseconds a node told to stop (SIGTERM) waits, draining, for other nodes to take its
    /// partitions over before it exits.
    pub drain_deadline_ms: u64,
    /// Entries per second a node sends when another takes partitions over from it.
    pub handoff_rate: u64,
    /// Milliseconds a node keeps the entries of partitions it no longer owns, for their new
    /// owner to pull, before it drops them.
    pub keep_lost_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            node_id: String::new(),
            cluster_id: DEFAULT_CLUSTER_ID.into(),
            addr: DEFAULT_CLUSTER_ADDR.into(),
            advertise_host: String::new(),
            seeds: Vec::new(),
            drain_deadline_ms: DEFAULT_DRAIN_DEADLINE_MS,
            handoff_rate: DEFAULT_HANDOFF_RATE,
            keep_lost_ms: DEFAULT_KEEP_LOST_MS,
        }
    }
}
