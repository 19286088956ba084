//! A connection's `CLIENT TRACKING` state, kept in its context ([`super::ctx::Ctx`]); what
//! is done with it is in [`super::tracking`].

use std::sync::Arc;

use crate::node::tracking::Subscriber;

/// A connection's `CLIENT TRACKING ON` state.
#[derive(Debug)]
pub(crate) struct Tracked {
    pub(crate) subscriber: Arc<Subscriber>,
    /// The client id notices go to; 0 when they come to this connection.
    pub(crate) redirect: u64,
    pub(crate) optin: bool,
    pub(crate) optout: bool,
    pub(crate) noloop: bool,
}

impl Tracked {
    /// Whether a read-only command now records its keys, given `CLIENT CACHING`'s answer.
    pub(super) fn records(&self, caching: Option<bool>) -> bool {
        if self.subscriber.broadcasting() {
            return false;
        }
        if self.optin {
            caching == Some(true)
        } else if self.optout {
            caching != Some(false)
        } else {
            true
        }
    }
}
