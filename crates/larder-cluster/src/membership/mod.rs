//! Membership by gossip: which nodes are in the cluster now, on every node, without a
//! coordinator.
//!
//! Each node runs a [chitchat](https://docs.rs/chitchat) server (scuttlebutt gossip over UDP,
//! phi-accrual failure detection) and publishes itself as key-values of its node state
//! (`member.rs` says which); [`Membership::members`] is the list of live members, self
//! included, one per id (the newest generation), kept current by a task beside the server.
//! Every start of a process is a new generation, so a restarted node replaces its former
//! self and is never taken for it. The tuning of gossip and failure detection is explained in
//! `config.rs` and in `docs/ARCHITECTURE.md` ("Membership").
//!
//! The network is chitchat's `Transport` trait: UDP in production, chitchat's in-memory
//! `ChannelTransport` (which runs the real codec and can cut links) in tests, with tokio's
//! paused clock.

mod config;
mod driver;
mod member;
mod seeds;
#[cfg(test)]
mod tests;

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chitchat::transport::{Socket, Transport, UdpTransport};
use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, ProtocolVersion, spawn_chitchat};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use self::config::{
    DEFAULT_CLUSTER_ADDR, DEFAULT_CLUSTER_ID, DEFAULT_DEAD_NODE_GRACE_PERIOD,
    DEFAULT_GOSSIP_INTERVAL, DEFAULT_INITIAL_INTERVAL, DEFAULT_MAX_INTERVAL, DEFAULT_PHI_THRESHOLD,
    DEFAULT_SAMPLING_WINDOW, DEFAULT_SEED_REFRESH, FailureConfig, MembershipConfig,
};
use self::driver::Driver;
use self::member::{is_valid, key_values, next_generation};
pub use self::seeds::{Resolve, SystemResolver};
use self::seeds::{Seeds, resolve_loop};
use crate::placement::{Member, Status};

/// Why membership could not start.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// A seed is not `host:port`.
    #[error("seed {0:?} is not host:port")]
    Seed(String),
    /// Our own member would not be accepted by peers.
    #[error("member {0:?} needs an id and host:port addresses")]
    Member(Member),
    /// The gossip interval is zero.
    #[error("the gossip interval must be longer than zero")]
    GossipInterval,
    /// The address peers would use to reach us is not one they can use.
    #[error("gossip address {0} cannot be advertised to peers: set an advertise address")]
    Advertise(SocketAddr),
    /// The gossip socket could not be opened.
    #[error("cannot open the gossip socket on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the transport said.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// Chitchat's server did not start.
    #[error("cannot start gossip: {0}")]
    Start(Box<dyn StdError + Send + Sync>),
}

/// This node's membership of the cluster: gossip runs while it lives; dropping it stops gossip
/// without a goodbye, as [`abort`](Self::abort) does.
pub struct Membership {
    /// Chitchat's server.
    chitchat: Arc<ChitchatHandle>,
    /// Our node in chitchat's terms (id, generation, advertised address).
    self_id: ChitchatId,
    /// The live members.
    members: watch::Receiver<Vec<Member>>,
    /// Our status, for the driver to publish.
    status: watch::Sender<Status>,
    /// Tells the driver to say goodbye.
    leave: Option<oneshot::Sender<()>>,
    /// The driver's task.
    driver: Option<JoinHandle<()>>,
    /// The task resolving seed host names, if any.
    resolver: Option<JoinHandle<()>>,
}

impl Membership {
    /// Starts gossiping over UDP on `config.listen_addr`, resolving seed names with the
    /// system resolver.
    ///
    /// # Errors
    /// See [`MembershipError`].
    pub async fn start(config: MembershipConfig) -> Result<Self, MembershipError> {
        Self::start_with(config, &UdpTransport, Arc::new(SystemResolver)).await
    }

    /// Starts gossiping over `transport` (chitchat's in-memory `ChannelTransport` in tests),
    /// resolving seed names with `resolver`.
    ///
    /// # Errors
    /// See [`MembershipError`].
    pub async fn start_with(
        config: MembershipConfig,
        transport: &dyn Transport,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Self, MembershipError> {
        let seeds = Seeds::parse(&config.seeds)?;
        if !is_valid(&config.me) {
            return Err(MembershipError::Member(config.me));
        }
        if config.gossip_interval.is_zero() || config.seed_refresh.is_zero() {
            return Err(MembershipError::GossipInterval);
        }
        let addr = config.listen_addr;
        let socket = transport
            .open(addr)
            .await
            .map_err(|e| MembershipError::Bind {
                addr,
                source: e.into(),
            })?;
        let bound = socket.local_addr().map_err(|e| MembershipError::Bind {
            addr,
            source: e.into(),
        })?;
        let advertise = config.advertise_addr.unwrap_or(bound);
        if advertise.ip().is_unspecified() || advertise.port() == 0 {
            return Err(MembershipError::Advertise(advertise));
        }
        let me = Member {
            generation: next_generation(),
            ..config.me
        };
        let self_id = ChitchatId::new(me.id.as_str(), me.generation, advertise);
        let chitchat_config = ChitchatConfig {
            chitchat_id: self_id.clone(),
            cluster_id: config.cluster_id,
            gossip_interval: config.gossip_interval,
            listen_addr: bound,
            // Seeds are ours to resolve and contact (see `seeds`).
            seed_nodes: Vec::new(),
            failure_detector_config: config.failure.to_chitchat(),
            // Larder never deletes keys; tombstones would be kept this long.
            marked_for_deletion_grace_period: config.failure.dead_node_grace_period,
            catchup_callback: None,
            extra_liveness_predicate: None,
            // Uncompressed digests: a few dozen nodes fit a datagram without zstd's CPU.
            protocol_version: ProtocolVersion::V0,
        };
        let opened = Opened(Mutex::new(Some(socket)));
        let handle = spawn_chitchat(chitchat_config, key_values(&me), &opened)
            .await
            .map_err(|e| MembershipError::Start(e.into()))?;
        let chitchat = Arc::new(handle);
        let live = chitchat.chitchat().lock().await.live_nodes_watcher();

        let (resolved_tx, resolved) = watch::channel(Vec::new());
        let resolver = (!seeds.names().is_empty()).then(|| {
            let names = seeds.names().to_vec();
            tokio::spawn(resolve_loop(
                names,
                resolver,
                config.seed_refresh,
                resolved_tx,
            ))
        });
        let (members_tx, members) = watch::channel(vec![me.clone()]);
        let (status, status_rx) = watch::channel(me.status);
        let (leave, leave_rx) = oneshot::channel();
        let driver = Driver {
            handle: Arc::clone(&chitchat),
            self_id: self_id.clone(),
            me,
            live,
            members: members_tx,
            status: status_rx,
            seeds,
            resolved,
            leave: leave_rx,
            gossip_interval: config.gossip_interval,
        };
        Ok(Self {
            chitchat,
            self_id,
            members,
            status,
            leave: Some(leave),
            driver: Some(tokio::spawn(driver.run())),
            resolver,
        })
    }

    /// The live members, self included (from the start, so a node without seeds is a cluster
    /// of one), newest generation per id, sorted by id; it changes as members join, leave,
    /// die or change status. Once gossip has stopped ([`shutdown`](Self::shutdown), or a
    /// socket that failed, which is logged) it no longer changes, and `changed()` fails.
    #[must_use]
    pub fn members(&self) -> watch::Receiver<Vec<Member>> {
        self.members.clone()
    }

    /// Our generation: picked at start, newer than any earlier start of this id.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.self_id.generation_id
    }

    /// The gossip address peers reach us at (the bound one, unless one was advertised).
    #[must_use]
    pub fn gossip_addr(&self) -> SocketAddr {
        self.self_id.gossip_advertise_addr
    }

    /// Publishes our status (joining → ready → draining); our own list shows it at once,
    /// peers within a few gossip rounds.
    pub fn set_status(&self, status: Status) {
        self.status.send_replace(status);
    }

    /// Leaves: publishes that we left, tells the live peers, waits one gossip interval for
    /// the exchange to complete, and stops gossiping. Peers drop us as soon as they hear it,
    /// and through failure detection if they did not.
    pub async fn shutdown(mut self) {
        if let Some(leave) = self.leave.take() {
            let _ = leave.send(());
        }
        if let Some(driver) = self.driver.take() {
            let _ = driver.await;
        }
    }

    /// Stops gossiping at once, with no goodbye, as a crash would: peers find out through
    /// failure detection.
    pub fn abort(self) {
        drop(self);
    }
}

#[cfg(test)]
impl Membership {
    /// For each peer chitchat knows, the silence after which it would be declared dead now.
    async fn detection_timeouts(&self) -> Vec<(String, Option<std::time::Duration>)> {
        let chitchat = self.chitchat.chitchat();
        let chitchat = chitchat.lock().await;
        let ids: Vec<ChitchatId> = chitchat.node_states().keys().cloned().collect();
        ids.iter()
            .filter(|id| **id != self.self_id)
            .map(|id| {
                (
                    format!("{}/{}", id.node_id, id.generation_id),
                    chitchat.failure_detection_timeout(id),
                )
            })
            .collect()
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.chitchat.abort();
        for task in [self.driver.take(), self.resolver.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }
}

/// A transport whose one socket is already open, so that `start` knows the bound address
/// (port 0 picks one) before it names the node to chitchat.
struct Opened(Mutex<Option<Box<dyn Socket>>>);

#[async_trait]
impl Transport for Opened {
    async fn open(&self, _listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        socket.ok_or_else(|| anyhow::anyhow!("the gossip socket was already taken"))
    }
}
