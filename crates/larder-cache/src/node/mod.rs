//! The node core: one wire-agnostic layer that every RESP command and every gRPC method calls.
//!
//! [`Node`] holds what one cache node shares between its listeners (the store, the clock, the
//! read-through origins, the configuration, the metrics, the RESP client registry), and its
//! operations, one per command family, are the only code that reads or changes keys: reads
//! through origins ([`read`]), sets in every mode, deletes, expiry, counters, compare-and-set
//! and invalidation ([`write`]), fills under a lease ([`lease`]). They own the origin guards (what a write-through key accepts),
//! retire an origin load in flight before a write it could overwrite, and emit a
//! [`Mutation`] record for every change. The wires only parse, call, and encode.

pub(crate) mod error;
mod lease;
pub(crate) mod mutation;
pub(crate) mod read;
pub(crate) mod tracking;
pub(crate) mod write;

use std::sync::Arc;
use std::time::{Duration, Instant};

use larder_proto::resp::Limits;
use larder_store::{Clock, Store};

use crate::clients::Clients;
use crate::cluster::ClusterView;
use crate::config::{CacheConfig, ConfigError};
use crate::metrics::Metrics;
use crate::origin::Origins;
use lease::Leases;
use mutation::Recorder;
pub use mutation::{Mutation, MutationKind, MutationSink};
use tracking::Tracking;

/// What a node is built with besides its configuration: where time comes from and where its
/// mutation records go.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// The one clock of the node, its store and its origins (`None`: the system clock).
    pub clock: Option<Arc<dyn Clock>>,
    /// Where mutation records go (`None`: nowhere).
    pub mutations: Option<Arc<dyn MutationSink>>,
}

/// One cache node's shared state and its operations.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) store: Arc<Store>,
    clock: Arc<dyn Clock>,
    /// Read-through origins, if any are configured.
    pub(crate) origins: Option<Arc<Origins>>,
    recorder: Recorder,
    /// Who read which key, for client-side caching (gRPC `Watch`, RESP `CLIENT TRACKING`).
    pub(crate) tracking: Arc<Tracking>,
    leases: Leases,
    pub(crate) config: CacheConfig,
    pub(crate) limits: Limits,
    /// The largest request or reply, in bytes (`max_request`).
    pub(crate) max_request: usize,
    pub(crate) metrics: Metrics,
    pub(crate) clients: Arc<Clients>,
    /// The cluster this node belongs to, if it is clustered.
    pub(crate) cluster: Option<Arc<ClusterView>>,
    started: Instant,
}

impl Node {
    /// A node for `config` (already validated), counting into `metrics`. Call within the
    /// runtime that should run origin loads.
    pub(crate) fn new(
        config: CacheConfig,
        metrics: Metrics,
        options: NodeOptions,
        cluster: Option<Arc<ClusterView>>,
    ) -> Result<Self, ConfigError> {
        let limits = config.resp_limits()?;
        // The longest value RESP accepts is the longest the store keeps, whatever the wire:
        // one larger than a shard's share borrows from the others (`Store::with_max_value_bytes`).
        let max_value = u64::try_from(limits.max_bulk_len).unwrap_or(u64::MAX);
        let tracking = Arc::new(Tracking::new(
            config.tracking_max_keys,
            Duration::from_millis(config.tracking_lease_ms.max(1)),
        ));
        // Evictions and expirations invalidate tracked keys like any change.
        let mut store = Store::new(config.store()?)?
            .with_max_value_bytes(max_value)
            .with_removal_listener(tracking.clone());
        if let Some(clock) = options.clock {
            store = store.with_clock(clock);
        }
        let store = Arc::new(store);
        let recorder = Recorder::new(options.mutations, tracking.clone());
        let origins = Origins::new(&config.origins, store.clone(), recorder.clone())
            .map_err(ConfigError::Origin)?;
        Ok(Self {
            clock: store.clock().clone(),
            store,
            origins,
            recorder,
            tracking,
            leases: Leases::default(),
            limits,
            max_request: config.max_request_bytes()?,
            metrics,
            clients: Arc::default(),
            cluster,
            started: Instant::now(),
            config,
        })
    }

    /// The time now, in Unix milliseconds, on the node's clock.
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The time now, in Unix microseconds, on the node's clock.
    pub(crate) fn now_us(&self) -> u64 {
        self.clock.now_us()
    }

    /// Seconds since the node started.
    pub(crate) fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}
