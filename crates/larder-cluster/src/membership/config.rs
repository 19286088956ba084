//! What a node needs to join the cluster's gossip, and the tuned defaults with their reasons.
//!
//! The failure detector is chitchat's phi-accrual detector, whose phi is the time since a
//! peer's heartbeat was last seen to rise, divided by the mean interval between such rises
//! (the intervals are taken as exponentially distributed). A peer whose phi passes the
//! threshold is dead. So the silence that kills a peer is `phi_threshold × mean interval`,
//! and the mean interval is the gossip interval divided by how often per round news of the
//! peer's heartbeat arrives: about twice in small clusters (in the peer's SYN to us and its
//! SYN-ACK to ours), measured at 50 ms for rounds of 100 ms; a little less often in large
//! ones, where a node gossips with 3 random peers per round and news also comes second-hand
//! (60 to 70 ms at 12 nodes). Every node checks liveness once per round, at its end. The
//! detection times these defaults give are measured by this module's tests and listed in
//! `docs/ARCHITECTURE.md` ("Membership").

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::placement::Member;

/// Where gossip listens by default (`--cluster-addr`).
pub const DEFAULT_CLUSTER_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7946);

/// Nodes gossip only with nodes of the same cluster id.
pub const DEFAULT_CLUSTER_ID: &str = "larder";

/// One gossip round every 100 ms. What protects a live node from being declared dead is the
/// ratio of the silence allowed ([`DEFAULT_PHI_THRESHOLD`] mean intervals) to the usual gap
/// between news of it (about one round): short rounds make that ratio large (8 here) within
/// the 2 s budget, where rounds of 200 ms would leave 4. The cost is small: a node sends at
/// most 3 SYNs per round (plus one to a dead node or a seed now and then), each carrying a
/// digest of about 60 bytes per node, answered by a SYN-ACK and an ACK.
pub const DEFAULT_GOSSIP_INTERVAL: Duration = Duration::from_millis(100);

/// Seed host names are resolved again every 5 s, so a Kubernetes headless Service, whose
/// records appear as pods start and whose answers the cluster DNS keeps 5 s, works as the
/// seed list. Polling faster would mostly get the cached answer again.
pub const DEFAULT_SEED_REFRESH: Duration = Duration::from_secs(5);

/// Phi at which a peer is declared dead: 16 mean intervals of silence, 0.8 s in clusters of
/// two or three (0.6 to 1.1 s per peer at 5 to 12 nodes). A killed node then leaves every
/// table in 0.7 to 1 s at three nodes (1.1 to 1.3 s at 12), well inside the 2 s the issue
/// allows, while a live node may go silent 0.7 s (a stalled process, a full run queue on a
/// loaded 2-core machine, which schedules in slices of a few to some tens of ms) before its
/// peers give up on it.
pub const DEFAULT_PHI_THRESHOLD: f64 = 16.0;

/// The mean heartbeat interval assumed before a peer has been heard from much, which chitchat
/// weighs as 5 samples: 50 ms, what small clusters measure with 100 ms rounds, so a peer that
/// joined a second ago (20 samples) is judged as one that has been there for hours.
pub const DEFAULT_INITIAL_INTERVAL: Duration = Duration::from_millis(50);

/// A gap between heartbeats longer than 2 s is not taken as a sample: the peer was (rightly)
/// dead meanwhile, and one such gap would lengthen the mean, and so the next detection, for
/// a while. It also keeps a heartbeat that straggles in well after a death from bringing the
/// dead peer back: after a gap this long, a peer needs two fresh heartbeats to live again.
pub const DEFAULT_MAX_INTERVAL: Duration = Duration::from_secs(2);

/// Heartbeat intervals kept per peer: 1000, about 50 s of history, long enough that one stall
/// barely moves the mean (a 1 s gap among 1000 samples of 50 ms adds 1 ms), short enough to
/// follow a change of cluster size within a minute.
pub const DEFAULT_SAMPLING_WINDOW: usize = 1_000;

/// A dead peer's state is kept 10 minutes, then forgotten (chitchat stops passing it on after
/// half of that). While it is kept, nodes still gossip now and then with the dead peer's
/// address, so the two sides of a partition find each other again when it heals; after a
/// longer partition they find each other only through the seeds. Each restart of a node
/// leaves one dead generation behind for this long, a few dozen bytes in every digest.
pub const DEFAULT_DEAD_NODE_GRACE_PERIOD: Duration = Duration::from_secs(600);

/// How a node gossips and tells live peers from dead ones.
#[derive(Debug, Clone, PartialEq)]
pub struct MembershipConfig {
    /// Nodes of other clusters are ignored (chitchat answers their SYNs with `BadCluster`).
    pub cluster_id: String,
    /// UDP address gossip listens on (`--cluster-addr`); port 0 picks a free port.
    pub listen_addr: SocketAddr,
    /// What peers use to reach us; `None`: the address the socket is bound to, which must
    /// then not be unspecified (`0.0.0.0`).
    pub advertise_addr: Option<SocketAddr>,
    /// `host:port` of nodes to join through (`--seeds`); host names are resolved again every
    /// [`seed_refresh`](Self::seed_refresh).
    pub seeds: Vec<String>,
    /// How often host names among the seeds are resolved again.
    pub seed_refresh: Duration,
    /// Time between gossip rounds.
    pub gossip_interval: Duration,
    /// When a silent peer is declared dead, and how long it is remembered.
    pub failure: FailureConfig,
    /// Our id, addresses and initial status (normally `joining`). Its `generation` is not
    /// read: [`Membership::start`](super::Membership::start) picks a new one, newer than any
    /// earlier start of a process with this id.
    pub me: Member,
}

impl MembershipConfig {
    /// The tuned defaults for `me`, gossiping on [`DEFAULT_CLUSTER_ADDR`] with no seeds.
    #[must_use]
    pub fn new(me: Member) -> Self {
        Self {
            cluster_id: DEFAULT_CLUSTER_ID.to_owned(),
            listen_addr: DEFAULT_CLUSTER_ADDR,
            advertise_addr: None,
            seeds: Vec::new(),
            seed_refresh: DEFAULT_SEED_REFRESH,
            gossip_interval: DEFAULT_GOSSIP_INTERVAL,
            failure: FailureConfig::default(),
            me,
        }
    }
}

/// The phi-accrual failure detector's knobs (see the module docs for what phi is here).
#[derive(Debug, Clone, PartialEq)]
pub struct FailureConfig {
    /// Phi above which a peer is dead: silence, in mean heartbeat intervals.
    pub phi_threshold: f64,
    /// Mean interval assumed before samples come in (weighed as 5 samples).
    pub initial_interval: Duration,
    /// Longer gaps between heartbeats are not samples.
    pub max_interval: Duration,
    /// Samples kept per peer.
    pub sampling_window: usize,
    /// How long a dead peer's state is kept before it is forgotten.
    pub dead_node_grace_period: Duration,
}

impl Default for FailureConfig {
    fn default() -> Self {
        Self {
            phi_threshold: DEFAULT_PHI_THRESHOLD,
            initial_interval: DEFAULT_INITIAL_INTERVAL,
            max_interval: DEFAULT_MAX_INTERVAL,
            sampling_window: DEFAULT_SAMPLING_WINDOW,
            dead_node_grace_period: DEFAULT_DEAD_NODE_GRACE_PERIOD,
        }
    }
}

impl FailureConfig {
    /// Chitchat's form of the same settings.
    pub(crate) fn to_chitchat(&self) -> chitchat::FailureDetectorConfig {
        chitchat::FailureDetectorConfig::new(
            self.phi_threshold,
            self.sampling_window,
            self.max_interval,
            self.initial_interval,
            self.dead_node_grace_period,
        )
    }
}
