//! The task beside chitchat's server: it turns chitchat's live nodes into the member list,
//! publishes our status, sends SYNs to seeds, and says goodbye when the node leaves.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::{ChitchatHandle, ChitchatId, NodeState};
use tokio::sync::{oneshot, watch};
use tokio::time::{MissedTickBehavior, interval, sleep};
use tracing::{error, info};

use super::member::{LEFT, STATUS, changes, members_of};
use super::seeds::Seeds;
use crate::placement::{Member, Status};

/// Chitchat's live nodes with their state.
pub(crate) type Live = watch::Receiver<BTreeMap<ChitchatId, NodeState>>;

/// What the driver works with.
pub(crate) struct Driver {
    /// Chitchat's server.
    pub(crate) handle: Arc<ChitchatHandle>,
    /// Our node in chitchat's terms.
    pub(crate) self_id: ChitchatId,
    /// Ourselves as a member, with the status last set.
    pub(crate) me: Member,
    /// Chitchat's live nodes.
    pub(crate) live: Live,
    /// Where the member list goes.
    pub(crate) members: watch::Sender<Vec<Member>>,
    /// The status [`Membership::set_status`](super::Membership::set_status) asks for.
    pub(crate) status: watch::Receiver<Status>,
    /// Our seeds.
    pub(crate) seeds: Seeds,
    /// The seed host names' addresses, as last resolved.
    pub(crate) resolved: watch::Receiver<Vec<SocketAddr>>,
    /// Fires (or is dropped) when the node leaves.
    pub(crate) leave: oneshot::Receiver<()>,
    /// Time between gossip rounds.
    pub(crate) gossip_interval: Duration,
}

impl Driver {
    /// Runs until the node leaves (with a goodbye), the [`Membership`](super::Membership) is
    /// dropped (without), or chitchat's server stops on its own; the member list's sender
    /// goes with it, which its receivers see.
    pub(crate) async fn run(mut self) {
        let mut round = interval(self.gossip_interval);
        round.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let stopped = self.handle.termination_watcher();
        tokio::pin!(stopped);
        self.publish();
        loop {
            tokio::select! {
                result = &mut stopped => {
                    // Only a broken socket stops the server on its own.
                    if let Err(error) = result {
                        error!(%error, "gossip stopped");
                    }
                    return;
                }
                said = &mut self.leave => {
                    if said.is_ok() {
                        self.say_goodbye().await;
                    }
                    return;
                }
                changed = self.live.changed() => match changed {
                    Ok(()) => self.publish(),
                    Err(_) => return,
                },
                changed = self.status.changed() => match changed {
                    Ok(()) => self.set_status().await,
                    Err(_) => return,
                },
                _ = round.tick(), if !self.seeds.is_empty() => self.gossip_with_a_seed(),
            }
        }
    }

    /// Publishes the member list, if it changed, and logs who joined and left.
    fn publish(&mut self) {
        let new = members_of(&self.me, &self.self_id, &self.live.borrow_and_update());
        self.members.send_if_modified(|current| {
            if *current == new {
                return false;
            }
            let (joined, left) = changes(current, &new);
            for m in joined {
                info!(id = %m.id, generation = m.generation, status = %m.status, "member joined");
            }
            for m in left {
                info!(id = %m.id, generation = m.generation, "member left");
            }
            *current = new;
            true
        });
    }

    /// Publishes the status asked for, in chitchat and in our own member list at once.
    async fn set_status(&mut self) {
        let status = *self.status.borrow_and_update();
        if status == self.me.status {
            return;
        }
        self.me.status = status;
        let chitchat = self.handle.chitchat();
        chitchat
            .lock()
            .await
            .self_node_state()
            .set(STATUS, status.as_str());
        info!(%status, "status published");
        self.publish();
    }

    /// The advertised addresses of the live peers.
    fn live_peers(&self) -> HashSet<SocketAddr> {
        self.live
            .borrow()
            .keys()
            .filter(|id| **id != self.self_id)
            .map(|id| id.gossip_advertise_addr)
            .collect()
    }

    /// Sends a SYN to the seed whose turn it is, if any is not already a live peer.
    fn gossip_with_a_seed(&mut self) {
        let live = self.live_peers();
        let me = self.self_id.gossip_advertise_addr;
        let resolved = self.resolved.borrow().clone();
        if let Some(seed) = self.seeds.next(&resolved, me, &live) {
            // Fails only once the server has stopped, which the next `live` change reports.
            let _ = self.handle.gossip(seed);
        }
    }

    /// Publishes that we left, sends it to every live peer, lets their answers complete the
    /// exchange for one gossip interval (the new key travels in our ACK to their SYN-ACK, or
    /// in our SYN-ACK to their SYN), then stops the server.
    async fn say_goodbye(&mut self) {
        let chitchat = self.handle.chitchat();
        chitchat.lock().await.self_node_state().set(LEFT, "true");
        for peer in self.live_peers() {
            let _ = self.handle.gossip(peer);
        }
        sleep(self.gossip_interval).await;
        if self.handle.initiate_shutdown().is_ok() {
            let _ = self.handle.termination_watcher().await;
        }
        info!(id = %self.me.id, generation = self.me.generation, "left the cluster");
    }
}
