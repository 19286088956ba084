//! Making a client: its nodes, then, in the background, the cluster's table to route by.

use std::sync::Arc;

use larder_util::clock::{Clock, SystemClock};

use crate::client::Client;
use crate::cluster;
use crate::config::ClientConfig;
use crate::error::Error;

impl Client {
    /// A client for `config.nodes`. Nothing connects here: each channel connects on its first
    /// call (and reconnects after failures), so this succeeds while the nodes are down.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an empty or malformed node list, a node listed twice, a token that
    /// is not visible ASCII, a zero deadline, timeout, breaker threshold or pool size, or when
    /// called outside a Tokio runtime (the channels are driven by tasks spawned here).
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// [`Client::new`] whose breakers time their cooldowns on `clock` (the gateway's one
    /// clock; a [`larder_util::clock::ManualClock`] in tests).
    ///
    /// # Errors
    ///
    /// As [`Client::new`].
    pub fn with_clock(config: ClientConfig, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        let client = Self::assemble(config, clock)?;
        cluster::follow(&client);
        Ok(client)
    }
}
