//! The cluster of larder cache nodes: what every node computes alike from the member set.
//!
//! * [`slot`]: keys to Redis Cluster's hash slots (CRC16 of the key or its `{hash tag}`), and
//!   slots to the 1024 partitions placement moves;
//! * [`placement`]: the [`Table`] of partition owners, by rendezvous hashing over the ready
//!   members, named by an epoch;
//! * [`membership`]: which members are live, by gossip (chitchat over UDP).
//!
//! Slots and placement are plain synchronous code: no I/O, no clock. Membership runs tasks
//! on tokio, over a transport that tests replace, on tokio's clock that tests pause.

pub mod membership;
pub mod placement;
pub mod slot;

pub use membership::{Membership, MembershipConfig, MembershipError};
pub use placement::{Member, Status, Table, newest_per_id};
pub use slot::{PARTITIONS, SLOTS, key_slot, partition_of};
