//! The cluster of larder cache nodes: what every node computes alike from the member set.
//!
//! * [`slot`]: keys to Redis Cluster's hash slots (CRC16 of the key or its `{hash tag}`), and
//!   slots to the 1024 partitions placement moves;
//! * [`placement`]: the [`Table`] of partition owners, by rendezvous hashing over the ready
//!   members, named by an epoch.
//!
//! All of it is plain synchronous code: no I/O, no clock.

pub mod placement;
pub mod slot;

pub use placement::{Member, Status, Table};
pub use slot::{PARTITIONS, SLOTS, key_slot, partition_of};
