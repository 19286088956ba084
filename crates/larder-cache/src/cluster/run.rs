//! Joining, following and leaving the cluster: the node's member record, gossip, the task
//! that turns every membership change into a table, and draining at shutdown.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use larder_cluster::membership::MembershipConfig;
use larder_cluster::{Member, Membership, MembershipError, Status, Table};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{ClusterConfig, ClusterView, handoff};
use crate::config::{ConfigError, resolve};
use crate::node::Node;

/// How long a node with seeds waits to hear of the other members before it takes partitions
/// anyway (it may be the first node of a new cluster).
const JOIN_WAIT: Duration = Duration::from_secs(3);
/// How long the member list must stay unchanged before a joining node trusts it: several
/// gossip rounds (100 ms each), enough for every member to be heard of through the seeds.
const SETTLE: Duration = Duration::from_millis(500);

/// What is wrong with a cluster setting, or why gossip could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A setting that cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listeners bind every interface and nothing says which address peers should use.
    #[error(
        "the node listens on every interface: set advertise_host in [cache.cluster] (or \
         LARDER_CACHE_CLUSTER_ADVERTISE_HOST) to the address other nodes and clients reach it on"
    )]
    NoAdvertiseHost,
    /// Gossip could not start.
    #[error("cluster membership: {0}")]
    Membership(#[from] MembershipError),
}

/// This node as a member: its id, and the addresses others reach its listeners on.
///
/// # Errors
/// [`ClusterError::NoAdvertiseHost`] when the listeners bind every interface and no
/// advertise host is set.
pub(crate) fn member(
    config: &ClusterConfig,
    [resp, grpc, admin]: [SocketAddr; 3],
) -> Result<Member, ClusterError> {
    let host = advertise_host(config, resp.ip())?;
    let at = |addr: SocketAddr| join(&host, addr.port());
    let resp = at(resp);
    let id = if config.node_id.is_empty() {
        resp.clone()
    } else {
        config.node_id.clone()
    };
    Ok(Member {
        id,
        generation: 0,
        status: Status::Joining,
        resp,
        grpc: at(grpc),
        admin: at(admin),
    })
}

fn advertise_host(config: &ClusterConfig, listening: IpAddr) -> Result<String, ClusterError> {
    if !config.advertise_host.is_empty() {
        return Ok(config.advertise_host.clone());
    }
    if !listening.is_unspecified() {
        return Ok(listening.to_string());
    }
    match resolve("cluster.addr", &config.addr)?.first() {
        Some(gossip) if !gossip.ip().is_unspecified() => Ok(gossip.ip().to_string()),
        _ => Err(ClusterError::NoAdvertiseHost),
    }
}

/// `host:port`, with an IPv6 literal in brackets.
fn join(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Starts gossiping as `view`'s member, follows membership into tables until `stop`, and says
/// this node is ready.
///
/// # Errors
/// When the gossip address does not resolve or cannot be bound.
pub(crate) async fn join_cluster(
    view: &Arc<ClusterView>,
    node: &Arc<Node>,
    tracker: &TaskTracker,
    stop: &CancellationToken,
) -> Result<Membership, ClusterError> {
    let config = &view.config;
    let listen = *resolve("cluster.addr", &config.addr)?
        .first()
        .ok_or(ConfigError::Address {
            field: "cluster.addr",
            value: config.addr.clone(),
        })?;
    let mut gossip = MembershipConfig::new(view.me().clone());
    gossip.cluster_id.clone_from(&config.cluster_id);
    gossip.listen_addr = listen;
    if listen.ip().is_unspecified() {
        let host: IpAddr = advertise_host(config, listen.ip())?
            .trim_matches(['[', ']'])
            .parse()
            .map_err(|_| ClusterError::NoAdvertiseHost)?;
        gossip.advertise_addr = Some(SocketAddr::new(host, listen.port()));
    }
    gossip.seeds.clone_from(&config.seeds);
    let membership = Membership::start(gossip).await?;
    tracing::info!(
        id = %view.me().id,
        gossip = %membership.gossip_addr(),
        generation = membership.generation(),
        seeds = ?config.seeds,
        "joined the cluster's gossip"
    );
    let mut members = membership.members();
    let (view_, node_, stop_) = (view.clone(), node.clone(), stop.clone());
    tracker.spawn(async move {
        loop {
            let table = Table::new(members.borrow_and_update().clone());
            handoff::apply(&view_, &node_, table);
            tokio::select! {
                () = stop_.cancelled() => return,
                changed = members.changed() => {
                    if changed.is_err() {
                        if !view_.leaving.load(std::sync::atomic::Ordering::SeqCst) {
                            tracing::error!("cluster gossip stopped; the table is frozen");
                        }
                        return;
                    }
                }
            }
        }
    });
    tracker.spawn(handoff::sweep_lost(
        view.clone(),
        node.clone(),
        stop.clone(),
    ));
    if !config.seeds.is_empty() {
        // Take no partition before knowing who else is there: a node that counted itself
        // alone would claim every slot for a moment, and miss the owners to pull from.
        let mut members = membership.members();
        let settled = async {
            loop {
                let quiet = tokio::time::timeout(SETTLE, members.changed()).await;
                if quiet.is_err() && members.borrow().len() > 1 {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(JOIN_WAIT, settled).await;
    }
    membership.set_status(Status::Ready);
    Ok(membership)
}

/// Leaves: says this node is draining, waits (at most the drain deadline) for the nodes that
/// now own its partitions to pull them, then stops gossiping.
pub(crate) async fn leave(view: &ClusterView, membership: Membership) {
    let snapshot = view.snapshot();
    let owned: Vec<u16> = snapshot.me.map_or_else(Vec::new, |me| {
        (0..larder_cluster::PARTITIONS)
            .filter(|&p| snapshot.table.owner_index(p) == Some(me))
            .collect()
    });
    view.leaving
        .store(true, std::sync::atomic::Ordering::SeqCst);
    membership.set_status(Status::Draining);
    let deadline = Duration::from_millis(view.config.drain_deadline_ms);
    tracing::info!(partitions = owned.len(), ?deadline, "draining");
    if handoff::drained(view, owned, deadline).await {
        tracing::info!("partitions handed off");
    } else {
        tracing::warn!(
            ?deadline,
            "drain deadline passed before every partition was taken over"
        );
    }
    membership.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(ip: &str) -> [SocketAddr; 3] {
        [6380, 7070, 7071].map(|port| SocketAddr::new(ip.parse().unwrap(), port))
    }

    #[test]
    fn a_member_is_advertised_where_it_can_be_reached() {
        let config = ClusterConfig::default();
        let me = member(&config, addrs("127.0.0.1")).unwrap();
        assert_eq!(me.id, "127.0.0.1:6380");
        assert_eq!(
            (me.grpc.as_str(), me.admin.as_str()),
            ("127.0.0.1:7070", "127.0.0.1:7071")
        );

        let named = ClusterConfig {
            node_id: "cache-0".into(),
            advertise_host: "cache-0.cache".into(),
            ..ClusterConfig::default()
        };
        let me = member(&named, addrs("0.0.0.0")).unwrap();
        assert_eq!(
            (me.id.as_str(), me.resp.as_str()),
            ("cache-0", "cache-0.cache:6380")
        );

        // Every interface, and gossip on loopback: the gossip address's host.
        assert_eq!(
            member(&config, addrs("0.0.0.0")).unwrap().resp,
            "127.0.0.1:6380"
        );
        let everywhere = ClusterConfig {
            addr: "0.0.0.0:7946".into(),
            ..ClusterConfig::default()
        };
        assert!(matches!(
            member(&everywhere, addrs("0.0.0.0")),
            Err(ClusterError::NoAdvertiseHost)
        ));
        assert_eq!(join("::1", 80), "[::1]:80");
    }
}
