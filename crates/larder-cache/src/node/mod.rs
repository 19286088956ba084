//! The state one cache node shares between its listeners: the store, the configuration, the
//! metrics and the registry of connected RESP clients.

pub(crate) mod error;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU64};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use larder_proto::resp::Limits;
use larder_store::Store;
use parking_lot::Mutex;

use crate::config::{CacheConfig, ConfigError};
use crate::metrics::Metrics;
use crate::origin::Origins;
use crate::resp::table::COMMANDS;

/// gRPC method names, in the order the service counts them.
pub(crate) const GRPC_METHODS: [&str; 10] = [
    "Get",
    "GetMany",
    "Set",
    "SetMany",
    "Delete",
    "Expire",
    "Incr",
    "CompareAndSet",
    "Stats",
    "Invalidate",
];

/// One cache node's shared state.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) store: Arc<Store>,
    /// Read-through origins, if any are configured.
    pub(crate) origins: Option<Arc<Origins>>,
    pub(crate) config: CacheConfig,
    pub(crate) limits: Limits,
    /// The largest request or reply, in bytes (`max_request`).
    pub(crate) max_request: usize,
    pub(crate) metrics: Metrics,
    pub(crate) clients: Arc<Clients>,
    started: Instant,
}

impl Node {
    /// A node for `config` (already validated).
    pub(crate) fn new(config: CacheConfig) -> Result<Self, ConfigError> {
        let store = Arc::new(Store::new(config.store()?)?);
        let origins = Origins::new(&config.origins, store.clone()).map_err(ConfigError::Origin)?;
        let limits = config.resp_limits()?;
        let max_request = config.max_request_bytes()?;
        let names = COMMANDS.iter().map(|c| c.name).chain(["unknown"]).collect();
        Ok(Self {
            store,
            origins,
            limits,
            max_request,
            metrics: Metrics::new(names, GRPC_METHODS.to_vec()),
            clients: Arc::default(),
            started: Instant::now(),
            config,
        })
    }

    /// Seconds since the node started.
    pub(crate) fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The connected RESP clients, for `CLIENT LIST`, `CLIENT INFO` and `INFO clients`.
#[derive(Debug, Default)]
pub(crate) struct Clients {
    next_id: AtomicU64,
    live: Mutex<BTreeMap<u64, Arc<ClientEntry>>>,
}

impl Clients {
    /// Registers a new connection; it is listed until the returned guard drops.
    pub(crate) fn register(self: &Arc<Self>, peer: SocketAddr, local: SocketAddr) -> ClientGuard {
        let id = self.next_id.fetch_add(1, Relaxed) + 1;
        let entry = Arc::new(ClientEntry {
            id,
            peer,
            local,
            created_ms: unix_ms(),
            last_ms: AtomicU64::new(unix_ms()),
            last_cmd: AtomicU16::new(u16::MAX),
            protocol: AtomicU8::new(2),
            meta: Mutex::new(ClientMeta::default()),
        });
        self.live.lock().insert(id, entry.clone());
        ClientGuard {
            clients: self.clone(),
            entry,
        }
    }

    /// Every connected client, by id.
    pub(crate) fn snapshot(&self) -> Vec<Arc<ClientEntry>> {
        self.live.lock().values().cloned().collect()
    }

    /// How many clients are connected.
    pub(crate) fn count(&self) -> usize {
        self.live.lock().len()
    }
}

/// Keeps a client listed while its connection lives.
#[derive(Debug)]
pub(crate) struct ClientGuard {
    clients: Arc<Clients>,
    pub(crate) entry: Arc<ClientEntry>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.clients.live.lock().remove(&self.entry.id);
    }
}

/// What `CLIENT LIST` shows of one connection.
#[derive(Debug)]
pub(crate) struct ClientEntry {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) created_ms: u64,
    /// When the client last sent a request (updated once per batch).
    pub(crate) last_ms: AtomicU64,
    /// Index of the last command in the command table (`u16::MAX`: none yet).
    pub(crate) last_cmd: AtomicU16,
    /// RESP protocol version in use (2 or 3).
    pub(crate) protocol: AtomicU8,
    pub(crate) meta: Mutex<ClientMeta>,
}

/// The parts of a client's description it sets itself.
#[derive(Debug, Default, Clone)]
pub(crate) struct ClientMeta {
    pub(crate) name: String,
    pub(crate) lib_name: String,
    pub(crate) lib_ver: String,
}
