//! Seeds: the `host:port` addresses a node joins through, host names resolved again and again.
//!
//! Chitchat resolves seed host names itself, but only once a minute and always through the
//! system resolver; larder resolves them here instead, every
//! [`seed_refresh`](super::MembershipConfig::seed_refresh), through a [`Resolve`] that tests
//! replace. Each gossip round, the node sends a SYN to one seed that it does not already hold
//! alive, in turn: a new node finds the cluster as soon as a seed answers, two sides of a long
//! partition find each other again, and a cluster whose seeds are all alive sends nothing more.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::MembershipError;
use super::member::is_host_port;

/// Resolves a `host:port` seed to addresses.
#[async_trait]
pub trait Resolve: Send + Sync + 'static {
    /// The addresses `seed` names now.
    ///
    /// # Errors
    /// When the name does not resolve (yet).
    async fn resolve(&self, seed: &str) -> io::Result<Vec<SocketAddr>>;
}

/// The system's resolver (`getaddrinfo`, through tokio's blocking pool).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, seed: &str) -> io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host(seed).await?.collect())
    }
}

/// The seeds of a node, and whose turn it is.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seeds {
    /// Seeds given as addresses.
    literal: Vec<SocketAddr>,
    /// Seeds given as host names, resolved by [`resolve_loop`].
    names: Vec<String>,
    /// Turns taken so far.
    turn: usize,
}

impl Seeds {
    /// The seeds `seeds` lists.
    ///
    /// # Errors
    /// [`MembershipError::Seed`] for one that is not `host:port`.
    pub(crate) fn parse(seeds: &[String]) -> Result<Self, MembershipError> {
        let mut parsed = Self::default();
        for seed in seeds.iter().map(|seed| seed.trim()) {
            if let Ok(addr) = seed.parse::<SocketAddr>() {
                parsed.literal.push(addr);
            } else if is_host_port(seed) {
                parsed.names.push(seed.to_owned());
            } else {
                return Err(MembershipError::Seed(seed.to_owned()));
            }
        }
        Ok(parsed)
    }

    /// Seeds given as host names.
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether there are no seeds at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.names.is_empty()
    }

    /// The seed to gossip with this round: the next in turn of the seeds (the literal ones and
    /// `resolved`) that are not `me`, not of another address family than `me`, and not among
    /// the `live` peers' addresses.
    pub(crate) fn next(
        &mut self,
        resolved: &[SocketAddr],
        me: SocketAddr,
        live: &HashSet<SocketAddr>,
    ) -> Option<SocketAddr> {
        let mut candidates: Vec<SocketAddr> = self
            .literal
            .iter()
            .chain(resolved)
            .copied()
            .filter(|addr| *addr != me && addr.is_ipv4() == me.is_ipv4() && !live.contains(addr))
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        let chosen = candidates.get(self.turn % candidates.len().max(1)).copied();
        self.turn = self.turn.wrapping_add(1);
        chosen
    }
}

/// Resolves `names` now and every `every`, and publishes the addresses found (sorted, without
/// repeats) until nobody watches them any more. A name that does not resolve is logged and
/// contributes nothing this time.
pub(crate) async fn resolve_loop(
    names: Vec<String>,
    resolver: Arc<dyn Resolve>,
    every: Duration,
    resolved: watch::Sender<Vec<SocketAddr>>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut addrs = Vec::new();
        for name in &names {
            match tokio::time::timeout(every, resolver.resolve(name)).await {
                Ok(Ok(found)) => addrs.extend(found),
                Ok(Err(error)) => debug!(seed = %name, %error, "seed does not resolve"),
                Err(_) => warn!(seed = %name, "seed resolution timed out"),
            }
        }
        addrs.sort_unstable();
        addrs.dedup();
        if resolved.is_closed() {
            return;
        }
        resolved.send_if_modified(|current| {
            let changed = *current != addrs;
            if changed {
                debug!(addrs = ?addrs, "seeds resolved");
                *current = std::mem::take(&mut addrs);
            }
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn seeds_are_addresses_or_host_names_with_a_port() {
        let seeds = Seeds::parse(&[
            "10.0.0.1:7946".to_owned(),
            " larder-headless.default.svc:7946 ".to_owned(),
            "[::1]:7946".to_owned(),
        ])
        .unwrap();
        assert_eq!(seeds.literal, [addr("10.0.0.1:7946"), addr("[::1]:7946")]);
        assert_eq!(seeds.names(), ["larder-headless.default.svc:7946"]);
        for bad in ["no-port", "host:port", ":7946", "host:99999"] {
            assert!(matches!(
                Seeds::parse(&[bad.to_owned()]),
                Err(MembershipError::Seed(seed)) if seed == bad
            ));
        }
        assert!(Seeds::parse(&[]).unwrap().is_empty());
    }

    #[test]
    fn seeds_take_turns_skipping_ourselves_live_peers_and_other_families() {
        let me = addr("10.0.0.1:7946");
        let mut seeds =
            Seeds::parse(&["10.0.0.1:7946".to_owned(), "10.0.0.3:7946".to_owned()]).unwrap();
        let resolved = [
            addr("10.0.0.2:7946"),
            addr("[::1]:7946"),
            addr("10.0.0.3:7946"),
        ];
        let mut live = HashSet::new();
        let turns: Vec<_> = (0..4).map(|_| seeds.next(&resolved, me, &live)).collect();
        let (two, three) = (Some(addr("10.0.0.2:7946")), Some(addr("10.0.0.3:7946")));
        assert_eq!(turns, [two, three, two, three]);
        live.insert(addr("10.0.0.2:7946"));
        assert_eq!(seeds.next(&resolved, me, &live), three);
        live.insert(addr("10.0.0.3:7946"));
        assert_eq!(
            seeds.next(&resolved, me, &live),
            None,
            "every seed is alive"
        );
    }
}
