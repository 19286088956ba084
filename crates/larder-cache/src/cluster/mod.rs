//! The node's part in a cluster: the placement table it routes by, the partitions it is taking
//! over, and the tasks that keep both current.
//!
//! Membership (`larder_cluster::Membership`, gossip over UDP) gives the live members; every
//! change becomes a new [`Table`] (the same on every node that sees the same members), and a
//! new [`Snapshot`]: the table, this node's place in it, and the partitions it is pulling from
//! their previous owner ([`handoff`]). The RESP and gRPC listeners route by the snapshot:
//! a key this node does not own is redirected (`-MOVED`) or forwarded once to its owner.
//!
//! Connections keep the snapshot they last read and take a new one only when the version
//! counter moved, so routing a command costs one atomic load and a table lookup.

pub(crate) mod config;
#[cfg(test)]
mod forward_tests;
pub(crate) mod handoff;
#[cfg(test)]
mod handoff_tests;
pub(crate) mod peers;
pub(crate) mod run;
pub(crate) mod service;
#[cfg(test)]
mod test_nodes;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicU64, AtomicUsize};

use larder_cluster::{Member, Status, Table, key_slot, partition_of};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

pub(crate) use config::ClusterConfig;
use peers::Peers;

/// The TLS configuration of calls to the other nodes (see `CacheConfig::peer_tls`).
pub(crate) type PeerTls = Arc<larder_util::reload::Reloading<rustls::ClientConfig>>;
pub use run::ClusterError;

/// What a routing decision found for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// This node owns it.
    Local,
    /// Another member owns it.
    Moved(&'a Member),
    /// No member is ready: nobody serves it.
    Down,
}

/// The table as this node routes by it.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) table: Arc<Table>,
    /// This node's index in the table's members (`None` until gossip lists it).
    pub(crate) me: Option<usize>,
    /// Partitions being taken over, and the member they are pulled from.
    moving: HashMap<u16, Member>,
}

impl Snapshot {
    /// Who serves `slot`.
    pub(crate) fn route(&self, slot: u16) -> Route<'_> {
        match self.table.owner_index(partition_of(slot)) {
            None => Route::Down,
            Some(owner) if Some(owner) == self.me => Route::Local,
            Some(owner) => Route::Moved(&self.table.members()[owner]),
        }
    }

    /// The member `slot`'s partition is being pulled from, while it is.
    pub(crate) fn moving_from(&self, slot: u16) -> Option<&Member> {
        self.moving.get(&partition_of(slot))
    }

    /// How many partitions are moving here.
    pub(crate) fn moving_count(&self) -> usize {
        self.moving.len()
    }

    /// The partitions this node owns.
    pub(crate) fn owned(&self) -> usize {
        self.me.map_or(0, |me| {
            (0..larder_cluster::PARTITIONS)
                .filter(|&p| self.table.owner_index(p) == Some(me))
                .count()
        })
    }
}

/// Counters of `/metrics`' `larder_cluster_*` families.
#[derive(Debug, Default)]
pub(crate) struct ClusterMetrics {
    /// gRPC requests sent on to their key's owner.
    pub(crate) forwarded: AtomicU64,
    /// RESP redirects by kind: `moved`, `ask`, `crossslot`, `down`.
    pub(crate) redirects: [AtomicU64; 4],
    /// Entries taken over from another node.
    pub(crate) handoff_entries: AtomicU64,
}

/// The redirect kinds, in `ClusterMetrics::redirects` order.
pub(crate) const REDIRECTS: [&str; 4] = ["moved", "ask", "crossslot", "down"];

/// One node's view of its cluster.
#[derive(Debug)]
pub(crate) struct ClusterView {
    me: Member,
    snapshot: RwLock<Arc<Snapshot>>,
    version: AtomicU64,
    tables: watch::Sender<Arc<Table>>,
    /// Keys clients wrote while their partition was being taken over: the pulled copy of such
    /// a key is older and must not replace what the client wrote.
    touched: Mutex<HashMap<u16, HashSet<Box<[u8]>>>>,
    /// How many partitions are being taken over (read without the lock on every write).
    moving: AtomicUsize,
    pub(crate) metrics: ClusterMetrics,
    pub(crate) peers: Peers,
    pub(crate) config: ClusterConfig,
    /// Partitions this node lost, and when (their entries are dropped after `keep_lost_ms`).
    pub(crate) lost: Mutex<HashMap<u16, std::time::Instant>>,
    /// Partitions whose entries a new owner has pulled from this node in full.
    pub(crate) handed: Mutex<HashSet<u16>>,
    /// The node is draining and leaving.
    pub(crate) leaving: std::sync::atomic::AtomicBool,
}

impl ClusterView {
    /// A view for the node `me` (its id and addresses), with no table yet; node-to-node calls
    /// carry `token`, over TLS with `tls` when given.
    pub(crate) fn new(
        me: Member,
        config: ClusterConfig,
        token: &str,
        tls: Option<PeerTls>,
    ) -> Self {
        let table = Arc::new(Table::new([me.clone()]));
        let snapshot = Snapshot {
            me: table.index_of(&me.id),
            table: table.clone(),
            moving: HashMap::new(),
        };
        Self {
            me,
            snapshot: RwLock::new(Arc::new(snapshot)),
            version: AtomicU64::new(1),
            tables: watch::channel(table).0,
            touched: Mutex::default(),
            moving: AtomicUsize::new(0),
            metrics: ClusterMetrics::default(),
            peers: Peers::new(token, tls),
            config,
            lost: Mutex::default(),
            handed: Mutex::default(),
            leaving: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// This node as a member.
    pub(crate) fn me(&self) -> &Member {
        &self.me
    }

    /// The current snapshot.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().clone()
    }

    /// A counter that moves whenever the snapshot changes.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(SeqCst)
    }

    /// The current table, then each new one.
    pub(crate) fn tables(&self) -> watch::Receiver<Arc<Table>> {
        self.tables.subscribe()
    }

    /// Installs a new table, with the partitions being taken over.
    fn install(&self, table: Arc<Table>, moving: HashMap<u16, Member>) {
        let snapshot = Snapshot {
            me: table.index_of(&self.me.id),
            table: table.clone(),
            moving,
        };
        self.moving.store(snapshot.moving.len(), SeqCst);
        *self.snapshot.write() = Arc::new(snapshot);
        self.version.fetch_add(1, SeqCst);
        self.tables.send_replace(table);
    }

    /// The partitions in `done` are taken over: their misses are misses again.
    fn finish_moves(&self, done: &[u16]) {
        let mut touched = self.touched.lock();
        let mut slot = self.snapshot.write();
        let mut moving = slot.moving.clone();
        for partition in done {
            moving.remove(partition);
            touched.remove(partition);
        }
        self.moving.store(moving.len(), SeqCst);
        *slot = Arc::new(Snapshot {
            table: slot.table.clone(),
            me: slot.me,
            moving,
        });
        self.version.fetch_add(1, SeqCst);
    }

    /// Notes a client's write of `key`, which a partition being taken over must keep.
    pub(crate) fn touch(&self, key: &[u8]) {
        if self.moving.load(Relaxed) == 0 {
            return;
        }
        let partition = partition_of(key_slot(key));
        if self.snapshot.read().moving.contains_key(&partition) {
            self.touched
                .lock()
                .entry(partition)
                .or_default()
                .insert(key.into());
        }
    }

    /// Runs `adopt` for `key`, a pulled entry, unless a client wrote the key since its
    /// partition began moving here; under the lock that client writes take to say so, so a
    /// write either comes first (and the entry is dropped) or replaces it.
    pub(crate) fn unless_touched(&self, key: &[u8], adopt: impl FnOnce()) -> bool {
        let partition = partition_of(key_slot(key));
        let touched = self.touched.lock();
        if touched
            .get(&partition)
            .is_some_and(|keys| keys.contains(key))
        {
            return false;
        }
        adopt();
        true
    }

    /// Whether a client wrote `key` since its partition began moving here.
    pub(crate) fn touched(&self, key: &[u8]) -> bool {
        let partition = partition_of(key_slot(key));
        self.touched
            .lock()
            .get(&partition)
            .is_some_and(|keys| keys.contains(key))
    }

    /// The owner of `key` if a request for it should be forwarded there: another member owns
    /// it and the request was not forwarded already (a request is forwarded at most once).
    pub(crate) fn forward_target(&self, key: &[u8], forwarded: bool) -> Option<Member> {
        if forwarded {
            return None;
        }
        match self.snapshot().route(key_slot(key)) {
            Route::Moved(owner) => Some(owner.clone()),
            Route::Local | Route::Down => None,
        }
    }

    /// The member to ask about `key` while its partition is being taken over and this node
    /// does not hold it yet.
    pub(crate) fn ask_target(&self, key: &[u8]) -> Option<Member> {
        if self.moving.load(Relaxed) == 0 {
            return None;
        }
        self.snapshot().moving_from(key_slot(key)).cloned()
    }

    /// Prometheus text for the `larder_cluster_*` families.
    pub(crate) fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let snapshot = self.snapshot();
        let mut statuses = [0u64; 3];
        for member in snapshot.table.members() {
            statuses[member.status as usize] += 1;
        }
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        let name = "larder_cluster_members";
        family(out, name, "gauge", "Live cluster members by status.");
        for (status, n) in [Status::Joining, Status::Ready, Status::Draining]
            .iter()
            .zip(statuses)
        {
            let _ = writeln!(out, "{name}{{status=\"{status}\"}} {n}");
        }
        let name = "larder_cluster_partitions_owned";
        family(out, name, "gauge", "Partitions (of 1024) this node owns.");
        let _ = writeln!(out, "{name} {}", snapshot.owned());
        let name = "larder_cluster_partitions_moving";
        family(
            out,
            name,
            "gauge",
            "Partitions this node is taking over from their previous owner.",
        );
        let _ = writeln!(out, "{name} {}", self.moving.load(Relaxed));
        let name = "larder_cluster_forwarded_total";
        family(
            out,
            name,
            "counter",
            "gRPC requests forwarded to the owner of their key.",
        );
        let _ = writeln!(out, "{name} {}", self.metrics.forwarded.load(Relaxed));
        let name = "larder_cluster_redirects_total";
        family(out, name, "counter", "RESP redirects and refusals by kind.");
        for (kind, n) in REDIRECTS.iter().zip(&self.metrics.redirects) {
            let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {}", n.load(Relaxed));
        }
        let name = "larder_cluster_handoff_entries_total";
        family(
            out,
            name,
            "counter",
            "Entries taken over from the previous owner of a partition.",
        );
        let _ = writeln!(out, "{name} {}", self.metrics.handoff_entries.load(Relaxed));
        let name = "larder_cluster_epoch";
        family(out, name, "gauge", "The placement table's epoch.");
        let _ = writeln!(out, "{name} {}", snapshot.table.epoch());
    }
}

/// A 40-hex-digit node id for `CLUSTER NODES`/`MYID`, derived from the member id so every
/// node shows the same one for a member.
pub(crate) fn hex_id(id: &str) -> String {
    use larder_cluster::placement::{fnv1a, mix};
    let base = fnv1a(id.as_bytes());
    let words = [
        mix(base),
        mix(base ^ 0x9e37_79b9_7f4a_7c15),
        mix(base.rotate_left(17)),
    ];
    let mut out = format!("{:016x}{:016x}{:016x}", words[0], words[1], words[2]);
    out.truncate(40);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, status: Status) -> Member {
        Member {
            id: id.into(),
            generation: 1,
            status,
            resp: format!("{id}:6380"),
            grpc: format!("{id}:7070"),
            admin: format!("{id}:7071"),
        }
    }

    #[test]
    fn routing_follows_the_table_and_moves_end() {
        let view = ClusterView::new(
            member("a", Status::Ready),
            ClusterConfig::default(),
            "",
            None,
        );
        let table = Arc::new(Table::new([
            member("a", Status::Ready),
            member("b", Status::Ready),
        ]));
        let mine = (0..larder_cluster::SLOTS)
            .find(|&s| table.owner(partition_of(s)).is_some_and(|m| m.id == "a"))
            .unwrap();
        let theirs = (0..larder_cluster::SLOTS)
            .find(|&s| table.owner(partition_of(s)).is_some_and(|m| m.id == "b"))
            .unwrap();
        let moving = HashMap::from([(partition_of(mine), member("b", Status::Ready))]);
        let before = view.version();
        view.install(table, moving);
        assert!(view.version() > before);
        let snapshot = view.snapshot();
        assert_eq!(snapshot.route(mine), Route::Local);
        assert!(matches!(snapshot.route(theirs), Route::Moved(m) if m.id == "b"));
        assert_eq!(snapshot.moving_from(mine).map(|m| m.id.as_str()), Some("b"));

        // A client's write during the move is remembered, and forgotten when it ends.
        let key = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| key_slot(k.as_bytes()) / 16 == mine / 16)
            .unwrap();
        view.touch(key.as_bytes());
        assert!(view.touched(key.as_bytes()));
        assert!(view.ask_target(key.as_bytes()).is_some());
        view.finish_moves(&[partition_of(mine)]);
        assert!(!view.touched(key.as_bytes()));
        assert!(view.ask_target(key.as_bytes()).is_none());
    }

    #[test]
    fn hex_ids_are_forty_digits_and_stable() {
        let id = hex_id("node-1");
        assert_eq!(id.len(), 40);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(id, hex_id("node-1"));
        assert_ne!(id, hex_id("node-2"));
    }
}
